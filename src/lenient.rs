//! Reading typed columns out of Douyin's JSON records leniently: a number may arrive as a numeric
//! string, an id as a number or an empty string, any field may be absent or of an odd shape.
//! Nothing here fails: an unreadable value is `None`, and the record as received is kept next to
//! its columns (`raw_data`), so nothing is lost. Shared by the streams' row extraction.

use crate::douyin::Num;
use serde_json::Value;

/// A text column: a non-blank string, or a number written as text (`merchant_account_id`
/// arrives as an int64).
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer column: a number or a numeric string.
pub fn int(v: Option<&Value>) -> Option<i64> {
    let num: Num = serde_json::from_value(v?.clone()).ok()?;
    num.as_i64()
}

/// An epoch-seconds column: 0 and negative mean "not set" (NULL).
pub fn epoch(v: Option<&Value>) -> Option<i64> {
    int(v).filter(|t| *t > 0)
}

/// A boolean: `true`/`false`, 1/0, or those as strings.
pub fn boolean(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim() {
            "true" | "True" | "TRUE" | "1" => Some(true),
            "false" | "False" | "FALSE" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The first of `keys` present (not null) in `object`, for fields callers spell two ways.
pub fn first<'a>(object: Option<&'a Value>, keys: &[&str]) -> Option<&'a Value> {
    let object = object?.as_object()?;
    keys.iter()
        .filter_map(|k| object.get(*k))
        .find(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_ids_and_flags_are_read_whatever_their_json_type() {
        assert_eq!(
            text(Some(&json!(7000000000000000001_i64))).as_deref(),
            Some("7000000000000000001")
        );
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!({"a": 1}))), None);
        assert_eq!(int(Some(&json!("12900"))), Some(12900));
        assert_eq!(int(Some(&json!(null))), None);
        assert_eq!(epoch(Some(&json!(0))), None);
        assert_eq!(epoch(Some(&json!("1706164312"))), Some(1706164312));
        assert_eq!(boolean(Some(&json!("true"))), Some(true));
        assert_eq!(boolean(Some(&json!(0))), Some(false));
        assert_eq!(boolean(Some(&json!("maybe"))), None);
        let o = json!({"goods": null, "goods_amount": "5"});
        assert_eq!(int(first(Some(&o), &["goods", "goods_amount"])), Some(5));
        assert_eq!(first(Some(&o), &["x"]), None);
        assert_eq!(first(None, &["x"]), None);
    }
}
