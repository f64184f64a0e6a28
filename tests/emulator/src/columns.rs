//! What the ingestion pipeline does to each row before it lands in the table
//! (docs/emulator-facts.md §1.5, §1.7): drop undeclared columns, coerce declared types, truncate
//! long strings, and apply the TimeGenerated window rule.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::config::{ColumnType, StreamConfig};

/// Longest field value kept; longer strings are truncated. Source: docs/emulator-facts.md §1.5 ("64 KB").
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// The column every table has. Source: docs/emulator-facts.md §1.7.
pub const TIME_GENERATED: &str = "TimeGenerated";

/// TimeGenerated older than this before the received time is replaced. Source: docs/emulator-facts.md §1.7
/// (log-standard-columns: "cannot be older than 2 days").
pub const MAX_TIME_GENERATED_AGE: TimeDelta = TimeDelta::days(2);

/// TimeGenerated further than this after the received time is replaced. Source: docs/emulator-facts.md §1.7
/// ("more than a day in the future").
pub const MAX_TIME_GENERATED_AHEAD: TimeDelta = TimeDelta::days(1);

/// What happened to the rows of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) dropped: Vec<String>,
    pub(crate) truncated: u64,
    pub(crate) replaced_time: u64,
    pub(crate) filled_time: u64,
    pub(crate) mismatches: u64,
}

/// Shapes one row as the table would store it.
pub(crate) fn shape_row(
    stream: &StreamConfig,
    row: Map<String, Value>,
    received: DateTime<Utc>,
    changes: &mut Changes,
) -> Value {
    let mut out = Map::new();
    for (name, value) in row {
        let Some(column) = stream.columns.iter().find(|column| column.name == name) else {
            changes.dropped.push(name);
            continue;
        };
        let value = coerce(column.kind, value, changes);
        out.insert(name, value);
    }
    let time = out
        .get(TIME_GENERATED)
        .and_then(Value::as_str)
        .and_then(parse_datetime);
    let stamp =
        |time: DateTime<Utc>| Value::String(time.to_rfc3339_opts(SecondsFormat::Micros, true));
    match time {
        None => {
            changes.filled_time += 1;
            out.insert(TIME_GENERATED.to_string(), stamp(received));
        }
        Some(time)
            if time < received - MAX_TIME_GENERATED_AGE
                || time > received + MAX_TIME_GENERATED_AHEAD =>
        {
            changes.replaced_time += 1;
            out.insert(TIME_GENERATED.to_string(), stamp(received));
        }
        Some(_) => {}
    }
    Value::Object(out)
}

/// Converts `value` to the declared type as Kusto would; what cannot convert becomes null.
fn coerce(kind: ColumnType, value: Value, changes: &mut Changes) -> Value {
    if value.is_null() {
        return value;
    }
    let converted = match (kind, value) {
        (ColumnType::Dynamic, value) => Some(value),
        (ColumnType::String, Value::String(text)) => Some(Value::String(text)),
        (ColumnType::String, other) => Some(Value::String(other.to_string())),
        (ColumnType::Int, value) => integer(&value)
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Value::from),
        (ColumnType::Long, value) => integer(&value).map(Value::from),
        (ColumnType::Real, Value::Number(n)) => Some(Value::Number(n)),
        (ColumnType::Real, Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        (ColumnType::Boolean, Value::Bool(b)) => Some(Value::Bool(b)),
        (ColumnType::Boolean, Value::String(text)) => {
            match text.trim().to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            }
        }
        (ColumnType::Datetime, Value::String(text)) => {
            parse_datetime(&text).map(|_| Value::String(text))
        }
        _ => None,
    };
    match converted {
        Some(Value::String(text)) if text.len() > MAX_FIELD_BYTES => {
            changes.truncated += 1;
            Value::String(truncate(&text, MAX_FIELD_BYTES).to_string())
        }
        Some(value) => value,
        None => {
            changes.mismatches += 1;
            Value::Null
        }
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// The longest prefix of `text` within `max` bytes that ends on a char boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// ISO 8601 / RFC 3339; a time without an offset is taken as UTC (as Kusto does).
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(row: Value, received: DateTime<Utc>) -> (Value, Changes) {
        let mut changes = Changes::default();
        let Value::Object(row) = row else {
            panic!("not an object")
        };
        let out = shape_row(&StreamConfig::keeper(), row, received, &mut changes);
        (out, changes)
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_datetime(text).unwrap()
    }

    #[test]
    fn undeclared_columns_are_dropped_and_named() {
        let (row, changes) = shape(
            json!({"TimeGenerated": "2025-01-15T10:00:00Z", "audit_event": "login", "extra": 1}),
            at("2025-01-15T10:00:05Z"),
        );
        assert_eq!(
            row,
            json!({"TimeGenerated": "2025-01-15T10:00:00Z", "audit_event": "login"})
        );
        assert_eq!(changes.dropped, vec!["extra".to_string()]);
    }

    #[test]
    fn time_generated_outside_the_window_becomes_the_received_time() {
        let received = at("2025-01-15T10:00:00Z");
        for (sent, replaced) in [
            ("2025-01-13T10:00:01Z", false),
            ("2025-01-13T09:59:59Z", true),
            ("2025-01-16T09:59:59Z", false),
            ("2025-01-16T10:00:01Z", true),
        ] {
            let (row, changes) = shape(json!({ "TimeGenerated": sent }), received);
            assert_eq!(changes.replaced_time, u64::from(replaced), "{sent}");
            let expected = if replaced {
                "2025-01-15T10:00:00.000000Z"
            } else {
                sent
            };
            assert_eq!(row["TimeGenerated"], expected, "{sent}");
        }
    }

    #[test]
    fn a_missing_time_generated_is_filled_with_the_received_time() {
        let (row, changes) = shape(json!({"audit_event": "login"}), at("2025-01-15T10:00:00Z"));
        assert_eq!(row["TimeGenerated"], "2025-01-15T10:00:00.000000Z");
        assert_eq!(changes.filled_time, 1);
    }

    #[test]
    fn long_strings_are_cut_to_64_kb_on_a_char_boundary() {
        let text = format!("{}é", "a".repeat(MAX_FIELD_BYTES - 1));
        let (row, changes) = shape(
            json!({"TimeGenerated": "2025-01-15T10:00:00Z", "username": text}),
            at("2025-01-15T10:00:00Z"),
        );
        assert_eq!(changes.truncated, 1);
        assert_eq!(row["username"].as_str().unwrap().len(), MAX_FIELD_BYTES - 1);
    }

    #[test]
    fn values_are_coerced_to_the_declared_type_or_nulled() {
        let (row, changes) = shape(
            json!({
                "TimeGenerated": "2025-01-15T10:00:00Z",
                "enterprise_id": "1234",
                "username": 42,
                "timestamp": "not a time",
                "data": {"k": [1, 2]}
            }),
            at("2025-01-15T10:00:00Z"),
        );
        assert_eq!(row["enterprise_id"], 1234);
        assert_eq!(row["username"], "42");
        assert_eq!(row["timestamp"], Value::Null);
        assert_eq!(row["data"], json!({"k": [1, 2]}));
        assert_eq!(changes.mismatches, 1);
    }
}
