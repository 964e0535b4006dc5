-- =============================================================================
-- rollback/003_integration_credentials.sql — undo migration 3
-- =============================================================================
-- The plan's rollback: "keep plaintext columns populated; migrate
-- pf_credentials back to plaintext; no data loss".
-- Run:    psql -v ON_ERROR_STOP=1 -f sql/rollback/003_integration_credentials.sql
--         (autocommit; needs the keyring, to decrypt)
-- Does:   1. phase enforced -> dual (plaintext writes accepted again)
--         2. hr_rollback_integrations() in committed batches: plaintext written
--            back byte for byte, credentials unlinked and deleted, each logged
--         3. drops the sync and updated_at triggers, the index (CONCURRENTLY),
--            the FK and credential_id; removes the deprecation comments
--         4. phase -> not_applied
-- Keeps:  pf_credential_migrations (the audit trail, now with the rollback),
--         the envelope CHECK on pf_credentials, other pf_credentials rows.
-- Locks:  as the forward script: brief ACCESS EXCLUSIVE for the DDL, row
--         locks on one batch for the data, all under lock_timeout = 3s.
-- Redo:   sql/migrations/003_integration_credentials.sql
-- =============================================================================
\ir ../preamble.psql

SELECT :"hr_schema".hr_set_phase('integration_credentials', 'dual')
 WHERE :"hr_schema".hr_migration_phase('integration_credentials') = 'enforced';

-- One statement per batch, each its own transaction (psql autocommit).
SELECT format('SELECT %I.hr_rollback_integrations(1000)', :'hr_schema')
  FROM generate_series(1, (SELECT ceil(count(*) / 1000.0)::int + 1
                             FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL)) \gexec

DO $$
DECLARE
    left_linked bigint;
BEGIN
    SELECT count(*) INTO left_linked FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL;
    IF left_linked > 0 THEN
        RAISE EXCEPTION '% integrations are still linked (rows locked by other transactions?)', left_linked
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'run this file again';
    END IF;
END
$$;

DROP TRIGGER IF EXISTS hr_job_board_integrations_sync_insert ON public.hr_job_board_integrations;
DROP TRIGGER IF EXISTS hr_job_board_integrations_sync_update ON public.hr_job_board_integrations;
DROP TRIGGER IF EXISTS hr_job_board_integrations_touch_updated_at ON public.hr_job_board_integrations;
DROP INDEX CONCURRENTLY IF EXISTS public.idx_hr_job_board_integrations_credential_id;
ALTER TABLE public.hr_job_board_integrations
    DROP CONSTRAINT IF EXISTS fk_hr_job_board_integrations_credential_id,
    DROP COLUMN IF EXISTS credential_id;
COMMENT ON COLUMN public.hr_job_board_integrations.api_key IS NULL;
COMMENT ON COLUMN public.hr_job_board_integrations.api_secret IS NULL;
COMMENT ON COLUMN public.hr_job_board_integrations.refresh_token IS NULL;

SELECT :"hr_schema".hr_set_phase('integration_credentials', 'not_applied');
DELETE FROM :"hr_schema".hr_backfill_progress WHERE migration = 'integration_credentials';
SELECT migration, phase, total, pending, note FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'integration_credentials';
