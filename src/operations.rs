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

/// `hr_next_batch_size(size integer, ms double precision, target_ms double
/// precision, average double precision, min_size integer, max_size integer)
/// RETURNS double precision[]` — IMMUTABLE PARALLEL SAFE. Internal: the
/// batch loop's size after a batch (`src/batch_size.rs`): `{next size, new
/// moving average}`; `average` is NULL before the first batch.
#[pg_extern(immutable, parallel_safe, schema = "hr_migrations")]
fn hr_next_batch_size(
    size: i32,
    ms: f64,
    target_ms: f64,
    average: Option<f64>,
    min_size: i32,
    max_size: i32,
) -> Vec<Option<f64>> {
    let (next, average) = crate::batch_size::next(size, ms, target_ms, average, min_size, max_size);
    vec![Some(f64::from(next)), average]
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Properties a function is documented with in docs/sql-reference.md
    /// (the first words after its heading: volatility, STRICT, PARALLEL ...,
    /// SECURITY DEFINER).
    struct Documented {
        name: String,
        qualified: bool,
        volatility: char,
        strict: bool,
        parallel: Option<char>,
        definer: bool,
    }

    fn documented_functions() -> Vec<Documented> {
        let doc = include_str!("../docs/sql-reference.md");
        let mut out = vec![];
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            let Some(heading) = line.strip_prefix("### `") else {
                continue;
            };
            let Some(first) = lines.next() else { break };
            // "VOLATILE STRICT PARALLEL SAFE. ...", "STABLE, SECURITY DEFINER. ..."
            let head = first.split(['.', '(', ';']).next().unwrap_or("");
            let words: Vec<&str> = head
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            let volatility = match words.first() {
                Some(&"IMMUTABLE") => 'i',
                Some(&"STABLE") => 's',
                Some(&"VOLATILE") => 'v',
                _ => continue, // a table, view, trigger function or procedure
            };
            let full = heading.split('(').next().unwrap();
            let name = full.trim_start_matches("hr_migrations.").to_string();
            let qualified = full.len() != name.len();
            let parallel = words
                .iter()
                .position(|w| *w == "PARALLEL")
                .and_then(|i| words.get(i + 1))
                .map(|w| match *w {
                    "SAFE" => 's',
                    "RESTRICTED" => 'r',
                    "UNSAFE" => 'u',
                    other => panic!("{name}: PARALLEL {other}?"),
                });
            out.push(Documented {
                name,
                qualified,
                volatility,
                strict: words.contains(&"STRICT"),
                parallel,
                definer: words.windows(2).any(|w| w == ["SECURITY", "DEFINER"]),
            });
        }
        out
    }

    /// The reference tells users each function's volatility, strictness,
    /// parallel safety and whether it is SECURITY DEFINER; every function
    /// of the extension documented that way has exactly those properties in
    /// the catalog (an unstated PARALLEL means UNSAFE; functions without
    /// arguments are STRICT as pgrx declares them, which changes nothing).
    /// It fails when the code or the reference changes without the other.
    #[pg_test]
    fn every_documented_function_has_its_documented_properties() {
        let documented = documented_functions();
        assert!(documented.len() >= 25, "{} parsed", documented.len());
        let mut wrong = vec![];
        for d in documented {
            let rows: Vec<(String, bool, String, bool, i32)> = Spi::connect(|c| {
                // An unqualified heading is the function in the schema the
                // extension was created in, `hr_migrations.` one is there.
                // SECURITY DEFINER is what runs as the definer role: the
                // function itself, or the hr_migrations function of the same
                // name an API wrapper calls.
                c.select(
                    "SELECT p.provolatile::text, p.proisstrict, p.proparallel::text,
                            p.prosecdef OR EXISTS (SELECT 1 FROM pg_proc q
                                                    WHERE q.proname = p.proname AND q.prosecdef
                                                      AND q.pronamespace = 'hr_migrations'::regnamespace),
                            p.pronargs::int4
                       FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       JOIN pg_extension e ON e.oid = d.refobjid AND d.deptype = 'e'
                      WHERE e.extname = 'hr_migrations' AND p.proname = $1
                        AND p.pronamespace = CASE WHEN $2 THEN 'hr_migrations'::regnamespace ELSE e.extnamespace END",
                    None,
                    &[d.name.as_str().into(), d.qualified.into()],
                )
                .unwrap()
                .map(|r| {
                    (
                        r.get::<String>(1).unwrap().unwrap(),
                        r.get::<bool>(2).unwrap().unwrap(),
                        r.get::<String>(3).unwrap().unwrap(),
                        r.get::<bool>(4).unwrap().unwrap(),
                        r.get::<i32>(5).unwrap().unwrap(),
                    )
                })
                .collect()
            });
            if rows.is_empty() {
                wrong.push(format!("{}: documented, not in the extension", d.name));
            }
            for (vol, strict, par, definer, nargs) in rows {
                let name = &d.name;
                let mut check = |what: &str, catalog: String, doc: String| {
                    if catalog != doc {
                        wrong.push(format!(
                            "{name}: {what} is {catalog} in the catalog, {doc} in the reference"
                        ));
                    }
                };
                check("volatility", vol, d.volatility.to_string());
                if nargs > 0 {
                    check("STRICT", strict.to_string(), d.strict.to_string());
                }
                check("PARALLEL", par, d.parallel.unwrap_or('u').to_string());
                check(
                    "SECURITY DEFINER",
                    definer.to_string(),
                    d.definer.to_string(),
                );
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
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
