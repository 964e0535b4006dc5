//! The extension's integrity, checked live before code of ours runs as the
//! definer role or is handed to a superuser.
//!
//! PostgreSQL 15 cannot stop a CREATEROLE role (Supabase's `postgres`) from
//! granting itself `hr_migrations_definer`. A member can then change what
//! the definer role owns: the SECURITY DEFINER functions (their body, their
//! SECURITY DEFINER flag, their owner), and the next superuser who calls
//! one runs the member's code. So every SECURITY DEFINER function, every
//! procedure (after each COMMIT), the API's wrappers of SECURITY DEFINER
//! functions and the superuser's entry points that call them first call
//! `hr_require_integrity()`, which refuses (55000, naming what to fix) while
//! - `hr_migrations_definer` has a member, can log in or is a superuser, or
//! - a member object of the extension (function, table, view, schema)
//!   differs from what the install recorded in `hr_member_fingerprints`:
//!   owner, SECURITY DEFINER flag, settings, body, privileges, or
//! - a column the migrations read or write is not of its exact type
//!   (`hr_column_type_problem`: a type of the admin's would run its casts
//!   and operators as the reader).
//!
//! The verdict is cached per backend and dropped by syscache callbacks on
//! pg_authid, pg_auth_members, pg_proc, pg_class, pg_namespace and
//! pg_attribute, which
//! every backend receives when any of them changes anywhere: a live check,
//! not a latch (undo the change and the next call passes). The RLS path
//! (`hr_jwt_organization_id`) never calls it.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::context::first_text_now;
use crate::definer;
use crate::error::Error;

thread_local! {
    /// `None`: not known (never checked, or a catalog changed since).
    /// `Some(None)`: intact. `Some(Some(problem))`: refused, and why.
    static VERDICT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Bumped by every invalidation: a verdict computed while one arrived
    /// (its query's first locks accept invalidations) is not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    VERDICT.with_borrow_mut(|v| *v = None);
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

fn register() {
    if REGISTERED.get() {
        return;
    }
    for cache in [
        pg_sys::SysCacheIdentifier::AUTHOID,
        pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        pg_sys::SysCacheIdentifier::PROCOID,
        pg_sys::SysCacheIdentifier::RELOID,
        pg_sys::SysCacheIdentifier::NAMESPACEOID,
        // A column's type changed (hr_column_type_problem).
        pg_sys::SysCacheIdentifier::ATTNUM,
        // Extended statistics made or changed (their expressions are
        // planner-evaluated: hr_integrity_problem, problem 7). Indexes are
        // pg_class rows: RELOID.
        pg_sys::SysCacheIdentifier::STATEXTOID,
    ] {
        // SAFETY: a plain function pointer with no argument, registered
        // once per process (the registry of callbacks is per backend and
        // inherited by fork along with REGISTERED).
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as std::ffi::c_int,
                Some(forget),
                pg_sys::Datum::from(0usize),
            )
        };
    }
    REGISTERED.set(true);
}

/// Registers the invalidation callbacks (from `_PG_init`).
pub fn init() {
    register();
}

/// The first problem, if any: computed by `hr_integrity_problem()` (SQL,
/// owned by the installing superuser), read as the definer role (the
/// fingerprints are readable by it alone).
fn problem() -> Result<Option<String>, Error> {
    // The role named hr_migrations_definer must be the one that owns the
    // SECURITY DEFINER functions: a CREATEROLE role could rename the real
    // one (and take it) and create another of that name, which the check
    // below would then run as. (NULL: an older version of the extension's
    // SQL, before ALTER EXTENSION UPDATE.)
    // Both read in a snapshot taken now (context::first_text_now): under
    // REPEATABLE READ the transaction's snapshot would not show a change
    // committed since it began, which the function about to run would
    // already carry.
    let owner_is_named = first_text_now(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r                          WHERE r.oid OPERATOR(pg_catalog.=) p.proowner                            AND r.rolname OPERATOR(pg_catalog.=) 'hr_migrations_definer')::pg_catalog.text            FROM pg_catalog.pg_proc p           WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure('hr_migrations.hr_migration_status()')",
        &[],
    )
    .map_err(|e| Error::Catalog(format!("could not check the extension's integrity ({e})")))?;
    if owner_is_named.as_deref() == Some("false") {
        return Ok(Some(
            "the extension's SECURITY DEFINER functions are not owned by the role named hr_migrations_definer (it was renamed, or another role took its name); fix: give the role back its name and drop the other, or reinstall the extension"
                .into(),
        ));
    }
    definer::run(|| {
        first_text_now("SELECT hr_migrations.hr_integrity_problem()", &[])
            .map_err(|e| Error::Catalog(format!("could not check the extension's integrity ({e})")))
    })
}

/// Ok while the extension is intact; 55000 naming the problem otherwise.
pub fn require() -> Result<(), Error> {
    register();
    let cached = VERDICT.with_borrow(|v| v.clone());
    let verdict = match cached {
        Some(v) => v,
        None => {
            let generation = GENERATION.get();
            let v = problem()?;
            // A catalog changed while the check ran: the answer stands for
            // this call, and the next call checks again.
            if GENERATION.get() == generation {
                VERDICT.with_borrow_mut(|c| *c = Some(v.clone()));
            }
            v
        }
    };
    match verdict {
        None => Ok(()),
        Some(p) => Err(Error::Tampered(p)),
    }
}

/// `hr_migrations.hr_require_integrity() RETURNS void` — VOLATILE PARALLEL
/// UNSAFE. Raises 55000, saying what to fix, while the definer role has
/// a member, can log in or is a superuser, or while an object of the
/// extension differs from what the install created. Cached per backend;
/// recomputed after any change to roles, memberships, functions, relations
/// or schemas. Unsafe rather than restricted: the check takes a fresh
/// snapshot (`context::first_text_now`), which a leader in parallel mode
/// may not.
#[pg_extern(volatile, parallel_unsafe, schema = "hr_migrations")]
fn hr_require_integrity() {
    require().unwrap_or_else(|e| e.raise());
}
