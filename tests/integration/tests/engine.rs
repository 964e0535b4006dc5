//! The batch engine and the registry (src/sql/operations.sql): linear
//! rewrap, the session backfill's walk in physical order, enforce clearing
//! in committed batches that resumes after a crash, status and engine agreeing on what is pending when rows are held
//! locked, and a fourth migration of an existing kind that runs through
//! every phase with no engine change.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hr_migrations_it::*;

fn cluster(keys: &[(u32, [u8; 32])]) -> Cluster {
    let path = write_keyring(keys);
    Cluster::start(&keyring_conf(&path, 1))
}

/// A database with only migration 3 applied at `scale` integrations.
fn credentials_world(cl: &Cluster, scale: u32) -> Client {
    cl.fixture_db("hr", scale);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    cl.connect("hr")
}

#[test]
fn rewrap_reads_each_credential_a_bounded_number_of_times_and_goes_past_a_poisoned_one() {
    let cl = cluster(&[(1, random_key()), (2, random_key())]);
    let mut c = credentials_world(&cl, 110_000);
    let total: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    assert!(total >= 100_000, "{total}");
    let poisoned: String = one(
        &mut c,
        "SELECT id::text FROM public.pf_credentials ORDER BY id OFFSET 50000 LIMIT 1",
    );
    c.batch_execute(&format!(
        "UPDATE public.pf_credentials SET encrypted_value = overlay(encrypted_value placing
            CASE WHEN substr(encrypted_value, 30, 1) = 'A' THEN 'B' ELSE 'A' END from 30 for 1)
          WHERE id = '{poisoned}'"
    ))
    .unwrap();
    // A new keyring key and a new data key generation for every
    // organization: the rewrap rewraps the data keys, then reseals every
    // credential under its organization's new generation.
    c.batch_execute("ALTER SYSTEM SET hr_migrations.active_key_version = 2")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = cl.connect("hr");
    let orgs: i64 = one(
        &mut c,
        "SELECT count(hr_rotate_organization_key(o)) FROM (SELECT DISTINCT organization_id FROM public.pf_credentials) s(o)",
    );
    assert!(orgs > 10, "{orgs}");

    // What the rewrap reads of pf_credentials, from the server's own
    // counters. Keyset batches fetch each row through the primary key a
    // few times (pick, lock, update); the run's counts of what is pending
    // scan the table a fixed number of times (12), whatever the number of
    // batches (21). A batch that scanned the table (the planner's choice when a
    // batch is a large part of it, before the engine turned sequential
    // scans off) makes a scan per batch; one that rescanned from the start
    // of the table makes index fetches grow with its position. The same
    // for the integrations each batch checks (an integration of another
    // organization linked to a credential refuses it): looked up by the
    // batch's ids, about one index entry per credential in all; merged
    // with an index scan from the smallest credential id up, as the
    // planner chose before the lookup named the batch's ids, each batch
    // read every entry up to its own (1.15M for 104k credentials).
    let reads = |c: &mut Client| -> (i64, i64, i64, i64) {
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        let r = c
            .query_one(
                "SELECT seq_scan, coalesce(idx_tup_fetch, 0), n_tup_upd,
                        (SELECT coalesce(sum(i.idx_tup_read), 0)::bigint FROM pg_stat_user_indexes i
                          WHERE i.relid = 'public.hr_job_board_integrations'::regclass)
                   FROM pg_stat_user_tables WHERE relid = 'public.pf_credentials'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    let before = reads(&mut c);
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap(5000)");
    assert!(ok, "{out}");
    let batches = batch_timings(&out)
        .iter()
        .filter(|(rows, _)| *rows > 0)
        .count();
    assert!(batches >= 20, "{batches} batches:\n{out}");
    // psql's backend flushes its counters as it exits: wait for its
    // updates (every credential but the poisoned one) to be counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let r = reads(&mut c);
        if r.2 - before.2 >= total - 1 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Every credential but the poisoned one, plus the poisoned one's
    // attempts, rolled back but counted.
    let updates = after.2 - before.2;
    assert!(
        (total - 1..=total + 5).contains(&updates),
        "{updates} updates of {total} credentials"
    );
    let (seq_scans, fetched) = (after.0 - before.0, after.1 - before.1);
    let integrations_read = after.3 - before.3;
    eprintln!("rewrap of {total} credentials in {batches} batches: {fetched} index fetches, {seq_scans} sequential scans; {integrations_read} integration index entries read");
    assert!(
        seq_scans < batches as i64 && fetched <= 6 * total,
        "the rewrap of {total} credentials in {batches} batches made {seq_scans} sequential scans and {fetched} index fetches: not linear"
    );
    assert!(
        integrations_read <= 3 * total,
        "the rewrap of {total} credentials in {batches} batches read {integrations_read} index entries of the integrations: not linear"
    );

    let mut c = cl.connect("hr");
    let v2: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials WHERE hr_migrations.hr_envelope_generation(encrypted_value) = 2");
    assert_eq!(v2, total - 1);
    // Every live data key is wrapped under key version 2; generation 1 is
    // destroyed everywhere but in the poisoned credential's organization,
    // which still needs it.
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'retired'),
                    count(*) FILTER (WHERE state <> 'retired' AND kek_version <> 2),
                    count(*) FILTER (WHERE generation = 1 AND state = 'superseded'
                                       AND organization_id = (SELECT organization_id FROM public.pf_credentials WHERE id = $1::text::uuid))
               FROM hr_organization_keys",
            &[&poisoned],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (orgs - 1, 0, 1)
    );
    let f: String = one(&mut c, &format!("SELECT sqlstate FROM hr_migrations.hr_batch_failures WHERE operation = 'rewrap' AND row_id = '{poisoned}'"));
    assert_eq!(f, "22023");
    let s = status(&mut c, "integration_credentials");
    assert_eq!(s.blocked, 1, "{s:?}");
    assert!(
        s.note.contains("1 rows failed a rewrap or rollback"),
        "{}",
        s.note
    );
    let last_error: String = one(
        &mut c,
        "SELECT last_error FROM hr_migration_progress WHERE operation = 'rewrap'",
    );
    assert!(
        last_error.contains("hr_migrations.hr_batch_failures"),
        "{last_error}"
    );
}

/// The session backfill walks the table in physical order (a kind's range
/// action, hr_engine_batch): each batch reads its stretch of the heap once
/// through a TID range scan (counted in seq_tup_read but not in seq_scan),
/// never a row through the primary key, and goes past a row whose update
/// fails (recorded, the others done).
#[test]
fn session_backfill_reads_the_heap_once_in_order_and_goes_past_a_failing_row() {
    let cl = cluster(&[(1, random_key())]);
    cl.fixture_db("hr", 20_000);
    let mut c = cl.connect("hr");
    c.batch_execute(
        "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
    cl.migrate("hr", "002_portal_sessions.sql", &[]);
    // Every session pending again (what the bench's reset does), and one
    // whose update a constraint refuses.
    c.batch_execute(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE public.hr_candidate_portal_sessions SET organization_id = NULL; COMMIT;",
    )
    .unwrap();
    c.batch_execute("VACUUM ANALYZE public.hr_candidate_portal_sessions")
        .unwrap();
    let total: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions",
    );
    assert!(total >= 15_000, "{total}");
    let poisoned: String = one(
        &mut c,
        "SELECT id::text FROM public.hr_candidate_portal_sessions ORDER BY ctid OFFSET 7000 LIMIT 1",
    );
    c.batch_execute(&format!(
        "ALTER TABLE public.hr_candidate_portal_sessions ADD CONSTRAINT poison
           CHECK (id <> '{poisoned}' OR organization_id IS NULL) NOT VALID"
    ))
    .unwrap();

    let reads = |c: &mut Client| -> (i64, i64, i64, i64) {
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        let r = c
            .query_one(
                "SELECT seq_scan, seq_tup_read, coalesce(idx_tup_fetch, 0), n_tup_upd
                   FROM pg_stat_user_tables WHERE relid = 'public.hr_candidate_portal_sessions'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    let before = reads(&mut c);
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_backfill('portal_sessions', 1000)");
    assert!(ok, "{out}");
    assert_eq!(rows_finished(&out), Some(total - 1), "{out}");
    let batches = batch_timings(&out)
        .iter()
        .filter(|(rows, _)| *rows > 0)
        .count() as i64;
    assert!(batches >= 15, "{batches} batches:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let r = reads(&mut c);
        if r.3 - before.3 >= total - 1 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (seq_scans, tuples_read, fetched) =
        (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    eprintln!(
        "session backfill of {total} rows in {batches} batches: {tuples_read} tuples read by scans, \
         {seq_scans} sequential scans, {fetched} index fetches"
    );
    // Each batch: a TID range scan finding where its range ends, and the
    // UPDATE's over the same range: two reads of each row, plus the row
    // after each range, plus the failing row's range read again row by row
    // (at most two reads of a 1000-row range). The run's counts are
    // sequential scans of the whole table (each reads every row once). A
    // batch that started again from the start of the table would read
    // about batches / 2 times the table.
    let walked = tuples_read - seq_scans * total;
    assert!(
        walked <= 2 * total + 2 * batches + 2 * 1000,
        "{walked} tuples read by the walk for {total} rows in {batches} batches: not one pass in order"
    );
    assert!(
        seq_scans < batches,
        "{seq_scans} sequential scans in {batches} batches"
    );
    // Rows are reached by position, not through the primary key (a keyset
    // batch fetches each row two or three times by id).
    assert!(
        fetched < total / 10,
        "{fetched} index fetches for {total} rows"
    );

    let f: String = one(
        &mut c,
        &format!("SELECT sqlstate FROM hr_migrations.hr_batch_failures WHERE migration = 'portal_sessions' AND row_id = '{poisoned}'"),
    );
    assert_eq!(f, "23514");
    let s = status(&mut c, "portal_sessions");
    assert_eq!((s.pending, s.blocked), (0, 1), "{s:?}");
    let wrong: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions s JOIN public.hr_candidates c ON c.id = s.candidate_id
          WHERE s.organization_id IS DISTINCT FROM c.organization_id",
    );
    assert_eq!(wrong, 1, "only the refused row lacks its organization");
    // The next run goes past the recorded row without trying it again.
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_backfill('portal_sessions', 1000)");
    assert!(ok, "{out}");
    assert_eq!(rows_finished(&out), Some(0), "{out}");
}

#[test]
fn enforce_clears_in_committed_batches_and_resumes_after_a_crash() {
    let cl = cluster(&[(1, random_key())]);
    let mut c = credentials_world(&cl, 100_000);
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.secrets AS SELECT id, hr_integration_secret(id) AS secret FROM public.hr_job_board_integrations;",
    )
    .unwrap();
    c.batch_execute("SELECT hr_set_phase('integration_credentials', 'enforced')")
        .unwrap();
    let with_plaintext: i64 = status(&mut c, "integration_credentials").pending;
    assert!(with_plaintext > 90_000, "{with_plaintext}");

    // The rows the clearing will write, to read their transactions later.
    c.batch_execute(
        "CREATE TABLE oracle.with_plaintext AS SELECT id FROM public.hr_job_board_integrations
          WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    )
    .unwrap();
    // Started, then killed with -9 after some batches.
    let mut psql = Command::new("psql")
        .arg(cl.url("hr"))
        .args([
            "-X",
            "-c",
            "CALL hr_run_backfill('integration_credentials', 2000)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pid: i32 = loop {
        assert!(Instant::now() < deadline, "the clearing never got going");
        let r = c
            .query_opt(
                "SELECT a.pid FROM pg_stat_activity a, hr_migrations.hr_batch_progress p
                  WHERE p.migration = 'integration_credentials' AND p.operation = 'clear' AND p.rows_done >= 30000
                    AND a.query LIKE 'CALL hr_run_backfill%'",
                &[],
            )
            .unwrap();
        if let Some(r) = r {
            break r.get(0);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = psql.wait();
    // The postmaster ends every backend after the crash, this connection's
    // too: a connection made before it did so would be ended with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.simple_query("SELECT 1").is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server did not restart after kill -9"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut c = cl.wait_until_up("hr", 60);
    // Each committed batch is one transaction: the rows cleared so far carry
    // its id (xmin). Row locks held for one batch only: no transaction wrote
    // more than one batch (2,000 rows), and there were many of them.
    let r = c
        .query_one(
            "SELECT count(*)::int8, coalesce(max(n), 0)::int8 FROM (
                SELECT i.xmin::text, count(*) AS n FROM public.hr_job_board_integrations i
                  JOIN oracle.with_plaintext w USING (id)
                 WHERE i.api_key IS NULL AND i.api_secret IS NULL AND i.refresh_token IS NULL
                 GROUP BY 1) s",
            &[],
        )
        .unwrap();
    let (transactions, largest): (i64, i64) = (r.get(0), r.get(1));
    assert!(
        transactions >= 15 && largest <= 2000,
        "{transactions} transactions cleared rows, the largest {largest} rows: not committed batch by batch"
    );
    let s = status(&mut c, "integration_credentials");
    assert!(s.pending > 0 && s.pending < with_plaintext, "{s:?}");
    // Calling again finishes; every secret reads as before; nothing duplicated.
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_backfill('integration_credentials')");
    assert!(ok, "{out}");
    let s = status(&mut c, "integration_credentials");
    assert_eq!(
        (s.phase.as_str(), s.pending, s.blocked),
        ("enforced", 0, 0),
        "{s:?}"
    );
    let left: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert_eq!(left, 0);
    let differing: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.secrets o WHERE hr_integration_secret(o.id) IS DISTINCT FROM o.secret",
    );
    assert_eq!(differing, 0);
    let creds: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    let linked: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL",
    );
    assert_eq!(creds, linked);
}

/// Rows another session holds locked are skipped (SKIP LOCKED): status and
/// the engine must still agree that exactly those are pending, and the next
/// run must do exactly those.
#[test]
fn status_and_engine_agree_on_pending_rows_held_locked() {
    let cl = cluster(&[(1, random_key())]);
    cl.fixture_db("hr", 600);
    let mut c = cl.connect("hr");
    c.batch_execute(
        "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
    cl.migrate_all("hr");
    // New pending rows of each migration, written with triggers off (what
    // a bulk load or a restore does).
    c.batch_execute(
        "BEGIN; SET LOCAL session_replication_role = replica;
         INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
         SELECT id, 'Late', 'late-token-' || id FROM public.hr_candidates ORDER BY id LIMIT 40;
         INSERT INTO public.hr_candidate_portal_sessions (candidate_id)
         SELECT id FROM public.hr_candidates WHERE organization_id IS NOT NULL ORDER BY id LIMIT 40;
         INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key)
         SELECT id, 'late', 'late-key' FROM public.pf_organizations CROSS JOIN generate_series(1, 8) LIMIT 40;
         COMMIT;",
    )
    .unwrap();
    for (m, table, pending_rows) in [
        (
            "reference_tokens",
            "hr_references",
            "access_token LIKE 'late-token-%' AND access_token_hash IS NULL",
        ),
        (
            "portal_sessions",
            "hr_candidate_portal_sessions",
            "organization_id IS NULL",
        ),
        (
            "integration_credentials",
            "hr_job_board_integrations",
            "job_board_type = 'late' AND credential_id IS NULL",
        ),
    ] {
        assert_eq!(status(&mut c, m).pending, 40, "{m}");
        let mut holder = cl.connect("hr");
        holder
            .batch_execute(&format!(
                "BEGIN; SELECT id FROM public.{table} WHERE {pending_rows} ORDER BY id LIMIT 7 FOR UPDATE"
            ))
            .unwrap();
        let (ok, out) = cl.psql_c("hr", &format!("CALL hr_run_backfill('{m}', 10)"));
        assert!(ok, "{out}");
        assert_eq!(rows_finished(&out), Some(33), "{m}: {out}");
        assert!(
            out.contains("7 rows pending and 0 rows blocked remain"),
            "{m}: {out}"
        );
        let counted: i64 = one(
            &mut c,
            &format!("SELECT pending FROM hr_migrations.hr_operation_counts('{m}', 'backfill')"),
        );
        assert_eq!((status(&mut c, m).pending, counted), (7, 7), "{m}");
        assert_eq!(
            status(&mut c, m).phase,
            "migrated",
            "{m}: the phase moved back"
        );
        holder.batch_execute("COMMIT").unwrap();
        let (ok, out) = cl.psql_c("hr", &format!("CALL hr_run_backfill('{m}')"));
        assert!(ok, "{out}");
        assert_eq!(rows_finished(&out), Some(7), "{m}: {out}");
        assert_eq!(status(&mut c, m).pending, 0, "{m}");
    }
}

/// A fourth migration of an existing kind: a registry row, no code. Its
/// files come from the extension (hr_migration_file, the plan of its kind
/// rendered for its names). Through dual, migrated, enforced and the
/// rollback; a registry row its kind cannot plan is refused, naming the key.
#[test]
fn a_fourth_migration_of_an_existing_kind() {
    let cl = cluster(&[(1, random_key())]);
    cl.fixture_db("hr", 400);
    let mut c = cl.connect("hr");
    c.batch_execute(
        "CREATE TABLE public.hr_interview_slots (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             candidate_id uuid,
             starts_at timestamptz NOT NULL DEFAULT now(),
             updated_at timestamptz NOT NULL DEFAULT timestamptz '2025-01-01');
         INSERT INTO public.hr_interview_slots (candidate_id)
         SELECT id FROM public.hr_candidates WHERE organization_id IS NOT NULL;
         INSERT INTO hr_migrations.hr_migration_registry (migration, position, kind, table_name, default_batch_size, objects)
         VALUES ('interview_slots', 4, 'tenant_column', 'hr_interview_slots', 50, '{
             \"org_trigger\": \"hr_interview_slots_org\",
             \"touch_trigger\": \"hr_interview_slots_touch_updated_at\",
             \"fk\": \"fk_hr_interview_slots_organization_id\",
             \"index\": \"idx_hr_interview_slots_organization_id\",
             \"not_null_check\": \"hr_interview_slots_organization_id_not_null\",
             \"policy_select\": \"hr_interview_slots_select\",
             \"policy_insert\": \"hr_interview_slots_insert\",
             \"policy_update\": \"hr_interview_slots_update\",
             \"policy_delete\": \"hr_interview_slots_delete\"}');",
    )
    .unwrap();
    let slots: i64 = one(&mut c, "SELECT count(*) FROM public.hr_interview_slots");
    assert_eq!(status(&mut c, "interview_slots").phase, "not_applied");
    let script: String = one(
        &mut c,
        "SELECT hr_migrations.hr_migration_script('interview_slots')",
    );
    assert_eq!(script, "004_interview_slots.sql");

    // The registry refuses an entry whose names the kind cannot plan with.
    let e = c
        .batch_execute(
            "UPDATE hr_migrations.hr_migration_registry SET objects = objects - 'fk' WHERE migration = 'interview_slots'",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    assert!(
        error_text(&e).contains("does not name fk"),
        "{}",
        error_text(&e)
    );

    // Its files, as the extension renders them.
    let dir = cl.dir().join("interview_slots");
    std::fs::create_dir_all(&dir).unwrap();
    for (phase, sub) in [("dual", "migrations"), ("not_applied", "rollback")] {
        let text: String = one(
            &mut c,
            &format!("SELECT hr_migrations.hr_migration_file('interview_slots', '{phase}')"),
        );
        assert!(text.contains("CALL hr_migrations.hr_"), "{text}");
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join(&script), text).unwrap();
    }
    let out = cl.psql_ok("hr", &dir.join("migrations").join(&script), &[]);
    assert!(
        out.contains("interview_slots: phase dual -> migrated"),
        "{out}"
    );
    let s = status(&mut c, "interview_slots");
    assert_eq!(
        (s.phase.as_str(), s.total, s.migrated, s.pending, s.blocked),
        ("migrated", slots, slots, 0, 0)
    );
    let untouched: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_interview_slots WHERE updated_at = '2025-01-01'",
    );
    assert_eq!(untouched, slots, "the backfill moved updated_at");

    // RLS isolates it like the sessions.
    let org: String = one(
        &mut c,
        "SELECT organization_id::text FROM public.hr_interview_slots LIMIT 1",
    );
    let own: i64 = one(
        &mut c,
        &format!("SELECT count(*) FROM public.hr_interview_slots WHERE organization_id = '{org}'"),
    );
    let mut a = cl.connect_as("hr", "authenticator");
    a.batch_execute(&format!(
        "SET ROLE authenticated; SELECT set_config('request.jwt.claims', '{{\"organization_id\":\"{org}\"}}', false)"
    ))
    .unwrap();
    assert_eq!(
        one::<i64>(&mut a, "SELECT count(*) FROM public.hr_interview_slots"),
        own
    );

    // Enforced, then rolled back.
    c.batch_execute("CALL hr_run_phase('interview_slots', 'enforced')")
        .unwrap();
    let notnull: bool = one(
        &mut c,
        "SELECT hr_migrations.hr_column_not_null('public.hr_interview_slots', 'organization_id')",
    );
    assert!(notnull);
    assert_raises(
        &mut c,
        "INSERT INTO public.hr_interview_slots (candidate_id) VALUES (NULL)",
        "23502",
        &[],
    );
    cl.psql_ok("hr", &dir.join("rollback").join(&script), &[]);
    assert_eq!(status(&mut c, "interview_slots").phase, "not_applied");
    let col: bool = one(
        &mut c,
        "SELECT hr_migrations.hr_column_exists('public.hr_interview_slots', 'organization_id')",
    );
    assert!(!col);
    // The three built-in migrations never noticed.
    for m in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        assert_eq!(status(&mut c, m).phase, "not_applied", "{m}");
    }
}

/// The move of 20k integrations into an empty pf_credentials makes no
/// sequential scan of pf_credentials per row. A foreign-key check planned
/// while the table was empty is cached for the backend and would scan the
/// whole table for every row after that (quadratic); the engine gathers
/// statistics after the first batch so plans are made again. Counted with
/// pg_stat_user_tables before and after.
#[test]
fn credential_move_from_an_empty_table_makes_no_scan_per_row() {
    let cl = cluster(&[(1, random_key())]);
    cl.fixture_db("hr", 20_000);
    let mut c = cl.connect("hr");
    let empty: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    assert_eq!(empty, 0);
    let stats = |c: &mut Client| -> (i64, i64) {
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        let r = c
            .query_one(
                "SELECT seq_scan, seq_tup_read FROM pg_stat_user_tables \
                  WHERE relid = 'public.pf_credentials'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let (scans0, read0) = stats(&mut c);
    let out = cl.migrate("hr", "003_integration_credentials.sql", &[]);
    // The migrating backend has exited: its statistics are flushed on exit.
    std::thread::sleep(Duration::from_millis(1500));
    let (scans1, read1) = stats(&mut c);
    let moved: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    assert!(moved >= 15_000, "{moved} credentials moved:\n{out}");
    let batches = batch_timings(&out).len() as i64;
    let (scans, read) = (scans1 - scans0, read1 - read0);
    // A few whole-table scans are expected (VALIDATE CONSTRAINT, the status
    // counts); one per batch would still be linear; one per row is the bug.
    assert!(
        scans <= batches + 20,
        "{scans} sequential scans of pf_credentials for {moved} rows in {batches} batches"
    );
    assert!(
        read <= 30 * moved,
        "{read} tuples read by sequential scans of pf_credentials for {moved} rows"
    );
    eprintln!("moved {moved} rows in {batches} batches: {scans} seq scans, {read} tuples read");
}
