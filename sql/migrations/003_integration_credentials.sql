-- =============================================================================
-- migrations/003_integration_credentials.sql — apply migration integration_credentials (credential_move) on public.hr_job_board_integrations
-- Generated from the extension's plan: SELECT * FROM hr_migrations.hr_plan('integration_credentials', 'dual');
-- (tests hold this file equal to it: change the plan, not the file).
-- =============================================================================
-- Job-board credentials into AES-256-GCM envelopes v2 (hrc2: each organization's own data key,
-- wrapped by the keyring) in the credentials table, one per
-- integration (a partial UNIQUE index: a credential is linked once). The credentials table
-- is closed before anything moves in (RLS, an organization policy for authenticated reads,
-- no writes for the API roles, nothing for anon); sync triggers move plaintext written
-- from now on; the move runs in committed batches, then the phase moves to migrated. The
-- plaintext stays until enforced (CALL hr_run_phase(..., 'enforced') clears it after
-- checking each credential decrypts to it). Needs the keyring (docs/key-management.md):
-- the first step stops the file, before any change, when it is not usable.
--
-- Run:   psql -v ON_ERROR_STOP=1 -f <this file>, the Supabase CLI from a project's
--        supabase/migrations/ (supabase migration up / db push), or any runner that
--        sends its statements one at a time, as a member of hr_migrations_admin
--        (postgres on Supabase) or a superuser. NOT inside a transaction block
--        (BEGIN ... COMMIT, psql -1): the steps COMMIT one by one and CREATE INDEX
--        CONCURRENTLY cannot run in one; the first statement refuses there.
-- Needs: CREATE EXTENSION hr_migrations and GRANT hr_migrations_admin TO <you>
--        (the platform's one-time step, docs/runbook.md).
-- Again: idempotent; after a failure at any statement, run the whole file again.
--        The session is left as it was (search_path and settings).
-- Undo:  sql/rollback/003_integration_credentials.sql
-- Steps (section: what; lock; how it waits):
--    1: preflight: stop on a blocker                         none; brief, retried
--    1: the keyring opens and the active version is in it    none; brief, retried
--    1: add credential_id                                    ACCESS EXCLUSIVE; brief, retried
--    1: statistics of the credential columns                 SHARE UPDATE EXCLUSIVE; waits; blocks no reads or writes
--    1: foreign key to the credentials table, NOT VALID      SHARE ROW EXCLUSIVE; brief, retried
--    1: validate the foreign key                             SHARE UPDATE EXCLUSIVE; waits; blocks no reads or writes
--    1: mark the plaintext columns deprecated                ACCESS EXCLUSIVE; brief, retried
--    1: describe credential_id                               ACCESS EXCLUSIVE; brief, retried
--    1: the audit log, RLS and its tenant policy             ACCESS EXCLUSIVE; brief, retried
--    1: close the audit log: readers and the definer role only ACCESS EXCLUSIVE; brief, retried
--    1: drop the credentials table's older envelope CHECK    ACCESS EXCLUSIVE; brief, retried
--    1: envelope CHECK on the credentials table, NOT VALID   ACCESS EXCLUSIVE; brief, retried
--    1: validate the envelope CHECK                          SHARE UPDATE EXCLUSIVE; waits; blocks no reads or writes
--    1: rows of the credentials table that are not envelopes none; reports
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: drop an INVALID index left by a failed build         ACCESS EXCLUSIVE; brief, retried
--    1: index credential_id                                  SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    1: unique credential_id: a credential is linked once    SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    1: index the credentials' organization_id (their policy) SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    1: index organization_id (row isolation)                SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    1: index the audit log by integration                   SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    1: index the audit log's migrated_by (its foreign key)  SHARE UPDATE EXCLUSIVE; top level; blocks no reads or writes
--    2: close the table to planted code; the definer role's rights SHARE UPDATE EXCLUSIVE; brief, retried
--    2: close the credentials table to planted code; the definer role's rights SHARE UPDATE EXCLUSIVE; brief, retried
--    2: close the credentials table: RLS, the organization's reads, no API writes, nothing for anon ACCESS EXCLUSIVE; brief, retried
--    2: anon: nothing on the table                           ACCESS EXCLUSIVE; brief, retried
--    2: drop the application's legacy trigger                ACCESS EXCLUSIVE; brief, retried
--    2: updated_at trigger (skips the extension's batches)   SHARE ROW EXCLUSIVE; brief, retried
--    2: sync triggers: plaintext written from now on is moved SHARE ROW EXCLUSIVE; brief, retried
--    2: phase -> dual                                        none; brief, retried
--    2: backfill in committed batches, then migrated         ROW EXCLUSIVE; row locks of one batch at a time
--    2: row isolation from migrated on                       ACCESS EXCLUSIVE; brief, retried
--    2: where the migration stands                           none; reports
-- =============================================================================
CALL hr_migrations.hr_apply('integration_credentials', 1);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_hr_job_board_integrations_credential_id ON public.hr_job_board_integrations (credential_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS hr_job_board_integrations_credential_id_key ON public.hr_job_board_integrations (credential_id) WHERE credential_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS pf_credentials_organization_id ON public.pf_credentials (organization_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS hr_job_board_integrations_organization_id ON public.hr_job_board_integrations (organization_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pf_credential_migrations_record ON public.pf_credential_migrations (record_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pf_credential_migrations_migrated_by ON public.pf_credential_migrations (migrated_by);
CALL hr_migrations.hr_apply('integration_credentials', 2);
