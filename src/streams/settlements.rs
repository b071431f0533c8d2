//! Stream `settlements`: the settlement ledger (账单), `GET /goodlife/v1/settle/ledger/query/`
//! (douyin-api.md §9), into the table `settlements`.
//!
//! A day is one `bill_date` (`YYYY-MM-DD`, the Asia/Shanghai day), paged by the answer's
//! `data.cursor` while `data.has_more` (`size` ≤ 50). A bill date is a natural unit: each read
//! replaces that account's rows of that date (a record no longer answered is removed), so the
//! table mirrors the ledger even when the platform drops or reverses a record. This file owns
//! what differs about the ledger: the request, the answer's shape and how a record becomes a row.

use crate::lenient::{epoch, first, int, text};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The endpoint's path.
pub const PATH: &str = "/goodlife/v1/settle/ledger/query/";
/// The largest `size` the endpoint takes (documented for its detailed sibling).
pub const MAX_PAGE_SIZE: u32 = 50;
/// Documented limit: 20 requests a second (for the detailed variant; §10).
pub const DOCUMENTED_QPS: u32 = 20;
/// Default budget: safely under the documented 20/s.
pub const DEFAULT_QPS: u32 = 15;
/// Default number of past bill dates an incremental run reads again besides today's. A ledger
/// record appears about an hour after the verification it settles (§9), so a verification late
/// on one day is booked after midnight; the job may also not have run for a while. Re-reading
/// the 3 dates before today's catches records that arrive late by up to three days, and costs
/// a few requests a run.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 3;

/// One ledger record as the `settlements` table stores it (`account_id` and `bill_date` come
/// from the request: the unit a bill date is replaced in).
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub ledger_id: String,
    pub order_id: Option<String>,
    pub item_order_id: Option<String>,
    /// `certificate.certificate_id`.
    pub certificate_id: Option<String>,
    /// `certificate.code`.
    pub code: Option<String>,
    /// `goods.sku_id`, else a top-level `sku_id`.
    pub sku_id: Option<String>,
    pub poi_id: Option<String>,
    /// Epoch seconds; `None` when absent or 0.
    pub ledger_time: Option<i64>,
    pub status: Option<i64>,
    /// Fen (`amount.original`, `amount.pay`, …), stored as yuan.
    pub original_amount: Option<i64>,
    pub pay_amount: Option<i64>,
    pub coupon_pay_amount: Option<i64>,
    pub merchant_ticket_amount: Option<i64>,
    pub goods_amount: Option<i64>,
    /// The record exactly as received (`order_attrribute`, three r's, included).
    pub raw: Box<RawValue>,
}

/// The query string of one request.
pub fn params(
    account_id: &str,
    bill_date: &str,
    cursor: &str,
    size: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("account_id", account_id.to_string()),
        ("bill_date", bill_date.to_string()),
        ("cursor", cursor.to_string()),
        ("size", size.min(MAX_PAGE_SIZE).to_string()),
    ]
}

/// `data` of an answer.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub ledger_records: Option<Vec<Box<RawValue>>>,
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

    /// `data.has_more`; `None` when absent or unreadable.
    pub fn has_more(&self) -> Option<bool> {
        crate::lenient::boolean(self.has_more.as_ref())
    }

    pub fn records(self) -> Vec<Box<RawValue>> {
        self.ledger_records.unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    ledger_id: Option<Value>,
    #[serde(default)]
    order_id: Option<Value>,
    #[serde(default)]
    item_order_id: Option<Value>,
    #[serde(default)]
    poi_id: Option<Value>,
    #[serde(default)]
    sku_id: Option<Value>,
    #[serde(default)]
    ledger_time: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    certificate: Option<Value>,
    #[serde(default)]
    goods: Option<Value>,
    #[serde(default)]
    amount: Option<Value>,
}

/// Read the columns of one ledger record. `Err` (with the reason, for the quarantine) only when
/// it is not an object or has no usable `ledger_id`.
pub fn extract(raw: Box<RawValue>) -> Result<LedgerRow, String> {
    // serde would read a JSON array positionally into the fields: only an object is a record.
    if !raw.get().trim_start().starts_with('{') {
        return Err(format!(
            "a ledger record that is not a JSON object: {}",
            prefix(&raw)
        ));
    }
    let f: Fields = serde_json::from_str(raw.get())
        .map_err(|e| format!("a ledger record that is not a JSON object ({e})"))?;
    let ledger_id = text(f.ledger_id.as_ref())
        .ok_or_else(|| format!("a ledger record without ledger_id: {}", prefix(&raw)))?;
    let certificate = f.certificate.as_ref();
    let amount = f.amount.as_ref();
    // `amount.goods` in the published samples; `goods_amount` is how callers name the column.
    let fen = |keys: &[&str]| int(first(amount, keys));
    Ok(LedgerRow {
        ledger_id,
        order_id: text(f.order_id.as_ref()),
        item_order_id: text(f.item_order_id.as_ref()),
        certificate_id: text(first(certificate, &["certificate_id"])),
        code: text(first(certificate, &["code"])),
        sku_id: text(first(f.goods.as_ref(), &["sku_id"])).or_else(|| text(f.sku_id.as_ref())),
        poi_id: text(f.poi_id.as_ref()),
        ledger_time: epoch(f.ledger_time.as_ref()),
        status: int(f.status.as_ref()),
        original_amount: fen(&["original", "original_amount"]),
        pay_amount: fen(&["pay", "pay_amount"]),
        coupon_pay_amount: fen(&["coupon_pay", "coupon_pay_amount"]),
        merchant_ticket_amount: fen(&["merchant_ticket", "merchant_ticket_amount"]),
        goods_amount: fen(&["goods", "goods_amount"]),
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

    fn row(json: &str) -> LedgerRow {
        extract(RawValue::from_string(json.to_string()).unwrap()).unwrap()
    }

    #[test]
    fn a_ledger_record_is_read_leniently_and_kept_as_received() {
        let r = row(
            r#"{"ledger_id":"l_r_b7312","id":"7312","account_id":"7000","order_id":"1077940305329948933",
               "item_order_id":1077940305329948934,"sku_order_id":"x","poi_id":"6601","ledger_time":"1706168000",
               "status":1,"receipt_bill_key":"k","certificate":{"certificate_id":"7123","code":"0123456789"},
               "goods":{"group_name":"团购","sku_id":"1760543044430907","sold_start_time":0},
               "amount":{"original":"12900","pay":9900,"coupon_pay":9900,"merchant_ticket":0,"goods":"9405"},
               "order_attrribute":{"room_id":"","source":2}}"#,
        );
        assert_eq!(r.ledger_id, "l_r_b7312");
        assert_eq!(r.order_id.as_deref(), Some("1077940305329948933"));
        assert_eq!(r.item_order_id.as_deref(), Some("1077940305329948934"));
        assert_eq!(r.certificate_id.as_deref(), Some("7123"));
        assert_eq!(r.code.as_deref(), Some("0123456789"));
        assert_eq!(r.sku_id.as_deref(), Some("1760543044430907"));
        assert_eq!(r.poi_id.as_deref(), Some("6601"));
        assert_eq!((r.ledger_time, r.status), (Some(1706168000), Some(1)));
        assert_eq!(
            (
                r.original_amount,
                r.pay_amount,
                r.coupon_pay_amount,
                r.merchant_ticket_amount,
                r.goods_amount
            ),
            (Some(12900), Some(9900), Some(9900), Some(0), Some(9405))
        );
        assert!(r
            .raw
            .get()
            .contains(r#""order_attrribute":{"room_id":"","source":2}"#));
    }

    #[test]
    fn absent_amounts_and_odd_shapes_are_null_not_errors() {
        let r = row(
            r#"{"ledger_id":"l1","certificate":"none","amount":{"goods":null},"goods":[],"ledger_time":0}"#,
        );
        assert_eq!((r.certificate_id, r.code, r.sku_id), (None, None, None));
        assert_eq!(
            (r.goods_amount, r.pay_amount, r.ledger_time),
            (None, None, None)
        );
        let r = row(r#"{"ledger_id":"l2","sku_id":9}"#);
        assert_eq!(r.sku_id.as_deref(), Some("9"));
    }

    #[test]
    fn a_record_without_a_ledger_id_is_rejected_with_its_reason() {
        let e = extract(RawValue::from_string(r#"{"id":"1"}"#.into()).unwrap());
        assert!(extract(RawValue::from_string(r#"["l1"]"#.into()).unwrap()).is_err());
        assert!(e.unwrap_err().contains("without ledger_id"));
    }

    #[test]
    fn the_page_says_where_to_go_next_and_size_is_capped() {
        let p: Page = serde_json::from_str(
            r#"{"ledger_records":[{"ledger_id":"1"},{"ledger_id":"2"}],"cursor":"2","has_more":false}"#,
        )
        .unwrap();
        assert_eq!(
            (p.cursor().as_deref(), p.has_more()),
            (Some("2"), Some(false))
        );
        assert_eq!(p.records().len(), 2);
        let q = params("a", "2026-11-30", "0", 100);
        assert!(q.contains(&("size", "50".to_string())));
        assert!(q.contains(&("bill_date", "2026-11-30".to_string())));
    }
}
