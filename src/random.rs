//! The per-backend CSPRNG behind salts, tokens and (later) nonces.
//!
//! Postgres forks every backend from the postmaster. A generator whose state
//! was created before the fork would give two backends the same bytes: the
//! same salt, or for AES-GCM the same nonce under the same key. So the state
//! remembers the process it was seeded in (`MyProcPid`, which Postgres sets
//! right after fork) and is reseeded from the OS when that changes. Reading
//! `MyProcPid` costs nothing, unlike a `getpid()` or `getrandom()` per call.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::error::Error;

struct State {
    pid: i32,
    rng: StdRng,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn current_pid() -> i32 {
    // SAFETY: MyProcPid is a plain int written once per process at startup.
    unsafe { pgrx::pg_sys::MyProcPid }
}

fn seeded(pid: i32) -> Result<State, Error> {
    let mut seed = <StdRng as SeedableRng>::Seed::default();
    getrandom::fill(&mut seed).map_err(|e| Error::Entropy(e.to_string()))?;
    let rng = StdRng::from_seed(seed);
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(State { pid, rng })
}

/// Fills `buf` with random bytes that no other backend will see.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    STATE.with_borrow_mut(|state| {
        let pid = current_pid();
        if state.as_ref().map(|s| s.pid) != Some(pid) {
            *state = Some(seeded(pid)?);
        }
        let s = state.as_mut().expect("state was just set");
        s.rng.fill_bytes(buf);
        Ok(())
    })
}

/// Seeds the generator in the loading process (see `_PG_init`).
pub fn init() {
    // Failure here is not fatal: the next `fill` tries again and reports it.
    let _ = fill(&mut [0u8; 1]);
}

/// An array of random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}
