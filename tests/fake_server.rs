//! HTTP-level tests of the fake Douyin Open Platform server (`tests/support/fake_douyin.rs`) and
//! of its order generator.
// Tests unwrap freely: a panic with its message is exactly the failure report wanted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
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

fn parse(resp: ureq::Response) -> Value {
    let text = resp.into_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn post(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &Value) -> Value {
    let mut req = agent.post(url).set("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    parse(req.send_string(&body.to_string()).unwrap())
}

fn token_response(agent: &ureq::Agent, server: &FakeDouyin, body: &Value) -> Value {
    post(
        agent,
        &format!("{}{TOKEN_PATH}", server.base_url()),
        &[],
        body,
    )
}

fn good_token_body() -> Value {
    json!({"client_key": DEFAULT_APP_ID, "client_secret": DEFAULT_APP_SECRET, "grant_type": "client_credential"})
}

fn token(agent: &ureq::Agent, server: &FakeDouyin) -> String {
    let v = token_response(agent, server, &good_token_body());
    v["data"]["access_token"].as_str().unwrap().to_string()
}

// ureq's own result type, handed back as is so that tests can match on `Error::Status`.
#[allow(clippy::result_large_err)]
fn query_raw(
    agent: &ureq::Agent,
    server: &FakeDouyin,
    token: Option<&str>,
    params: &[(&str, String)],
) -> Result<ureq::Response, ureq::Error> {
    let mut req = agent.get(&format!("{}{ORDER_QUERY_PATH}", server.base_url()));
    if let Some(t) = token {
        req = req.set("access-token", t);
    }
    for (k, v) in params {
        req = req.query(k, v);
    }
    req.call()
}

fn query(
    agent: &ureq::Agent,
    server: &FakeDouyin,
    token: Option<&str>,
    params: &[(&str, String)],
) -> Value {
    parse(query_raw(agent, server, token, params).unwrap())
}

fn as_int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        _ => 0,
    }
}

/// The error code of a response, wherever it is.
fn code(v: &Value) -> i64 {
    let d = as_int(&v["data"]["error_code"]);
    if d != 0 {
        d
    } else {
        as_int(&v["extra"]["error_code"])
    }
}

fn p(k: &'static str, v: impl ToString) -> (&'static str, String) {
    (k, v.to_string())
}

fn page_params(page_num: u64, page_size: u64) -> Vec<(&'static str, String)> {
    vec![
        p("account_id", DEFAULT_ACCOUNT_ID),
        p("page_num", page_num),
        p("page_size", page_size),
        p("create_order_start_time", day()),
        p("create_order_end_time", day() + 86399),
    ]
}

fn ids_of(v: &Value) -> Vec<String> {
    v["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect()
}

fn order_at(id: &str, create: i64, update: i64, status: i64) -> Value {
    json!({"order_id": id, "order_status": status, "create_order_time": create, "update_order_time": update, "pay_amount": 100})
}

// ------------------------------------------------------------------------------------------
// Token endpoint

#[test]
fn a_token_request_with_the_right_credentials_gets_a_long_clt_token_for_7200_seconds() {
    let server = FakeDouyin::start(FakeConfig::default());
    let v = token_response(&agent(), &server, &good_token_body());
    assert_eq!(v["message"], "success");
    assert_eq!(v["data"]["error_code"], 0);
    assert_eq!(v["data"]["description"], "");
    assert_eq!(v["data"]["expires_in"], 7200);
    let t = v["data"]["access_token"].as_str().unwrap();
    assert!(t.starts_with("clt.fake"), "{t}");
    assert!(t.len() >= 50, "{t}");
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.valid_tokens(), vec![t.to_string()]);
    assert_eq!(server.requests()[0].outcome, "ok");
}

#[test]
fn a_token_request_with_an_unknown_client_key_gets_10003() {
    let server = FakeDouyin::start(FakeConfig::default());
    let v = token_response(
        &agent(),
        &server,
        &json!({"client_key": "tt_other", "client_secret": DEFAULT_APP_SECRET, "grant_type": "client_credential"}),
    );
    assert_eq!(v["data"]["error_code"], 10003);
    assert_eq!(v["message"], "error");
    assert!(v["data"].get("access_token").is_none());
}

#[test]
fn a_token_request_with_a_wrong_secret_gets_10013() {
    let server = FakeDouyin::start(FakeConfig::default());
    let v = token_response(
        &agent(),
        &server,
        &json!({"client_key": DEFAULT_APP_ID, "client_secret": "wrong", "grant_type": "client_credential"}),
    );
    assert_eq!(v["data"]["error_code"], 10013);
    assert_eq!(server.requests()[0].outcome, "token error 10013");
}

#[test]
fn a_token_request_without_or_with_an_odd_grant_type_gets_10002() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let missing = json!({"client_key": DEFAULT_APP_ID, "client_secret": DEFAULT_APP_SECRET});
    let odd = json!({"client_key": DEFAULT_APP_ID, "client_secret": DEFAULT_APP_SECRET, "grant_type": "authorization_code"});
    assert_eq!(
        token_response(&a, &server, &missing)["data"]["error_code"],
        10002
    );
    assert_eq!(
        token_response(&a, &server, &odd)["data"]["error_code"],
        10002
    );
    assert_eq!(
        token_response(&a, &server, &json!("garbage"))["data"]["error_code"],
        10002
    );
    assert_eq!(server.token_calls(), 3);
    assert!(server.valid_tokens().is_empty());
}

#[test]
fn only_the_two_newest_tokens_stay_valid() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.seed_day(DEFAULT_ACCOUNT_ID, day(), 3, 1);
    let a = agent();
    let t1 = token(&a, &server);
    let t2 = token(&a, &server);
    let t3 = token(&a, &server);
    assert!(t1 != t2 && t2 != t3);
    assert_eq!(
        code(&query(&a, &server, Some(&t1), &page_params(1, 10))),
        2190002
    );
    assert_eq!(code(&query(&a, &server, Some(&t2), &page_params(1, 10))), 0);
    assert_eq!(code(&query(&a, &server, Some(&t3), &page_params(1, 10))), 0);
}

#[test]
fn the_token_error_fault_answers_its_code_and_numeric_strings_are_strings() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    server.set_faults(Faults {
        numeric_strings: true,
        ..Faults::default()
    });
    let v = token_response(&a, &server, &good_token_body());
    assert_eq!(v["data"]["error_code"], "0");
    assert_eq!(v["data"]["expires_in"], "7200");
    server.set_faults(Faults {
        token_error: Some(10013),
        ..Faults::default()
    });
    let v = token_response(&a, &server, &good_token_body());
    assert_eq!(v["data"]["error_code"], 10013);
    assert_eq!(server.token_calls(), 2);
}

// ------------------------------------------------------------------------------------------
// Order query

#[test]
fn a_query_pages_through_a_window_in_time_order_and_reports_the_total() {
    let server = FakeDouyin::start(FakeConfig::default());
    let generated = server.seed_day(DEFAULT_ACCOUNT_ID, day(), 250, 7);
    // Orders of the previous and next day and of another account stay out.
    server.seed_day(DEFAULT_ACCOUNT_ID, day() - 86400, 5, 7);
    server.seed_day(DEFAULT_ACCOUNT_ID, day() + 86400, 5, 7);
    server.seed_day("7000000000000000002", day(), 5, 7);
    let a = agent();
    let t = token(&a, &server);
    let mut seen = Vec::new();
    let mut logids = HashSet::new();
    for (page, expected) in [(1, 100), (2, 100), (3, 50), (4, 0)] {
        let v = query(&a, &server, Some(&t), &page_params(page, 100));
        assert_eq!(code(&v), 0);
        assert_eq!(v["data"]["description"], "");
        assert_eq!(v["extra"]["sub_error_code"], 0);
        assert_eq!(
            v["data"]["page"],
            json!({"page_num": page, "page_size": 100, "total": 250})
        );
        let orders = v["data"]["orders"].as_array().unwrap();
        assert_eq!(orders.len(), expected);
        if let Some(last) = orders.last() {
            assert_eq!(
                v["data"]["search_after"]["CursorValue"],
                json!([last["create_order_time"].to_string(), last["order_id"]])
            );
            assert_eq!(v["data"]["search_after"]["Size"], 100);
            assert_eq!(
                v["data"]["search_after"]["AllCursorValue"]
                    .as_array()
                    .unwrap()
                    .len(),
                expected
            );
        }
        let logid = v["extra"]["logid"].as_str().unwrap().to_string();
        assert_eq!(logid.len(), 34, "{logid}");
        assert!(logids.insert(logid));
        assert!(v["extra"]["now"].as_i64().unwrap() > 1_700_000_000);
        seen.extend(orders.iter().cloned());
    }
    let keys: Vec<(i64, String)> = seen
        .iter()
        .map(|o| {
            (
                o["create_order_time"].as_i64().unwrap(),
                o["order_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by (create_order_time, order_id)");
    let got: BTreeSet<String> = keys.into_iter().map(|k| k.1).collect();
    let want: BTreeSet<String> = generated.iter().map(|g| g.order_id()).collect();
    assert_eq!(got, want);
    // Served exactly as stored.
    let stored = server.orders();
    for o in &seen {
        assert!(stored.contains(o));
    }
}

#[test]
fn update_time_and_order_status_filters_select_the_right_orders() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.seed_day(DEFAULT_ACCOUNT_ID, day(), 300, 3);
    let a = agent();
    let t = token(&a, &server);
    let (from, to) = (day() + 3 * 3600, day() + 9 * 3600);
    let v = query(
        &a,
        &server,
        Some(&t),
        &[
            p("account_id", DEFAULT_ACCOUNT_ID),
            p("page_num", 1),
            p("page_size", 100),
            p("update_order_start_time", from),
            p("update_order_end_time", to),
            p("order_status", 200),
            // Ignored when an update-time bound is present.
            p("create_order_start_time", 0),
            p("create_order_end_time", 0),
        ],
    );
    let mut want: Vec<(i64, String)> = server
        .orders()
        .iter()
        .filter(|o| {
            let u = o["update_order_time"].as_i64().unwrap();
            u >= from && u <= to && o["order_status"] == 200
        })
        .map(|o| {
            (
                o["update_order_time"].as_i64().unwrap(),
                o["order_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(v["data"]["page"]["total"], want.len());
    let want_ids: Vec<String> = want.into_iter().map(|w| w.1).collect();
    assert_eq!(ids_of(&v), want_ids);
}

#[test]
fn a_page_beyond_10000_rows_gets_2100005_and_so_do_bad_page_sizes() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(100, 100))),
        0
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(101, 100))),
        2100005
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(201, 50))),
        2100005
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 0))),
        2100005
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 101))),
        2100005
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(0, 10))),
        2100005
    );
    let v = query(
        &a,
        &server,
        Some(&t),
        &[
            p("account_id", DEFAULT_ACCOUNT_ID),
            p("page_num", "x"),
            p("page_size", 10),
        ],
    );
    assert_eq!(code(&v), 2100005);
    assert!(v["data"]["description"]
        .as_str()
        .unwrap()
        .contains("invalid parameter"));
    assert_eq!(server.requests().last().unwrap().outcome, "param 2100005");
}

#[test]
fn the_end_time_is_inclusive_or_exclusive_as_configured() {
    for inclusive in [true, false] {
        let server = FakeDouyin::start(FakeConfig {
            end_inclusive: inclusive,
            ..FakeConfig::default()
        });
        let end = day() + 3600;
        server.add_orders([
            order_at("1000000000000000001", day(), day(), 1),
            order_at("1000000000000000002", end - 1, end - 1, 1),
            order_at("1000000000000000003", end, end, 1),
            order_at("1000000000000000004", end + 1, end + 1, 1),
        ]);
        let a = agent();
        let t = token(&a, &server);
        for field in ["create", "update"] {
            let start_key = if field == "create" {
                "create_order_start_time"
            } else {
                "update_order_start_time"
            };
            let end_key = if field == "create" {
                "create_order_end_time"
            } else {
                "update_order_end_time"
            };
            let v = query(
                &a,
                &server,
                Some(&t),
                &[
                    p("account_id", DEFAULT_ACCOUNT_ID),
                    p("page_num", 1),
                    p("page_size", 10),
                    p(start_key, day()),
                    p(end_key, end),
                ],
            );
            let mut want = vec!["1000000000000000001", "1000000000000000002"];
            if inclusive {
                want.push("1000000000000000003");
            }
            assert_eq!(ids_of(&v), want, "inclusive={inclusive} field={field}");
        }
        // No time filter at all: everything.
        let v = query(
            &a,
            &server,
            Some(&t),
            &[
                p("account_id", DEFAULT_ACCOUNT_ID),
                p("page_num", 1),
                p("page_size", 10),
            ],
        );
        assert_eq!(v["data"]["page"]["total"], 4);
    }
}

#[test]
fn a_missing_token_header_gets_2190002_even_with_the_token_in_the_query_string() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    assert_eq!(
        code(&query(&a, &server, None, &page_params(1, 10))),
        2190002
    );
    let mut params = page_params(1, 10);
    params.push(p("access_token", &t));
    assert_eq!(code(&query(&a, &server, None, &params)), 2190002);
    assert_eq!(
        code(&query(
            &a,
            &server,
            Some("clt.not-a-token"),
            &page_params(1, 10)
        )),
        2190002
    );
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    let reqs = server.requests();
    assert_eq!(reqs[1].outcome, "invalid token 2190002");
    assert_eq!(reqs[2].params.get("access_token"), Some(&t));
    assert_eq!(reqs[4].access_token.as_deref(), Some(t.as_str()));
}

#[test]
fn a_token_expires_after_the_configured_number_of_answered_queries() {
    let server = FakeDouyin::start(FakeConfig {
        faults: Faults {
            expire_token_after: Some(3),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let a = agent();
    let t = token(&a, &server);
    for _ in 0..3 {
        assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    }
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 10))),
        28001008
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 10))),
        2190008
    );
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 10))),
        28001008
    );
    let t2 = token(&a, &server);
    assert_eq!(code(&query(&a, &server, Some(&t2), &page_params(1, 10))), 0);
    assert_eq!(
        code(&query(&a, &server, Some(&t), &page_params(1, 10))),
        2190008
    );
    let outcomes: Vec<String> = server.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes[4], "expired 28001008");
    assert_eq!(outcomes[5], "expired 2190008");
}

#[test]
fn the_qps_limit_answers_2119003_until_the_second_has_passed() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    server.set_faults(Faults {
        qps_limit: Some(3),
        ..Faults::default()
    });
    let codes: Vec<i64> = (0..6)
        .map(|_| code(&query(&a, &server, Some(&t), &page_params(1, 10))))
        .collect();
    // Normally all six arrive within a second: 0, 0, 0, then 2119003. On a very slow machine
    // the window may have moved on, so derive what is due from the recorded arrival times.
    let arrivals: Vec<u64> = server.requests()[1..].iter().map(|r| r.at_ms).collect();
    let due: Vec<i64> = (0..arrivals.len())
        .map(|k| {
            let in_window = arrivals[..=k]
                .iter()
                .filter(|&&x| x + 1000 > arrivals[k])
                .count();
            if in_window > 3 {
                2119003
            } else {
                0
            }
        })
        .collect();
    assert_eq!(codes, due);
    assert_eq!(&codes[..3], &[0, 0, 0]);
    assert_eq!(codes[3], 2119003);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    assert_eq!(server.requests()[4].outcome, "rate 2119003");
}

#[test]
fn a_cut_body_really_is_cut() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.seed_day(DEFAULT_ACCOUNT_ID, day(), 20, 1);
    let a = agent();
    let t = token(&a, &server);
    server.set_faults(Faults {
        cut_body_rate: 1.0,
        ..Faults::default()
    });
    let resp = query_raw(&a, &server, Some(&t), &page_params(1, 20)).unwrap();
    assert_eq!(resp.status(), 200);
    let declared: usize = resp.header("Content-Length").unwrap().parse().unwrap();
    match resp.into_string() {
        Err(_) => {}
        Ok(text) => {
            assert!(text.len() < declared);
            assert!(serde_json::from_str::<Value>(&text).is_err());
        }
    }
    assert_eq!(server.requests().last().unwrap().outcome, "cut");
    // The client recovers on a new connection once the fault is gone.
    server.set_faults(Faults::default());
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 20))), 0);
}

#[test]
fn the_502_fault_answers_http_502_with_an_html_body() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    server.set_faults(Faults {
        http_502_rate: 1.0,
        ..Faults::default()
    });
    match query_raw(&a, &server, Some(&t), &page_params(1, 10)) {
        Err(ureq::Error::Status(502, resp)) => {
            assert!(resp.into_string().unwrap().contains("502 Bad Gateway"));
        }
        other => panic!("expected a 502, got {other:?}"),
    }
    assert_eq!(server.requests().last().unwrap().outcome, "http 502");
}

#[test]
fn the_busy_fault_answers_busy_codes_placed_as_configured() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    for placement in [
        ErrorPlacement::Both,
        ErrorPlacement::Data,
        ErrorPlacement::Extra,
    ] {
        server.set_faults(Faults {
            busy_rate: 1.0,
            error_in: placement,
            ..Faults::default()
        });
        let mut codes = HashSet::new();
        for _ in 0..40 {
            let v = query(&a, &server, Some(&t), &page_params(1, 10));
            let c = code(&v);
            assert!(BUSY_CODES.contains(&c), "{v}");
            codes.insert(c);
            let (data, extra) = (&v["data"]["error_code"], &v["extra"]["error_code"]);
            match placement {
                ErrorPlacement::Both => assert!(*data == c && *extra == c),
                ErrorPlacement::Data => assert!(*data == c && *extra == 0),
                ErrorPlacement::Extra => {
                    assert!(data.is_null() && *extra == c && v["data"] == json!({}))
                }
            }
            assert!(v["extra"]["logid"].as_str().is_some());
            assert!(v["data"].get("orders").is_none());
        }
        assert!(codes.len() >= 3, "{codes:?}");
    }
    // Half the time: both outcomes occur.
    server.set_faults(Faults {
        busy_rate: 0.5,
        ..Faults::default()
    });
    let ok = (0..40)
        .filter(|_| code(&query(&a, &server, Some(&t), &page_params(1, 10))) == 0)
        .count();
    assert!((5..=35).contains(&ok), "{ok}");
}

#[test]
fn unauthorised_accounts_forced_account_codes_and_query_error_are_answered() {
    let server = FakeDouyin::start(FakeConfig {
        authorised_accounts: vec![DEFAULT_ACCOUNT_ID.into(), "7000000000000000002".into()],
        ..FakeConfig::default()
    });
    let a = agent();
    let t = token(&a, &server);
    let with_account = |acc: &str| {
        let mut params = page_params(1, 10);
        params[0] = p("account_id", acc);
        params
    };
    assert_eq!(
        code(&query(
            &a,
            &server,
            Some(&t),
            &with_account("7000000000000000009")
        )),
        2119005
    );
    server.set_faults(Faults {
        account_errors: vec![("7000000000000000002".into(), 28001014)],
        ..Faults::default()
    });
    assert_eq!(
        code(&query(
            &a,
            &server,
            Some(&t),
            &with_account("7000000000000000002")
        )),
        28001014
    );
    assert_eq!(
        code(&query(
            &a,
            &server,
            Some(&t),
            &with_account(DEFAULT_ACCOUNT_ID)
        )),
        0
    );
    server.set_faults(Faults {
        query_error: Some(2100005),
        ..Faults::default()
    });
    assert_eq!(
        code(&query(
            &a,
            &server,
            Some(&t),
            &with_account(DEFAULT_ACCOUNT_ID)
        )),
        2100005
    );
    // The token check comes first.
    assert_eq!(
        code(&query(&a, &server, None, &with_account(DEFAULT_ACCOUNT_ID))),
        2190002
    );
}

#[test]
fn queries_starting_inside_the_always_fail_window_always_get_2119002() {
    let server = FakeDouyin::start(FakeConfig {
        faults: Faults {
            always_fail_window: Some((day() + 3600, day() + 7200)),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let a = agent();
    let t = token(&a, &server);
    let at = |start: i64| {
        let v = query(
            &a,
            &server,
            Some(&t),
            &[
                p("account_id", DEFAULT_ACCOUNT_ID),
                p("page_num", 1),
                p("page_size", 10),
                p("update_order_start_time", start),
                p("update_order_end_time", start + 3599),
            ],
        );
        code(&v)
    };
    assert_eq!(at(day()), 0);
    assert_eq!(at(day() + 3600), 2119002);
    assert_eq!(at(day() + 3600), 2119002);
    assert_eq!(at(day() + 7199), 2119002);
    assert_eq!(at(day() + 7200), 0);
}

#[test]
fn a_search_after_cursor_continues_where_the_previous_page_ended() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.seed_day(DEFAULT_ACCOUNT_ID, day(), 250, 11);
    let a = agent();
    let t = token(&a, &server);
    let first = query(&a, &server, Some(&t), &page_params(1, 100));
    let second = query(&a, &server, Some(&t), &page_params(2, 100));
    let cursor = first["data"]["search_after"]["CursorValue"].clone();
    let cv: Vec<String> = cursor
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // Comma-joined, as a JSON array, and as repeated parameters: all mean the same.
    let mut comma = page_params(1, 100);
    comma.push(p("cursor", cv.join(",")));
    let mut array = page_params(1, 100);
    array.push(p("cursor", cursor.to_string()));
    let mut repeated = page_params(1, 100);
    repeated.push(p("cursor", &cv[0]));
    repeated.push(p("cursor", &cv[1]));
    for params in [comma, array, repeated] {
        let v = query(&a, &server, Some(&t), &params);
        assert_eq!(code(&v), 0);
        assert_eq!(ids_of(&v), ids_of(&second));
        assert_eq!(v["data"]["page"]["total"], 250);
    }
    // "0" means no cursor; with a cursor the 10000-row limit does not apply.
    let mut zero = page_params(1, 100);
    zero.push(p("cursor", "0"));
    assert_eq!(ids_of(&query(&a, &server, Some(&t), &zero)), ids_of(&first));
    let mut deep = page_params(500, 100);
    deep.push(p("cursor", cv.join(",")));
    assert_eq!(code(&query(&a, &server, Some(&t), &deep)), 0);
}

#[test]
fn the_hook_can_change_an_order_while_paging_and_update_order_changes_what_is_served() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.seed_day(DEFAULT_ACCOUNT_ID, day(), 30, 5);
    let a = agent();
    let t = token(&a, &server);
    let params = |page: u64| {
        vec![
            p("account_id", DEFAULT_ACCOUNT_ID),
            p("page_num", page),
            p("page_size", 10),
            p("update_order_start_time", day()),
            p("update_order_end_time", day() + 86399),
        ]
    };
    let page1 = ids_of(&query(&a, &server, Some(&t), &params(1)));
    let moved = page1[0].clone();
    let seen_infos = Arc::new(Mutex::new(Vec::new()));
    let infos = Arc::clone(&seen_infos);
    let target = moved.clone();
    let end = day() + 86399;
    server.set_hook(Some(Box::new(
        move |info: &QueryInfo, orders: &mut Vec<Value>| {
            infos.lock().unwrap().push(info.clone());
            if info.page_num == 2 {
                for o in orders
                    .iter_mut()
                    .filter(|o| o["order_id"] == target.as_str())
                {
                    o["update_order_time"] = json!(end);
                }
            }
        },
    )));
    let page2 = ids_of(&query(&a, &server, Some(&t), &params(2)));
    let page3 = ids_of(&query(&a, &server, Some(&t), &params(3)));
    server.set_hook(None);
    // The moved order went to the end (next to the order updated at 23:59:59); every later row shifted one page position earlier,
    // so offset paging missed one order, as it would on the real API.
    assert!(page3.contains(&moved));
    let all: HashSet<&String> = page1.iter().chain(&page2).chain(&page3).collect();
    assert_eq!(all.len(), 29);
    let infos = seen_infos.lock().unwrap();
    assert_eq!(infos.len(), 2);
    assert!(infos[0].by_update_time);
    assert_eq!((infos[0].page_num, infos[0].page_size), (2, 10));
    assert_eq!(
        (infos[0].start, infos[0].end),
        (Some(day()), Some(day() + 86399))
    );
    assert_eq!(infos[0].account_id, DEFAULT_ACCOUNT_ID);

    assert!(server.update_order(&moved, |o| o["order_status"] = json!(1)));
    assert!(!server.update_order("1", |_| {}));
    let v = query(
        &a,
        &server,
        Some(&t),
        &[
            p("account_id", DEFAULT_ACCOUNT_ID),
            p("page_num", 1),
            p("page_size", 10),
            p("order_id", &moved),
        ],
    );
    assert_eq!(ids_of(&v), vec![moved.clone()]);
    assert_eq!(v["data"]["orders"][0]["order_status"], 1);
}

// ------------------------------------------------------------------------------------------
// Decrypt endpoint

fn decrypt(
    a: &ureq::Agent,
    server: &FakeDouyin,
    token: &str,
    header_account: Option<&str>,
    body: &Value,
) -> Value {
    let mut headers = vec![("access-token", token)];
    if let Some(acc) = header_account {
        headers.push(("Rpc-Transit-Life-Account", acc));
    }
    post(
        a,
        &format!("{}{DECRYPT_PATH}", server.base_url()),
        &headers,
        body,
    )
}

#[test]
fn decrypt_shape_a_answers_every_cipher_with_is_success() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.register_platform_cipher("Enc.AAAA", "13800138000");
    let a = agent();
    let t = token(&a, &server);
    let v = decrypt(
        &a,
        &server,
        &t,
        Some(DEFAULT_ACCOUNT_ID),
        &json!({"account_id": DEFAULT_ACCOUNT_ID, "cipher_texts": ["Enc.AAAA", "Enc.BBBB"]}),
    );
    assert_eq!(code(&v), 0);
    assert_eq!(v["data"]["error_code"], 0);
    assert_eq!(
        v["data"]["results"],
        json!([
            {"cipher_text": "Enc.AAAA", "plain_text": "13800138000", "is_success": true, "error_msg": ""},
            {"cipher_text": "Enc.BBBB", "plain_text": "", "is_success": false, "error_msg": "decrypt failed: invalid cipher text"},
        ])
    );
    assert!(v["extra"]["logid"].as_str().is_some());
    // The other request key is accepted too, and both keys carrying the same list.
    let v = decrypt(
        &a,
        &server,
        &t,
        Some(DEFAULT_ACCOUNT_ID),
        &json!({"account_id": DEFAULT_ACCOUNT_ID, "encrypted_data_list": ["Enc.AAAA"]}),
    );
    assert_eq!(v["data"]["results"][0]["plain_text"], "13800138000");
    let v = decrypt(
        &a,
        &server,
        &t,
        Some(DEFAULT_ACCOUNT_ID),
        &json!({"account_id": DEFAULT_ACCOUNT_ID, "cipher_texts": ["Enc.AAAA"], "encrypted_data_list": ["Enc.AAAA"]}),
    );
    assert_eq!(v["data"]["results"][0]["is_success"], true);
}

#[test]
fn decrypt_shape_b_answers_only_the_ciphers_it_could_decrypt() {
    let server = FakeDouyin::start(FakeConfig {
        decrypt_shape: DecryptShape::B,
        ..FakeConfig::default()
    });
    server.register_platform_cipher("Enc.AAAA", "13800138000");
    let a = agent();
    let t = token(&a, &server);
    let v = decrypt(
        &a,
        &server,
        &t,
        Some(DEFAULT_ACCOUNT_ID),
        &json!({"account_id": DEFAULT_ACCOUNT_ID, "encrypted_data_list": ["Enc.BBBB", "Enc.AAAA"]}),
    );
    assert_eq!(code(&v), 0);
    assert_eq!(
        v["data"]["decrypted_data_list"],
        json!([{"encrypted_data": "Enc.AAAA", "decrypted_data": "13800138000"}])
    );
    assert!(v["data"].get("results").is_none());
}

#[test]
fn decrypt_rejects_big_batches_missing_headers_bad_tokens_and_unauthorised_accounts() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    let list = |n: usize| (0..n).map(|i| format!("Enc.{i}")).collect::<Vec<_>>();
    let body = |n: usize| json!({"account_id": DEFAULT_ACCOUNT_ID, "cipher_texts": list(n)});
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            &t,
            Some(DEFAULT_ACCOUNT_ID),
            &body(50)
        )),
        0
    );
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            &t,
            Some(DEFAULT_ACCOUNT_ID),
            &body(51)
        )),
        2100005
    );
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            &t,
            Some(DEFAULT_ACCOUNT_ID),
            &body(0)
        )),
        2100005
    );
    assert_eq!(code(&decrypt(&a, &server, &t, None, &body(1))), 2100005);
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            "clt.bad",
            Some(DEFAULT_ACCOUNT_ID),
            &body(1)
        )),
        2190002
    );
    let other = json!({"account_id": "7000000000000000009", "cipher_texts": ["Enc.1"]});
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            &t,
            Some("7000000000000000009"),
            &other
        )),
        2119005
    );
    let differing = json!({"account_id": DEFAULT_ACCOUNT_ID, "cipher_texts": ["Enc.1"], "encrypted_data_list": ["Enc.2"]});
    assert_eq!(
        code(&decrypt(
            &a,
            &server,
            &t,
            Some(DEFAULT_ACCOUNT_ID),
            &differing
        )),
        2100005
    );
    // Faults apply here too.
    server.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    assert!(BUSY_CODES.contains(&code(&decrypt(
        &a,
        &server,
        &t,
        Some(DEFAULT_ACCOUNT_ID),
        &body(1)
    ))));
}

#[test]
fn seed_day_compact_stores_the_same_orders_as_seed_day() {
    let big = FakeDouyin::start(FakeConfig::default());
    let small = FakeDouyin::start(FakeConfig::default());
    let full = big.seed_day(DEFAULT_ACCOUNT_ID, day(), 2500, 8);
    let compact = small.seed_day_compact(DEFAULT_ACCOUNT_ID, day(), 2500, 8);
    let expected: Vec<(String, Option<String>)> = full
        .iter()
        .map(|g| (g.order_id(), g.expected_phone.clone()))
        .collect();
    assert_eq!(compact, expected);
    assert_eq!(big.orders(), small.orders());
    assert_eq!(small.order(&compact[7].0), Some(full[7].json.clone()));
}

#[test]
fn seed_day_registers_every_platform_cipher_with_the_decrypt_endpoint() {
    let server = FakeDouyin::start(FakeConfig::default());
    let generated = server.seed_day(DEFAULT_ACCOUNT_ID, day(), 400, 2);
    let platform: Vec<(String, String)> = generated
        .iter()
        .filter_map(|g| g.platform_cipher.clone())
        .collect();
    assert!(platform.len() >= 10, "{}", platform.len());
    let a = agent();
    let t = token(&a, &server);
    for chunk in platform.chunks(50) {
        let ciphers: Vec<&String> = chunk.iter().map(|c| &c.0).collect();
        let v = decrypt(
            &a,
            &server,
            &t,
            Some(DEFAULT_ACCOUNT_ID),
            &json!({"account_id": DEFAULT_ACCOUNT_ID, "cipher_texts": ciphers}),
        );
        for (r, (_, plain)) in v["data"]["results"].as_array().unwrap().iter().zip(chunk) {
            assert_eq!(r["plain_text"], plain.as_str());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Transport

#[test]
fn busiest_second_counts_requests_in_a_sliding_one_second_window() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    for _ in 0..4 {
        query(&a, &server, Some(&t), &page_params(1, 10));
    }
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        query(&a, &server, Some(&t), &page_params(1, 10));
    }
    // The token call and the first four queries.
    assert_eq!(server.busiest_second(), 5);
    let times: Vec<u64> = server.requests().iter().map(|r| r.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn two_requests_over_one_agent_reuse_one_connection() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests().len(), 3);
    // `Connection: close` is honoured.
    let resp = a
        .get(&format!("{}{ORDER_QUERY_PATH}", server.base_url()))
        .set("Connection", "close")
        .call()
        .unwrap();
    assert_eq!(resp.header("Connection"), Some("close"));
    parse(resp);
    query(&a, &server, Some(&t), &page_params(1, 10));
    assert_eq!(server.connections(), 2);
}

#[test]
fn unknown_paths_and_methods_get_a_json_404() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    for result in [
        a.get(&format!("{}/goodlife/v1/nothing/", server.base_url()))
            .call(),
        a.get(&format!("{}{TOKEN_PATH}", server.base_url())).call(),
        a.get(&format!(
            "{}/goodlife/v1/trade/order/query",
            server.base_url()
        ))
        .call(),
    ] {
        match result {
            Err(ureq::Error::Status(404, resp)) => {
                let v = parse(resp);
                assert_eq!(v["message"], "not found");
            }
            other => panic!("expected a 404, got {other:?}"),
        }
    }
    assert!(server.requests().iter().all(|r| r.outcome == "not found"));
}

#[test]
fn latency_delays_order_queries() {
    let server = FakeDouyin::start(FakeConfig::default());
    let a = agent();
    let t = token(&a, &server);
    server.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(code(&query(&a, &server, Some(&t), &page_params(1, 10))), 0);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn a_silent_token_endpoint_holds_the_call_unanswered_until_the_fault_is_lifted() {
    let server = FakeDouyin::start(FakeConfig::default());
    server.set_faults(Faults {
        silent_token: true,
        ..Faults::default()
    });
    let impatient = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(800))
        .build();
    let started = Instant::now();
    let result = impatient
        .post(&format!("{}{TOKEN_PATH}", server.base_url()))
        .send_string(&good_token_body().to_string());
    assert!(
        matches!(result, Err(ureq::Error::Transport(_))),
        "answered: {result:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(server.requests()[0].outcome, "silent");
    server.set_faults(Faults::default());
    assert!(token(&agent(), &server).starts_with("clt."));
}

#[test]
fn dropping_the_server_stops_it() {
    let server = FakeDouyin::start(FakeConfig::default());
    let addr = server.addr();
    let a = agent();
    token(&a, &server);
    drop(server);
    std::thread::sleep(Duration::from_millis(50));
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

// ------------------------------------------------------------------------------------------
// Generator and §4 encryption

const VECTORS: [(&str, &str, &str); 8] = [
    (
        "0123456789abcdef0123456789abcdef",
        "12345678910",
        "tyUWQwYuUmVFJtElAL+D7Q==",
    ),
    (
        "00112233445566778899aabbccddeeff",
        "13800138000",
        "+UQEgOvlfeWm42nhvEgoGA==",
    ),
    (
        "abcdefghijklmnopqrstuvwxyz0123",
        "13800138000",
        "D0937w8CBHK3d27W+sRoxA==",
    ),
    (
        "abcdefghijklmnopqrstuvwxyz012",
        "13800138000",
        "wgHZQEfCl8Z9Mt3EuuYWPQ==",
    ),
    (
        "XYabcdefghijklmnopqrstuvwxyz012345Z",
        "13800138000",
        "o+M2s2GKWtIsYKYIGRUGFQ==",
    ),
    (
        "0123456789abcdefghijklmnopqrstuvwxyz",
        "13912345678",
        "JtPcAK4d7irOawRWCeV/LA==",
    ),
    (
        "00112233445566778899aabbccddeeff",
        "张三",
        "4ODU2KGQHr0Egc7WidCHvw==",
    ),
    (
        "00112233445566778899aabbccddeeff",
        "Enc-test-李四-0123456789",
        "YDXRQATYArkVz9ebmGGFfc5lgD11vTiGpVqWhyo2tmg=",
    ),
];

#[test]
fn compact_json_escapes_like_serde_json() {
    let v = json!({"s": "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f} é 🎉 \u{7f}", "n": [-1, 18446744073709551615u64, 2.5, 1e300, null, true, false], "o": {}});
    assert_eq!(compact_json(&v), v.to_string());
    let back: Value = serde_json::from_str(&compact_json(&v)).unwrap();
    assert_eq!(back, v);
}

#[test]
fn legacy_encryption_matches_the_section_4_test_vectors() {
    for (secret, plain, cipher) in VECTORS {
        assert_eq!(
            legacy_encrypt(secret, plain).as_deref(),
            Some(cipher),
            "{secret}"
        );
        assert_eq!(
            legacy_decrypt(secret, cipher).as_deref(),
            Some(plain),
            "{secret}"
        );
    }
    assert_eq!(
        normalise_secret("abcdefghijklmnopqrstuvwxyz012"),
        "##abcdefghijklmnopqrstuvwxyz012#"
    );
    assert_eq!(legacy_decrypt(DEFAULT_APP_SECRET, "not-base64!"), None);
    assert_eq!(legacy_decrypt(DEFAULT_APP_SECRET, "AQIDBAU="), None);
}

#[test]
fn generate_day_is_deterministic_with_unique_19_digit_ids_across_days_accounts_and_seeds() {
    let one = generate_day(DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_ID, day(), 300, 1);
    let again = generate_day(DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_ID, day(), 300, 1);
    assert_eq!(
        one.iter().map(|g| &g.json).collect::<Vec<_>>(),
        again.iter().map(|g| &g.json).collect::<Vec<_>>()
    );
    assert_eq!(
        one.iter().map(|g| &g.expected_phone).collect::<Vec<_>>(),
        again.iter().map(|g| &g.expected_phone).collect::<Vec<_>>()
    );
    let mut ids = HashSet::new();
    for (account, start, seed) in [
        (DEFAULT_ACCOUNT_ID, day(), 1),
        (DEFAULT_ACCOUNT_ID, day() + 86400, 1),
        ("7000000000000000002", day(), 1),
        (DEFAULT_ACCOUNT_ID, day(), 2),
    ] {
        for g in generate_day(DEFAULT_APP_SECRET, account, start, 300, seed) {
            let id = g.json["order_id"].as_str().unwrap().to_string();
            assert_eq!(id.len(), 19, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()));
            assert!(ids.insert(id));
            assert_eq!(g.json["account_id"], account);
        }
    }
    assert_eq!(ids.len(), 1200);
}

#[test]
fn generate_day_puts_orders_at_both_ends_of_the_day_and_keeps_updates_inside_it() {
    let orders = generate_day(DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_ID, day(), 500, 3);
    let creates: Vec<i64> = orders
        .iter()
        .map(|g| g.json["create_order_time"].as_i64().unwrap())
        .collect();
    assert!(creates.contains(&day()));
    assert!(creates.contains(&(day() + 86399)));
    let hours: HashSet<i64> = creates.iter().map(|c| (c - day()) / 3600).collect();
    assert_eq!(hours.len(), 24, "spread over the day");
    for g in &orders {
        let o = &g.json;
        let (c, u, pay) = (
            o["create_order_time"].as_i64().unwrap(),
            o["update_order_time"].as_i64().unwrap(),
            o["pay_time"].as_i64().unwrap(),
        );
        assert!((day()..day() + 86400).contains(&c));
        assert!(u >= c && u <= c + 3600 && u < day() + 86400);
        let status = o["order_status"].as_i64().unwrap();
        if status == 100 || status == 101 {
            assert_eq!(pay, 0);
        } else {
            assert!(pay >= c && pay <= u);
        }
        let n = o["count"].as_i64().unwrap();
        assert!((1..=3).contains(&n));
        assert_eq!(o["certificate"].as_array().unwrap().len() as i64, n);
    }
    let single = generate_day(DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_ID, day(), 1, 3);
    assert_eq!(single.len(), 1);
}

#[test]
fn generated_legacy_phone_encrypt_decrypts_back_with_the_section_4_algorithm() {
    let secret = "abcdefghijklmnopqrstuvwxyz012"; // 29 characters: normalisation matters
    let orders = generate_day(secret, DEFAULT_ACCOUNT_ID, day(), 400, 9);
    let mut legacy = 0;
    for g in &orders {
        let contacts = g.json["contacts"].as_array().unwrap();
        let enc = contacts.first().and_then(|c| c["phone_encrypt"].as_str());
        match (enc, &g.expected_phone, &g.platform_cipher) {
            (Some(e), Some(phone), None) => {
                legacy += 1;
                assert_eq!(legacy_decrypt(secret, e).as_ref(), Some(phone));
                let masked = contacts[0]["phone"].as_str().unwrap();
                assert_eq!(masked, format!("{}****{}", &phone[..3], &phone[7..]));
            }
            (Some(e), Some(phone), Some((cipher, plain))) => {
                assert!(e.starts_with("Enc."));
                assert_eq!((e, phone), (cipher.as_str(), plain));
            }
            (Some(e), None, None) => assert_eq!(legacy_decrypt(secret, e), None, "{e}"),
            (None, None, None) => {}
            other => panic!("inconsistent generated contact: {other:?}"),
        }
    }
    assert!(legacy > 250, "{legacy}");
}

#[test]
fn generated_orders_mix_the_awkward_cases_a_client_must_handle() {
    let orders = generate_day(DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_ID, day(), 2000, 4);
    let count = |f: &dyn Fn(&Value) -> bool| orders.iter().filter(|g| f(&g.json)).count();
    for status in [1, 200, 201, 100, 101] {
        assert!(
            count(&|o| o["order_status"] == status) > 100,
            "status {status}"
        );
    }
    let string_pay = count(&|o| o["pay_amount"].is_string());
    assert!((100..=300).contains(&string_pay), "{string_pay}");
    let no_sku = count(&|o| o.get("sku_id").is_none());
    assert!((100..=300).contains(&no_sku), "{no_sku}");
    assert!(
        count(&|o| o.get("sku_id").is_none() && o["products"][0]["sku_id"].is_string()) == no_sku
    );
    let no_source = count(&|o| o.get("source_order_id").is_none());
    assert!((250..=550).contains(&no_source), "{no_source}");
    for odd in ['\t', '\n', '\\', '"', '🎉'] {
        assert!(
            count(&|o| o["sku_name"].as_str().unwrap().contains(odd)) > 0,
            "{odd:?}"
        );
    }
    assert!(
        count(&|o| o["sku_name"]
            .as_str()
            .unwrap()
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
            > 1000
    );
    let empty_contacts = count(&|o| o["contacts"].as_array().unwrap().is_empty());
    assert!((20..=110).contains(&empty_contacts), "{empty_contacts}");
    let no_encrypt = count(&|o| {
        o["contacts"]
            .get(0)
            .is_some_and(|c| c.get("phone_encrypt").is_none())
    });
    assert!((50..=200).contains(&no_encrypt), "{no_encrypt}");
    let platform = orders
        .iter()
        .filter(|g| g.platform_cipher.is_some())
        .count();
    assert!((120..=300).contains(&platform), "{platform}");
    let garbage = orders
        .iter()
        .filter(|g| {
            g.expected_phone.is_none() && g.json["contacts"][0]["phone_encrypt"].is_string()
        })
        .count();
    assert!((15..=80).contains(&garbage), "{garbage}");
    for g in &orders {
        let o = &g.json;
        // The server's own serializer (used for speed) writes exactly what serde_json writes.
        assert_eq!(compact_json(o), o.to_string());
        for key in [
            "open_id",
            "poi",
            "amount_info",
            "products",
            "trade_channel_tag",
        ] {
            assert!(o.get(key).is_some(), "{key}");
        }
        let pay = as_int(&o["pay_amount"]);
        let (orig, disc) = (
            o["original_amount"].as_i64().unwrap(),
            o["discount_amount"].as_i64().unwrap(),
        );
        assert_eq!(pay, orig - disc);
        assert!(o["receipt_amount"].as_i64().unwrap() <= pay);
        for c in o["certificate"].as_array().unwrap() {
            assert!(c["certificate_id"].is_string());
            assert!(c["item_status"].is_i64());
            assert_eq!(c["item_update_time"], o["update_order_time"]);
        }
    }
}
