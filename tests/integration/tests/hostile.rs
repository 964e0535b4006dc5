//! Hostile input through every SQL function of the extension:
//! thousands of generated inputs (random text with control characters and
//! every kind of Unicode, base64 of every length, truncated, altered and
//! oversized envelopes, wrong versions, odd JSON, 1 MiB strings), on a real
//! server, as the superuser and as anon, authenticated and service_role.
//! No call may crash a backend, raise an internal error (XX000, which is
//! also what a Rust panic becomes) or an unspecific one (P0001), and no
//! error text (message, detail, hint, context) may quote the input.
//! Invalid UTF-8 never reaches a function: the server refuses it (22021).
//!
//! HRM_FUZZ_SEED=n repeats a run (the seed is printed).

use std::collections::BTreeMap;

use hr_migrations_it::*;
use postgres::types::ToSql;
use postgres::ToStatement;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(alphabet: &[u8], bytes: &[u8], pad: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Characters a hostile string is made of: printable ASCII, every control
/// character but NUL, quotes and JSON punctuation, and multi-byte UTF-8
/// (accents, CJK, emoji, the replacement character, bidi overrides,
/// zero-width, the last code point).
fn random_char(r: &mut Rng) -> char {
    const SPECIAL: &[char] = &[
        '\'',
        '"',
        '\\',
        '%',
        '{',
        '}',
        '[',
        ']',
        ':',
        ',',
        '.',
        '$',
        ';',
        '\u{7f}',
        'é',
        'ü',
        'ß',
        '東',
        '京',
        '🚀',
        '🔑',
        '\u{FFFD}',
        '\u{202E}',
        '\u{200B}',
        '\u{FEFF}',
        '\u{10FFFF}',
        '\u{0300}',
    ];
    match r.below(4) {
        0 => (0x20 + r.below(0x5f) as u8) as char,
        1 => (1 + r.below(31) as u8) as char,
        2 => SPECIAL[r.below(SPECIAL.len())],
        _ => B64URL[r.below(B64URL.len())] as char,
    }
}

fn random_text(r: &mut Rng, max: usize) -> String {
    let n = if r.below(5) == 0 {
        r.below(max)
    } else {
        r.below(48)
    };
    (0..n).map(|_| random_char(r)).collect()
}

/// The generated inputs, each with a label for failure messages.
fn inputs(r: &mut Rng, real_hash: &str, real_envelope: &str, org: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    for i in 0..1500 {
        v.push((format!("random text #{i}"), random_text(r, 400)));
    }
    for n in 0..=100 {
        let bytes = r.bytes(n);
        v.push((format!("base64 of {n} bytes"), b64(B64, &bytes, true)));
        v.push((
            format!("base64url of {n} bytes"),
            b64(B64URL, &bytes, false),
        ));
    }
    for n in [0, 1, 47, 48, 49, 63, 64, 65, 128] {
        let s: String = (0..n).map(|_| B64[r.below(64)] as char).collect();
        v.push((format!("hash-shaped, {n} characters"), s));
    }
    for cut in 0..real_hash.len() {
        v.push((
            format!("real hash cut at {cut}"),
            real_hash[..cut].to_string(),
        ));
    }
    for pos in (0..real_hash.len()).step_by(3) {
        let mut h = real_hash.as_bytes().to_vec();
        h[pos] = if h[pos] == b'A' { b'B' } else { b'A' };
        v.push((
            format!("real hash altered at {pos}"),
            String::from_utf8(h).unwrap(),
        ));
    }
    let versions = [
        "0",
        "1",
        "2",
        "01",
        "4294967295",
        "4294967296",
        "2147483648",
        "99999999999999999999",
        "-1",
        "+1",
        " 1",
        "1 ",
        "a",
        "",
        "１",
    ];
    for ver in versions {
        for len in [0, 1, 10, 27, 28, 29, 38, 60, 200] {
            let body = b64(B64URL, &r.bytes(len), false);
            v.push((
                format!("envelope v{ver:?}, {len} bytes"),
                format!("hrc1.{ver}.{body}"),
            ));
        }
    }
    for cut in 0..real_envelope.len() {
        v.push((
            format!("real envelope cut at {cut}"),
            real_envelope[..cut].to_string(),
        ));
    }
    for pos in (0..real_envelope.len()).step_by(5) {
        let mut e = real_envelope.as_bytes().to_vec();
        e[pos] = if e[pos] == b'A' { b'B' } else { b'A' };
        v.push((
            format!("real envelope altered at {pos}"),
            String::from_utf8(e).unwrap(),
        ));
    }
    for (label, e) in [
        (
            "envelope with hrc2",
            real_envelope.replacen("hrc1.", "hrc2.", 1),
        ),
        (
            "envelope upper-case",
            real_envelope.replacen("hrc1.", "HRC1.", 1),
        ),
        (
            "envelope with an extra part",
            format!("{real_envelope}.AAAA"),
        ),
        ("envelope padded", format!("{real_envelope}==")),
        ("envelope with spaces", format!(" {real_envelope} ")),
        ("envelope with a newline", format!("{real_envelope}\n")),
        (
            "envelope with standard base64",
            real_envelope.replace('-', "+").replace('_', "/"),
        ),
        (
            "envelope of 1 MiB",
            format!("hrc1.1.{}", "A".repeat(1 << 20)),
        ),
    ] {
        v.push((label.to_string(), e));
    }
    let deep_array = format!("{}{}", "[".repeat(20000), "]".repeat(20000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    let many_keys = format!(
        "{{{}}}",
        (0..10000)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let json: Vec<String> = vec![
        "{}".into(),
        "[]".into(),
        "null".into(),
        "true".into(),
        "1".into(),
        "\"s\"".into(),
        "{\"organization_id\": null}".into(),
        "{\"organization_id\": 1}".into(),
        "{\"organization_id\": 1e999999}".into(),
        "{\"organization_id\": \"x\"}".into(),
        format!("{{\"organization_id\": \"{org}\"}}"),
        format!("{{\"organization_id\": \"{}\"}}", org.to_uppercase()),
        format!("{{\"organization_id\": \"{{{org}}}\"}}"),
        format!("{{\"organization_id\": \"{}\"}}", org.replace('-', "")),
        format!("{{\"organization_id\": [\"{org}\"]}}"),
        format!("{{\"organization_id\": {{\"id\": \"{org}\"}}}}"),
        format!("{{\"organization_id\": \"{org}\", \"organization_id\": \"00000000-0000-0000-0000-000000000000\"}}"),
        format!("{{\"organization_id\": \" {org}\"}}"),
        format!("{{\"organization_id\": \"{org}\\u0000\"}}"),
        "{\"organization_id\": \"\\ud800\"}".into(),
        "{\"organization_id\": \"\\u0000\"}".into(),
        format!("\u{FEFF}{{\"organization_id\": \"{org}\"}}"),
        format!("{{\"organization_id\": \"{org}\"}} trailing"),
        "/* comment */ {}".into(),
        "{'organization_id': 'x'}".into(),
        "{\"a\": NaN}".into(),
        "{\"a\": Infinity}".into(),
        "{\"a\": -0}".into(),
        format!("{{\"organization_id\": \"{}\"}}", "x".repeat(1 << 20)),
        deep_array,
        deep_object,
        many_keys,
        "{\"api_key\": \"k\", \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        "{\"api_key\": \"k\"}".into(),
        "{\"api_key\": \"k\", \"api_secret\": null, \"refresh_token\": \"r\", \"extra\": 1}".into(),
        "{\"api_key\": 1, \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        "{\"api_key\": [\"k\"], \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        "{\"api_key\": {\"k\": 1}, \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        "{\"api_key\": \"k\", \"api_key\": \"k2\", \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        "{\"api_key\": null, \"api_secret\": null, \"refresh_token\": null}".into(),
        "{\"api_key\": \"\\u0000\", \"api_secret\": null, \"refresh_token\": \"r\"}".into(),
        format!("{{\"api_key\": \"{}\", \"api_secret\": null, \"refresh_token\": \"r\"}}", "k".repeat(1 << 20)),
        "{\"api_key\": \"k\", \"api_secret\": null, \"refresh_token\": \"r\"".into(),
    ];
    for (i, j) in json.into_iter().enumerate() {
        v.push((format!("JSON #{i}"), j));
    }
    v.push(("1 MiB of a".into(), "a".repeat(1 << 20)));
    v.push(("1 MiB of é".into(), "é".repeat(1 << 19)));
    v.push((
        "1 MiB of base64url".into(),
        b64(B64URL, &r.bytes(786_432), false),
    ));
    v.push(("empty".into(), String::new()));
    v
}

/// What a core statement's parameter is bound to.
#[derive(Clone, Copy)]
enum Arg {
    Input,
    Hash,
    Envelope,
    Reference,
    Integration,
}

/// Tallies of one run.
#[derive(Default)]
struct Tally {
    calls: u64,
    ok: u64,
    by_state: BTreeMap<String, u64>,
    /// Distinct violations (by SQLSTATE and message), with one example each.
    failures: BTreeMap<String, String>,
    /// One example of each SQLSTATE (printed with HRM_FUZZ_VERBOSE=1).
    examples: BTreeMap<String, String>,
}

/// Checks one call's outcome; panics on a crash, an internal or unspecific
/// error, or an error that quotes the input.
fn check(tally: &mut Tally, r: Result<(), postgres::Error>, what: &str, input: &str) {
    tally.calls += 1;
    let e = match r {
        Ok(()) => {
            tally.ok += 1;
            return;
        }
        Err(e) => e,
    };
    let Some(db) = e.as_db_error() else {
        panic!("{what}: the connection failed (a backend crash?): {e}");
    };
    let code = db.code().code().to_string();
    let text = error_text(&e);
    if matches!(code.as_str(), "XX000" | "XX001" | "XX002" | "P0001") || text.contains("panicked") {
        tally
            .failures
            .entry(format!("{code} {}", db.message()))
            .or_insert_with(|| format!("{what}: internal or unspecific error {code}: {text}"));
    }
    let chars: Vec<char> = input.chars().collect();
    if chars.len() >= 10 && !input.trim().is_empty() {
        // The whole input, or for long ones a slice of its middle (a
        // message quoting a prefix or a cut of it is caught too).
        let probe: String = if chars.len() > 200 {
            chars[chars.len() / 2 - 8..chars.len() / 2 + 8]
                .iter()
                .collect()
        } else {
            input.to_string()
        };
        if text.contains(&probe) {
            let key: String = db.message().chars().take(40).collect();
            tally
                .failures
                .entry(format!("{code} {key}"))
                .or_insert_with(|| format!("{what}: the error quotes the input: {code} {text}"));
        }
    }
    tally
        .examples
        .entry(code.clone())
        .or_insert_with(|| format!("{what}: {}", db.message()));
    *tally.by_state.entry(code).or_default() += 1;
}

/// Runs `sql` with `params`; rolled back when `rollback` (side effects).
fn call<T: ?Sized + ToStatement>(
    c: &mut Client,
    sql: &T,
    params: &[&(dyn ToSql + Sync)],
    rollback: bool,
) -> Result<(), postgres::Error> {
    if rollback {
        let mut tx = c.transaction()?;
        let r = tx.query(sql, params).map(|_| ());
        let _ = tx.rollback();
        r
    } else {
        c.query(sql, params).map(|_| ())
    }
}

/// A default argument of `ty` for the generic sweep; None = the hostile text.
fn default_arg(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "text" => return None,
        "uuid" => "gen_random_uuid()",
        "uuid[]" => "ARRAY[gen_random_uuid()]",
        "integer" => "1000",
        "bigint" => "0",
        "boolean" => "false",
        "double precision" => "0",
        "regclass" => "'public.hr_references'::regclass",
        "regclass[]" => "ARRAY['public.hr_references'::regclass]",
        "oid" => "0",
        "tid" => "'(0,1)'::tid",
        "oid[]" => "ARRAY[]::oid[]",
        "text[]" => "ARRAY['service_role']",
        "aclitem[]" => "NULL::aclitem[]",
        "jsonb" => "'{}'::jsonb",
        other => panic!("no default for argument type {other}: extend default_arg"),
    })
}

#[test]
fn hostile_input_through_every_function_as_every_role() {
    let path = write_keyring(&[(1, random_key())]);
    let cl = Cluster::start(&keyring_conf(&path, 1));
    cl.fixture_db("hr", 300);
    cl.migrate_all("hr");
    let mut c = cl.connect("hr");
    let seed: u64 = std::env::var("HRM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e55_c0ff_ee11);
    eprintln!("hostile: HRM_FUZZ_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let real_hash: String = one(&mut c, "SELECT hr_hash_token('a real token')");
    let real_envelope: String = one(
        &mut c,
        "SELECT hr_encrypt_credential(repeat('s', 200), 'aad')",
    );
    let org: String = one(
        &mut c,
        "SELECT organization_id::text FROM public.hr_job_board_integrations LIMIT 1",
    );
    let reference: String = one(&mut c, "SELECT id::text FROM public.hr_references LIMIT 1");
    let integration: String = one(
        &mut c,
        "SELECT id::text FROM public.hr_job_board_integrations LIMIT 1",
    );
    let inputs = inputs(&mut rng, &real_hash, &real_envelope, &org);

    // The functions and their argument types, from the catalog.
    let functions: Vec<(String, Vec<String>)> = c
        .query(
            "SELECT p.proname::text, coalesce(array_agg(format_type(t.oid, NULL) ORDER BY a.n) FILTER (WHERE t.oid IS NOT NULL), '{}')
               FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
               LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n) ON true
               LEFT JOIN pg_type t ON t.oid = a.t
              WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e' AND p.prokind = 'f'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hr_migrations')
              GROUP BY p.oid, p.proname ORDER BY p.proname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(functions.len() > 50, "{} functions", functions.len());

    let mut tally = Tally::default();
    let mut claims_ok = 0u64;
    for role in ["postgres", "service_role", "authenticated", "anon"] {
        let mut c = cl.connect("hr");
        c.batch_execute(&format!("SET ROLE {role}")).unwrap();
        // The parsers, with every input: (statement, its parameters, rolled back).
        use Arg::*;
        let core: [(&str, &[Arg], bool); 9] = [
            ("SELECT hr_hash_token($1)", &[Input], false),
            ("SELECT hr_verify_token($1, $2)", &[Input, Hash], false),
            (
                "SELECT hr_verify_token('a real token', $1)",
                &[Input],
                false,
            ),
            ("SELECT hr_decrypt_credential($1, 'aad')", &[Input], false),
            (
                "SELECT hr_decrypt_credential($1, $2)",
                &[Envelope, Input],
                false,
            ),
            (
                "SELECT hr_migrations.hr_envelope_key_version($1)",
                &[Input],
                false,
            ),
            ("SELECT hr_encrypt_credential($1, $1)", &[Input], false),
            (
                "SELECT hr_verify_reference_token($1::text::uuid, $2)",
                &[Reference, Input],
                true,
            ),
            (
                "SELECT hr_set_integration_secret($1::text::uuid, $2)",
                &[Integration, Input],
                true,
            ),
        ];
        let statements: Vec<_> = core
            .iter()
            .map(|(q, a, rb)| (c.prepare(q).unwrap(), *a, *rb, *q))
            .collect();
        for (label, input) in &inputs {
            for (st, args, rollback, q) in &statements {
                let params: Vec<&(dyn ToSql + Sync)> = args
                    .iter()
                    .map(|a| -> &(dyn ToSql + Sync) {
                        match a {
                            Input => input,
                            Hash => &real_hash,
                            Envelope => &real_envelope,
                            Reference => &reference,
                            Integration => &integration,
                        }
                    })
                    .collect();
                let r = call(&mut c, st, &params, *rollback);
                check(&mut tally, r, &format!("{role}: {q} with {label}"), input);
            }
            // Claims: whatever the request carries, never an error.
            let r = {
                let mut tx = c.transaction().unwrap();
                let r = tx
                    .query_one(
                        "SELECT set_config('request.jwt.claims', $1, true), hr_jwt_organization_id()::text",
                        &[input],
                    )
                    .map(|row| row.get::<_, Option<String>>(1));
                let _ = tx.rollback();
                r
            };
            match r {
                Ok(_) => claims_ok += 1,
                Err(e) if role == "anon" && sqlstate(&e) == "42501" => {}
                Err(e) => panic!(
                    "{role}: hr_jwt_organization_id() with claims {label}: {} {}",
                    sqlstate(&e),
                    error_text(&e)
                ),
            }
            tally.calls += 1;
        }
        // Every function, with a share of the inputs in each text argument.
        for (name, types) in &functions {
            let args: Vec<String> = types
                .iter()
                .map(|t| default_arg(t).map_or("$1".to_string(), |d| d.to_string()))
                .collect();
            let sql = format!("SELECT {name}({})", args.join(", "));
            let takes_text = types.iter().any(|t| t == "text");
            let sample: Vec<&(String, String)> = if takes_text {
                inputs.iter().step_by(23).collect()
            } else {
                inputs.iter().take(1).collect()
            };
            for (label, input) in sample {
                let params: Vec<&(dyn ToSql + Sync)> =
                    if takes_text { vec![input] } else { vec![] };
                let r = call(&mut c, &sql, &params, true);
                check(&mut tally, r, &format!("{role}: {sql} with {label}"), input);
            }
        }
    }

    // Hostile integers where a batch size or count is taken.
    let mut c = cl.connect("hr");
    for (name, types) in &functions {
        if !types.iter().any(|t| t == "integer") {
            continue;
        }
        for v in ["0", "-1", "-2147483648", "2147483647", "NULL"] {
            let args: Vec<String> = types
                .iter()
                .map(|t| match t.as_str() {
                    "integer" => format!("{v}::integer"),
                    "text" => "'reference_tokens'".to_string(),
                    t => default_arg(t).unwrap().to_string(),
                })
                .collect();
            let sql = format!("SELECT {name}({})", args.join(", "));
            let r = call(&mut c, &sql, &[], true);
            check(&mut tally, r, &sql, "");
        }
    }

    // Invalid UTF-8 is refused by the server before any function sees it.
    let invalid: [&[u8]; 7] = [
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
        b"ok\x80ok",
    ];
    for bytes in invalid {
        let e = c
            .query("SELECT hr_hash_token(convert_from($1, 'UTF8'))", &[&bytes])
            .expect_err("invalid UTF-8 accepted");
        assert_eq!(sqlstate(&e), "22021", "{bytes:?}: {}", error_text(&e));
        tally.calls += 1;
    }

    assert!(
        tally.failures.is_empty(),
        "{} kinds of violation:\n{}",
        tally.failures.len(),
        tally
            .failures
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    if std::env::var("HRM_FUZZ_VERBOSE").is_ok() {
        for (code, example) in &tally.examples {
            eprintln!("hostile: {code} e.g. {example}");
        }
    }
    let states: Vec<String> = tally
        .by_state
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    eprintln!(
        "hostile: {} inputs, {} calls through {} functions as 4 roles: {} succeeded, rejections by SQLSTATE {{{}}}, {claims_ok} claims parsed without error; no crash, no XX000, no input quoted",
        inputs.len(),
        tally.calls,
        functions.len(),
        tally.ok,
        states.join(", ")
    );
}
