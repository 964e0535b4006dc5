//! Kind `tenant_column`: organization isolation of a table whose rows
//! belong to a candidate (migration `portal_sessions` on
//! `hr_candidate_portal_sessions`). The table has `id uuid` and
//! `candidate_id uuid`; the plan adds `organization_id`, derived from
//! `hr_candidates` by a trigger and backfilled in batches, its foreign key
//! and index, and row level security with one policy per command. Its SQL
//! functions (the trigger, the batch action, phase rules) are `kind.sql`.

use super::{col, quote_literal, Column, Index, Kind, Lock, Names, Script, Step, Table};

pub struct TenantColumn;

/// Every column this kind's SQL reads or writes, with its exact type.
const COLUMNS: &[Column] = &[
    col(Table::Migration, "id", "uuid", true),
    col(Table::Migration, "candidate_id", "uuid", true),
    col(Table::Migration, "organization_id", "uuid", false),
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
    col(Table::Sibling("pf_organizations"), "id", "uuid", true),
];

/// The four policies: one per command, TO authenticated, each comparing
/// with the claim read once per query ((SELECT ...) becomes an InitPlan).
/// A missing, empty or malformed claim gives NULL: zero rows, no error.
pub fn policies(n: &Names, predicate: &str) -> String {
    let t = n.table();
    format!(
        "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY; \
         DROP POLICY IF EXISTS {sel} ON {t}; DROP POLICY IF EXISTS {ins} ON {t}; \
         DROP POLICY IF EXISTS {upd} ON {t}; DROP POLICY IF EXISTS {del} ON {t}; \
         CREATE POLICY {sel} ON {t} FOR SELECT TO authenticated USING ({predicate}); \
         CREATE POLICY {ins} ON {t} FOR INSERT TO authenticated WITH CHECK ({predicate}); \
         CREATE POLICY {upd} ON {t} FOR UPDATE TO authenticated USING ({predicate}) WITH CHECK ({predicate}); \
         CREATE POLICY {del} ON {t} FOR DELETE TO authenticated USING ({predicate})",
        sel = n.obj("policy_select"),
        ins = n.obj("policy_insert"),
        upd = n.obj("policy_update"),
        del = n.obj("policy_delete"),
    )
}

impl Kind for TenantColumn {
    fn describe(&self, script: Script) -> &'static str {
        match script {
            Script::Migrate => {
                "Organization isolation: organization_id, derived from the row's candidate by a trigger\n\
                 (rows written meanwhile are covered), backfilled in committed batches; then the foreign\n\
                 key (NOT VALID, then VALIDATE), the index (CONCURRENTLY) and row level security with one\n\
                 policy per command for authenticated; the phase moves to migrated only when every row\n\
                 has its organization. Rows whose candidate is missing or has none are never guessed or\n\
                 deleted: they are counted as blocked and keep the phase at dual."
            }
            Script::Rollback => {
                "The plan's rollback of portal_sessions: the policies, triggers, index, foreign key and\n\
                 organization_id dropped (derived data: nothing is lost). Row level security stays\n\
                 ENABLED with no policy unless options {\"disable_rls\": true}: enabled and without\n\
                 policies, authenticated sees no row (fails closed); disabled, with Supabase's default\n\
                 grants, every signed-in user sees every tenant's rows."
            }
        }
    }

    fn required_objects(&self) -> &'static [&'static str] {
        &[
            "org_trigger",
            "touch_trigger",
            "fk",
            "index",
            "not_null_check",
            "policy_select",
            "policy_insert",
            "policy_update",
            "policy_delete",
        ]
    }

    fn optional_objects(&self) -> &'static [&'static str] {
        &["legacy_triggers", "legacy_policies"]
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn migrate(&self, n: &Names) -> Vec<Step> {
        let t = n.table();
        let mut s = vec![n.preflight()];
        s.push(Step::retry(
            "add organization_id",
            Lock::AccessExclusive,
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS organization_id uuid; COMMENT ON COLUMN {t}.organization_id IS {}",
                quote_literal(
                    "Tenant of the row, derived from hr_candidates by an hr_migrations trigger; RLS isolates on it."
                )
            ),
        ));
        // Without statistics the planner guesses 0.5% of rows are NULL and
        // plans the first batch as a hash join of the whole table.
        s.push(Step::wait(
            "statistics of organization_id",
            format!("ANALYZE {t} (organization_id)"),
        ));
        // Rights before the triggers that use them: the definer role updates
        // the table and reads hr_candidates (BYPASSRLS); anon reads no
        // session token from dual on.
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
        // Before the backfill, so rows written meanwhile are covered.
        s.push(Step::retry(
            "updated_at and organization triggers",
            Lock::ShareRowExclusive,
            format!(
                "CREATE OR REPLACE TRIGGER {touch} BEFORE UPDATE ON {t} FOR EACH ROW \
                 WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_touch_updated_at(); \
                 CREATE OR REPLACE TRIGGER {org} BEFORE INSERT OR UPDATE OF candidate_id, organization_id ON {t} FOR EACH ROW \
                 WHEN (NOT hr_migrations.hr_backfill_in_progress()) EXECUTE FUNCTION hr_migrations.hr_portal_sessions_org_trigger()",
                touch = n.obj("touch_trigger"),
                org = n.obj("org_trigger")
            ),
        ));
        s.push(n.set_phase_from(&["not_applied"], "dual"));
        // Not promoted here: migrated promises the policies are in place.
        s.push(Step::backfill(false));
        // After the backfill: the foreign key checks the backfilled rows in
        // one VALIDATE scan instead of one lookup per updated row.
        s.push(
            Step::retry(
                "foreign key to pf_organizations, NOT VALID",
                Lock::ShareRowExclusive,
                format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {} FOREIGN KEY (organization_id) REFERENCES {} (id) ON DELETE CASCADE NOT VALID",
                    n.obj("fk"),
                    n.sibling("pf_organizations")
                ),
            )
            .skip_when(n.has_constraint(&t, "fk")),
        );
        s.push(Step::wait(
            "validate the foreign key",
            format!("ALTER TABLE {t} VALIDATE CONSTRAINT {}", n.obj("fk")),
        ));
        // After the backfill: one bulk build.
        s.push(
            Index {
                name: n.raw("index").to_string(),
                table: t.clone(),
                columns: "organization_id",
                unique: false,
                predicate: None,
            }
            .step("index organization_id", n),
        );
        // One transaction: no moment with RLS on and a policy missing.
        s.push(Step::retry(
            "row level security, one policy per command",
            Lock::AccessExclusive,
            policies(
                n,
                "organization_id = (SELECT hr_migrations.hr_jwt_organization_id())",
            ),
        ));
        s.push(
            Step::retry(
                "phase -> migrated when nothing is pending or blocked",
                Lock::None,
                format!("SELECT hr_migrations.hr_set_phase({}, 'migrated')", n.key()),
            )
            .skip_when(format!(
                "NOT EXISTS (SELECT 1 FROM hr_migrations.hr_migration_status() s \
                 WHERE s.migration = {} AND s.phase = 'dual' AND s.pending = 0 AND s.blocked = 0)",
                n.key()
            )),
        );
        s.push(n.status());
        s
    }

    fn rollback(&self, n: &Names) -> Vec<Step> {
        let t = n.table();
        vec![
            n.preflight(),
            n.set_phase_from(&["migrated", "enforced", "contracted"], "dual"),
            Step::retry(
                "drop the policies and triggers",
                Lock::AccessExclusive,
                format!(
                    "DROP POLICY IF EXISTS {sel} ON {t}; DROP POLICY IF EXISTS {ins} ON {t}; \
                     DROP POLICY IF EXISTS {upd} ON {t}; DROP POLICY IF EXISTS {del} ON {t}; \
                     DROP TRIGGER IF EXISTS {org} ON {t}; DROP TRIGGER IF EXISTS {touch} ON {t}",
                    sel = n.obj("policy_select"),
                    ins = n.obj("policy_insert"),
                    upd = n.obj("policy_update"),
                    del = n.obj("policy_delete"),
                    org = n.obj("org_trigger"),
                    touch = n.obj("touch_trigger"),
                ),
            ),
            Step::retry(
                "disable row level security, as asked",
                Lock::AccessExclusive,
                format!("ALTER TABLE {t} DISABLE ROW LEVEL SECURITY"),
            )
            .skip_when("($1 ->> 'disable_rls')::boolean IS NOT TRUE"),
            Step::notice(
                "row level security stays enabled",
                format!(
                    "{} || ' keeps row level security ENABLED with no policy: authenticated sees no row until you add policies (or CALL hr_migrations.hr_rollback(<migration>, 1, ''{{\"disable_rls\": true}}''))'",
                    quote_literal(&t)
                ),
            )
            .skip_when("($1 ->> 'disable_rls')::boolean IS TRUE"),
            Step::retry(
                "drop the organization_id index",
                Lock::AccessExclusive,
                format!("DROP INDEX IF EXISTS {}", n.qualified("index")),
            ),
            Step::retry(
                "drop the foreign key, the NOT NULL check and organization_id",
                Lock::AccessExclusive,
                format!(
                    "ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {fk}, DROP CONSTRAINT IF EXISTS {chk}, DROP COLUMN IF EXISTS organization_id",
                    fk = n.obj("fk"),
                    chk = n.obj("not_null_check")
                ),
            ),
            n.set_phase_from(&["dual"], "not_applied"),
            n.forget_batches(),
            n.status(),
        ]
    }
}
