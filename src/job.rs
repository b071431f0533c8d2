//! One run from start to exit: connect and migrate while a side connection gets the client token
//! (the stored one, or a fresh one that it stores), record the run, sync each account under its
//! own lock and checkpoint (then fill phones an earlier run could not decrypt), log the summary,
//! and pick the exit code. Also the read-only `check`.
//!
//! Accounts fail independently: a refused authorisation or a day that keeps failing ends that
//! account, the others go on, and the run exits with the most serious error among them. A signal
//! ends everything at once.

use crate::config::{Config, WindowSpec};
use crate::douyin::{Douyin, OrderQuery};
use crate::error::Error;
use crate::phones::PhoneBook;
use crate::stop::Stop;
use crate::store::{RunRecord, SideConnection, Store};
use crate::sync::{self, AccountStats, Plan};
use crate::token_cache::TokenCache;
use crate::window;
use std::sync::{mpsc, Arc};
use std::time::Instant;

fn mode(config: &Config) -> &'static str {
    match config.window() {
        WindowSpec::Range(_) => "range",
        WindowSpec::Incremental { .. } => "incremental",
    }
}

/// Run the sync described by `config`.
pub fn run(config: &Config, stop: &Stop) -> Result<(), Error> {
    if !config.legacy_variables().is_empty() {
        log::info!(
            "{} belong to the old daemon and are ignored: scheduling is now the scheduler's job (cron, a Kubernetes CronJob)",
            config.legacy_variables().join(" and ")
        );
    }
    let started = Instant::now();
    stop.check()?;
    let douyin = Arc::new(Douyin::new(config, stop.clone()));
    let (store, side) = start_up(config, stop, &douyin);
    let mut store = store?;
    log::debug!(
        "start-up: {:.0} ms (connect, migrations, client token)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let run_id = store.begin_run(
        &config.accounts().join(","),
        mode(config),
        config.time_field().key(),
    )?;
    let mut record = RunRecord::default();
    // A refused token (77) is recorded in sync_runs like any other error of the run.
    let result = side.and_then(|side| {
        let phones = Arc::new(PhoneBook::new(side));
        sync_accounts(
            config,
            stop,
            &douyin,
            &phones,
            &mut store,
            &mut record,
            started,
        )
    });
    record.exit_code = result.as_ref().err().map_or(0, Error::exit_code);
    record.error = result.as_ref().err().map(Error::to_string);
    if store.is_closed() {
        if let Ok(fresh) = Store::connect(config.database()) {
            store = fresh;
        }
    }
    if let Err(e) = store.finish_run(run_id, &record) {
        log::warn!("could not complete run {run_id} in sync_runs: {e}");
    }
    result
}

/// Start-up, overlapped: the run's connection connects and applies the migrations while a side
/// connection connects and gets the client token (the stored one, or a fresh one, stored; on
/// the first run on a database, fetched while the migrations run and stored after them).
/// Returns the run's connection and the side connection with the token in hand, or why not
/// (the caller records a token refusal in `sync_runs` before exiting with it).
fn start_up(
    config: &Config,
    stop: &Stop,
    douyin: &Douyin,
) -> (Result<Store, Error>, Result<Arc<SideConnection>, Error>) {
    let (migrated, migrated_signal) = mpsc::channel();
    std::thread::scope(|scope| {
        let token = scope.spawn(move || {
            let side = Arc::new(SideConnection::connect(config.database())?);
            let cache = TokenCache::new(config, Arc::clone(&side), stop, Some(migrated_signal));
            douyin.set_token_keeper(Box::new(cache));
            douyin.authenticate()?;
            Ok(side)
        });
        let store = Store::connect(config.database()).and_then(|mut store| {
            for done in store.migrate()? {
                log::info!("{done}");
            }
            let _ = migrated.send(());
            Ok(store)
        });
        drop(migrated); // a failed migration: the token thread stops waiting for it
        let side = token
            .join()
            .unwrap_or_else(|_| Err(Error::Bug("the token thread panicked".into())));
        (store, side)
    })
}

fn sync_accounts(
    config: &Config,
    stop: &Stop,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    record: &mut RunRecord,
    started: Instant,
) -> Result<(), Error> {
    stop.check()?;
    let now = sync::now_epoch();
    let mut worst: Option<Error> = None;
    let mut totals = AccountStats::default();
    let mut per_account = Vec::new();
    for account in config.accounts() {
        if store.is_closed() {
            *store = Store::connect(config.database())?;
        }
        let mut stats = AccountStats::default();
        let result = sync_account(
            config, douyin, phones, store, account, now, stop, &mut stats,
        )
        .and_then(|()| fill_phones(phones, douyin, account));
        if let Some((start, end)) = stats.window {
            record.window = Some(match record.window {
                Some((a, b)) => (a.min(start), b.max(end)),
                None => (start, end),
            });
        }
        totals.days += stats.days;
        totals.orders += stats.orders;
        totals.inserted += stats.inserted;
        totals.updated += stats.updated;
        totals.pages += stats.pages;
        match result {
            Ok(()) => per_account.push(format!("{account}: {} orders", stats.orders)),
            Err(e @ Error::Interrupted(_)) => {
                log::info!(
                    "interrupted: {} days, {} orders committed before the signal; a rerun resumes",
                    totals.days,
                    totals.orders
                );
                return Err(e);
            }
            Err(e) => {
                if config.accounts().len() > 1 {
                    log::error!(account = account.as_str(), logid = e.logid().unwrap_or(""); "account {account} failed: {e}");
                }
                per_account.push(format!("{account}: failed with {}", e.exit_code()));
                if worst.as_ref().is_none_or(|w| e.severity() > w.severity()) {
                    worst = Some(e);
                }
            }
        }
    }
    phones.report();
    let (requests, retries, tokens) = sync::request_counts(douyin);
    let seconds = started.elapsed().as_secs_f64();
    let rate = totals.orders as f64 / seconds.max(0.001);
    record.days = totals.days as i64;
    record.orders = totals.orders as i64;
    record.inserted = totals.inserted as i64;
    record.updated = totals.updated as i64;
    record.pages = totals.pages as i64;
    record.requests = requests as i64;
    record.retries = retries as i64;
    log::info!(
        summary = true, days = totals.days as u64, orders = totals.orders, inserted = totals.inserted,
        updated = totals.updated, pages = totals.pages, requests = requests, retries = retries,
        seconds = seconds;
        "{}: {}, {} ({} new, {} changed), {}, {}, {}, {}, {seconds:.1} s, {rate:.0} orders/s{}",
        if worst.is_some() { "finished with errors" } else { "done" },
        sync::count(totals.days as u64, "day"),
        sync::count(totals.orders, "order"),
        totals.inserted,
        totals.updated,
        sync::count(totals.pages, "page"),
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

#[allow(clippy::too_many_arguments)] // reason: one account's sync needs the run's every part
fn sync_account(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    account: &str,
    now: i64,
    stop: &Stop,
    stats: &mut AccountStats,
) -> Result<(), Error> {
    if !store.try_lock(account)? {
        return Err(Error::Locked(format!(
            "another run holds the lock of account {account}; exiting (that run syncs it)"
        )));
    }
    let key = sync::checkpoint_key(config, account);
    let checkpoint = store.checkpoint(&key)?;
    let plan = sync::plan(config, key, checkpoint, now);
    log::info!("account {account}: {}", describe_plan(config, &plan));
    if let (Some(first), Some(last)) = (plan.days.first(), plan.days.last()) {
        stats.window = Some((first.span.start, last.span.end));
    }
    let result = sync::sync_days(config, douyin, phones, store, &plan, stop, stats);
    if !store.is_closed() {
        let _ = store.unlock(account);
    }
    result
}

/// `douyin-order-sync check`: validate, connect, authenticate, ask one page per account, print
/// the plan; write nothing. Exit codes as a real run.
pub fn check(config: &Config, stop: &Stop) -> Result<(), Error> {
    println!(
        "configuration: ok{}",
        config
            .env_file()
            .map(|p| format!(" (read {})", p.display()))
            .unwrap_or_default()
    );
    for warning in config.warnings() {
        println!("  warning: {warning}");
    }
    let mut store = Store::connect(config.database())?;
    let pending = store.pending_migrations()?;
    println!(
        "database: connected to {}; {}",
        config.database().masked_url(),
        if pending.is_empty() {
            "schema up to date".to_string()
        } else {
            format!("migrations a run would apply: {}", pending.join(", "))
        }
    );
    let douyin = Douyin::new(config, stop.clone());
    // A stored token that is still valid proves the same credentials were accepted; check
    // uses it (and stores none: it writes nothing).
    if store.has_token_table()? {
        let side = Arc::new(SideConnection::connect(config.database())?);
        douyin.set_token_keeper(Box::new(TokenCache::read_only(config, side, stop)));
    }
    douyin.authenticate()?;
    let (_, _, fetched) = sync::request_counts(&douyin);
    println!(
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
    for account in config.accounts() {
        let key = sync::checkpoint_key(config, account);
        let checkpoint = if has_checkpoints {
            store.checkpoint(&key)?
        } else {
            None
        };
        let plan = sync::plan(config, key, checkpoint, now);
        println!("account {account}: {}", describe_plan(config, &plan));
        match checkpoint {
            Some(c) => println!(
                "  checkpoint: synced until {}{}",
                window::format_local(c.synced_until),
                if c.range_done {
                    " (range done: a run syncs it again in full)"
                } else {
                    ""
                }
            ),
            None => println!("  checkpoint: none yet"),
        }
        if let Some(day) = plan.days.first() {
            let page = douyin.query_orders(&OrderQuery {
                account_id: account,
                span: day.span,
                time_field: config.time_field(),
                page_num: 1,
                page_size: config.page_size(),
                order_status: config.order_status(),
                get_secret_number: config.get_secret_number(),
            })?;
            println!(
                "  first day {}: Douyin reports {} orders ({} in the first page)",
                day.date,
                page.total,
                page.orders.len()
            );
        }
    }
    println!("check: ok, nothing written");
    Ok(())
}
