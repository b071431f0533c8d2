//! One order as the `orders` table stores it: the typed columns read leniently from the order's
//! JSON, and the JSON itself exactly as received; or, when the record cannot be stored as it is,
//! why (the record then goes to the quarantine table `rejected_records`).
//!
//! Lenient: a number may be a numeric string, an id may be a number, an optional field may be
//! absent or null, a whole number may be written `12900.0`. Never silently lossy: a value that a
//! column cannot hold exactly (a fraction of a fen, `true` as an amount, milliseconds where
//! seconds are expected, an integer beyond the column's type, an object where text is expected)
//! rejects the record with the reason, and so does anything PostgreSQL would refuse in `raw_data`
//! (U+0000, a lone surrogate, nesting beyond [`MAX_DEPTH`], a number beyond `numeric`) or rewrite
//! (a key repeated in one object: jsonb keeps only the last). A record is checked in one pass over
//! its text ([`check_text`]) and its fields are read without copying (`&RawValue`), so a record
//! of any depth costs no stack.
//!
//! A reason names the field and the problem, never a value: the record holds customer data.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Deepest nesting of arrays and objects stored (PostgreSQL's jsonb parser runs out of stack
/// somewhere beyond 10,000 levels; Python's json, which may read `raw_data`, at about 1,000).
pub const MAX_DEPTH: usize = 512;
/// Longest `order_id` and `sku_id`, in bytes: both are btree-indexed, and an index entry holds at
/// most about 2,700 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Epoch seconds beyond this (2100-01-01T00:00:00Z) are not seconds (milliseconds, most likely).
pub const MAX_EPOCH: i64 = 4_102_444_800;
/// `orders.pay_amount` is `numeric(12, 2)`: yuan below 10^10, fen below 10^12.
const MAX_FEN: i64 = 999_999_999_999;
/// PostgreSQL's `numeric` holds up to 131,072 digits before the decimal point and 16,383 after.
const NUMERIC_INT_DIGITS: i64 = 131_072;
const NUMERIC_FRAC_DIGITS: i64 = 16_383;

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

/// A record that cannot be stored as it is: it goes to `rejected_records`.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The record's `order_id`, when it has one that can be stored and indexed.
    pub order_id: Option<String>,
    /// Why, naming the field; never a value.
    pub reason: String,
    /// The record as received (JSON text; a NUL stays the escape `\u0000`).
    pub raw: Box<RawValue>,
}

impl Rejected {
    /// The record's id for a log line: escaped, and cut to 64 characters.
    pub fn describe_id(&self) -> String {
        match &self.order_id {
            Some(id) => format!("order {}", printable(id, 64)),
            None => "a record without a usable order_id".to_string(),
        }
    }
}

/// `text` with control characters escaped and cut to `max` characters, for a log line.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    order_status: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku_name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pay_amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    count: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pay_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    create_order_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    update_order_time: Option<&'a RawValue>,
    #[serde(default, borrow)]
    source_order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    contacts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    products: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Product<'a> {
    #[serde(default, borrow)]
    sku_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku_name: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Contact<'a> {
    #[serde(default, borrow)]
    phone_encrypt: Option<&'a RawValue>,
}

/// What kind of JSON value a (valid) JSON text is, for a reason.
fn kind(v: &RawValue) -> &'static str {
    match v.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "a list",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "true or false",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON string's value (`None` when `v` is not a string or not a valid one).
fn string_value(v: &RawValue) -> Option<Cow<'_, str>> {
    let text = v.get();
    if !text.starts_with('"') {
        return None;
    }
    if !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// The first element of a JSON list, when `v` is a non-empty list.
fn first_of<'a>(v: &'a RawValue, field: &str) -> Result<Option<&'a RawValue>, String> {
    if kind(v) != "a list" {
        return Err(format!("{field} is {}, not a list", kind(v)));
    }
    let items: Vec<&RawValue> =
        serde_json::from_str(v.get()).map_err(|_| format!("{field} is not a readable list"))?;
    Ok(items.into_iter().next())
}

/// A text column: a string (blank means none), or a number as written.
fn text(v: Option<&RawValue>, field: &str) -> Result<Option<String>, String> {
    let Some(v) = v else { return Ok(None) };
    match kind(v) {
        "null" => Ok(None),
        "a number" => Ok(Some(v.get().to_string())),
        "a string" => {
            let s = string_value(v).ok_or_else(|| format!("{field} is not a valid string"))?;
            Ok(Some(s.into_owned()).filter(|s| !s.trim().is_empty()))
        }
        other => Err(format!("{field} is {other}, not text")),
    }
}

/// An integer column: a whole number, or a numeric string; blank and null mean none.
fn integer(v: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    let Some(v) = v else { return Ok(None) };
    let written: Cow<'_, str> = match kind(v) {
        "null" => return Ok(None),
        "a number" => Cow::Borrowed(v.get()),
        "a string" => {
            let s = string_value(v).ok_or_else(|| format!("{field} is not a valid string"))?;
            if s.trim().is_empty() {
                return Ok(None);
            }
            Cow::Owned(s.trim().to_string())
        }
        other => return Err(format!("{field} is {other}, not a number")),
    };
    match whole_number(&written) {
        Some(Whole::Int(n)) => Ok(Some(n)),
        Some(Whole::TooLarge) => Err(format!("{field} is beyond a 64-bit integer")),
        Some(Whole::Fraction) => Err(format!("{field} is not a whole number")),
        None => Err(format!("{field} is not a number")),
    }
}

/// An integer column of PostgreSQL type `integer`.
fn int32(v: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    let n = integer(v, field)?;
    match n {
        Some(n) if i32::try_from(n).is_err() => Err(format!(
            "{field} is beyond the integer column (-2147483648..2147483647)"
        )),
        _ => Ok(n),
    }
}

/// An epoch-seconds column: 0 means "not set" (unpaid orders have `pay_time` 0).
fn epoch(v: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    match integer(v, field)? {
        Some(0) | None => Ok(None),
        Some(t) if t < 0 => Err(format!("{field} is negative, not epoch seconds")),
        Some(t) if t > MAX_EPOCH => Err(format!(
            "{field} is beyond the year 2100 as epoch seconds (milliseconds?)"
        )),
        Some(t) => Ok(Some(t)),
    }
}

enum Whole {
    Int(i64),
    Fraction,
    TooLarge,
}

/// A decimal number as written (JSON syntax, or with a leading `+`), exactly: `12900`,
/// `12900.0` and `1.29e4` are whole, `429.5` is not. `None` when it is not a number.
fn whole_number(text: &str) -> Option<Whole> {
    let b = text.as_bytes();
    // The usual case: a plain integer that fits.
    if !b.is_empty() && b.len() <= 18 && b.iter().all(u8::is_ascii_digit) {
        return text.parse().ok().map(Whole::Int);
    }
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut digits: Vec<u8> = Vec::with_capacity(b.len());
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        digits.push(b[i] - b'0');
        i += 1;
    }
    let int_len = i - start;
    let mut scale: i64 = 0; // value = digits × 10^(exp − scale)
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let from = i;
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        if i == from {
            return None;
        }
        scale = (i - from) as i64;
    }
    if int_len == 0 {
        return None;
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let sign = match b.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let from = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i64::from(b[i] - b'0'));
            i += 1;
        }
        if i == from {
            return None;
        }
        exp *= sign;
    }
    if i != b.len() {
        return None;
    }
    // Drop trailing zeros into the exponent, leading zeros away.
    let mut power = exp.saturating_sub(scale);
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
        power = power.saturating_add(1);
    }
    let first = digits.iter().position(|d| *d != 0);
    let Some(first) = first else {
        return Some(Whole::Int(0));
    };
    let digits = &digits[first..];
    if power < 0 {
        return Some(Whole::Fraction);
    }
    if digits.len() as i64 + power > 19 {
        return Some(Whole::TooLarge);
    }
    let mut value: i128 = 0;
    for d in digits {
        value = value * 10 + i128::from(*d);
    }
    for _ in 0..power {
        value *= 10;
    }
    if negative {
        value = -value;
    }
    Some(i64::try_from(value).map_or(Whole::TooLarge, Whole::Int))
}

/// The record's `order_id`, as received (a string, or an integer as written).
fn order_id(v: Option<&RawValue>) -> Result<String, String> {
    // serde reads `null` as absent.
    let Some(v) = v else {
        return Err("no order_id (absent or null)".into());
    };
    let id = match kind(v) {
        "a string" => string_value(v)
            .ok_or_else(|| "order_id is not a valid string".to_string())?
            .into_owned(),
        "a number" if v.get().bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            v.get().to_string()
        }
        "a number" => return Err("order_id is a number that is not an integer".into()),
        other => return Err(format!("order_id is {other}, not a string or a number")),
    };
    if id.trim().is_empty() {
        return Err("order_id is blank".into());
    }
    if id.len() > MAX_KEY_BYTES {
        return Err(format!(
            "order_id is longer than {MAX_KEY_BYTES} bytes (an index entry cannot hold it)"
        ));
    }
    if id.contains('\0') {
        return Err("order_id holds U+0000 (NUL)".into());
    }
    Ok(id)
}

/// Read the columns of one order, or say why it cannot be stored as it is.
pub fn extract(raw: Box<RawValue>) -> Result<OrderRow, Rejected> {
    if kind(&raw) != "an object" {
        return Err(Rejected {
            order_id: None,
            reason: format!("the record is {}, not an object", kind(&raw)),
            raw,
        });
    }
    let fields = serde_json::from_str::<Fields<'_>>(raw.get());
    let id = match &fields {
        Ok(f) => order_id(f.order_id),
        // A repeated field (which the text check names): the id alone, unless it is the one.
        Err(_) => match serde_json::from_str::<IdOnly<'_>>(raw.get()) {
            Ok(f) => order_id(f.order_id),
            Err(_) => Err("not readable as an order".to_string()),
        },
    };
    let checked = check_text(raw.get()).and_then(|()| {
        let f = fields.map_err(|_| "not readable as an order".to_string())?;
        let id = id.clone()?;
        columns(id, &f)
    });
    match checked {
        Ok(mut row) => {
            row.raw = raw;
            Ok(row)
        }
        Err(reason) => Err(Rejected {
            order_id: id.ok(),
            reason,
            raw,
        }),
    }
}

fn columns(order_id: String, f: &Fields<'_>) -> Result<OrderRow, String> {
    let product = match f.products {
        Some(p) if kind(p) != "null" => first_of(p, "products")?,
        _ => None,
    };
    let product: Option<Product<'_>> = match product {
        Some(p) if kind(p) == "an object" => Some(
            serde_json::from_str(p.get()).map_err(|_| "products[0] is not readable".to_string())?,
        ),
        Some(p) => return Err(format!("products[0] is {}, not an object", kind(p))),
        None => None,
    };
    let sku_id = match text(f.sku_id, "sku_id")? {
        Some(s) => Some(s),
        None => text(
            product.as_ref().and_then(|p| p.sku_id),
            "products[0].sku_id",
        )?,
    };
    if sku_id.as_ref().is_some_and(|s| s.len() > MAX_KEY_BYTES) {
        return Err(format!(
            "sku_id is longer than {MAX_KEY_BYTES} bytes (an index entry cannot hold it)"
        ));
    }
    let sku_name = match text(f.sku_name, "sku_name")? {
        Some(s) => Some(s),
        None => text(
            product.as_ref().and_then(|p| p.sku_name),
            "products[0].sku_name",
        )?,
    };
    let contact = match f.contacts {
        Some(c) if kind(c) != "null" => first_of(c, "contacts")?,
        _ => None,
    };
    let phone_encrypt = match contact {
        Some(c) if kind(c) == "an object" => {
            let c: Contact<'_> = serde_json::from_str(c.get())
                .map_err(|_| "contacts[0] is not readable".to_string())?;
            let field = "contacts[0].phone_encrypt";
            match c.phone_encrypt.map(kind) {
                None | Some("null" | "a string") => {}
                Some(other) => return Err(format!("{field} is {other}, not text")),
            }
            text(c.phone_encrypt, field)?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        }
        Some(c) => return Err(format!("contacts[0] is {}, not an object", kind(c))),
        None => None,
    };
    let pay_amount_fen = integer(f.pay_amount, "pay_amount")?;
    if pay_amount_fen.is_some_and(|fen| fen.unsigned_abs() > MAX_FEN as u64) {
        return Err("pay_amount is beyond the numeric(12, 2) column (10^12 fen or more)".into());
    }
    Ok(OrderRow {
        order_id,
        order_status: int32(f.order_status, "order_status")?,
        sku_id,
        sku_name,
        pay_amount_fen,
        count: int32(f.count, "count")?,
        pay_time: epoch(f.pay_time, "pay_time")?,
        create_time: epoch(f.create_order_time, "create_order_time")?,
        update_time: epoch(f.update_order_time, "update_order_time")?,
        source_order_id: text(f.source_order_id, "source_order_id")?,
        phone_encrypt,
        phone: None,
        // Replaced by the caller (this function only borrows the record).
        raw: RawValue::NULL.to_owned(),
    })
}

/// One open object or list while checking a record's text.
struct Frame {
    object: bool,
    /// Where the keys of this object start in the list of keys of all open objects (an inner
    /// object's keys come after its outer's so far, and are dropped when it closes).
    keys_from: usize,
    /// In an object: the next string is a key.
    expect_key: bool,
}

/// Check a record's JSON text (valid JSON: the page was parsed) in one pass for what PostgreSQL
/// would refuse or rewrite in `jsonb`: U+0000, a lone surrogate, nesting beyond [`MAX_DEPTH`], a
/// number beyond `numeric`, a key repeated in one object. The reason names the top-level field
/// where it is.
pub fn check_text(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut keys: Vec<Cow<'_, str>> = Vec::new();
    // The last key of the record itself, for the reason.
    let mut field: Option<(usize, usize)> = None;
    let place = |field: Option<(usize, usize)>| match field {
        Some((from, to)) => format!(" (in {})", printable(&text[from..to], 40)),
        None => String::new(),
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            open @ (b'{' | b'[') => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} levels{}",
                        place(field)
                    ));
                }
                stack.push(Frame {
                    object: open == b'{',
                    keys_from: keys.len(),
                    expect_key: open == b'{',
                });
                i += 1;
            }
            b'}' | b']' => {
                if let Some(frame) = stack.pop() {
                    let own = &mut keys[frame.keys_from..];
                    if own.len() > 1 {
                        own.sort_unstable();
                        if let Some(pair) = own.windows(2).find(|w| w[0] == w[1]) {
                            // The record's own keys are not inside a field.
                            let place = if stack.is_empty() {
                                String::new()
                            } else {
                                place(field)
                            };
                            return Err(format!(
                                "the key \"{}\" is repeated in one object{place} (jsonb would keep only the last)",
                                printable(&pair[0], 40),
                            ));
                        }
                    }
                    keys.truncate(frame.keys_from);
                }
                i += 1;
            }
            b',' => {
                if let Some(frame) = stack.last_mut() {
                    frame.expect_key = frame.object;
                }
                i += 1;
            }
            b'"' => {
                let end =
                    string_end(b, i + 1).map_err(|problem| format!("{problem}{}", place(field)))?;
                if let Some(frame) = stack.last_mut() {
                    if frame.expect_key {
                        frame.expect_key = false;
                        let raw = &text[i + 1..end];
                        let key = if raw.contains('\\') {
                            match serde_json::from_str::<String>(&text[i..=end]) {
                                Ok(k) => Cow::Owned(k),
                                Err(_) => Cow::Borrowed(raw),
                            }
                        } else {
                            Cow::Borrowed(raw)
                        };
                        if stack.len() == 1 {
                            field = Some((i + 1, end));
                        }
                        keys.push(key);
                    }
                }
                i = end + 1;
            }
            b'-' | b'0'..=b'9' => {
                let from = i;
                let mut exponent = false;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    exponent |= matches!(b[i], b'e' | b'E');
                    i += 1;
                }
                // Without an exponent only the number of digits matters.
                if (exponent || i - from > 16_000) && !fits_numeric(&text[from..i]) {
                    return Err(format!(
                        "a number is beyond PostgreSQL's numeric{}",
                        place(field)
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index of the closing quote of the string whose text starts at `from`; `Err` for what
/// PostgreSQL refuses in text and jsonb (U+0000, a lone surrogate).
fn string_end(b: &[u8], from: usize) -> Result<usize, &'static str> {
    let mut i = from;
    loop {
        i = quote_or_backslash(b, i);
        match b.get(i) {
            None => return Err("an unterminated string"),
            Some(b'"') => return Ok(i),
            Some(b'\\') => {
                if b.get(i + 1) != Some(&b'u') {
                    i += 2;
                    continue;
                }
                let unit = hex4(b, i + 2).ok_or("an invalid \\u escape")?;
                match unit {
                    0 => return Err("a string holds U+0000 (NUL), which PostgreSQL cannot store"),
                    0xD800..=0xDBFF => {
                        let low = if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') {
                            hex4(b, i + 8)
                        } else {
                            None
                        };
                        if !low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                            return Err("a string holds a lone surrogate (\\ud800-\\udbff without its pair), which is not Unicode");
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return Err(
                        "a string holds a lone surrogate (\\udc00-\\udfff), which is not Unicode",
                    ),
                    _ => i += 6,
                }
            }
            Some(_) => i += 1,
        }
    }
}

/// The index of the first `"` or `\\` in `b` from `from` (or `b.len()`), eight bytes at a time:
/// most of a record is the text of its strings.
fn quote_or_backslash(b: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(bytes);
        // A byte of `x` is zero where `word` has the byte looked for; the lowest flagged byte is
        // exact (the trick's false positives only sit above a true one).
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let hit = zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')));
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
        i += 1;
    }
    i
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// Whether a JSON number fits PostgreSQL's `numeric` (which jsonb stores numbers as).
fn fits_numeric(number: &str) -> bool {
    let mantissa_end = number.find(['e', 'E']).unwrap_or(number.len());
    let (mantissa, exponent) = number.split_at(mantissa_end);
    let exp: i64 = match exponent.get(1..) {
        None | Some("") => 0,
        Some(e) => match e.parse::<i64>() {
            Ok(e) => e,
            // More digits than an i64 holds: no numeric can hold it, unless the mantissa is 0.
            Err(_) => return !mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c)),
        },
    };
    let mantissa = mantissa.trim_start_matches('-');
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int_digits = int_part.trim_start_matches('0').len() as i64;
    let frac_digits = frac_part.len() as i64;
    if int_digits == 0 && !frac_part.bytes().any(|c| c != b'0') {
        return true; // zero, whatever its exponent
    }
    int_digits.saturating_add(exp) <= NUMERIC_INT_DIGITS
        && frac_digits.saturating_sub(exp) <= NUMERIC_FRAC_DIGITS
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

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    fn row(json: &str) -> OrderRow {
        extract(raw(json)).unwrap()
    }

    /// The reason a record is rejected for, and its id.
    fn rejected(json: &str) -> (Option<String>, String) {
        match extract(raw(json)) {
            Ok(r) => panic!("accepted {json}: {r:?}"),
            Err(r) => {
                assert_eq!(r.raw.get(), json, "the record is kept as received");
                (r.order_id, r.reason)
            }
        }
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
    fn absent_null_and_blank_values_are_none() {
        let r = row(
            r#"{"order_id":"9","contacts":[],"products":null,"count":" ","pay_amount":null,"sku_name":""}"#,
        );
        assert_eq!(
            (
                r.count,
                r.pay_amount_fen,
                r.phone_encrypt,
                r.sku_id,
                r.sku_name
            ),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn whole_numbers_are_read_exactly_in_any_notation() {
        let r = row(
            r#"{"order_id":"1","pay_amount":12900.0,"count":"2e0","order_status":"+200","pay_time":1.7e9}"#,
        );
        assert_eq!(r.pay_amount_fen, Some(12900));
        assert_eq!(r.count, Some(2));
        assert_eq!(r.order_status, Some(200));
        assert_eq!(r.pay_time, Some(1_700_000_000));
        // The id is kept as written: "+5", "05" and "5" are three orders.
        assert_eq!(row(r#"{"order_id":"+5"}"#).order_id, "+5");
        assert_eq!(row(r#"{"order_id":"05"}"#).order_id, "05");
        assert_eq!(
            row(r#"{"order_id":123456789012345678901234567890}"#).order_id,
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn records_without_a_usable_id_are_rejected_without_their_contents() {
        for (json, reason) in [
            (
                r#"{"sku_name":"客户 13800000000"}"#,
                "no order_id (absent or null)",
            ),
            (r#"{"order_id":null}"#, "no order_id (absent or null)"),
            (r#"{"order_id":""}"#, "order_id is blank"),
            (
                r#"{"order_id":{"a":1}}"#,
                "order_id is an object, not a string or a number",
            ),
            (
                r#"{"order_id":1.5}"#,
                "order_id is a number that is not an integer",
            ),
            ("[1,2]", "the record is a list, not an object"),
            ("5", "the record is a number, not an object"),
            (r#""x""#, "the record is a string, not an object"),
        ] {
            let (id, why) = rejected(json);
            assert_eq!((id, why.as_str()), (None, reason), "{json}");
            assert!(!why.contains("13800000000"));
        }
        let long = format!(r#"{{"order_id":"{}"}}"#, "7".repeat(MAX_KEY_BYTES + 1));
        let (id, why) = rejected(&long);
        assert_eq!(id, None);
        assert!(why.contains("longer than 1024 bytes"), "{why}");
    }

    #[test]
    fn values_a_column_cannot_hold_exactly_are_rejected_with_the_field() {
        for (json, reason) in [
            (
                r#"{"order_id":"1","pay_amount":429.5}"#,
                "pay_amount is not a whole number",
            ),
            (
                r#"{"order_id":"1","pay_amount":true}"#,
                "pay_amount is true or false, not a number",
            ),
            (
                r#"{"order_id":"1","pay_amount":"4x"}"#,
                "pay_amount is not a number",
            ),
            (
                r#"{"order_id":"1","pay_amount":1000000000000}"#,
                "pay_amount is beyond the numeric(12, 2) column (10^12 fen or more)",
            ),
            (
                r#"{"order_id":"1","count":2147483648}"#,
                "count is beyond the integer column (-2147483648..2147483647)",
            ),
            (
                r#"{"order_id":"1","order_status":4294967296}"#,
                "order_status is beyond the integer column (-2147483648..2147483647)",
            ),
            (
                r#"{"order_id":"1","order_status":99999999999999999999}"#,
                "order_status is beyond a 64-bit integer",
            ),
            (
                r#"{"order_id":"1","pay_time":1706164312000}"#,
                "pay_time is beyond the year 2100 as epoch seconds (milliseconds?)",
            ),
            (
                r#"{"order_id":"1","pay_time":10000000000000}"#,
                "pay_time is beyond the year 2100 as epoch seconds (milliseconds?)",
            ),
            (
                r#"{"order_id":"1","update_order_time":-5}"#,
                "update_order_time is negative, not epoch seconds",
            ),
            (
                r#"{"order_id":"1","contacts":{"phone_encrypt":"x"}}"#,
                "contacts is an object, not a list",
            ),
            (
                r#"{"order_id":"1","contacts":["x"]}"#,
                "contacts[0] is a string, not an object",
            ),
            (
                r#"{"order_id":"1","contacts":[{"phone_encrypt":7}]}"#,
                "contacts[0].phone_encrypt is a number, not text",
            ),
            (
                r#"{"order_id":"1","products":"none"}"#,
                "products is a string, not a list",
            ),
            (
                r#"{"order_id":"1","sku_name":{"zh":"x"}}"#,
                "sku_name is an object, not text",
            ),
            (
                r#"{"order_id":"1","sku_id":[1]}"#,
                "sku_id is a list, not text",
            ),
        ] {
            assert_eq!(
                rejected(json),
                (Some("1".to_string()), reason.to_string()),
                "{json}"
            );
        }
        let long_sku = format!(
            r#"{{"order_id":"1","sku_id":"{}"}}"#,
            "s".repeat(MAX_KEY_BYTES + 1)
        );
        assert!(rejected(&long_sku)
            .1
            .starts_with("sku_id is longer than 1024 bytes"));
    }

    #[test]
    fn what_jsonb_refuses_or_rewrites_is_rejected_with_the_field() {
        for (json, reason) in [
            (
                r#"{"order_id":"1","sku_name":"bad\u0000name"}"#,
                "a string holds U+0000 (NUL), which PostgreSQL cannot store (in sku_name)",
            ),
            (
                r#"{"order_id":"1","x":{"y":"\ud800"}}"#,
                "a string holds a lone surrogate (\\ud800-\\udbff without its pair), which is not Unicode (in x)",
            ),
            (
                r#"{"order_id":"1","x":"\udc00\ud800"}"#,
                "a string holds a lone surrogate (\\udc00-\\udfff), which is not Unicode (in x)",
            ),
            (
                r#"{"order_id":"1","x":{"a":1,"b":2,"a":3}}"#,
                "the key \"a\" is repeated in one object (in x) (jsonb would keep only the last)",
            ),
            (
                r#"{"order_id":"1","x":{"a":1,"\u0061":3}}"#,
                "the key \"a\" is repeated in one object (in x) (jsonb would keep only the last)",
            ),
            (
                r#"{"order_id":"1","x":1e200000}"#,
                "a number is beyond PostgreSQL's numeric (in x)",
            ),
            (
                r#"{"order_id":"1","x":1e-20000}"#,
                "a number is beyond PostgreSQL's numeric (in x)",
            ),
        ] {
            assert_eq!(rejected(json), (Some("1".to_string()), reason.to_string()), "{json}");
        }
        // A repeated order_id: the id is not read (which one?), the key is named.
        let (id, why) = rejected(r#"{"order_id":"1","order_id":"2"}"#);
        assert_eq!(id, None);
        assert_eq!(
            why,
            "the key \"order_id\" is repeated in one object (jsonb would keep only the last)"
        );
        // An escaped NUL in the id: the id cannot be stored either.
        assert_eq!(rejected(r#"{"order_id":"a\u0000"}"#).0, None);
    }

    #[test]
    fn deep_records_are_stored_up_to_the_limit_and_cost_no_stack_beyond() {
        let nest = |n: usize| {
            format!(
                r#"{{"order_id":"1","x":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(extract(raw(&nest(200))).is_ok());
        assert!(extract(raw(&nest(MAX_DEPTH - 1))).is_ok());
        let (id, why) = rejected(&nest(MAX_DEPTH));
        assert_eq!(id.as_deref(), Some("1"));
        assert_eq!(why, "nested deeper than 512 levels (in x)");
        // Run on a small stack: nothing here may recurse per level.
        let deep = nest(100_000);
        let handle = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || rejected(&deep).0)
            .unwrap();
        assert_eq!(handle.join().unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn valid_text_passes_the_check() {
        for json in [
            r#"{"a":"\ud83d\ude00","b":"\\u0000","c":[{"a":1},{"a":2}],"d":-0.5e-3,"e":"\"}"}"#,
            r#"{"k":{"k":{"k":1}},"x":[[],{}],"y":1e131071,"z":0e999999999999999999999}"#,
        ] {
            assert_eq!(check_text(json), Ok(()), "{json}");
        }
    }

    #[test]
    fn fen_become_exact_yuan() {
        assert_eq!(fen_to_yuan(42900), "429.00");
        assert_eq!(fen_to_yuan(1), "0.01");
        assert_eq!(fen_to_yuan(-5), "-0.05");
        assert_eq!(fen_to_yuan(0), "0.00");
    }
}
