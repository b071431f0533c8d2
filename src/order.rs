//! One order as the `orders` table stores it: the typed columns read leniently from the order's
//! JSON, and the JSON itself exactly as received.
//!
//! Douyin's order objects vary by merchant type and SDK samples disagree on types, so nothing
//! here fails on an unexpected shape except a missing `order_id`: a number may be a string, an
//! id may be a number or an empty string, an optional field may be absent. Whatever is not a
//! column stays in `raw` (stored as `raw_data`).

use crate::douyin::Num;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The columns of one order, before the phone is decrypted.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_id: String,
    pub order_status: Option<i64>,
    /// Top-level `sku_id`, else `products[0].sku_id`.
    pub sku_id: Option<String>,
    pub sku_name: Option<String>,
    /// `pay_amount` in fen, as the API gives it; stored as yuan.
    pub pay_amount_fen: Option<i64>,
    pub count: Option<i64>,
    /// Epoch seconds; `None` when absent or 0 (unpaid orders have `pay_time` 0).
    pub pay_time: Option<i64>,
    pub create_time: Option<i64>,
    pub update_time: Option<i64>,
    pub source_order_id: Option<String>,
    /// `contacts[0].phone_encrypt`, when present.
    pub phone_encrypt: Option<String>,
    /// The decrypted phone, once known.
    pub phone: Option<String>,
    /// The order exactly as received.
    pub raw: Box<RawValue>,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    order_id: Option<Value>,
    #[serde(default)]
    order_status: Option<Value>,
    #[serde(default)]
    sku_id: Option<Value>,
    #[serde(default)]
    sku_name: Option<Value>,
    #[serde(default)]
    pay_amount: Option<Value>,
    #[serde(default)]
    count: Option<Value>,
    #[serde(default)]
    pay_time: Option<Value>,
    #[serde(default)]
    create_order_time: Option<Value>,
    #[serde(default)]
    update_order_time: Option<Value>,
    #[serde(default)]
    source_order_id: Option<Value>,
    #[serde(default)]
    contacts: Option<Value>,
    #[serde(default)]
    products: Option<Value>,
}

/// A string column: a non-empty string, or a number written as text.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer column: a number or a numeric string.
fn int(v: Option<&Value>) -> Option<i64> {
    let num: Num = serde_json::from_value(v?.clone()).ok()?;
    num.as_i64()
}

/// An epoch-seconds column: 0 and negative mean "not set".
fn epoch(v: Option<&Value>) -> Option<i64> {
    int(v).filter(|t| *t > 0)
}

/// Read the columns of one order. `Err` only when the order has no usable `order_id`.
pub fn extract(raw: Box<RawValue>) -> Result<OrderRow, String> {
    let f: Fields = serde_json::from_str(raw.get())
        .map_err(|e| format!("an order that is not a JSON object ({e})"))?;
    let order_id = text(f.order_id.as_ref()).ok_or_else(|| {
        let start: String = raw.get().chars().take(120).collect();
        format!("an order without order_id: {start}")
    })?;
    let first_product = f
        .products
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let sku_id =
        text(f.sku_id.as_ref()).or_else(|| text(first_product.and_then(|p| p.get("sku_id"))));
    let sku_name =
        text(f.sku_name.as_ref()).or_else(|| text(first_product.and_then(|p| p.get("sku_name"))));
    let phone_encrypt = f
        .contacts
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|c| c.get("phone_encrypt"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(OrderRow {
        order_id,
        order_status: int(f.order_status.as_ref()),
        sku_id,
        sku_name,
        pay_amount_fen: int(f.pay_amount.as_ref()),
        count: int(f.count.as_ref()),
        pay_time: epoch(f.pay_time.as_ref()),
        create_time: epoch(f.create_order_time.as_ref()),
        update_time: epoch(f.update_order_time.as_ref()),
        source_order_id: text(f.source_order_id.as_ref()),
        phone_encrypt,
        phone: None,
        raw,
    })
}

/// Fen as an exact decimal yuan string ("12900" → "129.00", "-5" → "-0.05").
pub fn fen_to_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> OrderRow {
        extract(RawValue::from_string(json.to_string()).unwrap()).unwrap()
    }

    #[test]
    fn columns_are_read_leniently() {
        let r = row(
            r#"{"order_id":"1077940305329948933","order_status":"200","pay_amount":"42900",
               "count":2,"pay_time":0,"create_order_time":1706164312,"update_order_time":"1706164400",
               "products":[{"sku_id":"1760543044430907","sku_name":"团购"}],"source_order_id":"",
               "contacts":[{"phone":"138****0000","phone_encrypt":" abc= "}],"x":{"y":1}}"#,
        );
        assert_eq!(r.order_id, "1077940305329948933");
        assert_eq!(r.order_status, Some(200));
        assert_eq!(r.pay_amount_fen, Some(42900));
        assert_eq!(r.count, Some(2));
        assert_eq!(r.pay_time, None);
        assert_eq!(r.create_time, Some(1706164312));
        assert_eq!(r.update_time, Some(1706164400));
        assert_eq!(r.sku_id.as_deref(), Some("1760543044430907"));
        assert_eq!(r.sku_name.as_deref(), Some("团购"));
        assert_eq!(r.source_order_id, None);
        assert_eq!(r.phone_encrypt.as_deref(), Some("abc="));
        assert!(r.raw.get().contains(r#""x":{"y":1}"#));
    }

    #[test]
    fn top_level_sku_wins_over_the_first_product() {
        let r = row(r#"{"order_id":1,"sku_id":"A","products":[{"sku_id":"B"}]}"#);
        assert_eq!(r.order_id, "1");
        assert_eq!(r.sku_id.as_deref(), Some("A"));
    }

    #[test]
    fn odd_shapes_do_not_fail_the_order() {
        let r = row(
            r#"{"order_id":"9","contacts":{},"products":"none","count":"x","pay_amount":null}"#,
        );
        assert_eq!(
            (r.count, r.pay_amount_fen, r.phone_encrypt),
            (None, None, None)
        );
        assert!(extract(RawValue::from_string(r#"{"order_id":""}"#.into()).unwrap()).is_err());
        assert!(extract(RawValue::from_string("5".into()).unwrap()).is_err());
    }

    #[test]
    fn fen_become_exact_yuan() {
        assert_eq!(fen_to_yuan(42900), "429.00");
        assert_eq!(fen_to_yuan(1), "0.01");
        assert_eq!(fen_to_yuan(-5), "-0.05");
        assert_eq!(fen_to_yuan(0), "0.00");
    }
}
