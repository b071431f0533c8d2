//! HTTP-level tests of the fake Douyin's refund and settlement-ledger endpoints
//! (`tests/support/fake_ledger.rs`): the job's tests trust them, so they are checked here first.
// Tests unwrap freely: a panic with its message is exactly the failure report wanted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::fake_douyin::ledger::*;
use support::fake_douyin::*;

/// 2026-11-24 00:00:00 UTC+8.
fn day() -> i64 {
    local_midnight(2026, 11, 24)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

fn token(agent: &ureq::Agent, server: &FakeDouyin) -> String {
    let body = json!({"client_key": DEFAULT_APP_ID, "client_secret": DEFAULT_APP_SECRET, "grant_type": "client_credential"});
    let resp = agent
        .post(&format!("{}{TOKEN_PATH}", server.base_url()))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    let v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    v["data"]["access_token"].as_str().unwrap().to_string()
}

fn get(
    agent: &ureq::Agent,
    server: &FakeDouyin,
    token: &str,
    path: &str,
    params: &[(&str, String)],
) -> Value {
    let mut req = agent
        .get(&format!("{}{path}", server.base_url()))
        .set("access-token", token);
    for (k, v) in params {
        req = req.query(k, v);
    }
    let text = req.call().unwrap().into_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn code(v: &Value) -> i64 {
    let as_int = |v: &Value| match v {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        _ => 0,
    };
    let d = as_int(&v["data"]["error_code"]);
    if d != 0 {
        d
    } else {
        as_int(&v["extra"]["error_code"])
    }
}

fn refund_params(start: i64, end: i64, cursor: &str, size: usize) -> Vec<(&'static str, String)> {
    vec![
        ("account_id", DEFAULT_ACCOUNT_ID.to_string()),
        ("refund_done_start_time", start.to_string()),
        ("refund_done_end_time", end.to_string()),
        ("cursor", cursor.to_string()),
        ("page_size", size.to_string()),
    ]
}

fn ledger_params(bill_date: &str, cursor: &str, size: usize) -> Vec<(&'static str, String)> {
    vec![
        ("account_id", DEFAULT_ACCOUNT_ID.to_string()),
        ("bill_date", bill_date.to_string()),
        ("cursor", cursor.to_string()),
        ("size", size.to_string()),
    ]
}

/// Every id of a read, paging by `data.cursor` while `data.has_more`.
fn read_all(
    agent: &ureq::Agent,
    server: &FakeDouyin,
    token: &str,
    refunds: bool,
    size: usize,
    between_pages: &mut dyn FnMut(usize),
) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut ids = Vec::new();
    for page in 0.. {
        let (path, params, list, id) = if refunds {
            (
                REFUNDS_PATH,
                refund_params(day(), day() + 86399, &cursor, size),
                "after_sale_order_list",
                "after_sale_id",
            )
        } else {
            (
                LEDGER_PATH,
                ledger_params("2026-11-24", &cursor, size),
                "ledger_records",
                "ledger_id",
            )
        };
        let v = get(agent, server, token, path, &params);
        assert_eq!(code(&v), 0, "{v}");
        for r in v["data"][list].as_array().unwrap() {
            ids.push(r[id].as_str().unwrap().to_string());
        }
        assert!(v["data"]["cursor"].is_string(), "{v}");
        cursor = v["data"]["cursor"].as_str().unwrap().to_string();
        if !v["data"]["has_more"].as_bool().unwrap() {
            break;
        }
        between_pages(page);
    }
    ids
}

#[test]
fn refunds_page_by_cursor_over_the_completion_window() {
    let server = FakeDouyin::start(FakeConfig::default());
    let refunds = generate_refunds(DEFAULT_ACCOUNT_ID, day(), 250, 1);
    // Outside the window: the day before and after, and another account's.
    server.add_refunds(generate_refunds(DEFAULT_ACCOUNT_ID, day() - 86400, 3, 2));
    server.add_refunds(generate_refunds(DEFAULT_ACCOUNT_ID, day() + 86400, 3, 3));
    server.add_refunds(generate_refunds("7000000000000000002", day(), 3, 4));
    server.add_refunds(refunds.clone());
    let agent = agent();
    let token = token(&agent, &server);
    let ids = read_all(&agent, &server, &token, true, 100, &mut |_| {});
    let want: BTreeSet<String> = refunds
        .iter()
        .map(|r| r["after_sale_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 250, "no record twice");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want);
    // merchant_account_id is a number, as the SDK model says.
    assert!(refunds[0]["merchant_account_id"].is_i64());
    let v = get(
        &agent,
        &server,
        &token,
        REFUNDS_PATH,
        &refund_params(day(), day() + 86399, "0", 101),
    );
    assert_eq!(code(&v), 2100005, "page_size above 100 is refused");
}

#[test]
fn a_ledger_record_removed_between_pages_shifts_nothing() {
    let server = FakeDouyin::start(FakeConfig::default());
    let records = generate_ledger(DEFAULT_ACCOUNT_ID, "2026-11-24", day(), 120, 1);
    server.add_ledger_records("2026-11-24", records.clone());
    server.add_ledger_records(
        "2026-11-25",
        generate_ledger(DEFAULT_ACCOUNT_ID, "2026-11-25", day() + 86400, 5, 1),
    );
    let agent = agent();
    let token = token(&agent, &server);
    let all = read_all(&agent, &server, &token, false, 50, &mut |_| {});
    assert_eq!(all.len(), 120);
    assert!(records.iter().all(|r| r.get("order_attrribute").is_some()));
    // Remove one record already answered and one not yet answered, after the first page.
    let mut sorted = all.clone();
    sorted.sort();
    let (early, late) = (sorted[3].clone(), sorted[110].clone());
    let ids = read_all(&agent, &server, &token, false, 50, &mut |page| {
        if page == 0 {
            assert!(server.remove_ledger_record(&early));
            assert!(server.remove_ledger_record(&late));
        }
    });
    assert_eq!(ids.len(), 119, "every other record once: {ids:?}");
    assert!(ids.contains(&early) && !ids.contains(&late));
    let v = get(
        &agent,
        &server,
        &token,
        LEDGER_PATH,
        &ledger_params("2026-11-24", "0", 51),
    );
    assert_eq!(code(&v), 2100005, "size above 50 is refused");
    let v = get(
        &agent,
        &server,
        &token,
        LEDGER_PATH,
        &ledger_params("20261124", "0", 50),
    );
    assert_eq!(code(&v), 2100005, "bill_date must be YYYY-MM-DD");
}

#[test]
fn each_endpoint_has_its_qps_limit_and_refunds_a_quota() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.add_refunds(generate_refunds(DEFAULT_ACCOUNT_ID, day(), 5, 1));
    server.set_ledger_faults(LedgerFaults {
        refunds_qps_limit: Some(3),
        ledger_qps_limit: Some(5),
        ..LedgerFaults::default()
    });
    let agent = agent();
    let token = token(&agent, &server);
    let refund_codes: Vec<i64> = (0..5)
        .map(|_| {
            code(&get(
                &agent,
                &server,
                &token,
                REFUNDS_PATH,
                &refund_params(day(), day() + 86399, "0", 10),
            ))
        })
        .collect();
    let ledger_codes: Vec<i64> = (0..7)
        .map(|_| {
            code(&get(
                &agent,
                &server,
                &token,
                LEDGER_PATH,
                &ledger_params("2026-11-24", "0", 10),
            ))
        })
        .collect();
    assert_eq!(refund_codes, [0, 0, 0, 2119003, 2119003]);
    assert_eq!(
        ledger_codes,
        [0, 0, 0, 0, 0, 2119003, 2119003],
        "a separate budget"
    );
    assert!(server.busiest_second_of(REFUNDS_PATH) >= 5);
    server.set_ledger_faults(LedgerFaults {
        refunds_quota: Some(2),
        quota_code: 28003017,
        ..LedgerFaults::default()
    });
    std::thread::sleep(Duration::from_millis(1100));
    let codes: Vec<i64> = (0..4)
        .map(|_| {
            code(&get(
                &agent,
                &server,
                &token,
                REFUNDS_PATH,
                &refund_params(day(), day() + 86399, "0", 10),
            ))
        })
        .collect();
    assert_eq!(codes, [0, 0, 28003017, 28003017]);
    assert_eq!(
        code(&get(
            &agent,
            &server,
            &token,
            LEDGER_PATH,
            &ledger_params("2026-11-24", "0", 10)
        )),
        0
    );
    let outcomes: Vec<String> = server
        .requests()
        .iter()
        .rev()
        .take(3)
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(outcomes[1], "quota 28003017");
}

#[test]
fn server_faults_and_token_expiry_reach_these_endpoints() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.add_ledger_records(
        "2026-11-24",
        generate_ledger(DEFAULT_ACCOUNT_ID, "2026-11-24", day(), 3, 1),
    );
    let agent = agent();
    let token = token(&agent, &server);
    server.set_faults(Faults {
        expire_token_after: Some(1),
        ..Faults::default()
    });
    assert_eq!(
        code(&get(
            &agent,
            &server,
            &token,
            LEDGER_PATH,
            &ledger_params("2026-11-24", "0", 10)
        )),
        0
    );
    let expired = code(&get(
        &agent,
        &server,
        &token,
        LEDGER_PATH,
        &ledger_params("2026-11-24", "0", 10),
    ));
    assert!([28001008, 2190008].contains(&expired), "{expired}");
    server.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    let busy = code(&get(
        &agent,
        &server,
        &token,
        REFUNDS_PATH,
        &refund_params(day(), day() + 86399, "0", 10),
    ));
    assert!(BUSY_CODES.contains(&busy), "{busy}");
    server.set_faults(Faults {
        http_502_rate: 1.0,
        ..Faults::default()
    });
    let r = agent
        .get(&format!("{}{LEDGER_PATH}", server.base_url()))
        .set("access-token", &token)
        .call();
    assert!(matches!(r, Err(ureq::Error::Status(502, _))));
}

#[test]
fn generated_records_are_deterministic_and_lenient_in_shape() {
    let a = generate_refunds(DEFAULT_ACCOUNT_ID, day(), 30, 7);
    assert_eq!(a, generate_refunds(DEFAULT_ACCOUNT_ID, day(), 30, 7));
    assert_eq!(a[0]["complete_time"], json!(day()));
    assert_eq!(a[1]["complete_time"], json!(day() + 86399));
    assert!(
        a.iter().any(|r| r["refund_amount"].is_string()),
        "numbers as strings"
    );
    assert!(
        a.iter().any(|r| r.get("real_refund_amount").is_none()),
        "an absent amount"
    );
    let l = generate_ledger(DEFAULT_ACCOUNT_ID, "2026-11-24", day(), 30, 7);
    assert!(l.iter().any(|r| r["amount"]["goods"].is_string()));
    assert!(l.iter().any(|r| r["amount"].get("goods").is_none()));
    let ids: BTreeSet<&str> = l.iter().map(|r| r["ledger_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30);
}
