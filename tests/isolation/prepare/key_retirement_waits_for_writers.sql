-- integration_credentials applied (migrated): every organization has a
-- data key, generation 1.
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/003_integration_credentials.sql
\o
CREATE TABLE public.iso_target AS
SELECT organization_id AS org FROM public.hr_job_board_integrations
 WHERE credential_id IS NOT NULL ORDER BY id LIMIT 1;
-- The organization's generations, relative to its newest (generation
-- numbers grow from one permutation to the next).
CREATE VIEW public.iso_generations AS
SELECT string_agg((k.generation - m.g) || ' ' || k.state, ', ' ORDER BY k.generation DESC) AS generations
  FROM hr_organization_keys k, public.iso_target t,
       LATERAL (SELECT max(generation) AS g FROM hr_organization_keys WHERE organization_id = t.org) m
 WHERE k.organization_id = t.org AND k.generation >= m.g - 2;
