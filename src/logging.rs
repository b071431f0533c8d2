//! The logger: env_logger with `RUST_LOG` (default `info`), text or JSON lines on stderr, and a
//! guard that keeps other crates' debug and trace lines out.
//!
//! At debug and trace the HTTP and database crates log request headers and connection details,
//! where the access token and the database password live. Whatever `RUST_LOG` says, records from
//! any crate but this one pass only at info level or above, so `RUST_LOG=trace` shows all of our
//! own detail and none of theirs.
//!
//! Secrets are masked where they are formatted (`Secret`, the masked DB_URL). Under that, as a
//! safety net, every line is scrubbed of the secrets registered with [`hide`] (the database
//! password and the AppSecret), whatever produced the line.

use crate::config::LogFormat;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The secrets no log line may contain.
static HIDDEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Secrets shorter than this are not scrubbed: blanking every `ab` in every line would make the
/// log unreadable, and a password that short is masked where it is formatted anyway.
const MIN_HIDDEN_LEN: usize = 4;

/// Keep `secret` out of every log line from now on.
pub fn hide(secret: &str) {
    if secret.chars().count() < MIN_HIDDEN_LEN {
        return;
    }
    let mut hidden = HIDDEN.lock().unwrap_or_else(|e| e.into_inner());
    if !hidden.iter().any(|h| h == secret) {
        hidden.push(secret.to_string());
        // Longest first, so that a secret containing another is blanked whole.
        hidden.sort_by_key(|h| std::cmp::Reverse(h.len()));
    }
}

/// `text` with every hidden secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let hidden = HIDDEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in hidden.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// Records from these targets may pass at any level.
fn own(target: &str) -> bool {
    target == "douyin_order_sync" || target.starts_with("douyin_order_sync::")
}

struct Guarded {
    inner: env_logger::Logger,
}

impl Log for Guarded {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        (own(metadata.target()) || metadata.level() <= log::Level::Info)
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Collects a record's key-values (day, orders, pages, seconds, logid …) as JSON fields.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        use serde_json::Value;
        let json = if let Some(b) = value.to_bool() {
            Value::Bool(b)
        } else if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(x) = value.to_f64() {
            Value::from((x * 1000.0).round() / 1000.0)
        } else {
            Value::String(scrub(&value.to_string()))
        };
        // An empty string stands for "none" (e.g. no logid): leave the field out.
        if json != Value::String(String::new()) {
            self.0.insert(key.as_str().to_string(), json);
        }
        Ok(())
    }
}

/// One log record as one JSON object: ts, level, target, msg, then its fields.
pub fn json_line(ts: &str, record: &Record<'_>) -> String {
    let mut fields = Fields(serde_json::Map::new());
    fields.0.insert("ts".into(), ts.into());
    fields
        .0
        .insert("level".into(), record.level().as_str().into());
    fields.0.insert("target".into(), record.target().into());
    fields
        .0
        .insert("msg".into(), scrub(&record.args().to_string()).into());
    let _ = record.key_values().visit(&mut fields);
    serde_json::Value::Object(fields.0).to_string()
}

/// Now in Asia/Shanghai, like every date the job prints ("2024-03-01T09:30:00+08:00"): a
/// merchant reading the log at 08:00 in Chengdu should not see yesterday's date.
fn now_local() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::window::format_rfc3339(now)
}

/// Install the logger. Safe to call once; later calls do nothing.
pub fn init(format: LogFormat) {
    if INITIALISED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let problem = filter_problem(&spec);
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(if spec.trim().is_empty() || problem.is_some() {
        "info"
    } else {
        &spec
    });
    builder.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => {
            builder.format(|buf, record| {
                writeln!(
                    buf,
                    "{} {:<5} {}",
                    now_local(),
                    record.level(),
                    scrub(&record.args().to_string())
                )
            });
        }
        LogFormat::Json => {
            builder.format(|buf, record| writeln!(buf, "{}", json_line(&now_local(), record)));
        }
    }
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max.max(LevelFilter::Error));
    }
    if let Some(problem) = problem {
        log::warn!("RUST_LOG={spec:?} is ignored ({problem}); logging at info");
    }
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Why a `RUST_LOG` value would hide this job's log, if it would. env_logger reads a word that
/// is not a level as a module name, so `RUST_LOG=verbose` or `infoo` would silently show
/// nothing, the summary line included. Accepted: `LEVEL`, `TARGET=LEVEL`, and a bare target of
/// this crate (`douyin_order_sync::sync`), comma-separated, with an optional `/regex`.
fn filter_problem(spec: &str) -> Option<String> {
    let directives = spec.split('/').next().unwrap_or("");
    let is_level = |w: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w.trim()));
    let is_target = |w: &str| {
        let w = w.trim();
        !w.is_empty()
            && w.split("::").all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
    };
    for directive in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match directive.split_once('=') {
            Some((target, _)) if !is_target(target) => {
                return Some(format!("{target:?} is not a module path"));
            }
            Some((_, level)) if !is_level(level) => {
                return Some(format!(
                    "{level:?} is not a level: expected one of {}",
                    LEVELS.join(", ")
                ))
            }
            Some(_) => {}
            None if is_level(directive) => {}
            None if is_target(directive) && own(directive.trim()) => {}
            None => {
                return Some(format!(
                    "{directive:?} is neither a level ({}) nor one of this job's modules",
                    LEVELS.join(", ")
                ))
            }
        }
    }
    None
}

/// Whether `init` ran (errors before it are printed plainly).
pub fn initialised() -> bool {
    INITIALISED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_log_that_would_hide_everything_is_refused_and_a_real_one_kept() {
        for good in [
            "",
            "info",
            "WARN",
            "debug,ureq=info",
            "douyin_order_sync::sync=trace",
            "douyin_order_sync",
            "info/day",
        ] {
            assert_eq!(filter_problem(good), None, "{good}");
        }
        for bad in [
            "verbose",
            "infoo",
            "douyin_order_sync=loud",
            "=info",
            "a b=info",
            "ureq",
        ] {
            assert!(filter_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn hidden_secrets_are_scrubbed_and_short_ones_are_not_registered() {
        hide("Se/cr@t?pw");
        hide("ab");
        assert_eq!(scrub("x Se/cr@t?pw y ab"), "x *** y ab");
    }

    #[test]
    fn only_our_own_targets_pass_below_info() {
        assert!(own("douyin_order_sync"));
        assert!(own("douyin_order_sync::sync"));
        assert!(!own("ureq::unit"));
        assert!(!own("tokio_postgres::connection"));
        assert!(!own("douyin_order_syncx"));
    }

    #[test]
    fn a_json_line_carries_the_message_and_the_fields() {
        let kvs: &[(&str, log::kv::Value<'_>)] = &[
            ("day", log::kv::Value::from("2024-03-01")),
            ("orders", log::kv::Value::from(12u64)),
            ("seconds", log::kv::Value::from(1.23456f64)),
            ("logid", log::kv::Value::from("")),
        ];
        let record = Record::builder()
            .args(format_args!("a \"day\""))
            .level(log::Level::Info)
            .target("douyin_order_sync::sync")
            .key_values(&kvs)
            .build();
        let line: serde_json::Value = serde_json::from_str(&json_line("T", &record)).unwrap();
        assert_eq!(line["msg"], "a \"day\"");
        assert_eq!(line["day"], "2024-03-01");
        assert_eq!(line["orders"], 12);
        assert_eq!(line["seconds"], 1.235);
        assert_eq!(line["level"], "INFO");
        assert!(line.get("logid").is_none());
    }
}
