-- =============================================================================
-- rollback/001_reference_tokens.sql — undo migration 1
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v drop_hash_only_tokens=on] -f sql/rollback/001_reference_tokens.sql
-- Does:   the token_hash undo (sql/kinds/token_hash_rollback.psql): refuses
--         while tokens exist only as hashes, then drops the triggers, the
--         hash CHECK and access_token_hash; phase -> not_applied.
-- Keeps:  created_by/updated_by (the plan's audit columns, which may hold
--         data by now), hr_reference_token_validations (the audit log).
-- Locks:  brief ACCESS EXCLUSIVE per DDL statement, under lock_timeout.
-- Redo:   sql/migrations/001_reference_tokens.sql
-- =============================================================================
\set migration reference_tokens
\ir ../preamble.psql
\ir ../kinds/token_hash_rollback.psql
\ir ../epilogue.psql
