//! Kind `token_hash`: salted-hash storage of a table's reference tokens
//! (migration `reference_tokens` on `hr_references`). The table has `id
//! uuid`, `candidate_id uuid` and `access_token text`; the plan adds
//! `access_token_hash`, the token and `updated_at` triggers, the validation
//! log, the plan's audit columns (when the entry names their foreign keys),
//! backfills the hashes and isolates the rows by organization from
//! `migrated` on. Its SQL functions (the trigger, verification, the batch
//! actions, phase rules) are `kind.sql`.

use super::{col, quote_literal, Column, Index, Kind, Lock, Names, Script, Step, Table};

pub struct TokenHash;

/// Every column this kind's SQL reads or writes, with its exact type.
const COLUMNS: &[Column] = &[
    col(Table::Migration, "id", "uuid", true),
    col(Table::Migration, "candidate_id", "uuid", true),
    col(Table::Migration, "access_token", "text", false),
    col(Table::Migration, "access_token_hash", "text", false),
    col(Table::Migration, "created_by", "uuid", false),
    col(Table::Migration, "updated_by", "uuid", false),
    col(
        Table::Migration,
        "updated_at",
        "timestamp with time zone",
        false,
    ),
    col(Table::Sibling("hr_candidates"), "id", "uuid", true),
    col(
        Table::Sibling("hr_candidates"),
        "organization_id",
        "uuid",
        true,
    ),
    col(Table::Sibling("pf_profiles"), "id", "uuid", false),
    col(Table::Object("log_table"), "reference_id", "uuid", false),
    col(Table::Object("log_table"), "method", "text", false),
    col(Table::Object("log_table"), "success", "boolean", false),
    col(
        Table::Object("log_table"),
        "validated_at",
        "timestamp with time zone",
        false,
    ),
];

impl Kind for TokenHash {
    fn describe(&self, script: Script) -> &'static str {
        match script {
            Script::Migrate => {
                "Salted-hash storage of reference tokens (token hash v1: base64(salt || sha256(salt || token))).\n\
                 Adds access_token_hash with a format CHECK (NOT VALID, then VALIDATE), the token trigger\n\
                 (tokens written from now on are hashed), the validation log, then hashes every plaintext\n\
                 token in committed batches and moves the phase to migrated. No index on the hash: every\n\
                 hash has its own salt, so tokens are verified by row id."
            }
            Script::Rollback => {
                "The plan's rollback of reference_tokens: keep the plaintext column, drop the hashes.\n\
                 Refuses while tokens exist only as hashes (issued or rotated once enforced): they could\n\
                 never be verified again (options {\"drop_hash_only_tokens\": true} drops them anyway).\n\
                 Keeps created_by/updated_by and the validation log. A contracted migration has no\n\
                 plaintext left to go back to: refused."
            }
        }
    }

    fn required_objects(&self) -> &'static [&'static str] {
        &[
            "token_trigger",
            "touch_trigger",
            "hash_check",
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
        // log_index: named <log_table>_reference when absent (entries
        // registered before 0.3.0 have none); created_by_index and
        // updated_by_index: <table>_created_by and <table>_updated_by.
        &[
            "created_by_fk",
            "updated_by_fk",
            "created_by_index",
            "updated_by_index",
            "log_index",
            "legacy_triggers",
        ]
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn migrate(&self, n: &Names) -> Vec<Step> {
        let t = n.table();
        let log = n.qualified("log_table");
        let mut s = vec![n.preflight()];

        // The plan's audit columns, when the entry names their foreign keys.
        if n.has("created_by_fk") && n.has("updated_by_fk") {
            s.push(Step::retry(
                "audit columns created_by, updated_by",
                Lock::AccessExclusive,
                format!(
                    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS created_by uuid, ADD COLUMN IF NOT EXISTS updated_by uuid"
                ),
            ));
            for (key, column) in [
                ("created_by_fk", "created_by"),
                ("updated_by_fk", "updated_by"),
            ] {
                s.push(
                    Step::retry(
                        &format!("foreign key on {column}, NOT VALID"),
                        Lock::ShareRowExclusive,
                        format!(
                            "ALTER TABLE {t} ADD CONSTRAINT {} FOREIGN KEY ({column}) REFERENCES {} (id) NOT VALID",
                            n.obj(key),
                            n.sibling("pf_profiles")
                        ),
                    )
                    .skip_when(n.has_constraint(&t, key)),
                );
                s.push(Step::wait(
                    &format!("validate the foreign key on {column}"),
                    format!("ALTER TABLE {t} VALIDATE CONSTRAINT {}", n.obj(key)),
                ));
            }
        }
        s.push(
            Step::retry(
                "mark access_token deprecated",
                Lock::AccessExclusive,
                format!(
                    "COMMENT ON COLUMN {t}.access_token IS {}",
                    quote_literal(
                        "DEPRECATED (hr_migrations): plaintext reference token. Issue tokens with hr_issue_reference_token() \
                         and verify with hr_verify_reference_token(); erased and dropped by the contract phase."
                    )
                ),
            )
            .skip_when(format!("NOT {}", n.has_column("access_token"))),
        );

        // The validation log (the plan's "log all token validations"; never
        // a token): written by the definer role only; service_role reads
        // it, authenticated its own organization's rows, anon nothing.
        s.push(Step::retry(
            "the validation log, RLS and its tenant policy",
            Lock::AccessExclusive,
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (\
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 reference_id uuid, \
                 method text NOT NULL CHECK (method IN ('hash', 'plaintext', 'none')), \
                 success boolean NOT NULL, \
                 validated_at timestamptz NOT NULL DEFAULT now()); \
                 ALTER TABLE {log} ENABLE ROW LEVEL SECURITY; \
                 DROP POLICY IF EXISTS {policy} ON {log}; \
                 CREATE POLICY {policy} ON {log} FOR SELECT TO authenticated \
                 USING (EXISTS (SELECT 1 FROM {t} r WHERE r.id OPERATOR(pg_catalog.=) reference_id \
                 AND r.candidate_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT hr_migrations.hr_organization_candidates())))); \
                 COMMENT ON TABLE {log} IS {comment}",
                policy = n.obj("log_policy"),
                comment = quote_literal("hr_migrations: one row per hr_verify_reference_token() call (never the token)"),
            ),
        ));
        s.push(Step::retry(
            "close the validation log: readers and the definer role only",
            Lock::AccessExclusive,
            format!(
                "SELECT hr_migrations.hr_secure_own_table({}::pg_catalog.regclass, ARRAY['authenticated', 'service_role']::pg_catalog.text[], 'INSERT')",
                quote_literal(&log)
            ),
        ));

        // The hash column: nullable, no default (a catalog change, no rewrite).
        s.push(Step::retry(
            "add access_token_hash",
            Lock::AccessExclusive,
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS access_token_hash text; COMMENT ON COLUMN {t}.access_token_hash IS {}",
                quote_literal(
                    "Token hash v1: base64(salt[16] || sha256(salt || token)). Salted per row, so it is NOT an index key: verify by row id."
                )
            ),
        ));
        // Without statistics the planner guesses 0.5% of rows have no hash
        // and plans the first batch as a scan of the table.
        s.push(
            Step::wait(
                "statistics of the token columns",
                format!("ANALYZE {t} (access_token, access_token_hash)"),
            )
            .skip_when(format!("NOT {}", n.has_column("access_token"))),
        );
        // 64 characters of the standard base64 alphabet are exactly the v1
        // shape. A byte length and an unbounded class, not '{64}': the
        // regex engine expands a counted repetition into 64 states, and
        // this runs on every written row (6 us against 0.4 us).
        s.push(
            Step::retry(
                "hash format CHECK, NOT VALID",
                Lock::AccessExclusive,
                format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {} CHECK (octet_length(access_token_hash) = 64 AND access_token_hash ~ '^[A-Za-z0-9+/]*$') NOT VALID",
                    n.obj("hash_check")
                ),
            )
            .skip_when(n.has_constraint(&t, "hash_check")),
        );
        s.push(Step::wait(
            "validate the hash format CHECK",
            format!(
                "ALTER TABLE {t} VALIDATE CONSTRAINT {}",
                n.obj("hash_check")
            ),
        ));

        s.push(
            Index {
                name: n.raw_or("log_index", format!("{}_reference", n.raw("log_table"))),
                table: log.clone(),
                columns: "reference_id, validated_at",
                unique: false,
                predicate: None,
            }
            .step("index the validation log by reference", n),
        );
        // A foreign key without an index makes every delete of a profile
        // scan the table for rows that reference it (Supabase's advisor:
        // unindexed_foreign_keys).
        if n.has("created_by_fk") && n.has("updated_by_fk") {
            for (key, column) in [
                ("created_by_index", "created_by"),
                ("updated_by_index", "updated_by"),
            ] {
                s.push(
                    Index {
                        name: n.raw_or(key, format!("{}_{column}", n.entry.table_name)),
                        table: t.clone(),
                        columns: column,
                        unique: false,
                        predicate: None,
                    }
                    .step(&format!("index {column} (its foreign key)"), n),
                );
            }
        }
        // The row isolation of migrated filters by candidate_id.
        s.push(
            Index {
                name: n.raw("tenant_index").to_string(),
                table: t.clone(),
                columns: "candidate_id",
                unique: false,
                predicate: None,
            }
            .step("index candidate_id (row isolation)", n),
        );

        // Rights before the triggers that use them: the definer role reads
        // and updates the table and reads the candidates (the references'
        // policies); no other role may plant code on it; anon reads no
        // token and no hash from dual on.
        s.push(Step::retry(
            "close the table to planted code; the definer role's rights",
            Lock::ShareUpdateExclusive,
            format!(
                "SELECT hr_migrations.hr_secure_table({}::pg_catalog.regclass, 'SELECT, UPDATE')",
                n.table_literal()
            ),
        ));
        s.push(Step::retry(
            "the definer role reads hr_candidates",
            Lock::None,
            format!(
                "GRANT SELECT ON {} TO hr_migrations_definer",
                n.sibling("hr_candidates")
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
                "token trigger: written tokens are hashed",
                Lock::ShareRowExclusive,
                format!(
                    "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE OF access_token ON {t} FOR EACH ROW \
                     WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_references_token_trigger()",
                    n.obj("token_trigger")
                ),
            )
            // The contract phase dropped it with access_token.
            .skip_when(format!("{} = 'contracted'", n.phase())),
        );
        s.push(n.set_phase_from(&["not_applied"], "dual"));
        s.push(Step::backfill(true));
        // From migrated on (done by the move itself; again here for a
        // database migrated before 0.3.0).
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
        vec![
            n.preflight(),
            Step::require(
                "no token exists only as a hash",
                format!(
                    "($1 ->> 'drop_hash_only_tokens')::boolean IS TRUE OR NOT {} OR NOT {} \
                     OR NOT EXISTS (SELECT 1 FROM {t} WHERE access_token IS NULL AND access_token_hash IS NOT NULL)",
                    n.has_column("access_token_hash"),
                    n.has_column("access_token")
                ),
                "refusing to roll back: some rows have a token only as a hash and could no longer be verified",
                "hr_migration_status() counts them; to drop them anyway: CALL hr_migrations.hr_rollback(<migration>, 1, '{\"drop_hash_only_tokens\": true}')",
            ),
            n.set_phase_from(&["migrated", "enforced", "contracted"], "dual"),
            Step::retry(
                "drop the triggers, the CHECK and access_token_hash",
                Lock::AccessExclusive,
                format!(
                    "DROP TRIGGER IF EXISTS {tok} ON {t}; DROP TRIGGER IF EXISTS {touch} ON {t}; \
                     ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {chk}, DROP COLUMN IF EXISTS access_token_hash",
                    tok = n.obj("token_trigger"),
                    touch = n.obj("touch_trigger"),
                    chk = n.obj("hash_check")
                ),
            ),
            Step::retry(
                "access_token no longer marked deprecated",
                Lock::AccessExclusive,
                format!("COMMENT ON COLUMN {t}.access_token IS NULL"),
            )
            .skip_when(format!("NOT {}", n.has_column("access_token"))),
            n.set_phase_from(&["dual"], "not_applied"),
            n.forget_batches(),
            n.status(),
        ]
    }
}
