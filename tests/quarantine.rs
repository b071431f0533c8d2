//! One record must not block the rest, and nothing is silently lossy: records that cannot be
//! stored as they are land in `rejected_records` with their day, the rest of the day commits, the
//! run exits 0 and says so; the real binary against the fake Douyin (serving adversarial JSON
//! verbatim) and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::setup::{assert_stored_exactly, World, ACCOUNT, MARCH_1};

/// A marker put in every adversarial record: customer data that must never reach the log.
const SECRET: &str = "客户13800138000";

/// (key in the fake, text served verbatim, order id expected in rejected_records, reason part).
fn adversarial() -> Vec<(&'static str, String, Option<&'static str>, &'static str)> {
    let t = MARCH_1 + 3600;
    let deep = |n: usize| {
        format!(
            r#"{{"order_id":"9100000000000000013","sku_name":"{SECRET}","update_order_time":{t},"x":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let order = |id: &str, extra: &str| {
        format!(r#"{{"order_id":"{id}","sku_name":"{SECRET}","update_order_time":{t}{extra}}}"#)
    };
    vec![
        (
            "v01",
            format!(r#"{{"sku_name":"{SECRET}","update_order_time":{t}}}"#),
            None,
            "no order_id (absent or null)",
        ),
        (
            "v02",
            format!(r#"{{"order_id":null,"sku_name":"{SECRET}","pay_amount":1}}"#),
            None,
            "no order_id (absent or null)",
        ),
        (
            "v03",
            format!(r#"{{"order_id":{{"id":1}},"sku_name":"{SECRET}"}}"#),
            None,
            "order_id is an object, not a string or a number",
        ),
        (
            "v04",
            "[1,2]".to_string(),
            None,
            "the record is a list, not an object",
        ),
        (
            "v05",
            format!(r#"{{"order_id":"9100000000000000005","sku_name":"{SECRET}","sku_name":"x"}}"#),
            Some("9100000000000000005"),
            "the key \"sku_name\" is repeated in one object",
        ),
        (
            "v06",
            deep(100_000),
            Some("9100000000000000013"),
            "nested deeper than 512 levels (in x)",
        ),
        (
            "v07",
            order("9100000000000000007", r#","x":{"y":"\ud800"}"#),
            Some("9100000000000000007"),
            "lone surrogate",
        ),
        (
            "v08",
            order(
                "9100000000000000008",
                r#","source_order_id":"bad\u0000name""#,
            ),
            Some("9100000000000000008"),
            "U+0000 (NUL), which PostgreSQL cannot store (in source_order_id)",
        ),
        (
            "v09",
            order("9100000000000000009", r#","pay_amount":1000000000000"#),
            Some("9100000000000000009"),
            "pay_amount is beyond the numeric(12, 2) column",
        ),
        (
            "v10",
            order("9100000000000000010", r#","count":2147483648"#),
            Some("9100000000000000010"),
            "count is beyond the integer column",
        ),
        (
            "v11",
            order("9100000000000000011", r#","order_status":"2147483648""#),
            Some("9100000000000000011"),
            "order_status is beyond the integer column",
        ),
        (
            "v12",
            order("9100000000000000012", r#","pay_time":10000000000000"#),
            Some("9100000000000000012"),
            "pay_time is beyond the year 2100 as epoch seconds (milliseconds?)",
        ),
        (
            "v14",
            format!(
                r#"{{"order_id":"{}","sku_name":"{SECRET}"}}"#,
                "8".repeat(3000)
            ),
            None,
            "order_id is longer than 1024 bytes",
        ),
        (
            "v15",
            order("9100000000000000015", r#","pay_amount":429.5"#),
            Some("9100000000000000015"),
            "pay_amount is not a whole number",
        ),
        (
            "v16",
            order("9100000000000000016", r#","pay_amount":true"#),
            Some("9100000000000000016"),
            "pay_amount is true or false, not a number",
        ),
        (
            "v17",
            order("9100000000000000017", r#","pay_time":1709226000000"#),
            Some("9100000000000000017"),
            "pay_time is beyond the year 2100 as epoch seconds (milliseconds?)",
        ),
        (
            "v18",
            order(
                "9100000000000000018",
                r#","contacts":{"phone":"138****8000","phone_encrypt":"abc"}"#,
            ),
            Some("9100000000000000018"),
            "contacts is an object, not a list",
        ),
        (
            "v19",
            order("9100000000000000019", r#","remark":"a\u0000b""#),
            Some("9100000000000000019"),
            "U+0000 (NUL), which PostgreSQL cannot store (in remark)",
        ),
        (
            "v20",
            format!(
                r#"{{"order_id":"9100000000000000020","order_id":"9100000000000000021","sku_name":"{SECRET}"}}"#
            ),
            None,
            "the key \"order_id\" is repeated in one object",
        ),
    ]
}

#[test]
fn records_that_cannot_be_stored_are_quarantined_and_the_rest_of_the_day_commits() {
    let w = World::new("quarantine_every_case");
    let served = w.fake.seed_day(ACCOUNT, MARCH_1, 30, 7);
    let cases = adversarial();
    for (i, (key, text, _, _)) in cases.iter().enumerate() {
        w.fake.add_verbatim(key, MARCH_1 + 3600 + i as i64, text);
    }
    // Stored exactly: nesting 200 deep, and the six characters \u0000 (an escaped backslash).
    let t = MARCH_1 + 7200;
    let deep_200 = format!(
        r#"{{"order_id":"9200000000000000001","update_order_time":{t},"x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let backslash_u =
        format!(r#"{{"order_id":"9200000000000000002","update_order_time":{t},"note":"\\u0000"}}"#);
    w.fake.add_verbatim("s1", t, &deep_200);
    w.fake.add_verbatim("s2", t, &backslash_u);

    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    let log = out.log();

    // The rest of the day, exactly.
    let table = w.table();
    for order in &served {
        assert_stored_exactly(order, &table[order.json["order_id"].as_str().unwrap()]);
    }
    assert_eq!(table.len(), served.len() + 2, "{}", out.report());
    let mut db = w.db.client();
    let exact: bool = db
        .query_one(
            "SELECT (SELECT raw_data FROM orders WHERE order_id = '9200000000000000001') = $1::text::jsonb
                AND (SELECT raw_data ->> 'note' FROM orders WHERE order_id = '9200000000000000002') = '\\u0000'",
            &[&deep_200],
        )
        .unwrap()
        .get(0);
    assert!(exact, "raw_data was rewritten\n{}", out.report());

    // Every adversarial record quarantined as received, with its id, its reason and its day.
    let rows = db
        .query(
            "SELECT record_id, reason, record, stream, account_id, day::text FROM rejected_records",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), cases.len(), "{}", out.report());
    for (key, text, id, reason) in &cases {
        let row = rows
            .iter()
            .find(|r| r.get::<_, String>(2) == *text)
            .unwrap_or_else(|| panic!("{key} not quarantined as received\n{}", out.report()));
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), *id, "{key}");
        let why: String = row.get(1);
        assert!(why.contains(reason), "{key}: {why}");
        assert_eq!(row.get::<_, String>(3), "orders");
        assert_eq!(row.get::<_, String>(4), ACCOUNT);
        assert_eq!(row.get::<_, String>(5), "2024-03-01");
        // A warning names the day, the order and the reason.
        let named = match id {
            Some(id) => format!("order {id} quarantined in rejected_records: {why}"),
            None => {
                format!("a record without a usable order_id quarantined in rejected_records: {why}")
            }
        };
        assert!(
            log.lines()
                .any(|l| l.contains("2024-03-01") && l.contains("WARN") && l.contains(&named)),
            "no warning «{named}»\n{}",
            out.report()
        );
    }

    // Visible in the day line, the summary, sync_runs; never the record's contents; no error.
    let n = cases.len();
    assert!(
        log.contains(&format!("{n} quarantined)")),
        "{}",
        out.report()
    );
    assert!(
        log.contains(&format!(
            "done: 1 day, {} orders ({} new, 0 changed, {n} records quarantined in rejected_records)",
            served.len() + 2,
            served.len() + 2
        )),
        "{}",
        out.report()
    );
    assert!(
        !log.contains(SECRET),
        "a record's contents were logged\n{}",
        out.report()
    );
    assert!(!log.contains("ERROR"), "{}", out.report());
    let run = db
        .query_one("SELECT rejected, exit_code, error FROM sync_runs", &[])
        .unwrap();
    assert_eq!(run.get::<_, Option<i64>>(0), Some(n as i64));
    assert_eq!(run.get::<_, Option<i32>>(1), Some(0));
    assert_eq!(run.get::<_, Option<String>>(2), None);
    let done: bool = db
        .query_one("SELECT range_done FROM sync_checkpoints", &[])
        .unwrap()
        .get(0);
    assert!(done, "the day's checkpoint did not advance");
}

#[test]
fn a_record_seen_again_keeps_one_row_and_leaves_quarantine_once_well_formed() {
    let w = World::new("quarantine_leaves");
    let t = MARCH_1 + 600;
    let bad = format!(
        r#"{{"order_id":"9300000000000000001","update_order_time":{t},"pay_amount":429.5}}"#
    );
    let no_id = format!(r#"{{"update_order_time":{t},"pay_amount":1}}"#);
    w.fake.add_verbatim("bad", t, &bad);
    w.fake.add_verbatim("noid", t + 1, &no_id);
    w.fake.seed_day(ACCOUNT, MARCH_1, 5, 3);
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    let seen = |w: &World| -> Vec<(Option<String>, String, String)> {
        w.db.client()
            .query(
                "SELECT record_id, first_seen::text, last_seen::text FROM rejected_records ORDER BY record_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let first = seen(&w);
    assert_eq!(first.len(), 2);

    // Seen again: the same two rows, first_seen kept, last_seen moved.
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    let second = seen(&w);
    assert_eq!(second.len(), 2, "{}", out.report());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1));
        assert!(b.2 > a.2, "last_seen did not move: {a:?} {b:?}");
    }

    // Well-formed now: stored, and out of quarantine (the record without an id stays).
    let good = format!(
        r#"{{"order_id":"9300000000000000001","update_order_time":{t},"pay_amount":42950}}"#
    );
    w.fake.add_verbatim("bad", t, &good);
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    let third = seen(&w);
    assert_eq!(third.len(), 1, "{}", out.report());
    assert_eq!(third[0].0, None);
    let amount: String =
        w.db.client()
            .query_one(
                "SELECT pay_amount::text FROM orders WHERE order_id = '9300000000000000001'",
                &[],
            )
            .unwrap()
            .get(0);
    assert_eq!(amount, "429.50");
}

#[test]
fn the_same_order_twice_in_a_page_is_accepted_after_the_refetches() {
    let w = World::new("quarantine_stable_duplicate");
    let served = w.fake.seed_day(ACCOUNT, MARCH_1, 12, 5);
    let t = MARCH_1 + 900;
    let twice =
        format!(r#"{{"order_id":"9400000000000000001","update_order_time":{t},"pay_amount":100}}"#);
    w.fake.add_verbatim("twice-a", t, &twice);
    w.fake.add_verbatim("twice-b", t, &twice);
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    assert!(
        out.log().contains(
            "came back the same way 3 times (13 distinct orders in 14 records, total says 14)"
        ),
        "{}",
        out.report()
    );
    let table = w.table();
    assert_eq!(table.len(), served.len() + 1);
    assert_eq!(
        table["9400000000000000001"].pay_amount.as_deref(),
        Some("1.00")
    );
    // Three answers, not six tries and 75.
    let queries = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("order/query"))
        .count();
    assert_eq!(queries, 3, "{}", out.report());
}

#[test]
fn ids_that_differ_only_in_their_writing_are_different_orders() {
    let w = World::new("quarantine_id_writing");
    let t = MARCH_1 + 60;
    for (key, id) in [("a", r#""+5""#), ("b", r#""05""#), ("c", "5")] {
        w.fake.add_verbatim(
            key,
            t,
            &format!(r#"{{"order_id":{id},"update_order_time":{t}}}"#),
        );
    }
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_success();
    assert!(!out.log().contains("again"), "refetched\n{}", out.report());
    let ids: Vec<String> = w.table().into_keys().collect();
    assert_eq!(ids, ["+5", "05", "5"]);
}

#[test]
fn a_page_of_records_of_every_shape_still_yields_its_orders() {
    let w = World::new("quarantine_raw_page");
    let t = MARCH_1 + 60;
    let body = format!(
        r#"{{"data":{{"orders":[{{"order_id":"9500000000000000001","update_order_time":{t},"pay_amount":"100"}},[1,2],"{SECRET}",null,5,{{}},{{"order_id":"9500000000000000002","x":{}1{}}}],"page":{{"page_num":1,"page_size":100,"total":7}},"error_code":0,"description":""}},"extra":{{"error_code":0,"description":"","logid":"raw"}}}}"#,
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    w.fake
        .set_raw_page(Some(Box::new(move |_| Some(body.clone()))));
    let dir = support::temp_dir("quarantine_metrics");
    let metrics = dir.join("sync.prom");
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("METRICS_FILE", metrics.to_str().unwrap())
        .run();
    out.expect_success();
    // The count reaches the metrics too.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("douyin_order_sync_rejected_records{")
                && l.contains(&format!("account=\"{ACCOUNT}\""))
                && l.ends_with(" 6")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let table = w.table();
    assert_eq!(table.keys().collect::<Vec<_>>(), ["9500000000000000001"]);
    assert_eq!(
        table["9500000000000000001"].pay_amount.as_deref(),
        Some("1.00")
    );
    let reasons: Vec<String> =
        w.db.client()
            .query("SELECT reason FROM rejected_records ORDER BY reason", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(
        reasons,
        [
            "nested deeper than 512 levels (in x)",
            "no order_id (absent or null)",
            "the record is a list, not an object",
            "the record is a number, not an object",
            "the record is a string, not an object",
            "the record is null, not an object",
        ],
        "{}",
        out.report()
    );
    assert!(!out.log().contains(SECRET), "{}", out.report());
}

#[test]
fn a_slice_that_stays_short_of_its_total_is_not_accepted() {
    let w = World::new("quarantine_short_slice");
    let t = MARCH_1 + 60;
    let body = format!(
        r#"{{"data":{{"orders":[{{"order_id":"9600000000000000001","update_order_time":{t}}},{{"order_id":"9600000000000000001","update_order_time":{t}}}],"page":{{"page_num":1,"page_size":100,"total":3}},"error_code":0,"description":""}},"extra":{{"error_code":0,"description":"","logid":"raw"}}}}"#
    );
    w.fake
        .set_raw_page(Some(Box::new(move |_| Some(body.clone()))));
    let out = w.range_cmd("2024-03-01", "2024-03-01").run();
    out.expect_code(75);
    assert!(
        out.log()
            .contains("came back inconsistent 6 times (1 distinct orders in 2 records received, total says 3)"),
        "{}",
        out.report()
    );
    assert_eq!(w.count("SELECT count(*) FROM orders"), 0);
}
