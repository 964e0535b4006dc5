//! Kind `credential_move`: a table's job-board credentials moved into
//! AES-256-GCM envelopes in a credentials table (migration
//! `integration_credentials` on `hr_job_board_integrations`, credentials in
//! `pf_credentials`). The table has `id`, `organization_id`,
//! `job_board_type`, `created_by` and the plaintext columns `api_key`,
//! `api_secret`, `refresh_token`; the plan adds `credential_id`, its foreign
//! key and indexes, the audit log, closes the credentials table before
//! anything moves in, installs the sync triggers and moves the secrets in
//! batches. Its SQL functions (the triggers, the secret API, the batch
//! actions, phase rules) are `kind.sql`.

use super::{
    col, quote_ident, quote_literal, Column, Index, Kind, Lock, Names, Script, Step, Table,
};

pub struct CredentialMove;

/// Every column this kind's SQL reads or writes, with its exact type.
const COLUMNS: &[Column] = &[
    col(Table::Migration, "id", "uuid", true),
    col(Table::Migration, "organization_id", "uuid", true),
    col(Table::Migration, "job_board_type", "text", true),
    col(Table::Migration, "created_by", "uuid", false),
    col(Table::Migration, "api_key", "text", false),
    col(Table::Migration, "api_secret", "text", false),
    col(Table::Migration, "refresh_token", "text", false),
    col(Table::Migration, "credential_id", "uuid", false),
    col(
        Table::Migration,
        "updated_at",
        "timestamp with time zone",
        false,
    ),
    col(Table::Object("credentials_table"), "id", "uuid", true),
    col(
        Table::Object("credentials_table"),
        "organization_id",
        "uuid",
        true,
    ),
    col(
        Table::Object("credentials_table"),
        "credential_type",
        "text",
        true,
    ),
    col(Table::Object("credentials_table"), "name", "text", true),
    col(
        Table::Object("credentials_table"),
        "encrypted_value",
        "text",
        true,
    ),
    col(
        Table::Object("credentials_table"),
        "created_by",
        "uuid",
        false,
    ),
    col(
        Table::Object("credentials_table"),
        "updated_at",
        "timestamp with time zone",
        false,
    ),
    col(Table::Object("log_table"), "table_name", "text", false),
    col(Table::Object("log_table"), "record_id", "uuid", false),
    col(Table::Object("log_table"), "credential_type", "text", false),
    col(Table::Object("log_table"), "migrated_by", "uuid", false),
    col(Table::Object("log_table"), "notes", "text", false),
    col(Table::Sibling("pf_organizations"), "id", "uuid", true),
    col(Table::Sibling("pf_profiles"), "id", "uuid", false),
];

const DEPRECATED: &str =
    "DEPRECATED (hr_migrations): read hr_integration_secret(id); cleared once enforced, dropped by the contract phase.";

/// An envelope v1 or v2: `hrc1.<key version>.` or `hrc2.<data key
/// generation>.`, then the base64url of at least nonce + tag = 28 bytes, 38
/// characters (the length apart from the regex: a counted repetition is
/// slow). No backslash: the literal reads the same whatever
/// `standard_conforming_strings` is.
const ENVELOPE: &str = "encrypted_value ~ '^hrc[12][.][1-9][0-9]*[.][A-Za-z0-9_-]+$' AND octet_length(split_part(encrypted_value, '.', 3)) >= 38";

impl Kind for CredentialMove {
    fn describe(&self, script: Script) -> &'static str {
        match script {
            Script::Migrate => {
                "Job-board credentials into AES-256-GCM envelopes v2 (hrc2: each organization's own data key,\n\
                 wrapped by the keyring) in the credentials table, one per\n\
                 integration (a partial UNIQUE index: a credential is linked once). The credentials table\n\
                 is closed before anything moves in (RLS, an organization policy for authenticated reads,\n\
                 no writes for the API roles, nothing for anon); sync triggers move plaintext written\n\
                 from now on; the move runs in committed batches, then the phase moves to migrated. The\n\
                 plaintext stays until enforced (CALL hr_run_phase(..., 'enforced') clears it after\n\
                 checking each credential decrypts to it). Needs the keyring (docs/key-management.md):\n\
                 the first step stops the file, before any change, when it is not usable."
            }
            Script::Rollback => {
                "The plan's rollback of integration_credentials: plaintext written back exactly from each\n\
                 credential in committed batches, credentials unlinked and deleted, each logged. One that\n\
                 cannot be restored exactly is kept, its integration stays linked, it is recorded in\n\
                 hr_batch_failures and nothing is dropped. Then the triggers, index, foreign key and\n\
                 credential_id are dropped. Keeps the audit log, the envelope CHECK and other credentials.\n\
                 Needs the keyring, to decrypt. A contracted migration has no plaintext columns: refused."
            }
        }
    }

    fn required_objects(&self) -> &'static [&'static str] {
        &[
            "sync_insert_trigger",
            "sync_update_trigger",
            "touch_trigger",
            "fk",
            "index",
            "unique_index",
            "credentials_table",
            "credentials_policy",
            "credentials_org_index",
            "envelope_check",
            "log_table",
            "log_policy",
            "tenant_index",
            "policy_select",
            "policy_insert",
            "policy_update",
            "policy_delete",
        ]
    }

    fn optional_objects(&self) -> &'static [&'static str] {
        // log_index: named <log_table>_record when absent (entries
        // registered before 0.3.0 have none); log_migrated_by_index:
        // <log_table>_migrated_by.
        &[
            "log_index",
            "log_migrated_by_index",
            "legacy_triggers",
            "legacy_checks",
        ]
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn migrate(&self, n: &Names) -> Vec<Step> {
        let t = n.table();
        let creds = n.qualified("credentials_table");
        let log = n.qualified("log_table");
        let mut s = vec![n.preflight()];
        s.push(Step::retry(
            "the keyring opens and the active version is in it",
            Lock::None,
            "SELECT count(*) FROM hr_migrations.hr_keyring_versions()",
        ));
        s.push(Step::retry(
            "add credential_id",
            Lock::AccessExclusive,
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS credential_id uuid"),
        ));
        // So the move's batches are planned as index range scans.
        s.push(
            Step::wait(
                "statistics of the credential columns",
                format!("ANALYZE {t} (credential_id, api_key, api_secret, refresh_token)"),
            )
            .skip_when(format!("NOT {}", n.has_column("api_key"))),
        );
        s.push(
            Step::retry(
                "foreign key to the credentials table, NOT VALID",
                Lock::ShareRowExclusive,
                format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {} FOREIGN KEY (credential_id) REFERENCES {creds} (id) ON DELETE SET NULL NOT VALID",
                    n.obj("fk")
                ),
            )
            .skip_when(n.has_constraint(&t, "fk")),
        );
        s.push(Step::wait(
            "validate the foreign key",
            format!("ALTER TABLE {t} VALIDATE CONSTRAINT {}", n.obj("fk")),
        ));
        s.push(
            Step::retry(
                "mark the plaintext columns deprecated",
                Lock::AccessExclusive,
                format!(
                    "COMMENT ON COLUMN {t}.api_key IS {d}; COMMENT ON COLUMN {t}.api_secret IS {d}; \
                     COMMENT ON COLUMN {t}.refresh_token IS {d}",
                    d = quote_literal(DEPRECATED)
                ),
            )
            .skip_when(format!("NOT {}", n.has_column("api_key"))),
        );
        s.push(Step::retry(
            "describe credential_id",
            Lock::AccessExclusive,
            format!(
                "COMMENT ON COLUMN {t}.credential_id IS {}",
                quote_literal(
                    "The secret in the credentials table (AES-256-GCM envelope, AAD hr_credential_aad(organization_id, id))."
                )
            ),
        ));
        // The plan's audit table, with a real foreign key for migrated_by
        // (the plan wrote the string 'system' into this uuid column): NULL
        // when no person did it. Only the definer role writes it; an
        // organization reads the rows of its own integrations.
        s.push(Step::retry(
            "the audit log, RLS and its tenant policy",
            Lock::AccessExclusive,
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (\
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(), \
                 table_name text NOT NULL, \
                 record_id uuid NOT NULL, \
                 credential_type text NOT NULL, \
                 migrated_at timestamptz DEFAULT now(), \
                 migrated_by uuid REFERENCES {profiles} (id), \
                 notes text); \
                 ALTER TABLE {log} ENABLE ROW LEVEL SECURITY; \
                 DROP POLICY IF EXISTS {policy} ON {log}; \
                 CREATE POLICY {policy} ON {log} FOR SELECT TO authenticated \
                 USING (EXISTS (SELECT 1 FROM {t} i WHERE i.id OPERATOR(pg_catalog.=) record_id \
                 AND i.organization_id OPERATOR(pg_catalog.=) (SELECT hr_migrations.hr_jwt_organization_id())))",
                profiles = n.sibling("pf_profiles"),
                policy = n.obj("log_policy"),
            ),
        ));
        s.push(Step::retry(
            "close the audit log: readers and the definer role only",
            Lock::AccessExclusive,
            format!(
                "SELECT hr_migrations.hr_secure_own_table({}::pg_catalog.regclass, ARRAY['authenticated', 'service_role']::pg_catalog.text[], 'SELECT, INSERT')",
                quote_literal(&log)
            ),
        ));
        // The CHECK of 0.2.0 accepted envelopes v1 only (the upgrade
        // replaces it at once, as a later release's may be).
        for legacy in n.list("legacy_checks") {
            s.push(
                Step::retry(
                    "drop the credentials table's older envelope CHECK",
                    Lock::AccessExclusive,
                    format!("ALTER TABLE {creds} DROP CONSTRAINT IF EXISTS {}", quote_ident(&legacy)),
                )
                .skip_when(format!(
                    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {}::pg_catalog.regclass AND conname = {})",
                    quote_literal(&creds),
                    quote_literal(&legacy)
                )),
            );
        }
        s.push(
            Step::retry(
                "envelope CHECK on the credentials table, NOT VALID",
                Lock::AccessExclusive,
                format!(
                    "ALTER TABLE {creds} ADD CONSTRAINT {} CHECK ({ENVELOPE}) NOT VALID",
                    n.obj("envelope_check")
                ),
            )
            .skip_when(n.has_constraint(&creds, "envelope_check")),
        );
        // Left NOT VALID, with a NOTICE, while old rows are not envelopes
        // (plaintext written by the plan's script?): docs/runbook.md.
        s.push(
            Step::wait(
                "validate the envelope CHECK",
                format!(
                    "ALTER TABLE {creds} VALIDATE CONSTRAINT {}",
                    n.obj("envelope_check")
                ),
            )
            .skip_when(format!(
                "EXISTS (SELECT 1 FROM {creds} WHERE NOT ({ENVELOPE}))"
            )),
        );
        s.push(
            Step::notice(
                "rows of the credentials table that are not envelopes",
                format!(
                    "(SELECT count(*) FROM {creds} WHERE NOT ({ENVELOPE}))::text || {}",
                    quote_literal(&format!(
                        " rows of {creds} are not envelopes v1 (plaintext written by the plan's script?): the envelope CHECK stays NOT VALID (docs/runbook.md, migration 3)"
                    ))
                ),
            )
            .skip_when(format!("NOT EXISTS (SELECT 1 FROM {creds} WHERE NOT ({ENVELOPE}))")),
        );

        s.push(
            Index {
                name: n.raw("index").to_string(),
                table: t.clone(),
                columns: "credential_id",
                unique: false,
                predicate: None,
            }
            .step("index credential_id", n),
        );
        // Two integrations sharing a credential would overwrite each
        // other's secret (the preflight stops the file while one is linked twice).
        s.push(
            Index {
                name: n.raw("unique_index").to_string(),
                table: t.clone(),
                columns: "credential_id",
                unique: true,
                predicate: Some("credential_id IS NOT NULL"),
            }
            .step("unique credential_id: a credential is linked once", n),
        );
        s.push(
            Index {
                name: n.raw("credentials_org_index").to_string(),
                table: creds.clone(),
                columns: "organization_id",
                unique: false,
                predicate: None,
            }
            .step("index the credentials' organization_id (their policy)", n),
        );
        s.push(
            Index {
                name: n.raw("tenant_index").to_string(),
                table: t.clone(),
                columns: "organization_id",
                unique: false,
                predicate: None,
            }
            .step("index organization_id (row isolation)", n),
        );
        s.push(
            Index {
                name: n.raw_or("log_index", format!("{}_record", n.raw("log_table"))),
                table: log.clone(),
                columns: "record_id",
                unique: false,
                predicate: None,
            }
            .step("index the audit log by integration", n),
        );
        // Its foreign key to the profiles: a profile deleted would scan the
        // log without it.
        s.push(
            Index {
                name: n.raw_or(
                    "log_migrated_by_index",
                    format!("{}_migrated_by", n.raw("log_table")),
                ),
                table: log.clone(),
                columns: "migrated_by",
                unique: false,
                predicate: None,
            }
            .step("index the audit log's migrated_by (its foreign key)", n),
        );

        // Rights before the triggers that run as the definer role.
        s.push(Step::retry(
            "close the table to planted code; the definer role's rights",
            Lock::ShareUpdateExclusive,
            format!(
                "SELECT hr_migrations.hr_secure_table({}::pg_catalog.regclass, 'SELECT, UPDATE')",
                n.table_literal()
            ),
        ));
        s.push(Step::retry(
            "close the credentials table to planted code; the definer role's rights",
            Lock::ShareUpdateExclusive,
            format!(
                "SELECT hr_migrations.hr_secure_table({}::pg_catalog.regclass, 'SELECT, INSERT, UPDATE, DELETE')",
                quote_literal(&creds)
            ),
        ));
        // After enforced the credentials table is the only place the
        // secrets exist: closed before anything moves in.
        s.push(Step::retry(
            "close the credentials table: RLS, the organization's reads, no API writes, nothing for anon",
            Lock::AccessExclusive,
            format!(
                "ALTER TABLE {creds} ENABLE ROW LEVEL SECURITY; \
                 DROP POLICY IF EXISTS {p} ON {creds}; \
                 CREATE POLICY {p} ON {creds} FOR SELECT TO authenticated \
                 USING (organization_id OPERATOR(pg_catalog.=) (SELECT hr_migrations.hr_jwt_organization_id())); \
                 REVOKE ALL ON {creds} FROM anon; \
                 REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {creds} FROM authenticated",
                p = n.obj("credentials_policy")
            ),
        ));
        s.push(Step::retry(
            "anon: nothing on the table",
            Lock::AccessExclusive,
            format!("REVOKE ALL ON {t} FROM anon"),
        ));
        s.extend(n.drop_legacy());
        s.push(Step::retry(
            "updated_at trigger (skips the extension's batches)",
            Lock::ShareRowExclusive,
            format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE ON {t} FOR EACH ROW \
                 WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_touch_updated_at()",
                n.obj("touch_trigger")
            ),
        ));
        s.push(
            Step::retry(
                "sync triggers: plaintext written from now on is moved",
                Lock::ShareRowExclusive,
                format!(
                    "CREATE OR REPLACE TRIGGER {ins} AFTER INSERT ON {t} FOR EACH ROW \
                     WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_job_board_integrations_trigger(); \
                     CREATE OR REPLACE TRIGGER {upd} BEFORE UPDATE OF api_key, api_secret, refresh_token, credential_id ON {t} FOR EACH ROW \
                     WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_job_board_integrations_trigger()",
                    ins = n.obj("sync_insert_trigger"),
                    upd = n.obj("sync_update_trigger")
                ),
            )
            // The contract phase dropped them with the plaintext columns.
            .skip_when(format!("{} = 'contracted'", n.phase())),
        );
        s.push(n.set_phase_from(&["not_applied"], "dual"));
        s.push(Step::backfill(true));
        s.push(Step::retry(
            "row isolation from migrated on",
            Lock::AccessExclusive,
            format!(
                "SELECT hr_migrations.hr_isolate_rows({k}, {})",
                n.phase(),
                k = n.key()
            ),
        ));
        s.push(n.status());
        s
    }

    fn rollback(&self, n: &Names) -> Vec<Step> {
        let t = n.table();
        let has_credentials = n.has_column("credential_id");
        vec![
            n.preflight(),
            Step::require(
                "not contracted",
                format!("{} <> 'contracted'", n.phase()),
                "a contracted migration cannot be rolled back: its plaintext columns are gone",
                "the secrets exist only in the credentials table now; hr_integration_secret() reads them",
            ),
            n.set_phase_from(&["enforced"], "dual"),
            Step::batches("plaintext restored from each credential, in committed batches", "rollback")
                .skip_when(format!("NOT {has_credentials}")),
            Step::require(
                "every integration unlinked",
                format!("NOT {has_credentials} OR NOT EXISTS (SELECT 1 FROM {t} WHERE credential_id IS NOT NULL)"),
                "some integrations are still linked to a credential: nothing was dropped",
                "SELECT * FROM hr_migrations.hr_batch_failures says which could not be restored and why; fix them, SELECT hr_migrations.hr_retry_failures(<migration>), and run this file again",
            ),
            Step::retry(
                "drop the sync and updated_at triggers",
                Lock::AccessExclusive,
                format!(
                    "DROP TRIGGER IF EXISTS {ins} ON {t}; DROP TRIGGER IF EXISTS {upd} ON {t}; DROP TRIGGER IF EXISTS {touch} ON {t}",
                    ins = n.obj("sync_insert_trigger"),
                    upd = n.obj("sync_update_trigger"),
                    touch = n.obj("touch_trigger")
                ),
            ),
            Step::retry(
                "drop the credential_id index",
                Lock::AccessExclusive,
                format!("DROP INDEX IF EXISTS {}", n.qualified("index")),
            ),
            Step::retry(
                "drop the foreign key and credential_id",
                Lock::AccessExclusive,
                format!(
                    "ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {}, DROP COLUMN IF EXISTS credential_id",
                    n.obj("fk")
                ),
            ),
            Step::retry(
                "the plaintext columns no longer marked deprecated",
                Lock::AccessExclusive,
                format!(
                    "COMMENT ON COLUMN {t}.api_key IS NULL; COMMENT ON COLUMN {t}.api_secret IS NULL; COMMENT ON COLUMN {t}.refresh_token IS NULL"
                ),
            )
            .skip_when(format!("NOT {}", n.has_column("api_key"))),
            n.set_phase_from(&["dual"], "not_applied"),
            n.forget_batches(),
            n.status(),
        ]
    }
}
