#!/usr/bin/env bash
# make demo: a throwaway cluster under .demo/ with the role layout of
# Supabase's image (the bootstrap superuser supabase_admin; postgres demoted
# to a non-superuser that owns the database, public, extensions and every
# application table: tests/fixtures/supabase/), the fixture schema with
# sample data; the platform's one-time step as the superuser; then, as
# postgres, the migration files applied by the Supabase CLI and every phase,
# and between the steps what changed: a token verified by the hash path, a
# secret read back, the same tenant query as two organizations and as anon,
# an organization crypto-shredded,
# the preflight and the progress of the batch operations.
# The cluster keeps running afterwards so you can look around; the last
# lines say how to connect and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-10000}
# DEMO_DIR: where the cluster lives (default .demo); DEMO_CONF: extra
# postgresql.conf name=value pairs, space-separated (the leak test turns on
# log_statement = all and pg_stat_statements this way).
dir=${DEMO_DIR:-$PWD/.demo}
db=hr_demo
started=$(date +%s)
supabase=$PWD/.tools/supabase/node_modules/.bin/supabase
[ -x "$supabase" ] || { echo "demo: the Supabase CLI is missing: run scripts/ensure-deps.sh" >&2; exit 1; }

scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
# A throwaway keyring for migration 3: one random key, version 1, readable
# only by the server (docs/key-management.md). Never reuse it for real data.
mkdir -p "$dir/keys"
echo "1 $(head -c 32 /dev/urandom | base64)" >"$dir/keys/keyring"
[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
chmod 0400 "$dir/keys/keyring"
# shellcheck disable=SC2086 # DEMO_CONF is a list of name=value words
port=$(PG_SUPERUSER=supabase_admin scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
    hr_migrations.keyring_file="$dir/keys/keyring" ${DEMO_CONF:-})
url="host=127.0.0.1 port=$port user=postgres dbname=$db"
superuser="host=127.0.0.1 port=$port user=supabase_admin dbname=$db"

# psql as the database's admin (postgres, not a superuser); as an
# application request (PostgREST's authenticator, SET LOCAL ROLE, the
# request's JWT claims); and a section title.
run() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
request() {  # role claims sql [psql -v name=value ...]
    local role=$1 claims=$2 sql=$3
    shift 3
    psql "host=127.0.0.1 port=$port user=authenticator dbname=$db" -X -q -v ON_ERROR_STOP=1 \
        -v claims="$claims" "$@" <<SQL
BEGIN;
SET LOCAL ROLE $role;
SELECT set_config('request.jwt.claims', :'claims', true) \gset
$sql
COMMIT;
SQL
}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
status() { run -c "SELECT migration, phase, total, migrated, pending, blocked FROM hr_migration_status()"; }

say "cluster in $dir on 127.0.0.1:$port with Supabase's role layout; sample data (scale $scale)"
psql "host=127.0.0.1 port=$port user=supabase_admin dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
    -v db="$db" -f tests/fixtures/supabase/roles.sql
run -c "ALTER SCHEMA public OWNER TO postgres" -c "CREATE SCHEMA IF NOT EXISTS extensions"
run -f tests/fixtures/schema.sql 2>&1 | grep -v 'already exists' || true
run -v scale="$scale" -f tests/fixtures/generate.sql
psql "$superuser" -X -q -v ON_ERROR_STOP=1 -f tests/fixtures/supabase/layout.sql
run -c "SELECT rolname, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname IN ('postgres', 'supabase_admin') ORDER BY 1"

say "the platform's one-time step, as the superuser supabase_admin (keyring file and preload are in postgresql.conf)"
echo "   CREATE EXTENSION hr_migrations SCHEMA extensions; GRANT hr_migrations_admin TO postgres;"
psql "$superuser" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION hr_migrations SCHEMA extensions" \
    -c "GRANT hr_migrations_admin TO postgres"

say "from here on everything runs as postgres, not a superuser: the active key version for the database"
run -c "ALTER DATABASE $db SET hr_migrations.active_key_version = 1" \
    -c "ALTER DATABASE $db SET search_path = \"\$user\", public, extensions"
say "hr_preflight(): what to know before migrating (everything that is not ok)"
run -c "SELECT migration, check_name, status, detail FROM hr_preflight() WHERE status <> 'ok'"
say "hr_migration_status() before any migration"
status

# Sample rows the demo follows through the migrations.
ref=$(run -At -c "SELECT id FROM hr_references WHERE access_token ~ '^[A-Za-z0-9_-]{40,}$' ORDER BY id LIMIT 1")
# The legacy token the demo presents later, kept on the server: a token in
# the text of a statement would be in any statement log (log_statement).
run -c "CREATE TABLE demo_presented AS SELECT id, access_token AS token FROM hr_references WHERE id = '$ref'" \
    -c "GRANT SELECT ON demo_presented TO service_role"
org_a=$(run -At -c "SELECT id FROM pf_organizations ORDER BY name LIMIT 1")
org_b=$(run -At -c "SELECT id FROM pf_organizations ORDER BY name OFFSET 1 LIMIT 1")
integ=$(run -At -c "SELECT id FROM hr_job_board_integrations WHERE api_key <> '' AND api_secret IS NOT NULL ORDER BY id LIMIT 1")

say "the migration files into a Supabase project (make supabase-migrations DIR=$dir/project), applied by the Supabase CLI as postgres"
scripts/supabase-migrations.sh "$dir/project" | sed 's/^/  /'
(cd "$dir/project" && "$supabase" migration up --db-url "postgresql://postgres@127.0.0.1:$port/$db?sslmode=disable" 2>&1 \
    | grep -v 'profile' | sed 's/^/  /')
run -c "SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY version"
status
say "a legacy token still verifies, now by its hash (as service_role, the edge function's key)"
request service_role '{}' "
SELECT hr_verify_reference_token(id, token) AS legacy_token_verifies,
       hr_verify_reference_token(id, 'not-the-token') AS wrong_token_verifies FROM demo_presented;
SELECT method, success FROM hr_reference_token_validations ORDER BY id DESC LIMIT 2;"
run -c "DROP TABLE demo_presented"
say "new code issues tokens in the database: only the hash is stored, the token is shown once"
request service_role '{}' "
SELECT length(hr_issue_reference_token('$ref')) AS new_token_length;
SELECT access_token IS NULL AS plaintext_gone, length(access_token_hash) AS hash_length FROM hr_references WHERE id = '$ref';"

say "blocked sessions (candidate missing or without organization) keep the phase at dual; the demo deletes them"
run -c "SELECT migration, phase, pending, blocked, note FROM hr_migration_status() WHERE migration = 'portal_sessions'"
run -c "DELETE FROM hr_candidate_portal_sessions s
         WHERE NOT EXISTS (SELECT 1 FROM hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)" \
    -c "CALL hr_run_backfill('portal_sessions')"
say "the same tenant query as organization A and organization B"
for who in "authenticated {\"organization_id\":\"$org_a\"} A" "authenticated {\"organization_id\":\"$org_b\"} B"; do
    set -- $who
    request "$1" "$2" "SELECT '$3' AS caller, count(*) AS sessions_visible,
                              count(DISTINCT organization_id) AS organizations FROM hr_candidate_portal_sessions;"
done
say "and as anon: no privilege on the table since phase dual (it reads no session token)"
request anon '{}' "SELECT count(*) FROM hr_candidate_portal_sessions;" 2>&1 | sed 's/^/  /' || true

say "the secret reads back through the credential (values masked here), equal to the old columns"
request service_role '{}' "
SELECT key, left(value, 4) || '…(' || length(value) || ' chars)' AS value
  FROM jsonb_each_text(hr_integration_secret('$integ'));
SELECT hr_integration_secret(id) = jsonb_build_object('api_key', api_key, 'api_secret', api_secret,
                                                      'refresh_token', refresh_token) AS equal_to_old_columns,
       (SELECT left(encrypted_value, 12) || '…' FROM pf_credentials c WHERE c.id = i.credential_id) AS stored
  FROM hr_job_board_integrations i WHERE id = '$integ';"
say "hr_migration_status() after the migration files"
status

say "phase 3, as postgres: CALL hr_run_phase(<migration>, 'enforced') for each (phase change, then its work in committed batches)"
for m in reference_tokens portal_sessions integration_credentials; do
    run -c "CALL hr_run_phase('$m', 'enforced')" 2>&1 | grep -vE 'batch [0-9]+ done' || true
done
say "hr_migration_progress: each batch operation that ran"
run -c "SELECT migration, operation, state, rows_done, rows_failed, rows_per_second, batch_size, last_batch_ms
          FROM hr_migration_progress ORDER BY started_at"
say "enforced: plaintext refused"
request service_role '{}' "UPDATE hr_job_board_integrations SET api_key = 'plaintext' WHERE id = '$integ';" 2>&1 \
    | grep -E 'ERROR|HINT' || true

say "the contract phase: refused before hr_migrations.deprecation_period (30 days) ..."
run -c "SELECT hr_set_phase('reference_tokens', 'contracted')" 2>&1 | grep -E 'ERROR' || true
say "... and, with the period set to 0 for the demo (the admin may set it), legacy plaintext erased and its columns dropped"
for m in reference_tokens portal_sessions integration_credentials; do
    PGOPTIONS='-c hr_migrations.deprecation_period=0' run -c "CALL hr_run_phase('$m', 'contracted')" 2>&1 \
        | grep -vE 'batch [0-9]+ done' || true
done
request service_role '{}' "SELECT hr_verify_reference_token('$ref', 'still-not-the-token') AS wrong_token_verifies,
                                  hr_integration_secret('$integ') IS NOT NULL AS secret_still_reads;"

say "each organization's credentials are sealed with its own data key, stored wrapped by the keyring key (never the key itself)"
run -c "SELECT state, kek_version, count(*) AS organizations FROM hr_organization_keys GROUP BY 1, 2"
say "an organization leaves: postgres crypto-shreds its data keys; its credentials can no longer be read (backups too, once the keyring key is rotated and the old one removed: docs/key-management.md)"
gone=$(run -At -c "SELECT organization_id FROM pf_credentials GROUP BY 1 ORDER BY organization_id DESC LIMIT 1")
run -c "SELECT hr_shred_organization('$gone') AS credentials_made_unreadable" 2>&1 | grep -v '^NOTICE' || true
request service_role '{}' "SELECT hr_integration_secret(id) FROM hr_job_board_integrations
                            WHERE organization_id = '$gone' AND credential_id IS NOT NULL LIMIT 1;" 2>&1 \
    | grep -E 'ERROR' || true
request service_role '{}' "SELECT count(hr_integration_secret(id)) AS other_organizations_still_read
                             FROM hr_job_board_integrations WHERE organization_id <> '$gone';"

say "final hr_migration_status()"
run -c "SELECT * FROM hr_migration_status()"

echo
echo "demo took $(( $(date +%s) - started )) s. The cluster is still running:"
echo "  psql \"$url\"          (the admin, postgres)"
echo "  psql \"$superuser\"    (the platform's superuser)"
echo "  stop it with: scripts/pg-cluster.sh stop $dir   (or make clean)"
