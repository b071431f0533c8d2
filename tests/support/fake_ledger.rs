//! The fake Douyin's refund and settlement-ledger endpoints (a child module of `fake_douyin`, so
//! that it shares the server's token, fault gate, logids and request log):
//!
//! * `GET /goodlife/v1/akte/after_sale/order/query/` (§8): refunds of an account whose
//!   `complete_time` lies in `refund_done_start_time..=refund_done_end_time` (the end bound follows
//!   the server's `end_inclusive`), sorted by (complete_time, after_sale_id), `page_size` 1–100,
//!   `cursor` "0" then the answer's `data.cursor`, `data.has_more`;
//! * `GET /goodlife/v1/settle/ledger/query/` (§9): ledger records of an account and a `bill_date`,
//!   sorted by ledger_id, `size` 1–50, the same cursor paging.
//!
//! Cursors are the sort key of the last record answered, so a record that changes or disappears
//! between pages shifts nothing. Each endpoint has its own QPS limit (2119003 past it), the
//! refunds endpoint a quota (2190001 / 28003017 after a number of answers), and the server-wide
//! faults (latency, busy, 502, cut bodies, token expiry) apply as for the order query. A hook may
//! change the data just before a page is computed (records that change between reads).

use super::{
    account_check, gate, lock, mix64, outcome_for, Arrival, FakeDouyin, Gate, Reply, Request,
    Shared, XorShift,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Path of the refund query (§8).
pub const REFUNDS_PATH: &str = "/goodlife/v1/akte/after_sale/order/query/";
/// Path of the settlement ledger query (§9).
pub const LEDGER_PATH: &str = "/goodlife/v1/settle/ledger/query/";
/// The refund query's largest `page_size`.
pub const MAX_REFUND_PAGE: usize = 100;
/// The ledger query's largest `size`.
pub const MAX_LEDGER_PAGE: usize = 50;

/// Faults of these two endpoints (the server-wide ones are in `Faults`).
#[derive(Clone, Debug, Default)]
pub struct LedgerFaults {
    /// More refund queries than this within the last 1000 ms → 2119003.
    pub refunds_qps_limit: Option<usize>,
    /// More ledger queries than this within the last 1000 ms → 2119003.
    pub ledger_qps_limit: Option<usize>,
    /// After this many answered refund queries, every refund query answers `quota_code`.
    pub refunds_quota: Option<usize>,
    /// 2190001 (default when 0) or 28003017.
    pub quota_code: i64,
    /// Every refund query answers this code.
    pub refunds_error: Option<i64>,
    /// Every ledger query answers this code.
    pub ledger_error: Option<i64>,
}

/// What a refund or ledger query asked for (given to the hook).
#[derive(Clone, Debug)]
pub enum LedgerQuery {
    Refunds {
        account_id: String,
        start: i64,
        end: i64,
        cursor: String,
    },
    Ledger {
        account_id: String,
        bill_date: String,
        cursor: String,
    },
}

/// The data of these endpoints, as the hook sees it.
#[derive(Default)]
pub struct LedgerData {
    /// Refunds, each as answered.
    pub refunds: Vec<Value>,
    /// (bill_date `YYYY-MM-DD`, record as answered).
    pub records: Vec<(String, Value)>,
}

/// Called for each refund / ledger query that passed the checks, before its page is computed.
pub type LedgerHook = Box<dyn FnMut(&LedgerQuery, &mut LedgerData) + Send>;

/// The state of these endpoints, a field of the server's shared state.
#[derive(Default)]
pub struct Ledger {
    state: Mutex<State>,
    hook: Mutex<Option<LedgerHook>>,
}

#[derive(Default)]
struct State {
    data: LedgerData,
    faults: LedgerFaults,
    refund_times: VecDeque<u64>,
    ledger_times: VecDeque<u64>,
    refunds_answered: usize,
}

impl FakeDouyin {
    /// Adds refunds (a refund with the `after_sale_id` of a stored one replaces it).
    pub fn add_refunds(&self, refunds: impl IntoIterator<Item = Value>) {
        let mut state = lock(&self.shared.ledger.state);
        for r in refunds {
            let id = key(&r, "after_sale_id");
            state.data.refunds.retain(|x| key(x, "after_sale_id") != id);
            state.data.refunds.push(r);
        }
    }

    /// Changes a stored refund; false when there is none with that id.
    pub fn update_refund(&self, after_sale_id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut state = lock(&self.shared.ledger.state);
        match state
            .data
            .refunds
            .iter_mut()
            .find(|r| key(r, "after_sale_id") == after_sale_id)
        {
            Some(r) => {
                f(r);
                true
            }
            None => false,
        }
    }

    pub fn refunds(&self) -> Vec<Value> {
        lock(&self.shared.ledger.state).data.refunds.clone()
    }

    /// Adds ledger records of a bill date (a record with the `ledger_id` of a stored one
    /// replaces it).
    pub fn add_ledger_records(&self, bill_date: &str, records: impl IntoIterator<Item = Value>) {
        let mut state = lock(&self.shared.ledger.state);
        for r in records {
            let id = key(&r, "ledger_id");
            state
                .data
                .records
                .retain(|(_, x)| key(x, "ledger_id") != id);
            state.data.records.push((bill_date.to_string(), r));
        }
    }

    /// Removes a ledger record (the platform dropped or reversed it); false when absent.
    pub fn remove_ledger_record(&self, ledger_id: &str) -> bool {
        let mut state = lock(&self.shared.ledger.state);
        let before = state.data.records.len();
        state
            .data
            .records
            .retain(|(_, x)| key(x, "ledger_id") != ledger_id);
        state.data.records.len() != before
    }

    /// Changes a stored ledger record; false when there is none with that id.
    pub fn update_ledger_record(&self, ledger_id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut state = lock(&self.shared.ledger.state);
        match state
            .data
            .records
            .iter_mut()
            .find(|(_, r)| key(r, "ledger_id") == ledger_id)
        {
            Some((_, r)) => {
                f(r);
                true
            }
            None => false,
        }
    }

    /// (bill_date, record) of every stored ledger record.
    pub fn ledger_records(&self) -> Vec<(String, Value)> {
        lock(&self.shared.ledger.state).data.records.clone()
    }

    pub fn set_ledger_faults(&self, faults: LedgerFaults) {
        let mut state = lock(&self.shared.ledger.state);
        state.faults = faults;
        state.refunds_answered = 0;
    }

    pub fn set_ledger_hook(&self, hook: Option<LedgerHook>) {
        *lock(&self.shared.ledger.hook) = hook;
    }
}

/// An id field as text (numbers stringified), "" when absent.
fn key(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// An integer field that may be a number or a numeric string; 0 when absent or odd.
fn int(v: &Value, field: &str) -> i64 {
    match v.get(field) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The router's entry for both paths.
pub(super) fn handle(
    shared: &Shared,
    req: &Request,
    path: &str,
    params: &BTreeMap<String, String>,
    arrival: &Arrival,
) -> (Reply, String) {
    let faults = &arrival.faults;
    let refunds = path == REFUNDS_PATH;
    // The QPS window counts arrivals, as the order query's does.
    let (over_qps, lf) = {
        let at_ms = lock(&shared.ctl)
            .requests
            .get(arrival.index)
            .map_or(0, |r| r.at_ms);
        let mut state = lock(&shared.ledger.state);
        let lf = state.faults.clone();
        let (times, limit) = if refunds {
            (&mut state.refund_times, lf.refunds_qps_limit)
        } else {
            (&mut state.ledger_times, lf.ledger_qps_limit)
        };
        times.push_back(at_ms);
        while times.front().is_some_and(|&t| t + 1000 <= at_ms) {
            times.pop_front();
        }
        (limit.is_some_and(|l| times.len() > l), lf)
    };
    let (cut, token) = match gate(shared, req, arrival, false, None) {
        Gate::Pass { cut, token } => (cut, token),
        Gate::Stop(reply, outcome) => return (reply, outcome),
    };
    let fail = |code: i64| {
        let mut reply = Reply::json(shared.error_body(faults.error_in, code));
        reply.cut = cut;
        (reply, outcome_for(code))
    };
    if over_qps {
        return fail(2119003);
    }
    let forced = if refunds {
        lf.refunds_error
    } else {
        lf.ledger_error
    };
    if let Some(code) = forced {
        return fail(code);
    }
    if refunds {
        let state = lock(&shared.ledger.state);
        if lf
            .refunds_quota
            .is_some_and(|q| state.refunds_answered >= q)
        {
            let code = if lf.quota_code == 0 {
                2190001
            } else {
                lf.quota_code
            };
            drop(state);
            let mut reply = Reply::json(shared.error_body(faults.error_in, code));
            reply.cut = cut;
            return (reply, format!("quota {code}"));
        }
    }
    if let Some(account) = params.get("account_id") {
        if let Some(code) = account_check(shared, faults, account) {
            return fail(code);
        }
    }
    let query = match parse(refunds, params) {
        Ok(q) => q,
        Err(_) => return fail(2100005),
    };
    let data = {
        let mut hook = lock(&shared.ledger.hook);
        let mut state = lock(&shared.ledger.state);
        if let Some(h) = hook.as_mut() {
            h(&query.query, &mut state.data);
        }
        if refunds {
            state.refunds_answered += 1;
        }
        answer(&state.data, &query, shared.end_inclusive)
    };
    if let Some(t) = lock(&shared.ctl)
        .tokens
        .iter_mut()
        .find(|t| t.token == token)
    {
        t.answered += 1;
    }
    let body = json!({"data": data, "extra": shared.extra_ok()});
    let mut reply = Reply::json(body.to_string());
    reply.cut = cut;
    (reply, "ok".to_string())
}

struct Parsed {
    query: LedgerQuery,
    size: usize,
}

fn parse(refunds: bool, params: &BTreeMap<String, String>) -> Result<Parsed, String> {
    let required = |k: &str| {
        params
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(format!("{k} is required"))
    };
    let account_id = required("account_id")?;
    let cursor = required("cursor")?;
    let (size_key, max) = if refunds {
        ("page_size", MAX_REFUND_PAGE)
    } else {
        ("size", MAX_LEDGER_PAGE)
    };
    let size: usize = required(size_key)?
        .parse()
        .map_err(|_| format!("{size_key} is not an integer"))?;
    if !(1..=max).contains(&size) {
        return Err(format!("{size_key} must be in 1..={max}"));
    }
    let query = if refunds {
        let time = |k: &str| -> Result<i64, String> {
            required(k)?
                .parse()
                .map_err(|_| format!("{k} is not an integer"))
        };
        let start = time("refund_done_start_time")?;
        let end = time("refund_done_end_time")?;
        if cursor != "0" && cursor.split_once('_').is_none() {
            return Err("cursor is not one this server gave".into());
        }
        LedgerQuery::Refunds {
            account_id,
            start,
            end,
            cursor,
        }
    } else {
        let bill_date = required("bill_date")?;
        let b = bill_date.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err("bill_date is not YYYY-MM-DD".into());
        }
        LedgerQuery::Ledger {
            account_id,
            bill_date,
            cursor,
        }
    };
    Ok(Parsed { query, size })
}

/// `data` of a successful answer.
fn answer(data: &LedgerData, parsed: &Parsed, end_inclusive: bool) -> Value {
    match &parsed.query {
        LedgerQuery::Refunds {
            account_id,
            start,
            end,
            cursor,
        } => {
            let after = cursor
                .split_once('_')
                .map(|(t, id)| (t.parse::<i64>().unwrap_or(i64::MIN), id.to_string()));
            let mut matching: Vec<(i64, String, &Value)> = data
                .refunds
                .iter()
                .filter(|r| key(r, "merchant_account_id") == *account_id)
                .map(|r| (int(r, "complete_time"), key(r, "after_sale_id"), r))
                .filter(|(t, _, _)| {
                    *t > 0 && *t >= *start && (*t < *end || (end_inclusive && *t == *end))
                })
                .filter(|(t, id, _)| after.as_ref().is_none_or(|a| (*t, id.clone()) > *a))
                .collect();
            matching.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let has_more = matching.len() > parsed.size;
            matching.truncate(parsed.size);
            let next = matching
                .last()
                .map_or_else(|| cursor.clone(), |(t, id, _)| format!("{t}_{id}"));
            let list: Vec<Value> = matching.into_iter().map(|(_, _, r)| r.clone()).collect();
            json!({"after_sale_order_list": list, "cursor": next, "has_more": has_more,
                   "error_code": 0, "description": ""})
        }
        LedgerQuery::Ledger {
            account_id,
            bill_date,
            cursor,
        } => {
            let mut matching: Vec<(String, &Value)> = data
                .records
                .iter()
                .filter(|(d, r)| d == bill_date && key(r, "account_id") == *account_id)
                .map(|(_, r)| (key(r, "ledger_id"), r))
                .filter(|(id, _)| cursor == "0" || id.as_str() > cursor.as_str())
                .collect();
            matching.sort_by(|a, b| a.0.cmp(&b.0));
            let has_more = matching.len() > parsed.size;
            matching.truncate(parsed.size);
            let next = matching
                .last()
                .map_or_else(|| cursor.clone(), |(id, _)| id.clone());
            let list: Vec<Value> = matching.into_iter().map(|(_, r)| r.clone()).collect();
            json!({"ledger_records": list, "cursor": next, "has_more": has_more,
                   "error_code": 0, "description": ""})
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// A 19-digit id from a hash of its parts.
fn id19(parts: &[&str]) -> String {
    let mut h = 0x5EED_u64;
    for p in parts {
        for b in p.bytes() {
            h = mix64(h ^ u64::from(b));
        }
        h = mix64(h ^ 0xFF);
    }
    format!(
        "{}",
        1_000_000_000_000_000_000 + h % 8_000_000_000_000_000_000
    )
}

/// `merchant_account_id` as the API sends it: an int64 (a non-numeric account stays a string).
fn account_number(account_id: &str) -> Value {
    account_id
        .parse::<i64>()
        .map_or_else(|_| json!(account_id), |n| json!(n))
}

/// `count` refunds of `account_id` completed inside the UTC+8 day starting at `day_start`,
/// deterministic for (account, day, count, seed). Lenient shapes on purpose: every 7th has its
/// amounts as numeric strings, every 11th has no `real_refund_amount`, every 5th is of a refund
/// that failed (59); all carry fields the job does not read. With `count ≥ 2`, refund 0 completes
/// at exactly `day_start` and refund 1 at `day_start + 86399`.
pub fn generate_refunds(account_id: &str, day_start: i64, count: usize, seed: u64) -> Vec<Value> {
    let mut rng = XorShift::new(seed ^ mix64(day_start as u64) ^ 0x2EF0);
    (0..count)
        .map(|i| {
            let tag = [
                account_id,
                &day_start.to_string(),
                &seed.to_string(),
                &i.to_string(),
            ];
            let complete = match i {
                0 => day_start,
                1 if count >= 2 => day_start + 86399,
                _ => day_start + rng.below(86400) as i64,
            };
            let amount = 100 + rng.below(50_000) as i64;
            let fen = |n: i64| {
                if i % 7 == 3 {
                    json!(n.to_string())
                } else {
                    json!(n)
                }
            };
            let mut r = json!({
                "after_sale_id": id19(&[&tag.join("/"), "after_sale"]),
                "order_id": id19(&[&tag.join("/"), "order"]),
                "status": if i % 5 == 4 { 59 } else { 50 },
                "refund_type": 1 + (i % 2) as i64,
                "trade_type": 1,
                "order_type": 0,
                "merchant_account_id": account_number(account_id),
                "create_time": complete - 3600,
                "update_time": complete,
                "audit_time": if i % 3 == 0 { json!(0) } else { json!(complete - 60) },
                "complete_time": complete,
                "refund_amount": fen(amount),
                "total_refund_amount": fen(amount),
                "user_refund_amount": fen(amount),
                "real_refund_amount": fen(amount - amount / 10),
                "deduct_fee_amount": 0,
                "audit_result": 1,
                "reject_reason": if i % 5 == 4 { "银行卡异常 (card refused)" } else { "" },
                "reason": {"code": 3, "desc": "买多了/买错了"},
                "refund_info_list": [{
                    "refund_id": id19(&[&tag.join("/"), "refund"]),
                    "certificate_id": id19(&[&tag.join("/"), "certificate"]),
                    "order_item_id": id19(&[&tag.join("/"), "item"]),
                    "refund_status": 1,
                    "refund_amount": amount,
                }],
            });
            if i % 11 == 5 {
                if let Some(o) = r.as_object_mut() {
                    o.remove("real_refund_amount");
                }
            }
            r
        })
        .collect()
}

/// `count` ledger records of `account_id` booked on `bill_date` (`YYYY-MM-DD`, whose UTC+8
/// midnight is `day_start`), deterministic. Every 5th has its amounts as numeric strings, every
/// 13th has no `amount.goods`, all carry `order_attrribute` (sic) and fields the job does not read.
pub fn generate_ledger(
    account_id: &str,
    bill_date: &str,
    day_start: i64,
    count: usize,
    seed: u64,
) -> Vec<Value> {
    let mut rng = XorShift::new(seed ^ mix64(day_start as u64) ^ 0x1ED6);
    (0..count)
        .map(|i| {
            let tag = format!("{account_id}/{bill_date}/{seed}/{i}");
            let original = 1000 + rng.below(50_000) as i64;
            let pay = original - original / 5;
            let goods = pay - pay * 6 / 100;
            let fen = |n: i64| if i % 5 == 2 { json!(n.to_string()) } else { json!(n) };
            let mut amount = json!({
                "original": fen(original),
                "pay": fen(pay),
                "coupon_pay": fen(pay),
                "merchant_ticket": fen(0),
                "goods": fen(goods),
                "actual_insured": 0,
            });
            if i % 13 == 7 {
                if let Some(o) = amount.as_object_mut() {
                    o.remove("goods");
                }
            }
            json!({
                "ledger_id": format!("l_r_b{}", id19(&[&tag, "ledger"])),
                "id": id19(&[&tag, "id"]),
                "account_id": account_id,
                "order_id": id19(&[&tag, "order"]),
                "item_order_id": id19(&[&tag, "item"]),
                "sku_order_id": id19(&[&tag, "sku_order"]),
                "poi_id": "7100000000000000101",
                "ledger_time": day_start + rng.below(86400) as i64,
                "status": 1,
                "receipt_bill_key": format!("rbk_{i}"),
                "certificate": {"certificate_id": id19(&[&tag, "certificate"]), "code": id19(&[&tag, "code"])[..12].to_string()},
                "goods": {"group_name": "示例团购 · Demo set", "sku_id": "1760543044430907", "sold_start_time": 0},
                "amount": amount,
                "order_attrribute": {"room_id": "", "source": 2},
            })
        })
        .collect()
}
