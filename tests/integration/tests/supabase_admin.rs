//! Supabase-native operation: after the platform's one-time step
//! (`CREATE EXTENSION hr_migrations SCHEMA extensions; GRANT
//! hr_migrations_admin TO postgres;`, keyring placed, library preloaded),
//! `postgres` — NOT a superuser, on the role layout of Supabase's image
//! (tests/fixtures/supabase/README.md) — runs every step of the runbook with
//! no superuser and no further grant.

use hr_migrations_it::*;

const MIGRATIONS: [&str; 3] = [
    "reference_tokens",
    "portal_sessions",
    "integration_credentials",
];

/// Supabase's layout with database `db` at `scale`, keyring versions 1 and
/// 2 (1 active), the library preloaded, and the platform's step done.
fn platform(scale: u32) -> Cluster {
    let keyring = write_keyring(&[(1, random_key()), (2, random_key())]);
    let mut conf = keyring_conf(&keyring, 1);
    conf.push("shared_preload_libraries=hr_migrations".into());
    let cl = Cluster::start_supabase(&conf);
    cl.supabase_db("hr", scale);
    platform_step(&cl, "hr");
    // Sessions without a candidate's organization would keep migration 2 in
    // dual (blocked rows): the application's data, fixed by its admin.
    cl.connect_as("hr", "postgres")
        .batch_execute(
            "DELETE FROM public.hr_candidate_portal_sessions s
              WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                                 WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
        )
        .unwrap();
    cl
}

/// The platform superuser's one-time step in database `db`.
fn platform_step(cl: &Cluster, db: &str) {
    cl.connect(db)
        .batch_execute(
            "CREATE EXTENSION hr_migrations SCHEMA extensions;
             GRANT hr_migrations_admin TO postgres;",
        )
        .unwrap();
}

fn is_superuser(c: &mut Client, role: &str) -> bool {
    c.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0)
}

/// `psql -c` as postgres, failing with psql's output.
fn as_postgres(cl: &Cluster, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=hr",
            cl.port
        ))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "as postgres: {sql}\n{text}");
    text
}

/// The runbook, as postgres: `make migrate`, preflight, status, progress,
/// every phase move (and back where allowed), retry, a rollback file and
/// the file again, key rotation by ALTER DATABASE and rewrap, the
/// deprecation period by ALTER DATABASE and contraction, pg_dump, and a
/// restore into a database the platform pre-created the extension in. The
/// platform superuser does nothing after its step.
#[test]
fn postgres_runs_every_step_of_the_runbook_with_no_superuser() {
    let cl = platform(300);
    let mut pg = cl.connect_as("hr", "postgres");
    assert!(!is_superuser(&mut pg, "postgres"));

    // make migrate, as postgres, choosing the active key version for the database.
    let out = std::process::Command::new(repo().join("scripts/migrate.sh"))
        .arg(format!("postgresql://postgres@127.0.0.1:{}/hr", cl.port))
        .arg("")
        .arg("1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make migrate as postgres:\n{text}");
    let mut pg = cl.connect_as("hr", "postgres");
    assert_all_migrated(&mut pg);

    // Preflight: no blocker, integrity intact; status and progress.
    let blockers: i64 = one(
        &mut pg,
        "SELECT count(*) FROM extensions.hr_preflight() WHERE status = 'blocker'",
    );
    assert_eq!(blockers, 0);
    let intact: String = one(
        &mut pg,
        "SELECT status FROM extensions.hr_preflight() WHERE check_name = 'integrity'",
    );
    assert_eq!(intact, "ok");
    let preloaded: String = one(
        &mut pg,
        "SELECT status FROM extensions.hr_preflight() WHERE check_name = 'library preloaded'",
    );
    assert_eq!(
        preloaded, "ok",
        "postgres cannot read shared_preload_libraries; the library says"
    );
    let finished: i64 = one(
        &mut pg,
        "SELECT count(*) FROM extensions.hr_migration_progress WHERE state = 'finished'",
    );
    assert!(finished >= 3, "{finished}");

    // Every phase forward, and back where the data allows.
    for m in MIGRATIONS {
        as_postgres(
            &cl,
            &format!("CALL extensions.hr_run_phase('{m}', 'enforced')"),
        );
        assert_eq!(status(&mut pg, m).phase, "enforced", "{m}");
    }
    as_postgres(
        &cl,
        "SELECT extensions.hr_set_phase('portal_sessions', 'migrated')",
    );
    as_postgres(
        &cl,
        "SELECT extensions.hr_set_phase('portal_sessions', 'dual')",
    );
    as_postgres(
        &cl,
        "CALL extensions.hr_run_phase('portal_sessions', 'enforced')",
    );
    assert_eq!(status(&mut pg, "portal_sessions").phase, "enforced");
    let forgotten: i64 = one(
        &mut pg,
        "SELECT extensions.hr_retry_failures('integration_credentials')",
    );
    assert_eq!(forgotten, 0);

    // A rollback file, then the migration file again.
    cl.psql_as_ok(
        "hr",
        "postgres",
        &repo().join("sql/rollback/002_portal_sessions.sql"),
        &[],
    );
    assert_eq!(status(&mut pg, "portal_sessions").phase, "not_applied");
    cl.psql_as_ok(
        "hr",
        "postgres",
        &repo().join("sql/migrations/002_portal_sessions.sql"),
        &[],
    );
    assert_eq!(status(&mut pg, "portal_sessions").phase, "migrated");

    // Key rotation to a version already in the keyring: the admin sets it
    // for the database; status counts what is not under it until the rewrap.
    pg.batch_execute("ALTER DATABASE hr SET hr_migrations.active_key_version = 2")
        .unwrap();
    let mut pg = cl.connect_as("hr", "postgres");
    let note = status(&mut pg, "integration_credentials").note;
    assert!(
        note.contains("not under the active key version 2"),
        "{note}"
    );
    let out = as_postgres(&cl, "CALL extensions.hr_run_rewrap()");
    assert!(out.contains("rewrap: finished:"), "{out}");
    // The data keys are rewrapped under version 2; the credentials are
    // sealed with them and stay as they are.
    let off_version: i64 = one(
        &mut pg,
        "SELECT count(*) FROM extensions.hr_organization_keys WHERE state <> 'retired' AND kek_version <> 2",
    );
    assert_eq!(off_version, 0);
    let not_v2: i64 = one(
        &mut pg,
        "SELECT count(*) FROM public.pf_credentials WHERE NOT starts_with(encrypted_value, 'hrc2.1.')",
    );
    assert_eq!(not_v2, 0);
    let note = status(&mut pg, "integration_credentials").note;
    assert!(!note.contains("not under the active key version"), "{note}");

    // The deprecation period for this database, then contraction.
    pg.batch_execute("ALTER DATABASE hr SET hr_migrations.deprecation_period = '0'")
        .unwrap();
    for m in ["reference_tokens", "integration_credentials"] {
        as_postgres(
            &cl,
            &format!("CALL extensions.hr_run_phase('{m}', 'contracted')"),
        );
    }
    let mut pg = cl.connect_as("hr", "postgres");
    for m in ["reference_tokens", "integration_credentials"] {
        assert_eq!(status(&mut pg, m).phase, "contracted", "{m}");
    }

    // The secrets read back as service_role after all of it (the fixture
    // has integrations without one).
    let mut sr = cl.connect_as("hr", "authenticator");
    sr.batch_execute("SET ROLE service_role").unwrap();
    let secrets: i64 = one(
        &mut sr,
        "SELECT count(extensions.hr_integration_secret(id)) FROM public.hr_job_board_integrations",
    );
    let integrations: i64 = one(
        &mut sr,
        "SELECT count(*) FROM public.hr_job_board_integrations",
    );
    assert!(secrets > integrations / 2, "{secrets} of {integrations}");

    // pg_dump as postgres; the platform pre-creates the extension in a new
    // database; pg_restore as postgres.
    let dump = cl.dir().join("hr.dump");
    let out = std::process::Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cl.port.to_string(),
            "-U",
            "postgres",
            "-Fc",
            "-f",
        ])
        .arg(&dump)
        .arg("hr")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump as postgres: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cl.connect("postgres")
        .batch_execute("CREATE DATABASE hr2 OWNER postgres")
        .unwrap();
    cl.connect_as("hr2", "postgres")
        .batch_execute("ALTER SCHEMA public OWNER TO postgres; CREATE SCHEMA extensions")
        .unwrap();
    cl.connect("hr2")
        .batch_execute("CREATE EXTENSION hr_migrations SCHEMA extensions")
        .unwrap();
    let out = std::process::Command::new("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cl.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "hr2",
        ])
        .arg(&dump)
        .output()
        .unwrap();
    // Expected, harmless errors: the schema and the extension exist (the
    // platform made them), the extension's comment is its owner's, and the
    // default privileges of supabase_admin are the platform's.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.contains("ERROR")) {
        assert!(
            line.contains("schema \"extensions\" already exists")
                || line.contains("must be owner of extension hr_migrations")
                || line.contains("must be member of role \"supabase_admin\""),
            "pg_restore as postgres: {line}\n{stderr}"
        );
    }
    let mut restored = cl.connect_as("hr2", "postgres");
    for m in MIGRATIONS {
        let before = status(&mut pg, m);
        let after = status(&mut restored, m);
        assert_eq!(
            (before.phase, before.total, before.pending, before.blocked),
            (after.phase, after.total, after.pending, after.blocked),
            "{m}"
        );
    }
    let mut sr2 = cl.connect_as("hr2", "authenticator");
    sr2.batch_execute("SET ROLE service_role").unwrap();
    let secrets2: i64 = one(
        &mut sr2,
        "SELECT count(extensions.hr_integration_secret(id)) FROM public.hr_job_board_integrations",
    );
    assert_eq!(secrets2, secrets);

    // A suspected leak of one organization's data key: postgres rotates it
    // and the rewrap reseals that organization's credentials. Another
    // organization leaves: postgres shreds its keys.
    let orgs: Vec<String> = pg
        .query(
            "SELECT organization_id::text FROM public.pf_credentials GROUP BY 1 ORDER BY count(*) DESC LIMIT 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (leaked, leaving) = (&orgs[0], &orgs[1]);
    let generation: i32 = one(
        &mut pg,
        &format!("SELECT extensions.hr_rotate_organization_key('{leaked}')"),
    );
    assert_eq!(generation, 2);
    as_postgres(&cl, "CALL extensions.hr_run_rewrap()");
    let (theirs, resealed): (i64, i64) = {
        let r = pg
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE starts_with(encrypted_value, 'hrc2.2.'))
                   FROM public.pf_credentials WHERE organization_id = $1::text::uuid",
                &[leaked],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(resealed, theirs);
    let states: String = one(
        &mut pg,
        &format!("SELECT string_agg(generation || ' ' || state, ', ' ORDER BY generation) FROM extensions.hr_organization_keys WHERE organization_id = '{leaked}'"),
    );
    assert_eq!(states, "1 retired, 2 active");
    let leaving_credentials: i64 = one(
        &mut pg,
        &format!("SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{leaving}'"),
    );
    let shredded: i64 = one(
        &mut pg,
        &format!("SELECT extensions.hr_shred_organization('{leaving}')"),
    );
    assert_eq!(shredded, leaving_credentials);
    let e = sr
        .query_one(
            "SELECT extensions.hr_integration_secret(id) FROM public.hr_job_board_integrations
              WHERE organization_id = $1::text::uuid AND credential_id IS NOT NULL LIMIT 1",
            &[leaving],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{}", error_text(&e));
    assert!(
        error_text(&e).contains(leaving.as_str()),
        "{}",
        error_text(&e)
    );
    let readable: i64 = one(
        &mut sr,
        &format!("SELECT count(extensions.hr_integration_secret(id)) FROM public.hr_job_board_integrations WHERE organization_id <> '{leaving}'"),
    );
    assert_eq!(readable, secrets - leaving_credentials);
    for sql in [
        format!("SELECT extensions.hr_shred_organization('{leaked}')"),
        format!("SELECT extensions.hr_rotate_organization_key('{leaked}')"),
    ] {
        let e = sr.batch_execute(&sql).unwrap_err();
        assert_eq!(
            sqlstate(&e),
            "42501",
            "service_role: {sql}: {}",
            error_text(&e)
        );
    }

    // Through all of it: postgres is no superuser and not the definer.
    let mut admin = cl.connect("hr");
    assert!(!is_superuser(&mut admin, "postgres"));
    let definer_members: i64 = one(
        &mut admin,
        "SELECT count(*) FROM pg_auth_members WHERE roleid = 'hr_migrations_definer'::regrole",
    );
    assert_eq!(definer_members, 0);
}

/// The active key version is the admin's to choose (SET, ALTER DATABASE)
/// and no application role's: not by SET, not as authenticator.
#[test]
fn application_roles_cannot_choose_the_key() {
    let cl = platform(20);
    let mut pg = cl.connect_as("hr", "postgres");
    pg.batch_execute("SET hr_migrations.active_key_version = 2")
        .unwrap();
    for role in ["anon", "authenticated", "service_role"] {
        let mut c = cl.connect_as("hr", "authenticator");
        c.batch_execute(&format!("SET ROLE {role}")).unwrap();
        assert_raises(
            &mut c,
            "SET hr_migrations.active_key_version = 2",
            "42501",
            &[],
        );
        assert_raises(
            &mut c,
            "SELECT set_config('hr_migrations.active_key_version', '2', true)",
            "42501",
            &[],
        );
    }
    let mut auth = cl.connect_as("hr", "authenticator");
    assert_raises(
        &mut auth,
        "SET hr_migrations.active_key_version = 2",
        "42501",
        &[],
    );
    // The keyring's path stays the platform's.
    assert_raises(
        &mut pg,
        "SET hr_migrations.keyring_file = '/tmp/k'",
        "55P02",
        &[],
    );
    assert_raises(
        &mut pg,
        "ALTER SYSTEM SET hr_migrations.keyring_file = '/tmp/k'",
        "42501",
        &[],
    );
}

/// What hr_migrations_admin holds: EXECUTE on every function and procedure
/// of the extension but the four of hr_admin_denied_functions(), SELECT on
/// every table and view, the writes of hr_admin_table_privileges(), and
/// nothing that would let it bless a change, set the backfill flag or
/// record a key check value.
#[test]
fn the_admin_role_holds_exactly_its_privileges() {
    let cl = platform(20);
    let mut c = cl.connect("hr");
    let denied: Vec<String> = c
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
              JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'hr_migrations'
             WHERE NOT has_function_privilege('hr_migrations_admin', p.oid, 'EXECUTE')
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        denied,
        [
            "hr_migrations.hr_apply_privileges()",
            "hr_migrations.hr_key_check(integer,text)",
            "hr_migrations.hr_record_fingerprints()",
            "hr_migrations.hr_set_backfill_flag(boolean)",
        ]
    );
    let writes: Vec<String> = c
        .query(
            "SELECT c.relname || ' ' || string_agg(p, ',' ORDER BY p) FROM pg_class c
              JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
              JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'hr_migrations'
             CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES']) p
             WHERE c.relkind = 'r' AND has_table_privilege('hr_migrations_admin', c.oid, p)
             GROUP BY c.relname ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        writes,
        [
            "hr_apply_state DELETE,INSERT,UPDATE",
            "hr_batch_failures DELETE,INSERT,UPDATE",
            "hr_batch_progress DELETE,INSERT,UPDATE",
            "hr_key_checks INSERT",
            "hr_migration_phases DELETE,INSERT,UPDATE",
            "hr_migration_registry DELETE,INSERT,UPDATE",
            "hr_organization_keys DELETE,INSERT",
        ]
    );
    let unreadable: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_class c
          JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'hr_migrations'
         WHERE c.relkind IN ('r', 'v') AND NOT has_table_privilege('hr_migrations_admin', c.oid, 'SELECT')",
    );
    assert_eq!(unreadable, 0);
    // The denied functions, called by postgres: refused.
    let mut pg = cl.connect_as("hr", "postgres");
    for sql in [
        "SELECT hr_migrations.hr_record_fingerprints()",
        "SELECT hr_migrations.hr_set_backfill_flag(true)",
        "SELECT hr_migrations.hr_key_check(9, 'x')",
    ] {
        assert_raises(&mut pg, sql, "42501", &[]);
    }
    // Application roles got nothing of it.
    for role in ["anon", "authenticated", "service_role", "authenticator"] {
        let member: bool = one(
            &mut c,
            &format!("SELECT pg_has_role('{role}', 'hr_migrations_admin', 'USAGE')"),
        );
        assert!(!member, "{role}");
    }
}
