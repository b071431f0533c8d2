//! The Python tool's `task_monitor` row (one per `TASK_ID`): status, heartbeat, how far the data
//! is complete, and the remote stop switch `target_command`.
//!
//! The daemon it replaces kept this row up to date and obeyed `target_command`; back offices and
//! dashboards still read and write it. A scheduled one-shot run keeps the same meaning:
//! - `status` is `RUNNING` while runs happen and are healthy, `ERROR` (with `error_message`) after
//!   a failed run until a run succeeds, `STOPPED` while a `STOP` command holds;
//! - `last_heartbeat` is written when a run starts, after each committed day and at least every
//!   `HEARTBEAT_SECS` while it works, by a thread with its own connection and short statements,
//!   so the heartbeat never waits on the sync nor the sync on the heartbeat;
//! - `last_sync_time` is how far the data of every account is complete (the smallest checkpoint);
//! - `target_command = STOP` makes a starting run sync nothing and a running one stop after the
//!   day in flight (through [`Stop::hold`]); the job never clears the command itself.
//!
//! Timestamps are naive (`TIMESTAMP WITHOUT TIME ZONE`, the Python tool's SQLAlchemy `DateTime`)
//! and written in UTC, computed by the server (`now() AT TIME ZONE 'UTC'`): the Python tool wrote
//! its process's local time, which was UTC in its Docker image, so readers of the row already
//! expect UTC; and UTC does not depend on the zone of the host or of the database session.
//!
//! A failure to write the row is a warning: it never costs an order nor changes the exit code.

use crate::config::{Config, Database};
use crate::error::Error;
use crate::stop::Stop;
use crate::store::{db_error, Store};
use crate::sync;
use postgres::types::ToSql;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Statements of the monitor give up after this long, and waits for a lock sooner (a back office
/// holding the row locked must not hold the run).
const STATEMENT_TIMEOUT: &str = "5s";
const LOCK_TIMEOUT: &str = "2s";

/// How a run ended, as the row records it.
pub enum Outcome<'a> {
    /// Exit 0.
    Done,
    /// A remote STOP ended (or prevented) the run, exit 0.
    Held,
    /// Any other exit.
    Failed(&'a Error),
}

/// What the row says when a run starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Sync.
    Run,
    /// `target_command` is STOP: sync nothing.
    Held,
    /// The table is not the Python tool's (a column is missing): no row is kept this run.
    Off,
}

/// The row of one run's `TASK_ID` and its heartbeat thread.
pub struct TaskMonitor {
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
}

/// What the heartbeat thread needs.
struct Shared {
    database: Database,
    task_id: String,
    interval: Duration,
    stop: Stop,
    done: AtomicBool,
    /// For `last_sync_time`: the accounts and the checkpoint key fields shared by all of them.
    accounts: Vec<String>,
    account_count: i64,
    time_field: &'static str,
    status_filter: String,
    mode_key: String,
}

/// The SQL value of `last_sync_time`: the smallest checkpoint of the run's accounts, as naive UTC,
/// once every account has one (NULL before). Parameters: $2 accounts, $3 count, $4.. key fields.
const SYNCED_UNTIL: &str =
    "(SELECT CASE WHEN count(*) = $3 THEN min(synced_until) AT TIME ZONE 'UTC' END
       FROM sync_checkpoints
      WHERE account_id = ANY($2) AND time_field = $4 AND status_filter = $5 AND mode_key = $6)";

/// Whether a `target_command` is STOP (as the back office spells it).
pub fn is_stop(command: Option<&str>) -> bool {
    command.is_some_and(|c| c.trim().eq_ignore_ascii_case("STOP"))
}

impl TaskMonitor {
    /// The monitor of `config`'s `TASK_ID`, or None when `TASK_MONITOR=false`.
    pub fn new(config: &Config, stop: &Stop) -> Option<TaskMonitor> {
        let m = config.monitoring();
        if !m.task_monitor {
            return None;
        }
        let key = sync::checkpoint_key(config, "");
        Some(TaskMonitor {
            shared: Arc::new(Shared {
                database: config.database().clone(),
                task_id: m.task_id.clone(),
                interval: m.heartbeat,
                stop: stop.clone(),
                done: AtomicBool::new(false),
                accounts: config.accounts().to_vec(),
                account_count: config.accounts().len() as i64,
                time_field: key.time_field,
                status_filter: key.status_filter,
                mode_key: key.mode_key,
            }),
            heartbeat: None,
        })
    }

    pub fn task_id(&self) -> &str {
        &self.shared.task_id
    }

    /// At the start of a run (after the migrations): create or update the row, write the first
    /// heartbeat and read the command. A row that cannot be written is a warning and the run goes
    /// on (it cannot see a STOP then); a table without the Python tool's columns turns the monitor
    /// off for the run.
    pub fn begin(&mut self, store: &mut Store) -> Begin {
        let shared = &self.shared;
        let sql = format!(
            "INSERT INTO task_monitor AS t
                    (task_id, status, last_sync_time, last_heartbeat, created_at, updated_at)
             VALUES ($1, 'RUNNING', {SYNCED_UNTIL}, now() AT TIME ZONE 'UTC',
                     now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
             ON CONFLICT (task_id) DO UPDATE
                SET status = CASE WHEN upper(trim(t.target_command)) = 'STOP' THEN 'STOPPED'
                                  WHEN t.status = 'ERROR' THEN 'ERROR'
                                  ELSE 'RUNNING' END,
                    last_sync_time = coalesce(EXCLUDED.last_sync_time, t.last_sync_time),
                    last_heartbeat = EXCLUDED.last_heartbeat,
                    updated_at = EXCLUDED.updated_at
             RETURNING t.target_command"
        );
        let result = with_timeout(store, |client| {
            let row = client.query_one(&sql, &shared.params())?;
            Ok(row.get::<_, Option<String>>(0))
        });
        match result {
            Ok(command) if is_stop(command.as_deref()) => Begin::Held,
            Ok(_) => Begin::Run,
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_COLUMN) => {
                log::warn!(
                    "task_monitor is not the Python tool's table ({}): its row is not kept and its target_command not obeyed",
                    e.as_db_error().map_or("a column is missing", |d| d.message())
                );
                Begin::Off
            }
            Err(e) => {
                log::warn!(
                    "task_monitor: could not write the row of {}: {}",
                    shared.task_id,
                    db_error(shared.database.masked_url(), "task_monitor", &e)
                );
                Begin::Run
            }
        }
    }

    /// Start the heartbeat thread: every `HEARTBEAT_SECS`, and at once after each committed day,
    /// it writes `last_heartbeat` and `last_sync_time` and reads the command; a STOP holds the run.
    pub fn start_heartbeat(&mut self) {
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || shared.beat())
        {
            Ok(handle) => self.heartbeat = Some(handle),
            Err(e) => log::warn!("task_monitor: cannot start the heartbeat thread: {e}"),
        }
    }

    /// At the end of a run: stop the heartbeat and record the outcome.
    pub fn finish(mut self, store: Option<&mut Store>, outcome: Outcome<'_>) {
        self.shared.done.store(true, Ordering::SeqCst);
        self.shared.stop.run_over();
        if let Some(handle) = self.heartbeat.take() {
            // Woken by `run_over`, the thread sees `done` at once; one stuck in a statement (at
            // most the statement timeout) is left to end on its own rather than hold the exit.
            let until = Instant::now() + Duration::from_secs(2);
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        let shared = &self.shared;
        let (status, error) = match outcome {
            Outcome::Done => (
                "CASE WHEN upper(trim(t.target_command)) = 'STOP' THEN 'STOPPED' ELSE 'RUNNING' END",
                None,
            ),
            Outcome::Held => ("'STOPPED'", None),
            Outcome::Failed(e) => (
                "'ERROR'",
                Some(format!("{} (exit {})", one_line(&e.to_string()), e.exit_code())),
            ),
        };
        let sql = format!(
            "UPDATE task_monitor AS t
                SET status = {status},
                    error_message = {},
                    last_sync_time = coalesce({SYNCED_UNTIL}, t.last_sync_time),
                    last_heartbeat = now() AT TIME ZONE 'UTC',
                    updated_at = now() AT TIME ZONE 'UTC'
              WHERE task_id = $1",
            if matches!(outcome, Outcome::Held) {
                "t.error_message"
            } else {
                "$7"
            }
        );
        let mut own;
        let store = match store {
            Some(s) if !s.is_closed() => s,
            _ => match Store::connect(&shared.database, &shared.stop) {
                Ok(s) => {
                    own = s;
                    &mut own
                }
                Err(e) => {
                    log::warn!("task_monitor: could not record the end of the run: {e}");
                    return;
                }
            },
        };
        let result = with_timeout(store, |client| {
            let mut params = shared.params();
            if !matches!(outcome, Outcome::Held) {
                params.push(&error);
            }
            client.execute(&sql, &params).map(|_| ())
        });
        if let Err(e) = result {
            log::warn!(
                "task_monitor: could not record the end of the run: {}",
                db_error(shared.database.masked_url(), "task_monitor", &e)
            );
        }
    }
}

impl Drop for TaskMonitor {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    /// $1 task id, $2 accounts, $3 their count, $4..$6 the checkpoint key fields.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.task_id,
            &self.accounts,
            &self.account_count,
            &self.time_field,
            &self.status_filter,
            &self.mode_key,
        ]
    }

    /// The heartbeat thread's loop.
    fn beat(&self) {
        let mut connection: Option<Store> = None;
        let mut seen = 0;
        let mut failing = false;
        loop {
            // Sleep until the interval ends or a day commits, looking at `done` every tick.
            let until = Instant::now() + self.interval;
            loop {
                if self.done.load(Ordering::SeqCst) || self.stop.signal().is_some() {
                    return;
                }
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let committed = self
                    .stop
                    .wait_progress(seen, (until - now).min(crate::stop::TICK));
                if committed > seen {
                    seen = committed;
                    break;
                }
            }
            match self.heartbeat(&mut connection) {
                Ok(command) => {
                    if failing {
                        log::info!("task_monitor: the heartbeat is written again");
                        failing = false;
                    }
                    if is_stop(command.as_deref()) && !self.stop.held() {
                        log::info!(
                            "task_monitor: target_command is STOP for {}: finishing the day in flight, then stopping",
                            self.task_id
                        );
                        self.stop.hold();
                    }
                }
                Err(e) => {
                    connection = None;
                    if !failing {
                        log::warn!(
                            "task_monitor: could not write the heartbeat ({e}); the sync goes on"
                        );
                        failing = true;
                    }
                }
            }
        }
    }

    /// One heartbeat on the thread's own connection (made again after an error).
    fn heartbeat(&self, connection: &mut Option<Store>) -> Result<Option<String>, Error> {
        if connection.is_none() {
            *connection = Some(Store::connect(&self.database, &self.stop)?);
        }
        let Some(store) = connection.as_mut() else {
            return Err(Error::Bug("no heartbeat connection".into()));
        };
        let sql = format!(
            "UPDATE task_monitor AS t
                SET last_heartbeat = now() AT TIME ZONE 'UTC',
                    updated_at = now() AT TIME ZONE 'UTC',
                    last_sync_time = coalesce({SYNCED_UNTIL}, t.last_sync_time)
              WHERE task_id = $1
             RETURNING target_command"
        );
        with_timeout(store, |client| {
            let row = client.query_opt(&sql, &self.params())?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
        })
        .map_err(|e| db_error(self.database.masked_url(), "task_monitor heartbeat", &e))
    }
}

/// Run `f` in a transaction with a short statement and lock timeout.
fn with_timeout<T>(
    store: &mut Store,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let mut tx = store.client().transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    ))?;
    let value = f(&mut tx)?;
    tx.commit()?;
    Ok(value)
}

/// An error as one line (the row's `error_message`).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `check`: the row of `TASK_ID` and the command in force, as lines to print. Reads only.
pub fn describe(store: &mut Store, config: &Config) -> Result<Vec<String>, Error> {
    let m = config.monitoring();
    if !m.task_monitor {
        return Ok(vec![
            "task_monitor: off (TASK_MONITOR=false): no row is kept and no command obeyed".into(),
        ]);
    }
    let masked = config.database().masked_url();
    let err = |e: postgres::Error| db_error(masked, "read task_monitor", &e);
    let client = store.client();
    let exists: bool = client
        .query_one("SELECT to_regclass('task_monitor') IS NOT NULL", &[])
        .map_err(err)?
        .get(0);
    if !exists {
        return Ok(vec![format!(
            "task_monitor: no table yet (a run creates it); TASK_ID {}",
            m.task_id
        )]);
    }
    let row = match client.query_opt(
        "SELECT status, to_char(last_heartbeat, 'YYYY-MM-DD HH24:MI:SS'),
                to_char(last_sync_time, 'YYYY-MM-DD HH24:MI:SS'), target_command, error_message
           FROM task_monitor WHERE task_id = $1",
        &[&m.task_id],
    ) {
        Ok(row) => row,
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_COLUMN) => {
            return Ok(vec![format!(
                "task_monitor: not the Python tool's table ({}): a run keeps no row in it",
                e.as_db_error()
                    .map_or("a column is missing", |d| d.message())
            )]);
        }
        Err(e) => return Err(err(e)),
    };
    let Some(row) = row else {
        return Ok(vec![format!(
            "task_monitor {}: no row yet (a run creates it); command: none (runs normally)",
            m.task_id
        )]);
    };
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let command = text(3);
    let mut lines = vec![format!(
        "task_monitor {}: status {}, last heartbeat {}, synced until {}",
        m.task_id,
        text(0).unwrap_or_else(|| "NULL".into()),
        text(1).map_or_else(|| "never".into(), |t| format!("{t} UTC")),
        text(2).map_or_else(|| "unknown".into(), |t| format!("{t} UTC")),
    )];
    if let Some(e) = text(4) {
        lines.push(format!("  error_message: {e}"));
    }
    lines.push(if is_stop(command.as_deref()) {
        format!(
            "  command: STOP: a run syncs nothing until target_command is START or NULL ({})",
            resume_sql(&m.task_id)
        )
    } else {
        format!(
            "  command: {} (runs normally)",
            command.as_deref().unwrap_or("none")
        )
    });
    Ok(lines)
}

/// The statement that lifts a STOP, for the log line and `check`.
pub fn resume_sql(task_id: &str) -> String {
    format!(
        "UPDATE task_monitor SET target_command = 'START' WHERE task_id = '{}'",
        task_id.replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_is_read_as_the_back_office_may_spell_it() {
        assert!(is_stop(Some("STOP")));
        assert!(is_stop(Some(" stop ")));
        assert!(!is_stop(Some("START")));
        assert!(!is_stop(None));
        assert!(!is_stop(Some("")));
    }

    #[test]
    fn an_error_message_is_one_line() {
        assert_eq!(one_line("a\nb  c\r\n"), "a b c");
    }

    #[test]
    fn the_resume_statement_quotes_the_task_id() {
        assert_eq!(
            resume_sql("it's"),
            "UPDATE task_monitor SET target_command = 'START' WHERE task_id = 'it''s'"
        );
    }
}
