//! One error type for the SQL surface; each variant maps to one SQLSTATE.
//!
//! Messages name the setting, table or migration to look at and never carry a
//! token, secret, key or plaintext value: callers build variants from facts
//! about the input (its shape, its length), never from the input itself.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::envelope::EnvelopeError;
use crate::keyring::KeyringError;
use crate::secret::NotASecret;
use crate::token::MalformedHash;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 22023 invalid_parameter_value.
    #[error(transparent)]
    MalformedTokenHash(#[from] MalformedHash),

    /// 58000 system_error: the kernel would not give us entropy.
    #[error("could not read random bytes from the operating system: {0}")]
    Entropy(String),

    /// 22P02 (malformed) or 22023 (failed authentication).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),

    /// F0000 config_file_error, for every keyring problem below: each names
    /// the setting to fix.
    #[error("hr_migrations.keyring_file is not set")]
    KeyringNotConfigured,
    #[error("could not read the keyring file named by hr_migrations.keyring_file: {0}")]
    KeyringUnreadable(String),
    /// The program of hr_migrations.keyring_command failed (its output is
    /// never quoted).
    #[error("hr_migrations.keyring_command {0}")]
    KeyringCommand(String),
    #[error("the keyring file named by hr_migrations.keyring_file is invalid: {0}")]
    KeyringInvalid(#[from] KeyringError),
    #[error("hr_migrations.active_key_version is not set")]
    NoActiveKeyVersion,
    /// The second field names the setting the keyring came from
    /// (`keystore::setting_in_use`).
    #[error("key version {0} is not in the keyring of {1}")]
    UnknownKeyVersion(u32, &'static str),
    #[error("key version {0} in the keyring of {1} is not the key first used under that version (key check value mismatch)")]
    KeyMismatch(u32, &'static str),

    /// 22P02: decrypted text that is not a job-board secret.
    #[error(transparent)]
    NotASecret(#[from] NotASecret),

    /// 22023: a job-board secret given to hr_set_integration_secret() that
    /// is not one. Quotes nothing of it.
    #[error("secret must be a JSON object with exactly the keys api_key, api_secret and refresh_token, each a string or null")]
    SecretInput,

    /// XX001 data_corrupted: a fresh envelope did not open to what was sealed.
    #[error("a new credential envelope did not decrypt to the text it was made from")]
    SealCheck,

    /// 39P01: a trigger function attached where it does not belong (another
    /// table, another timing or level).
    #[error("{0}")]
    TriggerMisuse(String),

    /// 55000: a table the extension writes has a trigger planted by another
    /// role; the message names it.
    #[error("{0}")]
    ForeignTrigger(String),

    /// 55000: the extension refuses to run: its definer role is reachable
    /// (a member, LOGIN, SUPERUSER) or one of its objects was changed since
    /// the install (`integrity`). The message says which and what to do.
    #[error("hr_migrations refuses to run: {0}")]
    Tampered(String),

    /// 22023: a migration key that is not in the registry (never quoted).
    #[error("unknown migration: not in hr_migration_registry")]
    UnknownMigration,

    /// 22023: hr_plan() asked for a phase that has no plan.
    #[error(
        "hr_plan() has a plan for 'dual' (the migration file) and 'not_applied' (its rollback)"
    )]
    NoPlan,

    /// 22023: a registry entry its kind cannot plan (names the key).
    #[error(transparent)]
    Plan(#[from] crate::kinds::PlanError),

    /// 25001 active_sql_transaction: a migration file run inside an explicit
    /// transaction block.
    #[error("{0} cannot run inside a transaction block: its steps COMMIT one by one and CREATE INDEX CONCURRENTLY cannot run in one; nothing was changed")]
    InTransactionBlock(String),

    /// 55000: an organization's data keys were destroyed by
    /// hr_shred_organization (names the organization, never a value).
    #[error("the data keys of organization {0} were shredded (hr_shred_organization): its credentials can no longer be read or sealed")]
    Shredded(String),

    /// 55000: a credential sealed with a data key generation that no longer
    /// exists (retired, or never made).
    #[error("data key generation {1} of organization {0} does not exist any more: a credential sealed with it cannot be read")]
    KeyDestroyed(String, u32),

    /// 22P02: an envelope v2 given to hr_decrypt_credential(), which opens
    /// envelopes v1 only (a v2 needs its organization's data key).
    #[error("hr_decrypt_credential() opens envelopes v1 (hrc1) only: this is an envelope v2 (hrc2), sealed with an organization's data key")]
    EnvelopeV2,

    /// XX001: a wrapped data key that does not open with its keyring key.
    #[error("the wrapped data key generation {1} of organization {0} does not open with its keyring key version (altered, or moved from another organization)")]
    WrappedKey(String, u32),

    /// 55000: the extension's own catalog state is not usable (not
    /// installed in this database, its definer role missing, a query on its
    /// tables failed). Names the object, never a value.
    #[error("hr_migrations: {0}")]
    Catalog(String),
}

impl Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::MalformedTokenHash(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Entropy(_) => PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
            Error::Envelope(EnvelopeError::Malformed) => {
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
            }
            Error::Envelope(EnvelopeError::Authentication) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            Error::KeyringNotConfigured
            | Error::KeyringUnreadable(_)
            | Error::KeyringCommand(_)
            | Error::KeyringInvalid(_)
            | Error::NoActiveKeyVersion
            | Error::UnknownKeyVersion(..)
            | Error::KeyMismatch(..) => PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            Error::NotASecret(_) => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            Error::SealCheck => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            Error::SecretInput => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Catalog(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::TriggerMisuse(_) => PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            Error::ForeignTrigger(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::Tampered(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::UnknownMigration | Error::NoPlan | Error::Plan(_) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            Error::InTransactionBlock(_) => PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            Error::Shredded(_) | Error::KeyDestroyed(..) => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            Error::WrappedKey(..) => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            Error::EnvelopeV2 => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Error::MalformedTokenHash(_) => {
                Some("stored hashes must be values returned by hr_hash_token()")
            }
            Error::Entropy(_) => None,
            Error::Envelope(EnvelopeError::Malformed) => {
                Some("envelopes are values returned by hr_encrypt_credential()")
            }
            Error::Envelope(EnvelopeError::Authentication) => {
                Some("pass the associated data the envelope was sealed with, e.g. hr_credential_aad(organization_id, id)")
            }
            Error::KeyringNotConfigured | Error::KeyringUnreadable(_) | Error::KeyringInvalid(_) => {
                Some("set hr_migrations.keyring_file in postgresql.conf to a readable keyring (or hr_migrations.keyring_command to a program that prints one) and reload (docs/key-management.md)")
            }
            Error::KeyringCommand(_) => Some(
                "run the program of hr_migrations.keyring_command by hand as the server's OS user: it must print the keyring and exit 0 within 10 s (docs/key-management.md)",
            ),
            Error::NoActiveKeyVersion => {
                Some("set hr_migrations.active_key_version to a version in the keyring: ALTER DATABASE <db> SET hr_migrations.active_key_version = N (as a member of hr_migrations_admin), or postgresql.conf (docs/key-management.md)")
            }
            Error::UnknownKeyVersion(..) => {
                Some("add that version's key to the keyring (the file of hr_migrations.keyring_file, or what hr_migrations.keyring_command prints) and reload; or set hr_migrations.active_key_version to a version it holds")
            }
            Error::KeyMismatch(..) => Some(
                "restore the original key for this version in the keyring; a new key needs a new version",
            ),
            Error::NotASecret(_) => Some(
                "the credential was not written by hr_migrations; hr_migrations.hr_batch_failures lists such rows by id",
            ),
            Error::SealCheck => Some("check the keyring file and hr_migrations.active_key_version"),
            Error::SecretInput => Some(r#"for example {"api_key": "...", "api_secret": null, "refresh_token": "..."}"#),
            Error::Catalog(_) => Some("ALTER EXTENSION hr_migrations UPDATE, or reinstall it (docs/runbook.md)"),
            Error::TriggerMisuse(_) => Some("the migration scripts install the extension's triggers; do not attach them yourself"),
            Error::ForeignTrigger(_) => Some(
                "code a non-superuser owns would run with the extension's rights; drop it, or use hr_migrations.hr_touch_updated_at() for updated_at (docs/runbook.md, \"Foreign triggers\")",
            ),
            Error::UnknownMigration => {
                Some("SELECT migration FROM hr_migrations.hr_migration_status() lists them")
            }
            Error::NoPlan => Some("later phases are moves: CALL hr_migrations.hr_run_phase(migration, phase)"),
            Error::Plan(_) => Some("the registry's objects name what the kind's plan creates (docs/sql-reference.md, \"Registry\")"),
            Error::Shredded(_) => Some(
                "the organization was offboarded (docs/key-management.md, \"Crypto-shredding\"); to store credentials for it again: SELECT hr_migrations.hr_rotate_organization_key(organization_id)",
            ),
            Error::KeyDestroyed(..) => Some(
                "write the secret again (hr_set_integration_secret), or restore the credential from a backup taken with that key",
            ),
            Error::EnvelopeV2 => Some(
                "read a job-board secret with hr_integration_secret(integration_id); the DBA opens any credential with hr_migrations.hr_open_credential(organization_id, envelope, associated_data)",
            ),
            Error::WrappedKey(..) => Some(
                "restore hr_migrations.hr_organization_keys from a backup; a wrapped key only opens for its own organization and generation",
            ),
            Error::InTransactionBlock(_) => Some(
                "run the file in autocommit mode: psql -v ON_ERROR_STOP=1 -f (without -1 or --single-transaction), the Supabase CLI, or a runner that sends one statement at a time (docs/runbook.md)",
            ),
            Error::Tampered(_) => Some(
                "nobody may be a member of hr_migrations_definer nor change the extension's objects; SELECT * FROM hr_preflight() says what to undo (docs/security.md, \"Integrity\")",
            ),
        }
    }
}

impl Error {
    /// Raises this error as a Postgres ERROR with its SQLSTATE; never
    /// returns. For the functions that run once per row of a query, which
    /// return their plain value instead of a `Result` carrying the large
    /// `ErrorReport` on every call.
    pub fn raise(self) -> ! {
        ErrorReport::from(self).report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

impl From<Error> for ErrorReport {
    fn from(e: Error) -> Self {
        let report = ErrorReport::new(e.sqlstate(), e.to_string(), "hr_migrations");
        match e.hint() {
            Some(h) => report.set_hint(h),
            None => report,
        }
    }
}

/// What SQL-visible functions return. pgrx raises an `ErrorReport` with its
/// own SQLSTATE; any other error type would become a generic 22000.
pub type SqlResult<T> = Result<T, ErrorReport>;
