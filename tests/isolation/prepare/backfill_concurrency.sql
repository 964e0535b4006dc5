-- reference_tokens applied (migrated); each permutation adds 40 pending rows.
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/001_reference_tokens.sql
\o
