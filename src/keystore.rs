//! The backend's view of the keyring: the output of
//! `hr_migrations.keyring_command` when it is set (run by each backend on
//! its first use of a key, and again when a version it has not seen is
//! asked for or the setting changes), else the file named by
//! `hr_migrations.keyring_file`; parsed once, with one AES-256-GCM key
//! schedule per key version kept for the life of the backend (building one
//! costs about 0.27 µs).
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

/// The setting the keyring comes from now, for messages.
pub fn setting_in_use() -> &'static str {
    if gucs::keyring_command().is_some() {
        "hr_migrations.keyring_command"
    } else {
        "hr_migrations.keyring_file"
    }
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

/// The most a keyring command may print (thousands of versions).
const COMMAND_OUTPUT_MAX: usize = 64 * 1024;

/// A running keyring command: its process group is killed and the shell
/// reaped when this is dropped — on success (a descendant left behind
/// holds nothing of ours), on a timeout, and when the wait is interrupted
/// by a cancel (an ERROR unwinds through here).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signals the process group the child leads (made by
        // process_group(0)); ESRCH when it is gone is ignored.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// In the child, before exec: every descriptor above stderr (the client's
/// socket, data files, pipes of the postmaster) is closed at exec.
///
/// # Safety
/// Only async-signal-safe calls, as `pre_exec` requires.
unsafe fn close_inherited_descriptors() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
    if libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        CLOSE_RANGE_CLOEXEC,
    ) == 0
    {
        return;
    }
    // Kernels before 5.11: one by one.
    let max = match libc::sysconf(libc::_SC_OPEN_MAX) {
        n if n > 0 && n <= 65536 => n as libc::c_int,
        _ => 65536,
    };
    for fd in 3..max {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Runs the keyring command: `/bin/sh -c <command>` in its own process
/// group, with no standard input, its standard error discarded (it is never
/// logged), no descriptor of the backend's but stdout; its standard output
/// (at most 64 KiB, read as it comes) is the keyring, once it has closed it
/// and exited 0 within [`COMMAND_TIMEOUT`]. Then, or on any failure, its
/// process group is killed. Errors say what went wrong, never what it
/// printed. A cancel or statement timeout interrupts the wait.
fn run_command(command: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: close_inherited_descriptors makes only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            close_inherited_descriptors();
            Ok(())
        })
    };
    let child = cmd
        .spawn()
        .map_err(|e| Error::KeyringCommand(format!("could not be started ({})", e.kind())))?;
    let mut running = Running(child);
    let mut stdout = running.0.stdout.take().expect("stdout is piped");
    // SAFETY: sets O_NONBLOCK on a pipe descriptor we own.
    unsafe {
        let fd = stdout.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    // Capacity for the whole limit up front: the buffer never reallocates,
    // so no copy of the keyring is left behind in freed memory.
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(COMMAND_OUTPUT_MAX));
    let mut buf = zeroize::Zeroizing::new([0u8; 4096]);
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    let mut closed = false;
    let status = loop {
        while !closed {
            match stdout.read(&mut buf[..]) {
                Ok(0) => closed = true,
                Ok(n) if out.len() + n > COMMAND_OUTPUT_MAX => {
                    return Err(Error::KeyringCommand(format!(
                        "printed more than {} KiB",
                        COMMAND_OUTPUT_MAX / 1024
                    )))
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::KeyringCommand(format!(
                        "output could not be read ({})",
                        e.kind()
                    )))
                }
            }
        }
        if closed {
            match running.0.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::KeyringCommand(format!(
                        "could not be waited for ({})",
                        e.kind()
                    )))
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::KeyringCommand(format!(
                "did not finish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )));
        }
        pgrx::check_for_interrupts!();
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    if !status.success() {
        return Err(Error::KeyringCommand(match status.code() {
            Some(code) => format!("failed (exit status {code})"),
            None => "was killed by a signal".to_string(),
        }));
    }
    drop(running);
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
        Some(false) => Err(Error::KeyMismatch(version, setting_in_use())),
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
            .ok_or(Error::UnknownKeyVersion(version, setting_in_use()))?;
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

/// Versions in the keyring: read from the file now; from the command's
/// output this backend already has (running it again only when it has
/// none, or the setting changed), so a status or a rewrap batch does not
/// call the key service each time.
pub fn versions() -> Result<Vec<u32>, Error> {
    let path = source()?;
    if path.starts_with("command:") {
        return KEYSTORE.with_borrow_mut(|slot| {
            if slot.as_ref().is_none_or(|ks| ks.path != path) {
                *slot = Some(load(&path)?);
            }
            let ks = slot.as_ref().expect("keystore was just loaded");
            Ok(ks.keys.keys().copied().collect())
        });
    }
    let ks = load(&path)?;
    Ok(ks.keys.keys().copied().collect())
}
