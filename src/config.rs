//! Flags, environment and `.env`, validated once into a [`Config`].
//!
//! This is the only place that reads variables and the only place that reports a bad setting, so
//! every configuration error has the same shape: one line naming the variable and, unless it is a
//! secret, its value. Precedence: flags, then the environment, then the `.env` file. An empty value
//! counts as unset, as it did for the Python tool. The `.env` file is read by `dotenv` (as
//! python-dotenv reads it) and DB_URL by `db_url` (as SQLAlchemy reads it); their problems become
//! errors here.

use crate::cli::Args;
use crate::error::Error;
use crate::window::{self, Span};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A value that must never reach a log: Debug and Display print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which order time the window applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// `update_order_*`: catches refunds and status changes of older orders (the default).
    Update,
    /// `create_order_*`: what the Python tool's `.env.example` chose.
    Create,
}

impl TimeField {
    pub fn key(self) -> &'static str {
        match self {
            TimeField::Update => "update_time",
            TimeField::Create => "create_time",
        }
    }
}

/// What to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSpec {
    /// An explicit range with its own checkpoint row; `span.end` is exclusive.
    Range(Span),
    /// From the checkpoint (minus the overlap) to now; the first run goes `sync_days` back.
    Incremental { sync_days: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub use crate::db_url::{Database, TlsMode};

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_tries: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

/// Monitoring: the Python tool's `task_monitor` row and the Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitoring {
    /// `TASK_ID`: the `task_monitor` row and the Pushgateway's `task_id` grouping label.
    pub task_id: String,
    /// `TASK_MONITOR`: keep the `task_monitor` row (and obey its `target_command`).
    pub task_monitor: bool,
    /// `HEARTBEAT_SECS`: how often a run writes its heartbeat and reads the command.
    pub heartbeat: Duration,
    /// `PUSHGATEWAY_URL`, without a trailing `/`.
    pub pushgateway_url: Option<String>,
    /// `METRICS_FILE`: a textfile-collector file.
    pub metrics_file: Option<PathBuf>,
}

/// The validated configuration of one run.
#[derive(Debug, Clone)]
pub struct Config {
    database: Database,
    app_id: String,
    app_secret: Secret,
    accounts: Vec<String>,
    api_base: String,
    page_size: u32,
    order_status: Option<i64>,
    get_secret_number: bool,
    max_qps: u32,
    concurrency: usize,
    window: WindowSpec,
    time_field: TimeField,
    retry: RetryPolicy,
    http_timeout: Duration,
    overlap_secs: i64,
    log_format: LogFormat,
    legacy_variables: Vec<&'static str>,
    env_file: Option<PathBuf>,
    warnings: Vec<String>,
    monitoring: Monitoring,
}

impl Config {
    pub fn database(&self) -> &Database {
        &self.database
    }
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    pub fn app_secret(&self) -> &Secret {
        &self.app_secret
    }
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }
    pub fn api_base(&self) -> &str {
        &self.api_base
    }
    pub fn page_size(&self) -> u32 {
        self.page_size
    }
    pub fn order_status(&self) -> Option<i64> {
        self.order_status
    }
    pub fn get_secret_number(&self) -> bool {
        self.get_secret_number
    }
    pub fn max_qps(&self) -> u32 {
        self.max_qps
    }
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
    pub fn window(&self) -> &WindowSpec {
        &self.window
    }
    pub fn time_field(&self) -> TimeField {
        self.time_field
    }
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }
    pub fn http_timeout(&self) -> Duration {
        self.http_timeout
    }
    pub fn overlap_secs(&self) -> i64 {
        self.overlap_secs
    }
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
    /// The old daemon's variables that were set (they are ignored now).
    pub fn legacy_variables(&self) -> &[&'static str] {
        &self.legacy_variables
    }
    /// Settings that were read but look wrong (quotes or a comment kept in a value, a `.env`
    /// line that did not parse); `load` logs them and `check` prints them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    pub fn monitoring(&self) -> &Monitoring {
        &self.monitoring
    }
    /// The `.env` file that was read, if any.
    pub fn env_file(&self) -> Option<&Path> {
        self.env_file.as_deref()
    }

    /// Read flags, the process environment and the `.env` file, and validate.
    pub fn load(args: &Args) -> Result<Config, Error> {
        let env = process_env();
        let (loaded, env_file) = read_env_file(args.env_file.as_deref(), &env)?;
        let flags: HashMap<String, String> = args
            .variables()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let sources = Sources {
            flags,
            env,
            dotenv: loaded.vars,
            env_file,
            dropped_lines: loaded.dropped_lines,
        };
        let config = Config::from_sources(&sources).inspect_err(|_| {
            // A dropped line is often why a variable is missing: say so before the error.
            for warning in dropped_line_warnings(&sources) {
                log::warn!("{warning}");
            }
        })?;
        // A safety net under the masking: the logger blanks these wherever they appear.
        crate::logging::hide(config.app_secret.expose());
        if let Some(password) = config.database.password() {
            crate::logging::hide(password);
        }
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        Ok(config)
    }

    /// The log format alone, read before the logger exists (so that even configuration errors
    /// are printed in the chosen format). Unknown values fall back to text; `load` reports them.
    pub fn peek_log_format(args: &Args) -> LogFormat {
        let from_env = std::env::var("LOG_FORMAT").ok();
        let value = from_env.or_else(|| {
            read_env_file(args.env_file.as_deref(), &process_env())
                .ok()
                .and_then(|(d, _)| d.vars.get("LOG_FORMAT").cloned())
        });
        match value.as_deref().map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    pub fn from_sources(sources: &Sources) -> Result<Config, Error> {
        let s = sources;
        let [db_url, app_id, app_secret, account_id] =
            s.required(["DB_URL", "APPID", "AppSecret", "ACCOUNT_ID"])?;
        let database = parse_db_url(&db_url)?;
        let app_secret = Secret::new(app_secret);
        let accounts = parse_accounts(&account_id)?;

        let api_base = s
            .get("API_BASE_URL")
            .unwrap_or_else(|| "https://open.douyin.com".into());
        if let Err(problem) = check_base_url(&api_base) {
            return Err(invalid("API_BASE_URL", &api_base, &problem));
        }
        let api_base = api_base.trim_end_matches('/').to_string();

        let page_size = s.number("PAGE_SIZE", 50, 1, 100)? as u32;
        let order_status = match s.get("ORDER_STATUS") {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .map_err(|_| invalid("ORDER_STATUS", &v, "must be an integer"))?,
            ),
        };
        let get_secret_number = s.boolean("GET_SECRET_NUMBER", false)?;
        let max_qps = s.number("MAX_QPS", 10, 1, 1000)? as u32;
        // Enough requests in flight to keep MAX_QPS busy up to ~1 s of latency (16 covers the
        // documented 20/s up to 0.8 s); more threads only compete for the CPU (measured by the bench).
        let concurrency =
            s.number("CONCURRENCY", i64::from(max_qps.clamp(2, 16)), 1, 256)? as usize;
        let time_field = if s.boolean("USE_CREATE_TIME", false)? {
            TimeField::Create
        } else {
            TimeField::Update
        };
        let window = parse_window(s)?;
        let retry = RetryPolicy {
            max_tries: s.number("RETRY_MAX_TRIES", 8, 1, 100)? as u32,
            base: Duration::from_millis(s.number("RETRY_BASE_MS", 1000, 1, 600_000)? as u64),
            max_delay: Duration::from_millis(
                s.number("RETRY_MAX_DELAY_MS", 30_000, 1, 3_600_000)? as u64
            ),
        };
        let http_timeout = Duration::from_secs(s.number("HTTP_TIMEOUT_SECS", 30, 1, 600)? as u64);
        let overlap_secs = s.number("OVERLAP_SECS", 600, 0, 86_400)?;
        let log_format = match s.get("LOG_FORMAT") {
            None => LogFormat::Text,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) => return Err(invalid("LOG_FORMAT", &v, "must be text or json")),
        };
        let monitoring = parse_monitoring(s)?;
        let legacy_variables = ["SYNC_INTERVAL"]
            .into_iter()
            .filter(|name| s.get(name).is_some())
            .collect();
        Ok(Config {
            database,
            app_id,
            app_secret,
            accounts,
            api_base,
            page_size,
            order_status,
            get_secret_number,
            max_qps,
            concurrency,
            window,
            time_field,
            retry,
            http_timeout,
            overlap_secs,
            log_format,
            legacy_variables,
            env_file: s.env_file.clone(),
            warnings: warnings(s),
            monitoring,
        })
    }
}

/// Where variables come from, highest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub flags: HashMap<String, String>,
    pub env: HashMap<String, String>,
    pub dotenv: HashMap<String, String>,
    pub env_file: Option<PathBuf>,
    /// Lines of the `.env` file that did not parse (python-dotenv drops them too).
    pub dropped_lines: Vec<usize>,
}

impl Sources {
    /// The trimmed value of a variable; empty counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        [&self.flags, &self.env, &self.dotenv]
            .into_iter()
            .find_map(|m| m.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()))
            .map(str::to_string)
    }

    /// The values of required variables; one error naming every one that is missing.
    fn required<const N: usize>(&self, names: [&str; N]) -> Result<[String; N], Error> {
        let values = names.map(|name| self.get(name));
        let missing: Vec<&str> = names
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        match missing.as_slice() {
            [] => Ok(values.map(Option::unwrap_or_default)),
            [one] => Err(Error::config(format!(
                "{one} is not set (set it in the environment or in .env)"
            ))),
            [all @ .., last] => Err(Error::config(format!(
                "{} and {last} are not set (set them in the environment or in .env)",
                all.join(", ")
            ))),
        }
    }

    fn number(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, Error> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: i64 = v
            .parse()
            .map_err(|_| invalid(name, &v, "must be a whole number"))?;
        if n < min || n > max {
            return Err(invalid(
                name,
                &v,
                &format!("must be between {min} and {max}"),
            ));
        }
        Ok(n)
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, Error> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(name, &v, "must be true or false (or 1/0)")),
        }
    }
}

/// Every variable the job reads (for the warnings about values that look quoted).
const VARIABLES: &[&str] = &[
    "DB_URL",
    "APPID",
    "AppSecret",
    "ACCOUNT_ID",
    "API_BASE_URL",
    "PAGE_SIZE",
    "ORDER_STATUS",
    "GET_SECRET_NUMBER",
    "MAX_QPS",
    "CONCURRENCY",
    "USE_CREATE_TIME",
    "START_DATE",
    "END_DATE",
    "START_TIME",
    "END_TIME",
    "SYNC_DAYS",
    "RETRY_MAX_TRIES",
    "RETRY_BASE_MS",
    "RETRY_MAX_DELAY_MS",
    "HTTP_TIMEOUT_SECS",
    "OVERLAP_SECS",
    "LOG_FORMAT",
];

/// The `.env` lines that did not parse.
fn dropped_line_warnings(s: &Sources) -> Vec<String> {
    let file = s.env_file.as_deref().unwrap_or(Path::new(".env")).display();
    s.dropped_lines
        .iter()
        .map(|line| format!("{file} line {line} could not be parsed and is ignored (python-dotenv ignores it too): check its quotes"))
        .collect()
}

/// Values that still carry the quotes or the comment of a `.env` line: what
/// `kubectl create secret generic --from-env-file` and Docker's `--env-file` leave in them.
fn warnings(s: &Sources) -> Vec<String> {
    let mut out = dropped_line_warnings(s);
    for name in VARIABLES {
        let Some(value) = s.get(name) else { continue };
        let quoted = value.len() >= 2
            && [b'"', b'\'']
                .iter()
                .any(|q| value.as_bytes()[0] == *q && value.as_bytes()[value.len() - 1] == *q);
        let comment = value.contains(" #") || value.contains("\t#");
        if quoted || comment {
            out.push(format!(
                "{name} {} as part of its value: kubectl create secret --from-env-file and docker --env-file keep them (see README, Kubernetes)",
                match (quoted, comment) {
                    (true, true) => "has quotes around it and a ' #' comment",
                    (true, false) => "has quotes around it",
                    _ => "has a ' #' comment",
                }
            ));
        }
    }
    out
}

/// The one shape of a configuration error about a value that is not secret.
fn invalid(name: &str, value: &str, problem: &str) -> Error {
    Error::config(format!("{name}={value:?} {problem}"))
}

/// The longest account id accepted: Douyin's are 19 digits (they fit an unsigned 64-bit).
const MAX_ACCOUNT_DIGITS: usize = 20;

/// `ACCOUNT_ID`: one account id, or several separated by commas. An id is ASCII digits only
/// (letters, quotes or full-width digits are a typo, and Douyin would answer "not authorised").
fn parse_accounts(value: &str) -> Result<Vec<String>, Error> {
    let mut accounts: Vec<String> = Vec::new();
    for part in value.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(invalid(
                "ACCOUNT_ID",
                value,
                "must be one account id or a comma-separated list of them",
            ));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > MAX_ACCOUNT_DIGITS {
            return Err(invalid(
                "ACCOUNT_ID",
                value,
                &format!(
                    "holds {part:?}, which is not an account id (up to {MAX_ACCOUNT_DIGITS} digits 0-9, several separated by commas)"
                ),
            ));
        }
        if !accounts.iter().any(|a| a == part) {
            accounts.push(part.to_string());
        }
    }
    Ok(accounts)
}

/// Whether `API_BASE_URL` is a URL the job can use: `http(s)://host[:port][/path]`, a host
/// name, IPv4 or bracketed IPv6 address, a port 1–65535, no user, query or fragment.
fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.contains(['?', '#']) || authority.contains(['?', '#']) {
        return Err("must not carry a query or a fragment".into());
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has a space or control character in its path".into());
    }
    if authority.contains('@') {
        return Err("must not carry a user name".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("has an unclosed [ in its host")?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "has {addr:?} in brackets, which is not an IPv6 address"
            ));
        }
        match after {
            "" => (addr, None),
            _ => (
                addr,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("has text after its IPv6 address")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        if !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u32>(), Ok(1..=65535))
        {
            return Err(format!("has the port {port:?}: expected a number 1-65535"));
        }
    }
    if authority.starts_with('[') {
        return Ok(());
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !host_ok {
        return Err(format!(
            "has the host {host:?}, which is not a host name or an address"
        ));
    }
    Ok(())
}

fn parse_window(s: &Sources) -> Result<WindowSpec, Error> {
    let start_date = s.get("START_DATE");
    let end_date = s.get("END_DATE");
    let (start_name, end_name, span) = if start_date.is_some() || end_date.is_some() {
        let (Some(a), Some(b)) = (start_date, end_date) else {
            return Err(Error::config(
                "START_DATE and END_DATE go together: a range needs both ends",
            ));
        };
        let start = window::parse_start_date(&a).map_err(|e| invalid("START_DATE", &a, &e))?;
        let end = window::parse_end_date(&b).map_err(|e| invalid("END_DATE", &b, &e))?;
        ("START_DATE", "END_DATE", Span { start, end })
    } else if s.get("START_TIME").is_some() || s.get("END_TIME").is_some() {
        let (Some(a), Some(b)) = (s.get("START_TIME"), s.get("END_TIME")) else {
            return Err(Error::config(
                "START_TIME and END_TIME go together: a range needs both ends",
            ));
        };
        let start = epoch_seconds("START_TIME", &a)?;
        // END_TIME is inclusive, as it was for the Python tool.
        let end = epoch_seconds("END_TIME", &b)? + 1;
        ("START_TIME", "END_TIME", Span { start, end })
    } else {
        let sync_days = s.number("SYNC_DAYS", 1, 1, 3650)? as u32;
        return Ok(WindowSpec::Incremental { sync_days });
    };
    if span.end <= span.start {
        return Err(Error::config(format!(
            "{end_name} ({}) is before {start_name} ({})",
            window::format_local(span.end - 1),
            window::format_local(span.start)
        )));
    }
    Ok(WindowSpec::Range(span))
}

fn parse_monitoring(s: &Sources) -> Result<Monitoring, Error> {
    let task_id = s
        .get("TASK_ID")
        .unwrap_or_else(|| "douyin_order_sync".into());
    // task_monitor.task_id is VARCHAR(64) in the Python tool's table.
    if task_id.chars().count() > 64 || task_id.chars().any(char::is_control) {
        return Err(invalid(
            "TASK_ID",
            &task_id,
            "must be at most 64 characters, without control characters",
        ));
    }
    let pushgateway_url = match s.get("PUSHGATEWAY_URL") {
        None => None,
        Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
            Some(v.trim_end_matches('/').to_string())
        }
        Some(v) => {
            return Err(Error::config(format!(
                "PUSHGATEWAY_URL ({}) must start with http:// or https://",
                crate::metrics::masked_url(&v)
            )))
        }
    };
    let metrics_file = match s.get("METRICS_FILE") {
        None => None,
        Some(v) => {
            let path = PathBuf::from(&v);
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if path.file_name().is_none() || !dir.is_dir() {
                return Err(invalid(
                    "METRICS_FILE",
                    &v,
                    "must be a file in an existing directory",
                ));
            }
            Some(path)
        }
    };
    Ok(Monitoring {
        task_id,
        task_monitor: s.boolean("TASK_MONITOR", true)?,
        heartbeat: Duration::from_secs(s.number("HEARTBEAT_SECS", 30, 1, 3600)? as u64),
        pushgateway_url,
        metrics_file,
    })
}

fn epoch_seconds(name: &str, value: &str) -> Result<i64, Error> {
    let n: i64 = value
        .parse()
        .map_err(|_| invalid(name, value, "must be epoch seconds"))?;
    if n > 100_000_000_000 {
        return Err(invalid(
            name,
            value,
            "looks like milliseconds: give epoch seconds",
        ));
    }
    if n < 0 {
        return Err(invalid(name, value, "must not be negative"));
    }
    Ok(n)
}

/// DB_URL as SQLAlchemy reads it (src/db_url.rs); the error never shows the password.
fn parse_db_url(raw: &str) -> Result<Database, Error> {
    crate::db_url::database(raw).map_err(|(masked, problem)| match masked {
        Some(masked) => Error::config(format!("DB_URL ({masked}) {problem}")),
        None => Error::config(format!("DB_URL {problem}")),
    })
}

/// The process environment (variables whose name or value is not Unicode are left out).
fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Read the `.env` file: the one named by `--env-file` (which must exist), else `./.env`, else
/// `.env` beside the binary.
fn read_env_file(
    explicit: Option<&str>,
    env: &HashMap<String, String>,
) -> Result<(crate::dotenv::Loaded, Option<PathBuf>), Error> {
    let path = match explicit {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                return Err(Error::config(format!(
                    "--env-file {} does not exist",
                    p.display()
                )));
            }
            Some(p)
        }
        None => {
            let beside_binary = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join(".env")));
            std::iter::once(PathBuf::from(".env"))
                .chain(beside_binary)
                .find(|p| p.is_file())
        }
    };
    let Some(path) = path else {
        return Ok((crate::dotenv::Loaded::default(), None));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    Ok((crate::dotenv::load(&text, env), Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(pairs: &[(&str, &str)]) -> Sources {
        let mut env: HashMap<String, String> = [
            ("DB_URL", "postgres://u:pw@localhost:5432/db"),
            ("APPID", "tt_app"),
            ("AppSecret", "0123456789abcdef0123456789abcdef"),
            ("ACCOUNT_ID", "7000000000000000001"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            env.insert(k.to_string(), v.to_string());
        }
        Sources {
            env,
            ..Sources::default()
        }
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        match Config::from_sources(&sources(pairs)) {
            Ok(_) => panic!("expected an error for {pairs:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 78);
                e.to_string()
            }
        }
    }

    #[test]
    fn monitoring_defaults_to_the_python_tools_task_id_with_the_row_on() {
        let c = Config::from_sources(&sources(&[])).unwrap();
        let m = c.monitoring();
        assert_eq!(m.task_id, "douyin_order_sync");
        assert!(m.task_monitor);
        assert_eq!(m.heartbeat, Duration::from_secs(30));
        assert_eq!(m.pushgateway_url, None);
        assert_eq!(m.metrics_file, None);
        assert!(c.legacy_variables().is_empty());
        let c = Config::from_sources(&sources(&[
            ("TASK_ID", "shop-7"),
            ("TASK_MONITOR", "false"),
            ("HEARTBEAT_SECS", "5"),
            ("PUSHGATEWAY_URL", "http://pg:9091/"),
            ("SYNC_INTERVAL", "3600"),
        ]))
        .unwrap();
        let m = c.monitoring();
        assert_eq!(m.task_id, "shop-7");
        assert!(!m.task_monitor);
        assert_eq!(m.heartbeat, Duration::from_secs(5));
        assert_eq!(m.pushgateway_url.as_deref(), Some("http://pg:9091"));
        assert_eq!(c.legacy_variables(), ["SYNC_INTERVAL"]);
    }

    #[test]
    fn bad_monitoring_settings_are_configuration_errors() {
        assert!(err(&[("TASK_ID", &"x".repeat(65))]).contains("TASK_ID"));
        assert!(err(&[("HEARTBEAT_SECS", "0")]).contains("HEARTBEAT_SECS"));
        assert!(err(&[("TASK_MONITOR", "maybe")]).contains("TASK_MONITOR"));
        let e = err(&[("PUSHGATEWAY_URL", "pg.example:9091")]);
        assert!(
            e.contains("PUSHGATEWAY_URL") && e.contains("http://"),
            "{e}"
        );
        // A password in the URL is masked.
        let e = err(&[("PUSHGATEWAY_URL", "ftp://u:hunter2@pg/")]);
        assert!(!e.contains("hunter2"), "{e}");
        let e = err(&[("METRICS_FILE", "/nonexistent-dir/x.prom")]);
        assert!(e.contains("METRICS_FILE"), "{e}");
    }

    #[test]
    fn defaults_match_the_python_tool_except_the_time_field() {
        let c = Config::from_sources(&sources(&[])).unwrap();
        assert_eq!(c.page_size(), 50);
        assert_eq!(c.max_qps(), 10);
        assert_eq!(c.api_base(), "https://open.douyin.com");
        assert_eq!(c.time_field(), TimeField::Update);
        assert_eq!(c.window(), &WindowSpec::Incremental { sync_days: 1 });
        assert!(!c.get_secret_number());
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let mut s = sources(&[]);
        s.env.remove("APPID");
        let e = Config::from_sources(&s).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.to_string().contains("APPID is not set"), "{e}");
    }

    #[test]
    fn page_size_outside_1_to_100_is_refused_with_its_value() {
        assert!(err(&[("PAGE_SIZE", "101")]).contains("PAGE_SIZE=\"101\""));
        assert!(err(&[("PAGE_SIZE", "0")]).contains("between 1 and 100"));
    }

    #[test]
    fn end_before_start_is_refused() {
        let e = err(&[("START_DATE", "2024-01-05"), ("END_DATE", "2024-01-04")]);
        assert!(
            e.contains("END_DATE") && e.contains("before START_DATE"),
            "{e}"
        );
    }

    #[test]
    fn dates_win_over_epoch_times() {
        let c = Config::from_sources(&sources(&[
            ("START_DATE", "2024-01-01"),
            ("END_DATE", "2024/01/02"),
            ("START_TIME", "1"),
            ("END_TIME", "2"),
        ]))
        .unwrap();
        assert_eq!(
            c.window(),
            &WindowSpec::Range(Span {
                start: 1_704_038_400,
                end: 1_704_038_400 + 2 * 86_400
            })
        );
    }

    #[test]
    fn end_time_is_inclusive() {
        let c =
            Config::from_sources(&sources(&[("START_TIME", "100"), ("END_TIME", "200")])).unwrap();
        assert_eq!(
            c.window(),
            &WindowSpec::Range(Span {
                start: 100,
                end: 201
            })
        );
    }

    #[test]
    fn a_range_needs_both_ends() {
        assert!(err(&[("START_DATE", "2024-01-01")]).contains("both ends"));
    }

    #[test]
    fn milliseconds_are_recognised_and_refused() {
        assert!(err(&[
            ("START_TIME", "1704038400000"),
            ("END_TIME", "1704038400001")
        ])
        .contains("milliseconds"));
    }

    #[test]
    fn booleans_accept_true_false_1_0() {
        for (v, field) in [
            ("true", TimeField::Create),
            ("1", TimeField::Create),
            ("FALSE", TimeField::Update),
            ("0", TimeField::Update),
        ] {
            let c = Config::from_sources(&sources(&[("USE_CREATE_TIME", v)])).unwrap();
            assert_eq!(c.time_field(), field, "{v}");
        }
        assert!(err(&[("USE_CREATE_TIME", "maybe")]).contains("USE_CREATE_TIME"));
    }

    #[test]
    fn flags_win_over_environment_which_wins_over_dotenv() {
        let mut s = sources(&[("PAGE_SIZE", "20")]);
        s.dotenv.insert("PAGE_SIZE".into(), "30".into());
        s.dotenv.insert("MAX_QPS".into(), "5".into());
        assert_eq!(Config::from_sources(&s).unwrap().page_size(), 20);
        assert_eq!(Config::from_sources(&s).unwrap().max_qps(), 5);
        s.flags.insert("PAGE_SIZE".into(), "40".into());
        assert_eq!(Config::from_sources(&s).unwrap().page_size(), 40);
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let c = Config::from_sources(&sources(&[("PAGE_SIZE", ""), ("START_DATE", " ")])).unwrap();
        assert_eq!(c.page_size(), 50);
    }

    #[test]
    fn the_secret_never_appears_in_debug_output() {
        let c = Config::from_sources(&sources(&[])).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("0123456789abcdef0123456789abcdef"),
            "{debug}"
        );
        assert!(!debug.contains("pw@"), "{debug}");
    }

    #[test]
    fn db_url_password_is_masked_in_errors() {
        let e = err(&[("DB_URL", "mysql://user:hunter2@h/db")]);
        assert!(!e.contains("hunter2") && e.contains("user:***@h"), "{e}");
        let e = err(&[("DB_URL", "postgresql://sync:Secr3t/pw@h/db?sslmode=bogus")]);
        assert!(!e.contains("Secr3t") && e.contains("sync:***@h/db"), "{e}");
    }

    #[test]
    fn db_url_without_a_host_is_refused_in_one_line() {
        let e = err(&[("DB_URL", "postgres://")]);
        assert!(e.contains("names no host") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn every_missing_required_variable_is_named_in_one_error() {
        let mut s = sources(&[]);
        for name in ["DB_URL", "AppSecret", "ACCOUNT_ID"] {
            s.env.remove(name);
        }
        let e = Config::from_sources(&s).unwrap_err().to_string();
        assert_eq!(
            e,
            "configuration: DB_URL, AppSecret and ACCOUNT_ID are not set (set them in the environment or in .env)"
        );
    }

    #[test]
    fn values_that_kept_their_quotes_or_comment_are_warned_about_without_the_value() {
        let c = Config::from_sources(&sources(&[
            ("AppSecret", "\"0123456789abcdef\""),
            ("MAX_QPS", "10"),
            ("APPID", "tt_app # the app"),
        ]))
        .unwrap();
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert!(
            c.warnings()[0].starts_with("APPID has a ' #' comment"),
            "{:?}",
            c.warnings()
        );
        assert!(
            c.warnings()[1].starts_with("AppSecret has quotes"),
            "{:?}",
            c.warnings()
        );
        assert!(!c.warnings().concat().contains("0123456789abcdef"));
    }

    #[test]
    fn sqlalchemy_urls_and_verify_full_are_accepted() {
        let c = Config::from_sources(&sources(&[(
            "DB_URL",
            "postgresql+psycopg2://u:p@db.example:6543/orders?sslmode=verify-full&sslrootcert=%2Fca.pem",
        )]))
        .unwrap();
        assert_eq!(c.database().tls(), TlsMode::VerifyFull);
        assert_eq!(c.database().root_cert(), Some(Path::new("/ca.pem")));
        assert_eq!(c.database().pg_config().get_dbname(), Some("orders"));
    }

    #[test]
    fn an_account_id_is_digits_only() {
        for bad in [
            "abc",
            "7000'",
            "\"7000\"",
            "７０００",
            "7000 1",
            "1e5",
            "-1",
            "123456789012345678901",
        ] {
            let e = err(&[("ACCOUNT_ID", bad)]);
            assert!(
                e.contains("ACCOUNT_ID") && e.contains("not an account id"),
                "{bad}: {e}"
            );
        }
        let c = Config::from_sources(&sources(&[("ACCOUNT_ID", "7000000000000000001")])).unwrap();
        assert_eq!(c.accounts(), ["7000000000000000001".to_string()]);
    }

    #[test]
    fn api_base_url_must_be_a_usable_http_url() {
        for good in [
            "https://open.douyin.com",
            "https://open.douyin.com/",
            "http://127.0.0.1:8080",
            "http://[::1]:9000/prefix/",
            "http://localhost",
        ] {
            assert!(check_base_url(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("ftp://open.douyin.com", "https://"),
            ("http://127.0.0.1:99999", "port"),
            ("http://127.0.0.1:0", "port"),
            ("http://127.0.0.1:80a", "port"),
            ("http://127.0.0.1:", "port"),
            ("http://open douyin.com", "host"),
            ("http://open_douyin.com", "host"),
            ("http://-bad.com", "host"),
            ("http://a..b", "host"),
            ("http://", "host"),
            ("http://[::1", "unclosed"),
            ("http://[zz]:1", "IPv6"),
            ("http://u:p@open.douyin.com", "user"),
            ("http://open.douyin.com/?x=1", "query"),
        ] {
            let e = err(&[("API_BASE_URL", bad)]);
            assert!(e.contains("API_BASE_URL") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn account_ids_are_a_comma_separated_list() {
        let c = Config::from_sources(&sources(&[("ACCOUNT_ID", "1, 2,1")])).unwrap();
        assert_eq!(c.accounts(), ["1".to_string(), "2".to_string()]);
        assert!(err(&[("ACCOUNT_ID", "1,,2")]).contains("ACCOUNT_ID"));
    }
}
