-- The extension and the application's tables; no migration applied.
\i :hrm_root/tests/isolation/prepare/common.sql
CREATE TABLE public.iso_target AS SELECT id FROM public.hr_references ORDER BY id LIMIT 1;
CREATE TABLE public.iso_marks (mark text);
