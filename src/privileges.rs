//! Who may use what: `src/sql/privileges.sql`, placed last in the install
//! script so it sees every function, Rust and SQL alike. The allowlist it
//! grants is documented in docs/security.md and held equal to the catalog
//! by tests/integration/tests/security.rs.

use pgrx::prelude::*;

extension_sql_file!("sql/privileges.sql", name = "privileges", finalize);

/// `hr_admin_settings() RETURNS SETOF text` — IMMUTABLE PARALLEL SAFE.
/// Internal: the settings `hr_migrations_admin` may SET (`gucs::ADMIN_SETTINGS`),
/// granted by `hr_apply_privileges()`.
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_admin_settings() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(crate::gucs::ADMIN_SETTINGS.iter().copied())
}
