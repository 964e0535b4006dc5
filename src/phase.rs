//! The phase rules of every migration. Pure Rust.
//!
//! `hr_set_phase(migration, phase)` gathers facts about a migration (is its
//! DDL applied, are its objects in place, how many rows are pending or
//! blocked, how long it has been enforced) and asks [`check`] whether the
//! move is allowed; a refusal carries the reason and what to do, and
//! mentions counts, never values. The rules (docs/runbook.md explains each phase):
//!
//! | to \ from    | not_applied | dual | migrated | enforced | contracted |
//! |--------------|-------------|------|----------|----------|------------|
//! | not_applied  | –           | R    | R        | R        | no         |
//! | dual         | A           | –    | A        | A        | no         |
//! | migrated     | no          | A,D  | –        | A        | no         |
//! | enforced     | no          | A,D  | A,D      | –        | no         |
//! | contracted   | no          | no   | no       | A,C      | –          |
//!
//! R: only once the rollback script removed the DDL. A: the DDL is applied.
//! D: nothing pending or blocked and the objects are in place. C: enforced
//! for at least `hr_migrations.deprecation_period`, with nothing left for
//! the enforced phase to clear. `contracted` cannot be left.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    NotApplied,
    Dual,
    Migrated,
    Enforced,
    Contracted,
}

pub const ALL: [Phase; 5] = [
    Phase::NotApplied,
    Phase::Dual,
    Phase::Migrated,
    Phase::Enforced,
    Phase::Contracted,
];

impl Phase {
    pub fn parse(s: &str) -> Option<Phase> {
        ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::NotApplied => "not_applied",
            Phase::Dual => "dual",
            Phase::Migrated => "migrated",
            Phase::Enforced => "enforced",
            Phase::Contracted => "contracted",
        }
    }

    /// Whether legacy plaintext is still accepted (verified, read, written).
    pub fn accepts_plaintext(self) -> bool {
        self < Phase::Enforced
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `hr_set_phase` knows about a migration when it asks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Facts {
    /// The migration's DDL (columns, triggers) exists.
    pub applied: bool,
    /// Everything `migrated` promises is in place (e.g. RLS policies).
    pub ready: bool,
    /// Rows the backfill still has to do, and rows it cannot do.
    pub pending: i64,
    pub blocked: i64,
    /// Rows the enforced phase still has to clear, and rows it cannot.
    pub cleanup_pending: i64,
    pub cleanup_blocked: i64,
    /// Seconds since the migration entered `enforced` (None: not enforced).
    pub enforced_for: Option<f64>,
    /// `hr_migrations.deprecation_period`, in seconds.
    pub deprecation_period: f64,
}

/// Why a move is refused, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub hint: String,
}

fn refuse(reason: impl Into<String>, hint: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal {
        reason: reason.into(),
        hint: hint.into(),
    })
}

/// Whether `migration` may move `from` → `to` given `facts`.
pub fn check(migration: &str, from: Phase, to: Phase, f: &Facts) -> Result<(), Refusal> {
    use Phase::*;
    if from == to {
        return Ok(());
    }
    if from == Contracted {
        return refuse(
            format!("{migration} is contracted: its legacy columns are gone and the move cannot be undone"),
            "restore from a backup taken before the contract phase if you must go back",
        );
    }
    if to == NotApplied {
        return if f.applied {
            refuse(
                format!("{migration} is still applied"),
                format!("run sql/rollback/ for {migration}, which sets this phase"),
            )
        } else {
            Ok(())
        };
    }
    if !f.applied {
        return refuse(
            format!("cannot move {migration} to {to}: its DDL is not applied"),
            format!("apply sql/migrations/ for {migration} first"),
        );
    }
    match (from, to) {
        (_, Dual) => Ok(()),
        (Enforced, Migrated) => Ok(()),
        (Dual | Migrated, Migrated | Enforced) => {
            if f.pending > 0 || f.blocked > 0 {
                refuse(
                    format!(
                        "cannot move {migration} to {to}: {} rows pending and {} blocked",
                        f.pending, f.blocked
                    ),
                    format!(
                        "CALL hr_run_backfill('{migration}'); SELECT note FROM hr_migration_status() says what blocks the rest"
                    ),
                )
            } else if !f.ready {
                refuse(
                    format!("cannot move {migration} to {to}: the objects its migration script creates are not all in place"),
                    format!("run sql/migrations/ for {migration} to the end"),
                )
            } else {
                Ok(())
            }
        }
        (Enforced, Contracted) => {
            let period = f.deprecation_period;
            match f.enforced_for {
                Some(t) if t >= period => {}
                _ => {
                    let left = (period - f.enforced_for.unwrap_or(0.0)).max(0.0);
                    return refuse(
                        format!(
                            "cannot contract {migration} yet: it must stay enforced for hr_migrations.deprecation_period ({} left)",
                            human_duration(left)
                        ),
                        "hr_migration_status() shows when it becomes possible",
                    );
                }
            }
            if f.cleanup_pending > 0 || f.cleanup_blocked > 0 {
                return refuse(
                    format!(
                        "cannot contract {migration}: the enforced phase still has {} rows to clear and {} it cannot clear",
                        f.cleanup_pending, f.cleanup_blocked
                    ),
                    format!("CALL hr_run_backfill('{migration}') first"),
                );
            }
            Ok(())
        }
        (NotApplied, _) => refuse(
            format!("cannot move {migration} from not_applied to {to}"),
            format!("apply sql/migrations/ for {migration}, which moves it to dual"),
        ),
        (_, Contracted) => refuse(
            format!("cannot move {migration} to contracted from {from}"),
            "move it to enforced first, and wait hr_migrations.deprecation_period".to_string(),
        ),
        _ => unreachable!("every (from, to) pair is covered above"),
    }
}

/// "29 days 23:59:58" style, for refusals.
pub fn human_duration(secs: f64) -> String {
    let s = secs.ceil() as i64;
    let (d, rem) = (s / 86_400, s % 86_400);
    let (h, m, sec) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if d > 0 {
        format!("{d} days {h:02}:{m:02}:{sec:02}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    fn facts() -> Facts {
        Facts {
            applied: true,
            ready: true,
            deprecation_period: 30.0 * 86_400.0,
            ..Facts::default()
        }
    }

    /// Every (from, to) pair with clean facts: the table in the module docs.
    #[test]
    fn every_pair_with_clean_facts() {
        let f = facts();
        let enforced_long_ago = Facts {
            enforced_for: Some(31.0 * 86_400.0),
            ..f
        };
        // 'A' allowed, '-' refused; rows: to, columns: from (module docs order).
        let table = [
            (NotApplied, "-----"),
            (Dual, "AAAA-"),
            (Migrated, "-AAA-"),
            (Enforced, "-AAA-"),
            (Contracted, "---AA"),
        ];
        for (to, row) in table {
            for (i, from) in ALL.into_iter().enumerate() {
                let want = row.as_bytes()[i] == b'A' || from == to;
                let f = if from == Enforced {
                    enforced_long_ago
                } else {
                    f
                };
                let got = check("m", from, to, &f).is_ok();
                assert_eq!(got, want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn not_applied_only_after_the_rollback_script() {
        let gone = Facts {
            applied: false,
            ..facts()
        };
        for from in [Dual, Migrated, Enforced] {
            assert!(check("m", from, NotApplied, &gone).is_ok());
            let r = check("m", from, NotApplied, &facts()).unwrap_err();
            assert!(r.reason.contains("still applied"), "{r:?}");
        }
        for to in [Migrated, Enforced] {
            let r = check("m", Dual, to, &gone).unwrap_err();
            assert!(r.reason.contains("not applied"), "{r:?}");
        }
        assert!(check("m", NotApplied, Dual, &gone).is_err());
    }

    #[test]
    fn pending_blocked_or_missing_objects_refuse_migrated_and_enforced() {
        for (f, needle) in [
            (
                Facts {
                    pending: 3,
                    ..facts()
                },
                "3 rows pending and 0 blocked",
            ),
            (
                Facts {
                    blocked: 2,
                    ..facts()
                },
                "0 rows pending and 2 blocked",
            ),
            (
                Facts {
                    ready: false,
                    ..facts()
                },
                "not all in place",
            ),
        ] {
            for from in [Dual, Migrated] {
                for to in [Migrated, Enforced] {
                    if from == to {
                        continue;
                    }
                    let r = check("portal_sessions", from, to, &f).unwrap_err();
                    assert!(r.reason.contains(needle), "{from}->{to}: {r:?}");
                }
            }
            // Stepping back is always possible.
            assert!(check("m", Enforced, Migrated, &f).is_ok());
            assert!(check("m", Enforced, Dual, &f).is_ok());
        }
    }

    #[test]
    fn contract_waits_for_the_deprecation_period_and_the_clearing() {
        let day = 86_400.0;
        let early = Facts {
            enforced_for: Some(29.0 * day),
            ..facts()
        };
        let r = check("reference_tokens", Enforced, Contracted, &early).unwrap_err();
        assert!(r.reason.contains("1 days 00:00:00 left"), "{r:?}");
        let late = Facts {
            enforced_for: Some(30.0 * day),
            ..facts()
        };
        assert!(check("reference_tokens", Enforced, Contracted, &late).is_ok());
        let zero = Facts {
            enforced_for: Some(0.0),
            deprecation_period: 0.0,
            ..facts()
        };
        assert!(check("m", Enforced, Contracted, &zero).is_ok());
        let uncleared = Facts {
            cleanup_pending: 5,
            ..zero
        };
        assert!(check("m", Enforced, Contracted, &uncleared)
            .unwrap_err()
            .reason
            .contains("5 rows to clear"));
        let unclearable = Facts {
            cleanup_blocked: 1,
            ..zero
        };
        assert!(check("m", Enforced, Contracted, &unclearable).is_err());
    }

    #[test]
    fn contracted_is_final() {
        for to in [NotApplied, Dual, Migrated, Enforced] {
            let r = check("m", Contracted, to, &facts()).unwrap_err();
            assert!(r.reason.contains("cannot be undone"));
        }
    }

    #[test]
    fn refusals_name_the_migration_and_a_next_step() {
        for from in ALL {
            for to in ALL {
                for f in [
                    facts(),
                    Facts {
                        applied: false,
                        ..facts()
                    },
                    Facts {
                        pending: 1,
                        ..facts()
                    },
                ] {
                    if let Err(r) = check("integration_credentials", from, to, &f) {
                        assert!(r.reason.contains("integration_credentials"), "{r:?}");
                        assert!(!r.hint.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for p in ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("Enforced"), None);
        assert!(Dual.accepts_plaintext() && Migrated.accepts_plaintext());
        assert!(!Enforced.accepts_plaintext() && !Contracted.accepts_plaintext());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0.0), "00:00:00");
        assert_eq!(human_duration(3661.2), "01:01:02");
        assert_eq!(human_duration(86_400.0 * 2.0 + 5.0), "2 days 00:00:05");
    }
}
