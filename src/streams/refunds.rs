//! Stream `refunds`: Douyin's after-sale (退款) orders, `GET /goodlife/v1/akte/after_sale/order/query/`
//! (douyin-api.md §8), into the table `refunds`.
//!
//! A day is asked by refund completion time (`refund_done_start_time` / `refund_done_end_time`),
//! paged by the answer's `data.cursor` while `data.has_more` (`page_size` ≤ 100). Rows are
//! upserted by `after_sale_id`. This file owns what differs about refunds: the request, the
//! answer's shape and how a record becomes a row.

use crate::lenient::{epoch, int, text};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The endpoint's path.
pub const PATH: &str = "/goodlife/v1/akte/after_sale/order/query/";
/// The largest `page_size` the endpoint takes.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Documented limit: 10 requests a second per developer (§10).
pub const DOCUMENTED_QPS: u32 = 10;
/// Default budget: safely under the documented 10/s, which the developer's other tools share.
pub const DEFAULT_QPS: u32 = 8;

/// One refund as the `refunds` table stores it.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub after_sale_id: String,
    pub order_id: Option<String>,
    /// `merchant_account_id` (an int64 in the API) as text, else the account queried.
    pub account_id: String,
    pub status: Option<i64>,
    pub refund_type: Option<i64>,
    /// Epoch seconds; `None` when absent or 0.
    pub create_time: Option<i64>,
    pub update_time: Option<i64>,
    pub audit_time: Option<i64>,
    pub complete_time: Option<i64>,
    /// Fen, as the API gives them; stored as yuan.
    pub refund_amount: Option<i64>,
    pub total_refund_amount: Option<i64>,
    pub real_refund_amount: Option<i64>,
    pub reject_reason: Option<String>,
    /// The record exactly as received.
    pub raw: Box<RawValue>,
}

/// The query string of one request: a completion-time window `[start, end]` (the end bound's
/// inclusiveness is undocumented: the next day starts where this one ends, and the upsert makes
/// the shared second harmless), `cursor` "0" first.
pub fn params(
    account_id: &str,
    start: i64,
    end: i64,
    cursor: &str,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("account_id", account_id.to_string()),
        ("refund_done_start_time", start.to_string()),
        ("refund_done_end_time", end.to_string()),
        ("cursor", cursor.to_string()),
        ("page_size", page_size.min(MAX_PAGE_SIZE).to_string()),
    ]
}

/// `data` of an answer: the records as received and where paging goes next.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub after_sale_order_list: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    cursor: Option<Value>,
    #[serde(default)]
    has_more: Option<Value>,
}

impl Page {
    /// The next request's cursor: `data.cursor`, a string or a number.
    pub fn cursor(&self) -> Option<String> {
        text(self.cursor.as_ref())
    }

    /// `data.has_more`, as a bool, 0/1 or a string; `None` when absent or unreadable.
    pub fn has_more(&self) -> Option<bool> {
        crate::lenient::boolean(self.has_more.as_ref())
    }

    pub fn records(self) -> Vec<Box<RawValue>> {
        self.after_sale_order_list.unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    after_sale_id: Option<Value>,
    #[serde(default)]
    order_id: Option<Value>,
    #[serde(default)]
    merchant_account_id: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    refund_type: Option<Value>,
    #[serde(default)]
    create_time: Option<Value>,
    #[serde(default)]
    update_time: Option<Value>,
    #[serde(default)]
    audit_time: Option<Value>,
    #[serde(default)]
    complete_time: Option<Value>,
    #[serde(default)]
    refund_amount: Option<Value>,
    #[serde(default)]
    total_refund_amount: Option<Value>,
    #[serde(default)]
    real_refund_amount: Option<Value>,
    #[serde(default)]
    reject_reason: Option<Value>,
}

/// Read the columns of one after-sale order fetched for `queried_account`. `Err` (with the reason,
/// for the quarantine) only when it is not an object or has no usable `after_sale_id`.
pub fn extract(raw: Box<RawValue>, queried_account: &str) -> Result<RefundRow, String> {
    // serde would read a JSON array positionally into the fields: only an object is a record.
    if !raw.get().trim_start().starts_with('{') {
        return Err(format!(
            "a refund that is not a JSON object: {}",
            prefix(&raw)
        ));
    }
    let f: Fields = serde_json::from_str(raw.get())
        .map_err(|e| format!("a refund that is not a JSON object ({e})"))?;
    let after_sale_id = text(f.after_sale_id.as_ref())
        .ok_or_else(|| format!("a refund without after_sale_id: {}", prefix(&raw)))?;
    Ok(RefundRow {
        after_sale_id,
        order_id: text(f.order_id.as_ref()),
        account_id: text(f.merchant_account_id.as_ref())
            .unwrap_or_else(|| queried_account.to_string()),
        status: int(f.status.as_ref()),
        refund_type: int(f.refund_type.as_ref()),
        create_time: epoch(f.create_time.as_ref()),
        update_time: epoch(f.update_time.as_ref()),
        audit_time: epoch(f.audit_time.as_ref()),
        complete_time: epoch(f.complete_time.as_ref()),
        refund_amount: int(f.refund_amount.as_ref()),
        total_refund_amount: int(f.total_refund_amount.as_ref()),
        real_refund_amount: int(f.real_refund_amount.as_ref()),
        reject_reason: text(f.reject_reason.as_ref()),
        raw,
    })
}

/// The start of a record, to name it in a rejection.
fn prefix(raw: &RawValue) -> String {
    raw.get().chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> RefundRow {
        extract(RawValue::from_string(json.to_string()).unwrap(), "q").unwrap()
    }

    #[test]
    fn a_refund_is_read_leniently() {
        let r = row(
            r#"{"after_sale_id":"7300000000000000001","order_id":"1077940305329948933",
               "merchant_account_id":7000000000000000001,"status":"50","refund_type":1,
               "create_time":1706164312,"update_time":"1706164400","audit_time":0,
               "complete_time":1706164500,"refund_amount":"12900","total_refund_amount":12900,
               "reason":{"code":3},"refund_info_list":[{"certificate_id":"c1"}],"new_field":true}"#,
        );
        assert_eq!(r.after_sale_id, "7300000000000000001");
        assert_eq!(r.order_id.as_deref(), Some("1077940305329948933"));
        assert_eq!(r.account_id, "7000000000000000001");
        assert_eq!((r.status, r.refund_type), (Some(50), Some(1)));
        assert_eq!(r.create_time, Some(1706164312));
        assert_eq!(r.update_time, Some(1706164400));
        assert_eq!(r.audit_time, None);
        assert_eq!(r.complete_time, Some(1706164500));
        assert_eq!(r.refund_amount, Some(12900));
        assert_eq!(r.total_refund_amount, Some(12900));
        assert_eq!(r.real_refund_amount, None, "absent amount: NULL");
        assert_eq!(r.reject_reason, None);
        assert!(r.raw.get().contains(r#""new_field":true"#));
    }

    #[test]
    fn the_queried_account_stands_in_for_a_missing_merchant_account_id() {
        let r = row(r#"{"after_sale_id":5,"merchant_account_id":""}"#);
        assert_eq!(
            (r.after_sale_id.as_str(), r.account_id.as_str()),
            ("5", "q")
        );
    }

    #[test]
    fn a_refund_without_an_id_is_rejected_with_its_reason() {
        let e = extract(
            RawValue::from_string(r#"{"order_id":"1"}"#.into()).unwrap(),
            "q",
        );
        assert!(e.unwrap_err().contains("without after_sale_id"));
        assert!(extract(RawValue::from_string("[1]".into()).unwrap(), "q").is_err());
    }

    #[test]
    fn the_page_says_where_to_go_next() {
        let p: Page = serde_json::from_str(
            r#"{"after_sale_order_list":[{"after_sale_id":"1"}],"cursor":"c2","has_more":true}"#,
        )
        .unwrap();
        assert_eq!(
            (p.cursor().as_deref(), p.has_more()),
            (Some("c2"), Some(true))
        );
        assert_eq!(p.records().len(), 1);
        let p: Page = serde_json::from_str(r#"{"cursor":17,"has_more":"false"}"#).unwrap();
        assert_eq!(
            (p.cursor().as_deref(), p.has_more()),
            (Some("17"), Some(false))
        );
        assert!(p.records().is_empty());
        let p: Page = serde_json::from_str("{}").unwrap();
        assert_eq!((p.cursor(), p.has_more()), (None, None));
    }

    #[test]
    fn page_size_is_capped_and_the_window_is_by_completion_time() {
        let p = params("a", 10, 20, "0", 500);
        assert!(p.contains(&("page_size", "100".to_string())));
        assert!(p.contains(&("refund_done_start_time", "10".to_string())));
        assert!(p.contains(&("refund_done_end_time", "20".to_string())));
        assert!(p.contains(&("cursor", "0".to_string())));
    }
}
