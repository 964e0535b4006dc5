-- =============================================================================
-- rollback/003_integration_credentials.sql — undo migration 3
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=N] -f sql/rollback/003_integration_credentials.sql
--         (autocommit; needs the keyring, to decrypt)
-- Does:   the credential_move undo (sql/kinds/credential_move_rollback.psql):
--         plaintext restored exactly from each credential in committed
--         batches (credentials that cannot be restored are kept and
--         reported, and nothing is dropped), then the triggers, index, FK
--         and credential_id dropped; phase -> not_applied.
-- Keeps:  pf_credential_migrations (the audit trail, now with the rollback),
--         the envelope CHECK on pf_credentials, other pf_credentials rows.
-- Redo:   sql/migrations/003_integration_credentials.sql
-- =============================================================================
\set migration integration_credentials
\ir ../preamble.psql
\ir ../kinds/credential_move_rollback.psql
\ir ../epilogue.psql
