//! Streams: the datasets a run can sync besides orders, each described by what differs from
//! the others (its endpoint and budget, how a day becomes requests and an answer its next one,
//! the rows an answer yields, its table and upsert, its lookback), with everything else shared
//! here: day slices in Asia/Shanghai, a checkpoint row per stream, several days fetched at once
//! on the stream's own QPS budget, each day committed in order in one transaction with its
//! checkpoint, retries and token refresh (in `douyin`), signals.
//!
//! `orders` is a stream too, but its pipeline (page-number paging split by time, staged COPY,
//! phones, coupons) stays in `sync`; [`StreamKind`] names it so that `STREAMS=orders,…` and the
//! run's summary treat all streams alike. A new stream is one file here (a [`Stream`] impl), one
//! line in [`StreamKind`], one migration (`sql/NNNN_*.sql`), and its settings in `config`.

pub mod plan;
pub mod refunds;
pub mod settlements;
pub mod verifications;

use crate::config::{Config, WindowSpec};
use crate::douyin::{Answer, Douyin};
use crate::error::Error;
use crate::order::Rejected;
use crate::pacer::Pacer;
use crate::stop::Stop;
use crate::store::{Checkpoint, CheckpointKey, DayWrite, Store};
use crate::sync::{self, Plan};
use crate::window::{Day, Span};
use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a day is fetched again when it came back incomplete (fewer distinct records than
/// the answer's `total`, a total that moved, a cursor that did not advance).
const MAX_DAY_ATTEMPTS: u32 = 4;

/// The streams a run can sync, in the order of `STREAMS=all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    Orders,
    Verifications,
    Refunds,
    Settlements,
}

impl StreamKind {
    pub const ALL: &'static [StreamKind] = &[
        StreamKind::Orders,
        StreamKind::Verifications,
        StreamKind::Refunds,
        StreamKind::Settlements,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Orders => "orders",
            StreamKind::Verifications => verifications::Verifications::NAME,
            StreamKind::Refunds => refunds::Refunds::NAME,
            StreamKind::Settlements => settlements::Settlements::NAME,
        }
    }

    /// `STREAMS`: comma-separated names, `all` for every stream. Duplicates are ignored; the
    /// order is always [`StreamKind::ALL`]'s.
    pub fn parse_list(text: &str) -> Result<Vec<StreamKind>, String> {
        let mut kinds = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                kinds.extend_from_slice(StreamKind::ALL);
                continue;
            }
            match StreamKind::ALL
                .iter()
                .find(|k| k.name().eq_ignore_ascii_case(part))
            {
                Some(k) => kinds.push(*k),
                None => {
                    return Err(format!(
                        "unknown stream {part:?} (streams: {}, or all)",
                        StreamKind::ALL
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        if kinds.is_empty() {
            return Err("names no stream".into());
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }

    /// Sync this stream for one account (not for `orders`, whose pipeline is `sync`).
    pub fn sync_account(self, ctx: &StreamContext<'_>, account_id: &str) -> StreamOutcome {
        match self {
            StreamKind::Orders => StreamOutcome {
                stats: StreamStats::default(),
                result: Err(Error::Bug(
                    "the orders stream runs through sync::sync_days".into(),
                )),
            },
            StreamKind::Verifications => {
                sync_stream::<verifications::Verifications>(ctx, account_id)
            }
            StreamKind::Refunds => sync_stream::<refunds::Refunds>(ctx, account_id),
            StreamKind::Settlements => sync_stream::<settlements::Settlements>(ctx, account_id),
        }
    }

    /// The endpoint's QPS budget from the configuration.
    pub fn budget(self, config: &Config) -> u32 {
        match self {
            StreamKind::Orders => config.max_qps(),
            StreamKind::Verifications => verifications::Verifications::budget(config),
            StreamKind::Refunds => refunds::Refunds::budget(config),
            StreamKind::Settlements => settlements::Settlements::budget(config),
        }
    }
}

/// One page of a stream's answer, as the stream reads it.
#[derive(Debug)]
pub struct Page<R> {
    pub rows: Vec<R>,
    /// Records that cannot be stored as they are: quarantined in `rejected_records` with the
    /// day (they still count toward the total).
    pub rejected: Vec<Rejected>,
    /// How many records the whole day's query matches, when the answer says.
    pub total: Option<u64>,
    pub next: Next,
}

/// What comes after a page.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The day is read.
    Done,
    /// Ask again with this cursor.
    Cursor(String),
}

/// What a stream is: what differs from the other streams, and nothing more.
pub trait Stream: 'static {
    /// One record as its table stores it (typed columns + the record as received).
    type Row: Send + 'static;
    /// Its name in `STREAMS`, in `sync_checkpoints.stream`, in logs and run history.
    const NAME: &'static str;
    /// Its records, for log lines ("verification" → "3 verifications").
    const NOUN: &'static str;
    /// The API path (after API_BASE_URL).
    const ENDPOINT: &'static str;
    /// The time the day slices are cut over (the checkpoint row's `time_field`).
    const TIME_FIELD: &'static str;
    /// Requests per second on its endpoint (its own budget, from the configuration).
    fn budget(config: &Config) -> u32;
    /// How much before its checkpoint an incremental run reads again, in seconds.
    fn lookback_secs(config: &Config) -> i64;
    /// The query of a page of the day `span`: the first (`cursor` None) or a next one.
    fn request(account_id: &str, span: Span, cursor: Option<&str>) -> Vec<(&'static str, String)>;
    /// Read an answer (the body as received) into rows and what comes next. `Err` names what
    /// is wrong with the answer.
    fn page(answer: &Answer) -> Result<Page<Self::Row>, String>;
    /// A row's identity (the primary key): counts distinct records, deduplicates a day.
    fn key(row: &Self::Row) -> &str;
    /// Store a complete day's rows (distinct by key) in its table, inside the day's
    /// transaction (the checkpoint follows in the same transaction).
    fn write(
        tx: &mut postgres::Transaction<'_>,
        account_id: &str,
        span: Span,
        rows: &[Self::Row],
    ) -> Result<DayWrite, postgres::Error>;
}

/// What a stream's sync shares with the run.
pub struct StreamContext<'a> {
    pub config: &'a Config,
    pub douyin: &'a Arc<Douyin>,
    pub pacer: &'a Arc<Pacer>,
    pub now: i64,
    pub stop: &'a Stop,
}

/// What one stream of one account did.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    pub days: usize,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub pages: u64,
    pub refetches: u64,
    /// Records quarantined in `rejected_records`.
    pub rejected: u64,
    pub window: Option<(i64, i64)>,
}

/// How one stream of one account ended, and what it committed before.
#[derive(Debug)]
pub struct StreamOutcome {
    pub stats: StreamStats,
    pub result: Result<(), Error>,
}

/// A fetched day, or why it could not be fetched, as a fetcher hands it over.
type DayResult<R> = (usize, Result<FetchedDay<R>, Error>);

/// The checkpoint row of a stream for an account under this configuration.
pub fn checkpoint_key(
    config: &Config,
    stream: &'static str,
    time_field: &'static str,
    account_id: &str,
) -> CheckpointKey {
    CheckpointKey {
        stream,
        account_id: account_id.to_string(),
        time_field,
        status_filter: String::new(),
        mode_key: match config.window() {
            WindowSpec::Range(span) => format!("range:{}-{}", span.start, span.end),
            WindowSpec::Incremental { .. } => "incremental".to_string(),
        },
    }
}

/// A fetched day: its distinct rows and the pages it took.
struct FetchedDay<R> {
    rows: Vec<R>,
    rejected: Vec<Rejected>,
    pages: u64,
    refetches: u64,
    started: Instant,
}

/// Fetch a whole day: page after page until the stream says done, then check it against
/// the answer's total; fetch it again when it does not match or the cursor stops advancing.
fn fetch_day<S: Stream>(
    ctx: &StreamContext<'_>,
    account_id: &str,
    day: &Day,
) -> Result<FetchedDay<S::Row>, Error> {
    let started = Instant::now();
    let mut pages = 0;
    let mut problem = String::new();
    for attempt in 0..MAX_DAY_ATTEMPTS {
        if attempt > 0 {
            log::warn!(
                "{} {} of account {account_id}: {problem}; fetching the day again ({}/{})",
                S::NAME,
                day.date,
                attempt,
                MAX_DAY_ATTEMPTS - 1
            );
        }
        let mut rows: Vec<S::Row> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        let mut total: Option<u64> = None;
        let mut cursors: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        problem.clear();
        loop {
            ctx.stop.check()?;
            let params = S::request(account_id, day.span, cursor.as_deref());
            let answer = ctx.douyin.get(ctx.pacer, S::NAME, S::ENDPOINT, &params)?;
            pages += 1;
            let page = S::page(&answer).map_err(|e| {
                Error::Bug(format!(
                    "{} answer: {e} (logid {})",
                    S::NAME,
                    answer.logid.as_deref().unwrap_or("")
                ))
            })?;
            match (total, page.total) {
                (None, t) => total = t,
                (Some(a), Some(b)) if a != b => {
                    problem = format!("the total moved from {a} to {b} while paging");
                }
                _ => {}
            }
            rows.extend(page.rows);
            rejected.extend(page.rejected);
            match page.next {
                Next::Done => break,
                Next::Cursor(next) => {
                    if !cursors.insert(next.clone()) {
                        problem = format!("the cursor {next:?} did not advance");
                        break;
                    }
                    cursor = Some(next);
                }
            }
        }
        let rows = distinct::<S>(rows);
        // Quarantined records count too: by their id, or each once when they have none.
        let rejected_ids: HashSet<&str> = rejected
            .iter()
            .filter_map(|r| r.order_id.as_deref())
            .collect();
        let unkeyed = rejected.iter().filter(|r| r.order_id.is_none()).count();
        let received = rows.len()
            + rejected_ids
                .iter()
                .filter(|id| !rows.iter().any(|r| S::key(r) == **id))
                .count()
            + unkeyed;
        if problem.is_empty() {
            match total {
                Some(t) if t != received as u64 => {
                    problem = format!(
                        "{received} distinct {} received, the answer's total says {t}",
                        S::NOUN
                    );
                }
                _ => {
                    return Ok(FetchedDay {
                        rows,
                        rejected,
                        pages,
                        refetches: u64::from(attempt),
                        started,
                    })
                }
            }
        }
    }
    Err(Error::Unavailable(format!(
        "{} {} of account {account_id}: still incomplete after {MAX_DAY_ATTEMPTS} fetches ({problem})",
        S::NAME,
        day.date
    )))
}

/// The day's rows with one row per key, the last received winning.
fn distinct<S: Stream>(rows: Vec<S::Row>) -> Vec<S::Row> {
    let mut seen = HashSet::new();
    let mut out: Vec<S::Row> = rows
        .into_iter()
        .rev()
        .filter(|r| seen.insert(S::key(r).to_string()))
        .collect();
    out.reverse();
    out
}

/// The days handed out to fetchers: at most `lookahead` ahead of the last commit.
struct DayQueue {
    state: Mutex<(usize, usize, bool)>, // (next to fetch, next to commit, closed)
    moved: Condvar,
}

impl DayQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize, bool)> {
        // Three numbers; a panic elsewhere cannot leave them half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, days: usize, lookahead: usize, stop: &Stop) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.2 || stop.signal().is_some() || state.0 >= days {
                return None;
            }
            if state.0 < state.1 + lookahead {
                state.0 += 1;
                return Some(state.0 - 1);
            }
            state = self
                .moved
                .wait_timeout(state, crate::stop::TICK)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn committed(&self, next: usize) {
        self.lock().1 = next;
        self.moved.notify_all();
    }

    fn close(&self) {
        self.lock().2 = true;
        self.moved.notify_all();
    }
}

/// Sync one stream of one account: plan its days from its checkpoint, fetch them several at a
/// time on the stream's budget, commit them in order on its own connection. A day that fails
/// for good ends the stream after the days before it commit. The account's lock is held by the
/// run's connection for the whole run.
pub fn sync_stream<S: Stream>(ctx: &StreamContext<'_>, account_id: &str) -> StreamOutcome {
    let mut stats = StreamStats::default();
    let result = run_stream::<S>(ctx, account_id, &mut stats);
    StreamOutcome { stats, result }
}

fn run_stream<S: Stream>(
    ctx: &StreamContext<'_>,
    account_id: &str,
    stats: &mut StreamStats,
) -> Result<(), Error> {
    let config = ctx.config;
    let mut store = Store::connect(config.database(), ctx.stop)?;
    store.set_application_name(&format!("douyin-order-sync {}", S::NAME))?;
    let key = checkpoint_key(config, S::NAME, S::TIME_FIELD, account_id);
    let checkpoint = store.checkpoint(&key)?;
    let plan: Plan =
        sync::plan_with_lookback(config, key, checkpoint, ctx.now, S::lookback_secs(config));
    if let (Some(first), Some(last)) = (plan.days.first(), plan.days.last()) {
        stats.window = Some((first.span.start, last.span.end));
        log::info!(
            "account {account_id}: {} {} .. {} ({}){}",
            S::NAME,
            first.date,
            last.date,
            sync::count(plan.days.len() as u64, "day"),
            match plan.resumed_from {
                Some(t) => format!(", resuming after {}", crate::window::format_local(t)),
                None => String::new(),
            }
        );
    }
    if plan.days.is_empty() {
        return Ok(());
    }
    // A day's pages follow each other (each needs the last one's cursor), so the budget is kept
    // busy by several days at once; with as many days in flight as possible they also finish
    // together, instead of the last ones running alone at a fraction of the budget.
    let workers = (S::budget(config) as usize)
        .clamp(1, 16)
        .min(plan.days.len());
    let lookahead = workers * 2;
    let queue = DayQueue {
        state: Mutex::new((0, 0, false)),
        moved: Condvar::new(),
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<DayResult<S::Row>>(lookahead);
        for i in 0..workers {
            let tx = tx.clone();
            let (queue, plan) = (&queue, &plan);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{i}", S::NAME))
                .spawn_scoped(scope, move || {
                    while let Some(d) = queue.take(plan.days.len(), lookahead, ctx.stop) {
                        let result = fetch_day::<S>(ctx, account_id, &plan.days[d]);
                        let failed = result.is_err();
                        if tx.send((d, result)).is_err() || failed {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                queue.close();
                return Err(Error::Bug(format!("cannot start a fetcher thread: {e}")));
            }
        }
        drop(tx);
        let result = commit_in_order::<S>(ctx, &mut store, &plan, &queue, &rx, stats, started);
        queue.close();
        result
    })
}

/// The coordinator: commit fetched days in day order, each in one transaction with the
/// checkpoint; stop at the first day that failed (the days before it commit).
fn commit_in_order<S: Stream>(
    ctx: &StreamContext<'_>,
    store: &mut Store,
    plan: &Plan,
    queue: &DayQueue,
    rx: &mpsc::Receiver<DayResult<S::Row>>,
    stats: &mut StreamStats,
    started: Instant,
) -> Result<(), Error> {
    let mut ready: BTreeMap<usize, Result<FetchedDay<S::Row>, Error>> = BTreeMap::new();
    let mut next = 0;
    let n = plan.days.len();
    while next < n {
        ctx.stop.check()?;
        if ctx.stop.held() {
            // A remote STOP (task_monitor): the committed days stay, the rest waits for a run.
            return Ok(());
        }
        if let Some(result) = ready.remove(&next) {
            let fetched = result?;
            let day = &plan.days[next];
            let range_done = plan.range_end.is_some_and(|end| day.span.end >= end);
            let stored: Vec<&str> = fetched.rows.iter().map(S::key).collect();
            let write = store.commit_stream_day(
                &plan.key,
                Checkpoint {
                    synced_until: day.span.end,
                    range_done,
                },
                plan.range_end.is_none(),
                (day.date.as_str(), &stored, &fetched.rejected),
                |tx| S::write(tx, &plan.key.account_id, day.span, &fetched.rows),
            )?;
            for r in fetched.rejected.iter().take(20) {
                log::warn!(
                    stream = S::NAME, day = day.date.as_str(), account = plan.key.account_id.as_str();
                    "{} {}: {} quarantined in rejected_records: {}",
                    S::NAME,
                    day.date,
                    r.order_id.as_deref().map_or_else(
                        || "a record without a usable id".to_string(),
                        |id| format!("record {}", crate::order::printable(id, 64))
                    ),
                    r.reason
                );
            }
            next += 1;
            queue.committed(next);
            ctx.stop.day_committed();
            log_day::<S>(plan, next, &fetched, write, stats, started);
            continue;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((d, result)) => {
                ready.insert(d, result);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                ctx.stop.check()?;
                return Err(Error::Bug(format!("every {} fetcher stopped", S::NAME)));
            }
        }
    }
    Ok(())
}

fn log_day<S: Stream>(
    plan: &Plan,
    k: usize,
    fetched: &FetchedDay<S::Row>,
    write: DayWrite,
    stats: &mut StreamStats,
    started: Instant,
) {
    let day = &plan.days[k - 1];
    let n = plan.days.len();
    stats.days += 1;
    stats.records += write.orders;
    stats.inserted += write.inserted;
    stats.updated += write.updated;
    stats.pages += fetched.pages;
    stats.refetches += fetched.refetches;
    stats.rejected += write.rejected;
    let elapsed = started.elapsed().as_secs_f64();
    let left = elapsed / k as f64 * (n - k) as f64;
    log::info!(
        stream = S::NAME, day = day.date.as_str(), account = plan.key.account_id.as_str(),
        records = write.orders, inserted = write.inserted, updated = write.updated,
        pages = fetched.pages, seconds = fetched.started.elapsed().as_secs_f64(),
        day_index = k as u64, days = n as u64;
        "{} {}: {} ({} new, {} changed{}), {}, {:.1} s; day {k} of {n}{}",
        S::NAME,
        day.date,
        sync::count(write.orders, S::NOUN),
        write.inserted,
        write.updated,
        if write.rejected > 0 {
            format!(", {} quarantined", write.rejected)
        } else {
            String::new()
        },
        sync::count(fetched.pages, "page"),
        fetched.started.elapsed().as_secs_f64(),
        if k < n { format!(", ~{} left", sync::human_duration(left)) } else { String::new() }
    );
}

/// A page of an answer paged by `data.cursor` + `data.has_more` (refunds, the ledger): its
/// records split into rows and rejections, and the next cursor while `has_more`. When an answer
/// lacks `has_more` (never seen), a full page (`page_size` records) with a cursor asks for the
/// next one: the frame's cursor guard stops a cursor that does not advance, and an empty page
/// ends the day.
pub fn cursor_page<R>(
    raws: &[Box<serde_json::value::RawValue>],
    cursor: Option<&serde_json::Value>,
    has_more: Option<&serde_json::Value>,
    page_size: u32,
    extract: impl Fn(&serde_json::value::RawValue) -> Result<R, crate::order::Rejected>,
) -> Result<Page<R>, String> {
    let full = raws.len() >= page_size as usize;
    let mut rows = Vec::with_capacity(raws.len());
    let mut rejected = Vec::new();
    for raw in raws {
        match extract(raw) {
            Ok(row) => rows.push(row),
            Err(r) => rejected.push(r),
        }
    }
    let next = match (bool_of(has_more), text_of(cursor)) {
        (Some(true), Some(c)) => Next::Cursor(c),
        (Some(true), None) => return Err("has_more is true but there is no data.cursor".into()),
        (None, Some(c)) if full => Next::Cursor(c),
        _ => Next::Done,
    };
    Ok(Page {
        rows,
        rejected,
        total: None,
        next,
    })
}

/// A JSON value read as text: a string as is, a number as its digits; None when absent,
/// null or "".
pub fn text_of(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON value read as an integer: a number or a numeric string.
pub fn int_of(v: Option<&serde_json::Value>) -> Option<i64> {
    let v = v?;
    serde_json::from_value::<crate::douyin::Num>(v.clone())
        .ok()
        .and_then(|n| n.as_i64())
}

/// A JSON value read as a boolean: true/false, 1/0, "true"/"false", "1"/"0".
pub fn bool_of(v: Option<&serde_json::Value>) -> Option<bool> {
    match v? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_i64().map(|n| n != 0),
        serde_json::Value::String(s) => match s.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_parse_from_a_comma_separated_list_or_all() {
        assert_eq!(
            StreamKind::parse_list("orders").unwrap(),
            vec![StreamKind::Orders]
        );
        assert_eq!(
            StreamKind::parse_list(" verifications , orders,orders").unwrap(),
            vec![StreamKind::Orders, StreamKind::Verifications]
        );
        assert_eq!(StreamKind::parse_list("all").unwrap(), StreamKind::ALL);
        assert!(StreamKind::parse_list("refundz")
            .unwrap_err()
            .contains("refundz"));
        assert!(StreamKind::parse_list(" , ").is_err());
    }

    #[test]
    fn values_are_read_leniently() {
        use serde_json::json;
        assert_eq!(text_of(Some(&json!(123))), Some("123".into()));
        assert_eq!(text_of(Some(&json!(""))), None);
        assert_eq!(int_of(Some(&json!("12900"))), Some(12900));
        assert_eq!(int_of(Some(&json!(7))), Some(7));
        assert_eq!(int_of(Some(&json!("x"))), None);
        assert_eq!(bool_of(Some(&json!("false"))), Some(false));
        assert_eq!(bool_of(Some(&json!(1))), Some(true));
        assert_eq!(bool_of(None), None);
    }
}
