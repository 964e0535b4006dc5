-- Loaded by every prepare/<spec>.sql: the application's schema with
-- Supabase's roles (tests/fixtures), 300 rows of each table over 3
-- organizations, and the extension. The isolation runner (scripts/test-all.sh
-- isolation) runs prepare/<spec>.sql with psql once, then the spec's
-- permutations against that database.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
\i :hrm_root/tests/fixtures/schema.sql
\set scale 300
\i :hrm_root/tests/fixtures/generate.sql
CREATE EXTENSION hr_migrations SCHEMA extensions;
ALTER DATABASE :"DBNAME" SET search_path = public, extensions;
SET search_path = public, extensions;
-- Sessions whose organization cannot be resolved would keep portal_sessions
-- from `migrated`; these specs are about concurrency, not about them.
DELETE FROM public.hr_candidate_portal_sessions s
 WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                    WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL);
-- For steps that must see another session's effect while a third holds a
-- lock: polls `condition` every 10 ms for at most `seconds`. A bound, not a
-- measurement: the answer is whether it became true while the lock was held.
CREATE FUNCTION public.iso_eventually(condition text, seconds integer DEFAULT 10) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1 .. seconds * 100 LOOP
        EXECUTE condition INTO ok;
        IF ok THEN RETURN true; END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END $$;
-- A step's outcome as text: the value, or the SQLSTATE of its error (the
-- messages of some name uuids that change from run to run).
CREATE FUNCTION public.iso_outcome(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    EXECUTE query INTO v;
    RETURN coalesce(v, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION public.iso_outcome(text) TO PUBLIC;
