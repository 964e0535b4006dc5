//! Token hash v1: parse and verify any text as a stored hash; a hash made
//! from any token and salt verifies that token and no other.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/token.rs"]
mod token;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = token::parse_hash(s);
        assert_eq!(parsed.is_ok(), token::verify("token", s).is_ok());
        if parsed.is_ok() {
            assert_eq!(s.len(), token::HASH_V1_LEN);
        }
    }
    if data.len() >= token::SALT_LEN {
        let (salt, rest) = data.split_at(token::SALT_LEN);
        let salt: [u8; token::SALT_LEN] = salt.try_into().unwrap();
        let tok = String::from_utf8_lossy(rest);
        let h = token::hash_with_salt(&tok, &salt);
        assert_eq!(token::verify(&tok, &h), Ok(true));
        assert_eq!(token::verify(&format!("{tok}x"), &h), Ok(false));
    }
});
