//! The common Keeper event read straight from its bytes, without a `serde_json::Value`
//! tree: the push form (<https://docs.keeper.io/en/enterprise-guide/event-reporting/azure-monitor>)
//! whose columns are strings, `enterprise_id` an integer and `data` a flat object of strings,
//! booleans and integers. Its fields borrow the input; nothing is allocated per field.
//!
//! Anything else (another field, a string with an escape, a `null`, a nested or fractional
//! value, a repeated key) is refused here and converted by the general path, which gives the
//! same row for every event this path takes (`shape::keeper_row_borrowed` is checked against
//! it on every event a unit test converts).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;

/// A push-form event, borrowed from its JSON text.
#[derive(Debug, Default)]
pub(super) struct PushEvent<'a> {
    pub(super) audit_event: Option<&'a str>,
    pub(super) category: Option<&'a str>,
    pub(super) remote_address: Option<&'a str>,
    pub(super) client_version: Option<&'a str>,
    pub(super) username: Option<&'a str>,
    pub(super) enterprise_id: Option<i64>,
    pub(super) timestamp: Option<&'a str>,
    /// `data`'s members, sorted by key (the order a `serde_json::Map` keeps), keys unique.
    pub(super) data: Vec<(&'a str, Flat<'a>)>,
}

/// A value of a flat `data`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Flat<'a> {
    /// A string without escapes, as it is in the input.
    Str(&'a str),
    /// A boolean or an integer (no heap: `Value::Bool` and `Value::Number` own nothing).
    Scalar(Value),
}

/// Reads `text` as a push-form event, or `None` when it is anything else.
pub(super) fn push_event(text: &str) -> Option<PushEvent<'_>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let event = EventSeed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(event)
}

/// Why a record is left to the general path (never shown: the general path says its own).
fn refuse<E: de::Error>() -> E {
    E::custom("not the common push form")
}

/// Sets a field once; a repeated key is refused (serde_json's map keeps the last one, which
/// the general path handles).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(refuse());
    }
    Ok(())
}

struct EventSeed;

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = PushEvent<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = PushEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a push-form Keeper event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = PushEvent::default();
        let mut data = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "audit_event" => once(&mut event.audit_event, map.next_value()?)?,
                "category" => once(&mut event.category, map.next_value()?)?,
                "remote_address" => once(&mut event.remote_address, map.next_value()?)?,
                "client_version" => once(&mut event.client_version, map.next_value()?)?,
                "username" => once(&mut event.username, map.next_value()?)?,
                "enterprise_id" => once(&mut event.enterprise_id, map.next_value()?)?,
                "timestamp" => once(&mut event.timestamp, map.next_value()?)?,
                "data" => once(&mut data, map.next_value_seed(DataSeed)?)?,
                _ => return Err(refuse()),
            }
        }
        event.data = data.unwrap_or_default();
        Ok(event)
    }
}

struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Vec<(&'de str, Flat<'de>)>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Vec<(&'de str, Flat<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flat object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(key) = map.next_key::<&'de str>()? {
            members.push((key, map.next_value_seed(FlatSeed)?));
        }
        members.sort_unstable_by(|a: &(&str, Flat<'_>), b| a.0.cmp(b.0));
        if members.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(refuse());
        }
        Ok(members)
    }
}

struct FlatSeed;

impl<'de> DeserializeSeed<'de> for FlatSeed {
    type Value = Flat<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(FlatVisitor)
    }
}

struct FlatVisitor;

impl<'de> Visitor<'de> for FlatVisitor {
    type Value = Flat<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, boolean or integer")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Flat::Str(s))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Flat::Scalar(Value::Bool(b)))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
        Ok(Flat::Scalar(Value::from(i)))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
        Ok(Flat::Scalar(Value::from(u)))
    }

    // Anything else (an escaped string, a float, null, an array, an object) falls to the
    // visitor's default: an error, so the general path takes the record.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_push_event_is_read_in_place() {
        let text = r#"{"audit_event":"login","category":"login","client_version":"Web 17","data":{"z":"1","a":true,"n":-5},"enterprise_id":3141592,"remote_address":"192.0.2.1","timestamp":"2026-11-30T14:39:01.723Z","username":"ivan@example.com"}"#;
        let event = push_event(text).unwrap();
        assert_eq!(event.audit_event, Some("login"));
        assert_eq!(event.enterprise_id, Some(3141592));
        let keys: Vec<&str> = event.data.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            ["a", "n", "z"],
            "sorted as a serde_json map keeps them"
        );
    }

    #[test]
    fn the_push_fixtures_events_are_read_in_place() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keeper/push.ndjson"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let read = lines.iter().filter(|l| push_event(l).is_some()).count();
        assert!(read * 2 >= lines.len(), "{read} of {} lines", lines.len());
    }

    #[test]
    fn varied_push_events_give_the_general_paths_rows() {
        // Pieces mixed by a fixed linear congruential sequence (reproducible); every event
        // goes through the decoder, whose test build compares both paths on each one taken
        // in place.
        let strings = [
            r#""login""#,
            r#""""#,
            r#""null""#,
            r#""5""#,
            r#""1.50""#,
            r#""true""#,
            r#""é 漢字 😀""#,
            r#""tab	quote"""#,
            r#""é""#,
            "null",
            "7",
            "-0",
            "1.5",
            "true",
            "18446744073709551615",
            "-9223372036854775808",
            r#"["x"]"#,
            r#"{"k":"v"}"#,
        ];
        let keys = [
            "audit_event",
            "category",
            "remote_address",
            "client_version",
            "username",
            "enterprise_id",
            "data",
            "record_uid",
            "id",
        ];
        let mut state: u64 = 7;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut ndjson = String::new();
        for _ in 0..3000 {
            let mut fields = vec![format!(
                r#""timestamp":"2026-11-30T14:39:{:02}.5Z""#,
                next(60)
            )];
            for _ in 0..next(6) {
                let key = keys[next(keys.len())];
                let value = if key == "data" {
                    let members: Vec<String> = (0..next(4))
                        .map(|_| {
                            format!(
                                r#""{}":{}"#,
                                ["a", "b", "z", "é"][next(4)],
                                strings[next(strings.len())]
                            )
                        })
                        .collect();
                    format!("{{{}}}", members.join(","))
                } else {
                    strings[next(strings.len())].to_owned()
                };
                fields.push(format!(r#""{key}":{value}"#));
            }
            ndjson.push_str(&format!("{{{}}}\n", fields.join(",")));
        }
        let options = crate::keeper::DecodeOptions {
            schema: crate::keeper::SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: std::time::SystemTime::now(),
        };
        let mut in_place = 0;
        for line in ndjson.lines() {
            in_place += usize::from(push_event(line).is_some());
        }
        let rows = crate::keeper::RowReader::new(ndjson.as_bytes(), "varied", &options)
            .filter(|item| matches!(item, Ok(crate::keeper::Decoded::Row(_))))
            .count();
        assert!(in_place > 300, "a good share is read in place ({in_place})");
        assert!(rows > in_place, "the rest is converted too ({rows})");
    }

    #[test]
    fn anything_else_is_left_to_the_general_path() {
        for text in [
            r#"{"timestamp":"2026-11-30T14:39:01Z","id":5}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","username":"esc\u00e9"}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","username":null}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","username":5}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","enterprise_id":1.5}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","enterprise_id":18446744073709551615}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","data":{"a":{"b":1}}}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","data":{"a":1.5}}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","data":{"a":1,"a":2}}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","data":null}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z","timestamp":"2026-11-30T14:39:02Z"}"#,
            r#"{"timestamp":"2026-11-30T14:39:01Z"} trailing"#,
            r#"[{"timestamp":"2026-11-30T14:39:01Z"}]"#,
        ] {
            assert!(push_event(text).is_none(), "{text}");
        }
    }
}
