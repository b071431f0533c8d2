//! The benchmark: `cargo run --release --example bench`.
//!
//! For each case it starts the fake Douyin with a given latency and data, runs the real release
//! binary against a throwaway PostgreSQL (or `DB_URL`), and prints orders/s, requests/s as a
//! share of MAX_QPS (the API's ceiling), the busiest second seen by the server, and the binary's
//! peak RSS; beside it, the same case one request at a time (CONCURRENCY=1) as a baseline.
//! Start-up is the time from starting the process to the first order query reaching the fake
//! (connect, migrations check, lock, client token). Each case's database is first prepared by a
//! run over a day without orders (migrated, client token stored), as for every scheduled run
//! after the first; the "first run on an empty database" case measures that first run instead
//! (migrations applied, token fetched). A "rerun" case runs the same range a second time
//! on the same database: its decrypt calls show what a rerun costs the app's decrypt quota, and
//! its start-up reads the stored client token instead of fetching one.
//! Percentages are shares of the ceiling, MAX_QPS × PAGE_SIZE orders/s (MAX_QPS requests/s).
//! `bench quick` runs smaller cases (for a smoke test); `BENCH_BIN=path` measures that binary
//! instead of building this tree's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure should stop it loudly

#[path = "../tests/support/fake_douyin.rs"]
mod fake_douyin;
#[path = "../tests/support/pg.rs"]
mod pg;
#[path = "support/release_binary.rs"]
mod release_binary;

use fake_douyin::{FakeConfig, FakeDouyin, Faults, ORDER_QUERY_PATH, VERIFY_PATH};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "7000000000000000001";
/// 2024-03-01 00:00:00 in Asia/Shanghai.
const MARCH_1: i64 = 1_709_222_400;

struct Case {
    name: &'static str,
    latency_ms: u64,
    max_qps: u32,
    days: usize,
    per_day: usize,
    /// Whether ~1 in 10 phones are platform ciphertexts (`Enc.`), which cost decrypt calls.
    platform_phones: bool,
    /// Measure a second run over the same range and database instead of the first.
    rerun: bool,
    /// Measure the first run on an empty database (migrations applied, client token fetched).
    /// Otherwise the database is prepared by a run over a day without orders (migrated, token
    /// stored), as for every scheduled run after the first.
    first_run: bool,
}

struct Measured {
    orders: i64,
    seconds: f64,
    requests: usize,
    request_rate: f64,
    busiest: usize,
    peak_rss_kb: u64,
    /// From spawning the process to the first order query at the fake.
    startup_ms: f64,
    /// From the last request at the fake to the process's exit (the last commits, the fill
    /// pass, the run's record).
    tail_ms: f64,
    decrypt_calls: usize,
    token_calls: usize,
}

fn run_case(
    bin: &std::path::Path,
    admin_url: &str,
    case: &Case,
    concurrency: Option<usize>,
) -> Measured {
    let fake = FakeDouyin::start(FakeConfig::default());
    let secret = FakeConfig::default().app_secret;
    for d in 0..case.days {
        let day_start = MARCH_1 + d as i64 * 86_400;
        if case.platform_phones {
            fake.seed_day_compact(ACCOUNT, day_start, case.per_day, d as u64 + 7);
        } else {
            // Every phone in the legacy form: no decrypt calls, so every request is a page.
            let orders =
                fake_douyin::generate_day(&secret, ACCOUNT, day_start, case.per_day, d as u64 + 7);
            fake.add_orders(orders.into_iter().map(|mut o| {
                if let Some((_, plain)) = &o.platform_cipher {
                    o.json["contacts"][0]["phone_encrypt"] =
                        fake_douyin::legacy_encrypt(&secret, plain).unwrap().into();
                }
                o.json
            }));
        }
    }
    fake.set_faults(Faults {
        latency: Duration::from_millis(case.latency_ms),
        ..Faults::default()
    });
    let (mut admin, db, url) = fresh_database(admin_url, "bench");
    if case.rerun {
        run_binary(bin, &url, &fake, case, concurrency);
        fake.clear_requests();
    } else if !case.first_run {
        prepare(bin, &url, &fake);
        fake.clear_requests();
    }
    let tokens_before = fake.token_calls();
    let m = run_binary(bin, &url, &fake, case, concurrency);
    let mut db_client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let orders: i64 = db_client
        .query_one("SELECT count(*) FROM orders", &[])
        .unwrap()
        .get(0);
    drop(db_client);
    // BENCH_KEEP_DB=1 keeps the last case's database (to look at its tables and plans).
    if std::env::var_os("BENCH_KEEP_DB").is_none() {
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
    }
    assert_eq!(orders as usize, case.days * case.per_day, "orders missing");
    Measured {
        orders,
        token_calls: fake.token_calls() - tokens_before,
        ..m
    }
}

/// A fresh database `{prefix}_{pid}` on the admin server: (admin client, its name, its URL).
fn fresh_database(admin_url: &str, prefix: &str) -> (postgres::Client, String, String) {
    let db = format!("{prefix}_{}", std::process::id());
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let url = pg::with_dbname(admin_url, &db);
    (admin, db, url)
}

/// The binary with a cleared environment, configured for the fake and a range of `days` from
/// March 1 (the settings every case shares).
fn range_command(bin: &std::path::Path, url: &str, fake: &FakeDouyin, days: usize) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("DB_URL", url)
        .env("APPID", FakeConfig::default().app_id)
        .env("AppSecret", FakeConfig::default().app_secret)
        .env("ACCOUNT_ID", ACCOUNT)
        .env("API_BASE_URL", fake.base_url())
        .env("START_TIME", MARCH_1.to_string())
        .env("END_TIME", (MARCH_1 + days as i64 * 86_400 - 1).to_string());
    cmd
}

/// A run over a day without orders (in February, before the cases' range): the database is
/// migrated and the client token stored, as they are for every scheduled run after the first.
fn prepare(bin: &std::path::Path, url: &str, fake: &FakeDouyin) {
    let mut cmd = range_command(bin, url, fake, 1);
    let status = cmd
        .env("START_TIME", (MARCH_1 - 86_400).to_string())
        .env("END_TIME", (MARCH_1 - 1).to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the preparing run failed: {status}");
}

/// One run of the binary; `orders` is what the day lines say (the caller counts the table).
fn run_binary(
    bin: &std::path::Path,
    url: &str,
    fake: &FakeDouyin,
    case: &Case,
    concurrency: Option<usize>,
) -> Measured {
    let log_path = std::env::temp_dir().join(format!("douyin-bench-{}.log", std::process::id()));
    let mut cmd = range_command(bin, url, fake, case.days);
    cmd.env("PAGE_SIZE", "100")
        .env("MAX_QPS", case.max_qps.to_string())
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    // BENCH_SHOW_LOG=1 prints the binary's whole log, each line stamped with the milliseconds
    // since the spawn when it arrived (with BENCH_RUST_LOG=debug, a timeline of the run).
    let timeline = std::env::var_os("BENCH_SHOW_LOG").is_some();
    if timeline {
        cmd.stderr(Stdio::piped());
    } else {
        // To a file: a pipe nobody reads until the end would fill and block the binary.
        cmd.stderr(std::fs::File::create(&log_path).unwrap());
    }
    if let Some(c) = concurrency {
        cmd.env("CONCURRENCY", c.to_string());
    } else if let Ok(c) = std::env::var("BENCH_CONCURRENCY") {
        cmd.env("CONCURRENCY", c);
    }
    let started = Instant::now();
    let spawned_ms = fake.now_ms();
    let mut child = cmd.spawn().unwrap();
    let reader = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(pipe)
                .lines()
                .map_while(Result::ok)
                .map(|line| format!("+{:>6} ms  {line}", started.elapsed().as_millis()))
                .collect::<Vec<_>>()
                .join("\n")
        })
    });
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in status.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kb);
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let seconds = started.elapsed().as_secs_f64();
    let exited_ms = fake.now_ms();
    let stderr = match reader {
        Some(reader) => reader.join().unwrap(),
        None => std::fs::read_to_string(&log_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&log_path);
    assert!(status.success(), "the run failed: {status}\n{stderr}");
    for line in stderr.lines().filter(|l| {
        timeline
            || ["coordinator:", "fill pass:", "start-up:"]
                .iter()
                .any(|k| l.contains(k))
    }) {
        println!("    {line}");
    }
    let requests = fake.requests();
    let first_query = requests
        .iter()
        .find(|r| r.path.contains("order/query"))
        .map_or(spawned_ms, |r| r.at_ms);
    let decrypt_calls = requests
        .iter()
        .filter(|r| r.path.contains("decrypt"))
        .count();
    let first = requests.first().map_or(0, |r| r.at_ms);
    let last = requests.last().map_or(0, |r| r.at_ms);
    if timeline {
        println!(
            "    last request at the fake: +{} ms after the spawn; exited +{} ms",
            last.saturating_sub(spawned_ms),
            exited_ms.saturating_sub(spawned_ms)
        );
    }
    let request_rate = if last > first {
        (requests.len() - 1) as f64 / ((last - first) as f64 / 1000.0)
    } else {
        f64::INFINITY
    };
    Measured {
        orders: (case.days * case.per_day) as i64,
        seconds,
        requests: requests.len(),
        request_rate,
        busiest: fake.busiest_second(),
        peak_rss_kb: peak,
        startup_ms: first_query.saturating_sub(spawned_ms) as f64,
        tail_ms: exited_ms.saturating_sub(last) as f64,
        decrypt_calls,
        token_calls: 0,
    }
}

fn print_row(label: &str, case: &Case, m: &Measured) {
    let limited = case.max_qps < 1000;
    let ceiling = f64::from(case.max_qps);
    let wall = m.orders as f64 / m.seconds;
    // While fetching: the request rate times the orders each request brought (start-up and the
    // last commit excluded).
    let fetching = m.request_rate * m.orders as f64 / m.requests as f64;
    let share = |rate: f64| {
        if limited {
            format!(" ({:>5.1}%)", 100.0 * rate / (ceiling * 100.0))
        } else {
            String::new()
        }
    };
    println!(
        "  {label:<22} {wall:>7.0} orders/s{}  {fetching:>7.0} orders/s fetching{}  {:>5.1} s (start-up {:>3.0} ms, tail {:>3.0} ms)  {:>5} requests ({} decrypt, {} token)  {:>6.1} req/s{}  busiest second {:>4}  peak RSS {:>5.1} MB",
        share(wall),
        share(fetching),
        m.seconds,
        m.startup_ms,
        m.tail_ms,
        m.requests,
        m.decrypt_calls,
        m.token_calls,
        m.request_rate,
        if limited {
            format!(" ({:>5.1}% of MAX_QPS)", 100.0 * m.request_rate / ceiling)
        } else {
            String::new()
        },
        m.busiest,
        m.peak_rss_kb as f64 / 1024.0
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    // BENCH_BIN: measure another build (e.g. main's) with the same cases.
    let bin = match std::env::var_os("BENCH_BIN") {
        Some(path) => std::path::PathBuf::from(path),
        None => release_binary::build_release_binary().unwrap_or_else(|e| panic!("{e}")),
    };
    let _cluster;
    let admin_url = match std::env::var("DB_URL") {
        Ok(url) => url,
        Err(_) => {
            let c = pg::ThrowawayCluster::start().expect("cannot start a throwaway PostgreSQL");
            let url = c.url().to_string();
            _cluster = c;
            url
        }
    };
    let scale = if quick { 10 } else { 1 };
    let case = |name, latency_ms, max_qps, days, per_day: usize, platform_phones| Case {
        name,
        latency_ms,
        max_qps,
        days,
        per_day: per_day / scale,
        platform_phones,
        rerun: false,
        first_run: false,
    };
    let cases = [
        case(
            "100 ms latency, MAX_QPS=15, 10 days x 1,500",
            100,
            15,
            10,
            1500,
            false,
        ),
        Case {
            first_run: true,
            ..case(
                "100 ms latency, MAX_QPS=15, 10 days x 1,500, first run on an empty database (migrations, token fetched)",
                100,
                15,
                10,
                1500,
                false,
            )
        },
        case(
            "300 ms latency, MAX_QPS=20, 10 days x 1,500",
            300,
            20,
            10,
            1500,
            false,
        ),
        case(
            "100 ms latency, MAX_QPS=15, 10 days x 1,500, 1 in 10 phones Enc. (decrypt calls)",
            100,
            15,
            10,
            1500,
            true,
        ),
        case(
            "0 ms, no limit, 10 days x 10,000",
            0,
            1000,
            10,
            10_000,
            true,
        ),
        case("0 ms, no limit, 1 day x 30,000", 0, 1000, 1, 30_000, true),
        Case {
            rerun: true,
            ..case(
                "100 ms latency, MAX_QPS=15, 10 days x 1,500, 1 in 10 phones Enc., rerun (phones and token stored)",
                100,
                15,
                10,
                1500,
                true,
            )
        },
    ];
    println!(
        "douyin-order-sync benchmark (PAGE_SIZE=100, release build, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // `bench [quick] [WORD]`: only the cases whose name contains WORD.
    let filter: Option<String> = std::env::args().skip(1).find(|a| a != "quick");
    for case in cases
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str())))
    {
        println!("{}", case.name);
        let m = run_case(&bin, &admin_url, case, None);
        print_row("pipelined (default)", case, &m);
        // BENCH_NO_BASELINE=1 skips the one-at-a-time run (when only the default is looked at).
        if std::env::var_os("BENCH_NO_BASELINE").is_none() {
            let b = run_case(&bin, &admin_url, case, Some(1));
            print_row("one request at a time", case, &b);
        }
    }
    if filter
        .as_ref()
        .is_none_or(|f| "streams".contains(f.as_str()))
    {
        streams_side_by_side(&bin, &admin_url, scale);
    }
    if filter
        .as_ref()
        .is_none_or(|f| "refunds settlements ledger".contains(f.as_str()))
    {
        ledger_streams_at_their_limits(&bin, &admin_url, scale);
    }
}

/// Refunds at `REFUND_QPS=10` and the settlement ledger at `SETTLE_QPS=20`, their documented
/// limits, with the fake enforcing those limits: records/s, the request rate as a share of the
/// budget, the busiest second, and how many "too frequent" answers the limit gave.
fn ledger_streams_at_their_limits(bin: &std::path::Path, admin_url: &str, scale: usize) {
    use fake_douyin::ledger::{generate_ledger, generate_refunds, LedgerFaults};
    let days = 10;
    for (stream, budget, per_day) in [
        ("refunds", 10u32, 1000 / scale),
        ("settlements", 20, 500 / scale),
    ] {
        let fake = FakeDouyin::start(FakeConfig::default());
        for d in 0..days {
            let day_start = MARCH_1 + d as i64 * 86_400;
            if stream == "refunds" {
                // Not at 00:00:00: that second would be answered for two days.
                let mut refunds = generate_refunds(ACCOUNT, day_start, per_day, d as u64 + 1);
                for r in &mut refunds {
                    if r["complete_time"].as_i64() == Some(day_start) {
                        r["complete_time"] = (day_start + 1).into();
                    }
                }
                fake.add_refunds(refunds);
            } else {
                let date = format!("2024-03-{:02}", d + 1);
                fake.add_ledger_records(
                    &date,
                    generate_ledger(ACCOUNT, &date, day_start, per_day, d as u64 + 1),
                );
            }
        }
        fake.set_faults(Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        });
        fake.set_ledger_faults(LedgerFaults {
            refunds_qps_limit: Some(10),
            ledger_qps_limit: Some(20),
            ..LedgerFaults::default()
        });
        let (mut admin, db, url) = fresh_database(admin_url, "bench_ledger");
        let started = Instant::now();
        let out = range_command(bin, &url, &fake, days)
            .env("REFUND_QPS", "10")
            .env("SETTLE_QPS", "20")
            .env("STREAMS", stream)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "the run failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let stored: i64 = client
            .query_one(&format!("SELECT count(*) FROM {stream}"), &[])
            .unwrap()
            .get(0);
        drop(client);
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
        assert_eq!(stored as usize, days * per_day, "{stream} missing");
        let path = if stream == "refunds" {
            fake_douyin::ledger::REFUNDS_PATH
        } else {
            fake_douyin::ledger::LEDGER_PATH
        };
        let requests: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect();
        let limited = requests
            .iter()
            .filter(|r| r.outcome.starts_with("rate"))
            .count();
        let (first, last) = (requests[0].at_ms, requests[requests.len() - 1].at_ms);
        let rate = (requests.len() - 1) as f64 / ((last - first) as f64 / 1000.0).max(0.001);
        println!(
            "{stream} at its documented limit: 100 ms latency, {days} days x {per_day}, budget {budget}/s\n  {seconds:>5.1} s  {:>6.0} records/s  {} requests  {rate:.1}/s ({:.1}% of {budget})  busiest second {}  too-frequent answers {limited}",
            stored as f64 / seconds,
            requests.len(),
            100.0 * rate / f64::from(budget),
            fake.busiest_second_of(path),
        );
    }
}

/// Orders and verifications, each alone and then together (`STREAMS=orders,verifications`):
/// each endpoint's request rate as a share of its own budget, and the wall time.
fn streams_side_by_side(bin: &std::path::Path, admin_url: &str, scale: usize) {
    const MAX_QPS: u32 = 15;
    const VERIFY_QPS: u32 = 30;
    let (days, orders_per_day, verifications_per_day) = (10, 1500 / scale, 600 / scale);
    println!(
        "streams side by side: 100 ms latency, {days} days x {orders_per_day} orders (MAX_QPS={MAX_QPS}) and x {verifications_per_day} verifications (VERIFY_QPS={VERIFY_QPS})"
    );
    for streams in ["orders", "verifications", "orders,verifications"] {
        let fake = FakeDouyin::start(FakeConfig::default());
        let secret = FakeConfig::default().app_secret;
        for d in 0..days {
            let day_start = MARCH_1 + d as i64 * 86_400;
            let orders = fake_douyin::generate_day(
                &secret,
                ACCOUNT,
                day_start,
                orders_per_day,
                d as u64 + 7,
            );
            fake.add_orders(orders.into_iter().map(|mut o| {
                if let Some((_, plain)) = &o.platform_cipher {
                    o.json["contacts"][0]["phone_encrypt"] =
                        fake_douyin::legacy_encrypt(&secret, plain).unwrap().into();
                }
                o.json
            }));
        }
        fake.add_verifications(fake_douyin::generate_verifications(
            ACCOUNT,
            MARCH_1,
            days,
            verifications_per_day,
            3,
        ));
        fake.set_faults(Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        });
        let (mut admin, db, url) = fresh_database(admin_url, "bench_streams");
        let started = Instant::now();
        let out = range_command(bin, &url, &fake, days)
            .env("PAGE_SIZE", "100")
            .env("MAX_QPS", MAX_QPS.to_string())
            .env("VERIFY_QPS", VERIFY_QPS.to_string())
            .env("STREAMS", streams)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "the run failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
        let requests = fake.requests();
        let mut parts = Vec::new();
        for (path, name, budget) in [
            (ORDER_QUERY_PATH, "order query", MAX_QPS),
            (VERIFY_PATH, "verifications", VERIFY_QPS),
        ] {
            let times: Vec<u64> = requests
                .iter()
                .filter(|r| r.path == path)
                .map(|r| r.at_ms)
                .collect();
            let (Some(first), Some(last)) = (times.first(), times.last()) else {
                continue;
            };
            // Over the endpoint's whole run: n requests start within (last - first) + 1 s of
            // budget, so the rate is (n - 1) per (last - first).
            let rate = (times.len() - 1) as f64 / ((last - first) as f64 / 1000.0).max(0.001);
            parts.push(format!(
                "{name}: {} requests, {rate:.1}/s ({:.1}% of {budget}), busiest second {}",
                times.len(),
                100.0 * rate / f64::from(budget),
                fake.busiest_second_of(path)
            ));
        }
        println!("  {streams:<22} {seconds:>5.1} s  {}", parts.join("; "));
    }
}
