//! Per-organization data keys on real servers: one key per
//! organization, opened by an independent implementation (Python's
//! `cryptography`); a keyring key rotation that rewraps the data keys and
//! rewrites no credential; one organization's key rotated and its
//! credentials resealed; crypto-shredding (refusals, other organizations
//! untouched, status and preflight, every backend's cache dropped at once);
//! a dump taken before the shred restored with the new keyring; keys from a
//! command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hr_migrations_it::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cluster whose keyring holds `keys`, `active` active, database "hr" at
/// `scale` with migration 3 applied.
fn migrated(keys: &[(u32, [u8; 32])], active: u32, scale: u32) -> (Cluster, PathBuf) {
    let path = write_keyring(keys);
    let cl = Cluster::start(&keyring_conf(&path, active));
    cl.fixture_db("hr", scale);
    cl.connect("hr")
        .batch_execute(
            "CREATE SCHEMA oracle;
             CREATE TABLE oracle.integrations AS
             SELECT id, organization_id, jsonb_build_object('api_key', api_key, 'api_secret', api_secret,
                                                            'refresh_token', refresh_token) AS secret
               FROM public.hr_job_board_integrations
              WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL;",
        )
        .unwrap();
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    (cl, path)
}

/// Integrations of organizations other than `except` whose secret does not
/// read back as it was.
fn secrets_differing(c: &mut Client, except: Option<&str>) -> i64 {
    c.query_one(
        "SELECT count(*) FROM oracle.integrations o
          WHERE o.organization_id IS DISTINCT FROM $1::text::uuid
            AND hr_integration_secret(o.id) IS DISTINCT FROM o.secret",
        &[&except],
    )
    .unwrap()
    .get(0)
}

/// Points the server at another keyring file and active version; waits
/// until a new backend sees them.
fn use_keyring(cl: &Cluster, path: &Path, active: u32) {
    let mut c = cl.connect("postgres");
    for sql in [
        format!(
            "ALTER SYSTEM SET hr_migrations.keyring_file = '{}'",
            path.display()
        ),
        format!("ALTER SYSTEM SET hr_migrations.active_key_version = {active}"),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        c.batch_execute(&sql).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: String = one(
            &mut cl.connect("postgres"),
            "SELECT current_setting('hr_migrations.keyring_file') || ' ' || current_setting('hr_migrations.active_key_version')",
        );
        if seen == format!("{} {active}", path.display()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not arrive: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Points the server at another keyring command; waits until a new backend
/// sees it.
fn use_keyring_command(cl: &Cluster, path: &Path) {
    let mut c = cl.connect("postgres");
    c.batch_execute(&format!(
        "ALTER SYSTEM SET hr_migrations.keyring_command = '{}'",
        path.display()
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: String = one(
            &mut cl.connect("postgres"),
            "SELECT current_setting('hr_migrations.keyring_command')",
        );
        if seen == path.display().to_string() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not arrive: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// n_tup_upd of pf_credentials, with every other backend's counts flushed
/// (they flush when they exit; psql runs have exited).
fn credential_updates(c: &mut Client) -> i64 {
    c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    one(
        c,
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'public.pf_credentials'::regclass",
    )
}

/// credential_updates() once it reaches `expected` (a backend that exited
/// flushes its counts as it goes), or after 5 s: then whatever it is.
fn credential_updates_reaching(c: &mut Client, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = credential_updates(c);
        if n >= expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every credential row's physical identity and version: unchanged means
/// the row was not rewritten.
fn row_versions(c: &mut Client, org: Option<&str>) -> String {
    c.query_one(
        "SELECT md5(string_agg(ctid::text || xmin::text || encrypted_value, ',' ORDER BY id))
           FROM public.pf_credentials WHERE $1::text IS NULL OR organization_id <> $1::text::uuid",
        &[&org],
    )
    .unwrap()
    .get(0)
}

#[test]
fn each_organization_has_its_own_data_key_and_python_opens_them() {
    let k1 = random_key();
    let (cl, _) = migrated(&[(1, k1)], 1, 600);
    let mut c = cl.connect("hr");
    let (orgs, keys, distinct, under_1): (i64, i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(DISTINCT organization_id) FROM public.pf_credentials),
                        count(*), count(DISTINCT wrapped_key), count(*) FILTER (WHERE kek_version = 1 AND generation = 1)
                   FROM hr_migrations.hr_organization_keys",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert!(orgs >= 6, "{orgs}");
    assert_eq!((keys, distinct, under_1), (orgs, orgs, orgs));

    // Theirs opens ours: Python unwraps each organization's data key with
    // the keyring key and opens its credentials with it.
    let rows = c
        .query(
            "SELECT k.organization_id::text, k.generation, k.wrapped_key, hr_credential_aad(p.organization_id, p.id),
                    p.encrypted_value, hr_migrations.hr_open_credential(p.organization_id, p.encrypted_value,
                                                                        hr_credential_aad(p.organization_id, p.id))
               FROM public.pf_credentials p
               JOIN hr_migrations.hr_organization_keys k ON k.organization_id = p.organization_id",
            &[],
        )
        .unwrap();
    let mut input = String::new();
    let mut expected = Vec::new();
    for r in &rows {
        let (org, generation, wrapped, ad, env, pt): (String, i32, String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        input.push_str(&format!(
            "{}\t{org}\t{generation}\t{wrapped}\t{}\t{env}\n",
            hex(&k1),
            hex(ad.as_bytes())
        ));
        expected.push((org, hex(pt.as_bytes())));
    }
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/fixtures/open_envelopes_v2.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written by another thread: Python answers while it reads, and a
    // full pipe each way would stop both.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (dek, pt) = l.split_once('\t').unwrap();
            (dek.to_string(), pt.to_string())
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    let mut dek_of = std::collections::HashMap::new();
    for ((org, pt), (dek, py_pt)) in expected.iter().zip(&got) {
        assert_eq!(pt, py_pt, "Python opened another plaintext");
        // One data key per organization, a different one for each.
        assert_eq!(dek_of.entry(org.clone()).or_insert(dek.clone()), dek);
    }
    let deks: std::collections::HashSet<&String> = dek_of.values().collect();
    assert_eq!(deks.len() as i64, orgs);

    // The application roles see nothing of the keys, not even the view.
    for role in ["anon", "authenticated", "service_role"] {
        for t in [
            "hr_migrations.hr_organization_keys",
            "extensions.hr_organization_keys",
        ] {
            let can: bool = c
                .query_one(
                    "SELECT has_table_privilege($1, $2::text::regclass, 'SELECT')",
                    &[&role, &t],
                )
                .unwrap()
                .get(0);
            assert!(!can, "{role} reads {t}");
        }
    }
}

/// A new keyring key: the rewrap rewraps one row per organization and
/// rewrites no credential; the old key can then leave the keyring.
#[test]
fn a_keyring_key_rotation_rewraps_the_data_keys_only() {
    let (k1, k2) = (random_key(), random_key());
    let (cl, _) = migrated(&[(1, k1)], 1, 3000);
    let mut c = cl.connect("hr");
    let orgs: i64 = one(
        &mut c,
        "SELECT count(*) FROM hr_migrations.hr_organization_keys",
    );
    let credentials: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    assert!(
        credentials > 20 * orgs,
        "{credentials} credentials, {orgs} organizations"
    );
    let updates_before = credential_updates(&mut c);
    let rows_before = row_versions(&mut c, None);

    // A row that does not unwrap (another organization's wrapped key,
    // inserted as a restore could): named and skipped, not a stop.
    let forged: String = one(
        &mut c,
        "INSERT INTO public.pf_organizations (name) VALUES ('forged') RETURNING id::text",
    );
    c.batch_execute(&format!(
        "INSERT INTO hr_migrations.hr_organization_keys (organization_id, generation, kek_version, wrapped_key)
         SELECT '{forged}', 1, kek_version, wrapped_key FROM hr_migrations.hr_organization_keys LIMIT 1"
    ))
    .unwrap();

    let both = write_keyring(&[(1, k1), (2, k2)]);
    use_keyring(&cl, &both, 2);
    let mut c = cl.connect("hr");
    let note = status(&mut c, "integration_credentials").note;
    assert!(
        note.contains(&format!(
            "{} data keys not under the active key version 2",
            orgs + 1
        )),
        "{note}"
    );
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap(7)");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "data keys: finished: {orgs} rewrapped under the active key version"
        )),
        "{out}"
    );
    assert!(out.contains("rewrap: finished: 0 rows"), "{out}");
    assert!(
        out.contains(&format!(
            "data key generation 1 of organization {forged} was not rewrapped"
        )) && out.contains("data keys: 1 still wrapped under another key version"),
        "{out}"
    );
    let mut c = cl.connect("hr");
    c.batch_execute(&format!(
        "DELETE FROM hr_migrations.hr_organization_keys WHERE organization_id = '{forged}'"
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(500)); // the rewrap's backend has flushed its counts
    assert_eq!(
        credential_updates(&mut c),
        updates_before,
        "pf_credentials was rewritten"
    );
    assert_eq!(row_versions(&mut c, None), rows_before);
    let off: i64 = one(
        &mut c,
        "SELECT count(*) FROM hr_migrations.hr_organization_keys WHERE kek_version <> 2 OR rewrapped_at IS NULL",
    );
    assert_eq!(off, 0);
    let note = status(&mut c, "integration_credentials").note;
    assert!(!note.contains("not under the active key version"), "{note}");

    // A backend that still has the old active version (pooled, from before
    // the rotation) wraps a new organization's key under the newest version
    // a key uses, never under the one being retired.
    let mut stale = cl.connect("hr");
    stale
        .batch_execute("SET hr_migrations.active_key_version = 1")
        .unwrap();
    let newcomer: String = one(
        &mut stale,
        "INSERT INTO public.pf_organizations (name) VALUES ('newcomer') RETURNING id::text",
    );
    let sealed: String = one(
        &mut stale,
        &format!("SELECT hr_migrations.hr_seal_verified('x', 'y', '{newcomer}')"),
    );
    assert!(sealed.starts_with("hrc2.1."));
    let kek: i32 = one(
        &mut stale,
        &format!("SELECT kek_version FROM hr_migrations.hr_organization_keys WHERE organization_id = '{newcomer}'"),
    );
    assert_eq!(kek, 2);

    // Key 1 leaves the keyring: everything still opens, in new backends.
    let only_2 = write_keyring(&[(2, k2)]);
    use_keyring(&cl, &only_2, 2);
    let mut c = cl.connect("hr");
    assert_eq!(secrets_differing(&mut c, None), 0);
    // A rewrap with nothing to do says so.
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap()");
    assert!(
        ok && out.contains("data keys: finished: 0 rewrapped"),
        "{out}"
    );
}

/// A suspected leak of one tenant's data key: a new generation for that
/// organization; the rewrap reseals its credentials only and destroys the
/// old generation.
#[test]
fn one_organizations_key_rotation_reseals_only_its_credentials() {
    let (cl, _) = migrated(&[(1, random_key())], 1, 2000);
    let mut c = cl.connect("hr");
    let org: String = one(
        &mut c,
        "SELECT organization_id::text FROM public.pf_credentials GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let theirs: i64 = one(
        &mut c,
        &format!("SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{org}'"),
    );
    let others_before = row_versions(&mut c, Some(&org));
    let updates_before = credential_updates(&mut c);
    let generation: i32 = one(
        &mut c,
        &format!("SELECT hr_rotate_organization_key('{org}')"),
    );
    assert_eq!(generation, 2);
    // New credentials of that organization are sealed with generation 2 at
    // once; its old ones still open (generation 1 lives until resealed).
    let id: String = one(
        &mut c,
        &format!(
            "SELECT id::text FROM public.hr_job_board_integrations
              WHERE organization_id = '{org}' AND credential_id IS NOT NULL ORDER BY id LIMIT 1"
        ),
    );
    // (in its own backend, whose statistics are flushed when it exits)
    let (ok, out) = cl.psql_c(
        "hr",
        &format!("SELECT hr_set_integration_secret('{id}', '{{\"api_key\": \"rotated\", \"api_secret\": null, \"refresh_token\": null}}')"),
    );
    assert!(ok, "{out}");
    let env: String = one(
        &mut c,
        &format!(
            "SELECT p.encrypted_value FROM public.pf_credentials p
               JOIN public.hr_job_board_integrations i ON i.credential_id = p.id WHERE i.id = '{id}'"
        ),
    );
    assert!(env.starts_with("hrc2.2."), "{env}");
    c.batch_execute(&format!(
        "UPDATE oracle.integrations SET secret = '{{\"api_key\": \"rotated\", \"api_secret\": null, \"refresh_token\": null}}' WHERE id = '{id}'"
    ))
    .unwrap();
    assert_eq!(secrets_differing(&mut c, None), 0);
    let s = status(&mut c, "integration_credentials");
    let pending: i64 = one(
        &mut c,
        "SELECT pending FROM hr_migrations.hr_operation_counts('integration_credentials', 'rewrap')",
    );
    assert_eq!(pending, theirs - 1, "{s:?}");

    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap(10)");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("rewrap: finished: {} rows", theirs - 1)),
        "{out}"
    );
    let mut c = cl.connect("hr");
    let at_2: i64 = one(
        &mut c,
        &format!(
            "SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{org}' AND starts_with(encrypted_value, 'hrc2.2.')"
        ),
    );
    assert_eq!(at_2, theirs);
    assert_eq!(
        row_versions(&mut c, Some(&org)),
        others_before,
        "another organization's credential was rewritten"
    );
    assert_eq!(
        credential_updates_reaching(&mut c, updates_before + theirs) - updates_before,
        theirs
    );
    let states: String = one(
        &mut c,
        &format!("SELECT string_agg(generation || ' ' || state || ' ' || (wrapped_key IS NULL), ', ' ORDER BY generation)
                    FROM hr_migrations.hr_organization_keys k JOIN hr_organization_keys v USING (organization_id, generation)
                   WHERE organization_id = '{org}'"),
    );
    assert_eq!(states, "1 retired true, 2 active false");
    assert_eq!(secrets_differing(&mut c, None), 0);

    // A writer that seals with a generation being retired while the rewrap
    // runs: tests/isolation/specs/key_retirement_waits_for_writers.spec.
}

/// Crypto-shredding: refusals while the organization's secrets are
/// readable another way; then its keys destroyed, every backend's cache
/// dropped at once, its credentials unreadable with a precise error, the
/// others untouched, status and preflight counting them, the batch
/// operations skipping and recording them.
#[test]
fn shredding_an_organization() {
    let (cl, _) = migrated(&[(1, random_key())], 1, 2000);
    let mut c = cl.connect("hr");
    let orgs: Vec<String> = c
        .query(
            "SELECT organization_id::text FROM public.pf_credentials GROUP BY 1 ORDER BY count(*) DESC LIMIT 3",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (gone, v1_org, other) = (&orgs[0], &orgs[1], &orgs[2]);
    let count = |c: &mut Client, org: &str| -> i64 {
        one(
            c,
            &format!("SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{org}'"),
        )
    };
    let keys_of = |c: &mut Client, org: &str| -> String {
        one(
            c,
            &format!("SELECT string_agg(generation || ' ' || state, ', ' ORDER BY generation) FROM hr_organization_keys WHERE organization_id = '{org}'"),
        )
    };

    // Refused while the plaintext is still in hr_job_board_integrations.
    let text = assert_raises(
        &mut c,
        &format!("SELECT hr_shred_organization('{gone}')"),
        "55000",
        &[],
    );
    assert!(
        text.contains(gone.as_str()) && text.contains("plaintext"),
        "{text}"
    );
    assert_eq!(keys_of(&mut c, gone), "1 active");
    c.batch_execute("CALL hr_run_phase('integration_credentials', 'enforced')")
        .unwrap();
    // Refused while a credential of it is an envelope v1 (the keyring
    // opens it directly: shredding could not reach it).
    c.batch_execute(&format!(
        "UPDATE public.pf_credentials SET encrypted_value = hr_encrypt_credential(
                hr_migrations.hr_open_credential(organization_id, encrypted_value, hr_credential_aad(organization_id, id)),
                hr_credential_aad(organization_id, id))
          WHERE id = (SELECT id FROM public.pf_credentials WHERE organization_id = '{v1_org}' ORDER BY id LIMIT 1)"
    ))
    .unwrap();
    let text = assert_raises(
        &mut c,
        &format!("SELECT hr_shred_organization('{v1_org}')"),
        "55000",
        &[],
    );
    assert!(
        text.contains("envelopes v1") && text.contains("hr_run_rewrap"),
        "{text}"
    );
    assert_eq!(keys_of(&mut c, v1_org), "1 active");

    // Another backend has the organization's data key cached.
    let mut reader = cl.connect("hr");
    let id_gone: String = one(
        &mut reader,
        &format!("SELECT id::text FROM public.hr_job_board_integrations WHERE organization_id = '{gone}' AND credential_id IS NOT NULL ORDER BY id LIMIT 1"),
    );
    let read = |c: &mut Client, id: &str| {
        c.query_one("SELECT hr_integration_secret($1::text::uuid)::text", &[&id])
            .map(|r| r.get::<_, String>(0))
    };
    // Inside a transaction that holds its locks already: the shred's
    // invalidation is taken at the next use of a key, not at the next lock.
    reader.batch_execute("BEGIN").unwrap();
    let secret_before = read(&mut reader, &id_gone).unwrap();
    assert!(secret_before.contains("api_key"));

    let theirs = count(&mut c, gone);
    let shredded: i64 = one(&mut c, &format!("SELECT hr_shred_organization('{gone}')"));
    assert_eq!(shredded, theirs);
    assert_eq!(keys_of(&mut c, gone), "1 shredded");
    let wrapped_left: i64 = one(
        &mut c,
        &format!("SELECT count(*) FROM hr_migrations.hr_organization_keys WHERE organization_id = '{gone}' AND wrapped_key IS NOT NULL"),
    );
    assert_eq!(wrapped_left, 0);

    // At once, in the backend that had the key cached: an invalidation,
    // not a timeout.
    let e = read(&mut reader, &id_gone).unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{}", error_text(&e));
    let text = error_text(&e);
    assert!(
        text.contains(gone.as_str()) && text.contains("shredded"),
        "{text}"
    );
    assert!(!text.contains(&secret_before[10..30]), "{text}");
    reader.batch_execute("ROLLBACK").unwrap();
    // Every path: the DBA's open, the write of a new secret.
    let env: String = one(
        &mut c,
        &format!("SELECT encrypted_value FROM public.pf_credentials WHERE organization_id = '{gone}' LIMIT 1"),
    );
    for sql in [
        format!("SELECT hr_migrations.hr_open_credential('{gone}', '{env}', 'x')"),
        format!("SELECT hr_set_integration_secret('{id_gone}', '{{\"api_key\": \"shred-new-value\", \"api_secret\": null, \"refresh_token\": null}}')"),
    ] {
        let text = assert_raises(&mut reader, &sql, "55000", &["shred-new-value"]);
        assert!(text.contains(gone.as_str()), "{text}");
    }
    // The others are untouched, in both backends.
    assert_eq!(secrets_differing(&mut c, Some(gone)), 0);
    assert_eq!(secrets_differing(&mut reader, Some(gone)), 0);

    // Status and preflight count them.
    let note = status(&mut c, "integration_credentials").note;
    assert!(
        note.contains(&format!("{theirs} unreadable: their data key was shredded")),
        "{note}"
    );
    let (st, detail): (String, String) = {
        let r = c
            .query_one("SELECT status, detail FROM hr_preflight() WHERE check_name = 'shredded organizations'", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(st, "warning");
    assert!(
        detail.starts_with(&format!("{theirs} credentials")),
        "{detail}"
    );

    // The rewrap: blocked, not attempted (the v1 credential is resealed).
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap()");
    assert!(ok, "{out}");
    assert!(out.contains("rewrap: finished: 1 rows"), "{out}");
    let mut c = cl.connect("hr");
    let (pending, blocked): (i64, i64) = {
        let r = c
            .query_one("SELECT pending, blocked FROM hr_migrations.hr_operation_counts('integration_credentials', 'rewrap')", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((pending, blocked), (0, theirs));
    // Now v1_org can be shredded too.
    let n: i64 = one(&mut c, &format!("SELECT hr_shred_organization('{v1_org}')"));
    assert_eq!(n, count(&mut c, v1_org));

    // The rollback skips and records them, with their SQLSTATE.
    c.batch_execute("SELECT hr_set_phase('integration_credentials', 'dual')")
        .unwrap();
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rollback('integration_credentials', 50)");
    assert!(ok, "{out}");
    let mut c = cl.connect("hr");
    let failures: String = one(
        &mut c,
        "SELECT string_agg(operation || ' ' || sqlstate || ' ' || n, ', ' ORDER BY operation)
           FROM (SELECT operation, sqlstate, count(*) n FROM hr_migrations.hr_batch_failures GROUP BY 1, 2) f",
    );
    assert_eq!(failures, format!("rollback 55000 {}", theirs + n));
    let left: i64 = one(&mut c, "SELECT count(*) FROM public.pf_credentials");
    assert_eq!(left, theirs + n);
    // The third organization was rolled back exactly.
    let restored: i64 = one(
        &mut c,
        &format!(
            "SELECT count(*) FROM oracle.integrations o JOIN public.hr_job_board_integrations i USING (id)
              WHERE o.organization_id = '{other}' AND i.credential_id IS NULL
                AND jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret, 'refresh_token', i.refresh_token) = o.secret"
        ),
    );
    let of_other: i64 = one(
        &mut c,
        &format!("SELECT count(*) FROM oracle.integrations WHERE organization_id = '{other}'"),
    );
    assert_eq!(restored, of_other);

    // An organization with no credentials yet gets a tombstone: none can be
    // stored for it afterwards, until its key is rotated on purpose.
    let fresh: String = one(
        &mut c,
        "INSERT INTO public.pf_organizations (name) VALUES ('left before its first credential') RETURNING id::text",
    );
    let n: i64 = one(&mut c, &format!("SELECT hr_shred_organization('{fresh}')"));
    assert_eq!(n, 0);
    let text = assert_raises(
        &mut c,
        &format!("SELECT hr_migrations.hr_seal_verified('x', 'y', '{fresh}')"),
        "55000",
        &[],
    );
    assert!(text.contains(fresh.as_str()), "{text}");
    let g: i32 = one(
        &mut c,
        &format!("SELECT hr_rotate_organization_key('{fresh}')"),
    );
    assert_eq!(g, 2);
    let sealed: String = one(
        &mut c,
        &format!("SELECT hr_migrations.hr_seal_verified('x', 'y', '{fresh}')"),
    );
    assert!(sealed.starts_with("hrc2.2."), "{sealed}");

    // NULL is refused; the application roles cannot shred.
    assert_raises(&mut c, "SELECT hr_shred_organization(NULL)", "22004", &[]);
    for role in ["anon", "authenticated", "service_role"] {
        let mut r = cl.connect("hr");
        r.batch_execute(&format!("SET ROLE {role}")).unwrap();
        assert_raises(
            &mut r,
            &format!("SELECT hr_shred_organization('{other}')"),
            "42501",
            &[],
        );
        assert_raises(
            &mut r,
            &format!("SELECT hr_rotate_organization_key('{other}')"),
            "42501",
            &[],
        );
    }
}

/// The erasure procedure of docs/key-management.md end to end: a dump
/// taken before the shred, the shred, a keyring key rotation and rewrap,
/// the old key removed. The old dump restored with the new keyring cannot
/// decrypt the shredded organization (nor anything else it held: every
/// data key in it is wrapped by the removed key); with the old key it
/// could, which is why the key must go.
#[test]
fn a_dump_taken_before_the_shred_is_unreadable_once_the_old_key_is_gone() {
    let (k1, k2) = (random_key(), random_key());
    let (cl, _) = migrated(&[(1, k1)], 1, 600);
    let mut c = cl.connect("hr");
    c.batch_execute("CALL hr_run_phase('integration_credentials', 'enforced')")
        .unwrap();
    let gone: String = one(
        &mut c,
        "SELECT organization_id::text FROM public.pf_credentials GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let dump = cl.dir().join("before.dump");
    cl.dump("hr", &dump);

    // The erasure: shred, a new keyring key, rewrap, the old key removed.
    let n: i64 = one(&mut c, &format!("SELECT hr_shred_organization('{gone}')"));
    assert!(n > 0);
    use_keyring(&cl, &write_keyring(&[(1, k1), (2, k2)]), 2);
    let (ok, out) = cl.psql_c("hr", "CALL hr_run_rewrap()");
    assert!(ok, "{out}");
    use_keyring(&cl, &write_keyring(&[(2, k2)]), 2);
    let mut c = cl.connect("hr");
    assert_eq!(
        secrets_differing(&mut c, Some(&gone)),
        0,
        "the live database lost a secret"
    );

    // The old dump, restored with the new keyring.
    let restore = |db: &str| {
        cl.restore(db, &dump);
        let mut r = cl.connect(db);
        r.batch_execute("SET search_path = public, extensions")
            .unwrap();
        r
    };
    let mut r = restore("restored");
    let id: String = one(
        &mut r,
        &format!("SELECT id::text FROM public.hr_job_board_integrations WHERE organization_id = '{gone}' AND credential_id IS NOT NULL LIMIT 1"),
    );
    let e = r
        .query_one("SELECT hr_integration_secret($1::text::uuid)", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "F0000", "{}", error_text(&e));
    assert!(
        error_text(&e).contains("key version 1 is not in the keyring"),
        "{}",
        error_text(&e)
    );
    let readable: i64 = one(
        &mut r,
        "SELECT count(*) FROM hr_migrations.hr_organization_keys WHERE kek_version = 2",
    );
    assert_eq!(
        readable, 0,
        "the old dump holds a data key wrapped by a key still in the keyring"
    );

    // The control: with key 1 back in the keyring, the same dump opens.
    use_keyring(&cl, &write_keyring(&[(1, k1), (2, k2)]), 2);
    let mut r = cl.connect("restored");
    r.batch_execute("SET search_path = public, extensions")
        .unwrap();
    let secret: Option<String> = r
        .query_one("SELECT hr_integration_secret($1::text::uuid)::text", &[&id])
        .unwrap()
        .get(0);
    assert!(secret.is_some_and(|s| s.contains("api_key")));
    let _ = std::fs::remove_file(&dump);
}

/// `hr_migrations.keyring_command`: the keyring from a program (a KMS
/// client in production, a script here), failing closed without echoing
/// its output, its stderr never logged; only a superuser sets it.
#[test]
fn the_keyring_comes_from_a_command() {
    let key = random_key();
    let dir = std::env::temp_dir().join(format!("hrm-kms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ring = write_keyring(&[(1, key)]);
    let good = dir.join("print-keyring.sh");
    // The script a KMS client would be: it prints the keyring, and chatter
    // on stderr that must never reach the log.
    std::fs::write(
        &good,
        format!(
            "#!/bin/sh\necho 'kms-chatter-on-stderr' >&2\nexec cat '{}'\n",
            ring.display()
        ),
    )
    .unwrap();
    let bad = dir.join("failing-kms.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho 'kms-stdout-leak 1 AAAA'\necho 'kms-stderr-leak' >&2\nexit 3\n",
    )
    .unwrap();
    for f in [&good, &bad] {
        Command::new("chmod").arg("0755").arg(f).status().unwrap();
    }
    Command::new("chmod")
        .arg("0755")
        .arg(&dir)
        .status()
        .unwrap();
    let cl = Cluster::start(&[
        format!("hr_migrations.keyring_command={}", good.display()),
        "hr_migrations.active_key_version=1".to_string(),
        "log_min_messages=debug1".to_string(),
    ]);
    cl.fixture_db("hr", 300);
    cl.migrate("hr", "003_integration_credentials.sql", &[]);
    let mut c = cl.connect("hr");
    let ok: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE hr_integration_secret(id) IS NOT NULL",
    );
    assert!(ok > 200, "{ok}");
    let versions: String = one(
        &mut c,
        "SELECT string_agg(key_version || ' ' || active, ',') FROM hr_keyring_versions()",
    );
    assert_eq!(versions, "1 true");

    // Only a superuser sets it, and only in postgresql.conf (SIGHUP).
    let mut admin = cl.connect("hr");
    admin
        .batch_execute("CREATE ROLE dba LOGIN CREATEROLE; GRANT hr_migrations_admin TO dba")
        .unwrap();
    // Before the library is loaded in its backend, a SET only makes a
    // placeholder, which loading the library discards (the setting is
    // SIGHUP): the command stays postgresql.conf's.
    let mut dba = cl.connect_as("hr", "dba");
    dba.batch_execute("SET hr_migrations.keyring_command = 'cat /etc/passwd'")
        .unwrap();
    let versions: String = one(&mut dba, "SELECT string_agg(key_version || ' ' || active, ',') FROM hr_migrations.hr_keyring_versions()");
    assert_eq!(versions, "1 true");
    // (`cat /etc/passwd` would have been an invalid keyring: F0000.) Nor
    // may anyone but a superuser read the command line.
    assert_raises(&mut dba, "SHOW hr_migrations.keyring_command", "42501", &[]);
    // Once loaded, refused outright.
    for sql in [
        "SET hr_migrations.keyring_command = 'cat /etc/passwd'",
        "ALTER SYSTEM SET hr_migrations.keyring_command = 'cat /etc/passwd'",
    ] {
        let e = dba.batch_execute(sql).unwrap_err();
        assert!(
            ["42501", "55P02"].contains(&sqlstate(&e).as_str()),
            "{sql}: {}",
            error_text(&e)
        );
    }
    // Not even a superuser's session may point it elsewhere.
    admin
        .batch_execute("SELECT hr_migrations.hr_active_key_version()")
        .unwrap();
    let e = admin
        .batch_execute("SET hr_migrations.keyring_command = 'true'")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55P02", "{}", error_text(&e));

    // A failing command: F0000 in new backends, nothing of its output.
    use_keyring_command(&cl, &bad);
    let mut fresh = cl.connect("hr");
    let text = assert_raises(
        &mut fresh,
        "SELECT hr_integration_secret(id) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1",
        "F0000",
        &["kms-stdout-leak", "kms-stderr-leak", "AAAA"],
    );
    assert!(
        text.contains("hr_migrations.keyring_command failed (exit status 3)"),
        "{text}"
    );

    // One that prints the keyring but leaves a child behind holding its
    // output (a pipeline gone wrong): F0000 after the timeout, not a hung
    // backend, and nothing of it left running.
    let slow = dir.join("slow-kms.sh");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 61.25 &\nexec cat '{}'\n", ring.display()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("0755")
        .arg(&slow)
        .status()
        .unwrap();
    use_keyring_command(&cl, &slow);
    let mut fresh = cl.connect("hr");
    let text = assert_raises(
        &mut fresh,
        "SELECT * FROM hr_keyring_versions()",
        "F0000",
        &[],
    );
    assert!(text.contains("did not finish within 10 s"), "{text}");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 61.25"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the command's process group was not killed: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    std::thread::sleep(Duration::from_millis(300));
    let log = cl.server_log();
    assert!(log.contains("exit status 3"), "the failure was not logged");
    for leak in [
        "kms-chatter-on-stderr",
        "kms-stdout-leak",
        "kms-stderr-leak",
    ] {
        assert!(!log.contains(leak), "{leak} is in the server log");
    }
    use base64::Engine;
    assert!(!log.contains(&base64::engine::general_purpose::STANDARD.encode(key)));
    let _ = std::fs::remove_dir_all(&dir);
}
