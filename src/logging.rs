//! The logger: env_logger with `RUST_LOG` (default `info`), text or JSON lines on stderr, and a
//! guard that keeps other crates' debug and trace lines out.
//!
//! At debug and trace the HTTP and database crates log request headers and connection details,
//! where the access token and the database password live. Whatever `RUST_LOG` says, records from
//! any crate but this one pass only at info level or above, so `RUST_LOG=trace` shows all of our
//! own detail and none of theirs.

use crate::config::LogFormat;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

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

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Install the logger. Safe to call once; later calls do nothing.
pub fn init(format: LogFormat) {
    if INITIALISED.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => {
            builder.format(|buf, record| {
                writeln!(
                    buf,
                    "{} {:<5} {}",
                    buf.timestamp_seconds(),
                    record.level(),
                    record.args()
                )
            });
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let ts = buf.timestamp_seconds().to_string();
                writeln!(
                    buf,
                    "{{\"ts\":{},\"level\":{},\"target\":{},\"msg\":{}}}",
                    json_string(&ts),
                    json_string(record.level().as_str()),
                    json_string(record.target()),
                    json_string(&record.args().to_string())
                )
            });
        }
    }
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max.max(LevelFilter::Error));
    }
}

/// Whether `init` ran (errors before it are printed plainly).
pub fn initialised() -> bool {
    INITIALISED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_targets_pass_below_info() {
        assert!(own("douyin_order_sync"));
        assert!(own("douyin_order_sync::sync"));
        assert!(!own("ureq::unit"));
        assert!(!own("tokio_postgres::connection"));
        assert!(!own("douyin_order_syncx"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
