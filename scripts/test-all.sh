#!/usr/bin/env bash
# Runs every test layer and ends with one line "N passed, N failed" adding
# them all up; exits non-zero when anything failed or a layer could not run.
#
#   scripts/test-all.sh                 all layers
#   scripts/test-all.sh unit regress    only those (unit, regress, integration)
#
# Layers:
#   unit         cargo pgrx test: pure-Rust #[test]s and #[pg_test]s (own cluster)
#   regress      pg_regress scenarios in tests/regress against a throwaway cluster
#   isolation    pg_isolation_regress specs in tests/isolation (two-session claims)
#   integration  Rust tests in tests/integration, each starting its own cluster
#   lint         squawk and pgrls (scripts/lint.sh sql): every finding fixed or justified
#   bench        make bench at SCALE=0.02, once: it must run and print its table
#                (a smoke test: nothing about time is asserted)
set -uo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGXS=$("$PG_CONFIG" --pkglibdir)/pgxs
layers=("$@")
[ ${#layers[@]} -gt 0 ] || layers=(unit regress isolation integration lint bench)

work=$(mktemp -d /tmp/hrm-test.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
trap 'for c in regress-cluster isolation-cluster; do scripts/pg-cluster.sh stop "$work/$c" >/dev/null 2>&1; done; rm -rf "$work"' EXIT

passed=0; failed=0
summary=()
started=$(date +%s)

# Adds up cargo's "test result: ... N passed; M failed" lines from a log.
count_cargo() {
    local log=$1 p f
    p=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
    f=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
    echo "$p $f"
}

# Counts pg_regress's "test <name> ... ok" lines as passed and every other
# "test <name> ..." line (FAILED, a diff that could not run) or "not ok"
# line as failed.
count_regress() {
    local log=$1 p all n
    p=$(grep -cE '^test .* \.\.\. +ok( |$)' "$log")
    all=$(grep -cE '^test .* \.\.\. ' "$log")
    n=$(grep -cE '^not ok ' "$log")
    echo "$p $((all - p + n))"
}

record() {  # layer status passed failed
    local layer=$1 status=$2 p=$3 f=$4
    if [ "$status" != 0 ] && [ "$f" = 0 ]; then
        f=1  # the layer failed without a test failing: a build or setup error
        echo "!! $layer exited with status $status before reporting a failing test" >&2
    fi
    passed=$((passed + p)); failed=$((failed + f))
    summary+=("$(printf '%-12s %5d passed, %d failed' "$layer" "$p" "$f")")
}

run_unit() {
    local log=$work/unit.log status
    echo "== unit: cargo pgrx test (pure Rust #[test]s and #[pg_test]s)"
    if [ "$(id -u)" = 0 ]; then
        cargo pgrx test pg15 --runas postgres --pgdata "$work/pgrx-data" 2>&1 | tee "$log" | grep -E '^test |test result|panicked' ; status=${PIPESTATUS[0]}
    else
        cargo pgrx test pg15 2>&1 | tee "$log" | grep -E '^test |test result|panicked'; status=${PIPESTATUS[0]}
    fi
    read -r p f < <(count_cargo "$log")
    record unit "$status" "$p" "$f"
}

installed=no
install_release() {
    [ "$installed" = yes ] && return 0
    echo "== installing the release build of the extension"
    scripts/install-extension.sh >"$work/install.log" 2>&1 || {
        tail -n 30 "$work/install.log" >&2
        record install 1 0 0
        return 1
    }
    installed=yes
}

run_regress() {
    echo "== regress: pg_regress scenarios"
    local dir=$work/regress-cluster port status
    make_keyring  # for the credentials scenario
    port=$(scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
        hr_migrations.keyring_file="$work/keys/keyring" hr_migrations.active_key_version=1) \
        || { record regress 1 0 0; return; }
    local tests
    tests=$(cd tests/regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
    mkdir -p "$work/regress-out" && chmod 777 "$work/regress-out"
    # One database per scenario (pg_regress creates it); scenarios find the
    # repository through HRM_ROOT (see tests/regress/README.md).
    status=0
    : >"$work/regress.log"
    for t in $tests; do
        HRM_ROOT=$PWD "$PGXS/src/test/regress/pg_regress" \
            --bindir="$("$PG_CONFIG" --bindir)" \
            --host=127.0.0.1 --port="$port" --user=postgres \
            --inputdir=tests/regress --outputdir="$work/regress-out" \
            --dbname="hr_regress_$t" "$t" 2>&1 | tee -a "$work/regress.log"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
        [ -f "$work/regress-out/regression.diffs" ] && cat "$work/regress-out/regression.diffs" >>"$work/all.diffs"
    done
    local p f
    read -r p f < <(count_regress "$work/regress.log")
    # Keep the results where tests/regress/README.md says to look for them.
    rm -rf tests/regress/results && cp -r "$work/regress-out/results" tests/regress/results 2>/dev/null
    rm -f tests/regress/regression.diffs
    if [ -f "$work/all.diffs" ]; then
        cp "$work/all.diffs" tests/regress/regression.diffs
        head -n 200 "$work/all.diffs"
    fi
    record regress "$status" "$p" "$f"
    scripts/pg-cluster.sh stop "$dir"
}

# A throwaway keyring in $work/keys (docs/key-management.md's format).
make_keyring() {
    [ -f "$work/keys/keyring" ] && return 0
    mkdir -p "$work/keys"
    echo "1 $(head -c 32 /dev/urandom | base64)" >"$work/keys/keyring"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$work/keys"
    chmod 0400 "$work/keys/keyring"
}

run_isolation() {
    echo "== isolation: pg_isolation_regress specs (tests/isolation)"
    local dir=$work/isolation-cluster port status=0 t db
    make_keyring
    port=$(scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
        hr_migrations.keyring_file="$work/keys/keyring" hr_migrations.active_key_version=1) \
        || { record isolation 1 0 0; return; }
    mkdir -p "$work/isolation-out" && chmod 777 "$work/isolation-out"
    : >"$work/isolation.log"
    for t in $(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort); do
        # Each spec gets a database prepared once by prepare/<spec>.sql;
        # its permutations' setup and teardown reset what they change.
        db=hr_iso_$t
        if ! psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $db" >>"$work/isolation.log" 2>&1 ||
           ! psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 -v hrm_root="$PWD" \
                -f "tests/isolation/prepare/$t.sql" >>"$work/isolation.log" 2>&1; then
            echo "not ok prepare $t (see below)" | tee -a "$work/isolation.log"
            tail -n 20 "$work/isolation.log"
            status=1
            continue
        fi
        "$PGXS/src/test/isolation/pg_isolation_regress" \
            --bindir="$("$PG_CONFIG" --bindir)" \
            --host=127.0.0.1 --port="$port" --user=postgres --use-existing \
            --inputdir=tests/isolation --outputdir="$work/isolation-out" \
            --dbname="$db" "$t" 2>&1 | tee -a "$work/isolation.log"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
        [ -f "$work/isolation-out/regression.diffs" ] && cat "$work/isolation-out/regression.diffs" >>"$work/isolation.diffs"
    done
    local p f
    read -r p f < <(count_regress "$work/isolation.log")
    rm -rf tests/isolation/results && cp -r "$work/isolation-out/results" tests/isolation/results 2>/dev/null
    rm -f tests/isolation/regression.diffs
    if [ -f "$work/isolation.diffs" ]; then
        cp "$work/isolation.diffs" tests/isolation/regression.diffs
        head -n 200 "$work/isolation.diffs"
    fi
    record isolation "$status" "$p" "$f"
    scripts/pg-cluster.sh stop "$dir"
}

run_integration() {
    echo "== integration: tests/integration against real servers"
    local log=$work/integration.log status
    cargo test --no-fail-fast -p hr_migrations_it -- --test-threads=2 2>&1 | tee "$log" | grep -E '^test |test result|panicked|assert'
    status=${PIPESTATUS[0]}
    read -r p f < <(count_cargo "$log")
    record integration "$status" "$p" "$f"
}

run_lint() {
    echo "== lint: squawk and pgrls (scripts/lint.sh sql)"
    scripts/lint.sh sql
    local status=$?
    record lint "$status" $((status == 0)) $((status != 0))
}

run_bench() {
    echo "== bench: benches/bench.sh at SCALE=0.02 (a smoke test; no timing is asserted)"
    local log=$work/bench.log status
    REPS=1 benches/bench.sh 0.02 >"$log" 2>&1
    status=$?
    tail -n 32 "$log"
    # The table must be there, with every row.
    [ "$status" = 0 ] && grep -q '^tenant count' "$log" && grep -q '^credential move' "$log" || status=1
    record bench "$status" $((status == 0)) $((status != 0))
}

for layer in "${layers[@]}"; do
    case "$layer" in
        unit) run_unit ;;
        regress) install_release && run_regress ;;
        isolation) install_release && run_isolation ;;
        integration) install_release && run_integration ;;
        lint) install_release && run_lint ;;
        bench) install_release && run_bench ;;
        *) echo "unknown layer $layer" >&2; exit 2 ;;
    esac
done

echo
printf '%s\n' "${summary[@]}"
took=$(( $(date +%s) - started ))
printf 'took %dm%02ds (%s)\n' $((took / 60)) $((took % 60)) "${layers[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
