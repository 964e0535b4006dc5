-- Scenario: migration 3 (integration_credentials), plaintext job-board
-- credentials -> AES-256-GCM envelopes in pf_credentials.
-- 60 integrations from the fixture generator; the runner configured a
-- throwaway keyring (hr_migrations.keyring_file, active_key_version = 1).
\getenv hrm_root HRM_ROOT
\set SHOW_CONTEXT never
\set ECHO none
SET client_min_messages = warning;
\i :hrm_root/tests/fixtures/schema.sql
\set scale 60
\i :hrm_root/tests/fixtures/generate.sql
CREATE EXTENSION hr_migrations SCHEMA extensions;
SET search_path = public, extensions;
CREATE TEMP TABLE old_integrations AS
SELECT id, organization_id, api_key, api_secret, refresh_token FROM hr_job_board_integrations;
\set ECHO all

-- The keyring: versions only, never keys.
SELECT * FROM hr_keyring_versions();

-- An envelope: header, version, then nonce || ciphertext || tag, base64url.
SELECT e ~ '^hrc1\.1\.[A-Za-z0-9_-]+$' AS shape, length(e) AS length,
       hr_decrypt_credential(e, 'aad') AS opened
  FROM hr_encrypt_credential('twelve bytes', 'aad') AS e;
-- Two encryptions of one value differ (fresh nonce each time).
SELECT hr_encrypt_credential('same', '') <> hr_encrypt_credential('same', '') AS differ;

-- Apply the migration file (output hidden: it holds timings).
\set ECHO none
SET client_min_messages = error;
\o /dev/null
\i :hrm_root/sql/migrations/003_integration_credentials.sql
\o
SET client_min_messages = warning;
\set ON_ERROR_STOP off
\set ECHO all

SELECT migration, phase, total, migrated, pending, blocked, note
  FROM hr_migration_status() WHERE migration = 'integration_credentials';

-- Every secret reads back equal through the dual read, now from pf_credentials.
SELECT count(*) FILTER (WHERE hr_integration_secret(id) = jsonb_build_object(
           'api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token)) AS equal,
       count(*) FILTER (WHERE hr_integration_secret(id) IS NULL) AS without_secret
  FROM old_integrations;
-- What pf_credentials and the audit log hold.
-- Envelopes v2: sealed with the organization's data key, generation 1.
SELECT credential_type, name, count(*), bool_and(encrypted_value LIKE 'hrc2.1.%') AS envelopes
  FROM pf_credentials GROUP BY 1, 2 ORDER BY 1;
-- One data key per organization with credentials, wrapped by keyring key 1;
-- the view shows no key material.
SELECT count(*) = (SELECT count(DISTINCT organization_id) FROM pf_credentials) AS one_per_organization,
       bool_and(generation = 1 AND kek_version = 1 AND state = 'active') AS generation_1_under_version_1
  FROM hr_organization_keys;
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'extensions' AND table_name = 'hr_organization_keys' ORDER BY ordinal_position;
SELECT table_name, migrated_by, notes, count(*) FROM pf_credential_migrations GROUP BY 1, 2, 3;

-- A ciphertext copied to another row (of the same organization, or of
-- another) does not decrypt there.
SELECT hr_migrations.hr_open_credential(b.organization_id, a.encrypted_value, hr_credential_aad(b.organization_id, b.id))
  FROM (SELECT * FROM pf_credentials ORDER BY id LIMIT 1) a,
       (SELECT * FROM pf_credentials ORDER BY id OFFSET 1 LIMIT 1) b;
\echo :LAST_ERROR_SQLSTATE
SELECT hr_migrations.hr_open_credential(a.organization_id, a.encrypted_value, hr_credential_aad(a.organization_id, b.id))
  FROM (SELECT * FROM pf_credentials ORDER BY id LIMIT 1) a,
       (SELECT * FROM pf_credentials ORDER BY id OFFSET 1 LIMIT 1) b;
\echo :LAST_ERROR_SQLSTATE
-- hr_decrypt_credential() keeps opening envelopes v1 only, and says so.
SELECT hr_decrypt_credential(encrypted_value, hr_credential_aad(organization_id, id))
  FROM pf_credentials ORDER BY id LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
SELECT hr_decrypt_credential('{"api_key":"written by the plan''s script"}');
\echo :LAST_ERROR_SQLSTATE

-- Shredding is refused while the organization's plaintext is still in
-- hr_job_board_integrations (nothing is shredded).
\set VERBOSITY sqlstate
SELECT hr_shred_organization(id) FROM pf_organizations WHERE name = 'Organization 2';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT count(*) AS shredded_keys FROM hr_organization_keys WHERE state = 'shredded';

-- Enforce: plaintext is refused and no longer read from now on; then the
-- plaintext columns are checked against their credentials and cleared, in
-- committed batches (hr_run_phase = hr_set_phase + the work the phase leaves).
CALL hr_run_phase('integration_credentials', 'enforced');
SELECT count(*) FILTER (WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL) AS with_plaintext
  FROM hr_job_board_integrations;
-- The statistics of the cleared columns are gathered again: no sampled
-- secret stays in pg_statistic (the migration file analyzed them while
-- they held plaintext).
SELECT attname, null_frac, most_common_vals IS NULL AND histogram_bounds IS NULL AS no_sampled_values
  FROM pg_stats WHERE schemaname = 'public' AND tablename = 'hr_job_board_integrations'
   AND attname IN ('api_key', 'api_secret', 'refresh_token') ORDER BY attname;
\set VERBOSITY terse
UPDATE hr_job_board_integrations SET refresh_token = 'new-refresh-token'
 WHERE id = (SELECT id FROM old_integrations ORDER BY id LIMIT 1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Crypto-shredding an organization that leaves ("Organization 3"): its data
-- keys are destroyed, so its credentials can no longer be read (55000, the
-- message names the organization); the others are untouched; status and
-- preflight count what became unreadable. Refused before enforced: its
-- plaintext was still in hr_job_board_integrations then.
SELECT id AS gone FROM pf_organizations WHERE name = 'Organization 3' \gset
SELECT hr_shred_organization(:'gone') = (SELECT count(*) FROM pf_credentials WHERE organization_id = :'gone') AS all_its_credentials,
       (SELECT count(*) FROM pf_credentials WHERE organization_id = :'gone') AS shredded;
\set VERBOSITY sqlstate
SELECT hr_integration_secret(id) FROM hr_job_board_integrations
 WHERE organization_id = :'gone' AND credential_id IS NOT NULL ORDER BY id LIMIT 1;
\set VERBOSITY default
-- (the plaintext is cleared: these secrets come from the credentials)
SELECT count(*) FILTER (WHERE hr_integration_secret(id) = jsonb_build_object(
           'api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token)) AS equal
  FROM old_integrations WHERE organization_id <> :'gone';
SELECT state, count(*) FROM hr_organization_keys GROUP BY 1 ORDER BY 1;
SELECT blocked, substring(note from 'credentials: .*') AS note
  FROM hr_migration_status() WHERE migration = 'integration_credentials';
SELECT status, detail FROM hr_preflight() WHERE check_name = 'shredded organizations';

-- Roll back (dual first): plaintext restored byte for byte, credentials removed.
SELECT hr_set_phase('integration_credentials', 'dual');
SELECT hr_rollback_integrations(1000);
SELECT count(*) AS restored_exactly FROM old_integrations o JOIN hr_job_board_integrations i USING (id)
 WHERE i.api_key IS NOT DISTINCT FROM o.api_key AND i.api_secret IS NOT DISTINCT FROM o.api_secret
   AND i.refresh_token IS NOT DISTINCT FROM o.refresh_token AND i.credential_id IS NULL;
SELECT count(*) AS credentials_left FROM pf_credentials;
-- The shredded organization's credentials cannot be rolled back: skipped,
-- and recorded with their SQLSTATE.
SELECT operation, sqlstate, count(*) FROM hr_migrations.hr_batch_failures GROUP BY 1, 2;
SELECT phase, pending FROM hr_migration_status() WHERE migration = 'integration_credentials';

-- Which columns a run's ANALYZE gathers when its table's statistics are
-- stale (hr_predicate_columns): the words and quoted identifiers of the
-- predicate that are columns, folded as PostgreSQL folds identifiers;
-- every column ('') when it names none, when the table was never
-- analyzed, or when it has extended statistics.
CREATE TABLE pc ("Odd ""Name""" int, plain int, "UPPER" int, d$ollar int, gone int, "Äb" int);
ALTER TABLE pc DROP COLUMN gone;
SELECT hr_migrations.hr_predicate_columns('pc', 't.plain IS NULL') AS never_analyzed;
ANALYZE pc;
SELECT hr_migrations.hr_predicate_columns('pc', 't."Odd ""Name""" = 1 AND t.PLAIN IS NULL AND t."UPPER" > 0 AND d$ollar < 2 AND gone = 3') AS named;
SELECT hr_migrations.hr_predicate_columns('pc', 'UPPER IS NULL AND "Äb" = 1 AND äb = 2') AS folded;
SELECT hr_migrations.hr_predicate_columns('pc', 'x = y') AS names_none;
CREATE STATISTICS pc_s ON plain, d$ollar FROM pc;
SELECT hr_migrations.hr_predicate_columns('pc', 't.plain IS NULL') AS extended_statistics;
DROP TABLE pc;
