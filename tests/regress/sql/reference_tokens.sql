-- Scenario: migration 1 (reference_tokens), plaintext tokens -> salted hashes.
-- 200 references from the fixture generator; 4 have no token (every 50th).
\getenv hrm_root HRM_ROOT
\set SHOW_CONTEXT never
\set ECHO none
SET client_min_messages = warning;
\i :hrm_root/tests/fixtures/schema.sql
\set scale 200
\i :hrm_root/tests/fixtures/generate.sql
CREATE EXTENSION hr_migrations SCHEMA extensions;
SET search_path = public, extensions;
CREATE TEMP TABLE old_refs AS SELECT id, access_token, updated_at FROM hr_references;
\set ECHO all

-- Before 001: the migration is not applied; the tokens are plaintext.
SELECT migration, phase, total, migrated, pending, note FROM hr_migration_status();

-- Apply the migration file as a DBA would (output hidden: it holds timings).
\set ECHO none
SET client_min_messages = error;
\o /dev/null
\i :hrm_root/sql/migrations/001_reference_tokens.sql
\o
SET client_min_messages = warning;
\set ON_ERROR_STOP off
\set ECHO all

-- After 001: every token has a hash, the phase moved on by itself.
SELECT migration, phase, total, migrated, pending, blocked, note
  FROM hr_migration_status() WHERE migration = 'reference_tokens';

-- A v1 hash is 64 characters and is not the token in disguise (the plan's bug).
SELECT count(*) AS hashed,
       bool_and(length(access_token_hash) = 64) AS all_64_chars,
       bool_and(position(convert_to(access_token, 'UTF8') IN decode(access_token_hash, 'base64')) = 0
                OR access_token = '') AS none_contains_token
  FROM hr_references WHERE access_token IS NOT NULL;

-- The backfill did not touch updated_at.
SELECT count(*) AS rows_with_new_updated_at
  FROM hr_references r JOIN old_refs o USING (id) WHERE r.updated_at <> o.updated_at;

-- Every old token verifies by reference id, through the hash; a wrong one does not.
SELECT count(*) FILTER (WHERE hr_verify_reference_token(id, access_token)) AS verified,
       count(*) FILTER (WHERE hr_verify_reference_token(id, access_token || '!')) AS wrong_accepted
  FROM old_refs WHERE access_token IS NOT NULL;
SELECT method, success, count(*) FROM hr_reference_token_validations GROUP BY 1, 2 ORDER BY 1, 2;

-- Old code that still writes plaintext: the trigger hashes it on the way in.
INSERT INTO hr_references (id, candidate_id, referee_name, access_token)
SELECT '00000000-0000-4000-8000-000000000001', id, 'Late Referee', 'legacy-token'
  FROM hr_candidates ORDER BY id LIMIT 1;
SELECT access_token, length(access_token_hash) AS hash_length
  FROM hr_references WHERE id = '00000000-0000-4000-8000-000000000001';

-- Enforced: new tokens keep only their hash, and only hashes are accepted.
SELECT hr_set_phase('reference_tokens', 'enforced');
INSERT INTO hr_references (id, candidate_id, referee_name, access_token)
SELECT '00000000-0000-4000-8000-000000000002', id, 'New Referee', 'enforced-token'
  FROM hr_candidates ORDER BY id LIMIT 1;
SELECT access_token, length(access_token_hash) AS hash_length
  FROM hr_references WHERE id = '00000000-0000-4000-8000-000000000002';
SELECT hr_verify_reference_token('00000000-0000-4000-8000-000000000002', 'enforced-token');

-- A row written with triggers disabled has plaintext only: refused while enforced...
SET session_replication_role = replica;
INSERT INTO hr_references (id, candidate_id, referee_name, access_token)
SELECT '00000000-0000-4000-8000-000000000003', id, 'Bypass', 'bypass-token'
  FROM hr_candidates ORDER BY id LIMIT 1;
RESET session_replication_role;
SELECT hr_verify_reference_token('00000000-0000-4000-8000-000000000003', 'bypass-token');

-- ...accepted again after stepping back to dual, and enforcing is then refused.
SELECT hr_set_phase('reference_tokens', 'dual');
SELECT hr_verify_reference_token('00000000-0000-4000-8000-000000000003', 'bypass-token');
SELECT phase, pending, note FROM hr_migration_status() WHERE migration = 'reference_tokens';
SELECT hr_set_phase('reference_tokens', 'enforced');
\echo :LAST_ERROR_SQLSTATE

-- Bad input gets a precise error (SQLSTATE echoed below) that quotes no token or hash.
SELECT hr_verify_token('a-presented-token', 'not-a-v1-hash');
\echo :LAST_ERROR_SQLSTATE
SELECT hr_set_phase('reference_token', 'dual');
\echo :LAST_ERROR_SQLSTATE
SELECT hr_set_phase('reference_tokens', 'done');
\echo :LAST_ERROR_SQLSTATE
SELECT hr_backfill_reference_token_hashes(0);
\echo :LAST_ERROR_SQLSTATE

-- Privileges: the app roles cannot run migrations or read the audit log.
SET ROLE anon;
SELECT hr_set_phase('reference_tokens', 'dual');
SELECT hr_backfill_reference_token_hashes();
SELECT count(*) FROM hr_reference_token_validations;
RESET ROLE;
SET ROLE service_role;
SELECT hr_verify_reference_token('00000000-0000-4000-8000-000000000002', 'enforced-token');
RESET ROLE;
