//! Migration 3 (integration_credentials) on real servers: the 003 script at
//! 10k integrations through every phase and back, tampering and key errors,
//! nonces across preloaded backends, concurrent migrators with an
//! application writer, privileges, log hygiene, key rotation, and envelopes
//! opened by an independent implementation (Python's `cryptography`).

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hr_migrations_it::*;

fn message(e: &postgres::Error) -> String {
    error_text(e)
}

fn cluster_with_keyring(extra: &[&str]) -> (Cluster, std::path::PathBuf, [u8; 32]) {
    let key = random_key();
    let path = write_keyring(&[(1, key)]);
    let mut conf = keyring_conf(&path, 1);
    conf.extend(extra.iter().map(|s| s.to_string()));
    (Cluster::start(&conf), path, key)
}

fn keep_oracle(c: &mut Client) {
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.integrations AS
         SELECT id, organization_id, api_key, api_secret, refresh_token FROM public.hr_job_board_integrations;",
    )
    .unwrap();
}

/// Integrations whose dual read differs from the oracle (NULL when the oracle has no secret).
fn secrets_differing(c: &mut Client) -> i64 {
    one(
        c,
        "SELECT count(*) FROM oracle.integrations o
          WHERE hr_integration_secret(o.id) IS DISTINCT FROM
                CASE WHEN o.api_key IS NULL AND o.api_secret IS NULL AND o.refresh_token IS NULL THEN NULL
                     ELSE jsonb_build_object('api_key', o.api_key, 'api_secret', o.api_secret,
                                             'refresh_token', o.refresh_token) END",
    )
}

#[test]
fn migration_3_end_to_end() {
    let (cl, _, _) = cluster_with_keyring(&[]);
    cl.fixture_db("hr", 10_000);
    let mut c = cl.connect("hr");
    keep_oracle(&mut c);
    let with_plaintext: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.integrations WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert!(with_plaintext > 9000 && with_plaintext < 10_000);

    let out = cl.migrate("hr", "003_integration_credentials.sql", &[]);
    assert!(
        out.contains(&format!("backfill: finished: {with_plaintext} rows")),
        "{out}"
    );
    let Status {
        phase,
        total,
        migrated,
        pending,
        blocked,
        ..
    } = status(&mut c, "integration_credentials");
    assert_eq!(
        (phase.as_str(), total, migrated, pending, blocked),
        ("migrated", 10_000, with_plaintext, 0, 0)
    );
    // One credential and one log row per migrated integration; envelopes only.
    let creds: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    let logs: i64 = one(
        &mut c,
        "SELECT count(DISTINCT record_id) FROM public.pf_credential_migrations",
    );
    assert_eq!((creds, logs), (with_plaintext, with_plaintext));
    let not_envelopes: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.pf_credentials c JOIN oracle.integrations o ON o.organization_id = c.organization_id
          WHERE c.encrypted_value !~ '^hrc2\\.1\\.' OR c.encrypted_value LIKE '%' || o.api_key || '%' AND o.api_key <> ''",
    );
    assert_eq!(not_envelopes, 0);
    let validated: bool = one(
        &mut c,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'pf_credentials_encrypted_value_envelope'",
    );
    assert!(validated);
    assert_eq!(
        secrets_differing(&mut c),
        0,
        "hr_integration_secret differs from the original"
    );

    // A re-run migrates nothing.
    let out = cl.migrate("hr", "003_integration_credentials.sql", &[]);
    assert!(out.contains("backfill: finished: 0 rows"), "{out}");
    assert_eq!(
        one::<i64>(&mut c, "SELECT count(*) FROM public.pf_credentials"),
        with_plaintext
    );

    // Old code rotates a refresh token in dual: the credential follows, once.
    let id: String = one(
        &mut c,
        "SELECT id::text FROM oracle.integrations WHERE api_key <> '' AND refresh_token IS NOT NULL ORDER BY id LIMIT 1",
    );
    let envelope = |c: &mut Client| -> String {
        c.query_one(
            "SELECT c.encrypted_value FROM public.pf_credentials c
               JOIN public.hr_job_board_integrations i ON i.credential_id = c.id WHERE i.id = $1::text::uuid",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let before = envelope(&mut c);
    c.execute(
        "UPDATE public.hr_job_board_integrations SET refresh_token = 'rotated-☃-token' WHERE id = $1::text::uuid",
        &[&id],
    )
    .unwrap();
    let after = envelope(&mut c);
    assert_ne!(before, after);
    let rt: String = c
        .query_one(
            "SELECT hr_integration_secret($1::text::uuid) ->> 'refresh_token'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(rt, "rotated-☃-token");
    // Writing the same values again (an upsert, a restore) does not encrypt again.
    c.execute(
        "INSERT INTO public.hr_job_board_integrations (id, organization_id, job_board_type, api_key, api_secret, refresh_token)
         SELECT id, organization_id, job_board_type, api_key, api_secret, refresh_token
           FROM public.hr_job_board_integrations WHERE id = $1::text::uuid
         ON CONFLICT (id) DO UPDATE SET api_key = EXCLUDED.api_key, refresh_token = EXCLUDED.refresh_token",
        &[&id],
    )
    .unwrap();
    assert_eq!(
        envelope(&mut c),
        after,
        "an upsert of the same values encrypted again"
    );
    assert_eq!(
        one::<i64>(&mut c, "SELECT count(*) FROM public.pf_credentials"),
        with_plaintext,
        "upsert left a credential"
    );
    c.execute("UPDATE oracle.integrations SET refresh_token = 'rotated-☃-token' WHERE id = $1::text::uuid", &[&id])
        .unwrap();

    // A new integration written with plaintext by old code is moved at once.
    let new_id: String = {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE service_role").unwrap();
        let id: String = tx
            .query_one(
                "INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key, api_secret)
                 SELECT id, 'indeed', 'new-key', 'new-secret' FROM public.pf_organizations ORDER BY id LIMIT 1
                 RETURNING id::text",
                &[],
            )
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        id
    };
    let linked: bool = c
        .query_one("SELECT credential_id IS NOT NULL FROM public.hr_job_board_integrations WHERE id = $1::text::uuid", &[&new_id])
        .unwrap()
        .get(0);
    assert!(linked);
    c.execute(
        "INSERT INTO oracle.integrations SELECT id, organization_id, api_key, api_secret, refresh_token
           FROM public.hr_job_board_integrations WHERE id = $1::text::uuid",
        &[&new_id],
    )
    .unwrap();
    assert_eq!(secrets_differing(&mut c), 0);

    // Enforced: plaintext cleared in committed batches (each row checked
    // first), reads go on, writes of plaintext refused.
    c.batch_execute("CALL hr_run_phase('integration_credentials', 'enforced')")
        .unwrap();
    let plaintext: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations
          WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert_eq!(plaintext, 0);
    assert_eq!(secrets_differing(&mut c), 0, "secrets changed by enforcing");
    let err = c
        .execute("UPDATE public.hr_job_board_integrations SET api_key = 'leak-me' WHERE id = $1::text::uuid", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23514", "{}", message(&err));
    assert!(!message(&err).contains("leak-me"));

    // Rollback puts the plaintext back byte for byte and unlinks.
    let err = c
        .batch_execute("SELECT hr_rollback_integrations()")
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "55000",
        "rollback while enforced: {}",
        message(&err)
    );
    c.batch_execute("SELECT hr_set_phase('integration_credentials', 'dual')")
        .unwrap();
    loop {
        let n: i64 = one(&mut c, "SELECT hr_rollback_integrations(3000)");
        if n == 0 {
            break;
        }
    }
    let differing: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.integrations o JOIN public.hr_job_board_integrations i USING (id)
          WHERE convert_to(coalesce(i.api_key, '<null>'), 'UTF8') <> convert_to(coalesce(o.api_key, '<null>'), 'UTF8')
             OR convert_to(coalesce(i.api_secret, '<null>'), 'UTF8') <> convert_to(coalesce(o.api_secret, '<null>'), 'UTF8')
             OR convert_to(coalesce(i.refresh_token, '<null>'), 'UTF8') <> convert_to(coalesce(o.refresh_token, '<null>'), 'UTF8')
             OR (i.api_key IS NULL) <> (o.api_key IS NULL) OR (i.api_secret IS NULL) <> (o.api_secret IS NULL)
             OR (i.refresh_token IS NULL) <> (o.refresh_token IS NULL)
             OR i.credential_id IS NOT NULL",
    );
    assert_eq!(
        differing, 0,
        "rollback did not restore the plaintext exactly"
    );
    assert_eq!(
        one::<i64>(&mut c, "SELECT count(*) FROM public.pf_credentials"),
        0
    );

    // Re-applying works.
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let Status { phase, pending, .. } = status(&mut c, "integration_credentials");
    assert_eq!((phase.as_str(), pending), ("migrated", 0));
    assert_eq!(secrets_differing(&mut c), 0);
}

#[test]
fn tampering_moved_envelopes_and_key_problems() {
    let (cl, keyring, key) = cluster_with_keyring(&[]);
    cl.fixture_db("hr", 100);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let mut c = cl.connect("hr");
    let ids: Vec<String> = c
        .query(
            "SELECT id::text FROM public.pf_credentials ORDER BY organization_id, id LIMIT 3",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let decrypt = |c: &mut Client, id: &str| {
        c.query_one(
            "SELECT hr_migrations.hr_open_credential(organization_id, encrypted_value, hr_credential_aad(organization_id, id))
               FROM public.pf_credentials WHERE id = $1::text::uuid",
            &[&id],
        )
        .map(|r| r.get::<_, String>(0))
    };
    assert!(decrypt(&mut c, &ids[0]).is_ok());

    // An envelope copied to another credential row does not open there.
    c.execute(
        "UPDATE public.pf_credentials SET encrypted_value = (SELECT encrypted_value FROM public.pf_credentials WHERE id = $1::text::uuid)
          WHERE id = $2::text::uuid",
        &[&ids[0], &ids[1]],
    )
    .unwrap();
    assert_eq!(sqlstate(&decrypt(&mut c, &ids[1]).unwrap_err()), "22023");
    // Moved to another organization (which has a data key of that
    // generation): fails too.
    let other_org: String = one(
        &mut c,
        &format!("SELECT organization_id::text FROM public.pf_credentials WHERE organization_id <> (SELECT organization_id FROM public.pf_credentials WHERE id = '{}') LIMIT 1", ids[2]),
    );
    c.execute(
        "UPDATE public.pf_credentials SET organization_id = $1::text::uuid WHERE id = $2::text::uuid",
        &[&other_org, &ids[2]],
    )
    .unwrap();
    assert_eq!(sqlstate(&decrypt(&mut c, &ids[2]).unwrap_err()), "22023");
    // Moved to an organization without data keys: 55000, naming it.
    c.batch_execute(
        "INSERT INTO public.pf_organizations (id, name) VALUES ('00000000-0000-4000-8000-00000000abcd', 'no keys')",
    )
    .unwrap();
    c.execute(
        "UPDATE public.pf_credentials SET organization_id = $1::text::uuid WHERE id = $2::text::uuid",
        &[&"00000000-0000-4000-8000-00000000abcd", &ids[2]],
    )
    .unwrap();
    let e = decrypt(&mut c, &ids[2]).unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{}", message(&e));
    assert!(
        message(&e).contains("00000000-0000-4000-8000-00000000abcd"),
        "{}",
        message(&e)
    );
    // Any one-character change of a stored envelope fails (22023, 22P02, or
    // 55000 for a generation that does not exist).
    let env: String = one(
        &mut c,
        &format!(
            "SELECT encrypted_value FROM public.pf_credentials WHERE id = '{}'",
            ids[0]
        ),
    );
    let org0: String = one(
        &mut c,
        &format!(
            "SELECT organization_id::text FROM public.pf_credentials WHERE id = '{}'",
            ids[0]
        ),
    );
    for i in (0..env.len()).step_by(3) {
        let mut b = env.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(b).unwrap();
        if changed == env {
            continue;
        }
        let r = c.query_one(
            "SELECT hr_migrations.hr_open_credential($2::text::uuid, $1, hr_credential_aad($2::text::uuid, $3::text::uuid))",
            &[&changed, &org0, &ids[0]],
        );
        let e = r.expect_err(&format!("a changed envelope opened (position {i})"));
        assert!(
            ["22023", "22P02", "55000"].contains(&sqlstate(&e).as_str()),
            "{}",
            message(&e)
        );
    }
    // An envelope v1 of an unknown key version names the setting.
    let e = c
        .query_one(
            "SELECT hr_decrypt_credential('hrc1.9.' || split_part($1, '.', 3))",
            &[&env],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    assert!(
        message(&e).contains("hr_migrations.keyring_file"),
        "{}",
        message(&e)
    );

    // Another key under version 1 is reported as a key problem, not as bad ciphertext.
    let mut other = key;
    other[0] ^= 0xff;
    std::fs::remove_file(&keyring).ok();
    let swapped = write_keyring(&[(1, other)]);
    c.batch_execute(&format!(
        "ALTER SYSTEM SET hr_migrations.keyring_file = '{}'",
        swapped.display()
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut fresh = cl.connect("hr");
    let e = decrypt(&mut fresh, &ids[0]).unwrap_err();
    assert_eq!(sqlstate(&e), "F0000", "{}", message(&e));
    assert!(
        message(&e).contains("key check value mismatch"),
        "{}",
        message(&e)
    );
    assert!(message(&e).contains("hr_migrations.keyring_file"));

    // A missing keyring names the setting.
    fresh
        .batch_execute("ALTER SYSTEM SET hr_migrations.keyring_file = '/nonexistent/keyring'")
        .unwrap();
    fresh.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut fresh = cl.connect("hr");
    let e = decrypt(&mut fresh, &ids[0]).unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    assert!(
        message(&e).contains("hr_migrations.keyring_file"),
        "{}",
        message(&e)
    );
    let e = fresh
        .query_one("SELECT hr_encrypt_credential('x')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
}

/// Randomness (docs/key-management.md): four preloaded backends each encrypting 100k
/// values draw no nonce twice.
#[test]
fn nonces_never_repeat_across_preloaded_backends() {
    let (cl, _, _) = cluster_with_keyring(&["shared_preload_libraries=hr_migrations"]);
    let mut c = cl.connect("postgres");
    c.batch_execute(
        "CREATE EXTENSION hr_migrations; CREATE UNLOGGED TABLE nonces (pid int, nonce text)",
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = cl.url("postgres");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                barrier.wait();
                // The nonce is the first 12 bytes of the payload: exactly 16 base64url characters.
                c.batch_execute(
                    "INSERT INTO nonces SELECT pg_backend_pid(), substr(split_part(hr_encrypt_credential('same value'), '.', 3), 1, 16)
                       FROM generate_series(1, 100000)",
                )
                .unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT nonce), count(DISTINCT pid) FROM nonces",
            &[],
        )
        .unwrap();
    let (n, distinct, pids): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!((n, pids), (400_000, 4));
    assert_eq!(distinct, n, "a nonce repeated");
}

/// Two migrators and an application writer at once: every integration is
/// migrated exactly once (one credential, one log row) and none is left.
#[test]
fn concurrent_migrators_and_an_application_writer() {
    let (cl, _, _) = cluster_with_keyring(&[]);
    cl.fixture_db("hr", 200);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let mut c = cl.connect("hr");
    // 5000 legacy rows written behind the triggers' back, as if before 003.
    c.batch_execute(
        "SET session_replication_role = replica;
         INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key, api_secret, refresh_token)
         SELECT o.id, 'linkedin', 'k' || g, 's' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'r' || g END
           FROM generate_series(1, 5000) g
           JOIN LATERAL (SELECT id FROM public.pf_organizations ORDER BY id OFFSET g % 3 LIMIT 1) o ON true;
         RESET session_replication_role;",
    )
    .unwrap();
    assert_eq!(status(&mut c, "integration_credentials").pending, 5000);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let url = cl.url("hr");
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            c.batch_execute("SET lock_timeout = '5s'; SET ROLE service_role")
                .unwrap();
            let mut n = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                c.batch_execute(
                    "INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type, api_key)
                     SELECT id, 'greenhouse', 'app-' || md5(random()::text) FROM public.pf_organizations ORDER BY random() LIMIT 1;
                     UPDATE public.hr_job_board_integrations SET refresh_token = 'rot-' || md5(random()::text)
                      WHERE id = (SELECT id FROM public.hr_job_board_integrations ORDER BY random() LIMIT 1);",
                )
                .unwrap_or_else(|e| panic!("writer: {}", message(&e)));
                n += 1;
            }
            n
        })
    };
    let migrators: Vec<_> = (0..2)
        .map(|k| {
            let url = cl.url("hr");
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                if k == 0 {
                    c.batch_execute("CALL hr_run_backfill('integration_credentials', 100)")
                        .unwrap();
                } else {
                    loop {
                        let n: i64 = c
                            .query_one("SELECT migrated FROM hr_migrate_integrations(150)", &[])
                            .unwrap()
                            .get(0);
                        if n == 0 {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for m in migrators {
        m.join().expect("a migrator failed");
    }
    stop.store(true, Ordering::SeqCst);
    assert!(writer.join().expect("the writer failed") > 0);

    let Status {
        total,
        migrated,
        pending,
        ..
    } = status(&mut c, "integration_credentials");
    assert_eq!(pending, 0, "integrations left behind");
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM public.pf_credentials),
                    (SELECT count(DISTINCT credential_id) FROM public.hr_job_board_integrations),
                    (SELECT count(*) FROM (SELECT record_id FROM public.pf_credential_migrations GROUP BY 1 HAVING count(*) > 1) d),
                    (SELECT count(*) FROM public.pf_credentials c
                      WHERE NOT EXISTS (SELECT 1 FROM public.hr_job_board_integrations i WHERE i.credential_id = c.id))",
            &[],
        )
        .unwrap();
    let (creds, linked, logged_twice, orphans): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(creds, migrated, "one credential per migrated integration");
    assert_eq!(linked, migrated);
    assert_eq!(logged_twice, 0, "an integration was migrated twice");
    assert_eq!(orphans, 0);
    assert!(total > 5000);
    // Every secret decrypts and matches the plaintext columns still held in dual.
    let wrong: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations i
          WHERE hr_integration_secret(i.id) IS DISTINCT FROM
                jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret, 'refresh_token', i.refresh_token)
            AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)",
    );
    assert_eq!(wrong, 0);
}

/// The keyring settings are hidden from non-superusers once the library is
/// loaded; with it in shared_preload_libraries (docs/key-management.md) that
/// is every backend from the start.
#[test]
fn privileges_of_app_roles() {
    let (cl, _, _) = cluster_with_keyring(&["shared_preload_libraries=hr_migrations"]);
    cl.fixture_db("hr", 300);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let mut admin = cl.connect("hr");
    let env: String = one(
        &mut admin,
        "SELECT encrypted_value FROM public.pf_credentials LIMIT 1",
    );
    let integration: String =
        one(&mut admin, "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1");
    let org: String = one(
        &mut admin,
        "SELECT id::text FROM public.pf_organizations ORDER BY id LIMIT 1",
    );
    let mut a = cl.connect_as("hr", "authenticator");
    for role in ["anon", "authenticated"] {
        for sql in [
            format!("SELECT hr_decrypt_credential('{env}')"),
            "SELECT hr_encrypt_credential('x')".to_string(),
            "SELECT * FROM hr_migrate_integrations()".to_string(),
            "SELECT hr_rewrap_credentials()".to_string(),
            "SELECT hr_rollback_integrations()".to_string(),
            format!("SELECT hr_integration_secret('{integration}')"),
            "SELECT * FROM hr_keyring_versions()".to_string(),
        ] {
            a.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}"))
                .unwrap();
            let e = a
                .batch_execute(&sql)
                .expect_err(&format!("{role} ran {sql}"));
            assert_eq!(sqlstate(&e), "42501", "{role}: {sql}: {}", message(&e));
            a.batch_execute("ROLLBACK").unwrap();
        }
        // anon reads no credential; authenticated reads its own
        // organization's envelopes only (RLS, pf_credentials_select).
        a.batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE {role}; SELECT set_config('request.jwt.claims', '{{\"organization_id\":\"{org}\"}}', true)"
        ))
        .unwrap();
        let read = a.query_one(
            "SELECT count(*), count(*) FILTER (WHERE organization_id <> $1::text::uuid) FROM public.pf_credentials",
            &[&org],
        );
        match role {
            "anon" => {
                assert_eq!(
                    sqlstate(&read.unwrap_err()),
                    "42501",
                    "anon read credentials"
                );
                a.batch_execute("ROLLBACK; BEGIN; SET LOCAL ROLE anon")
                    .unwrap();
            }
            _ => {
                let r = read.unwrap();
                let (n, foreign): (i64, i64) = (r.get(0), r.get(1));
                let own: i64 = one(
                    &mut admin,
                    &format!("SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{org}'"),
                );
                assert_eq!(
                    (n, foreign),
                    (own, 0),
                    "{role} read other organizations' credentials"
                );
            }
        }
        // The keyring settings are hidden.
        let e = a
            .batch_execute("SHOW hr_migrations.keyring_file")
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{role} saw the keyring path");
        a.batch_execute("ROLLBACK").unwrap();
        a.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}"))
            .unwrap();
        // The keyring's path is hidden; the active version is not a secret
        // (every envelope's header carries it) and anyone may read it.
        let visible: i64 = a
            .query_one(
                "SELECT count(*) FROM pg_settings WHERE name LIKE 'hr_migrations.keyring%'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(visible, 0, "{role} sees the keyring's path in pg_settings");
        a.batch_execute("ROLLBACK").unwrap();
    }
    // service_role can.
    a.batch_execute("BEGIN; SET LOCAL ROLE service_role")
        .unwrap();
    let s: Option<String> = a
        .query_one(
            &format!("SELECT hr_integration_secret('{integration}')::text"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(s.is_some_and(|s| s.contains("api_key")));
    a.batch_execute("ROLLBACK").unwrap();
}

/// With every statement logged, the migration, enforcement and failing
/// decrypts leave no plaintext secret (and no key) in the server log.
#[test]
fn server_log_holds_no_secret() {
    let (cl, _, key) = cluster_with_keyring(&[
        "log_statement=all",
        "log_min_error_statement=error",
        "log_min_messages=info",
    ]);
    cl.fixture_db("hr", 2000);
    let mut c = cl.connect("hr");
    keep_oracle(&mut c);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    // Failing decrypts: wrong AAD, tampered, unknown version, not an envelope.
    for sql in [
        "SELECT hr_decrypt_credential(encrypted_value, 'wrong') FROM public.pf_credentials LIMIT 1",
        "SELECT hr_decrypt_credential(encrypted_value || 'A', hr_credential_aad(organization_id, id)) FROM public.pf_credentials LIMIT 1",
        "SELECT hr_decrypt_credential('hrc1.7.' || split_part(encrypted_value, '.', 3)) FROM public.pf_credentials LIMIT 1",
        "SELECT hr_decrypt_credential(api_key) FROM public.hr_job_board_integrations WHERE api_key <> '' LIMIT 1",
        "SELECT hr_integration_secret(id) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL",
    ] {
        let _ = c.batch_execute(sql);
    }
    c.batch_execute("SELECT hr_set_phase('integration_credentials', 'enforced')")
        .unwrap();
    let _ = c
        .batch_execute("UPDATE public.hr_job_board_integrations SET api_key = api_key WHERE false");
    let secrets: Vec<String> = c
        .query(
            "SELECT v FROM oracle.integrations, LATERAL (VALUES (api_key), (api_secret), (refresh_token)) t(v)
              WHERE length(v) >= 8",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(secrets.len() > 4000);
    std::thread::sleep(Duration::from_millis(300));
    let log = cl.server_log();
    assert!(
        log.contains("hr_decrypt_credential"),
        "log_statement did not log"
    );
    assert!(
        log.contains("ERROR"),
        "the failing decrypts were not logged"
    );
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret is in the server log");
    }
    use base64::Engine;
    assert!(
        !log.contains(&base64::engine::general_purpose::STANDARD.encode(key)),
        "the key is in the log"
    );
}

/// Envelopes v1 (what 0.2.0 wrote: sealed with the keyring directly) stay
/// readable, and the rewrap reseals them under their organization's data
/// key in batches.
#[test]
fn envelopes_v1_stay_readable_and_are_resealed_as_v2() {
    let (cl, _, _) = cluster_with_keyring(&[]);
    cl.fixture_db("hr", 1000);
    let mut c = cl.connect("hr");
    keep_oracle(&mut c);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let n: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    let v1: i64 = one(
        &mut c,
        "WITH u AS (
            UPDATE public.pf_credentials SET encrypted_value = hr_encrypt_credential(
                hr_migrations.hr_open_credential(organization_id, encrypted_value, hr_credential_aad(organization_id, id)),
                hr_credential_aad(organization_id, id))
            RETURNING encrypted_value)
         SELECT count(*) FROM u WHERE encrypted_value LIKE 'hrc1.1.%'",
    );
    assert_eq!(v1, n);
    assert_eq!(secrets_differing(&mut c), 0);
    let note = status(&mut c, "integration_credentials").note;
    assert!(
        note.contains(&format!(
            "{n} sealed with the keyring directly (envelopes v1)"
        )),
        "{note}"
    );
    let mut total = 0;
    loop {
        let k: i64 = one(&mut c, "SELECT hr_rewrap_credentials(250)");
        if k == 0 {
            break;
        }
        assert!(k <= 250);
        total += k;
    }
    assert_eq!(total, n);
    let note = status(&mut c, "integration_credentials").note;
    assert!(
        note.contains(&format!(
            "credentials: {n} under their organization's data key"
        )) && !note.contains("keyring directly"),
        "{note}"
    );
    let left: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.pf_credentials WHERE encrypted_value NOT LIKE 'hrc2.1.%'",
    );
    assert_eq!(left, 0);
    assert_eq!(secrets_differing(&mut c), 0);
}

/// Envelopes made by the extension open with Python's `cryptography`
/// (tests/fixtures/open_envelopes.py): "theirs opens ours".
#[test]
fn python_opens_our_envelopes() {
    let (cl, _, key) = cluster_with_keyring(&[]);
    let mut c = cl.connect("postgres");
    c.batch_execute("CREATE EXTENSION hr_migrations").unwrap();
    let rows = c
        .query(
            "SELECT ad, pt, hr_encrypt_credential(pt, ad) FROM (VALUES
                ('', ''), ('pf_credentials:a:b', '{\"api_key\": \"k\", \"api_secret\": null, \"refresh_token\": \"r\"}'),
                ('ünïcödé aad', 'Grüße 東京 🔑'), ('', repeat('x', 5000))) v(ad, pt)",
            &[],
        )
        .unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut input = String::new();
    let mut expected = Vec::new();
    for r in &rows {
        let (ad, pt, env): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        input.push_str(&format!("{}\t{}\t{}\n", hex(&key), hex(ad.as_bytes()), env));
        expected.push(hex(pt.as_bytes()));
    }
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/fixtures/open_envelopes.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with cryptography (scripts/ensure-deps.sh installs python3-cryptography)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, expected);
    let distinct: HashSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 4);
}
