//! The sync job end to end: the real binary against the fake Douyin and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::fake_douyin::{DecryptShape, FakeConfig, Faults};
use support::setup::{assert_stored_exactly, int, World, ACCOUNT, DAY, MARCH_1};
use support::Cmd;

#[test]
fn a_backfill_lands_every_order_exactly() {
    let w = World::new("backfill_exact");
    let served = w.seed_days(MARCH_1, 3, 140);
    // A day outside the range must not be asked for or stored.
    w.fake.seed_day(ACCOUNT, MARCH_1 + 3 * DAY, 20, 99);
    let out = w.range_cmd("2024-03-01", "2024-03-03").run();
    out.expect_success();
    let table = w.table();
    assert_eq!(table.len(), served.len(), "{}", out.report());
    for order in &served {
        let id = order.json["order_id"].as_str().unwrap();
        assert_stored_exactly(order, &table[id]);
        assert_eq!(table[id].account_id.as_deref(), Some(ACCOUNT));
    }
    // One informative line per day and a summary.
    for date in ["2024-03-01", "2024-03-02", "2024-03-03"] {
        assert!(
            out.log()
                .lines()
                .any(|l| l.contains(date) && l.contains("140 orders")),
            "{}",
            out.report()
        );
    }
    assert!(
        out.log().contains("done: 3 days, 420 orders"),
        "{}",
        out.report()
    );
}

#[test]
fn an_exclusive_end_bound_and_the_second_decrypt_shape_also_land_every_order() {
    let w = World::with(
        "exclusive_end",
        FakeConfig {
            end_inclusive: false,
            decrypt_shape: DecryptShape::B,
            ..FakeConfig::default()
        },
    );
    let served = w.seed_days(MARCH_1, 2, 90);
    w.range_cmd("2024-03-01", "2024-03-02")
        .env("PAGE_SIZE", "20")
        .run()
        .expect_success();
    let table = w.table();
    assert_eq!(table.len(), served.len());
    for order in &served {
        assert_stored_exactly(order, &table[order.json["order_id"].as_str().unwrap()]);
    }
}

#[test]
fn a_rerun_changes_nothing() {
    let w = World::new("rerun_nothing");
    w.seed_days(MARCH_1, 2, 60);
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_success();
    let before = w.table();
    let out = w.range_cmd("2024-03-01", "2024-03-02").run();
    out.expect_success();
    assert_eq!(w.table(), before, "the table changed on a rerun");
    assert!(out.log().contains("(0 new, 0 changed)"), "{}", out.report());
}

#[test]
fn a_refund_is_picked_up_by_the_next_incremental_run() {
    let w = World::new("refund");
    let today = support::setup::local_midnight_now();
    let served = w.seed_days(today - 3 * DAY, 3, 30);
    w.cmd().env("SYNC_DAYS", "4").run().expect_success();
    assert_eq!(w.table().len(), 90);
    let id = served[7].json["order_id"].as_str().unwrap().to_string();
    let refunded_at = support::setup::now() - 1;
    assert!(w.fake.update_order(&id, |o| {
        o["order_status"] = serde_json::json!(4);
        o["update_order_time"] = serde_json::json!(refunded_at);
    }));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.cmd().run().expect_success();
    let row = &w.table()[&id];
    assert_eq!(row.order_status.as_deref(), Some("4"));
    assert_eq!(row.update_time, Some(refunded_at));
    assert_eq!(int(&row.raw_data["order_status"]), Some(4));
}

#[test]
fn a_day_of_12000_orders_is_complete() {
    let w = World::new("big_day");
    let served = w.seed_days(MARCH_1, 1, 12_000);
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PAGE_SIZE", "100")
        .run();
    out.expect_success();
    assert_eq!(
        w.count("SELECT count(*) FROM orders"),
        12_000,
        "{}",
        out.report()
    );
    let table = w.table();
    for order in served.iter().step_by(97) {
        assert_stored_exactly(order, &table[order.json["order_id"].as_str().unwrap()]);
    }
    // The API refuses page_num × page_size > 10000: the job must have cut the day instead.
    for r in w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("order/query"))
    {
        let page: u64 = r.params["page_num"].parse().unwrap();
        let size: u64 = r.params["page_size"].parse().unwrap();
        assert!(page * size <= 10_000, "{r:?}");
        assert_eq!(r.outcome, "ok", "{r:?}");
    }
}

#[test]
fn the_incremental_second_run_asks_only_for_the_new_window() {
    let w = World::new("incremental_window");
    let today = support::setup::local_midnight_now();
    w.seed_days(today - 2 * DAY, 2, 10);
    w.cmd()
        .env("SYNC_DAYS", "3")
        .env("OVERLAP_SECS", "60")
        .run()
        .expect_success();
    let first = w.fake.requests().len();
    let first_end = w.fake.requests()[..first]
        .iter()
        .filter_map(|r| r.params.get("update_order_end_time"))
        .map(|v| v.parse::<i64>().unwrap())
        .max()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.cmd()
        .env("SYNC_DAYS", "3")
        .env("OVERLAP_SECS", "60")
        .run()
        .expect_success();
    let second: Vec<_> = w.fake.requests()[first..]
        .iter()
        .filter(|r| r.path.contains("order/query"))
        .cloned()
        .collect();
    assert!(!second.is_empty());
    for r in &second {
        let start: i64 = r.params["update_order_start_time"].parse().unwrap();
        assert!(
            start >= first_end - 60,
            "asked from {start}, first run ended at {first_end}"
        );
    }
}

#[test]
fn create_time_mode_asks_by_create_time() {
    let w = World::new("create_time");
    w.seed_days(MARCH_1, 1, 10);
    w.range_cmd("2024-03-01", "2024-03-01")
        .env("USE_CREATE_TIME", "true")
        .run()
        .expect_success();
    assert_eq!(w.count("SELECT count(*) FROM orders"), 10);
    let r = w
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.contains("order/query"))
        .unwrap();
    assert!(
        r.params.contains_key("create_order_start_time")
            && !r.params.contains_key("update_order_start_time")
    );
}

fn nothing_written(w: &World) {
    let tables: i64 = w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'");
    if tables == 1 {
        assert_eq!(
            w.count("SELECT count(*) FROM orders"),
            0,
            "orders were written"
        );
        assert_eq!(
            w.count("SELECT count(*) FROM sync_checkpoints"),
            0,
            "a checkpoint was written"
        );
    }
}

#[test]
fn each_bad_setting_exits_78_naming_the_variable_and_writes_nothing() {
    let w = World::new("bad_settings");
    w.seed_days(MARCH_1, 1, 5);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PAGE_SIZE", "101")], "PAGE_SIZE=\"101\""),
        (&[("PAGE_SIZE", "0")], "PAGE_SIZE"),
        (
            &[("START_DATE", "2024-03-05"), ("END_DATE", "2024-03-01")],
            "END_DATE",
        ),
        (
            &[("START_DATE", "2024-13-01"), ("END_DATE", "2024-03-01")],
            "START_DATE=\"2024-13-01\"",
        ),
        (&[("START_DATE", "2024-03-01")], "END_DATE"),
        (&[("MAX_QPS", "fast")], "MAX_QPS"),
        (&[("USE_CREATE_TIME", "maybe")], "USE_CREATE_TIME"),
        (&[("API_BASE_URL", "open.douyin.com")], "API_BASE_URL"),
        (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
    ];
    for (vars, needle) in cases {
        let out = w.cmd().envs(vars.iter().copied()).run();
        out.expect_code(78);
        let errors: Vec<&str> = out.log().lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{}", out.report());
        assert!(
            errors[0].contains(needle),
            "{needle} not in {}",
            out.report()
        );
    }
    for missing in ["DB_URL", "APPID", "AppSecret", "ACCOUNT_ID"] {
        let mut cmd = Cmd::new();
        for (k, v) in [
            ("DB_URL", w.db.url()),
            ("APPID", "tt_demo_app"),
            ("AppSecret", "0123456789abcdef0123456789abcdef"),
            ("ACCOUNT_ID", ACCOUNT),
        ] {
            if k != missing {
                cmd = cmd.env(k, v);
            }
        }
        let out = cmd.run();
        out.expect_code(78);
        assert!(
            out.log().contains(&format!("{missing} is not set")),
            "{}",
            out.report()
        );
    }
    assert!(
        w.fake.requests().is_empty(),
        "a bad setting still called Douyin"
    );
    nothing_written(&w);
}

#[test]
fn a_bad_flag_exits_64() {
    let out = Cmd::new().arg("--no-such-flag").run();
    out.expect_code(64);
    assert!(out.log().contains("--no-such-flag"), "{}", out.report());
}

#[test]
fn help_lists_every_variable_flag_and_exit_code() {
    let out = Cmd::new().arg("--help").run();
    out.expect_success();
    for needle in [
        "DB_URL",
        "APPID",
        "AppSecret",
        "ACCOUNT_ID",
        "API_BASE_URL",
        "PAGE_SIZE",
        "ORDER_STATUS",
        "GET_SECRET_NUMBER",
        "MAX_QPS",
        "START_DATE",
        "END_DATE",
        "START_TIME",
        "END_TIME",
        "SYNC_DAYS",
        "USE_CREATE_TIME",
        "SYNC_INTERVAL",
        "TASK_ID",
        "--start-date",
        "--env-file",
        " 64 ",
        " 70 ",
        " 75 ",
        " 77 ",
        " 78 ",
        " 130 ",
        " 143 ",
    ] {
        assert!(
            out.stdout.contains(needle.trim_start()),
            "--help lacks {needle}\n{}",
            out.report()
        );
    }
}

#[test]
fn refusals_exit_77_with_code_description_and_logid_and_write_nothing() {
    let cases: &[(Faults, &str)] = &[
        (
            Faults {
                token_error: Some(10013),
                ..Faults::default()
            },
            "10013",
        ),
        (
            Faults {
                token_error: Some(10003),
                ..Faults::default()
            },
            "10003",
        ),
        (
            Faults {
                query_error: Some(2119005),
                ..Faults::default()
            },
            "2119005",
        ),
        (
            Faults {
                query_error: Some(28001014),
                ..Faults::default()
            },
            "28001014",
        ),
        (
            Faults {
                query_error: Some(2190004),
                ..Faults::default()
            },
            "2190004",
        ),
        (
            Faults {
                query_error: Some(2100007),
                ..Faults::default()
            },
            "2100007",
        ),
        // A token refused on every request even after fresh ones: the credentials are bad.
        (
            Faults {
                query_error: Some(2190002),
                ..Faults::default()
            },
            "2190002",
        ),
    ];
    for (i, (faults, code)) in cases.iter().enumerate() {
        let w = World::new(&format!("refused_{i}"));
        w.seed_days(MARCH_1, 1, 5);
        w.fake.set_faults(faults.clone());
        let out = w.range_cmd("2024-03-01", "2024-03-01").run();
        out.expect_code(77);
        let error = out
            .log()
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or_default();
        assert!(error.contains(code), "{}", out.report());
        if !code.starts_with("100") {
            assert!(error.contains("logid "), "{}", out.report());
        }
        nothing_written(&w);
    }
}

#[test]
fn an_invalid_parameter_answer_is_a_bug_exit_70() {
    let w = World::new("invalid_param");
    w.seed_days(MARCH_1, 1, 5);
    w.fake.set_faults(Faults {
        query_error: Some(2100005),
        ..Faults::default()
    });
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_code(70);
    assert!(out.log().contains("2100005"), "{}", out.report());
    nothing_written(&w);
}

#[test]
fn a_transient_failure_without_retries_exits_75_and_commits_nothing_of_that_day() {
    let w = World::new("transient");
    w.seed_days(MARCH_1, 2, 30);
    // The second day always answers busy.
    w.fake.set_faults(Faults {
        always_fail_window: Some((MARCH_1 + DAY, MARCH_1 + 2 * DAY)),
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("RETRY_MAX_TRIES", "1")
        .env("CONCURRENCY", "1")
        .run();
    out.expect_code(75);
    // The first day is committed whole, the second not at all.
    assert_eq!(
        w.count("SELECT count(*) FROM orders"),
        30,
        "{}",
        out.report()
    );
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM orders WHERE update_time >= to_timestamp({})",
            MARCH_1 + DAY
        )),
        0
    );
}

#[test]
fn an_unreachable_database_exits_75_in_one_line_with_the_password_masked() {
    let out = Cmd::new()
        .envs([
            ("DB_URL", "postgres://sync:hunter2secret@127.0.0.1:9/orders"),
            ("APPID", "a"),
            ("AppSecret", "0123456789abcdef0123456789abcdef"),
            ("ACCOUNT_ID", ACCOUNT),
        ])
        .run();
    out.expect_code(75);
    assert_eq!(out.log().lines().count(), 1, "{}", out.report());
    assert!(
        out.log().contains("sync:***@127.0.0.1:9/orders") && out.log().contains("DB_URL"),
        "{}",
        out.report()
    );
    assert!(!out.log().contains("hunter2secret"));
}

#[test]
fn no_secret_appears_in_a_trace_level_log() {
    let w = World::new("no_secrets");
    let served = w.seed_days(MARCH_1, 1, 40);
    // A password in the URL (the throwaway server trusts loopback and ignores it).
    let url =
        w.db.url()
            .replacen("postgres@", "postgres:db-pass-7f3k@", 1);
    assert!(url.contains("db-pass-7f3k"), "{url}");
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("DB_URL", &url)
        .env("RUST_LOG", "trace")
        .run();
    out.expect_success();
    let everything = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        everything.contains("TRACE") || everything.contains("DEBUG"),
        "trace logging was not on"
    );
    assert!(
        !everything.contains("db-pass-7f3k"),
        "database password leaked"
    );
    assert!(
        !everything.contains(&w.config.app_secret),
        "AppSecret leaked"
    );
    let tokens: Vec<String> = w
        .fake
        .requests()
        .iter()
        .filter_map(|r| r.access_token.clone())
        .collect();
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(!everything.contains(&token), "access token leaked");
    }
    for phone in served.iter().filter_map(|o| o.expected_phone.clone()) {
        assert!(!everything.contains(&phone), "decrypted phone leaked");
    }
}

#[test]
fn a_total_that_moves_while_paging_means_the_slice_is_fetched_again() {
    let w = World::new("total_moves");
    let served = w.seed_days(MARCH_1, 1, 120);
    let mut inserted = false;
    // While the day is being paged, a new order appears in it (as a busy shop's would).
    w.fake.set_hook(Some(Box::new(move |info, orders| {
        if !inserted && info.page_num == 2 {
            inserted = true;
            let mut o = orders[0].clone();
            o["order_id"] = serde_json::json!("1999999999999999999");
            o["create_order_time"] = serde_json::json!(MARCH_1 + 3600);
            o["update_order_time"] = serde_json::json!(MARCH_1 + 3600);
            orders.push(o);
        }
    })));
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PAGE_SIZE", "20")
        .run();
    out.expect_success();
    assert!(
        out.log()
            .contains("the total moved from 120 to 121 while paging"),
        "{}",
        out.report()
    );
    let table = w.table();
    assert_eq!(table.len(), served.len() + 1);
    assert!(table.contains_key("1999999999999999999"));
}

#[test]
fn two_runs_starting_together_on_a_fresh_database_migrate_once() {
    let w = World::new("together");
    let served = w.seed_days(MARCH_1, 2, 50);
    let a = w.range_cmd("2024-03-01", "2024-03-02").spawn();
    let b = w.range_cmd("2024-03-01", "2024-03-02").spawn();
    let a = a.wait_timeout(std::time::Duration::from_secs(60)).unwrap();
    let b = b.wait_timeout(std::time::Duration::from_secs(60)).unwrap();
    let codes = [a.code, b.code];
    assert!(codes.contains(&Some(0)), "{}\n{}", a.report(), b.report());
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(75)),
        "{}\n{}",
        a.report(),
        b.report()
    );
    assert_eq!(
        w.count("SELECT count(*) FROM douyin_order_sync_migrations"),
        support::setup::migration_count()
    );
    assert_eq!(w.table().len(), served.len());
}

#[test]
fn a_search_after_cursor_that_does_not_advance_stops_the_day_with_75_and_commits_nothing() {
    let w = World::new("one_second_stuck_cursor");
    let second = MARCH_1 + 3600;
    let mut served =
        support::fake_douyin::generate_day(&w.config.app_secret, ACCOUNT, MARCH_1, 10_050, 6);
    for o in &mut served {
        o.json["update_order_time"] = serde_json::json!(second);
    }
    w.fake.add_orders(served.iter().map(|o| o.json.clone()));
    w.fake.set_faults(Faults {
        orders_stuck_cursor: true,
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PAGE_SIZE", "100")
        .run();
    out.expect_code(75);
    assert!(
        out.log()
            .contains("the search_after cursor did not advance"),
        "{}",
        out.report()
    );
    assert!(
        out.log().contains("paging it by cursor"),
        "{}",
        out.report()
    );
    assert!(w.table().is_empty(), "{}", out.report());
    assert_eq!(w.count("SELECT count(*) FROM sync_checkpoints"), 0);
    // Each attempt of a one-second slice is a first page and one cursor page, and a slice
    // gives up after 6 attempts (the seconds next to the crowded one may see it too, through
    // the end bound) instead of following the cursor forever.
    let with_cursor = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.params.contains_key("cursor"))
        .count();
    assert!(
        (1..=20).contains(&with_cursor),
        "{with_cursor} cursor pages\n{}",
        out.report()
    );
}

#[test]
fn more_than_10000_orders_in_one_second_are_paged_by_cursor() {
    let w = World::new("one_second_cursor");
    let secret = w.config.app_secret.clone();
    let second = MARCH_1 + 3600;
    let mut served = support::fake_douyin::generate_day(&secret, ACCOUNT, MARCH_1, 10_050, 5);
    for o in &mut served {
        o.json["update_order_time"] = serde_json::json!(second);
        // Legacy phones only: the test is about paging, not the decrypt endpoint.
        if let Some((_, plain)) = &o.platform_cipher {
            o.json["contacts"][0]["phone_encrypt"] =
                support::fake_douyin::legacy_encrypt(&secret, plain)
                    .unwrap()
                    .into();
        }
    }
    w.fake.add_orders(served.iter().map(|o| o.json.clone()));
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("PAGE_SIZE", "100")
        .run();
    out.expect_success();
    assert!(
        out.log().contains("paging it by cursor"),
        "{}",
        out.report()
    );
    let table = w.table();
    assert_eq!(table.len(), served.len());
    for order in &served {
        assert_stored_exactly(order, &table[order.json["order_id"].as_str().unwrap()]);
    }
    // The cursor went as the SDK's JSON array, and no request paged past the offset limit.
    let requests = w.fake.requests();
    let with_cursor: Vec<_> = requests
        .iter()
        .filter(|r| r.params.contains_key("cursor"))
        .collect();
    assert!(
        with_cursor.len() >= 100,
        "{} cursor pages",
        with_cursor.len()
    );
    for r in &with_cursor {
        let c: serde_json::Value = serde_json::from_str(&r.params["cursor"]).unwrap();
        assert_eq!(
            c.as_array().map(Vec::len),
            Some(2),
            "{:?}",
            r.params["cursor"]
        );
        assert_eq!(r.params["page_num"], "1");
    }
    assert!(requests
        .iter()
        .all(|r| r.outcome == "ok" || r.outcome.starts_with("token")));
}
