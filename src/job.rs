//! One run from start to exit: connect (the run's connection and a side connection, together),
//! get the client token (the stored one, else a fresh one that is stored), migrate, obey and keep
//! the `task_monitor` row, record the run, sync each account under its own lock and checkpoint
//! (then fill phones an earlier run could not decrypt), log the summary, pick the exit code and
//! report the metrics. Also the read-only `check`.
//!
//! Accounts fail independently: a refused authorisation or a day that keeps failing ends that
//! account, the others go on, and the run exits with the most serious error among them. A signal
//! ends everything at once.

use crate::config::{Config, WindowSpec};
use crate::douyin::{Douyin, OrderQuery};
use crate::error::Error;
use crate::metrics::{RunReport, StreamReport};
use crate::monitor::{self, Begin, Outcome, TaskMonitor};
use crate::pacer::Pacer;
use crate::phones::PhoneBook;
use crate::stop::Stop;
use crate::store::{CheckpointKey, OrdersLayout, RunRecord, SideConnection, Store};
use crate::streams::{StreamContext, StreamKind, StreamOutcome, StreamStats};
use crate::sync::{self, AccountStats, Plan};
use crate::token_cache::TokenCache;
use crate::window;
use std::sync::Arc;
use std::time::Instant;

/// `println!` that never panics on a closed stdout (see [`crate::out`]).
macro_rules! say {
    ($($arg:tt)*) => {
        crate::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

fn mode(config: &Config) -> &'static str {
    match config.window() {
        WindowSpec::Range(_) => "range",
        WindowSpec::Incremental { .. } => "incremental",
    }
}

/// Run the sync described by `config`, then report it to Prometheus (`PUSHGATEWAY_URL`,
/// `METRICS_FILE`) whatever the outcome.
pub fn run(config: &Config, stop: &Stop) -> Result<(), Error> {
    let started = Instant::now();
    let mut report = RunReport {
        streams: config
            .accounts()
            .iter()
            .flat_map(|a| {
                config
                    .streams()
                    .iter()
                    .map(move |k| StreamReport::new(a, k.name()))
            })
            .collect(),
        ..RunReport::default()
    };
    let result = run_monitored(config, stop, &mut report);
    report.exit_code = result.as_ref().err().map_or(0, Error::exit_code);
    // A stream the run never finished (it ended before, or a STOP held it) shows the run's code.
    for s in &mut report.streams {
        s.exit_code = s.exit_code.or(Some(report.exit_code));
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    report.finished_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    crate::metrics::publish(config.monitoring(), &report);
    result
}

/// Connect, migrate, keep the `task_monitor` row around the run, record it in `sync_runs`.
fn run_monitored(config: &Config, stop: &Stop, report: &mut RunReport) -> Result<(), Error> {
    let legacy = config.legacy_variables();
    if !legacy.is_empty() {
        let (belong, are) = if legacy.len() == 1 {
            ("belongs", "is")
        } else {
            ("belong", "are")
        };
        log::info!(
            "{} {belong} to the old daemon and {are} ignored: scheduling is now the scheduler's job (cron, a Kubernetes CronJob)",
            legacy.join(" and ")
        );
    }
    // Nothing is written before the database's rights are known and the token call has shown
    // that API_BASE_URL is Douyin (a path answering 404 is a configuration error). Other token
    // failures (77, 75) are recorded in sync_runs like any failed run. A run that task_monitor
    // holds (STOP) asks Douyin nothing, not even a token.
    let startup = Instant::now();
    let (store, side) = connect_both(config, stop);
    let mut store = store?;
    store.check_access()?;
    let side = side?;
    let douyin = Arc::new(Douyin::new(config, stop.clone()));
    let tokens = Arc::new(TokenCache::new(config, Arc::clone(&side), stop));
    douyin.set_token_keeper(Arc::clone(&tokens) as Arc<dyn crate::douyin::TokenKeeper>);
    let authenticated = if stop_requested(config, &mut store) {
        Ok(())
    } else {
        match douyin.authenticate() {
            Err(e @ (Error::Config(_) | Error::Interrupted(_))) => return Err(e),
            other => other,
        }
    };
    for done in store.migrate()? {
        log::info!("{done}");
    }
    // The first run on a database got its token before the table to keep it in existed.
    tokens.migrated();
    log::debug!(
        "start-up: {:.0} ms (connect, migrations, client token)",
        startup.elapsed().as_secs_f64() * 1000.0
    );
    let phones = Arc::new(PhoneBook::new(side));
    let mut task = TaskMonitor::new(config, stop);
    let begin = task.as_mut().map(|monitor| monitor.begin(&mut store));
    if begin == Some(Begin::Off) {
        task = None;
    }
    if let Some(monitor) = task.as_mut() {
        if begin == Some(Begin::Held) {
            log::info!(
                "task_monitor: target_command is STOP for TASK_ID {}: syncing nothing, asking Douyin nothing; to resume, set it to START or NULL ({})",
                monitor.task_id(),
                monitor::resume_sql(monitor.task_id())
            );
            report.stopped = true;
            read_checkpoints(config, &mut store, report);
            if let Some(monitor) = task {
                monitor.finish(Some(&mut store), Outcome::Held);
            }
            return Ok(());
        }
        monitor.start_heartbeat();
    }
    let result = store
        .begin_run(
            &config.accounts().join(","),
            mode(config),
            config.time_field().key(),
        )
        .and_then(|run_id| {
            let mut record = RunRecord::default();
            let result = authenticated.and_then(|()| {
                sync_accounts(
                    config,
                    &douyin,
                    &phones,
                    stop,
                    &mut store,
                    &mut record,
                    report,
                )
            });
            record.exit_code = result.as_ref().err().map_or(0, Error::exit_code);
            record.error = result.as_ref().err().map(Error::to_string);
            if store.is_closed() {
                if let Ok(fresh) = Store::connect(config.database(), stop) {
                    store = fresh;
                }
            }
            if let Err(e) = store.finish_run(run_id, &record).and_then(|()| {
                let names: Vec<&str> = config.streams().iter().map(|k| k.name()).collect();
                store.record_streams(run_id, &names.join(","), &record.stream_records)
            }) {
                log::warn!("could not complete run {run_id} in sync_runs: {e}");
            }
            result
        });
    let (requests, retries, _) = sync::request_counts(&douyin);
    report.requests = requests;
    report.retries = retries;
    read_checkpoints(config, &mut store, report);
    let held = result.is_ok() && stop.held();
    if held {
        report.stopped = true;
        log::info!(
            "task_monitor: stopped by target_command STOP after the committed days; to resume, set it to START or NULL (a rerun resumes after them)"
        );
    }
    if let Some(monitor) = task {
        let outcome = match &result {
            Err(e) => Outcome::Failed(e),
            Ok(()) if held => Outcome::Held,
            Ok(()) => Outcome::Done,
        };
        monitor.finish(Some(&mut store), outcome);
    }
    result
}

/// The run's connection and the side connection (the token, phone look-ups), connected
/// together: a second connect costs no start-up time.
fn connect_both(
    config: &Config,
    stop: &Stop,
) -> (Result<Store, Error>, Result<Arc<SideConnection>, Error>) {
    std::thread::scope(|scope| {
        let side = scope.spawn(|| SideConnection::connect(config.database(), stop).map(Arc::new));
        let store = Store::connect(config.database(), stop);
        let side = side
            .join()
            .unwrap_or_else(|_| Err(Error::Bug("connecting the side connection panicked".into())));
        (store, side)
    })
}

/// After an account's days: fill phones an earlier run stored NULL (the decrypt quota was used
/// up). Its failure is a warning: the orders are stored, and the next run tries again.
fn fill_phones(phones: &PhoneBook, douyin: &Douyin, account: &str) -> Result<(), Error> {
    match phones.fill(douyin, account) {
        Ok(_) => Ok(()),
        Err(e @ Error::Interrupted(_)) => Err(e),
        Err(e) => {
            log::warn!("account {account}: phones left NULL earlier could not be filled: {e}");
            Ok(())
        }
    }
}

/// Whether task_monitor asks this run to stop before it starts (its row says STOP), read
/// without writing; anything unclear is "no" (the monitor's own start decides then).
fn stop_requested(config: &Config, store: &mut Store) -> bool {
    let m = config.monitoring();
    if !m.task_monitor {
        return false;
    }
    let command = store.client().query_opt(
        "SELECT target_command::text FROM task_monitor WHERE task_id = $1",
        &[&m.task_id],
    );
    match command {
        Ok(Some(row)) => monitor::is_stop(row.get::<_, Option<String>>(0).as_deref()),
        _ => false,
    }
}

/// Each stream's checkpoint of each account, for the metrics (left out when the database
/// cannot tell).
fn read_checkpoints(config: &Config, store: &mut Store, report: &mut RunReport) {
    if store.is_closed() {
        return;
    }
    for s in &mut report.streams {
        let Some(kind) = StreamKind::ALL.iter().find(|k| k.name() == s.stream) else {
            continue;
        };
        match store.checkpoint(&stream_checkpoint_key(config, *kind, &s.account)) {
            Ok(c) => s.checkpoint = c.map(|c| c.synced_until),
            Err(e) => {
                log::debug!(
                    "checkpoint of {} {} for the metrics: {e}",
                    s.account,
                    s.stream
                );
                return;
            }
        }
    }
}

/// The checkpoint row of a stream of an account under this configuration.
fn stream_checkpoint_key(config: &Config, kind: StreamKind, account: &str) -> CheckpointKey {
    use crate::streams::{self, refunds, settlements, verifications, Stream};
    fn key<S: Stream>(config: &Config, account: &str) -> CheckpointKey {
        streams::checkpoint_key(config, S::NAME, S::TIME_FIELD, account)
    }
    match kind {
        StreamKind::Orders => sync::checkpoint_key(config, account),
        StreamKind::Verifications => key::<verifications::Verifications>(config, account),
        StreamKind::Refunds => key::<refunds::Refunds>(config, account),
        StreamKind::Settlements => key::<settlements::Settlements>(config, account),
    }
}

/// The metrics of one stream of one account.
fn stream_report<'a>(
    report: &'a mut RunReport,
    account: &str,
    kind: StreamKind,
) -> Option<&'a mut StreamReport> {
    report
        .streams
        .iter_mut()
        .find(|s| s.account == account && s.stream == kind.name())
}

#[allow(clippy::too_many_arguments)] // reason: the run's every part meets here
fn sync_accounts(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    stop: &Stop,
    store: &mut Store,
    record: &mut RunRecord,
    report: &mut RunReport,
) -> Result<(), Error> {
    let started = Instant::now();
    stop.check()?;
    // Fetched already unless task_monitor held the run when it started (then released it).
    douyin.authenticate()?;
    let now = sync::now_epoch();
    let mut worst: Option<Error> = None;
    let mut totals = AccountStats::default();
    let mut per_account = Vec::new();
    // One budget per endpoint for the whole run (a limit is per app, whatever the account).
    let pacers: Vec<(StreamKind, Arc<Pacer>)> = config
        .streams()
        .iter()
        .filter(|k| **k != StreamKind::Orders)
        .map(|k| (*k, Arc::new(Pacer::new(k.budget(config)))))
        .collect();
    let mut stream_totals: Vec<(StreamKind, StreamStats)> = pacers
        .iter()
        .map(|(k, _)| (*k, StreamStats::default()))
        .collect();
    let mut interrupted = None;
    for account in config.accounts() {
        if stop.held() {
            break; // a remote STOP: the next accounts wait for the next run
        }
        if store.is_closed() {
            *store = Store::connect(config.database(), stop)?;
        }
        let mut stats = AccountStats::default();
        let streams = StreamRun {
            pacers: &pacers,
            now,
        };
        let (result, stream_results) = sync_account(
            config, douyin, phones, store, account, &streams, stop, &mut stats,
        );
        // Phones left NULL by earlier runs are filled after the account's orders.
        let result = if config.streams().contains(&StreamKind::Orders) {
            result.and_then(|()| fill_phones(phones, douyin, account))
        } else {
            result
        };
        let mut failed_streams = Vec::new();
        for (kind, outcome) in stream_results {
            let (stream_stats, error) = (outcome.stats, outcome.result.err());
            if let Some(r) = stream_report(report, account, kind) {
                r.records = stream_stats.records;
                r.inserted = Some(stream_stats.inserted);
                r.updated = Some(stream_stats.updated);
                r.rejected = Some(stream_stats.rejected);
                r.exit_code = Some(error.as_ref().map_or(0, Error::exit_code));
            }
            if let Some((_, t)) = stream_totals.iter_mut().find(|(k, _)| *k == kind) {
                t.days += stream_stats.days;
                t.records += stream_stats.records;
                t.inserted += stream_stats.inserted;
                t.updated += stream_stats.updated;
                t.pages += stream_stats.pages;
                t.rejected += stream_stats.rejected;
            }
            match error {
                None => {}
                Some(e @ Error::Interrupted(_)) => interrupted = Some(e),
                Some(e) => {
                    log::error!(account = account.as_str(), stream = kind.name(), logid = e.logid().unwrap_or(""); "account {account}: stream {} failed: {e}", kind.name());
                    failed_streams.push(format!("{} failed with {}", kind.name(), e.exit_code()));
                    if worst.as_ref().is_none_or(|w| e.severity() > w.severity()) {
                        worst = Some(e);
                    }
                }
            }
        }
        let result = match (result, interrupted.take()) {
            (Err(e @ Error::Interrupted(_)), _) | (_, Some(e)) => Err(e),
            (result, None) => result,
        };
        if let Some(r) = stream_report(report, account, StreamKind::Orders) {
            r.records = stats.records;
            r.inserted = Some(stats.inserted);
            r.updated = Some(stats.updated);
            r.rejected = Some(stats.rejected);
        }
        // The account's own failure (its lock, its orders) is the code of every stream of it
        // that has none of its own.
        let account_code = result.as_ref().err().map_or(0, Error::exit_code);
        for s in report.streams.iter_mut().filter(|s| s.account == *account) {
            if s.stream == StreamKind::Orders.name() || s.exit_code.is_none() {
                s.exit_code = Some(account_code);
            }
        }
        if let Some((start, end)) = stats.window {
            record.window = Some(match record.window {
                Some((a, b)) => (a.min(start), b.max(end)),
                None => (start, end),
            });
        }
        totals.days += stats.days;
        totals.records += stats.records;
        totals.inserted += stats.inserted;
        totals.updated += stats.updated;
        totals.pages += stats.pages;
        totals.rejected += stats.rejected;
        let failed_streams = if failed_streams.is_empty() {
            String::new()
        } else {
            format!(", {}", failed_streams.join(", "))
        };
        match result {
            Ok(()) => per_account.push(format!(
                "{account}: {} orders{}{failed_streams}",
                stats.records,
                if stats.rejected > 0 {
                    format!(", {} quarantined", stats.rejected)
                } else {
                    String::new()
                }
            )),
            Err(e @ Error::Interrupted(_)) => {
                log::info!(
                    "interrupted: {} days, {} orders committed before the signal; a rerun resumes",
                    totals.days,
                    totals.records
                );
                return Err(e);
            }
            Err(e) => {
                if config.accounts().len() > 1 {
                    log::error!(account = account.as_str(), logid = e.logid().unwrap_or(""); "account {account} failed: {e}");
                }
                per_account.push(format!(
                    "{account}: failed with {}{failed_streams}",
                    e.exit_code()
                ));
                if worst.as_ref().is_none_or(|w| e.severity() > w.severity()) {
                    worst = Some(e);
                }
            }
        }
    }
    phones.report();
    let (requests, retries, tokens) = sync::request_counts(douyin);
    let seconds = started.elapsed().as_secs_f64();
    let rate = totals.records as f64 / seconds.max(0.001);
    record.days = totals.days as i64;
    record.orders = totals.records as i64;
    record.inserted = totals.inserted as i64;
    record.updated = totals.updated as i64;
    record.pages = totals.pages as i64;
    record.requests = requests as i64;
    record.retries = retries as i64;
    record.rejected =
        (totals.rejected + stream_totals.iter().map(|(_, t)| t.rejected).sum::<u64>()) as i64;
    record.stream_records = config
        .streams()
        .iter()
        .map(|k| match k {
            StreamKind::Orders => (k.name(), totals.records),
            _ => (
                k.name(),
                stream_totals
                    .iter()
                    .find(|(s, _)| s == k)
                    .map_or(0, |(_, t)| t.records),
            ),
        })
        .collect();
    // The orders stream first (the summary of earlier versions, unchanged), then the others.
    let orders_part = if config.streams().contains(&StreamKind::Orders) {
        format!(
            "{}, {} ({} new, {} changed{}), {}, ",
            sync::count(totals.days as u64, "day"),
            sync::count(totals.records, "order"),
            totals.inserted,
            totals.updated,
            if totals.rejected > 0 {
                format!(
                    ", {} quarantined in rejected_records",
                    sync::count(totals.rejected, "record")
                )
            } else {
                String::new()
            },
            sync::count(totals.pages, "page"),
        )
    } else {
        String::new()
    };
    let rate_part = if config.streams().contains(&StreamKind::Orders) {
        format!(", {rate:.0} orders/s")
    } else {
        String::new()
    };
    let streams_part: String = stream_totals
        .iter()
        .map(|(k, t)| {
            format!(
                "; {}: {}, {} ({} new, {} changed{}), {}",
                k.name(),
                sync::count(t.days as u64, "day"),
                t.records,
                t.inserted,
                t.updated,
                if t.rejected > 0 {
                    format!(
                        ", {} quarantined in rejected_records",
                        sync::count(t.rejected, "record")
                    )
                } else {
                    String::new()
                },
                sync::count(t.pages, "page")
            )
        })
        .collect();
    log::info!(
        summary = true, days = totals.days as u64, orders = totals.records, inserted = totals.inserted,
        updated = totals.updated, rejected = totals.rejected, pages = totals.pages,
        requests = requests, retries = retries, seconds = seconds;
        "{}: {orders_part}{}, {}, {}, {seconds:.1} s{rate_part}{streams_part}{}",
        if worst.is_some() { "finished with errors" } else { "done" },
        sync::count(requests, "request"),
        sync::count(retries, "retry"),
        sync::count(tokens, "token"),
        if config.accounts().len() > 1 {
            format!(" [{}]", per_account.join("; "))
        } else {
            String::new()
        }
    );
    match worst {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn describe_plan(config: &Config, plan: &Plan) -> String {
    format!(
        "{} {} .. {} by {} ({} day{}){}",
        if plan.range_end.is_some() {
            "range"
        } else {
            "incremental"
        },
        window::format_local(
            plan.days
                .first()
                .map_or(plan.window.start, |d| d.span.start)
        ),
        // The last second included (the window's end is exclusive internally).
        window::format_local(plan.days.last().map_or(plan.window.end, |d| d.span.end) - 1),
        config.time_field().key().replace('_', " "),
        plan.days.len(),
        if plan.days.len() == 1 { "" } else { "s" },
        match plan.resumed_from {
            Some(t) => format!(", resuming after {}", window::format_local(t)),
            None => String::new(),
        }
    )
}

/// The streams besides orders, for one account: their budgets and the run's clock.
struct StreamRun<'a> {
    pacers: &'a [(StreamKind, Arc<Pacer>)],
    now: i64,
}

type StreamOutcomes = Vec<(StreamKind, StreamOutcome)>;

/// Sync one account under its lock: the orders stream (when asked) on this thread, every other
/// stream on its own thread and connection at the same time (each has its own budget). A
/// stream that fails stops no other.
#[allow(clippy::too_many_arguments)] // reason: one account's sync needs the run's every part
fn sync_account(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    account: &str,
    streams: &StreamRun<'_>,
    stop: &Stop,
    stats: &mut AccountStats,
) -> (Result<(), Error>, StreamOutcomes) {
    match store.try_lock(account) {
        Ok(true) => {}
        Ok(false) => {
            return (
                Err(Error::Locked(format!(
                    "another run holds the lock of account {account}; exiting (that run syncs it)"
                ))),
                Vec::new(),
            )
        }
        Err(e) => return (Err(e), Vec::new()),
    }
    let (result, outcomes) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (kind, pacer) in streams.pacers {
            let ctx = StreamContext {
                config,
                douyin,
                pacer,
                now: streams.now,
                stop,
            };
            let kind = *kind;
            let spawned = std::thread::Builder::new()
                .name(kind.name().to_string())
                .spawn_scoped(scope, move || kind.sync_account(&ctx, account));
            handles.push((kind, spawned));
        }
        let result = if config.streams().contains(&StreamKind::Orders) {
            sync_orders(
                config,
                douyin,
                phones,
                store,
                account,
                streams.now,
                stop,
                stats,
            )
        } else {
            Ok(())
        };
        let outcomes: StreamOutcomes = handles
            .into_iter()
            .map(|(kind, spawned)| {
                let outcome = match spawned {
                    Ok(handle) => handle.join().unwrap_or_else(|_| StreamOutcome {
                        stats: StreamStats::default(),
                        result: Err(Error::Bug(format!("the {} stream panicked", kind.name()))),
                    }),
                    Err(e) => StreamOutcome {
                        stats: StreamStats::default(),
                        result: Err(Error::Bug(format!(
                            "cannot start the {} stream: {e}",
                            kind.name()
                        ))),
                    },
                };
                (kind, outcome)
            })
            .collect();
        (result, outcomes)
    });
    if !store.is_closed() {
        let _ = store.unlock(account);
    }
    (result, outcomes)
}

#[allow(clippy::too_many_arguments)] // reason: the orders stream needs the run's every part
fn sync_orders(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    account: &str,
    now: i64,
    stop: &Stop,
    stats: &mut AccountStats,
) -> Result<(), Error> {
    let key = sync::checkpoint_key(config, account);
    let checkpoint = store.checkpoint(&key)?;
    let plan = sync::plan(config, key, checkpoint, now);
    log::info!("account {account}: {}", describe_plan(config, &plan));
    if let (Some(first), Some(last)) = (plan.days.first(), plan.days.last()) {
        stats.window = Some((first.span.start, last.span.end));
    }
    crate::streams::orders::sync_days(config, douyin, phones, store, &plan, stop, stats)
}

/// `douyin-order-sync check`: validate, connect, authenticate, ask one page per account of every
/// configured stream (the orders of the plan's first day; a tiny window of the others), print
/// the plan; write nothing. Exit codes as a real run.
pub fn check(config: &Config, stop: &Stop) -> Result<(), Error> {
    say!(
        "configuration: ok{}",
        config
            .env_file()
            .map(|p| format!(" (read {})", p.display()))
            .unwrap_or_default()
    );
    for warning in config.warnings() {
        say!("  warning: {warning}");
    }
    let mut store = Store::connect(config.database(), stop)?;
    store.check_access()?;
    let layout = store.orders_layout()?;
    let pending = store.pending_migrations()?;
    say!(
        "database: connected to {}; {}{}",
        config.database().masked_url(),
        if pending.is_empty() {
            "schema up to date".to_string()
        } else {
            format!("migrations a run would apply: {}", pending.join(", "))
        },
        if layout == OrdersLayout::Python {
            "; the Python tool's orders table, which a run adopts in place"
        } else {
            ""
        }
    );
    for line in monitor::describe(&mut store, config)? {
        say!("{line}");
    }
    let (statement_timeout, lock_timeout) = store.timeouts()?;
    say!("database session: statement_timeout {statement_timeout}, lock_timeout {lock_timeout}");
    let douyin = Douyin::new(config, stop.clone());
    // A stored token that is still valid proves the same credentials were accepted; check
    // uses it (and stores none: it writes nothing).
    if store.has_token_table()? {
        let side = Arc::new(SideConnection::connect(config.database(), stop)?);
        douyin.set_token_keeper(Arc::new(TokenCache::read_only(config, side, stop)));
    }
    douyin.authenticate()?;
    let (_, _, fetched) = sync::request_counts(&douyin);
    say!(
        "douyin: client token ok from {}{}",
        config.api_base(),
        if fetched == 0 {
            " (the stored one, still valid)"
        } else {
            ""
        }
    );
    let now = sync::now_epoch();
    let has_checkpoints = store.has_checkpoints()?;
    // Every configured stream's endpoint is asked, for every account; a stream that fails is
    // reported on its own line and the others are still asked. The exit code is the most
    // serious failure's.
    let mut failed: Vec<Error> = Vec::new();
    for account in config.accounts() {
        let checkpoint_of = |store: &mut Store, kind: StreamKind| -> Result<_, Error> {
            if has_checkpoints {
                store.checkpoint(&stream_checkpoint_key(config, kind, account))
            } else {
                Ok(None)
            }
        };
        let describe_checkpoint = |checkpoint: Option<crate::store::Checkpoint>| match checkpoint {
            Some(c) => format!(
                "checkpoint: synced until {}{}",
                window::format_local(c.synced_until),
                if c.range_done {
                    " (range done: a run syncs it again in full)"
                } else {
                    ""
                }
            ),
            None => "checkpoint: none yet".to_string(),
        };
        if !config.streams().contains(&StreamKind::Orders) {
            say!("account {account}:");
        }
        for kind in config.streams() {
            let checkpoint = checkpoint_of(&mut store, *kind)?;
            let probed = if *kind == StreamKind::Orders {
                let key = sync::checkpoint_key(config, account);
                let plan = sync::plan(config, key, checkpoint, now);
                say!("account {account}: {}", describe_plan(config, &plan));
                say!("  {}", describe_checkpoint(checkpoint));
                match plan.days.first() {
                    Some(day) => douyin
                        .query_orders(&OrderQuery {
                            account_id: account,
                            span: day.span,
                            time_field: config.time_field(),
                            page_num: 1,
                            page_size: config.page_size(),
                            order_status: config.order_status(),
                            get_secret_number: config.get_secret_number(),
                            cursor: None,
                        })
                        .map(|page| {
                            say!(
                                "  first day {}: Douyin reports {} orders ({} in the first page)",
                                day.date,
                                page.total,
                                page.orders.len()
                            );
                        }),
                    None => Ok(()),
                }
            } else {
                say!("  {}: {}", kind.name(), describe_checkpoint(checkpoint));
                probe_stream(config, &douyin, *kind, account, now).map(|line| say!("  {line}"))
            };
            match probed {
                Ok(()) => {}
                Err(e @ Error::Interrupted(_)) => return Err(e),
                Err(e) => {
                    say!(
                        "  FAILED: stream {} of account {account}: {} (exit {}): {e}",
                        kind.name(),
                        match &e {
                            Error::Refused(_) =>
                                "permission refused (the app lacks this \
                                endpoint's capability, or the account has not authorised it)",
                            Error::Unavailable(_) => "endpoint unreachable or failing",
                            Error::Rejected(_) | Error::Bug(_) => "unexpected answer",
                            _ => "endpoint unusable",
                        },
                        e.exit_code()
                    );
                    failed.push(e);
                }
            }
        }
    }
    // The most serious failure, the first among equals.
    let worst = failed
        .iter()
        .enumerate()
        .max_by_key(|(i, e)| (e.severity(), std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    if let Some(i) = worst {
        say!(
            "check: {} failed, nothing written",
            if failed.len() == 1 {
                "one stream".to_string()
            } else {
                format!("{} streams", failed.len())
            }
        );
        return Err(failed.swap_remove(i));
    }
    say!("check: ok, nothing written");
    Ok(())
}

/// Ask a stream's endpoint for one page of a tiny window (the last hour; the settlement ledger,
/// which is read by bill date, yesterday's), read-only, and read the answer as a run would.
fn probe_stream(
    config: &Config,
    douyin: &Douyin,
    kind: StreamKind,
    account: &str,
    now: i64,
) -> Result<String, Error> {
    use crate::streams::{refunds, settlements, verifications, Next, Stream};
    fn probe<S: Stream>(
        douyin: &Douyin,
        pacer: &Pacer,
        account: &str,
        span: window::Span,
        window: &str,
    ) -> Result<String, Error> {
        let params = S::request(account, span, None);
        let answer = douyin.get(pacer, S::NAME, S::ENDPOINT, &params)?;
        let page = S::page(&answer).map_err(|e| {
            Error::Bug(format!(
                "{} answer: {e} (logid {})",
                S::NAME,
                answer.logid.as_deref().unwrap_or("")
            ))
        })?;
        Ok(format!(
            "{}: endpoint ok, {} in the first page of {window}{}",
            S::NAME,
            sync::count((page.rows.len() + page.rejected.len()) as u64, S::NOUN),
            if page.next == Next::Done {
                ""
            } else {
                " (more pages)"
            }
        ))
    }
    let pacer = Pacer::new(kind.budget(config));
    let hour = window::Span {
        start: now - 3600,
        end: now,
    };
    let last_hour = "the last hour";
    match kind {
        StreamKind::Orders => Err(Error::Bug(
            "the orders stream is probed by the order query".into(),
        )),
        StreamKind::Verifications => {
            probe::<verifications::Verifications>(douyin, &pacer, account, hour, last_hour)
        }
        StreamKind::Refunds => probe::<refunds::Refunds>(douyin, &pacer, account, hour, last_hour),
        StreamKind::Settlements => {
            // Read by bill date: yesterday's, a date whose ledger exists.
            let yesterday = window::Span {
                start: now - 86_400,
                end: now - 86_400 + 3600,
            };
            let date = window::format_local(yesterday.start);
            let date = format!("bill date {}", date.get(..10).unwrap_or(&date));
            probe::<settlements::Settlements>(douyin, &pacer, account, yesterday, &date)
        }
    }
}
