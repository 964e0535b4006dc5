//! Phases, status and the batch procedures shared by every migration.
//!
//! All of it is SQL, kept in `.sql` files so it reads and diffs as SQL; this
//! module only places those files in the extension script, in order.

use pgrx::prelude::*;

extension_sql_file!("sql/operations.sql", name = "operations", bootstrap);

// PL/pgSQL resolves names when a function runs, not when it is created, so
// these files need no ordering beyond running after the bootstrap file.
extension_sql_file!("sql/reference_tokens.sql", name = "reference_tokens");
extension_sql_file!("sql/portal_sessions.sql", name = "portal_sessions");
extension_sql_file!(
    "sql/integration_credentials.sql",
    name = "integration_credentials"
);
// Last: REVOKE/GRANT on functions generated from Rust as well as SQL ones.
extension_sql_file!("sql/grants.sql", name = "grants", finalize);
