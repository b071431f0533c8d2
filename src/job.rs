//! One run from start to exit: connect and migrate, authenticate once, sync each account under
//! its own lock and checkpoint, log the summary, and pick the exit code.
//!
//! Accounts fail independently: a refused authorisation or a day that keeps failing ends that
//! account, the others go on, and the run exits with the most serious error among them. A signal
//! ends everything at once.

use crate::config::Config;
use crate::douyin::Douyin;
use crate::error::Error;
use crate::stop::Stop;
use crate::store::Store;
use crate::sync::{self, AccountStats};
use crate::window;
use std::sync::Arc;
use std::time::Instant;

/// Run the sync described by `config`.
pub fn run(config: &Config, stop: &Stop) -> Result<(), Error> {
    let started = Instant::now();
    if !config.legacy_variables().is_empty() {
        log::info!(
            "{} belong to the old daemon and are ignored: scheduling is now the scheduler's job (cron, a Kubernetes CronJob)",
            config.legacy_variables().join(" and ")
        );
    }
    let mut store = Store::connect(config.database())?;
    for done in store.migrate()? {
        log::info!("{done}");
    }
    stop.check()?;
    let douyin = Arc::new(Douyin::new(config, stop.clone()));
    douyin.authenticate()?;
    let now = sync::now_epoch();
    let mut worst: Option<Error> = None;
    let mut totals = AccountStats::default();
    let mut per_account = Vec::new();
    for account in config.accounts() {
        if store.is_closed() {
            store = Store::connect(config.database())?;
        }
        let result = sync_account(config, &douyin, &mut store, account, now, stop);
        match result {
            Ok(stats) => {
                totals.days += stats.days;
                totals.orders += stats.orders;
                totals.inserted += stats.inserted;
                totals.updated += stats.updated;
                totals.pages += stats.pages;
                per_account.push(format!("{account}: {} orders", stats.orders));
            }
            Err(e @ Error::Interrupted(_)) => return Err(e),
            Err(e) => {
                if config.accounts().len() > 1 {
                    log::error!("account {account} failed: {e}");
                }
                per_account.push(format!("{account}: failed ({})", e.exit_code()));
                if worst.as_ref().is_none_or(|w| e.severity() > w.severity()) {
                    worst = Some(e);
                }
            }
        }
    }
    let (requests, retries, tokens) = sync::request_counts(&douyin);
    let seconds = started.elapsed().as_secs_f64();
    log::info!(
        "{}: {} days, {} orders ({} new, {} changed), {} pages, {requests} requests, {retries} retries, {tokens} token(s), {seconds:.1} s, {:.0} orders/s{}",
        if worst.is_some() { "finished with errors" } else { "done" },
        totals.days,
        totals.orders,
        totals.inserted,
        totals.updated,
        totals.pages,
        totals.orders as f64 / seconds.max(0.001),
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

fn sync_account(
    config: &Config,
    douyin: &Arc<Douyin>,
    store: &mut Store,
    account: &str,
    now: i64,
    stop: &Stop,
) -> Result<AccountStats, Error> {
    if !store.try_lock(account)? {
        return Err(Error::Locked(format!(
            "another run holds the lock of account {account}; exiting (it will be synced by that run)"
        )));
    }
    let key = sync::checkpoint_key(config, account);
    let checkpoint = store.checkpoint(&key)?;
    let plan = sync::plan(config, key, checkpoint, now);
    log::info!(
        "account {account}: {} {} .. {} by {} ({} day{}){}",
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
        window::format_local(plan.days.last().map_or(plan.window.end, |d| d.span.end)),
        config.time_field().key().replace('_', " "),
        plan.days.len(),
        if plan.days.len() == 1 { "" } else { "s" },
        match plan.resumed_from {
            Some(t) => format!(", resuming after {}", window::format_local(t)),
            None => String::new(),
        }
    );
    let result = sync::sync_days(config, douyin, store, &plan, stop);
    if !store.is_closed() {
        let _ = store.unlock(account);
    }
    result
}
