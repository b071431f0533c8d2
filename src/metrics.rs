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
//!
//! Every per-account figure is per stream too (`stream` label), so that a run of several streams
//! shows each one's records, checkpoint and exit code. Each stream's own last success must stay
//! when that stream fails while others succeed; since a POST replaces every series of a name in
//! its group, it goes to a group of its own per (account, stream), pushed only on success (the
//! textfile carries the previous values over, as for the run's).

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
/// Per account and stream, in a Pushgateway group of its own (see [`publish`]).
const STREAM_SUCCESS_NAME: &str = "stream_last_success_timestamp_seconds";
const STREAM_SUCCESS_HELP: &str =
    "When the stream of the account last committed every day of its window (Unix time).";
/// The whole push (connect, send, answer) takes at most this long.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream of one account: its figures in the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    pub account: String,
    /// The stream's name (`orders`, `verifications`, `refunds`, `settlements`).
    pub stream: String,
    /// Records fetched (and committed) this run.
    pub records: u64,
    /// Of those, how many were new and how many changed a stored row, where the run counts them.
    pub inserted: Option<u64>,
    pub updated: Option<u64>,
    /// Records set aside as unreadable this run, where the run counts them.
    pub rejected: Option<u64>,
    /// How far the stream's data is complete (epoch seconds), if known.
    pub checkpoint: Option<i64>,
    /// The code this stream of this account ended with: 0 when every day of its window
    /// committed, else its error's (the run's, when the run ended before the stream did).
    pub exit_code: Option<i32>,
}

impl StreamReport {
    pub fn new(account: &str, stream: &str) -> StreamReport {
        StreamReport {
            account: account.to_string(),
            stream: stream.to_string(),
            ..StreamReport::default()
        }
    }
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
    /// Every stream the run was configured to sync, for every account.
    pub streams: Vec<StreamReport>,
}

impl RunReport {
    /// The streams whose last success this run advances: those that ended with 0, unless a STOP
    /// held the run (a held stream did not sync its window).
    fn stream_successes(&self) -> impl Iterator<Item = &StreamReport> {
        self.streams
            .iter()
            .filter(|s| !self.stopped && s.exit_code == Some(0))
    }
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
    // Per stream of each account: the same families for every stream (`stream` label).
    type Figure = fn(&StreamReport) -> Option<f64>;
    let per_stream: [(&str, &str, Figure); 6] = [
        (
            "records",
            "Records fetched and committed by the last run, per account and stream.",
            |s| Some(s.records as f64),
        ),
        (
            "inserted_records",
            "Of those, records new to their table.",
            |s| s.inserted.map(|n| n as f64),
        ),
        (
            "updated_records",
            "Of those, records that changed a stored row.",
            |s| s.updated.map(|n| n as f64),
        ),
        (
            "rejected_records",
            "Records the last run set aside as unreadable.",
            |s| s.rejected.map(|n| n as f64),
        ),
        (
            "checkpoint_timestamp_seconds",
            "How far the stream's data of the account is complete (Unix time of its checkpoint).",
            |s| s.checkpoint.map(|c| c as f64),
        ),
        (
            "stream_exit_code",
            "Exit code of the stream of the account in the last run (0: every day of its window committed).",
            |s| s.exit_code.map(f64::from),
        ),
    ];
    for (name, help, figure) in per_stream {
        if report.streams.iter().all(|s| figure(s).is_none()) {
            continue;
        }
        f.header(name, help);
        for s in &report.streams {
            if let Some(v) = figure(s) {
                f.sample(name, &[("account", &s.account), ("stream", &s.stream)], v);
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

/// The per-stream last-success family (`stream_last_success_timestamp_seconds{account,stream}`)
/// for the textfile: `values` as (account, stream, time).
pub fn render_stream_successes(values: &[(String, String, f64)], task_id: &str) -> String {
    let mut out = String::new();
    if values.is_empty() {
        return out;
    }
    let common = format!("task_id=\"{}\"", escape_label(task_id));
    let mut f = Family {
        out: &mut out,
        common: &common,
    };
    f.header(STREAM_SUCCESS_NAME, STREAM_SUCCESS_HELP);
    for (account, stream, t) in values {
        f.sample(
            STREAM_SUCCESS_NAME,
            &[("account", account), ("stream", stream)],
            *t,
        );
    }
    out
}

/// The streams of this run that succeeded, with the run's end as their time, then the previous
/// values of the others (from `previous`, an earlier textfile), in a stable order.
fn stream_successes(report: &RunReport, previous: &str) -> Vec<(String, String, f64)> {
    let mut values: Vec<(String, String, f64)> = report
        .stream_successes()
        .map(|s| (s.account.clone(), s.stream.clone(), report.finished_at))
        .collect();
    for (account, stream, t) in previous_stream_successes(previous) {
        if !values.iter().any(|(a, s, _)| *a == account && *s == stream) {
            values.push((account, stream, t));
        }
    }
    values.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    values
}

/// Push and write the metrics as configured. Never fails: problems are warnings.
pub fn publish(monitoring: &Monitoring, report: &RunReport) {
    if let Some(url) = &monitoring.pushgateway_url {
        let last_success = report.succeeded().then_some(report.finished_at);
        let body = render(report, None, last_success);
        let mut result = push(url, &group_path(&monitoring.task_id, &[]), &body);
        // Each stream's last success in a group of its own (account, stream): a POST replaces
        // every series of the names it carries in its group, so a stream that failed must push
        // nothing where its previous success is kept.
        for s in report.stream_successes() {
            if result.is_err() {
                break;
            }
            let mut body = String::new();
            Family {
                out: &mut body,
                common: "",
            }
            .single(STREAM_SUCCESS_NAME, STREAM_SUCCESS_HELP, report.finished_at);
            let path = group_path(
                &monitoring.task_id,
                &[("account", &s.account), ("stream", &s.stream)],
            );
            result = push(url, &path, &body);
        }
        match result {
            Ok(()) => log::debug!("metrics pushed to {}", masked_url(url)),
            Err(e) => log::warn!(
                "could not push the metrics to the Pushgateway ({}): {e}; the exit code is unchanged",
                masked_url(url)
            ),
        }
    }
    if let Some(path) = &monitoring.metrics_file {
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        let last_success = if report.succeeded() {
            Some(report.finished_at)
        } else {
            previous_last_success(&previous)
        };
        let mut body = render(report, Some(&monitoring.task_id), last_success);
        body.push_str(&render_stream_successes(
            &stream_successes(report, &previous),
            &monitoring.task_id,
        ));
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

/// The grouping key's path: `/metrics/job/<job>/task_id/<value>`, then `extra` labels the same
/// way; a value goes in base64url when it holds characters a path segment cannot carry as they
/// are.
pub fn group_path(task_id: &str, extra: &[(&str, &str)]) -> String {
    let mut path = format!("/metrics/job/{JOB}");
    for (name, value) in std::iter::once(&("task_id", task_id)).chain(extra) {
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if plain {
            let _ = write!(path, "/{name}/{value}");
        } else {
            let _ = write!(
                path,
                "/{name}@base64/{}",
                base64::engine::general_purpose::URL_SAFE.encode(value)
            );
        }
    }
    path
}

/// POST the exposition to the Pushgateway at `base`, in the group of `path` ([`group_path`]).
pub fn push(base: &str, path: &str, body: &str) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(3))
        .timeout(PUSH_TIMEOUT)
        .user_agent(concat!("douyin-order-sync/", env!("CARGO_PKG_VERSION")))
        .build();
    let url = format!("{base}{path}");
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

/// The per-stream last-success values (account, stream, time) in a textfile this job wrote
/// before.
pub fn previous_stream_successes(text: &str) -> Vec<(String, String, f64)> {
    let name = format!("{PREFIX}{STREAM_SUCCESS_NAME}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&name))
        .filter_map(|rest| {
            let (labels, value) = parse_labels(rest)?;
            let value = value.trim().parse::<f64>().ok().filter(|v| v.is_finite())?;
            let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            Some((get("account")?, get("stream")?, value))
        })
        .collect()
}

/// `a="x",b="y"} rest` (the part after `{`) into its labels, unescaped, and what follows `}`.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim().to_string(), value));
        rest = &after[end + 1..];
    }
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
            streams: vec![
                StreamReport {
                    records: 1000,
                    checkpoint: Some(1_699_999_000),
                    ..StreamReport::new("70\"01\\\n", "orders")
                },
                StreamReport {
                    records: 7,
                    inserted: Some(5),
                    updated: Some(2),
                    rejected: Some(0),
                    checkpoint: Some(1_699_990_000),
                    exit_code: Some(77),
                    ..StreamReport::new("7001", "refunds")
                },
            ],
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
        // 7 run-wide families, 6 per stream.
        assert_eq!(typed.len(), 13, "{text}");
    }

    #[test]
    fn a_task_id_that_is_not_a_plain_word_goes_in_base64() {
        assert_eq!(
            group_path("douyin_order_sync", &[]),
            "/metrics/job/douyin_order_sync/task_id/douyin_order_sync"
        );
        assert_eq!(
            group_path("a/b", &[]),
            "/metrics/job/douyin_order_sync/task_id@base64/YS9i"
        );
        assert_eq!(
            group_path("t", &[("account", "7001"), ("stream", "a b")]),
            "/metrics/job/douyin_order_sync/task_id/t/account/7001/stream@base64/YSBi"
        );
    }

    #[test]
    fn every_stream_of_every_account_carries_its_stream_label() {
        let text = render(&report(), None, None);
        for line in [
            "douyin_order_sync_records{account=\"7001\",stream=\"refunds\"} 7\n",
            "douyin_order_sync_inserted_records{account=\"7001\",stream=\"refunds\"} 5\n",
            "douyin_order_sync_updated_records{account=\"7001\",stream=\"refunds\"} 2\n",
            "douyin_order_sync_rejected_records{account=\"7001\",stream=\"refunds\"} 0\n",
            "douyin_order_sync_checkpoint_timestamp_seconds{account=\"7001\",stream=\"refunds\"} 1699990000\n",
            "douyin_order_sync_stream_exit_code{account=\"7001\",stream=\"refunds\"} 77\n",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        // A figure the run did not count for a stream is left out, not written as 0.
        let inserted = text
            .lines()
            .filter(|l| l.starts_with("douyin_order_sync_inserted_records{"))
            .count();
        assert_eq!(inserted, 1, "{text}");
    }

    #[test]
    fn a_failed_stream_keeps_its_previous_last_success_in_the_textfile() {
        let mut r = report();
        r.streams[0].exit_code = Some(0);
        let first = render_stream_successes(&stream_successes(&r, ""), "t");
        assert_eq!(
            previous_stream_successes(&first),
            vec![(
                "70\"01\\\n".to_string(),
                "orders".to_string(),
                1_700_000_000.5
            )],
            "{first}"
        );
        // Next run: orders fails, refunds succeeds.
        r.finished_at = 1_700_000_900.0;
        r.streams[0].exit_code = Some(75);
        r.streams[1].exit_code = Some(0);
        let second = render_stream_successes(&stream_successes(&r, &first), "t");
        assert_eq!(
            previous_stream_successes(&second),
            vec![
                (
                    "70\"01\\\n".to_string(),
                    "orders".to_string(),
                    1_700_000_000.5
                ),
                ("7001".to_string(), "refunds".to_string(), 1_700_000_900.0),
            ],
            "{second}"
        );
        assert!(
            second.starts_with("# HELP douyin_order_sync_stream_last_success_timestamp_seconds ")
        );
        // A run a STOP held advances none.
        r.finished_at = 1_700_009_000.0;
        r.stopped = true;
        r.streams[0].exit_code = Some(0);
        let third = render_stream_successes(&stream_successes(&r, &second), "t");
        assert_eq!(third, second);
        assert_eq!(render_stream_successes(&[], "t"), "");
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
