-- =============================================================================
-- 001_reference_tokens.sql — Migration 1: salted-hash storage of reference tokens
-- =============================================================================
-- Run:    psql -v ON_ERROR_STOP=1 [-v batch_size=5000] -f sql/migrations/001_reference_tokens.sql
--         (autocommit; NOT inside a transaction: the backfill COMMITs per batch)
-- Needs:  CREATE EXTENSION hr_migrations (any schema) in this database.
-- Does:   1. adds access_token_hash (+ the plan's audit columns)     ACCESS EXCLUSIVE, metadata only
--         2. audit FKs and a hash-format CHECK, NOT VALID            SHARE ROW EXCLUSIVE / ACCESS EXCLUSIVE, brief
--         3. VALIDATEs them                                          SHARE UPDATE EXCLUSIVE (reads and writes go on)
--         4. validation log table hr_reference_token_validations    none on existing tables
--         5. triggers: token hashing, updated_at                     SHARE ROW EXCLUSIVE, brief
--         6. phase not_applied -> dual: new tokens hashed from here on
--         7. backfill in committed batches (row locks, one batch at a time),
--            then phase -> migrated when no plaintext token lacks a hash
-- Every DDL statement runs under lock_timeout: if the app holds a conflicting
-- lock it fails fast instead of queueing every other query behind it. Then
-- simply run the file again: every step is idempotent.
-- Undo:   sql/rollback/001_reference_tokens.sql
-- =============================================================================
\ir ../preamble.psql

SET statement_timeout = 0;

-- Step 1 ---------------------------------------------------------------------
-- Nullable columns without defaults: a catalog change, no table rewrite.
ALTER TABLE public.hr_references
    ADD COLUMN IF NOT EXISTS access_token_hash text,
    ADD COLUMN IF NOT EXISTS created_by uuid,
    ADD COLUMN IF NOT EXISTS updated_by uuid;

COMMENT ON COLUMN public.hr_references.access_token IS
    'DEPRECATED (hr_migrations 001): plaintext reference token. Verify with hr_verify_reference_token(); new tokens are stored as access_token_hash only once reference_tokens is enforced.';
COMMENT ON COLUMN public.hr_references.access_token_hash IS
    'Token hash v1: base64(salt[16] || sha256(salt || token)). Salted per row, so it is NOT an index key: verify by reference id.';
-- Deliberately no index on access_token_hash (the plan created one): every
-- hash has its own random salt, so a presented token cannot be hashed into
-- something to look up. Tokens are verified by reference id.

-- Statistics for the new column (SHARE UPDATE EXCLUSIVE, a 30k-row sample):
-- without them the planner guesses 0.5% of rows have no hash yet and plans
-- the first backfill batch as a scan and sort of the whole table.
ANALYZE public.hr_references (access_token, access_token_hash);

-- Step 2 ---------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'hr_references_created_by_fkey'
                      AND conrelid = 'public.hr_references'::regclass) THEN
        ALTER TABLE public.hr_references ADD CONSTRAINT hr_references_created_by_fkey
            FOREIGN KEY (created_by) REFERENCES public.pf_profiles (id) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'hr_references_updated_by_fkey'
                      AND conrelid = 'public.hr_references'::regclass) THEN
        ALTER TABLE public.hr_references ADD CONSTRAINT hr_references_updated_by_fkey
            FOREIGN KEY (updated_by) REFERENCES public.pf_profiles (id) NOT VALID;
    END IF;
    -- 48 bytes encode to exactly 64 base64 characters without padding.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'hr_references_access_token_hash_v1'
                      AND conrelid = 'public.hr_references'::regclass) THEN
        ALTER TABLE public.hr_references ADD CONSTRAINT hr_references_access_token_hash_v1
            CHECK (access_token_hash ~ '^[A-Za-z0-9+/]{64}$') NOT VALID;
    END IF;
END
$$;

-- Step 3 ---------------------------------------------------------------------
ALTER TABLE public.hr_references VALIDATE CONSTRAINT hr_references_created_by_fkey;
ALTER TABLE public.hr_references VALIDATE CONSTRAINT hr_references_updated_by_fkey;
ALTER TABLE public.hr_references VALIDATE CONSTRAINT hr_references_access_token_hash_v1;

-- Step 4 ---------------------------------------------------------------------
-- The plan's "log all token validations". Never holds a token: only which
-- path decided and whether it succeeded. RLS on with no policy: only
-- service_role (BYPASSRLS) and the owner read it.
CREATE TABLE IF NOT EXISTS public.hr_reference_token_validations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference_id uuid,
    method       text NOT NULL CHECK (method IN ('hash', 'plaintext', 'none')),
    success      boolean NOT NULL,
    validated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hr_reference_token_validations_reference
    ON public.hr_reference_token_validations (reference_id, validated_at);
ALTER TABLE public.hr_reference_token_validations ENABLE ROW LEVEL SECURITY;
COMMENT ON TABLE public.hr_reference_token_validations IS
    'hr_migrations: one row per hr_verify_reference_token() call (never the token)';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON public.hr_reference_token_validations FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON public.hr_reference_token_validations FROM authenticated;
    END IF;
END
$$;

-- Step 5 ---------------------------------------------------------------------
-- The plan's per-table updated_at function is replaced by the generic one.
DROP TRIGGER IF EXISTS update_hr_references_updated_at ON public.hr_references;
CREATE OR REPLACE TRIGGER hr_references_touch_updated_at
    BEFORE UPDATE ON public.hr_references
    FOR EACH ROW WHEN (current_setting('hr_migrations.backfill_in_progress', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION :"hr_schema".hr_touch_updated_at();
CREATE OR REPLACE TRIGGER hr_references_token
    BEFORE INSERT OR UPDATE OF access_token ON public.hr_references
    FOR EACH ROW EXECUTE FUNCTION :"hr_schema".hr_references_token_trigger();

-- Step 6 ---------------------------------------------------------------------
-- Only from not_applied: re-running the file never moves a later phase back.
SELECT :"hr_schema".hr_set_phase('reference_tokens', 'dual')
 WHERE :"hr_schema".hr_migration_phase('reference_tokens') = 'not_applied';

-- Step 7 ---------------------------------------------------------------------
-- psql -v batch_size=N overrides the rows hashed per transaction.
\if :{?batch_size}
\else
\set batch_size 5000
\endif
RESET lock_timeout;
CALL :"hr_schema".hr_run_backfill('reference_tokens', :batch_size);

SELECT migration, phase, total, migrated, pending, blocked, note
  FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'reference_tokens';
