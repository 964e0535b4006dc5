//! The backfill flag: "the extension's own batch code is writing now".
//!
//! While it is on, `hr_touch_updated_at()` leaves `updated_at` alone (a
//! backfill is not an edit) and the migration triggers skip work the batch already did.
//! It is not a setting: a setting can exist as a placeholder that any role
//! can `SET` in a backend that has not loaded the library, and a trigger
//! trusting it could be switched off by the application. It is backend memory that only [`set`] changes, reached from SQL
//! through `hr_set_backfill_flag(boolean)`, whose EXECUTE is granted to the
//! extension's definer role alone. It never outlives the transaction that
//! set it: a transaction callback clears it at commit and abort, and a
//! subtransaction callback clears it when the subtransaction that set it is
//! rolled back (a failed batch inside a `BEGIN ... EXCEPTION` block).

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    /// `Some(subxact)`: on, set in that subtransaction (or a parent it was
    /// released into). `None`: off.
    static ON: Cell<Option<pg_sys::SubTransactionId>> = const { Cell::new(None) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(_event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    // Every event ends or prepares the top-level transaction: off, and the
    // triggers' per-statement lookups are forgotten.
    ON.set(None);
    crate::context::clear();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // The ROW EXCLUSIVE locks the planted-code check took in the aborted
        // subtransaction are gone: its "checked" marks must go with them.
        crate::context::clear_checks();
    }
    let Some(owner) = ON.get() else { return };
    if owner != my_subid {
        return;
    }
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => ON.set(None),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => ON.set(Some(parent_subid)),
        _ => {}
    }
}

fn register() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: plain function pointers with no argument; registered once per
    // process (callbacks registered in the postmaster are inherited by fork,
    // and REGISTERED is inherited with them).
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
    REGISTERED.set(true);
}

/// Registers the callbacks (from `_PG_init`).
pub fn init() {
    register();
}

/// Turns the flag on or off for the rest of the current transaction.
pub fn set(on: bool) {
    register();
    if on {
        // SAFETY: reads the current subtransaction id; we are in a transaction.
        ON.set(Some(unsafe { pg_sys::GetCurrentSubTransactionId() }));
    } else {
        ON.set(None);
    }
}

/// Whether the extension's batch code is writing in this transaction.
pub fn is_on() -> bool {
    ON.get().is_some()
}

/// `hr_backfill_in_progress() RETURNS boolean` — VOLATILE PARALLEL RESTRICTED.
///
/// True while the extension's own batch code writes in this transaction.
/// The migrations' trigger WHEN clauses call it, and WHEN clauses run as the
/// writing role, so EXECUTE is granted to PUBLIC: it reads one boolean that
/// only [`hr_set_backfill_flag`] changes.
#[pg_extern(volatile, parallel_restricted, schema = "hr_migrations")]
fn hr_backfill_in_progress() -> bool {
    is_on()
}

/// `hr_set_backfill_flag(on boolean) RETURNS void` — VOLATILE PARALLEL UNSAFE.
///
/// Sets the flag for the current transaction. EXECUTE: the extension's
/// definer role only (its batch functions). STRICT: NULL does nothing.
#[pg_extern(volatile, strict, parallel_unsafe, schema = "hr_migrations")]
fn hr_set_backfill_flag(on: bool) {
    set(on);
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn on() -> bool {
        Spi::get_one::<bool>("SELECT hr_migrations.hr_backfill_in_progress()")
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn flag_is_off_by_default_and_follows_set() {
        assert!(!on());
        Spi::run("SELECT hr_migrations.hr_set_backfill_flag(true)").unwrap();
        assert!(on());
        Spi::run("SELECT hr_migrations.hr_set_backfill_flag(false)").unwrap();
        assert!(!on());
    }

    /// Set inside a subtransaction that is rolled back: off again.
    #[pg_test]
    fn rolled_back_subtransaction_clears_the_flag() {
        Spi::run(
            "DO $$ BEGIN
               BEGIN
                 PERFORM hr_migrations.hr_set_backfill_flag(true);
                 RAISE EXCEPTION 'fail the block';
               EXCEPTION WHEN raise_exception THEN NULL;
               END;
               IF hr_migrations.hr_backfill_in_progress() THEN RAISE EXCEPTION 'flag survived the rollback'; END IF;
             END $$",
        )
        .unwrap();
        // Set in the outer block, an inner block fails: still on.
        Spi::run(
            "DO $$ BEGIN
               PERFORM hr_migrations.hr_set_backfill_flag(true);
               BEGIN
                 RAISE EXCEPTION 'fail the inner block';
               EXCEPTION WHEN raise_exception THEN NULL;
               END;
               IF NOT hr_migrations.hr_backfill_in_progress() THEN RAISE EXCEPTION 'flag lost'; END IF;
               PERFORM hr_migrations.hr_set_backfill_flag(false);
             END $$",
        )
        .unwrap();
    }

    /// 0.1.0's setting still exists (0.1.0's SQL reads it until `ALTER
    /// EXTENSION UPDATE`) but turns nothing on: set (and the SET checked to
    /// have taken), the flag stays off and an `updated_at` trigger guarded
    /// the way the migrations guard theirs still moves `updated_at`; the
    /// real flag, as a control, does keep it.
    #[pg_test]
    fn the_deprecated_setting_neither_turns_the_flag_on_nor_keeps_updated_at() {
        Spi::run("SET LOCAL hr_migrations.backfill_in_progress = on").unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('hr_migrations.backfill_in_progress')"),
            Ok(Some("on".to_string()))
        );
        assert!(!on());
        Spi::run(
            "CREATE TEMP TABLE touched (id int, updated_at timestamptz NOT NULL DEFAULT '2000-01-01');
             CREATE TRIGGER touch BEFORE UPDATE ON touched FOR EACH ROW
               WHEN (NOT hr_migrations.hr_backfill_in_progress())
               EXECUTE FUNCTION hr_migrations.hr_touch_updated_at();
             INSERT INTO touched VALUES (1);
             UPDATE touched SET id = 2",
        )
        .unwrap();
        let moved = "SELECT updated_at > '2001-01-01' FROM touched";
        assert_eq!(Spi::get_one::<bool>(moved), Ok(Some(true)));
        // The control: with the flag on, the same update keeps the value.
        Spi::run(
            "SELECT hr_migrations.hr_set_backfill_flag(true);
             UPDATE touched SET id = 3, updated_at = '2000-01-01';
             SELECT hr_migrations.hr_set_backfill_flag(false)",
        )
        .unwrap();
        assert_eq!(Spi::get_one::<bool>(moved), Ok(Some(false)));
    }
}
