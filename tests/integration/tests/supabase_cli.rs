//! The migration files as runners send them: the Supabase CLI
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

/// Long work off the deploy: with hr_migrations.backfill_in_background on
/// for the database, the files schedule their backfills as pg_cron jobs
/// (a real pg_cron 1.4, jobs run as postgres) and end with the migrations
/// in dual; a later migration file that requires a phase fails the deploy
/// with a clear message until it is reached; the jobs move every
/// migration to migrated and unschedule themselves; the deploy then passes.
#[test]
fn a_backfill_in_the_background_through_pg_cron_and_a_file_that_waits_for_it() {
    let cl = supabase_platform(
        300,
        &[
            "shared_preload_libraries=hr_migrations,pg_cron",
            "cron.database_name=hr",
            "cron.host=127.0.0.1",
        ],
    );
    // The platform's part of it: pg_cron, and its schema for the admin.
    cl.connect("hr")
        .batch_execute("CREATE EXTENSION pg_cron; GRANT USAGE ON SCHEMA cron TO postgres;")
        .unwrap();
    let mut pg = cl.connect_as("hr", "postgres");
    pg.batch_execute("ALTER DATABASE hr SET hr_migrations.backfill_in_background = on")
        .unwrap();
    let project = cl.dir().join("project");
    supabase_project(&project);
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    assert!(ok, "supabase migration up:\n{out}");
    let mut pg = cl.connect_as("hr", "postgres");
    for m in MIGRATIONS {
        let s = status(&mut pg, m);
        assert_eq!(s.phase, "dual", "{m}: the backfill ran in the foreground");
        assert!(s.pending > 0, "{m}");
    }
    let jobs: Vec<(String, String)> = pg
        .query(
            "SELECT jobname, username FROM cron.job ORDER BY jobname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        jobs,
        MIGRATIONS
            .iter()
            .map(|m| (format!("hr_migrations: {m}"), "postgres".to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    // The application's next migration needs portal_sessions migrated.
    std::fs::write(
        project.join("supabase/migrations/29990101000000_needs_tenants.sql"),
        "SELECT hr_migrations.hr_require_phase('portal_sessions', 'migrated');\n\
         CREATE TABLE public.app_next (id int);\n",
    )
    .unwrap();
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    assert!(!ok, "the deploy should stop:\n{out}");
    assert!(
        out.contains("portal_sessions is dual, not yet migrated")
            && out.contains("this deploy stops here until it is"),
        "{out}"
    );

    // pg_cron runs the jobs on the next minute: wait for them (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let done: i64 = one(
            &mut pg,
            "SELECT count(*) FROM hr_migrations.hr_migration_status() WHERE phase = 'migrated' AND pending = 0",
        );
        let jobs: i64 = one(&mut pg, "SELECT count(*) FROM cron.job");
        if done == 3 && jobs == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the jobs did not finish: {:?}",
            pg.query(
                "SELECT jobid::text, status, return_message FROM cron.job_run_details ORDER BY runid",
                &[]
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1), r.get::<_, Option<String>>(2)))
            .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_all_migrated(&mut pg);
    // Every run was postgres's; each job's working runs succeeded; a run
    // that failed is only the last one, which found nothing to do and
    // removed its job (pg_cron then reports it as canceled).
    let runs: Vec<(String, i32, String, String)> = pg
        .query(
            "SELECT username::text, jobid::int, status, coalesce(return_message, '') FROM cron.job_run_details ORDER BY runid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(runs.iter().all(|r| r.0 == "postgres"), "{runs:?}");
    for (_, job, status, message) in &runs {
        if status != "succeeded" {
            assert_eq!(message, "job canceled", "{runs:?}");
            let later = runs.iter().filter(|r| r.1 == *job).last().unwrap();
            assert_eq!(
                later.3, *message,
                "a run after the job removed itself: {runs:?}"
            );
        }
    }
    let succeeded_jobs: std::collections::BTreeSet<i32> = runs
        .iter()
        .filter(|r| r.2 == "succeeded")
        .map(|r| r.1)
        .collect();
    assert_eq!(succeeded_jobs.len(), 3, "{runs:?}");
    let finished: i64 = one(
        &mut pg,
        "SELECT count(*) FROM hr_migrations.hr_migration_progress WHERE operation = 'backfill' AND state = 'finished' AND rows_done > 0",
    );
    assert_eq!(finished, 3);
    // The deploy goes on.
    let (ok, out) = cl.supabase_migration_up(&project, "postgres");
    assert!(ok, "{out}");
    let next: bool = one(&mut pg, "SELECT to_regclass('public.app_next') IS NOT NULL");
    assert!(next);

    // A job never runs as a superuser (it would run whatever the admin can
    // reach, every minute): the superuser's scheduling is refused, and its
    // files run their backfill in the foreground whatever the setting.
    let mut su = cl.connect("hr");
    assert_raises(
        &mut su,
        "SELECT hr_migrations.hr_schedule_backfill('portal_sessions')",
        "42501",
        &[],
    );
    cl.psql_ok(
        "hr",
        &repo().join("sql/rollback/002_portal_sessions.sql"),
        &[],
    );
    let out = cl.psql_ok(
        "hr",
        &repo().join("sql/migrations/002_portal_sessions.sql"),
        &[],
    );
    assert!(out.contains("phase dual -> migrated"), "{out}");
    let superuser_jobs: i64 = one(
        &mut su,
        "SELECT count(*) FROM cron.job WHERE username = 'supabase_admin'",
    );
    assert_eq!(superuser_jobs, 0);
}
