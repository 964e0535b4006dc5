//! Credential envelope v1: parse and open any text; seal then open any
//! plaintext and associated data gives them back, and other associated data
//! fails.
#![no_main]
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/keyring.rs"]
mod keyring;
#[allow(dead_code)]
#[path = "../../src/envelope.rs"]
mod envelope;

fuzz_target!(|data: &[u8]| {
    let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = envelope::parse(s) {
            assert!(s.starts_with(envelope::PREFIX));
            assert!(p.payload.len() >= envelope::NONCE_LEN + envelope::TAG_LEN);
            let _ = envelope::open(&cipher, &p, "");
        }
    }
    if data.len() >= envelope::NONCE_LEN + 1 {
        let (nonce, rest) = data.split_at(envelope::NONCE_LEN);
        let nonce: [u8; envelope::NONCE_LEN] = nonce.try_into().unwrap();
        let (aad, pt) = rest.split_at(rest.len() / 3);
        let (aad, pt) = (String::from_utf8_lossy(aad), String::from_utf8_lossy(pt));
        let version = 1 + u32::from(data[0]) * 1000;
        let sealed = envelope::seal(&cipher, &envelope::header(version), &nonce, &pt, &aad);
        let parsed = envelope::parse(&sealed).expect("a sealed envelope parses");
        assert_eq!(parsed.version, version);
        assert_eq!(envelope::open(&cipher, &parsed, &aad).as_deref(), Ok(&*pt));
        assert!(envelope::open(&cipher, &parsed, &format!("{aad}x")).is_err());
    }
});
