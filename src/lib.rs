//! `hr_migrations`: three security migrations for a multi-tenant HR schema,
//! carried out inside PostgreSQL (see `docs/design.md` for
//! how it is put together).
//!
//! Pure modules know nothing of Postgres and carry their own unit tests:
//! - [`token`]: token hash v1 and generated tokens.
//! - [`dual_path`]: the dual-path verification decision of migration 1.
//! - [`claims`]: JWT claims -> organization id.
//! - [`keyring`]: keyring file parsing, key check values.
//! - [`envelope`]: credential envelope v1 (AES-256-GCM).
//! - [`datakey`]: per-organization data keys, wrapped by a keyring key, and
//!   credential envelope v2 sealed with them.
//! - [`secret`]: the job-board secret inside an envelope, parsed strictly.
//! - [`phase`]: the phase rules of every migration.
//! - [`batch_size`]: the batch size of a run that names none.
//! - [`kinds`]: the plan of each kind of migration (its DDL steps, as data),
//!   one folder per kind, and the files rendered from them.
//!
//! Thin SQL modules expose them, each wiring its migration's SQL file:
//! - `tokens`: migration 1 (`reference_tokens`).
//! - `tenancy`: migration 2 (`portal_sessions`).
//! - `credentials`: migration 3 (`integration_credentials`), over `keystore`
//!   (the backend's keyring cache and key schedules).
//! - `operations`: the registry, the batch engine, phases and status.
//! - `plan`: `hr_plan`, `hr_apply`/`hr_rollback` (the files' procedures),
//!   the registry's validation and the built-in entries.
//! - `privileges`: who may use what (`src/sql/privileges.sql`), applied last.
//!
//! Support: `error` (one enum, one SQLSTATE per variant), `gucs` (every
//! setting), `random` (the per-backend CSPRNG, reseeded after fork), `flag`
//! (the backfill flag only the extension's own code can set), `integrity`
//! (the live check that the definer role is out of reach), `definer`
//! (catalog queries as the definer role), `context` (a trigger's migration
//! and phase, once per statement).

// SQL functions return pgrx's ErrorReport by value: it is how pgrx raises a
// precise SQLSTATE, and it is large. Boxing it would lose that path.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

pub mod batch_size;
pub mod claims;
mod context;
mod credentials;
pub mod datakey;
mod definer;
pub mod dual_path;
pub mod envelope;
mod error;
mod flag;
mod gucs;
mod integrity;
pub mod keyring;
mod keystore;
pub mod kinds;
mod operations;
mod orgkeys;
pub mod phase;
mod plan;
mod privileges;
mod random;
pub mod secret;
mod tenancy;
pub mod token;
mod tokens;

::pgrx::pg_module_magic!(name, version);

/// Schema `hr_migrations`, where every function of the extension lives (the
/// API has thin wrappers in the extension's schema: src/sql/privileges.sql).
/// The bootstrap (src/sql/operations.sql) creates it and refuses to install
/// when one exists already; this declaration lets `#[pg_extern(schema =
/// "hr_migrations")]` name it (its `CREATE SCHEMA IF NOT EXISTS` then finds
/// the bootstrap's).
#[pg_schema]
mod hr_migrations {}

/// Runs when the library is loaded: in the postmaster when it is listed in
/// `shared_preload_libraries`, otherwise in each backend on first use.
/// Set by `_PG_init` when the postmaster loads the library
/// (`shared_preload_libraries`); forked backends inherit it.
pub(crate) static PRELOADED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a flag the postmaster sets while it loads the libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    gucs::init();
    flag::init();
    integrity::init();
    orgkeys::init();
    // Seeding here is deliberate: under shared_preload_libraries this state is
    // inherited by every forked backend, and `random` must notice and reseed.
    // The fork test in tests/integration keeps that promise honest.
    random::init();
}

/// Settings for the `#[pg_test]` harness: the library is preloaded, so the
/// tests also run in the configuration where fork safety matters.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'hr_migrations'"]
    }
}
