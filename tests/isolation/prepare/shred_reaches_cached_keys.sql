-- integration_credentials applied and enforced (shredding is refused while
-- plaintext remains). Each permutation creates a fresh organization.
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/003_integration_credentials.sql
CALL hr_run_phase('integration_credentials', 'enforced');
\o
CREATE TABLE public.iso_target (org uuid, integration uuid);
GRANT SELECT ON public.iso_target TO service_role;
-- An integration of an organization that is never shredded.
CREATE TABLE public.iso_other AS
SELECT id FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL ORDER BY id LIMIT 1;
GRANT SELECT ON public.iso_other TO service_role;
