#!/usr/bin/env bash
# make migrate: applies sql/migrations/ to a real database, as a DBA would.
#
#   scripts/migrate.sh DATABASE_URL [KEYRING [ACTIVE_KEY_VERSION]]
#   (or the environment variables of the same names)
#
# KEYRING is a path on the database server (the key itself never leaves
# it); with it, hr_migrations.keyring_file (and hr_migrations.active_key_version)
# are set with ALTER SYSTEM, the configuration is reloaded, and the new
# values are read back before anything else runs. Values reach SQL as psql
# variables, quoted by psql (:'name'), never pasted into SQL text.
# Then each file of sql/migrations/ runs in order with ON_ERROR_STOP; the
# first failure is reported with its file, step and reason, and the script
# stops. Every file is idempotent: after fixing the cause, run it again.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${1:-${DATABASE_URL:-}}
keyring=${2:-${KEYRING:-}}
active=${3:-${ACTIVE_KEY_VERSION:-}}
if [ -z "$url" ]; then
    echo "usage: scripts/migrate.sh DATABASE_URL [KEYRING [ACTIVE_KEY_VERSION]]" >&2
    echo "   or: make migrate DATABASE_URL=postgres://... [KEYRING=/path/on/the/server ACTIVE_KEY_VERSION=1]" >&2
    exit 2
fi
if [ -n "$active" ] && ! [[ "$active" =~ ^[1-9][0-9]{0,9}$ ]]; then
    echo "migrate: ACTIVE_KEY_VERSION must be a positive integer (got something else)" >&2
    exit 2
fi

psql_() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ -n "$keyring" ]; then
    echo "== hr_migrations.keyring_file: a path on the database server (the key never leaves it)"
    # LOAD defines the extension's settings in this session, so ALTER SYSTEM knows them.
    psql_ -v keyring="$keyring" -v active="${active:-}" <<'SQL'
LOAD 'hr_migrations';
ALTER SYSTEM SET hr_migrations.keyring_file = :'keyring';
SELECT :'active' <> '' AS set_active \gset
\if :set_active
ALTER SYSTEM SET hr_migrations.active_key_version = :'active';
\endif
SELECT pg_reload_conf() \gset
SQL
    # A reload is asynchronous: read the values back until the server has them.
    for i in $(seq 1 50); do
        ok=$(psql_ -At -v keyring="$keyring" -v active="${active:-}" <<'SQL'
LOAD 'hr_migrations';
SELECT current_setting('hr_migrations.keyring_file') = :'keyring'
       AND (:'active' = '' OR current_setting('hr_migrations.active_key_version') = :'active');
SQL
)
        [ "$ok" = t ] && break
        [ "$i" = 50 ] && { echo "migrate: the server did not take the new keyring settings after reload (check its log)" >&2; exit 1; }
        sleep 0.1
    done
    echo "   reloaded and confirmed"
fi

for f in sql/migrations/*.sql; do
    echo "== $f"
    log=$(mktemp)
    if ! psql "$url" -X -v ON_ERROR_STOP=1 -f "$f" 2>&1 | tee "$log"; then
        # psql reports "psql:<file>:<line>: ERROR: ..."; name the step of that line.
        where=$(grep -m1 -oE 'psql:[^:]+:[0-9]+: (ERROR|FATAL)' "$log" || true)
        file=$(echo "$where" | cut -d: -f2)
        line=$(echo "$where" | cut -d: -f3)
        step=""
        if [ -n "$file" ] && [ -f "$file" ]; then
            step=$(head -n "$line" "$file" | grep -E '^-- Step [0-9A-Z]+' | tail -n1 | sed -E 's/^-- (Step [0-9A-Z]+).*/\1/' || true)
            [ -n "$step" ] || [ "$(basename "$file")" != preamble.psql ] || step=preflight
        fi
        reason=$(grep -m1 -E 'ERROR|FATAL' "$log" | sed -E 's/^.*(ERROR|FATAL):[[:space:]]*//' || true)
        rm -f "$log"
        echo >&2
        echo "migrate: FAILED in $f${step:+, $step}${file:+ ($file line $line)}: $reason" >&2
        echo "migrate: nothing after that step ran; fix the cause and run make migrate again (every step is idempotent)." >&2
        exit 1
    fi
    rm -f "$log"
done
echo "== done"
psql "$url" -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT n.nspname AS hr_schema FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'hr_migrations' \gset
SELECT migration, phase, total, migrated, pending, blocked FROM :"hr_schema".hr_migration_status();
SQL
