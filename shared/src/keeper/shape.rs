//! Event shapes → the table row. Every Keeper shape (push, flat, Commander/API raw) is
//! normalised to the push form; no field is ever dropped: whatever is not a column, or has
//! the wrong type for its column, lands in `data` under its own key.
//!
//! `EventId` is Keeper's `id` when the event has one. Otherwise it is the first 32 hex digits
//! of the SHA-256 of the canonical JSON (see `canonical.rs` and docs/eventid.md) of the
//! normalised event `{audit_event, category, client_version, data, enterprise_id,
//! remote_address, timestamp, username}`, `timestamp` formatted as `YYYY-MM-DDTHH:MM:SS.mmmZ`
//! and strings not yet truncated. The canonical form reads text that spells a number or a
//! boolean as that value and leaves out null and empty members, so the same event gets the
//! same id from JSON, NDJSON, CSV and syslog.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::borrowed::{Flat, PushEvent};
use super::canonical::{self, Member};
use super::json_text::{write_key, write_map, write_str, write_value};
use super::time::{self, Millis, ISO_MS_LEN};
use super::MAX_FIELD_BYTES;

/// Where the event time is looked for, in order (push, Commander/API raw, Azure row).
const TIME_FIELDS: [&str; 3] = ["timestamp", "created", "TimeGenerated"];

/// String columns and the names each shape gives them (push name first, then Commander/API).
const STRING_COLUMNS: [&[&str]; 5] = [
    &["audit_event", "audit_event_type"],
    &["category"],
    &["remote_address", "ip_address"],
    &["client_version", "keeper_version"],
    &["username"],
];

/// Key a non-object `data` value is kept under inside `data`.
const NON_OBJECT_DATA_KEY: &str = "_data";

/// Hex digits of the SHA-256 kept for a hashed `EventId`.
const EVENT_ID_HEX: usize = 32;

/// A converted record.
#[derive(Debug)]
pub(crate) struct Converted {
    pub(crate) json: Vec<u8>,
    pub(crate) time: Millis,
    pub(crate) truncated: u64,
}

/// The table row, its columns in the order they are written. Tests check [`Row::to_json`]
/// against serde_json's serialization of the same struct.
#[cfg_attr(test, derive(serde::Serialize))]
#[allow(non_snake_case)]
struct Row<'a, D: ?Sized> {
    TimeGenerated: &'a str,
    EventId: &'a str,
    audit_event: Option<&'a str>,
    category: Option<&'a str>,
    remote_address: Option<&'a str>,
    client_version: Option<&'a str>,
    username: Option<&'a str>,
    enterprise_id: Option<i64>,
    timestamp: &'a str,
    data: &'a D,
}

/// A row's `data`, written as JSON.
trait DataJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl DataJson for Map<String, Value> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_map(out, self);
    }
}

/// A flat `data` (sorted, unique keys): written as its `serde_json::Map` would be.
impl DataJson for [(&str, Flat<'_>)] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (index, (key, value)) in self.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            match value {
                Flat::Str(s) => write_str(out, s),
                Flat::Scalar(value) => write_value(out, value),
            }
        }
        out.push(b'}');
    }
}

impl<D: DataJson + ?Sized> Row<'_, D> {
    /// The row's JSON, as serde_json writes the struct (fields in order, `None` as `null`).
    fn to_json(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        write_key(&mut out, "TimeGenerated");
        write_str(&mut out, self.TimeGenerated);
        out.push(b',');
        write_key(&mut out, "EventId");
        write_str(&mut out, self.EventId);
        for (key, value) in [
            ("audit_event", self.audit_event),
            ("category", self.category),
            ("remote_address", self.remote_address),
            ("client_version", self.client_version),
            ("username", self.username),
        ] {
            out.push(b',');
            write_key(&mut out, key);
            match value {
                Some(value) => write_str(&mut out, value),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b',');
        write_key(&mut out, "enterprise_id");
        match self.enterprise_id {
            Some(id) => out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        write_key(&mut out, "timestamp");
        write_str(&mut out, self.timestamp);
        out.push(b',');
        write_key(&mut out, "data");
        self.data.write_json(&mut out);
        out.push(b'}');
        out
    }
}

/// Bytes reserved for a row of the general path: Keeper rows are a few hundred bytes.
const ROW_CAPACITY: usize = 512;

/// Bytes a row adds to its push-form event: `TimeGenerated`, `EventId` and `null` columns
/// (about 90 on the bench's events), with room to spare. Rows wait in memory by the
/// thousand, so their capacity is sized from the event rather than rounded up.
const ROW_OVER_EVENT: usize = 128;

/// Lower-case hex digits, for the hashed `EventId`.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A short rendering of a value for error messages.
fn show(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 80 {
        let mut cut = 80;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Inserts `key` into `data`; an equal value already there is kept once, a different one
/// keeps both (the newcomer under `_key`, `__key`, ...).
fn insert_unique(data: &mut Map<String, Value>, mut key: String, value: Value) {
    loop {
        match data.get(&key) {
            None => {
                data.insert(key, value);
                return;
            }
            Some(existing) if *existing == value => return,
            Some(_) => key.insert(0, '_'),
        }
    }
}

/// The event time: the syslog header's when given, else the first of [`TIME_FIELDS`] that
/// parses. Time fields holding the same instant are consumed; others stay for `data`.
fn event_time(
    object: &mut Map<String, Value>,
    header: Option<Millis>,
) -> Result<(Millis, [u8; ISO_MS_LEN]), String> {
    let found = header.or_else(|| {
        TIME_FIELDS
            .iter()
            .find_map(|field| object.get(*field).and_then(time::parse_value))
    });
    let Some(instant) = found else {
        return Err(
            match TIME_FIELDS.iter().find_map(|f| Some((f, object.get(*f)?))) {
                Some((field, value)) => {
                    format!("field `{field}`: not a valid time: {}", show(value))
                }
                None => "no event time: none of `timestamp`, `created`, `TimeGenerated` is present"
                    .to_owned(),
            },
        );
    };
    let formatted = instant
        .format()
        .ok_or("the event time is outside the years 0000-9999")?;
    for field in TIME_FIELDS {
        if object.get(field).and_then(time::parse_value) == Some(instant) {
            object.remove(field);
        }
    }
    Ok((instant, formatted))
}

/// An integer `enterprise_id`, from a number or a numeric string (read as the same JSON
/// number, so CSV's `1234.0` is JSON's `1234.0`).
fn enterprise_id(value: &Value) -> Option<i64> {
    let whole = |n: &serde_json::Number| {
        n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
    };
    match value {
        Value::Number(n) => whole(n),
        Value::String(s) => canonical::number_of_str(s.trim()).and_then(|n| whole(&n)),
        _ => None,
    }
}

/// Converts one Keeper event of any shape to the row.
pub(crate) fn keeper_row(
    mut object: Map<String, Value>,
    header_time: Option<Millis>,
) -> Result<Converted, String> {
    let (instant, stamp) = event_time(&mut object, header_time)?;

    let mut data = match object.remove("data") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            let mut map = Map::new();
            map.insert(NON_OBJECT_DATA_KEY.to_owned(), other);
            map
        }
    };

    // A number, or text spelling one, gives its canonical digits (CSV `98765` = JSON
    // 98765); anything that is not an id stays in the event and so in `data`.
    let event_id = object.get("id").and_then(canonical::id_text);
    if event_id.is_some() {
        object.remove("id");
    }

    let mut columns: [Option<String>; 5] = Default::default();
    for (slot, names) in columns.iter_mut().zip(STRING_COLUMNS) {
        for name in names {
            match object.get(*name) {
                Some(Value::String(_)) => {
                    if let Some(Value::String(s)) = object.remove(*name) {
                        *slot = Some(s);
                    }
                    break;
                }
                Some(Value::Null) => {
                    object.remove(*name);
                }
                // Wrong type: it stays in `object` and so lands in `data` under its key.
                _ => {}
            }
        }
    }

    let enterprise = match object.get("enterprise_id") {
        Some(Value::Null) => {
            object.remove("enterprise_id");
            None
        }
        Some(value) => {
            let id = enterprise_id(value);
            if id.is_some() {
                object.remove("enterprise_id");
            }
            id
        }
        None => None,
    };

    for (key, value) in object {
        insert_unique(&mut data, key, value);
    }

    let stamp = std::str::from_utf8(&stamp).map_err(|e| e.to_string())?;
    let [audit_event, category, remote_address, client_version, username] = &mut columns;
    let mut event_id = match event_id {
        Some(id) => id,
        None => {
            let strings = [
                ("audit_event", audit_event.as_deref()),
                ("category", category.as_deref()),
                ("client_version", client_version.as_deref()),
                ("remote_address", remote_address.as_deref()),
                ("timestamp", Some(stamp)),
                ("username", username.as_deref()),
            ];
            let data = data
                .iter()
                .map(|(k, v)| (k.as_str(), Member::Value(v)))
                .collect();
            hash_id(&strings, enterprise, data)
        }
    };

    let mut truncated = 0;
    truncate_string(&mut event_id, &mut truncated);
    for column in [
        audit_event,
        category,
        remote_address,
        client_version,
        username,
    ]
    .into_iter()
    .flatten()
    {
        truncate_string(column, &mut truncated);
    }
    truncate_map(&mut data, &mut truncated);

    let row = Row {
        TimeGenerated: stamp,
        EventId: &event_id,
        audit_event: columns[0].as_deref(),
        category: columns[1].as_deref(),
        remote_address: columns[2].as_deref(),
        client_version: columns[3].as_deref(),
        username: columns[4].as_deref(),
        enterprise_id: enterprise,
        timestamp: stamp,
        data: &data,
    };
    let json = row.to_json(ROW_CAPACITY);
    // Every row a unit test converts is also held to serde_json's bytes for the same struct.
    #[cfg(test)]
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&serde_json::to_vec(&row).unwrap_or_default())
    );
    Ok(Converted {
        json,
        time: instant,
        truncated,
    })
}

/// The row of a push-form event read in place ([`PushEvent`]), or `None` when the general
/// path must take it (a time that does not parse, a string to truncate). Same rules, same
/// bytes: unit tests compare the two on every event they convert.
pub(crate) fn keeper_row_borrowed(event: &PushEvent<'_>, event_bytes: usize) -> Option<Converted> {
    let instant = time::parse_str(event.timestamp?)?;
    let stamp = instant.format()?;
    let stamp = std::str::from_utf8(&stamp).ok()?;
    let columns = [
        event.audit_event,
        event.category,
        event.remote_address,
        event.client_version,
        event.username,
    ];
    let data_strings = event.data.iter().flat_map(|(key, value)| {
        let value = match value {
            Flat::Str(s) => Some(*s),
            Flat::Scalar(_) => None,
        };
        std::iter::once(*key).chain(value)
    });
    if columns
        .iter()
        .flatten()
        .copied()
        .chain(data_strings)
        .any(|s| s.len() > MAX_FIELD_BYTES)
    {
        return None;
    }
    let [audit_event, category, remote_address, client_version, username] = columns;
    let strings = [
        ("audit_event", audit_event),
        ("category", category),
        ("client_version", client_version),
        ("remote_address", remote_address),
        ("timestamp", Some(stamp)),
        ("username", username),
    ];
    let data = event
        .data
        .iter()
        .map(|(key, value)| {
            let member = match value {
                Flat::Str(s) => Member::Str(s),
                Flat::Scalar(value) => Member::Value(value),
            };
            (*key, member)
        })
        .collect();
    let event_id = hash_id(&strings, event.enterprise_id, data);
    let row = Row {
        TimeGenerated: stamp,
        EventId: &event_id,
        audit_event,
        category,
        remote_address,
        client_version,
        username,
        enterprise_id: event.enterprise_id,
        timestamp: stamp,
        data: event.data.as_slice(),
    };
    Some(Converted {
        json: row.to_json(event_bytes + ROW_OVER_EVENT),
        time: instant,
        truncated: 0,
    })
}

/// The hashed `EventId`: SHA-256 of the canonical JSON of the normalised event (`data` as
/// its members).
fn hash_id<'a>(
    strings: &[(&'static str, Option<&'a str>)],
    enterprise: Option<i64>,
    data: Vec<(&'a str, Member<'a>)>,
) -> String {
    let mut members: Vec<(&str, Member<'_>)> = strings
        .iter()
        .filter_map(|(key, value)| Some((*key, Member::Str((*value)?))))
        .collect();
    if let Some(id) = enterprise {
        members.push(("enterprise_id", Member::Int(id)));
    }
    members.push(("data", Member::Members(data)));
    let mut bytes = Vec::with_capacity(512);
    canonical::write_members(&mut bytes, members);
    let digest = Sha256::digest(&bytes);
    let mut hex = String::with_capacity(EVENT_ID_HEX);
    for byte in digest.iter().take(EVENT_ID_HEX / 2) {
        hex.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Forwards an object as it is, with `TimeGenerated` from `time_field`.
pub(crate) fn passthrough_row(
    mut object: Map<String, Value>,
    time_field: &str,
) -> Result<Converted, String> {
    let value = object.get(time_field).ok_or_else(|| {
        format!("field `{time_field}`: missing (it is the configured time field)")
    })?;
    let instant = time::parse_value(value).ok_or_else(|| {
        format!(
            "field `{time_field}`: not a valid time (ISO 8601 or epoch seconds/milliseconds): {}",
            show(value)
        )
    })?;
    let stamp = instant
        .format()
        .ok_or_else(|| format!("field `{time_field}`: outside the years 0000-9999"))?;
    let mut truncated = 0;
    truncate_map(&mut object, &mut truncated);
    object.insert(
        "TimeGenerated".to_owned(),
        Value::String(String::from_utf8_lossy(&stamp).into_owned()),
    );
    let mut json = Vec::with_capacity(ROW_CAPACITY);
    write_map(&mut json, &object);
    Ok(Converted {
        json,
        time: instant,
        truncated,
    })
}

/// Cuts `s` to [`MAX_FIELD_BYTES`] on a char boundary; counts it.
fn truncate_string(s: &mut String, count: &mut u64) {
    if s.len() > MAX_FIELD_BYTES {
        let mut cut = MAX_FIELD_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        *count += 1;
    }
}

fn truncate_value(value: &mut Value, count: &mut u64) {
    match value {
        Value::String(s) => truncate_string(s, count),
        Value::Array(items) => items.iter_mut().for_each(|v| truncate_value(v, count)),
        Value::Object(map) => truncate_map(map, count),
        _ => {}
    }
}

/// Truncates every string in `map`, keys included (recursion is bounded by serde_json's
/// nesting limit of 128).
fn truncate_map(map: &mut Map<String, Value>, count: &mut u64) {
    if map.keys().any(|k| k.len() > MAX_FIELD_BYTES) {
        let old = std::mem::take(map);
        for (mut key, value) in old {
            truncate_string(&mut key, count);
            while map.contains_key(&key) {
                // Two long keys sharing a 64 KB prefix: keep both, told apart by a suffix.
                let mut cut = MAX_FIELD_BYTES - 8;
                while !key.is_char_boundary(cut) {
                    cut -= 1;
                }
                key.truncate(cut);
                key.push_str(&format!("~{}", map.len()));
            }
            map.insert(key, value);
        }
    }
    map.values_mut().for_each(|v| truncate_value(v, count));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Value {
        let Value::Object(map) = v else { panic!() };
        serde_json::from_slice(&keeper_row(map, None).unwrap().json).unwrap()
    }

    #[test]
    fn rows_are_byte_for_byte_what_serde_json_writes_for_every_fixture() {
        // keeper_row compares its bytes with serde_json's (under cfg(test)); this feeds it
        // every fixture shape and container through the real decoder.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keeper");
        let mut rows = 0;
        let paths = ["", "/eventid", "/hostile"].into_iter().flat_map(|sub| {
            std::fs::read_dir(format!("{dir}{sub}"))
                .unwrap()
                .map(|entry| entry.unwrap().path())
        });
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !path.is_file() || name.ends_with(".expected.json") || name.ends_with("vectors.json")
            {
                continue;
            }
            let options = crate::keeper::DecodeOptions {
                schema: crate::keeper::SchemaMode::Keeper,
                max_decompressed_bytes: 1 << 30,
                now: std::time::SystemTime::now(),
            };
            let bytes = std::fs::read(&path).unwrap();
            for item in crate::keeper::RowReader::new(bytes.as_slice(), &name, &options) {
                if let crate::keeper::Decoded::Row(_) = item.unwrap() {
                    rows += 1;
                }
            }
        }
        assert!(rows > 50, "the fixtures hold rows ({rows})");
    }

    #[test]
    fn hostile_strings_and_nested_data_are_written_as_serde_json_writes_them() {
        let strings = [
            "",
            "a\u{0}b",
            "quote \" back\\",
            "\u{1f}\t\n",
            "é 漢字 😀",
            "\u{7f}",
        ];
        for s in strings {
            let got = row(
                json!({"timestamp": 1, "audit_event": s, "username": s, "id": s,
                "data": {s: [s, 1.5, -0.0, 18446744073709551615u64, null, {"k": s}]}}),
            );
            assert_eq!(got["audit_event"], s);
        }
    }

    #[test]
    fn commander_raw_fields_map_to_push_columns() {
        let got = row(
            json!({"id": 98765, "created": 1736937062, "audit_event_type": "login",
            "ip_address": "203.0.113.10", "keeper_version": "Commander 17.0.1",
            "username": "alice@example.com", "node": 5}),
        );
        assert_eq!(got["EventId"], "98765");
        assert_eq!(got["audit_event"], "login");
        assert_eq!(got["remote_address"], "203.0.113.10");
        assert_eq!(got["client_version"], "Commander 17.0.1");
        assert_eq!(got["timestamp"], "2025-01-15T10:31:02.000Z");
        assert_eq!(got["data"], json!({"node": 5}));
    }

    #[test]
    fn wrong_types_are_kept_in_data_under_their_key() {
        let got = row(
            json!({"timestamp": "2025-01-15T10:31:02Z", "audit_event": 5,
            "enterprise_id": "acme", "data": "text", "username": ["x"]}),
        );
        assert_eq!(got["audit_event"], Value::Null);
        assert_eq!(got["enterprise_id"], Value::Null);
        assert_eq!(
            got["data"],
            json!({"audit_event": 5, "enterprise_id": "acme", "_data": "text", "username": ["x"]})
        );
    }

    #[test]
    fn a_different_time_field_is_kept_and_an_equal_one_consumed() {
        let got = row(json!({"timestamp": "2025-01-15T10:31:02.123Z",
            "TimeGenerated": "2025-01-15T10:31:02.123Z", "created": 1}));
        assert_eq!(got["data"], json!({"created": 1}));
    }

    #[test]
    fn a_missing_or_bad_time_is_refused_naming_the_field() {
        let Value::Object(map) = json!({"audit_event": "login"}) else {
            panic!()
        };
        assert!(keeper_row(map, None).unwrap_err().contains("`timestamp`"));
        let Value::Object(map) = json!({"timestamp": "soon"}) else {
            panic!()
        };
        assert!(keeper_row(map, None)
            .unwrap_err()
            .contains("field `timestamp`"));
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary_and_counted() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let Value::Object(map) =
            json!({"timestamp": 1, "username": long, "data": {"a": [long], long.clone(): 1}})
        else {
            panic!()
        };
        let out = keeper_row(map, None).unwrap();
        assert_eq!(out.truncated, 3);
        let got: Value = serde_json::from_slice(&out.json).unwrap();
        assert_eq!(got["username"].as_str().unwrap().len(), MAX_FIELD_BYTES);
    }
}
