-- =============================================================================
-- 002_portal_sessions.sql — Migration 2: organization isolation of portal sessions
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=5000] -f sql/migrations/002_portal_sessions.sql
--         in autocommit mode, NOT inside BEGIN: step 6 (CREATE INDEX
--         CONCURRENTLY) cannot run in a transaction block and the backfill
--         COMMITs per batch.
-- Needs:  CREATE EXTENSION hr_migrations (any schema) in this database.
-- Steps and locks (each DDL under lock_timeout = 3s; on a timeout, run the
-- file again: every step is idempotent):
--   1. ADD COLUMN organization_id uuid (nullable)     ACCESS EXCLUSIVE, catalog only
--   2. trigger hr_portal_sessions_org, updated_at     SHARE ROW EXCLUSIVE, brief
--      (before the backfill, so rows written meanwhile are covered)
--   3. phase not_applied -> dual; backfill in committed batches (row locks on one batch)
--   4. FK -> pf_organizations NOT VALID               SHARE ROW EXCLUSIVE on both tables, brief
--   5. VALIDATE the FK                                SHARE UPDATE EXCLUSIVE + ROW SHARE: reads and writes go on
--   6. CREATE INDEX CONCURRENTLY on organization_id   SHARE UPDATE EXCLUSIVE: reads and writes go on
--      (after the backfill: one bulk build instead of index churn on every
--      backfilled row; an INVALID leftover of an interrupted run is dropped first)
--   7. RLS: enable + one policy per command, in one transaction   ACCESS EXCLUSIVE, brief
--   8. phase dual -> migrated when no session is pending or blocked (only now:
--      'migrated' promises the policies are in place)
-- Blocked sessions (candidate missing, or without an organization) are never
-- guessed, deleted or looped over: they are counted in hr_migration_status()
-- and reported by count in a WARNING; the phase stays dual until they are fixed.
-- Undo:   sql/rollback/002_portal_sessions.sql
-- =============================================================================
\ir ../preamble.psql
\if :{?batch_size}
\else
\set batch_size 5000
\endif


-- Step 1 ---------------------------------------------------------------------
ALTER TABLE public.hr_candidate_portal_sessions ADD COLUMN IF NOT EXISTS organization_id uuid;
COMMENT ON COLUMN public.hr_candidate_portal_sessions.organization_id IS
    'Tenant of the session, derived from hr_candidates by trigger hr_portal_sessions_org; RLS isolates on it.';
-- Statistics for the new column (SHARE UPDATE EXCLUSIVE, a 30k-row sample):
-- without them the planner guesses 0.5% of rows are NULL and plans the first
-- backfill batch as a hash join and sort of the whole table (2.6 s at 1M rows).
ANALYZE public.hr_candidate_portal_sessions (organization_id);

-- Step 2 ---------------------------------------------------------------------
DROP TRIGGER IF EXISTS update_hr_candidate_portal_sessions_updated_at ON public.hr_candidate_portal_sessions;
CREATE OR REPLACE TRIGGER hr_candidate_portal_sessions_touch_updated_at
    BEFORE UPDATE ON public.hr_candidate_portal_sessions
    FOR EACH ROW WHEN (current_setting('hr_migrations.backfill_in_progress', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION :"hr_schema".hr_touch_updated_at();
CREATE OR REPLACE TRIGGER hr_portal_sessions_org
    BEFORE INSERT OR UPDATE OF candidate_id, organization_id ON public.hr_candidate_portal_sessions
    FOR EACH ROW WHEN (current_setting('hr_migrations.backfill_in_progress', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION :"hr_schema".hr_portal_sessions_org_trigger();

-- Step 3 ---------------------------------------------------------------------
SELECT :"hr_schema".hr_set_phase('portal_sessions', 'dual')
 WHERE :"hr_schema".hr_migration_phase('portal_sessions') = 'not_applied';
RESET lock_timeout;
CALL :"hr_schema".hr_run_backfill('portal_sessions', :batch_size, promote => false);

-- Step 4 ---------------------------------------------------------------------
-- After the backfill: the FK then checks the backfilled rows in one
-- VALIDATE scan instead of one lookup per updated row. Nothing is lost
-- meanwhile: the values come from hr_candidates.organization_id, itself a
-- foreign key to pf_organizations.
SET lock_timeout = '3s';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conname = 'fk_hr_candidate_portal_sessions_organization_id'
                      AND conrelid = 'public.hr_candidate_portal_sessions'::regclass) THEN
        ALTER TABLE public.hr_candidate_portal_sessions
            ADD CONSTRAINT fk_hr_candidate_portal_sessions_organization_id
            FOREIGN KEY (organization_id) REFERENCES public.pf_organizations (id) ON DELETE CASCADE
            NOT VALID;
    END IF;
END
$$;

-- Step 5 ---------------------------------------------------------------------
ALTER TABLE public.hr_candidate_portal_sessions
    VALIDATE CONSTRAINT fk_hr_candidate_portal_sessions_organization_id;

-- Step 6 ---------------------------------------------------------------------
SELECT format('DROP INDEX CONCURRENTLY %s', i.indexrelid::regclass)
  FROM pg_index i
 WHERE i.indexrelid = to_regclass('public.idx_hr_candidate_portal_sessions_organization_id')
   AND NOT i.indisvalid \gexec
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_hr_candidate_portal_sessions_organization_id
    ON public.hr_candidate_portal_sessions (organization_id);

-- Step 7 ---------------------------------------------------------------------
-- One policy per command, TO authenticated, each comparing with the claim
-- read once per query: (SELECT hr_jwt_organization_id()) becomes an
-- InitPlan. A missing, empty or malformed claim gives NULL: zero rows, no
-- error. service_role keeps full access through BYPASSRLS; anon has no
-- policy and sees nothing. RLS is not FORCEd: the table owner (migrations,
-- SECURITY DEFINER functions of this extension) is not subject to it, and
-- no application role should own the table. The plan's policy, if present,
-- is replaced (it had USING only, no TO and no WITH CHECK).
BEGIN;
ALTER TABLE public.hr_candidate_portal_sessions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS "Sessions org isolation" ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_select ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_insert ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_update ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_delete ON public.hr_candidate_portal_sessions;
CREATE POLICY hr_portal_sessions_select ON public.hr_candidate_portal_sessions
    FOR SELECT TO authenticated
    USING (organization_id = (SELECT :"hr_schema".hr_jwt_organization_id()));
CREATE POLICY hr_portal_sessions_insert ON public.hr_candidate_portal_sessions
    FOR INSERT TO authenticated
    WITH CHECK (organization_id = (SELECT :"hr_schema".hr_jwt_organization_id()));
CREATE POLICY hr_portal_sessions_update ON public.hr_candidate_portal_sessions
    FOR UPDATE TO authenticated
    USING (organization_id = (SELECT :"hr_schema".hr_jwt_organization_id()))
    WITH CHECK (organization_id = (SELECT :"hr_schema".hr_jwt_organization_id()));
CREATE POLICY hr_portal_sessions_delete ON public.hr_candidate_portal_sessions
    FOR DELETE TO authenticated
    USING (organization_id = (SELECT :"hr_schema".hr_jwt_organization_id()));
COMMIT;

-- Step 8 ---------------------------------------------------------------------
RESET lock_timeout;
SELECT :"hr_schema".hr_set_phase('portal_sessions', 'migrated')
  FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'portal_sessions' AND phase = 'dual' AND pending = 0 AND blocked = 0;
SELECT migration, phase, total, migrated, pending, blocked, note
  FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'portal_sessions';
