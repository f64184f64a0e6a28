//! What the HTTP routes (the http-forwarder Lambda and the Azure handler share them) answer
//! when delivery fails, over real HTTP against the emulator: no internals in the body (no
//! DCR id, no dead-letter location, no setting names meant for the operator), and a 403 from
//! Azure kept in the dead letter for replay with a 202 saying so, never a 400 blaming the
//! caller's events (README, "HTTP answers").

// Test helpers outside #[test] functions: a failed set-up step should stop the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use logrelay_core::config::Config;
use logrelay_core::dead_letter::{DeadLetterSink, LocalDirDeadLetter, MemoryDeadLetter};
use logrelay_core::keeper::{DecodeOptions, SchemaMode};
use logrelay_core::relay::Relay;
use logrelay_core::router::{app, RequestDeadline, RouterState};
use logrelay_core::secret::Secret;
use serde_json::{json, Value};

const TOKEN: &str = "http-answers-token";

/// Keeper push-shape NDJSON, `count` events.
fn keeper_ndjson(count: usize) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..count)
        .map(|i| {
            json!({
                "audit_event": "login", "category": "login", "remote_address": "203.0.113.10",
                "username": format!("user{i}@acme-corp.example"), "enterprise_id": 1234,
                "timestamp": now,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Serves the routes over a relay to `emulator` writing to `dead`, each request's delivery
/// ending at most `budget` after the server started. Returns the base URL.
async fn serve(emulator: &Emulator, dead: Arc<dyn DeadLetterSink>, budget: Duration) -> String {
    let env: BTreeMap<String, String> = emulator.env().into_iter().collect();
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let decode = DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: SystemTime::now(),
    };
    let relay = Relay::from_config(&config, dead, decode, None)
        .await
        .unwrap();
    let router = app(RouterState::new(Arc::new(relay), Secret::new(TOKEN)))
        .layer(axum::Extension(RequestDeadline(Instant::now() + budget)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// POSTs `body`; the status, the Retry-After header and the body's text.
async fn post(base: &str, body: String) -> (u16, Option<String>, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_string());
    (status, retry_after, response.text().await.unwrap())
}

/// The internals no answer may carry.
fn assert_no_internals(text: &str, emulator: &Emulator, extra: &[&str]) {
    let dcr = &emulator.config().dcr_id;
    for secret in [
        dcr.as_str(),
        "AZURE_CLIENT_ID",
        "Monitoring Metrics Publisher",
    ]
    .iter()
    .chain(extra)
    {
        assert!(
            !text.contains(secret),
            "the answer shows `{secret}`: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_from_azure_keeps_the_events_for_replay_and_answers_202_saying_so() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::none()
    });
    let dead = Arc::new(MemoryDeadLetter::new());
    let base = serve(&emulator, dead.clone(), Duration::from_secs(60)).await;
    let (status, _, text) = post(&base, keeper_ndjson(5)).await;
    assert_eq!(status, 202, "{text}");
    assert_no_internals(&text, &emulator, &[]);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["kept_for_replay"], 5, "{body}");
    assert_eq!(
        (body["delivered"].as_u64(), body["dead_lettered"].as_u64()),
        (Some(0), Some(5))
    );
    assert!(
        body["note"].as_str().unwrap().contains("do not resend"),
        "{body}"
    );
    // The five events are in the dead letter, with the full reason for the operator.
    let entries = dead.entries();
    assert_eq!(entries.len(), 5);
    assert!(
        entries
            .iter()
            .all(|entry| entry.reason.starts_with("HTTP 403")),
        "{entries:?}"
    );
    assert!(emulator.rows().is_empty());
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_answers_500_without_its_location() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::none()
    });
    // A directory that cannot be created: its parent is a file.
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let location = file.join("dead-letter-bucket-name");
    let dead = Arc::new(LocalDirDeadLetter::new(&location));
    let base = serve(&emulator, dead, Duration::from_secs(60)).await;
    let (status, _, text) = post(&base, keeper_ndjson(3)).await;
    assert_eq!(status, 500, "{text}");
    assert_no_internals(
        &text,
        &emulator,
        &["dead-letter-bucket-name", "not-a-directory"],
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["error"].as_str().unwrap().contains("resend"), "{body}");
    assert!(
        body["request"]
            .as_str()
            .unwrap()
            .starts_with("http-request-"),
        "{body}"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_still_failing_at_the_deadline_answers_503_with_retry_after_and_counts() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        status_rate: 1.0,
        statuses: vec![503],
        retry_after_secs: 1,
        ..Faults::none()
    });
    let dead = Arc::new(MemoryDeadLetter::new());
    let base = serve(&emulator, dead.clone(), Duration::from_secs(3)).await;
    let (status, retry_after, text) = post(&base, keeper_ndjson(4)).await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(retry_after.as_deref(), Some("30"));
    assert_no_internals(&text, &emulator, &[]);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["failed_transient"], 4, "{body}");
    assert!(
        dead.entries().is_empty(),
        "nothing dead-lettered: the caller resends"
    );
    emulator.shutdown().await;
}
