#!/usr/bin/env bash
# make migrate: applies sql/migrations/ to a real database, as a DBA would.
#
#   scripts/migrate.sh DATABASE_URL [KEYRING [ACTIVE_KEY_VERSION]]
#   (or the environment variables of the same names)
#
# KEYRING is a path on the database server (the key itself never leaves
# it): the platform's step (docs/key-management.md), so it needs a
# superuser: hr_migrations.keyring_file is set with ALTER SYSTEM, the
# configuration reloaded, and the value read back before anything else
# runs. ACTIVE_KEY_VERSION is the database's admin's: it is set with ALTER
# DATABASE <db> SET hr_migrations.active_key_version (a member of
# hr_migrations_admin may; new sessions see it). Values reach SQL as psql
# variables, quoted by psql (:'name'), never pasted into SQL text.
# Then each file of sql/migrations/ runs in order with ON_ERROR_STOP; the
# first failure is reported with its file, step and reason, and the script
# stops. Every file is idempotent: after fixing the cause, run it again.
# Nothing but KEYRING needs a superuser: on Supabase, connect as postgres.
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
    super=$(psql_ -At -c "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user")
    if [ "$super" != t ]; then
        echo "migrate: KEYRING sets hr_migrations.keyring_file, the platform superuser's setting (ALTER SYSTEM):" >&2
        echo "migrate: ask your platform to set it (docs/key-management.md), then run make migrate without KEYRING" >&2
        exit 2
    fi
    # LOAD defines the extension's settings in this session, so ALTER SYSTEM checks them.
    psql_ -v keyring="$keyring" <<'SQL'
LOAD 'hr_migrations';
ALTER SYSTEM SET hr_migrations.keyring_file = :'keyring';
SELECT pg_catalog.pg_reload_conf() \gset
SQL
    # A reload is asynchronous: read the value back until the server has it.
    for i in $(seq 1 50); do
        ok=$(psql_ -At -v keyring="$keyring" <<'SQL'
LOAD 'hr_migrations';
SELECT pg_catalog.current_setting('hr_migrations.keyring_file') OPERATOR(pg_catalog.=) :'keyring';
SQL
)
        [ "$ok" = t ] && break
        [ "$i" = 50 ] && { echo "migrate: the server did not take the new keyring setting after reload (check its log)" >&2; exit 1; }
        sleep 0.1
    done
    echo "   reloaded and confirmed"
fi
if [ -n "$active" ]; then
    echo "== hr_migrations.active_key_version = $active for this database (ALTER DATABASE; new sessions see it)"
    db=$(psql_ -At -c "SELECT pg_catalog.current_database()")
    psql_ -v db="$db" -v active="$active" <<'SQL'
ALTER DATABASE :"db" SET hr_migrations.active_key_version = :'active';
SQL
fi

for f in sql/migrations/*.sql; do
    echo "== $f"
    log=$(mktemp)
    if ! psql "$url" -X -v ON_ERROR_STOP=1 -f "$f" 2>&1 | tee "$log"; then
        # psql reports "psql:<file>:<line>: ERROR: ..."; name the statement of that line.
        where=$(grep -m1 -oE 'psql:[^:]+:[0-9]+: (ERROR|FATAL)' "$log" || true)
        file=$(echo "$where" | cut -d: -f2)
        line=$(echo "$where" | cut -d: -f3)
        step=""
        if [ -n "$file" ] && [ -f "$file" ]; then
            step=$(sed -n "${line}p" "$file" | cut -c1-100)
        fi
        reason=$(grep -m1 -E 'ERROR|FATAL' "$log" | sed -E 's/^.*(ERROR|FATAL):[[:space:]]*//' || true)
        rm -f "$log"
        echo >&2
        echo "migrate: FAILED in $f${file:+ line $line}${step:+ ($step)}: $reason" >&2
        echo "migrate: nothing after that statement ran; fix the cause and run make migrate again (every step is idempotent)." >&2
        exit 1
    fi
    rm -f "$log"
done
echo "== done"
psql "$url" -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT migration, phase, total, migrated, pending, blocked FROM hr_migrations.hr_migration_status();
SQL
