//! The pipeline every stream runs on, for one stream of one account: the machinery that does
//! not depend on what is fetched. What a stream does differently (its requests, how an answer
//! becomes rows and next requests, when a day is complete, how a day is written) is a
//! [`DaySource`]: `streams::orders` for orders, `streams::Paged` for every cursor-paged stream.
//!
//! Fetcher threads take requests from a priority queue (earliest day first), run them (pace,
//! fetch, decrypt, parse: the source's [`DaySource::fetch`]) and hand the answers to the
//! coordinator (this thread) over a bounded channel. The coordinator lets the source decide
//! what to ask next, and seals each complete day, in order. A source that stages (orders: its
//! rows are COPied while the day is still being fetched) has a *stager*: a thread with its own
//! connection that runs the staging work in the order sent and passes sealed days on. Sealed
//! days go to the *committer*, a thread on the stream's own connection (for orders the run's,
//! which holds the account's lock), which commits each in one transaction with its checkpoint
//! and reports back. The coordinator never waits on PostgreSQL; fetchers run ahead by a
//! bounded number of days. Every thread reports its end to the coordinator at once (a failed
//! COPY, a failed commit, a panic), and the coordinator also notices a stager or committer that
//! ended without a word, so no failure leaves it waiting for a day that never comes.
//!
//! A day that cannot be fetched ends the stream once the days before it are committed. A lost
//! database connection ends the current *segment*: the connection is re-established (with the
//! request backoff), and the uncommitted days are fetched again.

use crate::config::Config;
use crate::douyin::Douyin;
use crate::error::Error;
use crate::order::Rejected;
use crate::stop::Stop;
use crate::store::{Checkpoint, CheckpointKey, DayWrite, Store};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Quarantined records named one by one in the log per day; the rest are counted.
const REJECTED_LOGGED: usize = 20;

/// What one stream of one account did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub days: usize,
    /// Records committed (orders for the orders stream).
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub pages: u64,
    pub refetches: u64,
    /// Records quarantined in `rejected_records` (committed with their day).
    pub rejected: u64,
    /// The span of the planned days, for the run history.
    pub window: Option<(i64, i64)>,
}

/// What the orders stream of one account did.
pub type AccountStats = Stats;

// The plan of a stream's days, and the helpers of its log lines, are shared by every stream;
// re-exported here for the callers of the pipeline.
pub use crate::streams::plan::{
    checkpoint_key, count, human_duration, now_epoch, plan, plan_with_lookback, Plan,
};

/// Staging work, run on the stager's connection in the order sent.
pub(crate) type StageFn = Box<dyn FnOnce(&mut Store) -> Result<(), Error> + Send>;

/// A complete day's write, run by the committer on the stream's connection: given the
/// checkpoint row, where it moves to, and whether it may only move forward (incremental mode).
pub(crate) type CommitFn =
    Box<dyn FnOnce(&mut Store, &CheckpointKey, Checkpoint, bool) -> Result<DayWrite, Error> + Send>;

/// What a stream is to the pipeline: how its days become requests, what a fetcher does with a
/// request, what the coordinator does with an answer, and how a complete day is written.
pub(crate) trait DaySource {
    /// A request within a day; fetchers take the earliest day's lowest request first.
    type Job: Ord + Clone + Send + 'static;
    /// What a fetcher hands back for a request.
    type Answer: Send + 'static;
    /// What the fetchers share (the API client, the budget, the account).
    type Fetch: Send + Sync + 'static;
    /// A day being fetched, as the coordinator keeps it.
    type Day;
    /// The fetcher threads' name (`fetch-0`, `verifications-0`, …).
    const THREAD: &'static str;
    /// Whether the source stages days on a second connection while they are fetched
    /// ([`Lane::stage`]); its sealed days then pass through the stager to the committer.
    const STAGES: bool;

    /// Run one request (in a fetcher thread).
    fn fetch(fetch: &Self::Fetch, job: &Self::Job) -> Result<Self::Answer, Error>;
    /// (fetcher threads, days fetched ahead of the last commit) for `days` days.
    fn shape(&self, config: &Config, days: usize) -> (usize, usize);
    /// Start day `d`: its state, and its first requests into `jobs`.
    fn begin(
        &mut self,
        lane: &mut Lane<'_, Self::Day>,
        d: usize,
        jobs: &mut Vec<Self::Job>,
    ) -> Result<Self::Day, Error>;
    /// An answer for day `d` (its state is `lane.days[d]`); next requests into `jobs`.
    /// `Ok(Err(e))`: the day failed for good (the days before it still commit, then the stream
    /// ends with `e`); `Err(e)`: the stream ends now.
    fn answer(
        &mut self,
        lane: &mut Lane<'_, Self::Day>,
        d: usize,
        job: Self::Job,
        answer: Self::Answer,
        jobs: &mut Vec<Self::Job>,
    ) -> Result<Result<(), Error>, Error>;
    /// Whether the day is complete (may be sealed).
    fn complete(&self, day: &Self::Day) -> bool;
    /// A complete day at the front: what commits it.
    fn seal(&mut self, lane: &mut Lane<'_, Self::Day>, d: usize) -> Result<CommitFn, Error>;
    /// (pages, refetches) the day took, for the stats.
    fn tally(day: &Self::Day) -> (u64, u64);
    /// The log lines of a committed day (`stats` include it; `left`: the estimated seconds
    /// the rest of the plan takes).
    fn log_day(
        &self,
        plan: &Plan,
        d: usize,
        day: &Self::Day,
        write: &DayWrite,
        stats: &Stats,
        left: f64,
    );
    /// Before each segment, on the stream's connection (orders: drop staging tables left over).
    fn before_segment(&mut self, _store: &mut Store) -> Result<(), Error> {
        Ok(())
    }
    /// After a lost connection, on the fresh one (orders: take the account's lock again).
    fn reconnected(&mut self, store: &mut Store) -> Result<(), Error>;
    /// After a lost connection: the uncommitted days are forgotten and fetched again.
    fn restart(&mut self) {}
    /// At the end, when days `days` were begun but not committed (orders: drop their staging).
    fn leftover(&mut self, _store: &mut Store, _days: Range<usize>) {}
}

/// The coordinator's days as a source sees them while it answers.
pub(crate) struct Lane<'a, D> {
    pub plan: &'a Plan,
    /// Every day of the plan; those begun and not committed (`open`) are `Some`.
    pub days: &'a mut [Option<D>],
    pub open: Range<usize>,
    stager: Option<&'a Stager>,
    stop: &'a Stop,
    time_staging: &'a mut Duration,
}

impl<D> Lane<'_, D> {
    /// Hand work to the stager (after the work sent before).
    pub fn stage(&mut self, work: StageFn) -> Result<(), Error> {
        let started = Instant::now();
        let sent = match self.stager {
            Some(stager) => stager.send(StageCmd::Run(work), self.stop),
            None => Err(Error::Bug("no staging connection".into())),
        };
        *self.time_staging += started.elapsed();
        sent
    }

    /// Day `d`'s state, when it is open.
    pub fn day(&mut self, d: usize) -> Option<&mut D> {
        self.days.get_mut(d).and_then(Option::as_mut)
    }
}

/// A request in the queue: its day first (earliest first), then the source's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Job<J> {
    day: usize,
    what: J,
    generation: u64,
}

/// What a fetcher hands back.
struct Fetched<J, A> {
    job: Job<J>,
    result: Result<A, Error>,
}

/// The fetchers' work queue: a priority queue (earliest day, then the source's order).
struct JobQueue<J> {
    state: Mutex<(BinaryHeap<Reverse<Job<J>>>, bool)>,
    ready: Condvar,
}

impl<J: Ord> JobQueue<J> {
    fn new() -> JobQueue<J> {
        JobQueue {
            state: Mutex::new((BinaryHeap::new(), false)),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BinaryHeap<Reverse<Job<J>>>, bool)> {
        // The state is a heap and a flag; a panic elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, job: Job<J>) {
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
    fn pop(&self, stop: &Stop) -> Option<Job<J>> {
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

fn fetcher<S: DaySource>(
    fetch: Arc<S::Fetch>,
    queue: Arc<JobQueue<S::Job>>,
    results: SyncSender<Event<S::Job, S::Answer>>,
    stop: Stop,
) {
    let _alarm = PanicAlarm {
        events: results.clone(),
        thread: "fetcher",
        alive: None,
    };
    while let Some(job) = queue.pop(&stop) {
        let result = S::fetch(&fetch, &job.what);
        if results
            .send(Event::Fetched(Fetched { job, result }))
            .is_err()
        {
            return; // the coordinator is gone (error or signal)
        }
    }
}

/// What the coordinator hears about: a fetcher's answer, a committed day, or a thread of the
/// pipeline that stopped for good.
enum Event<J, A> {
    /// The stager failed (its error is in its slot), or a thread panicked (`error`). A
    /// `generation` is that of the stager's segment; `None` concerns every segment.
    Stopped {
        generation: Option<u64>,
        error: Option<Error>,
    },
    Fetched(Fetched<J, A>),
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
    checkpoint: Checkpoint,
    monotonic: bool,
    write: CommitFn,
}

/// What the stager thread does, in the order sent.
enum StageCmd {
    Run(StageFn),
    /// Every row of the day is staged: hand it to the committer (in the same order as sent,
    /// so after all of its rows).
    Seal(CommitCmd),
}

/// Tells the coordinator when the thread it lives in ends: `alive` goes false on any exit, and
/// a panic is reported as an event at once, so that no wait is left hanging on an answer that
/// will never come.
struct PanicAlarm<J, A> {
    events: SyncSender<Event<J, A>>,
    thread: &'static str,
    alive: Option<Arc<AtomicBool>>,
}

impl<J, A> Drop for PanicAlarm<J, A> {
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

/// The second database connection: runs a source's staging work (orders: COPY into staging
/// tables) while the stream's own connection (the committer) commits days. PostgreSQL's work
/// is spread over two backends and the coordinator never waits for either.
pub(crate) struct Stager {
    commands: SyncSender<StageCmd>,
    failure: Arc<Mutex<Option<Error>>>,
    /// False once the thread has ended, however.
    alive: Arc<AtomicBool>,
}

impl Stager {
    /// Connect and start the thread. A failure is kept in the slot and announced to the
    /// coordinator at once (`Event::Stopped`), whatever the coordinator is waiting for.
    fn start<J: Send + 'static, A: Send + 'static>(
        config: &Config,
        commits: SyncSender<CommitCmd>,
        events: SyncSender<Event<J, A>>,
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
                        StageCmd::Run(work) => work(&mut store),
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
        if send_waiting(&self.commands, command, stop)? {
            Ok(())
        } else {
            Err(self.failure())
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

/// Send on a bounded channel, waiting while it is full, but never past a signal. `Ok(false)`:
/// the receiver is gone.
fn send_waiting<T>(channel: &SyncSender<T>, item: T, stop: &Stop) -> Result<bool, Error> {
    let mut item = item;
    loop {
        match channel.try_send(item) {
            Ok(()) => return Ok(true),
            Err(mpsc::TrySendError::Disconnected(_)) => return Ok(false),
            Err(mpsc::TrySendError::Full(c)) => {
                stop.check()?;
                item = c;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The committer: on the stream's own connection, writes each sealed day with its checkpoint,
/// in order, and tells the coordinator. Stops at the first error or a signal.
fn committer<J, A>(
    store: &mut Store,
    key: &CheckpointKey,
    commits: mpsc::Receiver<CommitCmd>,
    events: SyncSender<Event<J, A>>,
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
        let result = (cmd.write)(store, key, cmd.checkpoint, cmd.monotonic);
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

/// The coordinator of one stream's days.
struct Pipeline<'a, S: DaySource> {
    source: S,
    stop: Stop,
    /// The stager of the current segment (a segment ends at a lost connection), for a source
    /// that stages.
    stager: Option<Stager>,
    /// The committer's channel of the current segment, for a source that does not stage.
    commits: Option<SyncSender<CommitCmd>>,
    /// Whether the committer of the current segment still runs.
    committer_alive: Arc<AtomicBool>,
    plan: &'a Plan,
    queue: Arc<JobQueue<S::Job>>,
    days: Vec<Option<S::Day>>,
    /// Days sealed: handed to the committer.
    next_seal: usize,
    next_commit: usize,
    next_schedule: usize,
    lookahead: usize,
    generation: u64,
    stats: Stats,
    started: Instant,
    /// The first day that failed for good, and why: earlier days still complete and commit,
    /// then the run ends with this error.
    failure: Option<(usize, Error)>,
    /// Where the coordinator's time went, for the debug log.
    time_staging: Duration,
    time_committing: Duration,
    time_waiting: Duration,
}

/// Sync one stream's plan for one account: fetch, stage and commit every day, in order, on
/// `store` (the stream's connection).
///
/// The work runs in segments; a segment ends when everything is committed, on an error, or when
/// a database connection is lost. A lost connection is retried (with the request backoff): the
/// stream's connection is re-established if it was the one lost (the source takes what it held
/// again), and the uncommitted days are fetched again.
pub(crate) fn run<S: DaySource>(
    config: &Config,
    source: S,
    fetch: Arc<S::Fetch>,
    store: &mut Store,
    plan: &Plan,
    stop: &Stop,
    stats: &mut Stats,
) -> Result<(), Error> {
    if plan.days.is_empty() {
        return Ok(());
    }
    let (workers, lookahead) = source.shape(config, plan.days.len());
    let workers = workers.max(1);
    let queue = Arc::new(JobQueue::<S::Job>::new());
    let (tx, rx) = mpsc::sync_channel::<Event<S::Job, S::Answer>>(workers * 2);
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (fetch, queue, tx, stop) = (
            Arc::clone(&fetch),
            Arc::clone(&queue),
            tx.clone(),
            stop.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("{}-{i}", S::THREAD))
            .spawn(move || fetcher::<S>(fetch, queue, tx, stop))
            .map_err(|e| Error::Bug(format!("cannot start a fetcher thread: {e}")))?;
        handles.push(handle);
    }
    let mut pipeline = Pipeline {
        source,
        stop: stop.clone(),
        stager: None,
        commits: None,
        committer_alive: Arc::new(AtomicBool::new(false)),
        plan,
        queue: Arc::clone(&queue),
        days: (0..plan.days.len()).map(|_| None).collect(),
        next_seal: 0,
        next_commit: 0,
        next_schedule: 0,
        lookahead,
        generation: 0,
        stats: Stats::default(),
        started: Instant::now(),
        failure: None,
        time_staging: Duration::ZERO,
        time_committing: Duration::ZERO,
        time_waiting: Duration::ZERO,
    };
    let retry = config.retry();
    let mut reconnects = 0;
    let result = loop {
        let segment = pipeline.source.before_segment(store).and_then(|()| {
            std::thread::scope(|scope| {
                let (commit_tx, commit_rx) = mpsc::sync_channel::<CommitCmd>(pipeline.lookahead);
                let events = tx.clone();
                let store = &mut *store;
                let alive = Arc::new(AtomicBool::new(true));
                pipeline.committer_alive = Arc::clone(&alive);
                let key = &plan.key;
                let committer =
                    scope.spawn(move || committer(store, key, commit_rx, events, stop, alive));
                let result = if S::STAGES {
                    Stager::start(config, commit_tx, tx.clone(), pipeline.generation, stop)
                        .and_then(|stager| {
                            pipeline.stager = Some(stager);
                            pipeline.run_segment(&rx, stop)
                        })
                } else {
                    pipeline.commits = Some(commit_tx);
                    pipeline.run_segment(&rx, stop)
                };
                // Closing the stager's (or the committer's) channel ends it, which ends the
                // committer; keep taking events meanwhile so that neither blocks on a full
                // channel.
                pipeline.stager = None;
                pipeline.commits = None;
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
                if let Err(e) = reconnect(config, store, stop, reconnects, &mut pipeline.source) {
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
        "coordinator: {:.2} s handing work to the stager, {:.2} s of commits, {:.2} s waiting for pages",
        pipeline.time_staging.as_secs_f64(),
        pipeline.time_committing.as_secs_f64(),
        pipeline.time_waiting.as_secs_f64()
    );
    // Uncommitted days (after an error or a remote stop): the source cleans up after them.
    if (result.is_err() || pipeline.next_commit < plan.days.len()) && !store.is_closed() {
        let open = pipeline.next_commit..pipeline.next_schedule;
        pipeline.source.leftover(store, open);
    }
    *stats = Stats {
        window: stats.window,
        ..pipeline.stats.clone()
    };
    result
}

/// Re-establish the stream's connection if it was lost (the source then takes again what the
/// connection held), waiting the request backoff before each try.
fn reconnect<S: DaySource>(
    config: &Config,
    store: &mut Store,
    stop: &Stop,
    attempt: u32,
    source: &mut S,
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
    source.reconnected(store)
}

impl<S: DaySource> Pipeline<'_, S> {
    /// The source's view of the days.
    fn lane(&mut self) -> (&mut S, Lane<'_, S::Day>) {
        (
            &mut self.source,
            Lane {
                plan: self.plan,
                days: &mut self.days,
                open: self.next_commit..self.next_schedule,
                stager: self.stager.as_ref(),
                stop: &self.stop,
                time_staging: &mut self.time_staging,
            },
        )
    }

    /// After a lost connection: fetch every uncommitted day again (what they staged went with
    /// the session), with a new generation so that answers to the old requests are ignored.
    fn restart(&mut self) {
        self.generation += 1;
        self.queue.clear();
        for day in &mut self.days[self.next_commit..self.next_schedule] {
            *day = None;
        }
        self.next_schedule = self.next_commit;
        self.next_seal = self.next_commit;
        self.source.restart();
    }

    /// Run until every day is committed, an error, or a signal.
    fn run_segment(
        &mut self,
        rx: &mpsc::Receiver<Event<S::Job, S::Answer>>,
        stop: &Stop,
    ) -> Result<(), Error> {
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
    fn check_threads(
        &mut self,
        rx: &mpsc::Receiver<Event<S::Job, S::Answer>>,
    ) -> Result<(), Error> {
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

    /// An event that arrives after its segment ended: a committed day still counts; answers
    /// are dropped (their days will be fetched again).
    fn after_segment(&mut self, event: Event<S::Job, S::Answer>) {
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

    /// One event. `Err` ends the segment.
    fn on_event(&mut self, event: Event<S::Job, S::Answer>) -> Result<(), Error> {
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
    fn committed(&mut self, d: usize, write: DayWrite, seconds: f64) {
        self.time_committing += Duration::from_secs_f64(seconds);
        let state = self.days[d].take();
        self.next_commit += 1;
        let Some(state) = state else {
            return;
        };
        let (pages, refetches) = S::tally(&state);
        self.stats.days += 1;
        self.stats.records += write.orders;
        self.stats.inserted += write.inserted;
        self.stats.updated += write.updated;
        self.stats.rejected += write.rejected;
        self.stats.pages += pages;
        self.stats.refetches += refetches;
        let (n, k) = (self.plan.days.len(), d + 1);
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = elapsed / k as f64 * (n - k) as f64;
        self.source
            .log_day(self.plan, d, &state, &write, &self.stats, left);
    }

    /// Begin days up to `lookahead` ahead of the last commit (never past a failed day).
    fn schedule(&mut self) -> Result<(), Error> {
        let end = self
            .failure
            .as_ref()
            .map_or(self.plan.days.len(), |(d, _)| *d);
        let mut jobs = Vec::new();
        while self.next_schedule < end && self.next_schedule < self.next_commit + self.lookahead {
            let d = self.next_schedule;
            let (source, mut lane) = self.lane();
            let day = source.begin(&mut lane, d, &mut jobs)?;
            self.days[d] = Some(day);
            self.push(d, &mut jobs);
            self.next_schedule += 1;
        }
        Ok(())
    }

    fn push(&self, day: usize, jobs: &mut Vec<S::Job>) {
        for what in jobs.drain(..) {
            self.queue.push(Job {
                day,
                what,
                generation: self.generation,
            });
        }
    }

    fn handle(&mut self, fetched: Fetched<S::Job, S::Answer>) -> Result<(), Error> {
        let Fetched { job, result } = fetched;
        if job.generation != self.generation {
            return Ok(()); // asked before a reconnect: its day is being fetched again
        }
        let answer = match result {
            Err(e @ Error::Interrupted(_)) => return Err(e),
            Err(e) => {
                self.fail_from(job.day, e);
                return Ok(());
            }
            Ok(answer) => answer,
        };
        if self.failure.as_ref().is_some_and(|(d, _)| job.day >= *d) {
            return Ok(()); // a later day than the one that failed: never committed
        }
        if self.days.get(job.day).is_none_or(Option::is_none) {
            return Ok(());
        }
        let mut jobs = Vec::new();
        let (source, mut lane) = self.lane();
        let outcome = source.answer(&mut lane, job.day, job.what, answer, &mut jobs)?;
        self.push(job.day, &mut jobs);
        if let Err(e) = outcome {
            self.fail_from(job.day, e);
        }
        self.seal_ready()
    }

    /// A day could not be fetched: keep finishing the days before it, fetch nothing from it on.
    fn fail_from(&mut self, day: usize, error: Error) {
        if self.failure.as_ref().is_none_or(|(d, _)| day < *d) {
            self.queue.drop_from(day);
            self.failure = Some((day, error));
        }
    }

    /// Hand every complete day at the front to the committer, in order.
    fn seal_ready(&mut self) -> Result<(), Error> {
        while self.next_seal < self.next_schedule {
            let d = self.next_seal;
            let complete = self.days[d]
                .as_ref()
                .is_some_and(|s| self.source.complete(s));
            if !complete {
                break;
            }
            let (source, mut lane) = self.lane();
            let write = source.seal(&mut lane, d)?;
            let day = &self.plan.days[d];
            let cmd = CommitCmd {
                generation: self.generation,
                day: d,
                checkpoint: Checkpoint {
                    synced_until: day.span.end,
                    range_done: self.plan.range_end.is_some_and(|end| day.span.end >= end),
                },
                monotonic: self.plan.range_end.is_none(),
                write,
            };
            match (&self.stager, &self.commits) {
                (Some(stager), _) => stager.send(StageCmd::Seal(cmd), &self.stop)?,
                (None, Some(commits)) => {
                    if !send_waiting(commits, cmd, &self.stop)? {
                        return Err(Error::Database("the commit connection stopped".into()));
                    }
                }
                (None, None) => return Err(Error::Bug("no commit connection".into())),
            }
            self.next_seal += 1;
        }
        Ok(())
    }
}

/// The warnings naming a committed day's quarantined records: (who, why) of each, the first
/// [`REJECTED_LOGGED`] by name, the rest counted. `prefix` starts each line ("2024-03-01",
/// "verifications 2024-03-01").
pub(crate) fn warn_quarantined(
    stream: &str,
    date: &str,
    account: &str,
    prefix: &str,
    quarantined: &[(String, String)],
) {
    for (who, why) in quarantined.iter().take(REJECTED_LOGGED) {
        log::warn!(
            stream = stream, day = date, account = account;
            "{prefix}: {who} quarantined in rejected_records: {why}"
        );
    }
    if quarantined.len() > REJECTED_LOGGED {
        log::warn!(
            stream = stream, day = date, account = account;
            "{prefix}: {} more quarantined in rejected_records",
            count((quarantined.len() - REJECTED_LOGGED) as u64, "record")
        );
    }
}

/// The middle of a day's log line, the same for every stream: "3 orders (2 new, 1 changed),
/// 1 page, 0.2 s; day 1 of 2".
pub(crate) fn day_summary(
    noun: &str,
    write: &DayWrite,
    pages: u64,
    seconds: f64,
    k: usize,
    n: usize,
) -> String {
    format!(
        "{} ({} new, {} changed{}), {}, {seconds:.1} s; day {k} of {n}",
        count(write.orders, noun),
        write.inserted,
        write.updated,
        if write.rejected > 0 {
            format!(", {} quarantined", write.rejected)
        } else {
            String::new()
        },
        count(pages, "page"),
    )
}

/// The (who, why) of quarantined records for the log, `who` as `describe` names it.
pub(crate) fn quarantine_log(
    rejected: &[Rejected],
    describe: impl Fn(&Rejected) -> String,
) -> Vec<(String, String)> {
    rejected
        .iter()
        .map(|r| (describe(r), r.reason.clone()))
        .collect()
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
        let (events, received) = mpsc::sync_channel::<Event<(), ()>>(1);
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
        let (events, received) = mpsc::sync_channel::<Event<(), ()>>(1);
        let alive = Arc::new(AtomicBool::new(true));
        drop(PanicAlarm {
            events,
            thread: "commit",
            alive: Some(Arc::clone(&alive)),
        });
        assert!(received.try_recv().is_err());
        assert!(!alive.load(Ordering::SeqCst));
    }
}
