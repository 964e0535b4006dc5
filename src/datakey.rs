//! Per-organization data keys and credential envelope v2 (pure Rust, no
//! Postgres). The format is specified in docs/key-management.md ("Envelope
//! v2"), with vectors made by Python's `cryptography`
//! (tests/fixtures/make_envelope_v2_vectors.py).
//!
//! - An organization's data key: 32 random bytes of a *generation* (1, 2,
//!   ...). It is stored only wrapped by a keyring key (the KEK):
//!   `hrk1.<kek_version>.<base64url(nonce || ciphertext || tag)>`,
//!   AES-256-GCM, AAD = `"hrk1.<kek_version>." || "hr_organization_keys:"
//!   || organization_id || ":" || generation` — a wrapped key moved to
//!   another organization or generation, or re-labelled with another KEK
//!   version, does not open.
//! - Envelope v2 of a credential: `hrc2.<generation>.<base64url(nonce ||
//!   ciphertext || tag)>`, AES-256-GCM under the organization's data key of
//!   that generation, AAD = `"hrc2.<generation>." || associated_data`
//!   (`hr_credential_aad(organization_id, id)` for `pf_credentials`: the
//!   organization is bound by the AAD and by its own key).
//!
//! Rotating the KEK rewraps data keys (one row per organization and
//! generation); credentials are not rewritten. Destroying an organization's
//! wrapped keys (crypto-shredding) makes its envelopes v2 unreadable
//! wherever a copy of them survives, once no copy of the wrapped keys is
//! readable with a KEK still in the keyring.

use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use crate::envelope::{self, EnvelopeError, Parsed, NONCE_LEN};

/// Envelope v2 of a credential.
pub const V2_PREFIX: &str = "hrc2.";
/// A data key wrapped by a keyring key.
pub const WRAPPED_PREFIX: &str = "hrk1.";

/// The AAD that binds a wrapped data key to its organization and generation.
pub fn wrap_aad(organization_id: &str, generation: u32) -> String {
    format!("hr_organization_keys:{organization_id}:{generation}")
}

/// Wraps `data_key` under the KEK `kek` of version `kek_version`.
pub fn wrap(
    kek: &Aes256Gcm,
    kek_version: u32,
    nonce: &[u8; NONCE_LEN],
    data_key: &[u8; 32],
    organization_id: &str,
    generation: u32,
) -> String {
    envelope::seal_bytes(
        kek,
        &envelope::header_of(WRAPPED_PREFIX, kek_version),
        nonce,
        data_key,
        wrap_aad(organization_id, generation).as_bytes(),
    )
}

/// The KEK version a wrapped key names, and its payload.
pub fn parse_wrapped(wrapped: &str) -> Result<Parsed, EnvelopeError> {
    envelope::parse_of(WRAPPED_PREFIX, wrapped)
}

/// Unwraps a data key (the KEK of `parsed.version`).
pub fn unwrap(
    kek: &Aes256Gcm,
    parsed: &Parsed,
    organization_id: &str,
    generation: u32,
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let pt = envelope::open_bytes(
        kek,
        WRAPPED_PREFIX,
        parsed,
        wrap_aad(organization_id, generation).as_bytes(),
    )?;
    let key: [u8; 32] = pt[..]
        .try_into()
        .map_err(|_| EnvelopeError::Authentication)?;
    Ok(Zeroizing::new(key))
}

/// A data key ready for use: its key schedule.
pub fn cipher(data_key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(data_key).expect("data keys are 32 bytes")
}

/// `"hrc2.<generation>."`.
pub fn v2_header(generation: u32) -> String {
    envelope::header_of(V2_PREFIX, generation)
}

/// Seals a credential under an organization's data key of `generation`
/// (`header` is [`v2_header`]`(generation)`).
pub fn seal_v2(
    data_key: &Aes256Gcm,
    header: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &str,
    associated_data: &str,
) -> String {
    envelope::seal(data_key, header, nonce, plaintext, associated_data)
}

/// The generation an envelope v2 names, and its payload; 22P02 otherwise.
pub fn parse_v2(envelope_v2: &str) -> Result<Parsed, EnvelopeError> {
    envelope::parse_of(V2_PREFIX, envelope_v2)
}

/// Opens an envelope v2 with the data key of `parsed.version` (its generation).
pub fn open_v2(
    data_key: &Aes256Gcm,
    parsed: &Parsed,
    associated_data: &str,
) -> Result<String, EnvelopeError> {
    let pt = envelope::open_bytes(data_key, V2_PREFIX, parsed, associated_data.as_bytes())?;
    String::from_utf8(pt.to_vec()).map_err(|_| EnvelopeError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTORS: &str = include_str!("../tests/fixtures/envelope_v2_vectors.tsv");

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn rows(kind: &str) -> Vec<Vec<String>> {
        VECTORS
            .lines()
            .filter(|l| l.starts_with(&format!("{kind}\t")))
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn credentials_made_by_python_open_and_seal_alike() {
        let v = rows("credential");
        assert!(v.len() >= 4);
        for f in v {
            let generation: u32 = f[1].parse().unwrap();
            let key: [u8; 32] = hex(&f[2]).try_into().unwrap();
            let nonce: [u8; 12] = hex(&f[3]).try_into().unwrap();
            let ad = String::from_utf8(hex(&f[4])).unwrap();
            let pt = String::from_utf8(hex(&f[5])).unwrap();
            let c = cipher(&key);
            let p = parse_v2(&f[6]).unwrap();
            assert_eq!(p.version, generation);
            assert_eq!(open_v2(&c, &p, &ad).unwrap(), pt);
            assert_eq!(seal_v2(&c, &v2_header(generation), &nonce, &pt, &ad), f[6]);
            // Not an envelope v1, and v1 is not v2.
            assert!(envelope::parse(&f[6]).is_err());
        }
    }

    #[test]
    fn wrapped_keys_made_by_python_unwrap_and_wrap_alike() {
        let v = rows("key");
        assert!(v.len() >= 3);
        for f in v {
            let kek_version: u32 = f[1].parse().unwrap();
            let kek: [u8; 32] = hex(&f[2]).try_into().unwrap();
            let nonce: [u8; 12] = hex(&f[3]).try_into().unwrap();
            let org = &f[4];
            let generation: u32 = f[5].parse().unwrap();
            let dek: [u8; 32] = hex(&f[6]).try_into().unwrap();
            let c = cipher(&kek);
            let p = parse_wrapped(&f[7]).unwrap();
            assert_eq!(p.version, kek_version);
            assert_eq!(*unwrap(&c, &p, org, generation).unwrap(), dek);
            assert_eq!(wrap(&c, kek_version, &nonce, &dek, org, generation), f[7]);
            // Another organization or generation, or another label: refused.
            assert!(unwrap(&c, &p, "00000000-0000-4000-8000-000000000000", generation).is_err());
            assert!(unwrap(&c, &p, org, generation + 1).is_err());
            let relabelled = Parsed {
                version: kek_version + 1,
                payload: p.payload.clone(),
            };
            assert!(unwrap(&c, &relabelled, org, generation).is_err());
        }
    }

    #[test]
    fn a_credential_moved_to_another_generation_or_organization_key_does_not_open() {
        let a = cipher(&[1u8; 32]);
        let b = cipher(&[2u8; 32]);
        let env = seal_v2(
            &a,
            &v2_header(1),
            &[7u8; 12],
            "secret",
            "pf_credentials:o:c",
        );
        let p = parse_v2(&env).unwrap();
        assert_eq!(open_v2(&a, &p, "pf_credentials:o:c").unwrap(), "secret");
        assert!(open_v2(&b, &p, "pf_credentials:o:c").is_err());
        assert!(open_v2(&a, &p, "pf_credentials:other:c").is_err());
        let moved = Parsed {
            version: 2,
            payload: p.payload.clone(),
        };
        assert!(open_v2(&a, &moved, "pf_credentials:o:c").is_err());
    }

    proptest! {
        #[test]
        fn wrap_then_unwrap(kek in any::<[u8; 32]>(), dek in any::<[u8; 32]>(), nonce in any::<[u8; 12]>(),
                            v in 1u32..100000, g in 1u32..100000, org in "[0-9a-f-]{36}") {
            let c = cipher(&kek);
            let w = wrap(&c, v, &nonce, &dek, &org, g);
            prop_assert_eq!(*unwrap(&c, &parse_wrapped(&w).unwrap(), &org, g).unwrap(), dek);
        }

        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = parse_v2(&s);
            let _ = parse_wrapped(&s);
        }
    }
}
