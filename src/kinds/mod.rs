//! The plan of each kind of migration, as data (pure Rust, no Postgres).
//!
//! A *kind* is a shape of migration: `token_hash`, `tenant_column`,
//! `credential_move`. A migration is a kind applied to one table, named by
//! its row in `hr_migrations.hr_migration_registry` ([`Entry`]). Each kind
//! lives in its own folder (`src/kinds/<kind>/`: its plan in `mod.rs`, its
//! golden plans in `plans/`, its SQL functions in `kind.sql`) and is
//! registered in one place, [`kind`].
//!
//! A plan is the list of [`Step`]s that brings a migration from
//! `not_applied` to `migrated` (the migration file), or back (the rollback
//! file): each a statement with how it runs ([`Run`]: in its own
//! transaction under the lock retry, waiting for a lock that blocks no
//! application traffic, or at the top level of the file, like `CREATE INDEX
//! CONCURRENTLY`), the lock it takes ([`Lock`]) and its skip condition. The
//! extension serves it as `hr_plan(migration, phase)`; `hr_apply(migration,
//! section)` runs one section of it (the steps between two top-level
//! statements); the files in `sql/migrations/` and `sql/rollback/` are
//! [`file`]'s rendering of it, and a test holds them equal.
//!
//! Every name a plan puts in SQL comes from the registry entry, quoted here
//! ([`quote_ident`]); a plan's statements run only inside the extension's
//! procedures, with `search_path = pg_catalog, pg_temp`, except the
//! top-level ones, which resolve no function or operator by name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

pub mod builtin;
pub mod credential_move;
pub mod tenant_column;
pub mod token_hash;

#[cfg(test)]
mod tests;

/// The kinds, by the name the registry's `kind` column holds. Adding a kind
/// is a folder and one line here.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    match name {
        "token_hash" => Some(&token_hash::TokenHash),
        "tenant_column" => Some(&tenant_column::TenantColumn),
        "credential_move" => Some(&credential_move::CredentialMove),
        _ => None,
    }
}

/// The names of every kind, for the registry's check and the docs.
pub const KINDS: &[&str] = &["token_hash", "tenant_column", "credential_move"];

/// What a kind supplies: the names it needs from the registry and its two
/// plans.
pub trait Kind: Sync {
    /// What the kind's file does, for its header (a few lines).
    fn describe(&self, script: Script) -> &'static str;
    /// Object names every entry of this kind defines (`objects` keys whose
    /// value is a name).
    fn required_objects(&self) -> &'static [&'static str];
    /// Object names an entry may define: single names, or lists of names
    /// (`legacy_triggers`, `legacy_policies`, `legacy_checks`).
    fn optional_objects(&self) -> &'static [&'static str];
    /// From `not_applied` to `migrated` (or `dual` with blocked rows): the
    /// migration file.
    fn migrate(&self, n: &Names) -> Vec<Step>;
    /// Back to `not_applied`: the rollback file.
    fn rollback(&self, n: &Names) -> Vec<Step>;
    /// Every column the kind's SQL reads or writes, with its exact type.
    /// Anything else (a domain, an enum or a type of the admin's, whose
    /// casts and operators it wrote) would run its code as whoever reads
    /// the column: the definer role, or a superuser running the file.
    fn columns(&self) -> &'static [Column];
}

/// A table a kind works on, as its [`Column`]s name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The migration's own table.
    Migration,
    /// A table of the same schema, by its fixed name (`hr_candidates`).
    Sibling(&'static str),
    /// A table of the same schema named by a registry key (`log_table`).
    Object(&'static str),
}

/// A column a kind's SQL reads or writes and its exact type (as
/// `format_type()` writes it); `required`: it must exist whenever its table
/// does (others are checked when present: added by the plan, or dropped by
/// the contract phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub table: Table,
    pub column: &'static str,
    pub type_name: &'static str,
    pub required: bool,
}

pub const fn col(
    table: Table,
    column: &'static str,
    type_name: &'static str,
    required: bool,
) -> Column {
    Column {
        table,
        column,
        type_name,
        required,
    }
}

/// The columns of an entry's kind, each with its table qualified and quoted.
pub fn columns(entry: &Entry) -> Result<Vec<(String, Column)>, PlanError> {
    let k = kind(&entry.kind).ok_or_else(|| PlanError::UnknownKind(entry.kind.clone()))?;
    validate(entry)?;
    let n = Names { entry };
    Ok(k.columns()
        .iter()
        .map(|c| {
            let table = match c.table {
                Table::Migration => n.table(),
                Table::Sibling(name) => n.sibling(name),
                Table::Object(key) => n.qualified(key),
            };
            (table, *c)
        })
        .collect())
}

/// A registry row, as the planner reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub migration: String,
    pub position: i32,
    pub kind: String,
    pub table_schema: String,
    pub table_name: String,
    pub objects: BTreeMap<String, Value>,
}

/// Which file a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// `sql/migrations/`: to `migrated` (`hr_plan(migration, 'dual')`).
    Migrate,
    /// `sql/rollback/`: to `not_applied` (`hr_plan(migration, 'not_applied')`).
    Rollback,
}

impl Script {
    /// The phase `hr_plan` names the script by.
    pub fn from_phase(phase: &str) -> Option<Script> {
        match phase {
            "dual" | "migrated" => Some(Script::Migrate),
            "not_applied" => Some(Script::Rollback),
            _ => None,
        }
    }

    pub fn directory(self) -> &'static str {
        match self {
            Script::Migrate => "sql/migrations",
            Script::Rollback => "sql/rollback",
        }
    }

    /// The procedure a file CALLs for each section.
    pub fn procedure(self) -> &'static str {
        match self {
            Script::Migrate => "hr_migrations.hr_apply",
            Script::Rollback => "hr_migrations.hr_rollback",
        }
    }
}

/// The strongest table lock a step takes (what application traffic meets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Catalog reads, or nothing on an application table.
    None,
    /// Row writes (the batches, one batch's rows at a time).
    RowExclusive,
    /// Blocks no reads or writes: VALIDATE, ANALYZE, CREATE INDEX CONCURRENTLY.
    ShareUpdateExclusive,
    /// Blocks writes, not reads, briefly: CREATE TRIGGER, ADD FOREIGN KEY.
    ShareRowExclusive,
    /// Blocks everything, briefly (catalog only, never a scan or a rewrite).
    AccessExclusive,
}

impl Lock {
    pub fn as_str(self) -> &'static str {
        match self {
            Lock::None => "none",
            Lock::RowExclusive => "ROW EXCLUSIVE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// How a step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    /// In its own transaction, each attempt waiting at most
    /// `hr_migrations.ddl_lock_timeout` for its locks, retried with backoff
    /// for at most `hr_migrations.ddl_retry_budget`: application queries
    /// queue behind it for one attempt at most.
    Retry,
    /// In its own transaction, waiting for its lock as long as it takes:
    /// only for SHARE UPDATE EXCLUSIVE, which blocks no reads or writes.
    Wait,
    /// A statement of the file itself, outside any function or procedure
    /// (`CREATE INDEX CONCURRENTLY` cannot run inside one). Its skip
    /// condition says it is done; the next section checks it.
    TopLevel,
    /// `CALL hr_run_backfill(migration, promote => ...)`: the phase's
    /// batches, each committed, then (promote) the move to `migrated`.
    Backfill { promote: bool },
    /// `CALL hr_run_batches(migration, operation)`: one batch operation to
    /// the end, each batch committed.
    Batches(&'static str),
    /// The statement is a boolean that must hold; otherwise 55000 with this
    /// message and hint, and nothing after it runs.
    Require { message: String, hint: String },
    /// The statement is a text expression, raised as a NOTICE.
    Notice,
}

impl Run {
    pub fn as_str(&self) -> String {
        match self {
            Run::Retry => "retry".into(),
            Run::Wait => "wait".into(),
            Run::TopLevel => "top_level".into(),
            Run::Backfill { promote: true } => "backfill".into(),
            Run::Backfill { promote: false } => "backfill_no_promote".into(),
            Run::Batches(op) => format!("batches:{op}"),
            Run::Require { .. } => "require".into(),
            Run::Notice => "notice".into(),
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What it does, in a few words (the files' headers, NOTICEs, errors).
    pub name: String,
    pub sql: String,
    pub run: Run,
    pub lock: Lock,
    /// A boolean SQL expression: when true the step is skipped (already
    /// done, or not applicable in the current phase). `$1` is the options
    /// (`jsonb`) of the run. For a top-level step: "it is done".
    pub skip_when: Option<String>,
    /// The section it belongs to: 1 before the first top-level statement,
    /// k + 1 after the k-th group of them (a top-level step carries the
    /// number of the section it follows).
    pub section: u32,
    /// The index a top-level step builds, qualified (its INVALID leftover
    /// is dropped before it).
    pub index: Option<String>,
}

impl Step {
    fn new(name: &str, run: Run, lock: Lock, sql: String) -> Step {
        Step {
            name: name.to_string(),
            sql,
            run,
            lock,
            skip_when: None,
            section: 0,
            index: None,
        }
    }

    /// In its own transaction under the lock retry.
    pub fn retry(name: &str, lock: Lock, sql: impl Into<String>) -> Step {
        Step::new(name, Run::Retry, lock, sql.into())
    }

    /// In its own transaction, waiting for a SHARE UPDATE EXCLUSIVE lock.
    pub fn wait(name: &str, sql: impl Into<String>) -> Step {
        Step::new(name, Run::Wait, Lock::ShareUpdateExclusive, sql.into())
    }

    /// A precondition: `holds` must be true.
    pub fn require(name: &str, holds: impl Into<String>, message: &str, hint: &str) -> Step {
        Step::new(
            name,
            Run::Require {
                message: message.to_string(),
                hint: hint.to_string(),
            },
            Lock::None,
            holds.into(),
        )
    }

    /// A NOTICE with the value of a text expression.
    pub fn notice(name: &str, text: impl Into<String>) -> Step {
        Step::new(name, Run::Notice, Lock::None, text.into())
    }

    pub fn backfill(promote: bool) -> Step {
        Step::new(
            if promote {
                "backfill in committed batches, then migrated"
            } else {
                "backfill in committed batches"
            },
            Run::Backfill { promote },
            Lock::RowExclusive,
            String::new(),
        )
    }

    pub fn batches(name: &str, operation: &'static str) -> Step {
        Step::new(
            name,
            Run::Batches(operation),
            Lock::RowExclusive,
            String::new(),
        )
    }

    pub fn skip_when(mut self, condition: impl Into<String>) -> Step {
        self.skip_when = Some(condition.into());
        self
    }
}

/// An index built with `CREATE INDEX CONCURRENTLY` at the top level of the
/// file. [`finish`] puts, before each group of them, a step that drops an
/// INVALID index left by a failed build under the lock retry, so `IF NOT
/// EXISTS` never skips a broken one forever.
pub struct Index<'a> {
    /// The index's name, as the catalog holds it ([`Names::raw`]).
    pub name: String,
    /// The table, qualified and quoted.
    pub table: String,
    pub columns: &'a str,
    pub unique: bool,
    pub predicate: Option<&'a str>,
}

impl Index<'_> {
    pub fn step(&self, name: &str, n: &Names) -> Step {
        let index = quote_ident(&self.name);
        let qualified = format!("{}.{}", n.schema(), index);
        let sql = format!(
            "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {index} ON {} ({}){}",
            if self.unique { "UNIQUE " } else { "" },
            self.table,
            self.columns,
            self.predicate
                .map(|p| format!(" WHERE {p}"))
                .unwrap_or_default()
        );
        let mut s = Step::new(name, Run::TopLevel, Lock::ShareUpdateExclusive, sql).skip_when(format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass({}) AND i.indisvalid)",
            quote_literal(&qualified)
        ));
        s.index = Some(qualified);
        s
    }
}

fn drop_invalid_index(top: &Step) -> Step {
    let qualified = top
        .index
        .as_deref()
        .expect("a top-level step builds an index");
    Step::retry(
        "drop an INVALID index left by a failed build",
        Lock::AccessExclusive,
        format!("DROP INDEX IF EXISTS {qualified}"),
    )
    .skip_when(format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass({}) AND NOT i.indisvalid)",
        quote_literal(qualified)
    ))
}

/// Orders and numbers a kind's steps: each group of consecutive top-level
/// steps is preceded by the drops of their INVALID leftovers, and sections
/// are counted between the groups.
pub fn finish(steps: Vec<Step>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len() + 4);
    let mut i = 0;
    while i < steps.len() {
        if steps[i].run == Run::TopLevel {
            let group: Vec<Step> = steps[i..]
                .iter()
                .take_while(|s| s.run == Run::TopLevel)
                .cloned()
                .collect();
            out.extend(group.iter().map(drop_invalid_index));
            i += group.len();
            out.extend(group);
        } else {
            out.push(steps[i].clone());
            i += 1;
        }
    }
    let mut section = 1;
    let mut previous_top = false;
    for s in &mut out {
        let top = s.run == Run::TopLevel;
        if !top && previous_top {
            section += 1;
        }
        s.section = section;
        previous_top = top;
    }
    out
}

/// A plan, or why there is none.
pub fn plan(entry: &Entry, script: Script) -> Result<Vec<Step>, PlanError> {
    let k = kind(&entry.kind).ok_or_else(|| PlanError::UnknownKind(entry.kind.clone()))?;
    validate(entry)?;
    let n = Names { entry };
    Ok(finish(match script {
        Script::Migrate => k.migrate(&n),
        Script::Rollback => k.rollback(&n),
    }))
}

/// Why a registry entry cannot be planned (or registered).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "unknown kind of migration (the kinds are token_hash, tenant_column and credential_move)"
    )]
    UnknownKind(String),
    #[error("the registry entry of {migration} does not name {key}, which its kind needs")]
    MissingObject { migration: String, key: String },
    #[error("the registry entry of {migration} names {key}, which its kind does not use")]
    UnknownObject { migration: String, key: String },
    #[error("the registry entry of {migration}: {key} must be a name of 1 to 63 bytes of letters, digits, _, $, - and spaces, starting with a letter or _{list}")]
    BadName {
        migration: String,
        key: String,
        list: &'static str,
    },
    #[error("the registry entry of {migration}: {what} must be a name of 1 to 63 bytes of letters, digits, _, $, - and spaces, starting with a letter or _")]
    BadTable { migration: String, what: String },
}

/// Checks an entry's names against its kind: every required object present,
/// no unknown key, every name 1..=63 bytes (lists for the legacy keys).
pub fn validate(entry: &Entry) -> Result<(), PlanError> {
    let k = kind(&entry.kind).ok_or_else(|| PlanError::UnknownKind(entry.kind.clone()))?;
    let m = || entry.migration.clone();
    for (what, v) in [
        ("table_schema", &entry.table_schema),
        ("table_name", &entry.table_name),
    ] {
        if !valid_name(v) {
            return Err(PlanError::BadTable {
                migration: m(),
                what: what.into(),
            });
        }
    }
    for key in k.required_objects() {
        if !entry.objects.contains_key(*key) {
            return Err(PlanError::MissingObject {
                migration: m(),
                key: key.to_string(),
            });
        }
    }
    for (key, value) in &entry.objects {
        let required = k.required_objects().contains(&key.as_str());
        if !required && !k.optional_objects().contains(&key.as_str()) {
            return Err(PlanError::UnknownObject {
                migration: m(),
                key: key.clone(),
            });
        }
        let ok = if key.starts_with("legacy_") {
            value
                .as_array()
                .is_some_and(|a| a.iter().all(|v| v.as_str().is_some_and(valid_name)))
        } else {
            value.as_str().is_some_and(valid_name)
        };
        if !ok {
            return Err(PlanError::BadName {
                migration: m(),
                key: key.clone(),
                list: if key.starts_with("legacy_") {
                    " in a list"
                } else {
                    ""
                },
            });
        }
    }
    Ok(())
}

/// A name the registry may hold: 1 to 63 bytes of ASCII letters, digits,
/// `_`, `$`, `-` and spaces, starting with a letter or `_`. Names reach SQL
/// quoted, and templates, literals and comments too: nothing in them may
/// end a quote, open a placeholder (`{key}`), start a line or need an
/// escape, whatever the session's `standard_conforming_strings`.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-' | ' '))
}

/// The names of one entry, quoted for SQL.
pub struct Names<'a> {
    pub entry: &'a Entry,
}

impl Names<'_> {
    /// The migration key as a SQL literal.
    pub fn key(&self) -> String {
        quote_literal(&self.entry.migration)
    }

    /// The table's schema, quoted.
    pub fn schema(&self) -> String {
        quote_ident(&self.entry.table_schema)
    }

    /// The migration's table, schema-qualified and quoted.
    pub fn table(&self) -> String {
        format!("{}.{}", self.schema(), quote_ident(&self.entry.table_name))
    }

    /// The table as a literal for `::regclass` (qualified, quoted).
    pub fn table_literal(&self) -> String {
        quote_literal(&self.table())
    }

    /// Another table of the same schema, qualified and quoted.
    pub fn sibling(&self, name: &str) -> String {
        format!("{}.{}", self.schema(), quote_ident(name))
    }

    /// An object name of the entry, quoted (validated present: a missing
    /// required one was refused by [`validate`]).
    pub fn obj(&self, key: &str) -> String {
        quote_ident(self.raw(key))
    }

    /// An object name as the catalog holds it (for literals).
    pub fn raw(&self, key: &str) -> &str {
        self.entry
            .objects
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{key}: required by the kind, checked by validate()"))
    }

    /// An optional object name as the catalog holds it, or `default`.
    pub fn raw_or(&self, key: &str, default: String) -> String {
        self.entry
            .objects
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(default)
    }

    /// An object of the entry, qualified by the table's schema.
    pub fn qualified(&self, key: &str) -> String {
        self.sibling(self.raw(key))
    }

    /// A list of names (legacy triggers and policies), empty when absent.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.entry
            .objects
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has(&self, key: &str) -> bool {
        self.entry.objects.contains_key(key)
    }

    /// `hr_migrations.hr_migration_phase(<key>)`, for skip conditions.
    pub fn phase(&self) -> String {
        format!("hr_migrations.hr_migration_phase({})", self.key())
    }

    /// True when the table has the column (a skip condition's building block).
    pub fn has_column(&self, column: &str) -> String {
        format!(
            "hr_migrations.hr_column_exists({}::pg_catalog.regclass, {})",
            self.table_literal(),
            quote_literal(column)
        )
    }

    /// True when a constraint of that name exists on `table` (qualified).
    pub fn has_constraint(&self, table: &str, key: &str) -> String {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {}::pg_catalog.regclass AND conname = {})",
            quote_literal(table),
            quote_literal(self.raw(key))
        )
    }

    /// The steps that drop the plan's legacy triggers and policies (those of
    /// the original application this migration replaces), each when present.
    pub fn drop_legacy(&self) -> Vec<Step> {
        let mut out = Vec::new();
        for t in self.list("legacy_triggers") {
            out.push(
                Step::retry(
                    "drop the application's legacy trigger",
                    Lock::AccessExclusive,
                    format!(
                        "DROP TRIGGER IF EXISTS {} ON {}",
                        quote_ident(&t),
                        self.table()
                    ),
                )
                .skip_when(format!(
                    "NOT hr_migrations.hr_trigger_exists({}::pg_catalog.regclass, {})",
                    self.table_literal(),
                    quote_literal(&t)
                )),
            );
        }
        for p in self.list("legacy_policies") {
            out.push(
                Step::retry(
                    "drop the application's legacy policy",
                    Lock::AccessExclusive,
                    format!("DROP POLICY IF EXISTS {} ON {}", quote_ident(&p), self.table()),
                )
                .skip_when(format!(
                    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = {}::pg_catalog.regclass AND polname = {})",
                    self.table_literal(),
                    quote_literal(&p)
                )),
            );
        }
        out
    }

    /// The first step of every migration plan: the preflight of this
    /// migration (WARNINGs; a blocker stops the file before any change).
    pub fn preflight(&self) -> Step {
        Step::retry(
            "preflight: stop on a blocker",
            Lock::None,
            format!("SELECT hr_migrations.hr_preflight_gate({})", self.key()),
        )
    }

    /// The last step of every plan: where the migration stands, as a NOTICE.
    pub fn status(&self) -> Step {
        Step::notice(
            "where the migration stands",
            format!("hr_migrations.hr_status_line({})", self.key()),
        )
    }

    /// Moves the phase from `from` to `to` when it is `from`.
    pub fn set_phase_from(&self, from: &[&str], to: &str) -> Step {
        let froms = from
            .iter()
            .map(|p| quote_literal(p))
            .collect::<Vec<_>>()
            .join(", ");
        Step::retry(
            &format!("phase -> {to}"),
            Lock::None,
            format!(
                "SELECT hr_migrations.hr_set_phase({}, {})",
                self.key(),
                quote_literal(to)
            ),
        )
        .skip_when(format!("{} NOT IN ({froms})", self.phase()))
    }

    /// Forgets the batch state of the migration (end of a rollback).
    pub fn forget_batches(&self) -> Step {
        Step::retry(
            "forget the batch state",
            Lock::None,
            format!(
                "DELETE FROM hr_migrations.hr_batch_progress WHERE migration = {k}; \
                 DELETE FROM hr_migrations.hr_batch_failures WHERE migration = {k}",
                k = self.key()
            ),
        )
    }
}

/// `quote_ident` as PostgreSQL 15 does it: bare when lower case, starting
/// with a letter or underscore and not a keyword quote_ident quotes.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A SQL string literal.
/// A SQL string literal, as PostgreSQL's `quote_literal()` writes it: an
/// `E''` literal with doubled backslashes when there is a backslash, so it
/// reads the same whatever `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `pg_get_keywords() WHERE catcode <> 'U'` (PostgreSQL 15): quote_ident()
/// quotes these even when they are lower case.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// The file of a plan: a header saying what it does, the locks it takes and
/// how to run and undo it, then one `CALL <procedure>(<key>, <section>)` per
/// section with the top-level statements between them.
pub fn file(entry: &Entry, script: Script) -> Result<String, PlanError> {
    let steps = plan(entry, script)?;
    let k = kind(&entry.kind).expect("plan() checked the kind");
    let n = Names { entry };
    let number = format!("{:03}_{}.sql", entry.position, entry.migration);
    let mut out = String::new();
    let rule = "-- =============================================================================\n";
    out.push_str(rule);
    let _ = writeln!(
        out,
        "-- {}/{number} — {} migration {} ({}) on {}",
        script.directory().trim_start_matches("sql/"),
        match script {
            Script::Migrate => "apply",
            Script::Rollback => "undo",
        },
        entry.migration,
        entry.kind,
        n.table()
    );
    let _ = writeln!(
        out,
        "-- Generated from the extension's plan: SELECT * FROM hr_migrations.hr_plan({}, {});",
        n.key(),
        quote_literal(match script {
            Script::Migrate => "dual",
            Script::Rollback => "not_applied",
        })
    );
    out.push_str("-- (tests hold this file equal to it: change the plan, not the file).\n");
    out.push_str(rule);
    for line in k.describe(script).lines() {
        let _ = writeln!(out, "-- {line}");
    }
    out.push_str("--\n");
    out.push_str(
        "-- Run:   psql -v ON_ERROR_STOP=1 -f <this file>, the Supabase CLI from a project's\n\
         --        supabase/migrations/ (supabase migration up / db push), or any runner that\n\
         --        sends its statements one at a time, as a member of hr_migrations_admin\n\
         --        (postgres on Supabase) or a superuser. NOT inside a transaction block\n\
         --        (BEGIN ... COMMIT, psql -1): the steps COMMIT one by one and CREATE INDEX\n\
         --        CONCURRENTLY cannot run in one; the first statement refuses there.\n\
         -- Needs: CREATE EXTENSION hr_migrations and GRANT hr_migrations_admin TO <you>\n\
         --        (the platform's one-time step, docs/runbook.md).\n\
         -- Again: idempotent; after a failure at any statement, run the whole file again.\n\
         --        The session is left as it was (search_path and settings).\n",
    );
    let _ = match script {
        Script::Migrate => writeln!(out, "-- Undo:  {}/{number}", Script::Rollback.directory()),
        Script::Rollback => writeln!(out, "-- Redo:  {}/{number}", Script::Migrate.directory()),
    };
    out.push_str("-- Steps (section: what; lock; how it waits):\n");
    for s in &steps {
        let how = match &s.run {
            Run::Retry => "brief, retried",
            Run::Wait => "waits; blocks no reads or writes",
            Run::TopLevel => "top level; blocks no reads or writes",
            Run::Backfill { .. } | Run::Batches(_) => "row locks of one batch at a time",
            Run::Require { .. } => "refuses when it does not hold",
            Run::Notice => "reports",
        };
        let _ = writeln!(
            out,
            "--   {:>2}: {:<52} {}; {}",
            s.section,
            s.name,
            s.lock.as_str(),
            how
        );
    }
    out.push_str(rule);
    let mut section = 0;
    for s in &steps {
        if s.run == Run::TopLevel {
            let _ = writeln!(out, "{};", s.sql);
        } else if s.section != section {
            section = s.section;
            let _ = writeln!(out, "CALL {}({}, {section});", script.procedure(), n.key());
        }
    }
    Ok(out)
}

/// A plan as readable SQL, in the order the extension runs it: each step
/// with its section, name, how it runs, its lock and its skip condition in a
/// comment, then what runs (`SET lock_timeout` as each attempt of a retried
/// step sets it). The golden files `src/kinds/<kind>/plans/` are this
/// rendering; squawk lints them (scripts/lint.sh sql).
pub fn render_plan(entry: &Entry, script: Script) -> Result<String, PlanError> {
    let steps = plan(entry, script)?;
    let n = Names { entry };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- The plan of {} ({}) on {}: SELECT * FROM hr_migrations.hr_plan({}, {});",
        entry.migration,
        entry.kind,
        n.table(),
        n.key(),
        quote_literal(match script {
            Script::Migrate => "dual",
            Script::Rollback => "not_applied",
        })
    );
    let _ = writeln!(
        out,
        "-- Generated by src/kinds (tests hold it equal; UPDATE_GOLDEN=1 cargo test rewrites it)."
    );
    let mut i = 0;
    let mut section = 0;
    for s in &steps {
        if s.section != section {
            section = s.section;
            i = 0;
        }
        i += 1;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "-- {section}.{i} {} ({}; {})",
            s.name,
            s.run.as_str(),
            s.lock.as_str()
        );
        if let Some(cond) = &s.skip_when {
            let _ = writeln!(
                out,
                "--   {} {cond}",
                if s.run == Run::TopLevel {
                    "done when:"
                } else {
                    "skip when:"
                }
            );
        }
        match &s.run {
            Run::Retry => {
                let _ = writeln!(
                    out,
                    "SET lock_timeout = '1s';\n{};\nRESET lock_timeout;",
                    s.sql
                );
            }
            Run::Wait => {
                let _ = writeln!(
                    out,
                    "SET lock_timeout = 0;\n{};\nRESET lock_timeout;",
                    s.sql
                );
            }
            Run::TopLevel => {
                let _ = writeln!(out, "{};", s.sql);
            }
            Run::Backfill { promote } => {
                let _ = writeln!(
                    out,
                    "CALL hr_migrations.hr_run_backfill({}, promote => {promote});",
                    n.key()
                );
            }
            Run::Batches(op) => {
                let _ = writeln!(
                    out,
                    "CALL hr_migrations.hr_run_batches({}, {});",
                    n.key(),
                    quote_literal(op)
                );
            }
            Run::Require { message, .. } => {
                let _ = writeln!(out, "--   else 55000: {message}\nSELECT {};", s.sql);
            }
            Run::Notice => {
                let _ = writeln!(out, "SELECT {};", s.sql);
            }
        }
    }
    Ok(out)
}
