//! Who may use what: `src/sql/privileges.sql`, placed last in the install
//! script so it sees every function, Rust and SQL alike. The allowlist it
//! grants is documented in docs/security.md and held equal to the catalog
//! by tests/integration/tests/security.rs.

use pgrx::prelude::*;

extension_sql_file!("sql/privileges.sql", name = "privileges", finalize);
