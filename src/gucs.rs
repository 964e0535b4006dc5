//! Every setting of the extension, in one place.
//!
//! All are superuser-only to change: an application role can neither see the
//! keyring's path nor change how the DBA's batches run or which key seals.
//! The install grants SET on every setting but the keyring's path
//! ([`ADMIN_SETTINGS`]) to `hr_migrations_admin`, the database's admin. The `hr_migrations.` prefix is
//! reserved when the library loads, so no role can create a placeholder
//! under it that our code might later be tempted to trust.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Path of the keyring file: `<key_version> <base64 of 32 bytes>` per line
/// (docs/key-management.md). Set in postgresql.conf; reloadable; only
/// superusers (and pg_read_all_settings) can see it.
static KEYRING_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// A program whose standard output is the keyring (the file's format), run
/// by a backend on its first use of a key, as `pgsodium.getkey_script`: for
/// keys kept in a KMS, Vault or a hardware module. Set in postgresql.conf;
/// reloadable; only superusers (and pg_read_all_settings) can see it. When
/// set, it is used instead of `keyring_file`.
static KEYRING_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The key version new envelopes are encrypted under. 0 = not set.
/// Superuser-only to SET, like every setting here; the install grants SET on
/// it to `hr_migrations_admin`, so the database's admin may choose it per
/// database (`ALTER DATABASE <db> SET ...`), and no application role can.
static ACTIVE_KEY_VERSION: GucSetting<i32> = GucSetting::<i32>::new(0);

/// How long a migration stays `enforced` before `contracted` is allowed
/// (the plan's 30-day deprecation period). An interval, read by SQL.
static DEPRECATION_PERIOD: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"30 days"));

/// The batch engine's target duration for one batch, in milliseconds: the
/// batch size adapts towards it, so row locks are held about this long.
static BATCH_TARGET_MS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// Rows per batch when a run does not name a size; 0 = adaptive (the
/// size follows `batch_target_ms`). The migration files' backfills use it.
static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(0);

/// When on, a migration file's backfill step schedules the batches as a
/// pg_cron job (`hr_schedule_backfill`) instead of running them in the
/// foreground: the file ends with the migration in `dual`, the job moves it.
static BACKFILL_IN_BACKGROUND: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Pause between two batches of the batch engine, in milliseconds.
static BATCH_PAUSE_MS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// The batch engine waits while a standby's replay lag is above this, in
/// milliseconds (0 = do not look at standbys).
static MAX_REPLICATION_LAG_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// How long one attempt of a migration script's DDL statement waits for its
/// lock before it gives up and retries (hr_ddl), in milliseconds: the
/// longest time application queries queue behind it.
static DDL_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How long hr_ddl keeps retrying a DDL statement that cannot get its lock,
/// in milliseconds, before the script stops.
static DDL_RETRY_BUDGET_MS: GucSetting<i32> = GucSetting::<i32>::new(600_000);

/// hr_preflight() reports transactions that have held a table of a
/// migration for longer than this, in milliseconds.
static PREFLIGHT_LONG_TRANSACTION_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Deprecated: the backfill flag of 0.1.0, which trusted a setting. Defined
/// (superuser-only, read by nothing in 0.2.0) so that a database still
/// running the 0.1.0 SQL against this library, between installing the new
/// package and ALTER EXTENSION UPDATE, behaves exactly as under 0.1.0.
static LEGACY_BACKFILL_IN_PROGRESS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// The settings the admin role may SET (and ALTER DATABASE/ROLE ... SET):
/// the runbook's. `src/sql/privileges.sql` grants them; the keyring's path
/// stays the platform superuser's.
pub const ADMIN_SETTINGS: &[&str] = &[
    "hr_migrations.active_key_version",
    "hr_migrations.deprecation_period",
    "hr_migrations.batch_target_ms",
    "hr_migrations.batch_size",
    "hr_migrations.backfill_in_background",
    "hr_migrations.batch_pause_ms",
    "hr_migrations.max_replication_lag_ms",
    "hr_migrations.ddl_lock_timeout",
    "hr_migrations.ddl_retry_budget",
    "hr_migrations.preflight_long_transaction",
];

pub fn init() {
    GucRegistry::define_string_guc(
        c"hr_migrations.keyring_file",
        c"Path of the hr_migrations keyring file (key_version and base64 key per line).",
        c"Read by the server process; keep it owned by postgres with mode 0400. \
          See docs/key-management.md.",
        &KEYRING_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"hr_migrations.keyring_command",
        c"Program whose standard output is the hr_migrations keyring (used instead of keyring_file when set).",
        c"Run by /bin/sh with no standard input, its standard error discarded, for at most 10 s, by each backend \
          on its first use of a key. See docs/key-management.md.",
        &KEYRING_COMMAND,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.active_key_version",
        c"Key version of the keyring that new credential envelopes are encrypted under.",
        c"0 means unset: encryption is refused until it is set. Raise it to rotate keys, \
          then CALL hr_run_rewrap().",
        &ACTIVE_KEY_VERSION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"hr_migrations.deprecation_period",
        c"How long a migration stays enforced before hr_set_phase(..., 'contracted') is allowed.",
        c"An interval; the plan's deprecation period is 30 days.",
        &DEPRECATION_PERIOD,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.batch_target_ms",
        c"Target duration of one batch of the batch engine, in milliseconds.",
        c"The batch size adapts so each batch holds its row locks about this long.",
        &BATCH_TARGET_MS,
        1,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.batch_size",
        c"Rows per batch of the batch engine when a run names no size; 0 = adaptive.",
        c"Adaptive sizes follow hr_migrations.batch_target_ms. The migration files' backfills name no size.",
        &BATCH_SIZE,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"hr_migrations.backfill_in_background",
        c"Migration files schedule their backfill as a pg_cron job instead of running it in the foreground.",
        c"The job (hr_schedule_backfill) runs as the role that applied the file and unschedules itself when nothing is pending.",
        &BACKFILL_IN_BACKGROUND,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.batch_pause_ms",
        c"Pause between two batches of the batch engine, in milliseconds.",
        c"Gives replicas, autovacuum and the application room between batches.",
        &BATCH_PAUSE_MS,
        0,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.max_replication_lag_ms",
        c"The batch engine waits while a standby replays more than this far behind, in milliseconds.",
        c"0 disables the check.",
        &MAX_REPLICATION_LAG_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.ddl_lock_timeout",
        c"How long one attempt of a migration's DDL statement waits for its lock, in milliseconds.",
        c"Application queries queue behind a waiting DDL statement for at most this long; then it retries with backoff.",
        &DDL_LOCK_TIMEOUT_MS,
        10,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.ddl_retry_budget",
        c"How long a migration's DDL statement is retried when its lock is not available, in milliseconds.",
        c"After it, the script stops with the error; run it again.",
        &DDL_RETRY_BUDGET_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"hr_migrations.preflight_long_transaction",
        c"hr_preflight() reports transactions holding a migration's table for longer than this, in milliseconds.",
        c"The scripts wait for them (a warning, not a blocker).",
        &PREFLIGHT_LONG_TRANSACTION_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"hr_migrations.backfill_in_progress",
        c"Deprecated (0.1.0): read only by the 0.1.0 SQL until ALTER EXTENSION hr_migrations UPDATE.",
        c"0.2.0 keeps its backfill flag in backend memory; setting this changes nothing it does.",
        &LEGACY_BACKFILL_IN_PROGRESS,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    // SAFETY: registers the prefix once, at load. (PostgreSQL 15+.)
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"hr_migrations".as_ptr()) };
}

/// `hr_migrations.keyring_file`, when set to a non-empty path.
pub fn keyring_file() -> Option<String> {
    KEYRING_FILE
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}

/// Whether `hr_migrations.keyring_file` is exactly `path`, without copying
/// the setting (the keystore asks on every encryption).
pub fn keyring_file_is(path: &str) -> bool {
    // SAFETY: GetConfigOption returns NULL or the setting's current value,
    // valid until the setting changes, which cannot happen during this call.
    unsafe {
        let p = pgrx::pg_sys::GetConfigOption(c"hr_migrations.keyring_file".as_ptr(), true, false);
        !p.is_null() && std::ffi::CStr::from_ptr(p).to_bytes() == path.as_bytes()
    }
}

/// `hr_migrations.active_key_version`, when set (> 0).
pub fn active_key_version() -> Option<u32> {
    u32::try_from(ACTIVE_KEY_VERSION.get())
        .ok()
        .filter(|&v| v > 0)
}

/// `hr_migrations.backfill_in_background`.
pub fn backfill_in_background() -> bool {
    BACKFILL_IN_BACKGROUND.get()
}

/// `hr_migrations.keyring_command`, when set to a non-empty command.
pub fn keyring_command() -> Option<String> {
    KEYRING_COMMAND
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}
