//! The backend's view of the keyring: the file named by
//! `hr_migrations.keyring_file`, parsed once, with one AES-256-GCM key
//! schedule per key version kept for the life of the backend (building one
//! costs about 0.27 µs, DESIGN.md §3).
//!
//! The file is read again when the setting names another path, or when a
//! version is asked for that the cached copy does not hold (a rotation adds
//! a line and raises `hr_migrations.active_key_version`). On its first use
//! in a backend, each version's key check value is compared with the one
//! recorded in `hr_key_checks` (recorded by the first backend to use it), so
//! a different key under an old version is an error that names the setting,
//! never an "invalid ciphertext".
//!
//! The check runs as the extension's definer role, not as the caller: the
//! caller may be allowed to encrypt without being allowed to write
//! `hr_key_checks` (which would let it record a bogus check value for a
//! version not used yet). Every catalog name in the SQL is qualified, and the
//! extension's schema is looked up by `pg_catalog` names, so no `pg_temp`
//! object of the caller's can stand in for either.

use std::cell::RefCell;
use std::collections::BTreeMap;

use aes_gcm::{Aes256Gcm, KeyInit};
use pgrx::prelude::*;

use crate::envelope;
use crate::error::Error;
use crate::gucs;
use crate::keyring::{self, Key};

/// The NOLOGIN role that owns the extension's SECURITY DEFINER functions
/// (created by the install script; see docs/security.md).
pub const DEFINER_ROLE: &std::ffi::CStr = c"hr_migrations_definer";

/// A key version ready for use: its key schedule and envelope header.
pub struct Ready {
    pub cipher: Aes256Gcm,
    pub header: String,
}

struct Keystore {
    path: String,
    keys: BTreeMap<u32, Key>,
    /// The versions whose check value was verified (a handful: a Vec).
    ready: Vec<(u32, Ready)>,
}

thread_local! {
    static KEYSTORE: RefCell<Option<Keystore>> = const { RefCell::new(None) };
}

fn load(path: &str) -> Result<Keystore, Error> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| Error::KeyringUnreadable(e.kind().to_string()))?,
    );
    let keys = keyring::parse(&bytes)?;
    Ok(Keystore {
        path: path.to_owned(),
        keys,
        ready: Vec::new(),
    })
}

/// Restores the caller's user id when dropped, on success and on unwind
/// alike (Postgres also restores it when the (sub)transaction aborts).
struct AsUser {
    user: pg_sys::Oid,
    context: i32,
}

impl AsUser {
    /// Runs as `role` until dropped, in a security-restricted operation
    /// (no temp objects, no SET ROLE), the way Postgres runs index functions
    /// as a table's owner.
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
/// UPDATE), where hr_key_check() is itself SECURITY DEFINER. The 0.2.0
/// install script creates the role and refuses to install without it.
fn definer_role() -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    let oid = unsafe { pg_sys::get_role_oid(DEFINER_ROLE.as_ptr(), true) };
    (oid != pg_sys::Oid::INVALID).then_some(oid)
}

/// The quoted name of the schema the extension lives in.
pub fn extension_schema() -> Result<String, Error> {
    Spi::get_one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) \
           FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
          WHERE e.extname OPERATOR(pg_catalog.=) 'hr_migrations'",
    )
    .map_err(|e| Error::Catalog(format!("could not look up the extension's schema ({e})")))?
    .ok_or_else(|| Error::Catalog("the extension is not installed in this database".into()))
}

/// Records the check value on a version's first use, or compares with the
/// recorded one, through `hr_key_check()` run as the definer role.
fn verify_check_value(version: u32, key: &Key) -> Result<(), Error> {
    let kcv = keyring::check_value(key);
    let schema = extension_schema()?;
    let same = {
        let _as = definer_role().map(AsUser::switch);
        Spi::get_one_with_args::<bool>(
            &format!("SELECT {schema}.hr_key_check($1, $2)"),
            &[keyring::version_sql(version).into(), kcv.as_str().into()],
        )
    }
    .map_err(|e| Error::Catalog(format!("could not check key version {version} ({e})")))?;
    match same {
        Some(false) => Err(Error::KeyMismatch(version)),
        _ => Ok(()),
    }
}

/// Runs `f` with key `version`, ready for use.
pub fn with_key<R>(version: u32, f: impl FnOnce(&Ready) -> R) -> Result<R, Error> {
    KEYSTORE.with_borrow_mut(|slot| {
        // Every encryption comes here: one setting comparison and one map
        // lookup when the version was used before in this backend.
        if let Some(ks) = slot.as_ref() {
            if gucs::keyring_file_is(&ks.path) {
                if let Some((_, ready)) = ks.ready.iter().find(|(v, _)| *v == version) {
                    return Ok(f(ready));
                }
            }
        }
        let path = gucs::keyring_file().ok_or(Error::KeyringNotConfigured)?;
        let stale = match slot.as_ref() {
            Some(ks) => ks.path != path || !ks.keys.contains_key(&version),
            None => true,
        };
        if stale {
            *slot = Some(load(&path)?);
        }
        let ks = slot.as_mut().expect("keystore was just loaded");
        let key = ks
            .keys
            .get(&version)
            .ok_or(Error::UnknownKeyVersion(version))?;
        verify_check_value(version, key)?;
        let ready = Ready {
            cipher: Aes256Gcm::new_from_slice(&key[..]).expect("keys are 32 bytes"),
            header: envelope::header(version),
        };
        ks.ready.retain(|(v, _)| *v != version);
        ks.ready.push((version, ready));
        Ok(f(&ks.ready.last().expect("just pushed").1))
    })
}

/// `hr_migrations.active_key_version`, or the error that says to set it.
pub fn active_version() -> Result<u32, Error> {
    gucs::active_key_version().ok_or(Error::NoActiveKeyVersion)
}

/// Versions in the keyring file, read from it now.
pub fn versions() -> Result<Vec<u32>, Error> {
    let path = gucs::keyring_file().ok_or(Error::KeyringNotConfigured)?;
    let ks = load(&path)?;
    Ok(ks.keys.keys().copied().collect())
}
