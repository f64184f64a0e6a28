//! The invocation deadline bounds the work: an SQS batch handled by the Lambda forwarder
//! (the handler itself, with an injected short deadline) against a slow emulator. The
//! deadline passes in the middle of a message; the function stops reading, reports the
//! unfinished messages as batch item failures before the platform's deadline, and the retry
//! of those messages delivers the rest, with duplicates only of what was in flight.
//!
//! The same holds for an S3 object (read from moto through the forwarder's real S3 client):
//! the invocation fails with `DeadlineExceeded` before the platform's deadline, so the
//! platform retries it, and the retry delivers the whole object.
//!
//! The SQS records are the documented shape (`tests/fixtures/aws/sqs-s3.json`, from the
//! Lambda SQS event docs) with their bodies replaced by Keeper NDJSON, as the sqs-forwarder
//! receives events.

// Test helpers outside #[test] functions: a failed set-up step should stop the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use logrelay_core::aws::forward::{retry_error, session_deadline, sqs_event};
use logrelay_core::aws::notification;
use logrelay_core::aws::{Bodies, LambdaForwarder};
use logrelay_core::config::Config;
use logrelay_core::dead_letter::MemoryDeadLetter;
use logrelay_core::keeper::{DecodeOptions, SchemaMode};
use logrelay_core::relay::Relay;
use serde_json::{json, Value};

/// Per-request latency of the slow emulator.
const LATENCY_MS: u64 = 250;

/// Serialized rows per request (the smallest batch the settings accept is 1024 bytes).
const BATCH_BYTES: &str = "20000";

/// The invocation's own timeout: short, so the big message cannot finish within it.
const INVOCATION: Duration = Duration::from_secs(4);

/// Keeper push-shape NDJSON: `count` events whose usernames start with `tag`.
fn keeper_ndjson(tag: &str, count: usize) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..count)
        .map(|i| {
            json!({
                "audit_event": "login", "category": "login", "remote_address": "203.0.113.10",
                "client_version": "Web Vault 17.0.0", "username": format!("{tag}-{i}@acme-corp.example"),
                "enterprise_id": 1234, "timestamp": now,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// The documented SQS event with one record per `(message id, body)`.
fn sqs(messages: &[(&str, &str)]) -> Value {
    let fixture = format!("{}/fixtures/aws/sqs-s3.json", env!("CARGO_MANIFEST_DIR"));
    let template: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let record = template["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let mut record = record.clone();
            record["messageId"] = json!(id);
            record["body"] = json!(body);
            record
        })
        .collect();
    json!({ "Records": records })
}

async fn forwarder(emulator: &Emulator) -> LambdaForwarder {
    let mut env: BTreeMap<String, String> = emulator.env().into_iter().collect();
    env.insert("LOGRELAY_BATCH_BYTES".into(), BATCH_BYTES.into());
    env.insert("LOGRELAY_CONCURRENCY".into(), "1".into());
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let decode = DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: SystemTime::now(),
    };
    let relay = Relay::from_config(&config, Arc::new(MemoryDeadLetter::new()), decode, None)
        .await
        .unwrap();
    // Event bodies never touch S3: a client with no endpoint is enough.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build(),
    );
    LambdaForwarder {
        relay,
        s3,
        budget: config.tuning.deadline,
    }
}

/// `(username, EventId)` of every row the emulator stored, in arrival order.
fn stored(emulator: &Emulator) -> Vec<(String, String)> {
    emulator
        .rows()
        .iter()
        .map(|row| {
            (
                row["username"].as_str().unwrap().to_string(),
                row["EventId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How often each EventId of `rows` was stored, and the ids stored more than once.
fn arrivals(rows: &[(String, String)]) -> (BTreeMap<&str, usize>, BTreeSet<&str>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id) in rows {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let twice = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    (seen, twice)
}

/// The message ids of `batchItemFailures` in the answer as Lambda reads it.
fn failed_ids(response: &impl serde::Serialize) -> Vec<String> {
    let answer = serde_json::to_value(response).unwrap();
    answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_mid_message_reports_the_unfinished_messages_and_the_retry_delivers_the_rest() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::none()
    });
    let forwarder = forwarder(&emulator).await;
    // m0: one request. m1: about 30 requests of 250 ms at least (far past the deadline).
    // m2: one request, after m1.
    let (m0, m1, m2) = (
        keeper_ndjson("m0", 20),
        keeper_ndjson("m1", 2_000),
        keeper_ndjson("m2", 20),
    );
    let event = sqs_event(sqs(&[("m0", &m0), ("m1", &m1), ("m2", &m2)])).unwrap();

    let started = Instant::now();
    let platform_deadline = started + INVOCATION;
    let deadline = session_deadline(SystemTime::now() + INVOCATION, forwarder.budget);
    let (response, report) = forwarder
        .sqs_batch(&event, Bodies::EventsOrNotices, deadline)
        .await;
    let returned = Instant::now();
    assert!(
        returned < platform_deadline,
        "answered {:?} after the start, past the {INVOCATION:?} invocation",
        returned - started
    );
    assert_eq!(failed_ids(&response), ["m1", "m2"], "{report:?}");
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.dead_lettered, 0, "a deadline dead-letters nothing");
    // Rows are counted in when pushed: had decoding gone on past the deadline, all 2000 rows
    // of m1 would be (and count as failed), not fewer.
    assert!(
        report.events_in < 20 + 2_000,
        "decoding stopped at the deadline, m1 was not read to its end: {report:?}"
    );

    // A request the client gave up on at the deadline may still be stored after the answer:
    // wait until the emulator reports none in progress before counting.
    emulator
        .wait_for_requests_to_finish(Duration::from_secs(30))
        .await
        .unwrap();
    let first = stored(&emulator);
    let from = |tag: &str| {
        first
            .iter()
            .filter(|(user, _)| user.starts_with(&format!("{tag}-")))
            .count()
    };
    assert_eq!(from("m0"), 20, "the finished message was delivered");
    assert!(
        (1..2_000).contains(&from("m1")),
        "the deadline passed mid-message: {} of 2000 rows of m1 arrived",
        from("m1")
    );
    assert_eq!(from("m2"), 0, "nothing after the deadline was read");
    eprintln!(
        "answered {:?} after the start ({INVOCATION:?} invocation); {} of 2000 m1 rows arrived before the deadline",
        returned - started,
        from("m1")
    );
    // A request cut short at the deadline may still have been stored: the emulator holds at
    // least what was confirmed, and never a row that was not pushed.
    assert!(
        (report.delivered as usize..=report.events_in as usize).contains(&first.len()),
        "{} stored, {report:?}",
        first.len()
    );

    // The platform redelivers the two failed messages; the service is fast again.
    emulator.set_faults(Faults::none());
    let retry = sqs_event(sqs(&[("m1", &m1), ("m2", &m2)])).unwrap();
    let deadline = session_deadline(
        SystemTime::now() + Duration::from_secs(120),
        forwarder.budget,
    );
    let (response, again) = forwarder
        .sqs_batch(&retry, Bodies::EventsOrNotices, deadline)
        .await;
    assert!(failed_ids(&response).is_empty(), "{again:?}");
    assert_eq!(again.delivered, 2_020);

    let all = stored(&emulator);
    let users: BTreeSet<&str> = all.iter().map(|(user, _)| user.as_str()).collect();
    assert_eq!(users.len(), 2_040, "every event arrived");
    let (seen, twice) = arrivals(&all);
    // Duplicates are exactly the m1 rows that arrived before the deadline: what was in flight.
    let in_flight: BTreeSet<&str> = first
        .iter()
        .filter(|(user, _)| user.starts_with("m1-"))
        .map(|(_, id)| id.as_str())
        .collect();
    let unexpected: Vec<&&str> = twice.symmetric_difference(&in_flight).take(5).collect();
    assert!(
        unexpected.is_empty(),
        "{} duplicated, {} m1 rows in flight; differing ids include {unexpected:?}",
        twice.len(),
        in_flight.len()
    );
    assert!(seen.values().all(|n| *n <= 2));
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_mid_object_fails_the_invocation_before_the_platform_deadline_and_the_retry_delivers_the_object(
) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = common::start_moto(dir.path()).await;
    // Creates the export bucket (and the rest of what the functions would be given).
    common::function_env(&emulator, &moto).await;
    // About 25 requests of 250 ms at least, one at a time: far past the 4 s invocation.
    let key = "keeper/2026/12/01/deadline-mid-object.ndjson";
    let events = 2_000;
    common::put(&moto, key, keeper_ndjson("obj", events).into_bytes(), None).await;
    let mut forwarder = forwarder(&emulator).await;
    forwarder.s3 = moto.s3.clone();
    let found = notification::extract(&common::s3_notice(key))
        .unwrap()
        .expect("the notice names an object");
    emulator.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::none()
    });

    let started = Instant::now();
    let platform_deadline = started + INVOCATION;
    let deadline = session_deadline(SystemTime::now() + INVOCATION, forwarder.budget);
    let handled = forwarder.objects(&found, deadline).await;
    let returned = Instant::now();
    assert!(
        returned < platform_deadline,
        "answered {:?} after the start, past the {INVOCATION:?} invocation",
        returned - started
    );
    assert!(handled.retry, "the invocation must fail: {handled:?}");
    assert!(handled.deadline_passed, "{handled:?}");
    let error = retry_error(&handled);
    assert!(
        matches!(error, logrelay_core::Error::DeadlineExceeded { .. }),
        "{error}"
    );

    emulator
        .wait_for_requests_to_finish(Duration::from_secs(30))
        .await
        .unwrap();
    let first = stored(&emulator);
    assert!(
        (1..events).contains(&first.len()),
        "the deadline passed mid-object: {} of {events} rows arrived",
        first.len()
    );
    eprintln!(
        "answered {:?} after the start ({INVOCATION:?} invocation); {} of {events} rows arrived before the deadline",
        returned - started,
        first.len()
    );

    // The platform retries the invocation; the service is fast again.
    emulator.set_faults(Faults::none());
    let deadline = session_deadline(
        SystemTime::now() + Duration::from_secs(120),
        forwarder.budget,
    );
    let handled = forwarder.objects(&found, deadline).await;
    assert!(!handled.retry, "{handled:?}");
    assert_eq!(handled.report.delivered, events as u64, "{handled:?}");

    let all = stored(&emulator);
    let users: BTreeSet<&str> = all.iter().map(|(user, _)| user.as_str()).collect();
    assert_eq!(users.len(), events, "every event arrived");
    // The object is read again from its start: duplicates are exactly the rows the first
    // attempt stored, and nothing arrived more than twice.
    let (seen, twice) = arrivals(&all);
    let first_ids: BTreeSet<&str> = first.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(twice, first_ids);
    assert!(seen.values().all(|n| *n <= 2));
    emulator.shutdown().await;
}
