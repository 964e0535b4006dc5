//! The rollback scripts of sql/rollback, newest first, after every migration
//! was applied and enforced: each undoes its migration without losing data,
//! and the migrations apply again afterwards.

use hr_migrations_it::*;

fn rollback(cl: &Cluster, script: &str, vars: &[(&str, &str)]) -> std::process::Output {
    cl.psql_file("hr", &repo().join("sql/rollback").join(script), vars)
}

/// The rollback file's CALL with options, as its refusal's hint says.
fn rollback_with(cl: &Cluster, migration: &str, options: &str) -> (bool, String) {
    cl.psql_c(
        "hr",
        &format!("CALL hr_migrations.hr_rollback('{migration}', 1, '{options}')"),
    )
}

fn column_exists(c: &mut Client, table: &str, column: &str) -> bool {
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)",
        &[&table, &column],
    )
    .unwrap()
    .get(0)
}

#[test]
fn rollback_scripts_undo_every_migration_and_allow_redo() {
    let path = write_keyring(&[(1, random_key())]);
    let cl = Cluster::start(&keyring_conf(&path, 1));
    cl.fixture_db("hr", 2000);
    let mut c = cl.connect("hr");
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.refs AS SELECT id, access_token FROM public.hr_references;
         CREATE TABLE oracle.integrations AS SELECT id, api_key, api_secret, refresh_token FROM public.hr_job_board_integrations;
         -- the fixture's unresolvable sessions, removed so 002 can be enforced
         DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL);
         CREATE TABLE oracle.sessions AS SELECT * FROM public.hr_candidate_portal_sessions;",
    )
    .unwrap();
    cl.migrate_all("hr");
    let keys: Vec<String> = migrations(&mut c).into_iter().map(|(m, _)| m).collect();
    for m in &keys {
        c.batch_execute(&format!("CALL hr_run_phase('{m}', 'enforced')"))
            .unwrap();
    }

    // 001's rollback refuses while a token exists only as a hash.
    c.batch_execute(
        "INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
         SELECT id, 'Enforced-era referee', 'hash-only-token' FROM public.hr_candidates ORDER BY id LIMIT 1",
    )
    .unwrap();

    // Newest first.
    let out = rollback(&cl, "003_integration_credentials.sql", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!column_exists(
        &mut c,
        "hr_job_board_integrations",
        "credential_id"
    ));
    let differing: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.integrations o JOIN public.hr_job_board_integrations i USING (id)
          WHERE i.api_key IS DISTINCT FROM o.api_key OR i.api_secret IS DISTINCT FROM o.api_secret
             OR i.refresh_token IS DISTINCT FROM o.refresh_token",
    );
    assert_eq!(differing, 0, "credentials not restored exactly");
    assert_eq!(
        one::<i64>(&mut c, "SELECT count(*) FROM public.pf_credentials"),
        0
    );

    let (ok, out) = rollback_with(&cl, "portal_sessions", r#"{"disable_rls": true}"#);
    assert!(ok, "{out}");
    assert!(!column_exists(
        &mut c,
        "hr_candidate_portal_sessions",
        "organization_id"
    ));
    let policies: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.hr_candidate_portal_sessions'::regclass",
    );
    assert_eq!(policies, 0);
    let sessions_changed: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.sessions o FULL JOIN public.hr_candidate_portal_sessions s USING (id)
          WHERE s.id IS NULL OR o.id IS NULL OR s.candidate_id IS DISTINCT FROM o.candidate_id",
    );
    assert_eq!(sessions_changed, 0);

    let out = rollback(&cl, "001_reference_tokens.sql", &[]);
    assert!(
        !out.status.success(),
        "001 rollback should refuse while a hash-only token exists"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only as a hash"), "{stderr}");
    // The hint names the CALL that drops them anyway.
    assert!(
        stderr.contains(r#"hr_rollback('reference_tokens', 1, '{"drop_hash_only_tokens": true}')"#),
        "{stderr}"
    );
    assert!(
        column_exists(&mut c, "hr_references", "access_token_hash"),
        "refusal must change nothing"
    );
    let (ok, out) = rollback_with(
        &cl,
        "reference_tokens",
        r#"{"drop_hash_only_tokens": true}"#,
    );
    assert!(ok, "{out}");
    assert!(!column_exists(&mut c, "hr_references", "access_token_hash"));
    let tokens_changed: i64 = one(
        &mut c,
        "SELECT count(*) FROM oracle.refs o JOIN public.hr_references r USING (id)
          WHERE r.access_token IS DISTINCT FROM o.access_token",
    );
    assert_eq!(tokens_changed, 0);

    for m in &keys {
        assert_eq!(status(&mut c, m).phase, "not_applied", "{m}");
    }

    // And forward again.
    cl.migrate_all("hr");
    assert_all_migrated(&mut c);
}
