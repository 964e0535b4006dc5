//! JWT claims → organization id (migration 2). Pure Rust, no Postgres.
//!
//! PostgREST puts the verified JWT payload in the `request.jwt.claims`
//! setting. Tenant isolation policies compare rows with the organization id
//! read from it, so this parser must fail closed: anything unexpected gives
//! `None`, and a policy comparing with NULL matches no row. It never errors —
//! an error inside a policy would turn "no rows" into an HTTP 500 (`''::json`
//! raises on a pooled connection where an earlier `SET LOCAL` left the
//! setting empty).
//!
//! Rules:
//! - the top-level `organization_id`, when present and not JSON `null`,
//!   decides alone (a malformed value gives `None`, never a fallback);
//! - otherwise `app_metadata.organization_id` (server-controlled in Supabase);
//! - never `user_metadata`, which the user can write;
//! - the value must be a JSON string holding a UUID in the canonical
//!   8-4-4-4-12 hex form, either case, with nothing around it.

use serde_json::Value;

/// Parses the claims text; `None` for every case that is not a clear UUID.
pub fn organization_id(claims: Option<&str>) -> Option<[u8; 16]> {
    let claims = claims?;
    if claims.trim().is_empty() {
        return None;
    }
    let v: Value = serde_json::from_str(claims).ok()?;
    let obj = v.as_object()?;
    match obj.get("organization_id") {
        Some(Value::Null) | None => obj
            .get("app_metadata")
            .and_then(Value::as_object)
            .and_then(|m| m.get("organization_id"))
            .and_then(Value::as_str)
            .and_then(parse_uuid),
        Some(v) => v.as_str().and_then(parse_uuid),
    }
}

/// Canonical hyphenated UUID, hex digits of either case.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let d = (c as char).to_digit(16)? as u8;
        out[nibbles / 2] |= if nibbles.is_multiple_of(2) { d << 4 } else { d };
        nibbles += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ORG: &str = "0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab";
    const ORG_BYTES: [u8; 16] = [
        0x0b, 0x5c, 0x6e, 0x2a, 0x9d, 0x1f, 0x4c, 0x3e, 0x8a, 0x7b, 0x12, 0x34, 0x56, 0x78, 0x90,
        0xab,
    ];
    const OTHER: &str = "ffffffff-0000-4000-8000-000000000001";

    fn org(claims: &str) -> Option<[u8; 16]> {
        organization_id(Some(claims))
    }

    #[test]
    fn table_of_cases() {
        let cases: &[(&str, Option<[u8; 16]>)] = &[
            (
                &format!(r#"{{"organization_id":"{ORG}"}}"#),
                Some(ORG_BYTES),
            ),
            (
                &format!(r#"{{"app_metadata":{{"organization_id":"{ORG}"}}}}"#),
                Some(ORG_BYTES),
            ),
            (
                &format!(
                    r#"{{"organization_id":null,"app_metadata":{{"organization_id":"{ORG}"}}}}"#
                ),
                Some(ORG_BYTES),
            ),
            // top-level wins over app_metadata
            (
                &format!(
                    r#"{{"organization_id":"{ORG}","app_metadata":{{"organization_id":"{OTHER}"}}}}"#
                ),
                Some(ORG_BYTES),
            ),
            // a malformed top-level value does not fall back
            (
                &format!(
                    r#"{{"organization_id":"nope","app_metadata":{{"organization_id":"{OTHER}"}}}}"#
                ),
                None,
            ),
            (
                &format!(
                    r#"{{"organization_id":42,"app_metadata":{{"organization_id":"{OTHER}"}}}}"#
                ),
                None,
            ),
            // never user_metadata
            (
                &format!(r#"{{"user_metadata":{{"organization_id":"{ORG}"}}}}"#),
                None,
            ),
            (
                &format!(
                    r#"{{"app_metadata":{{}},"user_metadata":{{"organization_id":"{ORG}"}}}}"#
                ),
                None,
            ),
            // empty, blank, null, wrong shapes
            ("", None),
            ("   \n\t", None),
            ("null", None),
            ("{}", None),
            ("[]", None),
            (&format!(r#"["{ORG}"]"#), None),
            (&format!(r#""{ORG}""#), None),
            ("{", None),
            (r#"{"organization_id":}"#, None),
            (&format!(r#"{{"organization_id":"{ORG}"}} trailing"#), None),
            (r#"{"organization_id":true}"#, None),
            (r#"{"organization_id":{"id":"x"}}"#, None),
            (&format!(r#"{{"organization_id":["{ORG}"]}}"#), None),
            (r#"{"app_metadata":"organization_id"}"#, None),
            (r#"{"app_metadata":{"organization_id":null}}"#, None),
            // UUID spelling
            (
                &format!(r#"{{"organization_id":"{}"}}"#, ORG.to_uppercase()),
                Some(ORG_BYTES),
            ),
            (&format!(r#"{{"organization_id":" {ORG}"}}"#), None),
            (&format!(r#"{{"organization_id":"{ORG} "}}"#), None),
            (&format!(r#"{{"organization_id":"{{{ORG}}}"}}"#), None),
            (
                &format!(r#"{{"organization_id":"{}"}}"#, ORG.replace('-', "")),
                None,
            ),
            (
                r#"{"organization_id":"0b5c6e2a-9d1f-4c3e-8a7b-1234567890ag"}"#,
                None,
            ),
            (
                r#"{"organization_id":"0b5c6e2a-9d1f-4c3e-8a7b-1234567890a"}"#,
                None,
            ),
            (
                r#"{"organization_id":"0b5c6e2a+9d1f-4c3e-8a7b-1234567890ab"}"#,
                None,
            ),
            (r#"{"organization_id":""}"#, None),
            // JSON whitespace around the document and inside it is fine
            (
                &format!("  \n{{ \"organization_id\" : \"{ORG}\" }}\n "),
                Some(ORG_BYTES),
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(org(claims), *expected, "claims: {claims}");
        }
        assert_eq!(organization_id(None), None);
    }

    #[test]
    fn a_one_mib_claim() {
        let padding = "x".repeat(1024 * 1024);
        let claims = format!(r#"{{"pad":"{padding}","organization_id":"{ORG}"}}"#);
        assert!(claims.len() > 1024 * 1024);
        assert_eq!(org(&claims), Some(ORG_BYTES));
        let truncated = &claims[..claims.len() - 2];
        assert_eq!(org(truncated), None);
    }

    #[test]
    fn deep_nesting_is_none_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(org(&deep), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = org(&s);
        }

        #[test]
        fn any_uuid_round_trips(bytes in any::<[u8; 16]>(), upper in any::<bool>()) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut s = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
            if upper { s = s.to_uppercase(); }
            prop_assert_eq!(org(&format!(r#"{{"organization_id":"{s}"}}"#)), Some(bytes));
        }
    }
}
