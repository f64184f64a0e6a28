//! Solution-compatible mode on the emulator: `logrelay send` to the Keeper Security solution's
//! stream `Custom-KeeperSecurityEventNewLogs`, declared exactly as infra/azure/keeper-solution.json
//! deploys it (the solution's nine columns plus EventId), lands every column of every event,
//! with the event's own time. The emulator stores rows as the stream declares them (it runs no
//! DCR transform); the transform's renaming is checked by scripts/check-kql.sh.

// Helpers outside #[test] functions panic on a broken fixture, which is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;

use azmon_emulator::{Emulator, EmulatorConfig, StreamConfig};
use chrono::{DateTime, TimeDelta, Utc};
use logrelay_core::schema::KEEPER_COLUMNS;
use serde_json::Value;

const SOLUTION_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../infra/azure/keeper-solution.json"
);
const SAMPLE_EVENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../infra/azure/sentinel/samples/keeper-push-events.ndjson"
);

/// Generous bound for a debug `logrelay send` of a few events on two loaded cores.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The stream name and `(column, type)` pairs the solution-compatible DCR declares.
fn solution_stream() -> (String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(SOLUTION_TEMPLATE)
        .unwrap_or_else(|e| panic!("{SOLUTION_TEMPLATE}: {e}"));
    let template: Value = serde_json::from_str(&text).unwrap();
    let stream = template["variables"]["stream"]
        .as_str()
        .unwrap()
        .to_string();
    let columns = template["variables"]["streamColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (stream, columns)
}

/// The sample events with their timestamps moved so the last one is `end`, spacing kept.
fn shifted_events(end: DateTime<Utc>) -> Vec<Value> {
    let text = std::fs::read_to_string(SAMPLE_EVENTS).unwrap();
    let mut events: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let time = |event: &Value| {
        DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let last = events.iter().map(time).max().unwrap();
    let shift = end - last;
    for event in &mut events {
        let moved = time(event) + shift;
        event["timestamp"] = Value::String(moved.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
    events
}

fn write_ndjson(dir: &Path, name: &str, events: &[Value]) {
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a time"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// Starts the emulator with the solution stream declared and sends `events` to it.
async fn send_to_solution_stream(events: &[Value]) -> (Emulator, String, Vec<Value>) {
    let (stream, columns) = solution_stream();
    let pairs: Vec<(&str, &str)> = columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let config = EmulatorConfig::default().with_stream(StreamConfig::new(stream.clone(), &pairs));
    let emulator = Emulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_ndjson(dir.path(), "events.ndjson", events);
    let mut env = emulator.env();
    for (key, value) in &mut env {
        if key == "LOGS_INGESTION_ENDPOINT" {
            *value = emulator.ingestion_url(&stream);
        }
    }
    let run = common::run_logrelay(
        &["send", "--json", "events.ndjson"],
        env,
        Some(dir.path()),
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    let stored = emulator.wait_for_rows(events.len(), SEND_TIMEOUT).await;
    assert_eq!(stored, events.len(), "{}", run.all_output());
    // Paired by the event's own time, user, type and data (a row keeps all four).
    let rows = common::in_order_of(emulator.rows_for(&stream), events, |value| {
        format!(
            "{}|{}|{}|{}",
            value["timestamp"], value["username"], value["audit_event"], value["data"]
        )
    });
    (emulator, stream, rows)
}

#[test]
fn the_solution_stream_declares_exactly_the_columns_logrelay_sends() {
    let (stream, columns) = solution_stream();
    assert_eq!(stream, "Custom-KeeperSecurityEventNewLogs");
    let declared: HashSet<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let sent: HashSet<&str> = KEEPER_COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(declared, sent);
    // The solution's nine columns, with its types (enterprise_id int), plus EventId.
    let types: Vec<(&str, &str)> = columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert!(types.contains(&("enterprise_id", "int")));
    assert!(types.contains(&("timestamp", "datetime")));
    assert!(types.contains(&("data", "dynamic")));
    assert!(types.contains(&("EventId", "string")));
    assert_eq!(columns.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrelay_lands_all_nine_solution_columns_and_event_id_with_event_times() {
    let end = Utc::now() - TimeDelta::hours(1);
    let events = shifted_events(end);
    let (emulator, stream, rows) = send_to_solution_stream(&events).await;
    let (_, columns) = solution_stream();
    let names: HashSet<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();

    assert_eq!(rows.len(), events.len());
    let mut ids = HashSet::new();
    for (row, event) in rows.iter().zip(&events) {
        let keys: HashSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, names, "row {row}");
        for name in &names {
            assert!(!row[*name].is_null(), "{name} is null in {row}");
        }
        // Event time, not arrival time: TimeGenerated and timestamp are the event's own.
        let sent = parse_time(&event["timestamp"]);
        assert_eq!(parse_time(&row["TimeGenerated"]), sent, "{row}");
        assert_eq!(parse_time(&row["timestamp"]), sent, "{row}");
        for field in [
            "audit_event",
            "remote_address",
            "category",
            "client_version",
            "username",
        ] {
            assert_eq!(row[field], event[field], "{field}");
        }
        assert_eq!(row["enterprise_id"], event["enterprise_id"]);
        assert_eq!(row["data"], event["data"]);
        let id = row["EventId"].as_str().unwrap();
        assert!(!id.is_empty());
        assert!(ids.insert(id.to_string()), "EventId {id} repeats");
    }
    let stats = emulator.stats();
    assert_eq!(
        stats.status_counts.get(&204).copied().unwrap_or(0),
        stats.ingestion_requests,
        "every request accepted: {stats:?}"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_older_than_two_days_keeps_its_own_time_in_timestamp() {
    // Azure replaces a TimeGenerated older than two days with the arrival time
    // (https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated);
    // the event's time must survive in `timestamp` (the solution table's Timestamp).
    let end = Utc::now() - TimeDelta::days(3);
    let events = shifted_events(end);
    let before = Utc::now();
    let (_emulator, _stream, rows) = send_to_solution_stream(&events).await;
    for (row, event) in rows.iter().zip(&events) {
        let sent = parse_time(&event["timestamp"]);
        assert_eq!(parse_time(&row["timestamp"]), sent, "{row}");
        assert!(parse_time(&row["TimeGenerated"]) >= before, "{row}");
    }
}
