//! Per-organization data keys in the backend: created on an
//! organization's first credential, stored only wrapped by a keyring key in
//! `hr_migrations.hr_organization_keys` (`src/sql/keys.sql`), unwrapped on
//! first use and kept per backend with a bound; the formats are
//! `src/datakey.rs`.
//!
//! The cache is dropped by an invalidation, not a timeout: shredding or
//! rotating an organization's keys sends a relcache invalidation of the
//! keys table, which every backend processes before its next use of a
//! relation (so before it reads a credential), and a relcache callback here
//! clears the cache.
//!
//! The keys table is read and written as the extension's definer role (in
//! a security-restricted operation, `definer::run`): callers may seal and
//! open credentials without any privilege on it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use aes_gcm::Aes256Gcm;
use pgrx::pg_sys;
use pgrx::prelude::*;
use zeroize::Zeroizing;

use crate::error::{Error, SqlResult};
use crate::{datakey, definer, envelope, integrity, keystore, random};

extension_sql_file!(
    "sql/keys.sql",
    name = "organization_keys",
    requires = ["operations"]
);

/// At most this many data keys per backend (a key schedule is ~0.5 KiB);
/// past it the cache starts again empty.
const CACHE_BOUND: usize = 4096;

#[derive(Default)]
struct Cache {
    /// (organization, generation) -> the data key's schedule.
    keys: HashMap<([u8; 16], u32), Aes256Gcm>,
    /// organization -> its active (newest live) generation.
    active: HashMap<[u8; 16], u32>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// `hr_migrations.hr_organization_keys`, once looked up.
    static TABLE: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::Oid::INVALID) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // InvalidOid: the whole relcache was reset (an overflowed queue).
    if relid == pg_sys::Oid::INVALID || relid == TABLE.get() {
        forget();
    }
}

fn register() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: a plain function pointer with no argument, registered once per
    // process (inherited by forked backends along with REGISTERED).
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0usize))
    };
    REGISTERED.set(true);
}

/// Registers the invalidation callback (from `_PG_init`).
pub fn init() {
    register();
}

/// Drops every cached data key of this backend.
pub fn forget() {
    CACHE.with_borrow_mut(|c| {
        c.keys.clear();
        c.active.clear();
    });
}

/// Processes the invalidations other sessions' commits sent (a shred, a
/// rotation): without this, a transaction that already holds its locks
/// would process them only when it next takes a new one, and could go on
/// using a destroyed key from the cache. Cheap when there are none (one
/// shared-memory counter read).
fn accept_invalidations() {
    // SAFETY: what PostgreSQL does on every lock acquisition; callbacks
    // (ours included) run and may clear caches, nothing else.
    unsafe { pg_sys::AcceptInvalidationMessages() };
}

/// The keys table's OID (remembered for the invalidation callback).
fn table() -> Result<pg_sys::Oid, Error> {
    let t = TABLE.get();
    if t != pg_sys::Oid::INVALID {
        return Ok(t);
    }
    let oid = Spi::get_one::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass('hr_migrations.hr_organization_keys')::pg_catalog.oid",
    )
    .map_err(|e| Error::Catalog(format!("could not find hr_organization_keys ({e})")))?
    .ok_or_else(|| {
        Error::Catalog(
            "hr_organization_keys does not exist: ALTER EXTENSION hr_migrations UPDATE".into(),
        )
    })?;
    TABLE.set(oid);
    Ok(oid)
}

/// A row of the keys table: generation, KEK version and wrapped key (NULL
/// once destroyed), whether it was shredded.
struct Row {
    generation: u32,
    kek_version: Option<u32>,
    wrapped: Option<String>,
    shredded: bool,
}

/// The newest row of an organization, or the row of `generation`.
fn read(org: pgrx::Uuid, generation: Option<u32>) -> Result<Option<Row>, Error> {
    table()?;
    let generation = generation.map(crate::keyring::version_sql);
    definer::run(|| {
        Spi::connect(|client| {
            let mut rows = client.select(
                "SELECT k.generation, k.kek_version, k.wrapped_key, k.shredded_at IS NOT NULL \
                   FROM hr_migrations.hr_organization_keys k \
                  WHERE k.organization_id OPERATOR(pg_catalog.=) $1 \
                    AND ($2::pg_catalog.int4 IS NULL OR k.generation OPERATOR(pg_catalog.=) $2) \
                  ORDER BY k.generation DESC LIMIT 1",
                Some(1),
                &[org.into(), generation.into()],
            )?;
            Ok::<_, pgrx::spi::SpiError>(match rows.next() {
                Some(r) => Some(Row {
                    generation: r.get::<i32>(1)?.unwrap_or(0) as u32,
                    kek_version: r.get::<i32>(2)?.map(|v| v as u32),
                    wrapped: r.get::<String>(3)?,
                    shredded: r.get::<bool>(4)?.unwrap_or(false),
                }),
                None => None,
            })
        })
    })
    .map_err(|e| Error::Catalog(format!("could not read hr_organization_keys ({e})")))
}

/// Unwraps a row's data key (its bytes).
fn unwrap_bytes(org: pgrx::Uuid, row: &Row) -> Result<Zeroizing<[u8; 32]>, Error> {
    let (Some(wrapped), Some(kek_version)) = (&row.wrapped, row.kek_version) else {
        return Err(if row.shredded {
            Error::Shredded(org.to_string())
        } else {
            Error::KeyDestroyed(org.to_string(), row.generation)
        });
    };
    let parsed = datakey::parse_wrapped(wrapped)
        .map_err(|_| Error::WrappedKey(org.to_string(), row.generation))?;
    if parsed.version != kek_version {
        return Err(Error::WrappedKey(org.to_string(), row.generation));
    }
    keystore::with_key(kek_version, |k| {
        datakey::unwrap(&k.cipher, &parsed, &org.to_string(), row.generation)
    })?
    .map_err(|_| Error::WrappedKey(org.to_string(), row.generation))
}

/// Unwraps a row's data key, ready for use.
fn unwrap_row(org: pgrx::Uuid, row: &Row) -> Result<Aes256Gcm, Error> {
    let dek = unwrap_bytes(org, row)?;
    Ok(datakey::cipher(&dek))
}

fn remember(org: &[u8; 16], generation: u32, cipher: Aes256Gcm, active: bool) {
    CACHE.with_borrow_mut(|c| {
        if c.keys.len() >= CACHE_BOUND {
            c.keys.clear();
            c.active.clear();
        }
        c.keys.insert((*org, generation), cipher);
        if active {
            c.active.insert(*org, generation);
        }
    });
}

/// The keyring version new data keys are wrapped under: the active one,
/// or a newer one some live data key is already wrapped under. A pooled
/// backend that still has the setting from before a rotation (it changes
/// for new sessions only) thus never wraps a new key under the version
/// being retired, which the operator removes once the status shows no key
/// under it.
fn wrapping_version() -> Result<u32, Error> {
    let active = keystore::active_version()?;
    let newest = definer::run(|| {
        Spi::get_one::<i32>(
            "SELECT pg_catalog.max(k.kek_version) FROM hr_migrations.hr_organization_keys k \
              WHERE k.wrapped_key IS NOT NULL",
        )
    })
    .map_err(|e| Error::Catalog(format!("could not read hr_organization_keys ({e})")))?;
    Ok(match newest {
        Some(n) if n > 0 && n as u32 > active => n as u32,
        _ => active,
    })
}

/// Creates generation `generation` of an organization's data key, wrapped
/// under the active keyring key; returns the generation the table then
/// holds as newest (another backend may have created it first).
fn create(org: pgrx::Uuid, generation: u32) -> Result<(), Error> {
    let kek_version = wrapping_version()?;
    let dek = Zeroizing::new(random::bytes::<32>()?);
    let nonce = random::bytes::<{ envelope::NONCE_LEN }>()?;
    let wrapped = keystore::with_key(kek_version, |k| {
        datakey::wrap(
            &k.cipher,
            kek_version,
            &nonce,
            &dek,
            &org.to_string(),
            generation,
        )
    })?;
    definer::run(|| {
        Spi::run_with_args(
            "INSERT INTO hr_migrations.hr_organization_keys AS k (organization_id, generation, kek_version, wrapped_key) \
             VALUES ($1, $2, $3, $4) ON CONFLICT ON CONSTRAINT hr_organization_keys_pkey DO NOTHING",
            &[
                org.into(),
                crate::keyring::version_sql(generation).into(),
                crate::keyring::version_sql(kek_version).into(),
                wrapped.as_str().into(),
            ],
        )
    })
    .map_err(|e| Error::Catalog(format!("could not store a data key in hr_organization_keys ({e})")))
}

/// The organization's active data key: its newest generation, created (as
/// generation 1) on its first credential. Refused once it was shredded.
fn active(org: pgrx::Uuid) -> Result<(u32, Aes256Gcm), Error> {
    accept_invalidations();
    let id = *org.as_bytes();
    let hit = CACHE.with_borrow(|c| {
        c.active
            .get(&id)
            .and_then(|g| c.keys.get(&(id, *g)).map(|k| (*g, k.clone())))
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let row = match read(org, None)? {
        Some(row) => row,
        None => {
            create(org, 1)?;
            read(org, None)?
                .ok_or_else(|| Error::Catalog("a new data key was not stored".into()))?
        }
    };
    if row.shredded {
        return Err(Error::Shredded(org.to_string()));
    }
    let cipher = unwrap_row(org, &row)?;
    remember(&id, row.generation, cipher.clone(), true);
    Ok((row.generation, cipher))
}

/// The organization's data key of `generation`.
fn of_generation(org: pgrx::Uuid, generation: u32) -> Result<Aes256Gcm, Error> {
    accept_invalidations();
    let id = *org.as_bytes();
    if let Some(k) = CACHE.with_borrow(|c| c.keys.get(&(id, generation)).cloned()) {
        return Ok(k);
    }
    let row = read(org, Some(generation))?.ok_or_else(|| {
        // No such generation: the organization's keys were never made, or
        // the row was removed; shredded rows stay as tombstones.
        Error::KeyDestroyed(org.to_string(), generation)
    })?;
    let cipher = unwrap_row(org, &row)?;
    remember(&id, generation, cipher.clone(), false);
    Ok(cipher)
}

/// Seals `plaintext` as an envelope v2 with the organization's active key.
pub fn seal(org: pgrx::Uuid, plaintext: &str, associated_data: &str) -> Result<String, Error> {
    let (generation, cipher) = active(org)?;
    let nonce = random::bytes::<{ envelope::NONCE_LEN }>()?;
    Ok(datakey::seal_v2(
        &cipher,
        &datakey::v2_header(generation),
        &nonce,
        plaintext,
        associated_data,
    ))
}

/// Opens an envelope v2 with the organization's key of its generation.
pub fn open(
    org: pgrx::Uuid,
    envelope_v2: &str,
    associated_data: &str,
) -> Result<Zeroizing<String>, Error> {
    let parsed = datakey::parse_v2(envelope_v2)?;
    let cipher = of_generation(org, parsed.version)?;
    Ok(Zeroizing::new(datakey::open_v2(
        &cipher,
        &parsed,
        associated_data,
    )?))
}

/// `hr_forget_data_keys() RETURNS void` — VOLATILE. Internal: every
/// backend drops its cached data keys when this transaction commits (a
/// relcache invalidation of hr_organization_keys), this one at once.
#[pg_extern(volatile, schema = "hr_migrations")]
fn hr_forget_data_keys() -> SqlResult<()> {
    let t = table()?;
    // SAFETY: queues an invalidation of one relation, sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(t) };
    forget();
    Ok(())
}

/// `hr_rotate_organization_key(organization_id uuid) RETURNS integer` —
/// VOLATILE STRICT. The database's admin (not the application roles). A new
/// generation of the organization's data key, active at once (also for an
/// organization whose keys were shredded: it can store credentials again);
/// its existing credentials are resealed under it by `CALL
/// hr_run_rewrap()`, after which the older generations are destroyed.
/// For a suspected leak of one tenant's key. Returns the new generation.
#[pg_extern(volatile, strict, schema = "hr_migrations")]
fn hr_rotate_organization_key(organization_id: pgrx::Uuid) -> SqlResult<i32> {
    integrity::require()?;
    lock_organization(organization_id)?;
    let newest = read(organization_id, None)?.map_or(0, |r| r.generation);
    if newest >= i32::MAX as u32 {
        return Err(Error::Catalog(format!(
            "organization {organization_id} has reached the last data key generation (2147483647)"
        ))
        .into());
    }
    let next = newest + 1;
    create(organization_id, next)?;
    hr_forget_data_keys()?;
    Ok(crate::keyring::version_sql(next))
}

/// Serializes changes of one organization's keys (a rotation and a shred
/// of the same organization), until the transaction ends.
fn lock_organization(org: pgrx::Uuid) -> Result<(), Error> {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('hr_organization_keys:' OPERATOR(pg_catalog.||) $1::pg_catalog.text, 0))",
        &[org.into()],
    )
    .map_err(|e| Error::Catalog(format!("could not lock the organization's keys ({e})")))
}

/// `hr_rewrap_data_keys(batch_size integer, after_organization uuid,
/// after_generation integer) RETURNS TABLE(rewrapped bigint, failed bigint,
/// last_organization uuid, last_generation integer)` — VOLATILE. The
/// database's admin; one batch of what `CALL hr_run_rewrap()` does first
/// after a new active key version: up to `batch_size` live data keys not
/// wrapped under the active keyring key, after the given (organization,
/// generation) in key order (NULL: from the start), are unwrapped and
/// wrapped again under it (one row each; credentials are not touched).
/// A key that does not unwrap (its keyring version missing, or the row
/// altered) is left as it is, counted as failed and named in a WARNING
/// (organization and generation, never a key); rows locked by another
/// session are skipped. `last_*` is the cursor for the next batch, NULL
/// when there was nothing left.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, schema = "hr_migrations")]
fn hr_rewrap_data_keys(
    batch_size: i32,
    after_organization: Option<pgrx::Uuid>,
    after_generation: Option<i32>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(rewrapped, i64),
            name!(failed, i64),
            name!(last_organization, Option<pgrx::Uuid>),
            name!(last_generation, Option<i32>),
        ),
    >,
    pgrx::pg_sys::panic::ErrorReport,
> {
    integrity::require()?;
    if !(1..=1_000_000).contains(&batch_size) {
        return Err(Error::Catalog("batch_size must be between 1 and 1000000".into()).into());
    }
    table()?;
    let active = keystore::active_version()?;
    let rows: Vec<(pgrx::Uuid, u32, u32, String)> = definer::run(|| {
        // FOR UPDATE: read-write SPI.
        Spi::connect_mut(|client| {
            let rows = client.update(
                "SELECT k.organization_id, k.generation, k.kek_version, k.wrapped_key \
                   FROM hr_migrations.hr_organization_keys k \
                  WHERE k.wrapped_key IS NOT NULL AND k.kek_version OPERATOR(pg_catalog.<>) $1 \
                    AND ($3::pg_catalog.uuid IS NULL \
                         OR k.organization_id OPERATOR(pg_catalog.>) $3 \
                         OR (k.organization_id OPERATOR(pg_catalog.=) $3 AND k.generation OPERATOR(pg_catalog.>) $4)) \
                  ORDER BY k.organization_id, k.generation LIMIT $2 FOR UPDATE SKIP LOCKED",
                None,
                &[
                    crate::keyring::version_sql(active).into(),
                    batch_size.into(),
                    after_organization.into(),
                    after_generation.unwrap_or(0).into(),
                ],
            )?;
            let mut out = Vec::new();
            for r in rows {
                out.push((
                    r.get::<pgrx::Uuid>(1)?
                        .expect("organization_id is NOT NULL"),
                    r.get::<i32>(2)?.unwrap_or(0) as u32,
                    r.get::<i32>(3)?.unwrap_or(0) as u32,
                    r.get::<String>(4)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::SpiError>(out)
        })
    })
    .map_err(|e| Error::Catalog(format!("could not read hr_organization_keys ({e})")))?;
    let (mut rewrapped, mut failed) = (0i64, 0i64);
    for (org, generation, kek_version, wrapped) in &rows {
        let row = Row {
            generation: *generation,
            kek_version: Some(*kek_version),
            wrapped: Some(wrapped.clone()),
            shredded: false,
        };
        let dek = match unwrap_bytes(*org, &row) {
            Ok(dek) => dek,
            Err(e) => {
                failed += 1;
                pgrx::warning!(
                    "data key generation {generation} of organization {org} was not rewrapped: {e}"
                );
                continue;
            }
        };
        let nonce = random::bytes::<{ envelope::NONCE_LEN }>()?;
        let rewrapped_key = keystore::with_key(active, |k| {
            datakey::wrap(
                &k.cipher,
                active,
                &nonce,
                &dek,
                &org.to_string(),
                *generation,
            )
        })?;
        definer::run(|| {
            Spi::run_with_args(
                "UPDATE hr_migrations.hr_organization_keys k \
                    SET kek_version = $3, wrapped_key = $4, rewrapped_at = pg_catalog.now() \
                  WHERE k.organization_id OPERATOR(pg_catalog.=) $1 AND k.generation OPERATOR(pg_catalog.=) $2",
                &[
                    (*org).into(),
                    crate::keyring::version_sql(*generation).into(),
                    crate::keyring::version_sql(active).into(),
                    rewrapped_key.as_str().into(),
                ],
            )
        })
        .map_err(|e| Error::Catalog(format!("could not update hr_organization_keys ({e})")))?;
        rewrapped += 1;
    }
    let last = rows.last();
    Ok(TableIterator::once((
        rewrapped,
        failed,
        last.map(|r| r.0),
        last.map(|r| crate::keyring::version_sql(r.1)),
    )))
}
