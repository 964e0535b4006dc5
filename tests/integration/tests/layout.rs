//! The extension installed in `public` (the default) instead of
//! `extensions`: all three migration files apply and reach `migrated`. Also
//! the two halves of `updated_at` handling, and that application roles
//! cannot set the backfill flag the triggers trust.

use hr_migrations_it::*;

#[test]
fn migrations_work_with_the_extension_in_public() {
    let path = write_keyring(&[(1, random_key())]);
    let mut conf = keyring_conf(&path, 1);
    conf.push("shared_preload_libraries=hr_migrations".to_string());
    let cl = Cluster::start(&conf);
    let mut admin = cl.connect("postgres");
    admin.batch_execute("CREATE DATABASE hr").unwrap();
    cl.psql_ok("hr", &repo().join("tests/fixtures/schema.sql"), &[]);
    cl.psql_ok(
        "hr",
        &repo().join("tests/fixtures/generate.sql"),
        &[("scale", "500")],
    );
    let mut c = cl.connect("hr");
    c.batch_execute("CREATE EXTENSION hr_migrations").unwrap();
    let schema: String = one(
        &mut c,
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname = 'hr_migrations'",
    );
    assert_eq!(schema, "public");
    c.batch_execute(
        "DELETE FROM hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
    cl.migrate_all("hr");
    assert_all_migrated(&mut c);

    // An application UPDATE moves updated_at; the backfill (tested
    // elsewhere) does not.
    let moved: bool = one(
        &mut c,
        "WITH u AS (UPDATE hr_references SET status = 'submitted'
                     WHERE id = (SELECT id FROM hr_references ORDER BY id LIMIT 1)
                     RETURNING updated_at)
         SELECT updated_at > timestamptz '2025-12-31' FROM u",
    );
    assert!(
        moved,
        "hr_migrations.hr_touch_updated_at did not set updated_at on an application update"
    );

    // The flag that makes triggers skip work is the extension's alone: the
    // old setting (read by nothing now) stays superuser-only, and the
    // function that sets the flag is not executable by application roles.
    let mut a = cl.connect_as("hr", "authenticator");
    for role in ["anon", "authenticated", "service_role"] {
        for (sql, code) in [
            (
                "SELECT set_config('hr_migrations.backfill_in_progress', 'on', true)",
                "42501",
            ),
            ("SELECT hr_migrations.hr_set_backfill_flag(true)", "42501"),
        ] {
            a.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}"))
                .unwrap();
            let e = a
                .batch_execute(sql)
                .expect_err("an application role set the backfill flag");
            assert_eq!(e.code().map(|c| c.code()), Some(code), "{role}: {sql}");
            a.batch_execute("ROLLBACK").unwrap();
        }
    }
}
