#!/usr/bin/env bash
# Lints hr_migrations with the tools its ecosystem trusts; exits non-zero on
# any finding that is neither fixed nor justified in lint/ (every ignore and
# allowlist entry there carries its one-line reason).
#
#   scripts/lint.sh                 every part: rust, sql
#   scripts/lint.sh sql             only the SQL lints (what `make test` runs)
#   scripts/lint.sh rust sql        any of the parts, in that order
#
# Parts:
#   rust     cargo fmt --check; cargo clippy --all-targets -D warnings
#   sql      squawk --pg-version 15 on every plan (src/kinds/*/plans/, the
#            statements the extension runs; src/kinds/tests.rs holds them
#            equal to hr_plan) and every sql/migrations/ and sql/rollback/
#            file (scripts/lint-squawk.py with lint/squawk.toml and
#            lint/squawk-ignores.toml); then, in a throwaway cluster on
#            127.0.0.1, a demo database migrated by sql/migrations/, its
#            plans served by hr_plan() checked against the golden files,
#            and pgrls on it (scripts/lint-pgrls.py with lint/pgrls.toml).
#            Needs the installed extension (make install); .venv/ comes
#            from scripts/ensure-deps.sh lint.
set -uo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(rust sql)
for p in "${parts[@]}"; do
    case "$p" in rust|sql) ;; *) sed -n '2,20p' "$0" >&2; exit 2 ;; esac
done

# A bound on each step that talks to the server: nothing here may hang.
STEP_TIMEOUT=${LINT_STEP_TIMEOUT:-300}
PY=.venv/bin/python
failed=()
work=

cleanup() {
    if [ -n "$work" ]; then
        scripts/pg-cluster.sh stop "$work/cluster" >/dev/null 2>&1
        rm -rf "$work"
    fi
}
trap cleanup EXIT

check() {  # name command...: runs one check, records its failure
    local name=$1; shift
    echo "== lint: $name"
    if ! "$@"; then
        failed+=("$name")
        echo "!! lint: $name FAILED" >&2
    fi
}

lint_rust() {
    check rustfmt cargo fmt --all -- --check
    check clippy cargo clippy --all-targets -- -D warnings
}


# The demo database pgrls lints: the app fixture, the extension in schema
# extensions, every migration applied (tests/fixtures, like `make demo`).
demo_database() {
    local dir=$work/cluster port
    mkdir -p "$dir/keys"
    echo "1 $(head -c 32 /dev/urandom | base64)" >"$dir/keys/keyring"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$work"
    chmod 0400 "$dir/keys/keyring"
    port=$(timeout "$STEP_TIMEOUT" scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
        hr_migrations.keyring_file="$dir/keys/keyring" hr_migrations.active_key_version=1) || return 1
    local u="host=127.0.0.1 port=$port user=postgres"
    DEMO_URL="postgresql://postgres@127.0.0.1:$port/hr"
    DEMO_CONNINFO="$u dbname=hr"
    (
        psql "$u dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE hr" || exit 1
        psql "$u dbname=hr" -X -q -v ON_ERROR_STOP=1 -f tests/fixtures/schema.sql || exit 1
        psql "$u dbname=hr" -X -q -v ON_ERROR_STOP=1 -v scale=300 -f tests/fixtures/generate.sql || exit 1
        psql "$u dbname=hr" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION hr_migrations SCHEMA extensions" \
            -c "ALTER DATABASE hr SET search_path = public, extensions" || exit 1
        # Sessions whose candidate has no organization would stay blocked (phase dual).
        psql "$u dbname=hr" -X -q -v ON_ERROR_STOP=1 -c "DELETE FROM hr_candidate_portal_sessions s
            WHERE NOT EXISTS (SELECT 1 FROM hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)" || exit 1
        for f in sql/migrations/*.sql; do
            echo "-- $f"
            timeout "$STEP_TIMEOUT" psql "$u dbname=hr" -X -v ON_ERROR_STOP=1 -f "$f" || exit 1
        done
    ) >"$work/demo.log" 2>&1 || {
        tail -n 30 "$work/demo.log" >&2
        echo "lint: the demo database could not be built (the end of its log is above)" >&2
        return 1
    }
    echo "demo database: fixture (scale 300), extension in schema extensions, $(ls sql/migrations/*.sql | wc -l) migrations applied"
}

# The installed extension serves the plans the golden files hold: the
# migration and rollback files it renders are the repository's.
plans_match_database() {
    local m pos f served diffs=0
    while IFS='|' read -r m pos; do
        f=$(printf '%03d_%s.sql' "$pos" "$m")
        for pair in "dual:sql/migrations" "not_applied:sql/rollback"; do
            served=$(psql "$DEMO_CONNINFO" -X -A -t -q -v ON_ERROR_STOP=1 \
                -c "SELECT hr_migrations.hr_migration_file('$m', '${pair%%:*}')") || return 1
            if ! diff -q <(printf '%s\n' "$served") "${pair#*:}/$f" >/dev/null; then
                echo "${pair#*:}/$f differs from what the installed extension renders (make install, or UPDATE_GOLDEN=1 cargo test --lib kinds::)"
                diffs=$((diffs + 1))
            fi
        done
    done < <(psql "$DEMO_CONNINFO" -X -A -t -q -c "SELECT migration, position FROM hr_migrations.hr_migration_registry WHERE builtin ORDER BY position")
    [ "$diffs" = 0 ] && echo "the installed extension renders every migration and rollback file as committed"
}

lint_sql() {
    scripts/ensure-deps.sh lint || { failed+=(deps); return; }
    work=$(mktemp -d /tmp/hrm-lint.XXXXXX)
    chmod 755 "$work"
    check squawk "$PY" scripts/lint-squawk.py
    if check demo-database demo_database; then
        check plans-vs-database plans_match_database
        check pgrls timeout "$STEP_TIMEOUT" "$PY" scripts/lint-pgrls.py "$DEMO_URL"
    fi
    cleanup
    work=
}

start=$SECONDS
for p in "${parts[@]}"; do
    "lint_$p"
done
echo
if ((${#failed[@]})); then
    echo "lint: FAILED: ${failed[*]} ($((SECONDS - start)) s)"
    exit 1
fi
echo "lint: clean: ${parts[*]} ($((SECONDS - start)) s)"
