//! Running a few catalog queries as the extension's definer role.
//!
//! Code that runs as the caller (the Rust functions, the token trigger)
//! sometimes needs to read or write the extension's own tables, which no
//! application role may touch. It does so as `hr_migrations_definer`, in a
//! security-restricted operation (no temp objects, no SET ROLE), the way
//! Postgres runs index functions as a table's owner, and every name in those
//! queries is qualified, so no `pg_temp` object of the caller's can stand in.

use pgrx::prelude::*;

use crate::error::Error;

/// The NOLOGIN role that owns the extension's SECURITY DEFINER functions
/// (created by the install script; see docs/security.md).
pub const DEFINER_ROLE: &std::ffi::CStr = c"hr_migrations_definer";

/// Restores the caller's user id when dropped, on success and on unwind
/// alike (Postgres also restores it when the (sub)transaction aborts).
struct AsUser {
    user: pg_sys::Oid,
    context: i32,
}

impl AsUser {
    fn switch(role: pg_sys::Oid) -> AsUser {
        let mut user = pg_sys::Oid::INVALID;
        let mut context = 0i32;
        // SAFETY: plain getters/setters of backend-local state.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                role,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        AsUser { user, context }
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        // SAFETY: restores what `switch` read.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// The definer role, or None in a database still running the 0.1.0 SQL
/// with this library (between installing the package and ALTER EXTENSION
/// UPDATE). The 0.2.0 install script creates the role and refuses to
/// install without it.
fn definer_role() -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    let oid = unsafe { pg_sys::get_role_oid(DEFINER_ROLE.as_ptr(), true) };
    (oid != pg_sys::Oid::INVALID).then_some(oid)
}

/// Runs `f` as the definer role (as the caller when the role does not exist).
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    let _as = definer_role().map(AsUser::switch);
    f()
}

/// The quoted name of the schema that holds the extension's own tables and
/// functions: `hr_migrations`, a member of the extension that the
/// installing superuser created. In a database still running older
/// extension SQL with this library (after the package was replaced,
/// before ALTER EXTENSION UPDATE), they are in the extension's schema.
/// A schema named `hr_migrations` that is not the extension's (made by
/// another role) is never used.
pub fn own_schema() -> Result<String, Error> {
    Spi::get_one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) \
           FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n \
             ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
             OR (n.nspname OPERATOR(pg_catalog.=) 'hr_migrations' AND EXISTS ( \
                   SELECT 1 FROM pg_catalog.pg_depend d \
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass \
                      AND d.objid OPERATOR(pg_catalog.=) n.oid AND d.deptype OPERATOR(pg_catalog.=) 'e' \
                      AND d.refobjid OPERATOR(pg_catalog.=) e.oid)) \
          WHERE e.extname OPERATOR(pg_catalog.=) 'hr_migrations' \
          ORDER BY n.nspname OPERATOR(pg_catalog.=) 'hr_migrations' DESC \
          LIMIT 1",
    )
    .map_err(|e| Error::Catalog(format!("could not look up the extension's schema ({e})")))?
    .ok_or_else(|| Error::Catalog("the extension is not installed in this database".into()))
}
