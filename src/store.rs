//! Everything the job keeps in PostgreSQL: migrations, the per-account lock, the checkpoint, and
//! a day's staged upsert.
//!
//! A day's pages are streamed with COPY into a staging table of their own as they arrive (in any
//! order, several days at once), so memory does not grow with the size of a day. When a day is
//! complete, one transaction moves it into `orders` (one `INSERT … ON CONFLICT`), takes the day's
//! orders out of the quarantine (`rejected_records`) and puts the day's quarantined records in,
//! advances the checkpoint and drops the staging table; the transaction rolls back on drop, so an
//! early `?` or a crash leaves the previous state. Staging tables are UNLOGGED (no WAL) rather than temporary
//! so that one connection can stream pages while another commits days; a killed run's leftovers
//! are dropped by the next run of the same account. This module knows nothing of HTTP.
//!
//! No wait on PostgreSQL is unbounded, and none outlasts a signal by more than a moment: the whole
//! handshake (TCP, TLS, startup, authentication, session settings) runs on a thread of its own
//! that the caller gives up on after [`CONNECT_TIMEOUT`] or at a signal; every session runs with
//! TCP keepalives, a [`STATEMENT_TIMEOUT`] and a [`LOCK_TIMEOUT`]; and a watcher thread per
//! connection cancels the statement in flight (PostgreSQL's cancel request, over TLS when the
//! session uses it) when SIGTERM or SIGINT arrives, so the day's transaction rolls back at once.

use crate::config::{Database, TlsMode};
use crate::error::Error;
use crate::order::{fen_to_yuan, OrderRow, Rejected};
use crate::stop::{Stop, TICK};
use postgres::{CancelToken, Client, NoTls};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The whole connection handshake: TCP connect, TLS, startup and authentication, and the session
/// settings. A server that accepts and never answers ends the run with 75 after this long.
/// DB_URL's `connect_timeout` replaces it (as in libpq, it then bounds the whole handshake); so
/// do its `keepalives`, `keepalives_idle` and `tcp_user_timeout` the values below.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest statement, enforced by the server (`statement_timeout`, set per session). The
/// longest one is a day's upsert: measured at 14 s for a day of 100,000 new orders and 18 s for
/// 100,000 changed ones (1.5 KB of raw_data each, every index of `orders`) on the shared 2-core
/// machine. Ten minutes leaves room for a day thirty times that size on a busy server (a limit
/// too tight would fail the same day on every run, for good) while still ending a statement that
/// can never finish. Migrations run without it (adopting a large table of the Python tool's
/// takes as long as it takes).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest wait for a lock (`lock_timeout`, set per session): a table locked by someone
/// else (`LOCK TABLE`, `ALTER TABLE`, `VACUUM FULL`) or another run's migration ends the run
/// with 75 after this long instead of holding it indefinitely. Ordinary traffic (reads, pg_dump,
/// autovacuum, other accounts' upserts) never blocks the job's statements this long.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalives: the first probe after this much silence, then one every
/// [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`] unanswered probes drop the connection; data
/// unacknowledged for [`TCP_USER_TIMEOUT`] drops it too. A server host that vanishes mid-run is
/// noticed within about a minute, as a lost connection.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_RETRIES: u32 = 3;
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the watcher repeats the cancel request while the statement is still running (a
/// request that arrived between two statements cancels nothing).
const CANCEL_REPEAT: Duration = Duration::from_secs(1);

/// The migrations, in order. Each runs once, in its own transaction, and is recorded.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "orders", include_str!("../sql/0001_orders.sql")),
    (2, "sync_runs", include_str!("../sql/0002_sync_runs.sql")),
    (
        3,
        "rejected_records",
        include_str!("../sql/0003_rejected_records.sql"),
    ),
    (
        4,
        "task_monitor",
        include_str!("../sql/0004_task_monitor.sql"),
    ),
    (
        5,
        "client_token",
        include_str!("../sql/0005_client_token.sql"),
    ),
    (6, "streams", include_str!("../sql/0006_streams.sql")),
    (
        7,
        "refunds_settlements",
        include_str!("../sql/0007_refunds_settlements.sql"),
    ),
];

/// The coupons of orders, from their `raw_data` (also in sql/0006_streams.sql, which fills the
/// table from the orders stored before it existed). Followed by a WHERE on `o` and the tail.
const CERTIFICATES_INSERT: &str = "INSERT INTO order_certificates (order_id, order_item_id,
        account_id, certificate_id, item_status, item_update_time, refund_amount, refund_time,
        raw_data, sync_time)
 SELECT DISTINCT ON (o.order_id,
                     coalesce(nullif(c.value ->> 'order_item_id', ''), '#' || c.ordinality))
        o.order_id,
        coalesce(nullif(c.value ->> 'order_item_id', ''), '#' || c.ordinality),
        o.account_id,
        nullif(c.value ->> 'certificate_id', ''),
        douyin_sync_int(c.value -> 'item_status'),
        to_timestamp(nullif(douyin_sync_int(c.value -> 'item_update_time'), 0)),
        douyin_sync_int(c.value -> 'refund_amount') / 100.0,
        to_timestamp(nullif(douyin_sync_int(c.value -> 'refund_time'), 0)),
        c.value,
        now()
   FROM orders AS o
  CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(o.raw_data -> 'certificate') = 'array'
                 THEN o.raw_data -> 'certificate' ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS c(value, ordinality)";
const CERTIFICATES_TAIL: &str = "ORDER BY 1, 2, c.ordinality DESC
 ON CONFLICT (order_id, order_item_id) DO NOTHING";

/// Put a day's records that cannot be stored as they are into `rejected_records` (a record
/// seen again updates its row).
fn quarantine(
    tx: &mut postgres::Transaction<'_>,
    stream: &str,
    account_id: &str,
    date: &str,
    rejected: &[Rejected],
) -> Result<(), postgres::Error> {
    if rejected.is_empty() {
        return Ok(());
    }
    let ids: Vec<Option<&str>> = rejected.iter().map(|r| r.order_id.as_deref()).collect();
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    let records: Vec<&str> = rejected.iter().map(|r| r.raw.get()).collect();
    tx.execute(
        "INSERT INTO rejected_records AS r
                (stream, account_id, record_key, day, record_id, reason, record)
         SELECT DISTINCT ON (record_key) $1, $2, record_key, $3::text::date, record_id,
                reason, record
           FROM (SELECT coalesce('id:' || v.record_id, 'md5:' || md5(v.record))
                            AS record_key, v.*
                   FROM unnest($4::text[], $5::text[], $6::text[])
                        AS v(record_id, reason, record)) AS v
         ON CONFLICT (stream, account_id, record_key) DO UPDATE
            SET day = EXCLUDED.day, record_id = EXCLUDED.record_id,
                reason = EXCLUDED.reason, record = EXCLUDED.record, last_seen = now()",
        &[&stream, &account_id, &date, &ids, &reasons, &records],
    )?;
    Ok(())
}

/// Advance a checkpoint row inside a day's transaction. A `monotonic` one never moves back.
fn upsert_checkpoint(
    tx: &mut postgres::Transaction<'_>,
    key: &CheckpointKey,
    checkpoint: Checkpoint,
    monotonic: bool,
) -> Result<u64, postgres::Error> {
    tx.execute(
        "INSERT INTO sync_checkpoints
             (stream, account_id, time_field, status_filter, mode_key, synced_until, range_done,
              updated_at)
         VALUES ($8, $1, $2, $3, $4, to_timestamp($5::bigint), $6, now())
         ON CONFLICT (stream, account_id, time_field, status_filter, mode_key) DO UPDATE
            SET synced_until = CASE WHEN $7 THEN greatest(sync_checkpoints.synced_until,
                                                          EXCLUDED.synced_until)
                                    ELSE EXCLUDED.synced_until END,
                range_done = EXCLUDED.range_done,
                updated_at = now()",
        &[
            &key.account_id,
            &key.time_field,
            &key.status_filter,
            &key.mode_key,
            &checkpoint.synced_until,
            &checkpoint.range_done,
            &monotonic,
            &key.stream,
        ],
    )
}
/// The `stream` of order records in `rejected_records`.
pub const ORDERS_STREAM: &str = "orders";

/// What a run does to the job's tables (those that exist; migrations create the others).
const REQUIRED_PRIVILEGES: &[(&str, &[&str])] = &[
    ("orders", &["SELECT", "INSERT", "UPDATE"]),
    ("sync_checkpoints", &["SELECT", "INSERT", "UPDATE"]),
    ("sync_runs", &["SELECT", "INSERT", "UPDATE"]),
    ("douyin_order_sync_migrations", &["SELECT", "INSERT"]),
    ("order_certificates", &["SELECT", "INSERT", "DELETE"]),
    ("verifications", &["SELECT", "INSERT", "UPDATE"]),
    (
        "rejected_records",
        &["SELECT", "INSERT", "UPDATE", "DELETE"],
    ),
    ("douyin_client_tokens", &["SELECT", "INSERT", "UPDATE"]),
    ("douyin_phone_refusals", &["SELECT", "INSERT", "UPDATE"]),
];

/// Serialises migrations between runs that start at the same moment.
const MIGRATION_LOCK: i64 = 0x646f_7573_796e_6301; // "dousync\x01"

/// Identifies one checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    /// The stream ("orders", "verifications", ...).
    pub stream: &'static str,
    pub account_id: String,
    pub time_field: &'static str,
    /// The ORDER_STATUS filter, "" for none.
    pub status_filter: String,
    /// "incremental", or "range:<start>-<end>" for an explicit range.
    pub mode_key: String,
}

/// A checkpoint row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Everything before this epoch second is committed.
    pub synced_until: i64,
    /// An explicit range that finished.
    pub range_done: bool,
}

/// What a finished run records in `sync_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    /// Records committed per stream (`sync_runs.stream_records`).
    pub stream_records: Vec<(&'static str, u64)>,
    pub window: Option<(i64, i64)>,
    pub days: i64,
    pub orders: i64,
    pub inserted: i64,
    pub updated: i64,
    pub pages: i64,
    pub requests: i64,
    pub retries: i64,
    /// Records quarantined in `rejected_records`.
    pub rejected: i64,
    pub exit_code: i32,
    pub error: Option<String>,
}

/// What committing a day did to `orders`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayWrite {
    /// Distinct orders in the day.
    pub orders: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Records quarantined in `rejected_records` with the day.
    pub rejected: u64,
}

pub struct Store {
    client: Client,
    masked_url: String,
    stop: Stop,
    /// A statement that a signal cancels is in flight (see [`Store::statement`]).
    busy: Arc<AtomicBool>,
    /// Ends the watcher thread when the connection is dropped.
    dropped: Arc<AtomicBool>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// Marks a statement in flight that a signal cancels; clears the mark when dropped.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// After a signal, a failed statement failed because of it (its cancel request, or the
/// connection abandoned): report the signal, not the failure.
fn failed(stop: &Stop, masked_url: &str, context: &str, e: &postgres::Error) -> Error {
    match stop.signal() {
        Some(signal) => Error::Interrupted(signal),
        None => db_error(masked_url, context, e),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.masked_url)
    }
}

/// A PostgreSQL error as one of ours, by its SQLSTATE (see [`by_sqlstate`]); an error without
/// one is a connection that failed or was lost (75, retried within the run).
pub fn db_error(masked_url: &str, context: &str, e: &postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let detail = format!("{context}: {} (SQLSTATE {code})", db.message());
        return by_sqlstate(code, masked_url, detail);
    }
    // No server error: the connection failed or was lost.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    Error::Database(format!("{context} ({masked_url}, DB_URL): {message}"))
}

/// The class of a server error. Only a session that is gone (class 08, or the server shutting
/// it down: 57P01–57P03) is a lost connection, which the run retries by reconnecting and
/// fetching the uncommitted days again. Trouble that may pass but that reconnecting does not
/// cure (disk full 53100, out of memory, too many connections 53300, statement timeout 57014,
/// lock not available 55P03, serialization failures, I/O errors) ends the run with 75 at once.
/// A read-only database (25006), a missing privilege (42501), refused authentication (28),
/// a missing database or schema (3D, 3F) are configuration (78). Anything else is a bug (70).
pub fn by_sqlstate(code: &str, masked_url: &str, detail: String) -> Error {
    let class = &code[..2.min(code.len())];
    match (class, code) {
        ("08", _) | (_, "57P01" | "57P02" | "57P03") => Error::Database(detail),
        (_, "25006") => Error::config(format!(
            "DB_URL ({masked_url}) points at a database this role cannot write to ({detail}): \
             is default_transaction_read_only on for the database or the role, or is it a standby?"
        )),
        (_, "42501") => Error::config(format!(
            "DB_URL ({masked_url}): the role lacks a privilege the job needs: {detail}"
        )),
        ("28" | "3D" | "3F", _) => Error::config(format!("DB_URL ({masked_url}): {detail}")),
        ("53" | "57" | "40" | "55" | "58", _) | (_, "XX001" | "XX002") => {
            Error::DatabaseFailed(detail)
        }
        _ => Error::Bug(format!("database: {detail}")),
    }
}

/// Whether a failed connection's message says TLS as `sslmode` demands it cannot be had: the
/// server offers none, or its certificate fails the check (`require` and stricter only:
/// `prefer` falls back to plain text by itself).
fn tls_refused(mode: TlsMode, message: &str) -> bool {
    matches!(
        mode,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull
    ) && (message.contains("server does not support TLS")
        || message.contains("invalid peer certificate"))
}

impl Store {
    /// Connect, with every timeout of the session set (see the module doc). Gives up after
    /// [`CONNECT_TIMEOUT`] with `Error::Database` (75), or at once with `Error::Interrupted` when a
    /// signal arrives, whatever the server does meanwhile.
    pub fn connect(db: &Database, stop: &Stop) -> Result<Store, Error> {
        stop.check()?;
        let masked_url = db.masked_url().to_string();
        let (config, handshake_timeout) = socket_settings(db.pg_config());
        // TLS is src/tls.rs's business; its error is a root certificate file that is unusable.
        let tls = match db.tls() {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                Some(crate::tls::MakeTls::new(db)?)
            }
        };
        let context = format!("cannot connect with {}", crate::tls::describe(db));
        let (sender, result) = mpsc::channel();
        let thread_tls = tls.clone();
        // The postgres crate's handshake has no overall timeout and cannot be interrupted, so it
        // runs here; when the caller gives up, the thread ends with the socket (or the process).
        std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                let connected = match thread_tls {
                    None => config.connect(NoTls),
                    Some(tls) => config.connect(tls),
                };
                // The error comes with what failed: the handshake (None) or the settings.
                let ready = connected.map_err(|e| (None, e)).and_then(|mut client| {
                    client
                        .batch_execute(&session_settings())
                        .map(|()| client)
                        .map_err(|e| (Some("session settings"), e))
                });
                let _ = sender.send(ready); // the caller may have given up
            })
            .map_err(|e| Error::Bug(format!("cannot start a connection thread: {e}")))?;
        let deadline = Instant::now() + handshake_timeout;
        let client = loop {
            match result.recv_timeout(TICK) {
                Ok(Ok(client)) => break client,
                Ok(Err((Some(what), e))) => return Err(failed(stop, &masked_url, what, &e)),
                Ok(Err((None, e))) => {
                    return Err(match failed(stop, &masked_url, &context, &e) {
                        // A server without TLS, or a certificate the settings refuse, stays so
                        // until someone changes DB_URL or the server: configuration, not a
                        // passing failure.
                        Error::Database(m) if tls_refused(db.tls(), &m) => {
                            Error::config(format!("DB_URL: {m}"))
                        }
                        other => other,
                    });
                }
                Err(RecvTimeoutError::Timeout) => {
                    stop.check()?;
                    if Instant::now() >= deadline {
                        return Err(Error::Database(format!(
                            "{context} ({masked_url}, DB_URL): no answer within {} s (TCP connect, TLS and startup handshake)",
                            handshake_timeout.as_secs()
                        )));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Bug(
                        "the connection thread ended without a word".into(),
                    ))
                }
            }
        };
        let busy = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        watch_for_signals(
            client.cancel_token(),
            tls,
            stop.clone(),
            Arc::clone(&busy),
            Arc::clone(&dropped),
        )?;
        Ok(Store {
            client,
            masked_url,
            stop: stop.clone(),
            busy,
            dropped,
        })
    }

    /// Before a statement that a signal cancels: `Err(Interrupted)` once a signal has arrived,
    /// else a mark that the watcher sees until it is dropped. Statements that record how a run
    /// ended (`finish_run`, `unlock`, `stage_discard`) run without it, after a signal too.
    fn statement(&self) -> Result<Busy, Error> {
        self.stop.check()?;
        self.busy.store(true, Ordering::SeqCst);
        Ok(Busy(Arc::clone(&self.busy)))
    }

    /// An error of a statement that a signal may have cancelled, as the signal.
    fn after_signal(&self, error: Error) -> Error {
        match self.stop.signal() {
            Some(signal) => Error::Interrupted(signal),
            None => error,
        }
    }

    /// The session's `statement_timeout` and `lock_timeout` as the server reports them (a
    /// pooler in transaction mode may not keep session settings: `check` shows what holds).
    pub fn timeouts(&mut self) -> Result<(String, String), Error> {
        let _busy = self.statement()?;
        let row = self
            .client
            .query_one(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
                &[],
            )
            .map_err(self.err("session settings"))?;
        Ok((row.get(0), row.get(1)))
    }

    /// Name the session in `pg_stat_activity` (e.g. the staging connection apart from the run's).
    pub fn set_application_name(&mut self, name: &str) -> Result<(), Error> {
        self.client
            .execute("SELECT set_config('application_name', $1, false)", &[&name])
            .map(|_| ())
            .map_err(self.err("session settings"))
    }

    /// The connection itself, for the modules that own tables of their own (`monitor`).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether this connection is encrypted (TLS), as the server sees it.
    pub fn ssl_in_use(&mut self) -> Result<bool, Error> {
        let _busy = self.statement()?;
        let row = self
            .client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(self.err("TLS status"))?;
        Ok(row.get(0))
    }

    fn err(&self, context: &str) -> impl Fn(postgres::Error) -> Error + '_ {
        let context = context.to_string();
        move |e| failed(&self.stop, &self.masked_url, &context, &e)
    }

    /// Whether the connection answers (a lost connection is often only noticed on use).
    pub fn is_alive(&mut self) -> bool {
        !self.client.is_closed() && self.client.batch_execute("SELECT 1").is_ok()
    }

    /// Whether the connection still works (after an error, to tell a lost connection from a
    /// failed statement).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// What the table `orders` is (read-only; a foreign table is a configuration error).
    pub fn orders_layout(&mut self) -> Result<OrdersLayout, Error> {
        let _busy = self.statement()?;
        let masked = self.masked_url.clone();
        orders_layout(&mut self.client, &masked).map_err(|e| self.after_signal(e))
    }

    /// Whether this session may do what a run does, asked without writing anything: write at
    /// all (not a read-only database, role or standby), create tables in the current schema
    /// (staging tables, migrations), read and write the job's tables that exist, and own
    /// `orders` when a migration still has to change it. A configuration error names what is
    /// missing and the GRANT that gives it.
    pub fn check_access(&mut self) -> Result<(), Error> {
        let _busy = self.statement()?;
        let masked = self.masked_url.clone();
        let row = self
            .client
            .query_one(
                "SELECT current_setting('transaction_read_only') = 'on', current_user::text,
                        current_schema()::text,
                        has_schema_privilege(current_schema(), 'CREATE'),
                        has_schema_privilege(current_schema(), 'USAGE')",
                &[],
            )
            .map_err(self.err("check the role's rights"))?;
        let (read_only, role): (bool, String) = (row.get(0), row.get(1));
        let Some(schema) = row.get::<_, Option<String>>(2) else {
            return Err(Error::config(format!(
                "DB_URL ({masked}): role {role} has no schema to work in (search_path names no existing schema)"
            )));
        };
        if read_only {
            return Err(Error::config(format!(
                "DB_URL ({masked}): the database is read-only for role {role} (transaction_read_only is on: default_transaction_read_only is set for the database or the role, or this is a standby); the job must write"
            )));
        }
        if row.get::<_, Option<bool>>(3) != Some(true)
            || row.get::<_, Option<bool>>(4) != Some(true)
        {
            return Err(Error::config(format!(
                "DB_URL ({masked}): role {role} may not create tables in schema {schema} (each day is staged in a table of its own): GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"
            )));
        }
        let (tables, privileges): (Vec<&str>, Vec<&str>) = REQUIRED_PRIVILEGES
            .iter()
            .flat_map(|(table, privileges)| privileges.iter().map(move |p| (*table, *p)))
            .unzip();
        let missing: Vec<String> = self
            .client
            .query(
                "SELECT w.privilege || ' on ' || w.rel
                   FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(rel, privilege, n)
                   JOIN pg_class c ON c.relname = w.rel
                   JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema()
                  WHERE NOT has_table_privilege(c.oid, w.privilege)
                  ORDER BY w.n",
                &[&tables, &privileges],
            )
            .map_err(self.err("check the role's rights"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !missing.is_empty() {
            return Err(Error::config(format!(
                "DB_URL ({masked}): role {role} lacks {} (GRANT SELECT, INSERT, UPDATE ON orders, sync_checkpoints, sync_runs, douyin_client_tokens, douyin_phone_refusals TO {role}, and USAGE on sync_runs_id_seq)",
                missing.join(", ")
            )));
        }
        let sequence: Option<bool> = self
            .client
            .query_one(
                "SELECT CASE WHEN to_regclass(quote_ident(current_schema()) || '.sync_runs') IS NOT NULL
                        THEN has_sequence_privilege(
                                 pg_get_serial_sequence(quote_ident(current_schema()) || '.sync_runs', 'id'),
                                 'USAGE') END",
                &[],
            )
            .map_err(self.err("check the role's rights"))?
            .get(0);
        if sequence == Some(false) {
            return Err(Error::config(format!(
                "DB_URL ({masked}): role {role} lacks USAGE on the sequence of sync_runs.id (GRANT USAGE ON SEQUENCE sync_runs_id_seq TO {role})"
            )));
        }
        if self
            .pending_migrations()?
            .iter()
            .any(|m| m == "0001_orders")
        {
            let owner: Option<bool> = self
                .client
                .query_one(
                    "SELECT (SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c
                               JOIN pg_namespace s ON s.oid = c.relnamespace
                              WHERE s.nspname = current_schema() AND c.relname = 'orders')",
                    &[],
                )
                .map_err(self.err("check the role's rights"))?
                .get(0);
            if owner == Some(false) {
                return Err(Error::config(format!(
                    "DB_URL ({masked}): role {role} does not own the table orders, which the first run must migrate (indexes, or adopting the Python tool's table): run it once as the table's owner"
                )));
            }
        }
        Ok(())
    }

    /// Apply the migrations that have not been applied, each once, safe when two runs start
    /// at the same moment (an advisory transaction lock serialises them).
    pub fn migrate(&mut self) -> Result<Vec<String>, Error> {
        let _busy = self.statement()?;
        let stop = self.stop.clone();
        let result = self.migrate_now();
        result.map_err(|e| match stop.signal() {
            Some(signal) => Error::Interrupted(signal),
            None => e,
        })
    }

    fn migrate_now(&mut self) -> Result<Vec<String>, Error> {
        let masked = self.masked_url.clone();
        let err = |c: &str| {
            let c = c.to_string();
            let m = masked.clone();
            move |e: postgres::Error| db_error(&m, &c, &e)
        };
        let mut tx = self.client.transaction().map_err(err("migrations"))?;
        // Adopting a large table of the Python tool's takes as long as it takes; waiting for
        // another run's migration is still bounded by the lock timeout.
        tx.batch_execute("SET LOCAL statement_timeout = 0")
            .map_err(err("migrations"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(err("migration lock"))?;
        // "already exists, skipping" notices are expected on every run but the first.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .map_err(err("migrations"))?;
        // Every run, before anything is created or changed: an `orders` that is neither ours
        // nor the Python tool's is refused here, and the transaction rolls back unused.
        let layout = orders_layout(&mut tx, &masked)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS douyin_order_sync_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .map_err(err("migrations table"))?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM douyin_order_sync_migrations", &[])
            .map_err(err("migrations table"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut done = Vec::new();
        if layout == OrdersLayout::Python {
            done.push(adopt_python_table(&mut tx, &masked)?);
            if applied.contains(&1) {
                // Someone put the Python tool's table back after migration 0001: its indexes
                // and comments again (every statement of 0001 may run twice).
                tx.batch_execute(MIGRATIONS[0].2)
                    .map_err(err("migration 0001_orders"))?;
            }
        }
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql)
                .map_err(err(&format!("migration {version:04}_{name}")))?;
            tx.execute(
                "INSERT INTO douyin_order_sync_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .map_err(err("migrations table"))?;
            done.push(format!("applied migration {version:04}_{name}"));
        }
        tx.commit().map_err(err("migrations"))?;
        Ok(done)
    }

    /// Take the account's advisory lock for the rest of the session. `false` if another run
    /// holds it.
    pub fn try_lock(&mut self, account_id: &str) -> Result<bool, Error> {
        let _busy = self.statement()?;
        let key = lock_key(account_id);
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(self.err("account lock"))?;
        Ok(row.get(0))
    }

    pub fn unlock(&mut self, account_id: &str) -> Result<(), Error> {
        let key = lock_key(account_id);
        self.client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .map_err(self.err("account unlock"))?;
        Ok(())
    }

    pub fn checkpoint(&mut self, key: &CheckpointKey) -> Result<Option<Checkpoint>, Error> {
        let _busy = self.statement()?;
        let row = self
            .client
            .query_opt(
                "SELECT extract(epoch FROM synced_until)::bigint, range_done
                   FROM sync_checkpoints
                  WHERE account_id = $1 AND time_field = $2 AND status_filter = $3 AND mode_key = $4
                    AND stream = $5",
                &[
                    &key.account_id,
                    &key.time_field,
                    &key.status_filter,
                    &key.mode_key,
                    &key.stream,
                ],
            )
            .map_err(self.err("read checkpoint"))?;
        Ok(row.map(|r| Checkpoint {
            synced_until: r.get(0),
            range_done: r.get(1),
        }))
    }

    /// Record the start of a run; returns its id in `sync_runs`.
    pub fn begin_run(
        &mut self,
        accounts: &str,
        mode: &str,
        time_field: &str,
    ) -> Result<i64, Error> {
        let _busy = self.statement()?;
        let row = self
            .client
            .query_one(
                "INSERT INTO sync_runs (accounts, mode, time_field, version)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&accounts, &mode, &time_field, &env!("CARGO_PKG_VERSION")],
            )
            .map_err(self.err("record the run"))?;
        Ok(row.get(0))
    }

    /// Complete a run's row.
    pub fn finish_run(&mut self, id: i64, run: &RunRecord) -> Result<(), Error> {
        let (start, end) = run.window.unzip();
        self.client
            .execute(
                "UPDATE sync_runs SET finished_at = now(),
                        window_start = to_timestamp($2::bigint), window_end = to_timestamp($3::bigint),
                        days = $4, orders = $5, inserted = $6, updated = $7, pages = $8,
                        requests = $9, retries = $10, exit_code = $11, error = $12,
                        rejected = $13
                  WHERE id = $1",
                &[
                    &id,
                    &start,
                    &end,
                    &(run.days as i32),
                    &run.orders,
                    &run.inserted,
                    &run.updated,
                    &run.pages,
                    &run.requests,
                    &run.retries,
                    &run.exit_code,
                    &run.error,
                    &run.rejected,
                ],
            )
            .map_err(self.err("record the run"))?;
        Ok(())
    }

    /// Whether the migrations have created the checkpoint table (read-only, for `check`).
    pub fn has_checkpoints(&mut self) -> Result<bool, Error> {
        let _busy = self.statement()?;
        let row = self
            .client
            .query_one("SELECT to_regclass('sync_checkpoints') IS NOT NULL", &[])
            .map_err(self.err("inspect the database"))?;
        Ok(row.get(0))
    }

    /// Pending migrations, without applying them (read-only, for `check`).
    pub fn pending_migrations(&mut self) -> Result<Vec<String>, Error> {
        let _busy = self.statement()?;
        let exists: bool = self
            .client
            .query_one(
                "SELECT to_regclass('douyin_order_sync_migrations') IS NOT NULL",
                &[],
            )
            .map_err(self.err("inspect the database"))?
            .get(0);
        let applied: Vec<i32> = if exists {
            self.client
                .query("SELECT version FROM douyin_order_sync_migrations", &[])
                .map_err(self.err("inspect the database"))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        Ok(MIGRATIONS
            .iter()
            .filter(|(v, _, _)| !applied.contains(v))
            .map(|(v, name, _)| format!("{v:04}_{name}"))
            .collect())
    }

    /// Create the staging table of a day (temporary: gone with the session).
    pub fn stage_begin(&mut self, stage: &Stage) -> Result<(), Error> {
        let _busy = self.statement()?;
        let sql = format!(
            "DROP TABLE IF EXISTS {stage};
             CREATE UNLOGGED TABLE {stage} (
                 order_id text NOT NULL, order_status integer, sku_id text,
                 sku_name text, pay_amount numeric, count integer, pay_time bigint,
                 create_time bigint, update_time bigint, source_order_id text, phone text,
                 raw_data jsonb NOT NULL)"
        );
        self.client
            .batch_execute(&sql)
            .map_err(self.err("create staging table"))
    }

    /// Stream rows into a day's staging table with COPY.
    pub fn stage_rows(&mut self, stage: &Stage, rows: &[OrderRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let _busy = self.statement()?;
        let mut buf = Vec::with_capacity(rows.len() * 2048);
        for row in rows {
            copy_line(&mut buf, row);
        }
        let masked = self.masked_url.clone();
        let stop = self.stop.clone();
        let err = |e: postgres::Error| failed(&stop, &masked, "stage orders", &e);
        let mut writer = self
            .client
            .copy_in(&format!(
                "COPY {stage} (order_id, order_status, sku_id, sku_name, pay_amount, count,
                     pay_time, create_time, update_time, source_order_id, phone, raw_data)
                 FROM STDIN"
            ))
            .map_err(err)?;
        writer.write_all(&buf).map_err(|e| {
            // The server's own error (a full disk, a killed session) travels inside the I/O error.
            match e
                .get_ref()
                .and_then(|i| i.downcast_ref::<postgres::Error>())
            {
                Some(pg) => failed(&stop, &masked, "stage orders", pg),
                None => match stop.signal() {
                    Some(signal) => Error::Interrupted(signal),
                    None => Error::Database(format!("stage orders ({masked}): {e}")),
                },
            }
        })?;
        writer.finish().map_err(err)?;
        Ok(())
    }

    /// Set decrypted phones on a day's staged rows: (order id, phone).
    pub fn stage_phones(
        &mut self,
        stage: &Stage,
        phones: &[(String, String)],
    ) -> Result<(), Error> {
        if phones.is_empty() {
            return Ok(());
        }
        let _busy = self.statement()?;
        let (ids, values): (Vec<&str>, Vec<&str>) = phones
            .iter()
            .map(|(id, phone)| (id.as_str(), phone.as_str()))
            .unzip();
        self.client
            .execute(
                &format!(
                    "UPDATE {stage} AS s SET phone = v.phone
                       FROM unnest($1::text[], $2::text[]) AS v(order_id, phone)
                      WHERE s.order_id = v.order_id"
                ),
                &[&ids, &values],
            )
            .map_err(self.err("stage phones"))?;
        Ok(())
    }

    /// Move a complete day from staging into `orders` and advance the checkpoint, in one
    /// transaction. A `monotonic` checkpoint (incremental mode, whose first day may end inside
    /// the overlap) never moves back. Among duplicates (pages overlap at slice edges, a slice fetched twice) the
    /// latest `update_time` wins, and an older state never overwrites a newer one.
    ///
    /// In the same transaction: the day's orders leave `rejected_records` (they arrived
    /// well-formed), then the day's quarantined records (`date`, one per record) go in.
    pub fn commit_day(
        &mut self,
        stage: &Stage,
        account_id: &str,
        key: &CheckpointKey,
        checkpoint: Checkpoint,
        monotonic: bool,
        (date, rejected): (&str, &[Rejected]),
    ) -> Result<DayWrite, Error> {
        let _busy = self.statement()?;
        let masked = self.masked_url.clone();
        let stop = self.stop.clone();
        let err = |c: &'static str| {
            let m = masked.clone();
            let stop = stop.clone();
            move |e: postgres::Error| failed(&stop, &m, c, &e)
        };
        // Where a day's commit spends its time, for the debug line at the end.
        let began = std::time::Instant::now();
        let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1e3;
        let mut tx = self.client.transaction().map_err(err("begin day"))?;
        // The day is deduplicated with a sort of its staged rows: keep it in memory.
        tx.batch_execute("SET LOCAL work_mem = '256MB'")
            .map_err(err("begin day"))?;
        let upsert = format!(
            "WITH day AS (
                 SELECT DISTINCT ON (order_id) *
                   FROM {stage}
                  ORDER BY order_id, update_time DESC NULLS LAST, ctid DESC
             ), up AS (
                 INSERT INTO orders AS o (order_id, account_id, order_status, sku_id, sku_name,
                        pay_amount, count, pay_time, create_time, update_time, source_order_id,
                        phone, raw_data, sync_time)
                 SELECT order_id, $1, order_status, sku_id, sku_name, pay_amount, count,
                        to_timestamp(pay_time), to_timestamp(create_time),
                        to_timestamp(update_time), source_order_id, phone, raw_data, now()
                   FROM day
                 ON CONFLICT (order_id) DO UPDATE SET
                        account_id = EXCLUDED.account_id,
                        order_status = EXCLUDED.order_status,
                        sku_id = EXCLUDED.sku_id,
                        sku_name = EXCLUDED.sku_name,
                        pay_amount = EXCLUDED.pay_amount,
                        count = EXCLUDED.count,
                        pay_time = EXCLUDED.pay_time,
                        create_time = EXCLUDED.create_time,
                        update_time = EXCLUDED.update_time,
                        source_order_id = EXCLUDED.source_order_id,
                        phone = COALESCE(EXCLUDED.phone, o.phone),
                        raw_data = EXCLUDED.raw_data,
                        sync_time = EXCLUDED.sync_time
                  WHERE (o.update_time IS NULL OR EXCLUDED.update_time IS NULL
                         OR EXCLUDED.update_time >= o.update_time)
                    AND (o.raw_data IS DISTINCT FROM EXCLUDED.raw_data
                         OR o.account_id IS DISTINCT FROM EXCLUDED.account_id
                         OR (o.phone IS NULL AND EXCLUDED.phone IS NOT NULL))
                 RETURNING order_id, (xmax = 0) AS inserted
             )
             SELECT (SELECT count(*) FROM day),
                    coalesce(array_agg(order_id) FILTER (WHERE inserted), '{{}}'),
                    coalesce(array_agg(order_id) FILTER (WHERE NOT inserted), '{{}}')
               FROM up"
        );
        let row = tx
            .query_one(&upsert, &[&account_id])
            .map_err(err("upsert orders"))?;
        let orders_ms = ms(began);
        // The orders this day wrote: new ones, and changed ones (an unchanged order, or one
        // kept because the stored state is newer, is not written and keeps its coupons).
        let inserted: Vec<String> = row.get(1);
        let updated: Vec<String> = row.get(2);
        let write = DayWrite {
            orders: row.get::<_, i64>(0) as u64,
            inserted: inserted.len() as u64,
            updated: updated.len() as u64,
            rejected: rejected.len() as u64,
        };
        // Only when the account has quarantined records at all (the EXISTS is evaluated once,
        // first): most days have none, and then the staging table is not read again.
        tx.execute(
            &format!(
                "DELETE FROM rejected_records AS r USING {stage} AS s
                  WHERE EXISTS (SELECT 1 FROM rejected_records
                                 WHERE stream = $1 AND account_id = $2)
                    AND r.stream = $1 AND r.account_id = $2
                    AND r.record_key = 'id:' || s.order_id"
            ),
            &[&ORDERS_STREAM, &account_id],
        )
        .map_err(err("release quarantined records"))?;
        quarantine(&mut tx, ORDERS_STREAM, account_id, date, rejected)
            .map_err(err("quarantine records"))?;
        let coupons_began = std::time::Instant::now();
        // The coupons of the orders the day wrote, from the orders as they now are: a changed
        // order's coupons are replaced (one no longer in the answer goes), a new order's are
        // added; orders the day did not write keep theirs. Looked up by key (an index scan),
        // so a day costs the same whatever the size of the tables.
        if !updated.is_empty() {
            tx.execute(
                "DELETE FROM order_certificates WHERE order_id = ANY($1)",
                &[&updated],
            )
            .map_err(err("replace coupons"))?;
        }
        let written: Vec<&String> = inserted.iter().chain(&updated).collect();
        if !written.is_empty() {
            tx.execute(
                &format!("{CERTIFICATES_INSERT} WHERE o.order_id = ANY($1) {CERTIFICATES_TAIL}"),
                &[&written],
            )
            .map_err(err("replace coupons"))?;
        }
        let coupons_ms = ms(coupons_began);
        upsert_checkpoint(&mut tx, key, checkpoint, monotonic)
            .map_err(err("advance checkpoint"))?;
        // Dropped with the commit: a crash before it leaves the table for the next run to drop.
        tx.batch_execute(&format!("DROP TABLE {stage}"))
            .map_err(err("drop staging table"))?;
        tx.commit().map_err(err("commit day"))?;
        log::debug!(
            "{date}: committed in {:.0} ms ({orders_ms:.0} ms orders, {coupons_ms:.0} ms coupons)",
            ms(began)
        );
        Ok(write)
    }

    /// Commit one day of a stream other than orders: `write` stores its rows, then the
    /// checkpoint advances, in one transaction (rolled back on drop: an error or a crash in
    /// `write` leaves the previous state).
    ///
    /// In the same transaction, the stream's records stored well-formed (`stored`, their keys)
    /// leave `rejected_records`, and the day's quarantined records (`date`, `rejected`) go in.
    pub fn commit_stream_day(
        &mut self,
        key: &CheckpointKey,
        checkpoint: Checkpoint,
        monotonic: bool,
        (date, stored, rejected): (&str, &[&str], &[Rejected]),
        write: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<DayWrite, postgres::Error>,
    ) -> Result<DayWrite, Error> {
        let masked = self.masked_url.clone();
        let err = |c: &'static str| {
            let m = masked.clone();
            move |e: postgres::Error| db_error(&m, c, &e)
        };
        let mut tx = self.client.transaction().map_err(err("begin day"))?;
        let mut done = write(&mut tx).map_err(err(key.stream))?;
        tx.execute(
            "DELETE FROM rejected_records
              WHERE EXISTS (SELECT 1 FROM rejected_records WHERE stream = $1 AND account_id = $2)
                AND stream = $1 AND account_id = $2
                AND record_key = ANY (SELECT 'id:' || k FROM unnest($3::text[]) AS k)",
            &[&key.stream, &key.account_id, &stored],
        )
        .map_err(err("release quarantined records"))?;
        quarantine(&mut tx, key.stream, &key.account_id, date, rejected)
            .map_err(err("quarantine records"))?;
        done.rejected = rejected.len() as u64;
        upsert_checkpoint(&mut tx, key, checkpoint, monotonic)
            .map_err(err("advance checkpoint"))?;
        tx.commit().map_err(err("commit day"))?;
        Ok(done)
    }

    /// Record the streams of a run and each one's committed records in its `sync_runs` row.
    pub fn record_streams(
        &mut self,
        id: i64,
        streams: &str,
        records: &[(&str, u64)],
    ) -> Result<(), Error> {
        let map: serde_json::Map<String, serde_json::Value> = records
            .iter()
            .map(|(name, n)| ((*name).to_string(), serde_json::Value::from(*n)))
            .collect();
        let json = serde_json::Value::Object(map).to_string();
        self.client
            .execute(
                "UPDATE sync_runs SET streams = $2, stream_records = $3::text::jsonb WHERE id = $1",
                &[&id, &streams, &json],
            )
            .map_err(self.err("record the run"))?;
        Ok(())
    }

    /// Drop a staging table that will not be committed.
    /// Drop staging tables that will not be committed, waiting at most a second for a lock (a
    /// table still being written by a COPY is left for the next run to drop).
    pub fn stage_discard(&mut self, stages: &[Stage]) -> Result<(), Error> {
        if stages.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = stages.iter().map(Stage::to_string).collect();
        let dropped = self.client.batch_execute(&format!(
            "SET lock_timeout = '1s'; DROP TABLE IF EXISTS {}",
            list.join(", ")
        ));
        // Back to the session's own lock timeout (RESET would restore the server's default),
        // whether the DROP worked or not: the connection may serve another account next.
        let restored = self
            .client
            .batch_execute(&format!("SET lock_timeout = '{}s'", LOCK_TIMEOUT.as_secs()));
        dropped
            .and(restored)
            .map_err(self.err("drop staging tables"))
    }

    /// Drop staging tables an earlier run of this account left behind (killed, or its
    /// connection lost). Only called under the account's lock, so none of them is in use.
    pub fn drop_stale_stages(&mut self, account_id: &str) -> Result<usize, Error> {
        let _busy = self.statement()?;
        let prefix = Stage::prefix(account_id);
        let tables: Vec<String> = self
            .client
            .query(
                "SELECT tablename::text FROM pg_tables
                  WHERE schemaname = current_schema() AND starts_with(tablename, $1)",
                &[&prefix],
            )
            .map_err(self.err("find stale staging tables"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for table in &tables {
            self.client
                .batch_execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))
                .map_err(self.err("drop stale staging table"))?;
        }
        Ok(tables.len())
    }
}

// What a run costs the merchant's app (issue 14): the stored client token, phones already
// decrypted, and the phones a used-up decrypt quota left NULL. These run on the run's side
// connection (src/phones.rs, src/token_cache.rs), never on the committer's.

/// The stored client token of an app, as read.
#[derive(Debug)]
pub struct StoredToken {
    pub token: crate::config::Secret,
    /// Seconds of validity left, by the database's clock (every run host agrees on it).
    pub remaining_secs: i64,
    /// The fingerprint of the AppSecret it was fetched with.
    pub credential: String,
}

/// The advisory lock that serialises "read the stored token, fetch one if needed, store it"
/// between runs starting together.
const TOKEN_LOCK: i64 = 0x646f_7573_796e_6305; // "dousync\x05"

/// How long a ciphertext the decrypt endpoint answered without plaintext is not sent again.
const REFUSAL_SECS: i64 = 86_400;

impl Store {
    /// Whether migration 0005 (the token table) has been applied on this database.
    pub fn has_token_table(&mut self) -> Result<bool, Error> {
        let row = self
            .client
            .query_one(
                "SELECT to_regclass('douyin_client_tokens') IS NOT NULL",
                &[],
            )
            .map_err(self.err("inspect the database"))?;
        Ok(row.get(0))
    }

    /// Run `f` holding the token lock (a transaction-level advisory lock: released on commit or
    /// when the connection goes). Waits for the lock in short tries so that a signal is heard.
    pub fn with_token_lock<T>(
        &mut self,
        stop: &crate::stop::Stop,
        f: impl FnOnce(&mut TokenTx<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let masked = self.masked_url.clone();
        let err = |c: &'static str| {
            let m = masked.clone();
            move |e: postgres::Error| db_error(&m, c, &e)
        };
        let mut tx = self.client.transaction().map_err(err("token lock"))?;
        loop {
            let row = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&TOKEN_LOCK])
                .map_err(err("token lock"))?;
            if row.get::<_, bool>(0) {
                break;
            }
            stop.sleep(std::time::Duration::from_millis(20))?;
        }
        let mut token_tx = TokenTx {
            tx,
            masked: masked.clone(),
        };
        let value = f(&mut token_tx)?;
        token_tx
            .tx
            .commit()
            .map_err(err("store the client token"))?;
        Ok(value)
    }

    /// Of these (order id, `Enc.` ciphertext) pairs, the phones already stored for the same
    /// order and the same ciphertext: (order id, phone). Also the ciphertexts the decrypt
    /// endpoint refused within a day: (order id, None). Neither needs the quota again.
    pub fn known_phones(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, ciphers): (Vec<&str>, Vec<&str>) = pairs
            .iter()
            .map(|(id, cipher)| (id.as_str(), cipher.as_str()))
            .unzip();
        let rows = self
            .client
            .query(
                "SELECT v.order_id, o.phone
                   FROM unnest($1::text[], $2::text[]) AS v(order_id, cipher)
                   JOIN orders o ON o.order_id = v.order_id
                  WHERE o.phone IS NOT NULL
                    AND btrim(o.raw_data #>> '{contacts,0,phone_encrypt}') = v.cipher
                 UNION ALL
                 SELECT v.order_id, NULL
                   FROM unnest($1::text[], $2::text[]) AS v(order_id, cipher)
                   JOIN douyin_phone_refusals r ON r.cipher_text = v.cipher
                  WHERE r.refused_at > now() - make_interval(secs => $3)",
                &[&ids, &ciphers, &(REFUSAL_SECS as f64)],
            )
            .map_err(self.err("look up stored phones"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Remember ciphertexts the decrypt endpoint answered without plaintext: (order id, cipher).
    pub fn record_refusals(&mut self, pairs: &[(String, String)]) -> Result<(), Error> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (ids, ciphers): (Vec<&str>, Vec<&str>) = pairs
            .iter()
            .map(|(id, cipher)| (id.as_str(), cipher.as_str()))
            .unzip();
        self.client
            .execute(
                "INSERT INTO douyin_phone_refusals (cipher_text, order_id)
                 SELECT cipher, order_id FROM unnest($1::text[], $2::text[]) AS v(order_id, cipher)
                 ON CONFLICT (cipher_text) DO UPDATE SET refused_at = now(), order_id = EXCLUDED.order_id",
                &[&ids, &ciphers],
            )
            .map_err(self.err("record refused ciphertexts"))?;
        Ok(())
    }

    /// Stored orders of an account whose `Enc.` phone is still NULL, newest first, at most
    /// `limit`, without those refused within a day: (order id, ciphertext).
    pub fn phones_to_fill(
        &mut self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = self
            .client
            .query(
                "SELECT o.order_id, btrim(o.raw_data #>> '{contacts,0,phone_encrypt}')
                   FROM orders o
                  WHERE o.account_id = $1 AND o.phone IS NULL
                    AND btrim(o.raw_data #>> '{contacts,0,phone_encrypt}') LIKE 'Enc.%'
                    AND NOT EXISTS (
                        SELECT 1 FROM douyin_phone_refusals r
                         WHERE r.cipher_text = btrim(o.raw_data #>> '{contacts,0,phone_encrypt}')
                           AND r.refused_at > now() - make_interval(secs => $3))
                  ORDER BY o.update_time DESC NULLS LAST
                  LIMIT $2",
                &[&account_id, &limit, &(REFUSAL_SECS as f64)],
            )
            .map_err(self.err("find phones to fill"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Set phones decrypted by the fill pass: (order id, ciphertext, phone). A row is changed
    /// only if its phone is still NULL and its ciphertext is still the one decrypted (a run
    /// may have stored a newer state meanwhile). Returns the rows changed.
    pub fn fill_phones(&mut self, filled: &[(String, String, String)]) -> Result<u64, Error> {
        if filled.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(filled.len());
        let mut ciphers = Vec::with_capacity(filled.len());
        let mut phones = Vec::with_capacity(filled.len());
        for (id, cipher, phone) in filled {
            ids.push(id.as_str());
            ciphers.push(cipher.as_str());
            phones.push(phone.as_str());
        }
        self.client
            .execute(
                "UPDATE orders o SET phone = v.phone, sync_time = now()
                   FROM unnest($1::text[], $2::text[], $3::text[]) AS v(order_id, cipher, phone)
                  WHERE o.order_id = v.order_id AND o.phone IS NULL
                    AND btrim(o.raw_data #>> '{contacts,0,phone_encrypt}') = v.cipher",
                &[&ids, &ciphers, &phones],
            )
            .map_err(self.err("fill phones"))
    }
}

/// The run's side connection: the token, phone look-ups from the fetchers, the fill pass. A
/// second connection so that none of it waits for a day's commit (or holds one up); opened
/// again on next use when it was lost.
pub struct SideConnection {
    db: crate::config::Database,
    stop: Stop,
    store: std::sync::Mutex<Option<Store>>,
}

impl SideConnection {
    /// Connect now.
    pub fn connect(db: &crate::config::Database, stop: &Stop) -> Result<SideConnection, Error> {
        let store = Store::connect(db, stop)?;
        Ok(SideConnection {
            db: db.clone(),
            stop: stop.clone(),
            store: std::sync::Mutex::new(Some(store)),
        })
    }

    /// Run `f` on the connection (reconnecting first if it was lost). Callers hold it briefly
    /// and never while waiting for Douyin, except the token call under the token lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, Error>) -> Result<T, Error> {
        // A panic while holding it cannot leave a connection half-used in a way a query notices.
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(Store::is_closed) {
            *guard = None;
            *guard = Some(Store::connect(&self.db, &self.stop)?);
        }
        match guard.as_mut() {
            Some(store) => f(store),
            None => Err(Error::Bug("side connection missing".into())),
        }
    }
}

/// The token table inside the token lock's transaction.
pub struct TokenTx<'a> {
    tx: postgres::Transaction<'a>,
    masked: String,
}

impl TokenTx<'_> {
    /// The stored token of this app and API base, if any.
    pub fn read(&mut self, app_id: &str, api_base: &str) -> Result<Option<StoredToken>, Error> {
        let row = self
            .tx
            .query_opt(
                "SELECT token, extract(epoch FROM expires_at - now())::bigint, credential
                   FROM douyin_client_tokens WHERE app_id = $1 AND api_base = $2",
                &[&app_id, &api_base],
            )
            .map_err(|e| db_error(&self.masked, "read the client token", &e))?;
        Ok(row.map(|r| StoredToken {
            token: crate::config::Secret::new(r.get::<_, String>(0)),
            remaining_secs: r.get(1),
            credential: r.get(2),
        }))
    }

    /// Store (or replace) the token of this app and API base, valid `lifetime_secs` from now.
    pub fn write(
        &mut self,
        app_id: &str,
        api_base: &str,
        credential: &str,
        token: &crate::config::Secret,
        lifetime_secs: i64,
    ) -> Result<(), Error> {
        self.tx
            .execute(
                "INSERT INTO douyin_client_tokens (app_id, api_base, credential, token, expires_at, fetched_at)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), now())
                 ON CONFLICT (app_id, api_base) DO UPDATE
                    SET credential = EXCLUDED.credential, token = EXCLUDED.token,
                        expires_at = EXCLUDED.expires_at, fetched_at = EXCLUDED.fetched_at",
                &[&app_id, &api_base, &credential, &token.expose(), &(lifetime_secs as f64)],
            )
            .map_err(|e| db_error(&self.masked, "store the client token", &e))?;
        Ok(())
    }
}

/// The socket settings of a connection and the time its whole handshake may take: DB_URL's
/// `connect_timeout`, `keepalives`, `keepalives_idle` and `tcp_user_timeout` where it gives them
/// (libpq's meaning: `connect_timeout` bounds the whole handshake), else this module's.
fn socket_settings(from_url: &postgres::Config) -> (postgres::Config, Duration) {
    let mut config = from_url.clone();
    let handshake_timeout = from_url
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    config
        .connect_timeout(handshake_timeout)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    // The postgres crate's own default (2 h) means DB_URL did not set it.
    if from_url.get_keepalives_idle() == postgres::Config::new().get_keepalives_idle() {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if from_url.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    (config, handshake_timeout)
}

/// The settings of every session: the timeouts of the module doc, and no NOTICEs ("table does
/// not exist, skipping" is expected and would only clutter the log).
fn session_settings() -> String {
    format!(
        "SET client_min_messages = warning; SET statement_timeout = '{}s'; SET lock_timeout = '{}s'",
        STATEMENT_TIMEOUT.as_secs(),
        LOCK_TIMEOUT.as_secs()
    )
}

/// The watcher of one connection: once a signal has arrived, it sends PostgreSQL a cancel
/// request for the statement in flight (again each [`CANCEL_REPEAT`] while it still runs), so
/// that a statement waiting on a lock or working through a large day ends within a moment and
/// its transaction rolls back. The request goes over a connection of its own, with the same TLS
/// as the session (PostgreSQL refuses a plain one when `hostssl` is required). A cancel request
/// that itself hangs (a server that does not answer at all) only holds this thread; the signal's
/// deadline in `stop.rs` ends the process then.
fn watch_for_signals(
    token: CancelToken,
    tls: Option<crate::tls::MakeTls>,
    stop: Stop,
    busy: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
) -> Result<(), Error> {
    std::thread::Builder::new()
        .name("pg-cancel".into())
        .spawn(move || {
            let mut last_cancel: Option<Instant> = None;
            while !dropped.load(Ordering::SeqCst) {
                let due = last_cancel.is_none_or(|at| at.elapsed() >= CANCEL_REPEAT);
                if stop.signal().is_some() && busy.load(Ordering::SeqCst) && due {
                    last_cancel = Some(Instant::now());
                    log::debug!("cancelling the statement in flight (signal)");
                    let sent = match &tls {
                        None => token.cancel_query(NoTls),
                        Some(tls) => token.cancel_query(tls.clone()),
                    };
                    if let Err(e) = sent {
                        log::debug!("cancel request not sent: {e}");
                    }
                }
                std::thread::sleep(TICK);
            }
        })
        .map_err(|e| Error::Bug(format!("cannot start a watcher thread: {e}")))?;
    Ok(())
}

/// When `orders` is the Python tool's table (see [`orders_layout`]), adopt it in place (in the
/// migration transaction, so it is all or nothing). Returns what was done, to log once.
fn adopt_python_table(tx: &mut postgres::Transaction<'_>, masked: &str) -> Result<String, Error> {
    let err = |c: &'static str| move |e: postgres::Error| db_error(masked, c, &e);
    let counts = tx
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE raw_data IS NULL),
                    count(*) FILTER (WHERE NOT coalesce(raw_data ? 'pay_amount', false)),
                    count(*) FILTER (WHERE NOT coalesce(raw_data ? 'create_order_time', false)),
                    count(*) FILTER (WHERE NOT coalesce(raw_data ? 'update_order_time', false)),
                    count(*) FILTER (WHERE NOT coalesce(raw_data ? 'order_status', false))
               FROM orders",
            &[],
        )
        .map_err(err("inspect orders"))?;
    let n = |i: usize| counts.get::<_, i64>(i);
    tx.batch_execute(include_str!("../sql/adopt_python_orders.sql"))
        .map_err(err("adopt the Python tool's orders table"))?;
    let kept = [
        ("pay_amount", n(2)),
        ("create_time", n(3)),
        ("update_time", n(4)),
        ("order_status", n(5)),
    ]
    .iter()
    .filter(|(_, k)| *k > 0)
    .map(|(c, k)| format!("{c} {k}"))
    .collect::<Vec<_>>();
    Ok(format!(
        "adopted the Python tool's orders table in place: {} rows re-typed from raw_data (pay_amount fen -> yuan, times from epoch seconds as timestamptz){}",
        n(0),
        if kept.is_empty() {
            String::new()
        } else {
            format!(
                "; rows whose raw_data lacked a field kept their own value ({} without raw_data): {}",
                n(1),
                kept.join(", ")
            )
        }
    ))
}

/// What the table `orders` in the current schema is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrdersLayout {
    /// No such table yet: migration 0001 creates it.
    Absent,
    /// This tool's.
    Ours,
    /// The Python tool's (douyin_getorder): adopted in place by the next run.
    Python,
}

const TEXT: &[&str] = &["text", "character varying"];
const INTEGER: &[&str] = &["integer", "bigint"];
const ZONED: &[&str] = &["timestamp with time zone"];
const NAIVE: &[&str] = &["timestamp without time zone"];

/// This tool's `orders` (sql/0001_orders.sql): each column and the types it may have.
const OUR_COLUMNS: &[(&str, &[&str])] = &[
    ("order_id", &["text"]),
    ("account_id", &["text"]),
    ("order_status", INTEGER),
    ("sku_id", &["text"]),
    ("sku_name", &["text"]),
    ("pay_amount", &["numeric"]),
    ("count", INTEGER),
    ("pay_time", ZONED),
    ("create_time", ZONED),
    ("update_time", ZONED),
    ("source_order_id", &["text"]),
    ("phone", &["text"]),
    ("raw_data", &["jsonb"]),
    ("sync_time", ZONED),
];

/// The Python tool's `orders` (SQLAlchemy: String, Float, Integer, DateTime, JSONB), which
/// sql/adopt_python_orders.sql converts.
const PYTHON_COLUMNS: &[(&str, &[&str])] = &[
    ("order_id", TEXT),
    ("order_status", &["character varying", "text", "integer"]),
    ("sku_id", TEXT),
    ("sku_name", TEXT),
    ("pay_amount", &["double precision", "real"]),
    ("count", &["integer"]),
    ("pay_time", NAIVE),
    ("create_time", NAIVE),
    ("update_time", NAIVE),
    ("source_order_id", TEXT),
    ("phone", TEXT),
    ("raw_data", &["jsonb"]),
    ("sync_time", NAIVE),
];

/// A column of an existing table: name, type (as `format_type` names it without a modifier),
/// whether a row may leave it out (nullable or with a default).
type Column = (String, String, bool);

/// The first way `columns` differ from `layout`, if any.
fn layout_problem(columns: &[Column], layout: &[(&str, &[&str])]) -> Option<String> {
    for (name, types) in layout {
        match columns.iter().find(|(c, _, _)| c == name) {
            None => return Some(format!("it has no column {name}")),
            Some((_, t, _)) if !types.contains(&t.as_str()) => {
                return Some(format!(
                    "its column {name} is {t}, not {}",
                    types.join(" or ")
                ))
            }
            Some(_) => {}
        }
    }
    None
}

/// Which `orders` this is, decided before anything is written: this tool's, the Python tool's,
/// or none. Anything else, including the seed's column names with other types, a table without
/// a unique `order_id` (the upsert needs one) or columns this tool would leave empty although
/// they must not be, is refused with a configuration error and left untouched.
pub fn orders_layout(
    client: &mut impl postgres::GenericClient,
    masked: &str,
) -> Result<OrdersLayout, Error> {
    let err = |c: &'static str| move |e: postgres::Error| db_error(masked, c, &e);
    let kind: Option<i8> = client
        .query_opt(
            "SELECT c.relkind::\"char\" FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relname = 'orders'",
            &[],
        )
        .map_err(err("inspect orders"))?
        .map(|r| r.get(0));
    let Some(kind) = kind else {
        return Ok(OrdersLayout::Absent);
    };
    let refuse = |why: String| {
        Error::config(format!(
            "DB_URL ({masked}): the table orders in this schema is neither this tool's nor the Python tool's ({why}); nothing was changed: use another database or schema, or rename that table"
        ))
    };
    if !matches!(u8::try_from(kind).unwrap_or(0), b'r' | b'p') {
        return Err(refuse("it is not a plain table".into()));
    }
    let columns: Vec<Column> = client
        .query(
            // pg_attribute rather than information_schema, which hides columns the role may not
            // read; format_type without a modifier names types as information_schema does.
            "SELECT a.attname::text, format_type(a.atttypid, NULL),
                    NOT a.attnotnull OR a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
               FROM pg_attribute a
              WHERE a.attrelid = (quote_ident(current_schema()) || '.orders')::regclass
                AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .map_err(err("inspect orders"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let (layout, known) = match (
        layout_problem(&columns, OUR_COLUMNS),
        layout_problem(&columns, PYTHON_COLUMNS),
    ) {
        (None, _) => (OrdersLayout::Ours, OUR_COLUMNS),
        (_, None) => (OrdersLayout::Python, PYTHON_COLUMNS),
        (Some(ours), Some(python)) => {
            return Err(refuse(format!(
                "as this tool's, {ours}; as the Python tool's, {python}"
            )))
        }
    };
    if let Some((name, _, _)) = columns.iter().find(|(name, _, optional)| {
        !optional && name != "account_id" && !known.iter().any(|(k, _)| k == name)
    }) {
        return Err(refuse(format!(
            "its column {name} is NOT NULL without a default, and this tool does not fill it"
        )));
    }
    let unique_order_id: bool = client
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                  WHERE i.indrelid = (quote_ident(current_schema()) || '.orders')::regclass
                    AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL
                    AND i.indexprs IS NULL AND a.attname = 'order_id')",
            &[],
        )
        .map_err(err("inspect orders"))?
        .get(0);
    if !unique_order_id {
        return Err(refuse(
            "order_id is not its primary key: one row per order needs it".into(),
        ));
    }
    Ok(layout)
}

/// The staging table of one day of one account: an UNLOGGED table (no WAL, visible to both of
/// the run's connections: one streams pages in, the other commits days), named after the
/// account's lock key so that only the lock holder touches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage(String);

impl Stage {
    pub fn new(account_id: &str, day: usize) -> Stage {
        Stage(format!("{}{day}", Stage::prefix(account_id)))
    }

    fn prefix(account_id: &str) -> String {
        format!("douyin_stage_{:016x}_", lock_key(account_id) as u64)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only hex digits, underscores and letters: no quoting needed.
        f.write_str(&self.0)
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock key of an account: FNV-1a, stable across versions and servers.
fn lock_key(account_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"douyin-order-sync:".iter().chain(account_id.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Append one row in COPY's text format.
fn copy_line(buf: &mut Vec<u8>, row: &OrderRow) {
    fn field(buf: &mut Vec<u8>, value: Option<&str>) {
        match value {
            None => buf.extend_from_slice(b"\\N"),
            Some(text) => {
                for byte in text.bytes() {
                    match byte {
                        b'\\' => buf.extend_from_slice(b"\\\\"),
                        b'\n' => buf.extend_from_slice(b"\\n"),
                        b'\r' => buf.extend_from_slice(b"\\r"),
                        b'\t' => buf.extend_from_slice(b"\\t"),
                        other => buf.push(other),
                    }
                }
            }
        }
    }
    let num = |n: Option<i64>| n.map(|v| v.to_string());
    // `order::extract` let through only what jsonb stores as it is (no U+0000, no lone
    // surrogate, ...).
    let raw = row.raw.get();
    let columns: [Option<String>; 11] = [
        Some(row.order_id.clone()),
        num(row.order_status),
        row.sku_id.clone(),
        row.sku_name.clone(),
        row.pay_amount_fen.map(fen_to_yuan),
        num(row.count),
        num(row.pay_time),
        num(row.create_time),
        num(row.update_time),
        row.source_order_id.clone(),
        row.phone.clone(),
    ];
    for column in &columns {
        field(buf, column.as_deref());
        buf.push(b'\t');
    }
    field(buf, Some(raw));
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn copy_lines_escape_tabs_newlines_and_backslashes() {
        let mut row = crate::order::extract(
            RawValue::from_string(
                r#"{"order_id":"1","sku_name":"a\tb\nc\\d","pay_amount":129}"#.into(),
            )
            .unwrap(),
        )
        .unwrap();
        row.phone = None;
        let mut buf = Vec::new();
        copy_line(&mut buf, &row);
        let line = String::from_utf8(buf).unwrap();
        assert!(
            line.starts_with("1\t\\N\t\\N\ta\\tb\\nc\\\\d\t1.29\t"),
            "{line}"
        );
        assert!(
            line.ends_with("\"sku_name\":\"a\\\\tb\\\\nc\\\\\\\\d\",\"pay_amount\":129}\n"),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(line.matches('\t').count(), 11);
    }

    #[test]
    fn server_errors_are_classified_by_sqlstate_and_only_a_lost_session_is_reconnected() {
        let class = |code: &str| match by_sqlstate(code, "postgres://u:***@h/d", "x".into()) {
            Error::Database(_) => "lost",
            Error::DatabaseFailed(_) => "temporary",
            Error::Config(_) => "config",
            Error::Bug(_) => "bug",
            other => panic!("{code}: {other:?}"),
        };
        for lost in ["08006", "08003", "57P01", "57P02", "57P03"] {
            assert_eq!(class(lost), "lost", "{lost}");
        }
        // Disk full, out of memory, too many connections, statement timeout, lock timeout,
        // serialization failure, deadlock, I/O error.
        for temporary in [
            "53100", "53200", "53300", "57014", "55P03", "40001", "40P01", "58030",
        ] {
            assert_eq!(class(temporary), "temporary", "{temporary}");
        }
        // Read-only, no privilege, bad password, no such database, no such schema.
        for config in ["25006", "42501", "28P01", "3D000", "3F000"] {
            assert_eq!(class(config), "config", "{config}");
        }
        for bug in ["22P05", "23505", "42P01", "XX000"] {
            assert_eq!(class(bug), "bug", "{bug}");
        }
        let read_only = by_sqlstate("25006", "postgres://u:***@h/d", "x".into()).to_string();
        assert!(
            read_only.contains("default_transaction_read_only"),
            "{read_only}"
        );
    }

    #[test]
    fn sockets_get_the_documented_timeouts_unless_db_url_sets_its_own() {
        let plain: postgres::Config = "host=db user=u".parse().unwrap();
        let (config, handshake) = socket_settings(&plain);
        assert_eq!(handshake, CONNECT_TIMEOUT);
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));

        let mut own: postgres::Config = "host=db user=u".parse().unwrap();
        own.connect_timeout(Duration::from_secs(3))
            .keepalives(false)
            .keepalives_idle(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_millis(1500));
        let (config, handshake) = socket_settings(&own);
        assert_eq!(handshake, Duration::from_secs(3));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert!(!config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(1500))
        );
    }

    #[test]
    fn session_settings_set_the_statement_and_lock_timeouts() {
        let settings = session_settings();
        assert!(
            settings.contains("SET statement_timeout = '600s'"),
            "{settings}"
        );
        assert!(settings.contains("SET lock_timeout = '30s'"), "{settings}");
    }

    #[test]
    fn lock_keys_differ_by_account_and_are_stable() {
        assert_ne!(lock_key("1"), lock_key("2"));
        assert_eq!(
            lock_key("7000000000000000001"),
            lock_key("7000000000000000001")
        );
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.0).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted);
    }
}
