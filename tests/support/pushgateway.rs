//! A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on a free loopback port,
//! in memory only, stopped when dropped. A test that needs it fails when it is not installed.
//! The demo (examples/demo.rs) starts one too.

// Shared with the demo, which uses only part of it.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/prometheus-pushgateway";

pub struct Pushgateway {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Pushgateway {
    /// Start one; panics (the test fails) when the package is not installed.
    #[track_caller]
    pub fn start() -> Pushgateway {
        assert!(
            Path::new(BINARY).is_file(),
            "{BINARY} is missing: this test needs a real Prometheus Pushgateway; install it with \
             `apt-get install prometheus-pushgateway` (as root; .ci/run does)"
        );
        Pushgateway::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start one on a free loopback port (tried five times: another process may take the port).
    pub fn try_start() -> Result<Pushgateway, String> {
        let dir = std::env::temp_dir();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let log = dir.join(format!(
                "douyin-order-sync-pushgateway-{}-{port}.log",
                std::process::id()
            ));
            let file =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let mut child = Command::new(BINARY)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // In memory only: the package's default file is shared by every instance.
                .arg("--persistence.file=")
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(file.try_clone().map_err(|e| e.to_string())?)
                .stderr(file)
                .spawn()
                .map_err(|e| format!("cannot start {BINARY}: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port was taken, try another
                }
                if get(port, "/-/ready").is_ok_and(|(code, _)| code == 200) {
                    return Ok(Pushgateway { child, port, log });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
        }
        Err(format!("the Pushgateway did not start: {last}"))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its /metrics page.
    #[track_caller]
    pub fn metrics(&self) -> String {
        self.try_metrics().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_metrics(&self) -> Result<String, String> {
        match get(self.port, "/metrics") {
            Ok((200, body)) => Ok(body),
            other => Err(format!("GET /metrics: {other:?}")),
        }
    }

    /// POST a text exposition under `path` (e.g. `/metrics/job/x`); the status and body.
    pub fn push(&self, path: &str, body: &str) -> (u16, String) {
        let result = ureq::post(&format!("{}{path}", self.url()))
            .set("Content-Type", "text/plain; version=0.0.4")
            .timeout(Duration::from_secs(10))
            .send_string(body);
        match result {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("cannot push to the Pushgateway: {e}"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    match ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
    {
        Ok(r) => {
            let code = r.status();
            let mut body = String::new();
            r.into_reader()
                .read_to_string(&mut body)
                .map_err(|e| e.to_string())?;
            Ok((code, body))
        }
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// The value of the sample `name` whose labels include all of `labels`, in a text exposition.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let rest = match l.strip_prefix(name) {
                Some(rest) => rest,
                None => return false,
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}
