-- hr_migrations 0.2.0 -> 0.3.0, part 1 of 3 (scripts/make-upgrade-script.sh
-- joins this, the 0.3.0 install script and the epilogue into
-- sql/hr_migrations--0.2.0--0.3.0.sql; edit the parts, not the result).
--
-- 0.2.0 kept its tables and functions in the extension's schema (on
-- Supabase `extensions`, which postgres owns); 0.3.0 keeps them in schema
-- hr_migrations, which the installing superuser owns, and puts only the
-- API's wrappers in the extension's schema (docs/security.md, "Integrity").
-- Run by ALTER EXTENSION hr_migrations UPDATE, in one transaction, as the
-- superuser who installed it. It re-creates the triggers of the applied
-- migrations (brief locks on their tables): run it at a quiet moment, with
-- SET lock_timeout = '3s' first, and run it again if it times out. Then run
-- sql/migrations/ again: the files bring 0.3.0's closing of pf_credentials,
-- the unique credential link and the index on pf_credentials.organization_id.
--
-- Statements here run with search_path = the extension's schema: they name
-- pg_catalog's functions and operators by schema.

-- The view steps aside for its wrapper (nothing depends on it).
DROP VIEW hr_migration_progress;

-- Every 0.2.0 function and procedure goes, but those an application object
-- depends on (the triggers' functions and WHEN clauses, the RLS policies'
-- hr_jwt_organization_id()): those are renamed *_v020 until the epilogue
-- has pointed those objects at the new ones in schema hr_migrations.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::pg_catalog.regprocedure AS sig, p.prokind, p.proname,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_depend u
                             WHERE u.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                               AND u.refobjid OPERATOR(pg_catalog.=) p.oid
                               AND u.deptype OPERATOR(pg_catalog.=) 'n') AS used
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND d.deptype OPERATOR(pg_catalog.=) 'e'
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
                AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
                                                        WHERE e.extname OPERATOR(pg_catalog.=) 'hr_migrations') LOOP
        IF f.used THEN
            EXECUTE pg_catalog.format('ALTER FUNCTION %s RENAME TO %I', f.sig, f.proname OPERATOR(pg_catalog.||) '_v020');
        ELSE
            EXECUTE pg_catalog.format('DROP %s %s', CASE WHEN f.prokind OPERATOR(pg_catalog.=) 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig);
        END IF;
    END LOOP;
END
$$;

-- Part 2: the 0.3.0 install script.
