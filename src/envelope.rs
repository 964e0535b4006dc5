//! Credential envelope v1 (docs/key-management.md). Pure Rust, no Postgres.
//!
//! `hrc1.<key_version>.<base64url_nopad(nonce[12] || ciphertext || tag[16])>`,
//! AES-256-GCM with AAD = `"hrc1." || key_version || "." || associated_data`,
//! so the header is authenticated: changing the version, the payload or the
//! associated data (another row, another organization) fails to open.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::keyring::parse_version;

pub const PREFIX: &str = "hrc1.";
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a credential envelope v1 (expected hrc1.<key_version>.<base64url payload>)")]
    Malformed,
    #[error("credential envelope failed authentication: wrong key, wrong associated data (copied to another row or organization?), or altered")]
    Authentication,
}

/// The parts of an envelope, before decryption.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub version: u32,
    pub payload: Vec<u8>,
}

/// `"hrc1.<version>."`, the envelope's header and the start of its AAD.
pub fn header(version: u32) -> String {
    header_of(PREFIX, version)
}

/// `"<prefix><n>."`: the header of an envelope of any format of this family
/// (`hrc1.` v1, `hrc2.` v2 with a data key generation, `hrk1.` a wrapped
/// data key: `src/datakey.rs`), also the start of its AAD.
pub fn header_of(prefix: &str, n: u32) -> String {
    let mut h = String::with_capacity(prefix.len() + 11);
    h.push_str(prefix);
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    h.extend(digits[i..].iter().map(|&d| d as char));
    h.push('.');
    h
}

/// Splits an envelope v1 into version and payload; checks shape only.
pub fn parse(envelope: &str) -> Result<Parsed, EnvelopeError> {
    parse_of(PREFIX, envelope)
}

/// Splits an envelope of the format `prefix` into its number (key version,
/// or data key generation) and payload; checks shape only.
pub fn parse_of(prefix: &str, envelope: &str) -> Result<Parsed, EnvelopeError> {
    let rest = envelope
        .strip_prefix(prefix)
        .ok_or(EnvelopeError::Malformed)?;
    let (v, b64) = rest.split_once('.').ok_or(EnvelopeError::Malformed)?;
    let version = parse_version(v).ok_or(EnvelopeError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| EnvelopeError::Malformed)?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed);
    }
    Ok(Parsed { version, payload })
}

/// Encrypts `plaintext` under `cipher` with `nonce`; `header` is
/// [`header`]`(version)` of the cipher's key version (callers keep it with
/// the cipher). One buffer holds the AAD, another nonce, ciphertext and tag,
/// encrypted in place; the envelope is written into one string: this runs
/// once per row of a migration.
pub fn seal(
    cipher: &Aes256Gcm,
    header: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &str,
    associated_data: &str,
) -> String {
    seal_bytes(
        cipher,
        header,
        nonce,
        plaintext.as_bytes(),
        associated_data.as_bytes(),
    )
}

/// [`seal`] for any header of the family and bytes.
pub fn seal_bytes(
    cipher: &Aes256Gcm,
    header: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    associated_data: &[u8],
) -> String {
    let mut aad = Vec::with_capacity(header.len() + associated_data.len());
    aad.extend_from_slice(header.as_bytes());
    aad.extend_from_slice(associated_data);
    let mut payload =
        zeroize::Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN));
    payload.extend_from_slice(nonce);
    payload.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), &aad, &mut payload[NONCE_LEN..])
        .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
    payload.extend_from_slice(&tag);
    let mut out = String::with_capacity(header.len() + (payload.len() * 4).div_ceil(3));
    out.push_str(header);
    URL_SAFE_NO_PAD.encode_string(&payload[..], &mut out);
    out
}

/// Decrypts a parsed envelope v1 with `cipher` (the key of
/// `parsed.version`). The plaintext must be UTF-8 (it was text when sealed).
pub fn open(
    cipher: &Aes256Gcm,
    parsed: &Parsed,
    associated_data: &str,
) -> Result<String, EnvelopeError> {
    let pt = open_bytes(cipher, PREFIX, parsed, associated_data.as_bytes())?;
    String::from_utf8(pt.to_vec()).map_err(|_| EnvelopeError::Authentication)
}

/// Decrypts a parsed envelope of the format `prefix` with `cipher`.
pub fn open_bytes(
    cipher: &Aes256Gcm,
    prefix: &str,
    parsed: &Parsed,
    associated_data: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, EnvelopeError> {
    let (nonce, rest) = parsed.payload.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let head = header_of(prefix, parsed.version);
    let mut aad = Vec::with_capacity(head.len() + associated_data.len());
    aad.extend_from_slice(head.as_bytes());
    aad.extend_from_slice(associated_data);
    let mut pt = zeroize::Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            &aad,
            &mut pt,
            Tag::from_slice(tag),
        )
        .map_err(|_| EnvelopeError::Authentication)?;
    Ok(pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::KeyInit;
    use proptest::prelude::*;

    /// Envelopes made by Python's `cryptography` AESGCM
    /// (tests/fixtures/make_envelope_vectors.py). Columns: key version,
    /// key (hex), nonce (hex), associated data, plaintext, envelope.
    const VECTORS: &str = include_str!("../tests/fixtures/envelope_v1_vectors.tsv");

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    struct Vector {
        version: u32,
        key: [u8; 32],
        nonce: [u8; 12],
        ad: String,
        plaintext: String,
        envelope: String,
    }

    fn vectors() -> Vec<Vector> {
        VECTORS
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Vector {
                    version: f[0].parse().unwrap(),
                    key: hex(f[1]).try_into().unwrap(),
                    nonce: hex(f[2]).try_into().unwrap(),
                    ad: String::from_utf8(hex(f[3])).unwrap(),
                    plaintext: String::from_utf8(hex(f[4])).unwrap(),
                    envelope: f[5].to_string(),
                }
            })
            .collect()
    }

    fn cipher(key: &[u8; 32]) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(key).unwrap()
    }

    #[test]
    fn opens_envelopes_made_by_python() {
        let v = vectors();
        assert!(v.len() >= 6);
        for x in v {
            let p = parse(&x.envelope).unwrap();
            assert_eq!(p.version, x.version);
            assert_eq!(open(&cipher(&x.key), &p, &x.ad).unwrap(), x.plaintext);
        }
    }

    #[test]
    fn seals_byte_for_byte_like_python() {
        for x in vectors() {
            assert_eq!(
                seal(
                    &cipher(&x.key),
                    &header(x.version),
                    &x.nonce,
                    &x.plaintext,
                    &x.ad
                ),
                x.envelope
            );
        }
    }

    #[test]
    fn any_one_byte_change_fails() {
        for x in vectors() {
            let c = cipher(&x.key);
            let env = x.envelope.as_bytes();
            for i in 0..env.len() {
                for delta in [1u8, 0x20, 0x80] {
                    let mut m = env.to_vec();
                    m[i] ^= delta;
                    let Ok(s) = String::from_utf8(m) else {
                        continue;
                    };
                    if s == x.envelope {
                        continue;
                    }
                    let r = parse(&s).and_then(|p| open(&c, &p, &x.ad));
                    // A changed last base64 character can decode to the same
                    // bytes only if it changes unused bits, which base64
                    // refuses; anything else must fail.
                    assert!(r.is_err(), "change at {i} opened: {s}");
                }
            }
        }
    }

    #[test]
    fn other_associated_data_or_version_fails() {
        let x = &vectors()[1];
        let c = cipher(&x.key);
        let p = parse(&x.envelope).unwrap();
        assert_eq!(
            open(&c, &p, &format!("{}x", x.ad)),
            Err(EnvelopeError::Authentication)
        );
        let moved = Parsed {
            version: x.version + 1,
            payload: p.payload.clone(),
        };
        assert_eq!(open(&c, &moved, &x.ad), Err(EnvelopeError::Authentication));
        assert_eq!(
            open(&cipher(&[9u8; 32]), &p, &x.ad),
            Err(EnvelopeError::Authentication)
        );
    }

    #[test]
    fn malformed_envelopes() {
        for bad in [
            "",
            "hrc1",
            "hrc1.",
            "hrc1.1",
            "hrc1.1.",
            "hrc2.1.AAAA",
            "hrc1.01.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "hrc1.0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "hrc1.1.AAAA",
            "hrc1.1.not base64!",
            "{\"api_key\":\"plaintext\"}",
        ] {
            assert_eq!(parse(bad), Err(EnvelopeError::Malformed), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn seal_then_open(pt in ".*", ad in ".*", key in any::<[u8; 32]>(), nonce in any::<[u8; 12]>(), v in 1u32..1000) {
            let c = cipher(&key);
            let env = seal(&c, &header(v), &nonce, &pt, &ad);
            let prefix = format!("hrc1.{}.", v);
            prop_assert!(env.starts_with(&prefix));
            prop_assert_eq!(open(&c, &parse(&env).unwrap(), &ad).unwrap(), pt);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = parse(&s);
        }
    }
}
