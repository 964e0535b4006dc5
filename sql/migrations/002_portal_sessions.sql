-- =============================================================================
-- 002_portal_sessions.sql — Migration 2: organization isolation of portal sessions
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=N] -f sql/migrations/002_portal_sessions.sql
--         in autocommit mode, NOT inside BEGIN (CREATE INDEX CONCURRENTLY; the
--         backfill COMMITs per batch).
-- Needs:  CREATE EXTENSION hr_migrations (any schema) in this database.
-- Does:   the tenant_column steps (sql/kinds/tenant_column.psql) on
--         hr_candidate_portal_sessions: organization_id derived from the
--         session's candidate, backfilled in batches, FK, index, RLS policies.
--         Every step is idempotent; on a lock timeout, run the file again.
-- Undo:   sql/rollback/002_portal_sessions.sql
-- =============================================================================
\set migration portal_sessions
\ir ../preamble.psql
\ir ../kinds/tenant_column.psql
\ir ../epilogue.psql
