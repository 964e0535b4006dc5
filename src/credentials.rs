//! SQL surface of migration 3 (`integration_credentials`): envelopes.
//!
//! The table-facing parts (migration batches, the sync trigger, dual read,
//! rollback, rewrap, status) are SQL in `src/kinds/credential_move/kind.sql`.

use pgrx::prelude::*;

use pgrx::pg_sys::panic::ErrorReport;

use crate::error::{Error, SqlResult};
use crate::{envelope, keyring, keystore, random, secret};

/// `hr_encrypt_credential(plaintext text, associated_data text DEFAULT '') RETURNS text`
/// — VOLATILE STRICT PARALLEL RESTRICTED. EXECUTE: service_role (revoked from PUBLIC).
///
/// Parallel restricted because the first use of a key version in a backend
/// may record its check value (an INSERT, which a parallel worker cannot do).
///
/// A credential envelope v1 of `plaintext` under the key of
/// `hr_migrations.active_key_version`, with a fresh random nonce, binding
/// `associated_data` (use `hr_credential_aad(organization_id, id)` for
/// `pf_credentials`). NULL in, NULL out. Errors: F0000 when the keyring or
/// the active version is not usable (the message names the setting).
#[pg_extern(volatile, strict, parallel_restricted, schema = "hr_migrations")]
fn hr_encrypt_credential(plaintext: &str, associated_data: default!(&str, "''")) -> String {
    seal(plaintext, associated_data).unwrap_or_else(|e| e.raise())
}

fn seal(plaintext: &str, associated_data: &str) -> Result<String, Error> {
    let version = keystore::active_version()?;
    let nonce = random::bytes::<{ envelope::NONCE_LEN }>()?;
    keystore::with_key(version, |k| {
        envelope::seal(&k.cipher, &k.header, &nonce, plaintext, associated_data)
    })
}

/// `hr_decrypt_credential(envelope text, associated_data text DEFAULT '') RETURNS text`
/// — STABLE STRICT PARALLEL RESTRICTED (never IMMUTABLE: the result depends
/// on the keyring; restricted for the same reason as encryption).
/// EXECUTE: service_role (revoked from PUBLIC).
///
/// Opens an envelope with the key of the version in its header. Errors:
/// 22P02 when it is not an envelope v1; 22023 when it fails authentication
/// (wrong associated data — another row or organization — or altered);
/// F0000 when the key is missing or differs from the one first used under
/// its version. No message contains the envelope or the plaintext.
#[pg_extern(stable, strict, parallel_restricted, schema = "hr_migrations")]
fn hr_decrypt_credential(envelope: &str, associated_data: default!(&str, "''")) -> String {
    open(envelope, associated_data)
        .unwrap_or_else(|e| e.raise())
        .to_string()
}

/// `hr_credential_aad(organization_id uuid, credential_id uuid) RETURNS text`
/// — IMMUTABLE STRICT PARALLEL SAFE.
///
/// `'pf_credentials:' || organization_id || ':' || credential_id`: the
/// associated data of a `pf_credentials` row, so a ciphertext copied to
/// another row or organization does not decrypt.
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_credential_aad(organization_id: pgrx::Uuid, credential_id: pgrx::Uuid) -> String {
    format!("pf_credentials:{organization_id}:{credential_id}")
}

extension_sql_file!(
    "kinds/credential_move/kind.sql",
    name = "integration_credentials"
);

// Table functions that return one row say so: the planner's default of
// 1000 rows made every rollback batch hash two whole tables (the batch
// engine's comment in sql/operations.sql).
extension_sql!(
    "ALTER FUNCTION hr_migrations.hr_open_secret(text, text) ROWS 1;\nALTER FUNCTION hr_migrations.hr_parse_secret(text) ROWS 1;\n",
    name = "credential_single_rows",
    requires = [hr_open_secret, hr_parse_secret],
);

/// `hr_active_key_version() RETURNS integer` — STABLE PARALLEL SAFE.
/// Internal. `hr_migrations.active_key_version`, or NULL while it is unset
/// (the rewrap's pending predicate compares envelopes with it).
#[pg_extern(stable, parallel_safe, schema = "hr_migrations")]
fn hr_active_key_version() -> Option<i32> {
    crate::gucs::active_key_version().map(keyring::version_sql)
}

/// `hr_envelope_key_version(envelope text) RETURNS integer` — IMMUTABLE
/// STRICT PARALLEL SAFE. The key version in an envelope's header, or NULL
/// when it is not an envelope v1 (for CHECK constraints, rewrap and status).
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_envelope_key_version(envelope: &str) -> Option<i32> {
    envelope::parse(envelope)
        .ok()
        .map(|p| keyring::version_sql(p.version))
}

fn open(envelope: &str, associated_data: &str) -> Result<zeroize::Zeroizing<String>, Error> {
    let parsed = envelope::parse(envelope)?;
    let opened = keystore::with_key(parsed.version, |k| {
        envelope::open(&k.cipher, &parsed, associated_data)
    })??;
    Ok(zeroize::Zeroizing::new(opened))
}

/// `hr_integration_secret_json(api_key text, api_secret text, refresh_token text) RETURNS text`
/// — IMMUTABLE PARALLEL SAFE. The job-board secret plaintext (DESIGN.md §3):
/// a JSON object with exactly these three keys, `null` where NULL.
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_integration_secret_json(
    api_key: Option<&str>,
    api_secret: Option<&str>,
    refresh_token: Option<&str>,
) -> String {
    secret::to_json(api_key, api_secret, refresh_token)
}

/// `hr_seal_verified(plaintext text, associated_data text) RETURNS text` —
/// VOLATILE STRICT PARALLEL RESTRICTED. Internal (definer role, DBA).
///
/// `hr_encrypt_credential`, then the envelope is opened again and compared
/// with `plaintext` before it is returned: every ciphertext the migration
/// writes is known to decrypt before its transaction commits. XX001 if not.
#[pg_extern(volatile, strict, parallel_restricted, schema = "hr_migrations")]
fn hr_seal_verified(plaintext: &str, associated_data: &str) -> String {
    let checked = seal(plaintext, associated_data).and_then(|sealed| {
        if open(&sealed, associated_data)?.as_str() == plaintext {
            Ok(sealed)
        } else {
            Err(Error::SealCheck)
        }
    });
    checked.unwrap_or_else(|e| e.raise())
}

/// `hr_open_secret(envelope text, associated_data text) RETURNS TABLE(api_key
/// text, api_secret text, refresh_token text)` — STABLE STRICT PARALLEL
/// RESTRICTED. Internal (definer role, DBA).
///
/// Opens a credential and parses the job-board secret in it, strictly
/// (`src/secret.rs`): 22P02 when the plaintext is not exactly such a secret.
/// No error quotes the plaintext (a `::jsonb` cast in SQL did, in DETAIL).
// pgrx reads the column names from the signature itself: no type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, strict, parallel_restricted, schema = "hr_migrations")]
fn hr_open_secret(
    envelope: &str,
    associated_data: &str,
) -> Result<
    TableIterator<
        'static,
        (
            name!(api_key, Option<String>),
            name!(api_secret, Option<String>),
            name!(refresh_token, Option<String>),
        ),
    >,
    ErrorReport,
> {
    let text = open(envelope, associated_data)?;
    let s = secret::parse(&text).map_err(Error::from)?;
    let row = (
        s.api_key.clone(),
        s.api_secret.clone(),
        s.refresh_token.clone(),
    );
    Ok(TableIterator::once(row))
}

/// `hr_parse_secret(secret text) RETURNS TABLE(api_key text, api_secret
/// text, refresh_token text)` — IMMUTABLE STRICT PARALLEL SAFE. Internal
/// (definer role): a job-board secret given by the application, parsed
/// strictly in Rust (`src/secret.rs`), so that a malformed one is refused
/// (22023) without the server's JSON parser quoting it in an error's context.
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_parse_secret(
    secret: &str,
) -> TableIterator<
    'static,
    (
        name!(api_key, Option<String>),
        name!(api_secret, Option<String>),
        name!(refresh_token, Option<String>),
    ),
> {
    let s = secret::parse(secret).unwrap_or_else(|_| Error::SecretInput.raise());
    TableIterator::once((
        s.api_key.clone(),
        s.api_secret.clone(),
        s.refresh_token.clone(),
    ))
}

/// `hr_secret_matches(envelope text, associated_data text, api_key text,
/// api_secret text, refresh_token text) RETURNS boolean` — STABLE PARALLEL
/// RESTRICTED. Internal (definer role, DBA).
///
/// Whether the credential holds exactly these plaintext values (NULLs
/// included). Errors as `hr_open_secret`; NULL envelope or AAD gives false.
#[pg_extern(stable, parallel_restricted, schema = "hr_migrations")]
fn hr_secret_matches(
    envelope: Option<&str>,
    associated_data: Option<&str>,
    api_key: Option<&str>,
    api_secret: Option<&str>,
    refresh_token: Option<&str>,
) -> SqlResult<bool> {
    let (Some(envelope), Some(ad)) = (envelope, associated_data) else {
        return Ok(false);
    };
    let text = open(envelope, ad)?;
    let s = secret::parse(&text).map_err(Error::from)?;
    Ok(s.equals(api_key, api_secret, refresh_token))
}

/// `hr_keyring_versions() RETURNS TABLE(key_version integer, active boolean)`
/// — VOLATILE. EXECUTE revoked from PUBLIC. The versions in the keyring
/// file (never the keys) and which one is active; the preflight of
/// migration 3 calls it so a bad keyring stops the script before any DDL.
#[pg_extern(volatile, schema = "hr_migrations")]
fn hr_keyring_versions(
) -> Result<TableIterator<'static, (name!(key_version, i32), name!(active, bool))>, ErrorReport> {
    let active = keystore::active_version()?;
    let versions = keystore::versions()?;
    if !versions.contains(&active) {
        return Err(Error::UnknownKeyVersion(active).into());
    }
    // Opening the active key records or checks its check value now.
    keystore::with_key(active, |_| ())?;
    Ok(TableIterator::new(
        versions
            .into_iter()
            .map(move |v| (keyring::version_sql(v), v == active)),
    ))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn aad_format() {
        let q = "SELECT hr_credential_aad('0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab', '00000000-0000-4000-8000-000000000001')";
        assert_eq!(
            Spi::get_one::<String>(q),
            Ok(Some("pf_credentials:0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab:00000000-0000-4000-8000-000000000001".into()))
        );
    }

    /// Without a keyring the error is F0000 and names the setting.
    #[pg_test]
    fn missing_keyring_names_the_setting() {
        Spi::run(
            "DO $$ BEGIN
               PERFORM hr_encrypt_credential('secret-value');
               RAISE EXCEPTION 'no error';
             EXCEPTION WHEN config_file_error THEN
               IF position('hr_migrations.' IN SQLERRM) = 0 OR position('secret-value' IN SQLERRM) > 0 THEN
                 RAISE EXCEPTION 'bad message: %', SQLERRM;
               END IF;
             END $$",
        )
        .unwrap();
    }

    #[pg_test]
    fn malformed_envelope_is_22p02() {
        Spi::run(
            "DO $$ BEGIN
               PERFORM hr_decrypt_credential('{\"api_key\":\"plain-secret\"}');
               RAISE EXCEPTION 'no error';
             EXCEPTION WHEN invalid_text_representation THEN
               IF position('plain-secret' IN SQLERRM) > 0 THEN RAISE EXCEPTION 'echoed'; END IF;
             END $$",
        )
        .unwrap();
    }
}
