//! Job-board secret plaintext (docs/sql-reference.md, `hr_integration_secret`). Pure Rust, no Postgres.
//!
//! The plaintext sealed in a `pf_credentials` envelope is the JSON text of
//! an object with exactly the keys `api_key`, `api_secret` and
//! `refresh_token`, each a string or `null`. Parsing is strict on purpose:
//! rollback writes these three values back into the plaintext columns and
//! then deletes the credential, so anything it could not restore exactly —
//! a missing or extra key, a duplicate, a number, a NUL character, text that
//! is not JSON at all — must be refused, never read as three NULLs.
//!
//! Errors say what is wrong with the shape and never quote the text: it is a
//! decrypted secret. (Casting it with `::jsonb` in SQL put it in the error's
//! DETAIL and in the server log.)

use serde::{Deserialize, Deserializer};
use zeroize::Zeroize;

/// The three values of a job-board secret; wiped from memory when dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(deserialize_with = "required")]
    pub api_key: Option<String>,
    #[serde(deserialize_with = "required")]
    pub api_secret: Option<String>,
    #[serde(deserialize_with = "required")]
    pub refresh_token: Option<String>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        for v in [
            &mut self.api_key,
            &mut self.api_secret,
            &mut self.refresh_token,
        ] {
            if let Some(s) = v.as_mut() {
                s.zeroize();
            }
        }
    }
}

/// A `deserialize_with` field is required: a missing key is an error
/// instead of `None` (serde's default for `Option`).
fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// Decrypted text that is not a job-board secret. Carries no part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the credential does not hold a job-board secret (a JSON object with exactly the keys api_key, api_secret and refresh_token, each a string or null)")]
pub struct NotASecret;

/// Parses a job-board secret, refusing anything that is not exactly one.
pub fn parse(plaintext: &str) -> Result<Secret, NotASecret> {
    let s: Secret = serde_json::from_str(plaintext).map_err(|_| NotASecret)?;
    // Text values cannot hold NUL: such a value could not be written back.
    let has_nul = [&s.api_key, &s.api_secret, &s.refresh_token]
        .iter()
        .any(|v| v.as_deref().is_some_and(|t| t.contains('\0')));
    if has_nul {
        return Err(NotASecret);
    }
    Ok(s)
}

/// The JSON text of a secret, as sealed into an envelope.
pub fn to_json(
    api_key: Option<&str>,
    api_secret: Option<&str>,
    refresh_token: Option<&str>,
) -> String {
    serde_json::json!({
        "api_key": api_key,
        "api_secret": api_secret,
        "refresh_token": refresh_token,
    })
    .to_string()
}

impl Secret {
    /// Whether the three values equal the given plaintext columns exactly.
    pub fn equals(
        &self,
        api_key: Option<&str>,
        api_secret: Option<&str>,
        refresh_token: Option<&str>,
    ) -> bool {
        // Not constant time: both sides are secrets already in our hands,
        // and the answer (match or not) is all the caller learns.
        self.api_key.as_deref() == api_key
            && self.api_secret.as_deref() == api_secret
            && self.refresh_token.as_deref() == refresh_token
    }

    /// Whether all three values are NULL.
    pub fn is_empty(&self) -> bool {
        self.api_key.is_none() && self.api_secret.is_none() && self.refresh_token.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_exact_secrets_in_any_layout() {
        for text in [
            r#"{"api_key": "k", "api_secret": null, "refresh_token": "r"}"#,
            r#"{"refresh_token":"r","api_key":"k","api_secret":null}"#,
            "{\n \"api_key\" : \"k\",\n\"api_secret\":null , \"refresh_token\":\"r\" }",
        ] {
            let s = parse(text).unwrap();
            assert!(s.equals(Some("k"), None, Some("r")), "{text}");
        }
    }

    #[test]
    fn what_0_1_0_stored_still_parses() {
        // jsonb_build_object(...)::text, the 0.1.0 format.
        let s =
            parse(r#"{"api_key": "", "api_secret": "secret_x", "refresh_token": "refresh-ü-🔑"}"#)
                .unwrap();
        assert!(s.equals(Some(""), Some("secret_x"), Some("refresh-ü-🔑")));
    }

    #[test]
    fn refuses_everything_rollback_could_not_restore() {
        for text in [
            "",
            "plain-secret-value",
            "null",
            "[]",
            r#""api_key""#,
            "{}",
            r#"{"api_key": "k"}"#,
            r#"{"api_key": "k", "api_secret": "s"}"#,
            r#"{"api_key": "k", "api_secret": "s", "refresh_token": "r", "extra": 1}"#,
            r#"{"api_key": "k", "api_key": "k2", "api_secret": "s", "refresh_token": "r"}"#,
            r#"{"api_key": 1, "api_secret": "s", "refresh_token": "r"}"#,
            r#"{"api_key": {"a": 1}, "api_secret": "s", "refresh_token": "r"}"#,
            r#"{"api_key": "k\u0000", "api_secret": "s", "refresh_token": "r"}"#,
            r#"{"api_key": "k", "api_secret": "s", "refresh_token": "r"} trailing"#,
        ] {
            assert_eq!(parse(text), Err(NotASecret), "accepted {text:?}");
        }
    }

    #[test]
    fn error_text_quotes_nothing() {
        assert!(!NotASecret.to_string().contains("plain-secret-value"));
    }

    proptest! {
        #[test]
        fn round_trip(a in proptest::option::of("[^\u{0}]*"),
                      b in proptest::option::of("[^\u{0}]*"),
                      c in proptest::option::of("[^\u{0}]*")) {
            let text = to_json(a.as_deref(), b.as_deref(), c.as_deref());
            let s = parse(&text).unwrap();
            prop_assert!(s.equals(a.as_deref(), b.as_deref(), c.as_deref()));
        }

        #[test]
        fn arbitrary_text_never_panics(t in ".*") {
            let _ = parse(&t);
        }
    }
}
