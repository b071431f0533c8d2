//! One account's sync: the plan (the window cut into days) and the pipeline that fills each day,
//! the only module that knows both Douyin and PostgreSQL.
//!
//! Fetcher threads take page requests from a priority queue (earliest day first), pace, fetch,
//! decrypt and parse them, and hand whole pages to the coordinator (this thread) over a bounded
//! channel. The coordinator decides what to ask next, buffers rows and hands them in batches to
//! the *stager* (a thread with its own connection that COPYs them into the day's staging table),
//! and seals each complete day, in order. The stager passes sealed days to the *committer* (a
//! thread on the run's own connection, which holds the account's lock), which commits each in one
//! transaction with its checkpoint and reports back. The coordinator never waits on PostgreSQL;
//! fetchers run ahead by a bounded number of days; memory holds the pages in flight and a bounded
//! number of buffered rows. Every thread reports its end to the coordinator at once (a failed
//! COPY, a failed commit, a panic), and the coordinator also notices a stager or committer that
//! ended without a word, so no failure leaves it waiting for a day that never comes.
//!
//! Completeness: a day is first asked whole. When `data.page.total` says a slice holds more than
//! the API will page to (`page_num × page_size ≤ 10000`), the slice is cut in two by time and each
//! half asked again, recursively. Only a single second that holds more than that is paged by the
//! `search_after` cursor (one page after the other, sent as the SDK's JSON array), guarded
//! against a cursor that stops advancing. A slice is
//! complete when the distinct records received (by `order_id` as received) equal its `total` and
//! every page reported the same total; otherwise (rows shifted between pages, the total moved) it
//! is fetched again. A slice that comes back the same way [`STABLE_ANSWERS`] times with at least
//! `total` records, some of them repeated (Douyin lists an order twice), is accepted with a
//! warning: fetching it again would not change it.
//!
//! Quarantine: a record that cannot be stored as it is (see `order`) does not stop its day. It is
//! kept with its day and written to `rejected_records` in the day's transaction, with a warning
//! naming its id and the reason once the day is committed.

use crate::config::{Config, TimeField};
use crate::crypto::{is_platform_cipher, PhoneCipher};
use crate::douyin::{Douyin, OrderQuery, DECRYPT_BATCH};
use crate::error::Error;
use crate::order::{extract, OrderRow, Rejected};
use crate::phones::PhoneBook;
use crate::stop::Stop;
use crate::store::{Checkpoint, CheckpointKey, DayWrite, Stage, Store};
use crate::window::{self, Span};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a slice may be fetched again because it came back inconsistent.
const MAX_SLICE_ATTEMPTS: u32 = 6;
/// Identical answers after which a slice whose count check fails because records are repeated is
/// accepted as it is.
const STABLE_ANSWERS: u32 = 3;
/// Quarantined records named one by one in the log per day; the rest are counted.
const REJECTED_LOGGED: usize = 20;
/// Rows COPied into a day's staging table at once (one COPY per page would cost a round trip
/// each).
const STAGE_BATCH: usize = 1000;
/// Rows held in memory across all days before the fullest buffer is flushed: bounds memory
/// whatever the size of a day (a row is ~2 KB).
const MAX_BUFFERED: usize = 3000;
/// The API refuses `page_num × page_size` above this.
const PAGE_LIMIT: u64 = 10_000;

/// What one account's sync did.
#[derive(Debug, Default, Clone)]
pub struct AccountStats {
    pub days: usize,
    pub orders: u64,
    pub inserted: u64,
    pub updated: u64,
    pub pages: u64,
    pub refetches: u64,
    /// Records quarantined in `rejected_records` (committed with their day).
    pub rejected: u64,
    /// The span of the planned days, for the run history.
    pub window: Option<(i64, i64)>,
}

// The plan of a stream's days, and the helpers of its log lines, are the frame's (shared by
// every stream); re-exported here for the orders pipeline's callers.
pub use crate::streams::plan::{
    checkpoint_key, count, human_duration, now_epoch, plan, plan_with_lookback, Plan,
};

/// A request for a fetcher: a page of a slice, or (page 0, so that it goes first within its
/// day) a batch of platform ciphertexts to decrypt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    day: usize,
    page: u32,
    slice: usize,
    attempt: u32,
    generation: u64,
    span: Span,
    /// (order id, `Enc.` ciphertext) to decrypt; empty for a page request.
    phones: Vec<(String, String)>,
    /// Deep paging of a one-second slice: the previous page's `search_after` cursor.
    cursor: Option<Vec<String>>,
}

/// What a fetcher hands back.
struct Fetched {
    job: Job,
    result: Result<Outcome, Error>,
}

enum Outcome {
    Page(PageRows),
    /// (order id, phone if decrypted).
    Phones(Vec<(String, Option<String>)>),
}

struct PageRows {
    rows: Vec<OrderRow>,
    /// Records that cannot be stored as they are (quarantined with their day).
    rejected: Vec<Rejected>,
    total: u64,
    cursor: Option<Vec<String>>,
}

/// The fetchers' work queue: a priority queue (earliest day, then lowest page first).
#[derive(Default)]
struct JobQueue {
    state: Mutex<(BinaryHeap<Reverse<Job>>, bool)>,
    ready: Condvar,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (BinaryHeap<Reverse<Job>>, bool)> {
        // The state is a heap and a flag; a panic elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().0.push(Reverse(job));
        self.ready.notify_one();
    }

    /// Drop the queued jobs of days from `day` on.
    fn drop_from(&self, day: usize) {
        self.lock().0.retain(|Reverse(job)| job.day < day);
    }

    fn clear(&self) {
        self.lock().0.clear();
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }

    /// The next job, or None once the queue is closed or a signal arrived.
    fn pop(&self, stop: &Stop) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.1 || stop.signal().is_some() {
                return None;
            }
            if let Some(Reverse(job)) = state.0.pop() {
                return Some(job);
            }
            state = self
                .ready
                .wait_timeout(state, crate::stop::TICK)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// What every fetcher needs, shared.
struct FetchContext {
    douyin: Arc<Douyin>,
    /// Stored phones, the decrypt endpoint, and the run's phone warnings.
    phones: Arc<PhoneBook>,
    cipher: Option<PhoneCipher>,
    account_id: String,
    time_field: TimeField,
    page_size: u32,
    order_status: Option<i64>,
    get_secret_number: bool,
    stop: Stop,
}

impl FetchContext {
    fn work(&self, job: &Job) -> Result<Outcome, Error> {
        if job.phones.is_empty() {
            self.fetch(job).map(Outcome::Page)
        } else {
            self.decrypt_platform(&job.phones).map(Outcome::Phones)
        }
    }

    fn fetch(&self, job: &Job) -> Result<PageRows, Error> {
        let page = self.douyin.query_orders(&OrderQuery {
            account_id: &self.account_id,
            span: job.span,
            time_field: self.time_field,
            // With a cursor the position is the cursor's; the page number stays 1 so that
            // `page_num × page_size` stays within the API's limit.
            page_num: if job.cursor.is_some() { 1 } else { job.page },
            page_size: self.page_size,
            order_status: self.order_status,
            get_secret_number: self.get_secret_number,
            cursor: job.cursor.as_deref(),
        })?;
        let mut rows = Vec::with_capacity(page.orders.len());
        let mut rejected = Vec::new();
        for raw in page.orders {
            match extract(raw) {
                Ok(row) => rows.push(row),
                Err(r) => rejected.push(r),
            }
        }
        self.decrypt_legacy(&mut rows);
        self.phones.reuse_stored(&mut rows);
        Ok(PageRows {
            rows,
            rejected,
            total: page.total,
            cursor: page.cursor,
        })
    }

    /// Fill `phone` from a legacy `phone_encrypt`, locally. A phone that cannot be decrypted
    /// stays NULL (counted for the run's warning). `Enc.` forms are left for the coordinator,
    /// which batches them across pages (50 a call: the endpoint has a daily quota).
    fn decrypt_legacy(&self, rows: &mut [OrderRow]) {
        for row in rows.iter_mut() {
            let Some(cipher_text) = row.phone_encrypt.as_deref() else {
                continue;
            };
            if is_platform_cipher(cipher_text) {
                continue;
            }
            match self.cipher.as_ref().map(|c| c.decrypt(cipher_text)) {
                Some(Ok(phone)) if storable_phone(&phone) => row.phone = Some(phone),
                Some(Ok(_)) => self
                    .phones
                    .not_decrypted(&row.order_id, "the plaintext is not a phone number"),
                Some(Err(e)) => self.phones.not_decrypted(&row.order_id, &e.to_string()),
                None => self
                    .phones
                    .not_decrypted(&row.order_id, "AppSecret cannot be used as an AES key"),
            }
        }
    }

    /// Decrypt `Enc.` phones through the batch endpoint. A failure leaves the phones NULL
    /// (counted for the run's warning); only a signal stops the run from here.
    fn decrypt_platform(
        &self,
        phones: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let decrypted = self
            .phones
            .decrypt(&self.douyin, &self.account_id, phones)?;
        self.stop.check()?;
        Ok(decrypted)
    }
}

/// A decrypted phone the `phone` column (text, btree-indexed) can hold.
pub(crate) fn storable_phone(phone: &str) -> bool {
    !phone.contains('\0') && phone.len() <= crate::order::MAX_KEY_BYTES
}

fn fetcher(ctx: Arc<FetchContext>, queue: Arc<JobQueue>, results: SyncSender<Event>) {
    let _alarm = PanicAlarm {
        events: results.clone(),
        thread: "fetcher",
        alive: None,
    };
    while let Some(job) = queue.pop(&ctx.stop) {
        let result = ctx.work(&job);
        if results
            .send(Event::Fetched(Fetched { job, result }))
            .is_err()
        {
            return; // the coordinator is gone (error or signal)
        }
    }
}

#[derive(Debug)]
struct SliceState {
    span: Span,
    attempt: u32,
    total: Option<u64>,
    expected_pages: u32,
    received_pages: u32,
    /// Distinct records received in this attempt: `order_id` as received (see [`record_key`]).
    ids: HashSet<RecordKey>,
    /// Records received in this attempt, repeated ones included.
    entries: u64,
    /// The last failed count check, as (total, distinct, entries, fingerprint of the distinct
    /// records), and how many answers in a row failed it exactly so.
    mismatch: Option<(u64, u64, u64, u64)>,
    same_mismatch: u32,
    /// Replaced by its two halves.
    split: bool,
    /// One second with more orders than offset paging reaches: paged by cursor, one page
    /// after the other.
    by_cursor: bool,
    done: bool,
}

impl SliceState {
    fn new(span: Span) -> SliceState {
        SliceState {
            span,
            attempt: 0,
            total: None,
            expected_pages: 0,
            received_pages: 0,
            ids: HashSet::new(),
            entries: 0,
            mismatch: None,
            same_mismatch: 0,
            split: false,
            by_cursor: false,
            done: false,
        }
    }
}

#[derive(Debug)]
struct DayState {
    slices: Vec<SliceState>,
    open_slices: usize,
    /// `Enc.` phones staged but not yet sent to the decrypt endpoint: (order id, ciphertext).
    pending_phones: Vec<(String, String)>,
    /// Orders whose `Enc.` phone was queued already (a slice fetched twice stages them twice).
    queued_phones: HashSet<String>,
    decrypts_in_flight: usize,
    /// Rows received but not yet COPied into the staging table (COPY in batches).
    buffer: Vec<OrderRow>,
    /// Quarantined records of the day, one per record (a slice fetched twice sends them twice).
    rejected: HashMap<RecordKey, Rejected>,
    /// Once sealed: (who, why) of each quarantined record, for the log once committed.
    rejected_log: Vec<(String, String)>,
    pages: u64,
    refetches: u64,
    started: Instant,
}

/// A record for the completeness count and the quarantine: its `order_id` exactly as received
/// (`"+5"`, `"05"` and `5` are three orders), or its whole text when it has no usable id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RecordKey {
    Id(String),
    Text(String),
}

/// The same for the same set of records, whatever their order (orders shifting between pages
/// while a busy merchant updates them give a different set each time: not a stable answer).
fn fingerprint(keys: &HashSet<RecordKey>) -> u64 {
    use std::hash::{Hash, Hasher};
    keys.iter().fold(0u64, |sum, key| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        sum.wrapping_add(h.finish())
    })
}

fn record_key(rejected: &Rejected) -> RecordKey {
    match &rejected.order_id {
        Some(id) => RecordKey::Id(id.clone()),
        None => RecordKey::Text(rejected.raw.get().to_string()),
    }
}

/// What the coordinator hears about: a fetcher's page or decryption, a committed day, or a
/// thread of the pipeline that stopped for good.
enum Event {
    /// The stager failed (its error is in its slot), or a thread panicked (`error`). A
    /// `generation` is that of the stager's segment; `None` concerns every segment.
    Stopped {
        generation: Option<u64>,
        error: Option<Error>,
    },
    Fetched(Fetched),
    Committed {
        generation: u64,
        day: usize,
        result: Result<DayWrite, Error>,
        seconds: f64,
    },
}

/// A complete day to commit.
struct CommitCmd {
    generation: u64,
    day: usize,
    /// The day's date (Asia/Shanghai), for `rejected_records`.
    date: String,
    stage: Stage,
    /// Records quarantined with the day.
    rejected: Vec<Rejected>,
    checkpoint: Checkpoint,
    monotonic: bool,
}

/// What the stager thread does, in the order sent.
enum StageCmd {
    Begin(Stage),
    Rows(Stage, Vec<OrderRow>),
    Phones(Stage, Vec<(String, String)>),
    /// Every row of the day is staged: hand it to the committer (in the same order as sent,
    /// so after all of its rows).
    Seal(CommitCmd),
}

/// Tells the coordinator when the thread it lives in ends: `alive` goes false on any exit, and
/// a panic is reported as an event at once, so that no wait is left hanging on an answer that
/// will never come.
struct PanicAlarm {
    events: SyncSender<Event>,
    thread: &'static str,
    alive: Option<Arc<AtomicBool>>,
}

impl Drop for PanicAlarm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The coordinator drains events until it returns, then the send fails: bounded.
            let _ = self.events.send(Event::Stopped {
                generation: None,
                error: Some(Error::Bug(format!("the {} thread panicked", self.thread))),
            });
        }
        if let Some(alive) = &self.alive {
            alive.store(false, Ordering::SeqCst);
        }
    }
}

/// The second database connection: streams pages into staging tables while the run's own
/// connection (the committer, which holds the account's lock) commits days. PostgreSQL's work
/// is spread over two backends and the coordinator never waits for either.
struct Stager {
    commands: SyncSender<StageCmd>,
    failure: Arc<Mutex<Option<Error>>>,
    /// False once the thread has ended, however.
    alive: Arc<AtomicBool>,
}

impl Stager {
    /// Connect and start the thread. A failure is kept in the slot and announced to the
    /// coordinator at once (`Event::Stopped`), whatever the coordinator is waiting for.
    fn start(
        config: &Config,
        commits: SyncSender<CommitCmd>,
        events: SyncSender<Event>,
        generation: u64,
        stop: &Stop,
    ) -> Result<Stager, Error> {
        let mut store = Store::connect(config.database(), stop)?;
        store.set_application_name("douyin-order-sync stage")?;
        let (commands, received) = mpsc::sync_channel::<StageCmd>(12);
        let failure = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&failure);
        let alive = Arc::new(AtomicBool::new(true));
        let alarm = PanicAlarm {
            events: events.clone(),
            thread: "staging",
            alive: Some(Arc::clone(&alive)),
        };
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("stage".into())
            .spawn(move || {
                let _alarm = alarm;
                for command in received {
                    if stop.signal().is_some() {
                        return;
                    }
                    let done = match command {
                        StageCmd::Begin(stage) => store.stage_begin(&stage),
                        StageCmd::Rows(stage, rows) => store.stage_rows(&stage, &rows),
                        StageCmd::Phones(stage, phones) => store.stage_phones(&stage, &phones),
                        StageCmd::Seal(commit) => {
                            if commits.send(commit).is_err() {
                                return; // the committer stopped; the coordinator knows why
                            }
                            Ok(())
                        }
                    };
                    if let Err(e) = done {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        // Dropping `received` makes the coordinator's next send fail; the event
                        // reaches it even when it sends nothing more (waiting for a commit).
                        let _ = events.send(Event::Stopped {
                            generation: Some(generation),
                            error: None,
                        });
                        return;
                    }
                }
            })
            .map_err(|e| Error::Bug(format!("cannot start the staging thread: {e}")))?;
        Ok(Stager {
            commands,
            failure,
            alive,
        })
    }

    /// Hand the stager a command, waiting while its queue is full, but never past a signal.
    fn send(&self, command: StageCmd, stop: &Stop) -> Result<(), Error> {
        let mut command = command;
        loop {
            match self.commands.try_send(command) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(self.failure()),
                Err(mpsc::TrySendError::Full(c)) => {
                    stop.check()?;
                    command = c;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// Why the stager stopped.
    fn failure(&self) -> Error {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Error::Database("the staging connection stopped".into()))
    }
}

/// The committer: on the run's own connection, moves each sealed day into `orders` with its
/// checkpoint, in order, and tells the coordinator. Stops at the first error or a signal.
fn committer(
    store: &mut Store,
    account_id: &str,
    key: &CheckpointKey,
    commits: mpsc::Receiver<CommitCmd>,
    events: SyncSender<Event>,
    stop: &Stop,
    alive: Arc<AtomicBool>,
) {
    let _alarm = PanicAlarm {
        events: events.clone(),
        thread: "commit",
        alive: Some(alive),
    };
    for cmd in commits {
        if stop.signal().is_some() {
            return;
        }
        let started = Instant::now();
        let result = store.commit_day(
            &cmd.stage,
            account_id,
            key,
            cmd.checkpoint,
            cmd.monotonic,
            (&cmd.date, &cmd.rejected),
        );
        let failed = result.is_err();
        if !failed {
            stop.day_committed(); // wakes the task_monitor heartbeat
        }
        let event = Event::Committed {
            generation: cmd.generation,
            day: cmd.day,
            result,
            seconds: started.elapsed().as_secs_f64(),
        };
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

/// The coordinator of one account's days.
struct Pipeline<'a> {
    config: &'a Config,
    stop: Stop,
    /// The stager of the current segment (a segment ends at a lost connection).
    stager: Option<Stager>,
    /// Whether the committer of the current segment still runs.
    committer_alive: Arc<AtomicBool>,
    plan: &'a Plan,
    queue: Arc<JobQueue>,
    days: Vec<Option<DayState>>,
    /// Days sealed: handed to the committer.
    next_seal: usize,
    next_commit: usize,
    next_schedule: usize,
    lookahead: usize,
    generation: u64,
    stats: AccountStats,
    started: Instant,
    /// Orders a full page can hold up to the API's paging limit.
    slice_limit: u64,
    /// The first day that failed for good, and why: earlier days still complete and commit,
    /// then the run ends with this error.
    failure: Option<(usize, Error)>,
    /// Rows in all days' buffers.
    buffered: usize,
    /// Where the coordinator's time went, for the debug log.
    time_staging: Duration,
    time_committing: Duration,
    time_waiting: Duration,
}

impl Pipeline<'_> {
    /// After an error: when the database connection was lost, reconnect (with backoff), take the
    /// account's lock again and fetch every uncommitted day again (their staging tables went
    /// with the session). Any other error ends the account.
    fn stage(&self, command: StageCmd) -> Result<(), Error> {
        match &self.stager {
            Some(stager) => stager.send(command, &self.stop),
            None => Err(Error::Bug("no staging connection".into())),
        }
    }

    /// After a lost connection: fetch every uncommitted day again (their staging tables are
    /// dropped), with a new generation so that answers to the old requests are ignored.
    fn restart(&mut self) {
        self.generation += 1;
        self.queue.clear();
        for day in &mut self.days[self.next_commit..self.next_schedule] {
            *day = None;
        }
        self.next_schedule = self.next_commit;
        self.next_seal = self.next_commit;
        self.buffered = 0;
    }

    /// One event. `Err` ends the segment.
    fn on_event(&mut self, event: Event) -> Result<(), Error> {
        match event {
            Event::Fetched(fetched) => self.handle(fetched),
            Event::Stopped {
                generation: Some(g),
                ..
            } if g != self.generation => Ok(()),
            Event::Stopped { error, .. } => Err(error.unwrap_or_else(|| match &self.stager {
                Some(stager) => stager.failure(),
                None => Error::Database("the staging connection stopped".into()),
            })),
            Event::Committed { generation, .. } if generation != self.generation => Ok(()),
            Event::Committed {
                day,
                result,
                seconds,
                ..
            } => {
                let write = result?;
                if day != self.next_commit {
                    return Err(Error::Bug(format!(
                        "day {day} committed, expected {}",
                        self.next_commit
                    )));
                }
                self.committed(day, write, seconds);
                self.schedule()
            }
        }
    }

    /// The committer committed the next day.
    fn committed(&mut self, day: usize, write: DayWrite, seconds: f64) {
        self.time_committing += Duration::from_secs_f64(seconds);
        let state = self.days[day].take();
        self.next_commit += 1;
        if let Some(state) = state {
            self.log_day(day, &state, write);
        }
    }

    fn schedule(&mut self) -> Result<(), Error> {
        let end = self
            .failure
            .as_ref()
            .map_or(self.plan.days.len(), |(d, _)| *d);
        while self.next_schedule < end && self.next_schedule < self.next_commit + self.lookahead {
            let d = self.next_schedule;
            let span = self.plan.days[d].span;
            self.stage(StageCmd::Begin(Stage::new(&self.plan.key.account_id, d)))?;
            self.days[d] = Some(DayState {
                slices: vec![SliceState::new(span)],
                open_slices: 1,
                pending_phones: Vec::new(),
                queued_phones: HashSet::new(),
                decrypts_in_flight: 0,
                buffer: Vec::new(),
                rejected: HashMap::new(),
                rejected_log: Vec::new(),
                pages: 0,
                refetches: 0,
                started: Instant::now(),
            });
            self.queue.push(Job {
                day: d,
                page: 1,
                slice: 0,
                attempt: 0,
                generation: self.generation,
                span,
                phones: Vec::new(),
                cursor: None,
            });
            self.next_schedule += 1;
        }
        Ok(())
    }

    fn handle(&mut self, fetched: Fetched) -> Result<(), Error> {
        let Fetched { job, result } = fetched;
        if job.generation != self.generation {
            return Ok(()); // asked before a reconnect: its day is being fetched again
        }
        let result = match result {
            Err(e @ Error::Interrupted(_)) => return Err(e),
            Err(e) => {
                self.fail_from(job.day, e);
                return Ok(());
            }
            Ok(outcome) => outcome,
        };
        if self.failure.as_ref().is_some_and(|(d, _)| job.day >= *d) {
            return Ok(()); // a later day than the one that failed: never committed
        }
        let page = match result {
            Outcome::Page(page) => page,
            Outcome::Phones(phones) => return self.phones_decrypted(job.day, &phones),
        };
        let day_index = job.day;
        let page_size = u64::from(self.config.page_size());
        let slice_limit = self.slice_limit;
        let Some(day) = self.days.get_mut(day_index).and_then(Option::as_mut) else {
            return Ok(());
        };
        let slice_count = day.slices.len();
        let mut new_slices = Vec::new();
        let Some(slice) = day.slices.get_mut(job.slice) else {
            return Err(Error::Bug(format!("page for unknown slice {}", job.slice)));
        };
        if slice.split || slice.done || slice.attempt != job.attempt {
            return Ok(()); // a page of an abandoned attempt
        }
        day.pages += 1;
        let mut new_jobs = Vec::new();
        let mut refetch = None;
        match slice.total {
            None if page.total > slice_limit => match slice.span.halves() {
                // More than the API pages to: ask each half of the slice instead.
                Some((a, b)) => {
                    slice.split = true;
                    for half in [a, b] {
                        new_slices.push(SliceState::new(half));
                        new_jobs.push(Job {
                            day: day_index,
                            page: 1,
                            slice: slice_count + new_slices.len() - 1,
                            attempt: 0,
                            generation: job.generation,
                            span: half,
                            phones: Vec::new(),
                            cursor: None,
                        });
                    }
                    log::debug!(
                        "day {}: {} orders in {}..{}, split in two",
                        self.plan.days[day_index].date,
                        page.total,
                        window::format_local(job.span.start),
                        window::format_local(job.span.end)
                    );
                }
                // One second holds more than offset paging reaches (time-splitting cannot
                // help): page on by cursor, each page asking after the previous one's last.
                None => {
                    log::info!(
                        "day {}: {} orders within the one second {}: paging it by cursor",
                        self.plan.days[day_index].date,
                        page.total,
                        window::format_local(slice.span.start)
                    );
                    slice.total = Some(page.total);
                    slice.by_cursor = true;
                }
            },
            None => {
                slice.total = Some(page.total);
                slice.expected_pages = page.total.div_ceil(page_size).max(1) as u32;
                for p in 2..=slice.expected_pages {
                    new_jobs.push(Job {
                        page: p,
                        ..job.clone()
                    });
                }
            }
            Some(total) if total != page.total => {
                refetch = Some(format!(
                    "the total moved from {total} to {} while paging",
                    page.total
                ));
            }
            Some(_) => {}
        }
        let stage = !slice.split;
        if stage && refetch.is_none() {
            for row in &page.rows {
                slice.ids.insert(RecordKey::Id(row.order_id.clone()));
            }
            for r in &page.rejected {
                slice.ids.insert(record_key(r));
            }
            slice.entries += (page.rows.len() + page.rejected.len()) as u64;
            slice.received_pages += 1;
            if slice.by_cursor && page.rows.len() as u64 >= page_size {
                // A full page: the next one starts after its cursor, unless the cursor did
                // not move (then the slice starts again rather than loop).
                match &page.cursor {
                    Some(next) if job.cursor.as_ref() != Some(next) => new_jobs.push(Job {
                        page: job.page.saturating_add(1),
                        cursor: Some(next.clone()),
                        ..job.clone()
                    }),
                    _ => refetch = Some("the search_after cursor did not advance".to_string()),
                }
            } else if slice.by_cursor || slice.received_pages == slice.expected_pages {
                let total = slice.total.unwrap_or(0);
                let distinct = slice.ids.len() as u64;
                if distinct == total {
                    slice.done = true;
                    day.open_slices -= 1;
                } else {
                    let answer = (total, distinct, slice.entries, fingerprint(&slice.ids));
                    // Repeated records, the same way every time: asking again changes nothing.
                    if slice.entries >= total && slice.mismatch == Some(answer) {
                        slice.same_mismatch += 1;
                    } else {
                        slice.same_mismatch = 1;
                    }
                    slice.mismatch = Some(answer);
                    if slice.entries >= total && slice.same_mismatch >= STABLE_ANSWERS {
                        slice.done = true;
                        day.open_slices -= 1;
                        log::warn!(
                            "day {}: the slice {}..{} came back the same way {} times ({distinct} distinct orders in {} records, total says {total}): Douyin lists some orders more than once; accepting it",
                            self.plan.days[day_index].date,
                            window::format_local(slice.span.start),
                            window::format_local(slice.span.end),
                            slice.same_mismatch,
                            slice.entries
                        );
                    } else {
                        refetch = Some(format!(
                            "{distinct} distinct orders in {} records received, total says {total}",
                            slice.entries
                        ));
                    }
                }
            }
        }
        if let Some(reason) = refetch {
            slice.attempt += 1;
            if slice.attempt >= MAX_SLICE_ATTEMPTS {
                return Err(Error::Unavailable(format!(
                    "day {}: the slice {}..{} came back inconsistent {} times ({reason})",
                    self.plan.days[day_index].date,
                    window::format_local(slice.span.start),
                    window::format_local(slice.span.end),
                    slice.attempt
                )));
            }
            log::warn!(
                "day {}: {reason}; fetching {}..{} again",
                self.plan.days[day_index].date,
                window::format_local(slice.span.start),
                window::format_local(slice.span.end)
            );
            slice.total = None;
            slice.received_pages = 0;
            slice.ids.clear();
            slice.by_cursor = false;
            slice.entries = 0;
            day.refetches += 1;
            new_jobs.push(Job {
                page: 1,
                attempt: slice.attempt,
                cursor: None,
                ..job.clone()
            });
        }
        if !new_slices.is_empty() {
            day.open_slices += 1; // one slice replaced by two
            day.slices.extend(new_slices);
        }
        // Stage the rows (also those of a page that triggered a refetch: they are real orders,
        // and the latest update_time wins among duplicates).
        if stage {
            for r in page.rejected {
                day.rejected.insert(record_key(&r), r);
            }
        }
        if stage && !page.rows.is_empty() {
            for row in &page.rows {
                // Phones already stored for the same ciphertext came filled from the fetcher.
                if let (Some(cipher), None) = (row.phone_encrypt.as_deref(), &row.phone) {
                    if is_platform_cipher(cipher) && day.queued_phones.insert(row.order_id.clone())
                    {
                        day.pending_phones
                            .push((row.order_id.clone(), cipher.to_string()));
                    }
                }
            }
            self.buffered += page.rows.len();
            day.buffer.extend(page.rows);
        }
        let flush_day = day.buffer.len() >= STAGE_BATCH;
        // Full batches go now; the rest once every slice of the day is in.
        let last = day.open_slices == 0;
        while day.pending_phones.len() >= DECRYPT_BATCH || (last && !day.pending_phones.is_empty())
        {
            let take = day.pending_phones.len().min(DECRYPT_BATCH);
            let phones: Vec<(String, String)> = day.pending_phones.drain(..take).collect();
            day.decrypts_in_flight += 1;
            new_jobs.push(Job {
                day: day_index,
                page: 0,
                slice: 0,
                attempt: 0,
                generation: job.generation,
                span: job.span,
                phones,
                cursor: None,
            });
        }
        for j in new_jobs {
            self.queue.push(j);
        }
        if flush_day {
            self.flush(day_index)?;
        }
        // Bound the rows held across all days: flush the fullest buffers.
        while self.buffered > MAX_BUFFERED {
            let fullest = self.days[self.next_commit..self.next_schedule]
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.as_ref().map(|d| (d.buffer.len(), self.next_commit + i)))
                .max();
            match fullest {
                Some((n, d)) if n > 0 => self.flush(d)?,
                _ => break,
            }
        }
        self.seal_ready()
    }

    /// COPY a day's buffered rows into its staging table.
    fn flush(&mut self, day_index: usize) -> Result<(), Error> {
        let Some(day) = self.days.get_mut(day_index).and_then(Option::as_mut) else {
            return Ok(());
        };
        if day.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut day.buffer);
        self.buffered -= rows.len();
        let staging = Instant::now();
        let stage = Stage::new(&self.plan.key.account_id, day_index);
        self.stage(StageCmd::Rows(stage, rows))?;
        self.time_staging += staging.elapsed();
        Ok(())
    }

    /// A day could not be fetched: keep finishing the days before it, fetch nothing from it on.
    fn fail_from(&mut self, day: usize, error: Error) {
        if self.failure.as_ref().is_none_or(|(d, _)| day < *d) {
            self.queue.drop_from(day);
            self.failure = Some((day, error));
        }
    }

    /// Decrypted phones come back: write them into the day's staging table.
    fn phones_decrypted(
        &mut self,
        day_index: usize,
        phones: &[(String, Option<String>)],
    ) -> Result<(), Error> {
        let Some(day) = self.days.get_mut(day_index).and_then(Option::as_mut) else {
            return Ok(());
        };
        day.decrypts_in_flight = day.decrypts_in_flight.saturating_sub(1);
        let found: Vec<(String, String)> = phones
            .iter()
            .filter_map(|(id, phone)| phone.clone().map(|p| (id.clone(), p)))
            .collect();
        self.flush(day_index)?; // the rows go before their phones
        if !found.is_empty() {
            let stage = Stage::new(&self.plan.key.account_id, day_index);
            self.stage(StageCmd::Phones(stage, found))?;
        }
        self.seal_ready()
    }

    /// Hand every complete day at the front to the committer, in order.
    fn seal_ready(&mut self) -> Result<(), Error> {
        while self.next_seal < self.next_schedule {
            let d = self.next_seal;
            let complete = self.days[d].as_ref().is_some_and(|s| {
                s.open_slices == 0 && s.pending_phones.is_empty() && s.decrypts_in_flight == 0
            });
            if !complete {
                break;
            }
            self.flush(d)?;
            let mut rejected: Vec<Rejected> = match self.days[d].as_mut() {
                Some(state) => state.rejected.drain().map(|(_, r)| r).collect(),
                None => Vec::new(),
            };
            rejected.sort_by(|a, b| a.order_id.cmp(&b.order_id));
            if let Some(state) = self.days[d].as_mut() {
                state.rejected_log = rejected
                    .iter()
                    .map(|r| (r.describe_id(), r.reason.clone()))
                    .collect();
            }
            let day = &self.plan.days[d];
            let range_done = self.plan.range_end.is_some_and(|end| day.span.end >= end);
            self.stage(StageCmd::Seal(CommitCmd {
                generation: self.generation,
                day: d,
                date: day.date.clone(),
                stage: Stage::new(&self.plan.key.account_id, d),
                rejected,
                checkpoint: Checkpoint {
                    synced_until: day.span.end,
                    range_done,
                },
                monotonic: self.plan.range_end.is_none(),
            }))?;
            self.next_seal += 1;
        }
        Ok(())
    }

    fn log_day(&mut self, d: usize, state: &DayState, write: DayWrite) {
        let day = &self.plan.days[d];
        self.stats.days += 1;
        self.stats.orders += write.orders;
        self.stats.inserted += write.inserted;
        self.stats.updated += write.updated;
        self.stats.rejected += write.rejected;
        self.stats.pages += state.pages;
        self.stats.refetches += state.refetches;
        let n = self.plan.days.len();
        let k = d + 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = elapsed / k as f64 * (n - k) as f64;
        let accounts = self.config.accounts().len();
        let account = if accounts > 1 {
            format!(" account {}", self.plan.key.account_id)
        } else {
            String::new()
        };
        let seconds = state.started.elapsed().as_secs_f64();
        for (who, why) in state.rejected_log.iter().take(REJECTED_LOGGED) {
            log::warn!(
                day = day.date.as_str(), account = self.plan.key.account_id.as_str();
                "{}{account}: {who} quarantined in rejected_records: {why}",
                day.date
            );
        }
        if state.rejected_log.len() > REJECTED_LOGGED {
            log::warn!(
                "{}{account}: {} more quarantined in rejected_records",
                day.date,
                count(
                    (state.rejected_log.len() - REJECTED_LOGGED) as u64,
                    "record"
                )
            );
        }
        log::info!(
            day = day.date.as_str(), account = self.plan.key.account_id.as_str(), orders = write.orders,
            inserted = write.inserted, updated = write.updated, rejected = write.rejected,
            pages = state.pages, seconds = seconds,
            day_index = k as u64, days = n as u64, orders_so_far = self.stats.orders, eta_seconds = left;
            "{}{account}: {} ({} new, {} changed{}), {}, {:.1} s; day {k} of {n}, {} so far{}",
            day.date,
            count(write.orders, "order"),
            write.inserted,
            write.updated,
            if write.rejected > 0 {
                format!(", {} quarantined", write.rejected)
            } else {
                String::new()
            },
            count(state.pages, "page"),
            seconds,
            count(self.stats.orders, "order"),
            if k < n { format!(", ~{} left", human_duration(left)) } else { String::new() }
        );
    }
}

/// Sync one account's plan: fetch, stage and commit every day, in order.
///
/// The work runs in segments; a segment ends when everything is committed, on an error, or when
/// a database connection is lost. A lost connection is retried (with the request backoff): the
/// run's connection is re-established and the lock taken again if it was the one lost, and the
/// uncommitted days are fetched again.
pub fn sync_days(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    plan: &Plan,
    stop: &Stop,
    stats: &mut AccountStats,
) -> Result<(), Error> {
    if plan.days.is_empty() {
        return Ok(());
    }
    let queue = Arc::new(JobQueue::default());
    let workers = config.concurrency().max(1);
    let (tx, rx) = mpsc::sync_channel::<Event>(workers * 2);
    let ctx = Arc::new(FetchContext {
        douyin: Arc::clone(douyin),
        phones: Arc::clone(phones),
        cipher: PhoneCipher::new(config.app_secret().expose()).ok(),
        account_id: plan.key.account_id.clone(),
        time_field: config.time_field(),
        page_size: config.page_size(),
        order_status: config.order_status(),
        get_secret_number: config.get_secret_number(),
        stop: stop.clone(),
    });
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (ctx, queue, tx) = (Arc::clone(&ctx), Arc::clone(&queue), tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("fetch-{i}"))
            .spawn(move || fetcher(ctx, queue, tx))
            .map_err(|e| Error::Bug(format!("cannot start a fetcher thread: {e}")))?;
        handles.push(handle);
    }
    let page_size = u64::from(config.page_size());
    let account = plan.key.account_id.as_str();
    let mut pipeline = Pipeline {
        config,
        stop: stop.clone(),
        stager: None,
        committer_alive: Arc::new(AtomicBool::new(false)),
        plan,
        queue: Arc::clone(&queue),
        days: (0..plan.days.len()).map(|_| None).collect(),
        next_seal: 0,
        next_commit: 0,
        next_schedule: 0,
        lookahead: workers.clamp(2, 16),
        generation: 0,
        stats: AccountStats::default(),
        started: Instant::now(),
        slice_limit: (PAGE_LIMIT / page_size) * page_size,
        failure: None,
        buffered: 0,
        time_staging: Duration::ZERO,
        time_committing: Duration::ZERO,
        time_waiting: Duration::ZERO,
    };
    let retry = config.retry();
    let mut reconnects = 0;
    let result = loop {
        // Tables a killed run (or a lost connection) of this account left behind; we hold the
        // account's lock, so none of them is in use.
        let segment = match store.drop_stale_stages(account) {
            Ok(n) => {
                if n > 0 {
                    log::info!("dropped {n} staging table(s) left by an interrupted run");
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        let segment = segment.and_then(|()| {
            std::thread::scope(|scope| {
                let (commit_tx, commit_rx) = mpsc::sync_channel::<CommitCmd>(pipeline.lookahead);
                let events = tx.clone();
                let store = &mut *store;
                let alive = Arc::new(AtomicBool::new(true));
                pipeline.committer_alive = Arc::clone(&alive);
                let committer = scope.spawn(move || {
                    committer(store, account, &plan.key, commit_rx, events, stop, alive)
                });
                let generation = pipeline.generation;
                let result = Stager::start(config, commit_tx, tx.clone(), generation, stop)
                    .and_then(|stager| {
                        pipeline.stager = Some(stager);
                        pipeline.run_segment(&rx, stop)
                    });
                // Closing the stager's channel ends it, which ends the committer; keep taking
                // events meanwhile so that neither blocks on a full channel.
                pipeline.stager = None;
                loop {
                    let finished = committer.is_finished();
                    while let Ok(event) = rx.try_recv() {
                        pipeline.after_segment(event);
                    }
                    if finished {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = committer.join();
                result
            })
        });
        match segment {
            Ok(()) => break Ok(()),
            Err(error @ Error::Database(_)) if reconnects < retry.max_tries => {
                reconnects += 1;
                let date = plan
                    .days
                    .get(pipeline.next_commit)
                    .map_or("the next day", |d| d.date.as_str());
                log::warn!(
                    "lost a database connection ({error}); reconnecting, then fetching {date} again"
                );
                if let Err(e) = reconnect(config, store, account, stop, reconnects) {
                    break Err(e);
                }
                pipeline.restart();
            }
            Err(error) => break Err(error),
        }
    };
    queue.close();
    drop(tx);
    if result.is_ok() {
        for handle in handles {
            // Idle fetchers return as soon as the queue is closed.
            let _ = handle.join();
        }
    }
    // On an error, fetchers still inside an HTTP call are left to end on their own: waiting
    // for them would hold a signal's exit up to the HTTP timeout.
    log::debug!(
        "coordinator: {:.2} s handing pages to the stager, {:.2} s of commits, {:.2} s waiting for pages",
        pipeline.time_staging.as_secs_f64(),
        pipeline.time_committing.as_secs_f64(),
        pipeline.time_waiting.as_secs_f64()
    );
    // Uncommitted days' staging tables (after an error or a remote stop): dropped now if they are free within a second, else by
    // the next run of this account.
    if (result.is_err() || pipeline.next_commit < plan.days.len()) && !store.is_closed() {
        let leftovers: Vec<Stage> = (pipeline.next_commit..pipeline.next_schedule)
            .map(|d| Stage::new(account, d))
            .collect();
        let _ = store.stage_discard(&leftovers);
    }
    *stats = AccountStats {
        window: stats.window,
        ..pipeline.stats.clone()
    };
    result
}

/// Re-establish the run's connection if it was lost (and take the account's lock again),
/// waiting the request backoff before each try.
fn reconnect(
    config: &Config,
    store: &mut Store,
    account: &str,
    stop: &Stop,
    attempt: u32,
) -> Result<(), Error> {
    let retry = config.retry();
    let delay = retry
        .base
        .saturating_mul(1 << attempt.saturating_sub(1).min(20))
        .min(retry.max_delay);
    stop.sleep(delay)?;
    if store.is_alive() {
        return Ok(());
    }
    let mut tries = 0;
    *store = loop {
        tries += 1;
        match Store::connect(config.database(), stop) {
            Ok(fresh) => break fresh,
            Err(e) if tries < retry.max_tries => {
                log::warn!("reconnect {tries}/{}: {e}", retry.max_tries - 1);
                stop.sleep(
                    retry
                        .base
                        .saturating_mul(1 << (tries - 1).min(20))
                        .min(retry.max_delay),
                )?;
            }
            Err(e) => return Err(e),
        }
    };
    if !store.try_lock(account)? {
        return Err(Error::Locked(format!(
            "another run took the lock of account {account} while the database connection was down"
        )));
    }
    Ok(())
}

impl Pipeline<'_> {
    /// Run until every day is committed, an error, or a signal.
    fn run_segment(&mut self, rx: &mpsc::Receiver<Event>, stop: &Stop) -> Result<(), Error> {
        self.schedule()?;
        // A remote STOP (task_monitor): the day in flight commits, then the segment ends.
        let mut hold_at = None;
        while self.next_commit < self.plan.days.len() {
            stop.check()?;
            if stop.held() {
                let at = *hold_at.get_or_insert(self.next_commit + 1);
                if self.next_commit >= at {
                    self.queue.clear();
                    return Ok(());
                }
            }
            if let Some((day, _)) = &self.failure {
                if self.next_commit >= *day {
                    if let Some((_, error)) = self.failure.take() {
                        return Err(error);
                    }
                }
            }
            let waiting = Instant::now();
            let received = rx.recv_timeout(Duration::from_millis(100));
            self.time_waiting += waiting.elapsed();
            match received {
                Ok(event) => self.on_event(event)?,
                Err(RecvTimeoutError::Timeout) => self.check_threads(rx)?,
                Err(RecvTimeoutError::Disconnected) => {
                    stop.check()?;
                    return Err(Error::Bug("every fetcher stopped".into()));
                }
            }
        }
        Ok(())
    }

    /// No event for a while: make sure the stager and the committer still run. Either ends only
    /// on an error it reports first (or a signal), so its report is taken from the channel;
    /// should one ever end without a word, the segment still ends instead of waiting forever.
    fn check_threads(&mut self, rx: &mpsc::Receiver<Event>) -> Result<(), Error> {
        let stager_gone = self
            .stager
            .as_ref()
            .is_some_and(|s| !s.alive.load(Ordering::SeqCst));
        let committer_gone = !self.committer_alive.load(Ordering::SeqCst);
        if !stager_gone && !committer_gone {
            return Ok(());
        }
        self.stop.check()?;
        while let Ok(event) = rx.try_recv() {
            self.on_event(event)?;
        }
        if self.next_commit >= self.plan.days.len() {
            return Ok(());
        }
        Err(match &self.stager {
            Some(stager) if stager_gone => stager.failure(),
            _ => Error::Database("the commit connection stopped".into()),
        })
    }

    /// An event that arrives after its segment ended: a committed day still counts; pages are
    /// dropped (their days will be fetched again).
    fn after_segment(&mut self, event: Event) {
        if let Event::Committed {
            generation,
            day,
            result: Ok(write),
            seconds,
        } = event
        {
            if generation == self.generation && day == self.next_commit {
                self.committed(day, write, seconds);
            }
        }
    }
}

/// Requests, retries and token fetches so far, for the summary line.
pub fn request_counts(douyin: &Douyin) -> (u64, u64, u64) {
    let c = douyin.counters();
    (
        c.requests.load(Ordering::Relaxed),
        c.retries.load(Ordering::Relaxed),
        c.token_fetches.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "order"), "1 order");
        assert_eq!(count(0, "order"), "0 orders");
        assert_eq!(count(3, "retry"), "3 retries");
        assert_eq!(count(3, "day"), "3 days");
    }

    #[test]
    fn a_thread_that_panics_tells_the_coordinator_at_once() {
        let (events, received) = mpsc::sync_channel::<Event>(1);
        let alive = Arc::new(AtomicBool::new(true));
        let alarm = PanicAlarm {
            events,
            thread: "staging",
            alive: Some(Arc::clone(&alive)),
        };
        let thread = std::thread::spawn(move || {
            let _alarm = alarm;
            panic!("a bug");
        });
        assert!(thread.join().is_err());
        match received.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Stopped {
                generation: None,
                error: Some(Error::Bug(m)),
            }) => assert!(m.contains("staging thread panicked"), "{m}"),
            _ => panic!("no Stopped event"),
        }
        assert!(!alive.load(Ordering::SeqCst));
    }

    #[test]
    fn a_thread_that_ends_normally_only_clears_its_flag() {
        let (events, received) = mpsc::sync_channel::<Event>(1);
        let alive = Arc::new(AtomicBool::new(true));
        drop(PanicAlarm {
            events,
            thread: "commit",
            alive: Some(Arc::clone(&alive)),
        });
        assert!(received.try_recv().is_err());
        assert!(!alive.load(Ordering::SeqCst));
    }

    #[test]
    fn records_are_told_apart_by_their_id_as_received_or_their_text() {
        let rejected = |json: &str| match extract(
            serde_json::value::RawValue::from_string(json.to_string()).unwrap(),
        ) {
            Err(r) => r,
            Ok(_) => panic!("accepted {json}"),
        };
        let keys: HashSet<RecordKey> = [
            r#"{"order_id":"+5","pay_amount":0.5}"#,
            r#"{"order_id":"05","pay_amount":0.5}"#,
            r#"{"order_id":5,"pay_amount":0.5}"#,
            r#"{"order_id":"5","pay_amount":1.5}"#,
            r#"{"pay_amount":1}"#,
            r#"{"pay_amount":2}"#,
        ]
        .iter()
        .map(|j| record_key(&rejected(j)))
        .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
    }
}
