-- Scenario: migration 2 (portal_sessions), tenant isolation with RLS.
-- 300 sessions from the fixture generator over 3 organizations; one session
-- has no candidate and one belongs to a candidate without an organization.
\getenv hrm_root HRM_ROOT
\set SHOW_CONTEXT never
\set ECHO none
SET client_min_messages = warning;
\i :hrm_root/tests/fixtures/schema.sql
\set scale 300
\i :hrm_root/tests/fixtures/generate.sql
CREATE EXTENSION hr_migrations SCHEMA extensions;
SET search_path = public, extensions;
-- Short names for the three organizations ('Organization 1' is org_a).
CREATE TEMP TABLE orgs AS
SELECT id, (ARRAY['org_a', 'org_b', 'org_c'])[row_number() OVER (ORDER BY name)] AS name
  FROM pf_organizations;
GRANT SELECT ON orgs TO authenticated;
\set ECHO all

-- The claim parser: top-level organization_id, else app_metadata; never
-- user_metadata; anything odd is NULL, never an error.
SELECT claims, hr_jwt_organization_id() IS NOT NULL AS has_org
  FROM (VALUES ('{"organization_id":"0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab"}'),
               ('{"app_metadata":{"organization_id":"0B5C6E2A-9D1F-4C3E-8A7B-1234567890AB"}}'),
               ('{"user_metadata":{"organization_id":"0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab"}}'),
               ('{"organization_id":"not-a-uuid"}'),
               ('{"organization_id":'),
               ('')) AS t(claims),
       LATERAL set_config('request.jwt.claims', claims, true) AS s;

-- Apply the migration file (output hidden: it holds timings, and its
-- WARNING about blocked sessions names the script's path).
\set ECHO none
SET client_min_messages = error;
\o /dev/null
\i :hrm_root/sql/migrations/002_portal_sessions.sql
\o
\set ON_ERROR_STOP off
\set ECHO all

RESET client_min_messages;
-- Two sessions cannot be resolved: they stay NULL, counted as blocked, and
-- the phase stays dual (the script printed a WARNING with the count).
SELECT migration, phase, total, migrated, pending, blocked, note
  FROM hr_migration_status() WHERE migration = 'portal_sessions';
SELECT hr_set_phase('portal_sessions', 'enforced');

-- Every resolvable session carries its candidate's organization.
SELECT count(*) AS mismatched
  FROM hr_candidate_portal_sessions s JOIN hr_candidates c ON c.id = s.candidate_id
 WHERE s.organization_id IS DISTINCT FROM c.organization_id;

-- Policies: one per command, for authenticated, reading the claim once.
SELECT polname, polcmd, polroles::regrole[] AS roles,
       pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polwithcheck, polrelid) AS with_check
  FROM pg_policy WHERE polrelid = 'hr_candidate_portal_sessions'::regclass ORDER BY polname;

-- A PostgREST request for org_a sees org_a's sessions only.
SELECT c.id AS org_b_candidate FROM hr_candidates c JOIN orgs o ON o.id = c.organization_id
 WHERE o.name = 'org_b' ORDER BY c.id LIMIT 1 \gset
BEGIN;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', json_build_object('organization_id', id)::text, true) IS NOT NULL AS claims_set
  FROM orgs WHERE name = 'org_a';
SELECT o.name, count(*) FROM hr_candidate_portal_sessions s JOIN orgs o ON o.id = s.organization_id GROUP BY 1;
-- It cannot attach a session to org_b's candidate: the trigger derives
-- org_b and the policy's WITH CHECK refuses it...
SAVEPOINT s1;
INSERT INTO hr_candidate_portal_sessions (candidate_id) VALUES (:'org_b_candidate');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s1;
-- ...and claiming org_a for it is refused by the trigger.
INSERT INTO hr_candidate_portal_sessions (candidate_id, organization_id)
SELECT :'org_b_candidate', id FROM orgs WHERE name = 'org_a';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- An empty claim (a pooled connection after another tenant's SET LOCAL) and
-- a malformed one see nothing, and raise nothing.
BEGIN;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', '', true);
SELECT count(*) FROM hr_candidate_portal_sessions;
SELECT set_config('request.jwt.claims', '{"organization_id": ', true);
SELECT count(*) FROM hr_candidate_portal_sessions;
ROLLBACK;

-- service_role bypasses RLS and sees every session.
SET ROLE service_role;
SELECT count(*) FROM hr_candidate_portal_sessions;
RESET ROLE;

-- Fix the blocked sessions, re-run the file: migrated, then enforced.
UPDATE hr_candidates SET organization_id = (SELECT id FROM orgs WHERE name = 'org_c')
 WHERE organization_id IS NULL;
DELETE FROM hr_candidate_portal_sessions WHERE candidate_id IS NULL;
\set ECHO none
SET client_min_messages = error;
\o /dev/null
\i :hrm_root/sql/migrations/002_portal_sessions.sql
\o
\set ON_ERROR_STOP off
RESET client_min_messages;
\set ECHO all
SELECT phase, pending, blocked FROM hr_migration_status() WHERE migration = 'portal_sessions';
-- Enforce, step 1 (a brief lock, no scan): a NOT VALID check refuses
-- writes without an organization from now on.
SELECT hr_set_phase('portal_sessions', 'enforced');
SELECT attnotnull FROM pg_attribute
 WHERE attrelid = 'hr_candidate_portal_sessions'::regclass AND attname = 'organization_id';
\set VERBOSITY terse
INSERT INTO hr_candidate_portal_sessions (candidate_id) VALUES (NULL);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- Step 2, the phase's remaining work: VALIDATE (reads and writes go on),
-- then SET NOT NULL, which uses the validated check instead of scanning.
CALL hr_run_backfill('portal_sessions');
SELECT attnotnull FROM pg_attribute
 WHERE attrelid = 'hr_candidate_portal_sessions'::regclass AND attname = 'organization_id';
\set VERBOSITY terse
INSERT INTO hr_candidate_portal_sessions (candidate_id) VALUES (NULL);
\echo :LAST_ERROR_SQLSTATE
