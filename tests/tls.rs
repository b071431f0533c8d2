//! TLS to PostgreSQL end to end: every test starts its own throwaway PostgreSQL with TLS on (a
//! CA and a server certificate for `localhost` and 127.0.0.1 made with the `openssl` command),
//! then connects through the library (`Config::from_sources`, then `Store::connect`) and asks
//! the server whether the session is encrypted (`pg_stat_ssl`).
//!
//! The server's pg_hba.conf accepts TCP connections of the test role `app` only over TLS, so a
//! plain connection is refused; the harness itself (`postgres`) may still connect in plain text.

// A test fails by panicking: unwrap/expect is how it says which step went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

use douyin_order_sync::config::{Config, Sources};
use douyin_order_sync::error::Error;
use douyin_order_sync::error::Signal;
use douyin_order_sync::stop::Stop;
use douyin_order_sync::store::Store;
use pg::ThrowawayCluster;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The role the tests connect as: pg_hba.conf lets it in over TLS only.
const ROLE: &str = "app";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A CA, a server certificate signed by it, another CA that signed nothing the server has,
/// and the server's pg_hba.conf; the directory is removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        assert!(
            Command::new("openssl")
                .arg("version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "the `openssl` command is needed to make the test certificates (apt-get install openssl)"
        );
        let dir = std::env::temp_dir().join(format!(
            "douyin-order-sync-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        certs.make_ca("ca");
        certs.make_ca("other-ca");
        certs.openssl(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout server.key -out server.csr -subj /CN=localhost",
        );
        std::fs::write(
            certs.dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        certs.openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.crt",
        );
        // hostssl first: TLS connections of anyone; then the harness's own plain readiness
        // check (as postgres); then no plain TCP connection for anybody else.
        std::fs::write(
            certs.dir.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n\
             hostnossl all postgres 127.0.0.1/32 trust\n\
             host all all all reject\n\
             local all all trust\n",
        )
        .unwrap();
        certs.hand_to_the_server();
        certs
    }

    fn make_ca(&self, name: &str) {
        self.openssl(&format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.crt -days 2 -subj /CN=douyin-order-sync-test-{name} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
    }

    /// Runs `openssl` in the directory; `args` are split at white space.
    fn openssl(&self, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// PostgreSQL wants its key private (0600) and owned by the user it runs as: `postgres`
    /// when we are root (as pg.rs runs it), else us.
    fn hand_to_the_server(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown -R postgres {}", self.dir.display());
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway PostgreSQL with `ssl = on`, and the role [`ROLE`].
struct TlsServer {
    // Declared first so that the server stops before its certificates go.
    cluster: ThrowawayCluster,
    certs: Certs,
}

impl TlsServer {
    fn start() -> TlsServer {
        let certs = Certs::make();
        let path = |name: &str| certs.path(name).to_str().unwrap().to_string();
        let (cert, key, hba) = (path("server.crt"), path("server.key"), path("pg_hba.conf"));
        let cluster = ThrowawayCluster::start_with(&[
            ("ssl", "on"),
            ("ssl_cert_file", &cert),
            ("ssl_key_file", &key),
            ("hba_file", &hba),
        ])
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL with TLS: {e}"));
        create_role(cluster.url());
        TlsServer { cluster, certs }
    }

    /// DB_URL for [`ROLE`] at `host` with the given query (`sslmode=…&…`).
    fn db_url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://{ROLE}@{host}:{}/postgres?{query}",
            self.cluster.port()
        )
    }

    fn ca(&self) -> String {
        self.certs.path("ca.crt").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.certs.path("other-ca.crt").display().to_string()
    }
}

fn create_role(admin_url: &str) {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {ROLE} LOGIN"))
        .unwrap();
}

/// What the binary does with DB_URL: validate the configuration, then connect.
fn connect(db_url: &str) -> Result<Store, Error> {
    connect_with(db_url, &Stop::default())
}

fn connect_with(db_url: &str, stop: &Stop) -> Result<Store, Error> {
    let env: HashMap<String, String> = [
        ("DB_URL", db_url),
        ("APPID", "test-app"),
        ("AppSecret", "test-secret"),
        ("ACCOUNT_ID", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_sources(&Sources {
        env,
        ..Sources::default()
    })?;
    Store::connect(config.database(), stop)
}

#[track_caller]
fn connects_over_tls(db_url: &str) {
    let mut store = connect(db_url).unwrap_or_else(|e| panic!("{db_url}: {e}"));
    assert!(
        store.ssl_in_use().unwrap(),
        "{db_url}: connected without TLS"
    );
}

#[track_caller]
fn refused(db_url: &str) -> Error {
    match connect(db_url) {
        Ok(_) => panic!("{db_url}: connected, but should have been refused"),
        Err(e) => e,
    }
}

#[test]
fn sslmode_require_connects_over_tls_without_a_root_certificate() {
    let server = TlsServer::start();
    connects_over_tls(&server.db_url("127.0.0.1", "sslmode=require"));
}

#[test]
fn sslmode_prefer_uses_tls_when_the_server_offers_it_and_plain_text_over_a_unix_socket() {
    let server = TlsServer::start();
    connects_over_tls(&server.db_url("127.0.0.1", "sslmode=prefer"));
    // prefer is also what no sslmode means.
    connects_over_tls(&server.db_url("127.0.0.1", ""));
    // PostgreSQL offers no TLS over a Unix socket: prefer goes on in plain text there.
    let socket = format!(
        "postgres://{ROLE}@/postgres?host={}&port={}&sslmode=prefer",
        server.cluster.dir().display(),
        server.cluster.port()
    );
    let mut store = connect(&socket).unwrap_or_else(|e| panic!("{socket}: {e}"));
    assert!(!store.ssl_in_use().unwrap(), "{socket}");
}

#[test]
fn verify_full_with_the_servers_ca_as_sslrootcert_connects_to_127_0_0_1_and_to_localhost() {
    let server = TlsServer::start();
    let query = format!("sslmode=verify-full&sslrootcert={}", server.ca());
    connects_over_tls(&server.db_url("127.0.0.1", &query));
    connects_over_tls(&server.db_url("localhost", &query));
}

#[test]
fn verify_full_and_verify_ca_with_another_ca_are_refused_with_a_message_naming_the_certificate() {
    let server = TlsServer::start();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = server.db_url(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={}", server.other_ca()),
        );
        let error = refused(&url);
        let text = error.to_string();
        assert_eq!(error.exit_code(), 78, "{text}");
        assert!(text.contains("invalid peer certificate"), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains(&format!("sslmode={mode}")), "{text}");
        assert!(text.contains(&server.other_ca()), "{text}");
    }
}

#[test]
fn verify_ca_ignores_a_host_name_the_certificate_does_not_name_but_verify_full_refuses_it() {
    let server = TlsServer::start();
    // TCP goes to hostaddr; TLS checks the certificate against host.
    let query = |mode: &str| {
        format!(
            "sslmode={mode}&sslrootcert={}&hostaddr=127.0.0.1",
            server.ca()
        )
    };
    connects_over_tls(&server.db_url("db.invalid", &query("verify-ca")));
    let error = refused(&server.db_url("db.invalid", &query("verify-full")));
    let text = error.to_string();
    assert!(matches!(error.exit_code(), 75 | 78), "{text}");
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert!(text.contains("not valid for name \"db.invalid\""), "{text}");
}

#[test]
fn sslmode_disable_is_refused_by_a_server_that_accepts_only_tls() {
    let server = TlsServer::start();
    let error = refused(&server.db_url("127.0.0.1", "sslmode=disable"));
    let text = error.to_string();
    // pg_hba.conf's refusal is SQLSTATE 28000: a configuration error.
    assert_eq!(error.exit_code(), 78, "{text}");
    assert!(text.contains("no encryption"), "{text}");
    assert!(text.contains("sslmode=disable"), "{text}");
}

#[test]
fn an_unreadable_sslrootcert_is_a_configuration_error_naming_db_url_and_the_file() {
    // Decided before any connection: no server needed.
    let missing = std::env::temp_dir().join("douyin-order-sync-no-such-dir/missing.crt");
    let url = format!(
        "postgres://{ROLE}:pw@127.0.0.1:1/postgres?sslmode=verify-full&sslrootcert={}",
        missing.display()
    );
    let error = refused(&url);
    let text = error.to_string();
    assert_eq!(error.exit_code(), 78, "{text}");
    assert!(
        text.contains(&format!("DB_URL (postgres://{ROLE}:***@127.0.0.1:1/")),
        "{text}"
    );
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(!text.contains(":pw@"), "{text}");
}

#[test]
fn sslmode_prefer_falls_back_to_plain_text_and_require_fails_against_a_server_without_tls() {
    // The plain harness server: ssl is off, and pg_hba.conf trusts everyone on 127.0.0.1.
    let cluster = ThrowawayCluster::start().unwrap();
    let url = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}",
            cluster.port()
        )
    };
    let mut store = connect(&url("prefer")).unwrap();
    assert!(!store.ssl_in_use().unwrap());
    let error = refused(&url("require"));
    assert!(
        error.to_string().contains("server does not support TLS"),
        "{error}"
    );
    // It stays so until DB_URL or the server changes: configuration, not a passing failure.
    assert_eq!(error.exit_code(), 78, "{error}");
}

#[test]
fn a_signal_cancels_a_statement_waiting_on_a_lock_over_a_tls_only_connection() {
    let server = TlsServer::start();
    // The migration lock (src/store.rs), held by another session.
    const MIGRATION_LOCK: i64 = 0x646f_7573_796e_6301;
    let mut other = postgres::Client::connect(server.cluster.url(), postgres::NoTls).unwrap();
    other
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .unwrap();
    let stop = Stop::default();
    let url = server.db_url("127.0.0.1", "sslmode=require");
    let mut store = connect_with(&url, &stop).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(store.ssl_in_use().unwrap());
    let raiser = stop.clone();
    let signal = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        raiser.raise(Signal::Term);
        std::time::Instant::now()
    });
    let result = store.migrate();
    let ended = std::time::Instant::now();
    let raised = signal.join().unwrap();
    assert!(
        matches!(result, Err(Error::Interrupted(Signal::Term))),
        "{result:?}"
    );
    // The cancel request (over TLS, as the session) ended the wait, not the lock timeout.
    let took = ended.saturating_duration_since(raised);
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    // The session is usable again: the migration's transaction rolled back.
    assert!(store.is_alive());
    let tables: i64 = other
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'douyin_order_sync_migrations'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}
