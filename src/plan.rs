//! The SQL surface of the plans (`src/kinds`): `hr_plan`, the files as the
//! extension renders them, the registry's validation and the built-in
//! entries the install registers. `hr_apply` and `hr_rollback`, the
//! procedures that run a plan section by section, are SQL
//! (`src/sql/apply.sql`): a procedure that COMMITs cannot be Rust (SPI is
//! atomic).

use std::collections::BTreeMap;

use pgrx::prelude::*;
use pgrx::JsonB;

use pgrx::pg_sys::panic::ErrorReport;

use crate::error::{Error, SqlResult};
use crate::kinds::{self, Entry, Script};

extension_sql_file!(
    "sql/apply.sql",
    name = "apply",
    requires = [
        "operations",
        hr_plan,
        hr_require_autocommit,
        hr_builtin_migrations,
        hr_check_registry_entry,
        hr_backfill_in_background,
        hr_creating_extension
    ],
);

/// The registry entry of `migration`, read as the caller.
fn entry(migration: &str) -> Result<Entry, Error> {
    let row = Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT r.migration, r.position, r.kind, r.table_schema, r.table_name, r.objects::pg_catalog.text \
               FROM hr_migrations.hr_migration_registry r \
              WHERE r.migration OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[migration.into()],
        )?;
        Ok::<_, pgrx::spi::SpiError>(match rows.next() {
            Some(r) => Some((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<i32>(2)?.unwrap_or_default(),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<String>(4)?.unwrap_or_default(),
                r.get::<String>(5)?.unwrap_or_default(),
                r.get::<String>(6)?.unwrap_or_default(),
            )),
            None => None,
        })
    })
    .map_err(|e| Error::Catalog(format!("could not read the migration registry ({e})")))?;
    let Some((migration, position, kind, table_schema, table_name, objects)) = row else {
        // The name given is not repeated: an error never quotes its input.
        return Err(Error::UnknownMigration);
    };
    let objects: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&objects).map_err(|_| {
            Error::Catalog(format!(
                "the registry's objects of {migration} are not a JSON object"
            ))
        })?;
    Ok(Entry {
        migration,
        position,
        kind,
        table_schema,
        table_name,
        objects,
    })
}

fn script(phase: &str) -> Result<Script, Error> {
    Script::from_phase(phase).ok_or(Error::NoPlan)
}

/// `hr_plan(migration text, phase text DEFAULT 'dual') RETURNS TABLE(section
/// integer, step integer, name text, statement text, run text, lock text,
/// skip_when text, refusal jsonb)` — STABLE.
///
/// The steps that bring `migration` to `phase`: `'dual'` (or `'migrated'`)
/// is its file in `sql/migrations/`, `'not_applied'` its rollback; later
/// phases are moves (`CALL hr_run_phase`). One row per step, in order:
/// `section` (the file's `CALL hr_apply(migration, section)` runs the
/// section's steps; a `top_level` step is a statement of the file itself),
/// `run` (`retry`: own transaction under the lock retry; `wait`: own
/// transaction waiting for SHARE UPDATE EXCLUSIVE; `top_level`; `backfill`;
/// `batches:<operation>`; `require`: a boolean that must hold, else 55000
/// with `refusal`'s `message` and `hint`; `notice`), the strongest table
/// `lock` and `skip_when`
/// (for a top-level step: when it is done). 22023 for a migration that is
/// not registered, a phase without a plan, or an entry its kind cannot plan.
#[pg_extern(stable, schema = "hr_migrations")]
#[allow(clippy::type_complexity)]
fn hr_plan(
    migration: &str,
    phase: default!(&str, "'dual'"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(section, i32),
            name!(step, i32),
            name!(name, String),
            name!(statement, String),
            name!(run, String),
            name!(lock, String),
            name!(skip_when, Option<String>),
            name!(refusal, Option<JsonB>),
        ),
    >,
    ErrorReport,
> {
    let e = entry(migration)?;
    let steps = kinds::plan(&e, script(phase)?).map_err(Error::Plan)?;
    let mut rows = Vec::with_capacity(steps.len());
    for (i, s) in steps.into_iter().enumerate() {
        let refusal = match &s.run {
            kinds::Run::Require { message, hint } => Some(JsonB(
                serde_json::json!({ "message": message, "hint": hint }),
            )),
            _ => None,
        };
        rows.push((
            s.section as i32,
            i as i32 + 1,
            s.name,
            s.sql,
            s.run.as_str(),
            s.lock.as_str().to_string(),
            s.skip_when,
            refusal,
        ));
    }
    Ok(TableIterator::new(rows))
}

/// `hr_migration_file(migration text, phase text DEFAULT 'dual') RETURNS
/// text` — STABLE. The file that runs `hr_plan(migration, phase)`: for a
/// migration you registered, its `sql/migrations/` (phase `'dual'`) or
/// `sql/rollback/` (`'not_applied'`) file, to save under the name
/// `hr_migration_script(migration)` (with a timestamp for the Supabase CLI).
/// The built-in files are exactly this. 22023 as for `hr_plan`.
#[pg_extern(stable, schema = "hr_migrations")]
fn hr_migration_file(migration: &str, phase: default!(&str, "'dual'")) -> SqlResult<String> {
    let e = entry(migration)?;
    Ok(kinds::file(&e, script(phase)?).map_err(Error::Plan)?)
}

/// `hr_require_autocommit(file text) RETURNS void` — VOLATILE. Internal:
/// the first thing `hr_apply` does. 25001 inside an explicit transaction
/// block (BEGIN, `psql -1`, several statements sent as one query): a file's
/// steps COMMIT one by one and `CREATE INDEX CONCURRENTLY` cannot run
/// there, so it refuses before anything changes.
#[pg_extern(volatile, schema = "hr_migrations")]
fn hr_require_autocommit(file: &str) -> SqlResult<()> {
    // SAFETY: reads the backend's transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        return Err(Error::InTransactionBlock(file.to_string()).into());
    }
    Ok(())
}

/// `hr_builtin_migrations() RETURNS TABLE(migration text, position integer,
/// kind text, table_schema text, table_name text, default_batch_size
/// integer, objects jsonb)` — IMMUTABLE. Internal: the three migrations of
/// the plan, which the install registers (`src/kinds/builtin.rs`).
#[pg_extern(immutable, schema = "hr_migrations")]
#[allow(clippy::type_complexity)]
fn hr_builtin_migrations() -> TableIterator<
    'static,
    (
        name!(migration, String),
        name!(position, i32),
        name!(kind, String),
        name!(table_schema, String),
        name!(table_name, String),
        name!(default_batch_size, i32),
        name!(objects, JsonB),
    ),
> {
    TableIterator::new(kinds::builtin::builtin().into_iter().map(|b| {
        let e = b.entry;
        (
            e.migration,
            e.position,
            e.kind,
            e.table_schema,
            e.table_name,
            b.default_batch_size,
            JsonB(serde_json::Value::Object(e.objects.into_iter().collect())),
        )
    }))
}

/// `hr_check_registry_entry(migration text, kind text, table_schema text,
/// table_name text, objects jsonb) RETURNS void` — IMMUTABLE. Internal: the
/// registry's trigger calls it for every row written. 22023, naming the
/// key, when the entry's names are not what its kind plans with.
#[pg_extern(immutable, schema = "hr_migrations")]
fn hr_check_registry_entry(
    migration: &str,
    kind: &str,
    table_schema: &str,
    table_name: &str,
    objects: JsonB,
) -> SqlResult<()> {
    let serde_json::Value::Object(map) = objects.0 else {
        return Err(Error::Plan(kinds::PlanError::BadName {
            migration: migration.into(),
            key: "objects".into(),
            list: "",
        })
        .into());
    };
    let e = Entry {
        migration: migration.into(),
        position: 0,
        kind: kind.into(),
        table_schema: table_schema.into(),
        table_name: table_name.into(),
        objects: map.into_iter().collect(),
    };
    kinds::validate(&e).map_err(Error::Plan)?;
    Ok(())
}

/// `hr_backfill_in_background() RETURNS boolean` — STABLE PARALLEL SAFE.
/// Internal: `hr_migrations.backfill_in_background` (a file's backfill step
/// schedules a pg_cron job instead of running the batches).
#[pg_extern(stable, parallel_safe, schema = "hr_migrations")]
fn hr_backfill_in_background() -> bool {
    crate::gucs::backfill_in_background()
}

/// `hr_kind_columns(migration text) RETURNS TABLE(table_name text,
/// column_name text, type_name text, required boolean)` — STABLE. Internal:
/// every column the migration's kind reads or writes and its exact type
/// (`Kind::columns`), its table qualified and quoted; the integrity check
/// (`hr_column_type_problem`) compares them with the catalog.
#[pg_extern(stable, schema = "hr_migrations")]
#[allow(clippy::type_complexity)]
fn hr_kind_columns(
    migration: &str,
) -> Result<
    TableIterator<
        'static,
        (
            name!(table_name, String),
            name!(column_name, String),
            name!(type_name, String),
            name!(required, bool),
        ),
    >,
    ErrorReport,
> {
    let e = entry(migration)?;
    let rows = kinds::columns(&e).map_err(Error::Plan)?;
    Ok(TableIterator::new(rows.into_iter().map(|(t, c)| {
        (t, c.column.to_string(), c.type_name.to_string(), c.required)
    })))
}

/// `hr_creating_extension() RETURNS boolean` — VOLATILE PARALLEL SAFE.
/// Internal: whether this runs inside CREATE or ALTER EXTENSION's script
/// (the only time PostgreSQL records initial privileges).
#[pg_extern(volatile, parallel_safe, schema = "hr_migrations")]
fn hr_creating_extension() -> bool {
    // SAFETY: reads a backend-local flag.
    unsafe { pgrx::pg_sys::creating_extension }
}
