//! Migration 2 (portal_sessions) on real servers: the 002 script with
//! blocked rows, the isolation matrix driven the way PostgREST drives it
//! (directly and through pgbouncer in transaction pooling mode), a backfill
//! racing application writers, and the query plan of a tenant query.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hr_migrations_it::*;
use postgres::SimpleQueryMessage;

/// Rows of the first column of every result of a simple query.
fn col(c: &mut Client, sql: &str) -> Result<Vec<Option<String>>, postgres::Error> {
    Ok(c.simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect())
}

fn message(e: &postgres::Error) -> String {
    error_text(e)
}

fn blocked_sessions(c: &mut Client) -> i64 {
    one(
        c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions s
           LEFT JOIN public.hr_candidates c ON c.id = s.candidate_id
          WHERE c.organization_id IS NULL",
    )
}

#[test]
fn migration_2_end_to_end_with_blocked_sessions() {
    let cl = Cluster::start::<&str>(&[]);
    cl.fixture_db("hr", 10_000);
    let mut c = cl.connect("hr");
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.sessions AS SELECT id, candidate_id, updated_at FROM public.hr_candidate_portal_sessions;",
    )
    .unwrap();
    let blocked = blocked_sessions(&mut c);
    assert!(blocked > 0, "the fixture should have unresolvable sessions");

    let out = cl.migrate("hr", "002_portal_sessions.sql", &[]);
    assert!(
        out.contains(&format!("0 rows pending and {blocked} rows blocked remain")),
        "no WARNING with the blocked count:\n{out}"
    );
    let Status {
        phase,
        total,
        migrated,
        pending,
        blocked: st_blocked,
        note,
        ..
    } = status(&mut c, "portal_sessions");
    assert_eq!(
        (phase.as_str(), total, pending, st_blocked),
        ("dual", 10_000, 0, blocked)
    );
    assert_eq!(migrated, 10_000 - blocked);
    assert!(
        note.contains(&format!("{blocked} rows cannot be resolved")),
        "{note}"
    );

    let wrong: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions s
           LEFT JOIN public.hr_candidates c ON c.id = s.candidate_id
          WHERE s.organization_id IS DISTINCT FROM c.organization_id",
    );
    assert_eq!(
        wrong, 0,
        "a session carries another organization than its candidate"
    );
    let moved: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions s JOIN oracle.sessions o USING (id)
          WHERE s.updated_at IS DISTINCT FROM o.updated_at",
    );
    assert_eq!(moved, 0, "the backfill changed updated_at");

    // Enforcing is refused while sessions are blocked, saying why.
    let err = c
        .batch_execute("SELECT hr_set_phase('portal_sessions', 'enforced')")
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000");
    assert!(
        message(&err).contains(&format!("0 rows pending and {blocked} blocked")),
        "{}",
        message(&err)
    );

    // Fix them the way the note says, re-run the file: migrated.
    c.batch_execute(
        "UPDATE public.hr_candidates SET organization_id = (SELECT min(id::text)::uuid FROM public.pf_organizations)
          WHERE organization_id IS NULL;
         DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id);",
    )
    .unwrap();
    cl.migrate("hr", "002_portal_sessions.sql", &[]);
    let Status {
        phase,
        total,
        migrated,
        pending,
        blocked,
        ..
    } = status(&mut c, "portal_sessions");
    assert_eq!((phase.as_str(), pending, blocked), ("migrated", 0, 0));
    assert_eq!(migrated, total);

    // Enforced: NOT NULL through a validated CHECK, which is then dropped.
    // Here the DBA validated the CHECK beforehand, outside (the runbook's
    // path for big tables; the regress scenario covers the other one), and
    // hr_set_phase reuses it.
    c.batch_execute(
        "ALTER TABLE public.hr_candidate_portal_sessions ADD CONSTRAINT
             hr_candidate_portal_sessions_organization_id_not_null CHECK (organization_id IS NOT NULL) NOT VALID",
    )
    .unwrap();
    c.batch_execute(
        "ALTER TABLE public.hr_candidate_portal_sessions
             VALIDATE CONSTRAINT hr_candidate_portal_sessions_organization_id_not_null",
    )
    .unwrap();
    c.batch_execute("SELECT hr_set_phase('portal_sessions', 'enforced')")
        .unwrap();
    let notnull: bool = one(
        &mut c,
        "SELECT attnotnull FROM pg_attribute
          WHERE attrelid = 'public.hr_candidate_portal_sessions'::regclass AND attname = 'organization_id'",
    );
    assert!(notnull);
    let checks: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_constraint
          WHERE conrelid = 'public.hr_candidate_portal_sessions'::regclass AND contype = 'c'",
    );
    assert_eq!(checks, 0, "the helper CHECK should be gone");
    let err = c
        .batch_execute("INSERT INTO public.hr_candidate_portal_sessions (candidate_id) VALUES (gen_random_uuid())")
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "23502",
        "a session without organization must fail: {}",
        message(&err)
    );
    // Setting the same phase again is a no-op; stepping back drops NOT NULL.
    c.batch_execute("SELECT hr_set_phase('portal_sessions', 'enforced')")
        .unwrap();
    c.batch_execute("SELECT hr_set_phase('portal_sessions', 'dual')")
        .unwrap();
    let notnull: bool = one(
        &mut c,
        "SELECT attnotnull FROM pg_attribute
          WHERE attrelid = 'public.hr_candidate_portal_sessions'::regclass AND attname = 'organization_id'",
    );
    assert!(!notnull);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Claim {
    Own,
    Other,
    Missing,
    Empty,
    Malformed,
}

struct World {
    orgs: Vec<String>,
    /// Per org: a candidate, a session, and the number of sessions.
    candidate: Vec<String>,
    session: Vec<String>,
    count: Vec<i64>,
}

fn world(c: &mut Client) -> World {
    let orgs: Vec<String> = c
        .query(
            "SELECT id::text FROM public.pf_organizations ORDER BY id LIMIT 3",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(orgs.len(), 3);
    let mut w = World {
        orgs: orgs.clone(),
        candidate: vec![],
        session: vec![],
        count: vec![],
    };
    for o in &orgs {
        let r = c
            .query_one(
                "SELECT (SELECT id::text FROM public.hr_candidates WHERE organization_id = $1::text::uuid ORDER BY id LIMIT 1),
                        (SELECT id::text FROM public.hr_candidate_portal_sessions WHERE organization_id = $1::text::uuid ORDER BY id LIMIT 1),
                        (SELECT count(*) FROM public.hr_candidate_portal_sessions WHERE organization_id = $1::text::uuid)",
                &[o],
            )
            .unwrap();
        w.candidate.push(r.get(0));
        w.session.push(r.get(1));
        w.count.push(r.get(2));
    }
    w
}

/// One PostgREST-style request: a transaction with SET LOCAL ROLE and the
/// claims set with set_config(..., true), then `body`; always rolled back.
fn request(
    c: &mut Client,
    claims: Option<&str>,
    body: &str,
) -> Result<Vec<Option<String>>, postgres::Error> {
    c.batch_execute("BEGIN; SET LOCAL ROLE authenticated")?;
    let mut run = || {
        if let Some(cl) = claims {
            let lit = cl.replace('\'', "''");
            c.batch_execute(&format!(
                "SELECT set_config('request.jwt.claims', '{lit}', true)"
            ))?;
        }
        col(c, body)
    };
    let out = run();
    c.batch_execute("ROLLBACK")?;
    out
}

/// The isolation matrix: 3 organizations x 5 kinds of claims x SELECT,
/// INSERT, UPDATE, DELETE. `c` is an `authenticator` connection.
fn isolation_matrix(c: &mut Client, w: &World) {
    let kinds = [
        Claim::Own,
        Claim::Other,
        Claim::Missing,
        Claim::Empty,
        Claim::Malformed,
    ];
    let mut cells = 0;
    for i in 0..3 {
        let j = (i + 1) % 3; // "another" organization
        let k = (i + 2) % 3; // a third one
        for kind in kinds {
            let (claims, eff): (Option<String>, Option<usize>) = match kind {
                Claim::Own => (
                    Some(format!(
                        r#"{{"role":"authenticated","organization_id":"{}"}}"#,
                        w.orgs[i]
                    )),
                    Some(i),
                ),
                // the other organization arrives through app_metadata
                Claim::Other => (
                    Some(format!(
                        r#"{{"app_metadata":{{"organization_id":"{}"}}}}"#,
                        w.orgs[j]
                    )),
                    Some(j),
                ),
                Claim::Missing => (None, None),
                Claim::Empty => (Some(String::new()), None),
                Claim::Malformed => (Some(r#"{"organization_id": "#.to_string()), None),
            };
            let ctx = format!("org {i}, claims {kind:?}");
            let cl = claims.as_deref();
            let eff_org = eff.map(|e| w.orgs[e].clone());
            let eff_count = eff.map_or(0, |e| w.count[e]);

            // SELECT: exactly the claimed organization's sessions, or nothing.
            let rows = request(
                c,
                cl,
                "SELECT organization_id::text FROM public.hr_candidate_portal_sessions",
            )
            .unwrap();
            assert_eq!(rows.len() as i64, eff_count, "{ctx}: SELECT count");
            assert!(
                rows.iter().all(|o| *o == eff_org),
                "{ctx}: SELECT saw another organization"
            );

            // INSERT a session for organization i's candidate.
            let r = request(
                c,
                cl,
                &format!(
                    "INSERT INTO public.hr_candidate_portal_sessions (candidate_id) VALUES ('{}') RETURNING organization_id::text",
                    w.candidate[i]
                ),
            );
            match (kind, r) {
                (Claim::Own, Ok(rows)) => {
                    assert_eq!(rows, vec![Some(w.orgs[i].clone())], "{ctx}: INSERT")
                }
                (Claim::Own, Err(e)) => panic!("{ctx}: own INSERT refused: {}", message(&e)),
                (_, Ok(rows)) => panic!("{ctx}: cross-tenant INSERT accepted: {rows:?}"),
                (_, Err(e)) => assert_eq!(sqlstate(&e), "42501", "{ctx}: INSERT: {}", message(&e)),
            }
            // INSERT claiming organization i for another organization's candidate.
            let r = request(
                c,
                cl,
                &format!(
                    "INSERT INTO public.hr_candidate_portal_sessions (candidate_id, organization_id) VALUES ('{}', '{}')",
                    w.candidate[k], w.orgs[i]
                ),
            );
            let e = r.expect_err(&format!("{ctx}: INSERT with a foreign candidate accepted"));
            assert_eq!(sqlstate(&e), "23514", "{ctx}: {}", message(&e));

            // UPDATE everything visible: only the claimed organization's rows change.
            let rows = request(
                c,
                cl,
                "UPDATE public.hr_candidate_portal_sessions SET last_seen_at = now() RETURNING organization_id::text",
            )
            .unwrap();
            assert_eq!(rows.len() as i64, eff_count, "{ctx}: UPDATE count");
            assert!(
                rows.iter().all(|o| *o == eff_org),
                "{ctx}: UPDATE touched another organization"
            );
            // UPDATE another organization's session by id: nothing.
            for other in (0..3).filter(|&x| Some(x) != eff) {
                let rows = request(
                    c,
                    cl,
                    &format!(
                        "UPDATE public.hr_candidate_portal_sessions SET last_seen_at = now() WHERE id = '{}' RETURNING id",
                        w.session[other]
                    ),
                )
                .unwrap();
                assert!(rows.is_empty(), "{ctx}: updated org {other}'s session");
            }
            // Moving an own session to another organization's candidate is refused.
            if let Some(e) = eff {
                let r = request(
                    c,
                    cl,
                    &format!(
                        "UPDATE public.hr_candidate_portal_sessions SET candidate_id = '{}' WHERE id = '{}'",
                        w.candidate[(e + 1) % 3],
                        w.session[e]
                    ),
                );
                let err = r.expect_err(&format!("{ctx}: session moved to another tenant"));
                assert_eq!(sqlstate(&err), "42501", "{ctx}: {}", message(&err));
            }

            // DELETE: only the claimed organization's rows, and never another's by id.
            let rows = request(
                c,
                cl,
                "DELETE FROM public.hr_candidate_portal_sessions RETURNING organization_id::text",
            )
            .unwrap();
            assert_eq!(rows.len() as i64, eff_count, "{ctx}: DELETE count");
            assert!(
                rows.iter().all(|o| *o == eff_org),
                "{ctx}: DELETE removed another organization's rows"
            );
            for other in (0..3).filter(|&x| Some(x) != eff) {
                let rows = request(
                    c,
                    cl,
                    &format!("DELETE FROM public.hr_candidate_portal_sessions WHERE id = '{}' RETURNING id", w.session[other]),
                )
                .unwrap();
                assert!(rows.is_empty(), "{ctx}: deleted org {other}'s session");
            }
            cells += 1;
        }
    }
    assert_eq!(cells, 15);
}

fn migrated_small_world(cl: &Cluster) -> World {
    cl.fixture_db("hr", 300);
    cl.migrate("hr", "002_portal_sessions.sql", &[]);
    let mut c = cl.connect("hr");
    let w = world(&mut c);
    assert!(w.count.iter().all(|&n| n > 10));
    w
}

#[test]
fn isolation_matrix_direct() {
    let cl = Cluster::start::<&str>(&[]);
    let w = migrated_small_world(&cl);
    let mut c = cl.connect_as("hr", "authenticator");
    isolation_matrix(&mut c, &w);
    // Nothing leaked out of the rolled-back requests.
    let mut admin = cl.connect("hr");
    assert_eq!(world(&mut admin).count, w.count);
}

#[test]
fn isolation_matrix_through_pgbouncer() {
    let cl = Cluster::start::<&str>(&[]);
    let w = migrated_small_world(&cl);
    let pgb = Bouncer::start(&cl, "hr", &["authenticator"]);

    // Two clients share one server connection; a claim set by the first
    // client's transaction reads back as '' in the second's.
    let mut a = pgb.connect_as("hr", "authenticator");
    let mut b = pgb.connect_as("hr", "authenticator");
    let pid_a = col(&mut a, "SELECT pg_backend_pid()").unwrap();
    let pid_b = col(&mut b, "SELECT pg_backend_pid()").unwrap();
    assert_eq!(
        pid_a, pid_b,
        "pgbouncer should hand both clients the same server connection"
    );
    a.batch_execute(&format!(
        "BEGIN; SELECT set_config('request.jwt.claims', '{{\"organization_id\":\"{}\"}}', true); COMMIT",
        w.orgs[0]
    ))
    .unwrap();
    let leftover = col(&mut b, "SELECT current_setting('request.jwt.claims', true)").unwrap();
    assert_eq!(
        leftover,
        vec![Some(String::new())],
        "the pooled connection should read ''"
    );
    let seen = request(
        &mut b,
        None,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions",
    )
    .unwrap();
    assert_eq!(
        seen,
        vec![Some("0".to_string())],
        "'' must give zero rows, not an error"
    );

    isolation_matrix(&mut a, &w);
    isolation_matrix(&mut b, &w);
}

/// The backfill runs while another connection inserts and updates sessions:
/// afterwards every resolvable row carries its candidate's organization, and
/// no application statement waited past its lock_timeout.
#[test]
fn backfill_races_application_writers() {
    let cl = Cluster::start::<&str>(&[]);
    cl.fixture_db("hr", 20_000);
    let stop = Arc::new(AtomicBool::new(false));
    let url = cl.url("hr");
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            c.batch_execute("SET lock_timeout = '2s'; SET ROLE service_role")
                .unwrap();
            let (mut inserts, mut updates) = (0u32, 0u32);
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                // Old-style code: no organization_id anywhere.
                c.batch_execute(
                    "INSERT INTO public.hr_candidate_portal_sessions (candidate_id, session_token)
                     SELECT id, md5(random()::text) FROM public.hr_candidates
                      WHERE organization_id IS NOT NULL ORDER BY random() LIMIT 5",
                )
                .unwrap_or_else(|e| panic!("writer INSERT failed: {}", message(&e)));
                inserts += 5;
                c.batch_execute(
                    "UPDATE public.hr_candidate_portal_sessions SET last_seen_at = now()
                      WHERE id IN (SELECT id FROM public.hr_candidate_portal_sessions ORDER BY random() LIMIT 5)",
                )
                .unwrap_or_else(|e| panic!("writer UPDATE failed: {}", message(&e)));
                c.batch_execute(
                    "UPDATE public.hr_candidate_portal_sessions
                        SET candidate_id = (SELECT id FROM public.hr_candidates ORDER BY random() LIMIT 1)
                      WHERE id = (SELECT id FROM public.hr_candidate_portal_sessions ORDER BY random() LIMIT 1)",
                )
                .unwrap_or_else(|e| panic!("writer candidate change failed: {}", message(&e)));
                updates += 6;
            }
            (inserts, updates)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("psql")
        .arg(cl.url("hr"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .env("PGOPTIONS", "-c hr_migrations.batch_size=200")
        .arg(repo().join("sql/migrations/002_portal_sessions.sql"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (inserts, updates) = writer.join().expect("the writer failed");
    assert!(
        out.status.success(),
        "002 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inserts > 0 && updates > 0);

    let mut c = cl.connect("hr");
    let wrong: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_candidate_portal_sessions s
           JOIN public.hr_candidates c ON c.id = s.candidate_id
          WHERE c.organization_id IS NOT NULL AND s.organization_id IS DISTINCT FROM c.organization_id",
    );
    assert_eq!(
        wrong, 0,
        "a resolvable session lacks its candidate's organization"
    );
    let Status { pending, .. } = status(&mut c, "portal_sessions");
    assert_eq!(pending, 0);
}

/// A tenant query on 100k sessions uses the organization_id index and reads
/// the claim once (an InitPlan), not once per row.
#[test]
fn tenant_query_plan_uses_index_and_initplan() {
    let cl = Cluster::start::<&str>(&[]);
    cl.fixture_db("hr", 100_000);
    cl.migrate("hr", "002_portal_sessions.sql", &[]);
    let mut c = cl.connect("hr");
    c.batch_execute("ANALYZE public.hr_candidate_portal_sessions")
        .unwrap();
    let org: String = one(
        &mut c,
        "SELECT id::text FROM public.pf_organizations ORDER BY id LIMIT 1",
    );
    let mut a = cl.connect_as("hr", "authenticator");
    let plan = request(
        &mut a,
        Some(&format!(r#"{{"organization_id":"{org}"}}"#)),
        "EXPLAIN SELECT * FROM public.hr_candidate_portal_sessions",
    )
    .unwrap()
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("InitPlan"),
        "claim not evaluated once:\n{plan}"
    );
    assert!(
        plan.contains("idx_hr_candidate_portal_sessions_organization_id"),
        "index not used:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on hr_candidate_portal_sessions"),
        "{plan}"
    );
}
