//! Monitoring and remote control: the Python tool's `task_monitor` row (status, heartbeat,
//! `target_command`), and the Prometheus metrics in a real Pushgateway and in a textfile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use std::time::{Duration, Instant};
use support::fake_douyin::Faults;
use support::pushgateway::{sample, Pushgateway};
use support::setup::{assert_exact, now, World, ACCOUNT, DAY, MARCH_1};

const TASK: &str = "douyin_order_sync";

/// The row of `task_id`: status, error_message, target_command, and the timestamps as epoch
/// seconds read as UTC (the zone the job writes them in).
#[derive(Debug)]
struct Row {
    status: Option<String>,
    error_message: Option<String>,
    target_command: Option<String>,
    last_sync_time: Option<i64>,
    last_heartbeat: Option<i64>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

fn row(w: &World, task_id: &str) -> Row {
    let r =
        w.db.client()
            .query_one(
                "SELECT status, error_message, target_command,
                    extract(epoch FROM last_sync_time AT TIME ZONE 'UTC')::bigint,
                    extract(epoch FROM last_heartbeat AT TIME ZONE 'UTC')::bigint,
                    extract(epoch FROM created_at AT TIME ZONE 'UTC')::bigint,
                    extract(epoch FROM updated_at AT TIME ZONE 'UTC')::bigint
               FROM task_monitor WHERE task_id = $1",
                &[&task_id],
            )
            .unwrap();
    Row {
        status: r.get(0),
        error_message: r.get(1),
        target_command: r.get(2),
        last_sync_time: r.get(3),
        last_heartbeat: r.get(4),
        created_at: r.get(5),
        updated_at: r.get(6),
    }
}

fn set_command(w: &World, command: Option<&str>) {
    w.db.client()
        .execute(
            "UPDATE task_monitor SET target_command = $1 WHERE task_id = $2",
            &[&command, &TASK],
        )
        .unwrap();
}

/// The Python tool's table, as SQLAlchemy itself creates it from the tool's model
/// (tests/reference/task_monitor_ddl.py, run by `REFERENCE_PYTHON`).
fn python_ddl() -> String {
    let python = std::env::var("REFERENCE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REFERENCE_PYTHON is not set: it must name a python with SQLAlchemy \
             (`bash .ci/run` makes .ci/venv and `bash .ci/test` sets it)"
        )
    });
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference/task_monitor_ddl.py"
        ))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ddl = String::from_utf8(out.stdout).unwrap();
    assert!(ddl.contains("CREATE TABLE task_monitor"), "{ddl}");
    ddl
}

/// A column of `task_monitor`: name, type, length, nullable.
type Column = (String, String, Option<i32>, String);

/// The columns of `task_monitor`, and its primary key.
fn columns(w: &World) -> (Vec<Column>, Vec<String>) {
    let mut client = w.db.client();
    let columns = client
        .query(
            "SELECT column_name::text, data_type::text, character_maximum_length,
                    is_nullable::text
               FROM information_schema.columns WHERE table_name = 'task_monitor'
              ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let key = client
        .query(
            "SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = 'task_monitor'::regclass AND i.indisprimary",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (columns, key)
}

#[track_caller]
fn assert_recent(t: Option<i64>, what: &str) {
    let t = t.unwrap_or_else(|| panic!("{what} is NULL"));
    let now = now();
    assert!(
        (now - 120..=now + 5).contains(&t),
        "{what} is {t}, now is {now} (naive timestamps must be UTC)"
    );
}

/// Douyin busy on every query: the run ends with 75 after its retries.
fn busy() -> Faults {
    Faults {
        query_error: Some(2119002),
        ..Faults::default()
    }
}

#[test]
fn the_row_shows_running_after_a_good_run_error_after_a_failed_one_and_running_again() {
    let w = World::new("monitor_row");
    w.seed_days(MARCH_1, 2, 20);
    // The database session's zone must not matter: the job writes UTC.
    w.db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET timezone = 'Asia/Shanghai'",
            support::pg::quote_ident(w.db.name())
        ))
        .unwrap();
    let cmd = || w.range_cmd("2024-03-01", "2024-03-02");

    let out = cmd().run();
    out.expect_success();
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("RUNNING"), "{r:?}");
    assert_eq!(r.error_message, None);
    assert_eq!(r.target_command, None, "the job never writes the command");
    assert_eq!(r.last_sync_time, Some(MARCH_1 + 2 * DAY), "the checkpoint");
    assert_recent(r.last_heartbeat, "last_heartbeat");
    assert_recent(r.created_at, "created_at");
    assert_recent(r.updated_at, "updated_at");
    let created = r.created_at;

    w.fake.set_faults(busy());
    let out = cmd().env("RETRY_MAX_TRIES", "2").run();
    out.expect_code(75);
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("ERROR"), "{r:?}");
    let message = r.error_message.clone().unwrap();
    assert!(
        message.ends_with("(exit 75)") && !message.contains('\n'),
        "{message:?}"
    );
    assert!(message.contains("2119002"), "{message:?}");
    assert_eq!(r.last_sync_time, Some(MARCH_1 + 2 * DAY));
    assert_eq!(r.created_at, created, "created_at is kept");

    w.fake.set_faults(Faults::default());
    cmd().run().expect_success();
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("RUNNING"), "{r:?}");
    assert_eq!(r.error_message, None, "a good run clears the error");
    assert_eq!(w.count("SELECT count(*) FROM task_monitor"), 1);
}

#[test]
fn one_row_per_task_id_whatever_the_number_of_accounts() {
    let second = "7000000000000000002";
    let mut config = support::fake_douyin::FakeConfig::default();
    config.authorised_accounts.push(second.to_string());
    let w = World::with("monitor_accounts", config);
    w.seed_days(MARCH_1, 2, 10);
    w.fake.seed_day(second, MARCH_1, 10, 99);
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("ACCOUNT_ID", &format!("{ACCOUNT},{second}"))
        .env("TASK_ID", "shop 7/\"north\"")
        .run();
    out.expect_success();
    assert_eq!(w.count("SELECT count(*) FROM task_monitor"), 1);
    let r = row(&w, "shop 7/\"north\"");
    assert_eq!(r.status.as_deref(), Some("RUNNING"));
    assert_eq!(r.last_sync_time, Some(MARCH_1 + 2 * DAY));
    // TASK_MONITOR=false: no row is touched.
    w.db.client()
        .execute("DELETE FROM task_monitor", &[])
        .unwrap();
    w.range_cmd("2024-03-01", "2024-03-02")
        .env("TASK_MONITOR", "false")
        .run()
        .expect_success();
    assert_eq!(w.count("SELECT count(*) FROM task_monitor"), 0);
}

#[test]
fn a_stop_before_the_run_syncs_nothing_and_asks_douyin_nothing() {
    let w = World::new("monitor_stop_before");
    let served = w.seed_days(MARCH_1, 2, 20);
    w.db.client().batch_execute(&python_ddl()).unwrap();
    w.db.client()
        .execute(
            "INSERT INTO task_monitor (task_id, status, target_command) VALUES ($1, 'RUNNING', 'STOP')",
            &[&TASK],
        )
        .unwrap();
    let out = w.range_cmd("2024-03-01", "2024-03-02").run();
    out.expect_success();
    assert!(
        w.fake.requests().is_empty(),
        "Douyin was asked: {:?}",
        w.fake.requests()
    );
    assert_eq!(w.fake.token_calls(), 0);
    assert_eq!(w.count("SELECT count(*) FROM orders"), 0);
    let lines: Vec<&str> = out
        .log()
        .lines()
        .filter(|l| l.contains("target_command"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.report());
    assert!(
        lines[0].contains("STOP") && lines[0].contains("START or NULL"),
        "{}",
        out.report()
    );
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("STOPPED"));
    assert_eq!(r.target_command.as_deref(), Some("STOP"), "never cleared");
    assert_recent(r.last_heartbeat, "last_heartbeat");

    // check shows the command in force.
    let check = w.range_cmd("2024-03-01", "2024-03-02").arg("check").run();
    check.expect_success();
    assert!(
        check
            .stdout
            .contains("task_monitor douyin_order_sync: status STOPPED")
            && check.stdout.contains("command: STOP"),
        "{}",
        check.report()
    );

    set_command(&w, Some("START"));
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_success();
    assert_exact(&w, &served);
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("RUNNING"));
    assert_eq!(r.target_command.as_deref(), Some("START"));
    let check = w.range_cmd("2024-03-01", "2024-03-02").arg("check").run();
    assert!(
        check.stdout.contains("command: START (runs normally)"),
        "{}",
        check.report()
    );
}

#[test]
fn a_stop_during_a_run_commits_the_day_in_flight_and_a_rerun_after_start_is_exact() {
    let w = World::new("monitor_stop_during");
    // Ten days of 10 pages at 5 requests/s: about 20 s in all.
    let served = w.seed_days(MARCH_1, 10, 100);
    w.fake.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-10")
            .env("PAGE_SIZE", "10")
            .env("MAX_QPS", "5")
            .env("HEARTBEAT_SECS", "1")
    };
    let child = cmd().spawn();
    // Wait for the row and the first committed day.
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'") == 0
        || w.count("SELECT count(*) FROM orders") == 0
    {
        assert!(Instant::now() < deadline, "no day committed within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    set_command(&w, Some("STOP"));
    let sent = Instant::now();
    let out = child
        .wait_timeout(Duration::from_secs(30))
        .expect("the run did not stop");
    out.expect_success();
    // Within the heartbeat (1 s) plus the day in flight (~2 s at 5 requests/s).
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "{:?}\n{}",
        sent.elapsed(),
        out.report()
    );
    assert!(
        out.log().contains("target_command is STOP"),
        "{}",
        out.report()
    );
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("STOPPED"), "{}", out.report());
    // Only whole days, and the checkpoint says which.
    let committed: i64 = w.count(
        "SELECT (extract(epoch FROM max(synced_until))::bigint - 1709222400) / 86400 FROM sync_checkpoints",
    );
    eprintln!(
        "stopped {:?} after the STOP, {committed} of 10 days committed",
        sent.elapsed()
    );
    assert!(
        (1..10).contains(&committed),
        "{committed} days\n{}",
        out.report()
    );
    assert_eq!(
        w.count("SELECT count(*) FROM orders"),
        committed * 100,
        "{}",
        out.report()
    );
    assert_eq!(r.last_sync_time, Some(MARCH_1 + committed * DAY));
    // STOP still holds: a new run does nothing.
    let held = cmd().run();
    held.expect_success();
    assert_eq!(w.count("SELECT count(*) FROM orders"), committed * 100);
    // START: the rerun resumes after the committed days and the data is exact.
    set_command(&w, Some("START"));
    w.fake.clear_requests();
    let rerun = cmd().env("MAX_QPS", "100").run();
    rerun.expect_success();
    assert!(rerun.log().contains("resuming after"), "{}", rerun.report());
    assert_exact(&w, &served);
    assert_eq!(row(&w, TASK).status.as_deref(), Some("RUNNING"));
}

#[test]
fn the_heartbeat_is_written_while_a_long_day_works() {
    let w = World::new("monitor_heartbeat");
    w.seed_days(MARCH_1, 1, 100);
    w.fake.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    });
    // One day of 10 pages at 2 requests/s: about 5 s without a commit.
    let child = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PAGE_SIZE", "10")
        .env("MAX_QPS", "2")
        .env("HEARTBEAT_SECS", "1")
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'task_monitor'") == 0
        || w.count("SELECT count(*) FROM task_monitor") == 0
    {
        assert!(Instant::now() < deadline, "no task_monitor row");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut beats = std::collections::BTreeSet::new();
    while w.count("SELECT count(*) FROM orders") == 0 && Instant::now() < deadline {
        let t: Option<String> =
            w.db.client()
                .query_one(
                    "SELECT last_heartbeat::text FROM task_monitor WHERE task_id = $1",
                    &[&TASK],
                )
                .unwrap()
                .get(0);
        beats.extend(t);
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_timeout(Duration::from_secs(30)).unwrap();
    out.expect_success();
    assert!(
        beats.len() >= 3,
        "heartbeats seen before the day committed: {beats:?}\n{}",
        out.report()
    );
}

#[test]
fn a_task_monitor_row_that_cannot_be_written_costs_no_order() {
    let w = World::new("monitor_locked_row");
    let served = w.seed_days(MARCH_1, 3, 40);
    w.db.client().batch_execute(&python_ddl()).unwrap();
    w.db.client()
        .execute(
            "INSERT INTO task_monitor (task_id, status) VALUES ($1, 'RUNNING')",
            &[&TASK],
        )
        .unwrap();
    // A back office holds the row locked for the whole run.
    let mut holder = w.db.client();
    let mut tx = holder.transaction().unwrap();
    tx.execute(
        "SELECT * FROM task_monitor WHERE task_id = $1 FOR UPDATE",
        &[&TASK],
    )
    .unwrap();
    let started = Instant::now();
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("PAGE_SIZE", "10")
        .env("MAX_QPS", "10")
        .env("HEARTBEAT_SECS", "1")
        .run();
    out.expect_success();
    assert!(
        out.log().contains("task_monitor: could not write the row")
            && out.log().contains("could not write the heartbeat"),
        "{}",
        out.report()
    );
    // The start waits at most its lock timeout (2 s), the end as long again.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    tx.rollback().unwrap();
    assert_exact(&w, &served);
}

#[test]
fn a_task_monitor_table_of_another_shape_is_left_alone_with_one_warning() {
    let w = World::new("monitor_other_shape");
    let served = w.seed_days(MARCH_1, 1, 10);
    w.db.client()
        .batch_execute(
            "CREATE TABLE task_monitor (task_id VARCHAR(64) PRIMARY KEY, status VARCHAR(32));
             INSERT INTO task_monitor VALUES ('douyin_order_sync', 'mine');",
        )
        .unwrap();
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("HEARTBEAT_SECS", "1")
        .run();
    out.expect_success();
    let warnings: Vec<&str> = out
        .log()
        .lines()
        .filter(|l| l.contains("task_monitor") && !l.contains("applied migration"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.report());
    assert!(warnings[0].contains("not the Python tool's table"));
    assert_exact(&w, &served);
    assert_eq!(
        w.count("SELECT count(*) FROM task_monitor WHERE status = 'mine'"),
        1
    );
    let check = w.range_cmd("2024-03-01", "2024-03-01").arg("check").run();
    check.expect_success();
    assert!(
        check.stdout.contains("not the Python tool's table"),
        "{}",
        check.report()
    );
}

#[test]
fn the_migration_creates_the_table_sqlalchemy_creates_for_the_python_tools_model() {
    let w = World::new("monitor_same_table");
    w.seed_days(MARCH_1, 1, 5);
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    let ours = columns(&w);
    w.db.client()
        .batch_execute("DROP TABLE task_monitor")
        .unwrap();
    w.db.client().batch_execute(&python_ddl()).unwrap();
    let theirs = columns(&w);
    assert_eq!(ours, theirs);
    assert_eq!(ours.1, ["task_id"]);
    assert_eq!(
        ours.0.iter().find(|c| c.0 == "last_heartbeat").unwrap().1,
        "timestamp without time zone"
    );
}

#[test]
fn the_python_tools_own_table_is_used_in_place() {
    let w = World::new("monitor_python_table");
    let served = w.seed_days(MARCH_1, 2, 20);
    let mut client = w.db.client();
    client.batch_execute(&python_ddl()).unwrap();
    // What the daemon left: naive local time (UTC in its image), status and command.
    client
        .execute(
            "INSERT INTO task_monitor VALUES ($1, 'STOPPED', '2024-02-28 16:00:00', '2024-02-29 08:00:00', 'START', 'old error', '2024-01-01 00:00:00', '2024-02-29 08:00:00')",
            &[&TASK],
        )
        .unwrap();
    let before = columns(&w);
    let out = w.range_cmd("2024-03-01", "2024-03-02").run();
    out.expect_success();
    assert_eq!(
        columns(&w),
        before,
        "the table keeps the Python tool's types"
    );
    assert_exact(&w, &served);
    assert_eq!(w.count("SELECT count(*) FROM task_monitor"), 1);
    let r = row(&w, TASK);
    assert_eq!(r.status.as_deref(), Some("RUNNING"));
    assert_eq!(r.error_message, None, "a good run clears the old error");
    assert_eq!(r.target_command.as_deref(), Some("START"));
    assert_eq!(r.created_at, Some(1_704_067_200), "created_at is kept");
    assert_eq!(r.last_sync_time, Some(MARCH_1 + 2 * DAY));
    assert_recent(r.last_heartbeat, "last_heartbeat");
}

#[test]
fn metrics_reach_the_pushgateway_and_a_failed_run_keeps_the_last_success() {
    let gateway = Pushgateway::start();
    let w = World::new("metrics_push");
    w.seed_days(MARCH_1, 2, 30);
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-02")
            .env("PUSHGATEWAY_URL", &gateway.url())
            .env("TASK_ID", "shop-7")
    };
    let started = now();
    cmd().run().expect_success();
    let m = gateway.metrics();
    let group = [("job", "douyin_order_sync"), ("task_id", "shop-7")];
    let get = |m: &str, name: &str, extra: &[(&str, &str)]| {
        let labels: Vec<(&str, &str)> = group.iter().chain(extra).copied().collect();
        sample(m, name, &labels)
    };
    assert_eq!(
        get(&m, "douyin_order_sync_last_exit_code", &[]),
        Some(0.0),
        "{m}"
    );
    let success = get(&m, "douyin_order_sync_last_success_timestamp_seconds", &[]).unwrap();
    let last_run = get(&m, "douyin_order_sync_last_run_timestamp_seconds", &[]).unwrap();
    assert_eq!(success, last_run);
    assert!((started as f64 - 1.0..now() as f64 + 1.0).contains(&success));
    let account = [("account", ACCOUNT), ("stream", "orders")];
    assert_eq!(
        get(&m, "douyin_order_sync_records", &account),
        Some(60.0),
        "{m}"
    );
    assert_eq!(
        get(
            &m,
            "douyin_order_sync_checkpoint_timestamp_seconds",
            &account
        ),
        Some((MARCH_1 + 2 * DAY) as f64)
    );
    assert!(
        get(&m, "douyin_order_sync_requests", &[]).unwrap() >= 3.0,
        "{m}"
    );
    assert_eq!(get(&m, "douyin_order_sync_retries", &[]), Some(0.0));
    assert!(get(&m, "douyin_order_sync_run_duration_seconds", &[]).unwrap() > 0.0);
    assert_eq!(get(&m, "douyin_order_sync_stopped", &[]), Some(0.0));

    std::thread::sleep(Duration::from_millis(1100));
    w.fake.set_faults(busy());
    cmd().env("RETRY_MAX_TRIES", "2").run().expect_code(75);
    let m = gateway.metrics();
    assert_eq!(
        get(&m, "douyin_order_sync_last_exit_code", &[]),
        Some(75.0),
        "{m}"
    );
    assert_eq!(
        get(&m, "douyin_order_sync_last_success_timestamp_seconds", &[]),
        Some(success),
        "a failed run must keep the last success\n{m}"
    );
    assert!(get(&m, "douyin_order_sync_last_run_timestamp_seconds", &[]).unwrap() > last_run);
    assert!(
        get(&m, "douyin_order_sync_retries", &[]).unwrap() >= 1.0,
        "{m}"
    );
    assert_eq!(get(&m, "douyin_order_sync_records", &account), Some(0.0));
    assert_eq!(
        get(
            &m,
            "douyin_order_sync_checkpoint_timestamp_seconds",
            &account
        ),
        Some((MARCH_1 + 2 * DAY) as f64)
    );

    // A signal is pushed too (exit 143).
    w.fake.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    w.fake.clear_requests();
    let child = cmd()
        .env("RETRY_BASE_MS", "60000")
        .env("RETRY_MAX_DELAY_MS", "60000")
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while w
        .fake
        .requests()
        .iter()
        .all(|r| !r.path.contains("order/query"))
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.signal(support::SIGTERM);
    child
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .expect_code(143);
    let m = gateway.metrics();
    assert_eq!(
        get(&m, "douyin_order_sync_last_exit_code", &[]),
        Some(143.0),
        "{m}"
    );
    assert_eq!(
        get(&m, "douyin_order_sync_last_success_timestamp_seconds", &[]),
        Some(success)
    );
    assert!(!gateway.log().contains("level=error"), "{}", gateway.log());
}

#[test]
fn a_task_id_that_is_not_a_plain_word_reaches_the_pushgateway_as_its_label() {
    let gateway = Pushgateway::start();
    let w = World::new("metrics_odd_task_id");
    w.seed_days(MARCH_1, 1, 5);
    let task = "shop 7/\"north\"";
    w.range_cmd("2024-03-01", "2024-03-01")
        .env("PUSHGATEWAY_URL", &gateway.url())
        .env("TASK_ID", task)
        .run()
        .expect_success();
    let m = gateway.metrics();
    assert_eq!(
        sample(
            &m,
            "douyin_order_sync_last_exit_code",
            &[("task_id", "shop 7/\\\"north\\\"")]
        ),
        Some(0.0),
        "{m}"
    );
}

/// Parse an exposition with prometheus_client (the Python reference parser, from the venv
/// `.ci/run` makes; `REFERENCE_PYTHON` names its python). Fails the test when it is missing.
fn prometheus_client_parse(text: &str) -> serde_json::Value {
    use std::io::Write;
    let python = std::env::var("REFERENCE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REFERENCE_PYTHON is not set: it must name a python with prometheus-client \
             (`bash .ci/run` makes .ci/venv and `bash .ci/test` sets it)"
        )
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/prometheus_parse.py"
    );
    let mut child = std::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prometheus_clients_parser_reads_back_every_sample_and_label_as_written() {
    use douyin_order_sync::metrics::{render, RunReport, StreamReport};
    let awkward = "acc \"quoted\" back\\slash\nnew line";
    let report = RunReport {
        finished_at: 1_700_000_123.25,
        duration_seconds: 4.5,
        exit_code: 75,
        requests: 12,
        retries: 3,
        stopped: false,
        streams: vec![
            StreamReport {
                records: 7,
                rejected: Some(2),
                checkpoint: Some(1_699_999_999),
                ..StreamReport::new(awkward, "orders")
            },
            StreamReport::new("7000000000000000001", "orders"),
        ],
    };
    let text = render(&report, Some("task \"7\""), Some(1_699_000_000.0));
    let parsed = prometheus_client_parse(&text);
    let samples = parsed["samples"].as_array().unwrap();
    let find = |name: &str, account: Option<&str>| -> f64 {
        samples
            .iter()
            .find(|s| {
                s["name"] == name
                    && s["labels"]["task_id"] == "task \"7\""
                    && account.is_none_or(|a| s["labels"]["account"] == a)
            })
            .unwrap_or_else(|| panic!("{name} {account:?} not parsed: {parsed}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(find("douyin_order_sync_last_exit_code", None), 75.0);
    assert_eq!(
        find("douyin_order_sync_last_run_timestamp_seconds", None),
        1_700_000_123.25
    );
    assert_eq!(find("douyin_order_sync_records", Some(awkward)), 7.0);
    assert_eq!(
        find("douyin_order_sync_records", Some("7000000000000000001")),
        0.0
    );
    assert_eq!(
        find("douyin_order_sync_rejected_records", Some(awkward)),
        2.0
    );
    assert_eq!(
        find(
            "douyin_order_sync_checkpoint_timestamp_seconds",
            Some(awkward)
        ),
        1_699_999_999.0
    );
    assert_eq!(
        find("douyin_order_sync_last_success_timestamp_seconds", None),
        1_699_000_000.0
    );
    assert_eq!(samples.len(), 11, "{parsed}");
    for family in parsed["families"].as_array().unwrap() {
        assert_eq!(family["type"], "gauge", "{family}");
        assert!(!family["help"].as_str().unwrap().is_empty(), "{family}");
    }
}

#[test]
fn a_run_without_its_database_still_pushes_its_exit_code_but_a_bad_configuration_does_not() {
    let gateway = Pushgateway::start();
    let w = World::new("metrics_db_down");
    // A bad setting: the run never got past its configuration, nothing is pushed.
    w.cmd()
        .env("PUSHGATEWAY_URL", &gateway.url())
        .env("PAGE_SIZE", "0")
        .run()
        .expect_code(78);
    let m = gateway.metrics();
    assert!(!m.contains("douyin_order_sync_last_exit_code"), "{m}");
    // The database refuses connections: 75, pushed, no success recorded.
    w.cmd()
        .env("PUSHGATEWAY_URL", &gateway.url())
        .env("DB_URL", "postgres://postgres@127.0.0.1:9/nothing")
        .run()
        .expect_code(75);
    let m = gateway.metrics();
    let group = [("job", "douyin_order_sync"), ("task_id", TASK)];
    assert_eq!(
        sample(&m, "douyin_order_sync_last_exit_code", &group),
        Some(75.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "douyin_order_sync_last_success_timestamp_seconds",
            &group
        ),
        None,
        "{m}"
    );
    assert_eq!(w.fake.token_calls(), 0);
}

#[test]
fn an_unreachable_or_refusing_pushgateway_leaves_exit_0() {
    let w = World::new("metrics_unreachable");
    let served = w.seed_days(MARCH_1, 1, 10);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PUSHGATEWAY_URL", &format!("http://127.0.0.1:{closed}"))
        .run();
    out.expect_success();
    assert!(
        out.log().contains("could not push the metrics"),
        "{}",
        out.report()
    );
    assert_exact(&w, &served);
    // A server that answers 404 to the push.
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PUSHGATEWAY_URL", &w.fake.base_url())
        .run();
    out.expect_success();
    assert!(
        out.log().contains("could not push the metrics") && out.log().contains("HTTP 4"),
        "{}",
        out.report()
    );
}

#[test]
fn the_metrics_file_is_replaced_atomically_and_parses_as_prometheus_text() {
    use std::os::unix::fs::MetadataExt;
    let gateway = Pushgateway::start();
    let w = World::new("metrics_file");
    w.seed_days(MARCH_1, 1, 10);
    let dir = support::temp_dir("textfile");
    let path = dir.join("douyin_order_sync.prom");
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-01")
            .env("METRICS_FILE", path.to_str().unwrap())
    };
    // A reader that checks every version of the file it sees is whole.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    assert!(
                        text.ends_with('\n') && text.contains("douyin_order_sync_stopped"),
                        "a partial file: {text:?}"
                    );
                    seen += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        })
    };
    cmd().run().expect_success();
    let first = std::fs::read_to_string(&path).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let task = [("task_id", TASK)];
    let success = sample(
        &first,
        "douyin_order_sync_last_success_timestamp_seconds",
        &task,
    )
    .unwrap_or_else(|| panic!("{first}"));
    assert_eq!(
        sample(&first, "douyin_order_sync_records", &[("account", ACCOUNT)]),
        Some(10.0)
    );

    w.fake.set_faults(busy());
    cmd().env("RETRY_MAX_TRIES", "2").run().expect_code(75);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    let second = std::fs::read_to_string(&path).unwrap();
    assert_ne!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "the file was rewritten in place, not replaced"
    );
    assert_eq!(
        sample(&second, "douyin_order_sync_last_exit_code", &task),
        Some(75.0)
    );
    assert_eq!(
        sample(
            &second,
            "douyin_order_sync_last_success_timestamp_seconds",
            &task
        ),
        Some(success),
        "{second}"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["douyin_order_sync.prom"], "temporary files left");

    // The reference parsers: prometheus_client, and the Pushgateway (it refuses a malformed
    // exposition).
    for text in [&first, &second] {
        let parsed = prometheus_client_parse(text);
        assert!(parsed["samples"].as_array().unwrap().len() >= 9, "{parsed}");
    }
    for text in [&first, &second] {
        let (code, body) = gateway.push("/metrics/job/textfile_check", text);
        assert_eq!(
            code, 200,
            "the Pushgateway refused the file: {body}\n{text}"
        );
    }
    let m = gateway.metrics();
    assert_eq!(
        sample(
            &m,
            "douyin_order_sync_last_exit_code",
            &[("job", "textfile_check"), ("task_id", TASK)]
        ),
        Some(75.0),
        "{m}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two days of every stream in the fake, a different count each: 40 orders, 26 verifications,
/// 11 refunds, 17 ledger records.
fn seed_every_stream(w: &World) {
    use support::fake_douyin::generate_verifications;
    use support::fake_douyin::ledger::{generate_ledger, generate_refunds};
    w.seed_days(MARCH_1, 2, 20);
    w.fake
        .add_verifications(generate_verifications(ACCOUNT, MARCH_1, 2, 13, 7));
    for (d, date) in ["2024-03-01", "2024-03-02"].into_iter().enumerate() {
        let start = MARCH_1 + d as i64 * DAY;
        // Not at 00:00:00: the end bound is the next day's start, so a refund at exactly that
        // second is fetched (and counted) by both days when the API's bound is inclusive.
        let mut refunds = generate_refunds(ACCOUNT, start, 5 + d, d as u64 + 1);
        for r in &mut refunds {
            if r["complete_time"] == start {
                r["complete_time"] = (start + 1).into();
            }
        }
        w.fake.add_refunds(refunds);
        w.fake.add_ledger_records(
            date,
            generate_ledger(ACCOUNT, date, start, 8 + d, d as u64 + 1),
        );
    }
}

/// Each stream and the table it fills.
const STREAM_TABLES: [(&str, &str); 4] = [
    ("orders", "orders"),
    ("verifications", "verifications"),
    ("refunds", "refunds"),
    ("settlements", "settlements"),
];

/// The value of a sample prometheus_client parsed: `name` with at least `labels`.
fn parsed_sample(parsed: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
}

/// The stream's checkpoint as stored, epoch seconds.
fn stored_checkpoint(w: &World, stream: &str) -> i64 {
    w.count(&format!(
        "SELECT extract(epoch FROM synced_until)::bigint FROM sync_checkpoints
          WHERE stream = '{stream}' AND account_id = '{ACCOUNT}'"
    ))
}

/// What the Pushgateway and the textfile (read by prometheus_client) say of a stream's `name`.
#[track_caller]
fn both_say(
    gateway_page: &str,
    parsed: &serde_json::Value,
    name: &str,
    stream: &str,
) -> (Option<f64>, Option<f64>) {
    let name = format!("douyin_order_sync_{name}");
    let labels = [("account", ACCOUNT), ("stream", stream), ("task_id", TASK)];
    (
        sample(gateway_page, &name, &labels),
        parsed_sample(parsed, &name, &labels),
    )
}

#[test]
fn a_run_of_every_stream_reports_each_streams_figures_equal_to_the_rows_of_its_table() {
    let gateway = Pushgateway::start();
    let w = World::new("metrics_every_stream");
    seed_every_stream(&w);
    let dir = support::temp_dir("stream_metrics");
    let path = dir.join("douyin_order_sync.prom");
    let started = now();
    w.range_cmd("2024-03-01", "2024-03-02")
        .env("STREAMS", "all")
        .env("PUSHGATEWAY_URL", &gateway.url())
        .env("METRICS_FILE", path.to_str().unwrap())
        .run()
        .expect_success();
    let m = gateway.metrics();
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = prometheus_client_parse(&text);
    let mut counts = Vec::new();
    for (stream, table) in STREAM_TABLES {
        let rows = w.count(&format!("SELECT count(*) FROM {table}")) as f64;
        counts.push(rows);
        let checkpoint = stored_checkpoint(&w, stream) as f64;
        assert_eq!(checkpoint, (MARCH_1 + 2 * DAY) as f64, "{stream}");
        for (name, expected) in [
            ("records", rows),
            ("inserted_records", rows),
            ("updated_records", 0.0),
            ("rejected_records", 0.0),
            ("checkpoint_timestamp_seconds", checkpoint),
            ("stream_exit_code", 0.0),
        ] {
            assert_eq!(
                both_say(&m, &parsed, name, stream),
                (Some(expected), Some(expected)),
                "{name} of {stream}\n{m}\n{text}"
            );
        }
        let (pushed, written) =
            both_say(&m, &parsed, "stream_last_success_timestamp_seconds", stream);
        for t in [pushed, written] {
            let t = t.unwrap_or_else(|| panic!("no last success of {stream}\n{m}\n{text}"));
            assert!(
                (started as f64 - 1.0..now() as f64 + 1.0).contains(&t),
                "{t}"
            );
        }
    }
    assert_eq!(counts, [40.0, 26.0, 11.0, 17.0]);
    // The series users already alert on are still there, with their labels.
    let group = [("job", "douyin_order_sync"), ("task_id", TASK)];
    assert_eq!(
        sample(&m, "douyin_order_sync_last_exit_code", &group),
        Some(0.0)
    );
    assert!(sample(
        &m,
        "douyin_order_sync_last_success_timestamp_seconds",
        &group
    )
    .is_some());
    // The file is a valid exposition for the Pushgateway too.
    let (code, body) = gateway.push("/metrics/job/textfile_check", &text);
    assert_eq!(
        code, 200,
        "the Pushgateway refused the file: {body}\n{text}"
    );
    assert!(!gateway.log().contains("level=error"), "{}", gateway.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stream_that_fails_shows_failed_and_keeps_its_last_success_while_the_others_show_success() {
    use support::fake_douyin::ledger::LedgerFaults;
    let gateway = Pushgateway::start();
    let w = World::new("metrics_stream_fails");
    seed_every_stream(&w);
    let dir = support::temp_dir("stream_metrics_fail");
    let path = dir.join("douyin_order_sync.prom");
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-02")
            .env("STREAMS", "all")
            .env("PUSHGATEWAY_URL", &gateway.url())
            .env("METRICS_FILE", path.to_str().unwrap())
            .env("RETRY_MAX_TRIES", "2")
    };
    cmd().run().expect_success();
    let first_page = gateway.metrics();
    let first = prometheus_client_parse(&std::fs::read_to_string(&path).unwrap());
    let success = |page: &str, parsed: &serde_json::Value, stream: &str| {
        both_say(
            page,
            parsed,
            "stream_last_success_timestamp_seconds",
            stream,
        )
    };
    std::thread::sleep(Duration::from_millis(1100));
    // Refunds busy on every query: the refunds stream fails (75), the others commit.
    w.fake.set_ledger_faults(LedgerFaults {
        refunds_error: Some(2119002),
        ..LedgerFaults::default()
    });
    let out = cmd().run();
    out.expect_code(75);
    let m = gateway.metrics();
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = prometheus_client_parse(&text);
    for (stream, table) in STREAM_TABLES {
        let failed = stream == "refunds";
        assert_eq!(
            both_say(&m, &parsed, "stream_exit_code", stream),
            (
                Some(if failed { 75.0 } else { 0.0 }),
                Some(if failed { 75.0 } else { 0.0 })
            ),
            "{stream}\n{m}\n{text}"
        );
        let rows = w.count(&format!("SELECT count(*) FROM {table}")) as f64;
        let records = if failed { 0.0 } else { rows };
        assert_eq!(
            both_say(&m, &parsed, "records", stream),
            (Some(records), Some(records)),
            "{stream}\n{m}\n{text}"
        );
        let checkpoint = Some(stored_checkpoint(&w, stream) as f64);
        assert_eq!(
            both_say(&m, &parsed, "checkpoint_timestamp_seconds", stream),
            (checkpoint, checkpoint),
            "{stream}"
        );
        let (before_pushed, before_written) = success(&first_page, &first, stream);
        let (pushed, written) = success(&m, &parsed, stream);
        if failed {
            assert_eq!(
                pushed, before_pushed,
                "a failed stream keeps its last success\n{m}"
            );
            assert_eq!(
                written, before_written,
                "a failed stream keeps its last success\n{text}"
            );
        } else {
            assert!(pushed.unwrap() > before_pushed.unwrap(), "{stream}\n{m}");
            assert!(
                written.unwrap() > before_written.unwrap(),
                "{stream}\n{text}"
            );
        }
    }
    let group = [("job", "douyin_order_sync"), ("task_id", TASK)];
    assert_eq!(
        sample(&m, "douyin_order_sync_last_exit_code", &group),
        Some(75.0)
    );
    let (code, body) = gateway.push("/metrics/job/textfile_check", &text);
    assert_eq!(
        code, 200,
        "the Pushgateway refused the file: {body}\n{text}"
    );
    assert!(!gateway.log().contains("level=error"), "{}", gateway.log());
    let _ = std::fs::remove_dir_all(&dir);
}
