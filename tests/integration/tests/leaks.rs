//! Leaks: the whole demo (`scripts/demo.sh`) with every
//! statement logged (log_statement = all, log_min_duration_statement = 0,
//! log_min_error_statement = error, verbose errors) and pg_stat_statements
//! tracking nested statements too, then failing calls whose inputs hold
//! real tokens and secrets (taken server-side, as the application's data),
//! a shredded organization and a wrapped data key moved to another one.
//! No token, secret or key of the demo's data (keyring keys, data keys,
//! wrapped or not) may appear in the server log or in pg_stat_statements.

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

    // The keyring's keys, and every organization's data key as an
    // independent implementation unwraps it (tests/fixtures/
    // open_envelopes_v2.py) from hr_organization_keys, read by the
    // platform's superuser: no key, wrapped or not, may appear anywhere.
    use base64::Engine;
    let ring = std::fs::read_to_string(dir.join("keys/keyring")).unwrap();
    let keyring: Vec<(i32, Vec<u8>)> = ring
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let version = f.next().unwrap().parse().unwrap();
            let key = base64::engine::general_purpose::STANDARD
                .decode(f.next().unwrap())
                .unwrap();
            (version, key)
        })
        .collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut su =
        Client::connect(&url.replace("user=postgres", "user=supabase_admin"), NoTls).unwrap();
    let wrapped: Vec<(String, i32, i32, String)> = su
        .query(
            "SELECT organization_id::text, generation, kek_version, wrapped_key
               FROM hr_migrations.hr_organization_keys WHERE wrapped_key IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(wrapped.len() >= 4, "{} data keys", wrapped.len());
    let mut input = String::new();
    for (org, generation, kek_version, w) in &wrapped {
        let kek = &keyring.iter().find(|(v, _)| v == kek_version).unwrap().1;
        input.push_str(&format!("{}\t{org}\t{generation}\t{w}\t\t\n", hex(kek)));
    }
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/fixtures/open_envelopes_v2.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let unwrapped = child.wait_with_output().unwrap();
    assert!(
        unwrapped.status.success(),
        "{}",
        String::from_utf8_lossy(&unwrapped.stderr)
    );
    let mut key_needles: Vec<String> = Vec::new();
    for line in String::from_utf8(unwrapped.stdout).unwrap().lines() {
        let dek_hex = line.split('\t').next().unwrap();
        let dek: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&dek_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        key_needles.push(dek_hex.to_string());
        key_needles.push(base64::engine::general_purpose::STANDARD.encode(&dek));
        key_needles.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dek));
    }
    assert_eq!(key_needles.len(), 3 * wrapped.len());
    for (_, _, _, w) in &wrapped {
        key_needles.push(w.clone());
        key_needles.push(w.rsplit('.').next().unwrap().to_string());
    }

    // Organizations (the demo shredded one already): the first live
    // credential's by id (left alone), one offboarded
    // (its keys shredded by the admin), one whose wrapped key the superuser
    // replaced with a fourth one's.
    let orgs: Vec<String> = c
        .query(
            "SELECT organization_id::text FROM public.pf_credentials
              WHERE hr_migrations.hr_data_key_live(organization_id, encrypted_value)
              GROUP BY 1 ORDER BY min(id::text) LIMIT 4",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let shredded: i64 = one(
        &mut c,
        &format!("SELECT hr_shred_organization('{}')", orgs[1]),
    );
    assert!(shredded > 0);
    su.batch_execute(&format!(
        "UPDATE hr_migrations.hr_organization_keys k SET wrapped_key =
                (SELECT d.wrapped_key FROM hr_migrations.hr_organization_keys d
                  WHERE d.organization_id = '{}' AND d.generation = 1)
          WHERE k.organization_id = '{}' AND k.generation = 1",
        orgs[3], orgs[2]
    ))
    .unwrap();

    // Failing calls carrying real secrets and tokens.
    let failing: Vec<(&str, String)> = vec![
        // A malformed secret holding a real API key.
        ("22023", "SELECT hr_set_integration_secret(id, '{\"api_key\": ' || to_json('key_' || md5('k' || 5))::text
                                                        || ', \"api_secret\": 7, \"refresh_token\": null}')
                     FROM public.hr_job_board_integrations ORDER BY id LIMIT 1".to_string()),
        // A stored hash that is not one, made of a real token.
        ("22023", "SELECT hr_verify_token('x', translate(encode(decode(md5('ref' || 3) || md5('tok' || 3), 'hex'), 'base64'), '+/=', '-_'))".to_string()),
        // A real credential opened with the wrong associated data, and altered.
        ("22023", format!("SELECT hr_migrations.hr_open_credential(organization_id, encrypted_value, 'wrong') FROM public.pf_credentials WHERE organization_id = '{}' ORDER BY id LIMIT 1", orgs[0])),
        ("22023", format!("SELECT hr_migrations.hr_open_credential(organization_id, overlay(encrypted_value placing
                          CASE WHEN substr(encrypted_value, 30, 1) = 'A' THEN 'B' ELSE 'A' END from 30 for 1),
                          hr_credential_aad(organization_id, id))
                     FROM public.pf_credentials WHERE organization_id = '{}' ORDER BY id LIMIT 1", orgs[0])),
        // An envelope v2 given to hr_decrypt_credential.
        ("22P02", "SELECT hr_decrypt_credential(encrypted_value, hr_credential_aad(organization_id, id)) FROM public.pf_credentials ORDER BY id LIMIT 1".to_string()),
        // A wrapped data key moved to another organization.
        ("XX001", format!("SELECT hr_migrations.hr_open_credential(c.organization_id, c.encrypted_value, hr_credential_aad(c.organization_id, c.id))
                             FROM public.pf_credentials c WHERE c.organization_id = '{}' LIMIT 1", orgs[2])),
        // The credentials of a shredded organization.
        ("55000", format!("SELECT hr_integration_secret(id) FROM public.hr_job_board_integrations
                            WHERE organization_id = '{}' AND credential_id IS NOT NULL", orgs[1])),
        // A real secret that is not JSON at all.
        ("22023", "SELECT hr_set_integration_secret(id, 'secret_' || md5('s' || 8)) FROM public.hr_job_board_integrations ORDER BY id LIMIT 1".to_string()),
        // A real token that is too long to be one, hashed and verified.
        ("22023", "SELECT hr_verify_token(repeat(md5(499::text), 128), 'hrc1.1.' || md5('r' || 13))".to_string()),
    ];
    for (state, sql) in &failing {
        let e = c.batch_execute(sql).expect_err(sql);
        assert_eq!(sqlstate(&e), *state, "{sql}: {}", error_text(&e));
    }
    // The platform's superuser (the demo's layout is Supabase's) reads
    // every statement pg_stat_statements kept.
    su.batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let statements: String = one(
        &mut su,
        "SELECT coalesce(string_agg(query, E'\\n'), '') FROM pg_stat_statements",
    );
    let n_statements: i64 = one(&mut su, "SELECT count(*) FROM pg_stat_statements");
    drop(su);

    // The needles: every token and secret the fixture generated (the same
    // expressions as tests/fixtures/generate.sql), by its distinctive part;
    // the keyring's keys and the data keys in base64 and hex, the wrapped
    // data keys.
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
    for (_, key) in &keyring {
        needles.push(base64::engine::general_purpose::STANDARD.encode(key));
        needles.push(hex(key));
    }
    needles.extend(key_needles);
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
