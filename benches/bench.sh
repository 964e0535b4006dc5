#!/usr/bin/env bash
# make bench: hr_migrations against what its users would use instead, side
# by side, in one run on one machine, on a schema built apart from the
# tests' fixture. Prints one table: operation, rows, ours, baseline, ratio
# (baseline time / our time: above 1 we are faster), and the machine.
#
#   benches/bench.sh [SCALE]      SCALE=1 (default): the sizes of the issue
#                                 (200k tokens, 50k secrets, 20k/30k/300k
#                                 integrations and 1M other credentials,
#                                 200k/300k sessions, 1M references, 1M
#                                 sessions); SCALE=0.02 runs in about a minute
#                                 and is the smoke test make test runs.
#   REPS=n                        runs per figure (default 5; the median is shown)
#   BENCH_SESSIONS=n              the session backfill at n sessions too (the
#                                 issue's 3M: BENCH_SESSIONS=3000000, about
#                                 10 more minutes; one run of each side)
#
# It starts its own cluster under .bench/ (127.0.0.1, fsync off like every
# throwaway cluster here: commit-heavy baselines gain the most from that)
# and stops it at the end. docs/benchmarks.md holds a full run and says
# where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-${SCALE:-1}}
reps=${REPS:-5}
dir=$PWD/.bench
out=$dir/results.tsv

n() { awk -v s="$scale" -v b="$1" 'BEGIN { v = int(b * s); if (v < 100) v = 100; print v }'; }
N_TOKENS=$(n 200000)
N_SECRETS=$(n 50000)
N_PGP=$(n 2000)          # pgp_sym_* are ~1000x slower: fewer rows, compared per row
N_MOVE_A=$(n 20000)
N_MOVE_B=$(n 30000)
N_MOVE_C=$(n 300000)
N_OTHER_CREDS=$(n 1000000)
N_SESS_A=$(n 200000)
N_SESS_B=$(n 300000)
N_REWRAP=$(n 100000)
N_REFS=$(n 1000000)
N_TENANT=$(n 1000000)
PGBENCH_SECS=$(awk -v s="$scale" 'BEGIN { print (s >= 0.5 ? 10 : 2) }')

scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
mkdir -p "$dir/keys"
echo "1 $(head -c 32 /dev/urandom | base64)" >"$dir/keys/keyring"
echo "2 $(head -c 32 /dev/urandom | base64)" >>"$dir/keys/keyring"
[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
chmod 0400 "$dir/keys/keyring"
port=$(scripts/pg-cluster.sh start "$dir" shared_preload_libraries=hr_migrations \
    hr_migrations.keyring_file="$dir/keys/keyring" hr_migrations.active_key_version=1 \
    shared_buffers=1GB max_wal_size=8GB checkpoint_timeout=30min log_min_messages=warning)
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1 || true' EXIT
base="host=127.0.0.1 port=$port user=postgres"
: >"$out"

say() { printf '.. %s\n' "$*" >&2; }
sql() { local db=$1; shift; psql "$base dbname=$db" -X -q -v ON_ERROR_STOP=1 "$@"; }

# Times (ms, median of $reps runs) one or more statements (their times are
# added up), after an optional reset that is not timed; all in one session.
time_sql() {  # db reset stmts [reps]
    local db=$1 reset=$2 stmt=$3 r=${4:-$reps} script i
    script=$(mktemp)
    for i in $(seq 1 "$r"); do
        [ -n "$reset" ] && printf '%s\n' "$reset" >>"$script"
        printf '\\echo @@rep\n\\timing on\n%s\n\\timing off\n' "$stmt" >>"$script"
    done
    sql "$db" -f "$script" 2>&1 \
        | awk '/^@@rep/ { if (n++) print t; t = 0 } /^Time: / { t += $2 } END { if (n) print t }' \
        | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
    rm -f "$script"
}

# Wall-clock ms of a psql script run from the shell (for the client-side
# baseline, whose thousands of statements each print a time).
time_client() {  # db reset script_file
    local t0 t1
    printf "%s\n" "$2" | sql "$1" >/dev/null 2>&1
    t0=$(date +%s%N)
    sql "$1" -f "$3" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

# Longest batch (ms) an engine run printed.
longest_batch() { grep -oE 'rows in [0-9.]+ ms' | awk '{ if ($3 > m) m = $3 } END { print m + 0 }'; }

row() {  # operation rows ours_ms baseline_name baseline_ms [note] [goal: the least ratio, or 1/T for "at most T times the baseline's time"]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" "${7:-}" >>"$out"
    say "$1: ours $3 ms, $4 $5 ms"
}

# ---------------------------------------------------------------------------
say "micro: database micro (pgcrypto, tokens, secrets)"
psql "$base dbname=postgres" -X -q -c "CREATE DATABASE micro"
sql micro <<SQL
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hr_migrations;
CREATE TABLE tok AS SELECT hr_generate_token() AS t FROM generate_series(1, $N_TOKENS);
CREATE TABLE hv AS SELECT t, hr_hash_token(t) AS h, md5(t) AS m FROM tok;
-- 200-byte secrets.
CREATE TABLE sec AS SELECT left(repeat(md5(g::text), 7), 200) AS v FROM generate_series(1, $N_SECRETS) g;
CREATE TABLE pgp AS SELECT v FROM sec LIMIT $N_PGP;
CREATE TABLE k AS SELECT gen_random_bytes(32) AS key;
CREATE TABLE sec_ours AS SELECT hr_encrypt_credential(v, 'aad') AS e FROM sec;
CREATE TABLE sec_cbc AS SELECT iv, encrypt_iv(convert_to(v, 'UTF8'), (SELECT key FROM k), iv, 'aes-cbc') AS e
  FROM (SELECT v, gen_random_bytes(16) AS iv FROM sec) s;
CREATE TABLE pgp_enc AS SELECT pgp_sym_encrypt(v, 'a passphrase') AS e FROM pgp;
VACUUM ANALYZE;
SQL

ours=$(time_sql micro "" "SELECT count(hr_hash_token(t)) FROM tok;")
base_=$(time_sql micro "" "SELECT count(encode(s || digest(s || convert_to(t, 'UTF8'), 'sha256'), 'base64')) FROM (SELECT t, gen_random_bytes(16) AS s FROM tok) x;")
floor=$(time_sql micro "" "SELECT count(md5(t)) FROM tok;")
row "hash a token" "$N_TOKENS" "$ours" "pgcrypto: encode(s || digest(s || t), base64)" "$base_" "" 6
row "hash a token" "$N_TOKENS" "$ours" "md5(t) (a floor, not a hash to use)" "$floor"

ours=$(time_sql micro "" "SELECT count(*) FILTER (WHERE hr_verify_token(t, h)) FROM hv;")
base_=$(time_sql micro "" "SELECT count(*) FILTER (WHERE substr(decode(h, 'base64'), 17) = digest(substr(decode(h, 'base64'), 1, 16) || convert_to(t, 'UTF8'), 'sha256')) FROM hv;")
floor=$(time_sql micro "" "SELECT count(*) FILTER (WHERE md5(t) = m) FROM hv;")
row "verify a token" "$N_TOKENS" "$ours" "pgcrypto: decode + digest + compare" "$base_" "" 4.5
row "verify a token" "$N_TOKENS" "$ours" "md5(t) = m (a floor)" "$floor"

ours=$(time_sql micro "" "SELECT count(hr_encrypt_credential(v, 'aad')) FROM sec;")
base_=$(time_sql micro "" "SELECT count(encrypt_iv(convert_to(v, 'UTF8'), (SELECT key FROM k), gen_random_bytes(16), 'aes-cbc')) FROM sec;")
row "encrypt a 200-byte secret" "$N_SECRETS" "$ours" "pgcrypto encrypt_iv AES-CBC (unauthenticated)" "$base_" "" 3
pgp_ms=$(time_sql micro "" "SELECT count(pgp_sym_encrypt(v, 'a passphrase')) FROM pgp;" 3)
row "encrypt a 200-byte secret" "$N_SECRETS" "$ours" "pgcrypto pgp_sym_encrypt, defaults (per row, from $N_PGP rows)" \
    "$(awk -v p="$pgp_ms" -v a="$N_PGP" -v b="$N_SECRETS" 'BEGIN { printf "%.1f", p / a * b }')"

ours=$(time_sql micro "" "SELECT count(hr_decrypt_credential(e, 'aad')) FROM sec_ours;")
base_=$(time_sql micro "" "SELECT count(decrypt_iv(e, (SELECT key FROM k), iv, 'aes-cbc')) FROM sec_cbc;")
row "decrypt a 200-byte secret" "$N_SECRETS" "$ours" "pgcrypto decrypt_iv AES-CBC" "$base_"
pgp_ms=$(time_sql micro "" "SELECT count(pgp_sym_decrypt(e, 'a passphrase')) FROM pgp_enc;" 3)
row "decrypt a 200-byte secret" "$N_SECRETS" "$ours" "pgcrypto pgp_sym_decrypt, defaults (per row, from $N_PGP rows)" \
    "$(awk -v p="$pgp_ms" -v a="$N_PGP" -v b="$N_SECRETS" 'BEGIN { printf "%.1f", p / a * b }')"

# ---------------------------------------------------------------------------
# A schema of our own (not the tests' fixture), Supabase-style, with the
# columns the migrations need.
make_schema() {  # db [extension version]
    sql "$1" <<SQL
DO \$\$ BEGIN
  CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS;
EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;
CREATE SCHEMA extensions;
GRANT USAGE ON SCHEMA public, extensions TO anon, authenticated, service_role;
CREATE EXTENSION hr_migrations ${2:+VERSION '$2'} SCHEMA extensions;
CREATE TABLE pf_organizations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
CREATE TABLE pf_profiles (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), organization_id uuid REFERENCES pf_organizations);
CREATE TABLE hr_candidates (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), organization_id uuid REFERENCES pf_organizations,
                            full_name text NOT NULL DEFAULT 'c', updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE hr_references (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), candidate_id uuid NOT NULL REFERENCES hr_candidates,
                            referee_name text NOT NULL DEFAULT 'r', access_token text,
                            created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE hr_candidate_portal_sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), candidate_id uuid,
                            session_token text, created_at timestamptz NOT NULL DEFAULT now(),
                            updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE pf_credentials (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), organization_id uuid NOT NULL REFERENCES pf_organizations,
                            credential_type text NOT NULL, name text NOT NULL, encrypted_value text NOT NULL,
                            created_by uuid REFERENCES pf_profiles, created_at timestamptz NOT NULL DEFAULT now(),
                            updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE hr_job_board_integrations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                            organization_id uuid NOT NULL REFERENCES pf_organizations, job_board_type text NOT NULL,
                            api_key text, api_secret text, refresh_token text, created_by uuid REFERENCES pf_profiles,
                            created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO pf_organizations (name) SELECT 'org ' || g FROM generate_series(1, 1000) g;
INSERT INTO pf_profiles (organization_id) SELECT id FROM pf_organizations;
SQL
    sql "$1" -c "ALTER DATABASE $1 SET search_path = public, extensions"
}

# The credential move: from an empty pf_credentials, and from one already
# holding other credentials. Ours: CALL hr_run_backfill (set-based batches,
# each ciphertext opened again before commit). Baselines: (a) a plain
# set-based SQL copy of the same rows, links and log, without encryption;
# (b) the plan's helper script: per integration three statements over a
# loopback connection (psql \gexec), without a transaction.
move_bench() {  # db n_integrations others [reps] [plan: the plan's script too, default yes]
    local db=$1 count=$2 others=$3 r=${4:-3} with_plan=${5:-yes}
    say "credential move: $count integrations, $others other credentials"
    psql "$base dbname=postgres" -X -q -c "CREATE DATABASE $db"
    make_schema "$db"
    sql "$db" <<SQL
INSERT INTO hr_job_board_integrations (organization_id, job_board_type, api_key, api_secret, refresh_token, created_by)
SELECT o.id, (ARRAY['linkedin','indeed','greenhouse'])[1 + g % 3], 'key_' || md5('k' || g), 'secret_' || md5('s' || g),
       'refresh_' || md5('r' || g), p.id
  FROM generate_series(1, $count) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pf_organizations) o ON o.n = 1 + g % 1000
  JOIN pf_profiles p ON p.organization_id = o.id;
INSERT INTO pf_credentials (organization_id, credential_type, name, encrypted_value)
SELECT o.id, 'other', 'other ' || g, 'hrc1.1.' || translate(encode(sha256(g::text::bytea) || sha256((g + 1)::text::bytea), 'base64'), E'+/=\n', '-_')
  FROM generate_series(1, $others) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pf_organizations) o ON o.n = 1 + g % 1000;
VACUUM ANALYZE;
SQL
    sql "$db" -f sql/migrations/003_integration_credentials.sql -o /dev/null 2>/dev/null
    local reset="BEGIN; SET LOCAL session_replication_role = replica;
UPDATE hr_job_board_integrations SET credential_id = NULL WHERE credential_id IS NOT NULL;
DELETE FROM pf_credentials WHERE credential_type <> 'other';
DELETE FROM pf_credential_migrations;
DELETE FROM hr_migrations.hr_batch_progress; COMMIT;
VACUUM hr_job_board_integrations, pf_credentials, pf_credential_migrations;"
    local ours plain plan longest before after scans
    # The baselines run without our dual-write triggers (they are what the
    # baselines lack) but with every foreign key checked, as the plan's
    # tables have them.
    local no_triggers="ALTER TABLE hr_job_board_integrations DISABLE TRIGGER USER; ALTER TABLE pf_credentials DISABLE TRIGGER USER;"
    local triggers_back="ALTER TABLE hr_job_board_integrations ENABLE TRIGGER USER; ALTER TABLE pf_credentials ENABLE TRIGGER USER;"
    # Sequential scans of pf_credentials during one move (the cached-plan
    # trap of an empty table), and its longest batch.
    printf "%s\n" "$reset" | sql "$db" >/dev/null 2>&1
    before=$(sql "$db" -At -c "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'pf_credentials'")
    longest=$(sql "$db" -c "CALL hr_run_backfill('integration_credentials')" 2>&1 | longest_batch)
    sleep 0.6  # statistics reach the collector
    after=$(sql "$db" -At -c "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'pf_credentials'")
    scans=$((after - before))
    ours=$(time_sql "$db" "$reset" "CALL hr_run_backfill('integration_credentials');" "$r")
    plain=$(time_sql "$db" "$reset" "BEGIN; $no_triggers
WITH src AS MATERIALIZED (
    SELECT i.id, i.organization_id, i.job_board_type, i.created_by, gen_random_uuid() AS cid,
           jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret, 'refresh_token', i.refresh_token)::text AS secret
      FROM hr_job_board_integrations i
     WHERE i.credential_id IS NULL AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)
), ins AS (
    INSERT INTO pf_credentials (id, organization_id, credential_type, name, encrypted_value, created_by)
    SELECT cid, organization_id, 'job_board_' || job_board_type, job_board_type || ' - Migrated',
           'hrc1.1.' || translate(encode(convert_to(secret, 'UTF8'), 'base64'), E'+/=\n', '-_'), created_by FROM src
), logged AS (
    INSERT INTO pf_credential_migrations (table_name, record_id, credential_type, notes)
    SELECT 'hr_job_board_integrations', id, 'job_board_' || job_board_type, 'copied' FROM src
)
UPDATE hr_job_board_integrations i SET credential_id = s.cid FROM src s WHERE i.id = s.id;
$triggers_back COMMIT;" "$r")
    cat >"$dir/plan_script.sql" <<PLAN
$no_triggers
SELECT format('INSERT INTO pf_credentials (id, organization_id, credential_type, name, encrypted_value, created_by) VALUES (%L, %L, %L, %L, %L, %L)',
              cid, organization_id, 'job_board_' || job_board_type, job_board_type || ' - Migrated',
              'hrc1.1.' || translate(encode(convert_to(secret, 'UTF8'), 'base64'), E'+/=\n', '-_'), created_by),
       format('UPDATE hr_job_board_integrations SET credential_id = %L WHERE id = %L', cid, id),
       format('INSERT INTO pf_credential_migrations (table_name, record_id, credential_type, notes) VALUES (%L, %L, %L, %L)',
              'hr_job_board_integrations', id, 'job_board_' || job_board_type, 'Migrated plaintext credentials to pf_credentials')
  FROM (SELECT i.*, gen_random_uuid() AS cid,
               jsonb_build_object('api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token)::text AS secret
          FROM hr_job_board_integrations i WHERE credential_id IS NULL) s \\gexec
$triggers_back
PLAN
    [ "$with_plan" = yes ] && plan=$(time_client "$db" "$reset" "$dir/plan_script.sql")
    local label="credential move (pf_credentials empty)"
    [ "$others" = 0 ] || label="credential move ($others other credentials)"
    local note="longest batch $longest ms; $scans seq scans of pf_credentials"
    row "$label" "$count" "$ours" "plain set-based SQL copy, no encryption" "$plain" "$note" 1/1.3
    [ "$with_plan" = yes ] && row "$label" "$count" "$ours" "the plan's script: 3 statements per row over loopback" "$plan" "$note"
    psql "$base dbname=postgres" -X -q -c "DROP DATABASE $db"
}
move_bench move_a "$N_MOVE_A" 0
move_bench move_b "$N_MOVE_B" 0
move_bench move_c "$N_MOVE_A" "$N_OTHER_CREDS"
# 300k integrations (#17): one run of each side, without the plan's script
# (three statements a row over loopback: minutes at this size).
move_bench move_d "$N_MOVE_C" 0 1 no

# ---------------------------------------------------------------------------
# The backfills against one UPDATE each (the plan's for sessions; the
# nearest one-statement equivalent for tokens), longest batch reported.
say "backfills"
# A database of n candidates in 1000 organizations, a session each,
# references with tokens for the first n_references, migrations 001 and 002 applied.
fills_db() {  # db n_sessions n_references
    psql "$base dbname=postgres" -X -q -c "CREATE DATABASE $1"
    make_schema "$1"
    sql "$1" <<SQL
INSERT INTO hr_candidates (organization_id)
SELECT o.id FROM generate_series(1, $2) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pf_organizations) o ON o.n = 1 + g % 1000;
INSERT INTO hr_candidate_portal_sessions (candidate_id, session_token) SELECT id, md5(id::text) FROM hr_candidates;
INSERT INTO hr_references (candidate_id, access_token)
SELECT id, translate(encode(sha256(random()::text::bytea), 'base64'), E'+/=\n', '-_') FROM hr_candidates LIMIT $3;
VACUUM ANALYZE;
SQL
    for f in 001_reference_tokens 002_portal_sessions; do
        sql "$1" -f "sql/migrations/$f.sql" -o /dev/null 2>/dev/null
    done
}
fills_db fills "$N_SESS_B" "$N_SESS_A"
sess_bench() {  # n [db] [reps]
    local count=$1 db=${2:-fills} r=${3:-3} reset ours plain longest
    reset="BEGIN; SET LOCAL session_replication_role = replica;
UPDATE hr_candidate_portal_sessions SET organization_id = NULL
 WHERE id IN (SELECT id FROM hr_candidate_portal_sessions ORDER BY id LIMIT $count);
DELETE FROM hr_migrations.hr_batch_progress; COMMIT; VACUUM ANALYZE hr_candidate_portal_sessions;"
    ours=$(time_sql "$db" "$reset" "CALL hr_run_backfill('portal_sessions');" "$r")
    # The plan's UPDATE with the plan's foreign key checked, without our triggers.
    plain=$(time_sql "$db" "$reset" "BEGIN; ALTER TABLE hr_candidate_portal_sessions DISABLE TRIGGER USER;
UPDATE hr_candidate_portal_sessions s SET organization_id = c.organization_id
  FROM hr_candidates c WHERE s.candidate_id = c.id AND s.organization_id IS NULL;
ALTER TABLE hr_candidate_portal_sessions ENABLE TRIGGER USER; COMMIT;" "$r")
    printf "%s\n" "$reset" | sql "$db" >/dev/null 2>&1
    longest=$(sql "$db" -c "CALL hr_run_backfill('portal_sessions')" 2>&1 | longest_batch)
    row "session backfill" "$count" "$ours" "the plan's single UPDATE ... FROM" "$plain" "longest batch $longest ms" 0.8
}
sess_bench "$N_SESS_A"
sess_bench "$N_SESS_B"
# BENCH_SESSIONS=3000000: the session backfill at that size too, in a
# database of its own (one run of each: a reset alone rewrites the table).
if [ "${BENCH_SESSIONS:-0}" -gt 0 ]; then
    say "session backfill at $BENCH_SESSIONS sessions"
    fills_db fills_big "$BENCH_SESSIONS" 0
    sess_bench "$BENCH_SESSIONS" fills_big 1
    psql "$base dbname=postgres" -X -q -c "DROP DATABASE fills_big"
fi
reset="BEGIN; SET LOCAL session_replication_role = replica;
UPDATE hr_references SET access_token_hash = NULL; DELETE FROM hr_migrations.hr_batch_progress; COMMIT;
VACUUM ANALYZE hr_references;"
ours=$(time_sql fills "$reset" "CALL hr_run_backfill('reference_tokens');" 3)
plain=$(time_sql fills "$reset" "BEGIN; ALTER TABLE hr_references DISABLE TRIGGER USER;
UPDATE hr_references SET access_token_hash = hr_hash_token(access_token)
 WHERE access_token IS NOT NULL AND access_token_hash IS NULL;
ALTER TABLE hr_references ENABLE TRIGGER USER; COMMIT;" 3)
printf "%s\n" "$reset" | sql fills >/dev/null 2>&1
longest=$(sql fills -c "CALL hr_run_backfill('reference_tokens')" 2>&1 | longest_batch)
row "token backfill" "$N_SESS_A" "$ours" "one UPDATE ... SET hash = hr_hash_token(token)" "$plain" "longest batch $longest ms"

# Key rotation, reading a secret, resealing and rollback: $N_REWRAP
# credentials over 1000 organizations. Rotation (a new keyring key, then
# CALL hr_run_rewrap()): ours rewraps 1000 data keys and no credential;
# the baseline is 0.2.0's rewrap of the same credentials (envelopes v1,
# every one opened and sealed again under the new key), run with 0.2.0's
# own SQL and script on this library (which keeps 0.2.0's C functions).
say "key rotation, reads, reseal and rollback"
wrap_world() {  # db [extension version] [script]
    psql "$base dbname=postgres" -X -q -c "CREATE DATABASE $1"
    make_schema "$1" "${2:-}"
    sql "$1" <<SQL
INSERT INTO hr_job_board_integrations (organization_id, job_board_type, api_key, api_secret, refresh_token)
SELECT o.id, 'linkedin', 'key_' || md5('k' || g), 'secret_' || md5('s' || g), 'refresh_' || md5('r' || g)
  FROM generate_series(1, $N_REWRAP) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pf_organizations) o ON o.n = 1 + g % 1000;
VACUUM ANALYZE;
SQL
    sql "$1" -f "${3:-sql/migrations/003_integration_credentials.sql}" >/dev/null 2>&1
    # The new keyring key, for this database's new sessions.
    sql "$1" -c "ALTER DATABASE $1 SET hr_migrations.active_key_version = 2" >/dev/null
}
rewrap_ms() { sql "$1" -c "\\timing on" -c "CALL hr_run_rewrap()" 2>&1 | grep -E '^Time: ' | tail -n1 | awk '{print $2}'; }
wrap_world wrap020 0.2.0 tests/fixtures/v0.2.0/migrations/003_integration_credentials.sql
wrap_world wrap
base_=$(rewrap_ms wrap020)
ours=$(rewrap_ms wrap)
keys=$(sql wrap -At -c "SELECT count(*) FROM hr_migrations.hr_organization_keys WHERE kek_version = 2")
row "rotation: a new keyring key, then CALL hr_run_rewrap()" "$N_REWRAP" "$ours" "0.2.0's rewrap (envelopes v1: every credential resealed)" "$base_" \
    "$keys data keys rewrapped, 0 credentials rewritten"

# Reading a secret as the application does (hr_integration_secret, one
# call per integration, one session): envelope v2 (the organization's
# cached data key) against the same credentials as envelopes v1 (the
# keyring key directly).
read_all="SELECT count(hr_integration_secret(id)) FROM hr_job_board_integrations;"
ours=$(time_sql wrap "" "$read_all")
sql wrap -q <<'SQL' >/dev/null
UPDATE pf_credentials SET encrypted_value = hr_encrypt_credential(
         hr_migrations.hr_open_credential(organization_id, encrypted_value, hr_credential_aad(organization_id, id)),
         hr_credential_aad(organization_id, id));
VACUUM ANALYZE pf_credentials;
SQL
base_=$(time_sql wrap "" "$read_all")
row "read a secret (hr_integration_secret), envelope v2" "$N_REWRAP" "$ours" "the same read of envelopes v1 (keyring key directly)" "$base_" \
    "data keys cached per backend"

# Resealing every credential (here: from v1 to each organization's data
# key, as after the update from 0.2.0), then the rollback (ours only).
out_rewrap=$(sql wrap -c "\\timing on" -c "CALL hr_run_rewrap()" 2>&1)
ours=$(echo "$out_rewrap" | grep -E '^Time: ' | tail -n1 | awk '{print $2}')
row "reseal every credential (v1 to v2), CALL hr_run_rewrap()" "$N_REWRAP" "$ours" "" "" "longest batch $(echo "$out_rewrap" | longest_batch) ms"
# The batch function called again and again (a DBA's loop, or a job), after
# every organization's key rotated: each call must cost what the first did,
# as the engine's cursor promises. First five full calls against the last
# five.
sql wrap -At -c "SELECT count(hr_rotate_organization_key(o)) FROM (SELECT DISTINCT organization_id FROM pf_credentials) s(o)" >/dev/null
size=$(awk -v n="$N_REWRAP" 'BEGIN { s = int(n / 30); if (s > 2000) s = 2000; if (s < 50) s = 50; print s }')
{ echo '\timing on'; for _ in $(seq 1 $(( N_REWRAP / size + 2 ))); do echo "SELECT hr_rewrap_credentials($size);"; done; } >"$dir/rewrap_calls.sql"
read -r first last calls < <(sql wrap -At -f "$dir/rewrap_calls.sql" 2>&1 | awk -v size="$size" '
    /^Time: / { if (rows == size) t[++n] = $2; next }
    /^[0-9]+$/ { rows = $1 }
    END { if (n < 10) { print 0, 0, n; exit }
          for (i = 1; i <= 5; i++) { f += t[i]; l += t[n - 5 + i] }
          printf "%.1f %.1f %d\n", f / 5, l / 5, n }')
row "hr_rewrap_credentials($size) called repeatedly" "$N_REWRAP" "$last" "its own first 5 calls (ours: its last 5), ms per call" "$first" \
    "$calls full calls; linear when the last cost what the first did" 0.9
sql wrap -c "SELECT hr_set_phase('integration_credentials', 'dual')" >/dev/null 2>&1
out_rb=$(sql wrap -c "\\timing on" -c "CALL hr_run_rollback('integration_credentials')" 2>&1)
ours=$(echo "$out_rb" | grep -E '^Time: ' | tail -n1 | awk '{print $2}')
row "rollback (plaintext restored, credentials deleted)" "$N_REWRAP" "$ours" "" "" "longest batch $(echo "$out_rb" | longest_batch) ms"

# ---------------------------------------------------------------------------
# The token trigger on a bulk insert: the same INSERT with and without it.
say "token trigger on a bulk insert"
psql "$base dbname=postgres" -X -q -c "CREATE DATABASE trig"
make_schema trig
sql trig <<SQL
INSERT INTO hr_candidates (organization_id) SELECT id FROM pf_organizations;
CREATE TABLE src AS SELECT c.id AS candidate_id, translate(encode(sha256(random()::text::bytea), 'base64'), E'+/=\n', '-_') AS t
  FROM generate_series(1, $N_REFS / 1000) g, hr_candidates c;
VACUUM ANALYZE;
SQL
sql trig -f sql/migrations/001_reference_tokens.sql -o /dev/null 2>/dev/null
reset="TRUNCATE hr_references, hr_reference_token_validations; CHECKPOINT;"
ours=$(time_sql trig "$reset" "INSERT INTO hr_references (candidate_id, access_token) SELECT candidate_id, t FROM src;" 3)
plain=$(time_sql trig "$reset" "BEGIN; ALTER TABLE hr_references DISABLE TRIGGER USER;
INSERT INTO hr_references (candidate_id, access_token) SELECT candidate_id, t FROM src;
ALTER TABLE hr_references ENABLE TRIGGER USER; COMMIT;" 3)
row "bulk insert of references, token trigger" "$(sql trig -At -c "SELECT count(*) FROM src")" "$ours" "the same INSERT without the trigger" "$plain"

# ---------------------------------------------------------------------------
# A tenant's query under our policies, as PostgREST runs it (authenticated,
# claims set per transaction), against the owner's explicit WHERE and the
# plan's own policy text on an identical table; pgbench, average latency.
say "tenant query"
psql "$base dbname=postgres" -X -q -c "CREATE DATABASE tenant"
make_schema tenant
sql tenant <<SQL
INSERT INTO hr_candidates (organization_id)
SELECT o.id FROM generate_series(1, $N_TENANT) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pf_organizations) o ON o.n = 1 + g % 1000;
INSERT INTO hr_candidate_portal_sessions (candidate_id, session_token) SELECT id, md5(id::text) FROM hr_candidates;
VACUUM ANALYZE;
SQL
sql tenant -f sql/migrations/002_portal_sessions.sql -o /dev/null 2>/dev/null
org=$(sql tenant -At -c "SELECT organization_id FROM hr_candidate_portal_sessions LIMIT 1")
sql tenant <<SQL
CREATE TABLE plan_sessions AS SELECT * FROM hr_candidate_portal_sessions;
CREATE INDEX ON plan_sessions (organization_id);
ALTER TABLE plan_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Sessions org isolation" ON plan_sessions
  USING (organization_id = (current_setting('request.jwt.claims', true)::json->>'organization_id')::uuid);
GRANT SELECT ON plan_sessions, hr_candidate_portal_sessions TO authenticated;
-- Both tables vacuumed alike (the migration's backfill left ours with
-- dead row versions and a cleared visibility map: no index-only scans).
VACUUM ANALYZE plan_sessions, hr_candidate_portal_sessions;
SQL
# Until both are all-visible: an autovacuum ANALYZE of the rows just
# written can hold a snapshot that keeps VACUUM from setting the
# visibility map, and the counts then visit the heap; says so when they
# never get there.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ "$(sql tenant -At -c "SELECT bool_and(relallvisible >= relpages) FROM pg_class
                             WHERE relname IN ('plan_sessions', 'hr_candidate_portal_sessions')")" = t ] && break
    sleep 1
    sql tenant -c "VACUUM plan_sessions, hr_candidate_portal_sessions"
done
[ "$(sql tenant -At -c "SELECT bool_and(relallvisible >= relpages) FROM pg_class
                         WHERE relname IN ('plan_sessions', 'hr_candidate_portal_sessions')")" = t ] \
    || say "tenant query: the tables are not all-visible after 10 VACUUMs (the counts visit the heap)"
claims="{\"organization_id\":\"$org\",\"role\":\"authenticated\"}"
mk() { printf 'BEGIN;\nSET LOCAL ROLE %s;\nSELECT set_config('"'"'request.jwt.claims'"'"', '"'"'%s'"'"', true);\n%s\nEND;\n' "$1" "$claims" "$2" >"$dir/$3.sql"; }
mk authenticated "SELECT count(*) FROM hr_candidate_portal_sessions;" ours
mk postgres "SELECT count(*) FROM hr_candidate_portal_sessions WHERE organization_id = '$org';" owner
mk authenticated "SELECT count(*) FROM plan_sessions;" plan
pgb() {
    local i v=()
    for i in 1 2 3; do
        v+=("$(pgbench -n -h 127.0.0.1 -p "$port" -U postgres -T "$PGBENCH_SECS" -f "$dir/$1.sql" tenant 2>/dev/null \
               | awk '/latency average/ { print $4 }')")
    done
    printf '%s\n' "${v[@]}" | sort -n | sed -n 2p
}
ours=$(pgb ours); owner=$(pgb owner); plan=$(pgb plan)
rows=$(sql tenant -At -c "SELECT count(*) FROM hr_candidate_portal_sessions WHERE organization_id = '$org'")
row "tenant count(*) as authenticated, our policies" "$rows of $N_TENANT" "$ours" "the owner with an explicit WHERE" "$owner" "ms per request" 1/1.1
row "tenant count(*) as authenticated, our policies" "$rows of $N_TENANT" "$ours" "the plan's policy text (per-row claim cast)" "$plan" "ms per request"

# ---------------------------------------------------------------------------
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
pgv=$(sql postgres -At -c "SHOW server_version")
echo
echo "hr_migrations $(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml) benchmarks, SCALE=$scale, median of $reps runs (3 for the heavy rows)"
echo "machine: $cpu, $cores cores, PostgreSQL $pgv"
echo
awk -F'\t' 'BEGIN {
        printf "%-52s %16s %12s  %-64s %12s %8s %13s  %s\n", "operation", "rows", "ours (ms)", "baseline", "base (ms)", "ratio", "goal", "note"
    }
    {
        ratio = ($5 != "" && $3 > 0) ? sprintf("%.2fx", $5 / $3) : "-"
        goal = "-"
        if ($7 != "") {
            # A time goal (at most T times the time of the baseline) is written
            # 1/T and compared exactly: 1.299x the time meets 1.3x.
            least = $7
            if (split($7, q, "/") == 2 && q[2] + 0 > 0) least = q[1] / q[2]
            ok = ($5 != "" && $3 > 0 && $5 / $3 >= least)
            goal = sprintf(">=%sx %s", $7, ok ? "\342\234\223" : "\342\234\227")
            if (ok) met++; else missed++
        }
        printf "%-52s %16s %12s  %-64s %12s %8s %13s  %s\n", $1, $2, $3, ($4 == "" ? "-" : $4), ($5 == "" ? "-" : $5), ratio, goal, $6
    }
    END { printf "\ngoals: %d met, %d missed (docs/benchmarks.md says where the time goes)\n", met, missed }' "$out"
echo
echo "ratio = baseline time / our time: above 1, hr_migrations is faster; goal = the least ratio issue #17 asks"
echo "(a time goal of at most 1.3x the baseline's time is a ratio of at least 1/1.3 = 0.769, 1.1x is 1/1.1 = 0.909)."
