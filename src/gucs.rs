//! Every setting of the extension, in one place.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Set to `on` for the current transaction by the extension's batch
/// functions (SECURITY DEFINER). While it is on, `hr_touch_updated_at()`
/// leaves `updated_at` alone — a backfill does not make every row look
/// recently edited (the plan's bug 6) — and the triggers skip work the batch
/// already did. Superuser-only (SUSET), so an application role cannot set it
/// to slip a write past a trigger.
static BACKFILL_IN_PROGRESS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Path of the keyring file: `<key_version> <base64 of 32 bytes>` per line
/// (docs/key-management.md). Set in postgresql.conf; reloadable; only
/// superusers (and pg_read_all_settings) can see it.
static KEYRING_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The key version new envelopes are encrypted under. 0 = not set.
static ACTIVE_KEY_VERSION: GucSetting<i32> = GucSetting::<i32>::new(0);

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
    GucRegistry::define_int_guc(
        c"hr_migrations.active_key_version",
        c"Key version of the keyring that new credential envelopes are encrypted under.",
        c"0 means unset: encryption is refused until it is set. Raise it to rotate keys, \
          then run hr_rewrap_credentials().",
        &ACTIVE_KEY_VERSION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"hr_migrations.backfill_in_progress",
        c"Set by hr_migrations batch functions for their own transaction.",
        c"While on, hr_touch_updated_at() does not change updated_at and the \
          migration triggers skip work the batch already did. Internal.",
        &BACKFILL_IN_PROGRESS,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
}

/// `hr_migrations.keyring_file`, when set to a non-empty path.
pub fn keyring_file() -> Option<String> {
    KEYRING_FILE
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}

/// `hr_migrations.active_key_version`, when set (> 0).
pub fn active_key_version() -> Option<u32> {
    u32::try_from(ACTIVE_KEY_VERSION.get())
        .ok()
        .filter(|&v| v > 0)
}
