-- =============================================================================
-- rollback/002_portal_sessions.sql — undo migration 2
-- =============================================================================
-- The plan's rollback: "restore RLS policies to previous (less strict)
-- version; no data loss". organization_id is derived data (from
-- hr_candidates), so dropping it loses nothing that cannot be derived again.
-- Run:    psql -v ON_ERROR_STOP=1 [-v disable_rls=on] -f sql/rollback/002_portal_sessions.sql
-- Does:   1. phase -> dual (drops NOT NULL if enforced)
--         2. drops the four policies, the org and updated_at triggers, the
--            index (CONCURRENTLY), the FK and organization_id
--         3. row level security: left ENABLED unless -v disable_rls=on.
--            Enabled with no policy, authenticated sees no session at all:
--            that fails closed. Before 002 the table had no RLS; with
--            Supabase's default grants, disabling it shows every tenant's
--            sessions to every signed-in user. Put your previous policies
--            back first, or disable it knowingly.
--         4. phase -> not_applied
-- Locks:  brief ACCESS EXCLUSIVE per DDL statement, under lock_timeout = 3s.
-- Redo:   sql/migrations/002_portal_sessions.sql
-- =============================================================================
\ir ../preamble.psql
\if :{?disable_rls}
\else
\set disable_rls off
\endif

SELECT :"hr_schema".hr_set_phase('portal_sessions', 'dual')
 WHERE :"hr_schema".hr_migration_phase('portal_sessions') IN ('migrated', 'enforced');

BEGIN;
DROP POLICY IF EXISTS hr_portal_sessions_select ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_insert ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_update ON public.hr_candidate_portal_sessions;
DROP POLICY IF EXISTS hr_portal_sessions_delete ON public.hr_candidate_portal_sessions;
DROP TRIGGER IF EXISTS hr_portal_sessions_org ON public.hr_candidate_portal_sessions;
DROP TRIGGER IF EXISTS hr_candidate_portal_sessions_touch_updated_at ON public.hr_candidate_portal_sessions;
COMMIT;
\if :disable_rls
ALTER TABLE public.hr_candidate_portal_sessions DISABLE ROW LEVEL SECURITY;
\echo 'row level security DISABLED on hr_candidate_portal_sessions, as asked'
\else
\echo 'row level security stays ENABLED on hr_candidate_portal_sessions with no policy: authenticated sees no session until you add policies (or run again with -v disable_rls=on)'
\endif

DROP INDEX CONCURRENTLY IF EXISTS public.idx_hr_candidate_portal_sessions_organization_id;
ALTER TABLE public.hr_candidate_portal_sessions
    DROP CONSTRAINT IF EXISTS fk_hr_candidate_portal_sessions_organization_id,
    DROP CONSTRAINT IF EXISTS hr_candidate_portal_sessions_organization_id_not_null,
    DROP COLUMN IF EXISTS organization_id;

SELECT :"hr_schema".hr_set_phase('portal_sessions', 'not_applied');
DELETE FROM :"hr_schema".hr_backfill_progress WHERE migration = 'portal_sessions';
SELECT migration, phase, total, pending, note FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'portal_sessions';
