//! The backend's view of the keyring: the output of
//! `hr_migrations.keyring_command` when it is set (run by each backend on
//! its first use of a key, and again when a version it has not seen is
//! asked for or the setting changes), else the file named by
//! `hr_migrations.keyring_file`; parsed once, with one AES-256-GCM key
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
    /// Where the keys came from: `file:<path>` or `command:<command>`.
    path: String,
    keys: BTreeMap<u32, Key>,
    /// The versions whose check value was verified (a handful: a Vec).
    ready: Vec<(u32, Ready)>,
}

thread_local! {
    static KEYSTORE: RefCell<Option<Keystore>> = const { RefCell::new(None) };
}

/// Where the keyring comes from now: `hr_migrations.keyring_command` when
/// set, else `hr_migrations.keyring_file`.
fn source() -> Result<String, Error> {
    if let Some(c) = gucs::keyring_command() {
        return Ok(format!("command:{c}"));
    }
    gucs::keyring_file()
        .map(|p| format!("file:{p}"))
        .ok_or(Error::KeyringNotConfigured)
}

/// Whether the cached keys still come from where the settings say.
fn source_is(cached: &str) -> bool {
    match cached.strip_prefix("file:") {
        // The common case, on every encryption: no copy of the setting.
        Some(path) => gucs::keyring_command().is_none() && gucs::keyring_file_is(path),
        None => source().is_ok_and(|s| s == cached),
    }
}

/// How long the keyring command may run.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the keyring command: `/bin/sh -c <command>`, no standard input, its
/// standard error discarded (it is never logged), at most
/// [`COMMAND_TIMEOUT`]; its standard output is the keyring. Errors say what
/// went wrong, never what it printed.
fn run_command(command: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::KeyringCommand(format!("could not be started ({})", e.kind())))?;
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < COMMAND_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::KeyringCommand(format!(
                    "did not finish within {} s (or printed more than a pipe holds)",
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
            Err(e) => {
                return Err(Error::KeyringCommand(format!(
                    "could not be waited for ({})",
                    e.kind()
                )))
            }
        }
    };
    let mut out = zeroize::Zeroizing::new(Vec::new());
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut out).map_err(|e| {
            Error::KeyringCommand(format!("output could not be read ({})", e.kind()))
        })?;
    }
    if !status.success() {
        return Err(Error::KeyringCommand(match status.code() {
            Some(code) => format!("failed (exit status {code})"),
            None => "was killed by a signal".to_string(),
        }));
    }
    Ok(out)
}

fn load(source: &str) -> Result<Keystore, Error> {
    let keys = if let Some(command) = source.strip_prefix("command:") {
        let bytes = run_command(command)?;
        keyring::parse(&bytes).map_err(|e| {
            Error::KeyringCommand(format!("printed something that is not a keyring: {e}"))
        })?
    } else {
        let path = source.strip_prefix("file:").unwrap_or(source);
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| Error::KeyringUnreadable(e.kind().to_string()))?,
        );
        keyring::parse(&bytes)?
    };
    Ok(Keystore {
        path: source.to_owned(),
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
            if source_is(&ks.path) {
                if let Some((_, ready)) = ks.ready.iter().find(|(v, _)| *v == version) {
                    return Ok(f(ready));
                }
            }
        }
        let path = source()?;
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

/// Versions in the keyring, read from the file (or the command) now.
pub fn versions() -> Result<Vec<u32>, Error> {
    let ks = load(&source()?)?;
    Ok(ks.keys.keys().copied().collect())
}
