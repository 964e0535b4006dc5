//! Operations a DBA runs on a busy database: DDL that waits for locks
//! without queueing traffic, the preflight, the contract phase, the upgrade
//! from 0.1.0 and 0.2.0 (and the library serving their SQL until then),
//! and pg_dump/pg_restore of a migrated database.

use std::time::Duration;

use hr_migrations_it::*;

fn keyring_cluster(extra: &[&str]) -> (Cluster, std::path::PathBuf) {
    let path = write_keyring(&[(1, random_key())]);
    let mut conf = keyring_conf(&path, 1);
    conf.extend(extra.iter().map(|s| s.to_string()));
    (Cluster::start(&conf), path)
}

fn drop_unresolvable_sessions(c: &mut Client) {
    c.batch_execute(
        "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
}

/// The plaintext tokens and secrets before any migration, to check every
/// one still verifies and reads afterwards.
fn keep_oracle(c: &mut Client) {
    c.batch_execute(
        "CREATE SCHEMA oracle;
         CREATE TABLE oracle.refs AS SELECT id, access_token FROM public.hr_references WHERE access_token <> '';
         CREATE TABLE oracle.secrets AS
         SELECT id, jsonb_build_object('api_key', api_key, 'api_secret', api_secret, 'refresh_token', refresh_token) AS secret
           FROM public.hr_job_board_integrations
          WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL;
         GRANT USAGE ON SCHEMA oracle TO service_role;
         GRANT SELECT ON ALL TABLES IN SCHEMA oracle TO service_role;",
    )
    .unwrap();
}

/// (tokens that do not verify, secrets that do not read back), checked as
/// service_role would.
fn broken_tokens_and_secrets(c: &mut Client) -> (i64, i64) {
    c.batch_execute("SET ROLE service_role").unwrap();
    let tokens: i64 = one(
        c,
        "SELECT count(*) FROM oracle.refs o WHERE NOT hr_verify_reference_token(o.id, o.access_token)",
    );
    let secrets: i64 = one(
        c,
        "SELECT count(*) FROM oracle.secrets o WHERE hr_integration_secret(o.id) IS DISTINCT FROM o.secret",
    );
    c.batch_execute("RESET ROLE").unwrap();
    (tokens, secrets)
}

/// The extension's catalog, as text to compare: every function (signature,
/// kind, volatility, strictness, parallel safety, SECURITY DEFINER, config,
/// owner, sorted ACL) and every table and view (owner, sorted ACL).
fn extension_catalog(c: &mut Client) -> Vec<String> {
    c.query(
        "WITH members AS (
             SELECT d.classid, d.objid FROM pg_depend d
              WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations'))
         SELECT format('%s.%s(%s) %s %s%s%s secdef=%s config=%s owner=%s acl=%s', p.pronamespace::regnamespace, p.proname,
                       pg_get_function_identity_arguments(p.oid), p.prokind,
                       p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proconfig, p.proowner::regrole,
                       (SELECT string_agg(format('%s:%s', coalesce(g.grantee::regrole::text, 'PUBLIC'), g.privilege_type), ',' ORDER BY 1)
                          FROM aclexplode(p.proacl) g))
           FROM members m JOIN pg_proc p ON p.oid = m.objid AND m.classid = 'pg_proc'::regclass
         UNION ALL
         SELECT format('%s.%s %s owner=%s acl=%s', r.relnamespace::regnamespace, r.relname, r.relkind, r.relowner::regrole,
                       (SELECT string_agg(format('%s:%s', CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END, g.privilege_type), ',' ORDER BY 1)
                          FROM aclexplode(r.relacl) g))
           FROM members m JOIN pg_class r ON r.oid = m.objid AND m.classid = 'pg_class'::regclass
          WHERE r.relkind IN ('r', 'v')
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A database "old" at scale 1000 with `version` of the extension, its
/// oracle of tokens and secrets, and every migration applied by that
/// version's own scripts (tests/fixtures/v<version>/migrations).
fn migrated_by_release(cl: &Cluster, version: &str) -> Client {
    let mut admin = cl.connect("postgres");
    admin.batch_execute("CREATE DATABASE old").unwrap();
    cl.psql_ok("old", &repo().join("tests/fixtures/schema.sql"), &[]);
    cl.psql_ok(
        "old",
        &repo().join("tests/fixtures/generate.sql"),
        &[("scale", "1000")],
    );
    let mut c = cl.connect("old");
    c.batch_execute(&format!(
        "CREATE EXTENSION hr_migrations VERSION '{version}' SCHEMA extensions;
         ALTER DATABASE old SET search_path = public, extensions;"
    ))
    .unwrap();
    drop_unresolvable_sessions(&mut c);
    keep_oracle(&mut c);
    let scripts = repo().join(format!("tests/fixtures/v{version}/migrations"));
    for f in [
        "001_reference_tokens.sql",
        "002_portal_sessions.sql",
        "003_integration_credentials.sql",
    ] {
        cl.psql_ok("old", &scripts.join(f), &[]);
    }
    cl.connect("old")
}

/// ALTER EXTENSION UPDATE in database "old", checked to reach this version;
/// a new session on it.
fn update_to_current(cl: &Cluster, mut c: Client) -> Client {
    c.batch_execute("ALTER EXTENSION hr_migrations UPDATE")
        .unwrap();
    let mut c = cl.connect("old");
    let version: String = one(
        &mut c,
        "SELECT extversion FROM pg_extension WHERE extname = 'hr_migrations'",
    );
    assert_eq!(version, extension_version());
    c
}

/// Each migration and its phase, as status reports them.
fn phases(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT migration || '=' || phase FROM hr_migration_status() ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The upgraded database's extension catalog equals a fresh install's (in
/// a new database "fresh").
fn assert_catalog_of_a_fresh_install(cl: &Cluster, upgraded: &mut Client) {
    cl.connect("postgres")
        .batch_execute("CREATE DATABASE fresh")
        .unwrap();
    cl.psql_ok("fresh", &repo().join("tests/fixtures/schema.sql"), &[]);
    let mut f = cl.connect("fresh");
    f.batch_execute("CREATE EXTENSION hr_migrations SCHEMA extensions")
        .unwrap();
    let (upgraded, fresh) = (extension_catalog(upgraded), extension_catalog(&mut f));
    let only_upgraded: Vec<_> = upgraded.iter().filter(|x| !fresh.contains(x)).collect();
    let only_fresh: Vec<_> = fresh.iter().filter(|x| !upgraded.contains(x)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "upgraded but not fresh: {only_upgraded:#?}\nfresh but not upgraded: {only_fresh:#?}"
    );
}

#[test]
fn upgrade_from_0_1_0_keeps_every_token_and_secret() {
    let (cl, _) = keyring_cluster(&[]);
    let mut c = migrated_by_release(&cl, "0.1.0");
    c.batch_execute("SELECT hr_set_phase('reference_tokens', 'enforced')")
        .unwrap();
    let phases_before = phases(&mut c);
    let checks_before: String = one(
        &mut c,
        "SELECT string_agg(key_version || check_value, ',') FROM hr_key_checks",
    );

    // 0.1.0 -> 0.2.0 -> 0.3.0: the 0.2.0 script as 0.2.0 shipped it, run
    // with this library, then 0.3.0's.
    let mut c = update_to_current(&cl, c);
    assert_eq!(phases_before, phases(&mut c));
    let checks_after: String = one(
        &mut c,
        "SELECT string_agg(key_version || check_value, ',') FROM hr_migrations.hr_key_checks",
    );
    assert_eq!(checks_before, checks_after);
    assert_eq!(broken_tokens_and_secrets(&mut c), (0, 0));

    // The catalog equals a fresh install's.
    assert_catalog_of_a_fresh_install(&cl, &mut c);

    // And the current paths work on it: the scripts again, enforce, clear.
    for (_, script) in migrations(&mut c) {
        cl.migrate("old", &script, &[]);
    }
    c.batch_execute("CALL hr_run_phase('integration_credentials', 'enforced')")
        .unwrap();
    let plaintext: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert_eq!(plaintext, 0);
    assert_eq!(broken_tokens_and_secrets(&mut c), (0, 0));
}

/// A database migrated by 0.2.0's own scripts (tests/fixtures/v0.2.0, as
/// 0.2.0 shipped them) gets every fix of 0.3.0: ALTER EXTENSION UPDATE moves
/// the extension into schema hr_migrations and points the application's
/// triggers and policies at it; running sql/migrations/ again closes
/// pf_credentials and links each credential once; running them once more
/// changes nothing.
#[test]
fn upgrade_from_0_2_0_keeps_every_token_and_secret_and_gets_every_fix() {
    let (cl, _) = keyring_cluster(&[]);
    let mut c = migrated_by_release(&cl, "0.2.0");
    c.batch_execute("CALL hr_run_phase('reference_tokens', 'enforced')")
        .unwrap();
    let phases_before = phases(&mut c);
    // 0.2.0 left pf_credentials open to anon (finding 5 of #15).
    let anon_reads = |c: &mut Client| -> bool {
        one(
            c,
            "SELECT has_table_privilege('anon', 'public.pf_credentials', 'SELECT')",
        )
    };
    assert!(anon_reads(&mut c));

    let mut c = update_to_current(&cl, c);
    assert_eq!(phases_before, phases(&mut c));
    assert_eq!(broken_tokens_and_secrets(&mut c), (0, 0));
    // The application's triggers and policies call the new functions only.
    let stale: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid
          WHERE d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass)
            AND p.pronamespace <> 'hr_migrations'::regnamespace AND p.proname LIKE 'hr\\_%'",
    );
    assert_eq!(
        stale, 0,
        "a trigger or policy still calls a function outside hr_migrations"
    );
    let integrity: String = one(
        &mut c,
        "SELECT status FROM hr_preflight() WHERE check_name = 'integrity'",
    );
    assert_eq!(integrity, "ok");

    // The catalog equals a fresh install's.
    assert_catalog_of_a_fresh_install(&cl, &mut c);

    // The files again bring the rest; once more, nothing changes.
    for (_, script) in migrations(&mut c) {
        cl.migrate("old", &script, &[]);
    }
    assert!(!anon_reads(&mut c), "pf_credentials is still open to anon");
    let once = catalog_snapshot(&mut c);
    for (_, script) in migrations(&mut c) {
        cl.migrate("old", &script, &[]);
    }
    assert_eq!(
        once,
        catalog_snapshot(&mut c),
        "running the files again changed something"
    );
    assert_eq!(broken_tokens_and_secrets(&mut c), (0, 0));
}

/// Every file's DDL gives way to a reader that holds its table longer than
/// one attempt, and retries until it gets its lock. That a writer arriving
/// meanwhile is not queued behind the DDL is the isolation spec
/// `tests/isolation/specs/ddl_retries_instead_of_queueing_writers.spec`.
#[test]
fn every_file_retries_its_ddl_while_a_reader_holds_the_table() {
    let (cl, _) = keyring_cluster(&[]);
    cl.fixture_db("hr", 2000);
    let mut c = cl.connect("hr");
    drop_unresolvable_sessions(&mut c);
    c.batch_execute("LOAD 'hr_migrations'").unwrap(); // defines the setting in this backend
    c.batch_execute("ALTER SYSTEM SET hr_migrations.ddl_lock_timeout = 300")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for (script, table) in [
        ("001_reference_tokens.sql", "hr_references"),
        ("002_portal_sessions.sql", "hr_candidate_portal_sessions"),
        (
            "003_integration_credentials.sql",
            "hr_job_board_integrations",
        ),
    ] {
        // A reader holds the table for 2.5 s: longer than one attempt.
        let holder = {
            let url = cl.url("hr");
            let table = table.to_string();
            std::thread::spawn(move || {
                let mut h = Client::connect(&url, NoTls).unwrap();
                h.batch_execute(&format!(
                    "BEGIN; LOCK TABLE public.{table} IN ACCESS SHARE MODE"
                ))
                .unwrap();
                std::thread::sleep(Duration::from_millis(2500));
                h.batch_execute("COMMIT").unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let out = cl.migrate("hr", script, &[]);
        holder.join().unwrap();
        assert!(
            out.contains("lock not available after 300 ms"),
            "{script}: no retry was needed?\n{out}"
        );
    }
    assert_all_migrated(&mut c);
}

#[test]
fn preflight_reports_each_planted_problem_and_nothing_on_a_clean_database() {
    let (cl, keyring) = keyring_cluster(&["shared_preload_libraries=hr_migrations"]);
    cl.fixture_db("hr", 300);
    let mut c = cl.connect("hr");
    drop_unresolvable_sessions(&mut c);
    cl.migrate_all("hr");
    let problems = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT migration || ' | ' || check_name || ' | ' || status || ' | ' || detail
               FROM hr_preflight() WHERE status <> 'ok' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(
        problems(&mut c),
        Vec::<String>::new(),
        "a clean, migrated database"
    );
    c.batch_execute("ALTER SYSTEM SET hr_migrations.preflight_long_transaction = 500")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Plant one of each.
    c.batch_execute(
        "BEGIN; SET LOCAL session_replication_role = replica;
         INSERT INTO public.hr_candidate_portal_sessions (candidate_id) VALUES (gen_random_uuid());  -- an orphan
         COMMIT;",
    )
    .unwrap();
    // An index build that fails half way leaves an INVALID index.
    c.batch_execute(
        "CREATE INDEX CONCURRENTLY hr_bad_index ON public.hr_references ((1 / (length(referee_name) - length(referee_name))))",
    )
    .unwrap_err();
    let mut idle = cl.connect("hr");
    idle.batch_execute("BEGIN; SELECT count(*) FROM public.hr_job_board_integrations")
        .unwrap();
    let idle_pid: i32 = one(&mut idle, "SELECT pg_backend_pid()");
    c.batch_execute("GRANT TRIGGER ON public.pf_credentials TO authenticated")
        .unwrap();
    c.batch_execute(
        "CREATE ROLE planter NOLOGIN;
         CREATE FUNCTION public.planted() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         ALTER FUNCTION public.planted() OWNER TO planter;
         CREATE TRIGGER planted BEFORE UPDATE ON public.hr_references FOR EACH ROW EXECUTE FUNCTION public.planted();",
    )
    .unwrap();
    c.batch_execute(&format!(
        "ALTER SYSTEM SET hr_migrations.keyring_file = '{}.missing'",
        keyring.display()
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(800));

    let mut c = cl.connect("hr");
    let p = problems(&mut c).join("\n");
    for needle in [
        "portal_sessions | rows that cannot be migrated | warning | 1 rows of public.hr_candidate_portal_sessions",
        "reference_tokens | invalid indexes | warning | index public.hr_bad_index is INVALID",
        &format!("integration_credentials | long transactions on the table | warning | pid {idle_pid} "),
        "integration_credentials | TRIGGER and TRUNCATE grants | blocker | roles authenticated hold TRIGGER on public.pf_credentials",
        "reference_tokens | foreign triggers | blocker | trigger planted on public.hr_references runs public.planted(), owned by role planter",
        "integration_credentials | keyring | blocker | could not read the keyring file",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    // The scripts stop on a blocker, before changing anything.
    let out = cl.psql_file(
        "hr",
        &repo().join("sql/migrations/001_reference_tokens.sql"),
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("preflight blockers: nothing was changed")
    );
    drop(idle);
}

#[test]
fn contract_is_refused_before_the_deprecation_period_and_erases_after_it() {
    let (cl, _) = keyring_cluster(&[]);
    cl.fixture_db("hr", 1000);
    let mut c = cl.connect("hr");
    drop_unresolvable_sessions(&mut c);
    keep_oracle(&mut c);
    cl.migrate_all("hr");
    for (m, _) in migrations(&mut c) {
        c.batch_execute(&format!("CALL hr_run_phase('{m}', 'enforced')"))
            .unwrap();
    }
    // Refused, saying when it becomes possible.
    let text = assert_raises(
        &mut c,
        "SELECT hr_set_phase('reference_tokens', 'contracted')",
        "55000",
        &[],
    );
    assert!(
        text.contains("deprecation_period") && text.contains("days"),
        "{text}"
    );
    let note = status(&mut c, "reference_tokens").note;
    assert!(note.contains("contracted is possible from"), "{note}");
    assert!(note.contains("legacy plaintext tokens remain"), "{note}");

    c.batch_execute("SET hr_migrations.deprecation_period = '0'")
        .unwrap();
    for (m, _) in migrations(&mut c) {
        c.batch_execute(&format!("CALL hr_run_phase('{m}', 'contracted')"))
            .unwrap();
        assert_eq!(status(&mut c, &m).phase, "contracted", "{m}");
    }
    let legacy_columns: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_attribute
          WHERE attrelid IN ('public.hr_references'::regclass, 'public.hr_job_board_integrations'::regclass)
            AND attname IN ('access_token', 'api_key', 'api_secret', 'refresh_token') AND NOT attisdropped",
    );
    assert_eq!(legacy_columns, 0);
    assert_eq!(broken_tokens_and_secrets(&mut c), (0, 0));
    // New tokens and secrets still work, and it cannot be undone.
    let rid: String = one(&mut c, "SELECT id::text FROM oracle.refs LIMIT 1");
    let tok: String = one(&mut c, &format!("SELECT hr_issue_reference_token('{rid}')"));
    assert!(one::<bool>(
        &mut c,
        &format!("SELECT hr_verify_reference_token('{rid}', '{tok}')")
    ));
    assert_raises(
        &mut c,
        "SELECT hr_set_phase('reference_tokens', 'enforced')",
        "55000",
        &[],
    );
    let s = status(&mut c, "integration_credentials");
    assert!(s.note.contains("plaintext columns dropped"), "{}", s.note);
}

#[test]
fn dump_and_restore_keeps_rows_secrets_tokens_and_phases() {
    let (cl, _) = keyring_cluster(&[]);
    cl.fixture_db("hr", 500);
    let mut c = cl.connect("hr");
    drop_unresolvable_sessions(&mut c);
    keep_oracle(&mut c);
    cl.migrate_all("hr");
    c.batch_execute("CALL hr_run_phase('reference_tokens', 'enforced')")
        .unwrap();
    let fingerprint = |c: &mut Client| -> String {
        one(
            c,
            "SELECT md5(concat_ws('|',
                (SELECT string_agg(r::text, ',' ORDER BY r.id) FROM public.hr_references r),
                (SELECT string_agg(s::text, ',' ORDER BY s.id) FROM public.hr_candidate_portal_sessions s),
                (SELECT string_agg(i::text, ',' ORDER BY i.id) FROM public.hr_job_board_integrations i),
                (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM public.pf_credentials p),
                (SELECT string_agg(migration || phase, ',' ORDER BY migration) FROM hr_migration_status())))",
        )
    };
    let before = fingerprint(&mut c);
    let dump = std::env::temp_dir().join(format!("hrm-dump-{}.dump", std::process::id()));
    cl.dump("hr", &dump);
    cl.restore("restored", &dump);
    let _ = std::fs::remove_file(&dump);
    let mut r = cl.connect("restored");
    r.batch_execute("SET search_path = public, extensions")
        .unwrap();
    assert_eq!(
        fingerprint(&mut r),
        before,
        "rows, phases or credentials changed"
    );
    // No trigger fired during the restore: nothing was logged or re-encrypted.
    let logs =
        |c: &mut Client| -> i64 { one(c, "SELECT count(*) FROM public.pf_credential_migrations") };
    assert_eq!(logs(&mut r), logs(&mut c));
    assert_eq!(broken_tokens_and_secrets(&mut r), (0, 0));
}

/// The C functions of an install script: symbol -> its SQL signature
/// (argument and result types, comments and volatility left out).
fn c_functions(script: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for chunk in script.split("CREATE ").skip(1) {
        let Some(at) = chunk.find("AS 'MODULE_PATHNAME', '") else {
            continue;
        };
        let symbol = chunk[at + 23..].split('\'').next().unwrap().to_string();
        let Some(open) = chunk.find('(') else {
            continue;
        };
        let head = &chunk[open..chunk.find("\nLANGUAGE").unwrap_or(at)];
        let mut plain = String::new();
        let mut rest = head;
        while let Some(c) = rest.find("/*") {
            plain.push_str(&rest[..c]);
            rest = rest[c..].split_once("*/").map_or("", |x| x.1);
        }
        plain.push_str(rest);
        let signature = plain
            .lines()
            .filter(|l| {
                let w = l.split_whitespace().next().unwrap_or("");
                ![
                    "IMMUTABLE",
                    "STABLE",
                    "VOLATILE",
                    "STRICT",
                    "PARALLEL",
                    "SECURITY",
                    "COST",
                    "ROWS",
                    "SET",
                ]
                .contains(&w)
            })
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ");
        out.insert(symbol, signature);
    }
    out
}

/// Between installing a new library and ALTER EXTENSION UPDATE, a
/// database runs its old release's SQL against the new library: every C
/// symbol an earlier release's SQL names must still be exported, with the
/// same signature wherever this release's SQL names it too (a symbol whose
/// arguments changed reads arguments that were never passed). 0.3.0 keeps
/// 0.2.0's signatures of hr_seal_verified, hr_open_secret and
/// hr_secret_matches under their old symbols (src/credentials.rs,
/// `compat_0_2`).
#[test]
fn the_library_serves_the_sql_of_every_earlier_release() {
    let pg_config = |what: &str| -> String {
        let out = std::process::Command::new("pg_config")
            .arg(what)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let current = std::fs::read_to_string(format!(
        "{}/extension/hr_migrations--{}.sql",
        pg_config("--sharedir"),
        extension_version()
    ))
    .unwrap();
    let current = c_functions(&current);
    assert!(current.len() > 30, "{current:?}");
    let nm = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(format!("{}/hr_migrations.so", pg_config("--pkglibdir")))
        .output()
        .expect("nm (binutils)");
    assert!(nm.status.success());
    let exported: std::collections::HashSet<String> = String::from_utf8(nm.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    let mut problems = Vec::new();
    for release in ["0.1.0", "0.2.0"] {
        let old = std::fs::read_to_string(repo().join(format!("sql/hr_migrations--{release}.sql")))
            .unwrap();
        let old = c_functions(&old);
        assert!(old.len() >= 10, "{release}: {old:?}");
        for (symbol, signature) in &old {
            if !exported.contains(symbol) || !exported.contains(&format!("pg_finfo_{symbol}")) {
                problems.push(format!("{release}: {symbol} is not exported"));
            }
            if let Some(now) = current.get(symbol) {
                if now != signature {
                    problems.push(format!("{release}: {symbol} was {signature}, is {now}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Supabase's advisor (`unindexed_foreign_keys`): a foreign key without an
/// index on its columns makes every delete or key update of the referenced
/// row scan the referencing table. Every foreign key the migrations add has
/// an index whose leading columns are its columns, built concurrently by
/// the files.
#[test]
fn every_foreign_key_the_migrations_add_has_an_index() {
    let (cl, _) = keyring_cluster(&[]);
    cl.fixture_db("hr", 300);
    let mut c = cl.connect("hr");
    drop_unresolvable_sessions(&mut c);
    let foreign_keys = "SELECT conrelid::regclass::text || ' ' || conname || ' (' ||
                (SELECT string_agg(attname, ', ' ORDER BY k.n) FROM unnest(conkey) WITH ORDINALITY k(a, n)
                   JOIN pg_attribute ON attrelid = conrelid AND attnum = k.a) || ')' AS fk,
                EXISTS (SELECT 1 FROM pg_index i
                         WHERE i.indrelid = conrelid AND i.indisvalid
                           AND (i.indkey::int2[])[0:cardinality(conkey) - 1] = conkey) AS indexed
           FROM pg_constraint WHERE contype = 'f' ORDER BY 1";
    let before: Vec<String> = c
        .query(foreign_keys, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    cl.migrate_all("hr");
    let added: Vec<(String, bool)> = c
        .query(foreign_keys, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
        .filter(|(fk, _)| !before.contains(fk))
        .collect();
    assert!(added.len() >= 4, "{added:?}");
    let unindexed: Vec<&String> = added.iter().filter(|(_, i)| !i).map(|(fk, _)| fk).collect();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}
