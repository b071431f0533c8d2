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

use super::{column, int_of, upsert, Next, Page, Stream};
use crate::config::Config;
use crate::douyin::Answer;
use crate::order::{self, Rejected};
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

/// The fields read, each as received (a record's other fields stay only in `raw_data`).
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    verify_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cursor: Option<&'a RawValue>,
    #[serde(default, borrow)]
    certificate_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    code: Option<&'a RawValue>,
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    verify_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cancel_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    verify_type: Option<&'a RawValue>,
    #[serde(default, borrow)]
    can_cancel: Option<&'a RawValue>,
    #[serde(default, borrow)]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku: Option<&'a RawValue>,
    #[serde(default, borrow)]
    verify_poi_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    poi_id: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Amount<'a> {
    #[serde(default, borrow)]
    original_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pay_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    merchant_ticket_amount: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Sku<'a> {
    #[serde(default, borrow)]
    sku_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    title: Option<&'a RawValue>,
}

/// A nested object (`amount`, `sku`): absent or null is empty; anything but an object is a
/// reason to quarantine the record.
fn nested<'a, T: Deserialize<'a> + Default>(
    v: Option<&'a RawValue>,
    field: &str,
) -> Result<T, String> {
    match v {
        None => Ok(T::default()),
        Some(v) if order::kind(v) == "null" => Ok(T::default()),
        Some(v) if order::kind(v) == "an object" => {
            serde_json::from_str(v.get()).map_err(|_| format!("{field} is not readable"))
        }
        Some(v) => Err(format!("{field} is {}, not an object", order::kind(v))),
    }
}

/// An amount in fen that `numeric(12,2)` yuan holds exactly.
fn fen(v: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    match order::integer(v, field)? {
        Some(n) if n.abs() > order::MAX_FEN => Err(format!(
            "{field} is beyond numeric(12,2) yuan ({} fen at most)",
            order::MAX_FEN
        )),
        n => Ok(n),
    }
}

/// `can_cancel`: true/false, 1/0, or those as strings.
fn boolean(v: Option<&RawValue>, field: &str) -> Result<Option<bool>, String> {
    let Some(v) = v else { return Ok(None) };
    match v.get().trim() {
        "null" => Ok(None),
        "true" | "1" | "\"true\"" | "\"1\"" => Ok(Some(true)),
        "false" | "0" | "\"false\"" | "\"0\"" => Ok(Some(false)),
        _ => Err(format!("{field} is {}, not true or false", order::kind(v))),
    }
}

/// The record's `verify_id`: text that a primary key and its index hold.
fn verify_id(v: Option<&RawValue>) -> Result<String, String> {
    let id = order::text(v, "verify_id")?.ok_or("no verify_id (absent, null or blank)")?;
    if id.len() > order::MAX_KEY_BYTES {
        return Err(format!(
            "verify_id is longer than {} bytes (an index entry cannot hold it)",
            order::MAX_KEY_BYTES
        ));
    }
    if id.contains('\0') {
        return Err("verify_id holds U+0000 (NUL)".into());
    }
    Ok(id)
}

/// Read one record, or say why it cannot be stored as it is (it then goes to the quarantine,
/// `rejected_records`, with its day).
pub fn extract(raw: &RawValue) -> Result<VerificationRow, Rejected> {
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
    let fields = serde_json::from_str::<Fields<'_>>(raw.get())
        .map_err(|_| reject(None, "not readable as a verification record".into()))?;
    let id = verify_id(fields.verify_id).map_err(|e| reject(None, e))?;
    let columns = || -> Result<VerificationRow, String> {
        order::check_text(raw.get())?;
        let amount: Amount<'_> = nested(fields.amount, "amount")?;
        let sku: Sku<'_> = nested(fields.sku, "sku")?;
        let text = |v, f| order::text(v, f);
        Ok(VerificationRow {
            cursor: text(fields.cursor, "cursor")?.unwrap_or_else(|| id.clone()),
            verify_id: id.clone(),
            certificate_id: text(fields.certificate_id, "certificate_id")?,
            code: text(fields.code, "code")?,
            order_id: text(fields.order_id, "order_id")?,
            verify_time: order::epoch(fields.verify_time, "verify_time")?,
            status: order::int32(fields.status, "status")?,
            cancel_time: order::epoch(fields.cancel_time, "cancel_time")?,
            verify_type: order::int32(fields.verify_type, "verify_type")?,
            can_cancel: boolean(fields.can_cancel, "can_cancel")?,
            original_amount: fen(amount.original_amount, "amount.original_amount")?,
            pay_amount: fen(amount.pay_amount, "amount.pay_amount")?,
            merchant_ticket_amount: fen(
                amount.merchant_ticket_amount,
                "amount.merchant_ticket_amount",
            )?,
            sku_id: text(sku.sku_id, "sku.sku_id")?,
            sku_title: text(sku.title, "sku.title")?,
            poi_id: match text(fields.verify_poi_id, "verify_poi_id")? {
                Some(p) => Some(p),
                None => text(fields.poi_id, "poi_id")?,
            },
            raw: raw.get().to_string(),
        })
    };
    columns().map_err(|reason| reject(Some(id.clone()), reason))
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

/// Read an answer's page: its records (rows, or quarantined records), `data.total`, and the
/// next cursor (the last record's, unless the page is shorter than [`PAGE_SIZE`]). A
/// quarantined record still counts for the paging and the total.
pub fn read_page(text: &str) -> Result<Page<VerificationRow>, String> {
    let body: Body<'_> =
        serde_json::from_str(text).map_err(|e| format!("not the expected JSON ({e})"))?;
    let raws = body.data.records.unwrap_or_default();
    let mut rows = Vec::with_capacity(raws.len());
    let mut rejected = Vec::new();
    let mut last_cursor = None;
    for raw in &raws {
        match extract(raw) {
            Ok(row) => {
                last_cursor = Some(row.cursor.clone());
                rows.push(row);
            }
            Err(r) => {
                // Its cursor, if it has a readable one, still says where the next page starts.
                last_cursor = serde_json::from_str::<Fields<'_>>(raw.get())
                    .ok()
                    .and_then(|f| {
                        order::text(f.cursor.or(f.verify_id), "cursor")
                            .ok()
                            .flatten()
                    });
                rejected.push(r);
            }
        }
    }
    let total = int_of(body.data.total.as_ref()).and_then(|t| u64::try_from(t).ok());
    let next = match last_cursor {
        Some(c) if raws.len() >= PAGE_SIZE => Next::Cursor(c),
        _ => Next::Done,
    };
    Ok(Page {
        rows,
        rejected,
        total,
        next,
    })
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
        let ids: Vec<&str> = rows.iter().map(|r| r.verify_id.as_str()).collect();
        let raws: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
        upsert(
            tx,
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
             )",
            &[
                &account_id,
                &ids,
                &column!(rows, certificate_id),
                &column!(rows, code),
                &column!(rows, order_id),
                &column!(rows, verify_time),
                &column!(rows, status),
                &column!(rows, cancel_time),
                &column!(rows, verify_type),
                &column!(rows, can_cancel),
                &column!(rows, original_amount),
                &column!(rows, pay_amount),
                &column!(rows, merchant_ticket_amount),
                &column!(rows, sku_id),
                &column!(rows, sku_title),
                &column!(rows, poi_id),
                &raws,
            ],
            rows.len(),
        )
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
    fn a_record_that_cannot_be_stored_is_quarantined_with_the_reason() {
        let reason = |json: &str| extract(&raw(json)).unwrap_err().reason;
        assert!(reason(r#"{"cursor":"1"}"#).contains("verify_id"));
        assert!(reason(r#"{"verify_id":""}"#).contains("verify_id"));
        assert!(reason(r#"[1]"#).contains("not an object"));
        assert!(reason(r#"{"verify_id":"v","verify_time":1706164312000}"#).contains("verify_time"));
        assert!(reason(r#"{"verify_id":"v","status":99999999999}"#).contains("status"));
        assert!(
            reason(r#"{"verify_id":"v","amount":{"pay_amount":1000000000000}}"#)
                .contains("pay_amount")
        );
        assert!(reason(r#"{"verify_id":"v","amount":{"pay_amount":12.5}}"#).contains("pay_amount"));
        assert!(reason(r#"{"verify_id":"v","amount":[1]}"#).contains("amount"));
        assert!(reason(r#"{"verify_id":"v","can_cancel":"maybe"}"#).contains("can_cancel"));
        assert!(reason(r#"{"verify_id":"v","code":"a\u0000b"}"#).contains("U+0000"));
        let r = extract(&raw(r#"{"verify_id":"v9","status":"x"}"#)).unwrap_err();
        assert_eq!(r.order_id.as_deref(), Some("v9"));
    }

    #[test]
    fn a_quarantined_record_still_moves_the_cursor() {
        let mut records: Vec<String> = (1..=19)
            .map(|i| format!(r#"{{"verify_id":"v{i}","cursor":"c{i}"}}"#))
            .collect();
        records.push(r#"{"verify_id":"v20","cursor":"c20","status":"x"}"#.to_string());
        let page = read_page(&format!(
            r#"{{"data":{{"records":[{}]}}}}"#,
            records.join(",")
        ))
        .unwrap();
        assert_eq!(page.rows.len(), 19);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.next, Next::Cursor("c20".into()));
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
