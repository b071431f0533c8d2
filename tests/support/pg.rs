//! Throwaway PostgreSQL for the integration tests, the demo and the benchmark.
//!
//! * [`ThrowawayCluster`] runs a private PostgreSQL server (its own data
//!   directory in the temp dir, trust auth, loopback only, durability off)
//!   for as long as the value lives. `.ci/test` does the same in shell.
//! * [`TestDb`] creates a fresh database on the server named by
//!   `TEST_DATABASE_URL` and drops it again, so tests can run in parallel.
//!
//! Self-contained (std + the `postgres` crate only): it is included as
//! `mod pg;` from `tests/support/mod.rs` and by `#[path]` from the examples.

// Each includer (the test binaries, examples/demo.rs, examples/bench.rs) uses
// only part of this file, so whatever one of them leaves unused is not dead.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The variable that names the PostgreSQL server the tests create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A private PostgreSQL server, stopped and deleted on drop.
#[derive(Debug)]
pub struct ThrowawayCluster {
    /// Top directory: owned by `postgres` when we are root; holds `data/`,
    /// the server log and the Unix socket.
    dir: PathBuf,
    bin: PgBin,
    port: u16,
    url: String,
    stopped: bool,
}

impl ThrowawayCluster {
    /// Creates, starts and waits for a new cluster. The error is one line.
    pub fn start() -> Result<ThrowawayCluster, String> {
        ThrowawayCluster::start_with(&[])
    }

    /// Like [`ThrowawayCluster::start`], with extra server settings (`name`,
    /// `value` as in postgresql.conf, e.g. `("ssl", "on")`), appended to the
    /// cluster's postgresql.conf before the server starts. Files they name
    /// (`ssl_cert_file`, `hba_file`, …) must be readable by the user the
    /// server runs as (`postgres` when we are root). The harness itself
    /// connects as `postgres` over TCP without TLS: an `hba_file` must let it.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<ThrowawayCluster, String> {
        let bin = PgBin::find()?;
        let dir = unique_temp_path("douyin-order-sync-pg");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // From here on, an error drops `cluster`, which removes the directory.
        let mut cluster = ThrowawayCluster {
            dir,
            bin,
            port: 0,
            url: String::new(),
            stopped: true,
        };
        if cluster.bin.as_root {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "chown postgres {} failed ({}): {}",
                    cluster.dir.display(),
                    out.status,
                    tail(&String::from_utf8_lossy(&out.stderr), 3)
                ));
            }
        }
        let data = cluster.data_dir();
        let mut initdb = cluster.bin.command("initdb", &cluster.dir);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"]);
        run_quietly(&mut initdb, "initdb")?;
        cluster.append_settings(settings)?;

        // Another process may take the port between our probe and the
        // server's bind: retry with a new port a few times.
        let mut last_error = String::new();
        for _ in 0..4 {
            let port = free_port()?;
            match cluster.start_on(port) {
                Ok(()) => {
                    cluster.port = port;
                    cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                    cluster.stopped = false;
                    cluster.wait_for_connections()?;
                    return Ok(cluster);
                }
                Err(e) => {
                    let retry = e.contains("could not bind")
                        || e.contains("could not create any TCP/IP sockets")
                        || e.contains("Address already in use");
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Appends `settings` to postgresql.conf (a later line wins over initdb's).
    fn append_settings(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        if settings.is_empty() {
            return Ok(());
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut lines = String::from("\n# ThrowawayCluster::start_with\n");
        for (name, value) in settings {
            // postgresql.conf quotes like SQL: a quote is doubled.
            lines.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()))
            .map_err(|e| format!("cannot append settings to {}: {e}", conf.display()))
    }

    fn start_on(&self, port: u16) -> Result<(), String> {
        let log = self.log_file();
        // pg_ctl -l appends: keep only this attempt's lines.
        let _ = std::fs::remove_file(&log);
        // pg_ctl hands -o to a shell: quote the socket directory.
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k '{}' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.dir.display()
        );
        let mut pg_ctl = self.bin.command("pg_ctl", &self.dir);
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string()])
            .arg("-o")
            .arg(options)
            .arg("start");
        match run_quietly(&mut pg_ctl, "pg_ctl start") {
            Ok(()) => Ok(()),
            Err(e) => {
                // The server's own reason is in its log, not in pg_ctl's output.
                let log_tail = std::fs::read_to_string(&log)
                    .map(|l| tail(&l, 5))
                    .unwrap_or_default();
                // Make sure no half-started server survives the retry.
                self.stop_server("immediate");
                Err(format!(
                    "PostgreSQL did not start on 127.0.0.1:{port} ({e}); server log: {log_tail}"
                ))
            }
        }
    }

    fn wait_for_connections(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match postgres::Client::connect(&self.url, postgres::NoTls) {
                Ok(mut client) => match client.simple_query("SELECT 1") {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!("{} does not answer: {e}", self.url))
                    }
                    Err(_) => {}
                },
                Err(e) if Instant::now() >= deadline => {
                    let log_tail = std::fs::read_to_string(self.log_file())
                        .map(|l| tail(&l, 5))
                        .unwrap_or_default();
                    return Err(format!(
                        "PostgreSQL started but {} refuses connections: {e}; server log: {log_tail}",
                        self.url
                    ));
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory, the log and the socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Stops the server now (drop does this too). Errors are one line.
    pub fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut pg_ctl = self.bin.command("pg_ctl", &self.dir);
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run_quietly(&mut pg_ctl, "pg_ctl stop").inspect_err(|_| self.stop_server("immediate"))
    }

    fn stop_server(&self, mode: &str) {
        let mut pg_ctl = self.bin.command("pg_ctl", &self.dir);
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "30", "stop"]);
        let _ = run_quietly(&mut pg_ctl, "pg_ctl stop");
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: stopping the throwaway PostgreSQL: {e}");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

/// Where the PostgreSQL server programs are, and whether to run them as the
/// `postgres` user (initdb refuses to run as root).
#[derive(Debug, Clone)]
struct PgBin {
    /// Holds initdb, pg_ctl and postgres.
    dir: PathBuf,
    as_root: bool,
}

impl PgBin {
    fn find() -> Result<PgBin, String> {
        let as_root = running_as_root();
        if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if !dir.join("initdb").is_file() {
                return Err(format!("PG_BIN_DIR={} has no initdb", dir.display()));
            }
            return Ok(PgBin { dir, as_root });
        }
        // On PATH (resolved to the real directory, as `runuser` may reset PATH).
        if let Some(initdb) = find_on_path("initdb") {
            let dir = std::fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|d| d.join("pg_ctl").is_file());
            if let Some(dir) = dir {
                return Ok(PgBin { dir, as_root });
            }
        }
        // Debian keeps the server programs off PATH.
        let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let version: Option<Vec<u64>> =
                            name.split('.').map(|p| p.parse().ok()).collect();
                        let bin = e.path().join("bin");
                        match version {
                            Some(v) if bin.join("initdb").is_file() => Some((v, bin)),
                            _ => None,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Ok(PgBin { dir, as_root }),
            None => Err(
                "PostgreSQL server programs not found: no initdb/pg_ctl on PATH \
                         nor in /usr/lib/postgresql/*/bin (install the `postgresql` package)"
                    .to_string(),
            ),
        }
    }

    /// `program` (a PostgreSQL server tool), run as `postgres` when we are
    /// root, from `cwd` (a directory that user can enter).
    fn command(&self, program: &str, cwd: &Path) -> Command {
        let program = self.dir.join(program);
        let mut cmd = if self.as_root {
            // runuser lives in /usr/sbin, which a non-login PATH may lack.
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
                .into_iter()
                .find(|p| find_on_path("runuser").is_none() && Path::new(p).is_file())
                .unwrap_or("runuser");
            let mut cmd = Command::new(runuser);
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(cwd).stdin(Stdio::null());
        cmd
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `cmd` with its output captured; on failure, one line with the tail.
fn run_quietly(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what} ({cmd:?}): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(format!(
        "{what} failed ({}): {}",
        out.status,
        tail(&text, 5)
    ))
}

/// The last `n` non-empty lines of `text`, joined into one line.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the bound port: {e}"))
}

/// A path in the temp dir that no other process or thread will pick.
fn unique_temp_path(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A fresh database on the `TEST_DATABASE_URL` server, dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    admin_url: String,
    url: String,
}

impl TestDb {
    /// Creates the database; panics (with the reason) when it cannot.
    #[track_caller]
    pub fn new(name: &str) -> TestDb {
        let admin_url = match std::env::var(TEST_DATABASE_URL) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!(
                "TEST_DATABASE_URL is not set: run `bash .ci/test` (it starts a throwaway \
                 PostgreSQL), or point it at a server where this user may CREATE DATABASE"
            ),
        };
        let db_name = database_name(name);
        let url = with_dbname(&admin_url, &db_name);
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        // A database of that name can only be a leftover of a crashed run
        // whose pid we got again.
        let _ = admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&db_name)
        ));
        let create = format!("CREATE DATABASE {}", quote_ident(&db_name));
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&create) {
                Ok(()) => break,
                // "source database "template1" is being accessed by other
                // users": someone is briefly connected to template1.
                Err(e)
                    if attempt < 20 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create test database {db_name}: {e}"),
            }
        }
        TestDb {
            name: db_name,
            admin_url,
            url,
        }
    }

    /// The URL of this test's database (TEST_DATABASE_URL with its dbname).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this test's database.
    #[track_caller]
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to test database {}: {e}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ));
        }
    }
}

/// `t_<sanitised test name>_<pid>_<counter>`, at most 63 bytes (PostgreSQL's
/// identifier limit), only `[a-z0-9_]`.
pub fn database_name(test_name: &str) -> String {
    let mut clean = String::new();
    for c in test_name.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && (clean.is_empty() || clean.ends_with('_'))) {
            clean.push(c);
        }
    }
    let suffix = format!(
        "_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let room = 63 - "t_".len() - suffix.len();
    clean.truncate(room);
    let clean = clean.trim_end_matches('_');
    format!("t_{clean}{suffix}")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `url` with its database replaced by `dbname`. Handles URLs
/// (`postgres://user:pw@host:port/db?sslmode=…`, also a `dbname=` query
/// parameter) and key=value connection strings.
pub fn with_dbname(url: &str, dbname: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // key=value form: a later key wins.
        return format!("{} dbname={dbname}", url.trim_end());
    };
    let after_scheme = scheme_end + 3;
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (rest, fragment) = match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = match rest.find('?') {
        Some(i) => &rest[i + 1..],
        None => "",
    };
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("dbname="))
        .collect();
    let mut out = format!("{}{authority}/{dbname}", &url[..after_scheme]);
    if !params.is_empty() {
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out.push_str(fragment);
    out
}
