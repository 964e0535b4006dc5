-- portal_sessions applied (migrated); each permutation makes 10 sessions pending.
\i :hrm_root/tests/isolation/prepare/common.sql
\o /dev/null
\i :hrm_root/sql/migrations/002_portal_sessions.sql
\o
