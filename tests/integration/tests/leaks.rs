//! Leaks (issue #11): the whole demo (`scripts/demo.sh`) with every
//! statement logged (log_statement = all, log_min_duration_statement = 0,
//! log_min_error_statement = error, verbose errors) and pg_stat_statements
//! tracking nested statements too, then failing calls whose inputs hold
//! real tokens and secrets (taken server-side, as the application's data).
//! No token, secret or key of the demo's data may appear in the server log
//! or in pg_stat_statements.

use std::process::Command;

use aho_corasick::AhoCorasick;
use hr_migrations_it::*;

#[test]
fn the_demo_leaves_no_token_secret_or_key_in_the_log_or_pg_stat_statements() {
    let scale = 2000;
    let dir = std::env::temp_dir().join(format!("hrm-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let conf = [
        "log_statement=all",
        "log_min_duration_statement=0",
        "log_min_error_statement=error",
        "log_error_verbosity=verbose",
        "shared_preload_libraries=hr_migrations,pg_stat_statements",
        "pg_stat_statements.track=all",
    ];
    let out = Command::new(repo().join("scripts/demo.sh"))
        .arg(scale.to_string())
        .env("DEMO_DIR", &dir)
        .env("DEMO_CONF", conf.join(" "))
        .output()
        .expect("run the demo");
    let stop = || {
        let _ = Command::new(repo().join("scripts/pg-cluster.sh"))
            .arg("stop")
            .arg(&dir)
            .output();
    };
    if !out.status.success() {
        stop();
        panic!(
            "the demo failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = std::fs::read_to_string(dir.join("port")).unwrap();
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=hr_demo",
        port.trim()
    );
    let mut c = Client::connect(&url, NoTls).unwrap();

    // Failing calls carrying real secrets and tokens.
    let failing = [
        // A malformed secret holding a real API key.
        ("22023", "SELECT hr_set_integration_secret(id, '{\"api_key\": ' || to_json('key_' || md5('k' || 5))::text
                                                        || ', \"api_secret\": 7, \"refresh_token\": null}')
                     FROM public.hr_job_board_integrations ORDER BY id LIMIT 1"),
        // A stored hash that is not one, made of a real token.
        ("22023", "SELECT hr_verify_token('x', translate(encode(decode(md5('ref' || 3) || md5('tok' || 3), 'hex'), 'base64'), '+/=', '-_'))"),
        // A real credential opened with the wrong associated data, and altered.
        ("22023", "SELECT hr_decrypt_credential(encrypted_value, 'wrong') FROM public.pf_credentials ORDER BY id LIMIT 1"),
        ("22023", "SELECT hr_decrypt_credential(overlay(encrypted_value placing
                          CASE WHEN substr(encrypted_value, 30, 1) = 'A' THEN 'B' ELSE 'A' END from 30 for 1),
                          hr_credential_aad(organization_id, id))
                     FROM public.pf_credentials ORDER BY id LIMIT 1"),
        // A real secret that is not JSON at all.
        ("22023", "SELECT hr_set_integration_secret(id, 'secret_' || md5('s' || 8)) FROM public.hr_job_board_integrations ORDER BY id LIMIT 1"),
        // A real token that is too long to be one, hashed and verified.
        ("22023", "SELECT hr_verify_token(repeat(md5(499::text), 128), 'hrc1.1.' || md5('r' || 13))"),
    ];
    for (state, sql) in failing {
        let e = c.batch_execute(sql).expect_err(sql);
        assert_eq!(sqlstate(&e), state, "{sql}: {}", error_text(&e));
    }
    // The platform's superuser (the demo's layout is Supabase's) reads
    // every statement pg_stat_statements kept.
    let mut su =
        Client::connect(&url.replace("user=postgres", "user=supabase_admin"), NoTls).unwrap();
    su.batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let statements: String = one(
        &mut su,
        "SELECT coalesce(string_agg(query, E'\\n'), '') FROM pg_stat_statements",
    );
    let n_statements: i64 = one(&mut su, "SELECT count(*) FROM pg_stat_statements");
    drop(su);

    // The needles: every token and secret the fixture generated (the same
    // expressions as tests/fixtures/generate.sql), by its distinctive part,
    // and the key in base64 and hex.
    let mut needles: Vec<String> = c
        .query(
            "SELECT v FROM generate_series(1, $1::int) n,
                    LATERAL (VALUES
                        (translate(encode(decode(md5('ref' || n) || md5('tok' || n), 'hex'), 'base64'), '+/=', '-_')),
                        ('-' || md5(n::text) || '-'),
                        (repeat(md5(n::text), 2)),
                        (md5('k' || n)), (md5('s' || n)), (md5('r' || n))) t(v)",
            &[&scale],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ring = std::fs::read_to_string(dir.join("keys/keyring")).unwrap();
    for line in ring
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let b64 = line.split_whitespace().nth(1).unwrap().to_string();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo '{b64}' | base64 -d | od -An -tx1 | tr -d ' \\n'"
            ))
            .output()
            .unwrap();
        let hex = String::from_utf8(out.stdout).unwrap();
        assert_eq!(hex.len(), 64, "key hex");
        needles.push(b64);
        needles.push(hex);
    }
    drop(c);
    stop();

    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    let logged_statements = log.matches("statement: ").count();
    assert!(
        logged_statements > 100,
        "{logged_statements} statements logged: is log_statement on?"
    );
    assert!(
        log.matches("ERROR:").count() >= failing.len(),
        "the failing calls are not in the log"
    );
    let ac = AhoCorasick::new(&needles).unwrap();
    for (name, hay) in [("server log", &log), ("pg_stat_statements", &statements)] {
        if let Some(m) = ac.find(hay.as_str()) {
            let from = hay[..m.start()].rfind('\n').map_or(0, |i| i + 1);
            let to = hay[m.end()..].find('\n').map_or(hay.len(), |i| m.end() + i);
            panic!(
                "the {name} holds a token, secret or key: {}",
                &hay[from..to]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "leaks: demo at scale {scale}: {} log lines ({logged_statements} statements logged), {n_statements} pg_stat_statements entries, {} failing calls; {} tokens, secrets and keys searched: none found",
        log.lines().count(),
        failing.len(),
        needles.len()
    );
}
