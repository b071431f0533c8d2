//! The streams `refunds` and `settlements` end to end: the real binary against the fake Douyin
//! (tests/support/fake_ledger.rs) and a real PostgreSQL.
// Tests unwrap freely: a panic with its message is exactly the failure report wanted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::fake_douyin::ledger::{
    generate_ledger, generate_refunds, LedgerFaults, LEDGER_PATH, REFUNDS_PATH,
};
use support::fake_douyin::Faults;
use support::setup::{local_midnight_now, now, text, yuan, World, ACCOUNT, DAY, MARCH_1};

const DATES: [&str; 3] = ["2024-03-01", "2024-03-02", "2024-03-03"];

/// A JSON number or numeric string.
fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(support::setup::int)
}
fn epoch(v: Option<&Value>) -> Option<String> {
    int(v).filter(|t| *t != 0).map(|t| t.to_string())
}

/// Every row of a table as column → text (NULL as None), keyed by its first column.
fn rows(w: &World, sql: &str) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let mut client = w.db.client();
    let result = client.query(sql, &[]).unwrap();
    result
        .iter()
        .map(|r| {
            let cols: BTreeMap<String, Option<String>> = r
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_string(), r.get::<_, Option<String>>(i)))
                .collect();
            (r.get::<_, String>(0), cols)
        })
        .collect()
}

fn refund_rows(w: &World) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    rows(
        w,
        "SELECT after_sale_id, order_id, account_id, status::text, refund_type::text,
                extract(epoch FROM create_time)::bigint::text AS create_time,
                extract(epoch FROM update_time)::bigint::text AS update_time,
                extract(epoch FROM audit_time)::bigint::text AS audit_time,
                extract(epoch FROM complete_time)::bigint::text AS complete_time,
                refund_amount::text, total_refund_amount::text, real_refund_amount::text,
                reject_reason, raw_data::text
           FROM refunds",
    )
}

fn ledger_rows(w: &World) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    rows(
        w,
        "SELECT ledger_id, account_id, bill_date::text, order_id, item_order_id, certificate_id,
                code, sku_id, poi_id, extract(epoch FROM ledger_time)::bigint::text AS ledger_time,
                status::text, original_amount::text, pay_amount::text, coupon_pay_amount::text,
                merchant_ticket_amount::text, goods_amount::text, raw_data::text
           FROM settlements",
    )
}

/// The row a refund must become, computed from the served JSON independently of the job.
fn expected_refund(r: &Value) -> BTreeMap<String, Option<String>> {
    let pairs: Vec<(&str, Option<String>)> = vec![
        ("after_sale_id", text(r.get("after_sale_id"))),
        ("order_id", text(r.get("order_id"))),
        (
            "account_id",
            text(r.get("merchant_account_id")).or(Some(ACCOUNT.to_string())),
        ),
        ("status", int(r.get("status")).map(|n| n.to_string())),
        (
            "refund_type",
            int(r.get("refund_type")).map(|n| n.to_string()),
        ),
        ("create_time", epoch(r.get("create_time"))),
        ("update_time", epoch(r.get("update_time"))),
        ("audit_time", epoch(r.get("audit_time"))),
        ("complete_time", epoch(r.get("complete_time"))),
        ("refund_amount", yuan(int(r.get("refund_amount")))),
        (
            "total_refund_amount",
            yuan(int(r.get("total_refund_amount"))),
        ),
        ("real_refund_amount", yuan(int(r.get("real_refund_amount")))),
        ("reject_reason", text(r.get("reject_reason"))),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn expected_ledger(date: &str, r: &Value) -> BTreeMap<String, Option<String>> {
    let a = r.get("amount");
    let fen = |k: &str| yuan(int(a.and_then(|a| a.get(k))));
    let pairs: Vec<(&str, Option<String>)> = vec![
        ("ledger_id", text(r.get("ledger_id"))),
        ("account_id", Some(ACCOUNT.to_string())),
        ("bill_date", Some(date.to_string())),
        ("order_id", text(r.get("order_id"))),
        ("item_order_id", text(r.get("item_order_id"))),
        (
            "certificate_id",
            text(r["certificate"].get("certificate_id")),
        ),
        ("code", text(r["certificate"].get("code"))),
        ("sku_id", text(r["goods"].get("sku_id"))),
        ("poi_id", text(r.get("poi_id"))),
        ("ledger_time", epoch(r.get("ledger_time"))),
        ("status", int(r.get("status")).map(|n| n.to_string())),
        ("original_amount", fen("original")),
        ("pay_amount", fen("pay")),
        ("coupon_pay_amount", fen("coupon_pay")),
        ("merchant_ticket_amount", fen("merchant_ticket")),
        ("goods_amount", fen("goods")),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every stored refund is exactly its served record (columns and raw_data), and the table
/// holds exactly `served`.
#[track_caller]
fn assert_refunds_exactly(w: &World, served: &[Value]) {
    let stored = refund_rows(w);
    let extra: Vec<_> = stored
        .values()
        .filter(|r| {
            !served
                .iter()
                .any(|s| text(s.get("after_sale_id")) == r["after_sale_id"])
        })
        .collect();
    assert!(extra.is_empty(), "refunds stored but not served: {extra:?}");
    assert_eq!(stored.len(), served.len(), "refunds stored vs served");
    for r in served {
        let id = text(r.get("after_sale_id")).unwrap();
        let mut row = stored
            .get(&id)
            .unwrap_or_else(|| panic!("refund {id} missing"))
            .clone();
        let raw: Value =
            serde_json::from_str(row.remove("raw_data").unwrap().as_deref().unwrap()).unwrap();
        assert_eq!(raw, *r, "raw_data of refund {id}");
        assert_eq!(row, expected_refund(r), "columns of refund {id}");
    }
}

#[track_caller]
fn assert_ledger_exactly(w: &World, served: &[(String, Value)]) {
    let stored = ledger_rows(w);
    assert_eq!(
        stored.len(),
        served.len(),
        "ledger records stored vs served"
    );
    for (date, r) in served {
        let id = text(r.get("ledger_id")).unwrap();
        let mut row = stored
            .get(&id)
            .unwrap_or_else(|| panic!("ledger record {id} missing"))
            .clone();
        let raw: Value =
            serde_json::from_str(row.remove("raw_data").unwrap().as_deref().unwrap()).unwrap();
        assert_eq!(raw, *r, "raw_data of ledger record {id}");
        assert!(
            raw.get("order_attrribute").is_some(),
            "the misspelled key is kept"
        );
        assert_eq!(
            row,
            expected_ledger(date, r),
            "columns of ledger record {id}"
        );
    }
}

/// Three days of refunds (250, 3 pages, on the first; boundaries at 00:00:00 and 23:59:59) and
/// of ledger records (120, 3 pages, on the first), plus neighbours outside the range.
fn seed(w: &World) -> (Vec<Value>, Vec<(String, Value)>) {
    let mut refunds = Vec::new();
    let mut ledger = Vec::new();
    for (d, date) in DATES.iter().enumerate() {
        let start = MARCH_1 + d as i64 * DAY;
        let n = [250, 40, 3][d];
        refunds.extend(generate_refunds(ACCOUNT, start, n, d as u64 + 1));
        let records = generate_ledger(ACCOUNT, date, start, [120, 50, 2][d], d as u64 + 1);
        ledger.extend(records.iter().map(|r| (date.to_string(), r.clone())));
        w.fake.add_ledger_records(date, records);
    }
    w.fake.add_refunds(refunds.clone());
    // Outside the range: they must not be stored.
    // (Not at 00:00:00 of the next day: the end bound is sent as the next day's start, so a
    // refund at exactly that second is stored with the range when the API's bound is inclusive.)
    let mut after = generate_refunds(ACCOUNT, MARCH_1 + 3 * DAY, 4, 9);
    for r in &mut after {
        r["complete_time"] = json!(int(r.get("complete_time")).unwrap() + 3600);
    }
    w.fake.add_refunds(after);
    w.fake.add_ledger_records(
        "2024-03-04",
        generate_ledger(ACCOUNT, "2024-03-04", MARCH_1 + 3 * DAY, 4, 9),
    );
    (refunds, ledger)
}

fn ledger_cmd(w: &World) -> support::Cmd {
    w.range_cmd("2024-03-01", "2024-03-03")
        .env("STREAMS", "refunds,settlements")
}

#[test]
fn every_refund_and_ledger_record_of_a_backfill_lands_exactly() {
    let w = World::new("ledger_backfill");
    let (refunds, ledger) = seed(&w);
    let out = ledger_cmd(&w).run();
    out.expect_success();
    assert_refunds_exactly(&w, &refunds);
    assert_ledger_exactly(&w, &ledger);
    // Lenient shapes were served: strings for numbers, absent amounts, an int64 account id.
    assert!(refunds.iter().any(|r| r["refund_amount"].is_string()));
    assert!(refunds
        .iter()
        .any(|r| r.get("real_refund_amount").is_none()));
    assert!(ledger
        .iter()
        .any(|(_, r)| r["amount"].get("goods").is_none()));
    let log = out.log();
    assert!(log.contains("refunds 2024-03-01: 251 refunds"), "{log}");
    assert!(
        log.contains("settlements 2024-03-01: 120 ledger records"),
        "{log}"
    );
    // Paging: the refunds of day 1 took 3 pages of at most 100, the ledger 3 of at most 50.
    let requests = w.fake.requests();
    let pages = |path: &str, key: &str| {
        requests
            .iter()
            .filter(|r| r.path == path && r.outcome == "ok")
            .map(|r| r.params[key].parse::<usize>().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(pages(REFUNDS_PATH, "page_size").iter().all(|s| *s == 100));
    assert!(pages(LEDGER_PATH, "size").iter().all(|s| *s == 50));
    let dates: Vec<String> = requests
        .iter()
        .filter(|r| r.path == LEDGER_PATH && r.params["cursor"] == "0")
        .map(|r| r.params["bill_date"].clone())
        .collect();
    assert_eq!(dates.len(), 3, "one bill date per day: {dates:?}");
    // A rerun changes nothing.
    let before: Vec<String> = rows(&w, "SELECT ledger_id, sync_time::text FROM settlements")
        .into_values()
        .map(|r| r["sync_time"].clone().unwrap())
        .collect();
    ledger_cmd(&w).run().expect_success();
    let after: Vec<String> = rows(&w, "SELECT ledger_id, sync_time::text FROM settlements")
        .into_values()
        .map(|r| r["sync_time"].clone().unwrap())
        .collect();
    assert_eq!(before, after, "an unchanged ledger record is not rewritten");
    assert_refunds_exactly(&w, &refunds);
}

#[test]
fn a_ledger_record_that_disappears_from_a_reread_date_is_removed() {
    let w = World::new("ledger_replace");
    let (_, mut ledger) = seed(&w);
    ledger_cmd(&w).run().expect_success();
    assert_ledger_exactly(&w, &ledger);
    // Another account's row of the same date is not this account's to replace.
    w.db.client()
        .batch_execute(
            "INSERT INTO settlements (ledger_id, account_id, bill_date, raw_data)
             VALUES ('other-account', '7000000000000000009', '2024-03-02', '{}')",
        )
        .unwrap();
    // The platform drops one record of 03-02, reverses one of 03-01, and drops all of 03-03.
    let dropped = text(
        ledger
            .iter()
            .find(|(d, _)| d == "2024-03-02")
            .unwrap()
            .1
            .get("ledger_id"),
    )
    .unwrap();
    assert!(w.fake.remove_ledger_record(&dropped));
    let changed = text(ledger[5].1.get("ledger_id")).unwrap();
    assert!(w
        .fake
        .update_ledger_record(&changed, |r| r["amount"]["goods"] = json!(-100)));
    for (_, r) in ledger.iter().filter(|(d, _)| d == "2024-03-03") {
        assert!(w
            .fake
            .remove_ledger_record(r["ledger_id"].as_str().unwrap()));
    }
    let out = ledger_cmd(&w).run();
    out.expect_success();
    assert!(
        out.log()
            .contains("1 ledger record(s) no longer answered, removed"),
        "{}",
        out.log()
    );
    ledger.retain(|(d, r)| d != "2024-03-03" && text(r.get("ledger_id")).unwrap() != dropped);
    ledger[5].1["amount"]["goods"] = json!(-100);
    let mut stored = ledger_rows(&w);
    let other = stored
        .remove("other-account")
        .expect("the other account's row stays");
    assert_eq!(other["bill_date"].as_deref(), Some("2024-03-02"));
    w.db.client()
        .batch_execute("DELETE FROM settlements WHERE ledger_id = 'other-account'")
        .unwrap();
    assert_ledger_exactly(&w, &ledger);
    assert_eq!(
        ledger_rows(&w)[&changed]["goods_amount"].as_deref(),
        Some("-1.00")
    );
}

#[test]
fn the_incremental_mode_picks_up_a_refund_completed_later_and_a_late_ledger_record() {
    let w = World::new("ledger_incremental");
    let today = local_midnight_now();
    let date_of = |t: i64| {
        let d = (t + 8 * 3600).div_euclid(DAY);
        // civil date of a day count (small, for the test only)
        let z = d + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        format!("{:04}-{m:02}-{day:02}", yoe + era * 400 + i64::from(m <= 2))
    };
    let yesterday = date_of(today - DAY);
    let t0 = now();
    let mut early = generate_refunds(ACCOUNT, today - DAY, 5, 1);
    for (i, r) in early.iter_mut().enumerate() {
        r["complete_time"] = json!(t0 - 3600 - i as i64 * 60);
    }
    w.fake.add_refunds(early.clone());
    let first_ledger = generate_ledger(ACCOUNT, &yesterday, today - DAY, 3, 1);
    w.fake.add_ledger_records(&yesterday, first_ledger.clone());
    let cmd = || {
        w.cmd()
            .env("STREAMS", "refunds,settlements")
            .env("SYNC_DAYS", "2")
    };
    cmd().run().expect_success();
    assert_eq!(refund_rows(&w).len(), 5);
    assert_eq!(ledger_rows(&w).len(), 3);
    // After the run: a refund completes, another (completed 5 minutes before the run) is only
    // now indexed, and a ledger record of yesterday arrives late.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut late = generate_refunds(ACCOUNT, today, 2, 2);
    late[0]["complete_time"] = json!(now() - 1);
    late[1]["complete_time"] = json!(t0 - 300);
    w.fake.add_refunds(late.clone());
    let late_record = generate_ledger(ACCOUNT, &yesterday, today - DAY, 4, 2)
        .pop()
        .unwrap();
    w.fake.add_ledger_records(&yesterday, [late_record.clone()]);
    let out = cmd().run();
    out.expect_success();
    let all: Vec<Value> = early.iter().chain(late.iter()).cloned().collect();
    assert_refunds_exactly(&w, &all);
    let mut served: Vec<(String, Value)> = first_ledger
        .into_iter()
        .map(|r| (yesterday.clone(), r))
        .collect();
    served.push((yesterday.clone(), late_record));
    assert_ledger_exactly(&w, &served);
    // The incremental run asked only a short window of refunds, and the past bill dates.
    let refund_starts: Vec<i64> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == REFUNDS_PATH)
        .map(|r| r.params["refund_done_start_time"].parse().unwrap())
        .collect();
    assert!(
        refund_starts
            .iter()
            .rev()
            .take(1)
            .all(|s| *s >= t0 - 600 - 5),
        "{refund_starts:?}"
    );
}

#[test]
fn faults_and_qps_limits_lose_nothing() {
    let w = World::new("ledger_faults");
    let (refunds, ledger) = seed(&w);
    w.fake.set_faults(Faults {
        busy_rate: 0.1,
        http_502_rate: 0.05,
        cut_body_rate: 0.05,
        expire_token_after: Some(7),
        ..Faults::default()
    });
    // The refund endpoint allows 3 a second, less than the budget asked below: its "too
    // frequent" answers must be retried; the ledger's limit is its budget, which is kept.
    w.fake.set_ledger_faults(LedgerFaults {
        refunds_qps_limit: Some(3),
        ledger_qps_limit: Some(8),
        ..LedgerFaults::default()
    });
    let out = ledger_cmd(&w)
        .env("REFUND_QPS", "5")
        .env("SETTLE_QPS", "8")
        .env("RETRY_MAX_TRIES", "30")
        .run();
    out.expect_success();
    assert_refunds_exactly(&w, &refunds);
    assert_ledger_exactly(&w, &ledger);
    let requests = w.fake.requests();
    let outcome = |path: &str, prefix: &str| {
        requests
            .iter()
            .filter(|r| r.path == path && r.outcome.starts_with(prefix))
            .count()
    };
    let faults = ["busy", "http 502", "cut", "expired"];
    let injected: usize = faults
        .iter()
        .map(|f| outcome(REFUNDS_PATH, f) + outcome(LEDGER_PATH, f))
        .sum();
    assert!(injected >= 3, "faults were injected: {injected}");
    assert!(
        outcome(REFUNDS_PATH, "rate") >= 1,
        "the refund endpoint's limit was hit"
    );
    assert_eq!(
        outcome(LEDGER_PATH, "rate"),
        0,
        "SETTLE_QPS keeps under the ledger's limit"
    );
    assert!(w.fake.busiest_second_of(LEDGER_PATH) <= 8);
    assert!(w.fake.busiest_second_of(REFUNDS_PATH) <= 5);
}

#[test]
fn a_quota_answer_on_refunds_exits_75_with_the_other_streams_committed() {
    let w = World::new("ledger_quota");
    let (refunds, ledger) = seed(&w);
    let orders = w.seed_days(MARCH_1, 3, 20);
    // Day 1 of refunds takes 3 answers; the 4th (day 2's first) is a quota answer.
    w.fake.set_ledger_faults(LedgerFaults {
        refunds_quota: Some(3),
        quota_code: 28003017,
        ..LedgerFaults::default()
    });
    let cmd = || {
        w.range_cmd("2024-03-01", "2024-03-03")
            .env("STREAMS", "orders,refunds,settlements")
            // One day at a time, so that "the days before it" is day 1.
            .env("REFUND_QPS", "1")
    };
    let out = cmd().run();
    out.expect_code(75);
    let log = out.log();
    let quota_lines: Vec<&str> = log.lines().filter(|l| l.contains("quota")).collect();
    assert!(
        quota_lines
            .iter()
            .any(|l| l.contains("refunds") && l.contains("28003017")),
        "one line says so: {log}"
    );
    assert_eq!(w.count("SELECT count(*) FROM orders"), orders.len() as i64);
    assert_ledger_exactly(&w, &ledger);
    // Day 1, and the refund at 00:00:00 of day 2 that day 1's inclusive end bound also answers.
    let day1: Vec<Value> = refunds
        .iter()
        .filter(|r| int(r.get("complete_time")).unwrap() <= MARCH_1 + DAY)
        .cloned()
        .collect();
    assert_eq!(day1.len(), 251);
    assert_refunds_exactly(&w, &day1);
    let until: i64 = w.count(
        "SELECT extract(epoch FROM synced_until)::bigint FROM sync_checkpoints WHERE stream = 'refunds'",
    );
    assert_eq!(
        until,
        MARCH_1 + DAY,
        "the refunds checkpoint stops after day 1"
    );
    // The next day's quota: the rerun resumes after day 1 and completes.
    w.fake.set_ledger_faults(LedgerFaults::default());
    w.fake.clear_requests();
    cmd().run().expect_success();
    assert_refunds_exactly(&w, &refunds);
    assert!(
        w.fake
            .requests()
            .iter()
            .filter(|r| r.path == REFUNDS_PATH)
            .all(|r| r.params["refund_done_start_time"].parse::<i64>().unwrap() >= MARCH_1 + DAY),
        "day 1 is not asked again"
    );
}

/// The view's figures for five hand-made orders of 2024-03-01, each checked by hand:
/// A: two used coupons, one settled (45.00), one not yet; one verification carries the order id,
///    the other only the certificate id.
/// B: its coupon refunded: a completed refund of 50.00 counts, a failed one (59) does not.
/// C: one coupon used and settled (70.00); the other's verification was revoked.
/// D: a coupon whose certificate_id is "" (NULL): its verification names the order and a code,
///    and the ledger record is found by that code (settled 28.00).
/// E: unpaid, nothing happened.
#[test]
fn the_reconciliation_view_matches_hand_checked_orders() {
    let w = World::new("ledger_view");
    let ids: Vec<String> = w
        .fake
        .seed_day(ACCOUNT, MARCH_1, 5, 3)
        .iter()
        .map(|g| g.order_id())
        .collect();
    let (a, b, c, d, e) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    let t = |h: i64| MARCH_1 + h * 3600;
    let coupon = |cert: &str, item: &str, status: i64| {
        json!({"certificate_id": cert, "order_item_id": item, "item_status": status,
               "item_update_time": t(12), "refund_amount": 0, "refund_time": 0})
    };
    let set = |id: &str, fen: i64, paid: bool, certs: Vec<Value>| {
        assert!(w.fake.update_order(id, |o| {
            o["pay_amount"] = json!(fen);
            o["pay_time"] = json!(if paid { t(9) } else { 0 });
            o["count"] = json!(certs.len());
            o["certificate"] = json!(certs);
        }));
    };
    set(
        a,
        10000,
        true,
        vec![coupon("cA1", "iA1", 401), coupon("cA2", "iA2", 401)],
    );
    set(b, 5000, true, vec![coupon("cB1", "iB1", 301)]);
    set(
        c,
        8000,
        true,
        vec![coupon("cC1", "iC1", 401), coupon("cC2", "iC2", 100)],
    );
    set(d, 3000, true, vec![coupon("", "iD1", 401)]);
    set(e, 0, false, vec![coupon("cE1", "iE1", 100)]);
    let verification =
        |n: u64, cert: Option<&str>, order: Option<&str>, code: Option<&str>, revoked: bool| {
            let id = format!("{}", 7_300_000_000_000_000_000u64 + n);
            let mut v = json!({"cursor": id, "verify_id": id, "verify_time": t(10 + n as i64),
                           "status": if revoked { 2 } else { 1 },
                           "cancel_time": if revoked { t(20) } else { 0 },
                           "can_cancel": !revoked, "verify_type": 1,
                           "amount": {"original_amount": 100, "pay_amount": 100}});
            if let Some(c) = cert {
                v["certificate_id"] = json!(c);
            }
            if let Some(o) = order {
                v["order_id"] = json!(o);
            }
            if let Some(k) = code {
                v["code"] = json!(k);
            }
            v
        };
    w.fake.add_verifications([
        verification(1, Some("cA1"), Some(a), Some("kA1"), false),
        verification(2, Some("cA2"), None, Some("kA2"), false),
        verification(3, Some("cC1"), Some(c), None, false),
        verification(4, Some("cC2"), Some(c), None, true),
        verification(5, None, Some(d), Some("kD1"), false),
    ]);
    let refund = |n: u64, order: &str, status: i64, fen: i64| {
        json!({"after_sale_id": format!("rf{n}"), "order_id": order, "status": status,
               "merchant_account_id": ACCOUNT.parse::<i64>().unwrap(),
               "complete_time": t(14 + n as i64), "refund_amount": fen})
    };
    w.fake
        .add_refunds([refund(1, b, 50, 5000), refund(2, b, 59, 5000)]);
    let ledger = |id: &str, order: &str, cert: Option<&str>, code: &str, goods: i64| {
        let mut c = json!({"code": code});
        if let Some(cert) = cert {
            c["certificate_id"] = json!(cert);
        }
        json!({"ledger_id": id, "account_id": ACCOUNT, "order_id": order, "certificate": c,
               "ledger_time": t(11), "status": 1, "amount": {"goods": goods},
               "order_attrribute": {"room_id": "", "source": 1}})
    };
    w.fake.add_ledger_records(
        "2024-03-01",
        [
            ledger("lA1", a, Some("cA1"), "kA1", 4500),
            ledger("lC1", c, Some("cC1"), "kC1", 7000),
            ledger("lD1", d, None, "kD1", 2800),
        ],
    );
    w.range_cmd("2024-03-01", "2024-03-01")
        .env("STREAMS", "all")
        .run()
        .expect_success();
    let view = rows(
        &w,
        "SELECT order_id, account_id, extract(epoch FROM pay_time)::bigint::text AS pay_time,
                pay_amount::text, coupons::text, coupons_used::text, coupons_refunded::text,
                refunded_amount::text, settled_amount::text, unsettled_used::text,
                extract(epoch FROM unsettled_since)::bigint::text AS unsettled_since
           FROM order_reconciliation",
    );
    assert_eq!(view.len(), 5);
    let paid = Some(t(9).to_string());
    // (order, pay_time, pay_amount, the six figures, unsettled_since)
    type Expected<'a> = (
        &'a String,
        Option<String>,
        &'a str,
        [&'a str; 6],
        Option<String>,
    );
    let expected: [Expected<'_>; 5] = [
        (
            a,
            paid.clone(),
            "100.00",
            ["2", "2", "0", "0.00", "45.00", "1"],
            Some(t(12).to_string()),
        ),
        (
            b,
            paid.clone(),
            "50.00",
            ["1", "0", "1", "50.00", "0.00", "0"],
            None,
        ),
        (
            c,
            paid.clone(),
            "80.00",
            ["2", "1", "0", "0.00", "70.00", "0"],
            None,
        ),
        (
            d,
            paid.clone(),
            "30.00",
            ["1", "1", "0", "0.00", "28.00", "0"],
            None,
        ),
        (e, None, "0.00", ["1", "0", "0", "0.00", "0.00", "0"], None),
    ];
    for (id, pay_time, pay_amount, figures, since) in expected {
        let row = &view[id.as_str()];
        let got: Vec<Option<&str>> = [
            "coupons",
            "coupons_used",
            "coupons_refunded",
            "refunded_amount",
            "settled_amount",
            "unsettled_used",
        ]
        .iter()
        .map(|c| row[*c].as_deref())
        .collect();
        let want: Vec<Option<&str>> = figures.iter().map(|f| Some(*f)).collect();
        assert_eq!(got, want, "figures of order {id}: {row:?}");
        assert_eq!(row["pay_time"], pay_time, "pay_time of {id}");
        assert_eq!(
            row["pay_amount"].as_deref(),
            Some(pay_amount),
            "pay_amount of {id}"
        );
        assert_eq!(row["account_id"].as_deref(), Some(ACCOUNT));
        assert_eq!(row["unsettled_since"], since, "unsettled_since of {id}");
    }
    // The README's finance queries on the view run as written.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let queries: Vec<&str> = readme
        .split("```sql")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .filter(|q| q.contains("FROM order_reconciliation"))
        .collect();
    assert_eq!(queries.len(), 2, "two finance queries in the README");
    let mut client = w.db.client();
    for q in queries {
        let result = client.query(q.trim().trim_end_matches(';'), &[]);
        assert!(result.is_ok(), "{q}: {result:?}");
    }
    // Used but unsettled for more than a day: order A's coupon (2024 is long ago).
    let late = client
        .query(readme_query(&readme, "unsettled_since <"), &[])
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].get::<_, String>("order_id"), *a);
}

fn readme_query<'a>(readme: &'a str, containing: &str) -> &'a str {
    readme
        .split("```sql")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|q| q.contains(containing))
        .unwrap()
        .trim()
        .trim_end_matches(';')
}

#[test]
fn a_refund_or_ledger_record_that_cannot_be_stored_is_quarantined_and_its_day_commits() {
    let w = World::new("ledger_quarantine");
    let (refunds, ledger) = seed(&w);
    // No after_sale_id; an amount beyond numeric(12,2); a certificate that is not an object.
    w.fake.add_refunds([
        json!({"order_id": "1", "merchant_account_id": ACCOUNT.parse::<i64>().unwrap(),
                                "status": 50, "complete_time": MARCH_1 + 7200}),
    ]);
    let mut big = generate_refunds(ACCOUNT, MARCH_1 + DAY, 1, 77)
        .pop()
        .unwrap();
    big["complete_time"] = json!(MARCH_1 + DAY + 7200);
    big["refund_amount"] = json!("100000000000000");
    w.fake.add_refunds([big.clone()]);
    let mut odd = generate_ledger(ACCOUNT, "2024-03-02", MARCH_1 + DAY, 1, 77)
        .pop()
        .unwrap();
    odd["certificate"] = json!("none");
    w.fake.add_ledger_records("2024-03-02", [odd.clone()]);
    let out = ledger_cmd(&w).run();
    out.expect_success();
    assert_refunds_exactly(&w, &refunds);
    assert_ledger_exactly(&w, &ledger);
    let quarantined = rows(
        &w,
        "SELECT coalesce(record_id, '-') || '/' || stream, day::text, reason FROM rejected_records",
    );
    let keys: Vec<&String> = quarantined.keys().collect();
    assert_eq!(quarantined.len(), 3, "{quarantined:?}");
    let big_id = format!("{}/refunds", big["after_sale_id"].as_str().unwrap());
    let odd_id = format!("{}/settlements", odd["ledger_id"].as_str().unwrap());
    assert!(
        keys.contains(&&big_id) && keys.contains(&&odd_id),
        "{keys:?}"
    );
    assert!(keys.contains(&&"-/refunds".to_string()), "{keys:?}");
    assert_eq!(quarantined[&odd_id]["day"].as_deref(), Some("2024-03-02"));
    assert!(out.log().contains("quarantined"), "{}", out.log());
}
