-- =============================================================================
-- 001_reference_tokens.sql — Migration 1: salted-hash storage of reference tokens
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=N] -f sql/migrations/001_reference_tokens.sql
--         (autocommit; NOT inside a transaction: the backfill COMMITs per batch)
-- Needs:  CREATE EXTENSION hr_migrations (any schema) in this database.
-- Does:   A. the plan's audit columns created_by/updated_by and their FKs,
--            NOT VALID then VALIDATEd              brief ACCESS EXCLUSIVE / SHARE ROW EXCLUSIVE;
--                                                   the scans under SHARE UPDATE EXCLUSIVE
--         B. the validation log hr_reference_token_validations (the plan's
--            "log all token validations"; never a token)   no lock on existing tables
--         C. the token_hash steps (sql/kinds/token_hash.psql): hash column,
--            format CHECK, triggers, phase dual, batched backfill, phase migrated
-- Every DDL statement runs under lock_timeout: if the app holds a conflicting
-- lock it fails fast instead of queueing every other query behind it. Then
-- simply run the file again: every step is idempotent.
-- Undo:   sql/rollback/001_reference_tokens.sql
-- =============================================================================
\set migration reference_tokens
\ir ../preamble.psql

-- Step A ---------------------------------------------------------------------
CALL hr_migrations.hr_ddl(:'migration', $ddl$
    ALTER TABLE {table}
        ADD COLUMN IF NOT EXISTS created_by uuid,
        ADD COLUMN IF NOT EXISTS updated_by uuid;
    COMMENT ON COLUMN {table}.access_token IS
        'DEPRECATED (hr_migrations 001): plaintext reference token. Issue tokens with hr_issue_reference_token() and verify with hr_verify_reference_token(); erased and dropped by the contract phase.'
$ddl$);
CALL hr_migrations.hr_ddl(:'migration', $ddl$
    ALTER TABLE {table} ADD CONSTRAINT hr_references_created_by_fkey
        FOREIGN KEY (created_by) REFERENCES {table_schema}.pf_profiles (id) NOT VALID
$ddl$, skip_when => $ddl$
    EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = '{table}'::regclass AND conname = 'hr_references_created_by_fkey')
$ddl$);
CALL hr_migrations.hr_ddl(:'migration', $ddl$
    ALTER TABLE {table} ADD CONSTRAINT hr_references_updated_by_fkey
        FOREIGN KEY (updated_by) REFERENCES {table_schema}.pf_profiles (id) NOT VALID
$ddl$, skip_when => $ddl$
    EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = '{table}'::regclass AND conname = 'hr_references_updated_by_fkey')
$ddl$);
ALTER TABLE :tbl VALIDATE CONSTRAINT hr_references_created_by_fkey;
ALTER TABLE :tbl VALIDATE CONSTRAINT hr_references_updated_by_fkey;

-- Step B ---------------------------------------------------------------------
-- Only the definer role writes it (hr_verify_reference_token); service_role
-- reads it, authenticated its own organization's rows; anon has nothing
-- (docs/security.md).
CALL hr_migrations.hr_ddl(:'migration', $ddl$
    CREATE TABLE IF NOT EXISTS {log_table} (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reference_id uuid,
        method       text NOT NULL CHECK (method IN ('hash', 'plaintext', 'none')),
        success      boolean NOT NULL,
        validated_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE {log_table} ENABLE ROW LEVEL SECURITY;
    -- A tenant reads the validations of its own organization's references.
    DROP POLICY IF EXISTS {log_policy} ON {log_table};
    CREATE POLICY {log_policy} ON {log_table}
        FOR SELECT TO authenticated
        USING (EXISTS (SELECT 1 FROM {table} r
                        WHERE r.id OPERATOR(pg_catalog.=) reference_id
                          AND r.candidate_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT {ext}.hr_organization_candidates()))));
    COMMENT ON TABLE {log_table} IS
        'hr_migrations: one row per hr_verify_reference_token() call (never the token)'
$ddl$);
SELECT hr_migrations.hr_render(:'migration', '{log_table}') AS log_table \gset
CREATE INDEX CONCURRENTLY IF NOT EXISTS hr_reference_token_validations_reference
    ON :log_table (reference_id, validated_at);
SELECT hr_migrations.hr_secure_own_table(:'log_table'::pg_catalog.regclass, ARRAY['authenticated', 'service_role']::pg_catalog.text[], 'INSERT'::pg_catalog.text);

-- Step C ---------------------------------------------------------------------
\ir ../kinds/token_hash.psql
\ir ../epilogue.psql
