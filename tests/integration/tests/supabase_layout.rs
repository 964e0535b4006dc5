//! Security on the role layout of Supabase's own image (issue #15,
//! tests/fixtures/supabase/README.md): the bootstrap superuser is
//! `supabase_admin`; `postgres` is NOT a superuser but has CREATEROLE and
//! BYPASSRLS, and owns the database, `public`, `extensions` and every
//! application table. The platform superuser installs the extension in
//! `extensions` and (until #16) runs the migration scripts.
//!
//! One test per finding of the review of 0.2.0 on this layout, each named
//! after it. `postgres` is the attacker: whatever it plants must never run
//! as a superuser or as `hr_migrations_definer`.

use hr_migrations_it::*;

/// Functions and operators our SQL might resolve by name, planted by
/// `postgres` in `public` and `extensions` as closer matches than
/// pg_catalog's (an exact argument type where pg_catalog needs a cast, a
/// non-variadic or non-polymorphic signature where pg_catalog's is). Each
/// records who called it in `public.canary_calls`, then does what the real
/// one does.
const PLANTED: &[(&str, &str)] = &[
    // Our own functions, called with literals whose types a closer
    // overload could match better (the install script, the migration scripts).
    (
        "FUNCTION {s}.hr_forget_init_privs(c text, o regnamespace) RETURNS void",
        "pg_catalog.pg_sleep(0)",
    ),
    (
        "FUNCTION {s}.hr_secure_table(t text, p text) RETURNS void",
        "pg_catalog.pg_sleep(0)",
    ),
    (
        "FUNCTION {s}.hr_column_exists(t text, c text) RETURNS boolean",
        "false",
    ),
    (
        "FUNCTION {s}.format(f text, a text) RETURNS text",
        "pg_catalog.format(f, a)",
    ),
    (
        "FUNCTION {s}.format(f text, a text, b text) RETURNS text",
        "pg_catalog.format(f, a, b)",
    ),
    (
        "FUNCTION {s}.format(f text, a regclass) RETURNS text",
        "pg_catalog.format(f, a)",
    ),
    (
        "FUNCTION {s}.format(f text, a text, b regclass) RETURNS text",
        "pg_catalog.format(f, a, b)",
    ),
    (
        "FUNCTION {s}.format(f text, a regclass, b text) RETURNS text",
        "pg_catalog.format(f, a, b)",
    ),
    (
        "FUNCTION {s}.quote_ident(a name) RETURNS text",
        "pg_catalog.quote_ident(a::text)",
    ),
    (
        "FUNCTION {s}.pg_sleep(a numeric) RETURNS void",
        "pg_catalog.pg_sleep(a::float8)",
    ),
    (
        "FUNCTION {s}.unnest(a regclass[]) RETURNS SETOF regclass",
        "pg_catalog.unnest(a)",
    ),
    (
        "FUNCTION {s}.canary_eq_oid_regclass(a oid, b regclass) RETURNS boolean",
        "a OPERATOR(pg_catalog.=) b::oid",
    ),
    (
        "FUNCTION {s}.canary_eq_regclass_oid(a regclass, b oid) RETURNS boolean",
        "a::oid OPERATOR(pg_catalog.=) b",
    ),
    (
        "FUNCTION {s}.canary_ne_oid_regclass(a oid, b regclass) RETURNS boolean",
        "a OPERATOR(pg_catalog.<>) b::oid",
    ),
    (
        "FUNCTION {s}.canary_mul_numeric_int(a numeric, b integer) RETURNS numeric",
        "a OPERATOR(pg_catalog.*) b::numeric",
    ),
    (
        "FUNCTION {s}.canary_div_float_int(a double precision, b integer) RETURNS double precision",
        "a OPERATOR(pg_catalog./) b::float8",
    ),
    (
        "FUNCTION {s}.canary_cat_text_regclass(a text, b regclass) RETURNS text",
        "a OPERATOR(pg_catalog.||) b::text",
    ),
    (
        "FUNCTION {s}.canary_cat_text_int(a text, b integer) RETURNS text",
        "a OPERATOR(pg_catalog.||) b::text",
    ),
];

const PLANTED_OPERATORS: &[&str] = &[
    "OPERATOR {s}.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = {s}.canary_eq_oid_regclass)",
    "OPERATOR {s}.= (LEFTARG = regclass, RIGHTARG = oid, FUNCTION = {s}.canary_eq_regclass_oid)",
    "OPERATOR {s}.<> (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = {s}.canary_ne_oid_regclass)",
    "OPERATOR {s}.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = {s}.canary_mul_numeric_int)",
    "OPERATOR {s}./ (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = {s}.canary_div_float_int)",
    "OPERATOR {s}.|| (LEFTARG = text, RIGHTARG = regclass, FUNCTION = {s}.canary_cat_text_regclass)",
    "OPERATOR {s}.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = {s}.canary_cat_text_int)",
];

struct Supa {
    cl: Cluster,
    /// The schema the extension was created in (the API's wrappers).
    ext: &'static str,
    org_a: String,
    org_b: String,
}

/// Where the platform installs the extension, and whether the library is
/// preloaded.
#[derive(Clone, Copy, Debug)]
struct Layout {
    schema: &'static str,
    preload: bool,
}

const SUPABASE: Layout = Layout {
    schema: "extensions",
    preload: true,
};

const LAYOUTS: [Layout; 4] = [
    SUPABASE,
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

/// A cluster with Supabase's layout and database "hr" at `scale`, with the
/// canary table and function `postgres` uses to record who calls its code.
fn supabase_cluster(scale: u32, layout: Layout) -> Cluster {
    let keyring = write_keyring(&[(1, random_key()), (2, random_key())]);
    let mut conf = keyring_conf(&keyring, 1);
    if layout.preload {
        conf.push("shared_preload_libraries=hr_migrations".into());
    }
    let cl = Cluster::start_supabase(&conf);
    cl.supabase_db("hr", scale);
    cl.connect_as("hr", "postgres")
        .batch_execute(
            "CREATE TABLE public.canary_calls (fn text, called_as name, superuser boolean, at timestamptz DEFAULT now());
             GRANT INSERT ON public.canary_calls TO PUBLIC;
             CREATE FUNCTION public.canary(fn text) RETURNS void LANGUAGE sql SET search_path = pg_catalog AS $$
                 INSERT INTO public.canary_calls (fn, called_as, superuser)
                 SELECT fn, current_user, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
             $$;
             GRANT EXECUTE ON FUNCTION public.canary(text) TO PUBLIC;",
        )
        .unwrap();
    cl
}

/// The search_path of the superuser's sessions in the finding-1 tests:
/// `public` (where `postgres` copied pg_catalog) before pg_catalog, so every
/// name resolved through the caller's search_path reaches a copy.
const HOSTILE_PATH: &str = "public, extensions, pg_catalog";

/// As `postgres`: every overload of PLANTED and PLANTED_OPERATORS, in
/// `public` and `extensions`, then a copy of every function and operator of
/// pg_catalog SQL can declare, in `public`
/// (tests/fixtures/supabase/catalog_copies.sql, generated from the catalog).
fn plant_overloads(cl: &Cluster) {
    let out = cl.psql_as_ok(
        "hr",
        "postgres",
        &repo().join("tests/fixtures/supabase/catalog_copies.sql"),
        &[],
    );
    // The generator works: it copied (nearly) the whole catalog.
    let made = |kind: &str| -> i64 {
        out.lines()
            .find(|l| l.trim_start().starts_with(kind))
            .and_then(|l| l.split('|').nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(made("function") > 2000, "catalog copies:\n{out}");
    assert!(made("operator") > 700, "catalog copies:\n{out}");
    let mut pg = cl.connect_as("hr", "postgres");
    for schema in ["public", "extensions"] {
        for (sig, body) in PLANTED {
            let sig = sig.replace("{s}", schema);
            let body = if sig.contains("RETURNS SETOF") {
                format!("SELECT public.canary('{schema} ' || {sig:?}); SELECT * FROM {body};")
            } else {
                format!("SELECT public.canary('{schema} ' || {sig:?}); SELECT {body};")
            };
            let body = body.replace('"', "'");
            pg.batch_execute(&format!(
                "CREATE {sig} LANGUAGE sql AS $canary$ {body} $canary$;
                 GRANT EXECUTE ON FUNCTION {} TO PUBLIC;",
                sig.split(" RETURNS ")
                    .next()
                    .unwrap()
                    .trim_start_matches("FUNCTION ")
            ))
            .unwrap_or_else(|e| panic!("{sig}: {}", error_text(&e)));
        }
        for op in PLANTED_OPERATORS {
            pg.batch_execute(&format!("CREATE {}", op.replace("{s}", schema)))
                .unwrap_or_else(|e| panic!("{op}: {}", error_text(&e)));
        }
    }
}

/// A session of the platform superuser with [`HOSTILE_PATH`].
fn hostile_session(cl: &Cluster) -> Client {
    let mut c = cl.connect("hr");
    c.batch_execute(&format!("SET search_path = {HOSTILE_PATH}"))
        .unwrap();
    c
}

/// [`hostile_session`], with the copies seen to work in it first (one call
/// recorded, then forgotten: call it before anything of ours runs).
fn hostile_superuser(cl: &Cluster) -> Client {
    let mut c = hostile_session(cl);
    c.batch_execute("SELECT 1 = 1").unwrap();
    let mut plain = cl.connect("hr");
    let seen: i64 = one(
        &mut plain,
        "SELECT count(*) FROM public.canary_calls WHERE fn = 'public.= (integer, integer)' AND superuser",
    );
    assert!(seen > 0, "the copy of = (integer, integer) was not called");
    plain
        .batch_execute("DELETE FROM public.canary_calls")
        .unwrap();
    c
}

/// Calls of planted code made as a superuser or as the definer role.
fn privileged_canary_calls(cl: &Cluster) -> Vec<String> {
    cl.connect("hr")
        .query(
            "SELECT DISTINCT fn || ' as ' || called_as FROM public.canary_calls
              WHERE superuser OR called_as = 'hr_migrations_definer' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn drop_unresolvable_sessions(c: &mut Client) {
    c.batch_execute(
        "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                             WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
}

impl Supa {
    /// Supabase's layout with database "hr" at `scale`; `postgres` plants
    /// the canary overloads first when `plant`; then the platform step and
    /// every migration script, run by the superuser.
    fn new(scale: u32, plant: bool) -> Supa {
        Supa::build(scale, plant, SUPABASE)
    }

    /// With `plant`, the superuser's psql runs use [`HOSTILE_PATH`] from the
    /// platform step on (the caller of [`Supa::build`] resets it).
    fn build(scale: u32, plant: bool, layout: Layout) -> Supa {
        let mut cl = supabase_cluster(scale, layout);
        let mut admin = cl.connect("hr");
        drop_unresolvable_sessions(&mut admin);
        if plant {
            plant_overloads(&cl);
            // And, as the database's owner, non-standard strings for every
            // session: a backslash in a literal of ours would then escape.
            cl.connect_as("hr", "postgres")
                .batch_execute("ALTER DATABASE hr SET standard_conforming_strings = off")
                .unwrap();
            cl.set_session_options(Some(&format!(
                "-c search_path={}",
                HOSTILE_PATH.replace(' ', "")
            )));
            admin = hostile_superuser(&cl);
        }
        admin
            .batch_execute(&format!(
                "CREATE EXTENSION hr_migrations SCHEMA {}",
                layout.schema
            ))
            .unwrap();
        cl.migrate_all("hr");
        let mut admin = cl.connect("hr");
        let orgs: Vec<String> = admin
            .query(
                "SELECT id::text FROM public.pf_organizations ORDER BY name LIMIT 2",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        Supa {
            cl,
            ext: layout.schema,
            org_a: orgs[0].clone(),
            org_b: orgs[1].clone(),
        }
    }

    /// The platform superuser.
    fn admin(&self) -> Client {
        self.cl.connect("hr")
    }

    /// Supabase's `postgres`: the project's admin, not a superuser.
    fn postgres(&self) -> Client {
        self.cl.connect_as("hr", "postgres")
    }

    /// A PostgREST-like session: authenticator, SET ROLE, the organization's claims.
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

    /// Calls of planted code made as a superuser or as the definer role.
    fn privileged_canary_calls(&self) -> Vec<String> {
        privileged_canary_calls(&self.cl)
    }

    fn integration_of(&self, c: &mut Client, org: &str, nth: i64) -> (String, String) {
        let r = c
            .query_one(
                "SELECT id::text, credential_id::text FROM public.hr_job_board_integrations
                  WHERE organization_id = $1::text::uuid AND credential_id IS NOT NULL ORDER BY id OFFSET $2 LIMIT 1",
                &[&org, &nth],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }
}

fn preflight(c: &mut Client, check: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT status, detail FROM extensions.hr_preflight() WHERE check_name = $1",
        &[&check],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Finding 1 (critical): overloads `postgres` planted in `public` and
/// `extensions` ran as the superuser who applied our scripts or CALLed our
/// procedures (`public.format(text, text, text)` through the preamble,
/// `public.= (oid, regclass)` 424 times through `hr_migrations.hr_batch_loop`).
/// Planted here: the closer matches of PLANTED in both schemas, and an
/// exact copy of every function and operator of pg_catalog in `public`,
/// which the superuser's sessions put before pg_catalog: a name any code of
/// ours resolves through the caller's search_path, whatever its argument
/// types, runs a copy.
#[test]
fn finding_1_overloads_planted_by_postgres_never_run_as_a_superuser() {
    for layout in LAYOUTS {
        overloads_never_run_as_a_superuser(layout);
    }
}

fn overloads_never_run_as_a_superuser(layout: Layout) {
    let w = Supa::build(200, true, layout);
    let ext = w.ext;
    // The canary works: the same overload, called by postgres, is recorded.
    let mut pg = w.postgres();
    pg.batch_execute("SELECT format('%s', 'x'::text)").unwrap();
    let recorded: i64 = one(
        &mut w.admin(),
        "SELECT count(*) FROM public.canary_calls WHERE called_as = 'postgres'",
    );
    assert!(
        recorded > 0,
        "{layout:?}: the planted format(text, text) was not called"
    );

    let mut admin = hostile_session(&w.cl);
    for m in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        admin
            .batch_execute(&format!("CALL {ext}.hr_run_phase('{m}', 'enforced')"))
            .unwrap_or_else(|e| panic!("{layout:?} {m}: {}", error_text(&e)));
    }
    for sql in [
        format!("SELECT * FROM {ext}.hr_migration_status()"),
        format!("SELECT * FROM {ext}.hr_preflight()"),
        format!("SELECT * FROM {ext}.hr_migration_progress"),
        format!("CALL {ext}.hr_run_rewrap()"),
        format!("CALL {ext}.hr_run_batches('integration_credentials', 'purge')"),
    ] {
        admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{layout:?} {sql}: {}", error_text(&e)));
    }
    for m in [
        "reference_tokens",
        "portal_sessions",
        "integration_credentials",
    ] {
        admin
            .batch_execute(&format!("SELECT {ext}.hr_set_phase('{m}', 'dual')"))
            .unwrap();
    }
    for script in [
        "003_integration_credentials.sql",
        "002_portal_sessions.sql",
        "001_reference_tokens.sql",
    ] {
        w.cl.psql_ok("hr", &repo().join("sql/rollback").join(script), &[]);
    }
    w.cl.migrate_all("hr");
    let calls = w.privileged_canary_calls();
    assert!(
        calls.is_empty(),
        "{layout:?}: planted code ran as a superuser or the definer role:\n{}",
        calls.join("\n")
    );
    let postgres_is_super: bool = one(
        &mut w.admin(),
        "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'",
    );
    assert!(!postgres_is_super);
}

/// Finding 1 through ALTER EXTENSION UPDATE: a database migrated by 0.2.0's
/// own scripts, then `postgres` plants its overloads, then the platform
/// superuser updates to this version and runs the files again: none of
/// the planted code runs as a superuser or the definer role.
#[test]
fn finding_1_the_update_from_0_2_0_runs_no_planted_code() {
    let cl = supabase_cluster(100, SUPABASE);
    let mut admin = cl.connect("hr");
    admin
        .batch_execute("CREATE EXTENSION hr_migrations VERSION '0.2.0' SCHEMA extensions")
        .unwrap();
    drop_unresolvable_sessions(&mut admin);
    let v020 = repo().join("tests/fixtures/v0.2.0/migrations");
    for f in [
        "001_reference_tokens.sql",
        "002_portal_sessions.sql",
        "003_integration_credentials.sql",
    ] {
        cl.psql_ok("hr", &v020.join(f), &[]);
    }
    // What every token and secret is before the update (the plaintext is
    // still there in migrated): kept aside by the platform superuser.
    cl.connect("hr")
        .batch_execute(
            "CREATE SCHEMA oracle;
             CREATE TABLE oracle.refs AS SELECT id, access_token FROM public.hr_references
              WHERE access_token IS NOT NULL AND access_token <> '';
             CREATE TABLE oracle.secrets AS SELECT id, jsonb_build_object('api_key', api_key,
                    'api_secret', api_secret, 'refresh_token', refresh_token) AS secret
               FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL;",
        )
        .unwrap();
    plant_overloads(&cl);
    let mut cl = cl;
    cl.set_session_options(Some(&format!(
        "-c search_path={}",
        HOSTILE_PATH.replace(' ', "")
    )));
    let mut admin = hostile_superuser(&cl);
    admin
        .batch_execute("ALTER EXTENSION hr_migrations UPDATE")
        .unwrap_or_else(|e| panic!("{}", error_text(&e)));
    let version: String = one(
        &mut cl.connect("hr"),
        "SELECT extversion FROM pg_extension WHERE extname = 'hr_migrations'",
    );
    assert_eq!(version, extension_version());
    cl.migrate_all("hr");
    let calls = privileged_canary_calls(&cl);
    assert!(
        calls.is_empty(),
        "planted code ran as a superuser or the definer role:\n{}",
        calls.join("\n")
    );
    // On Supabase's layout too, every token and secret works after the update.
    let mut c = cl.connect("hr");
    c.batch_execute("GRANT USAGE ON SCHEMA oracle TO service_role; GRANT SELECT ON ALL TABLES IN SCHEMA oracle TO service_role")
        .unwrap();
    let mut sr = cl.connect_as("hr", "authenticator");
    sr.batch_execute("SET ROLE service_role").unwrap();
    let (refs, secrets): (i64, i64) = (
        one(&mut c, "SELECT count(*) FROM oracle.refs"),
        one(&mut c, "SELECT count(*) FROM oracle.secrets"),
    );
    assert!(refs > 0 && secrets > 0);
    let broken_tokens: i64 = one(
        &mut sr,
        "SELECT count(*) FROM oracle.refs o WHERE NOT extensions.hr_verify_reference_token(o.id, o.access_token)",
    );
    let broken_secrets: i64 = one(
        &mut sr,
        "SELECT count(*) FROM oracle.secrets o WHERE extensions.hr_integration_secret(o.id) IS DISTINCT FROM o.secret",
    );
    assert_eq!((broken_tokens, broken_secrets), (0, 0));
}

/// Finding 3 (high): a trigger whose function the table's owner owns was
/// trusted; on Supabase the owner is postgres, not a superuser, and its
/// statement trigger on pf_credentials ran as hr_migrations_definer during
/// the application's hr_set_integration_secret() call.
#[test]
fn finding_3_a_trigger_of_the_tables_owner_does_not_run_as_the_definer() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    let mut pg = w.postgres();
    let (integration, _) = w.integration_of(&mut admin, &w.org_a, 0);
    let secret = r#"{"api_key":"k-3","api_secret":null,"refresh_token":null}"#;
    // Code the owner can attach to a table the definer writes, one at a time.
    let plants = [
        (
            "CREATE TRIGGER zz_owner AFTER INSERT OR UPDATE ON public.pf_credentials
                 FOR EACH STATEMENT EXECUTE FUNCTION public.owner_trigger()",
            "DROP TRIGGER zz_owner ON public.pf_credentials",
            "trigger zz_owner",
        ),
        (
            "ALTER TABLE public.pf_credentials ALTER COLUMN name SET DEFAULT public.owner_default()",
            "ALTER TABLE public.pf_credentials ALTER COLUMN name DROP DEFAULT",
            "default of column name",
        ),
        (
            "ALTER TABLE public.pf_credentials ADD CONSTRAINT zz_owner_check CHECK (public.owner_check(name)) NOT VALID",
            "ALTER TABLE public.pf_credentials DROP CONSTRAINT zz_owner_check",
            "constraint zz_owner_check",
        ),
        (
            "CREATE INDEX zz_owner_index ON public.pf_credentials (public.owner_index(name))",
            "DROP INDEX public.zz_owner_index",
            "index public.zz_owner_index",
        ),
        (
            "CREATE RULE zz_owner_rule AS ON UPDATE TO public.pf_credentials
                 DO ALSO SELECT public.owner_check('x')",
            "DROP RULE zz_owner_rule ON public.pf_credentials",
            "rule zz_owner_rule",
        ),
    ];
    pg.batch_execute(
        "CREATE FUNCTION public.owner_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('owner trigger'); RETURN NULL; END $$;
         CREATE FUNCTION public.owner_default() RETURNS text LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('owner default'); RETURN 'x'; END $$;
         CREATE FUNCTION public.owner_check(t text) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('owner check'); RETURN true; END $$;
         CREATE FUNCTION public.owner_index(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
         BEGIN PERFORM public.canary('owner index'); RETURN t; END $$;",
    )
    .unwrap();
    let mut sr = w.as_role("service_role", None);
    for (plant, undo, named) in plants {
        pg.batch_execute(plant)
            .unwrap_or_else(|e| panic!("{plant}: {}", error_text(&e)));
        let text = assert_raises(
            &mut sr,
            &format!("SELECT extensions.hr_set_integration_secret('{integration}', '{secret}')"),
            "55000",
            &["k-3"],
        );
        assert!(text.contains(named), "{plant}: {text}");
        // A trigger, default or rule runs on writes: "foreign triggers";
        // code the planner runs (constraint, index) stops the extension
        // as a whole: "integrity".
        let mut found = preflight(&mut admin, "foreign triggers");
        found.extend(preflight(&mut admin, "integrity"));
        assert!(
            found
                .iter()
                .any(|(s, d)| s == "blocker" && d.contains(named)),
            "{plant}: preflight said {found:?}"
        );
        // The engine refuses too.
        let e = admin
            .batch_execute("CALL extensions.hr_run_rewrap()")
            .expect_err(&format!("rewrap ran with planted code: {plant}"));
        assert_eq!(sqlstate(&e), "55000", "{}", error_text(&e));
        pg.batch_execute(undo).unwrap();
    }
    // Gone again: everything works.
    sr.batch_execute(&format!(
        "SELECT extensions.hr_set_integration_secret('{integration}', '{secret}')"
    ))
    .unwrap();
    admin
        .batch_execute("CALL extensions.hr_run_rewrap()")
        .unwrap();
    let calls = w.privileged_canary_calls();
    assert!(calls.is_empty(), "ran as the definer: {calls:?}");
}

/// Finding 4 (medium): one credential linked by two integrations; setting
/// the secret of one destroyed the other's.
#[test]
fn finding_4_a_credential_is_linked_by_one_integration_only() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    let (i1, c1) = w.integration_of(&mut admin, &w.org_a, 0);
    let (i2, _) = w.integration_of(&mut admin, &w.org_a, 1);
    let before: String = one(
        &mut admin,
        &format!("SELECT extensions.hr_integration_secret('{i1}')::text"),
    );
    let mut auth = w.as_role("authenticated", Some(&w.org_a));
    let e = auth
        .batch_execute(&format!(
            "UPDATE public.hr_job_board_integrations SET credential_id = '{c1}' WHERE id = '{i2}'"
        ))
        .expect_err("a second integration was linked to a credential");
    assert!(
        ["23505", "42501"].contains(&sqlstate(&e).as_str()),
        "{}",
        error_text(&e)
    );
    let mut sr = w.as_role("service_role", None);
    sr.batch_execute(&format!(
        "SELECT extensions.hr_set_integration_secret('{i2}', '{{\"api_key\":\"other\",\"api_secret\":null,\"refresh_token\":null}}')"
    ))
    .unwrap();
    let after: String = one(
        &mut admin,
        &format!("SELECT extensions.hr_integration_secret('{i1}')::text"),
    );
    assert_eq!(before, after, "setting I2's secret changed I1's");
    // Duplicates that exist already (made with triggers off) are reported.
    assert!(preflight(&mut admin, "credentials linked once")
        .iter()
        .all(|(s, _)| s == "ok"));
    admin
        .batch_execute(&format!(
            "DROP INDEX public.hr_job_board_integrations_credential_id_key;
             BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE public.hr_job_board_integrations SET credential_id = '{c1}' WHERE id = '{i2}'; COMMIT;"
        ))
        .unwrap();
    let found = preflight(&mut admin, "credentials linked once");
    assert!(
        found
            .iter()
            .any(|(s, d)| s == "blocker" && d.starts_with("1 credentials")),
        "{found:?}"
    );
}

/// Finding 5 (critical, data loss): under Supabase's default grants and
/// with no RLS on pf_credentials, anon and authenticated read every
/// organization's envelopes, and anon deleted every row.
#[test]
fn finding_5_pf_credentials_is_closed_to_anon_and_other_tenants() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    let total: i64 = one(&mut admin, "SELECT count(*) FROM public.pf_credentials");
    let own: i64 = one(
        &mut admin,
        &format!(
            "SELECT count(*) FROM public.pf_credentials WHERE organization_id = '{}'",
            w.org_a
        ),
    );
    assert!(total > own && own > 0, "{total} {own}");

    let mut anon = w.as_role("anon", Some(&w.org_a));
    for sql in [
        "SELECT count(*) FROM public.pf_credentials",
        "DELETE FROM public.pf_credentials",
        "UPDATE public.pf_credentials SET name = 'x'",
        "TRUNCATE public.pf_credentials",
        "SELECT count(*) FROM public.pf_credential_migrations",
        "DELETE FROM public.pf_credential_migrations",
    ] {
        assert_raises(&mut anon, sql, "42501", &[]);
    }
    let mut auth = w.as_role("authenticated", Some(&w.org_a));
    let seen: i64 = one(&mut auth, "SELECT count(*) FROM public.pf_credentials");
    assert_eq!(
        seen, own,
        "authenticated sees other organizations' envelopes"
    );
    // The plan's embed works for the caller's own organization.
    let embedded: i64 = one(
        &mut auth,
        "SELECT count(c.encrypted_value) FROM public.hr_job_board_integrations i
           JOIN public.pf_credentials c ON c.id = i.credential_id",
    );
    assert_eq!(embedded, own);
    for sql in [
        "DELETE FROM public.pf_credentials",
        "UPDATE public.pf_credentials SET name = 'x'",
        "INSERT INTO public.pf_credentials (organization_id, credential_type, name, encrypted_value)
         SELECT organization_id, credential_type, name, encrypted_value FROM public.pf_credentials LIMIT 1",
        "TRUNCATE public.pf_credentials",
    ] {
        assert_raises(&mut auth, sql, "42501", &[]);
    }
    let after: i64 = one(&mut admin, "SELECT count(*) FROM public.pf_credentials");
    assert_eq!(after, total);
    let found = preflight(&mut admin, "credentials table closed");
    assert!(found.iter().all(|(s, _)| s == "ok"), "{found:?}");
    // Opened again by someone: preflight says so.
    w.postgres()
        .batch_execute("GRANT DELETE ON public.pf_credentials TO anon")
        .unwrap();
    let found = preflight(&mut admin, "credentials table closed");
    assert!(
        found
            .iter()
            .any(|(s, d)| s == "warning" && d.contains("anon holds privileges")),
        "{found:?}"
    );
}

/// Finding 2 (high): postgres (CREATEROLE) granted itself
/// hr_migrations_definer and, as it, changed a function the definer owns
/// (SECURITY INVOKER, a search_path through `public`) so that the next
/// superuser to read the status ran postgres's code. PG15 cannot refuse
/// the GRANT: while the role has a member, can log in, or an object of the
/// extension differs from the install, everything refuses, in every
/// backend at once, and works again once it is undone.
#[test]
fn finding_2_postgres_cannot_use_the_definer_role() {
    let w = Supa::new(100, true);
    let mut admin = w.admin();
    let mut pg = w.postgres();
    let mut sr = w.as_role("service_role", None);
    let (integration, _) = w.integration_of(&mut admin, &w.org_a, 0);
    let secret_call = format!("SELECT extensions.hr_integration_secret('{integration}'::uuid)");
    // Works, and the verdict is now cached in these backends.
    sr.batch_execute(&secret_call).unwrap();
    admin
        .batch_execute("SELECT * FROM extensions.hr_migration_status()")
        .unwrap();
    let integrity = |c: &mut Client| preflight(c, "integrity");
    assert_eq!(integrity(&mut admin)[0].0, "ok");

    // 1. A member.
    pg.batch_execute("GRANT hr_migrations_definer TO postgres")
        .unwrap();
    let text = assert_raises(&mut sr, &secret_call, "55000", &[]);
    assert!(text.contains("has members (postgres)"), "{text}");
    assert_raises(
        &mut admin,
        "SELECT * FROM extensions.hr_migration_status()",
        "55000",
        &[],
    );
    assert_raises(
        &mut admin,
        "CALL extensions.hr_run_backfill('portal_sessions')",
        "55000",
        &[],
    );
    assert_raises(&mut admin, "CALL extensions.hr_run_rewrap()", "55000", &[]);
    let found = integrity(&mut admin);
    assert!(
        found[0].0 == "blocker" && found[0].1.contains("has members"),
        "{found:?}"
    );

    // 2. As the definer role, a function it owns is changed, then the
    // membership is given up again.
    pg.batch_execute(
        "SET ROLE hr_migrations_definer;
         ALTER FUNCTION hr_migrations.hr_migration_status() SECURITY INVOKER;
         ALTER FUNCTION hr_migrations.hr_migration_status() SET search_path = public, pg_catalog;
         RESET ROLE;
         REVOKE hr_migrations_definer FROM postgres;",
    )
    .unwrap();
    let text = assert_raises(
        &mut admin,
        "SELECT * FROM extensions.hr_migration_status()",
        "55000",
        &[],
    );
    assert!(
        text.contains(
            "function hr_migrations.hr_migration_status() is not as the extension installed it"
        ),
        "{text}"
    );
    assert_raises(&mut sr, &secret_call, "55000", &[]);
    assert_raises(
        &mut admin,
        "CALL extensions.hr_run_phase('portal_sessions', 'enforced')",
        "55000",
        &[],
    );
    let found = integrity(&mut admin);
    assert!(
        found[0].0 == "blocker" && found[0].1.contains("hr_migration_status"),
        "{found:?}"
    );
    let out = w.cl.psql_file(
        "hr",
        &repo().join("sql/migrations/002_portal_sessions.sql"),
        &[],
    );
    assert!(
        !out.status.success(),
        "a migration script ran on a changed extension"
    );

    // 3. LOGIN.
    pg.batch_execute(
        "GRANT hr_migrations_definer TO postgres;
         SET ROLE hr_migrations_definer;
         ALTER FUNCTION hr_migrations.hr_migration_status() SECURITY DEFINER;
         ALTER FUNCTION hr_migrations.hr_migration_status() SET search_path = pg_catalog, pg_temp;
         RESET ROLE;
         REVOKE hr_migrations_definer FROM postgres;
         ALTER ROLE hr_migrations_definer LOGIN;",
    )
    .unwrap();
    let text = assert_raises(&mut sr, &secret_call, "55000", &[]);
    assert!(text.contains("can log in"), "{text}");

    // Undone: everything works again, in the same backends.
    pg.batch_execute("ALTER ROLE hr_migrations_definer NOLOGIN")
        .unwrap();
    sr.batch_execute(&secret_call).unwrap();
    admin
        .batch_execute("SELECT * FROM extensions.hr_migration_status()")
        .unwrap();
    admin
        .batch_execute("CALL extensions.hr_run_rewrap()")
        .unwrap();
    assert_eq!(integrity(&mut admin)[0].0, "ok");
    let calls = w.privileged_canary_calls();
    assert!(calls.is_empty(), "planted code ran privileged: {calls:?}");
    let postgres_is_super: bool = one(
        &mut w.admin(),
        "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'",
    );
    assert!(!postgres_is_super);
}

/// Finding 6: Supabase's Security Advisor reported rls_disabled_in_public
/// and sensitive_columns_exposed on the tables we manage (anon read every
/// legacy token, every hash and every plaintext key). From migrated on:
/// none of its four lints, anon has nothing on those tables, authenticated
/// reads and writes its own organization's rows only.
#[test]
fn finding_6_the_security_advisor_finds_nothing_once_migrated() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    let advisor = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT migration || ': ' || detail FROM extensions.hr_preflight()
              WHERE check_name = 'security advisor' AND status <> 'ok' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let found = advisor(&mut admin);
    assert!(found.is_empty(), "{found:#?}");

    let mut anon = w.as_role("anon", None);
    for sql in [
        "SELECT access_token FROM public.hr_references LIMIT 1",
        "SELECT access_token_hash FROM public.hr_references LIMIT 1",
        "SELECT api_key FROM public.hr_job_board_integrations LIMIT 1",
        "SELECT session_token FROM public.hr_candidate_portal_sessions LIMIT 1",
        "SELECT encrypted_value FROM public.pf_credentials LIMIT 1",
    ] {
        assert_raises(&mut anon, sql, "42501", &[]);
    }
    let own = |sql: &str| -> i64 { one(&mut w.admin(), &sql.replace("{org}", &w.org_a)) };
    let refs_a = own(
        "SELECT count(*) FROM public.hr_references r JOIN public.hr_candidates c ON c.id = r.candidate_id
          WHERE c.organization_id = '{org}'",
    );
    let ints_a = own(
        "SELECT count(*) FROM public.hr_job_board_integrations WHERE organization_id = '{org}'",
    );
    assert!(refs_a > 0 && ints_a > 0);
    let mut auth = w.as_role("authenticated", Some(&w.org_a));
    let seen: i64 = one(&mut auth, "SELECT count(*) FROM public.hr_references");
    assert_eq!(
        seen, refs_a,
        "authenticated sees other organizations' references"
    );
    let seen: i64 = one(
        &mut auth,
        "SELECT count(*) FROM public.hr_job_board_integrations",
    );
    assert_eq!(
        seen, ints_a,
        "authenticated sees other organizations' integrations"
    );
    // Writes to another organization's rows change nothing or are refused.
    let b_integration: String = one(
        &mut admin,
        &format!("SELECT id::text FROM public.hr_job_board_integrations WHERE organization_id = '{}' LIMIT 1", w.org_b),
    );
    let n = auth
        .execute(
            "UPDATE public.hr_job_board_integrations SET is_active = false WHERE id = $1::text::uuid",
            &[&b_integration],
        )
        .unwrap();
    assert_eq!(
        n, 0,
        "authenticated updated another organization's integration"
    );
    let e = auth
        .batch_execute(&format!(
            "INSERT INTO public.hr_job_board_integrations (organization_id, job_board_type) VALUES ('{}', 'x')",
            w.org_b
        ))
        .expect_err("authenticated inserted an integration for another organization");
    assert_eq!(sqlstate(&e), "42501", "{}", error_text(&e));
    // No claims: no rows (fails closed, no error).
    let mut nobody = w.as_role("authenticated", None);
    let seen: i64 = one(&mut nobody, "SELECT count(*) FROM public.hr_references");
    assert_eq!(seen, 0);

    // The check can see a finding: RLS switched off again is reported.
    admin
        .batch_execute("ALTER TABLE public.hr_job_board_integrations DISABLE ROW LEVEL SECURITY")
        .unwrap();
    let found = advisor(&mut admin);
    assert!(
        found
            .iter()
            .any(|f| f.contains("rls_disabled_in_public: public.hr_job_board_integrations"))
            && found
                .iter()
                .any(|f| f.contains("policy_exists_rls_disabled"))
            && found
                .iter()
                .any(|f| f.contains("sensitive_columns_exposed")),
        "{found:#?}"
    );
}

/// Finding 5, continued: credentials the move created whose integration
/// was deleted are counted by status and removed by the DBA in batches;
/// the application's other credentials are never touched.
#[test]
fn credentials_orphaned_by_a_deleted_integration_are_counted_and_purged_in_batches() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    admin
        .batch_execute(&format!(
            "INSERT INTO public.pf_credentials (organization_id, credential_type, name, encrypted_value)
             VALUES ('{}', 'smtp', 'mail', 'hrc1.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')",
            w.org_a
        ))
        .unwrap();
    let before: i64 = one(&mut admin, "SELECT count(*) FROM public.pf_credentials");
    admin
        .batch_execute(
            "DELETE FROM public.hr_job_board_integrations
              WHERE id IN (SELECT id FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL ORDER BY id LIMIT 5)",
        )
        .unwrap();
    let note: String = one(
        &mut admin,
        "SELECT note FROM extensions.hr_migration_status() WHERE migration = 'integration_credentials'",
    );
    assert!(note.contains("5 credentials are orphaned"), "{note}");
    let (ok, out) = w.cl.psql_c(
        "hr",
        "CALL extensions.hr_run_batches('integration_credentials', 'purge', 2)",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("purge: finished: 5 rows in 3 batches"),
        "{out}"
    );
    let after: i64 = one(&mut admin, "SELECT count(*) FROM public.pf_credentials");
    assert_eq!(after, before - 5);
    let smtp: i64 = one(
        &mut admin,
        "SELECT count(*) FROM public.pf_credentials WHERE credential_type = 'smtp'",
    );
    assert_eq!(
        smtp, 1,
        "an application credential of another type was purged"
    );
    let unlinked: i64 = one(
        &mut admin,
        "SELECT count(*) FROM public.pf_credentials c WHERE c.credential_type LIKE 'job\\_board\\_%'
            AND NOT EXISTS (SELECT 1 FROM public.hr_job_board_integrations i WHERE i.credential_id = c.id)",
    );
    assert_eq!(unlinked, 0);
    let note: String = one(
        &mut admin,
        "SELECT note FROM extensions.hr_migration_status() WHERE migration = 'integration_credentials'",
    );
    assert!(!note.contains("orphaned"), "{note}");
}

/// From an attacker's review of the fixes above: what postgres can put in a
/// table's place or beside it so that its code runs as the definer role or
/// the superuser: a view named like the table (functions in a view run as
/// its reader), an inheritance child with its own trigger (a write without
/// ONLY reaches it), a partitioned table (a partition attached after the
/// check would receive the definer's INSERT), a domain two levels down, a SECURITY DEFINER function
/// made as the definer role while a member and kept after the REVOKE.
#[test]
fn review_planted_views_children_domains_and_definer_owned_functions_are_refused() {
    let w = Supa::new(100, false);
    let mut admin = w.admin();
    let mut pg = w.postgres();
    pg.batch_execute(
        "CREATE FUNCTION public.spy() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('spy'); RETURN true; END $$;
         CREATE FUNCTION public.spy_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('spy trigger'); RETURN NEW; END $$;",
    )
    .unwrap();
    let mut sr = w.as_role("service_role", None);
    let reference: String = one(
        &mut admin,
        "SELECT id::text FROM public.hr_references LIMIT 1",
    );
    let revoke = format!("SELECT extensions.hr_revoke_reference_token('{reference}'::uuid)");

    // A view in hr_candidates' place: read by the preflight (as the
    // superuser) and by the references' policies (as the definer role).
    pg.batch_execute(
        "ALTER TABLE public.hr_candidates RENAME TO hr_candidates_t;
         CREATE VIEW public.hr_candidates AS SELECT * FROM public.hr_candidates_t WHERE public.spy();",
    )
    .unwrap();
    let mut auth = w.as_role("authenticated", Some(&w.org_a));
    let text = assert_raises(
        &mut auth,
        "SELECT count(*) FROM public.hr_references",
        "55000",
        &[],
    );
    assert!(
        text.contains("relation kind v (not a table) on public.hr_candidates"),
        "{text}"
    );
    let _ = admin.batch_execute("SELECT * FROM extensions.hr_preflight()");
    pg.batch_execute(
        "DROP VIEW public.hr_candidates; ALTER TABLE public.hr_candidates_t RENAME TO hr_candidates;",
    )
    .unwrap();

    // An inheritance child of a table the definer writes.
    pg.batch_execute(
        "CREATE TABLE public.hr_references_more () INHERITS (public.hr_references);
         CREATE TRIGGER spy BEFORE UPDATE ON public.hr_references_more FOR EACH ROW EXECUTE FUNCTION public.spy_trigger();",
    )
    .unwrap();
    let text = assert_raises(&mut sr, &revoke, "55000", &[]);
    assert!(text.contains("inheritance child"), "{text}");
    pg.batch_execute("DROP TABLE public.hr_references_more")
        .unwrap();
    sr.batch_execute(&revoke).unwrap();

    // A partitioned table in the place of one the definer inserts into (the
    // logs are CREATE TABLE IF NOT EXISTS: the admin can make them before the
    // migration; the superuser swaps it in here): a partition attached after
    // the check, which a writer's lock does not block, would receive the row
    // and run its own code.
    admin.batch_execute(
        "ALTER TABLE public.hr_reference_token_validations RENAME TO validations_t;
         CREATE TABLE public.hr_reference_token_validations (LIKE public.validations_t INCLUDING DEFAULTS)
             PARTITION BY LIST (success);",
    )
    .unwrap();
    let verify = format!(
        "SELECT extensions.hr_verify_reference_token('{reference}'::uuid, 'not-the-token')"
    );
    let text = assert_raises(&mut sr, &verify, "55000", &[]);
    assert!(
        text.contains("relation kind p (not a table) on public.hr_reference_token_validations"),
        "{text}"
    );
    admin
        .batch_execute(
            "DROP TABLE public.hr_reference_token_validations;
         ALTER TABLE public.validations_t RENAME TO hr_reference_token_validations;",
        )
        .unwrap();

    // A CHECK two domains down, on a column of pf_credentials.
    pg.batch_execute(
        "CREATE DOMAIN public.d1 AS text CHECK (public.spy());
         CREATE DOMAIN public.d2 AS public.d1;
         CREATE DOMAIN public.d3 AS public.d2;
         ALTER TABLE public.pf_credentials ADD COLUMN note public.d3;",
    )
    .unwrap();
    let (integration, _) = w.integration_of(&mut admin, &w.org_a, 0);
    let text = assert_raises(
        &mut sr,
        &format!("SELECT extensions.hr_set_integration_secret('{integration}', '{{\"api_key\":\"k\",\"api_secret\":null,\"refresh_token\":null}}')"),
        "55000",
        &[],
    );
    assert!(text.contains("of domain"), "{text}");
    pg.batch_execute("ALTER TABLE public.pf_credentials DROP COLUMN note")
        .unwrap();

    // A function the definer role owns outside the extension.
    pg.batch_execute(
        "GRANT hr_migrations_definer TO postgres;
         GRANT CREATE ON SCHEMA public TO hr_migrations_definer;
         SET ROLE hr_migrations_definer;
         CREATE FUNCTION public.backdoor(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
         RESET ROLE;
         REVOKE CREATE ON SCHEMA public FROM hr_migrations_definer;
         REVOKE hr_migrations_definer FROM postgres;",
    )
    .unwrap();
    let text = assert_raises(&mut sr, &revoke, "55000", &[]);
    assert!(
        text.contains("owns function public.backdoor(text)"),
        "{text}"
    );
    admin
        .batch_execute("DROP FUNCTION public.backdoor(text)")
        .unwrap();
    sr.batch_execute(&revoke).unwrap();

    let calls = w.privileged_canary_calls();
    assert!(calls.is_empty(), "planted code ran privileged: {calls:?}");
}

/// An attacker review of #16's admin role (the admin may write the
/// registry): names that could leave their quotes — a placeholder
/// `hr_render` filled in again inside a quoted identifier, a quote or a
/// backslash (a literal ended early under `standard_conforming_strings =
/// off`), a newline (a statement at the start of a file's comment line) —
/// are refused with 22023 naming the key, and the built-in migrations'
/// rows are the extension's (42501).
#[test]
fn review_2_registry_rows_written_by_the_admin_cannot_inject() {
    let cl = supabase_cluster(50, SUPABASE);
    cl.connect("hr")
        .batch_execute("CREATE EXTENSION hr_migrations SCHEMA extensions; GRANT hr_migrations_admin TO postgres;")
        .unwrap();
    let mut pg = cl.connect_as("hr", "postgres");
    assert_raises(
        &mut pg,
        "UPDATE hr_migrations.hr_migration_registry SET table_name = 'hr_candidates' WHERE migration = 'reference_tokens'",
        "42501",
        &[],
    );
    assert_raises(
        &mut pg,
        "DELETE FROM hr_migrations.hr_migration_registry WHERE migration = 'portal_sessions'",
        "42501",
        &[],
    );
    let objects: String = one(
        &mut pg,
        "SELECT objects::text FROM hr_migrations.hr_migration_registry WHERE migration = 'portal_sessions'",
    );
    for (what, table, key, value) in [
        ("placeholder", "hr_interviews", "org_trigger", "x{table}"),
        ("quote", "hr_interviews", "fk", "x'') OR public.pwn() --"),
        ("backslash", "hr_interviews", "fk", "x\\\\'"),
        (
            "newline",
            "hr_interviews",
            "index",
            "x\nSELECT public.pwn(); --",
        ),
        ("table", "r{org_trigger}", "index", "ok_name"),
    ] {
        let sql = format!(
            "INSERT INTO hr_migrations.hr_migration_registry (migration, position, kind, table_name, default_batch_size, objects)
             VALUES ('evil', 9, 'tenant_column', $1::text, 10, jsonb_set($2::text::jsonb, ARRAY[$3::text], to_jsonb($4::text)))"
        );
        let e = pg
            .execute(&sql, &[&table, &objects, &key, &value])
            .expect_err(what);
        assert_eq!(sqlstate(&e), "22023", "{what}: {}", error_text(&e));
        assert!(
            error_text(&e).contains("must be a name"),
            "{what}: {}",
            error_text(&e)
        );
    }
}

/// The same review: a column of a type of the admin's (an enum with an
/// implicit cast it wrote) in a column the migration reads. Before, the
/// superuser applying 001 ran the cast while VALIDATE checked the hash
/// CHECK, and the definer role ran it in the batches of a migration the
/// admin registered on a table whose id had such a type. Now the integrity
/// check refuses, naming the column and its type, before anything runs; the
/// preflight says so; with the column fixed everything works again.
#[test]
fn review_2_columns_of_the_admins_types_run_nothing_as_a_superuser_or_the_definer() {
    let cl = supabase_cluster(50, SUPABASE);
    cl.connect("hr")
        .batch_execute("CREATE EXTENSION hr_migrations SCHEMA extensions; GRANT hr_migrations_admin TO postgres;")
        .unwrap();
    let mut pg = cl.connect_as("hr", "postgres");
    pg.batch_execute(
        "CREATE TYPE public.h AS ENUM ('x');
         CREATE FUNCTION public.h_text(public.h) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('h_text'); RETURN 'x'; END $$;
         CREATE CAST (public.h AS text) WITH FUNCTION public.h_text(public.h) AS IMPLICIT;
         ALTER TABLE public.hr_references ADD COLUMN access_token_hash public.h;",
    )
    .unwrap();
    let out = cl.psql_file(
        "hr",
        &repo().join("sql/migrations/001_reference_tokens.sql"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "column public.hr_references.access_token_hash is of type public.h; fix: make it text"
        ),
        "{stderr}"
    );
    let (status_, detail): (String, String) = {
        let r = cl
            .connect("hr")
            .query_one(
                "SELECT status, detail FROM hr_migrations.hr_preflight() WHERE check_name = 'integrity'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status_, "blocker", "{detail}");
    assert!(
        privileged_canary_calls(&cl).is_empty(),
        "{:?}",
        privileged_canary_calls(&cl)
    );
    pg.batch_execute("ALTER TABLE public.hr_references DROP COLUMN access_token_hash")
        .unwrap();

    // A migration of the admin's on a table whose id has such a type.
    pg.batch_execute(
        "CREATE TYPE public.myid AS ENUM ('a', 'b');
         CREATE FUNCTION public.myid_to_uuid(public.myid) RETURNS uuid LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.canary('myid_to_uuid'); RETURN gen_random_uuid(); END $$;
         CREATE CAST (public.myid AS uuid) WITH FUNCTION public.myid_to_uuid(public.myid) AS IMPLICIT;
         CREATE TABLE public.evil_refs (id public.myid PRIMARY KEY, candidate_id uuid, access_token text, access_token_hash text);
         INSERT INTO public.evil_refs VALUES ('a', NULL, 'tok1', NULL), ('b', NULL, 'tok2', NULL);
         GRANT SELECT, UPDATE ON public.evil_refs TO hr_migrations_definer;",
    )
    .unwrap();
    let objects: String = one(
        &mut pg,
        "SELECT objects::text FROM hr_migrations.hr_migration_registry WHERE migration = 'reference_tokens'",
    );
    pg.execute(
        "INSERT INTO hr_migrations.hr_migration_registry (migration, position, kind, table_name, default_batch_size, objects)
         VALUES ('evil', 9, 'token_hash', 'evil_refs', 10, $1::text::jsonb);
         ",
        &[&objects],
    )
    .unwrap();
    pg.batch_execute(
        "INSERT INTO hr_migrations.hr_migration_phases (migration, phase) VALUES ('evil', 'dual')",
    )
    .unwrap();
    let e = pg
        .batch_execute("SELECT hr_migrations.hr_engine_batch('evil', 'backfill', 10)")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{}", error_text(&e));
    assert!(
        error_text(&e).contains("evil_refs.id is of type public.myid"),
        "{}",
        error_text(&e)
    );
    let mut monitor = cl.connect("hr");
    assert!(monitor
        .batch_execute("SELECT * FROM hr_migrations.hr_migration_status()")
        .is_err());
    assert!(
        privileged_canary_calls(&cl).is_empty(),
        "{:?}",
        privileged_canary_calls(&cl)
    );
    // Undone, it works again (a live check).
    pg.batch_execute("DELETE FROM hr_migrations.hr_migration_registry WHERE migration = 'evil';")
        .unwrap();
    cl.migrate_all("hr");
    assert!(privileged_canary_calls(&cl).is_empty());
}

/// The same review: a CREATEROLE role renames the definer role, creates an
/// impostor of that name and takes the real one. The integrity check finds
/// the definer as the owner of the SECURITY DEFINER functions (by OID), so
/// it refuses, naming the renamed role; renamed back, it works again.
#[test]
fn review_2_a_renamed_definer_role_is_found_by_what_it_owns() {
    let w = Supa::new(50, false);
    let mut pg = w.postgres();
    pg.batch_execute(
        "ALTER ROLE hr_migrations_definer RENAME TO hr_definer_x;
         CREATE ROLE hr_migrations_definer NOLOGIN;
         GRANT hr_definer_x TO postgres;",
    )
    .unwrap();
    let mut admin = w.admin();
    let detail: String = one(
        &mut admin,
        "SELECT detail FROM hr_migrations.hr_preflight() WHERE check_name = 'integrity'",
    );
    assert!(detail.contains("hr_definer_x"), "{detail}");
    let mut sr = w.as_role("service_role", None);
    let e = sr
        .batch_execute("SELECT extensions.hr_integration_secret(gen_random_uuid())")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{}", error_text(&e));
    pg.batch_execute(
        "REVOKE hr_definer_x FROM postgres; DROP ROLE hr_migrations_definer;
         ALTER ROLE hr_definer_x RENAME TO hr_migrations_definer;",
    )
    .unwrap();
    let ok: String = one(
        &mut admin,
        "SELECT status FROM hr_migrations.hr_preflight() WHERE check_name = 'integrity'",
    );
    assert_eq!(ok, "ok");
}

/// Review of #18, finding 2: the planner runs code it finds in a table's
/// index expressions and predicates and in its extended statistics (it
/// simplifies them: a constant subexpression is evaluated) whenever it
/// plans a query on the table, as whoever plans it. `postgres` owns the
/// tables: code it plants there must not run as the definer role (status,
/// the secret read, shredding) or as a superuser (the preflight). The
/// extension refuses to run until it is gone (integrity, problem 7), and
/// runs again once it is dropped, in the same backend.
#[test]
fn review_3_code_the_planner_runs_never_runs_as_the_definer_or_a_superuser() {
    let cl = supabase_platform(200, &[]);
    cl.psql_as_ok(
        "hr",
        "postgres",
        &repo().join("sql/migrations/003_integration_credentials.sql"),
        &[],
    );
    let mut pg = cl.connect_as("hr", "postgres");
    assert!(status(&mut pg, "integration_credentials").phase == "migrated");
    let org: String = one(
        &mut pg,
        "SELECT organization_id::text FROM public.pf_credentials LIMIT 1",
    );
    pg.batch_execute(
        "CREATE TABLE public.evidence (ran_as text);
         GRANT ALL ON public.evidence TO PUBLIC;
         CREATE FUNCTION public.note_caller() RETURNS void LANGUAGE plpgsql VOLATILE
             AS $$ BEGIN INSERT INTO public.evidence VALUES (current_user); END $$;
         CREATE FUNCTION public.planted(integer) RETURNS text LANGUAGE plpgsql IMMUTABLE
             AS $$ BEGIN PERFORM public.note_caller(); RETURN ''; END $$;
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
         CREATE STATISTICS planted_stats ON (organization_id::text || public.planted(1)) FROM public.pf_credentials;
         CREATE INDEX planted_index ON public.hr_candidates ((id::text || public.planted(2)));",
    )
    .unwrap();
    let others = |c: &mut Client| -> String {
        c.batch_execute("SELECT 1").unwrap();
        one(
            c,
            "SELECT coalesce(string_agg(DISTINCT ran_as, ','), '') FROM public.evidence WHERE ran_as <> 'postgres'",
        )
    };
    // Every path, each in a new backend (statistics are read at every
    // planning, index expressions once per backend).
    let text = assert_raises(
        &mut cl.connect_as("hr", "postgres"),
        "SELECT * FROM extensions.hr_migration_status()",
        "55000",
        &[],
    );
    assert!(
        text.contains("planted_stats") || text.contains("planted_index"),
        "{text}"
    );
    assert_raises(
        &mut cl.connect_as("hr", "postgres"),
        &format!("SELECT extensions.hr_shred_organization('{org}')"),
        "55000",
        &[],
    );
    let mut sr = cl.connect_as("hr", "authenticator");
    sr.batch_execute("SET ROLE service_role").unwrap();
    assert_raises(
        &mut sr,
        "SELECT extensions.hr_integration_secret(id) FROM public.hr_job_board_integrations WHERE credential_id IS NOT NULL LIMIT 1",
        "55000",
        &[],
    );
    let integrity: Vec<(String, String)> = preflight(&mut cl.connect("hr"), "integrity");
    assert!(
        integrity
            .iter()
            .any(|(s, d)| s == "blocker" && d.contains("planted_")),
        "{integrity:?}"
    );
    assert_eq!(others(&mut pg), "", "planted code ran as another role");

    // The control: the plant is live — a superuser's own query on the
    // table runs it (PostgreSQL's, not the extension's).
    cl.connect("hr")
        .batch_execute(
            "SELECT count(*) FROM public.pf_credentials WHERE organization_id = gen_random_uuid()",
        )
        .unwrap();
    assert_eq!(others(&mut pg), "supabase_admin");

    // Dropped: the extension runs again, in a backend that saw the refusal.
    let mut watcher = cl.connect_as("hr", "postgres");
    assert!(watcher
        .batch_execute("SELECT * FROM extensions.hr_migration_status()")
        .is_err());
    pg.batch_execute("DROP STATISTICS public.planted_stats; DROP INDEX public.planted_index")
        .unwrap();
    assert_eq!(
        status(&mut watcher, "integration_credentials").phase,
        "migrated"
    );
}
