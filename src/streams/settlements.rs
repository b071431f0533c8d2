//! Stream `settlements`: the settlement ledger (账单), `GET /goodlife/v1/settle/ledger/query/`
//! (douyin-api.md §9), into the table `settlements`.
//!
//! What differs from the other streams: a day is one `bill_date` (`YYYY-MM-DD`, the Asia/Shanghai
//! day), paged by the answer's `data.cursor` while `data.has_more` (`size` ≤ 50). A bill date is
//! a natural unit: each read replaces that account's rows of that date in the day's transaction
//! (a record no longer answered is removed), so the table mirrors the ledger even when the
//! platform drops or reverses a record. A ledger record appears about an hour after the
//! verification it settles, so the incremental mode re-reads `SETTLE_LOOKBACK_DAYS` (default 2)
//! bill dates before its checkpoint: the hour's delay pushes a late evening's records past
//! midnight, and a second day covers a skipped scheduler run or a platform delay many times the
//! documented hour, for two or three requests a run.

use super::refunds::{fen, key_of};
use super::{column, cursor_page, upsert, Page, Stream};
use crate::config::Config;
use crate::douyin::Answer;
use crate::order::{self, Rejected};
use crate::store::DayWrite;
use crate::window::{local_date, Span};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Records per page: the most the endpoint takes.
pub const PAGE_SIZE: u32 = 50;

pub struct Settlements;

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

#[derive(Deserialize)]
struct Body {
    data: Data,
}

/// `data` of an answer.
#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    ledger_records: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    cursor: Option<Value>,
    #[serde(default)]
    has_more: Option<Value>,
}

/// Read an answer: its ledger records, and the next cursor while `has_more` ([`cursor_page`]).
pub fn read_page(text: &str) -> Result<Page<LedgerRow>, String> {
    let body: Body =
        serde_json::from_str(text).map_err(|e| format!("not the expected JSON ({e})"))?;
    let raws = body.data.ledger_records.unwrap_or_default();
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
    ledger_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    item_order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    poi_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    ledger_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
    #[serde(default, borrow)]
    certificate: Option<&'a RawValue>,
    #[serde(default, borrow)]
    goods: Option<&'a RawValue>,
    #[serde(default, borrow)]
    amount: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Certificate<'a> {
    #[serde(default, borrow)]
    certificate_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    code: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Goods<'a> {
    #[serde(default, borrow)]
    sku_id: Option<&'a RawValue>,
}

/// `amount{…}`: the published names, and the `*_amount` names some callers use.
#[derive(Deserialize, Default)]
struct Amount<'a> {
    #[serde(default, borrow)]
    original: Option<&'a RawValue>,
    #[serde(default, borrow)]
    original_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pay: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pay_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    coupon_pay: Option<&'a RawValue>,
    #[serde(default, borrow)]
    coupon_pay_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    merchant_ticket: Option<&'a RawValue>,
    #[serde(default, borrow)]
    merchant_ticket_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    goods: Option<&'a RawValue>,
    #[serde(default, borrow)]
    goods_amount: Option<&'a RawValue>,
}

/// A nested object: absent or null is empty; anything but an object is a reason to quarantine.
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

/// The first of two spellings that is present and not null.
fn either<'a>(a: Option<&'a RawValue>, b: Option<&'a RawValue>) -> Option<&'a RawValue> {
    a.filter(|v| order::kind(v) != "null").or(b)
}

/// Read the columns of one ledger record, or say why it cannot be stored as it is (it then goes
/// to the quarantine, `rejected_records`, with its day).
pub fn extract(raw: &RawValue) -> Result<LedgerRow, Rejected> {
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
        .map_err(|_| reject(None, "not readable as a ledger record".into()))?;
    let id = key_of(f.ledger_id, "ledger_id").map_err(|e| reject(None, e))?;
    let columns = || -> Result<LedgerRow, String> {
        order::check_text(raw.get())?;
        let certificate: Certificate<'_> = nested(f.certificate, "certificate")?;
        let goods: Goods<'_> = nested(f.goods, "goods")?;
        let a: Amount<'_> = nested(f.amount, "amount")?;
        let text = |v, field| order::text(v, field);
        Ok(LedgerRow {
            ledger_id: id.clone(),
            order_id: text(f.order_id, "order_id")?,
            item_order_id: text(f.item_order_id, "item_order_id")?,
            certificate_id: text(certificate.certificate_id, "certificate.certificate_id")?,
            code: text(certificate.code, "certificate.code")?,
            sku_id: match text(goods.sku_id, "goods.sku_id")? {
                Some(s) => Some(s),
                None => text(f.sku_id, "sku_id")?,
            },
            poi_id: text(f.poi_id, "poi_id")?,
            ledger_time: order::epoch(f.ledger_time, "ledger_time")?,
            status: order::int32(f.status, "status")?,
            original_amount: fen(either(a.original, a.original_amount), "amount.original")?,
            pay_amount: fen(either(a.pay, a.pay_amount), "amount.pay")?,
            coupon_pay_amount: fen(
                either(a.coupon_pay, a.coupon_pay_amount),
                "amount.coupon_pay",
            )?,
            merchant_ticket_amount: fen(
                either(a.merchant_ticket, a.merchant_ticket_amount),
                "amount.merchant_ticket",
            )?,
            goods_amount: fen(either(a.goods, a.goods_amount), "amount.goods")?,
            raw: raw.to_owned(),
        })
    };
    columns().map_err(|reason| reject(Some(id.clone()), reason))
}

impl Stream for Settlements {
    type Row = LedgerRow;
    const NAME: &'static str = "settlements";
    const NOUN: &'static str = "ledger record";
    const ENDPOINT: &'static str = "/goodlife/v1/settle/ledger/query/";
    const TIME_FIELD: &'static str = "bill_date";

    fn budget(config: &Config) -> u32 {
        config.settle_qps()
    }

    fn lookback_secs(config: &Config) -> i64 {
        config.settle_lookback_secs()
    }

    /// The day's bill date is the Asia/Shanghai date of its start (a partial first or last day
    /// of a window still reads its whole date).
    fn request(account_id: &str, span: Span, cursor: Option<&str>) -> Vec<(&'static str, String)> {
        vec![
            ("account_id", account_id.to_string()),
            ("bill_date", local_date(span.start)),
            ("cursor", cursor.unwrap_or("0").to_string()),
            ("size", PAGE_SIZE.to_string()),
        ]
    }

    fn page(answer: &Answer) -> Result<Page<LedgerRow>, String> {
        read_page(&answer.text)
    }

    fn key(row: &LedgerRow) -> &str {
        &row.ledger_id
    }

    /// Replace the account's rows of the bill date: delete those not answered any more, upsert
    /// the answered ones (changed rows only), in the day's transaction.
    fn write(
        tx: &mut postgres::Transaction<'_>,
        account_id: &str,
        span: Span,
        rows: &[LedgerRow],
    ) -> Result<DayWrite, postgres::Error> {
        let bill_date = local_date(span.start);
        let ids: Vec<&str> = rows.iter().map(|r| r.ledger_id.as_str()).collect();
        let raws: Vec<&str> = rows.iter().map(|r| r.raw.get()).collect();
        let removed = tx.execute(
            "DELETE FROM settlements
              WHERE account_id = $1 AND bill_date = CAST($2::text AS date)
                AND NOT (ledger_id = ANY($3::text[]))",
            &[&account_id, &bill_date, &ids],
        )?;
        if removed > 0 {
            log::info!(
                stream = "settlements", day = bill_date.as_str(), account = account_id, removed = removed;
                "settlements {bill_date} of account {account_id}: {removed} ledger record(s) no longer answered, removed"
            );
        }
        if rows.is_empty() {
            return Ok(DayWrite::default());
        }
        upsert(
            tx,
            "WITH up AS (
                 INSERT INTO settlements AS s (ledger_id, account_id, bill_date, order_id,
                        item_order_id, certificate_id, code, sku_id, poi_id, ledger_time, status,
                        original_amount, pay_amount, coupon_pay_amount, merchant_ticket_amount,
                        goods_amount, raw_data, sync_time)
                 SELECT ledger_id, $1, CAST($2::text AS date), order_id, item_order_id,
                        certificate_id, code, sku_id, poi_id, to_timestamp(ledger_time), status,
                        original_amount / 100.0, pay_amount / 100.0, coupon_pay_amount / 100.0,
                        merchant_ticket_amount / 100.0, goods_amount / 100.0, raw::jsonb, now()
                   FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                               $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[],
                               $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::text[])
                        AS r(ledger_id, order_id, item_order_id, certificate_id, code, sku_id,
                             poi_id, ledger_time, status, original_amount, pay_amount,
                             coupon_pay_amount, merchant_ticket_amount, goods_amount, raw)
                 ON CONFLICT (ledger_id) DO UPDATE SET
                        account_id = EXCLUDED.account_id,
                        bill_date = EXCLUDED.bill_date,
                        order_id = EXCLUDED.order_id,
                        item_order_id = EXCLUDED.item_order_id,
                        certificate_id = EXCLUDED.certificate_id,
                        code = EXCLUDED.code,
                        sku_id = EXCLUDED.sku_id,
                        poi_id = EXCLUDED.poi_id,
                        ledger_time = EXCLUDED.ledger_time,
                        status = EXCLUDED.status,
                        original_amount = EXCLUDED.original_amount,
                        pay_amount = EXCLUDED.pay_amount,
                        coupon_pay_amount = EXCLUDED.coupon_pay_amount,
                        merchant_ticket_amount = EXCLUDED.merchant_ticket_amount,
                        goods_amount = EXCLUDED.goods_amount,
                        raw_data = EXCLUDED.raw_data,
                        sync_time = EXCLUDED.sync_time
                  WHERE s.raw_data IS DISTINCT FROM EXCLUDED.raw_data
                     OR s.account_id IS DISTINCT FROM EXCLUDED.account_id
                     OR s.bill_date IS DISTINCT FROM EXCLUDED.bill_date
                 RETURNING (xmax = 0) AS inserted
             )",
            &[
                &account_id,
                &bill_date,
                &ids,
                &column!(rows, order_id),
                &column!(rows, item_order_id),
                &column!(rows, certificate_id),
                &column!(rows, code),
                &column!(rows, sku_id),
                &column!(rows, poi_id),
                &column!(rows, ledger_time),
                &column!(rows, status),
                &column!(rows, original_amount),
                &column!(rows, pay_amount),
                &column!(rows, coupon_pay_amount),
                &column!(rows, merchant_ticket_amount),
                &column!(rows, goods_amount),
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

    fn row(json: &str) -> LedgerRow {
        extract(&RawValue::from_string(json.to_string()).unwrap()).unwrap()
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
    fn absent_amounts_are_null_and_odd_shapes_are_quarantined() {
        let r =
            row(r#"{"ledger_id":"l1","amount":{"goods":null,"goods_amount":"5"},"ledger_time":0}"#);
        assert_eq!(
            (r.goods_amount, r.pay_amount, r.ledger_time),
            (Some(5), None, None)
        );
        let r = row(r#"{"ledger_id":"l2","sku_id":9}"#);
        assert_eq!(r.sku_id.as_deref(), Some("9"));
        let e = |json: &str| extract(&RawValue::from_string(json.into()).unwrap()).unwrap_err();
        let q = e(r#"{"ledger_id":"l3","certificate":"none"}"#);
        assert_eq!(q.order_id.as_deref(), Some("l3"));
        assert!(q.reason.contains("certificate is a string"), "{}", q.reason);
        assert!(e(r#"{"id":"1"}"#).reason.contains("no ledger_id"));
        assert!(e(r#"["l1"]"#).reason.contains("not an object"));
        assert!(
            e(r#"{"ledger_id":"l4","amount":{"goods":"9999999999999"}}"#)
                .reason
                .contains("numeric(12,2)")
        );
    }

    #[test]
    fn pages_follow_data_cursor_while_has_more() {
        let p = read_page(
            r#"{"data":{"ledger_records":[{"ledger_id":"1"},{"ledger_id":"2"}],"cursor":"2","has_more":true}}"#,
        )
        .unwrap();
        assert_eq!((p.rows.len(), p.next), (2, Next::Cursor("2".into())));
        let p =
            read_page(r#"{"data":{"ledger_records":[],"cursor":"2","has_more":false}}"#).unwrap();
        assert_eq!((p.rows.len(), p.next), (0, Next::Done));
        assert!(read_page(r#"{"data":{"has_more":1}}"#).is_err());
    }

    #[test]
    fn a_day_is_its_shanghai_bill_date_50_at_a_time() {
        // 2026-11-30 00:00 UTC+8 is 2026-11-29 16:00 UTC.
        let start = 1_795_968_000;
        let q = Settlements::request(
            "a",
            Span {
                start,
                end: start + 86_400,
            },
            None,
        );
        assert!(q.contains(&("bill_date", "2026-11-30".to_string())));
        assert!(q.contains(&("size", "50".to_string())));
        assert!(q.contains(&("cursor", "0".to_string())));
        let q = Settlements::request(
            "a",
            Span {
                start: start + 86_399,
                end: start + 86_400,
            },
            Some("c"),
        );
        assert!(q.contains(&("bill_date", "2026-11-30".to_string())));
        assert!(q.contains(&("cursor", "c".to_string())));
    }
}
