//! Streams end to end: verifications and the orders' coupons, the real binary against the fake
//! Douyin and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::fake_douyin::{generate_verifications, Faults, ORDER_QUERY_PATH, VERIFY_PATH};
use support::setup::{int, text, yuan, World, ACCOUNT, DAY, MARCH_1};
use support::{SIGINT, SIGTERM};

/// The columns of a stored verification, as text (NULL as None).
#[derive(Debug, PartialEq)]
struct StoredVerification {
    account_id: Option<String>,
    certificate_id: Option<String>,
    code: Option<String>,
    order_id: Option<String>,
    verify_time: Option<i64>,
    status: Option<String>,
    cancel_time: Option<i64>,
    verify_type: Option<String>,
    can_cancel: Option<bool>,
    original_amount: Option<String>,
    pay_amount: Option<String>,
    merchant_ticket_amount: Option<String>,
    sku_id: Option<String>,
    sku_title: Option<String>,
    poi_id: Option<String>,
    raw_data: Value,
}

fn verifications(w: &World) -> BTreeMap<String, StoredVerification> {
    w.db.client()
        .query(
            "SELECT verify_id, account_id, certificate_id, code, order_id,
                    extract(epoch FROM verify_time)::bigint, status::text,
                    extract(epoch FROM cancel_time)::bigint, verify_type::text, can_cancel,
                    original_amount::text, pay_amount::text, merchant_ticket_amount::text,
                    sku_id, sku_title, poi_id, raw_data::text
               FROM verifications",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let raw: String = r.get(16);
            (
                r.get(0),
                StoredVerification {
                    account_id: r.get(1),
                    certificate_id: r.get(2),
                    code: r.get(3),
                    order_id: r.get(4),
                    verify_time: r.get(5),
                    status: r.get(6),
                    cancel_time: r.get(7),
                    verify_type: r.get(8),
                    can_cancel: r.get(9),
                    original_amount: r.get(10),
                    pay_amount: r.get(11),
                    merchant_ticket_amount: r.get(12),
                    sku_id: r.get(13),
                    sku_title: r.get(14),
                    poi_id: r.get(15),
                    raw_data: serde_json::from_str(&raw).unwrap(),
                },
            )
        })
        .collect()
}

/// What the table must hold for a served record, derived here independently of the job.
fn expected(record: &Value) -> StoredVerification {
    let amount = |k: &str| record["amount"].get(k).and_then(int);
    StoredVerification {
        account_id: Some(ACCOUNT.to_string()),
        certificate_id: text(record.get("certificate_id")),
        code: text(record.get("code")),
        order_id: text(record.get("order_id")),
        verify_time: record.get("verify_time").and_then(int),
        status: record.get("status").and_then(int).map(|s| s.to_string()),
        cancel_time: record.get("cancel_time").and_then(int).filter(|t| *t != 0),
        verify_type: record
            .get("verify_type")
            .and_then(int)
            .map(|s| s.to_string()),
        can_cancel: record.get("can_cancel").and_then(Value::as_bool),
        original_amount: yuan(amount("original_amount")),
        pay_amount: yuan(amount("pay_amount")),
        merchant_ticket_amount: yuan(amount("merchant_ticket_amount")),
        sku_id: text(record["sku"].get("sku_id")),
        sku_title: text(record["sku"].get("title")),
        poi_id: text(record.get("verify_poi_id")),
        raw_data: record.clone(),
    }
}

/// The table holds exactly the served records, each once, field by field.
#[track_caller]
fn assert_verifications_exact(w: &World, served: &[Value]) {
    let table = verifications(w);
    assert_eq!(table.len(), served.len(), "row count");
    for record in served {
        let id = record["verify_id"].as_str().unwrap();
        let stored = table
            .get(id)
            .unwrap_or_else(|| panic!("verification {id} is missing"));
        assert_eq!(stored, &expected(record), "verification {id}");
    }
}

fn seed_verifications(w: &World, first_day: i64, days: usize, per_day: usize) -> Vec<Value> {
    let records = generate_verifications(ACCOUNT, first_day, days, per_day, 7);
    w.fake.add_verifications(records.clone());
    records
}

#[test]
fn every_verification_of_a_backfill_lands_exactly_field_by_field() {
    let w = World::new("verify_backfill");
    // 47 a day: two full pages of 20 and a short one.
    let served = seed_verifications(&w, MARCH_1, 3, 47);
    // A day outside the range is neither asked for nor stored.
    // (From 01:00: a record at exactly 00:00:00 is asked for by both days, as the end bound of
    // a day is the next one's start; see README.)
    w.fake.add_verifications(generate_verifications(
        ACCOUNT,
        MARCH_1 + 3 * DAY + 3600,
        1,
        5,
        99,
    ));
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "verifications")
        .run();
    out.expect_success();
    assert_verifications_exact(&w, &served);
    // Orders were not asked for: the stream list decides.
    let requests = w.fake.requests();
    assert!(requests.iter().all(|r| r.path != ORDER_QUERY_PATH));
    let pages: Vec<_> = requests.iter().filter(|r| r.path == VERIFY_PATH).collect();
    assert_eq!(pages.len(), 9, "three pages a day\n{}", out.report());
    for p in &pages {
        assert_eq!(p.params["size"], "20");
        assert_eq!(p.params["account_id"], ACCOUNT);
    }
    assert_eq!(
        pages.iter().filter(|p| p.params["cursor"] == "0").count(),
        3
    );
    for date in ["2024-03-01", "2024-03-02", "2024-03-03"] {
        assert!(
            out.log().lines().any(|l| l.contains("verifications")
                && l.contains(date)
                && l.contains("47 verifications")),
            "{}",
            out.report()
        );
    }
    assert!(
        out.log().contains("verifications: 3 days, 141"),
        "{}",
        out.report()
    );
    // Each day its own checkpoint row under the stream's name; run history per stream.
    assert_eq!(
        w.count(
            "SELECT count(*) FROM sync_checkpoints WHERE stream = 'verifications' AND range_done"
        ),
        1
    );
    assert_eq!(
        w.count("SELECT count(*) FROM sync_checkpoints WHERE stream = 'orders'"),
        0
    );
    assert_eq!(
        w.count("SELECT (stream_records->>'verifications')::bigint FROM sync_runs"),
        141
    );
    // A rerun changes nothing.
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "verifications")
        .run();
    out.expect_success();
    assert!(out.log().contains("(0 new, 0 changed)"), "{}", out.report());
    assert_verifications_exact(&w, &served);
}

/// The coupons of every stored order, as (order_id, order_item_id) → columns as text.
fn coupons(w: &World) -> BTreeMap<(String, String), Vec<Option<String>>> {
    w.db.client()
        .query(
            "SELECT order_id, order_item_id, account_id, certificate_id, item_status::text,
                    extract(epoch FROM item_update_time)::bigint::text, refund_amount::text,
                    extract(epoch FROM refund_time)::bigint::text, raw_data::text
               FROM order_certificates",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                (2..9).map(|i| r.get::<_, Option<String>>(i)).collect(),
            )
        })
        .collect()
}

/// What order_certificates must hold for these orders, derived from their certificate[].
fn expected_coupons(orders: &[Value]) -> BTreeMap<(String, String), Vec<Option<String>>> {
    let mut out = BTreeMap::new();
    for o in orders {
        let id = o["order_id"].as_str().unwrap().to_string();
        for c in o["certificate"].as_array().into_iter().flatten() {
            let item = text(c.get("order_item_id")).unwrap();
            let raw: Value = c.clone();
            out.insert(
                (id.clone(), item),
                vec![
                    Some(ACCOUNT.to_string()),
                    text(c.get("certificate_id")),
                    c.get("item_status").and_then(int).map(|s| s.to_string()),
                    c.get("item_update_time")
                        .and_then(int)
                        .filter(|t| *t != 0)
                        .map(|t| t.to_string()),
                    yuan(c.get("refund_amount").and_then(int)),
                    c.get("refund_time")
                        .and_then(int)
                        .filter(|t| *t != 0)
                        .map(|t| t.to_string()),
                    Some(raw.to_string()),
                ],
            );
        }
    }
    out
}

/// jsonb prints its own way: compare raw_data as parsed JSON.
fn normalise(
    mut m: BTreeMap<(String, String), Vec<Option<String>>>,
) -> BTreeMap<(String, String), Vec<Option<Value>>> {
    m.iter_mut()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter_mut()
                    .enumerate()
                    .map(|(i, x)| {
                        x.take().map(|s| {
                            if i == 6 {
                                serde_json::from_str(&s).unwrap()
                            } else {
                                Value::String(s)
                            }
                        })
                    })
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn coupons_match_the_orders_certificates_exactly_including_replaced_ones() {
    let w = World::new("coupons_exact");
    w.seed_days(MARCH_1, 2, 60);
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_success();
    assert_eq!(
        normalise(coupons(&w)),
        normalise(expected_coupons(&w.fake.orders()))
    );
    assert!(w.count("SELECT count(*) FROM order_certificates") > 60);
    // An order changes: one coupon refunded (fen, a time, a certificate id now ""), one gone.
    let victim = w
        .fake
        .orders()
        .into_iter()
        .find(|o| o["certificate"].as_array().is_some_and(|c| c.len() >= 2))
        .expect("an order with two coupons");
    let id = victim["order_id"].as_str().unwrap().to_string();
    let gone = victim["certificate"][1]["order_item_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.fake.update_order(&id, |o| {
        let update = int(&o["update_order_time"]).unwrap() + 60;
        o["update_order_time"] = json!(update);
        let certs = o["certificate"].as_array_mut().unwrap();
        certs.remove(1);
        certs[0]["item_status"] = json!("301");
        certs[0]["refund_amount"] = json!(1234);
        certs[0]["refund_time"] = json!(update);
        certs[0]["certificate_id"] = json!("");
    });
    w.range_cmd("2024-03-01", "2024-03-02")
        .run()
        .expect_success();
    assert_eq!(
        normalise(coupons(&w)),
        normalise(expected_coupons(&w.fake.orders()))
    );
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM order_certificates WHERE order_id = '{id}' AND order_item_id = '{gone}'"
        )),
        0,
        "the coupon no longer in the answer is still stored"
    );
    let refunded: (Option<String>, String, String) = {
        let r = w
            .db
            .client()
            .query_one(
                &format!("SELECT certificate_id, refund_amount::text, item_status::text FROM order_certificates WHERE order_id = '{id}'"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(refunded, (None, "12.34".to_string(), "301".to_string()));
}

#[test]
fn a_rerun_over_unchanged_orders_leaves_their_coupons_untouched() {
    let w = World::new("coupons_untouched");
    w.seed_days(MARCH_1, 1, 40);
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    // The row versions: a coupon deleted and inserted again gets a new transaction id.
    let versions = |w: &World| -> String {
        w.db.client()
            .query_one(
                "SELECT string_agg(order_id || '/' || order_item_id || '@' || xmin::text, ','
                                   ORDER BY order_id, order_item_id)
                   FROM order_certificates",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = versions(&w);
    assert!(before.matches('@').count() > 40, "{before}");
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    assert_eq!(
        versions(&w),
        before,
        "unchanged orders' coupons were rewritten"
    );
}

#[test]
fn the_upgrade_fills_coupons_from_stored_orders_and_keeps_the_order_checkpoint() {
    let w = World::new("coupons_upgrade");
    w.seed_days(MARCH_1, 1, 30);
    // An incremental history before the upgrade: run, then undo what migration 0006 did
    // (it is written to run again safely) as if the database were older.
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    let mut c = w.db.client();
    c.batch_execute(&format!(
        "INSERT INTO sync_checkpoints (stream, account_id, time_field, status_filter, mode_key, synced_until)
              VALUES ('orders', '7000000000000000001', 'update_time', '', 'incremental', to_timestamp({}));
         DROP VIEW order_reconciliation; -- 0007's, built on order_certificates
         DROP TABLE order_certificates;
         ALTER TABLE sync_checkpoints DROP CONSTRAINT sync_checkpoints_pkey;
         ALTER TABLE sync_checkpoints DROP COLUMN stream;
         ALTER TABLE sync_checkpoints ADD PRIMARY KEY (account_id, time_field, status_filter, mode_key);
         DELETE FROM douyin_order_sync_migrations WHERE version IN (6, 7);",
        local_day_start(3)
    ))
    .unwrap();
    // A run of another stream upgrades the database without touching orders.
    w.range_cmd("2024-03-01", "2024-03-01")
        .env("STREAMS", "verifications")
        .run()
        .expect_success();
    assert_eq!(
        normalise(coupons(&w)),
        normalise(expected_coupons(&w.fake.orders()))
    );
    assert_eq!(
        w.count("SELECT count(*) FROM sync_checkpoints WHERE stream = 'orders' AND mode_key = 'incremental'"),
        1
    );
    // The incremental mode resumes from the order checkpoint made before the upgrade.
    let out = w.cmd().run();
    out.expect_success();
    // From 3 days ago minus the 10-minute overlap: 5 day slices (SYNC_DAYS=1 would make 2).
    assert!(
        out.log().contains("(5 days)"),
        "the incremental run did not start at the old checkpoint minus the overlap\n{}",
        out.report()
    );
}

#[test]
fn a_revocation_is_picked_up_by_a_range_rerun() {
    let w = World::new("revoke_range");
    let served = seed_verifications(&w, MARCH_1, 2, 30);
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-02")
            .env("STREAMS", "verifications")
    };
    cmd().run().expect_success();
    let id = served[7]["verify_id"].as_str().unwrap();
    let cancel = MARCH_1 + 3 * DAY;
    assert!(w.fake.revoke_verification(id, cancel));
    let out = cmd().run();
    out.expect_success();
    assert!(out.log().contains("(0 new, 1 changed)"), "{}", out.report());
    assert_verifications_exact(&w, &w.fake.verifications());
    let stored = &verifications(&w)[id];
    assert_eq!(stored.status.as_deref(), Some("2"));
    assert_eq!(stored.cancel_time, Some(cancel));
    assert_eq!(stored.can_cancel, Some(false));
}

/// Local midnight of the day `days_ago` days before today (Asia/Shanghai).
fn local_day_start(days_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now + 8 * 3600).div_euclid(DAY) * DAY - 8 * 3600 - days_ago * DAY
}

#[test]
fn a_revocation_is_picked_up_by_the_incremental_mode_within_its_lookback() {
    let w = World::new("revoke_incremental");
    // Records 2 days ago; today's are none (a verification in the future would be odd).
    let served = seed_verifications(&w, local_day_start(2), 1, 10);
    let cmd = || {
        w.cmd()
            .env("STREAMS", "verifications")
            .env("SYNC_DAYS", "3")
    };
    cmd().run().expect_success();
    assert_verifications_exact(&w, &served);
    let id = served[3]["verify_id"].as_str().unwrap();
    // Without a lookback, the next incremental run reads only since its checkpoint and misses it.
    assert!(w.fake.revoke_verification(id, local_day_start(1)));
    cmd()
        .env("VERIFY_LOOKBACK_DAYS", "0")
        .run()
        .expect_success();
    assert_eq!(verifications(&w)[id].status.as_deref(), Some("1"));
    // The default lookback (3 days) reads those days again and catches it.
    let out = cmd().run();
    out.expect_success();
    assert_eq!(
        verifications(&w)[id].status.as_deref(),
        Some("2"),
        "{}",
        out.report()
    );
    assert_verifications_exact(&w, &w.fake.verifications());
}

#[test]
fn faults_on_the_verification_endpoint_lose_nothing() {
    let w = World::new("verify_faults");
    let served = seed_verifications(&w, MARCH_1, 3, 45);
    w.fake.set_faults(Faults {
        busy_rate: 0.1,
        http_502_rate: 0.1,
        cut_body_rate: 0.1,
        expire_token_after: Some(7),
        verify_qps_limit: Some(4),
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "verifications")
        .env("VERIFY_QPS", "8")
        .env("RETRY_MAX_TRIES", "40")
        .run();
    out.expect_success();
    assert_verifications_exact(&w, &served);
    let outcomes: Vec<String> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == VERIFY_PATH)
        .map(|r| r.outcome.clone())
        .collect();
    for kind in ["busy", "http 502", "cut", "expired", "rate 2119003"] {
        assert!(
            outcomes.iter().any(|o| o.starts_with(kind)),
            "no {kind} answer was injected: {outcomes:?}"
        );
    }
}

#[test]
fn the_busiest_second_of_each_endpoint_stays_within_its_own_budget() {
    let w = World::new("budgets");
    w.seed_days(MARCH_1, 2, 100);
    let served = seed_verifications(&w, MARCH_1, 2, 100);
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("STREAMS", "all")
        .env("PAGE_SIZE", "10")
        .env("MAX_QPS", "6")
        .env("VERIFY_QPS", "9")
        .run();
    out.expect_success();
    assert_verifications_exact(&w, &served);
    let orders = w.fake.busiest_paced_second(Some(ORDER_QUERY_PATH));
    let verify = w.fake.busiest_paced_second(Some(VERIFY_PATH));
    assert!(orders <= 6, "order queries: {orders} in one second");
    assert!(verify <= 9, "verification queries: {verify} in one second");
    // Side by side, not one after the other: both endpoints busy in the same seconds.
    let requests = w.fake.requests();
    let last_order = requests
        .iter()
        .filter(|r| r.path == ORDER_QUERY_PATH)
        .map(|r| r.at_ms)
        .max()
        .unwrap();
    let first_verify = requests
        .iter()
        .filter(|r| r.path == VERIFY_PATH)
        .map(|r| r.at_ms)
        .min()
        .unwrap();
    assert!(
        first_verify < last_order,
        "verifications started only after orders"
    );
}

#[test]
fn a_stream_that_keeps_failing_exits_75_while_the_other_streams_days_commit() {
    let w = World::new("stream_fails");
    let orders = w.seed_days(MARCH_1, 3, 40);
    seed_verifications(&w, MARCH_1, 3, 10);
    w.fake.set_faults(Faults {
        verify_error: Some(2119002),
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "orders,verifications")
        .env("RETRY_MAX_TRIES", "3")
        .run();
    out.expect_code(75);
    assert_eq!(w.count("SELECT count(*) FROM orders"), orders.len() as i64);
    assert_eq!(w.count("SELECT count(*) FROM verifications"), 0);
    assert!(
        out.log().contains("stream verifications failed"),
        "{}",
        out.report()
    );
    assert_eq!(w.count("SELECT exit_code::bigint FROM sync_runs"), 75);
    // Next time the endpoint answers: the verifications land, the orders are not asked again.
    w.fake.set_faults(Faults::default());
    w.range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "verifications")
        .run()
        .expect_success();
    assert_verifications_exact(&w, &w.fake.verifications());
}

#[test]
fn a_cursor_that_does_not_advance_is_not_followed_forever() {
    let w = World::new("stuck_cursor");
    seed_verifications(&w, MARCH_1, 1, 30);
    w.fake.set_faults(Faults {
        verify_stuck_cursor: true,
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("STREAMS", "verifications")
        .run();
    out.expect_code(75);
    assert!(out.log().contains("did not advance"), "{}", out.report());
    assert_eq!(w.count("SELECT count(*) FROM verifications"), 0);
    assert!(
        w.fake.requests().len() < 40,
        "{} requests",
        w.fake.requests().len()
    );
}

#[test]
fn a_total_that_does_not_match_refetches_the_day_and_one_that_never_matches_exits_75() {
    let w = World::new("verify_total_skew");
    let served = seed_verifications(&w, MARCH_1, 1, 25);
    // The first 3 answers (the first attempt's 2 pages and the second's first) say one more.
    w.fake.set_faults(Faults {
        verify_total_skew: 3,
        ..Faults::default()
    });
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-01")
            .env("STREAMS", "verifications")
    };
    let out = cmd().run();
    out.expect_success();
    assert!(
        out.log().contains("fetching the day again"),
        "{}",
        out.report()
    );
    assert_verifications_exact(&w, &served);
    w.db.client()
        .batch_execute("DELETE FROM verifications")
        .unwrap();
    w.fake.clear_requests();
    w.fake.set_faults(Faults {
        verify_total_skew: 1000,
        ..Faults::default()
    });
    let out = cmd().run();
    out.expect_code(75);
    assert!(out.log().contains("still incomplete"), "{}", out.report());
    assert_eq!(w.count("SELECT count(*) FROM verifications"), 0);
}

#[test]
fn answers_without_a_total_are_accepted_by_their_short_last_page() {
    let w = World::new("verify_no_total");
    let served = seed_verifications(&w, MARCH_1, 2, 25);
    w.fake.set_faults(Faults {
        verify_without_total: true,
        ..Faults::default()
    });
    w.range_cmd("2024-03-01", "2024-03-02")
        .env("STREAMS", "verifications")
        .run()
        .expect_success();
    assert_verifications_exact(&w, &served);
}

/// Each day of each stream is complete or absent.
#[track_caller]
fn assert_whole_days_per_stream(
    w: &World,
    days: i64,
    orders_per_day: i64,
    verifications_per_day: i64,
) {
    for d in 0..days {
        let (a, b) = (MARCH_1 + d * DAY, MARCH_1 + (d + 1) * DAY);
        let o = w.count(&format!(
            "SELECT count(*) FROM orders WHERE update_time >= to_timestamp({a}) AND update_time < to_timestamp({b})"
        ));
        assert!(o == 0 || o == orders_per_day, "orders day {d}: {o}");
        let v = w.count(&format!(
            "SELECT count(*) FROM verifications WHERE verify_time >= to_timestamp({a}) AND verify_time < to_timestamp({b})"
        ));
        assert!(
            v == 0 || v == verifications_per_day,
            "verifications day {d}: {v}"
        );
    }
}

fn interrupted(name: &str, stop: impl FnOnce(&mut support::Child)) -> Option<support::Output> {
    let w = World::new(name);
    let orders = w.seed_days(MARCH_1, 5, 60);
    let served = seed_verifications(&w, MARCH_1, 5, 100);
    w.fake.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    });
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-05")
            .env("STREAMS", "all")
            .env("PAGE_SIZE", "10")
            .env("MAX_QPS", "5")
            .env("VERIFY_QPS", "2")
    };
    let mut child = cmd().spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'verifications'") == 0
        || w.count("SELECT count(*) FROM verifications") == 0
        || w.count("SELECT count(*) FROM orders") == 0
    {
        assert!(
            Instant::now() < deadline,
            "no day of both streams within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(&mut child);
    let out = child.wait_timeout(Duration::from_secs(10));
    assert!(
        w.count("SELECT count(*) FROM verifications") < 500,
        "finished before the stop"
    );
    assert_whole_days_per_stream(&w, 5, 60, 100);
    w.fake.set_faults(Faults::default());
    cmd()
        .env("MAX_QPS", "100")
        .env("VERIFY_QPS", "100")
        .run()
        .expect_success();
    assert_verifications_exact(&w, &served);
    assert_eq!(w.count("SELECT count(*) FROM orders"), orders.len() as i64);
    out
}

#[test]
fn sigterm_leaves_whole_days_per_stream_and_the_rerun_is_exact() {
    let out =
        interrupted("streams_sigterm", |c| c.signal(SIGTERM)).expect("did not stop within 10 s");
    out.expect_code(143);
}

#[test]
fn sigint_leaves_whole_days_per_stream() {
    let out =
        interrupted("streams_sigint", |c| c.signal(SIGINT)).expect("did not stop within 10 s");
    out.expect_code(130);
}

#[test]
fn kill_9_leaves_whole_days_per_stream_and_the_rerun_is_exact() {
    let out = interrupted("streams_kill9", |c| c.kill9()).expect("not killed");
    assert_eq!(out.signal, Some(9));
}

#[test]
fn a_streams_database_connection_lost_mid_run_is_reconnected_and_its_days_fetched_again() {
    let w = World::new("verify_db_lost");
    let served = seed_verifications(&w, MARCH_1, 5, 100);
    w.fake.set_faults(Faults {
        latency: Duration::from_millis(50),
        ..Faults::default()
    });
    let child = w
        .range_cmd("2024-03-01", "2024-03-05")
        .env("STREAMS", "verifications")
        .env("VERIFY_QPS", "4")
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.count("SELECT count(*) FROM pg_tables WHERE tablename = 'verifications'") == 0
        || w.count("SELECT count(*) FROM verifications") == 0
    {
        assert!(Instant::now() < deadline, "no verification day within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The stream's own connection (the run's connection holds the account's lock).
    let terminated = w.terminate_sessions("douyin-order-sync verifications");
    assert_eq!(terminated, 1, "no connection of the stream was found");
    let out = child
        .wait_timeout(Duration::from_secs(120))
        .expect("did not finish");
    out.expect_success();
    assert!(
        w.count("SELECT count(*) FROM verifications") > 0,
        "{}",
        out.report()
    );
    assert!(
        out.log().contains("lost a database connection"),
        "finished before the connection was lost\n{}",
        out.report()
    );
    assert_verifications_exact(&w, &served);
}

#[test]
fn an_unknown_stream_is_a_configuration_error() {
    let w = World::new("unknown_stream");
    let out = w.cmd().env("STREAMS", "orders,refundz").run();
    out.expect_code(78);
    assert!(out.log().contains("STREAMS"), "{}", out.report());
}

#[test]
fn several_accounts_each_get_their_own_verifications_and_checkpoints() {
    const OTHER: &str = "7000000000000000002";
    let w = World::with(
        "verify_accounts",
        support::fake_douyin::FakeConfig {
            authorised_accounts: vec![ACCOUNT.to_string(), OTHER.to_string()],
            ..support::fake_douyin::FakeConfig::default()
        },
    );
    let mine = seed_verifications(&w, MARCH_1, 2, 23);
    let theirs = generate_verifications(OTHER, MARCH_1, 2, 31, 8);
    w.fake.add_verifications(theirs.clone());
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("ACCOUNT_ID", &format!("{ACCOUNT},{OTHER}"))
        .env("STREAMS", "verifications")
        .run();
    out.expect_success();
    let table = verifications(&w);
    assert_eq!(table.len(), mine.len() + theirs.len());
    for (records, account) in [(&mine, ACCOUNT), (&theirs, OTHER)] {
        for r in records {
            let stored = &table[r["verify_id"].as_str().unwrap()];
            assert_eq!(stored.account_id.as_deref(), Some(account));
            assert_eq!(stored.raw_data, *r);
        }
    }
    assert_eq!(
        w.count("SELECT count(DISTINCT account_id) FROM sync_checkpoints WHERE stream = 'verifications'"),
        2
    );
}

#[test]
fn malformed_verifications_are_quarantined_with_their_stream_and_the_day_commits() {
    let w = World::new("verify_quarantine");
    let mut served = seed_verifications(&w, MARCH_1, 1, 30);
    // Same cursor order as the generated ones (19 digits), inside the day.
    let bad_status = json!({"verify_id": "7299999999999999998", "cursor": "7299999999999999998",
                            "verify_time": MARCH_1 + 100, "status": "revoked?"});
    let no_id = json!({"cursor": "7299999999999999999", "verify_time": MARCH_1 + 200});
    w.fake.add_verifications([bad_status.clone(), no_id]);
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-01")
            .env("STREAMS", "verifications")
    };
    let out = cmd().run();
    out.expect_success();
    assert!(out.log().contains("2 quarantined"), "{}", out.report());
    assert_verifications_exact(&w, &served);
    let rows = w
        .db
        .client()
        .query(
            "SELECT stream, record_id, reason, day::text FROM rejected_records ORDER BY record_id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.get::<_, String>(0), "verifications");
        assert_eq!(r.get::<_, String>(3), "2024-03-01");
    }
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).as_deref(),
        Some("7299999999999999998")
    );
    assert!(rows[0].get::<_, String>(2).contains("status"));
    assert!(rows[1].get::<_, String>(2).contains("verify_id"));
    assert_eq!(w.count("SELECT rejected FROM sync_runs"), 2);
    // Douyin fixes the record: the next run stores it and it leaves the quarantine.
    let mut fixed = bad_status;
    fixed["status"] = json!(1);
    w.fake.add_verifications([fixed.clone()]);
    cmd().run().expect_success();
    served.push(fixed);
    assert_eq!(
        w.count("SELECT count(*) FROM rejected_records WHERE record_id = '7299999999999999998'"),
        0
    );
    assert_eq!(w.count("SELECT count(*) FROM verifications"), 31);
}
