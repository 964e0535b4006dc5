//! Keyring file parsing and key check values (docs/key-management.md). Pure Rust.
//!
//! Format (UTF-8): blank lines and lines starting with `#` are ignored; every
//! other line is `<key_version> <standard base64 of exactly 32 bytes>`.
//! Versions are positive decimal integers without leading zeros, each at
//! most once. Errors name the line number, never its content: a malformed
//! line may be a key.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// A 256-bit key, wiped from memory when dropped.
pub type Key = Zeroizing<[u8; 32]>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring line {line}: expected \"<key_version> <base64 of 32 bytes>\"")]
    Syntax { line: usize },
    #[error("keyring line {line}: key version must be a positive integer without leading zeros")]
    BadVersion { line: usize },
    #[error("keyring line {line}: the key is not standard base64 of exactly 32 bytes")]
    BadKey { line: usize },
    #[error("keyring line {line}: key version {version} appears twice")]
    Duplicate { line: usize, version: u32 },
    #[error("the keyring is not UTF-8 text")]
    NotUtf8,
    #[error("the keyring holds no keys")]
    Empty,
}

/// The largest key version: versions are stored in `integer` columns and
/// set through an `int` setting, so this is the one place that caps them.
pub const MAX_KEY_VERSION: u32 = i32::MAX as u32;

/// Parses a key version: positive decimal, no sign, no leading zeros, at
/// most [`MAX_KEY_VERSION`].
pub fn parse_version(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>()
        .ok()
        .filter(|&v| v > 0 && v <= MAX_KEY_VERSION)
}

/// A parsed key version as SQL's `integer` (lossless: versions are capped).
pub fn version_sql(v: u32) -> i32 {
    i32::try_from(v.min(MAX_KEY_VERSION)).unwrap_or(i32::MAX)
}

/// Parses keyring file contents into version -> key.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<u32, Key>, KeyringError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyringError::NotUtf8)?;
    let mut keys = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.split_whitespace();
        let (Some(v), Some(k), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyringError::Syntax { line });
        };
        let version = parse_version(v).ok_or(KeyringError::BadVersion { line })?;
        let mut buf = Zeroizing::new([0u8; 48]);
        let n = STANDARD
            .decode_slice(k.as_bytes(), &mut buf[..])
            .map_err(|_| KeyringError::BadKey { line })?;
        if n != 32 {
            return Err(KeyringError::BadKey { line });
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&buf[..32]);
        if keys.insert(version, key).is_some() {
            return Err(KeyringError::Duplicate { line, version });
        }
    }
    if keys.is_empty() {
        return Err(KeyringError::Empty);
    }
    Ok(keys)
}

/// The key check value recorded on a version's first use: the first 16
/// bytes of SHA-256("hr_migrations key check v1" || key), hex. It identifies
/// a key without revealing it, so a different key under the same version is
/// reported as a key problem instead of "invalid ciphertext".
pub fn check_value(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"hr_migrations key check v1");
    h.update(key);
    let mut d: [u8; 32] = h.finalize().into();
    let hex = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    d.zeroize();
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32

    #[test]
    fn parses_comments_blank_lines_and_versions() {
        let text = format!("# keys\n\n1 {K1}\n   \n# old\n12\t{K1}\n");
        let keys = parse(text.as_bytes()).unwrap();
        assert_eq!(keys.keys().copied().collect::<Vec<_>>(), vec![1, 12]);
        assert_eq!(keys[&1][31], 31);
    }

    #[test]
    fn errors_name_the_line_not_the_content() {
        let secretish = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWxlYWtz";
        for (text, err) in [
            (
                format!("1 {K1}\n{secretish}\n"),
                KeyringError::Syntax { line: 2 },
            ),
            (format!("01 {K1}\n"), KeyringError::BadVersion { line: 1 }),
            (format!("0 {K1}\n"), KeyringError::BadVersion { line: 1 }),
            (format!("-1 {K1}\n"), KeyringError::BadVersion { line: 1 }),
            (format!("x {K1}\n"), KeyringError::BadVersion { line: 1 }),
            (
                format!("99999999999 {K1}\n"),
                KeyringError::BadVersion { line: 1 },
            ),
            (format!("1 {secretish}\n"), KeyringError::BadKey { line: 1 }),
            (
                "1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n".to_string(),
                KeyringError::BadKey { line: 1 },
            ),
            (format!("1 {K1} extra\n"), KeyringError::Syntax { line: 1 }),
            (
                format!("1 {K1}\n1 {K1}\n"),
                KeyringError::Duplicate {
                    line: 2,
                    version: 1,
                },
            ),
            ("# only comments\n\n".to_string(), KeyringError::Empty),
        ] {
            assert_eq!(parse(text.as_bytes()).unwrap_err(), err, "{text:?}");
            assert!(!err.to_string().contains(secretish));
        }
        assert_eq!(parse(b"1 \xff\xfe").unwrap_err(), KeyringError::NotUtf8);
    }

    #[test]
    fn check_values_differ_per_key_and_hide_it() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_ne!(check_value(&a), check_value(&b));
        assert_eq!(check_value(&a), check_value(&a));
        assert_eq!(check_value(&a).len(), 32);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn versions_round_trip(v in 1u32..=MAX_KEY_VERSION) {
            prop_assert_eq!(parse_version(&v.to_string()), Some(v));
            prop_assert_eq!(version_sql(v) as u32, v);
        }

        #[test]
        fn versions_above_the_cap_are_refused(v in (MAX_KEY_VERSION + 1)..) {
            prop_assert_eq!(parse_version(&v.to_string()), None);
        }
    }
}
