//! The command line as typed: argh flags, before any validation.
//!
//! Flags only carry strings here; `config` reads them beside the environment and the `.env` file
//! and validates everything in one place, so a flag and a variable are checked by the same code.

use argh::FromArgs;

/// Copy a merchant's Douyin Life (抖音来客) orders from the Douyin Open Platform into PostgreSQL,
/// one checkpointed day (Asia/Shanghai) at a time, then exit.
#[derive(FromArgs, Debug, Default)]
#[argh(
    note = r#"Configuration comes from flags, then environment variables, then a .env file (./.env, else
the one beside the binary, or --env-file), first found wins; .env is read as python-dotenv reads it
(quotes, escapes, expanding $VAR in braces). Variables (the Python tool's names):
  DB_URL              PostgreSQL URL as SQLAlchemy reads it (postgres://, postgresql+psycopg2://),
                      sslmode=disable|prefer|require|verify-ca|verify-full, sslrootcert=FILE
  APPID, AppSecret    the Douyin app's client key and secret (required)
  ACCOUNT_ID          merchant account id(s), comma-separated (required)
  API_BASE_URL        default https://open.douyin.com
  START_DATE/END_DATE YYYY-MM-DD[ HH:MM:SS] (or /), Asia/Shanghai; a bare END_DATE is the whole day
  START_TIME/END_TIME epoch seconds (dates win when both are set)
  SYNC_DAYS           without a range: the first incremental run goes this many days back (1)
  USE_CREATE_TIME     true: query by create time; default false: by update time (catches refunds)
  ORDER_STATUS        only orders in this status (unset: all)
  PAGE_SIZE           1-100 (50)        GET_SECRET_NUMBER  true|false (false)
  MAX_QPS             requests per second, all calls together (10)
  CONCURRENCY         requests in flight at once (default: MAX_QPS, at most 16)
  RETRY_MAX_TRIES     tries per request before giving up (8)
  RETRY_BASE_MS       first backoff (1000); doubles each try, with jitter
  RETRY_MAX_DELAY_MS  longest backoff (30000)
  HTTP_TIMEOUT_SECS   whole-request timeout (30); connect timeout 10 s
  OVERLAP_SECS        incremental runs re-read this much before the checkpoint (600)
  LOG_FORMAT          text|json (text)  RUST_LOG  error|warn|info|debug|trace (info)
  TASK_ID             the task_monitor row (douyin_order_sync); its target_command STOP
                      stops runs, START or NULL lets them run
  TASK_MONITOR        true|false: keep that row and obey its command (true)
  HEARTBEAT_SECS      how often a run writes its heartbeat and reads the command (30)
  PUSHGATEWAY_URL     push the run's metrics to this Prometheus Pushgateway at its end
  METRICS_FILE        write them to this file too (node_exporter textfile collector)
  SYNC_INTERVAL       the old daemon's: accepted, ignored (schedule with cron or a CronJob)"#,
    error_code(0, "done: every day of the window is committed, or a task_monitor STOP held the run"),
    error_code(64, "bad command line"),
    error_code(70, "a bug on our side (e.g. Douyin answered 'invalid parameter')"),
    error_code(
        75,
        "temporary: Douyin or PostgreSQL unavailable, retries exhausted, or another run holds the lock"
    ),
    error_code(77, "Douyin refused the credentials or a permission"),
    error_code(78, "bad configuration: a missing or invalid variable"),
    error_code(130, "stopped by SIGINT (the day in flight rolled back)"),
    error_code(143, "stopped by SIGTERM (the day in flight rolled back)")
)]
pub struct Args {
    /// read variables from this file instead of ./.env
    #[argh(option)]
    pub env_file: Option<String>,
    /// START_DATE: first day (or second) of an explicit range
    #[argh(option)]
    pub start_date: Option<String>,
    /// END_DATE: last day (or second) of an explicit range, inclusive
    #[argh(option)]
    pub end_date: Option<String>,
    /// START_TIME: range start, epoch seconds
    #[argh(option)]
    pub start_time: Option<String>,
    /// END_TIME: range end, epoch seconds, inclusive
    #[argh(option)]
    pub end_time: Option<String>,
    /// SYNC_DAYS: how far back the first incremental run goes
    #[argh(option)]
    pub sync_days: Option<String>,
    /// ACCOUNT_ID: merchant account id(s), comma-separated
    #[argh(option)]
    pub account_id: Option<String>,
    /// ORDER_STATUS: only this order status
    #[argh(option)]
    pub order_status: Option<String>,
    /// PAGE_SIZE: orders per page, 1-100
    #[argh(option)]
    pub page_size: Option<String>,
    /// MAX_QPS: requests per second
    #[argh(option)]
    pub max_qps: Option<String>,
    /// USE_CREATE_TIME: true|false
    #[argh(option)]
    pub use_create_time: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    Check(CheckArgs),
}

/// Validate the configuration, connect to PostgreSQL, fetch a token, ask for one page and print
/// the plan (window, days, checkpoint), writing nothing. Exit codes as a real run.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {}

impl Args {
    /// The flags that stand for variables, as (variable name, value).
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let pairs = [
            ("START_DATE", &self.start_date),
            ("END_DATE", &self.end_date),
            ("START_TIME", &self.start_time),
            ("END_TIME", &self.end_time),
            ("SYNC_DAYS", &self.sync_days),
            ("ACCOUNT_ID", &self.account_id),
            ("ORDER_STATUS", &self.order_status),
            ("PAGE_SIZE", &self.page_size),
            ("MAX_QPS", &self.max_qps),
            ("USE_CREATE_TIME", &self.use_create_time),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| (name, v.clone())))
            .collect()
    }
}

/// Parse the command line. `Ok(Err(text))` is `--help` or `--version` output to print with exit 0.
pub fn parse(argv: &[String]) -> Result<Result<Args, String>, String> {
    let command = argv
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "douyin-order-sync".to_string());
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    match Args::from_args(&[&command], &rest) {
        Ok(args) if args.version => Ok(Err(format!(
            "douyin-order-sync {}\n",
            env!("CARGO_PKG_VERSION")
        ))),
        Ok(args) => Ok(Ok(args)),
        Err(early) => match early.status {
            Ok(()) => Ok(Err(early.output)),
            Err(()) => Err(early.output.trim_end().to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_become_variables_by_their_python_names() {
        let args = parse(&argv(&[
            "x",
            "--page-size",
            "20",
            "--start-date",
            "2024-01-01",
        ]))
        .unwrap()
        .unwrap();
        let vars = args.variables();
        assert!(vars.contains(&("PAGE_SIZE", "20".to_string())));
        assert!(vars.contains(&("START_DATE", "2024-01-01".to_string())));
    }

    #[test]
    fn help_lists_variables_and_exit_codes() {
        let help = parse(&argv(&["douyin-order-sync", "--help"]))
            .unwrap()
            .unwrap_err();
        for needle in [
            "DB_URL",
            "AppSecret",
            "MAX_QPS",
            "TASK_ID",
            "TASK_MONITOR",
            "HEARTBEAT_SECS",
            "PUSHGATEWAY_URL",
            "METRICS_FILE",
            "75",
            "77",
            "78",
            "143",
        ] {
            assert!(help.contains(needle), "help lacks {needle}:\n{help}");
        }
    }

    #[test]
    fn help_prints_exactly_the_exit_code_table() {
        let help = parse(&argv(&["douyin-order-sync", "--help"]))
            .unwrap()
            .unwrap_err();
        for (code, meaning) in crate::error::EXIT_CODE_TABLE {
            assert!(
                help.contains(&format!("  {code} {meaning}\n")),
                "--help lacks '{code} {meaning}':\n{help}"
            );
        }
    }

    #[test]
    fn an_unknown_flag_is_a_usage_error() {
        assert!(parse(&argv(&["x", "--nope"])).is_err());
    }

    #[test]
    fn check_is_a_subcommand() {
        let args = parse(&argv(&["x", "check"])).unwrap().unwrap();
        assert_eq!(args.command, Some(Command::Check(CheckArgs {})));
    }
}
