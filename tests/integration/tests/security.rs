//! Security under Supabase's real default privileges (docs/security.md).
//!
//! The fixture applies `ALTER DEFAULT PRIVILEGES ... GRANT ALL ... TO anon,
//! authenticated, service_role` before it creates anything, so the
//! extension and the tables its scripts create are born granted to every
//! API role. One test per finding of the 0.1.0 review, a catalog test that
//! holds the documented allowlist equal to the catalog, and an attacker
//! test; the last two run in every layout: the extension in `public` and in
//! `extensions`, the library preloaded and not.

use std::collections::BTreeSet;
use std::time::Duration;

use hr_migrations_it::*;

/// Where the extension lives and whether the library is preloaded.
#[derive(Clone, Copy, Debug)]
struct Layout {
    schema: &'static str,
    preload: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        schema: "extensions",
        preload: true,
    },
    Layout {
        schema: "extensions",
        preload: false,
    },
    Layout {
        schema: "public",
        preload: true,
    },
    Layout {
        schema: "public",
        preload: false,
    },
];

const APP_ROLES: [&str; 3] = ["anon", "authenticated", "service_role"];

struct World {
    cl: Cluster,
    schema: &'static str,
    keyring: std::path::PathBuf,
    org_a: String,
    org_b: String,
}

impl World {
    /// A migrated database "hr": fixture at `scale`, unresolvable sessions
    /// removed, every migration applied; a canary role that must never
    /// become a superuser; a table planted code would write evidence to.
    fn new(layout: Layout, scale: u32) -> World {
        let key = random_key();
        let keyring = write_keyring(&[(1, key), (2, random_key())]);
        let mut conf = keyring_conf(&keyring, 1);
        if layout.preload {
            conf.push("shared_preload_libraries=hr_migrations".into());
        }
        conf.push("log_min_messages=warning".into());
        let cl = Cluster::start(&conf);
        cl.fixture_db_in("hr", scale, layout.schema);
        let mut c = cl.connect("hr");
        c.batch_execute(
            "DELETE FROM public.hr_candidate_portal_sessions s
              WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                                 WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL);
             DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'canary') THEN
                 CREATE ROLE canary NOLOGIN;
               END IF;
             END $$;
             CREATE TABLE public.evidence (ran_as text, session_as text, at timestamptz DEFAULT now());
             GRANT INSERT ON public.evidence TO PUBLIC;",
        )
        .unwrap();
        cl.migrate_all("hr");
        let orgs: Vec<String> = c
            .query(
                "SELECT id::text FROM public.pf_organizations ORDER BY name LIMIT 2",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        World {
            cl,
            schema: layout.schema,
            keyring,
            org_a: orgs[0].clone(),
            org_b: orgs[1].clone(),
        }
    }

    fn dba(&self) -> Client {
        self.cl.connect("hr")
    }

    /// A session that is `role` for its whole life (PostgREST's
    /// authenticator, SET ROLE), with organization `org`'s claims.
    fn as_role(&self, role: &str, org: Option<&str>) -> Client {
        let mut c = self.cl.connect_as("hr", "authenticator");
        c.batch_execute(&format!("SET ROLE {role}")).unwrap();
        if let Some(org) = org {
            c.batch_execute(&format!(
                "SELECT set_config('request.jwt.claims', '{{\"organization_id\":\"{org}\",\"role\":\"{role}\"}}', false)"
            ))
            .unwrap();
        }
        c
    }

    fn canary_is_superuser(&self) -> bool {
        one(
            &mut self.dba(),
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'canary'",
        )
    }

    fn evidence(&self) -> Vec<String> {
        self.dba()
            .query(
                "SELECT ran_as || ' (session ' || session_as || ')' FROM public.evidence",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// The extension's functions: (qualified signature, name with argument
/// types, is a procedure, returns trigger).
fn extension_functions(c: &mut Client) -> Vec<(String, String, bool, bool)> {
    c.query(
        "SELECT p.oid::regprocedure::text,
                p.proname || '(' || coalesce((SELECT string_agg(format_type(t, NULL), ',' ORDER BY i)
                                               FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i)), '') || ')',
                p.prokind = 'p', p.prorettype = 'trigger'::regtype
           FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
          WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations')
          ORDER BY 2",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// NULL arguments of the right types for a function or procedure. For a
/// function each is a sub-select: the planner folds a STRICT function of
/// constant NULLs to NULL without ever checking EXECUTE, and a sub-select
/// keeps the call (and its privilege check) in the plan.
fn null_args(c: &mut Client, signature: &str, is_proc: bool) -> String {
    let pattern = if is_proc {
        "NULL::%s"
    } else {
        "(SELECT NULL::%s)"
    };
    c.query_one(
        "SELECT '(' || coalesce(string_agg(format($2, format_type(a.t, NULL)), ', ' ORDER BY a.i) FILTER (WHERE a.t IS NOT NULL), '') || ')'
           FROM pg_proc p LEFT JOIN LATERAL unnest(p.proargtypes) WITH ORDINALITY a(t, i) ON true
          WHERE p.oid = $1::text::regprocedure",
        &[&signature, &pattern],
    )
    .unwrap()
    .get(0)
}

/// The allowlist table of docs/security.md: (role, object, privilege).
fn documented_allowlist() -> BTreeSet<(String, String, String)> {
    let doc = std::fs::read_to_string(repo().join("docs/security.md")).unwrap();
    let start = doc
        .find("<!-- allowlist:begin -->")
        .expect("allowlist begin marker");
    let end = doc
        .find("<!-- allowlist:end -->")
        .expect("allowlist end marker");
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| role") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            (cells[1].clone(), cells[2].clone(), cells[3].clone())
        })
        .collect()
}

/// Tables whose privileges the allowlist governs: the extension's own and
/// the two the migration scripts create for it.
fn governed_tables(c: &mut Client, schema: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = c
        .query(
            "SELECT c.oid::regclass::text, c.relname::text
               FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
              WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations')
                AND c.relkind IN ('r', 'v')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let _ = schema;
    for t in ["hr_reference_token_validations", "pf_credential_migrations"] {
        v.push((format!("public.{t}"), t.to_string()));
    }
    v
}

/// Tables the extension writes that belong to the application.
const APP_TABLES_WRITTEN: [&str; 4] = [
    "public.hr_references",
    "public.hr_candidate_portal_sessions",
    "public.hr_job_board_integrations",
    "public.pf_credentials",
];

#[test]
fn catalog_equals_the_allowlist() {
    let documented = documented_allowlist();
    assert!(
        documented.len() >= 10,
        "the allowlist table was not found: {documented:?}"
    );
    for layout in LAYOUTS {
        let w = World::new(layout, 200);
        let mut c = w.dba();
        let functions = extension_functions(&mut c);
        let tables = governed_tables(&mut c, w.schema);
        for role in APP_ROLES.into_iter().chain(["pg_monitor"]) {
            let mut actual = BTreeSet::new();
            for (sig, name, is_proc, _) in &functions {
                let can: bool = c
                    .query_one(
                        "SELECT has_function_privilege($1, $2::text::regprocedure, 'EXECUTE')",
                        &[&role, sig],
                    )
                    .unwrap()
                    .get(0);
                if can {
                    let _ = is_proc;
                    actual.insert((name.clone(), "EXECUTE".to_string()));
                }
            }
            for (qualified, name) in &tables {
                for privilege in [
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "TRIGGER",
                    "REFERENCES",
                ] {
                    let can: bool = c
                        .query_one(
                            "SELECT has_table_privilege($1, $2::text::regclass, $3)",
                            &[&role, qualified, &privilege],
                        )
                        .unwrap()
                        .get(0);
                    if can {
                        actual.insert((name.clone(), privilege.to_string()));
                    }
                }
            }
            let expected: BTreeSet<(String, String)> = documented
                .iter()
                .filter(|(r, _, _)| r == role || r == "PUBLIC")
                .map(|(_, o, p)| (o.clone(), p.clone()))
                .collect();
            assert_eq!(actual, expected, "{layout:?}: {role}");
            // Application tables the extension writes: nothing that plants code.
            for t in APP_TABLES_WRITTEN {
                for privilege in ["TRUNCATE", "TRIGGER", "REFERENCES"] {
                    let can: bool = c
                        .query_one(
                            "SELECT has_table_privilege($1, $2::text::regclass, $3)",
                            &[&role, &t, &privilege],
                        )
                        .unwrap()
                        .get(0);
                    assert!(!can, "{layout:?}: {role} holds {privilege} on {t}");
                }
            }
        }
        // The definer role: never a superuser, never a login, owns exactly
        // the SECURITY DEFINER functions.
        let (sup, login, bypass): (bool, bool, bool) = {
            let r = c
                .query_one("SELECT rolsuper, rolcanlogin, rolbypassrls FROM pg_roles WHERE rolname = 'hr_migrations_definer'", &[])
                .unwrap();
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!((sup, login, bypass), (false, false, true), "{layout:?}");
        let wrong_owner: i64 = one(
            &mut c,
            "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
              WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations')
                AND p.prosecdef AND p.proowner <> 'hr_migrations_definer'::regrole",
        );
        assert_eq!(
            wrong_owner, 0,
            "{layout:?}: a SECURITY DEFINER function is not owned by the definer role"
        );
        let unpinned: Vec<String> = c
            .query(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
                  WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations')
                    AND p.prosecdef
                    AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            unpinned.is_empty(),
            "{layout:?}: SECURITY DEFINER without a pinned search_path: {unpinned:?}"
        );
    }
}

/// Plants what an attacker would, as each application role, then drives
/// every normal path while those sessions stay open.
#[test]
fn attacker_cannot_run_code_as_anyone_else() {
    let documented = documented_allowlist();
    for layout in LAYOUTS {
        let w = World::new(layout, 200);
        let mut dba = w.dba();
        let functions = extension_functions(&mut dba);
        // Views (hr_migration_progress, hr_organization_keys in the
        // extension's schema) take no row triggers and no TRUNCATE.
        let ext_tables: Vec<String> = governed_tables(&mut dba, w.schema)
            .into_iter()
            .map(|(q, _)| q)
            .filter(|q| {
                let kind: i8 = one(
                    &mut dba,
                    &format!("SELECT relkind::\"char\" FROM pg_class WHERE oid = '{q}'::regclass"),
                );
                kind as u8 != b'v'
            })
            .collect();
        let written: Vec<String> = APP_TABLES_WRITTEN
            .iter()
            .map(|s| s.to_string())
            .chain(ext_tables)
            .collect();
        let org_b_rows = |c: &mut Client| -> String {
            one(
                c,
                &format!(
                    "SELECT md5(concat_ws('|',
                        (SELECT string_agg(s::text, ',' ORDER BY s.id) FROM public.hr_candidate_portal_sessions s WHERE s.organization_id = '{b}'),
                        (SELECT string_agg(i::text, ',' ORDER BY i.id) FROM public.hr_job_board_integrations i WHERE i.organization_id = '{b}'),
                        (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM public.pf_credentials p WHERE p.organization_id = '{b}'),
                        (SELECT string_agg(r::text, ',' ORDER BY r.id) FROM public.hr_references r
                           JOIN public.hr_candidates c ON c.id = r.candidate_id WHERE c.organization_id = '{b}')))",
                    b = w.org_b
                ),
            )
        };
        let before_b = org_b_rows(&mut dba);

        let mut sessions = Vec::new();
        let mut planted = Vec::new();
        for role in APP_ROLES {
            let mut s = w.as_role(role, Some(&w.org_a));
            s.batch_execute(
                "CREATE FUNCTION pg_temp.pwn() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   BEGIN ALTER ROLE canary SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
                   INSERT INTO public.evidence (ran_as, session_as) VALUES (current_user, session_user);
                   RETURN NULL;
                 END $$;
                 CREATE TEMP TABLE bait (id uuid DEFAULT gen_random_uuid(), access_token text, access_token_hash text,
                                         candidate_id uuid, organization_id uuid, job_board_type text, created_by uuid,
                                         api_key text, api_secret text, refresh_token text, credential_id uuid,
                                         updated_at timestamptz);",
            )
            .unwrap();
            for t in &written {
                for sql in [
                    format!("CREATE TRIGGER pwn AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION pg_temp.pwn()"),
                    format!("CREATE TRIGGER pwn_s AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.pwn()"),
                    format!("TRUNCATE {t}"),
                ] {
                    match s.batch_execute(&sql) {
                        Ok(()) => planted.push(format!("{layout:?} {role}: {sql}")),
                        Err(e) => assert_eq!(sqlstate(&e), "42501", "{layout:?} {role}: {sql}: {}", error_text(&e)),
                    }
                }
            }
            for (sig, _, _, is_trigger) in &functions {
                if !is_trigger {
                    continue;
                }
                let sql = format!("CREATE TRIGGER bait_t BEFORE INSERT OR UPDATE ON pg_temp.bait FOR EACH ROW EXECUTE FUNCTION {sig}");
                match s.batch_execute(&sql) {
                    Ok(()) => planted.push(format!("{layout:?} {role}: {sql}")),
                    Err(e) => assert_eq!(
                        sqlstate(&e),
                        "42501",
                        "{layout:?} {role}: {sql}: {}",
                        error_text(&e)
                    ),
                }
            }
            for (sig, name, is_proc, _) in &functions {
                let allowed = documented
                    .iter()
                    .any(|(r, o, p)| (r == role || r == "PUBLIC") && o == name && p == "EXECUTE");
                let args = null_args(&mut dba, sig, *is_proc);
                let fname = sig.split('(').next().unwrap();
                let sql = if *is_proc {
                    format!("CALL {fname}{args}")
                } else {
                    format!("SELECT {fname}{args}")
                };
                let r = s.batch_execute(&format!("BEGIN; {sql}; ROLLBACK;"));
                if let Err(e) = &r {
                    let _ = s.batch_execute("ROLLBACK");
                    if !allowed {
                        assert_eq!(
                            sqlstate(e),
                            "42501",
                            "{layout:?} {role} could call {sql}: {}",
                            error_text(e)
                        );
                    }
                } else {
                    assert!(
                        allowed,
                        "{layout:?} {role} called {sql}, which is not on the allowlist"
                    );
                }
            }
            sessions.push(s);
        }
        assert!(planted.is_empty(), "planted: {planted:#?}");
        assert_eq!(
            org_b_rows(&mut dba),
            before_b,
            "{layout:?}: another tenant's rows changed"
        );

        // Every normal path, with the attackers' sessions (and their temp
        // objects) still open.
        let mut sr = w.as_role("service_role", None);
        let rid: String = one(
            &mut sr,
            "SELECT id::text FROM public.hr_references WHERE access_token_hash IS NOT NULL LIMIT 1",
        );
        let tok: String = one(
            &mut sr,
            &format!("SELECT hr_issue_reference_token('{rid}')"),
        );
        assert!(one::<bool>(
            &mut sr,
            &format!("SELECT hr_verify_reference_token('{rid}', '{tok}')")
        ));
        assert!(one::<bool>(
            &mut sr,
            &format!("SELECT hr_revoke_reference_token('{rid}')")
        ));
        let iid: String = one(&mut sr, "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1");
        sr.batch_execute(&format!("SELECT hr_integration_secret('{iid}')"))
            .unwrap();
        sr.batch_execute(&format!(
            "SELECT hr_set_integration_secret('{iid}', '{{\"api_key\":\"k2\",\"api_secret\":null,\"refresh_token\":\"r2\"}}')"
        ))
        .unwrap();
        sr.batch_execute(&format!(
            "UPDATE public.hr_job_board_integrations SET refresh_token = 'rotated-in-dual' WHERE id = '{iid}'"
        ))
        .unwrap();
        let mut au = w.as_role("authenticated", Some(&w.org_a));
        au.batch_execute(&format!(
            "INSERT INTO public.hr_candidate_portal_sessions (candidate_id)
             SELECT id FROM public.hr_candidates WHERE organization_id = '{}' LIMIT 1",
            w.org_a
        ))
        .unwrap();
        let mut su = w.dba();
        // One statement per call: a procedure that COMMITs cannot run in the
        // implicit transaction of a multi-statement query.
        for sql in [
            "SELECT * FROM hr_migration_status()",
            "CALL hr_run_rewrap()",
            "CALL hr_run_phase('reference_tokens', 'enforced')",
            "CALL hr_run_phase('portal_sessions', 'enforced')",
            "CALL hr_run_phase('integration_credentials', 'enforced')",
            "SELECT hr_set_phase('integration_credentials', 'dual')",
            "CALL hr_run_rollback('integration_credentials', 50)",
            "SELECT * FROM hr_migration_progress",
        ] {
            su.batch_execute(sql)
                .unwrap_or_else(|e| panic!("{layout:?}: {sql}: {}", error_text(&e)));
        }
        w.cl.migrate("hr", "003_integration_credentials.sql", &[]);

        assert!(
            w.evidence().is_empty(),
            "{layout:?}: planted code ran: {:?}",
            w.evidence()
        );
        assert!(
            !w.canary_is_superuser(),
            "{layout:?}: the canary became a superuser"
        );
        drop(sessions);
    }
}

#[test]
fn finding_01_no_path_to_superuser() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    // An app role cannot plant a trigger on any table SECURITY DEFINER code writes.
    for role in APP_ROLES {
        let mut s = w.as_role(role, Some(&w.org_a));
        s.batch_execute(
            "CREATE FUNCTION pg_temp.pwn() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN ALTER ROLE canary SUPERUSER; RETURN NEW; END $$",
        )
        .unwrap();
        for t in [
            "pf_credentials",
            "pf_credential_migrations",
            "hr_reference_token_validations",
            "hr_references",
        ] {
            assert_raises(
                &mut s,
                &format!("CREATE TRIGGER pwn BEFORE INSERT OR UPDATE ON public.{t} FOR EACH ROW EXECUTE FUNCTION pg_temp.pwn()"),
                "42501",
                &[],
            );
        }
    }
    // A DBA who gives TRIGGER back by mistake: the trigger can be planted,
    // but the batches refuse to run, naming it, and the definer code that
    // does run it (verification) runs it as hr_migrations_definer, which
    // cannot ALTER ROLE.
    dba.batch_execute(
        "GRANT TRIGGER ON public.hr_reference_token_validations, public.pf_credentials TO service_role",
    )
    .unwrap();
    let mut sr = w.as_role("service_role", None);
    sr.batch_execute(
        "CREATE FUNCTION pg_temp.pwn() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           BEGIN ALTER ROLE canary SUPERUSER; EXCEPTION WHEN insufficient_privilege THEN NULL; END;
           INSERT INTO public.evidence (ran_as, session_as) VALUES (current_user, session_user);
           RETURN NEW;
         END $$;
         CREATE TRIGGER pwn BEFORE INSERT ON public.hr_reference_token_validations FOR EACH ROW EXECUTE FUNCTION pg_temp.pwn();
         CREATE TRIGGER pwn BEFORE UPDATE ON public.pf_credentials FOR EACH ROW EXECUTE FUNCTION pg_temp.pwn();",
    )
    .unwrap_or_else(|e| panic!("{}", error_text(&e)));
    let text = assert_raises(&mut dba, "CALL hr_run_rewrap()", "55000", &[]);
    assert!(
        text.contains("pwn") && text.contains("service_role"),
        "{text}"
    );
    // The SECURITY DEFINER functions that write refuse too, naming it.
    let rid: String = one(
        &mut dba,
        "SELECT id::text FROM public.hr_references LIMIT 1",
    );
    let text = assert_raises(
        &mut sr,
        &format!("SELECT hr_verify_reference_token('{rid}', 'x')"),
        "55000",
        &[],
    );
    assert!(text.contains("trigger pwn"), "{text}");
    assert!(
        w.evidence().is_empty(),
        "planted code ran: {:?}",
        w.evidence()
    );
    assert!(!w.canary_is_superuser());
}

#[test]
fn finding_02_trigger_functions_refuse_other_tables() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let triggers: Vec<String> = extension_functions(&mut dba)
        .into_iter()
        .filter(|f| f.3)
        .map(|f| f.0)
        .collect();
    assert!(triggers.len() >= 4, "{triggers:?}");
    let bait = "CREATE TEMP TABLE bait (id uuid DEFAULT gen_random_uuid(), access_token text, access_token_hash text,
                 candidate_id uuid, organization_id uuid, job_board_type text DEFAULT 'x', created_by uuid,
                 api_key text, api_secret text, refresh_token text, credential_id uuid, updated_at timestamptz)";
    // A tenant cannot attach them at all.
    let mut au = w.as_role("authenticated", Some(&w.org_a));
    au.batch_execute(bait).unwrap();
    for f in &triggers {
        assert_raises(
            &mut au,
            &format!(
                "CREATE TRIGGER t BEFORE INSERT ON pg_temp.bait FOR EACH ROW EXECUTE FUNCTION {f}"
            ),
            "42501",
            &[],
        );
    }
    // Attached by a superuser to another table, the migration triggers refuse to run.
    dba.batch_execute(bait).unwrap();
    let cand: String = one(
        &mut dba,
        "SELECT id::text FROM public.hr_candidates WHERE organization_id IS NOT NULL LIMIT 1",
    );
    let cred: String = one(
        &mut dba,
        "SELECT id::text FROM public.pf_credentials LIMIT 1",
    );
    for (f, when) in [
        ("hr_migrations.hr_references_token_trigger", "BEFORE INSERT"),
        (
            "hr_migrations.hr_portal_sessions_org_trigger",
            "BEFORE INSERT",
        ),
        (
            "hr_migrations.hr_job_board_integrations_trigger",
            "AFTER INSERT",
        ),
    ] {
        dba.batch_execute(&format!(
            "DROP TRIGGER IF EXISTS t ON pg_temp.bait;
             CREATE TRIGGER t {when} ON pg_temp.bait FOR EACH ROW EXECUTE FUNCTION {f}()"
        ))
        .unwrap();
        assert_raises(
            &mut dba,
            &format!(
                "INSERT INTO pg_temp.bait (access_token, candidate_id, organization_id, api_key, credential_id)
                 VALUES ('t', '{cand}', NULL, 'k', '{cred}')"
            ),
            "39P01",
            &[],
        );
    }
}

#[test]
fn finding_03_default_privileges_are_taken_back() {
    let w = World::new(LAYOUTS[2], 100); // in public, where the default privileges apply
    let mut anon = w.as_role("anon", None);
    for sql in [
        "SELECT hr_integration_secret(gen_random_uuid())",
        "SELECT hr_decrypt_credential('hrc1.1.AAAA')",
        "SELECT hr_encrypt_credential('x')",
        "SELECT hr_set_phase('reference_tokens', 'dual')",
        "SELECT hr_rollback_integrations()",
        "SELECT hr_rewrap_credentials()",
        "CALL hr_run_backfill('reference_tokens')",
        "SELECT hr_migration_status()",
        "SELECT hr_verify_reference_token(gen_random_uuid(), 'x')",
        "UPDATE hr_migrations.hr_migration_phases SET phase = 'dual'",
        "INSERT INTO hr_migrations.hr_key_checks VALUES (9, 'poison')",
        "UPDATE hr_migrations.hr_batch_progress SET last_id = NULL",
        "SELECT * FROM hr_migrations.hr_migration_phases",
        "TRUNCATE public.pf_credential_migrations",
        "DELETE FROM public.pf_credential_migrations",
        "SELECT * FROM public.hr_reference_token_validations",
    ] {
        assert_raises(&mut anon, sql, "42501", &[]);
    }
    let phase: String = one(
        &mut w.dba(),
        "SELECT hr_migrations.hr_migration_phase('reference_tokens')",
    );
    assert_eq!(phase, "migrated");
}

#[test]
fn finding_04_backfill_flag_cannot_be_spoofed() {
    // Not preloaded: a fresh backend has not loaded the library, so the old
    // setting's name is still an ordinary placeholder there.
    let w = World::new(LAYOUTS[1], 100);
    let mut dba = w.dba();
    let iid: String = one(&mut dba, "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1");
    let mut sr = w.cl.connect_as("hr", "authenticator");
    sr.batch_execute("SET ROLE service_role; SET hr_migrations.backfill_in_progress = on")
        .unwrap();
    sr.batch_execute(&format!(
        "UPDATE public.hr_job_board_integrations SET api_key = 'spoofed-new-key' WHERE id = '{iid}'"
    ))
    .unwrap();
    let key: String = one(
        &mut dba,
        &format!("SELECT hr_integration_secret('{iid}') ->> 'api_key'"),
    );
    assert_eq!(
        key, "spoofed-new-key",
        "the credential kept the old key: the trigger was skipped"
    );
    // A session carrying another organization is still refused.
    let mut sr = w.cl.connect_as("hr", "authenticator");
    sr.batch_execute("SET ROLE service_role; SET hr_migrations.backfill_in_progress = on")
        .unwrap();
    let cand: String = one(
        &mut dba,
        &format!(
            "SELECT id::text FROM public.hr_candidates WHERE organization_id = '{}' LIMIT 1",
            w.org_a
        ),
    );
    assert_raises(
        &mut sr,
        &format!(
            "INSERT INTO public.hr_candidate_portal_sessions (candidate_id, organization_id) VALUES ('{cand}', '{}')",
            w.org_b
        ),
        "23514",
        &[],
    );
    // And the function that sets the flag is the extension's alone.
    for role in APP_ROLES {
        let mut s = w.as_role(role, None);
        assert_raises(
            &mut s,
            "SELECT hr_migrations.hr_set_backfill_flag(true)",
            "42501",
            &[],
        );
    }
}

#[test]
fn finding_05_secret_never_echoed() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let secret = "plaintext-not-json-SECRET-5";
    let iid: String = one(&mut dba, "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL ORDER BY id LIMIT 1");
    dba.batch_execute(&format!(
        "UPDATE public.pf_credentials c SET encrypted_value = hr_encrypt_credential('{secret}', hr_credential_aad(c.organization_id, c.id))
           FROM public.hr_job_board_integrations i WHERE i.id = '{iid}' AND c.id = i.credential_id"
    ))
    .unwrap();
    let mut sr = w.as_role("service_role", None);
    assert_raises(
        &mut sr,
        &format!("SELECT hr_integration_secret('{iid}')"),
        "22P02",
        &[secret],
    );
    // Rollback goes on past it and records it, without the value.
    dba.batch_execute("SELECT hr_set_phase('integration_credentials', 'dual')")
        .unwrap();
    dba.batch_execute("CALL hr_run_rollback('integration_credentials')")
        .unwrap();
    let (state, reason): (String, String) = {
        let r = dba
            .query_one(
                &format!("SELECT sqlstate, reason FROM hr_migrations.hr_batch_failures WHERE row_id = '{iid}'"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(state, "22P02");
    assert!(!reason.contains(secret), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    let log = w.cl.server_log();
    assert!(
        log.contains("job-board secret"),
        "the refusal should be logged"
    );
    assert!(!log.contains(secret), "the server log holds the secret");
}

#[test]
fn finding_06_foreign_credentials_are_refused() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let ia: String = one(&mut dba, &format!("SELECT id::text FROM public.hr_job_board_integrations WHERE organization_id = '{}' AND credential_id IS NOT NULL LIMIT 1", w.org_a));
    let cb: String = one(
        &mut dba,
        &format!(
            "SELECT id::text FROM public.pf_credentials WHERE organization_id = '{}' LIMIT 1",
            w.org_b
        ),
    );
    let b_before: String = one(
        &mut dba,
        &format!("SELECT encrypted_value FROM public.pf_credentials WHERE id = '{cb}'"),
    );
    // Linking another organization's credential is refused, by any writer.
    let mut sr = w.as_role("service_role", None);
    assert_raises(
        &mut sr,
        &format!(
            "UPDATE public.hr_job_board_integrations SET credential_id = '{cb}' WHERE id = '{ia}'"
        ),
        "42501",
        &[],
    );
    // Linked anyway (triggers disabled by a superuser, and unlinked from its
    // own integration first: a credential is linked once): it reads nothing.
    dba.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE public.hr_job_board_integrations SET credential_id = NULL WHERE credential_id = '{cb}';
         UPDATE public.hr_job_board_integrations SET credential_id = '{cb}' WHERE id = '{ia}'; COMMIT;"
    ))
    .unwrap();
    assert_raises(
        &mut sr,
        &format!("SELECT hr_integration_secret('{ia}')"),
        "42501",
        &[],
    );
    // Writing plaintext to it does not overwrite the other tenant's credential.
    assert_raises(
        &mut sr,
        &format!("UPDATE public.hr_job_board_integrations SET api_key = 'attacker-key' WHERE id = '{ia}'"),
        "42501",
        &[],
    );
    // Rewrap and rollback record it and leave it alone.
    dba.batch_execute("CALL hr_run_rewrap()").unwrap();
    dba.batch_execute("SELECT hr_set_phase('integration_credentials', 'dual')")
        .unwrap();
    dba.batch_execute("CALL hr_run_rollback('integration_credentials')")
        .unwrap();
    let failures: Vec<(String, String)> = dba
        .query(
            "SELECT operation, sqlstate FROM hr_migrations.hr_batch_failures ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        failures.contains(&("rollback".into(), "42501".into())),
        "{failures:?}"
    );
    let b_after: String = one(
        &mut dba,
        &format!("SELECT encrypted_value FROM public.pf_credentials WHERE id = '{cb}'"),
    );
    assert_eq!(
        b_before, b_after,
        "the other organization's credential changed"
    );
}

#[test]
fn finding_07_temp_objects_cannot_shadow_the_key_check() {
    // A fresh cluster: key version 1 has never been used, so the first
    // encryption records its check value.
    let key = random_key();
    let keyring = write_keyring(&[(1, key)]);
    let cl = Cluster::start(&keyring_conf(&keyring, 1));
    cl.fixture_db("hr", 10);
    let mut dba = cl.connect("hr");
    dba.batch_execute(
        "CREATE ROLE encryptor LOGIN;
         GRANT EXECUTE ON FUNCTION extensions.hr_encrypt_credential(text, text) TO encryptor;
         GRANT EXECUTE ON FUNCTION hr_migrations.hr_encrypt_credential(text, text) TO encryptor;
         GRANT USAGE ON SCHEMA extensions, hr_migrations TO encryptor;
         GRANT TEMP ON DATABASE hr TO encryptor;",
    )
    .unwrap();
    let mut e = cl.connect_as("hr", "encryptor");
    e.batch_execute(
        "CREATE TEMP TABLE pg_extension (oid oid, extname name, extnamespace oid);
         INSERT INTO pg_temp.pg_extension VALUES (1, 'hr_migrations', pg_my_temp_schema());
         CREATE FUNCTION pg_temp.hr_key_check(integer, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
         SET search_path = pg_temp, extensions, public;
         SELECT extensions.hr_encrypt_credential('x', '')",
    )
    .unwrap_or_else(|e| panic!("{}", error_text(&e)));
    let recorded: i64 = one(
        &mut dba,
        "SELECT count(*) FROM hr_migrations.hr_key_checks WHERE key_version = 1",
    );
    assert_eq!(recorded, 1, "the real key check value was not recorded");
    // Another key under version 1: refused, even with the shadows in place.
    let other = write_keyring(&[(1, random_key())]);
    dba.batch_execute(&format!(
        "ALTER SYSTEM SET hr_migrations.keyring_file = '{}'",
        other.display()
    ))
    .unwrap();
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut e = cl.connect_as("hr", "encryptor");
    e.batch_execute(
        "CREATE TEMP TABLE pg_extension (oid oid, extname name, extnamespace oid);
         CREATE FUNCTION pg_temp.hr_key_check(integer, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
         SET search_path = pg_temp, extensions, public;",
    )
    .unwrap();
    assert_raises(
        &mut e,
        "SELECT extensions.hr_encrypt_credential('x', '')",
        "F0000",
        &[],
    );
    // The check function itself is not the caller's to call.
    assert_raises(
        &mut e,
        "SELECT hr_migrations.hr_key_check(2, 'poison')",
        "42501",
        &[],
    );
}

#[test]
fn finding_08_revocation_in_every_phase() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let mut sr = w.as_role("service_role", None);
    for phase in ["dual", "migrated", "enforced"] {
        dba.batch_execute(&format!("CALL hr_run_phase('reference_tokens', '{phase}')"))
            .unwrap();
        let id: String = one(
            &mut sr,
            &format!(
                "INSERT INTO public.hr_references (candidate_id, referee_name, access_token)
                 SELECT id, 'Rev', 'revoke-me-{phase}' FROM public.hr_candidates LIMIT 1 RETURNING id::text"
            ),
        );
        assert!(one::<bool>(
            &mut sr,
            &format!("SELECT hr_verify_reference_token('{id}', 'revoke-me-{phase}')")
        ));
        sr.batch_execute(&format!(
            "UPDATE public.hr_references SET access_token = NULL WHERE id = '{id}'"
        ))
        .unwrap();
        assert!(
            !one::<bool>(
                &mut sr,
                &format!("SELECT hr_verify_reference_token('{id}', 'revoke-me-{phase}')")
            ),
            "{phase}: writing NULL did not revoke"
        );
        let tok: String = one(&mut sr, &format!("SELECT hr_issue_reference_token('{id}')"));
        assert!(one::<bool>(
            &mut sr,
            &format!("SELECT hr_revoke_reference_token('{id}')")
        ));
        assert!(
            !one::<bool>(
                &mut sr,
                &format!("SELECT hr_revoke_reference_token('{id}')")
            ),
            "nothing left to revoke"
        );
        assert!(
            !one::<bool>(
                &mut sr,
                &format!("SELECT hr_verify_reference_token('{id}', '{tok}')")
            ),
            "{phase}"
        );
    }
}

#[test]
fn finding_09_empty_tokens_never_verify() {
    let w = World::new(LAYOUTS[0], 300);
    let mut dba = w.dba();
    let empties: i64 = one(
        &mut dba,
        "SELECT count(*) FROM public.hr_references WHERE access_token = ''",
    );
    assert!(empties > 0, "the fixture has empty tokens");
    let hashed: i64 = one(&mut dba, "SELECT count(*) FROM public.hr_references WHERE access_token = '' AND access_token_hash IS NOT NULL");
    assert_eq!(hashed, 0, "an empty token was hashed");
    assert!(status(&mut dba, "reference_tokens")
        .note
        .contains(&format!("{empties} references have an empty token")));
    let id: String = one(
        &mut dba,
        "SELECT id::text FROM public.hr_references WHERE access_token = '' LIMIT 1",
    );
    let mut sr = w.as_role("service_role", None);
    for phase in ["dual", "migrated", "enforced"] {
        dba.batch_execute(&format!(
            "SELECT hr_set_phase('reference_tokens', '{phase}')"
        ))
        .unwrap();
        assert!(
            !one::<bool>(
                &mut sr,
                &format!("SELECT hr_verify_reference_token('{id}', '')")
            ),
            "{phase}"
        );
        let any: String = one(
            &mut sr,
            "SELECT id::text FROM public.hr_references WHERE access_token_hash IS NOT NULL LIMIT 1",
        );
        assert!(
            !one::<bool>(
                &mut sr,
                &format!("SELECT hr_verify_reference_token('{any}', '')")
            ),
            "{phase}"
        );
    }
}

#[test]
fn finding_11_rollback_never_loses_a_credential() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let iid: String = one(&mut dba, "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL ORDER BY id LIMIT 1");
    let cid: String = one(
        &mut dba,
        &format!(
            "SELECT credential_id::text FROM public.hr_job_board_integrations WHERE id = '{iid}'"
        ),
    );
    // A credential whose JSON lacks two of the three keys.
    dba.batch_execute(&format!(
        "UPDATE public.pf_credentials c SET encrypted_value = hr_encrypt_credential('{{\"api_key\":\"only-one-key\"}}', hr_credential_aad(c.organization_id, c.id))
          WHERE c.id = '{cid}'"
    ))
    .unwrap();
    let linked_before: i64 = one(
        &mut dba,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL",
    );
    let out = w.cl.psql_file(
        "hr",
        &repo().join("sql/rollback/003_integration_credentials.sql"),
        &[],
    );
    assert!(
        !out.status.success(),
        "the rollback script dropped the migration with a credential it could not restore"
    );
    let still: (Option<String>, i64) = {
        let r = dba
            .query_one(
                &format!("SELECT (SELECT credential_id::text FROM public.hr_job_board_integrations WHERE id = '{iid}'),
                                 (SELECT count(*) FROM public.pf_credentials WHERE id = '{cid}')"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        still,
        (Some(cid.clone()), 1),
        "the credential was deleted or unlinked"
    );
    let linked_after: i64 = one(
        &mut dba,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL",
    );
    assert_eq!(
        linked_after,
        1,
        "the other {} integrations should be rolled back",
        linked_before - 1
    );
    let s = status(&mut dba, "integration_credentials");
    assert_eq!(s.blocked, 1, "{s:?}");
    let column_kept: bool = one(
        &mut dba,
        "SELECT hr_migrations.hr_column_exists('public.hr_job_board_integrations', 'credential_id')",
    );
    assert!(column_kept);
}

#[test]
fn finding_12_one_bad_row_does_not_stop_rewrap_or_rollback() {
    let w = World::new(LAYOUTS[0], 300);
    let mut dba = w.dba();
    let poisoned: String = one(
        &mut dba,
        "SELECT id::text FROM public.pf_credentials ORDER BY id OFFSET 7 LIMIT 1",
    );
    // Altered ciphertext: fails authentication.
    dba.batch_execute(&format!(
        "UPDATE public.pf_credentials SET encrypted_value = overlay(encrypted_value placing
            CASE WHEN substr(encrypted_value, 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1)
          WHERE id = '{poisoned}'"
    ))
    .unwrap();
    let total: i64 = one(&mut dba, "SELECT count(*) FROM public.pf_credentials");
    dba.batch_execute("ALTER SYSTEM SET hr_migrations.active_key_version = 2")
        .unwrap();
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut dba = w.dba();
    // A new data key generation for every organization: every credential
    // is to be resealed.
    dba.batch_execute(
        "SELECT count(hr_migrations.hr_rotate_organization_key(o)) FROM (SELECT DISTINCT organization_id FROM public.pf_credentials) s(o)",
    )
    .unwrap();
    dba.batch_execute("CALL hr_run_rewrap(50)").unwrap();
    let v2: i64 = one(&mut dba, "SELECT count(*) FROM public.pf_credentials WHERE hr_migrations.hr_envelope_generation(encrypted_value) = 2");
    assert_eq!(v2, total - 1, "rewrap stopped at the poisoned row");
    let f: (String, String) = {
        let r = dba
            .query_one(
                &format!(
                    "SELECT operation, sqlstate FROM hr_migrations.hr_batch_failures WHERE row_id = '{poisoned}'"
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(f, ("rewrap".into(), "22023".into()));
    assert_eq!(
        one::<i64>(&mut dba, "SELECT hr_rewrap_credentials()"),
        0,
        "a batch function keeps failing"
    );
    assert_eq!(status(&mut dba, "integration_credentials").blocked, 1);
    // Rollback likewise.
    dba.batch_execute("SELECT hr_set_phase('integration_credentials', 'dual')")
        .unwrap();
    dba.batch_execute("CALL hr_run_rollback('integration_credentials', 40)")
        .unwrap();
    let linked: i64 = one(
        &mut dba,
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL",
    );
    assert_eq!(linked, 1);
    assert_eq!(one::<i64>(&mut dba, "SELECT hr_rollback_integrations()"), 0);
    let _ = &w.keyring;
}

/// The review's critical path: triggers planted while Supabase's defaults
/// still gave every API role TRIGGER, before the migration ran. A REVOKE
/// does not remove them: the scripts must refuse to start, and nothing may
/// be granted to the definer role while they are there.
#[test]
fn triggers_planted_before_the_migration_stop_it() {
    let keyring = write_keyring(&[(1, random_key())]);
    let cl = Cluster::start(&keyring_conf(&keyring, 1));
    cl.fixture_db("hr", 100);
    let mut dba = cl.connect("hr");
    dba.batch_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'canary') THEN CREATE ROLE canary NOLOGIN; END IF; END $$;",
    )
    .unwrap();
    let mut anon = cl.connect_as("hr", "authenticator");
    anon.batch_execute(
        "SET ROLE anon;
         CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN BEGIN ALTER ROLE canary SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END; RETURN NEW; END $$;
         CREATE TRIGGER zz_evil BEFORE UPDATE ON public.hr_references FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();
         CREATE TRIGGER zz_evil BEFORE UPDATE ON public.hr_job_board_integrations FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();",
    )
    .unwrap();
    for script in [
        "001_reference_tokens.sql",
        "003_integration_credentials.sql",
    ] {
        let out = cl.psql_file("hr", &repo().join("sql/migrations").join(script), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{script} ran with a planted trigger");
        assert!(
            err.contains("trigger zz_evil")
                && err.contains("preflight blockers: nothing was changed"),
            "{script}: {err}"
        );
    }
    for m in ["reference_tokens", "integration_credentials"] {
        assert_eq!(status(&mut dba, m).phase, "not_applied", "{m} moved on");
    }
    // Even called directly, securing the table refuses.
    assert_raises(
        &mut dba,
        "SELECT hr_migrations.hr_secure_table('public.hr_references', 'SELECT, UPDATE')",
        "55000",
        &[],
    );
    let granted: bool = one(
        &mut dba,
        "SELECT has_table_privilege('hr_migrations_definer', 'public.hr_references', 'UPDATE')",
    );
    assert!(
        !granted,
        "the definer role got rights on a table with a planted trigger"
    );
    assert!(!one::<bool>(
        &mut dba,
        "SELECT rolsuper FROM pg_roles WHERE rolname = 'canary'"
    ));
    drop(anon);
}

/// The review's second path: the identity sequence of a log table, granted
/// to the API roles by the default privileges, let anon stop every
/// verification with setval().
#[test]
fn log_table_sequences_are_closed_to_the_api_roles() {
    let w = World::new(LAYOUTS[2], 100);
    let mut dba = w.dba();
    let seqs: Vec<String> = dba
        .query(
            "SELECT d.objid::regclass::text FROM pg_depend d JOIN pg_class q ON q.oid = d.objid AND q.relkind = 'S'
              WHERE d.refobjid IN ('public.hr_reference_token_validations'::regclass, 'public.pf_credential_migrations'::regclass)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!seqs.is_empty());
    for role in APP_ROLES {
        for seq in &seqs {
            for privilege in ["SELECT", "UPDATE", "USAGE"] {
                let can: bool = dba
                    .query_one(
                        "SELECT has_sequence_privilege($1, $2::text::regclass, $3)",
                        &[&role, seq, &privilege],
                    )
                    .unwrap()
                    .get(0);
                assert!(!can, "{role} holds {privilege} on {seq}");
            }
        }
        let mut s = w.as_role(role, None);
        assert_raises(
            &mut s,
            &format!("SELECT setval('{}', 9223372036854775807)", seqs[0]),
            "42501",
            &[],
        );
    }
    let mut sr = w.as_role("service_role", None);
    let rid: String = one(
        &mut dba,
        "SELECT id::text FROM public.hr_references LIMIT 1",
    );
    sr.batch_execute(&format!("SELECT hr_verify_reference_token('{rid}', 'x')"))
        .unwrap();
}

/// The review's third path: an integration unlinked from its credential
/// after the move kept its plaintext past the clearing while the status
/// said it was gone, and contracting dropped it. Now the clearing moves it
/// again first, and the contract refuses while plaintext remains.
#[test]
fn plaintext_of_an_unlinked_integration_is_moved_not_lost() {
    let w = World::new(LAYOUTS[0], 100);
    let mut dba = w.dba();
    let iid: String = one(
        &mut dba,
        "SELECT id::text FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1",
    );
    let secret: String = one(
        &mut dba,
        &format!("SELECT hr_integration_secret('{iid}')::text"),
    );
    dba.batch_execute("SELECT hr_set_phase('integration_credentials', 'enforced')")
        .unwrap();
    let mut sr = w.as_role("service_role", None);
    sr.batch_execute(&format!(
        "UPDATE public.hr_job_board_integrations SET credential_id = NULL WHERE id = '{iid}'"
    ))
    .unwrap();
    assert!(status(&mut dba, "integration_credentials").pending > 0);
    dba.batch_execute("CALL hr_run_backfill('integration_credentials')")
        .unwrap();
    let s = status(&mut dba, "integration_credentials");
    assert_eq!((s.pending, s.blocked), (0, 0), "{s:?}");
    let left: i64 = one(
        &mut dba,
        "SELECT count(*) FROM public.hr_job_board_integrations
          WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert_eq!(left, 0);
    let after: String = one(
        &mut dba,
        &format!("SELECT hr_integration_secret('{iid}')::text"),
    );
    assert_eq!(after, secret, "the unlinked integration's secret was lost");
    // A contract never drops columns that still hold plaintext.
    dba.batch_execute(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE public.hr_job_board_integrations SET api_key = 'left-behind'
          WHERE id = (SELECT id FROM public.hr_job_board_integrations ORDER BY id LIMIT 1);
         COMMIT;",
    )
    .unwrap();
    dba.batch_execute("SET hr_migrations.deprecation_period = '0'")
        .unwrap();
    assert_raises(
        &mut dba,
        "SELECT hr_set_phase('integration_credentials', 'contracted')",
        "55000",
        &["left-behind"],
    );
    assert!(status(&mut dba, "integration_credentials")
        .note
        .contains("still hold plaintext"));
}
