//! Keyring file: parse any bytes; what parses has versions in range and
//! keys of 32 bytes, and parses again the same from its canonical form.
#![no_main]
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/keyring.rs"]
mod keyring;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = keyring::parse(data) {
        assert!(!keys.is_empty());
        let mut canonical = String::new();
        for (v, k) in &keys {
            assert!(*v >= 1 && *v <= keyring::MAX_KEY_VERSION);
            canonical.push_str(&format!("{v} {}\n", STANDARD.encode(&k[..])));
        }
        let again = keyring::parse(canonical.as_bytes()).expect("canonical keyring parses");
        assert_eq!(again.len(), keys.len());
        for (v, k) in &keys {
            assert_eq!(&again[v][..], &k[..]);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(v) = keyring::parse_version(s) {
            assert_eq!(v.to_string(), s);
        }
    }
});
