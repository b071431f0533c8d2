//! Stream `refunds`: Douyin's after-sale (退款) orders, `GET /goodlife/v1/akte/after_sale/order/query/`
//! (douyin-api.md §8), into the table `refunds`.
//!
//! What differs from the other streams: a day is asked by refund completion time
//! (`refund_done_start_time` / `refund_done_end_time`), paged by the answer's `data.cursor` while
//! `data.has_more` (`page_size` ≤ 100); rows are upserted by `after_sale_id`. The endpoint's
//! documented limit is 10 requests a second per developer (shared with the developer's other
//! tools), so its budget `REFUND_QPS` defaults to 5; it may also have a small daily quota: a quota
//! answer ends this stream with 75 after the days before it are committed, and the other streams
//! go on. A refund completed after the last run has a completion time after its checkpoint, so
//! the incremental mode picks it up; it re-reads `OVERLAP_SECS` before the checkpoint for the
//! platform's indexing lag (seconds on average, minutes at p99).

use super::{column, cursor_page, upsert, Page, Stream};
use crate::config::Config;
use crate::douyin::Answer;
use crate::order::{self, Rejected};
use crate::store::DayWrite;
use crate::window::Span;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Records per page: the most the endpoint takes.
pub const PAGE_SIZE: u32 = 100;

pub struct Refunds;

/// One refund as the `refunds` table stores it.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub after_sale_id: String,
    pub order_id: Option<String>,
    /// `merchant_account_id` (an int64 in the API) as text; the table falls back to the account
    /// queried when it is absent.
    pub account_id: Option<String>,
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

#[derive(Deserialize)]
struct Body {
    data: Data,
}

/// `data` of an answer.
#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    after_sale_order_list: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    cursor: Option<Value>,
    #[serde(default)]
    has_more: Option<Value>,
}

/// Read an answer: its refunds, and the next cursor while `has_more` ([`cursor_page`]).
pub fn read_page(text: &str) -> Result<Page<RefundRow>, String> {
    let body: Body =
        serde_json::from_str(text).map_err(|e| format!("not the expected JSON ({e})"))?;
    let raws = body.data.after_sale_order_list.unwrap_or_default();
    cursor_page(
        &raws,
        body.data.cursor.as_ref(),
        body.data.has_more.as_ref(),
        PAGE_SIZE,
        extract,
    )
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    after_sale_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    merchant_account_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refund_type: Option<&'a RawValue>,
    #[serde(default, borrow)]
    create_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    update_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    audit_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    complete_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refund_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    total_refund_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    real_refund_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reject_reason: Option<&'a RawValue>,
}

/// An amount in fen that `numeric(12,2)` yuan holds exactly.
pub(crate) fn fen(v: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    match order::integer(v, field)? {
        Some(n) if n.abs() > order::MAX_FEN => Err(format!(
            "{field} is beyond numeric(12,2) yuan ({} fen at most)",
            order::MAX_FEN
        )),
        n => Ok(n),
    }
}

/// A record's key (`after_sale_id`, `ledger_id`): text that a primary key and its index hold.
pub(crate) fn key_of(v: Option<&RawValue>, field: &str) -> Result<String, String> {
    let id = order::text(v, field)?.ok_or(format!("no {field} (absent, null or blank)"))?;
    if id.len() > order::MAX_KEY_BYTES {
        return Err(format!(
            "{field} is longer than {} bytes (an index entry cannot hold it)",
            order::MAX_KEY_BYTES
        ));
    }
    if id.contains('\0') {
        return Err(format!("{field} holds U+0000 (NUL)"));
    }
    Ok(id)
}

/// Read the columns of one after-sale order, or say why it cannot be stored as it is (it then
/// goes to the quarantine, `rejected_records`, with its day): not an object, no usable
/// `after_sale_id`, a number that is not one, an amount beyond numeric(12,2), a NUL.
pub fn extract(raw: &RawValue) -> Result<RefundRow, Rejected> {
    let reject = |id: Option<String>, reason: String| Rejected {
        order_id: id,
        reason,
        raw: raw.to_owned(),
    };
    if order::kind(raw) != "an object" {
        return Err(reject(
            None,
            format!("the record is {}, not an object", order::kind(raw)),
        ));
    }
    let f = serde_json::from_str::<Fields<'_>>(raw.get())
        .map_err(|_| reject(None, "not readable as a refund".into()))?;
    let id = key_of(f.after_sale_id, "after_sale_id").map_err(|e| reject(None, e))?;
    let columns = || -> Result<RefundRow, String> {
        order::check_text(raw.get())?;
        let text = |v, field| order::text(v, field);
        Ok(RefundRow {
            after_sale_id: id.clone(),
            order_id: text(f.order_id, "order_id")?,
            account_id: text(f.merchant_account_id, "merchant_account_id")?,
            status: order::int32(f.status, "status")?,
            refund_type: order::int32(f.refund_type, "refund_type")?,
            create_time: order::epoch(f.create_time, "create_time")?,
            update_time: order::epoch(f.update_time, "update_time")?,
            audit_time: order::epoch(f.audit_time, "audit_time")?,
            complete_time: order::epoch(f.complete_time, "complete_time")?,
            refund_amount: fen(f.refund_amount, "refund_amount")?,
            total_refund_amount: fen(f.total_refund_amount, "total_refund_amount")?,
            real_refund_amount: fen(f.real_refund_amount, "real_refund_amount")?,
            reject_reason: text(f.reject_reason, "reject_reason")?,
            raw: raw.to_owned(),
        })
    };
    columns().map_err(|reason| reject(Some(id.clone()), reason))
}

impl Stream for Refunds {
    type Row = RefundRow;
    const NAME: &'static str = "refunds";
    const NOUN: &'static str = "refund";
    const ENDPOINT: &'static str = "/goodlife/v1/akte/after_sale/order/query/";
    const TIME_FIELD: &'static str = "complete_time";

    fn budget(config: &Config) -> u32 {
        config.refund_qps()
    }

    fn lookback_secs(config: &Config) -> i64 {
        config.overlap_secs()
    }

    /// The end bound is the next day's start, as for orders: whether the API includes it is
    /// undocumented, and a refund at that second asked twice is upserted once.
    fn request(account_id: &str, span: Span, cursor: Option<&str>) -> Vec<(&'static str, String)> {
        vec![
            ("account_id", account_id.to_string()),
            ("refund_done_start_time", span.start.to_string()),
            ("refund_done_end_time", span.end.to_string()),
            ("cursor", cursor.unwrap_or("0").to_string()),
            ("page_size", PAGE_SIZE.to_string()),
        ]
    }

    fn page(answer: &Answer) -> Result<Page<RefundRow>, String> {
        read_page(&answer.text)
    }

    fn key(row: &RefundRow) -> &str {
        &row.after_sale_id
    }

    fn write(
        tx: &mut postgres::Transaction<'_>,
        account_id: &str,
        _span: Span,
        rows: &[RefundRow],
    ) -> Result<DayWrite, postgres::Error> {
        if rows.is_empty() {
            return Ok(DayWrite::default());
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.after_sale_id.as_str()).collect();
        let raws: Vec<&str> = rows.iter().map(|r| r.raw.get()).collect();
        upsert(
            tx,
            "WITH up AS (
                 INSERT INTO refunds AS f (after_sale_id, order_id, account_id, status, refund_type,
                        create_time, update_time, audit_time, complete_time, refund_amount,
                        total_refund_amount, real_refund_amount, reject_reason, raw_data, sync_time)
                 SELECT after_sale_id, order_id, coalesce(account_id, $1), status, refund_type,
                        to_timestamp(create_time), to_timestamp(update_time),
                        to_timestamp(audit_time), to_timestamp(complete_time),
                        refund_amount / 100.0, total_refund_amount / 100.0,
                        real_refund_amount / 100.0, reject_reason, raw::jsonb, now()
                   FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[],
                               $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
                               $12::int8[], $13::int8[], $14::text[], $15::text[])
                        AS r(after_sale_id, order_id, account_id, status, refund_type,
                             create_time, update_time, audit_time, complete_time, refund_amount,
                             total_refund_amount, real_refund_amount, reject_reason, raw)
                 ON CONFLICT (after_sale_id) DO UPDATE SET
                        order_id = EXCLUDED.order_id,
                        account_id = EXCLUDED.account_id,
                        status = EXCLUDED.status,
                        refund_type = EXCLUDED.refund_type,
                        create_time = EXCLUDED.create_time,
                        update_time = EXCLUDED.update_time,
                        audit_time = EXCLUDED.audit_time,
                        complete_time = EXCLUDED.complete_time,
                        refund_amount = EXCLUDED.refund_amount,
                        total_refund_amount = EXCLUDED.total_refund_amount,
                        real_refund_amount = EXCLUDED.real_refund_amount,
                        reject_reason = EXCLUDED.reject_reason,
                        raw_data = EXCLUDED.raw_data,
                        sync_time = EXCLUDED.sync_time
                  WHERE f.raw_data IS DISTINCT FROM EXCLUDED.raw_data
                     OR f.account_id IS DISTINCT FROM EXCLUDED.account_id
                 RETURNING (xmax = 0) AS inserted
             )",
            &[
                &account_id,
                &ids,
                &column!(rows, order_id),
                &column!(rows, account_id),
                &column!(rows, status),
                &column!(rows, refund_type),
                &column!(rows, create_time),
                &column!(rows, update_time),
                &column!(rows, audit_time),
                &column!(rows, complete_time),
                &column!(rows, refund_amount),
                &column!(rows, total_refund_amount),
                &column!(rows, real_refund_amount),
                &column!(rows, reject_reason),
                &raws,
            ],
            rows.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::Next;

    fn row(json: &str) -> RefundRow {
        extract(&RawValue::from_string(json.to_string()).unwrap()).unwrap()
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
        assert_eq!(r.account_id.as_deref(), Some("7000000000000000001"));
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
    fn a_missing_merchant_account_id_is_left_to_the_queried_account() {
        let r = row(r#"{"after_sale_id":5,"merchant_account_id":""}"#);
        assert_eq!((r.after_sale_id.as_str(), r.account_id), ("5", None));
    }

    #[test]
    fn a_refund_that_cannot_be_stored_is_quarantined_with_its_reason() {
        let e = |json: &str| extract(&RawValue::from_string(json.into()).unwrap()).unwrap_err();
        assert!(e(r#"{"order_id":"1"}"#).reason.contains("no after_sale_id"));
        assert!(e("[1]").reason.contains("not an object"));
        let r = e(r#"{"after_sale_id":"9","refund_amount":1e15}"#);
        assert_eq!(r.order_id.as_deref(), Some("9"));
        let r = e(r#"{"after_sale_id":"9","refund_amount":"99999999999999"}"#);
        assert!(r.reason.contains("numeric(12,2)"), "{}", r.reason);
        assert!(e(r#"{"after_sale_id":"9","status":"x"}"#)
            .reason
            .contains("status"));
    }

    #[test]
    fn pages_follow_data_cursor_while_has_more() {
        let p = read_page(
            r#"{"data":{"after_sale_order_list":[{"after_sale_id":"1"}],"cursor":"c2","has_more":true},"extra":{}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.rows.len(), p.next, p.total),
            (1, Next::Cursor("c2".into()), None)
        );
        let p = read_page(r#"{"data":{"cursor":17,"has_more":"false"}}"#).unwrap();
        assert_eq!((p.rows.len(), p.next), (0, Next::Done));
        assert!(read_page(r#"{"data":{"has_more":true}}"#).is_err());
        let p = read_page(r#"{"data":{"after_sale_order_list":[{"order_id":"1"}]}}"#).unwrap();
        assert_eq!(
            (p.rows.len(), p.rejected.len()),
            (0, 1),
            "quarantined, not a failure"
        );
        // No has_more: a full page with a cursor goes on, a short one ends.
        let list: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"after_sale_id":"{i}"}}"#))
            .collect();
        let full = format!(
            r#"{{"data":{{"after_sale_order_list":[{}],"cursor":"x"}}}}"#,
            list.join(",")
        );
        assert_eq!(read_page(&full).unwrap().next, Next::Cursor("x".into()));
        let short = r#"{"data":{"after_sale_order_list":[{"after_sale_id":"1"}],"cursor":"x"}}"#;
        assert_eq!(read_page(short).unwrap().next, Next::Done);
    }

    #[test]
    fn a_day_is_asked_by_completion_time_100_at_a_time() {
        let p = Refunds::request("a", Span { start: 10, end: 20 }, None);
        assert!(p.contains(&("page_size", "100".to_string())));
        assert!(p.contains(&("refund_done_start_time", "10".to_string())));
        assert!(p.contains(&("refund_done_end_time", "20".to_string())));
        assert!(p.contains(&("cursor", "0".to_string())));
        let p = Refunds::request("a", Span { start: 10, end: 20 }, Some("c9"));
        assert!(p.contains(&("cursor", "c9".to_string())));
    }
}
