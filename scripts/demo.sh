#!/usr/bin/env bash
# make demo: a throwaway cluster under .demo/, the fixture schema with sample
# data, every migration in sql/migrations applied with psql and then taken to
# its enforced phase, and hr_migration_status() printed along the way.
# The cluster keeps running afterwards so you can look around; the last lines
# say how to connect and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-10000}
dir=$PWD/.demo
db=hr_demo

scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
# A throwaway keyring for migration 3: one random key, version 1, readable
# only by the server (docs/key-management.md). Never reuse it for real data.
mkdir -p "$dir/keys"
echo "1 $(head -c 32 /dev/urandom | base64)" >"$dir/keys/keyring"
[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
chmod 0400 "$dir/keys/keyring"
port=$(scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
    hr_migrations.keyring_file="$dir/keys/keyring" hr_migrations.active_key_version=1)
url="host=127.0.0.1 port=$port user=postgres dbname=$db"
run() { psql "$url" -X -v ON_ERROR_STOP=1 "$@"; }
status() {
    echo
    echo "-- hr_migration_status() $1"
    run -c "SELECT * FROM hr_migration_status()"
}

echo "== cluster in $dir on 127.0.0.1:$port"
psql "host=127.0.0.1 port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE $db"
echo "== fixture schema and sample data (scale $scale)"
run -q -f tests/fixtures/schema.sql
run -q -v scale="$scale" -f tests/fixtures/generate.sql
run -q -c "CREATE EXTENSION hr_migrations SCHEMA extensions" \
       -c "ALTER DATABASE $db SET search_path = public, extensions"
status "before any migration"

for f in sql/migrations/*.sql; do
    echo
    echo "== psql -f $f"
    run -q -f "$f"
done
status "after sql/migrations (phase migrated where every row could be)"

# portal_sessions stays dual: the fixture has sessions whose candidate is
# missing or has no organization. Resolve them the way the runbook says
# (here: delete them; a real DBA decides per row), then finish the backfill.
echo
echo "== portal_sessions: blocked sessions (fixture) are resolved, then the backfill is finished"
run -q -c "DELETE FROM hr_candidate_portal_sessions s USING hr_candidate_portal_sessions x
            LEFT JOIN hr_candidates c ON c.id = x.candidate_id
           WHERE s.id = x.id AND c.organization_id IS NULL" \
       -c "CALL hr_run_backfill('portal_sessions')"

echo
echo "== phase 3: hr_set_phase(<migration>, 'enforced') for each applied migration"
for m in $(run -At -c "SELECT migration FROM hr_migration_status() WHERE phase = 'migrated'"); do
    run -q -o /dev/null -c "SELECT hr_set_phase('$m', 'enforced')"
done
status "final"

echo
echo "The demo cluster is still running:"
echo "  psql \"$url\""
echo "  stop it with: scripts/pg-cluster.sh stop .demo   (or make clean)"
