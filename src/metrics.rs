//! A run's Prometheus metrics: the text exposition, the push to a Pushgateway
//! (`PUSHGATEWAY_URL`) and the textfile for node_exporter's collector (`METRICS_FILE`).
//!
//! Batch jobs cannot be scraped, so they report when they end. Both outputs carry the same
//! metrics, written at the end of every run that got past configuration, whatever its exit.
//! `douyin_order_sync_last_success_timestamp_seconds` is only set by a run that exits 0, and a
//! failed run must leave the previous value in place: the push therefore uses POST (which
//! replaces only the metrics of the same names in the group, where PUT would replace the whole
//! group) and leaves that metric out on failure; the textfile carries the previous file's value
//! over. Neither output can fail the run: an unreachable or refusing Pushgateway, or a file that
//! cannot be written, is a warning and the exit code stays what the sync decided.

use crate::config::Monitoring;
use base64::Engine;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// The Pushgateway job name.
pub const JOB: &str = "douyin_order_sync";
const PREFIX: &str = "douyin_order_sync_";
const LAST_SUCCESS: &str = "douyin_order_sync_last_success_timestamp_seconds";
/// The whole push (connect, send, answer) takes at most this long.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One account's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountReport {
    pub account: String,
    /// Orders fetched (and committed) this run.
    pub records: u64,
    /// Orders set aside as unreadable this run, where the run counts them.
    pub rejected: Option<u64>,
    /// How far the account's data is complete (epoch seconds), if known.
    pub checkpoint: Option<i64>,
}

/// What a run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// When the run ended, epoch seconds.
    pub finished_at: f64,
    pub duration_seconds: f64,
    pub exit_code: i32,
    pub requests: u64,
    pub retries: u64,
    /// A remote STOP (task_monitor) held the run.
    pub stopped: bool,
    pub accounts: Vec<AccountReport>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// Escape a label value (text format: backslash, double quote and line feed).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the text format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

struct Family<'a> {
    out: &'a mut String,
    /// Labels put on every sample (the textfile's `task_id`), already rendered.
    common: &'a str,
}

impl Family<'_> {
    fn header(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut rendered: Vec<String> = Vec::new();
        if !self.common.is_empty() {
            rendered.push(self.common.to_string());
        }
        for (k, v) in labels {
            rendered.push(format!("{k}=\"{}\"", escape_label(v)));
        }
        let labels = if rendered.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", rendered.join(","))
        };
        let _ = writeln!(self.out, "{PREFIX}{name}{labels} {}", number(value));
    }

    fn single(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help);
        self.sample(name, &[], value);
    }
}

/// The exposition of `report`. `task_id` puts that label on every sample (the textfile; the
/// Pushgateway adds it from the grouping key instead). `last_success` is the value of the
/// last-success metric, left out when None.
pub fn render(report: &RunReport, task_id: Option<&str>, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let common = task_id.map_or(String::new(), |t| {
        format!("task_id=\"{}\"", escape_label(t))
    });
    let mut f = Family {
        out: &mut out,
        common: &common,
    };
    f.single(
        "last_run_timestamp_seconds",
        "When the last run ended (Unix time), whatever its exit code.",
        report.finished_at,
    );
    f.single(
        "last_exit_code",
        "Exit code of the last run (0 ok, 75 temporary, 77 credentials, 78 configuration, ...).",
        f64::from(report.exit_code),
    );
    f.single(
        "run_duration_seconds",
        "How long the last run took.",
        report.duration_seconds,
    );
    f.single(
        "requests",
        "HTTP requests the last run sent to Douyin.",
        report.requests as f64,
    );
    f.single(
        "retries",
        "Requests the last run retried.",
        report.retries as f64,
    );
    f.single(
        "stopped",
        "1 when a STOP in task_monitor.target_command held the last run.",
        if report.stopped { 1.0 } else { 0.0 },
    );
    f.header("records", "Records fetched and committed by the last run.");
    for a in &report.accounts {
        f.sample(
            "records",
            &[("account", &a.account), ("stream", "orders")],
            a.records as f64,
        );
    }
    if report.accounts.iter().any(|a| a.rejected.is_some()) {
        f.header(
            "rejected_records",
            "Records the last run set aside as unreadable.",
        );
        for a in &report.accounts {
            if let Some(n) = a.rejected {
                f.sample(
                    "rejected_records",
                    &[("account", &a.account), ("stream", "orders")],
                    n as f64,
                );
            }
        }
    }
    if report.accounts.iter().any(|a| a.checkpoint.is_some()) {
        f.header(
            "checkpoint_timestamp_seconds",
            "How far the account's data is complete (Unix time of its checkpoint).",
        );
        for a in &report.accounts {
            if let Some(c) = a.checkpoint {
                f.sample(
                    "checkpoint_timestamp_seconds",
                    &[("account", &a.account), ("stream", "orders")],
                    c as f64,
                );
            }
        }
    }
    if let Some(t) = last_success {
        f.single(
            "last_success_timestamp_seconds",
            "When a run last exited 0 (Unix time).",
            t,
        );
    }
    out
}

/// Push and write the metrics as configured. Never fails: problems are warnings.
pub fn publish(monitoring: &Monitoring, report: &RunReport) {
    if let Some(url) = &monitoring.pushgateway_url {
        let last_success = report.succeeded().then_some(report.finished_at);
        let body = render(report, None, last_success);
        match push(url, &monitoring.task_id, &body) {
            Ok(()) => log::debug!("metrics pushed to {}", masked_url(url)),
            Err(e) => log::warn!(
                "could not push the metrics to the Pushgateway ({}): {e}; the exit code is unchanged",
                masked_url(url)
            ),
        }
    }
    if let Some(path) = &monitoring.metrics_file {
        let last_success = if report.succeeded() {
            Some(report.finished_at)
        } else {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| previous_last_success(&text))
        };
        let body = render(report, Some(&monitoring.task_id), last_success);
        match write_atomically(path, &body) {
            Ok(()) => log::debug!("metrics written to {}", path.display()),
            Err(e) => log::warn!(
                "could not write METRICS_FILE {}: {e}; the exit code is unchanged",
                path.display()
            ),
        }
    }
}

/// A URL with the password of its user-info (`http://user:password@host`) replaced by `***`, for
/// messages.
pub fn masked_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[start + at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The grouping key's path: `/job/<job>/task_id/<value>`, the value in base64url when it holds
/// characters a path segment cannot carry as they are.
pub fn group_path(task_id: &str) -> String {
    let plain = !task_id.is_empty()
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if plain {
        format!("/metrics/job/{JOB}/task_id/{task_id}")
    } else {
        format!(
            "/metrics/job/{JOB}/task_id@base64/{}",
            base64::engine::general_purpose::URL_SAFE.encode(task_id)
        )
    }
}

/// POST the exposition to the Pushgateway at `base`.
pub fn push(base: &str, task_id: &str, body: &str) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(3))
        .timeout(PUSH_TIMEOUT)
        .user_agent(concat!("douyin-order-sync/", env!("CARGO_PKG_VERSION")))
        .build();
    let url = format!("{base}{}", group_path(task_id));
    match agent
        .post(&url)
        .set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .send_string(body)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, response)) => {
            let text = response.into_string().unwrap_or_default();
            Err(format!(
                "HTTP {code}: {}",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        }
        Err(ureq::Error::Transport(t)) => Err(t.to_string()),
    }
}

/// The last-success value in a textfile this job wrote before.
pub fn previous_last_success(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(LAST_SUCCESS)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// Write `body` to `path` atomically: a temporary file in the same directory (so the rename
/// stays on one file system), flushed to disk, then renamed over the old one. A reader sees the
/// old file or the new one, never half of one; the temporary name does not end in `.prom`, so
/// the textfile collector never reads it.
pub fn write_atomically(path: &Path, body: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(body.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        RunReport {
            finished_at: 1_700_000_000.5,
            duration_seconds: 12.25,
            exit_code: 0,
            requests: 40,
            retries: 2,
            stopped: false,
            accounts: vec![AccountReport {
                account: "70\"01\\\n".into(),
                records: 1000,
                rejected: None,
                checkpoint: Some(1_699_999_000),
            }],
        }
    }

    #[test]
    fn label_values_are_escaped_per_the_text_format() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let text = render(&report(), None, None);
        assert!(
            text.contains(
                "douyin_order_sync_records{account=\"70\\\"01\\\\\\n\",stream=\"orders\"} 1000\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn last_success_is_only_rendered_when_given() {
        assert!(!render(&report(), None, None).contains(LAST_SUCCESS));
        let text = render(&report(), Some("t"), Some(1.5));
        assert!(
            text.contains("douyin_order_sync_last_success_timestamp_seconds{task_id=\"t\"} 1.5\n"),
            "{text}"
        );
        assert_eq!(previous_last_success(&text), Some(1.5));
        assert_eq!(previous_last_success("# nothing\n"), None);
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&report(), Some("t"), Some(1.0));
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(typed.last().map(String::as_str), Some(name), "{text}");
            }
        }
        assert_eq!(typed.len(), 9, "{text}");
    }

    #[test]
    fn a_task_id_that_is_not_a_plain_word_goes_in_base64() {
        assert_eq!(
            group_path("douyin_order_sync"),
            "/metrics/job/douyin_order_sync/task_id/douyin_order_sync"
        );
        assert_eq!(
            group_path("a/b"),
            "/metrics/job/douyin_order_sync/task_id@base64/YS9i"
        );
    }

    #[test]
    fn a_password_in_the_pushgateway_url_is_masked() {
        assert_eq!(
            masked_url("https://ops:s3cr:t@pg.example:9091/x"),
            "https://ops:***@pg.example:9091/x"
        );
        assert_eq!(masked_url("http://pg:9091"), "http://pg:9091");
        assert_eq!(masked_url("http://ops@pg:9091"), "http://ops@pg:9091");
    }

    #[test]
    fn numbers_use_the_text_formats_spelling() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }
}
