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

use crate::error::Error;
use crate::gucs;
use crate::keyring::{self, Key};
use crate::{definer, envelope};

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

/// Records the check value on a version's first use, or compares with the
/// recorded one, through `hr_key_check()` run as the definer role.
fn verify_check_value(version: u32, key: &Key) -> Result<(), Error> {
    let kcv = keyring::check_value(key);
    let schema = definer::own_schema()?;
    let same = definer::run(|| {
        Spi::get_one_with_args::<bool>(
            &format!("SELECT {schema}.hr_key_check($1, $2)"),
            &[keyring::version_sql(version).into(), kcv.as_str().into()],
        )
    })
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
