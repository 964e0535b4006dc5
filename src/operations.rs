//! Phases, status, the migration registry and the batch engine shared by
//! every migration.
//!
//! The engine and the registry are SQL, kept in `.sql` files so they read
//! and diff as SQL (`src/sql/operations.sql`); the phase rules are Rust
//! (`src/phase.rs`), exposed here to `hr_set_phase`.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::phase::{self, Facts, Phase};

extension_sql_file!("sql/operations.sql", name = "operations", bootstrap);

fn parse_phase(s: &str) -> Result<Phase, ErrorReport> {
    Phase::parse(s).ok_or_else(|| {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "unknown phase",
            "hr_migrations",
        )
        .set_hint("use not_applied, dual, migrated, enforced or contracted")
    })
}

/// `hr_phase_refusal(migration text, from_phase text, to_phase text, applied
/// boolean, ready boolean, pending bigint, blocked bigint, cleanup_pending
/// bigint, cleanup_blocked bigint, enforced_for_secs double precision,
/// deprecation_period_secs double precision) RETURNS TABLE(reason text, hint
/// text)` — IMMUTABLE PARALLEL SAFE. Internal.
///
/// No row when the move is allowed; otherwise one row saying why not and
/// what to do (`src/phase.rs`). 22023 for a phase name that does not exist.
#[allow(clippy::too_many_arguments)]
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_phase_refusal(
    migration: &str,
    from_phase: &str,
    to_phase: &str,
    applied: bool,
    ready: bool,
    pending: i64,
    blocked: i64,
    cleanup_pending: i64,
    cleanup_blocked: i64,
    enforced_for_secs: Option<f64>,
    deprecation_period_secs: f64,
) -> Result<TableIterator<'static, (name!(reason, String), name!(hint, String))>, ErrorReport> {
    let facts = Facts {
        applied,
        ready,
        pending,
        blocked,
        cleanup_pending,
        cleanup_blocked,
        enforced_for: enforced_for_secs,
        deprecation_period: deprecation_period_secs,
    };
    let from = parse_phase(from_phase)?;
    let to = parse_phase(to_phase)?;
    let rows = match phase::check(migration, from, to, &facts) {
        Ok(()) => vec![],
        Err(r) => vec![(r.reason, r.hint)],
    };
    Ok(TableIterator::new(rows))
}

/// `hr_phase_accepts_plaintext(phase text) RETURNS boolean` — IMMUTABLE
/// STRICT PARALLEL SAFE. Internal: whether legacy plaintext is still
/// verified, read and written in that phase (before `enforced`).
#[pg_extern(immutable, strict, parallel_safe, schema = "hr_migrations")]
fn hr_phase_accepts_plaintext(phase: &str) -> Result<bool, ErrorReport> {
    Ok(parse_phase(phase)?.accepts_plaintext())
}

/// `hr_library_preloaded() RETURNS boolean` — VOLATILE PARALLEL SAFE.
/// Internal: whether the library was loaded by the postmaster
/// (`shared_preload_libraries`), which it notes when it loads. Any role may
/// ask; `shared_preload_libraries` itself is for superusers and
/// `pg_read_all_settings` only.
#[pg_extern(volatile, parallel_safe, schema = "hr_migrations")]
fn hr_library_preloaded() -> bool {
    crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The one place that checks declared function properties (DESIGN.md
    /// §4 fixes them): volatility, strictness, parallel safety, SECURITY
    /// DEFINER. Functions without arguments are STRICT as pgrx declares
    /// them, which changes nothing.
    #[pg_test]
    fn every_function_declares_its_properties() {
        for (name, vol, strict, par, secdef) in [
            ("hr_generate_token", "v", true, "s", false),
            ("hr_hash_token", "v", true, "s", false),
            ("hr_verify_token", "i", true, "s", false),
            ("hr_token_plaintext_matches", "i", true, "s", false),
            ("hr_token_verdict", "i", false, "s", false),
            ("hr_verify_reference_token", "v", false, "u", true),
            ("hr_issue_reference_token", "v", false, "u", true),
            ("hr_revoke_reference_token", "v", false, "u", true),
            ("hr_backfill_reference_token_hashes", "v", false, "u", false),
            ("hr_references_token_trigger", "v", false, "u", false),
            ("hr_jwt_organization_id", "s", true, "s", false),
            ("hr_portal_sessions_org_trigger", "v", false, "u", true),
            (
                "hr_backfill_portal_session_organizations",
                "v",
                false,
                "u",
                false,
            ),
            ("hr_encrypt_credential", "v", true, "r", false),
            ("hr_decrypt_credential", "s", true, "r", false),
            ("hr_credential_aad", "i", true, "s", false),
            ("hr_envelope_key_version", "i", true, "s", false),
            ("hr_migrate_integrations", "v", false, "u", false),
            ("hr_integration_secret", "s", false, "u", true),
            ("hr_set_integration_secret", "v", false, "u", true),
            ("hr_rollback_integrations", "v", false, "u", false),
            ("hr_rewrap_credentials", "v", false, "u", false),
            ("hr_job_board_integrations_trigger", "v", false, "u", true),
            ("hr_migration_status", "s", false, "u", true),
            ("hr_set_phase", "v", false, "u", false),
            ("hr_touch_updated_at", "v", false, "u", false),
            ("hr_backfill_in_progress", "v", true, "r", false),
            ("hr_set_backfill_flag", "v", true, "u", false),
            ("hr_engine_batch", "v", false, "u", true),
        ] {
            let r = Spi::get_two::<String, bool>(&format!(
                "SELECT provolatile::text || proisstrict::text || proparallel::text, prosecdef \
                   FROM pg_proc WHERE proname = '{name}' AND pronamespace = 'hr_migrations'::regnamespace"
            ))
            .unwrap();
            assert_eq!(
                r,
                (Some(format!("{vol}{strict}{par}")), Some(secdef)),
                "{name}"
            );
        }
    }

    #[pg_test]
    fn phase_rules_reach_sql() {
        let q = "SELECT reason FROM hr_migrations.hr_phase_refusal('m', 'dual', 'enforced', true, true, 3, 0, 0, 0, NULL, 0)";
        let r = Spi::get_one::<String>(q).unwrap().unwrap();
        assert!(r.contains("3 rows pending"), "{r}");
        let q = "SELECT count(*) FROM hr_migrations.hr_phase_refusal('m', 'dual', 'migrated', true, true, 0, 0, 0, 0, NULL, 0)";
        assert_eq!(Spi::get_one::<i64>(q), Ok(Some(0)));
    }
}
