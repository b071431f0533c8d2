//! Faults, signals, crashes and overlapping runs: every transient failure survivable, every hard
//! one clean, and the table always exactly what an uninterrupted run makes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use std::time::{Duration, Instant};
use support::fake_douyin::{Faults, GeneratedOrder};
use support::setup::{assert_exact, World, DAY, MARCH_1};
use support::{SIGINT, SIGTERM};

/// Each day of the range is either complete or absent (no half-written day).
#[track_caller]
fn assert_whole_days(w: &World, days: usize, per_day: i64) {
    for d in 0..days as i64 {
        let n = w.count(&format!(
            "SELECT count(*) FROM orders WHERE update_time >= to_timestamp({}) AND update_time < to_timestamp({})",
            MARCH_1 + d * DAY,
            MARCH_1 + (d + 1) * DAY
        ));
        assert!(
            n == 0 || n == per_day,
            "day {d} holds {n} of {per_day} orders"
        );
    }
}

fn faulty_run(name: &str, faults: Faults, max_qps: &str) -> (World, support::Output) {
    let w = World::new(name);
    let served = w.seed_days(MARCH_1, 3, 150);
    w.fake.set_faults(faults);
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("PAGE_SIZE", "25")
        .env("MAX_QPS", max_qps)
        .env("RETRY_MAX_TRIES", "30")
        .run();
    out.expect_success();
    assert_exact(&w, &served);
    (w, out)
}

#[test]
fn busy_answers_are_retried_with_their_code_and_logid_in_a_warning() {
    let (_w, out) = faulty_run(
        "fault_busy",
        Faults {
            busy_rate: 0.3,
            ..Faults::default()
        },
        "100",
    );
    let warning = out
        .log()
        .lines()
        .find(|l| l.contains("WARN") && l.contains("retry"));
    let warning = warning.unwrap_or_else(|| panic!("no retry warning\n{}", out.report()));
    assert!(warning.contains("logid "), "{warning}");
}

#[test]
fn http_502_is_retried() {
    let (_w, out) = faulty_run(
        "fault_502",
        Faults {
            http_502_rate: 0.3,
            ..Faults::default()
        },
        "100",
    );
    assert!(out.log().contains("502"), "{}", out.report());
}

#[test]
fn cut_bodies_are_retried() {
    faulty_run(
        "fault_cut",
        Faults {
            cut_body_rate: 0.3,
            ..Faults::default()
        },
        "100",
    );
}

#[test]
fn an_expired_token_is_replaced_once_and_the_request_repeated() {
    let (w, _out) = faulty_run(
        "fault_token",
        Faults {
            expire_token_after: Some(8),
            ..Faults::default()
        },
        "100",
    );
    let queries = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("order/query") && r.outcome == "ok")
        .count();
    let tokens = w.fake.token_calls();
    assert!(tokens >= 2, "the token never expired");
    // One token at the start and one per expiry: never one per request.
    assert!(
        tokens <= 1 + queries.div_ceil(8),
        "{tokens} tokens for {queries} queries"
    );
}

#[test]
fn a_server_side_qps_limit_below_max_qps_slows_the_whole_job() {
    let (w, out) = faulty_run(
        "fault_qps",
        Faults {
            qps_limit: Some(6),
            ..Faults::default()
        },
        "12",
    );
    assert!(out.log().contains("too frequent"), "{}", out.report());
    assert!(w.fake.busiest_second() <= 12);
}

#[test]
fn all_faults_together_land_every_order_exactly_and_none_twice() {
    let (w, out) = faulty_run(
        "fault_all",
        Faults {
            busy_rate: 0.15,
            http_502_rate: 0.10,
            cut_body_rate: 0.10,
            expire_token_after: Some(15),
            qps_limit: Some(8),
            ..Faults::default()
        },
        "10",
    );
    assert!(
        w.fake.busiest_second() <= 10,
        "busiest second {}",
        w.fake.busiest_second()
    );
    assert!(out.log().contains("retry"), "{}", out.report());
}

#[test]
fn the_busiest_second_of_a_run_never_exceeds_max_qps() {
    let w = World::new("busiest_second");
    w.seed_days(MARCH_1, 4, 200);
    w.range_cmd("2024-03-01", "2024-03-04")
        .env("PAGE_SIZE", "10")
        .env("MAX_QPS", "7")
        .run()
        .expect_success();
    let requests = w.fake.requests().len();
    assert!(requests >= 80, "{requests}");
    let busiest = w.fake.busiest_paced_second(None);
    assert!(busiest <= 7, "busiest second {busiest}");
}

#[test]
fn a_day_that_keeps_failing_ends_with_75_and_the_rerun_resumes_after_the_committed_days() {
    let w = World::new("keeps_failing");
    let served = w.seed_days(MARCH_1, 4, 50);
    w.fake.set_faults(Faults {
        always_fail_window: Some((MARCH_1 + 2 * DAY, MARCH_1 + 3 * DAY)),
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-04")
        .env("RETRY_MAX_TRIES", "3")
        .run();
    out.expect_code(75);
    assert!(
        out.log().contains("gave up after 3 tries"),
        "{}",
        out.report()
    );
    assert_eq!(
        w.count("SELECT count(*) FROM orders"),
        100,
        "{}",
        out.report()
    );
    assert_whole_days(&w, 4, 50);
    let before = w.fake.requests().len();
    w.fake.set_faults(Faults::default());
    let rerun = w.range_cmd("2024-03-01", "2024-03-04").run();
    rerun.expect_success();
    assert!(
        rerun.log().contains("resuming after 2024-03-03 00:00:00"),
        "{}",
        rerun.report()
    );
    for r in &w.fake.requests()[before..] {
        if let Some(start) = r.params.get("update_order_start_time") {
            let start: i64 = start.parse().unwrap();
            assert!(
                start >= MARCH_1 + 2 * DAY,
                "the rerun asked a committed day again: {r:?}"
            );
        }
    }
    assert_exact(&w, &served);
}

/// A slow run to interrupt: 6 days × 100 orders in pages of 10 at 5 requests/s.
fn slow_world(name: &str) -> (World, Vec<GeneratedOrder>) {
    let w = World::new(name);
    let served = w.seed_days(MARCH_1, 6, 100);
    w.fake.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    (w, served)
}

fn slow_cmd(w: &World) -> support::Cmd {
    w.range_cmd("2024-03-01", "2024-03-06")
        .env("PAGE_SIZE", "10")
        .env("MAX_QPS", "5")
}

/// Wait until at least one day is committed.
fn wait_for_first_day(w: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'") == 0
        || w.count("SELECT count(*) FROM orders") == 0
    {
        assert!(
            Instant::now() < deadline,
            "no day was committed within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupted_then_rerun(name: &str, signal: i32, code: i32) {
    let (w, served) = slow_world(name);
    let child = slow_cmd(&w).spawn();
    wait_for_first_day(&w);
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    child.signal(signal);
    let out = child
        .wait_timeout(Duration::from_secs(10))
        .expect("the run did not stop within 10 s of the signal");
    out.expect_code(code);
    assert!(sent.elapsed() < Duration::from_secs(10));
    let committed = w.count("SELECT count(*) FROM orders");
    assert!(committed < 600, "the run finished before the signal");
    assert_whole_days(&w, 6, 100);
    slow_cmd(&w).env("MAX_QPS", "100").run().expect_success();
    assert_exact(&w, &served);
}

#[test]
fn sigterm_mid_run_exits_143_within_10_s_and_the_rerun_is_exact() {
    interrupted_then_rerun("sigterm", SIGTERM, 143);
}

#[test]
fn sigint_mid_run_exits_130_and_the_rerun_is_exact() {
    interrupted_then_rerun("sigint", SIGINT, 130);
}

#[test]
fn sigterm_during_a_long_backoff_still_stops_within_10_s() {
    let w = World::new("sigterm_backoff");
    w.seed_days(MARCH_1, 1, 10);
    w.fake.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    let child = w
        .range_cmd("2024-03-01", "2024-03-01")
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
    child.signal(SIGTERM);
    let out = child
        .wait_timeout(Duration::from_secs(10))
        .expect("did not stop");
    out.expect_code(143);
}

#[test]
fn kill_9_mid_run_then_a_rerun_is_exact() {
    let (w, served) = slow_world("kill9");
    let mut child = slow_cmd(&w).spawn();
    wait_for_first_day(&w);
    std::thread::sleep(Duration::from_millis(700));
    child.kill9();
    let out = child
        .wait_timeout(Duration::from_secs(5))
        .expect("not killed");
    assert_eq!(out.signal, Some(9));
    assert_whole_days(&w, 6, 100);
    slow_cmd(&w).env("MAX_QPS", "100").run().expect_success();
    assert_exact(&w, &served);
}

#[test]
fn a_second_run_beside_a_first_exits_75_at_once() {
    let (w, served) = slow_world("second_run");
    let first = slow_cmd(&w).spawn();
    wait_for_first_day(&w);
    let started = Instant::now();
    let second = slow_cmd(&w).run();
    second.expect_code(75);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        second.log().contains("another run holds the lock"),
        "{}",
        second.report()
    );
    first
        .wait_timeout(Duration::from_secs(120))
        .expect("the first run did not finish")
        .expect_success();
    assert_exact(&w, &served);
}

#[test]
fn a_database_connection_lost_mid_run_is_retried_for_that_day() {
    let (w, served) = slow_world("db_lost");
    let child = slow_cmd(&w).spawn();
    wait_for_first_day(&w);
    let terminated = w.terminate_sessions("douyin-order-sync");
    assert!(terminated >= 1, "no connection of the run was found");
    let out = child
        .wait_timeout(Duration::from_secs(120))
        .expect("did not finish");
    out.expect_success();
    assert!(
        out.log().contains("lost a database connection"),
        "{}",
        out.report()
    );
    assert_exact(&w, &served);
}

#[test]
fn a_database_unreachable_at_start_ends_with_75_quickly() {
    let w = World::new("db_unreachable");
    let started = Instant::now();
    let out = w
        .cmd()
        .env("DB_URL", "postgres://postgres:pw@127.0.0.1:9/nothing")
        .run();
    out.expect_code(75);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(out.log().lines().count(), 1, "{}", out.report());
    assert!(w.fake.requests().is_empty());
}
