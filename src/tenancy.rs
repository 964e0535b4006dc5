//! SQL surface of migration 2 (`portal_sessions`): the tenant of a request.
//!
//! The trigger, backfill and status are SQL in `src/kinds/tenant_column/kind.sql`.

use std::ffi::CStr;

use pgrx::prelude::*;

use crate::claims;

extension_sql_file!("kinds/tenant_column/kind.sql", name = "portal_sessions");

/// `hr_jwt_organization_id() RETURNS uuid` — STABLE PARALLEL SAFE.
///
/// The organization id of the current request, read from the
/// `request.jwt.claims` setting that PostgREST sets per transaction:
/// top-level `organization_id`, else `app_metadata.organization_id`, never
/// `user_metadata` (rules in `src/claims.rs`). Unset, `''` (what a pooled
/// connection reads after another transaction's `SET LOCAL`), malformed JSON,
/// a missing key or a non-UUID value all give NULL, never an error, so an
/// RLS policy comparing with it fails closed with zero rows. Wrap it as
/// `(SELECT hr_jwt_organization_id())` in policies so it is read once per
/// query (an InitPlan), not once per row.
#[pg_extern(stable, parallel_safe, schema = "hr_migrations")]
fn hr_jwt_organization_id() -> Option<pgrx::Uuid> {
    // SAFETY: GetConfigOption returns NULL or a pointer to the setting's
    // current value, which stays valid until the setting changes; it is
    // copied before anything else runs.
    let claims = unsafe {
        let p = pg_sys::GetConfigOption(c"request.jwt.claims".as_ptr(), true, false);
        if p.is_null() {
            None
        } else {
            CStr::from_ptr(p).to_str().ok().map(str::to_owned)
        }
    };
    claims::organization_id(claims.as_deref()).map(pgrx::Uuid::from_bytes)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const ORG: &str = "0b5c6e2a-9d1f-4c3e-8a7b-1234567890ab";

    fn org_for(claims: Option<&str>) -> Option<String> {
        match claims {
            Some(c) => {
                Spi::run(&format!(
                    "SELECT set_config('request.jwt.claims', {}, true)",
                    pgrx::spi::quote_literal(c)
                ))
                .unwrap();
            }
            None => Spi::run("RESET request.jwt.claims").unwrap(),
        }
        Spi::get_one::<String>("SELECT hr_jwt_organization_id()::text").unwrap()
    }

    #[pg_test]
    fn jwt_claims_setting_is_read() {
        assert_eq!(
            org_for(Some(&format!(r#"{{"organization_id":"{ORG}"}}"#))).as_deref(),
            Some(ORG)
        );
        assert_eq!(
            org_for(Some(&format!(
                r#"{{"app_metadata":{{"organization_id":"{}"}}}}"#,
                ORG.to_uppercase()
            )))
            .as_deref(),
            Some(ORG)
        );
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"organization_id":"x"}"#,
            &format!(r#"{{"user_metadata":{{"organization_id":"{ORG}"}}}}"#),
        ] {
            assert_eq!(org_for(Some(bad)), None, "claims {bad:?}");
        }
    }

    #[pg_test]
    fn unset_jwt_claims_give_null() {
        assert_eq!(org_for(None), None);
    }
}
