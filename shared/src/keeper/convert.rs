//! One framed record → a row or a dead-letter entry: JSON (the push form read in place, any
//! other object through the general path), syslog lines, and objects built by the CSV
//! reader. Pure: a record's conversion needs only the reader's context, so batches of
//! records convert on any thread (`batch.rs`).

use serde_json::{Map, Value};

use super::{borrowed, time::Millis};
use super::{shape, syslog, Ctx, DecodeStats, Decoded, Loc, SchemaMode, MAX_RAW_BYTES};
use crate::dead_letter::DeadLetterEntry;
use crate::model::{EncodedRow, Origin};

/// A dead-letter entry for the record at `at`.
pub(super) fn reject(ctx: &Ctx, at: Loc, reason: String, raw: &[u8]) -> Decoded {
    let mut cut = raw.len().min(MAX_RAW_BYTES);
    // Back off to a char boundary (at most 3 continuation bytes); lossy conversion does the rest.
    for _ in 0..3 {
        if cut > 0 && cut < raw.len() && (raw[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
    }
    Decoded::Rejected(DeadLetterEntry {
        reason: format!("{}: {at}: {reason}", ctx.source),
        source: ctx.source.to_string(),
        record: Some(at.record()),
        event: None,
        raw: Some(String::from_utf8_lossy(&raw[..cut]).into_owned()),
    })
}

pub(super) fn not_utf8(ctx: &Ctx, at: Loc, error: std::str::Utf8Error, raw: &[u8]) -> Decoded {
    let reason = format!(
        "not valid UTF-8 (bad byte at offset {} of the record)",
        error.valid_up_to()
    );
    reject(ctx, at, reason, raw)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One JSON record's bytes → a row or a rejection.
pub(super) fn convert_json(ctx: &Ctx, stats: &mut DecodeStats, bytes: &[u8], at: Loc) -> Decoded {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return not_utf8(ctx, at, e, bytes),
    };
    if ctx.schema == SchemaMode::Keeper {
        // The common event, read in place; anything else takes the general path below.
        if let Some(converted) = borrowed::push_event(text)
            .and_then(|event| shape::keeper_row_borrowed(&event, text.len()))
        {
            #[cfg(test)]
            same_as_general_path(text, &converted);
            return row(ctx, stats, converted, at);
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => convert_object(ctx, stats, object, None, at, bytes),
        Ok(other) => reject(
            ctx,
            at,
            format!("a JSON {} is not an event object", kind_of(&other)),
            bytes,
        ),
        Err(e) => reject(ctx, at, format!("invalid JSON: {e}"), bytes),
    }
}

/// One syslog line → a row or a rejection.
pub(super) fn convert_syslog(ctx: &Ctx, stats: &mut DecodeStats, bytes: &[u8], at: Loc) -> Decoded {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return not_utf8(ctx, at, e, bytes),
    };
    let line = match syslog::parse(text) {
        Ok(line) => line,
        Err(reason) => return reject(ctx, at, reason, bytes),
    };
    let message = line.message.trim();
    let mut object = if message.starts_with('{') {
        match serde_json::from_str::<Map<String, Value>>(message) {
            Ok(object) => object,
            Err(e) => {
                return reject(
                    ctx,
                    at,
                    format!("invalid JSON in the syslog message: {e}"),
                    bytes,
                )
            }
        }
    } else if !line.params.is_empty() {
        let mut object = Map::new();
        if !message.is_empty() {
            object.insert("message".to_owned(), Value::String(message.to_owned()));
        }
        object
    } else {
        return reject(
            ctx,
            at,
            "the syslog message is not a JSON object and the line has no structured data"
                .to_owned(),
            bytes,
        );
    };
    for (key, value) in line.params {
        object.entry(key).or_insert(value);
    }
    if line.sd_id == Some(syslog::COMMANDER_SD_ID) {
        // The header fields Commander moved out of the event: its id and address.
        for (key, value) in [("id", line.msgid), ("ip_address", line.host)] {
            if let Some(value) = value {
                object
                    .entry(key)
                    .or_insert_with(|| Value::String(value.to_owned()));
            }
        }
    }
    convert_object(ctx, stats, object, line.time, at, bytes)
}

/// An object → the row for the configured schema.
pub(super) fn convert_object(
    ctx: &Ctx,
    stats: &mut DecodeStats,
    object: Map<String, Value>,
    header_time: Option<Millis>,
    at: Loc,
    raw: &[u8],
) -> Decoded {
    let converted = match &ctx.schema {
        SchemaMode::Keeper => shape::keeper_row(object, header_time),
        SchemaMode::Passthrough { time_field } => shape::passthrough_row(object, time_field),
    };
    match converted {
        Ok(converted) => row(ctx, stats, converted, at),
        Err(reason) => reject(ctx, at, reason, raw),
    }
}

/// A converted record → the row, counted.
fn row(ctx: &Ctx, stats: &mut DecodeStats, converted: shape::Converted, at: Loc) -> Decoded {
    stats.truncated_fields += converted.truncated;
    if converted.time < ctx.old_before {
        stats.old_events += 1;
    }
    Decoded::Row(EncodedRow {
        json: converted.json,
        origin: Origin {
            source: ctx.source.clone(),
            record: at.record(),
        },
    })
}

/// Unit tests hold the in-place path to the general one: same row bytes, time and counts.
#[cfg(test)]
fn same_as_general_path(text: &str, converted: &shape::Converted) {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        panic!("the in-place path took a record that is not an object: {text}");
    };
    let general = shape::keeper_row(object, None).expect("the general path converts it too");
    assert_eq!(
        String::from_utf8_lossy(&converted.json),
        String::from_utf8_lossy(&general.json),
        "{text}"
    );
    assert_eq!(
        (converted.time, converted.truncated),
        (general.time, general.truncated)
    );
}
