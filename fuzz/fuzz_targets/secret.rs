//! Job-board secret: any text is a secret or refused, never a panic; a
//! secret written back as JSON parses to the same values.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/secret.rs"]
mod secret;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(sec) = secret::parse(s) {
            let json = secret::to_json(sec.api_key.as_deref(), sec.api_secret.as_deref(), sec.refresh_token.as_deref());
            let again = secret::parse(&json).expect("a written secret parses");
            assert_eq!(again, sec);
        }
    }
});
