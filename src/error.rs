//! One error type for the SQL surface; each variant maps to one SQLSTATE.
//!
//! Messages name the setting, table or migration to look at and never carry a
//! token, secret, key or plaintext value: callers build variants from facts
//! about the input (its shape, its length), never from the input itself.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

use crate::token::MalformedHash;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 22023 invalid_parameter_value.
    #[error(transparent)]
    MalformedTokenHash(#[from] MalformedHash),

    /// 58000 system_error: the kernel would not give us entropy.
    #[error("could not read random bytes from the operating system: {0}")]
    Entropy(String),
}

impl Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::MalformedTokenHash(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Entropy(_) => PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Error::MalformedTokenHash(_) => {
                Some("stored hashes must be values returned by hr_hash_token()")
            }
            Error::Entropy(_) => None,
        }
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
