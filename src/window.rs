//! Calendar arithmetic in Asia/Shanghai: reading START_DATE / END_DATE, cutting a sync window
//! into natural days, and printing timestamps.
//!
//! The platform speaks epoch seconds, but merchants think in Beijing-time days, and the job
//! checkpoints one such day at a time. The tool this project replaces used naive local
//! timestamps, so in a UTC container its "days" started at 08:00 Beijing time. Here every
//! conversion uses the fixed offset UTC+8 (China has had no daylight saving time since 1991), and
//! nothing reads the machine's time zone or the `TZ` variable.
//!
//! The calendar is the `time` crate's (`Date`, `OffsetDateTime`, a fixed `UtcOffset` of +8,
//! `format_description!` for reading and printing); this module only fixes the formats and says
//! in the user's words what is wrong with a date. All functions are pure and total: they work on
//! any `i64` without panicking (results saturate at the ends of the `i64` range; a time beyond
//! the years 0000–9999, which no order has, is printed as its epoch second).

use time::format_description::BorrowedFormatItem;
use time::macros::{format_description, offset};
use time::parsing::Parsed;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The offset of Asia/Shanghai from UTC.
pub const SHANGHAI: UtcOffset = offset!(+8);

/// The offset of Asia/Shanghai from UTC, in seconds.
pub const SHANGHAI_OFFSET_SECONDS: i64 = SHANGHAI.whole_seconds() as i64;

const SECONDS_PER_DAY: i64 = 86_400;

/// What a malformed date looks like to the user.
const EXPECTED_SHAPE: &str = "expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS";

/// The date as START_DATE / END_DATE accept it: a four-digit year, then month and day of one or
/// two digits, separated by `-` or by `/` (the same one twice).
const DATE_WITH_DASHES: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month padding:none]-[day padding:none]");
const DATE_WITH_SLASHES: &[BorrowedFormatItem<'_>] =
    format_description!("[year]/[month padding:none]/[day padding:none]");
/// The time of day after the date, each field of one or two digits; the seconds are required.
const TIME_OF_DAY: &[BorrowedFormatItem<'_>] =
    format_description!("[hour padding:none]:[minute padding:none]:[second padding:none]");

/// How the job prints times and dates.
const LOCAL_FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const DATE_FORMAT: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");
const RFC3339_FORMAT: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
);

/// A half-open interval [start, end) of epoch seconds.
///
/// A span whose `end` is not after its `start` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    /// The number of seconds in the span: 0 when empty or inverted, `i64::MAX` at most.
    pub fn len(&self) -> i64 {
        let len = (i128::from(self.end) - i128::from(self.start)).max(0);
        i64::try_from(len).unwrap_or(i64::MAX)
    }

    /// True when the span holds no second (`end <= start`).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Split at the midpoint into two halves (None when len() < 2)
    ///
    /// The first half gets the smaller part when the length is odd: `[0, 5)` gives `[0, 2)` and
    /// `[2, 5)`. Both halves are non-empty and together cover the span exactly.
    pub fn halves(&self) -> Option<(Span, Span)> {
        if self.len() < 2 {
            return None;
        }
        let half = (i128::from(self.end) - i128::from(self.start)) / 2;
        let mid = i64::try_from(i128::from(self.start) + half).ok()?;
        Some((
            Span {
                start: self.start,
                end: mid,
            },
            Span {
                start: mid,
                end: self.end,
            },
        ))
    }
}

/// One natural day of Asia/Shanghai, or the part of it inside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// The local date, "YYYY-MM-DD".
    pub date: String,
    /// The part of that day inside the window.
    pub span: Span,
}

/// `t` in UTC+8, when the `time` crate can represent it (years -9999 to 9999).
fn in_shanghai(t: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()?
        .checked_to_offset(SHANGHAI)
}

/// `t` in UTC+8 in `format`; a time beyond the years the `time` crate represents (never a real
/// order's) is printed as its epoch second rather than as a wrong date.
fn format_in_shanghai(t: i64, format: &[BorrowedFormatItem<'_>]) -> String {
    in_shanghai(t)
        .and_then(|local| local.format(format).ok())
        .unwrap_or_else(|| format!("{t} (epoch seconds, beyond year 9999)"))
}

/// "month 13 is out of range", "day 30 is out of range for 2024-02 (it has 29 days)".
fn out_of_range(component: &str, value: &str, parsed: &Parsed) -> String {
    let value: u32 = value.parse().unwrap_or_default();
    match (component, parsed.year(), parsed.month()) {
        ("day", Some(year), Some(month)) => format!(
            "day {value} is out of range for {year:04}-{:02} (it has {} days)",
            u8::from(month),
            month.length(year)
        ),
        _ => format!("{component} {value} is out of range"),
    }
}

/// Parse `items` from the start of `input` with the `time` crate, field by field, into
/// `parsed`; returns the rest. A number runs up to the next non-digit (`2024-001-01` is
/// malformed, not month 0 then garbage); a field out of its range is named with its value.
fn parse_fields<'a>(
    parsed: &mut Parsed,
    mut input: &'a [u8],
    items: &[BorrowedFormatItem<'_>],
) -> Result<&'a [u8], String> {
    let shape = || EXPECTED_SHAPE.to_string();
    for item in items {
        let digits = input.iter().take_while(|b| b.is_ascii_digit()).count();
        match parsed.parse_item(input, item) {
            Ok(rest) => {
                let is_number = matches!(item, BorrowedFormatItem::Component(_));
                if is_number && rest.first().is_some_and(u8::is_ascii_digit) {
                    return Err(shape());
                }
                input = rest;
            }
            // A year has four digits or is malformed; the other fields have one or two.
            Err(time::error::ParseFromDescription::InvalidComponent(name))
                if name != "year" && (1..=2).contains(&digits) =>
            {
                let value = std::str::from_utf8(&input[..digits]).unwrap_or_default();
                return Err(out_of_range(name, value, parsed));
            }
            Err(_) => return Err(shape()),
        }
    }
    Ok(input)
}

/// Parses and validates a date value; returns the epoch second it names (UTC+8) and whether it
/// had a time of day.
fn parse_local(s: &str) -> Result<(i64, bool), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty".to_string());
    }
    // `time` reads a sign before the year; START_DATE has none.
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(EXPECTED_SHAPE.to_string());
    }
    let date_items = if s.as_bytes().get(4) == Some(&b'/') {
        DATE_WITH_SLASHES
    } else {
        DATE_WITH_DASHES
    };
    let mut parsed = Parsed::new();
    let rest = parse_fields(&mut parsed, s.as_bytes(), date_items)?;
    let (Some(year), Some(month), Some(day)) = (parsed.year(), parsed.month(), parsed.day()) else {
        return Err(EXPECTED_SHAPE.to_string());
    };
    let date = Date::from_calendar_date(year, month, day.get())
        .map_err(|_| out_of_range("day", &day.to_string(), &parsed))?;
    let (time, has_time) = if rest.is_empty() {
        (Time::MIDNIGHT, false)
    } else {
        // Spaces, or one `T`, between the date and the time.
        let spaced = rest.trim_ascii_start();
        let rest = if spaced.len() < rest.len() {
            spaced
        } else if let Some(rest) = rest.strip_prefix(b"T").or(rest.strip_prefix(b"t")) {
            rest
        } else {
            return Err("unexpected text after the date".to_string());
        };
        if !parse_fields(&mut parsed, rest, TIME_OF_DAY)?.is_empty() {
            return Err("unexpected text after the time".to_string());
        }
        let (Some(hour), Some(minute), Some(second)) =
            (parsed.hour_24(), parsed.minute(), parsed.second())
        else {
            return Err(EXPECTED_SHAPE.to_string());
        };
        let time = Time::from_hms(hour, minute, second).map_err(|e| {
            let value = match e.name() {
                "hour" => hour,
                "minute" => minute,
                _ => second,
            };
            format!("{} {value} is out of range", e.name())
        })?;
        (time, true)
    };
    let t = PrimitiveDateTime::new(date, time)
        .assume_offset(SHANGHAI)
        .unix_timestamp();
    Ok((t, has_time))
}

/// Parse a START_DATE value: "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS", "YYYY/MM/DD", "YYYY/MM/DD HH:MM:SS" (also accept "T" between date and time, and single-digit month/day/hour like "2024/1/5"), interpreted in UTC+8. A bare date means 00:00:00. Returns the epoch second.
///
/// The error string names what is wrong in a few words, e.g. "expected YYYY-MM-DD or
/// YYYY-MM-DD HH:MM:SS" or "month 13 is out of range"; it does not repeat the value (the caller
/// adds variable name and value).
///
/// Details: surrounding whitespace is ignored; the year has exactly four digits, the other
/// fields one or two; both date separators must be the same; the seconds are required; no
/// fraction of a second and no zone suffix ("Z", "+08:00") is accepted.
pub fn parse_start_date(s: &str) -> Result<i64, String> {
    parse_local(s).map(|(t, _)| t)
}

/// Parse an END_DATE value, same formats. Returns the EXCLUSIVE end: a bare date means the end of that day, i.e. the next local midnight; a date with a time means that second inclusive, i.e. t + 1.
///
/// Errors are as for [`parse_start_date`].
pub fn parse_end_date(s: &str) -> Result<i64, String> {
    let (t, has_time) = parse_local(s)?;
    Ok(if has_time { t + 1 } else { t + SECONDS_PER_DAY })
}

/// Cut [span.start, span.end) at every local midnight of UTC+8. The first and last days may be partial. Empty span -> empty vec.
///
/// The days are in order, contiguous, and cover the span exactly. The caller bounds the span:
/// one `Day` is allocated per local day.
pub fn cut_days(span: Span) -> Vec<Day> {
    let mut days = Vec::new();
    let mut start = span.start;
    while start < span.end {
        let end = local_midnight(start)
            .saturating_add(SECONDS_PER_DAY)
            .min(span.end);
        days.push(Day {
            date: local_date(start),
            span: Span { start, end },
        });
        start = end;
    }
    days
}

/// The local midnight (UTC+8) at or before t.
///
/// Saturates at `i64::MIN` for the few seconds whose midnight an `i64` cannot hold.
pub fn local_midnight(t: i64) -> i64 {
    // Seconds since the local midnight: a fixed offset makes it plain arithmetic, for any i64.
    let second = (t.rem_euclid(SECONDS_PER_DAY) + SHANGHAI_OFFSET_SECONDS) % SECONDS_PER_DAY;
    t.saturating_sub(second)
}

/// "YYYY-MM-DD HH:MM:SS" in UTC+8.
pub fn format_local(t: i64) -> String {
    format_in_shanghai(t, LOCAL_FORMAT)
}

/// "YYYY-MM-DD" in UTC+8.
pub fn local_date(t: i64) -> String {
    format_in_shanghai(t, DATE_FORMAT)
}

/// RFC 3339 in UTC+8, e.g. "2024-01-15T00:00:00+08:00".
pub fn format_rfc3339(t: i64) -> String {
    format_in_shanghai(t, RFC3339_FORMAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 00:00:00 in UTC+8.
    const NEW_YEAR_2024: i64 = 1_704_038_400;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    fn start(s: &str) -> i64 {
        parse_start_date(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn end(s: &str) -> i64 {
        parse_end_date(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn start_error(s: &str) -> String {
        match parse_start_date(s) {
            Ok(t) => panic!("{s:?} was accepted as {t}"),
            Err(e) => e,
        }
    }

    fn span(start: i64, end: i64) -> Span {
        Span { start, end }
    }

    #[test]
    fn epoch_1704038400_is_2024_01_01_at_midnight_in_utc_plus_8() {
        assert_eq!(format_local(NEW_YEAR_2024), "2024-01-01 00:00:00");
        assert_eq!(start("2024-01-01"), NEW_YEAR_2024);
    }

    #[test]
    fn a_bare_date_with_dashes_or_slashes_means_local_midnight() {
        assert_eq!(start("2024-01-15"), NEW_YEAR_2024 + 14 * DAY);
        assert_eq!(start("2024/01/15"), NEW_YEAR_2024 + 14 * DAY);
    }

    #[test]
    fn a_datetime_with_dashes_or_slashes_is_read_in_utc_plus_8() {
        let expected = NEW_YEAR_2024 + 14 * DAY + 10 * HOUR + 30 * 60 + 15;
        assert_eq!(start("2024-01-15 10:30:15"), expected);
        assert_eq!(start("2024/01/15 10:30:15"), expected);
        assert_eq!(start("2024-01-15T10:30:15"), expected);
        assert_eq!(start("2024/01/15T10:30:15"), expected);
        assert_eq!(start("2024-01-15t10:30:15"), expected);
        assert_eq!(start("2024-01-15   10:30:15"), expected);
    }

    #[test]
    fn single_digit_month_day_and_hour_are_accepted() {
        assert_eq!(start("2024/1/5"), NEW_YEAR_2024 + 4 * DAY);
        assert_eq!(start("2024-1-5"), NEW_YEAR_2024 + 4 * DAY);
        assert_eq!(
            start("2024/1/5 9:05:00"),
            NEW_YEAR_2024 + 4 * DAY + 9 * HOUR + 300
        );
        assert_eq!(
            start("2024/01/05 9:5:0"),
            NEW_YEAR_2024 + 4 * DAY + 9 * HOUR + 300
        );
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(start("  2024-01-01\t"), NEW_YEAR_2024);
        assert_eq!(end("\n2024-01-01 00:00:00 "), NEW_YEAR_2024 + 1);
    }

    #[test]
    fn a_bare_end_date_ends_at_the_next_local_midnight() {
        assert_eq!(end("2024-01-01"), NEW_YEAR_2024 + DAY);
        assert_eq!(end("2024/1/1"), NEW_YEAR_2024 + DAY);
        assert_eq!(end("2023-12-31"), NEW_YEAR_2024);
    }

    #[test]
    fn an_end_date_with_a_time_includes_that_second() {
        assert_eq!(end("2024-01-01 00:00:00"), NEW_YEAR_2024 + 1);
        assert_eq!(end("2024-01-01 23:59:59"), NEW_YEAR_2024 + DAY);
        assert_eq!(end("2024-01-01 23:59:59"), end("2024-01-01"));
    }

    #[test]
    fn the_same_day_as_start_and_end_is_a_whole_day() {
        let s = start("2024-03-10");
        let e = end("2024-03-10");
        assert_eq!(e - s, DAY);
        assert_eq!(cut_days(span(s, e)).len(), 1);
    }

    #[test]
    fn leap_day_2024_is_valid_and_2023_has_none() {
        assert_eq!(start("2024-02-29"), start("2024-02-28") + DAY);
        assert_eq!(start("2024-03-01"), start("2024-02-29") + DAY);
        assert_eq!(start("2000-02-29"), start("2000-02-28") + DAY);
        assert_eq!(
            start_error("2023-02-29"),
            "day 29 is out of range for 2023-02 (it has 28 days)"
        );
        assert!(parse_start_date("1900-02-29").is_err());
    }

    #[test]
    fn impossible_dates_and_times_are_rejected_with_what_is_wrong() {
        assert_eq!(
            start_error("2024-02-30"),
            "day 30 is out of range for 2024-02 (it has 29 days)"
        );
        assert_eq!(
            start_error("2024-04-31"),
            "day 31 is out of range for 2024-04 (it has 30 days)"
        );
        assert!(start_error("2024-01-00").starts_with("day 0 is out of range"));
        assert_eq!(start_error("2024-13-01"), "month 13 is out of range");
        assert_eq!(start_error("2024-00-01"), "month 0 is out of range");
        assert_eq!(
            start_error("2024-01-01 24:00:00"),
            "hour 24 is out of range"
        );
        assert_eq!(
            start_error("2024-01-01 23:60:00"),
            "minute 60 is out of range"
        );
        assert_eq!(
            start_error("2024-01-01 23:59:60"),
            "second 60 is out of range"
        );
    }

    #[test]
    fn malformed_values_are_rejected_with_the_expected_shape() {
        for bad in [
            "24-01-01",
            "20240101",
            "2024.01.01",
            "2024-01/01",
            "2024-001-01",
            "2024-01-001",
            "02024-01-01",
            "2024-01-01 10:00",
            "2024-01-01 10",
            "2024-01-01 100:00:00",
            "2024-01-01 10:00:000",
            "2024-01-01 :00:00",
            "2024-01-01T",
            "yesterday",
            "１２３４-01-01",
            "1704038400",
        ] {
            assert_eq!(start_error(bad), EXPECTED_SHAPE, "{bad:?}");
        }
    }

    #[test]
    fn a_sign_before_the_year_or_a_day_beyond_31_is_named_as_before() {
        assert_eq!(start_error("+2024-01-01"), EXPECTED_SHAPE);
        assert_eq!(start_error("-2024-01-01"), EXPECTED_SHAPE);
        assert_eq!(
            start_error("2024-01-32"),
            "day 32 is out of range for 2024-01 (it has 31 days)"
        );
        assert_eq!(
            start_error("2024/2/99 10:00:00"),
            "day 99 is out of range for 2024-02 (it has 29 days)"
        );
        assert_eq!(
            start_error("2024-01-01 7:99:00"),
            "minute 99 is out of range"
        );
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert_eq!(start_error("2024-01-01x"), "unexpected text after the date");
        assert_eq!(start_error("2024-01-01-"), "unexpected text after the date");
        assert_eq!(
            start_error("2024-01-01 10:00:00Z"),
            "unexpected text after the time"
        );
        assert_eq!(
            start_error("2024-01-01T10:00:00+08:00"),
            "unexpected text after the time"
        );
        assert_eq!(
            start_error("2024-01-01 10:00:00.5"),
            "unexpected text after the time"
        );
        assert_eq!(
            start_error("2024-01-01 10:00:00 x"),
            "unexpected text after the time"
        );
    }

    #[test]
    fn empty_values_are_rejected() {
        assert_eq!(start_error(""), "is empty");
        assert_eq!(start_error("   "), "is empty");
        assert!(parse_end_date("").is_err());
    }

    #[test]
    fn error_messages_do_not_repeat_the_value() {
        for bad in [
            "2024-13-01",
            "2031-02-30",
            "2024-01-01 25:00:00",
            "9999-99-99x",
        ] {
            let e = parse_end_date(bad).err().unwrap_or_default();
            assert!(!e.is_empty());
            assert!(!e.contains(bad), "{e:?}");
        }
    }

    #[test]
    fn a_three_day_window_starting_and_ending_mid_day_is_cut_at_local_midnights() {
        let window = span(start("2024-01-15 10:00:00"), start("2024-01-17 06:30:00"));
        let days = cut_days(window);
        assert_eq!(
            days,
            vec![
                Day {
                    date: "2024-01-15".into(),
                    span: span(start("2024-01-15 10:00:00"), start("2024-01-16")),
                },
                Day {
                    date: "2024-01-16".into(),
                    span: span(start("2024-01-16"), start("2024-01-17")),
                },
                Day {
                    date: "2024-01-17".into(),
                    span: span(start("2024-01-17"), start("2024-01-17 06:30:00")),
                },
            ]
        );
    }

    #[test]
    fn a_window_crossing_utc_midnight_but_not_local_midnight_is_one_day() {
        // 06:00 and 10:00 in UTC+8 are 22:00 on the 14th and 02:00 on the 15th in UTC.
        let window = span(start("2024-01-15 06:00:00"), start("2024-01-15 10:00:00"));
        let utc_midnight = NEW_YEAR_2024 + 14 * DAY + 8 * HOUR;
        assert!(window.start < utc_midnight && utc_midnight < window.end);
        assert_eq!(utc_midnight % DAY, 0);
        assert_eq!(
            cut_days(window),
            vec![Day {
                date: "2024-01-15".into(),
                span: window,
            }]
        );
    }

    #[test]
    fn sixteen_hundred_utc_is_a_day_boundary() {
        // 2024-01-14 16:00:00 UTC is 2024-01-15 00:00:00 in UTC+8.
        let boundary = 1_705_248_000;
        assert_eq!(boundary % DAY, 16 * HOUR);
        assert_eq!(format_local(boundary), "2024-01-15 00:00:00");
        let days = cut_days(span(boundary - HOUR, boundary + HOUR));
        assert_eq!(
            days,
            vec![
                Day {
                    date: "2024-01-14".into(),
                    span: span(boundary - HOUR, boundary),
                },
                Day {
                    date: "2024-01-15".into(),
                    span: span(boundary, boundary + HOUR),
                },
            ]
        );
    }

    #[test]
    fn a_window_of_whole_local_days_gives_whole_days() {
        let days = cut_days(span(start("2024-02-28"), end("2024-03-01")));
        let dates: Vec<&str> = days.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(dates, ["2024-02-28", "2024-02-29", "2024-03-01"]);
        assert!(days.iter().all(|d| d.span.len() == DAY));
    }

    #[test]
    fn an_empty_or_inverted_window_has_no_days() {
        assert!(cut_days(span(NEW_YEAR_2024, NEW_YEAR_2024)).is_empty());
        assert!(cut_days(span(NEW_YEAR_2024, NEW_YEAR_2024 - 1)).is_empty());
    }

    #[test]
    fn a_one_second_window_is_one_day() {
        let days = cut_days(span(NEW_YEAR_2024 - 1, NEW_YEAR_2024));
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].date, "2023-12-31");
    }

    #[test]
    fn cut_days_are_contiguous_and_cover_the_window_exactly() {
        let mut t = -3 * DAY - 12_345;
        while t < 40 * DAY {
            let window = span(t, t + 5 * DAY + 7_777);
            let days = cut_days(window);
            assert_eq!(days.first().map(|d| d.span.start), Some(window.start));
            assert_eq!(days.last().map(|d| d.span.end), Some(window.end));
            for pair in days.windows(2) {
                assert_eq!(pair[0].span.end, pair[1].span.start);
                assert_eq!(local_midnight(pair[1].span.start), pair[1].span.start);
            }
            for d in &days {
                assert!(!d.span.is_empty() && d.span.len() <= DAY);
                assert_eq!(d.date, local_date(d.span.end - 1));
            }
            t += 3_607;
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_tz_variable() {
        let run = || {
            (
                parse_start_date("2024-01-15 10:00:00"),
                parse_end_date("2024-01-15"),
                cut_days(span(NEW_YEAR_2024 - HOUR, NEW_YEAR_2024 + HOUR)),
                format_local(NEW_YEAR_2024),
                local_date(NEW_YEAR_2024),
                format_rfc3339(NEW_YEAR_2024),
                local_midnight(NEW_YEAR_2024 + 5 * HOUR),
            )
        };
        let before = run();
        let saved = std::env::var_os("TZ");
        std::env::set_var("TZ", "America/New_York");
        let in_new_york = run();
        std::env::set_var("TZ", "UTC");
        let in_utc = run();
        match saved {
            Some(tz) => std::env::set_var("TZ", tz),
            None => std::env::remove_var("TZ"),
        }
        assert_eq!(in_new_york, before);
        assert_eq!(in_utc, before);
        assert_eq!(in_new_york.0, Ok(NEW_YEAR_2024 + 14 * DAY + 10 * HOUR));
        assert_eq!(in_new_york.3, "2024-01-01 00:00:00");
    }

    #[test]
    fn halves_split_at_the_midpoint() {
        assert_eq!(span(0, 10).halves(), Some((span(0, 5), span(5, 10))));
        assert_eq!(span(0, 5).halves(), Some((span(0, 2), span(2, 5))));
        assert_eq!(span(-3, 3).halves(), Some((span(-3, 0), span(0, 3))));
        assert_eq!(span(7, 9).halves(), Some((span(7, 8), span(8, 9))));
    }

    #[test]
    fn spans_shorter_than_two_seconds_have_no_halves() {
        assert_eq!(span(7, 8).halves(), None);
        assert_eq!(span(7, 7).halves(), None);
        assert_eq!(span(8, 7).halves(), None);
    }

    #[test]
    fn the_widest_span_has_halves_and_a_saturated_length() {
        let widest = span(i64::MIN, i64::MAX);
        assert_eq!(widest.len(), i64::MAX);
        assert_eq!(
            widest.halves(),
            Some((span(i64::MIN, -1), span(-1, i64::MAX)))
        );
    }

    #[test]
    fn len_and_is_empty_agree() {
        assert_eq!(span(10, 20).len(), 10);
        assert!(!span(10, 20).is_empty());
        assert_eq!(span(10, 10).len(), 0);
        assert!(span(10, 10).is_empty());
        assert_eq!(span(20, 10).len(), 0);
        assert!(span(20, 10).is_empty());
    }

    #[test]
    fn local_midnight_is_at_or_before_the_time() {
        assert_eq!(local_midnight(NEW_YEAR_2024), NEW_YEAR_2024);
        assert_eq!(local_midnight(NEW_YEAR_2024 + 1), NEW_YEAR_2024);
        assert_eq!(local_midnight(NEW_YEAR_2024 + DAY - 1), NEW_YEAR_2024);
        assert_eq!(local_midnight(NEW_YEAR_2024 - 1), NEW_YEAR_2024 - DAY);
        assert_eq!(local_midnight(0), -8 * HOUR);
        assert_eq!(local_midnight(-1), -8 * HOUR);
        assert_eq!(local_midnight(-8 * HOUR - 1), -8 * HOUR - DAY);
    }

    #[test]
    fn format_functions_print_utc_plus_8() {
        let t = NEW_YEAR_2024 + 14 * DAY + 13 * HOUR + 4 * 60 + 5;
        assert_eq!(format_local(t), "2024-01-15 13:04:05");
        assert_eq!(local_date(t), "2024-01-15");
        assert_eq!(format_rfc3339(t), "2024-01-15T13:04:05+08:00");
        assert_eq!(
            format_rfc3339(start("2024-01-15")),
            "2024-01-15T00:00:00+08:00"
        );
        assert_eq!(format_local(0), "1970-01-01 08:00:00");
        assert_eq!(format_local(-1), "1970-01-01 07:59:59");
        assert_eq!(local_date(-8 * HOUR - 1), "1969-12-31");
        assert_eq!(format_local(NEW_YEAR_2024 - 1), "2023-12-31 23:59:59");
    }

    #[test]
    fn formatting_and_parsing_round_trip() {
        let mut t = -400 * DAY;
        while t < 60 * 365 * DAY {
            assert_eq!(start(&format_local(t)), t);
            assert_eq!(end(&format_local(t)), t + 1);
            assert_eq!(start(&local_date(t)), local_midnight(t));
            t += 7 * DAY + 3_601;
        }
    }

    #[test]
    fn the_calendar_agrees_with_the_time_crate() {
        let offset = match time::UtcOffset::from_whole_seconds(8 * 3600) {
            Ok(offset) => offset,
            Err(e) => panic!("{e}"),
        };
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        // Every day from 1900 to 2100 at a drifting second, and the ends of time's range.
        let mut samples = vec![-62_135_596_800, 253_402_300_799 - 8 * HOUR, 4_102_444_800];
        let mut t = start("1900-01-01 00:00:00");
        while t < start("2100-12-31 00:00:00") {
            samples.push(t);
            t += DAY + 37;
        }
        for t in samples {
            let expected = match time::OffsetDateTime::from_unix_timestamp(t) {
                Ok(utc) => utc.to_offset(offset).format(&format),
                Err(e) => panic!("t = {t}: {e}"),
            };
            assert_eq!(
                Ok(format_local(t)),
                expected.map_err(|e| e.to_string()),
                "t = {t}"
            );
        }
    }

    #[test]
    fn extreme_times_do_not_panic() {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let _ = format_local(t);
            let _ = local_date(t);
            let _ = format_rfc3339(t);
            assert!(local_midnight(t) <= t);
        }
        assert_eq!(cut_days(span(i64::MAX - 10, i64::MAX)).len(), 1);
        assert!(!cut_days(span(i64::MIN, i64::MIN + 10)).is_empty());
        assert!(parse_start_date("9999-12-31 23:59:59").is_ok());
        assert!(parse_end_date("0000-01-01").is_ok());
    }
}
