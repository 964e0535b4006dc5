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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use aes_gcm::{Aes256Gcm, KeyInit};
use pgrx::prelude::*;

use crate::error::Error;
use crate::gucs;
use crate::keyring::{self, Key};

struct Keystore {
    path: String,
    keys: BTreeMap<u32, Key>,
    ciphers: HashMap<u32, Aes256Gcm>,
    checked: HashSet<u32>,
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
        ciphers: HashMap::new(),
        checked: HashSet::new(),
    })
}

/// Records the check value on a version's first use, or compares with the
/// recorded one. Runs `hr_key_check()` (SECURITY DEFINER) through SPI.
fn verify_check_value(version: u32, key: &Key) -> Result<(), Error> {
    let kcv = keyring::check_value(key);
    let v = i32::try_from(version).map_err(|_| Error::UnknownKeyVersion(version))?;
    let schema = extension_schema();
    let same = Spi::get_one_with_args::<bool>(
        &format!("SELECT {schema}.hr_key_check($1, $2)"),
        &[v.into(), kcv.as_str().into()],
    )
    .unwrap_or_else(|e| pgrx::error!("hr_migrations: could not check key version {version}: {e}"));
    match same {
        Some(false) => Err(Error::KeyMismatch(version)),
        _ => Ok(()),
    }
}

/// The quoted name of the schema the extension lives in.
fn extension_schema() -> String {
    Spi::get_one::<String>(
        "SELECT quote_ident(n.nspname) FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hr_migrations'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "public".to_string())
}

/// Runs `f` with the cipher of key `version`.
pub fn with_cipher<R>(version: u32, f: impl FnOnce(&Aes256Gcm) -> R) -> Result<R, Error> {
    let path = gucs::keyring_file().ok_or(Error::KeyringNotConfigured)?;
    KEYSTORE.with_borrow_mut(|slot| {
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
        if !ks.checked.contains(&version) {
            verify_check_value(version, key)?;
            ks.checked.insert(version);
        }
        let cipher = ks
            .ciphers
            .entry(version)
            .or_insert_with(|| Aes256Gcm::new_from_slice(&key[..]).expect("keys are 32 bytes"));
        Ok(f(cipher))
    })
}

/// `hr_migrations.active_key_version`, or the error that says to set it.
pub fn active_version() -> Result<u32, Error> {
    gucs::active_key_version().ok_or(Error::NoActiveKeyVersion)
}

/// Versions in the keyring file, loading it if needed.
pub fn versions() -> Result<Vec<u32>, Error> {
    let path = gucs::keyring_file().ok_or(Error::KeyringNotConfigured)?;
    let ks = load(&path)?;
    Ok(ks.keys.keys().copied().collect())
}
