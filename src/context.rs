//! Which migration a trigger serves and that migration's phase, looked up
//! once per statement.
//!
//! A trigger fires once per row; a bulk INSERT of a million references
//! would otherwise ask the registry and the phase table a million times.
//! The answer is kept for the rest of the statement (the transaction's
//! start time and command id identify it) and dropped when the transaction
//! ends. Within one statement the phase is what its first row saw — as if
//! the statement had run just before or just after a concurrent phase
//! change; moving to a phase that refuses plaintext waits for the writers in
//! flight (hr_migrations.hr_wait_for_writers), and legacy plaintext is erased by the
//! contract phase either way.

use std::cell::RefCell;

use pgrx::prelude::*;

use crate::definer;
use crate::error::Error;
use crate::phase::Phase;

struct Entry {
    relid: pg_sys::Oid,
    kind: &'static str,
    migration: String,
    phase: Phase,
    statement: (pg_sys::TimestampTz, pg_sys::CommandId),
}

thread_local! {
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Forgets everything (at transaction end; see `flag`).
pub fn clear() {
    CACHE.with_borrow_mut(Vec::clear);
    clear_checks();
}

fn statement() -> (pg_sys::TimestampTz, pg_sys::CommandId) {
    // SAFETY: plain getters of the current transaction's state.
    unsafe {
        (
            pg_sys::GetCurrentTransactionStartTimestamp(),
            pg_sys::GetCurrentCommandId(false),
        )
    }
}

/// The migration of `kind` registered for table `relid`, and its phase;
/// 39P01 when the table is registered for no migration of that kind (the
/// trigger function was attached to another table).
pub fn of_trigger(relid: pg_sys::Oid, kind: &'static str) -> Result<(String, Phase), Error> {
    let now = statement();
    let hit = CACHE.with_borrow(|c| {
        c.iter()
            .find(|e| e.relid == relid && e.kind == kind && e.statement == now)
            .map(|e| (e.migration.clone(), e.phase))
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let schema = definer::own_schema()?;
    let query = format!(
        "SELECT r.migration, COALESCE(p.phase, 'not_applied') \
           FROM {schema}.hr_migration_registry r \
           LEFT JOIN {schema}.hr_migration_phases p ON p.migration OPERATOR(pg_catalog.=) r.migration \
          WHERE r.kind OPERATOR(pg_catalog.=) $1 \
            AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', r.table_schema, r.table_name))::pg_catalog.oid \
                OPERATOR(pg_catalog.=) $2 \
          LIMIT 1"
    );
    let row = definer::run(|| {
        Spi::connect(|client| {
            let mut rows = client.select(&query, Some(1), &[kind.into(), relid.into()])?;
            Ok::<_, pgrx::spi::SpiError>(match rows.next() {
                Some(r) => Some((r.get::<String>(1)?, r.get::<String>(2)?)),
                None => None,
            })
        })
    })
    .map_err(|e| Error::Catalog(format!("could not read the migration registry ({e})")))?;
    let (Some(migration), Some(phase)) = row.unwrap_or((None, None)) else {
        return Err(Error::TriggerMisuse(
            "this hr_migrations trigger function serves only the tables of its migrations".into(),
        ));
    };
    let phase = Phase::parse(&phase)
        .ok_or_else(|| Error::Catalog(format!("migration {migration} has an unknown phase")))?;
    CACHE.with_borrow_mut(|c| {
        c.retain(|e| e.statement == now);
        c.push(Entry {
            relid,
            kind,
            migration: migration.clone(),
            phase,
            statement: now,
        });
    });
    Ok((migration, phase))
}

struct Checked {
    relid: pg_sys::Oid,
    statement: (pg_sys::TimestampTz, pg_sys::CommandId),
}

thread_local! {
    static CHECKED: RefCell<Vec<Checked>> = const { RefCell::new(Vec::new()) };
}

/// Forgets the foreign-trigger checks too (at transaction end).
pub fn clear_checks() {
    CHECKED.with_borrow_mut(Vec::clear);
}

/// The first column of the first row of `query` as text (None: no row or
/// NULL), read with a snapshot taken now. A check that follows a lock must
/// see what committed while the lock was awaited, and the statement's
/// snapshot (a read-only SPI call runs in it) or, under REPEATABLE READ,
/// the transaction's predates that wait, while the executor and the planner
/// read the catalogs as they are now: a check in the older snapshot would
/// pass a trigger committed during the wait and the write would then fire
/// it. `args`: (type, value) pairs, none NULL.
pub(crate) fn first_text_now(
    query: &str,
    args: &[(pg_sys::Oid, pg_sys::Datum)],
) -> Result<Option<String>, String> {
    let cmd = std::ffi::CString::new(query).map_err(|_| "a query with a NUL byte".to_string())?;
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.1).collect();
    let nulls: Vec<std::ffi::c_char> = vec![b' ' as std::ffi::c_char; args.len()];
    Spi::connect(|_client| {
        // SAFETY: SPI is connected for the closure (Spi::connect); the
        // arrays hold args.len() elements; the snapshot pushed here is
        // popped below, or with the (sub)transaction if the query raises;
        // the result is copied out before SPI_finish frees it.
        unsafe {
            pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
            // read_only: the query runs in the active snapshot, the one above.
            let rc = pg_sys::SPI_execute_with_args(
                cmd.as_ptr(),
                args.len() as std::ffi::c_int,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
                1,
            );
            pg_sys::PopActiveSnapshot();
            if rc != pg_sys::SPI_OK_SELECT as std::ffi::c_int {
                return Err(format!("SPI_execute_with_args returned {rc}"));
            }
            let table = pg_sys::SPI_tuptable;
            if table.is_null() || pg_sys::SPI_processed == 0 {
                return Ok(None);
            }
            let value = pg_sys::SPI_getvalue(*(*table).vals, (*table).tupdesc, 1);
            if value.is_null() {
                return Ok(None);
            }
            Ok(Some(
                std::ffi::CStr::from_ptr(value)
                    .to_string_lossy()
                    .into_owned(),
            ))
        }
    })
}

/// Raises 55000 naming the first code planted on one of `relids` that
/// would run as the definer role (a trigger, default, constraint, index
/// expression, domain check or rule calling a function a non-superuser
/// owns: `hr_migrations.hr_planted_code()`, the one definition the
/// preflight and the engine read too). Checked once per statement and
/// table, so a trigger function can call it for every row; the tables not
/// yet checked in this statement are checked by one query (a batch that
/// writes three tables asked three times: 7 ms of each batch).
pub fn refuse_foreign_triggers(relids: &[pg_sys::Oid]) -> Result<(), Error> {
    let now = statement();
    // ROW EXCLUSIVE, what the write takes anyway, taken before the check:
    // it conflicts with the DDL that adds code to the table itself (CREATE
    // TRIGGER, CREATE RULE, CREATE INDEX, most of ALTER TABLE), so none of
    // it appears between the check and the write. What does not conflict
    // with it is handled elsewhere: an inheritance child attached later is
    // never written (every write names its table ONLY), a partitioned table
    // is refused (a partition attached later would receive an INSERT), and
    // CREATE STATISTICS, CREATE INDEX CONCURRENTLY and ALTER DOMAIN are the
    // open W2 of docs/security.md.
    let mut unchecked: Vec<pg_sys::Oid> = Vec::new();
    for &relid in relids {
        if unchecked.contains(&relid)
            || CHECKED.with_borrow(|c| c.iter().any(|e| e.relid == relid && e.statement == now))
        {
            continue;
        }
        // SAFETY: a lock on a relation id; held until the transaction ends.
        unsafe { pg_sys::LockRelationOid(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE) };
        unchecked.push(relid);
    }
    if unchecked.is_empty() {
        return Ok(());
    }
    let schema = definer::own_schema()?;
    let query = if schema != "hr_migrations" {
        // Extension SQL of 0.2.0 (the library was replaced, ALTER EXTENSION
        // UPDATE has not run yet): its one definition of foreign triggers.
        format!(
            "SELECT pg_catalog.format('refusing to write %s: trigger %s runs function %s owned by role %s, which is neither a superuser nor the table''s owner', \
                    f.table_name, pg_catalog.quote_ident(f.trigger_name), f.function_name, pg_catalog.quote_ident(f.function_owner)) \
               FROM {schema}.hr_foreign_triggers($1::pg_catalog.oid[]::pg_catalog.regclass[]) f LIMIT 1"
        )
    } else {
        format!(
        "SELECT CASE WHEN f.function_name IS NULL \
                     THEN pg_catalog.format('refusing to write %s: %s would run as the extension''s definer role', f.table_name, f.object) \
                     ELSE pg_catalog.format('refusing to write %s: %s runs function %s owned by role %s, which is not a superuser: it would run as the extension''s definer role', \
                              f.table_name, f.object, f.function_name, pg_catalog.quote_ident(f.function_owner)) END \
           FROM {schema}.hr_planted_code($1::pg_catalog.oid[]::pg_catalog.regclass[]) f LIMIT 1"
        )
    };
    // In a snapshot taken after the locks above (first_text_now).
    let tables = unchecked
        .clone()
        .into_datum()
        .ok_or_else(|| Error::Catalog("could not pass the tables to the check".into()))?;
    let found = first_text_now(&query, &[(pg_sys::OIDARRAYOID, tables)])
        .map_err(|e| Error::Catalog(format!("could not read the table's triggers ({e})")))?;
    if let Some(message) = found {
        return Err(Error::ForeignTrigger(message));
    }
    CHECKED.with_borrow_mut(|c| {
        c.retain(|e| e.statement == now);
        c.extend(unchecked.iter().map(|&relid| Checked {
            relid,
            statement: now,
        }));
    });
    Ok(())
}

/// `hr_refuse_foreign_triggers(tables regclass[]) RETURNS void` — VOLATILE.
/// Internal (definer role): what every SECURITY DEFINER function that
/// writes calls before writing, once per statement and table.
/// A NULL in the list (a table that does not exist: `to_regclass` gave
/// NULL) is refused with 42P01 before anything is written.
#[pg_extern(volatile, strict, parallel_unsafe, schema = "hr_migrations")]
fn hr_refuse_foreign_triggers(tables: Vec<Option<pg_sys::Oid>>) {
    let mut relids = Vec::with_capacity(tables.len());
    for t in tables {
        let Some(t) = t else {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                "a table this operation writes does not exist",
                "hr_migrations.hr_migration_registry names it; was it renamed or dropped?"
            );
        };
        relids.push(t);
    }
    refuse_foreign_triggers(&relids).unwrap_or_else(|e| e.raise());
}
