-- =============================================================================
-- 003_integration_credentials.sql — Migration 3: job-board credentials into
-- pf_credentials, AES-256-GCM encrypted
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=N] -f sql/migrations/003_integration_credentials.sql
--         in autocommit mode, NOT inside BEGIN (CREATE INDEX CONCURRENTLY; the
--         move COMMITs per batch).
-- Needs:  CREATE EXTENSION hr_migrations, and the keyring configured:
--         hr_migrations.keyring_file and hr_migrations.active_key_version in
--         postgresql.conf, reloaded (docs/key-management.md). Step 0 stops the
--         script, before any DDL, when they are not usable.
-- Does:   the credential_move steps (sql/kinds/credential_move.psql) on
--         hr_job_board_integrations: credential_id, FK, index, the audit log
--         pf_credential_migrations, sync triggers, the move in batches.
--         Every step is idempotent; on a lock timeout, run the file again.
-- Undo:   sql/rollback/003_integration_credentials.sql
-- =============================================================================
\set migration integration_credentials
\ir ../preamble.psql
\ir ../kinds/credential_move.psql
\ir ../epilogue.psql
