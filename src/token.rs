//! Token hash v1 and generated tokens (docs/sql-reference.md, `hr_hash_token`). Pure Rust, no Postgres.
//!
//! A v1 hash is `base64_standard_padded(salt[16] || SHA-256(salt[16] || utf8(token)))`,
//! always 64 characters. The plan's `hashToken` encoded `salt || token` and so
//! stored the token itself; here only the digest is kept.
//!
//! Randomness is the caller's: [`hash_with_salt`] and [`encode_token`] take
//! the random bytes as arguments, so this module is deterministic and can be
//! checked against vectors made by other tools.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of salt at the front of a v1 hash.
pub const SALT_LEN: usize = 16;
/// Bytes of SHA-256 output.
pub const DIGEST_LEN: usize = 32;
/// Characters of a v1 hash: base64 of 48 bytes, which needs no padding.
pub const HASH_V1_LEN: usize = 64;
/// Random bytes behind a generated token.
pub const TOKEN_BYTES: usize = 32;
/// Characters of a generated token (base64url without padding of 32 bytes).
pub const TOKEN_LEN: usize = 43;

/// A stored hash that is not a v1 hash. Carries no part of the input on purpose:
/// the stored value may be a plaintext token written into the wrong column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored hash is not a token hash v1 (expected 64 characters of standard base64 encoding 48 bytes)")]
pub struct MalformedHash;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256(salt || token). Salt and tokens of up to 103 bytes (every token
/// this extension issues has 43) are padded by hand into at most two blocks
/// on the stack and compressed directly: this runs once per row when a
/// query verifies tokens, and the streaming hasher's buffering cost a
/// tenth of the call. Longer tokens take the streaming hasher. The
/// property test `digest_agrees_with_streaming_sha256` holds the two equal.
fn digest(salt: &[u8; SALT_LEN], token: &str) -> [u8; DIGEST_LEN] {
    use sha2::digest::generic_array::GenericArray;
    let t = token.as_bytes();
    let len = SALT_LEN + t.len();
    if len + 9 > 128 {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(t);
        return h.finalize().into();
    }
    let mut buf = [0u8; 128];
    buf[..SALT_LEN].copy_from_slice(salt);
    buf[SALT_LEN..len].copy_from_slice(t);
    buf[len] = 0x80;
    let end = if len + 9 <= 64 { 64 } else { 128 };
    buf[end - 8..end].copy_from_slice(&((len as u64) * 8).to_be_bytes());
    let mut state = SHA256_H0;
    for block in buf[..end].chunks_exact(64) {
        sha2::compress256(
            &mut state,
            core::slice::from_ref(GenericArray::from_slice(block)),
        );
    }
    let mut out = [0u8; DIGEST_LEN];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Hashes `token` with the given salt into the v1 format.
pub fn hash_with_salt(token: &str, salt: &[u8; SALT_LEN]) -> String {
    let mut raw = [0u8; SALT_LEN + DIGEST_LEN];
    raw[..SALT_LEN].copy_from_slice(salt);
    raw[SALT_LEN..].copy_from_slice(&digest(salt, token));
    STANDARD.encode(raw)
}

/// Standard base64 alphabet value of each byte, 0xff for bytes outside it.
const B64_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes the 64 characters of a v1 hash (16 groups of 4 standard base64
/// characters, no padding) into its 48 bytes. A table per character and no
/// allocation: verification runs once per row in a query, and this decoder
/// took an eighth of its time as the general-purpose one (docs/benchmarks.md).
fn decode_v1(s: &[u8]) -> Option<[u8; SALT_LEN + DIGEST_LEN]> {
    if s.len() != HASH_V1_LEN {
        return None;
    }
    let mut out = [0u8; SALT_LEN + DIGEST_LEN];
    let mut bad = 0u8;
    for (quad, chunk) in s.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let [a, b, c, d] = [quad[0], quad[1], quad[2], quad[3]].map(|x| B64_VALUE[x as usize]);
        bad |= a | b | c | d;
        chunk[0] = (a << 2) | (b >> 4);
        chunk[1] = (b << 4) | (c >> 2);
        chunk[2] = (c << 6) | d;
    }
    // Valid values are 0..=63: any 0xff marks a byte outside the alphabet.
    (bad & 0xc0 == 0).then_some(out)
}

/// Splits a v1 hash into salt and digest, refusing anything that is not one.
pub fn parse_hash(stored: &str) -> Result<([u8; SALT_LEN], [u8; DIGEST_LEN]), MalformedHash> {
    let raw = decode_v1(stored.as_bytes()).ok_or(MalformedHash)?;
    let mut salt = [0u8; SALT_LEN];
    let mut dig = [0u8; DIGEST_LEN];
    salt.copy_from_slice(&raw[..SALT_LEN]);
    dig.copy_from_slice(&raw[SALT_LEN..]);
    Ok((salt, dig))
}

/// Constant-time equality of two digests: the differences are folded
/// together first, so the time does not depend on where they differ.
fn digests_equal(a: &[u8; DIGEST_LEN], b: &[u8; DIGEST_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff.ct_eq(&0).into()
}

/// Checks `token` against a v1 hash. The digests are compared in constant
/// time so the comparison does not tell an attacker how many bytes matched.
pub fn verify(token: &str, stored: &str) -> Result<bool, MalformedHash> {
    let (salt, expected) = parse_hash(stored)?;
    Ok(digests_equal(&digest(&salt, token), &expected))
}

/// Compares a presented token with a stored plaintext token in time that does
/// not depend on where they differ nor on the stored token's length: both
/// sides are hashed first, then the digests are compared in constant time.
pub fn plaintext_matches(presented: &str, stored: &str) -> bool {
    let a: [u8; DIGEST_LEN] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; DIGEST_LEN] = Sha256::digest(stored.as_bytes()).into();
    digests_equal(&a, &b)
}

/// Encodes 32 random bytes as a token: base64url without padding, 43 characters.
pub fn encode_token(bytes: &[u8; TOKEN_BYTES]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Vectors made by `tests/fixtures/make_token_vectors.py` with Python's
    /// hashlib and base64, independent of this code. Columns: salt (hex),
    /// token (hex of its UTF-8 bytes), expected hash.
    const VECTORS: &str = include_str!("../tests/fixtures/token_hash_v1_vectors.tsv");

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn vectors() -> Vec<([u8; SALT_LEN], String, String)> {
        VECTORS
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let salt: [u8; SALT_LEN] = hex(f[0]).try_into().unwrap();
                let token = String::from_utf8(hex(f[1])).unwrap();
                (salt, token, f[2].to_string())
            })
            .collect()
    }

    #[test]
    fn known_answer_vectors_hash() {
        let v = vectors();
        assert!(v.len() >= 8, "fixture has too few vectors");
        for (salt, token, expected) in v {
            assert_eq!(hash_with_salt(&token, &salt), expected);
        }
    }

    #[test]
    fn known_answer_vectors_verify() {
        for (_, token, expected) in vectors() {
            assert_eq!(verify(&token, &expected), Ok(true));
            assert_eq!(verify(&format!("{token}x"), &expected), Ok(false));
        }
    }

    #[test]
    fn hash_does_not_contain_the_token() {
        // base64(salt || token) would store the token itself: our output must not decode to it.
        let token = "A".repeat(32);
        let h = hash_with_salt(&token, &[7u8; SALT_LEN]);
        let raw = STANDARD.decode(&h).unwrap();
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()));
        assert_eq!(h.len(), HASH_V1_LEN);
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let good = hash_with_salt("t", &[1u8; SALT_LEN]);
        for bad in [
            String::new(),
            "plaintext-token".to_string(),
            good[..63].to_string(),
            format!("{good}="),
            good.replace(|_c: char| true, "*"),
            // the base64url alphabet is not the standard one
            format!("{}-", &good[..63]),
            format!("_{}", &good[1..]),
            "é".repeat(32),
        ] {
            assert_eq!(verify("t", &bad), Err(MalformedHash), "accepted {bad:?}");
        }
    }

    #[test]
    fn error_text_echoes_nothing() {
        let msg = MalformedHash.to_string();
        assert!(!msg.contains("secret-token"));
        assert!(msg.contains("v1"));
    }

    #[test]
    fn plaintext_comparison() {
        assert!(plaintext_matches("abc", "abc"));
        assert!(!plaintext_matches("abc", "abd"));
        assert!(!plaintext_matches("abc", "abcd"));
        assert!(plaintext_matches("", ""));
        assert!(!plaintext_matches("", " "));
    }

    #[test]
    fn generated_token_shape() {
        let t = encode_token(&[0xffu8; TOKEN_BYTES]);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    proptest! {
        /// The one-call digest equals the streaming hasher's, for every length.
        #[test]
        fn digest_agrees_with_streaming_sha256(token in ".{0,400}", salt in any::<[u8; SALT_LEN]>()) {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(token.as_bytes());
            let expected: [u8; DIGEST_LEN] = h.finalize().into();
            prop_assert_eq!(digest(&salt, &token), expected);
        }

        /// The table decoder accepts exactly what the base64 crate's
        /// standard engine accepts for 64 characters, with the same bytes.
        #[test]
        fn decoder_agrees_with_the_base64_crate(s in "[A-Za-z0-9+/=_\\-!é]{64}", raw in any::<[u8; 48]>()) {
            let ours = decode_v1(s.as_bytes());
            let theirs = STANDARD.decode(s.as_bytes()).ok().filter(|v| v.len() == 48);
            prop_assert_eq!(ours.map(|a| a.to_vec()), theirs);
            let encoded = STANDARD.encode(raw);
            prop_assert_eq!(decode_v1(encoded.as_bytes()), Some(raw));
        }

        #[test]
        fn hash_then_verify(token in ".*", salt in any::<[u8; SALT_LEN]>()) {
            let h = hash_with_salt(&token, &salt);
            prop_assert_eq!(h.len(), HASH_V1_LEN);
            prop_assert_eq!(verify(&token, &h), Ok(true));
        }

        #[test]
        fn another_token_fails(a in ".*", b in ".*", salt in any::<[u8; SALT_LEN]>()) {
            prop_assume!(a != b);
            prop_assert_eq!(verify(&b, &hash_with_salt(&a, &salt)), Ok(false));
        }

        #[test]
        fn any_flipped_bit_is_false_or_malformed(
            token in ".{0,64}",
            salt in any::<[u8; SALT_LEN]>(),
            pos in 0usize..HASH_V1_LEN,
            bit in 0u8..8,
        ) {
            let h = hash_with_salt(&token, &salt);
            let mut bytes = h.into_bytes();
            bytes[pos] ^= 1 << bit;
            // A flip may leave invalid UTF-8; that never reaches us from SQL text.
            if let Ok(s) = String::from_utf8(bytes) {
                let r = verify(&token, &s);
                prop_assert!(r == Ok(false) || r == Err(MalformedHash), "got {:?}", r);
            }
        }
    }
}
