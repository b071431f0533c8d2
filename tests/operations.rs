//! Operating the job: `check`, the run history, JSON logs, progress on each day's line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::fake_douyin::Faults;
use support::setup::{World, ACCOUNT, DAY, MARCH_1};

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

/// Every stream has data in the fake: orders of 2024-03-01, and a verification, a refund and a
/// ledger record of the last hour / yesterday (what `check` asks for).
fn seed_for_check(w: &World) {
    use support::fake_douyin::generate_verifications;
    use support::fake_douyin::ledger::{generate_ledger, generate_refunds};
    w.seed_days(MARCH_1, 1, 5);
    let now = support::setup::now();
    let mut verifications = generate_verifications(ACCOUNT, MARCH_1, 1, 2, 3);
    for v in &mut verifications {
        v["verify_time"] = (now - 600).into();
    }
    w.fake.add_verifications(verifications);
    let mut refunds = generate_refunds(ACCOUNT, MARCH_1, 3, 1);
    for r in &mut refunds {
        r["complete_time"] = (now - 600).into();
        r["update_time"] = (now - 600).into();
    }
    w.fake.add_refunds(refunds);
    let yesterday = support::setup::local_midnight_now() - DAY;
    let date = support::fake_douyin::local_date(yesterday);
    w.fake
        .add_ledger_records(&date, generate_ledger(ACCOUNT, &date, yesterday, 4, 1));
}

/// The stdout lines of `check` that report a failed stream.
fn failed_lines(out: &support::Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| l.contains("FAILED"))
        .map(str::to_string)
        .collect()
}

#[test]
fn check_asks_the_endpoint_of_every_configured_stream_once_and_writes_nothing() {
    use support::fake_douyin::ledger::{LEDGER_PATH, REFUNDS_PATH};
    use support::fake_douyin::{ORDER_QUERY_PATH, VERIFY_PATH};
    let w = World::new("check_streams");
    seed_for_check(&w);
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("STREAMS", "all")
        .arg("check")
        .run();
    out.expect_success();
    for needle in [
        "first day 2024-03-01: Douyin reports 5 orders",
        "verifications: endpoint ok, 2 verifications in the first page of the last hour",
        "refunds: endpoint ok, 3 refunds in the first page of the last hour",
        "settlements: endpoint ok, 4 ledger records in the first page of bill date ",
        "check: ok, nothing written",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing\n{}",
            out.report()
        );
    }
    assert!(failed_lines(&out).is_empty(), "{}", out.report());
    let requests = w.fake.requests();
    for path in [ORDER_QUERY_PATH, VERIFY_PATH, REFUNDS_PATH, LEDGER_PATH] {
        let asked: Vec<_> = requests.iter().filter(|r| r.path == path).collect();
        assert_eq!(asked.len(), 1, "{path}: {asked:?}");
        let p = &asked[0].params;
        // A tiny window: at most an hour (the ledger: one bill date).
        for (start, end) in [
            ("start_time", "end_time"),
            ("refund_done_start_time", "refund_done_end_time"),
        ] {
            if let (Some(a), Some(b)) = (p.get(start), p.get(end)) {
                let span = b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap();
                assert!(path == ORDER_QUERY_PATH || span <= 3600, "{path}: {p:?}");
            }
        }
    }
    assert_eq!(
        w.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        0,
        "check created tables"
    );
    // Only the configured streams are asked: STREAMS=refunds asks no order query.
    w.fake.clear_requests();
    w.cmd()
        .env("STREAMS", "refunds")
        .arg("check")
        .run()
        .expect_success();
    let paths: Vec<String> = w
        .fake
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| !p.contains("client_token"))
        .collect();
    assert_eq!(paths, [REFUNDS_PATH], "{paths:?}");
}

#[test]
fn check_names_the_one_stream_whose_endpoint_refuses_the_app_or_cannot_be_reached() {
    use support::fake_douyin::ledger::LedgerFaults;
    use support::fake_douyin::VERIFY_PATH;
    let w = World::new("check_stream_faults");
    seed_for_check(&w);
    let check = || {
        w.cmd()
            .env("STREAMS", "all")
            .env("RETRY_MAX_TRIES", "2")
            .arg("check")
    };
    // The app lacks the refund query's permission (2190004): 77, refunds named, others ok.
    w.fake.set_ledger_faults(LedgerFaults {
        refunds_error: Some(2190004),
        ..LedgerFaults::default()
    });
    let out = check().run();
    out.expect_code(77);
    let failed = failed_lines(&out);
    assert_eq!(failed.len(), 1, "{}", out.report());
    assert!(
        failed[0].contains("stream refunds of account 7000000000000000001")
            && failed[0].contains("permission")
            && failed[0].contains("(exit 77)")
            && failed[0].contains("2190004"),
        "{}",
        out.report()
    );
    for ok in [
        "verifications: endpoint ok",
        "settlements: endpoint ok",
        "Douyin reports",
    ] {
        assert!(out.stdout.contains(ok), "{ok:?}\n{}", out.report());
    }
    assert!(out
        .stdout
        .contains("check: one stream failed, nothing written"));
    assert!(
        out.log().contains("refunds answered error 2190004"),
        "{}",
        out.report()
    );

    // The verification endpoint is not routed (HTTP 404): 75, verifications named.
    w.fake.set_ledger_faults(LedgerFaults::default());
    w.fake.set_faults(Faults {
        not_found_paths: vec![VERIFY_PATH.to_string()],
        ..Faults::default()
    });
    let out = check().run();
    out.expect_code(75);
    let failed = failed_lines(&out);
    assert_eq!(failed.len(), 1, "{}", out.report());
    assert!(
        failed[0].contains("stream verifications of account")
            && failed[0].contains("unreachable")
            && failed[0].contains("(exit 75)")
            && failed[0].contains("404"),
        "{}",
        out.report()
    );
    assert!(
        out.stdout.contains("refunds: endpoint ok"),
        "{}",
        out.report()
    );

    // Both at once: each named on its own line; the exit code is the most serious (77).
    w.fake.set_ledger_faults(LedgerFaults {
        ledger_error: Some(2190004),
        ..LedgerFaults::default()
    });
    let out = check().run();
    out.expect_code(77);
    let failed = failed_lines(&out);
    assert_eq!(failed.len(), 2, "{}", out.report());
    assert!(
        failed[0].contains("stream verifications"),
        "{}",
        out.report()
    );
    assert!(failed[1].contains("stream settlements"), "{}", out.report());
    assert!(
        out.stdout.contains("check: 2 streams failed"),
        "{}",
        out.report()
    );
    assert_eq!(
        w.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        0,
        "check created tables"
    );
}
