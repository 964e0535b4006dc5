
-- hr_migrations 0.1.0 -> 0.2.0, part 3 of 3.

-- The state, into the 0.2.0 tables: phases, key check values, and each
-- backfill's cursor as the engine's 'backfill' operation.
INSERT INTO hr_migration_phases (migration, phase, changed_at, changed_by)
SELECT migration, phase, changed_at, changed_by FROM hr_migration_phases_v010;
INSERT INTO hr_key_checks (key_version, check_value, first_used_at)
SELECT key_version, check_value, first_used_at FROM hr_key_checks_v010;
INSERT INTO hr_batch_progress (migration, operation, last_id, batches, rows_done, started_at, updated_at)
SELECT migration, 'backfill', last_id, batches, rows_done, started_at, updated_at FROM hr_backfill_progress_v010;
DROP TABLE hr_migration_phases_v010, hr_backfill_progress_v010, hr_key_checks_v010;

-- The application's objects of the migrations 0.1.0 applied, made what the
-- 0.2.0 scripts make: triggers whose WHEN clause reads the new backfill
-- flag (0.1.0's read a setting any role could set), tables closed to
-- planted triggers, and the definer role's privileges on them. Running
-- sql/migrations/ again afterwards is harmless and does the same.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.hr_migration_phases WHERE migration = 'reference_tokens' AND phase <> 'not_applied') THEN
        CREATE OR REPLACE TRIGGER hr_references_touch_updated_at
            BEFORE UPDATE ON public.hr_references
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_touch_updated_at();
        CREATE OR REPLACE TRIGGER hr_references_token
            BEFORE INSERT OR UPDATE OF access_token ON public.hr_references
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_references_token_trigger();
        PERFORM @extschema@.hr_secure_table('public.hr_references', 'SELECT, UPDATE');
        PERFORM @extschema@.hr_secure_own_table('public.hr_reference_token_validations', ARRAY['service_role'], 'INSERT');
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.hr_migration_phases WHERE migration = 'portal_sessions' AND phase <> 'not_applied') THEN
        CREATE OR REPLACE TRIGGER hr_candidate_portal_sessions_touch_updated_at
            BEFORE UPDATE ON public.hr_candidate_portal_sessions
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_touch_updated_at();
        CREATE OR REPLACE TRIGGER hr_portal_sessions_org
            BEFORE INSERT OR UPDATE OF candidate_id, organization_id ON public.hr_candidate_portal_sessions
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_portal_sessions_org_trigger();
        PERFORM @extschema@.hr_secure_table('public.hr_candidate_portal_sessions', 'SELECT, UPDATE');
        GRANT SELECT ON public.hr_candidates TO hr_migrations_definer;
        PERFORM @extschema@.hr_forget_init_privs('pg_catalog.pg_class', 'public.hr_candidates'::regclass);
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.hr_migration_phases WHERE migration = 'integration_credentials' AND phase <> 'not_applied') THEN
        CREATE OR REPLACE TRIGGER hr_job_board_integrations_touch_updated_at
            BEFORE UPDATE ON public.hr_job_board_integrations
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_touch_updated_at();
        CREATE OR REPLACE TRIGGER hr_job_board_integrations_sync_insert
            AFTER INSERT ON public.hr_job_board_integrations
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_job_board_integrations_trigger();
        CREATE OR REPLACE TRIGGER hr_job_board_integrations_sync_update
            BEFORE UPDATE OF api_key, api_secret, refresh_token, credential_id ON public.hr_job_board_integrations
            FOR EACH ROW WHEN (NOT @extschema@.hr_backfill_in_progress())
            EXECUTE FUNCTION @extschema@.hr_job_board_integrations_trigger();
        PERFORM @extschema@.hr_secure_table('public.hr_job_board_integrations', 'SELECT, UPDATE');
        PERFORM @extschema@.hr_secure_table('public.pf_credentials', 'SELECT, INSERT, UPDATE, DELETE');
        PERFORM @extschema@.hr_secure_own_table('public.pf_credential_migrations', ARRAY['authenticated', 'service_role'], 'SELECT, INSERT');
    END IF;
END
$$;
