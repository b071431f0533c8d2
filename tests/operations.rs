//! Operating the job: `check`, the run history, JSON logs, progress on each day's line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::fake_douyin::Faults;
use support::setup::{World, MARCH_1};

#[test]
fn check_prints_the_plan_and_writes_nothing() {
    let w = World::new("check_plan");
    w.seed_days(MARCH_1, 3, 25);
    let out = w.range_cmd("2024-03-01", "2024-03-03").arg("check").run();
    out.expect_success();
    for needle in [
        "configuration: ok",
        "database: connected to",
        "migrations a run would apply: 0001_orders, 0002_sync_runs, 0003_rejected_records",
        "client token ok",
        "range 2024-03-01 00:00:00 .. 2024-03-03 23:59:59 by update time (3 days)",
        "checkpoint: none yet",
        "first day 2024-03-01: Douyin reports 25 orders",
        "nothing written",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing\n{}",
            out.report()
        );
    }
    assert_eq!(
        w.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        0,
        "check created tables"
    );
    // After a run, check shows the checkpoint.
    w.range_cmd("2024-03-01", "2024-03-03")
        .run()
        .expect_success();
    let again = w.range_cmd("2024-03-01", "2024-03-03").arg("check").run();
    again.expect_success();
    assert!(
        again.stdout.contains("schema up to date"),
        "{}",
        again.report()
    );
    assert!(
        again
            .stdout
            .contains("synced until 2024-03-04 00:00:00 (range done"),
        "{}",
        again.report()
    );
}

#[test]
fn check_exits_with_the_codes_of_a_real_run() {
    let w = World::new("check_codes");
    w.fake.set_faults(Faults {
        token_error: Some(10013),
        ..Faults::default()
    });
    w.cmd().arg("check").run().expect_code(77);
    w.cmd()
        .env("PAGE_SIZE", "0")
        .arg("check")
        .run()
        .expect_code(78);
    w.cmd()
        .env("DB_URL", "postgres://x:y@127.0.0.1:9/z")
        .arg("check")
        .run()
        .expect_code(75);
}

#[test]
fn each_run_is_recorded_in_sync_runs() {
    let w = World::new("run_history");
    w.seed_days(MARCH_1, 2, 30);
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_success();
    w.fake.set_faults(Faults {
        query_error: Some(2119005),
        ..Faults::default()
    });
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_code(77);
    let rows =
        w.db.client()
            .query(
                "SELECT mode, days, orders, pages, exit_code, error, finished_at IS NOT NULL,
                    extract(epoch FROM window_start)::bigint, accounts
               FROM sync_runs ORDER BY id",
                &[],
            )
            .unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get::<_, String>(0), "range");
    assert_eq!(first.get::<_, Option<i32>>(1), Some(2));
    assert_eq!(first.get::<_, Option<i64>>(2), Some(60));
    assert_eq!(first.get::<_, Option<i32>>(4), Some(0));
    assert!(first.get::<_, bool>(6));
    assert_eq!(first.get::<_, Option<i64>>(7), Some(MARCH_1));
    assert_eq!(first.get::<_, String>(8), support::setup::ACCOUNT);
    let second = &rows[1];
    assert_eq!(second.get::<_, Option<i32>>(4), Some(77));
    assert!(second
        .get::<_, Option<String>>(5)
        .unwrap()
        .contains("2119005"));
}

#[test]
fn json_logs_are_one_object_per_line_with_the_day_fields() {
    let w = World::new("json_logs");
    w.seed_days(MARCH_1, 2, 30);
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("LOG_FORMAT", "json")
        .run();
    out.expect_success();
    let lines: Vec<serde_json::Value> = out
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let days: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("day").is_some()).collect();
    assert_eq!(days.len(), 2, "{}", out.report());
    assert_eq!(days[0]["day"], "2024-03-01");
    assert_eq!(days[0]["orders"], 30);
    assert!(days[0]["pages"].as_u64().unwrap() >= 1);
    assert!(days[0]["seconds"].is_number());
    assert!(lines
        .iter()
        .any(|l| l["summary"] == true && l["orders"] == 60));

    // An error line carries the logid as a field.
    w.fake.set_faults(Faults {
        query_error: Some(2119005),
        ..Faults::default()
    });
    let failed = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("LOG_FORMAT", "json")
        .run();
    failed.expect_code(77);
    let error: serde_json::Value = failed
        .log()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["level"] == "ERROR")
        .unwrap();
    assert!(
        error["logid"].as_str().is_some_and(|s| !s.is_empty()),
        "{error}"
    );
    assert_eq!(error["exit_code"], 77);
}

#[test]
fn each_day_line_says_how_far_the_run_is() {
    let w = World::new("progress");
    w.seed_days(MARCH_1, 3, 10);
    let out = w.range_cmd("2024-03-01", "2024-03-03").run();
    out.expect_success();
    let second = out
        .log()
        .lines()
        .find(|l| l.contains("2024-03-02:"))
        .unwrap();
    assert!(
        second.contains("day 2 of 3")
            && second.contains("20 orders so far")
            && second.contains("left"),
        "{second}"
    );
}
