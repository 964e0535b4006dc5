//! The migration files as runners send them (issue #16): the Supabase CLI
//! (`supabase migration up`, pinned 2.117.0) applying a project's
//! `supabase/migrations/` as `postgres` on Supabase's role layout, psql,
//! and a runner that sends one statement at a time. Plain SQL, idempotent,
//! refused inside a transaction block, the session left as it was.

use std::sync::mpsc;
use std::time::Duration;

use hr_migrations_it::*;

const MIGRATIONS: [&str; 3] = [
    "reference_tokens",
    "portal_sessions",
    "integration_credentials",
];

fn recorded(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT name FROM supabase_migrations.schema_migrations ORDER BY version",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn phases(c: &mut Client) -> Vec<(String, String, i64, i64)> {
    c.query(
        "SELECT migration, phase, pending, blocked FROM hr_migrations.hr_migration_status() ORDER BY migration",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// An application transaction that writes the three managed tables and
/// holds their locks for `secs` (longer than hr_migrations.ddl_lock_timeout,
/// 1 s), then commits; says when it holds them.
fn hold_tables(cl: &Cluster, secs: u64) -> (std::thread::JoinHandle<()>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let mut app = cl.connect_as("hr", "authenticator");
    let h = std::thread::spawn(move || {
        app.batch_execute(
            "SET ROLE service_role; BEGIN;
             UPDATE public.hr_references SET updated_at = updated_at WHERE id = (SELECT id FROM public.hr_references ORDER BY id LIMIT 1);
             UPDATE public.hr_job_board_integrations SET updated_at = updated_at
              WHERE id = (SELECT id FROM public.hr_job_board_integrations ORDER BY id LIMIT 1);
             UPDATE public.hr_candidate_portal_sessions SET updated_at = updated_at
              WHERE id = (SELECT id FROM public.hr_candidate_portal_sessions ORDER BY id LIMIT 1);",
        )
        .unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(secs));
        app.batch_execute("COMMIT").unwrap();
    });
    (h, rx)
}

/// The CLI applies the three files as postgres while an application
/// transaction holds the tables for longer than the lock timeout: the DDL
/// retries instead of failing or queueing writers, the index builds wait,
/// the application's transaction commits, and every migration ends
/// migrated, each file recorded once. Then the runbook's phases as
/// postgres, and the files again (a database with no CLI history, as one
/// migrated by 0.2.0): in enforced and in contracted, they change nothing.
#[test]
fn the_supabase_cli_applies_the_files_as_postgres_while_the_application_holds_the_tables() {
    let cl = supabase_platform(300, &[]);
    let project = cl.dir().join("project");
    supabase_project(&project);
    let mut pg = cl.connect_as("hr", "postgres");

    let (holder, held) = hold_tables(&cl, 4);
    held.recv().unwrap();
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    holder.join().expect("the application's transaction failed");
    assert!(ok, "supabase migration up:\n{out}");
    assert_all_migrated(&mut pg);
    assert_eq!(
        recorded(&mut pg),
        [
            "hr_migrations_001_reference_tokens",
            "hr_migrations_002_portal_sessions",
            "hr_migrations_003_integration_credentials"
        ]
    );
    // Nothing left half-built: every index valid.
    let invalid: i64 = one(
        &mut pg,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          WHERE c.relnamespace = 'public'::regnamespace AND NOT i.indisvalid",
    );
    assert_eq!(invalid, 0);

    // The runbook after it, as postgres.
    for m in MIGRATIONS {
        pg.batch_execute(&format!("CALL extensions.hr_run_phase('{m}', 'enforced')"))
            .unwrap_or_else(|e| panic!("{m}: {}", error_text(&e)));
    }
    // The files again, with no CLI history: nothing changes.
    let again = |pg: &mut Client| {
        let before = (catalog_snapshot(pg), phases(pg));
        pg.batch_execute("DELETE FROM supabase_migrations.schema_migrations")
            .unwrap();
        let (ok, out) = cl.supabase_migration_up(&project, "postgres");
        assert!(ok, "supabase migration up again:\n{out}");
        assert_eq!(
            before,
            (catalog_snapshot(pg), phases(pg)),
            "running the files again changed something"
        );
    };
    again(&mut pg);
    pg.batch_execute("ALTER DATABASE hr SET hr_migrations.deprecation_period = '0'")
        .unwrap();
    let mut pg = cl.connect_as("hr", "postgres");
    for m in ["reference_tokens", "integration_credentials"] {
        pg.batch_execute(&format!(
            "CALL extensions.hr_run_phase('{m}', 'contracted')"
        ))
        .unwrap_or_else(|e| panic!("{m}: {}", error_text(&e)));
    }
    again(&mut pg);
}

/// A file that fails at a statement in the middle (a step that cannot get
/// its lock within hr_migrations.ddl_retry_budget): the CLI stops there,
/// keeps what was committed before it and does not record the file; run
/// again once the lock is free, it finishes.
#[test]
fn a_file_failing_in_the_middle_finishes_when_run_again() {
    let cl = supabase_platform(200, &[]);
    let project = cl.dir().join("project");
    supabase_project(&project);
    let mut pg = cl.connect_as("hr", "postgres");
    // The admin may set it for its own sessions (the CLI runs RESET ALL,
    // which keeps role settings).
    pg.batch_execute("ALTER ROLE postgres SET hr_migrations.ddl_retry_budget = 1500")
        .unwrap();
    // An application transaction holds pf_credentials as a writer: migration
    // 3's foreign key step (SHARE ROW EXCLUSIVE on it) cannot get its lock.
    let mut app = cl.connect_as("hr", "authenticator");
    app.batch_execute(
        "SET ROLE service_role; BEGIN; LOCK TABLE public.pf_credentials IN ROW EXCLUSIVE MODE",
    )
    .unwrap();
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    assert!(!ok, "the file should have stopped:\n{out}");
    assert!(out.contains("gave up after"), "{out}");
    assert_eq!(
        recorded(&mut pg),
        [
            "hr_migrations_001_reference_tokens",
            "hr_migrations_002_portal_sessions"
        ]
    );
    // The statements before the failing one are committed; nothing after it ran.
    let has_column: bool = one(
        &mut pg,
        "SELECT hr_migrations.hr_column_exists('public.hr_job_board_integrations', 'credential_id')",
    );
    assert!(has_column);
    assert_eq!(
        status(&mut pg, "integration_credentials").phase,
        "not_applied"
    );
    let fk: i64 = one(
        &mut pg,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_hr_job_board_integrations_credential_id'",
    );
    assert_eq!(fk, 0);

    app.batch_execute("COMMIT").unwrap();
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    assert!(ok, "run again:\n{out}");
    assert_all_migrated(&mut pg);
    assert_eq!(recorded(&mut pg).len(), 3);
}

/// Inside an explicit transaction block (psql -1, or the whole file sent
/// as one query) a file is refused by its first statement with 25001 and
/// a message that says what to do; nothing changes.
#[test]
fn a_file_inside_a_transaction_block_is_refused_before_any_change() {
    let cl = supabase_platform(50, &[]);
    let file = repo().join("sql/migrations/001_reference_tokens.sql");
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=hr",
            cl.port
        ))
        .args(["-X", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "sql/migrations/001_reference_tokens.sql cannot run inside a transaction block"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let mut pg = cl.connect_as("hr", "postgres");
    let e = pg
        .simple_query(&std::fs::read_to_string(&file).unwrap())
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25001", "{}", error_text(&e));
    let has_hash: bool = one(
        &mut pg,
        "SELECT hr_migrations.hr_column_exists('public.hr_references', 'access_token_hash')",
    );
    assert!(!has_hash);
    assert_eq!(status(&mut pg, "reference_tokens").phase, "not_applied");
}

/// A runner that sends one statement at a time (here: each statement of
/// the file as its own simple query) applies the files; and psql leaves
/// the session as it found it: search_path, lock_timeout,
/// statement_timeout, client_min_messages.
#[test]
fn a_runner_sending_one_statement_at_a_time_applies_the_files_and_the_session_is_left_as_it_was() {
    let cl = supabase_platform(100, &[]);
    let mut pg = cl.connect_as("hr", "postgres");
    pg.batch_execute(
        "SET search_path = public; SET lock_timeout = '7s'; SET statement_timeout = '9min';
         SET client_min_messages = error;",
    )
    .unwrap();
    let settings = |c: &mut Client| -> Vec<String> {
        [
            "search_path",
            "lock_timeout",
            "statement_timeout",
            "client_min_messages",
        ]
        .iter()
        .map(|s| one::<String>(c, &format!("SELECT current_setting('{s}')")))
        .collect()
    };
    let before = settings(&mut pg);
    for m in [
        "001_reference_tokens.sql",
        "002_portal_sessions.sql",
        "003_integration_credentials.sql",
    ] {
        let text = std::fs::read_to_string(repo().join("sql/migrations").join(m)).unwrap();
        let statements: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
            .collect();
        assert!(
            statements.iter().all(|s| s.ends_with(';')),
            "{m}: one statement per line"
        );
        for s in statements {
            pg.simple_query(s)
                .unwrap_or_else(|e| panic!("{m}: {s}: {}", error_text(&e)));
        }
        assert_eq!(
            settings(&mut pg),
            before,
            "{m} changed the session's settings"
        );
    }
    assert_all_migrated(&mut cl.connect_as("hr", "postgres"));
}
