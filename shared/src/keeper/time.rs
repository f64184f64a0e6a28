//! Event times: parsing every form Keeper writes (ISO 8601, epoch seconds or milliseconds)
//! and formatting the one form the table takes (`YYYY-MM-DDTHH:MM:SS.mmmZ`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// Epoch values above this are milliseconds, below it seconds: 1e12 s is the year 33658,
/// 1e12 ms is 2001-09-09 (Commander's `created` is seconds; some exports use ms).
const EPOCH_MS_THRESHOLD: f64 = 1e12;

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) const ISO_MS_LEN: usize = 24;

/// An instant at millisecond precision, as epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Millis(pub(crate) i64);

impl Millis {
    /// The instant of a `SystemTime`, clamped to i64 milliseconds.
    pub(crate) fn from_system(t: std::time::SystemTime) -> Millis {
        let dt: DateTime<Utc> = t.into();
        Millis(dt.timestamp_millis())
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` outside years 0000–9999 (Azure's datetime range).
    pub(crate) fn format(self) -> Option<[u8; ISO_MS_LEN]> {
        let dt = DateTime::<Utc>::from_timestamp_millis(self.0)?;
        let naive = dt.naive_utc();
        use chrono::{Datelike, Timelike};
        let year = naive.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut out[0..4], year as u32);
        put_digits(&mut out[5..7], naive.month());
        put_digits(&mut out[8..10], naive.day());
        put_digits(&mut out[11..13], naive.hour());
        put_digits(&mut out[14..16], naive.minute());
        put_digits(&mut out[17..19], naive.second());
        put_digits(&mut out[20..23], self.0.rem_euclid(1000) as u32);
        Some(out)
    }
}

fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses a JSON time value: an ISO 8601 string, or epoch seconds/milliseconds as a number
/// or numeric string. `None` when it is neither.
pub(crate) fn parse_value(value: &Value) -> Option<Millis> {
    match value {
        Value::String(s) => parse_str(s),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                epoch_int(i)
            } else {
                epoch_float(n.as_f64()?)
            }
        }
        _ => None,
    }
}

/// Parses an ISO 8601 / RFC 3339 string (offset optional: none means UTC) or a numeric string
/// holding epoch seconds or milliseconds.
pub(crate) fn parse_str(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .all(|b| b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && !s.contains("--")
    {
        if let Ok(i) = s.parse::<i64>() {
            return epoch_int(i);
        }
        if let Ok(f) = s.parse::<f64>() {
            return epoch_float(f);
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(Millis(dt.timestamp_millis()));
    }
    // Lenient forms seen in exports: a space instead of `T`, no offset (read as UTC).
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.fZ",
        "%Y-%m-%dT%H:%M:%S%.fZ",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, format) {
            return Some(Millis(dt.timestamp_millis()));
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Millis(naive.and_utc().timestamp_millis()));
        }
    }
    None
}

fn epoch_int(i: i64) -> Option<Millis> {
    if (i as f64).abs() > EPOCH_MS_THRESHOLD {
        Some(Millis(i))
    } else {
        Some(Millis(i.checked_mul(1000)?))
    }
}

fn epoch_float(f: f64) -> Option<Millis> {
    if !f.is_finite() {
        return None;
    }
    let ms = if f.abs() > EPOCH_MS_THRESHOLD {
        f
    } else {
        f * 1000.0
    };
    if ms.abs() > i64::MAX as f64 / 2.0 {
        return None;
    }
    Some(Millis(ms.floor() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iso(v: Value) -> Option<String> {
        parse_value(&v)
            .and_then(Millis::format)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn iso_strings_with_and_without_offsets_become_utc_milliseconds() {
        assert_eq!(
            iso(json!("2022-10-13T21:05:51.996Z")).as_deref(),
            Some("2022-10-13T21:05:51.996Z")
        );
        assert_eq!(
            iso(json!("2022-10-13T23:05:51.9969+02:00")).as_deref(),
            Some("2022-10-13T21:05:51.996Z")
        );
        assert_eq!(
            iso(json!("2021-08-16T18:10:57Z")).as_deref(),
            Some("2021-08-16T18:10:57.000Z")
        );
        assert_eq!(
            iso(json!("2021-08-16 18:10:57")).as_deref(),
            Some("2021-08-16T18:10:57.000Z")
        );
    }

    #[test]
    fn epoch_seconds_and_milliseconds_are_told_apart() {
        assert_eq!(
            iso(json!(1665695151)).as_deref(),
            Some("2022-10-13T21:05:51.000Z")
        );
        assert_eq!(
            iso(json!(1665695151996_i64)).as_deref(),
            Some("2022-10-13T21:05:51.996Z")
        );
        assert_eq!(
            iso(json!("1665695151")).as_deref(),
            Some("2022-10-13T21:05:51.000Z")
        );
        assert_eq!(
            iso(json!(1665695151.5)).as_deref(),
            Some("2022-10-13T21:05:51.500Z")
        );
    }

    #[test]
    fn nonsense_and_out_of_range_times_are_refused() {
        assert_eq!(iso(json!("yesterday")), None);
        assert_eq!(iso(json!(true)), None);
        assert_eq!(iso(json!(1e300)), None);
        assert_eq!(iso(json!(i64::MAX)), None);
        assert_eq!(iso(json!("")), None);
    }
}
