//! Every setting of the extension, in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Set to `on` for the current transaction by the backfill batch functions.
/// `hr_touch_updated_at()` leaves `updated_at` alone while it is on, so a
/// backfill does not make every row look recently edited (the plan's bug 6).
static BACKFILL_IN_PROGRESS: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"hr_migrations.backfill_in_progress",
        c"Set by hr_migrations backfills for their own transaction.",
        c"While on, hr_touch_updated_at() does not change updated_at. Internal: \
          the batch functions set and reset it with set_config(..., true).",
        &BACKFILL_IN_PROGRESS,
        GucContext::Userset,
        GucFlags::NO_SHOW_ALL,
    );
}
