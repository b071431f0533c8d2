//! Streams: the datasets a run can sync, each described by what differs from the others, with
//! everything else shared by the pipeline (`sync`): day slices in Asia/Shanghai, a checkpoint
//! row per stream, several days fetched at once on the stream's own QPS budget, each day
//! committed in order in one transaction with its checkpoint, retries and token refresh (in
//! `douyin`), a lost database connection re-established, signals.
//!
//! A cursor-paged dataset (verifications, refunds, settlements) is a [`Stream`]: its endpoint
//! and budget, how a day becomes a request and an answer its next one, the rows an answer
//! yields, its key, its table and upsert, its lookback. [`Paged`] runs any [`Stream`] on the
//! pipeline (a day is one page after the other, checked against the answer's total, fetched
//! again when it does not match or the cursor stops advancing). `orders` (page-number paging
//! split by time, staged COPY, phones, coupons) does not fit that shape and describes itself to
//! the pipeline directly, in [`orders`].
//!
//! A new stream is one file here (a [`Stream`] impl), a variant in [`StreamKind`] (and its
//! three `match`es), one migration (`sql/NNNN_*.sql`, registered in `store::MIGRATIONS`), and
//! its settings (budget, lookback) in `config` and `cli`'s help.

pub mod orders;
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
use crate::store::{CheckpointKey, DayWrite, Store};
use crate::sync::{self, CommitFn, DaySource, Lane, Plan};
use crate::window::Span;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

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

    /// Sync this stream for one account (not for `orders`, which runs on the run's own
    /// connection: `orders::sync_days`).
    pub fn sync_account(self, ctx: &StreamContext<'_>, account_id: &str) -> StreamOutcome {
        match self {
            StreamKind::Orders => StreamOutcome {
                stats: StreamStats::default(),
                result: Err(Error::Bug(
                    "the orders stream runs through streams::orders::sync_days".into(),
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

/// What one stream of one account did (the same counts as the orders stream's).
pub type StreamStats = sync::Stats;

/// How one stream of one account ended, and what it committed before.
#[derive(Debug)]
pub struct StreamOutcome {
    pub stats: StreamStats,
    pub result: Result<(), Error>,
}

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

/// Sync one stream of one account: plan its days from its checkpoint, fetch them several at a
/// time on the stream's budget, commit them in order on its own connection (the shared
/// pipeline, `sync`). A day that fails for good ends the stream after the days before it
/// commit; a lost connection is re-established and the uncommitted days fetched again. The
/// account's lock is held by the run's connection for the whole run.
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
    store.set_application_name(&application_name::<S>())?;
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
    let fetch = Arc::new(PagedFetch {
        douyin: Arc::clone(ctx.douyin),
        pacer: Arc::clone(ctx.pacer),
        account_id: account_id.to_string(),
        stop: ctx.stop.clone(),
    });
    let source = Paged::<S> {
        account_id: account_id.to_string(),
        stream: PhantomData,
    };
    sync::run(config, source, fetch, &mut store, &plan, ctx.stop, stats)
}

fn application_name<S: Stream>() -> String {
    format!("douyin-order-sync {}", S::NAME)
}

/// A [`Stream`] as the pipeline runs it. A day's pages follow each other (each needs the last
/// one's cursor), so a fetcher reads a whole day, page after page ([`fetch_day`]), and hands it
/// over complete: days are fetched in parallel, each by one fetcher from its first page to its
/// last (a failure, such as an exhausted quota, leaves the days before it whole to commit).
pub(crate) struct Paged<S> {
    account_id: String,
    stream: PhantomData<fn() -> S>,
}

/// What a stream's fetchers share.
pub(crate) struct PagedFetch {
    douyin: Arc<Douyin>,
    pacer: Arc<Pacer>,
    account_id: String,
    stop: Stop,
}

/// A day for a fetcher: its span and its date (for the log).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DayJob {
    span: Span,
    date: String,
}

/// A fetched day: its distinct rows and the pages it took.
pub(crate) struct FetchedDay<R> {
    rows: Vec<R>,
    rejected: Vec<Rejected>,
    pages: u64,
    refetches: u64,
    started: Instant,
}

/// A day as the coordinator keeps it: fetched or not yet.
pub(crate) struct PagedDay<R> {
    fetched: Option<FetchedDay<R>>,
    /// Once sealed: (who, why) of each quarantined record, for the log once committed.
    rejected_log: Vec<(String, String)>,
}

impl<S: Stream> DaySource for Paged<S> {
    /// A whole day: a fetcher reads it from its first page to its last.
    type Job = DayJob;
    type Answer = FetchedDay<S::Row>;
    type Fetch = PagedFetch;
    type Day = PagedDay<S::Row>;
    const THREAD: &'static str = S::NAME;
    const STAGES: bool = false;

    fn fetch(fetch: &PagedFetch, day: &DayJob) -> Result<FetchedDay<S::Row>, Error> {
        fetch_day::<S>(fetch, day)
    }

    fn shape(&self, config: &Config, days: usize) -> (usize, usize) {
        // A day's pages follow each other, so the budget is kept busy by several days at once;
        // with as many days in flight as possible they also finish together, instead of the
        // last ones running alone at a fraction of the budget.
        let workers = (S::budget(config) as usize).clamp(1, 16).min(days);
        (workers, workers * 2)
    }

    fn begin(
        &mut self,
        lane: &mut Lane<'_, PagedDay<S::Row>>,
        d: usize,
        jobs: &mut Vec<DayJob>,
    ) -> Result<PagedDay<S::Row>, Error> {
        let day = &lane.plan.days[d];
        jobs.push(DayJob {
            span: day.span,
            date: day.date.clone(),
        });
        Ok(PagedDay {
            fetched: None,
            rejected_log: Vec::new(),
        })
    }

    fn answer(
        &mut self,
        lane: &mut Lane<'_, PagedDay<S::Row>>,
        d: usize,
        _day: DayJob,
        fetched: FetchedDay<S::Row>,
        _jobs: &mut Vec<DayJob>,
    ) -> Result<Result<(), Error>, Error> {
        if let Some(day) = lane.day(d) {
            day.fetched = Some(fetched);
        }
        Ok(Ok(()))
    }

    fn complete(&self, day: &PagedDay<S::Row>) -> bool {
        day.fetched.is_some()
    }

    fn seal(&mut self, lane: &mut Lane<'_, PagedDay<S::Row>>, d: usize) -> Result<CommitFn, Error> {
        let date = lane.plan.days[d].date.clone();
        let span = lane.plan.days[d].span;
        let account = self.account_id.clone();
        let Some(day) = lane.day(d) else {
            return Err(Error::Bug(format!("{} day {d} is not open", S::NAME)));
        };
        let Some(fetched) = day.fetched.as_mut() else {
            return Err(Error::Bug(format!("{} day {d} sealed unfetched", S::NAME)));
        };
        let rows = std::mem::take(&mut fetched.rows);
        let rejected = std::mem::take(&mut fetched.rejected);
        day.rejected_log = sync::quarantine_log(&rejected, |r| {
            r.order_id.as_deref().map_or_else(
                || "a record without a usable id".to_string(),
                |id| format!("record {}", crate::order::printable(id, 64)),
            )
        });
        Ok(Box::new(move |store, key, checkpoint, monotonic| {
            let stored: Vec<&str> = rows.iter().map(S::key).collect();
            store.commit_stream_day(
                key,
                checkpoint,
                monotonic,
                (date.as_str(), &stored, &rejected),
                |tx| S::write(tx, &account, span, &rows),
            )
        }))
    }

    fn tally(day: &PagedDay<S::Row>) -> (u64, u64) {
        day.fetched
            .as_ref()
            .map_or((0, 0), |f| (f.pages, f.refetches))
    }

    fn log_day(
        &self,
        plan: &Plan,
        d: usize,
        state: &PagedDay<S::Row>,
        write: &DayWrite,
        _stats: &StreamStats,
        left: f64,
    ) {
        let day = &plan.days[d];
        let (n, k) = (plan.days.len(), d + 1);
        let (pages, started) = state
            .fetched
            .as_ref()
            .map_or((0, None), |f| (f.pages, Some(f.started)));
        let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        sync::warn_quarantined(
            S::NAME,
            &day.date,
            &self.account_id,
            &format!("{} {}", S::NAME, day.date),
            &state.rejected_log,
        );
        log::info!(
            stream = S::NAME, day = day.date.as_str(), account = self.account_id.as_str(),
            records = write.orders, inserted = write.inserted, updated = write.updated,
            pages = pages, seconds = seconds,
            day_index = k as u64, days = n as u64;
            "{} {}: {}{}",
            S::NAME,
            day.date,
            sync::day_summary(S::NOUN, write, pages, seconds, k, n),
            if k < n { format!(", ~{} left", sync::human_duration(left)) } else { String::new() }
        );
    }

    fn reconnected(&mut self, store: &mut Store) -> Result<(), Error> {
        store.set_application_name(&application_name::<S>())
    }
}

/// Fetch a whole day: page after page until the stream says done, then check it against
/// the answer's total; fetch it again when it does not match or the cursor stops advancing.
fn fetch_day<S: Stream>(ctx: &PagedFetch, day: &DayJob) -> Result<FetchedDay<S::Row>, Error> {
    let account_id = ctx.account_id.as_str();
    let (span, date) = (day.span, day.date.as_str());
    let started = Instant::now();
    let mut pages = 0;
    let mut problem = String::new();
    for attempt in 0..MAX_DAY_ATTEMPTS {
        if attempt > 0 {
            log::warn!(
                "{} {date} of account {account_id}: {problem}; fetching the day again ({}/{})",
                S::NAME,
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
            let params = S::request(account_id, span, cursor.as_deref());
            let answer = ctx.douyin.get(&ctx.pacer, S::NAME, S::ENDPOINT, &params)?;
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
        if problem.is_empty() {
            let received = received::<S>(&rows, &rejected);
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
        "{} {date} of account {account_id}: still incomplete after {MAX_DAY_ATTEMPTS} fetches ({problem})",
        S::NAME,
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

/// The distinct records of a day: its rows, and its quarantined records (by their id, or each
/// once when they have none) that are not among the rows.
fn received<S: Stream>(rows: &[S::Row], rejected: &[Rejected]) -> usize {
    let rejected_ids: HashSet<&str> = rejected
        .iter()
        .filter_map(|r| r.order_id.as_deref())
        .collect();
    let unkeyed = rejected.iter().filter(|r| r.order_id.is_none()).count();
    rows.len()
        + rejected_ids
            .iter()
            .filter(|id| !rows.iter().any(|r| S::key(r) == **id))
            .count()
        + unkeyed
}

/// One field of every row of a day, as an array parameter of a stream's upsert (`unnest`).
macro_rules! column {
    ($rows:expr, $field:ident) => {
        $rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
    };
}
pub(crate) use column;

/// Run a stream's upsert of a day's `records` rows and count what it did: `with_up` is
/// `WITH up AS (INSERT … ON CONFLICT … DO UPDATE … WHERE changed RETURNING (xmax = 0) AS
/// inserted)`, an unchanged record is not returned.
pub(crate) fn upsert(
    tx: &mut postgres::Transaction<'_>,
    with_up: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    records: usize,
) -> Result<DayWrite, postgres::Error> {
    let row = tx.query_one(
        &format!(
            "{with_up}\n SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        ),
        params,
    )?;
    Ok(DayWrite {
        orders: records as u64,
        inserted: row.get::<_, i64>(0) as u64,
        updated: row.get::<_, i64>(1) as u64,
        rejected: 0,
    })
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
