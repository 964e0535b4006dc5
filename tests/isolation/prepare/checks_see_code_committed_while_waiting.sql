-- token and session migrations applied; a trigger function owned by a role
-- that is not a superuser (code the admin could plant), which records who
-- ran it.
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/001_reference_tokens.sql
\i :hrm_root/sql/migrations/002_portal_sessions.sql
\o
DO $$ BEGIN
  CREATE ROLE iso_planter NOLOGIN NOSUPERUSER;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE public.planted_runs (who name);
GRANT INSERT ON public.planted_runs TO PUBLIC;
CREATE FUNCTION public.planted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.planted_runs VALUES (current_user);
    RETURN NEW;
END $$;
ALTER FUNCTION public.planted() OWNER TO iso_planter;
-- A table shaped like the sessions, with the planted trigger and one
-- session without an organization: what the admin could attach as an
-- inheritance child while a batch waits.
CREATE TABLE public.sessions_child (LIKE public.hr_candidate_portal_sessions INCLUDING DEFAULTS);
INSERT INTO public.sessions_child (id, candidate_id, session_token)
SELECT gen_random_uuid(), c.id, 'child' FROM public.hr_candidates c WHERE c.organization_id IS NOT NULL LIMIT 1;
CREATE TRIGGER planted BEFORE UPDATE ON public.sessions_child FOR EACH ROW EXECUTE FUNCTION public.planted();
GRANT SELECT, UPDATE ON public.sessions_child TO hr_migrations_definer;
