//! SQL surface of migration 1 (`reference_tokens`): token functions.
//!
//! The table-facing parts (trigger, dual-path verification, backfill) are SQL
//! in `src/kinds/token_hash/kind.sql`; they call the functions below.

use pgrx::prelude::*;

use crate::error::Error;
use crate::{context, dual_path, flag, random, token};

extension_sql_file!("kinds/token_hash/kind.sql", name = "reference_tokens");

// One row, as the planner should expect (see src/credentials.rs).
extension_sql!(
    "ALTER FUNCTION hr_migrations.hr_token_verdict(boolean, text, text, text) ROWS 1;\n",
    name = "token_single_rows",
    requires = [hr_token_verdict],
);

/// `hr_generate_token() RETURNS text` — VOLATILE PARALLEL SAFE.
///
/// A new token: 32 bytes from the per-backend CSPRNG, base64url without
/// padding (43 characters). Raises 58000 if the OS gives no entropy.
#[pg_extern(volatile, parallel_safe, schema = "hr_migrations")]
fn hr_generate_token() -> String {
    let bytes = random::bytes::<{ token::TOKEN_BYTES }>().unwrap_or_else(|e| e.raise());
    token::encode_token(&bytes)
}

/// `hr_hash_token(token text) RETURNS text` — VOLATILE STRICT PARALLEL SAFE.
///
/// Token hash v1 with a fresh 16-byte salt: 64 characters. NULL gives NULL.
/// Volatile because every call draws a new salt.
#[pg_extern(volatile, strict, parallel_safe, schema = "hr_migrations")]
fn hr_hash_token(token: &str) -> String {
    let salt = random::bytes::<{ token::SALT_LEN }>().unwrap_or_else(|e| e.raise());
    token::hash_with_salt(token, &salt)
}

/// `hr_verify_token(token text, stored_hash text) RETURNS boolean` —
/// IMMUTABLE STRICT PARALLEL SAFE.
///
/// `true` when `token` hashes to `stored_hash` (digests compared in constant
/// time), `false` otherwise; NULL in, NULL out. A `stored_hash` that is not a
/// v1 hash raises 22023, and the message quotes neither argument.
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_verify_token(token: &str, stored_hash: &str) -> bool {
    token::verify(token, stored_hash).unwrap_or_else(|e| Error::from(e).raise())
}

/// `hr_token_plaintext_matches(presented text, stored text) RETURNS boolean` —
/// IMMUTABLE STRICT PARALLEL SAFE.
///
/// Constant-time equality of a presented token and a legacy plaintext token,
/// for the dual path of `hr_verify_reference_token`. SQL's `=` stops at the
/// first differing byte; this does not, nor does it leak the stored length.
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_token_plaintext_matches(presented: &str, stored: &str) -> bool {
    token::plaintext_matches(presented, stored)
}

/// `hr_token_verdict(plaintext_accepted boolean, presented text, stored_hash
/// text, stored_plaintext text) RETURNS TABLE(method text, ok boolean)` —
/// IMMUTABLE PARALLEL SAFE. Internal (definer role).
///
/// The dual-path decision of `hr_verify_reference_token` (`src/dual_path.rs`):
/// which path accepted the presented token, or which was tried. A NULL
/// presented token is treated as empty (never verifies). 22023 when the
/// stored hash is not a v1 hash; no message quotes a value.
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_token_verdict(
    plaintext_accepted: bool,
    presented: Option<&str>,
    stored_hash: Option<&str>,
    stored_plaintext: Option<&str>,
) -> Result<
    TableIterator<'static, (name!(method, String), name!(ok, bool))>,
    pgrx::pg_sys::panic::ErrorReport,
> {
    let v = dual_path::decide(
        plaintext_accepted,
        presented.unwrap_or(""),
        stored_hash,
        stored_plaintext,
    )
    .map_err(Error::from)?;
    Ok(TableIterator::once((v.method.as_str().to_string(), v.ok)))
}

/// Trigger function `hr_references_token_trigger()`, for `BEFORE INSERT OR
/// UPDATE OF access_token ... FOR EACH ROW` on a token_hash table (installed
/// by the kind's script with `WHEN (NOT hr_backfill_in_progress())`).
///
/// UPDATE OF fires only when the statement assigns `access_token`, so:
/// - a non-empty token written is hashed into `access_token_hash`; from
///   phase enforced on the plaintext is then dropped (only the hash is stored);
/// - NULL (or `''`) written revokes: the hash is cleared too, in every
///   phase, unless the same statement writes a new `access_token_hash`
///   itself (new-style code, `hr_issue_reference_token`);
/// - `''` is never hashed (it would verify an empty presented token).
///
/// Rust, not PL/pgSQL: it runs once per written row, and needs no rights of
/// its own (the phase is read once per statement as the definer role,
/// `src/context.rs`), so it is not SECURITY DEFINER and has no search_path
/// to pin. EXECUTE is granted to nobody; on any table not registered for a
/// token_hash migration, as another kind of trigger, or called directly, it
/// raises 39P01.
///
/// A V1 C function of our own rather than `#[pg_trigger]`: pgrx's wrapper
/// panics when the function is called other than as a trigger (an internal
/// error, XX000, with a Rust backtrace in its detail).
#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_hr_references_token_trigger_v1() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[no_mangle]
#[doc(hidden)]
pub unsafe extern "C-unwind" fn hr_references_token_trigger_v1(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // The datum is bound before returning: the trigger it was made from
    // must outlive the match on the result.
    #[allow(clippy::let_and_return)]
    fn call(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
        let direct = || {
            Error::TriggerMisuse(
                "hr_references_token_trigger() can only be called as a trigger".into(),
            )
            .raise()
        };
        // SAFETY: PostgreSQL passes a valid fcinfo (or none at all).
        let Some(fcinfo) = (unsafe { fcinfo.as_ref() }) else {
            direct()
        };
        // SAFETY: from_fcinfo checks that fcinfo's context is trigger data.
        let Ok(trigger) = (unsafe { PgTrigger::from_fcinfo(fcinfo) }) else {
            direct()
        };
        let datum = match token_trigger(&trigger) {
            Ok(Some(tuple)) => tuple
                .into_trigger_datum()
                .unwrap_or_else(|| pg_sys::Datum::from(0)),
            Ok(None) => pg_sys::Datum::from(0),
            Err(e) => e.raise(),
        };
        datum
    }
    pg_sys::submodules::panic::pgrx_extern_c_guard(move || call(fcinfo))
}

extension_sql!(
    "CREATE FUNCTION hr_migrations.\"hr_references_token_trigger\"() RETURNS trigger\nLANGUAGE c AS 'MODULE_PATHNAME', 'hr_references_token_trigger_v1';\n",
    name = "hr_references_token_trigger",
);

fn token_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Error> {
    use pgrx::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    let misuse = || {
        Error::TriggerMisuse(
            "hr_references_token_trigger() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger".into(),
        )
    };
    let is_update = match (trigger.when(), trigger.level(), trigger.op()) {
        (Ok(PgTriggerWhen::Before), PgTriggerLevel::Row, Ok(PgTriggerOperation::Insert)) => false,
        (Ok(PgTriggerWhen::Before), PgTriggerLevel::Row, Ok(PgTriggerOperation::Update)) => true,
        _ => return Err(misuse()),
    };
    let relid = trigger.relid().map_err(|_| misuse())?;
    let (_, phase) = context::of_trigger(relid, "token_hash")?;
    let mut new = trigger.new().ok_or_else(misuse)?.into_owned();
    if flag::is_on() {
        return Ok(Some(new));
    }
    let column = || {
        Error::TriggerMisuse(
            "the table has no access_token and access_token_hash text columns".into(),
        )
    };
    let token = new
        .get_by_name::<String>("access_token")
        .map_err(|_| column())?;
    match token.filter(|t| !t.is_empty()) {
        None if is_update => {
            let old = trigger.old().ok_or_else(misuse)?;
            let old_hash = old
                .get_by_name::<String>("access_token_hash")
                .map_err(|_| column())?;
            let new_hash = new
                .get_by_name::<String>("access_token_hash")
                .map_err(|_| column())?;
            if old_hash == new_hash {
                new.set_by_name("access_token_hash", None::<String>)
                    .map_err(|_| column())?;
            }
        }
        None => {}
        Some(tok) => {
            let salt = random::bytes::<{ token::SALT_LEN }>()?;
            new.set_by_name("access_token_hash", token::hash_with_salt(&tok, &salt))
                .map_err(|_| column())?;
        }
    }
    if !phase.accepts_plaintext() {
        new.set_by_name("access_token", None::<String>)
            .map_err(|_| column())?;
    }
    Ok(Some(new))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn nulls_give_null() {
        for q in [
            "SELECT hr_hash_token(NULL) IS NULL",
            "SELECT hr_verify_token(NULL, hr_hash_token('x')) IS NULL",
            "SELECT hr_verify_token('x', NULL) IS NULL",
        ] {
            assert_eq!(Spi::get_one::<bool>(q), Ok(Some(true)), "{q}");
        }
    }

    #[pg_test]
    fn round_trips_for_awkward_tokens() {
        for token_sql in [
            "''",
            "'Grüße, Zoë — 東京 🚀'",
            "repeat('x', 1024 * 1024)",
            "repeat('é', 300000)",
            "E'tab\\tnew\\nline'",
        ] {
            let q = format!(
                "WITH t AS (SELECT {token_sql} AS tok), h AS (SELECT tok, hr_hash_token(tok) AS h FROM t) \
                 SELECT length(h) = 64 AND hr_verify_token(tok, h) \
                        AND NOT hr_verify_token(tok || 'x', h) FROM h"
            );
            assert_eq!(Spi::get_one::<bool>(&q), Ok(Some(true)), "{token_sql}");
        }
    }

    #[pg_test]
    fn salts_are_fresh_per_call() {
        let q = "SELECT count(DISTINCT hr_hash_token('same')) = 1000 FROM generate_series(1, 1000)";
        assert_eq!(Spi::get_one::<bool>(q), Ok(Some(true)));
    }

    #[pg_test]
    fn generated_tokens_have_the_design_shape() {
        let q = "SELECT bool_and(t ~ '^[A-Za-z0-9_-]{43}$') AND count(DISTINCT t) = 500 \
                 FROM (SELECT hr_generate_token() AS t FROM generate_series(1, 500)) s";
        assert_eq!(Spi::get_one::<bool>(q), Ok(Some(true)));
    }

    /// A malformed stored hash raises 22023 and echoes neither argument. The
    /// error is caught in PL/pgSQL so its SQLSTATE and text can be asserted.
    #[pg_test]
    fn malformed_hash_is_22023_without_values() {
        for stored in [
            "plaintext-secret-token",
            "",
            "short",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            let q = format!(
                "DO $$ BEGIN \
                   PERFORM hr_verify_token('presented-secret-value', '{stored}'); \
                   RAISE EXCEPTION 'no error'; \
                 EXCEPTION WHEN invalid_parameter_value THEN \
                   IF position('presented-secret-value' IN SQLERRM) > 0 \
                      OR ('{stored}' <> '' AND position('{stored}' IN SQLERRM) > 0) THEN \
                     RAISE EXCEPTION 'message echoes a value: %', SQLERRM; \
                   END IF; \
                 END $$"
            );
            Spi::run(&q).unwrap();
        }
    }

    #[pg_test]
    fn plaintext_comparison_matches_equality() {
        let q = "SELECT hr_migrations.hr_token_plaintext_matches('abc', 'abc') \
                 AND NOT hr_migrations.hr_token_plaintext_matches('abc', 'abd') \
                 AND NOT hr_migrations.hr_token_plaintext_matches('abc', 'abcd') \
                 AND hr_migrations.hr_token_plaintext_matches('', '')";
        assert_eq!(Spi::get_one::<bool>(q), Ok(Some(true)));
    }
}
