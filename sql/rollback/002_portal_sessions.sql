-- =============================================================================
-- rollback/002_portal_sessions.sql — undo migration 2
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v disable_rls=on] -f sql/rollback/002_portal_sessions.sql
-- Does:   the tenant_column undo (sql/kinds/tenant_column_rollback.psql):
--         policies, triggers, index, FK and organization_id dropped; row
--         level security left enabled unless -v disable_rls=on; phase ->
--         not_applied.
-- Locks:  brief ACCESS EXCLUSIVE per DDL statement, under lock_timeout.
-- Redo:   sql/migrations/002_portal_sessions.sql
-- =============================================================================
\set migration portal_sessions
\ir ../preamble.psql
\ir ../kinds/tenant_column_rollback.psql
\ir ../epilogue.psql
