//! douyin-order-sync: copies a merchant's Douyin Life (抖音来客) orders into PostgreSQL.
//!
//! `run` is the whole program; `main` only maps its result to an exit code. The modules are flat
//! and each owns one job: `cli` (flags as typed), `config` (validated settings), `window` (dates
//! in UTC+8 and day slices), `dotenv` (the `.env` file as python-dotenv reads it), `db_url` (DB_URL as
//! SQLAlchemy reads it), `crypto` (phone decryption), `douyin` (the HTTP API), `pacer` (the
//! QPS budget), `order` (an order's columns), `store` (PostgreSQL), `sync` (the pipeline every stream
//! runs on, for one stream of one account), `streams` (what differs per stream: the plan of
//! days, the `Stream` description of a cursor-paged stream, and the orders stream), `job` (a run over all accounts),
//! `monitor` (the `task_monitor` row), `metrics` (Prometheus), `phones` (stored phones, the
//! decrypt quota, the fill pass), `token_cache` (the client token kept between runs), `stop`
//! (signals and the remote stop), `logging`, `error`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod crypto;
pub mod db_url;
pub mod dotenv;
pub mod douyin;
pub mod error;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod order;
pub mod pacer;
pub mod phones;
pub mod stop;
pub mod store;
pub mod streams;
pub mod sync;
pub mod tls;
pub mod token_cache;
pub mod window;

use crate::config::Config;
use crate::error::Error;

/// Parse the command line and configuration, then run.
pub fn run() -> Result<(), Error> {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = match cli::parse(&argv) {
        Ok(Ok(args)) => args,
        Ok(Err(help)) => {
            out(format_args!("{help}"));
            return Ok(());
        }
        Err(usage) => {
            // Reported in the chosen log format too (LOG_FORMAT from the environment or the
            // default .env: the command line that would name another file did not parse).
            logging::init(Config::peek_log_format(&cli::Args::default()));
            return Err(Error::Usage(usage));
        }
    };
    logging::init(Config::peek_log_format(&args));
    let config = Config::load(&args)?;
    let stop = stop::Stop::install()?;
    match args.command {
        None => job::run(&config, &stop),
        Some(cli::Command::Check(_)) => job::check(&config, &stop),
    }
}

/// Print to stdout. A reader that went away (`check | head -1`) is no error of ours: the rest is
/// dropped instead of panicking on EPIPE, and the exit code stays the run's.
pub fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(text);
}

/// Print an error once: through the logger when it runs (so JSON logs stay JSON), else plainly.
pub fn report(error: &Error) {
    if logging::initialised() {
        log::error!(exit_code = error.exit_code(), logid = error.logid().unwrap_or(""); "{error}");
    } else {
        eprintln!("douyin-order-sync: {error}");
    }
}
