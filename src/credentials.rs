//! SQL surface of migration 3 (`integration_credentials`): envelopes.
//!
//! The table-facing parts (migration batches, the sync trigger, dual read,
//! rollback, rewrap, status) are SQL in `src/kinds/credential_move/kind.sql`.

use pgrx::prelude::*;

use pgrx::pg_sys::panic::ErrorReport;

use crate::error::{Error, SqlResult};
use crate::{datakey, envelope, keyring, keystore, orgkeys, random, secret};

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
/// 22P02 when it is not an envelope v1 (an envelope v2 says so and names
/// hr_open_credential); 22023 when it fails authentication
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
    "ALTER FUNCTION hr_migrations.hr_open_secret(text, text, uuid) ROWS 1;\nALTER FUNCTION hr_migrations.hr_parse_secret(text) ROWS 1;\n",
    name = "credential_single_rows",
    requires = [hr_open_secret_for, hr_parse_secret],
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

pub(crate) fn open(
    envelope: &str,
    associated_data: &str,
) -> Result<zeroize::Zeroizing<String>, Error> {
    if envelope.starts_with(datakey::V2_PREFIX) {
        return Err(Error::EnvelopeV2);
    }
    let parsed = envelope::parse(envelope)?;
    let opened = keystore::with_key(parsed.version, |k| {
        envelope::open(&k.cipher, &parsed, associated_data)
    })??;
    Ok(zeroize::Zeroizing::new(opened))
}

/// Opens a credential of `organization_id`: an envelope v2 with the
/// organization's data key of its generation, an envelope v1 (written
/// before 0.3.0's data keys, or by hr_encrypt_credential) with the keyring.
fn open_for(
    organization_id: pgrx::Uuid,
    envelope: &str,
    associated_data: &str,
) -> Result<zeroize::Zeroizing<String>, Error> {
    if envelope.starts_with(datakey::V2_PREFIX) {
        orgkeys::open(organization_id, envelope, associated_data)
    } else {
        open(envelope, associated_data)
    }
}

/// `hr_envelope_generation(envelope text) RETURNS integer` — IMMUTABLE
/// STRICT PARALLEL SAFE. Internal: the data key generation in an envelope
/// v2's header, NULL for anything else (the rewrap and the status).
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_envelope_generation(envelope: &str) -> Option<i32> {
    datakey::parse_v2(envelope)
        .ok()
        .map(|p| keyring::version_sql(p.version))
}

extension_sql!(
    r#"
-- Whether the data key an envelope v2 of the organization was sealed with
-- still exists (false once shredded or retired, or never made); NULL for
-- what is not an envelope v2. Status, preflight and the rewrap's
-- predicates count with it (an index lookup on the primary key).
CREATE FUNCTION hr_migrations.hr_data_key_live(organization_id uuid, envelope text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN starts_with(envelope, 'hrc2.') THEN
        EXISTS (SELECT 1 FROM hr_migrations.hr_organization_keys k
                 WHERE k.organization_id = hr_data_key_live.organization_id
                   AND k.generation = hr_migrations.hr_envelope_generation(envelope)
                   AND k.wrapped_key IS NOT NULL) END
$$;
"#,
    name = "data_key_live",
    requires = [hr_envelope_generation, "organization_keys"],
);

/// `hr_open_credential(organization_id uuid, envelope text, associated_data
/// text) RETURNS text` — STABLE STRICT PARALLEL RESTRICTED. Internal
/// (definer role, DBA): a credential of that organization, v2 or v1.
/// 55000 when the organization's keys were shredded.
#[pg_extern(stable, strict, parallel_restricted, schema = "hr_migrations")]
fn hr_open_credential(
    organization_id: pgrx::Uuid,
    envelope: &str,
    associated_data: &str,
) -> String {
    open_for(organization_id, envelope, associated_data)
        .unwrap_or_else(|e| e.raise())
        .to_string()
}

/// `hr_integration_secret_json(api_key text, api_secret text, refresh_token text) RETURNS text`
/// — IMMUTABLE PARALLEL SAFE. The job-board secret plaintext (docs/sql-reference.md):
/// a JSON object with exactly these three keys, `null` where NULL.
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_integration_secret_json(
    api_key: Option<&str>,
    api_secret: Option<&str>,
    refresh_token: Option<&str>,
) -> String {
    secret::to_json(api_key, api_secret, refresh_token)
}

/// `hr_seal_verified(plaintext text, associated_data text, organization_id
/// uuid) RETURNS text` — VOLATILE STRICT PARALLEL RESTRICTED. Internal
/// (definer role, DBA).
///
/// An envelope v2 of `plaintext` under the organization's active data key
/// (made on its first credential), opened again and compared with
/// `plaintext` before it is returned: every ciphertext the credential paths
/// write is known to decrypt before its transaction commits. XX001 if not;
/// 55000 when the organization's keys were shredded.
// The Rust names differ from the SQL ones: a C symbol keeps the signature
// of the release that introduced it (`compat_0_2`).
#[pg_extern(
    volatile,
    strict,
    parallel_restricted,
    schema = "hr_migrations",
    name = "hr_seal_verified"
)]
fn hr_seal_verified_for(
    plaintext: &str,
    associated_data: &str,
    organization_id: pgrx::Uuid,
) -> String {
    let checked = orgkeys::seal(organization_id, plaintext, associated_data).and_then(|sealed| {
        if orgkeys::open(organization_id, &sealed, associated_data)?.as_str() == plaintext {
            Ok(sealed)
        } else {
            Err(Error::SealCheck)
        }
    });
    checked.unwrap_or_else(|e| e.raise())
}

/// `hr_open_secret(envelope text, associated_data text, organization_id
/// uuid) RETURNS TABLE(api_key text, api_secret text, refresh_token text)`
/// — STABLE STRICT PARALLEL RESTRICTED. Internal (definer role, DBA).
///
/// Opens a credential and parses the job-board secret in it, strictly
/// (`src/secret.rs`): 22P02 when the plaintext is not exactly such a secret.
/// No error quotes the plaintext (a `::jsonb` cast in SQL did, in DETAIL).
// pgrx reads the column names from the signature itself: no type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(
    stable,
    strict,
    parallel_restricted,
    schema = "hr_migrations",
    name = "hr_open_secret"
)]
fn hr_open_secret_for(
    envelope: &str,
    associated_data: &str,
    organization_id: pgrx::Uuid,
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
    let text = open_for(organization_id, envelope, associated_data)?;
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

/// `hr_secret_matches(envelope text, associated_data text, organization_id
/// uuid, api_key text, api_secret text, refresh_token text) RETURNS
/// boolean` — STABLE PARALLEL RESTRICTED. Internal (definer role, DBA).
///
/// Whether the credential holds exactly these plaintext values (NULLs
/// included). Errors as `hr_open_secret`; NULL envelope or AAD gives false.
#[pg_extern(
    stable,
    parallel_restricted,
    schema = "hr_migrations",
    name = "hr_secret_matches"
)]
fn hr_secret_matches_for(
    envelope: Option<&str>,
    associated_data: Option<&str>,
    organization_id: Option<pgrx::Uuid>,
    api_key: Option<&str>,
    api_secret: Option<&str>,
    refresh_token: Option<&str>,
) -> SqlResult<bool> {
    let (Some(envelope), Some(ad), Some(org)) = (envelope, associated_data, organization_id) else {
        return Ok(false);
    };
    let text = open_for(org, envelope, ad)?;
    let s = secret::parse(&text).map_err(Error::from)?;
    Ok(s.equals(api_key, api_secret, refresh_token))
}

/// The C functions of 0.2.0 whose SQL signature 0.3.0 changed, kept with
/// 0.2.0's signature and behaviour (envelopes v1, the keyring directly)
/// under their 0.2.0 symbols and without SQL of their own: between
/// installing this library and `ALTER EXTENSION hr_migrations UPDATE`, a
/// database still runs 0.2.0's SQL, which calls them by these symbols with
/// two and five arguments. A symbol whose signature changed would read
/// arguments that were never passed. The 0.3.0 functions of these names
/// have other symbols (`*_for`). Tested by the update from 0.2.0 with
/// 0.2.0's files applied (tests/integration/tests/supabase_layout.rs) and
/// by the symbol check in tests/integration/tests/rollback.rs.
mod compat_0_2 {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;

    use crate::error::{Error, SqlResult};
    use crate::secret;

    #[pg_extern(sql = false)]
    fn hr_seal_verified(plaintext: &str, associated_data: &str) -> String {
        let sealed = (|| {
            let sealed = super::seal(plaintext, associated_data)?;
            if super::open(&sealed, associated_data)?.as_str() == plaintext {
                Ok(sealed)
            } else {
                Err(Error::SealCheck)
            }
        })();
        sealed.unwrap_or_else(|e: Error| e.raise())
    }

    #[allow(clippy::type_complexity)]
    #[pg_extern(sql = false)]
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
        let text = super::open(envelope, associated_data)?;
        let s = secret::parse(&text).map_err(Error::from)?;
        Ok(TableIterator::once((
            s.api_key.clone(),
            s.api_secret.clone(),
            s.refresh_token.clone(),
        )))
    }

    #[pg_extern(sql = false)]
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
        let text = super::open(envelope, ad)?;
        let s = secret::parse(&text).map_err(Error::from)?;
        Ok(s.equals(api_key, api_secret, refresh_token))
    }
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
        return Err(Error::UnknownKeyVersion(active, keystore::setting_in_use()).into());
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
