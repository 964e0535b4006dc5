-- integration_credentials applied (migrated).
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/003_integration_credentials.sql
\o
CREATE TABLE public.iso_target AS
SELECT id FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL ORDER BY id LIMIT 1;
GRANT SELECT ON public.iso_target TO service_role;
