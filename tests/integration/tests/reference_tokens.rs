//! Migration 1 (reference_tokens) end to end on real servers: the 001 script
//! applied with psql at 10k references, old-style writers, the enforced
//! phase and back, a backfill killed with SIGKILL and resumed, and salts
//! across preloaded backends.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hr_migrations_it::*;

const SCALE: u32 = 10_000;

fn tokens_in_fixture(c: &mut Client) -> i64 {
    one(
        c,
        "SELECT count(*) FROM oracle.refs WHERE access_token IS NOT NULL AND access_token <> ''",
    )
}

fn keep_oracle(c: &mut Client) {
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.refs AS SELECT id, access_token, updated_at FROM public.hr_references;",
    )
    .unwrap();
}

/// Inserts a reference the way pre-migration code does (plaintext only),
/// as the app's role, and returns its id.
fn insert_legacy_reference(c: &mut Client, token: &str) -> String {
    let mut tx = c.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE service_role").unwrap();
    let id: String = tx
        .query_one(
            "INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
             SELECT id, 'Legacy Writer', $1 FROM public.hr_candidates ORDER BY id LIMIT 1
             RETURNING id::text",
            &[&token],
        )
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    id
}

fn stored(c: &mut Client, id: &str) -> (Option<String>, Option<String>) {
    let r = c
        .query_one(
            "SELECT access_token, access_token_hash FROM public.hr_references WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn verify(c: &mut Client, id: &str, token: &str) -> bool {
    c.query_one(
        "SELECT hr_verify_reference_token($1::text::uuid, $2)",
        &[&id, &token],
    )
    .unwrap()
    .get(0)
}

#[test]
fn migration_1_end_to_end() {
    let cl = Cluster::start::<&str>(&[]);
    cl.fixture_db("hr", SCALE);
    let mut c = cl.connect("hr");
    keep_oracle(&mut c);
    let n_tokens = tokens_in_fixture(&mut c);
    assert_eq!(status(&mut c, "reference_tokens").phase, "not_applied");

    let out = cl.migrate("hr", "001_reference_tokens.sql", &[]);
    assert!(
        out.contains("backfill: finished"),
        "no progress report:\n{out}"
    );
    let samples: Vec<String> = c
        .query(
            "SELECT access_token FROM oracle.refs WHERE length(access_token) >= 8 LIMIT 300",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &samples {
        assert!(!out.contains(t.as_str()), "psql output contains a token");
    }

    let Status {
        phase,
        total,
        migrated,
        pending,
        blocked,
        ..
    } = status(&mut c, "reference_tokens");
    assert_eq!(
        (phase.as_str(), total, migrated, pending, blocked),
        ("migrated", SCALE as i64, n_tokens, 0, 0)
    );

    // The backfill left updated_at alone and stored hashes, not tokens.
    let moved: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_references r JOIN oracle.refs o USING (id)
          WHERE r.updated_at IS DISTINCT FROM o.updated_at",
    );
    assert_eq!(moved, 0, "the backfill changed updated_at");
    let bad_hashes: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_references
          WHERE access_token IS NOT NULL
            AND (length(access_token_hash) <> 64 OR NOT hr_verify_token(access_token, access_token_hash)
                 OR (access_token <> '' AND position(convert_to(access_token, 'UTF8') IN decode(access_token_hash, 'base64')) > 0))",
    );
    assert_eq!(bad_hashes, 0);

    // Every old token verifies by reference id through the hash path.
    let ok: i64 = one(
        &mut c,
        "SELECT count(*) FILTER (WHERE hr_verify_reference_token(id, access_token))
           FROM oracle.refs WHERE access_token IS NOT NULL",
    );
    assert_eq!(ok, n_tokens);
    let by_hash: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_reference_token_validations WHERE method = 'hash' AND success",
    );
    assert_eq!(
        by_hash, n_tokens,
        "old tokens should verify through the hash"
    );
    let wrong: i64 = one(
        &mut c,
        "SELECT count(*) FILTER (WHERE hr_verify_reference_token(id, access_token || 'x'))
           FROM (SELECT * FROM oracle.refs WHERE access_token IS NOT NULL LIMIT 500) s",
    );
    assert_eq!(wrong, 0);
    let unknown: bool = one(
        &mut c,
        "SELECT hr_verify_reference_token(gen_random_uuid(), 'anything')",
    );
    assert!(!unknown);
    let nulls: bool = one(&mut c, "SELECT hr_verify_reference_token(NULL, NULL)");
    assert!(!nulls, "NULL input must give false, not NULL");

    // The validations table cannot hold a token: its only text column is the method.
    let text_cols: Vec<String> = c
        .query(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = 'hr_reference_token_validations'
                AND data_type IN ('text', 'character varying', 'character', 'bytea', 'json', 'jsonb')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(text_cols, vec!["method".to_string()]);

    // Old-style code writes a plaintext token: the trigger hashes it.
    let legacy = insert_legacy_reference(&mut c, "legacy-plaintext-token-1");
    let (plain, hash) = stored(&mut c, &legacy);
    assert_eq!(
        plain.as_deref(),
        Some("legacy-plaintext-token-1"),
        "dual keeps the plaintext"
    );
    assert_eq!(hash.as_ref().map(|h| h.len()), Some(64));
    assert!(verify(&mut c, &legacy, "legacy-plaintext-token-1"));
    // ... and rotating it by writing the column rehashes it.
    c.execute(
        "UPDATE public.hr_references SET access_token = 'rotated-token-2' WHERE id = $1::text::uuid",
        &[&legacy],
    )
    .unwrap();
    assert!(verify(&mut c, &legacy, "rotated-token-2"));
    assert!(!verify(&mut c, &legacy, "legacy-plaintext-token-1"));

    // Enforced: plaintext is neither stored nor accepted.
    c.batch_execute("SELECT hr_set_phase('reference_tokens', 'enforced')")
        .unwrap();
    let fresh = insert_legacy_reference(&mut c, "enforced-token-3");
    let (plain, hash) = stored(&mut c, &fresh);
    assert_eq!(plain, None, "enforced stores no plaintext");
    assert!(hash.is_some());
    assert!(verify(&mut c, &fresh, "enforced-token-3"));
    // A row written with triggers disabled keeps only plaintext: not accepted.
    let bypass: String = {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .unwrap();
        let id: String = tx
            .query_one(
                "INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
                 SELECT id, 'Bypass', 'bypass-token-4' FROM public.hr_candidates ORDER BY id LIMIT 1
                 RETURNING id::text",
                &[],
            )
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        id
    };
    assert!(
        !verify(&mut c, &bypass, "bypass-token-4"),
        "enforced accepted a plaintext token"
    );
    let m: String = one(
        &mut c,
        "SELECT method FROM public.hr_reference_token_validations ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(m, "none");
    assert_eq!(
        status(&mut c, "reference_tokens").pending,
        1,
        "the bypassed row is pending"
    );

    // Back to dual: plaintext accepted again where it still exists; the note
    // counts the rows that no longer have one.
    c.batch_execute("SELECT hr_set_phase('reference_tokens', 'dual')")
        .unwrap();
    assert!(verify(&mut c, &bypass, "bypass-token-4"));
    let m: String = one(
        &mut c,
        "SELECT method FROM public.hr_reference_token_validations ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(m, "plaintext");
    assert!(
        verify(&mut c, &fresh, "enforced-token-3"),
        "hash-only rows still verify"
    );
    let note = status(&mut c, "reference_tokens").note;
    assert!(
        note.contains("1 references have no plaintext token left"),
        "note: {note}"
    );
    assert!(
        note.contains("1 plaintext tokens have no hash yet"),
        "note: {note}"
    );

    // enforced is refused while a token lacks its hash, saying why.
    let err = c
        .batch_execute("SELECT hr_set_phase('reference_tokens', 'enforced')")
        .unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "55000");
    assert!(
        db.message().contains("1 rows pending and 0 blocked"),
        "{}",
        db.message()
    );

    // Re-running the script finishes the straggler and never moves back a phase.
    cl.migrate("hr", "001_reference_tokens.sql", &[]);
    let Status { phase, pending, .. } = status(&mut c, "reference_tokens");
    assert_eq!((phase.as_str(), pending), ("migrated", 0));
    c.batch_execute("SELECT hr_set_phase('reference_tokens', 'enforced')")
        .unwrap();
    cl.migrate("hr", "001_reference_tokens.sql", &[]);
    assert_eq!(status(&mut c, "reference_tokens").phase, "enforced");
}

#[test]
fn backfill_killed_midway_resumes() {
    let cl = Cluster::start::<&str>(&[]);
    cl.fixture_db("hr", SCALE);
    let mut c = cl.connect("hr");
    keep_oracle(&mut c);
    let n_tokens = tokens_in_fixture(&mut c);

    // Small batches so the backfill is still running when it is killed.
    let mut psql = Command::new("psql")
        .arg(cl.url("hr"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .env("PGOPTIONS", "-c hr_migrations.batch_size=25")
        .arg(repo().join("sql/migrations/001_reference_tokens.sql"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let pid: i32 = loop {
        assert!(Instant::now() < deadline, "backfill never got going");
        let r = c
            .query_opt(
                "SELECT a.pid FROM pg_stat_activity a, hr_migrations.hr_batch_progress p
                  WHERE p.migration = 'reference_tokens' AND p.rows_done >= 1000
                    AND a.query ILIKE '%hr_apply%' AND a.pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        if let Some(r) = r {
            break r.get(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A real crash: SIGKILL makes the postmaster reset every backend.
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        !psql.wait().unwrap().success(),
        "psql should see its backend die"
    );
    drop(c);

    // The postmaster resets every backend shortly after a kill -9 of one:
    // a connection made in between would be cut (seen under load), so the
    // server must answer twice, apart (as in reliability.rs).
    std::thread::sleep(Duration::from_millis(500));
    let mut c = loop {
        assert!(
            Instant::now() < deadline,
            "server did not come back after the crash"
        );
        let mut c = cl.wait_until_up("hr", 60);
        std::thread::sleep(Duration::from_millis(300));
        if c.simple_query("SELECT 1").is_ok() {
            break c;
        }
    };
    let Status {
        phase,
        migrated: done_before,
        pending: pending_before,
        ..
    } = status(&mut c, "reference_tokens");
    assert_eq!(phase, "dual");
    assert!(
        done_before >= 1000 && pending_before > 0,
        "{done_before} done, {pending_before} pending"
    );
    let cursor: Option<String> = one(
        &mut c,
        "SELECT coalesce(last_tid::text, last_id::text) FROM hr_migrations.hr_batch_progress WHERE migration = 'reference_tokens' AND operation = 'backfill'",
    );
    assert!(
        cursor.is_some(),
        "the cursor was not committed with the batches"
    );

    // Re-running the file resumes and finishes; nothing is hashed twice.
    let out = cl.migrate("hr", "001_reference_tokens.sql", &[]);
    let finished = out
        .lines()
        .find(|l| l.contains("backfill: finished"))
        .expect("finish line");
    assert!(
        finished.contains(&format!("backfill: finished: {pending_before} rows")),
        "resumed run hashed a different number of rows than were pending: {finished}"
    );
    let Status {
        phase,
        migrated,
        pending,
        ..
    } = status(&mut c, "reference_tokens");
    assert_eq!(
        (phase.as_str(), migrated, pending),
        ("migrated", n_tokens, 0)
    );
    let ok: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.refs o JOIN public.hr_references r USING (id)
          WHERE o.access_token IS NOT NULL AND hr_verify_token(o.access_token, r.access_token_hash)
            AND r.updated_at = o.updated_at",
    );
    assert_eq!(ok, n_tokens);
}

/// Randomness (docs/key-management.md): with the library preloaded (and its CSPRNG
/// seeded in the postmaster by _PG_init), forked backends must still draw
/// different salts.
#[test]
fn salts_never_repeat_across_preloaded_backends() {
    let cl = Cluster::start(&["shared_preload_libraries=hr_migrations"]);
    let mut c = cl.connect("postgres");
    assert_eq!(
        one::<String>(&mut c, "SHOW shared_preload_libraries"),
        "hr_migrations"
    );
    c.batch_execute("CREATE EXTENSION hr_migrations").unwrap();

    const BACKENDS: usize = 6;
    const PER_BACKEND: i32 = 5000;
    let barrier = Arc::new(Barrier::new(BACKENDS));
    let url = cl.url("postgres");
    let handles: Vec<_> = (0..BACKENDS)
        .map(|_| {
            let barrier = barrier.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                barrier.wait();
                let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
                let salts: Vec<String> = c
                    .query(
                        "SELECT encode(substr(decode(hr_hash_token('same token'), 'base64'), 1, 16), 'hex')
                           FROM generate_series(1, $1)",
                        &[&PER_BACKEND],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let token: String = c.query_one("SELECT hr_generate_token()", &[]).unwrap().get(0);
                (pid, salts, token)
            })
        })
        .collect();
    let mut pids = HashSet::new();
    let mut salts = HashSet::new();
    let mut tokens = HashSet::new();
    for h in handles {
        let (pid, s, t) = h.join().unwrap();
        pids.insert(pid);
        tokens.insert(t);
        salts.extend(s);
    }
    assert_eq!(
        pids.len(),
        BACKENDS,
        "each thread should have its own backend"
    );
    assert_eq!(
        tokens.len(),
        BACKENDS,
        "two backends generated the same token"
    );
    assert_eq!(
        salts.len(),
        BACKENDS * PER_BACKEND as usize,
        "a salt repeated across backends"
    );
}
