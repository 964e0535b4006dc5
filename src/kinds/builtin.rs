//! The three migrations of the plan, as the install registers them
//! (`hr_migrations.hr_builtin_migrations()`). The names are the registry's
//! `objects`: what each kind's plan creates and drops.

use serde_json::json;

use super::Entry;

/// A built-in registry row: the entry and its default batch size.
pub struct Builtin {
    pub entry: Entry,
    pub default_batch_size: i32,
}

fn entry(
    migration: &str,
    position: i32,
    kind: &str,
    table: &str,
    objects: serde_json::Value,
) -> Entry {
    Entry {
        migration: migration.into(),
        position,
        kind: kind.into(),
        table_schema: "public".into(),
        table_name: table.into(),
        objects: serde_json::from_value(objects).expect("an object"),
    }
}

pub fn builtin() -> Vec<Builtin> {
    vec![
        Builtin {
            default_batch_size: 5000,
            entry: entry(
                "reference_tokens",
                1,
                "token_hash",
                "hr_references",
                json!({
                    "token_trigger": "hr_references_token",
                    "touch_trigger": "hr_references_touch_updated_at",
                    "hash_check": "hr_references_access_token_hash_v1",
                    "created_by_fk": "hr_references_created_by_fkey",
                    "updated_by_fk": "hr_references_updated_by_fkey",
                    "log_table": "hr_reference_token_validations",
                    "log_policy": "hr_reference_token_validations_select",
                    "log_index": "hr_reference_token_validations_reference",
                    "tenant_index": "hr_references_candidate_id",
                    "policy_select": "hr_references_select",
                    "policy_insert": "hr_references_insert",
                    "policy_update": "hr_references_update",
                    "policy_delete": "hr_references_delete",
                    "legacy_triggers": ["update_hr_references_updated_at"]
                }),
            ),
        },
        Builtin {
            default_batch_size: 5000,
            entry: entry(
                "portal_sessions",
                2,
                "tenant_column",
                "hr_candidate_portal_sessions",
                json!({
                    "org_trigger": "hr_portal_sessions_org",
                    "touch_trigger": "hr_candidate_portal_sessions_touch_updated_at",
                    "fk": "fk_hr_candidate_portal_sessions_organization_id",
                    "index": "idx_hr_candidate_portal_sessions_organization_id",
                    "not_null_check": "hr_candidate_portal_sessions_organization_id_not_null",
                    "policy_select": "hr_portal_sessions_select",
                    "policy_insert": "hr_portal_sessions_insert",
                    "policy_update": "hr_portal_sessions_update",
                    "policy_delete": "hr_portal_sessions_delete",
                    "legacy_policies": ["Sessions org isolation"],
                    "legacy_triggers": ["update_hr_candidate_portal_sessions_updated_at"]
                }),
            ),
        },
        Builtin {
            default_batch_size: 1000,
            entry: entry(
                "integration_credentials",
                3,
                "credential_move",
                "hr_job_board_integrations",
                json!({
                    "sync_insert_trigger": "hr_job_board_integrations_sync_insert",
                    "sync_update_trigger": "hr_job_board_integrations_sync_update",
                    "touch_trigger": "hr_job_board_integrations_touch_updated_at",
                    "fk": "fk_hr_job_board_integrations_credential_id",
                    "index": "idx_hr_job_board_integrations_credential_id",
                    "unique_index": "hr_job_board_integrations_credential_id_key",
                    "credentials_table": "pf_credentials",
                    "credentials_policy": "pf_credentials_select",
                    "credentials_org_index": "pf_credentials_organization_id",
                    "envelope_check": "pf_credentials_encrypted_value_envelope",
                    "log_table": "pf_credential_migrations",
                    "log_policy": "pf_credential_migrations_select",
                    "log_index": "pf_credential_migrations_record",
                    "tenant_index": "hr_job_board_integrations_organization_id",
                    "policy_select": "hr_job_board_integrations_select",
                    "policy_insert": "hr_job_board_integrations_insert",
                    "policy_update": "hr_job_board_integrations_update",
                    "policy_delete": "hr_job_board_integrations_delete",
                    "legacy_triggers": ["update_hr_job_board_integrations_updated_at"],
                    "legacy_checks": ["pf_credentials_encrypted_value_envelope_v1"]
                }),
            ),
        },
    ]
}
