//! The dual-path verification decision of migration 1. Pure Rust.
//!
//! `hr_verify_reference_token(reference_id, token)` reads the reference's
//! stored hash and legacy plaintext token and asks [`decide`] what to
//! answer and which path decided, so the rule is one table-tested function
//! instead of branches in PL/pgSQL:
//!
//! - an empty presented token never verifies (an empty stored token would
//!   otherwise match it);
//! - the hash is tried first; a match answers `hash`;
//! - then, unless the phase is `enforced` (or later), the plaintext column,
//!   compared in constant time; an empty stored plaintext never matches;
//! - `method` is the path that accepted, else the path that was tried
//!   (`hash` over `plaintext`), else `none`.

use crate::token::{self, MalformedHash};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Hash,
    Plaintext,
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Hash => "hash",
            Method::Plaintext => "plaintext",
            Method::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub method: Method,
    pub ok: bool,
}

/// Decides a verification. `plaintext_accepted` is false from phase
/// `enforced` on. A stored hash that is not a v1 hash is an error (the
/// column's CHECK keeps one from being stored).
pub fn decide(
    plaintext_accepted: bool,
    presented: &str,
    stored_hash: Option<&str>,
    stored_plaintext: Option<&str>,
) -> Result<Verdict, MalformedHash> {
    if presented.is_empty() {
        return Ok(Verdict {
            method: Method::None,
            ok: false,
        });
    }
    let mut tried = Method::None;
    if let Some(h) = stored_hash {
        if token::verify(presented, h)? {
            return Ok(Verdict {
                method: Method::Hash,
                ok: true,
            });
        }
        tried = Method::Hash;
    }
    match stored_plaintext {
        Some(p) if plaintext_accepted && !p.is_empty() => {
            if token::plaintext_matches(presented, p) {
                return Ok(Verdict {
                    method: Method::Plaintext,
                    ok: true,
                });
            }
            if tried == Method::None {
                tried = Method::Plaintext;
            }
        }
        _ => {}
    }
    Ok(Verdict {
        method: tried,
        ok: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination: phase (plaintext accepted or not) × presented
    /// (empty, right, wrong) × stored hash (none, of the right token, of
    /// another) × stored plaintext (none, empty, right, wrong).
    #[test]
    fn decision_table() {
        let salt = [3u8; token::SALT_LEN];
        let right = "right-token";
        let h_right = token::hash_with_salt(right, &salt);
        let h_other = token::hash_with_salt("other-token", &salt);
        use Method::{Hash, Plaintext};
        let none = Method::None;
        // (accepted, presented, hash, plaintext) -> (method, ok)
        let hashes = [
            ("none", None),
            ("right", Some(h_right.as_str())),
            ("other", Some(h_other.as_str())),
        ];
        let plains = [
            ("none", None),
            ("empty", Some("")),
            ("right", Some(right)),
            ("wrong", Some("wrong")),
        ];
        let mut rows = 0;
        for accepted in [true, false] {
            for presented in ["", right, "nope"] {
                for (hn, h) in hashes {
                    for (pn, p) in plains {
                        let v = decide(accepted, presented, h, p).unwrap();
                        let expected = if presented.is_empty() {
                            (none, false)
                        } else if presented == right && hn == "right" {
                            (Hash, true)
                        } else if accepted && presented == right && pn == "right" {
                            (Plaintext, true)
                        } else if hn != "none" {
                            (Hash, false)
                        } else if accepted && (pn == "right" || pn == "wrong") {
                            (Plaintext, false)
                        } else {
                            (none, false)
                        };
                        assert_eq!(
                            (v.method, v.ok),
                            expected,
                            "accepted={accepted} presented={presented:?} hash={hn} plaintext={pn}"
                        );
                        rows += 1;
                    }
                }
            }
        }
        assert_eq!(rows, 2 * 3 * 3 * 4);
    }

    #[test]
    fn malformed_stored_hash_is_an_error() {
        assert_eq!(
            decide(true, "t", Some("not-a-hash"), None),
            Err(MalformedHash)
        );
        // An empty presented token is refused before the hash is read.
        assert!(decide(true, "", Some("not-a-hash"), None).is_ok());
    }

    #[test]
    fn method_names_are_the_log_tables_values() {
        assert_eq!(
            [Method::Hash, Method::Plaintext, Method::None].map(Method::as_str),
            ["hash", "plaintext", "none"]
        );
    }
}
