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
#[pg_extern(immutable, parallel_safe)]
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
#[pg_extern(immutable, strict, parallel_safe)]
fn hr_phase_accepts_plaintext(phase: &str) -> Result<bool, ErrorReport> {
    Ok(parse_phase(phase)?.accepts_plaintext())
}
