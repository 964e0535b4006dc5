//! The application path (docs/application.md): what the edge function and
//! the hooks call after the migrations, run the way PostgREST runs it.
//!
//! - `edge_function_example_leaves_no_token_or_secret_in_the_log`: the Node
//!   program in examples/edge-function (login role `authenticator`, `SET
//!   LOCAL ROLE` per request, claims through `set_config`, bind parameters)
//!   against a migrated database with `log_statement = all` and the
//!   recommended role settings, once with every migration `migrated`
//!   (calling the extension's functions) and once `enforced` (through the
//!   wrappers in `public` that docs/application.md gives for PostgREST);
//!   then the server log is searched for every token and secret value the
//!   program handled (it lists them in a file, never on stdout).
//! - `preflight_warns_while_app_roles_would_log_bind_parameters`: with the
//!   defaults a bind parameter reaches the log and `hr_preflight()` warns;
//!   with `log_parameter_max_length = 0` on the roles it no longer does.
//! - `issued_tokens_are_stored_only_as_hashes_in_every_phase`:
//!   `hr_issue_reference_token` in dual, migrated, enforced and contracted.
//!
//! Needs Node.js 18+ and npm (`apt-get install nodejs npm`); `npm ci` runs
//! once, when examples/edge-function/node_modules is missing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hr_migrations_it::*;

/// The roles the application's token and secret calls go through: PostgREST
/// logs in as `authenticator` and `SET LOCAL ROLE`s to `service_role`.
const CALLING_ROLES: [&str; 2] = ["authenticator", "service_role"];

const MIGRATIONS: [&str; 3] = [
    "reference_tokens",
    "portal_sessions",
    "integration_credentials",
];

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hrm-app-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn example_dir() -> PathBuf {
    repo().join("examples/edge-function")
}

/// Runs `cmd` to its end or kills it after `limit`; (succeeded, stdout, stderr).
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> (bool, String, String) {
    let dir = scratch_dir("out");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (Node.js 18+ and npm are needed: apt-get install nodejs npm)"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let r = (status.success(), text(&out), text(&err));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// `npm ci` from the lockfile, unless node_modules is already there (so the
/// test runs offline once it has been installed).
fn ensure_node_modules() {
    if example_dir().join("node_modules/pg/package.json").exists() {
        return;
    }
    let (ok, out, err) = run_bounded(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(example_dir()),
        Duration::from_secs(300),
        "npm ci in examples/edge-function",
    );
    assert!(
        ok,
        "npm ci in examples/edge-function failed (it needs the npm registry, or its cache, once):\n{out}{err}"
    );
}

/// Runs the Node program against `db` as `authenticator`; it appends the
/// values it handled to `secrets_file`. Returns its stdout.
fn run_example(cl: &Cluster, db: &str, secrets_file: &Path) -> String {
    let (ok, out, err) = run_bounded(
        Command::new("node")
            .arg("index.mjs")
            .current_dir(example_dir())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", cl.port.to_string())
            .env("PGDATABASE", db)
            .env("PGUSER", "authenticator")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("HR_REFERENCE_ID")
            .env_remove("HR_INTEGRATION_ID")
            .env("HR_EXAMPLE_SECRETS_FILE", secrets_file),
        Duration::from_secs(90),
        "node examples/edge-function/index.mjs",
    );
    assert!(ok, "the edge-function example failed:\n{out}{err}");
    assert!(out.contains("all checks passed"), "{out}{err}");
    out
}

/// The values the program listed: (label, value), each line `label TAB
/// base64(value)`.
fn handled_values(path: &Path) -> Vec<(String, String)> {
    use base64::Engine;
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (label, b64) = l.split_once('\t').expect("label TAB base64");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            (label.to_string(), String::from_utf8(bytes).expect("utf-8"))
        })
        .collect()
}

/// The roles named by a warning of the preflight check 'parameters kept
/// out of the log' (each detail starts "role <name>: ").
fn roles_warned(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT detail FROM extensions.hr_preflight()
          WHERE check_name = 'parameters kept out of the log' AND status = 'warning'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let d: String = r.get(0);
        d.strip_prefix("role ")
            .and_then(|d| d.split(':').next())
            .unwrap_or(&d)
            .to_string()
    })
    .collect()
}

/// The SQL block of docs/application.md, "Reaching the functions through PostgREST".
fn documented_wrappers() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/application.md")).unwrap();
    let at = doc
        .find("## Reaching the functions through PostgREST")
        .expect("section on the wrappers");
    let start = at + doc[at..].find("```sql\n").expect("its sql block") + "```sql\n".len();
    let end = start + doc[start..].find("```").expect("end of the sql block");
    doc[start..end].to_string()
}

fn keep_parameters_out_of_the_log(c: &mut Client) {
    for role in CALLING_ROLES {
        c.batch_execute(&format!(
            "ALTER ROLE {role} SET log_parameter_max_length = 0;
             ALTER ROLE {role} SET log_parameter_max_length_on_error = 0"
        ))
        .unwrap();
    }
}

#[test]
fn edge_function_example_leaves_no_token_or_secret_in_the_log() {
    let started = Instant::now();
    ensure_node_modules();
    let keyring = write_keyring(&[(1, random_key())]);
    let mut conf = keyring_conf(&keyring, 1);
    conf.push("log_statement=all".into());
    let cl = Cluster::start(&conf);
    cl.fixture_db("hr", 200);
    let mut c = cl.connect("hr");
    keep_parameters_out_of_the_log(&mut c);
    c.batch_execute(
        "DELETE FROM public.hr_candidate_portal_sessions s
          WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                             WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
    )
    .unwrap();
    cl.migrate_all("hr");
    assert_all_migrated(&mut c);
    let warned = roles_warned(&mut c);
    for role in CALLING_ROLES {
        assert!(
            !warned.iter().any(|w| w == role),
            "hr_preflight() still warns about {role}: {warned:?}"
        );
    }

    let work = scratch_dir("secrets");
    let secrets_file = work.join("handled");
    // Every migration migrated (the transition: old and new code side by side).
    let mut stdout = run_example(&cl, "hr", &secrets_file);
    // The wrappers docs/application.md adds in public for PostgREST: from
    // now on the program's calls resolve to them (search_path public, extensions).
    c.batch_execute(&documented_wrappers()).unwrap();
    for f in [
        "hr_issue_reference_token(uuid)",
        "hr_verify_reference_token(uuid,text)",
        "hr_revoke_reference_token(uuid)",
        "hr_integration_secret(uuid)",
        "hr_set_integration_secret(uuid,jsonb)",
    ] {
        for (role, expected) in [
            ("anon", false),
            ("authenticated", false),
            ("service_role", true),
        ] {
            let can: bool = c
                .query_one(
                    "SELECT has_function_privilege($1, ('public.' || $2)::regprocedure, 'EXECUTE')",
                    &[&role, &f],
                )
                .unwrap()
                .get(0);
            assert_eq!(can, expected, "EXECUTE on public.{f} for {role}");
        }
    }
    // Every migration enforced: plaintext cleared, refused and no longer read.
    for m in MIGRATIONS {
        c.batch_execute(&format!("CALL hr_run_phase('{m}', 'enforced')"))
            .unwrap();
        let s = status(&mut c, m);
        assert_eq!(
            (s.phase.as_str(), s.pending, s.blocked),
            ("enforced", 0, 0),
            "{m}: {}",
            s.note
        );
    }
    stdout += &run_example(&cl, "hr", &secrets_file);
    let plaintext: i64 = one(
        &mut c,
        "SELECT count(*) FROM public.hr_job_board_integrations
          WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL",
    );
    assert_eq!(plaintext, 0, "plaintext credentials left once enforced");

    let handled = handled_values(&secrets_file);
    for label in [
        "issued_token",
        "wrong_token",
        "written_refresh_token",
        "refused_refresh_token",
    ] {
        assert_eq!(
            handled.iter().filter(|(l, _)| l == label).count(),
            2,
            "the program should have listed one {label} per run"
        );
    }
    assert!(
        handled.iter().any(|(l, _)| l.starts_with("read_")),
        "the program listed no secret it read"
    );

    std::thread::sleep(Duration::from_millis(300));
    let log = cl.server_log();
    // log_statement = all did log the application's statements...
    for statement in [
        "execute <unnamed>: SELECT hr_issue_reference_token($1)",
        "execute <unnamed>: SELECT hr_verify_reference_token($1, $2)",
        "execute <unnamed>: SELECT hr_set_integration_secret($1, $2)",
        "execute <unnamed>: SELECT hr_integration_secret($1)",
    ] {
        assert!(log.contains(statement), "not logged: {statement}");
    }
    // ...and the refused partial secret was logged as an error, with its statement.
    assert!(log.contains("secret must be a JSON object"));
    // ...but no value bound to them, nor any value the functions returned.
    for (label, value) in &handled {
        assert!(
            !log.contains(value.as_str()),
            "{label} ({} characters) is in the server log",
            value.chars().count()
        );
        assert!(
            !stdout.contains(value.as_str()),
            "the program printed {label}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("application path checked in {:?}", started.elapsed());
}

#[test]
fn preflight_warns_while_app_roles_would_log_bind_parameters() {
    let cl = Cluster::start(&["log_statement=all"]);
    cl.fixture_db("hr", 10);
    let mut dba = cl.connect("hr");

    // A request as PostgREST makes it, with one value bound as a parameter.
    let request = |canary: &str| {
        let mut c = cl.connect_as("hr", "authenticator");
        let mut t = c.transaction().unwrap();
        t.batch_execute("SET LOCAL ROLE service_role").unwrap();
        let echoed: String = t.query_one("SELECT $1::text", &[&canary]).unwrap().get(0);
        assert_eq!(echoed, canary);
        t.commit().unwrap();
    };

    // Defaults (log_parameter_max_length = -1): the value reaches the log,
    // and the preflight says so for both roles.
    let warned = roles_warned(&mut dba);
    for role in CALLING_ROLES {
        assert!(
            warned.iter().any(|w| w == role),
            "no warning for {role}: {warned:?}"
        );
    }
    let fix: String = one(
        &mut dba,
        "SELECT fix FROM extensions.hr_preflight()
          WHERE check_name = 'parameters kept out of the log' AND detail LIKE 'role authenticator:%'",
    );
    assert!(
        fix.contains("ALTER ROLE authenticator SET log_parameter_max_length = 0"),
        "{fix}"
    );
    let logged = format!("canary-logged-{}", std::process::id());
    request(&logged);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        cl.server_log().contains(&logged),
        "with the defaults a bind parameter should be in the log (is log_statement = all in effect?)"
    );

    // The recommended settings: the warning goes for both roles, and a new
    // session of authenticator no longer logs its parameters.
    keep_parameters_out_of_the_log(&mut dba);
    let warned = roles_warned(&mut dba);
    for role in CALLING_ROLES {
        assert!(
            !warned.iter().any(|w| w == role),
            "still a warning for {role}: {warned:?}"
        );
    }
    let hidden = format!("canary-hidden-{}", std::process::id());
    request(&hidden);
    std::thread::sleep(Duration::from_millis(300));
    let log = cl.server_log();
    assert!(
        log.contains(": SELECT $1::text"),
        "log_statement = all did not log the request"
    );
    assert!(
        !log.contains(&hidden),
        "a bind parameter of authenticator is in the log"
    );
}

/// A session as PostgREST's `authenticator` that is `role` throughout.
fn as_role(cl: &Cluster, role: &str) -> Client {
    let mut c = cl.connect_as("hr", "authenticator");
    c.batch_execute(&format!("SET ROLE {role}")).unwrap();
    c
}

fn issue(c: &mut Client, id: &str) -> String {
    c.query_one("SELECT hr_issue_reference_token($1::text::uuid)", &[&id])
        .unwrap()
        .get(0)
}

fn verify(c: &mut Client, id: &str, token: &str) -> bool {
    c.query_one(
        "SELECT hr_verify_reference_token($1::text::uuid, $2)",
        &[&id, &token],
    )
    .unwrap()
    .get(0)
}

fn token_shaped(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn issued_tokens_are_stored_only_as_hashes_in_every_phase() {
    let cl = Cluster::start(&[] as &[&str]);
    cl.fixture_db("hr", 100);
    cl.migrate("hr", "001_reference_tokens.sql", &[]);
    let mut dba = cl.connect("hr");
    let mut sr = as_role(&cl, "service_role");
    // Distinct references that still hold a legacy ASCII plaintext token.
    let legacy: Vec<(String, String)> = dba
        .query(
            "SELECT id::text, access_token FROM public.hr_references
              WHERE access_token ~ '^[A-Za-z0-9_-]+$' ORDER BY id LIMIT 4",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(legacy.len(), 4);

    for (phase, (id, old)) in ["dual", "migrated", "enforced", "contracted"]
        .into_iter()
        .zip(&legacy)
    {
        if phase == "contracted" {
            dba.batch_execute(
                "SET hr_migrations.deprecation_period = '0';
                 SELECT hr_set_phase('reference_tokens', 'contracted')",
            )
            .unwrap();
            // Erases the legacy plaintext and drops access_token.
            dba.batch_execute("CALL hr_run_backfill('reference_tokens')")
                .unwrap();
            let has_column: bool = one(
                &mut dba,
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.hr_references'::regclass
                                   AND attname = 'access_token' AND NOT attisdropped)",
            );
            assert!(!has_column, "access_token should be gone once contracted");
        } else {
            dba.batch_execute(&format!(
                "SELECT hr_set_phase('reference_tokens', '{phase}')"
            ))
            .unwrap();
        }
        assert_eq!(status(&mut dba, "reference_tokens").phase, phase);

        // The legacy token verifies through its backfilled hash until replaced.
        assert!(
            verify(&mut sr, id, old),
            "{phase}: the legacy token should verify"
        );
        let token = issue(&mut sr, id);
        assert!(
            token_shaped(&token),
            "{phase}: not a 43-char base64url token"
        );
        let again = issue(&mut sr, id);
        assert!(
            token_shaped(&again) && again != token,
            "{phase}: tokens must differ"
        );

        // Only the hash of the current token is stored; no column holds the token.
        let (plaintext_gone, hash_ok, hash_matches, token_anywhere): (bool, bool, bool, bool) = {
            let r = dba
                .query_one(
                    "SELECT coalesce(to_jsonb(r) ->> 'access_token', '') = '',
                            r.access_token_hash ~ '^[A-Za-z0-9+/]{64}$',
                            hr_verify_token($2, r.access_token_hash),
                            EXISTS (SELECT 1 FROM public.hr_references x
                                     WHERE strpos(x::text, $2) > 0 OR strpos(x::text, $3) > 0)
                       FROM public.hr_references r WHERE r.id = $1::text::uuid",
                    &[&id, &again, &token],
                )
                .unwrap();
            (r.get(0), r.get(1), r.get(2), r.get(3))
        };
        assert!(
            plaintext_gone,
            "{phase}: access_token is not NULL after issuing"
        );
        assert!(hash_ok, "{phase}: access_token_hash is not a v1 hash");
        assert!(
            hash_matches,
            "{phase}: the stored hash is not the issued token's"
        );
        assert!(
            !token_anywhere,
            "{phase}: a token is stored in hr_references"
        );

        assert!(
            verify(&mut sr, id, &again),
            "{phase}: the issued token should verify"
        );
        assert!(
            !verify(&mut sr, id, &token),
            "{phase}: a replaced token verifies"
        );
        assert!(
            !verify(&mut sr, id, old),
            "{phase}: the legacy token survived issuing"
        );
        let logged: bool = one(
            &mut dba,
            &format!(
                "SELECT EXISTS (SELECT 1 FROM public.hr_reference_token_validations v
                                 WHERE v.reference_id = '{id}' AND v.method = 'hash' AND v.success
                                   AND strpos(v::text, '{again}') = 0)"
            ),
        );
        assert!(
            logged,
            "{phase}: the verification was not logged (by method, without the token)"
        );
    }

    // Unknown and NULL references.
    let mut sr_tx = as_role(&cl, "service_role");
    assert_raises(
        &mut sr_tx,
        "SELECT hr_issue_reference_token('00000000-0000-4000-8000-000000000000')",
        "P0002",
        &[],
    );
    assert_raises(
        &mut sr_tx,
        "SELECT hr_issue_reference_token(NULL)",
        "22004",
        &[],
    );

    // The anon key and a user's JWT cannot issue, verify or revoke.
    let id = &legacy[0].0;
    for role in ["anon", "authenticated"] {
        let mut c = as_role(&cl, role);
        for sql in [
            format!("SELECT hr_issue_reference_token('{id}')"),
            format!("SELECT hr_verify_reference_token('{id}', 'x')"),
            format!("SELECT hr_revoke_reference_token('{id}')"),
        ] {
            assert_raises(&mut c, &sql, "42501", &[]);
        }
    }
}
