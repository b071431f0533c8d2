//! The `verifications` stream: the merchant's verification records (验券历史, coupons used), from
//! `GET /goodlife/v1/fulfilment/certificate/verify_record/query/` (douyin-api.md §7), into the
//! `verifications` table.
//!
//! What differs from the other streams: a day is the window `start_time`..`end_time` over the
//! verification time; pages of at most 20 records follow each other by the `cursor` of the last
//! record (`0` first), and a page shorter than `size` is the last; `data.total`, when present,
//! is checked against the distinct `verify_id`s. A verification revoked later changes `status`
//! and `cancel_time` but not `verify_time`, so the incremental mode reads the last
//! `VERIFY_LOOKBACK_DAYS` again (see README, "Streams").

use super::{bool_of, int_of, text_of, Next, Page, Stream};
use crate::config::Config;
use crate::douyin::Answer;
use crate::store::DayWrite;
use crate::window::Span;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Records per page: the most the endpoint accepts.
pub const PAGE_SIZE: usize = 20;

pub struct Verifications;

/// One verification record as the `verifications` table stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationRow {
    pub verify_id: String,
    pub certificate_id: Option<String>,
    pub code: Option<String>,
    pub order_id: Option<String>,
    pub verify_time: Option<i64>,
    pub status: Option<i64>,
    /// None when 0 (not revoked).
    pub cancel_time: Option<i64>,
    pub verify_type: Option<i64>,
    pub can_cancel: Option<bool>,
    /// Fen, as received; stored as yuan.
    pub original_amount: Option<i64>,
    pub pay_amount: Option<i64>,
    pub merchant_ticket_amount: Option<i64>,
    pub sku_id: Option<String>,
    pub sku_title: Option<String>,
    /// `verify_poi_id` (else `poi_id`).
    pub poi_id: Option<String>,
    /// The paging cursor of this record (`cursor`, else `verify_id`).
    pub cursor: String,
    /// The record exactly as received.
    pub raw: String,
}

/// Read one record. `Err` says why it cannot be a row (no `verify_id`).
pub fn extract(raw: &RawValue) -> Result<VerificationRow, String> {
    let v: Value = serde_json::from_str(raw.get()).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("a record that is not an object".into());
    };
    let verify_id = text_of(obj.get("verify_id")).ok_or("a record without verify_id")?;
    let amount = obj.get("amount").and_then(Value::as_object);
    let sku = obj.get("sku").and_then(Value::as_object);
    let fen = |k: &str| int_of(amount.and_then(|a| a.get(k)));
    Ok(VerificationRow {
        cursor: text_of(obj.get("cursor")).unwrap_or_else(|| verify_id.clone()),
        verify_id,
        certificate_id: text_of(obj.get("certificate_id")),
        code: text_of(obj.get("code")),
        order_id: text_of(obj.get("order_id")),
        verify_time: int_of(obj.get("verify_time")).filter(|t| *t != 0),
        status: int_of(obj.get("status")),
        cancel_time: int_of(obj.get("cancel_time")).filter(|t| *t != 0),
        verify_type: int_of(obj.get("verify_type")),
        can_cancel: bool_of(obj.get("can_cancel")),
        original_amount: fen("original_amount"),
        pay_amount: fen("pay_amount"),
        merchant_ticket_amount: fen("merchant_ticket_amount"),
        sku_id: text_of(sku.and_then(|s| s.get("sku_id"))),
        sku_title: text_of(sku.and_then(|s| s.get("title"))),
        poi_id: text_of(obj.get("verify_poi_id")).or_else(|| text_of(obj.get("poi_id"))),
        raw: raw.get().to_string(),
    })
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    data: DataPart<'a>,
}

#[derive(Deserialize)]
struct DataPart<'a> {
    #[serde(default, borrow)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    total: Option<Value>,
}

/// Read an answer's page: its records, `data.total`, and the next cursor (the last record's,
/// unless the page is shorter than [`PAGE_SIZE`]).
pub fn read_page(text: &str) -> Result<Page<VerificationRow>, String> {
    let body: Body<'_> =
        serde_json::from_str(text).map_err(|e| format!("not the expected JSON ({e})"))?;
    let raws = body.data.records.unwrap_or_default();
    let mut rows = Vec::with_capacity(raws.len());
    for raw in &raws {
        rows.push(extract(raw)?);
    }
    let total = int_of(body.data.total.as_ref()).and_then(|t| u64::try_from(t).ok());
    let next = match rows.last() {
        Some(last) if rows.len() >= PAGE_SIZE => Next::Cursor(last.cursor.clone()),
        _ => Next::Done,
    };
    Ok(Page { rows, total, next })
}

impl Stream for Verifications {
    type Row = VerificationRow;
    const NAME: &'static str = "verifications";
    const NOUN: &'static str = "verification";
    const ENDPOINT: &'static str = "/goodlife/v1/fulfilment/certificate/verify_record/query/";
    const TIME_FIELD: &'static str = "verify_time";

    fn budget(config: &Config) -> u32 {
        config.verify_qps()
    }

    fn lookback_secs(config: &Config) -> i64 {
        config.verify_lookback_secs()
    }

    /// The end bound is sent as the next day's start, as for orders: whether the API includes
    /// it is undocumented, and a record at that second asked twice is upserted once.
    fn request(account_id: &str, span: Span, cursor: Option<&str>) -> Vec<(&'static str, String)> {
        vec![
            ("account_id", account_id.to_string()),
            ("cursor", cursor.unwrap_or("0").to_string()),
            ("size", PAGE_SIZE.to_string()),
            ("start_time", span.start.to_string()),
            ("end_time", span.end.to_string()),
        ]
    }

    fn page(answer: &Answer) -> Result<Page<VerificationRow>, String> {
        read_page(&answer.text)
    }

    fn key(row: &VerificationRow) -> &str {
        &row.verify_id
    }

    fn write(
        tx: &mut postgres::Transaction<'_>,
        account_id: &str,
        _span: Span,
        rows: &[VerificationRow],
    ) -> Result<DayWrite, postgres::Error> {
        if rows.is_empty() {
            return Ok(DayWrite::default());
        }
        macro_rules! column {
            ($field:ident) => {
                rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
            };
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.verify_id.as_str()).collect();
        let raws: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
        let row = tx.query_one(
            "WITH up AS (
                 INSERT INTO verifications AS v (verify_id, account_id, certificate_id, code,
                        order_id, verify_time, status, cancel_time, verify_type, can_cancel,
                        original_amount, pay_amount, merchant_ticket_amount, sku_id, sku_title,
                        poi_id, raw_data, sync_time)
                 SELECT verify_id, $1, certificate_id, code, order_id, to_timestamp(verify_time),
                        status, to_timestamp(cancel_time), verify_type, can_cancel,
                        original_amount / 100.0, pay_amount / 100.0,
                        merchant_ticket_amount / 100.0, sku_id, sku_title, poi_id,
                        raw::jsonb, now()
                   FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                               $7::int8[], $8::int8[], $9::int8[], $10::bool[], $11::int8[],
                               $12::int8[], $13::int8[], $14::text[], $15::text[], $16::text[],
                               $17::text[])
                        AS r(verify_id, certificate_id, code, order_id, verify_time, status,
                             cancel_time, verify_type, can_cancel, original_amount, pay_amount,
                             merchant_ticket_amount, sku_id, sku_title, poi_id, raw)
                 ON CONFLICT (verify_id) DO UPDATE SET
                        account_id = EXCLUDED.account_id,
                        certificate_id = EXCLUDED.certificate_id,
                        code = EXCLUDED.code,
                        order_id = EXCLUDED.order_id,
                        verify_time = EXCLUDED.verify_time,
                        status = EXCLUDED.status,
                        cancel_time = EXCLUDED.cancel_time,
                        verify_type = EXCLUDED.verify_type,
                        can_cancel = EXCLUDED.can_cancel,
                        original_amount = EXCLUDED.original_amount,
                        pay_amount = EXCLUDED.pay_amount,
                        merchant_ticket_amount = EXCLUDED.merchant_ticket_amount,
                        sku_id = EXCLUDED.sku_id,
                        sku_title = EXCLUDED.sku_title,
                        poi_id = EXCLUDED.poi_id,
                        raw_data = EXCLUDED.raw_data,
                        sync_time = EXCLUDED.sync_time
                  WHERE v.raw_data IS DISTINCT FROM EXCLUDED.raw_data
                     OR v.account_id IS DISTINCT FROM EXCLUDED.account_id
                 RETURNING (xmax = 0) AS inserted
             )
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            &[
                &account_id,
                &ids,
                &column!(certificate_id),
                &column!(code),
                &column!(order_id),
                &column!(verify_time),
                &column!(status),
                &column!(cancel_time),
                &column!(verify_type),
                &column!(can_cancel),
                &column!(original_amount),
                &column!(pay_amount),
                &column!(merchant_ticket_amount),
                &column!(sku_id),
                &column!(sku_title),
                &column!(poi_id),
                &raws,
            ],
        )?;
        Ok(DayWrite {
            orders: rows.len() as u64,
            inserted: row.get::<_, i64>(0) as u64,
            updated: row.get::<_, i64>(1) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn a_published_sample_record_becomes_its_columns() {
        let r = extract(&raw(
            r#"{"cursor":"7100000000000000001","verify_id":"7100000000000000001",
               "certificate_id":"7099999999999999999","code":"123456789012","order_id":"1077940305329948933",
               "verify_time":1706164312,"can_cancel":true,"verify_type":1,"status":1,"cancel_time":0,
               "amount":{"original_amount":12900,"pay_amount":"9900","merchant_ticket_amount":0,"x":1},
               "sku":{"sku_id":"1760543044430907","title":"双人套餐","account_id":"7000"},
               "verify_poi_id":"6601","unknown":{"kept":true}}"#,
        ))
        .unwrap();
        assert_eq!(r.verify_id, "7100000000000000001");
        assert_eq!(r.cursor, "7100000000000000001");
        assert_eq!(r.certificate_id.as_deref(), Some("7099999999999999999"));
        assert_eq!(r.code.as_deref(), Some("123456789012"));
        assert_eq!(r.order_id.as_deref(), Some("1077940305329948933"));
        assert_eq!(r.verify_time, Some(1706164312));
        assert_eq!(r.status, Some(1));
        assert_eq!(r.cancel_time, None);
        assert_eq!(r.verify_type, Some(1));
        assert_eq!(r.can_cancel, Some(true));
        assert_eq!(r.original_amount, Some(12900));
        assert_eq!(r.pay_amount, Some(9900));
        assert_eq!(r.merchant_ticket_amount, Some(0));
        assert_eq!(r.sku_id.as_deref(), Some("1760543044430907"));
        assert_eq!(r.sku_title.as_deref(), Some("双人套餐"));
        assert_eq!(r.poi_id.as_deref(), Some("6601"));
        assert!(r.raw.contains(r#""unknown":{"kept":true}"#));
    }

    #[test]
    fn absent_fields_and_strings_for_numbers_are_accepted() {
        let r = extract(&raw(
            r#"{"verify_id":123,"verify_time":"1706164312","status":"2","cancel_time":"1706170000","can_cancel":"false"}"#,
        ))
        .unwrap();
        assert_eq!(r.verify_id, "123");
        assert_eq!(r.cursor, "123");
        assert_eq!(r.verify_time, Some(1706164312));
        assert_eq!(r.status, Some(2));
        assert_eq!(r.cancel_time, Some(1706170000));
        assert_eq!(r.can_cancel, Some(false));
        assert_eq!(r.order_id, None);
        assert_eq!(r.original_amount, None);
        assert_eq!(r.sku_id, None);
    }

    #[test]
    fn a_record_without_verify_id_is_refused_with_the_reason() {
        assert!(extract(&raw(r#"{"cursor":"1"}"#))
            .unwrap_err()
            .contains("verify_id"));
        assert!(extract(&raw(r#"{"verify_id":""}"#)).is_err());
        assert!(extract(&raw(r#"[1]"#)).is_err());
    }

    #[test]
    fn a_full_page_asks_for_the_next_by_its_last_cursor_and_a_short_one_ends() {
        let records: Vec<String> = (1..=20)
            .map(|i| format!(r#"{{"verify_id":"v{i}","cursor":"c{i}"}}"#))
            .collect();
        let full = format!(
            r#"{{"data":{{"records":[{}],"total":"45"}}}}"#,
            records.join(",")
        );
        let page = read_page(&full).unwrap();
        assert_eq!(page.rows.len(), 20);
        assert_eq!(page.total, Some(45));
        assert_eq!(page.next, Next::Cursor("c20".into()));
        let short = r#"{"data":{"records":[{"verify_id":"v1","cursor":"c1"}]}}"#;
        let page = read_page(short).unwrap();
        assert_eq!(page.total, None);
        assert_eq!(page.next, Next::Done);
        let empty = r#"{"data":{"error_code":0}}"#;
        assert_eq!(read_page(empty).unwrap().next, Next::Done);
    }

    #[test]
    fn the_first_request_has_cursor_0_and_size_20() {
        let p = Verifications::request("acc", Span { start: 10, end: 20 }, None);
        assert!(p.contains(&("cursor", "0".to_string())));
        assert!(p.contains(&("size", "20".to_string())));
        assert!(p.contains(&("start_time", "10".to_string())));
        assert!(p.contains(&("end_time", "20".to_string())));
        let p = Verifications::request("acc", Span { start: 10, end: 20 }, Some("c20"));
        assert!(p.contains(&("cursor", "c20".to_string())));
    }
}
