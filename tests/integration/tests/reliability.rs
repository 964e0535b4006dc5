//! Reliability: crashes in the middle of every batch operation,
//! a streaming standby promoted after the migrations, migrators and
//! application writers at once, and pgbench traffic while everything
//! applies and enforces. Hostile input and leaks are in hostile.rs and
//! leaks.rs. Every check counts rows one by one against an oracle kept
//! before the migration; docs/guarantees.md maps each guarantee to its test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hr_migrations_it::*;

/// The plaintext before any migration, for row-by-row checks: every
/// reference (with its token, NULL and '' included), every session with the
/// organization its candidate has, and every integration's secret.
const ORACLE: &str = "
    CREATE SCHEMA oracle;
    CREATE TABLE oracle.refs AS SELECT id, access_token FROM public.hr_references;
    CREATE TABLE oracle.sessions AS
        SELECT s.id, c.organization_id AS org
          FROM public.hr_candidate_portal_sessions s LEFT JOIN public.hr_candidates c ON c.id = s.candidate_id;
    CREATE TABLE oracle.secrets AS
        SELECT id, jsonb_build_object('api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token) AS secret
          FROM public.hr_job_board_integrations
         WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL;
    CREATE TABLE oracle.counts AS
        SELECT (SELECT count(*) FROM public.hr_references) AS refs,
               (SELECT count(*) FROM public.hr_candidate_portal_sessions) AS sessions,
               (SELECT count(*) FROM public.hr_job_board_integrations) AS integrations;
    GRANT USAGE ON SCHEMA oracle TO service_role;
    GRANT SELECT ON ALL TABLES IN SCHEMA oracle TO service_role;";

/// The DBA's step before migration 2 (docs/runbook.md): sessions that can
/// never get an organization are removed, so every migration can enforce.
const DROP_UNRESOLVABLE_SESSIONS: &str = "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)";

// Checks: each query counts violations (0 = the guarantee holds).

/// Rows lost or duplicated in the three tables.
const SAME_ROWS: &str = "SELECT abs((SELECT count(*) FROM public.hr_references) - refs)
                              + abs((SELECT count(*) FROM public.hr_candidate_portal_sessions) - sessions)
                              + abs((SELECT count(*) FROM public.hr_job_board_integrations) - integrations)
                           FROM oracle.counts";
/// Hashes that do not verify their row's original token.
const HASHES_VERIFY: &str =
    "SELECT count(*) FROM oracle.refs o JOIN public.hr_references r USING (id)
                              WHERE r.access_token_hash IS NOT NULL
                                AND NOT hr_verify_token(o.access_token, r.access_token_hash)";
/// Tokens (non-empty) without a hash.
const ALL_HASHED: &str = "SELECT count(*) FROM oracle.refs o JOIN public.hr_references r USING (id)
                           WHERE o.access_token <> '' AND r.access_token_hash IS NULL";
/// Sessions given an organization other than their candidate's.
const ORGS_RIGHT: &str = "SELECT count(*) FROM oracle.sessions o JOIN public.hr_candidate_portal_sessions s USING (id)
                           WHERE s.organization_id IS NOT NULL AND s.organization_id IS DISTINCT FROM o.org";
/// Sessions with a resolvable candidate still without organization.
const ALL_ORGS: &str =
    "SELECT count(*) FROM oracle.sessions o JOIN public.hr_candidate_portal_sessions s USING (id)
                         WHERE o.org IS NOT NULL AND s.organization_id IS NULL";
/// Secrets that do not read back (dual read: credential or plaintext).
const SECRETS_READ: &str = "SELECT count(*) FROM oracle.secrets o
                             WHERE hr_integration_secret(o.id) IS DISTINCT FROM o.secret";
/// Credentials nobody links to, or linked twice.
const NO_ORPHANS: &str = "SELECT (SELECT count(*) FROM public.pf_credentials c
                                   WHERE NOT EXISTS (SELECT 1 FROM public.hr_job_board_integrations i WHERE i.credential_id = c.id))
                               + (SELECT count(*) FROM (SELECT credential_id FROM public.hr_job_board_integrations
                                                         WHERE credential_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d)";
/// Moves logged other than exactly once.
const LOGGED_ONCE: &str = "SELECT (SELECT count(*) FROM (SELECT record_id FROM public.pf_credential_migrations
                                                          WHERE notes LIKE '%moved to pf_credentials'
                                                          GROUP BY 1 HAVING count(*) > 1) d)
                                + (SELECT count(*) FROM public.hr_job_board_integrations i
                                    WHERE i.credential_id IS NOT NULL
                                      AND NOT EXISTS (SELECT 1 FROM public.pf_credential_migrations l WHERE l.record_id = i.id))";
/// Secrets not in a credential.
const ALL_MOVED: &str =
    "SELECT count(*) FROM oracle.secrets o JOIN public.hr_job_board_integrations i USING (id)
                          WHERE i.credential_id IS NULL";
/// Integrations whose plaintext columns differ from the original.
const PLAINTEXT_ORIGINAL: &str = "SELECT count(*) FROM oracle.secrets o JOIN public.hr_job_board_integrations i USING (id)
                                   WHERE jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret,
                                                            'refresh_token', i.refresh_token) IS DISTINCT FROM o.secret";

fn violations(c: &mut Client, checks: &[&str], when: &str) {
    for q in checks {
        let n: i64 = one(c, q);
        assert_eq!(n, 0, "{when}: {n} violations of\n{q}");
    }
}

fn keyring_cluster(keys: usize, extra: &[&str]) -> (Cluster, PathBuf) {
    let ring: Vec<(u32, [u8; 32])> = (1..=keys as u32).map(|v| (v, random_key())).collect();
    let path = write_keyring(&ring);
    let mut conf = keyring_conf(&path, 1);
    conf.push("fsync=on".into());
    conf.extend(extra.iter().map(|s| s.to_string()));
    (Cluster::start(&conf), path)
}

// ---------------------------------------------------------------------------
// Crashes

#[derive(Clone, Copy, Debug)]
enum Crash {
    /// kill -9 of the backend running the batches (the postmaster resets
    /// every backend and replays the WAL).
    Kill9,
    /// pg_ctl stop -m immediate, then a start (recovery from the WAL).
    Immediate,
}

#[derive(Clone, Copy)]
enum Cmd {
    File(&'static str),
    Sql(&'static str),
}

struct Scenario {
    name: &'static str,
    template: &'static str,
    migration: &'static str,
    operation: &'static str,
    /// Run to completion before the operation (each a psql -c).
    prepare: &'static [&'static str],
    /// Rows the whole operation must process, counted before it starts.
    expected: Option<&'static str>,
    start: Cmd,
    rerun: Cmd,
    /// The operation is the migration's current-phase work (status shows it pending).
    phase_work: bool,
    /// Checks after the crash and after the re-run.
    always: &'static [&'static str],
    /// Checks after the crash only.
    at_crash: &'static [&'static str],
    /// Checks after the re-run only.
    finally: &'static [&'static str],
}

const COLUMN_GONE: &str = "SELECT count(*) FROM pg_attribute
                            WHERE attrelid = 'public.hr_references'::regclass AND attname = 'access_token' AND NOT attisdropped";
const PLAINTEXT_CLEARED: &str = "SELECT count(*) FROM public.hr_job_board_integrations
                                  WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL";
/// Credentials not sealed under their organization's data key generation 2,
/// and data keys still live that are not generation 2 under keyring key 2
/// (the superseded generation 1 must be destroyed once unused).
const ALL_RESEALED: &str = "SELECT (SELECT count(*) FROM public.pf_credentials
                                     WHERE hr_migrations.hr_envelope_generation(encrypted_value) IS DISTINCT FROM 2)
                                 + (SELECT count(*) FROM hr_migrations.hr_organization_keys
                                     WHERE wrapped_key IS NOT NULL AND (kek_version <> 2 OR generation <> 2))";
const NO_CREDENTIALS: &str = "SELECT count(*) FROM public.pf_credentials";
/// Integrations rolled back more than once, or not logged.
const ROLLED_BACK_ONCE: &str = "SELECT (SELECT count(*) - count(DISTINCT record_id) FROM public.pf_credential_migrations
                                         WHERE notes LIKE '%rolled back%')
                                      + (SELECT count(*) FROM oracle.secrets o WHERE NOT EXISTS
                                           (SELECT 1 FROM public.pf_credential_migrations l
                                             WHERE l.record_id = o.id AND l.notes LIKE '%rolled back%'))";
const CREDENTIAL_COLUMN_GONE: &str = "SELECT count(*) FROM pg_attribute
                                       WHERE attrelid = 'public.hr_job_board_integrations'::regclass
                                         AND attname = 'credential_id' AND NOT attisdropped";

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "token backfill",
            template: "t_fresh",
            migration: "reference_tokens",
            operation: "backfill",
            prepare: &[],
            expected: Some("SELECT count(*) FROM public.hr_references WHERE access_token <> ''"),
            start: Cmd::File("sql/migrations/001_reference_tokens.sql"),
            rerun: Cmd::File("sql/migrations/001_reference_tokens.sql"),
            phase_work: true,
            always: &[SAME_ROWS, HASHES_VERIFY],
            at_crash: &[],
            finally: &[ALL_HASHED],
        },
        Scenario {
            name: "session backfill",
            template: "t_fresh",
            migration: "portal_sessions",
            operation: "backfill",
            prepare: &[],
            expected: Some(
                "SELECT count(*) FROM public.hr_candidate_portal_sessions s
                   JOIN public.hr_candidates c ON c.id = s.candidate_id WHERE c.organization_id IS NOT NULL",
            ),
            start: Cmd::File("sql/migrations/002_portal_sessions.sql"),
            rerun: Cmd::File("sql/migrations/002_portal_sessions.sql"),
            phase_work: true,
            always: &[SAME_ROWS, ORGS_RIGHT],
            at_crash: &[],
            finally: &[ALL_ORGS],
        },
        Scenario {
            name: "credential move",
            template: "t_fresh",
            migration: "integration_credentials",
            operation: "backfill",
            prepare: &[],
            expected: Some("SELECT count(*) FROM oracle.secrets"),
            start: Cmd::File("sql/migrations/003_integration_credentials.sql"),
            rerun: Cmd::File("sql/migrations/003_integration_credentials.sql"),
            phase_work: true,
            always: &[SAME_ROWS, SECRETS_READ, NO_ORPHANS, LOGGED_ONCE, PLAINTEXT_ORIGINAL],
            at_crash: &[],
            finally: &[ALL_MOVED],
        },
        Scenario {
            name: "rewrap",
            template: "t_moved",
            migration: "integration_credentials",
            operation: "rewrap",
            // A new keyring key and a new data key for every organization:
            // the data keys are rewrapped, then every credential resealed.
            prepare: &[
                "ALTER SYSTEM SET hr_migrations.active_key_version = 2",
                "SELECT pg_reload_conf()",
                "SELECT pg_sleep(0.2)",
                "SELECT count(hr_rotate_organization_key(o)) FROM (SELECT DISTINCT organization_id FROM public.pf_credentials) s(o)",
            ],
            expected: Some("SELECT count(*) FROM public.pf_credentials"),
            start: Cmd::Sql("CALL hr_run_rewrap(:batch_size)"),
            rerun: Cmd::Sql("CALL hr_run_rewrap(:batch_size)"),
            phase_work: false,
            always: &[SAME_ROWS, SECRETS_READ, NO_ORPHANS],
            at_crash: &[],
            finally: &[ALL_RESEALED],
        },
        Scenario {
            name: "enforce clearing",
            template: "t_moved",
            migration: "integration_credentials",
            operation: "clear",
            prepare: &[],
            expected: Some("SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL"),
            start: Cmd::Sql("CALL hr_run_phase('integration_credentials', 'enforced', :batch_size)"),
            rerun: Cmd::Sql("CALL hr_run_backfill('integration_credentials', :batch_size)"),
            phase_work: true,
            always: &[SAME_ROWS, SECRETS_READ, NO_ORPHANS],
            at_crash: &[],
            finally: &[PLAINTEXT_CLEARED],
        },
        Scenario {
            name: "rollback",
            template: "t_moved",
            migration: "integration_credentials",
            operation: "rollback",
            // From enforced, so the plaintext must really come back from the credentials.
            prepare: &["CALL hr_run_phase('integration_credentials', 'enforced')"],
            expected: Some("SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL"),
            start: Cmd::File("sql/rollback/003_integration_credentials.sql"),
            rerun: Cmd::File("sql/rollback/003_integration_credentials.sql"),
            phase_work: false,
            always: &[SAME_ROWS],
            at_crash: &[SECRETS_READ, NO_ORPHANS],
            finally: &[PLAINTEXT_ORIGINAL, NO_CREDENTIALS, CREDENTIAL_COLUMN_GONE, ROLLED_BACK_ONCE],
        },
        Scenario {
            name: "contract",
            template: "t_tokens",
            migration: "reference_tokens",
            operation: "erase",
            prepare: &["CALL hr_run_phase('reference_tokens', 'enforced')"],
            expected: Some("SELECT count(*) FROM public.hr_references WHERE access_token IS NOT NULL"),
            start: Cmd::Sql("CALL hr_run_phase('reference_tokens', 'contracted', :batch_size)"),
            rerun: Cmd::Sql("CALL hr_run_backfill('reference_tokens', :batch_size)"),
            phase_work: true,
            always: &[SAME_ROWS, HASHES_VERIFY],
            at_crash: &[],
            finally: &[ALL_HASHED, COLUMN_GONE],
        },
    ]
}

const CRASH_BATCH: &str = "40";
/// Crashes that hit a batch in flight (not the pause between two).
static IN_BATCH: AtomicU64 = AtomicU64::new(0);

/// psql running `cmd` as the DBA, slowed down (a pause between batches) so
/// a crash lands in the middle; its backend is found by application_name.
fn spawn_psql(cl: &Cluster, db: &str, cmd: Cmd, app: &str, pause_ms: u32) -> Child {
    let mut p = Command::new("psql");
    p.arg(cl.url(db))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .env("PGAPPNAME", app)
        .env(
            "PGOPTIONS",
            format!(
                "-c hr_migrations.batch_pause_ms={pause_ms} -c hr_migrations.deprecation_period=0 \
                 -c hr_migrations.batch_size={CRASH_BATCH}"
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match cmd {
        Cmd::File(f) => p.arg("-f").arg(repo().join(f)),
        Cmd::Sql(s) => p.arg("-c").arg(s.replace(":batch_size", CRASH_BATCH)),
    };
    p.spawn().expect("spawn psql")
}

fn run_to_end(cl: &Cluster, db: &str, cmd: Cmd) -> String {
    let child = spawn_psql(cl, db, cmd, "rerun", 0);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "re-run failed:\n{text}");
    text
}

fn progress(c: &mut Client, migration: &str, operation: &str) -> Option<(String, i64, i64)> {
    c.query_opt(
        "SELECT state, rows_done, batches FROM hr_migration_progress WHERE migration = $1 AND operation = $2",
        &[&migration, &operation],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

fn make_templates(cl: &Cluster, scale: u32) {
    cl.fixture_db("t_fresh", scale);
    let mut c = cl.connect("t_fresh");
    c.batch_execute(ORACLE).unwrap();
    drop(c);
    let mut admin = cl.connect("postgres");
    for (t, script) in [
        ("t_moved", "003_integration_credentials.sql"),
        ("t_tokens", "001_reference_tokens.sql"),
    ] {
        admin
            .batch_execute(&format!("CREATE DATABASE {t} TEMPLATE t_fresh"))
            .unwrap();
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {t} SET search_path = public, extensions"
            ))
            .unwrap();
        cl.migrate(t, script, &[]);
    }
}

/// One crash in the middle of one operation, recovery, a re-run, and the
/// row-by-row checks. Returns the rows checked.
fn crash_scenario(cl: &mut Cluster, s: &Scenario, crash: Crash, db: &str) -> i64 {
    let what = format!("{} ({crash:?})", s.name);
    let mut admin = cl.connect("postgres");
    admin
        .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {}", s.template))
        .unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET search_path = public, extensions"
        ))
        .unwrap();
    drop(admin);
    for p in s.prepare {
        let (ok, out) = cl.psql_c(db, p);
        assert!(ok, "{what}: prepare {p}:\n{out}");
    }
    std::thread::sleep(Duration::from_millis(200)); // a reloaded setting reaches new backends
    let mut c = cl.connect(db);
    let expected: Option<i64> = s.expected.map(|q| one(&mut c, q));

    // Started, then crashed after a few committed batches.
    let app = format!("crash-{db}");
    let mut child = spawn_psql(cl, db, s.start, &app, 30);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = progress(&mut c, s.migration, s.operation).map_or(0, |p| p.2);
        if done >= 3 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: finished ({st}) before 3 batches:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "{what}: no batch in 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = backend_pid(&mut c, &app, 10);
    // Aim at a batch in flight rather than the pause between two.
    let mut in_batch = false;
    for _ in 0..2000 {
        let w: Option<String> = c
            .query_one(
                "SELECT wait_event FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if w.as_deref() != Some("PgSleep") {
            in_batch = true;
            break;
        }
    }
    drop(c);
    if in_batch {
        IN_BATCH.fetch_add(1, Ordering::SeqCst);
    }
    match crash {
        Crash::Kill9 => kill_9(pid),
        Crash::Immediate => {
            cl.stop_immediate();
            cl.start_again();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "{what}: psql did not notice the crash"
    );

    // After recovery: consistent, partial, resumable. The postmaster resets
    // every backend shortly after a kill -9 of one: a connection made in
    // between would be cut, so the server must answer twice, apart.
    std::thread::sleep(Duration::from_millis(500));
    let mut c = loop {
        let mut c = cl.wait_until_up(db, 60);
        std::thread::sleep(Duration::from_millis(300));
        if c.simple_query("SELECT 1").is_ok() {
            break c;
        }
    };
    let (state, rows_done, batches) = progress(&mut c, s.migration, s.operation)
        .unwrap_or_else(|| panic!("{what}: no progress row after the crash"));
    assert_eq!(state, "stopped", "{what}: progress after the crash");
    assert!(batches >= 3, "{what}: {batches} batches survived");
    if let Some(e) = expected {
        assert!(
            rows_done > 0 && rows_done < e,
            "{what}: {rows_done} of {e} rows done at the crash"
        );
    }
    if s.phase_work {
        let st = status(&mut c, s.migration);
        assert!(
            st.pending > 0,
            "{what}: nothing pending after the crash: {st:?}"
        );
    }
    violations(&mut c, s.always, &format!("{what}, after the crash"));
    violations(&mut c, s.at_crash, &format!("{what}, after the crash"));

    // The re-run finishes; every row was done exactly once.
    let out = run_to_end(cl, db, s.rerun);
    let mut c = cl.connect(db);
    if let (Some(e), Some((state, rows_done, _))) =
        (expected, progress(&mut c, s.migration, s.operation))
    {
        assert_eq!(
            state, "finished",
            "{what}: progress after the re-run\n{out}"
        );
        assert_eq!(
            rows_done, e,
            "{what}: rows done once each, across the crash\n{out}"
        );
    }
    violations(&mut c, s.always, &format!("{what}, after the re-run"));
    violations(&mut c, s.finally, &format!("{what}, after the re-run"));
    if s.operation == "rewrap" {
        c.batch_execute("ALTER SYSTEM RESET hr_migrations.active_key_version")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
    one::<i64>(
        &mut c,
        "SELECT refs + sessions + integrations FROM oracle.counts",
    )
}

#[test]
fn a_crash_in_every_batch_operation_loses_and_duplicates_nothing() {
    let (mut cl, _ring) = keyring_cluster(2, &[]);
    make_templates(&cl, 3000);
    let mut crashes = 0;
    let mut rows = 0;
    for (i, s) in scenarios().iter().enumerate() {
        for (j, crash) in [Crash::Kill9, Crash::Immediate].into_iter().enumerate() {
            let db = format!("crash_{i}_{j}");
            rows += crash_scenario(&mut cl, s, crash, &db);
            crashes += 1;
        }
    }
    eprintln!(
        "reliability: {crashes} crashes survived (kill -9 and immediate shutdown in 7 operations, {} of them in a batch in flight), {rows} rows checked one by one",
        IN_BATCH.load(Ordering::SeqCst)
    );
}

// ---------------------------------------------------------------------------
// A streaming standby

/// Samples the standby's replay lag on the primary every 100 ms while it runs.
struct LagSampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<(f64, i64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LagSampler {
    fn start(url: String) -> LagSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new((0.0f64, 0i64)));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            while !s.load(Ordering::SeqCst) {
                let r = c
                    .query_one(
                        "SELECT coalesce(max(extract(epoch FROM replay_lag) * 1000), 0)::float8,
                                coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint
                           FROM pg_stat_replication",
                        &[],
                    )
                    .unwrap();
                let (ms, bytes): (f64, i64) = (r.get(0), r.get(1));
                let mut g = m.lock().unwrap();
                g.0 = g.0.max(ms);
                g.1 = g.1.max(bytes);
                drop(g);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        LagSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    /// (max replay lag in ms, max bytes of WAL not yet replayed).
    fn finish(mut self) -> (f64, i64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        *self.max.lock().unwrap()
    }
}

fn wait_for_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = one(primary, "SELECT pg_current_wal_lsn()::text");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind: i64 = standby
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if behind <= 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby is {behind} bytes behind after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_promoted_standby_verifies_every_token_and_reads_every_secret() {
    let (primary, _ring) = keyring_cluster(1, &[]);
    primary.fixture_db("hr", 20_000);
    let mut p = primary.connect("hr");
    p.batch_execute(ORACLE).unwrap();
    p.batch_execute(DROP_UNRESOLVABLE_SESSIONS).unwrap();
    p.batch_execute(
        "DELETE FROM oracle.sessions o WHERE o.org IS NULL;
         UPDATE oracle.counts SET sessions = (SELECT count(*) FROM oracle.sessions);",
    )
    .unwrap();
    let standby = primary.standby::<&str>(&[]);
    let mut s = standby.wait_until_up("hr", 60);
    let in_recovery: bool = one(&mut s, "SELECT pg_is_in_recovery()");
    assert!(in_recovery);

    // Every migration with the engine's default pacing, the lag sampled.
    let mut lags = Vec::new();
    for (m, script) in migrations(&mut p) {
        let sampler = LagSampler::start(primary.url("hr"));
        let t0 = Instant::now();
        primary.migrate("hr", &script, &[]);
        let (ms, bytes) = sampler.finish();
        lags.push((m, t0.elapsed().as_secs_f64(), ms, bytes));
    }
    for m in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        let sampler = LagSampler::start(primary.url("hr"));
        let t0 = Instant::now();
        let (ok, out) = primary.psql_c("hr", &format!("CALL hr_run_phase('{m}', 'enforced')"));
        assert!(ok, "{out}");
        let (ms, bytes) = sampler.finish();
        lags.push((
            format!("{m} enforce"),
            t0.elapsed().as_secs_f64(),
            ms,
            bytes,
        ));
    }
    for (m, secs, ms, bytes) in &lags {
        eprintln!("standby: {m}: {secs:.1} s on the primary, replay lag at most {ms:.0} ms / {bytes} bytes of WAL");
    }

    // Read-only on the standby: the pure checks.
    wait_for_replay(&mut p, &mut s);
    violations(
        &mut s,
        &[SAME_ROWS, HASHES_VERIFY, ALL_HASHED, ORGS_RIGHT, ALL_ORGS],
        "on the standby",
    );

    // Promoted: the application's own calls, with the same keyring.
    drop(s);
    standby.promote();
    let mut s = standby.wait_until_up("hr", 60);
    let in_recovery: bool = one(&mut s, "SELECT pg_is_in_recovery()");
    assert!(!in_recovery, "still a standby after pg_ctl promote");
    s.batch_execute("SET ROLE service_role").unwrap();
    let bad_tokens: i64 = one(
        &mut s,
        "SELECT count(*) FROM oracle.refs o WHERE o.access_token <> ''
            AND NOT hr_verify_reference_token(o.id, o.access_token)",
    );
    let tokens: i64 = one(
        &mut s,
        "SELECT count(*) FROM oracle.refs WHERE access_token <> ''",
    );
    let bad_secrets: i64 = one(&mut s, SECRETS_READ);
    let secrets: i64 = one(&mut s, "SELECT count(*) FROM oracle.secrets");
    s.batch_execute("RESET ROLE").unwrap();
    assert_eq!((bad_tokens, bad_secrets), (0, 0), "on the promoted standby");
    for st in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        assert_eq!(
            status(&mut s, st).phase,
            "enforced",
            "{st} on the promoted standby"
        );
    }
    eprintln!("standby: promoted; {tokens} tokens verified and {secrets} secrets read there");
}

// ---------------------------------------------------------------------------
// Migrators and application writers at once

/// One application write, as service_role, with the oracle updated in the
/// same transaction. Returns false when the write's path is not open yet
/// (new-style call before its migration is applied).
fn app_write(c: &mut Client, kind: u64, n: u64) -> Result<bool, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.batch_execute("SET LOCAL ROLE service_role")?;
    let tok = format!("tok-{n}-{}", n.wrapping_mul(2654435761) % 1_000_003);
    let r = match kind {
        // A reference written by old code, with a plaintext token.
        0 => tx.execute(
            "WITH r AS (INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
                        SELECT id, 'writer', $1 FROM public.hr_candidates ORDER BY id OFFSET $2::int % 1000 LIMIT 1
                        RETURNING id, access_token)
             INSERT INTO oracle.refs SELECT id, access_token FROM r",
            &[&tok, &((n % 1000) as i32)],
        ),
        // Old code rotates a token.
        1 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.refs WHERE access_token <> '' OFFSET $2::int LIMIT 1),
                  r AS (UPDATE public.hr_references h SET access_token = $1 FROM t WHERE h.id = t.id RETURNING h.id)
             UPDATE oracle.refs o SET access_token = $1 FROM r WHERE o.id = r.id",
            &[&tok, &((n % 2000) as i32)],
        ),
        // New code issues a token.
        2 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.refs OFFSET $1::int LIMIT 1)
             UPDATE oracle.refs o SET access_token = hr_issue_reference_token(t.id) FROM t WHERE o.id = t.id",
            &[&((n % 2000) as i32)],
        ),
        // New code revokes a token.
        3 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.refs OFFSET $1::int LIMIT 1)
             UPDATE oracle.refs o SET access_token = NULL FROM t WHERE o.id = t.id AND hr_revoke_reference_token(t.id) IS NOT NULL",
            &[&((n % 2000) as i32)],
        ),
        // A portal login by old code (no organization_id).
        4 => tx.execute(
            "WITH c AS (SELECT id, organization_id FROM public.hr_candidates WHERE organization_id IS NOT NULL
                         ORDER BY id OFFSET $1::int LIMIT 1),
                  s AS (INSERT INTO public.hr_candidate_portal_sessions (candidate_id, session_token)
                        SELECT id, md5(random()::text) FROM c RETURNING id)
             INSERT INTO oracle.sessions SELECT s.id, c.organization_id FROM s, c",
            &[&((n % 1000) as i32)],
        ),
        // A logout.
        5 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.sessions OFFSET $1::int LIMIT 1),
                  d AS (DELETE FROM public.hr_candidate_portal_sessions s USING t WHERE s.id = t.id RETURNING s.id)
             DELETE FROM oracle.sessions o USING d WHERE o.id = d.id",
            &[&((n % 2000) as i32)],
        ),
        // Old code rotates a refresh token in the plaintext column.
        6 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.secrets OFFSET $2::int LIMIT 1),
                  i AS (UPDATE public.hr_job_board_integrations x SET refresh_token = $1 FROM t WHERE x.id = t.id
                        RETURNING x.id, x.api_key, x.api_secret, x.refresh_token)
             UPDATE oracle.secrets o SET secret = jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret,
                                                                     'refresh_token', i.refresh_token)
               FROM i WHERE o.id = i.id",
            &[&tok, &((n % 2000) as i32)],
        ),
        // New code stores a secret.
        7 => tx.execute(
            "WITH t AS (SELECT id FROM oracle.secrets OFFSET $2::int LIMIT 1),
                  v AS (SELECT t.id, jsonb_build_object('api_key', 'k-' || $1, 'api_secret', NULL, 'refresh_token', 'r-' || $1) AS s FROM t)
             UPDATE oracle.secrets o SET secret = v.s FROM v
              WHERE o.id = v.id AND hr_set_integration_secret(v.id, v.s::text) IS NOT NULL",
            &[&tok, &((n % 2000) as i32)],
        ),
        // An integration created by old code, with plaintext.
        _ => tx.execute(
            "WITH i AS (INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key, refresh_token)
                        SELECT id, 'linkedin', 'k-' || $1, 'r-' || $1 FROM public.pf_organizations ORDER BY id LIMIT 1
                        RETURNING id, api_key, api_secret, refresh_token)
             INSERT INTO oracle.secrets SELECT id, jsonb_build_object('api_key', api_key, 'api_secret', api_secret,
                                                                      'refresh_token', refresh_token) FROM i",
            &[&tok],
        ),
    };
    match r {
        Ok(_) => {
            tx.commit()?;
            Ok(true)
        }
        Err(e) if sqlstate(&e) == "55000" && error_text(&e).contains("is not applied") => Ok(false),
        Err(e) => Err(e),
    }
}

#[test]
fn migrators_and_application_writers_at_once_give_exactly_once_results() {
    let (cl, _ring) = keyring_cluster(1, &[]);
    cl.fixture_db("hr", 5000);
    let mut c = cl.connect("hr");
    c.batch_execute(ORACLE).unwrap();
    c.batch_execute(DROP_UNRESOLVABLE_SESSIONS).unwrap();
    c.batch_execute(
        "DELETE FROM oracle.sessions o WHERE o.org IS NULL;
         GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA oracle TO service_role;",
    )
    .unwrap();

    let integrations_without_secret: i64 = one(
        &mut c,
        "SELECT (SELECT count(*) FROM public.hr_job_board_integrations) - (SELECT count(*) FROM oracle.secrets)",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (stop, writes, url) = (stop.clone(), writes.clone(), cl.url("hr"));
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                let mut n = w * 1_000_000;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    match app_write(&mut c, n % 9, n) {
                        Ok(true) => {
                            writes.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(false) => {}
                        Err(e) => panic!(
                            "writer {w}, write kind {}: {} {}",
                            n % 9,
                            sqlstate(&e),
                            error_text(&e)
                        ),
                    }
                }
            })
        })
        .collect();

    // For each migration: its script (small batches, so it lasts) and two
    // more migrators running the backfill at the same time.
    let mut migrator_runs = 0;
    for (m, script) in migrations(&mut c) {
        let done = Arc::new(AtomicBool::new(false));
        let extra: Vec<_> = (0..2)
            .map(|_| {
                let (done, url, m) = (done.clone(), cl.url("hr"), m.clone());
                std::thread::spawn(move || {
                    let mut runs = 0;
                    while !done.load(Ordering::SeqCst) {
                        let out = Command::new("psql")
                            .arg(&url)
                            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
                            .arg(format!("CALL hr_run_backfill('{m}', 50)"))
                            .output()
                            .unwrap();
                        let text = String::from_utf8_lossy(&out.stderr).to_string();
                        if !out.status.success() {
                            assert!(
                                text.contains("is not applied"),
                                "a second migrator of {m} failed:\n{text}"
                            );
                            std::thread::sleep(Duration::from_millis(50));
                        } else {
                            runs += 1;
                        }
                    }
                    runs
                })
            })
            .collect();
        cl.migrate_with("hr", &script, "-c hr_migrations.batch_size=50");
        done.store(true, Ordering::SeqCst);
        for t in extra {
            migrator_runs += t.join().unwrap();
        }
        migrator_runs += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // What the writers left for a batch (none expected: their rows went
    // through the triggers) is picked up; the phases stay where they are.
    for (m, _) in migrations(&mut c) {
        let (ok, out) = cl.psql_c("hr", &format!("CALL hr_run_backfill('{m}')"));
        assert!(ok, "{out}");
    }

    let mut c = cl.connect("hr");
    let without_secret: i64 = one(
        &mut c,
        "SELECT (SELECT count(*) FROM public.hr_job_board_integrations) - (SELECT count(*) FROM oracle.secrets)",
    );
    assert_eq!(
        without_secret, integrations_without_secret,
        "integrations lost or duplicated"
    );
    let refs: (i64, i64) = (
        one(&mut c, "SELECT count(*) FROM public.hr_references"),
        one(&mut c, "SELECT count(*) FROM oracle.refs"),
    );
    assert_eq!(refs.0, refs.1, "references lost or duplicated");
    let sessions: (i64, i64) = (
        one(
            &mut c,
            "SELECT count(*) FROM public.hr_candidate_portal_sessions",
        ),
        one(&mut c, "SELECT count(*) FROM oracle.sessions"),
    );
    assert_eq!(sessions.0, sessions.1, "sessions lost or duplicated");
    violations(
        &mut c,
        &[
            HASHES_VERIFY,
            ALL_HASHED,
            // Revoked tokens stay revoked.
            "SELECT count(*) FROM oracle.refs o JOIN public.hr_references r USING (id)
              WHERE o.access_token IS NULL AND r.access_token_hash IS NOT NULL",
            ORGS_RIGHT,
            ALL_ORGS,
            SECRETS_READ,
            NO_ORPHANS,
            // The backfill moved no integration twice.
            "SELECT count(*) FROM (SELECT record_id FROM public.pf_credential_migrations
                                   WHERE notes LIKE '%moved to pf_credentials' GROUP BY 1 HAVING count(*) > 1) d",
            ALL_MOVED,
        ],
        "after migrators and writers",
    );
    let rows: i64 = one(
        &mut c,
        "SELECT (SELECT count(*) FROM oracle.refs) + (SELECT count(*) FROM oracle.sessions) + (SELECT count(*) FROM oracle.secrets)",
    );
    eprintln!(
        "concurrency: 3 migrators per migration ({migrator_runs} runs) and 4 application writers ({} writes committed); {rows} rows checked one by one",
        writes.load(Ordering::SeqCst)
    );
}

// ---------------------------------------------------------------------------
// pgbench traffic while every migration applies and enforces

/// The application's side, as it would be deployed during the migrations:
/// it takes the new path as soon as a migration is applied (55000 "not
/// applied" before) and checks every answer against the oracle, so a wrong
/// answer is a client error like any other.
const APP: &str = r#"
CREATE SCHEMA app;
CREATE TABLE app.refs AS
    SELECT row_number() OVER (ORDER BY id) AS n, id, access_token AS token
      FROM public.hr_references WHERE access_token ~ '^[A-Za-z0-9_-]{43}$';
CREATE TABLE app.secrets AS
    SELECT row_number() OVER (ORDER BY id) AS n, id,
           jsonb_build_object('api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token) AS secret
      FROM public.hr_job_board_integrations WHERE api_key <> '' AND api_secret IS NOT NULL AND refresh_token IS NOT NULL;
CREATE TABLE app.orgs AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM public.pf_organizations;
CREATE TABLE app.candidates AS
    SELECT row_number() OVER (ORDER BY id) AS n, id FROM public.hr_candidates WHERE organization_id IS NOT NULL;
CREATE UNIQUE INDEX ON app.refs (n);
CREATE UNIQUE INDEX ON app.secrets (n);
CREATE UNIQUE INDEX ON app.orgs (n);
CREATE UNIQUE INDEX ON app.candidates (n);

CREATE FUNCTION app.verify(k bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE r record; ok boolean;
BEGIN
    SELECT * INTO r FROM app.refs WHERE n = k;
    BEGIN
        ok := hr_verify_reference_token(r.id, r.token);
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        SELECT h.access_token = r.token INTO ok FROM public.hr_references h WHERE h.id = r.id;
    END;
    IF ok IS NOT TRUE THEN RAISE EXCEPTION 'reference % did not verify', k; END IF;
    RETURN ok;
END $$;

CREATE FUNCTION app.secret(k bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE r record; s jsonb;
BEGIN
    SELECT * INTO r FROM app.secrets WHERE n = k;
    BEGIN
        s := hr_integration_secret(r.id);
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        SELECT jsonb_build_object('api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token)
          INTO s FROM public.hr_job_board_integrations WHERE id = r.id;
    END;
    IF s IS DISTINCT FROM r.secret THEN RAISE EXCEPTION 'integration % did not read back', k; END IF;
    RETURN true;
END $$;

-- A new integration: plaintext columns before the migration is enforced
-- (old code), hr_set_integration_secret after.
CREATE FUNCTION app.new_integration(o bigint, v text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE i uuid;
BEGIN
    BEGIN
        INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key, refresh_token)
        SELECT id, 'indeed', 'k-' || v, 'r-' || v FROM app.orgs WHERE n = o;
    EXCEPTION WHEN check_violation THEN
        INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type)
        SELECT id, 'indeed' FROM app.orgs WHERE n = o RETURNING id INTO i;
        PERFORM hr_set_integration_secret(i, jsonb_build_object('api_key', 'k-' || v, 'api_secret', NULL,
                                                                'refresh_token', 'r-' || v)::text);
    END;
END $$;

GRANT USAGE ON SCHEMA app TO service_role, authenticated;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO service_role, authenticated;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO service_role;
"#;

/// pgbench scripts (name, weight, body): server-side code as service_role,
/// tenant reads as authenticated with the request's claims, old-style writes.
fn pgbench_scripts(
    refs: i64,
    secrets: i64,
    orgs: i64,
    candidates: i64,
) -> Vec<(&'static str, u32, String)> {
    vec![
        (
            "verify",
            4,
            format!("\\set k random(1, {refs})\nBEGIN;\nSET LOCAL ROLE service_role;\nSELECT app.verify(:k);\nEND;\n"),
        ),
        (
            "tenant",
            4,
            format!(
                "\\set o random(1, {orgs})\nBEGIN;\nSET LOCAL ROLE authenticated;\n\
                 SELECT set_config('request.jwt.claims', json_build_object('role', 'authenticated', \
                 'organization_id', (SELECT id FROM app.orgs WHERE n = :o))::text, true);\n\
                 SELECT count(*) FROM public.hr_candidate_portal_sessions;\nEND;\n"
            ),
        ),
        (
            "secret",
            2,
            format!("\\set k random(1, {secrets})\nBEGIN;\nSET LOCAL ROLE service_role;\nSELECT app.secret(:k);\nEND;\n"),
        ),
        (
            "token_write",
            1,
            format!(
                "\\set c random(1, {candidates})\nBEGIN;\nSET LOCAL ROLE service_role;\n\
                 INSERT INTO public.hr_references (candidate_id, referee_name, access_token)\n\
                 SELECT id, 'pgbench', md5(random()::text) FROM app.candidates WHERE n = :c;\nEND;\n"
            ),
        ),
        (
            "login",
            1,
            format!(
                "\\set c random(1, {candidates})\nBEGIN;\nSET LOCAL ROLE service_role;\n\
                 INSERT INTO public.hr_candidate_portal_sessions (candidate_id, session_token)\n\
                 SELECT id, md5(random()::text) FROM app.candidates WHERE n = :c;\nEND;\n"
            ),
        ),
        (
            "integration_write",
            1,
            format!(
                "\\set o random(1, {orgs})\nBEGIN;\nSET LOCAL ROLE service_role;\n\
                 SELECT app.new_integration(:o, md5(random()::text));\nEND;\n"
            ),
        ),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn pgbench_traffic_sees_no_error_while_everything_applies_and_enforces() {
    let (cl, _ring) = keyring_cluster(1, &[]);
    cl.fixture_db("hr", 10_000);
    let mut c = cl.connect("hr");
    c.batch_execute(DROP_UNRESOLVABLE_SESSIONS).unwrap();
    c.batch_execute(APP).unwrap();
    let counts: Vec<i64> = ["app.refs", "app.secrets", "app.orgs", "app.candidates"]
        .iter()
        .map(|t| one(&mut c, &format!("SELECT count(*) FROM {t}")))
        .collect();
    let dir = std::env::temp_dir().join(format!("hrm-pgbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = Vec::new();
    for (name, weight, body) in pgbench_scripts(counts[0], counts[1], counts[2], counts[3]) {
        let f = dir.join(format!("{name}.sql"));
        std::fs::write(&f, body).unwrap();
        args.push("-f".into());
        args.push(format!("{}@{weight}", f.display()));
    }
    let secs = 45;
    let t0 = epoch();
    let bench = Command::new("pgbench")
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-c",
            "4",
            "-j",
            "2",
            "-l",
        ])
        .arg("-p")
        .arg(cl.port.to_string())
        .arg("-T")
        .arg(secs.to_string())
        .arg(format!("--log-prefix={}/tx", dir.display()))
        .args(&args)
        .arg("hr")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pgbench");

    // Before: 8 s of traffic. During: every migration, then every enforce.
    std::thread::sleep(Duration::from_secs(8));
    let start = epoch();
    cl.migrate_all("hr");
    for m in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        let (ok, out) = cl.psql_c("hr", &format!("CALL hr_run_phase('{m}', 'enforced')"));
        assert!(ok, "{out}");
    }
    let end = epoch();
    assert!(
        end + 5.0 < t0 + secs as f64,
        "the migrations took {:.1} s: too little of the {secs} s pgbench run is left to measure after them",
        end - start
    );
    let out = bench.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    assert!(
        !stderr.contains("aborted") && !stdout.contains("aborted"),
        "a pgbench client aborted:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "failed transactions:\n{stdout}"
    );

    // Latency per window from the per-transaction logs.
    let mut windows: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !p.file_name().unwrap().to_string_lossy().starts_with("tx.") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                continue;
            }
            let latency_ms = f[2].parse::<f64>().unwrap() / 1000.0;
            let at = f[4].parse::<f64>().unwrap() + f[5].parse::<f64>().unwrap() / 1e6;
            let w = if at < start {
                "1 before"
            } else if at <= end {
                "2 during"
            } else {
                "3 after"
            };
            windows.entry(w).or_default().push(latency_ms);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (w, v) in windows.iter_mut() {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!(!v.is_empty(), "no transaction {w} the migrations");
        eprintln!(
            "pgbench {w:<8}: {:>6} transactions, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 99.0),
            v[v.len() - 1]
        );
    }
    assert_eq!(windows.len(), 3, "{:?}", windows.keys().collect::<Vec<_>>());
    eprintln!(
        "pgbench: migrations and enforce took {:.1} s under 4 clients, zero client errors",
        end - start
    );
}
