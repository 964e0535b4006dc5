//! The plans without a server: golden files of each built-in migration's
//! plan (pgroll's build_test.go), the migration files as their rendering,
//! and the properties every plan keeps. `UPDATE_GOLDEN=1` rewrites the
//! golden files and the migration files from the plans.

use std::path::PathBuf;

use serde_json::json;

use super::builtin::builtin;
use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn update() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the file at `path` (or writes it under UPDATE_GOLDEN=1).
fn golden(path: PathBuf, actual: &str) {
    if update() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 cargo pgrx test writes it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the plan at line {}:\n  file: {:?}\n  plan: {:?}\n(UPDATE_GOLDEN=1 cargo pgrx test rewrites it)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn scripts() -> [(Script, &'static str); 2] {
    [(Script::Migrate, "migrate"), (Script::Rollback, "rollback")]
}

#[test]
fn golden_plans_of_the_builtin_migrations() {
    for b in builtin() {
        for (script, name) in scripts() {
            let text = render_plan(&b.entry, script).unwrap();
            golden(
                root()
                    .join("src/kinds")
                    .join(&b.entry.kind)
                    .join("plans")
                    .join(format!("{}.{name}.sql", b.entry.migration)),
                &text,
            );
        }
    }
}

#[test]
fn the_migration_and_rollback_files_are_the_plans() {
    for b in builtin() {
        for (script, _) in scripts() {
            let text = file(&b.entry, script).unwrap();
            golden(
                root()
                    .join(script.directory())
                    .join(format!("{:03}_{}.sql", b.entry.position, b.entry.migration)),
                &text,
            );
        }
    }
}

#[test]
fn every_builtin_entry_is_valid_for_its_kind() {
    for b in builtin() {
        validate(&b.entry).unwrap();
    }
}

fn tenant_entry() -> Entry {
    builtin()
        .into_iter()
        .find(|b| b.entry.kind == "tenant_column")
        .unwrap()
        .entry
}

#[test]
fn registration_refuses_what_the_kind_cannot_plan() {
    let mut e = tenant_entry();
    e.objects.remove("fk");
    assert_eq!(
        validate(&e),
        Err(PlanError::MissingObject {
            migration: "portal_sessions".into(),
            key: "fk".into()
        })
    );
    let mut e = tenant_entry();
    e.objects.insert("frobnicate".into(), json!("x"));
    assert!(matches!(validate(&e), Err(PlanError::UnknownObject { .. })));
    let mut e = tenant_entry();
    e.objects.insert("index".into(), json!("x".repeat(64)));
    assert!(matches!(validate(&e), Err(PlanError::BadName { .. })));
    let mut e = tenant_entry();
    e.objects.insert("index".into(), json!(7));
    assert!(matches!(validate(&e), Err(PlanError::BadName { .. })));
    let mut e = tenant_entry();
    e.objects
        .insert("legacy_triggers".into(), json!("not a list"));
    assert!(matches!(validate(&e), Err(PlanError::BadName { .. })));
    let mut e = tenant_entry();
    e.table_name = String::new();
    assert!(matches!(validate(&e), Err(PlanError::BadTable { .. })));
    let mut e = tenant_entry();
    e.kind = "tenant_colum".into();
    assert!(matches!(
        plan(&e, Script::Migrate),
        Err(PlanError::UnknownKind(_))
    ));
}

/// What an attacker who may write the registry (the admin role) tried:
/// a placeholder in a name (`hr_render` filled it again inside a quoted
/// identifier), a quote or a backslash (a literal ended early under
/// `standard_conforming_strings = off`), a newline (a statement at the start
/// of a file's comment line). None is a valid name.
#[test]
fn names_that_could_leave_their_quotes_are_refused() {
    for bad in [
        "r{token_trigger}",
        ";SELECT public.pwn();SELECT '--",
        "x'') OR public.pwn() --",
        "a\\b",
        "t\nSELECT public.pwn(); --",
        "a.b",
        "a\"b",
        "1abc",
        "",
    ] {
        assert!(!valid_name(bad), "{bad:?}");
        let mut e = tenant_entry();
        e.objects.insert("index".into(), json!(bad));
        assert!(
            matches!(validate(&e), Err(PlanError::BadName { .. })),
            "{bad:?}"
        );
        let mut e = tenant_entry();
        e.table_name = bad.into();
        assert!(
            matches!(validate(&e), Err(PlanError::BadTable { .. })),
            "{bad:?}"
        );
    }
    for good in ["hr_references", "Sessions org isolation", "idx-1", "_x$"] {
        assert!(valid_name(good), "{good:?}");
    }
    assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
}

#[test]
fn names_from_the_registry_are_quoted() {
    let mut e = tenant_entry();
    e.table_schema = "App Data".into();
    e.table_name = "select".into();
    e.objects.insert("index".into(), json!("Idx-x"));
    let steps = plan(&e, Script::Migrate).unwrap();
    let index = steps.iter().find(|s| s.run == Run::TopLevel).unwrap();
    assert_eq!(
        index.sql,
        r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "Idx-x" ON "App Data"."select" (organization_id)"#
    );
    assert!(steps.iter().any(|s| s
        .sql
        .contains(r#"'"App Data"."select"'::pg_catalog.regclass"#)));
    assert_eq!(quote_ident("hr_references"), "hr_references");
    assert_eq!(quote_ident("user"), "\"user\"");
    assert_eq!(
        quote_ident("Sessions org isolation"),
        "\"Sessions org isolation\""
    );
    assert_eq!(quote_literal("it's"), "'it''s'");
}

#[test]
fn each_group_of_top_level_indexes_first_drops_their_invalid_leftovers() {
    let e = builtin()
        .into_iter()
        .find(|b| b.entry.kind == "credential_move")
        .unwrap()
        .entry;
    let steps = plan(&e, Script::Migrate).unwrap();
    let first_top = steps.iter().position(|s| s.run == Run::TopLevel).unwrap();
    let tops: Vec<&Step> = steps.iter().filter(|s| s.run == Run::TopLevel).collect();
    assert_eq!(tops.len(), 6);
    // The drops of all six come right before the group, one per index.
    let drops = &steps[first_top - tops.len()..first_top];
    for (d, t) in drops.iter().zip(&tops) {
        assert!(d.sql.starts_with("DROP INDEX IF EXISTS "), "{}", d.sql);
        assert!(
            d.sql.ends_with(t.index.as_deref().unwrap()),
            "{} / {:?}",
            d.sql,
            t.index
        );
        assert_eq!(d.run, Run::Retry);
    }
    // Sections: 1 before the group, 2 after it; the top-level steps carry 1.
    assert!(steps[..first_top].iter().all(|s| s.section == 1));
    assert!(tops.iter().all(|s| s.section == 1));
    assert!(steps[first_top + tops.len()..]
        .iter()
        .all(|s| s.section == 2));
}

#[test]
fn every_plan_starts_with_the_preflight_and_ends_with_the_status() {
    for b in builtin() {
        for (script, _) in scripts() {
            let steps = plan(&b.entry, script).unwrap();
            assert!(
                steps[0].sql.contains("hr_preflight_gate"),
                "{}",
                b.entry.migration
            );
            assert!(
                steps.last().unwrap().sql.contains("hr_status_line"),
                "{}",
                b.entry.migration
            );
        }
    }
}

/// Top-level statements run with the caller's search_path (a superuser's
/// may hold planted overloads): they resolve no function and no operator
/// by name, and they are only CREATE INDEX CONCURRENTLY. Every other step
/// runs inside the extension's procedures (search_path pinned), and none
/// of them is a statement that cannot run in a transaction block.
#[test]
fn top_level_statements_resolve_nothing_by_name() {
    for b in builtin() {
        for (script, _) in scripts() {
            for s in plan(&b.entry, script).unwrap() {
                if s.run == Run::TopLevel {
                    assert!(s.sql.starts_with("CREATE "), "{}", s.sql);
                    assert!(
                        s.sql.contains(" INDEX CONCURRENTLY IF NOT EXISTS "),
                        "{}",
                        s.sql
                    );
                    // After the table: the column list and an IS NOT NULL predicate only.
                    let tail = s.sql.split(" ON ").nth(1).unwrap();
                    let columns = tail.split_once('(').unwrap().1;
                    for c in [
                        '=', '<', '>', '~', '|', '+', '-', '*', '/', '!', '@', '#', '%', '^', '&',
                        '?',
                    ] {
                        assert!(!columns.contains(c), "operator {c} in {}", s.sql);
                    }
                    assert_eq!(columns.matches('(').count(), 0, "a call in {}", s.sql);
                } else {
                    assert!(!s.sql.contains("CONCURRENTLY"), "{}", s.sql);
                    assert!(!s.sql.to_uppercase().contains("VACUUM"), "{}", s.sql);
                }
            }
        }
    }
}

/// A lock that blocks writes is only ever taken by a retried step (each
/// attempt bounded by hr_migrations.ddl_lock_timeout); waiting steps only
/// take SHARE UPDATE EXCLUSIVE.
#[test]
fn only_retried_steps_take_locks_that_block_application_traffic() {
    for b in builtin() {
        for (script, _) in scripts() {
            for s in plan(&b.entry, script).unwrap() {
                match s.run {
                    Run::Wait | Run::TopLevel => {
                        assert_eq!(s.lock, Lock::ShareUpdateExclusive, "{}", s.name)
                    }
                    Run::Retry => {}
                    _ => assert!(
                        matches!(s.lock, Lock::None | Lock::RowExclusive),
                        "{}",
                        s.name
                    ),
                }
            }
        }
    }
}
