-- =============================================================================
-- 003_integration_credentials.sql — Migration 3: job-board credentials into
-- pf_credentials, AES-256-GCM encrypted
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=1000] -f sql/migrations/003_integration_credentials.sql
--         in autocommit mode, NOT inside BEGIN (CREATE INDEX CONCURRENTLY;
--         the migration COMMITs per batch).
-- Needs:  CREATE EXTENSION hr_migrations, and the keyring configured:
--         hr_migrations.keyring_file and hr_migrations.active_key_version in
--         postgresql.conf, reloaded (docs/key-management.md). Step 0 stops the
--         script, before any DDL, when they are not usable.
-- Steps and locks (each DDL under lock_timeout = 3s; on a timeout, run the
-- file again: every step is idempotent):
--   0. preflight: the keyring opens and the active version is in it
--   1. ADD COLUMN credential_id uuid (nullable)          ACCESS EXCLUSIVE, catalog only
--   2. FK -> pf_credentials ON DELETE SET NULL NOT VALID  SHARE ROW EXCLUSIVE on both, brief
--   3. VALIDATE the FK                                    SHARE UPDATE EXCLUSIVE + ROW SHARE
--   4. CREATE INDEX CONCURRENTLY on credential_id         SHARE UPDATE EXCLUSIVE
--   5. deprecation comments on the plaintext columns      ACCESS EXCLUSIVE, catalog only
--   6. pf_credential_migrations (audit log) with RLS      none on existing tables
--   7. CHECK pf_credentials.encrypted_value is an envelope v1, NOT VALID, then
--      VALIDATE (left NOT VALID, with a WARNING, if old rows are not envelopes)
--   8. triggers: sync of plaintext writes, updated_at     SHARE ROW EXCLUSIVE, brief
--   9. phase not_applied -> dual; migration in committed batches (row locks on
--      one batch), then phase -> migrated when nothing is pending
-- The plaintext columns keep their values until
--   SELECT hr_set_phase('integration_credentials', 'enforced');
-- clears them after checking that every credential decrypts to them.
-- Undo:   sql/rollback/003_integration_credentials.sql
-- =============================================================================
\ir ../preamble.psql
\if :{?batch_size}
\else
\set batch_size 1000
\endif

-- Step 0 ---------------------------------------------------------------------
SELECT key_version, active FROM :"hr_schema".hr_keyring_versions() ORDER BY key_version;


-- Step 1 ---------------------------------------------------------------------
ALTER TABLE public.hr_job_board_integrations ADD COLUMN IF NOT EXISTS credential_id uuid;
-- Statistics for the new column (SHARE UPDATE EXCLUSIVE, a 30k-row sample),
-- so the migration batches are planned as index range scans.
ANALYZE public.hr_job_board_integrations (credential_id, api_key, api_secret, refresh_token);

-- Step 2 ---------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conname = 'fk_hr_job_board_integrations_credential_id'
                      AND conrelid = 'public.hr_job_board_integrations'::regclass) THEN
        ALTER TABLE public.hr_job_board_integrations
            ADD CONSTRAINT fk_hr_job_board_integrations_credential_id
            FOREIGN KEY (credential_id) REFERENCES public.pf_credentials (id) ON DELETE SET NULL
            NOT VALID;
    END IF;
END
$$;

-- Step 3 ---------------------------------------------------------------------
ALTER TABLE public.hr_job_board_integrations
    VALIDATE CONSTRAINT fk_hr_job_board_integrations_credential_id;

-- Step 4 ---------------------------------------------------------------------
SELECT format('DROP INDEX CONCURRENTLY %s', i.indexrelid::regclass)
  FROM pg_index i
 WHERE i.indexrelid = to_regclass('public.idx_hr_job_board_integrations_credential_id')
   AND NOT i.indisvalid \gexec
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_hr_job_board_integrations_credential_id
    ON public.hr_job_board_integrations (credential_id);

-- Step 5 ---------------------------------------------------------------------
COMMENT ON COLUMN public.hr_job_board_integrations.api_key IS
    'DEPRECATED (hr_migrations 003): read hr_integration_secret(id); cleared when integration_credentials is enforced.';
COMMENT ON COLUMN public.hr_job_board_integrations.api_secret IS
    'DEPRECATED (hr_migrations 003): read hr_integration_secret(id); cleared when integration_credentials is enforced.';
COMMENT ON COLUMN public.hr_job_board_integrations.refresh_token IS
    'DEPRECATED (hr_migrations 003): read hr_integration_secret(id); cleared when integration_credentials is enforced.';
COMMENT ON COLUMN public.hr_job_board_integrations.credential_id IS
    'The integration''s secret in pf_credentials (AES-256-GCM envelope v1, AAD hr_credential_aad(organization_id, id)).';

-- Step 6 ---------------------------------------------------------------------
-- The plan's audit table, with a real FK for migrated_by (the plan wrote
-- the string 'system' into this uuid column): NULL when no person did it.
CREATE TABLE IF NOT EXISTS public.pf_credential_migrations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    table_name      text NOT NULL,
    record_id       uuid NOT NULL,
    credential_type text NOT NULL,
    migrated_at     timestamptz DEFAULT now(),
    migrated_by     uuid REFERENCES public.pf_profiles (id),
    notes           text
);
CREATE INDEX IF NOT EXISTS pf_credential_migrations_record ON public.pf_credential_migrations (record_id);
ALTER TABLE public.pf_credential_migrations ENABLE ROW LEVEL SECURITY;
BEGIN;
DROP POLICY IF EXISTS pf_credential_migrations_select ON public.pf_credential_migrations;
-- An organization reads the log of its own integrations; nobody writes
-- through RLS (the extension's SECURITY DEFINER functions write it).
CREATE POLICY pf_credential_migrations_select ON public.pf_credential_migrations
    FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.hr_job_board_integrations i
                    WHERE i.id = record_id
                      AND i.organization_id = (SELECT :"hr_schema".hr_jwt_organization_id())));
COMMIT;

-- Step 7 ---------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pf_credentials_encrypted_value_envelope_v1'
                      AND conrelid = 'public.pf_credentials'::regclass) THEN
        -- hrc1.<version>.<base64url of at least nonce + tag = 28 bytes>
        ALTER TABLE public.pf_credentials ADD CONSTRAINT pf_credentials_encrypted_value_envelope_v1
            CHECK (encrypted_value ~ '^hrc1\.[1-9][0-9]*\.[A-Za-z0-9_-]{38,}$') NOT VALID;
    END IF;
END
$$;
SELECT EXISTS (SELECT 1 FROM public.pf_credentials
                WHERE encrypted_value !~ '^hrc1\.[1-9][0-9]*\.[A-Za-z0-9_-]{38,}$') AS has_non_envelopes \gset
\if :has_non_envelopes
DO $$
BEGIN
    RAISE WARNING '% pf_credentials rows are not envelopes v1 (plaintext written by the plan''s script?): constraint pf_credentials_encrypted_value_envelope_v1 stays NOT VALID',
        (SELECT count(*) FROM public.pf_credentials
          WHERE encrypted_value !~ '^hrc1\.[1-9][0-9]*\.[A-Za-z0-9_-]{38,}$')
        USING HINT = 'see docs/runbook.md, migration 3: re-encrypt or delete them, then run this file again';
END
$$;
\else
ALTER TABLE public.pf_credentials VALIDATE CONSTRAINT pf_credentials_encrypted_value_envelope_v1;
\endif

-- Step 8 ---------------------------------------------------------------------
DROP TRIGGER IF EXISTS update_hr_job_board_integrations_updated_at ON public.hr_job_board_integrations;
CREATE OR REPLACE TRIGGER hr_job_board_integrations_touch_updated_at
    BEFORE UPDATE ON public.hr_job_board_integrations
    FOR EACH ROW WHEN (current_setting('hr_migrations.backfill_in_progress', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION :"hr_schema".hr_touch_updated_at();
CREATE OR REPLACE TRIGGER hr_job_board_integrations_sync_insert
    AFTER INSERT ON public.hr_job_board_integrations
    FOR EACH ROW EXECUTE FUNCTION :"hr_schema".hr_job_board_integrations_trigger();
CREATE OR REPLACE TRIGGER hr_job_board_integrations_sync_update
    BEFORE UPDATE OF api_key, api_secret, refresh_token ON public.hr_job_board_integrations
    FOR EACH ROW EXECUTE FUNCTION :"hr_schema".hr_job_board_integrations_trigger();

-- Step 9 ---------------------------------------------------------------------
SELECT :"hr_schema".hr_set_phase('integration_credentials', 'dual')
 WHERE :"hr_schema".hr_migration_phase('integration_credentials') = 'not_applied';
RESET lock_timeout;
SELECT migrated AS would_migrate_in_first_batch, skipped AS without_plaintext, remaining
  FROM :"hr_schema".hr_migrate_integrations(:batch_size, dry_run => true);
CALL :"hr_schema".hr_run_backfill('integration_credentials', :batch_size);

SELECT migration, phase, total, migrated, pending, blocked, note
  FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'integration_credentials';
