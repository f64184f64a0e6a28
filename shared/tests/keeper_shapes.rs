//! Every Keeper shape and container becomes the expected row; hostile input is rejected
//! record by record, naming where, while the good events around it come through.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] fns are test code too.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use logrelay_core::keeper::{
    DecodeOptions, DecodeStats, Decoded, RowReader, SchemaMode, MAX_FIELD_BYTES, MAX_RECORD_BYTES,
};
use logrelay_core::schema::KEEPER_COLUMNS;
use logrelay_core::Error;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keeper");

/// Each fixture is checked against `<name>.expected.json`.
const SHAPE_FIXTURES: &[&str] = &[
    "push.json",
    "push.ndjson",
    "push-with-timegenerated.ndjson",
    "flat-s3-export.json",
    "flat.ndjson",
    "single-object.json",
    "pretty-object.json",
    "concatenated-pretty.json",
    "syslog.log",
    "commander.syslog",
    "commander-raw.json",
    "events.csv",
];

/// 2025-01-16T00:00:00Z: the 2025 events are recent, the 2022 syslog example is old.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_736_985_600)
}

fn keeper() -> DecodeOptions {
    DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: 64 * 1024 * 1024,
        now: now(),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> Vec<u8> {
    read(&Path::new(FIXTURES).join(name))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Two gzip members, split mid-stream (as `cat a.gz b.gz` or a resumed upload makes).
fn gzip_two_members(bytes: &[u8]) -> Vec<u8> {
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let mut out = gzip(a);
    out.extend(gzip(b));
    out
}

fn with_bom(bytes: &[u8]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A reader that hands out at most `step` bytes per read: every boundary gets exercised.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// One decoded item, simplified for assertions.
#[derive(Debug)]
enum Item {
    Row(Value),
    Rejected {
        reason: String,
        record: Option<u64>,
        raw: String,
    },
    Io(String),
}

fn decode_with(
    reader: impl Read + Send,
    source: &str,
    options: &DecodeOptions,
) -> (Vec<Item>, DecodeStats) {
    let mut rows = RowReader::new(reader, source, options);
    let mut items = Vec::new();
    for item in rows.by_ref() {
        items.push(match item {
            Ok(Decoded::Row(row)) => {
                assert_eq!(&*row.origin.source, source);
                Item::Row(serde_json::from_slice(&row.json).expect("rows are JSON"))
            }
            Ok(Decoded::Rejected(entry)) => {
                assert_eq!(entry.source, source);
                assert!(entry.reason.starts_with(source), "{}", entry.reason);
                let raw = entry.raw.unwrap_or_default();
                assert!(raw.len() <= 4 * 1024 + 3, "raw is capped");
                Item::Rejected {
                    reason: entry.reason,
                    record: entry.record,
                    raw,
                }
            }
            Err(Error::Io { what, source }) => Item::Io(format!("{what}: {source}")),
            Err(other) => panic!("unexpected error {other}"),
        });
    }
    (items, rows.stats())
}

fn decode(bytes: &[u8], source: &str) -> Vec<Item> {
    decode_with(bytes, source, &keeper()).0
}

fn rows(items: &[Item]) -> Vec<Value> {
    items
        .iter()
        .map(|item| match item {
            Item::Row(row) => row.clone(),
            other => panic!("expected only rows, got {other:?}"),
        })
        .collect()
}

/// The documented EventId for events of strings and integers with no null or empty member,
/// where the canonical form (docs/eventid.md) is plain sorted-key compact JSON.
fn documented_event_id(row: &Value) -> String {
    let mut canonical = serde_json::Map::new();
    for key in [
        "audit_event",
        "category",
        "client_version",
        "data",
        "enterprise_id",
        "remote_address",
        "timestamp",
        "username",
    ] {
        if !row[key].is_null() || key == "data" {
            canonical.insert(key.to_owned(), row[key].clone());
        }
    }
    let digest = Sha256::digest(serde_json::to_vec(&canonical).unwrap());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_fixture_in_every_container_yields_exactly_the_expected_rows() {
    for name in SHAPE_FIXTURES {
        let plain = fixture(name);
        let expected: Vec<Value> =
            serde_json::from_slice(&fixture(&format!("{name}.expected.json"))).unwrap();
        let containers: Vec<(&str, Vec<u8>)> = vec![
            ("plain", plain.clone()),
            ("gzip", gzip(&plain)),
            ("gzip, two members", gzip_two_members(&plain)),
            ("BOM", with_bom(&plain)),
            ("gzip of BOM", gzip(&with_bom(&plain))),
        ];
        for (container, bytes) in containers {
            let got = rows(&decode(&bytes, name));
            assert_eq!(got, expected, "{name} ({container})");
            let trickled = decode_with(
                Trickle {
                    bytes: &bytes,
                    step: 7,
                },
                name,
                &keeper(),
            )
            .0;
            assert_eq!(
                rows(&trickled),
                expected,
                "{name} ({container}, 7-byte reads)"
            );
        }
    }
}

#[test]
fn rows_have_exactly_the_table_columns_in_order() {
    let names: Vec<&str> = KEEPER_COLUMNS.iter().map(|c| c.name).collect();
    for name in SHAPE_FIXTURES {
        let bytes = fixture(name);
        let mut reader = RowReader::new(&bytes[..], name, &keeper());
        for item in reader.by_ref() {
            let Ok(Decoded::Row(row)) = item else {
                panic!("{name}: {item:?}")
            };
            let text = String::from_utf8(row.json).unwrap();
            let keys: Vec<String> = serde_json::Deserializer::from_str(&text)
                .into_iter::<serde_json::Map<String, Value>>()
                .next()
                .unwrap()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(keys, sorted, "{name}: same set of columns");
            let positions: Vec<usize> = names
                .iter()
                .map(|n| text.find(&format!("\"{n}\":")).unwrap())
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{name}: columns in table order: {text}"
            );
        }
    }
}

#[test]
fn event_ids_follow_the_documented_hash_and_differ_between_events() {
    let mut seen = std::collections::HashSet::new();
    for name in [
        "push.json",
        "push-with-timegenerated.ndjson",
        "commander.syslog",
    ] {
        for row in rows(&decode(&fixture(name), name)) {
            assert_eq!(row["EventId"], documented_event_id(&row), "{name}: {row}");
            seen.insert(row["EventId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        seen.len(),
        3 + 1 + 1,
        "push-with-timegenerated repeats two push events"
    );
    let raw = rows(&decode(&fixture("commander-raw.json"), "raw"));
    assert_eq!(
        raw[0]["EventId"], "98765",
        "Keeper's own id is used when present"
    );
    assert_eq!(raw[1]["EventId"], "raw-98766");
}

#[test]
fn the_same_event_in_push_flat_syslog_and_csv_form_is_the_same_row() {
    let push = rows(&decode(&fixture("push.json"), "p"));
    for other in [
        "flat-s3-export.json",
        "syslog.log",
        "events.csv",
        "flat.ndjson",
    ] {
        assert_eq!(rows(&decode(&fixture(other), other)), push, "{other}");
    }
}

#[test]
fn old_events_are_counted_against_the_given_now() {
    let (_, stats) = decode_with(&fixture("push.json")[..], "push.json", &keeper());
    assert_eq!(
        stats,
        DecodeStats {
            truncated_fields: 0,
            old_events: 1
        }
    );
}

#[test]
fn empty_and_blank_input_yield_nothing() {
    for input in [&b""[..], b"\n\n  \r\n", b"\xEF\xBB\xBF", b"[]", b"[\n]\n"] {
        assert!(decode(input, "empty").is_empty(), "{input:?}");
        assert!(decode(&gzip(input), "empty.gz").is_empty(), "{input:?}");
    }
}

fn reasons(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn audit_events(items: &[Item]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Row(row) => Some(row["audit_event"].clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_ndjson_lines_are_rejected_by_line_and_the_good_ones_come_through() {
    let items = decode(&fixture("hostile/bad-lines.ndjson"), "bad-lines.ndjson");
    let reasons = reasons(&items);
    let expect = [
        "bad-lines.ndjson: line 2: invalid JSON",
        "bad-lines.ndjson: line 3: a JSON number is not an event object",
        "bad-lines.ndjson: line 4: a JSON string is not an event object",
        "bad-lines.ndjson: line 5: a JSON null is not an event object",
        "bad-lines.ndjson: line 7: no event time: none of `timestamp`",
        "bad-lines.ndjson: line 8: not valid UTF-8",
        "bad-lines.ndjson: line 9: invalid JSON: recursion limit exceeded",
        "bad-lines.ndjson: line 10: field `timestamp`: not a valid time",
        "bad-lines.ndjson: line 11: a JSON array is not an event object",
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for (got, want) in reasons.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert_eq!(
        audit_events(&items),
        vec![
            json!("login"),
            Value::Null,
            json!("record_share_outside_user")
        ]
    );
    let odd = rows(&items[5..6].iter().map(clone_item).collect::<Vec<_>>());
    assert_eq!(
        odd[0]["data"],
        json!({"audit_event": 5, "_data": "not an object", "enterprise_id": "12x"}),
        "wrong types are kept in data, never dropped"
    );
    let Item::Rejected { raw, record, .. } = &items[7] else {
        panic!()
    };
    assert_eq!(*record, Some(8));
    assert!(raw.contains("\u{fffd}"), "raw is lossy UTF-8: {raw}");
}

fn clone_item(item: &Item) -> Item {
    match item {
        Item::Row(v) => Item::Row(v.clone()),
        Item::Rejected {
            reason,
            record,
            raw,
        } => Item::Rejected {
            reason: reason.clone(),
            record: *record,
            raw: raw.clone(),
        },
        Item::Io(s) => Item::Io(s.clone()),
    }
}

#[test]
fn bad_array_elements_are_rejected_by_record_and_the_good_ones_come_through() {
    let items = decode(&fixture("hostile/bad-elements.json"), "bad.json");
    let reasons = reasons(&items);
    let expect = [
        "bad.json: record 2 (line 3): not valid UTF-8",
        "bad.json: record 3 (line 4): a JSON string is not an event object",
        "bad.json: record 4 (line 5): malformed JSON: a string runs past the end of its line",
        // The rest of the broken element (its raw is kept too); framing resumes after it.
        "bad.json: record 5 (line 6): malformed JSON: a string runs past the end of its line",
        "bad.json: record 6 (line 7): invalid JSON: recursion limit exceeded",
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for (got, want) in reasons.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert_eq!(
        audit_events(&items),
        vec![json!("login"), json!("record_share_outside_user")]
    );
}

#[test]
fn an_unterminated_array_keeps_the_events_before_it() {
    let items = decode(&fixture("hostile/unterminated-array.json"), "cut.json");
    assert_eq!(audit_events(&items), vec![json!("login")]);
    assert_eq!(
        reasons(&items),
        vec!["cut.json: record 2 (line 2): malformed JSON: the input ends inside this value"]
    );
}

#[test]
fn ragged_and_unclosed_csv_records_are_rejected_by_line() {
    let items = decode(&fixture("hostile/ragged.csv"), "ragged.csv");
    assert_eq!(
        reasons(&items),
        vec![
            "ragged.csv: line 3: the CSV record has 4 fields; the header has 3",
            "ragged.csv: line 6: a quoted CSV field is never closed",
        ]
    );
    assert_eq!(
        audit_events(&items),
        vec![json!("login"), json!("multi\nline")]
    );
}

#[test]
fn bad_syslog_lines_are_rejected_by_line() {
    let items = decode(&fixture("hostile/bad-syslog.log"), "syslog");
    let reasons = reasons(&items);
    let expect = [
        "syslog: line 2: a syslog line starts with `<PRI>`",
        "syslog: line 3: the syslog header timestamp \"yesterday\" is not an RFC 3339 time",
        "syslog: line 4: the syslog message is not a JSON object",
        "syslog: line 5: invalid JSON in the syslog message",
        "syslog: line 6: no event time",
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for (got, want) in reasons.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    let good = rows(
        &items
            .iter()
            .filter(|i| matches!(i, Item::Row(_)))
            .map(clone_item)
            .collect::<Vec<_>>(),
    );
    let push = rows(&decode(&fixture("push.json"), "p"));
    assert_eq!(
        good,
        vec![push[2].clone(), push[0].clone()],
        "a BOM before MSG is tolerated"
    );
}

#[test]
fn a_truncated_gzip_is_rejected_where_it_stops_after_the_events_before_it() {
    let mut plain = Vec::new();
    for _ in 0..200 {
        plain.extend_from_slice(&fixture("push.ndjson"));
    }
    let mut gz = gzip(&plain);
    gz.truncate(gz.len() * 2 / 3);
    let items = decode(&gz, "cut.ndjson.gz");
    let (last, before) = items.split_last().unwrap();
    assert!(before.len() > 10);
    assert!(before.iter().all(|i| matches!(i, Item::Row(_))));
    let Item::Rejected { reason, .. } = last else {
        panic!("{last:?}")
    };
    assert!(
        reason.starts_with("cut.ndjson.gz: line ")
            && reason.contains("gzip stream is corrupt or truncated"),
        "{reason}"
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_decompressed_cap() {
    let mut plain = fixture("push.ndjson");
    plain.extend(std::iter::repeat_n(b' ', 16 * 1024 * 1024));
    let bomb = gzip(&plain);
    assert!(bomb.len() < 1024 * 1024);
    let options = DecodeOptions {
        max_decompressed_bytes: 1024 * 1024,
        ..keeper()
    };
    let (items, _) = decode_with(&bomb[..], "bomb.gz", &options);
    assert_eq!(audit_events(&items).len(), 3);
    let reasons = reasons(&items);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("exceeds 1048576 bytes"),
        "{}",
        reasons[0]
    );
}

#[test]
fn a_gzip_bomb_inside_an_array_names_the_record_it_stopped_before() {
    let e1 = String::from_utf8(fixture("single-object.json")).unwrap();
    let mut plain = format!("[{0},{0},", e1.trim()).into_bytes();
    plain.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    let options = DecodeOptions {
        max_decompressed_bytes: 1024 * 1024,
        ..keeper()
    };
    let (items, _) = decode_with(&gzip(&plain)[..], "bomb.json.gz", &options);
    assert_eq!(audit_events(&items).len(), 2);
    let reasons = reasons(&items);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with("bomb.json.gz: record 3 "),
        "{}",
        reasons[0]
    );
}

#[test]
fn an_oversized_line_or_element_is_skipped_and_named() {
    let huge = format!(
        "{{\"timestamp\":1,\"x\":\"{}\"}}",
        "a".repeat(MAX_RECORD_BYTES + 1)
    );
    let e1 = String::from_utf8(fixture("single-object.json")).unwrap();
    let e1 = e1.trim();
    let ndjson = format!("{e1}\n{huge}\n{e1}\n");
    let items = decode(ndjson.as_bytes(), "big.ndjson");
    assert_eq!(audit_events(&items).len(), 2);
    assert_eq!(
        reasons(&items),
        vec![format!(
            "big.ndjson: line 2: the line exceeds {MAX_RECORD_BYTES} bytes; it was skipped"
        )]
    );
    let array = format!("[{e1},{huge},{e1}]");
    let items = decode(array.as_bytes(), "big.json");
    assert_eq!(audit_events(&items).len(), 2);
    assert_eq!(
        reasons(&items),
        vec![format!("big.json: record 2 (line 1): the record exceeds {MAX_RECORD_BYTES} bytes; it was skipped")]
    );
}

#[test]
fn strings_over_64_kb_are_truncated_and_counted() {
    let long = "é".repeat(MAX_FIELD_BYTES);
    let event =
        json!({"timestamp": "2025-01-15T10:31:02Z", "username": long, "data": {"note": long}});
    let (items, stats) = decode_with(event.to_string().as_bytes(), "long", &keeper());
    let row = &rows(&items)[0];
    assert_eq!(row["username"].as_str().unwrap().len(), MAX_FIELD_BYTES);
    assert_eq!(row["data"]["note"].as_str().unwrap().len(), MAX_FIELD_BYTES);
    assert_eq!(stats.truncated_fields, 2);
}

/// Fails after handing out some bytes, like a dropped connection.
struct Failing<'a>(&'a [u8]);

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_failing_reader_gives_one_io_error_and_stops() {
    let plain = fixture("push.ndjson");
    for bytes in [plain.clone(), gzip(&plain)] {
        let (items, _) = decode_with(Failing(&bytes), "s3://b/k", &keeper());
        let (last, before) = items.split_last().unwrap();
        assert!(
            matches!(last, Item::Io(m) if m.contains("connection reset")),
            "{last:?}"
        );
        assert!(before.iter().all(|i| !matches!(i, Item::Io(_))));
    }
}

#[test]
fn passthrough_forwards_objects_with_time_from_the_configured_field() {
    let options = DecodeOptions {
        schema: SchemaMode::Passthrough {
            time_field: "time".to_owned(),
        },
        ..keeper()
    };
    let (items, _) = decode_with(&fixture("hostile/passthrough.ndjson")[..], "pt", &options);
    assert_eq!(
        reasons(&items),
        vec![
            "pt: line 2: field `time`: missing (it is the configured time field)",
            "pt: line 3: field `time`: not a valid time (ISO 8601 or epoch seconds/milliseconds): \"nope\"",
        ]
    );
    let rows: Vec<Value> = items
        .iter()
        .filter_map(|i| match i {
            Item::Row(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"TimeGenerated": "2025-01-15T10:31:02.000Z", "time": "2025-01-15T10:31:02Z", "msg": "a"}),
            json!({"TimeGenerated": "2025-01-15T10:31:02.123Z", "time": 1736937062123_i64, "nested": {"x": [1]}}),
        ]
    );
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn the_fuzz_seed_corpus_decodes_without_panics_in_both_schemas() {
    let files = corpus_files();
    assert!(files.len() >= 10, "seed corpus present");
    let passthrough = DecodeOptions {
        schema: SchemaMode::Passthrough {
            time_field: "timestamp".to_owned(),
        },
        max_decompressed_bytes: 1024 * 1024,
        ..keeper()
    };
    for file in files {
        let bytes = read(&file);
        let name = file.display().to_string();
        for options in [&keeper(), &passthrough] {
            for step in [usize::MAX, 5] {
                let (items, _) = decode_with(
                    Trickle {
                        bytes: &bytes,
                        step,
                    },
                    &name,
                    options,
                );
                for item in items {
                    match item {
                        Item::Row(row) => assert!(row["TimeGenerated"].is_string(), "{name}"),
                        Item::Rejected { .. } => {}
                        Item::Io(e) => panic!("{name}: in-memory input cannot fail to read: {e}"),
                    }
                }
            }
        }
    }
}

/// An endless stream: `pending` once, then `item` forever.
struct Endless {
    pending: Vec<u8>,
    item: Vec<u8>,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            self.pending = self.item.clone();
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn rows_stream_out_before_the_input_ends() {
    let event = String::from_utf8(fixture("single-object.json")).unwrap();
    let event = event.trim();
    let csv = String::from_utf8(fixture("events.csv")).unwrap();
    let (header, rest) = csv.split_once("\r\n").unwrap();
    let cases = [
        ("array", b"[".to_vec(), format!("{event},\n")),
        ("ndjson", Vec::new(), format!("{event}\n")),
        ("csv", format!("{header}\r\n").into_bytes(), rest.to_owned()),
    ];
    for (name, head, item) in cases {
        let endless = Endless {
            pending: head,
            item: item.into_bytes(),
        };
        let first: Vec<_> = RowReader::new(endless, name, &keeper()).take(5).collect();
        assert_eq!(first.len(), 5, "{name}");
        assert!(
            first.iter().all(|i| matches!(i, Ok(Decoded::Row(_)))),
            "{name}: {first:?}"
        );
    }
}

/// `eventid-vectors.json`: written by `scripts/eventid_vectors.py`, an implementation of
/// docs/eventid.md that shares no code with logrelay.
fn eventid_vectors() -> Value {
    serde_json::from_slice(&fixture("eventid-vectors.json")).unwrap()
}

fn event_ids(bytes: &[u8], name: &str) -> Vec<String> {
    rows(&decode(bytes, name))
        .iter()
        .map(|row| row["EventId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_same_keeper_events_as_json_ndjson_csv_and_syslog_give_the_independent_scripts_event_ids() {
    let vectors = eventid_vectors();
    let sets = vectors["sets"].as_object().unwrap();
    let keeper_files: Vec<&str> = sets["keeper"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for ext in [".json", ".ndjson", ".csv", ".syslog"] {
        assert!(
            keeper_files.iter().any(|f| f.ends_with(ext)),
            "the vectors cover a {ext} file: {keeper_files:?}"
        );
    }
    for (set, body) in sets {
        let expected: Vec<String> = body["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(expected.len() >= 2, "{set}: vectors present");
        for file in body["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            let plain = fixture(&format!("eventid/{file}"));
            for (container, bytes) in [("plain", plain.clone()), ("gzip", gzip(&plain))] {
                assert_eq!(
                    event_ids(&bytes, file),
                    expected,
                    "{set}: {file} ({container})"
                );
            }
        }
    }
}

#[test]
fn numeric_text_and_empty_cells_change_rows_but_not_event_ids() {
    // The rows differ (CSV cells stay text; a JSON null stays in `data`), which is why the
    // id is computed from the canonical form and not from the row's bytes.
    let json = rows(&decode(&fixture("eventid/events.json"), "j"));
    let csv = rows(&decode(&fixture("eventid/events.csv"), "c"));
    assert_eq!(json[0]["data"], json!({"channel": null, "result_code": ""}));
    assert_eq!(csv[0]["data"], json!({}));
    assert_eq!(json[1]["data"]["node_id"], json!(5));
    assert_eq!(csv[1]["data"]["node_id"], json!("5"));
    for (j, c) in json.iter().zip(&csv) {
        assert_eq!(j["EventId"], c["EventId"]);
    }
}
