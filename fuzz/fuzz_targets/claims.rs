//! request.jwt.claims: any text gives an organization or none, never a
//! panic (a policy must never raise); a UUID parses only from its canonical
//! 8-4-4-4-12 spelling, to the bytes it spells.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/claims.rs"]
mod claims;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = claims::organization_id(Some(s));
        if let Some(id) = claims::parse_uuid(s) {
            assert_eq!(s.len(), 36);
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(s.to_ascii_lowercase().replace('-', ""), hex);
        }
    }
});
