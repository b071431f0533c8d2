//! The offline demo: `cargo run --release --example demo`.
//!
//! It needs no Douyin credentials and no database set up by hand. It builds the real release
//! binary, starts a throwaway PostgreSQL (or uses the server named by `DB_URL`, in a fresh
//! database it drops again), starts a fake Douyin Open Platform on loopback with three days of
//! generated orders and a few injected "system busy" errors, and then runs the binary as a
//! merchant would: a first sync of the three days, the same sync again (nothing changes), a
//! refund picked up by the incremental mode, and the seed README's queries on the result; the
//! coupons and verification records (`STREAMS=all`) with a revocation picked up; refunds and the
//! settlement ledger made from the orders' coupons, and a few lines of the `order_reconciliation`
//! view. Then
//! the monitoring: the `task_monitor` row, a remote STOP, and (when Debian's
//! `prometheus-pushgateway` is installed) the metrics in a Pushgateway it starts.
//!
//! The binary runs as a child process with a cleared environment (only PATH is kept) in an empty
//! temporary directory, so nothing from the developer's shell or a stray `.env` leaks in.

#[path = "../tests/support/fake_douyin.rs"]
mod fake_douyin;
#[path = "../tests/support/pg.rs"]
mod pg;
#[path = "../tests/support/pushgateway.rs"]
mod pushgateway;
#[path = "support/release_binary.rs"]
mod release_binary;

use fake_douyin::{FakeConfig, FakeDouyin, Faults, GeneratedOrder};
use postgres::SimpleQueryMessage;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Result<T> = std::result::Result<T, String>;

/// The merchant account the fake Douyin authorises.
const ACCOUNT: &str = fake_douyin::DEFAULT_ACCOUNT_ID;
const DAY: i64 = 86_400;
/// Orders generated for each of the three days (oldest first).
const ORDERS_PER_DAY: [usize; 3] = [468, 731, 352];
/// The binary's pace settings for the demo.
const PAGE_SIZE: &str = "50";
const MAX_QPS: &str = "20";
const RETRY_BASE_MS: &str = "200";
/// Rows shown per result table; the rest is counted.
const MAX_ROWS_SHOWN: usize = 12;
/// Widest cell shown in a table (in terminal columns); longer values are cut with "…".
const MAX_CELL_WIDTH: usize = 36;
/// The status the demo's refund sets (Douyin Life: refunded).
const REFUNDED: i64 = 4;
/// Verification records (coupons used) generated for each of the three days.
const VERIFICATIONS_PER_DAY: usize = 57;

/// The seed README's four queries, verbatim (as in tests/support/setup.rs, SEED_QUERIES).
const SEED_QUERIES: [(&str, &str); 4] = [
    (
        "the latest 10 orders",
        "SELECT \n    order_id, \n    order_status,\n    sku_name, \n    pay_amount, \n    pay_time, \n    phone \nFROM orders \nORDER BY pay_time DESC \nLIMIT 10;",
    ),
    (
        "orders by phone",
        "SELECT * FROM orders WHERE phone = '138****0000';",
    ),
    (
        "orders and takings by day",
        "SELECT \n    DATE(pay_time) as date,\n    COUNT(*) as order_count,\n    SUM(pay_amount) as total_amount\nFROM orders\nGROUP BY DATE(pay_time)\nORDER BY date DESC;",
    ),
    (
        "orders and takings by SKU",
        "SELECT \n    sku_id,\n    sku_name,\n    COUNT(*) as order_count,\n    SUM(pay_amount) as total_amount\nFROM orders\nGROUP BY sku_id, sku_name\nORDER BY order_count DESC;",
    ),
];
/// The placeholder phone of the seed README's second query.
const SEED_PHONE: &str = "138****0000";

fn main() {
    let interrupted = Arc::new(AtomicBool::new(false));
    // Ctrl-C also reaches the binary and PostgreSQL's tools (same process group): they stop, and
    // the demo cleans up on its way out instead of dying with a server still running.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("warning: cannot handle signal {signal}: {e}");
        }
    }
    let started = Instant::now();
    match run(&interrupted) {
        Ok(()) => println!(
            "\ndone ({:.0} s). To sync your own orders, put your DB_URL, APPID, AppSecret and \
             ACCOUNT_ID in a .env file (see .env.example) and run douyin-order-sync.",
            started.elapsed().as_secs_f64()
        ),
        Err(_) if interrupted.load(Ordering::SeqCst) => {
            eprintln!("\ninterrupted; the demo's database and servers are cleaned up");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            std::process::exit(1);
        }
    }
}

fn run(interrupted: &AtomicBool) -> Result<()> {
    let stop_check = || {
        if interrupted.load(Ordering::SeqCst) {
            Err("interrupted".to_string())
        } else {
            Ok(())
        }
    };

    section(1, "Building douyin-order-sync (release)");
    println!(
        "cargo build --release --bin douyin-order-sync (the first time takes a minute or two)…"
    );
    let bin = release_binary::build_release_binary()?;
    println!("binary: {}", bin.display());
    stop_check()?;

    section(2, "PostgreSQL");
    let db = DemoDatabase::open()?;
    println!("the demo's database: {}", mask_password(&db.url));
    stop_check()?;

    section(3, "A fake Douyin Open Platform with three days of orders");
    let now = epoch_now();
    let today = local_midnight(now);
    let fake = FakeDouyin::start(FakeConfig::default());
    println!(
        "listening on {} (loopback only; it plays open.douyin.com)",
        fake.base_url()
    );
    let mut days: Vec<(String, Vec<GeneratedOrder>)> = Vec::new();
    for (i, &count) in ORDERS_PER_DAY.iter().enumerate() {
        let start = today - (ORDERS_PER_DAY.len() - i) as i64 * DAY;
        let orders = seed_day(&fake, start, count);
        println!(
            "  {} (Asia/Shanghai): {count:>4} orders for account {ACCOUNT}",
            local_date(start)
        );
        days.push((local_date(start), orders));
    }
    let total: usize = ORDERS_PER_DAY.iter().sum();
    println!(
        "  {total} orders in all: paid, unpaid and used vouchers, phones encrypted both ways \
         Douyin does it (and, on purpose, a few garbled ones)"
    );
    fake.set_faults(Faults {
        busy_rate: 0.05,
        latency: Duration::from_millis(20),
        ..Faults::default()
    });
    println!(
        "to show resilience, every answer takes 20 ms and about 1 request in 20 gets a \
         \"system busy\" error"
    );
    let verifications = fake_douyin::generate_verifications(
        ACCOUNT,
        today - ORDERS_PER_DAY.len() as i64 * DAY,
        ORDERS_PER_DAY.len(),
        VERIFICATIONS_PER_DAY,
        11,
    );
    let first_verification = verifications
        .first()
        .and_then(|v| v["verify_id"].as_str())
        .unwrap_or_default()
        .to_string();
    fake.add_verifications(verifications);
    println!("  and {VERIFICATIONS_PER_DAY} verification records (coupons used in a shop) a day");
    let first_day = days.first().map(|(d, _)| d.clone()).unwrap_or_default();
    let last_day = days.last().map(|(d, _)| d.clone()).unwrap_or_default();
    stop_check()?;

    let gateway = if Path::new(pushgateway::BINARY).is_file() {
        match pushgateway::Pushgateway::try_start() {
            Ok(g) => {
                println!(
                    "a Prometheus Pushgateway for the metrics: {} (in memory)",
                    g.url()
                );
                Some(g)
            }
            Err(e) => {
                println!("note: the Pushgateway did not start ({e}); no metrics are pushed");
                None
            }
        }
    } else {
        println!(
            "note: {} is not installed (apt-get install prometheus-pushgateway): the metrics \
             are not pushed",
            pushgateway::BINARY
        );
        None
    };
    let workdir = TempDir::create()?;
    let mut base_env: Vec<(&str, String)> = vec![
        ("DB_URL", db.url.clone()),
        ("APPID", FakeConfig::default().app_id),
        ("AppSecret", FakeConfig::default().app_secret),
        ("ACCOUNT_ID", ACCOUNT.to_string()),
        ("API_BASE_URL", fake.base_url()),
        ("PAGE_SIZE", PAGE_SIZE.to_string()),
        ("MAX_QPS", MAX_QPS.to_string()),
        ("RETRY_BASE_MS", RETRY_BASE_MS.to_string()),
    ];
    if let Some(g) = &gateway {
        base_env.push(("PUSHGATEWAY_URL", g.url()));
    }
    let mut range_env = base_env.clone();
    range_env.push(("START_DATE", first_day.clone()));
    range_env.push(("END_DATE", last_day.clone()));

    section(4, &format!("First sync: {first_day} .. {last_day}"));
    println!("douyin-order-sync reads its settings from the environment (or a .env file):");
    for (k, v) in &range_env {
        let shown = match *k {
            "DB_URL" => mask_password(v),
            "AppSecret" => "********".to_string(),
            _ => v.clone(),
        };
        println!("  {k}={shown}");
    }
    println!("its log (stderr):");
    fake.clear_requests();
    let log = sync(&bin, &range_env, workdir.path())?;
    report_requests(&fake);
    explain_log(&log);
    let mut client = db.connect()?;
    let stored = count_orders(&mut client)?;
    println!(
        "the orders table now holds {stored} orders (the fake Douyin served {total}){}",
        if stored == total as i64 {
            ": all of them"
        } else {
            ": SOME ARE MISSING"
        }
    );
    stop_check()?;

    section(5, "The same sync again");
    println!("running it again over the same days re-reads them (to catch refunds) but writes nothing new:");
    let before = last_write(&mut client)?;
    fake.clear_requests();
    let log = sync(&bin, &range_env, workdir.path())?;
    let after = last_write(&mut client)?;
    if log.iter().any(|l| l.contains("(0 new, 0 changed)")) {
        println!("-> \"0 new, 0 changed\": the orders were already there and unchanged");
    } else {
        println!("-> note: the log does not say \"0 new, 0 changed\"");
    }
    if before == after {
        println!("-> no row was rewritten (the newest sync_time is still {before})");
    } else {
        println!("-> note: rows were rewritten (newest sync_time {before} -> {after})");
    }
    stop_check()?;

    section(6, "A refund, picked up by the incremental mode");
    let (refund_day, refund) = pick_refund(&days)?;
    let refund_id = refund.order_id();
    println!("order {refund_id} (created {refund_day}) in the table now:");
    show_order(&mut client, &refund_id)?;
    let changed = fake.update_order(&refund_id, |o| {
        o["order_status"] = serde_json::json!(REFUNDED);
        o["update_order_time"] = serde_json::json!(epoch_now() - 5);
    });
    if !changed {
        return Err(format!("the fake Douyin has no order {refund_id}"));
    }
    println!(
        "the customer asks for a refund: Douyin sets order_status {REFUNDED} and moves its \
         update_order_time to a few seconds ago."
    );
    let mut incremental_env = base_env.clone();
    incremental_env.push(("SYNC_DAYS", "4".to_string()));
    println!(
        "without START_DATE/END_DATE the binary runs incrementally: by update time, the first run \
         SYNC_DAYS=4 days back, later runs from their checkpoint (run it from cron):"
    );
    fake.clear_requests();
    let log = sync(&bin, &incremental_env, workdir.path())?;
    report_requests(&fake);
    if log.iter().any(|l| l.contains("(0 new, 1 changed)")) {
        println!("-> \"0 new, 1 changed\": the refund, and nothing else");
    } else {
        println!("-> note: the log does not say \"0 new, 1 changed\"");
    }
    println!("order {refund_id} in the table now:");
    show_order(&mut client, &refund_id)?;
    stop_check()?;

    section(7, "The seed README's queries");
    println!(
        "times are stored as timestamptz; the demo's session ran SET TIME ZONE 'Asia/Shanghai', \
         so they and DATE() are in Beijing time (in psql run the same, or once: ALTER DATABASE \
         <db> SET timezone = 'Asia/Shanghai')."
    );
    let phone = refund
        .expected_phone
        .clone()
        .ok_or("the refunded order has no phone")?;
    for (i, (title, sql)) in SEED_QUERIES.iter().enumerate() {
        println!("\n{}. {title}:", i + 1);
        let sql = if sql.contains(SEED_PHONE) {
            println!(
                "   (the README's '{SEED_PHONE}' is a placeholder and the column holds the full, \
                 decrypted number: the demo asks for {phone}, the refunded order's customer)"
            );
            sql.replace(SEED_PHONE, &phone)
        } else {
            sql.to_string()
        };
        for line in sql.lines() {
            println!("   {}", line.trim_end());
        }
        let rows = show_query(&mut client, &sql)?;
        let first_is_null = rows
            .first()
            .and_then(|r| r.first())
            .is_some_and(Option::is_none);
        if sql.contains("ORDER BY pay_time DESC") && unpaid_first(&rows) {
            println!(
                "   note: unpaid orders have no pay_time, and PostgreSQL puts NULL first in \
                 DESC order; for the latest paid orders write ORDER BY pay_time DESC NULLS LAST."
            );
        } else if sql.contains("DATE(pay_time)") && first_is_null {
            println!(
                "   note: the NULL date is the unpaid orders; the sums count every status (unpaid, \
                 refunded…): add e.g. WHERE pay_time IS NOT NULL AND order_status <> {REFUNDED}."
            );
        }
    }
    println!(
        "\nand where the sync stands (one checkpoint per range and one for the incremental mode):"
    );
    println!("   SELECT * FROM sync_checkpoints;");
    show_query(&mut client, "SELECT * FROM sync_checkpoints")?;
    stop_check()?;

    section(8, "Coupons and verifications: the verifications stream");
    println!(
        "every order's coupons (certificate[]) are in order_certificates already, written with \
         the orders; the verification records (验券历史) are a second stream, with its own \
         endpoint, budget (VERIFY_QPS) and checkpoint. STREAMS=all syncs both side by side:"
    );
    let mut streams_env = range_env.clone();
    streams_env.push(("STREAMS", "all".to_string()));
    fake.clear_requests();
    sync(&bin, &streams_env, workdir.path())?;
    println!(
        "each endpoint kept its own budget: busiest second {} order queries (MAX_QPS={MAX_QPS}), \
         {} verification queries (VERIFY_QPS default 50)",
        fake.busiest_second_of(fake_douyin::ORDER_QUERY_PATH),
        fake.busiest_second_of(fake_douyin::VERIFY_PATH)
    );
    for (title, sql) in [
        (
            "coupons used per day and per shop",
            "SELECT date(verify_time) AS day, poi_id, count(*) AS coupons, sum(pay_amount) AS paid \
             FROM verifications WHERE status = 1 GROUP BY 1, 2 ORDER BY 1 DESC, 2",
        ),
        (
            "coupons per status (100 unused, 401 used, 301 refunded)",
            "SELECT item_status, count(*) AS coupons, sum(refund_amount) AS refunded \
             FROM order_certificates GROUP BY 1 ORDER BY 1",
        ),
    ] {
        println!("\n{title}:\n   {sql};");
        show_query(&mut client, sql)?;
    }
    println!(
        "\na verification is revoked (撤销核销) later: its verify_time stays, status and \
         cancel_time change. A rerun of the range (or the next incremental run, which re-reads \
         VERIFY_LOOKBACK_DAYS=3) picks it up:"
    );
    fake.revoke_verification(&first_verification, epoch_now() - 60);
    streams_env.retain(|(k, _)| *k != "STREAMS");
    streams_env.push(("STREAMS", "verifications".to_string()));
    let log = sync(&bin, &streams_env, workdir.path())?;
    if log.iter().any(|l| l.contains("(0 new, 1 changed)")) {
        println!("-> \"0 new, 1 changed\": the revocation, and nothing else");
    } else {
        println!("-> note: the log does not say \"0 new, 1 changed\"");
    }
    let revoked =
        "SELECT verify_id, certificate_id, verify_time, status, cancel_time, pay_amount, poi_id \
                   FROM verifications WHERE status = 2";
    println!("   {revoked};");
    show_query(&mut client, revoked)?;
    stop_check()?;

    section(
        9,
        "Refunds, the settlement ledger, and the order_reconciliation view",
    );
    let (refunds, ledger_dates) = seed_money(&fake, &days);
    println!(
        "Douyin now also answers {refunds} refunds (退款单) and a settlement ledger (账单) of {} \
         records over {} bill dates, made from the orders' coupons: most used coupons are \
         verified and settled about an hour later, some not yet. Each is a stream with its own \
         endpoint, budget (REFUND_QPS, SETTLE_QPS) and checkpoint; STREAMS=all runs all four:",
        ledger_dates.iter().map(|(_, n)| n).sum::<usize>(),
        ledger_dates.len()
    );
    streams_env.retain(|(k, _)| *k != "STREAMS");
    streams_env.push(("STREAMS", "all".to_string()));
    fake.clear_requests();
    sync(&bin, &streams_env, workdir.path())?;
    report_requests(&fake);
    for (title, sql) in [
        (
            "what each stream stored",
            "SELECT 'orders' AS stream, count(*) AS rows FROM orders \
             UNION ALL SELECT 'order_certificates', count(*) FROM order_certificates \
             UNION ALL SELECT 'verifications', count(*) FROM verifications \
             UNION ALL SELECT 'refunds', count(*) FROM refunds \
             UNION ALL SELECT 'settlements', count(*) FROM settlements",
        ),
        (
            "a few orders of the order_reconciliation view (one row per order)",
            "SELECT order_id, pay_amount, coupons, coupons_used AS used, coupons_refunded AS refunded, \
                    refunded_amount, settled_amount, unsettled_used AS unsettled \
               FROM order_reconciliation WHERE coupons_used > 0 OR coupons_refunded > 0 \
              ORDER BY unsettled_used DESC, refunded_amount DESC, pay_time DESC LIMIT 8",
        ),
        (
            "per day, as finance reads it: paid, refunded, settled, used but unsettled",
            "SELECT date(pay_time AT TIME ZONE 'Asia/Shanghai') AS day, count(*) AS orders, \
                    sum(pay_amount) AS paid, sum(refunded_amount) AS refunded, \
                    sum(settled_amount) AS settled, sum(unsettled_used) AS unsettled_coupons \
               FROM order_reconciliation WHERE pay_time IS NOT NULL GROUP BY 1 ORDER BY 1",
        ),
    ] {
        println!("\n{title}:\n   {sql};");
        show_query(&mut client, sql)?;
    }
    stop_check()?;

    section(
        10,
        "Monitoring: the task_monitor row, a remote STOP, Prometheus",
    );
    println!(
        "each run keeps the Python tool's task_monitor row (naive timestamps, in UTC) for \
         dashboards and back offices:"
    );
    let monitor_sql = "SELECT task_id, status, last_sync_time, last_heartbeat, target_command, \
                       error_message FROM task_monitor";
    println!("   {monitor_sql};");
    show_query(&mut client, monitor_sql)?;
    println!(
        "a back office stops the job: UPDATE task_monitor SET target_command = 'STOP'; the next \
         run syncs nothing and asks Douyin nothing:"
    );
    client
        .batch_execute("UPDATE task_monitor SET target_command = 'STOP'")
        .map_err(|e| pg_error(&e))?;
    fake.clear_requests();
    sync(&bin, &incremental_env, workdir.path())?;
    println!("-> exit 0, {} requests to Douyin", fake.requests().len());
    show_query(&mut client, monitor_sql)?;
    client
        .batch_execute("UPDATE task_monitor SET target_command = 'START'")
        .map_err(|e| pg_error(&e))?;
    println!("and resumes it: target_command = 'START'; the next run syncs again:");
    sync(&bin, &incremental_env, workdir.path())?;
    show_query(&mut client, monitor_sql)?;
    if let Some(g) = &gateway {
        println!(
            "\nthe metrics each run pushed to the Pushgateway (job douyin_order_sync, \
             task_id douyin_order_sync), from {}/metrics:",
            g.url()
        );
        for line in g.try_metrics()?.lines() {
            if line.starts_with("douyin_order_sync_") {
                println!("   {line}");
            }
        }
    }
    drop(client);

    section(11, "Cleaning up");
    drop(gateway);
    drop(fake);
    println!("stopped the fake Douyin");
    db.close()?;
    drop(workdir);
    Ok(())
}

fn section(n: usize, title: &str) {
    println!("\n=== {n}/11  {title} ===");
}

/// The demo's own database: a fresh one on the server named by DB_URL (dropped at the end), or a
/// throwaway PostgreSQL server (stopped and deleted at the end).
struct DemoDatabase {
    /// URL of the demo's database, as given to the binary.
    url: String,
    /// Set when the database was created on the user's server: (admin URL, database name).
    created: Option<(String, String)>,
    cluster: Option<pg::ThrowawayCluster>,
}

impl DemoDatabase {
    fn open() -> Result<DemoDatabase> {
        match std::env::var("DB_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let url = url.trim().to_string();
                println!(
                    "DB_URL is set: using the server at {} (only in a new database that the demo \
                     drops at the end; your data is not touched)",
                    mask_password(&url)
                );
                let name = format!("douyin_demo_{}", std::process::id());
                let admin_url = client_url(&url);
                let mut admin =
                    postgres::Client::connect(&admin_url, postgres::NoTls).map_err(|e| {
                        format!(
                            "cannot connect to DB_URL ({}): {} (the demo itself connects \
                             without TLS; unset DB_URL to use a throwaway server instead)",
                            mask_password(&url),
                            pg_error(&e)
                        )
                    })?;
                // A database of this name can only be a leftover of an earlier demo with our pid.
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .map_err(|e| {
                        format!(
                            "cannot create the database {name} on DB_URL ({}); the demo needs a \
                             user that may CREATE DATABASE",
                            pg_error(&e)
                        )
                    })?;
                println!("created the database {name}");
                Ok(DemoDatabase {
                    url: pg::with_dbname(&url, &name),
                    created: Some((admin_url, name)),
                    cluster: None,
                })
            }
            _ => {
                println!(
                    "DB_URL is not set: starting a throwaway PostgreSQL in {}…",
                    std::env::temp_dir().display()
                );
                let cluster = pg::ThrowawayCluster::start()
                    .map_err(|e| format!("cannot start a throwaway PostgreSQL: {e}"))?;
                println!(
                    "started in {} on 127.0.0.1:{} (deleted at the end)",
                    cluster.dir().display(),
                    cluster.port()
                );
                Ok(DemoDatabase {
                    url: cluster.url().to_string(),
                    created: None,
                    cluster: Some(cluster),
                })
            }
        }
    }

    /// A session showing times in Beijing time.
    fn connect(&self) -> Result<postgres::Client> {
        let mut client = postgres::Client::connect(&client_url(&self.url), postgres::NoTls)
            .map_err(|e| {
                format!(
                    "cannot connect to {}: {}",
                    mask_password(&self.url),
                    pg_error(&e)
                )
            })?;
        client
            .batch_execute("SET TIME ZONE 'Asia/Shanghai'")
            .map_err(|e| format!("SET TIME ZONE: {}", pg_error(&e)))?;
        Ok(client)
    }

    /// Drops the demo database, or stops and deletes the throwaway server.
    fn close(mut self) -> Result<()> {
        if let Some((admin_url, name)) = self.created.take() {
            drop_database(&admin_url, &name)?;
            println!("dropped the database {name}");
        }
        if let Some(mut cluster) = self.cluster.take() {
            cluster
                .stop()
                .map_err(|e| format!("stopping the throwaway PostgreSQL: {e}"))?;
            let dir = cluster.dir().to_path_buf();
            drop(cluster); // deletes the directory
            println!(
                "stopped the throwaway PostgreSQL and deleted {}",
                dir.display()
            );
        }
        Ok(())
    }
}

impl Drop for DemoDatabase {
    /// On an error path: the same clean-up, quietly (the cluster's own Drop stops it).
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.created.take() {
            if let Err(e) = drop_database(&admin_url, &name) {
                eprintln!("warning: {e}");
            }
        }
    }
}

fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).map_err(|e| {
        format!(
            "cannot connect to drop the database {name}: {}",
            pg_error(&e)
        )
    })?;
    // WITH (FORCE) (PostgreSQL 13+) ends a connection that is still closing.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .or_else(|_| admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")))
        .map_err(|e| format!("cannot drop the database {name}: {}", pg_error(&e)))
}

/// A postgres error with its cause ("error connecting to server: Connection refused …").
fn pg_error(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// DB_URL in a form the postgres crate accepts: SQLAlchemy's `postgresql+psycopg2://` (which the
/// binary accepts) becomes `postgresql://`.
fn client_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.contains('+') => format!("postgresql://{rest}"),
        _ => url.to_string(),
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn mask_password(url: &str) -> String {
    // The job's own reading of DB_URL (SQLAlchemy's rules), so a password with `/`, `?` or `@`
    // is masked whole; a URL it cannot read is not shown at all.
    douyin_order_sync::db_url::make_url(url)
        .map(|parts| parts.masked())
        .unwrap_or_else(|_| "(a DB_URL that does not parse)".to_string())
}

/// An empty working directory for the binary (so no `.env` is read from ours), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("douyin-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // An explicit, empty --env-file: not even a .env beside the binary is read.
        std::fs::write(dir.join("empty.env"), "")
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `env` (and PATH only), streaming its log; returns the log lines.
fn sync(bin: &Path, env: &[(&str, String)], dir: &Path) -> Result<Vec<String>> {
    let mut cmd = Command::new(bin);
    cmd.arg("--env-file")
        .arg(dir.join("empty.env"))
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    // It logs to stderr; stdout should stay empty, but show it all the same.
    let stdout = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                println!("  | {line}");
            }
        })
    });
    let mut log = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            println!("  | {line}");
            log.push(line);
        }
    }
    if let Some(t) = stdout {
        let _ = t.join();
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for douyin-order-sync: {e}"))?;
    match status.code() {
        Some(0) => Ok(log),
        Some(code) => Err(format!(
            "douyin-order-sync exited with code {code} (see its log above)"
        )),
        None => Err(format!("douyin-order-sync was stopped ({status})")),
    }
}

/// What the fake Douyin saw during the last run.
fn report_requests(fake: &FakeDouyin) {
    let requests = fake.requests();
    let count = |path: &str| requests.iter().filter(|r| r.path == path).count();
    let busy = requests
        .iter()
        .filter(|r| r.outcome.starts_with("busy"))
        .count();
    println!(
        "the fake Douyin answered {} requests ({} order pages, {} phone-decryption calls, {} token); \
         {busy} got \"system busy\" and were retried; busiest second: {} requests (MAX_QPS={MAX_QPS})",
        requests.len(),
        count(fake_douyin::ORDER_QUERY_PATH),
        count(fake_douyin::DECRYPT_PATH),
        count(fake_douyin::TOKEN_PATH),
        fake.busiest_second()
    );
}

/// A legend for the WARN lines of the first run.
fn explain_log(log: &[String]) {
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    let phones = count("phone not decrypted");
    let retries = count("; retry ");
    if phones + retries > 0 {
        println!("reading the log:");
    }
    if retries > 0 {
        println!(
            "  {retries} \"answered error …; retry\" warnings: the injected \"system busy\" \
             errors, each retried after a short wait; no order was lost"
        );
    }
    if phones > 0 {
        println!(
            "  {phones} \"phone not decrypted\" warnings: orders whose encrypted phone the fake \
             garbled on purpose (one a day); they are stored with phone NULL"
        );
    }
}

fn count_orders(client: &mut postgres::Client) -> Result<i64> {
    client
        .query_one("SELECT count(*) FROM orders", &[])
        .map(|row| row.get(0))
        .map_err(|e| format!("counting orders: {}", pg_error(&e)))
}

/// The newest sync_time in the table, as text.
fn last_write(client: &mut postgres::Client) -> Result<String> {
    client
        .query_one("SELECT coalesce(max(sync_time)::text, '') FROM orders", &[])
        .map(|row| row.get(0))
        .map_err(|e| format!("reading sync_time: {}", pg_error(&e)))
}

/// Generates one day of orders (see `fake_douyin::generate_day`) and serves them, with two
/// changes that make the demo read like a real shop: orders of the same product share one sku_id
/// (the generator gives each order its own, which leaves the by-SKU query nothing to count), and
/// only the first of the garbled phone ciphertexts the generator makes for the tests (about 2%)
/// is kept, to show its warning once a day; the others get a valid one.
fn seed_day(fake: &FakeDouyin, day_start: i64, count: usize) -> Vec<GeneratedOrder> {
    let secret = fake.app_secret().to_string();
    let mut orders =
        fake_douyin::generate_day(&secret, ACCOUNT, day_start, count, day_start as u64);
    let mut garbled_kept = false;
    for order in &mut orders {
        if let Some((cipher, plain)) = &order.platform_cipher {
            fake.register_platform_cipher(cipher, plain);
        }
        let o = &mut order.json;
        let id = o["order_id"].as_str().unwrap_or_default().to_string();
        if let Some(contact) = o["contacts"].get_mut(0) {
            let cipher = contact["phone_encrypt"].as_str().unwrap_or_default();
            let masked = contact["phone"].as_str().unwrap_or_default();
            let garbled = !cipher.is_empty()
                && !cipher.starts_with("Enc.")
                && fake_douyin::legacy_decrypt(&secret, cipher).is_none();
            if garbled && garbled_kept && masked.len() == 11 {
                // 138****1234 -> 138 + four digits of the order id + 1234.
                let phone = format!("{}{}{}", &masked[..3], &id[id.len() - 4..], &masked[7..]);
                if let Some(valid) = fake_douyin::legacy_encrypt(&secret, &phone) {
                    contact["phone_encrypt"] = serde_json::json!(valid);
                    order.expected_phone = Some(phone);
                }
            }
            garbled_kept |= garbled;
        }
        let name = o["sku_name"].as_str().unwrap_or_default().to_string();
        let sku_id = serde_json::json!(sku_id_of(&name));
        if o.get("sku_id").is_some() {
            o["sku_id"] = sku_id.clone();
        }
        if let Some(product) = o["products"].get_mut(0) {
            product["sku_id"] = sku_id;
        }
    }
    fake.add_orders(orders.iter().map(|o| o.json.clone()));
    orders
}

/// A stable 19-digit sku_id for a product name (FNV-1a).
fn sku_id_of(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    format!("17{:017}", hash % 100_000_000_000_000_000)
}

/// A paid order with a decryptable phone from the middle day, for the refund.
fn pick_refund(days: &[(String, Vec<GeneratedOrder>)]) -> Result<(String, &GeneratedOrder)> {
    let (date, orders) = days.get(days.len() / 2).ok_or("no orders were generated")?;
    orders
        .iter()
        .find(|o| {
            o.expected_phone.is_some()
                && matches!(o.json["order_status"].as_i64(), Some(1 | 200 | 201))
        })
        .map(|o| (date.clone(), o))
        .ok_or_else(|| "no paid order with a phone to refund".to_string())
}

fn show_order(client: &mut postgres::Client, order_id: &str) -> Result<()> {
    // order_id is 19 digits, generated here: safe to put in the text.
    show_query(
        client,
        &format!(
            "SELECT order_id, order_status, sku_name, pay_amount, pay_time, update_time, phone \
             FROM orders WHERE order_id = '{order_id}'"
        ),
    )
    .map(drop)
}

/// Whether the first row of "the latest 10 orders" has no pay_time (5th column).
fn unpaid_first(rows: &[Vec<Option<String>>]) -> bool {
    rows.first()
        .and_then(|r| r.get(4))
        .is_some_and(Option::is_none)
}

/// Runs `sql` (simple query protocol: every value comes back as text, as psql shows it), prints
/// the result as a table, or record by record when it has many columns, and returns the rows.
fn show_query(client: &mut postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let messages = client
        .simple_query(sql)
        .map_err(|e| format!("the query failed: {}\n{sql}", pg_error(&e)))?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    if columns.len() > 8 {
        print_records(&columns, &rows);
    } else {
        print_table(&columns, &rows);
    }
    Ok(rows)
}

/// Cell text: NULL spelled out, control characters escaped, long values cut with "…".
fn cell(value: &Option<String>, max_width: usize) -> String {
    let Some(value) = value else {
        return "NULL".to_string();
    };
    let mut escaped = String::new();
    for c in value.chars() {
        match c {
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    if text_width(&escaped) <= max_width {
        return escaped;
    }
    let mut out = String::new();
    let mut width = 0;
    for c in escaped.chars() {
        let w = text_width(c.encode_utf8(&mut [0; 4]));
        if width + w + 1 > max_width {
            break;
        }
        width += w;
        out.push(c);
    }
    out.push('…');
    out
}

fn print_table(columns: &[String], rows: &[Vec<Option<String>>]) {
    let shown = &rows[..rows.len().min(MAX_ROWS_SHOWN)];
    let cells: Vec<Vec<String>> = shown
        .iter()
        .map(|r| r.iter().map(|v| cell(v, MAX_CELL_WIDTH)).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| text_width(c)).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(text_width(c));
            }
        }
    }
    // Numbers are right-aligned.
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            shown.iter().all(|r| {
                r.get(i)
                    .and_then(|v| v.as_deref())
                    .is_none_or(|v| !v.is_empty() && v.len() < 16 && v.parse::<f64>().is_ok())
            })
        })
        .collect();
    let line = |values: &[String], align_numbers: bool| {
        let parts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pad = " ".repeat(widths[i].saturating_sub(text_width(v)));
                if align_numbers && numeric[i] {
                    format!("{pad}{v}")
                } else {
                    format!("{v}{pad}")
                }
            })
            .collect();
        format!("   {}", parts.join(" | ").trim_end())
    };
    println!("{}", line(columns, false));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("   {}", rule.join("-+-"));
    for row in &cells {
        println!("{}", line(row, true));
    }
    let more = rows.len() - shown.len();
    match (rows.len(), more) {
        (1, _) => println!("   (1 row)"),
        (n, 0) => println!("   ({n} rows)"),
        (n, more) => println!("   … {more} more rows ({n} in all)"),
    }
}

/// psql's expanded display (`\x`), for wide rows.
fn print_records(columns: &[String], rows: &[Vec<Option<String>>]) {
    let width = columns.iter().map(|c| text_width(c)).max().unwrap_or(0);
    for (n, row) in rows.iter().take(MAX_ROWS_SHOWN).enumerate() {
        println!("   -[ RECORD {} ]-", n + 1);
        for (name, value) in columns.iter().zip(row) {
            let pad = " ".repeat(width - text_width(name));
            println!("   {name}{pad} | {}", cell(value, 90));
        }
    }
    match rows.len() {
        0 => println!("   (0 rows)"),
        1 => println!("   (1 row)"),
        n if n > MAX_ROWS_SHOWN => println!("   … {} more rows ({n} in all)", n - MAX_ROWS_SHOWN),
        n => println!("   ({n} rows)"),
    }
}

/// Terminal columns taken by `s`: 2 for CJK and other wide characters and emoji, else 1.
fn text_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = u32::from(c);
            let wide = matches!(c,
                0x1100..=0x115F
                | 0x2E80..=0x303E
                | 0x3041..=0x33FF
                | 0x3400..=0x4DBF
                | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF
                | 0xAC00..=0xD7A3
                | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6
                | 0x1F300..=0x1F64F
                | 0x1F900..=0x1F9FF
                | 0x20000..=0x3FFFD);
            if wide {
                2
            } else {
                1
            }
        })
        .sum()
}

fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The Asia/Shanghai (UTC+8, no daylight saving) midnight that starts the day of `t`.
fn local_midnight(t: i64) -> i64 {
    douyin_order_sync::window::local_midnight(t)
}

/// `YYYY-MM-DD` of `t` in Asia/Shanghai.
fn local_date(t: i64) -> String {
    douyin_order_sync::window::local_date(t)
}

/// Refunds and ledger records made from the demo's orders: every used coupon (item_status 401)
/// gets a verification, and three in four a ledger record booked an hour later on that hour's
/// Asia/Shanghai date; the first few paid, unused orders are refunded (their coupons become 301).
/// Returns the number of refunds and (bill date, records) per date.
fn seed_money(
    fake: &FakeDouyin,
    days: &[(String, Vec<GeneratedOrder>)],
) -> (usize, Vec<(String, usize)>) {
    use fake_douyin::ledger::LedgerFaults;
    let now = epoch_now();
    let mut verifications = Vec::new();
    let mut ledger: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut refunds = Vec::new();
    let mut n = 0u64;
    for (_, orders) in days {
        for o in orders {
            let order = fake.order(&o.order_id()).unwrap_or_else(|| o.json.clone());
            let order_id = o.order_id();
            let certs = order["certificate"].as_array().cloned().unwrap_or_default();
            let count = certs.len().max(1) as i64;
            let pay = order["pay_amount"].as_i64().unwrap_or(0);
            let status = order["order_status"].as_i64().unwrap_or(0);
            for c in &certs {
                let used = c["item_status"].as_i64() == Some(401);
                let Some(cert) = c["certificate_id"].as_str().filter(|s| !s.is_empty()) else {
                    continue;
                };
                if !used {
                    continue;
                }
                n += 1;
                let verify_time = c["item_update_time"]
                    .as_i64()
                    .unwrap_or(now)
                    .min(now - 7200);
                let id = format!("{}", 7_400_000_000_000_000_000u64 + n);
                let code = format!("{:012}", n * 7919);
                verifications.push(serde_json::json!({
                    "cursor": id, "verify_id": id, "certificate_id": cert, "code": code,
                    "order_id": order_id, "verify_time": verify_time, "status": 1,
                    "cancel_time": 0, "can_cancel": true, "verify_type": 1,
                    "amount": {"original_amount": pay / count, "pay_amount": pay / count,
                               "merchant_ticket_amount": 0},
                    "verify_poi_id": "7100000000000000101",
                }));
                if !n.is_multiple_of(4) {
                    let booked = verify_time + 3600;
                    ledger.entry(local_date(booked)).or_default().push(serde_json::json!({
                        "ledger_id": format!("l_r_b{id}"), "id": id, "account_id": ACCOUNT,
                        "order_id": order_id, "item_order_id": c["order_item_id"],
                        "poi_id": "7100000000000000101", "ledger_time": booked, "status": 1,
                        "certificate": {"certificate_id": cert, "code": code},
                        "goods": {"group_name": "示例团购", "sku_id": order["sku_id"], "sold_start_time": 0},
                        "amount": {"original": pay / count, "pay": pay / count,
                                   "coupon_pay": pay / count, "merchant_ticket": 0,
                                   "goods": pay / count * 94 / 100, "actual_insured": 0},
                        "order_attrribute": {"room_id": "", "source": 1},
                    }));
                }
            }
            if (status == 200 || status == 201) && refunds.len() < 6 && pay > 0 {
                let update = order["update_order_time"].as_i64().unwrap_or(now);
                fake.update_order(&order_id, |o| {
                    if let Some(certs) = o["certificate"].as_array_mut() {
                        for c in certs {
                            c["item_status"] = 301.into();
                            c["refund_amount"] = (pay / count).into();
                            c["refund_time"] = update.into();
                        }
                    }
                });
                refunds.push(serde_json::json!({
                    "after_sale_id": format!("{}", 7_500_000_000_000_000_000u64 + refunds.len() as u64),
                    "order_id": order_id, "status": 50, "refund_type": 1,
                    "merchant_account_id": ACCOUNT.parse::<i64>().unwrap_or(0),
                    "create_time": update - 600, "update_time": update, "audit_time": update - 300,
                    "complete_time": update, "refund_amount": pay, "total_refund_amount": pay,
                    "real_refund_amount": pay, "reject_reason": "",
                }));
            }
        }
    }
    fake.add_verifications(verifications);
    let counts = ledger.iter().map(|(d, r)| (d.clone(), r.len())).collect();
    for (date, records) in ledger {
        fake.add_ledger_records(&date, records);
    }
    let refund_count = refunds.len();
    fake.add_refunds(refunds);
    fake.set_ledger_faults(LedgerFaults::default());
    (refund_count, counts)
}
