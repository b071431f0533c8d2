//! One test's world: a fake Douyin, a fresh database, and the binary configured for both.

use super::fake_douyin::{FakeConfig, FakeDouyin, GeneratedOrder};
use super::pg::TestDb;
use super::Cmd;
use std::collections::BTreeMap;

pub const ACCOUNT: &str = "7000000000000000001";
/// 2024-03-01 00:00:00 in Asia/Shanghai.
pub const MARCH_1: i64 = 1_709_222_400;
pub const DAY: i64 = 86_400;

pub struct World {
    pub fake: FakeDouyin,
    pub db: TestDb,
    pub config: FakeConfig,
}

impl World {
    pub fn new(name: &str) -> World {
        World::with(name, FakeConfig::default())
    }

    pub fn with(name: &str, config: FakeConfig) -> World {
        let fake = FakeDouyin::start(config.clone());
        World {
            fake,
            db: TestDb::new(name),
            config,
        }
    }

    /// The binary, configured for this world, fast retries, no range.
    pub fn cmd(&self) -> Cmd {
        Cmd::new().envs([
            ("DB_URL", self.db.url()),
            ("APPID", self.config.app_id.as_str()),
            ("AppSecret", self.config.app_secret.as_str()),
            ("ACCOUNT_ID", ACCOUNT),
            ("API_BASE_URL", self.fake.base_url().as_str()),
            ("RETRY_BASE_MS", "10"),
            ("RETRY_MAX_DELAY_MS", "100"),
            ("MAX_QPS", "500"),
        ])
    }

    /// The binary with an explicit range of whole days.
    pub fn range_cmd(&self, first_day: &str, last_day: &str) -> Cmd {
        self.cmd()
            .env("START_DATE", first_day)
            .env("END_DATE", last_day)
    }

    pub fn seed_days(
        &self,
        first_day_start: i64,
        days: usize,
        per_day: usize,
    ) -> Vec<GeneratedOrder> {
        (0..days)
            .flat_map(|d| {
                self.fake.seed_day(
                    ACCOUNT,
                    first_day_start + d as i64 * DAY,
                    per_day,
                    d as u64 + 1,
                )
            })
            .collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db.client().query_one(sql, &[]).unwrap().get(0)
    }

    /// End the run's database sessions named `application_name` (as a lost connection looks to
    /// the run); how many there were.
    pub fn terminate_sessions(&self, application_name: &str) -> i64 {
        self.db
            .client()
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE application_name = $1 AND datname = current_database()) t",
                &[&application_name],
            )
            .unwrap()
            .get(0)
    }

    /// Every row of `orders`, keyed by order id, each column as text (NULL as None) and
    /// raw_data parsed.
    pub fn table(&self) -> BTreeMap<String, StoredOrder> {
        let rows = self
            .db
            .client()
            .query(
                "SELECT order_id, order_status::text, sku_id, sku_name, pay_amount::text, count::text,
                        extract(epoch FROM pay_time)::bigint, extract(epoch FROM create_time)::bigint,
                        extract(epoch FROM update_time)::bigint, source_order_id, phone,
                        raw_data::text, sync_time::text, account_id
                   FROM orders",
                &[],
            )
            .unwrap();
        rows.iter()
            .map(|r| {
                let raw: String = r.get(11);
                (
                    r.get::<_, String>(0),
                    StoredOrder {
                        order_status: r.get(1),
                        sku_id: r.get(2),
                        sku_name: r.get(3),
                        pay_amount: r.get(4),
                        count: r.get(5),
                        pay_time: r.get(6),
                        create_time: r.get(7),
                        update_time: r.get(8),
                        source_order_id: r.get(9),
                        phone: r.get(10),
                        // Deeper than serde_json's recursion limit (128): kept as its text.
                        raw_data: serde_json::from_str(&raw)
                            .unwrap_or(serde_json::Value::String(raw)),
                        sync_time: r.get(12),
                        account_id: r.get(13),
                    },
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredOrder {
    pub order_status: Option<String>,
    pub sku_id: Option<String>,
    pub sku_name: Option<String>,
    pub pay_amount: Option<String>,
    pub count: Option<String>,
    pub pay_time: Option<i64>,
    pub create_time: Option<i64>,
    pub update_time: Option<i64>,
    pub source_order_id: Option<String>,
    pub phone: Option<String>,
    pub raw_data: serde_json::Value,
    pub sync_time: String,
    pub account_id: Option<String>,
}

/// A JSON number or numeric string as i64.
pub fn int(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A JSON string (not empty) or number as text.
pub fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Fen as the numeric(12,2) text PostgreSQL prints.
pub fn yuan(fen: Option<i64>) -> Option<String> {
    fen.map(|f| {
        format!(
            "{}{}.{:02}",
            if f < 0 { "-" } else { "" },
            f.abs() / 100,
            f.abs() % 100
        )
    })
}

/// The table holds exactly the served orders, each once, each field as served.
#[track_caller]
pub fn assert_exact(w: &World, served: &[GeneratedOrder]) {
    let table = w.table();
    assert_eq!(table.len(), served.len(), "row count");
    for order in served {
        let id = order.json["order_id"].as_str().unwrap();
        let stored = table
            .get(id)
            .unwrap_or_else(|| panic!("order {id} is missing"));
        assert_stored_exactly(order, stored);
    }
}

/// Check every column of the stored order against what the fake served, independently of the
/// code under test.
#[track_caller]
pub fn assert_stored_exactly(served: &GeneratedOrder, stored: &StoredOrder) {
    let o = &served.json;
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(stored.raw_data, *o, "raw_data of {id}");
    assert_eq!(
        stored.order_status,
        int(&o["order_status"]).map(|s| s.to_string()),
        "status of {id}"
    );
    let sku =
        text(o.get("sku_id")).or_else(|| text(o["products"].get(0).and_then(|p| p.get("sku_id"))));
    assert_eq!(stored.sku_id, sku, "sku_id of {id}");
    let sku_name = text(o.get("sku_name"))
        .or_else(|| text(o["products"].get(0).and_then(|p| p.get("sku_name"))));
    assert_eq!(stored.sku_name, sku_name, "sku_name of {id}");
    let fen = int(&o["pay_amount"]).unwrap();
    assert_eq!(
        stored.pay_amount.as_deref(),
        Some(format!("{}.{:02}", fen / 100, fen % 100).as_str()),
        "pay_amount of {id}"
    );
    assert_eq!(
        stored.count,
        int(&o["count"]).map(|c| c.to_string()),
        "count of {id}"
    );
    let pay_time = int(&o["pay_time"]).filter(|t| *t != 0);
    assert_eq!(stored.pay_time, pay_time, "pay_time of {id}");
    assert_eq!(
        stored.create_time,
        int(&o["create_order_time"]),
        "create_time of {id}"
    );
    assert_eq!(
        stored.update_time,
        int(&o["update_order_time"]),
        "update_time of {id}"
    );
    assert_eq!(
        stored.source_order_id,
        text(o.get("source_order_id")),
        "source_order_id of {id}"
    );
    assert_eq!(stored.phone, served.expected_phone, "phone of {id}");
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Today's 00:00:00 in Asia/Shanghai.
pub fn local_midnight_now() -> i64 {
    let t = now() + 8 * 3600;
    t - t.rem_euclid(DAY) - 8 * 3600
}

/// The four queries of the Python tool's README, verbatim: they must run unchanged.
pub const SEED_QUERIES: &[&str] = &[
    "SELECT \n    order_id, \n    order_status,\n    sku_name, \n    pay_amount, \n    pay_time, \n    phone \nFROM orders \nORDER BY pay_time DESC \nLIMIT 10;",
    "SELECT * FROM orders WHERE phone = '138****0000';",
    "SELECT \n    DATE(pay_time) as date,\n    COUNT(*) as order_count,\n    SUM(pay_amount) as total_amount\nFROM orders\nGROUP BY DATE(pay_time)\nORDER BY date DESC;",
    "SELECT \n    sku_id,\n    sku_name,\n    COUNT(*) as order_count,\n    SUM(pay_amount) as total_amount\nFROM orders\nGROUP BY sku_id, sku_name\nORDER BY order_count DESC;",
];

/// How many migrations there are: the files `sql/NNNN_*.sql` (one row each in
/// `douyin_order_sync_migrations` once applied).
pub fn migration_count() -> i64 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .filter(|e| {
            let name = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            name.len() > 9
                && name[..4].bytes().all(|b| b.is_ascii_digit())
                && name.as_bytes()[4] == b'_'
                && name.ends_with(".sql")
        })
        .count() as i64
}
