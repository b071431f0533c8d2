//! Switching from the Python tool: its table is adopted in place, its queries keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::fake_douyin::GeneratedOrder;
use support::setup::{
    assert_stored_exactly, int, migration_count, World, ACCOUNT, DAY, MARCH_1, SEED_QUERIES,
};

/// The seed's table, exactly as its code creates it, plus its heartbeat table.
const SEED_SCHEMA: &str = "
    CREATE TABLE orders (order_id VARCHAR(64) PRIMARY KEY, order_status VARCHAR(32),
        sku_id VARCHAR(64), sku_name VARCHAR(255), pay_amount FLOAT, count INTEGER,
        pay_time TIMESTAMP, create_time TIMESTAMP, update_time TIMESTAMP,
        source_order_id VARCHAR(64), phone VARCHAR(20), raw_data JSONB, sync_time TIMESTAMP);
    CREATE INDEX ix_orders_order_status ON orders (order_status);
    CREATE INDEX ix_orders_create_time ON orders (create_time);
    CREATE INDEX ix_orders_phone ON orders (phone);
    CREATE TABLE task_monitor (task_id VARCHAR(64) PRIMARY KEY, status VARCHAR(32),
        last_heartbeat TIMESTAMP, command VARCHAR(32));
    INSERT INTO task_monitor VALUES ('douyin_order_sync', 'running', '2024-02-20 10:00:00', NULL);
";

/// Insert orders the way the seed wrote them: pay_amount as a float of fen, naive UTC times
/// (its container's zone), status as text, the decrypted phone, raw_data as received.
fn insert_as_the_seed_did(w: &World, orders: &[GeneratedOrder]) {
    let mut client = w.db.client();
    for o in orders {
        let j = &o.json;
        let naive = |t: Option<i64>| t.filter(|t| *t > 0).map(|t| format!("{t}"));
        let sku = j.get("sku_id").and_then(|v| v.as_str()).map(str::to_string);
        client
            .execute(
                "INSERT INTO orders VALUES ($1, $2, $3, $4, $5::text::float8, $6::text::integer,
                     to_timestamp($7::text::bigint) AT TIME ZONE 'UTC',
                     to_timestamp($8::text::bigint) AT TIME ZONE 'UTC',
                     to_timestamp($9::text::bigint) AT TIME ZONE 'UTC',
                     $10, $11, $12::text::jsonb, '2024-02-20 10:00:00')",
                &[
                    &j["order_id"].as_str().unwrap(),
                    &int(&j["order_status"]).map(|s| s.to_string()),
                    &sku,
                    &j.get("sku_name").and_then(|v| v.as_str()),
                    &int(&j["pay_amount"]).map(|f| f.to_string()),
                    &int(&j["count"]).map(|c| c.to_string()),
                    &naive(int(&j["pay_time"])),
                    &naive(int(&j["create_order_time"])),
                    &naive(int(&j["update_order_time"])),
                    &j.get("source_order_id").and_then(|v| v.as_str()),
                    &o.expected_phone,
                    &j.to_string(),
                ],
            )
            .unwrap();
    }
}

#[test]
fn the_python_tools_table_is_adopted_in_place_and_its_queries_still_run() {
    let w = World::new("adopt_seed");
    w.db.client().batch_execute(SEED_SCHEMA).unwrap();
    // February orders the seed stored (not served again), March orders the fake serves.
    let old: Vec<GeneratedOrder> = (0..2)
        .flat_map(|d| {
            support::fake_douyin::generate_day(
                &w.config.app_secret,
                ACCOUNT,
                MARCH_1 - (d + 1) * DAY,
                40,
                50 + d as u64,
            )
        })
        .collect();
    insert_as_the_seed_did(&w, &old);
    let new = w.seed_days(MARCH_1, 2, 60);
    // One old order lost its raw_data fields: its own columns must be kept (and counted).
    let stripped = old[3].json["order_id"].as_str().unwrap().to_string();
    w.db.client()
        .execute(
            "UPDATE orders SET raw_data = raw_data - 'pay_amount' - 'create_order_time' WHERE order_id = $1",
            &[&stripped],
        )
        .unwrap();

    let out = w.range_cmd("2024-03-01", "2024-03-02").run();
    out.expect_success();
    let adopted: Vec<&str> = out
        .log()
        .lines()
        .filter(|l| l.contains("adopted the Python tool's orders table"))
        .collect();
    assert_eq!(adopted.len(), 1, "{}", out.report());
    assert!(
        adopted[0].contains("80 rows")
            && adopted[0].contains("pay_amount 1")
            && adopted[0].contains("create_time 1"),
        "{}",
        adopted[0]
    );

    let table = w.table();
    assert_eq!(table.len(), 80 + 120);
    for o in old.iter().chain(&new) {
        let id = o.json["order_id"].as_str().unwrap();
        if id == stripped {
            continue;
        }
        assert_stored_exactly(o, &table[id]);
    }
    // Legacy rows got their account from raw_data (the generator writes a top-level account_id).
    for o in &old {
        let id = o.json["order_id"].as_str().unwrap();
        assert_eq!(
            table[id].account_id.as_deref(),
            Some(ACCOUNT),
            "account_id of {id}"
        );
    }
    // The stripped row kept its own values, in the new meaning.
    let s = &table[&stripped];
    let fen = int(&old[3].json["pay_amount"]).unwrap();
    assert_eq!(
        s.pay_amount.as_deref(),
        Some(format!("{}.{:02}", fen / 100, fen % 100).as_str())
    );
    assert_eq!(s.create_time, int(&old[3].json["create_order_time"]));
    // The seed's other table (not the shape of the Python tool's task_monitor) is left alone.
    assert_eq!(
        w.count("SELECT count(*) FROM task_monitor WHERE status = 'running'"),
        1
    );
    for query in SEED_QUERIES {
        w.db.client()
            .query(*query, &[])
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }

    let before = w.table();
    let again = w.range_cmd("2024-03-01", "2024-03-02").run();
    again.expect_success();
    assert!(!again.log().contains("adopted"), "{}", again.report());
    assert_eq!(w.table(), before, "a second run changed the table");
}

#[test]
fn a_table_that_is_already_ours_is_left_as_it_is() {
    let w = World::new("already_ours");
    w.seed_days(MARCH_1, 1, 30);
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    let before = w.table();
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    assert!(
        !out.log().contains("adopted") && !out.log().contains("applied migration"),
        "{}",
        out.report()
    );
    assert_eq!(w.table(), before);
    assert_eq!(
        w.count("SELECT count(*) FROM douyin_order_sync_migrations"),
        migration_count()
    );
}

#[test]
fn a_foreign_orders_table_is_refused_and_left_untouched() {
    let w = World::new("foreign_orders");
    w.db.client()
        .batch_execute("CREATE TABLE orders (id serial PRIMARY KEY, note text); INSERT INTO orders (note) VALUES ('mine');")
        .unwrap();
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_code(78);
    assert!(
        out.log()
            .contains("neither this tool's nor the Python tool's"),
        "{}",
        out.report()
    );
    assert_eq!(
        w.count("SELECT count(*) FROM orders WHERE note = 'mine'"),
        1
    );
    assert_eq!(
        w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'sync_checkpoints'"),
        0
    );
}

#[test]
fn the_python_tools_env_file_works_as_it_is() {
    let w = World::new("seed_env");
    let served = w.seed_days(MARCH_1, 2, 20);
    let cmd = support::Cmd::new();
    // The seed's .env.example shape: USE_CREATE_TIME=true, dates with '/', SYNC_INTERVAL, TASK_ID.
    std::fs::write(
        cmd.dir().join(".env"),
        format!(
            "DB_URL={}\nAPPID={}\nAppSecret={}\nACCOUNT_ID={ACCOUNT}\nAPI_BASE_URL={}\nSTART_DATE=2024/03/01\nEND_DATE=2024/03/02\nPAGE_SIZE=50\nUSE_CREATE_TIME=true\nGET_SECRET_NUMBER=false\nSYNC_INTERVAL=3600\nTASK_ID=douyin_order_sync\nSYNC_DAYS=1\n",
            w.db.url(),
            w.config.app_id,
            w.config.app_secret,
            w.fake.base_url()
        ),
    )
    .unwrap();
    let out = cmd.env("RETRY_BASE_MS", "10").run();
    out.expect_success();
    assert_eq!(w.table().len(), served.len());
    let notes: Vec<&str> = out
        .log()
        .lines()
        .filter(|l| l.contains("SYNC_INTERVAL"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.report());
    // TASK_ID is no longer ignored: it names the task_monitor row.
    assert!(notes[0].contains("scheduler") && !notes[0].contains("TASK_ID"));
    assert!(
        notes[0].contains("SYNC_INTERVAL belongs"),
        "{}",
        out.report()
    );
}

#[test]
fn a_dotenv_beside_the_binary_is_read_when_the_working_directory_has_none() {
    let w = World::new("env_beside_binary");
    let served = w.seed_days(MARCH_1, 1, 15);
    // The binary and its .env in one directory, run from another (as cron does from $HOME).
    let install = support::temp_dir("install");
    let binary = install.join("douyin-order-sync");
    std::fs::copy(support::BIN, &binary).unwrap();
    std::fs::write(
        install.join(".env"),
        format!(
            "DB_URL={}\nAPPID={}\nAppSecret={}\nACCOUNT_ID={ACCOUNT}\nAPI_BASE_URL={}\nSTART_DATE=2024-03-01\nEND_DATE=2024-03-01\n",
            w.db.url(),
            w.config.app_id,
            w.config.app_secret,
            w.fake.base_url()
        ),
    )
    .unwrap();
    let elsewhere = support::temp_dir("cwd");
    let out = std::process::Command::new(&binary)
        .current_dir(&elsewhere)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(w.table().len(), served.len(), "{log}");
    let _ = std::fs::remove_dir_all(&install);
    let _ = std::fs::remove_dir_all(&elsewhere);
}
