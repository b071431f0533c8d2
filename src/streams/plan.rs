//! The plan of one stream's window for one account: the checkpoint row it reads and writes,
//! the window (a range, resumed after its last committed day, or incremental from the
//! checkpoint minus the stream's lookback) cut into Asia/Shanghai days; and the counting words
//! of the log lines. Shared by every stream (orders included).

use crate::config::{Config, WindowSpec};
use crate::store::{Checkpoint, CheckpointKey};
use crate::window::{self, Day, Span};
use std::time::{SystemTime, UNIX_EPOCH};

/// The window of one account, cut into days.
#[derive(Debug, Clone)]
pub struct Plan {
    pub key: CheckpointKey,
    /// The whole window asked for (its end is the range's end, or now).
    pub window: Span,
    /// The days still to sync (after a resumed checkpoint, if any).
    pub days: Vec<Day>,
    /// Where the run resumes from, when it resumes a backfill.
    pub resumed_from: Option<i64>,
    /// The end of the range as asked (for `range_done`); None in incremental mode.
    pub range_end: Option<i64>,
}

pub fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The checkpoint row of an account under this configuration.
pub fn checkpoint_key(config: &Config, account_id: &str) -> CheckpointKey {
    CheckpointKey {
        stream: "orders",
        account_id: account_id.to_string(),
        time_field: config.time_field().key(),
        status_filter: config
            .order_status()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        mode_key: match config.window() {
            WindowSpec::Range(span) => format!("range:{}-{}", span.start, span.end),
            WindowSpec::Incremental { .. } => "incremental".to_string(),
        },
    }
}

/// Work out the window of an account from the configuration and its checkpoint.
pub fn plan(config: &Config, key: CheckpointKey, checkpoint: Option<Checkpoint>, now: i64) -> Plan {
    plan_with_lookback(config, key, checkpoint, now, config.overlap_secs())
}

/// [`plan`] with the stream's own lookback: how much before its checkpoint an incremental run
/// reads again.
pub fn plan_with_lookback(
    config: &Config,
    key: CheckpointKey,
    checkpoint: Option<Checkpoint>,
    now: i64,
    lookback: i64,
) -> Plan {
    match config.window() {
        WindowSpec::Range(span) => {
            // A finished range runs in full again (to refresh refunds); an unfinished one
            // resumes after its last committed day. The future is not asked for. A checkpoint
            // that is not a day's end was cut at "now" (the range reaches into the future): as
            // in the incremental mode, the run re-reads OVERLAP_SECS before it, where orders
            // indexed late appear.
            let resumed_from = checkpoint
                .filter(|c| {
                    !c.range_done && c.synced_until > span.start && c.synced_until < span.end
                })
                .map(|c| {
                    let cut_at_now = window::local_midnight(c.synced_until) != c.synced_until;
                    if cut_at_now || span.end > now {
                        (c.synced_until - config.overlap_secs()).max(span.start)
                    } else {
                        c.synced_until
                    }
                });
            let start = resumed_from.unwrap_or(span.start);
            let end = span.end.min(now);
            Plan {
                key,
                window: *span,
                days: window::cut_days(Span { start, end }),
                resumed_from,
                range_end: Some(span.end),
            }
        }
        WindowSpec::Incremental { sync_days } => {
            let start = match checkpoint {
                Some(c) => (c.synced_until - lookback).min(now),
                None => now - i64::from(*sync_days) * 86_400,
            };
            let window = Span { start, end: now };
            Plan {
                key,
                window,
                days: window::cut_days(window),
                resumed_from: None,
                range_end: None,
            }
        }
    }
}

/// "1 order", "2 orders".
pub fn count(n: u64, noun: &str) -> String {
    // "retry" → "retries", but "day" → "days".
    let consonant_y = noun.ends_with('y') && !noun.ends_with("ay") && !noun.ends_with("ey");
    match n {
        1 => format!("1 {noun}"),
        _ if consonant_y => format!("{n} {}ies", &noun[..noun.len() - 1]),
        _ => format!("{n} {noun}s"),
    }
}

/// "12 s", "3 min", "2.5 h".
pub fn human_duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}
