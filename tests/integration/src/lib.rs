//! Test support: throwaway PostgreSQL clusters on 127.0.0.1 and helpers to
//! load the fixtures and run the migration scripts with psql, as a DBA would.
//!
//! Clusters come from `scripts/pg-cluster.sh` (the same script the demo and
//! pg_regress use) and are stopped when the [`Cluster`] is dropped. The
//! extension must be installed (`make install`; `make test` does it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use postgres::{Client, NoTls};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    /// The bootstrap superuser every helper connects as: `postgres`, or
    /// `supabase_admin` in the Supabase layout ([`Cluster::start_supabase`]).
    pub superuser: &'static str,
    /// `PGOPTIONS` for the psql runs ([`Cluster::set_session_options`]).
    session_options: Option<String>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Starts a new cluster; `conf` entries are `name=value` lines for postgresql.conf.
    pub fn start<S: AsRef<str>>(conf: &[S]) -> Cluster {
        Cluster::start_as("postgres", conf)
    }

    /// Starts a new cluster whose bootstrap superuser is `superuser`.
    fn start_as<S: AsRef<str>>(superuser: &'static str, conf: &[S]) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "hrm-it-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(repo().join("scripts/pg-cluster.sh"))
            .env("PG_SUPERUSER", superuser)
            .arg("start")
            .arg(&dir)
            .args(conf.iter().map(|c| c.as_ref()))
            .output()
            .expect("run pg-cluster.sh");
        assert!(
            out.status.success(),
            "cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("port");
        Cluster {
            dir,
            port,
            superuser,
            session_options: None,
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={db}",
            self.port, self.superuser
        )
    }

    pub fn connect(&self, db: &str) -> Client {
        Client::connect(&self.url(db), NoTls).expect("connect")
    }

    /// Connects as `user` (a LOGIN role without password; the cluster trusts loopback).
    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        let url = format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port);
        Client::connect(&url, NoTls).expect("connect as user")
    }

    /// Runs a SQL file with psql as a DBA would: ON_ERROR_STOP, no psqlrc.
    pub fn psql_file(&self, db: &str, file: &Path, vars: &[(&str, &str)]) -> Output {
        self.psql_file_as(db, self.superuser, file, vars)
    }

    /// Like [`Cluster::psql_file`], connected as `user`.
    pub fn psql_file_as(&self, db: &str, user: &str, file: &Path, vars: &[(&str, &str)]) -> Output {
        let url = format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port);
        let mut cmd = Command::new("psql");
        cmd.arg(url)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file);
        for (k, v) in vars {
            cmd.arg("-v").arg(format!("{k}={v}"));
        }
        if let Some(options) = &self.session_options {
            cmd.env("PGOPTIONS", options);
        }
        cmd.output().expect("run psql")
    }

    /// Server options (`PGOPTIONS`, e.g. `-c search_path=...`) for every
    /// psql this cluster runs from now on; `None` for the defaults.
    pub fn set_session_options(&mut self, options: Option<&str>) {
        self.session_options = options.map(str::to_string);
    }

    /// Like [`Cluster::psql_file`] but panics, with psql's output, on failure.
    pub fn psql_ok(&self, db: &str, file: &Path, vars: &[(&str, &str)]) -> String {
        self.psql_as_ok(db, self.superuser, file, vars)
    }

    /// Creates `db` with the pre-migration fixture at `scale` and the
    /// extension in schema `extensions` (the Supabase layout).
    pub fn fixture_db(&self, db: &str, scale: u32) {
        self.fixture_db_in(db, scale, "extensions")
    }

    /// Like [`Cluster::fixture_db`], with the extension in `schema`.
    pub fn fixture_db_in(&self, db: &str, scale: u32, schema: &str) {
        let mut c = self.connect("postgres");
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        self.psql_ok(db, &repo().join("tests/fixtures/schema.sql"), &[]);
        self.psql_ok(
            db,
            &repo().join("tests/fixtures/generate.sql"),
            &[("scale", &scale.to_string())],
        );
        let mut c = self.connect(db);
        c.batch_execute(&format!("CREATE EXTENSION hr_migrations SCHEMA {schema}"))
            .unwrap();
        c.batch_execute(&format!(
            "ALTER DATABASE {db} SET search_path = public, extensions"
        ))
        .unwrap();
    }

    /// A cluster with the role layout of Supabase's image: bootstrap
    /// superuser `supabase_admin`; `postgres` comes with [`Cluster::supabase_db`].
    pub fn start_supabase<S: AsRef<str>>(conf: &[S]) -> Cluster {
        Cluster::start_as("supabase_admin", conf)
    }

    /// Builds database `db` as Supabase's image does
    /// (tests/fixtures/supabase/README.md): the application's tables at
    /// `scale`, owned by `postgres`, which is then demoted to a
    /// non-superuser that owns `public`, `extensions` and the database.
    /// The extension is not created: that is the platform step.
    pub fn supabase_db(&self, db: &str, scale: u32) {
        assert_eq!(self.superuser, "supabase_admin", "start_supabase first");
        let fixtures = repo().join("tests/fixtures");
        // One such database per cluster: roles.sql creates the role postgres.
        self.psql_ok(
            "postgres",
            &fixtures.join("supabase/roles.sql"),
            &[("db", db)],
        );
        let mut c = self.connect_as(db, "postgres");
        c.batch_execute(
            "ALTER SCHEMA public OWNER TO postgres; CREATE SCHEMA IF NOT EXISTS extensions",
        )
        .unwrap();
        drop(c);
        self.psql_as_ok(db, "postgres", &fixtures.join("schema.sql"), &[]);
        self.psql_as_ok(
            db,
            "postgres",
            &fixtures.join("generate.sql"),
            &[("scale", &scale.to_string())],
        );
        self.psql_ok(db, &fixtures.join("supabase/layout.sql"), &[]);
    }

    /// Like [`Cluster::psql_file_as`] but panics, with psql's output, on failure.
    pub fn psql_as_ok(&self, db: &str, user: &str, file: &Path, vars: &[(&str, &str)]) -> String {
        let out = self.psql_file_as(db, user, file, vars);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "psql -f {} as {user} failed:\n{text}",
            file.display()
        );
        text
    }

    /// The server log so far (for log-hygiene assertions).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs one SQL string with psql (so NOTICEs are captured): success and
    /// everything psql printed.
    pub fn psql_c(&self, db: &str, sql: &str) -> (bool, String) {
        let out = Command::new("psql")
            .arg(self.url(db))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `pg_dump -Fc` of database `db` as the superuser into `path`; panics
    /// with pg_dump's stderr when it fails.
    pub fn dump(&self, db: &str, path: &Path) {
        let out = Command::new("pg_dump")
            .arg(self.url(db))
            .args(["-Fc", "-f"])
            .arg(path)
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_restore --exit-on-error` of `path` into database `db`, created
    /// here; panics with pg_restore's stderr when it fails.
    pub fn restore(&self, db: &str, path: &Path) {
        self.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let out = Command::new("pg_restore")
            .args(["-d", &self.url(db), "--exit-on-error"])
            .arg(path)
            .output()
            .expect("run pg_restore");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The data directory's postmaster pid file says the server is up and
    /// accepts connections again (after a crash), within `secs`.
    pub fn wait_until_up(&self, db: &str, secs: u64) -> Client {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            match Client::connect(&self.url(db), NoTls) {
                // Accepted and able to answer (not a connection the
                // postmaster is about to end after a crash).
                Ok(mut c) => {
                    if c.simple_query("SELECT 1").is_ok() {
                        return c;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "server did not come back: connections are ended"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => panic!("server did not come back: {e}"),
            }
        }
    }

    /// Applies a migration script from sql/migrations.
    pub fn migrate(&self, db: &str, script: &str, vars: &[(&str, &str)]) -> String {
        self.psql_ok(db, &repo().join("sql/migrations").join(script), vars)
    }

    /// Applies a migration script from sql/migrations with server options
    /// (`PGOPTIONS`, e.g. `-c hr_migrations.batch_size=50`) for its session.
    pub fn migrate_with(&self, db: &str, script: &str, options: &str) -> String {
        let url = format!(
            "host=127.0.0.1 port={} user={} dbname={db}",
            self.port, self.superuser
        );
        let file = repo().join("sql/migrations").join(script);
        let out = Command::new("psql")
            .arg(url)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&file)
            .env("PGOPTIONS", options)
            .output()
            .expect("run psql");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "psql -f {}:\n{text}", file.display());
        text
    }
}

impl Cluster {
    /// The cluster's directory (data/, server.log, sock/).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `pg_ctl stop -m immediate`: every process exits at once, without a
    /// checkpoint; the next start replays the WAL (a crash, as far as the
    /// database can tell).
    pub fn stop_immediate(&self) {
        let out = as_postgres(
            &["/usr/lib/postgresql/15/bin/pg_ctl", "-D"],
            &self.dir.join("data"),
        )
        .args(["-m", "immediate", "-w", "stop"])
        .output()
        .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stopped cluster again (crash recovery if it was stopped
    /// immediately), on a new free port.
    pub fn start_again(&mut self) {
        let out = Command::new(repo().join("scripts/pg-cluster.sh"))
            .arg("start")
            .arg(&self.dir)
            .output()
            .expect("run pg-cluster.sh");
        assert!(
            out.status.success(),
            "cluster did not start again: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("port");
    }

    /// A streaming standby of this cluster on 127.0.0.1, made by
    /// `pg_basebackup -R` (hot standby, its own port and socket directory);
    /// `conf` lines are added to its postgresql.conf.
    pub fn standby<S: AsRef<str>>(&self, conf: &[S]) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "hrm-it-{}-{}-standby",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        chown_postgres(&dir);
        let out = as_postgres(
            &["/usr/lib/postgresql/15/bin/pg_basebackup", "-D"],
            &dir.join("data"),
        )
        .args([
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            "127.0.0.1",
            "-U",
            self.superuser,
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .output()
        .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut extra = format!(
            "\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.join("sock").display()
        );
        for c in conf {
            let (k, v) = c.as_ref().split_once('=').expect("name=value");
            extra.push_str(&format!("{k} = '{v}'\n"));
        }
        let conf_path = dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&extra);
        std::fs::write(&conf_path, text).unwrap();
        chown_postgres(&dir);
        let mut standby = Cluster {
            dir,
            port: 0,
            superuser: self.superuser,
            session_options: None,
        };
        standby.start_again();
        standby
    }

    /// `pg_ctl promote`: the standby becomes a primary; waits until it accepts writes.
    pub fn promote(&self) {
        let out = as_postgres(
            &["/usr/lib/postgresql/15/bin/pg_ctl", "-D"],
            &self.dir.join("data"),
        )
        .args(["-w", "promote"])
        .output()
        .expect("run pg_ctl promote");
        assert!(
            out.status.success(),
            "pg_ctl promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A command run as the `postgres` OS user when we are root, with `path`
/// appended to `args`.
fn as_postgres(args: &[&str], path: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.arg(path);
    cmd
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(path)
            .status();
    }
}

/// The pid of the backend serving `application_name`, once it shows up.
pub fn backend_pid(c: &mut Client, application_name: &str, secs: u64) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(r) = c
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 LIMIT 1",
                &[&application_name],
            )
            .unwrap()
        {
            return r.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backend with application_name {application_name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `kill -9` of one process (a backend: the postmaster then restarts every
/// backend and replays the WAL).
pub fn kill_9(pid: i32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -9 {pid}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/pg-cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One row of `hr_migration_status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: String,
    pub total: i64,
    pub migrated: i64,
    pub pending: i64,
    pub blocked: i64,
    pub note: String,
}

/// The status of one migration.
pub fn status(c: &mut Client, migration: &str) -> Status {
    let r = c
        .query_one(
            "SELECT phase, total, migrated, pending, blocked, note \
             FROM hr_migration_status() WHERE migration = $1",
            &[&migration],
        )
        .unwrap();
    Status {
        phase: r.get(0),
        total: r.get(1),
        migrated: r.get(2),
        pending: r.get(3),
        blocked: r.get(4),
        note: r.get(5),
    }
}

/// The SQLSTATE of a database error ("" when it is not one).
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Every text of a database error a client or log could show: message,
/// detail, hint and context.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{} | {} | {} | {}",
            d.message(),
            d.detail().unwrap_or(""),
            d.hint().unwrap_or(""),
            d.where_().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

/// Runs `sql`, which must fail with `sqlstate`; no text of the error may
/// contain any of `must_not_echo`. Returns the error's text.
pub fn assert_raises(c: &mut Client, sql: &str, sqlstate_: &str, must_not_echo: &[&str]) -> String {
    let e = c
        .batch_execute(sql)
        .expect_err(&format!("expected SQLSTATE {sqlstate_} from: {sql}"));
    let text = error_text(&e);
    assert_eq!(sqlstate(&e), sqlstate_, "{sql}: {text}");
    for s in must_not_echo {
        assert!(!text.contains(s), "the error of {sql} echoes {s:?}: {text}");
    }
    text
}

/// One value of a one-row, one-column query.
pub fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| {
            panic!(
                "{sql}: {}",
                e.as_db_error().map_or(e.to_string(), |d| d.to_string())
            )
        })
        .get(0)
}

/// Debian's pgbouncer in transaction pooling mode in front of a cluster, on
/// 127.0.0.1, with one server connection per database/user pair, so every
/// client transaction is served by the same backend in turn.
pub struct Bouncer {
    dir: PathBuf,
    pub port: u16,
}

impl Bouncer {
    pub fn start(cluster: &Cluster, db: &str, users: &[&str]) -> Bouncer {
        let dir = std::env::temp_dir().join(format!(
            "hrm-bouncer-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(dir.join("userlist.txt"), userlist).unwrap();
        let ini = format!(
            "[databases]\n{db} = host=127.0.0.1 port={pg} dbname={db}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            pg = cluster.port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        chown_postgres(&dir);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbouncer"]);
            c
        } else {
            Command::new("pgbouncer")
        };
        let st = cmd
            .arg("-d")
            .arg(dir.join("pgbouncer.ini"))
            .status()
            .expect("run pgbouncer");
        assert!(st.success(), "pgbouncer did not start");
        // Wait until it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Bouncer { dir, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("pgbouncer is not listening on {port}");
    }

    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        let url = format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port);
        Client::connect(&url, NoTls).expect("connect through pgbouncer")
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A keyring file readable only by the server's OS user (mode 0400), with
/// the given versions and keys; returns its path. Keys are never logged.
pub fn write_keyring(keys: &[(u32, [u8; 32])]) -> PathBuf {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!(
        "hrm-keyring-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyring");
    let mut text = String::from("# hr_migrations keyring (test)\n");
    for (v, k) in keys {
        text.push_str(&format!(
            "{v} {}\n",
            base64::engine::general_purpose::STANDARD.encode(k)
        ));
    }
    std::fs::write(&path, text).unwrap();
    chown_postgres(&dir);
    let _ = Command::new("chmod").args(["0400"]).arg(&path).status();
    let _ = Command::new("chmod").args(["0755"]).arg(&dir).status();
    path
}

/// 32 bytes from the OS.
pub fn random_key() -> [u8; 32] {
    use std::io::Read;
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut k)
        .unwrap();
    k
}

/// postgresql.conf lines that point the extension at a keyring.
pub fn keyring_conf(path: &Path, active: u32) -> Vec<String> {
    vec![
        format!("hr_migrations.keyring_file={}", path.display()),
        format!("hr_migrations.active_key_version={active}"),
    ]
}

/// The registered migrations and their scripts, in order, from the
/// registry (the one place that lists them).
pub fn migrations(c: &mut Client) -> Vec<(String, String)> {
    c.query(
        "SELECT migration, hr_migrations.hr_migration_script(migration) FROM hr_migrations.hr_migration_registry ORDER BY position",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

impl Cluster {
    /// Applies every forward script of sql/migrations, in order.
    pub fn migrate_all(&self, db: &str) {
        let mut c = self.connect(db);
        for (_, script) in migrations(&mut c) {
            self.migrate(db, &script, &[]);
        }
    }
}

/// Asserts every migration is `migrated` with nothing pending or blocked.
pub fn assert_all_migrated(c: &mut Client) {
    for (m, _) in migrations(c) {
        let Status {
            phase,
            pending,
            blocked,
            ..
        } = status(c, &m);
        assert_eq!(
            (phase.as_str(), pending, blocked),
            ("migrated", 0, 0),
            "{m}"
        );
    }
}

/// The (rows, milliseconds) of every "batch N done, R rows in M ms" NOTICE
/// the batch engine printed, in order.
pub fn batch_timings(psql_output: &str) -> Vec<(i64, f64)> {
    psql_output
        .lines()
        .filter_map(|l| {
            let rest = l.split(" done, ").nth(1)?;
            let mut w = rest.split_whitespace();
            let rows: i64 = w.next()?.parse().ok()?;
            let _ = w.next(); // "rows"
            let _ = w.next(); // "in"
            let ms: f64 = w.next()?.parse().ok()?;
            Some((rows, ms))
        })
        .collect()
}

/// The row count of the engine's "finished: N rows" NOTICE.
pub fn rows_finished(psql_output: &str) -> Option<i64> {
    let l = psql_output
        .lines()
        .rev()
        .find(|l| l.contains(": finished: "))?;
    l.split(": finished: ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The extension's version, from the repository's Cargo.toml (what `make
/// install` installs as the default version).
pub fn extension_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version in Cargo.toml")
        .to_string()
}

/// Supabase's layout (tests/fixtures/supabase/README.md) with database
/// "hr" at `scale`, keyring versions 1 and 2 (1 active), the library
/// preloaded, and the platform's one-time step done: `CREATE EXTENSION
/// hr_migrations SCHEMA extensions; GRANT hr_migrations_admin TO postgres`.
/// Sessions whose candidate has no organization (which would keep
/// migration 2 in dual) are deleted, as the application's admin would.
pub fn supabase_platform(scale: u32, extra_conf: &[&str]) -> Cluster {
    let keyring = write_keyring(&[(1, random_key()), (2, random_key())]);
    let mut conf = keyring_conf(&keyring, 1);
    conf.push("shared_preload_libraries=hr_migrations".into());
    conf.extend(extra_conf.iter().map(|s| s.to_string()));
    let cl = Cluster::start_supabase(&conf);
    cl.supabase_db("hr", scale);
    cl.connect("hr")
        .batch_execute(
            "CREATE EXTENSION hr_migrations SCHEMA extensions;
             GRANT hr_migrations_admin TO postgres;",
        )
        .unwrap();
    cl.connect_as("hr", "postgres")
        .batch_execute(
            "DELETE FROM public.hr_candidate_portal_sessions s
              WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                                 WHERE c.id = s.candidate_id AND c.organization_id IS NOT NULL)",
        )
        .unwrap();
    cl
}

/// The Supabase CLI scripts/ensure-deps.sh installs (pinned).
pub fn supabase_cli() -> PathBuf {
    let p = repo().join(".tools/supabase/node_modules/.bin/supabase");
    assert!(
        p.exists(),
        "{} is missing: run scripts/ensure-deps.sh",
        p.display()
    );
    p
}

/// A Supabase project directory with the migration files, as `make
/// supabase-migrations DIR=...` puts them there.
pub fn supabase_project(dir: &Path) {
    let out = Command::new(repo().join("scripts/supabase-migrations.sh"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "supabase-migrations.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// `supabase migration up --db-url ...` in `project`, connected as
    /// `user`: success and everything the CLI printed.
    pub fn supabase_migration_up(&self, project: &Path, user: &str) -> (bool, String) {
        let out = Command::new(supabase_cli())
            .current_dir(project)
            .args(["migration", "up", "--db-url"])
            .arg(format!(
                "postgresql://{user}@127.0.0.1:{}/hr?sslmode=disable",
                self.port
            ))
            .output()
            .expect("run the Supabase CLI");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// The catalog definitions of what the migrations create on the
/// application's tables (columns, constraints, indexes, triggers,
/// policies, row level security), for "running it again changes nothing".
pub fn catalog_snapshot(c: &mut Client) -> Vec<String> {
    c.query(
        "WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind = 'r')
         SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           FROM pg_attribute a JOIN t ON t.oid = a.attrelid WHERE a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(k.oid) || ' ' || convalidated::text
           FROM pg_constraint k JOIN t ON t.oid = k.conrelid
         UNION ALL
         SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' ' || i.indisvalid::text
           FROM pg_index i JOIN t ON t.oid = i.indrelid
         UNION ALL
         SELECT 'trigger ' || pg_get_triggerdef(g.oid) || ' ' || g.tgenabled::text
           FROM pg_trigger g JOIN t ON t.oid = g.tgrelid WHERE NOT g.tgisinternal
         UNION ALL
         SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' ' || p.polcmd::text || ' '
                || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
           FROM pg_policy p JOIN t ON t.oid = p.polrelid
         UNION ALL
         SELECT 'rls ' || c.oid::regclass || ' ' || c.relrowsecurity::text FROM pg_class c JOIN t ON t.oid = c.oid
         UNION ALL
         SELECT 'acl ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, '') FROM pg_class c JOIN t ON t.oid = c.oid
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
