//! Shared helpers of the integration tests: a runner for the real binary
//! (after ripgrep's tests/util.rs), throwaway PostgreSQL databases ([`pg`])
//! and a fake Douyin Open Platform ([`fake_douyin`]).

// Each test binary declares `mod support;` and uses only part of it, so what
// one of them leaves unused is not dead code.
#![allow(dead_code)]

pub mod fake_douyin;
pub mod pg;
pub mod pushgateway;
pub mod setup;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_douyin-order-sync");

/// How long [`Cmd::run`] lets the binary run before killing it and failing.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new, empty directory in the temp dir, unique to this call. It is left
/// behind for the caller (the one [`Cmd::new`] makes is removed with it).
#[track_caller]
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "douyin-order-sync-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover of an earlier run that had our pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes its directory when the last owner (Cmd, Child, Output) is gone.
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A builder for one run of the binary, with a clean environment: only PATH
/// is kept (so no RUST_LOG, DATABASE_URL, … leak in from the developer's
/// shell), and the working directory is a fresh empty directory (so no stray
/// `.env` is read) unless [`Cmd::current_dir`] says otherwise.
#[derive(Debug)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    cwd: PathBuf,
    temp: Arc<DirGuard>,
    /// Close the read end of stdout at once, as `| head -1` does after its line.
    close_stdout: bool,
}

impl Default for Cmd {
    fn default() -> Cmd {
        Cmd::new()
    }
}

impl Cmd {
    /// The real binary, `env!("CARGO_BIN_EXE_douyin-order-sync")`.
    pub fn new() -> Cmd {
        let dir = temp_dir("cwd");
        let mut envs = Vec::new();
        if let Ok(path) = std::env::var("PATH") {
            envs.push(("PATH".to_string(), path));
        }
        Cmd {
            program: PathBuf::from(BIN),
            args: Vec::new(),
            envs,
            cwd: dir.clone(),
            temp: Arc::new(DirGuard(dir)),
            close_stdout: false,
        }
    }

    /// Closes the read end of the binary's stdout as soon as it starts (like a reader that has
    /// seen enough: `| head -1`): every write to stdout then fails with EPIPE.
    pub fn stdout_closed(mut self) -> Cmd {
        self.close_stdout = true;
        self
    }

    /// Sets (or replaces) one environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.envs.retain(|(key, _)| key != k);
        self.envs.push((k.to_string(), v.to_string()));
        self
    }

    pub fn envs<'a>(mut self, kv: impl IntoIterator<Item = (&'a str, &'a str)>) -> Cmd {
        for (k, v) in kv {
            self = self.env(k, v);
        }
        self
    }

    pub fn arg(mut self, a: &str) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Cmd {
        self.args.extend(args.into_iter().map(OsString::from));
        self
    }

    /// Runs the binary in `p` instead of the fresh temp dir.
    pub fn current_dir(mut self, p: impl AsRef<Path>) -> Cmd {
        self.cwd = p.as_ref().to_path_buf();
        self
    }

    /// The working directory the binary will run in (the fresh temp dir
    /// unless [`Cmd::current_dir`] changed it), e.g. to write a `.env` there.
    /// The temp dir is removed once the Cmd and its Output/Child are dropped.
    pub fn dir(&self) -> &Path {
        &self.cwd
    }

    /// The command line, with its environment, as one shell line.
    pub fn describe(&self) -> String {
        let mut line = format!("cd {} && env -i", shell_quote(&self.cwd.to_string_lossy()));
        for (k, v) in &self.envs {
            line.push(' ');
            line.push_str(&shell_quote(&format!("{k}={v}")));
        }
        line.push(' ');
        line.push_str(&shell_quote(&self.program.to_string_lossy()));
        for a in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(&a.to_string_lossy()));
        }
        line
    }

    /// Runs the binary to its end (at most [`RUN_TIMEOUT`], then it is
    /// killed and the test fails showing its output).
    #[track_caller]
    pub fn run(self) -> Output {
        let command = self.describe();
        match self.spawn().wait_timeout(RUN_TIMEOUT) {
            Some(output) => output,
            None => panic!("did not finish within {RUN_TIMEOUT:?}: {command}"),
        }
    }

    /// Starts the binary (stdin empty, stdout/stderr piped and read in the
    /// background) and returns at once, e.g. to send it a signal.
    #[track_caller]
    pub fn spawn(self) -> Child {
        let command = self.describe();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = child.stdout.take();
        let stdout = if self.close_stdout {
            drop(stdout);
            None
        } else {
            stdout.map(read_in_background)
        };
        let stderr = child.stderr.take().map(read_in_background);
        Child {
            inner: Some(Running {
                child,
                stdout,
                stderr,
            }),
            command,
            temp: Arc::clone(&self.temp),
        }
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished run left.
#[derive(Debug)]
pub struct Output {
    /// The exit code, `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// [`Cmd::describe`] of the run.
    pub command: String,
    /// Keeps the run's temp working directory until the Output is dropped.
    temp: Arc<DirGuard>,
}

impl Output {
    /// Panics, showing everything about the run, unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        if self.code != Some(code) {
            panic!("expected exit code {code}\n{}", self.report());
        }
        self
    }

    /// Panics, showing everything about the run, unless it exited with 0.
    #[track_caller]
    pub fn expect_success(&self) -> &Output {
        self.expect_code(0)
    }

    /// The binary's log (it logs to stderr).
    pub fn log(&self) -> &str {
        &self.stderr
    }

    /// The status line: `exit code N` or `killed by signal N`.
    pub fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "unknown status".to_string(),
        }
    }

    /// Command, status, stdout and stderr in full, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.command,
            self.status(),
            self.stdout,
            self.stderr
        )
    }
}

struct Running {
    child: std::process::Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Collects the output of the exited process.
    fn finish(self, status: ExitStatus, command: String, temp: Arc<DirGuard>) -> Output {
        let join = |h: Option<JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Output {
            code: status.code(),
            signal: exit_signal(&status),
            stdout: join(self.stdout),
            stderr: join(self.stderr),
            command,
            temp,
        }
    }
}

#[cfg(unix)]
fn exit_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn exit_signal(_: &ExitStatus) -> Option<i32> {
    None
}

/// A running binary. Dropping it kills (SIGKILL) and reaps the process.
pub struct Child {
    /// `None` once waited for.
    inner: Option<Running>,
    command: String,
    temp: Arc<DirGuard>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.inner.as_ref().map_or(0, |r| r.child.id())
    }

    /// Sends signal number `sig` (e.g. [`SIGTERM`]) with `kill -s`.
    #[track_caller]
    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        let out = Command::new("kill")
            .args(["-s", &sig.to_string(), &pid.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        if !out.status.success() {
            panic!(
                "kill -s {sig} {pid} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }

    /// Waits up to `d` for the process to end. `None` if it did not: then it
    /// is killed and what it printed so far goes to this test's stderr.
    pub fn wait_timeout(mut self, d: Duration) -> Option<Output> {
        let deadline = Instant::now() + d;
        let mut running = self.inner.take()?;
        loop {
            match running.child.try_wait() {
                Ok(Some(status)) => {
                    return Some(running.finish(status, self.command.clone(), self.temp.clone()))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = running.child.kill();
        let status = running.child.wait();
        let output = match status {
            Ok(status) => running.finish(status, self.command.clone(), self.temp.clone()),
            Err(_) => return None,
        };
        eprintln!(
            "did not exit within {d:?}, so it was killed\n{}",
            output.report()
        );
        None
    }

    /// SIGKILL now; [`Child::wait_timeout`] then collects the output.
    pub fn kill9(&mut self) {
        if let Some(running) = self.inner.as_mut() {
            let _ = running.child.kill();
        }
    }

    pub fn describe(&self) -> &str {
        &self.command
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut running) = self.inner.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}
