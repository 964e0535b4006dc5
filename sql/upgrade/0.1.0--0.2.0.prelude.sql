-- hr_migrations 0.1.0 -> 0.2.0, part 1 of 3 (scripts/make-upgrade-script.sh
-- joins this, the 0.2.0 install script and the epilogue into
-- sql/hr_migrations--0.1.0--0.2.0.sql; edit the parts, not the result).
--
-- Run by ALTER EXTENSION hr_migrations UPDATE, in one transaction. It takes
-- brief locks on the application tables of applied migrations (their
-- triggers are re-created in the epilogue): run it at a quiet moment, with
-- SET lock_timeout = '3s' first, and run it again if it times out.

-- Keep the state: the 0.1.0 tables step aside (and are copied into the
-- 0.2.0 tables by the epilogue), their indexes too, so the new tables and
-- their primary keys can take their names.
ALTER TABLE hr_migration_phases RENAME TO hr_migration_phases_v010;
ALTER INDEX hr_migration_phases_pkey RENAME TO hr_migration_phases_v010_pkey;
ALTER TABLE hr_backfill_progress RENAME TO hr_backfill_progress_v010;
ALTER INDEX hr_backfill_progress_pkey RENAME TO hr_backfill_progress_v010_pkey;
ALTER TABLE hr_key_checks RENAME TO hr_key_checks_v010;
ALTER INDEX hr_key_checks_pkey RENAME TO hr_key_checks_v010_pkey;

-- Drop every 0.1.0 function and procedure but those the application's
-- triggers and RLS policies depend on: the 0.2.0 script below replaces
-- those in place (CREATE OR REPLACE), so no trigger or policy is dropped.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.prokind
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'hr_migrations')
                AND p.proname NOT IN ('hr_jwt_organization_id', 'hr_touch_updated_at', 'hr_references_token_trigger',
                                      'hr_portal_sessions_org_trigger', 'hr_job_board_integrations_trigger') LOOP
        EXECUTE format('DROP %s %s', CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
    END LOOP;
END
$$;

-- Part 2: the 0.2.0 install script.
