-- =============================================================================
-- rollback/001_reference_tokens.sql — undo migration 1
-- =============================================================================
-- The plan's rollback: "keep access_token plaintext column; revert to
-- plaintext validation". Tokens created while the phase was enforced exist
-- only as hashes: dropping access_token_hash would make them unverifiable,
-- so this script refuses while any exist, unless -v drop_hash_only_tokens=on
-- (those references then need new tokens).
-- Run:    psql -v ON_ERROR_STOP=1 [-v drop_hash_only_tokens=on] -f sql/rollback/001_reference_tokens.sql
-- Does:   1. refuses if hash-only tokens exist (see above)
--         2. phase -> dual; drops the token and updated_at triggers, the hash
--            CHECK and access_token_hash; restores no comment on access_token
--         3. phase -> not_applied
-- Keeps:  created_by/updated_by (the plan's audit columns, which may hold
--         data by now), hr_reference_token_validations (the audit log).
-- Locks:  brief ACCESS EXCLUSIVE per DDL statement, under lock_timeout = 3s.
-- Redo:   sql/migrations/001_reference_tokens.sql
-- =============================================================================
\ir ../preamble.psql
\if :{?drop_hash_only_tokens}
\else
\set drop_hash_only_tokens off
\endif

SELECT count(*) AS hash_only
  FROM public.hr_references
 WHERE access_token IS NULL AND access_token_hash IS NOT NULL \gset
\if :drop_hash_only_tokens
\else
SELECT (:hash_only > 0) AS refuse \gset
\if :refuse
DO $$ BEGIN
    RAISE EXCEPTION 'refusing to roll back reference_tokens: some references have a token only as a hash and could no longer be verified'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'hr_migration_status() counts them; run again with -v drop_hash_only_tokens=on to drop them anyway';
END $$;
\endif
\endif

SELECT :"hr_schema".hr_set_phase('reference_tokens', 'dual')
 WHERE :"hr_schema".hr_migration_phase('reference_tokens') IN ('migrated', 'enforced');
DROP TRIGGER IF EXISTS hr_references_token ON public.hr_references;
DROP TRIGGER IF EXISTS hr_references_touch_updated_at ON public.hr_references;
ALTER TABLE public.hr_references
    DROP CONSTRAINT IF EXISTS hr_references_access_token_hash_v1,
    DROP COLUMN IF EXISTS access_token_hash;
COMMENT ON COLUMN public.hr_references.access_token IS NULL;

SELECT :"hr_schema".hr_set_phase('reference_tokens', 'not_applied');
DELETE FROM :"hr_schema".hr_backfill_progress WHERE migration = 'reference_tokens';
SELECT migration, phase, total, pending, note FROM :"hr_schema".hr_migration_status()
 WHERE migration = 'reference_tokens';
