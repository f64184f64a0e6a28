//! The Lambda functions for real: the debug binaries under cargo-lambda's local Lambda
//! runtime, reading S3, SQS and Secrets Manager from moto and delivering to the emulator.
//! Every server is started here on 127.0.0.1 and stopped on drop.
//!
//! Needs `scripts/tools.sh aws` (moto, cargo-lambda) and the function binaries built
//! (`cargo build --workspace`, as `make test` does).

// Test helpers outside #[test] functions: a failed set-up step should stop the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig};
use common::{
    dead_letter_objects, fixture, put, s3_notice, sqs_event, start_function, start_moto, Moto,
    BUCKET, INVOKE_TIMEOUT,
};
use flate2::write::GzEncoder;
use serde_json::{json, Value};

const HTTP_TOKEN: &str = "e2e-shared-http-token";

/// The shared function environment with a 30 s invocation deadline.
async fn function_env(emulator: &Emulator, moto: &Moto) -> Vec<(String, String)> {
    let mut env = common::function_env(emulator, moto).await;
    env.push(("LOGRELAY_DEADLINE_SECS".into(), "30".into()));
    env
}

/// A Keeper export: `count` NDJSON events whose usernames start with `tag`, gzipped.
fn keeper_export(tag: &str, count: usize) -> Vec<u8> {
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in keeper_lines(tag, count) {
        gzip.write_all(line.as_bytes()).unwrap();
        gzip.write_all(b"\n").unwrap();
    }
    gzip.finish().unwrap()
}

fn keeper_lines(tag: &str, count: usize) -> Vec<String> {
    let now = chrono::Utc::now();
    (0..count)
        .map(|i| {
            json!({
                "audit_event": "login",
                "category": "login",
                "client_version": "Web Vault 17.0.4",
                "enterprise_id": 3141592,
                "remote_address": "198.51.100.7",
                "timestamp": (now - chrono::Duration::seconds(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "username": format!("{tag}-{i}@acme-corp.example"),
                "data": {"seq": i}
            })
            .to_string()
        })
        .collect()
}

/// Rows in the emulator whose username carries `tag`.
fn rows_tagged(emulator: &Emulator, tag: &str) -> usize {
    let prefix = format!("{tag}-");
    emulator
        .rows()
        .iter()
        .filter(|row| {
            row["username"]
                .as_str()
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_forwarder_delivers_every_event_from_direct_sqs_and_eventbridge_notices() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = start_moto(dir.path()).await;
    let env = function_env(&emulator, &moto).await;
    let function = start_function("s3-forwarder", &env, dir.path()).await;

    // Direct S3 notification.
    put(
        &moto,
        "keeper/direct.ndjson.gz",
        keeper_export("direct", 700),
        None,
    )
    .await;
    let (status, answer) = function.invoke(&s3_notice("keeper/direct.ndjson.gz")).await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer["delivered"], 700, "{answer}");
    assert_eq!(rows_tagged(&emulator, "direct"), 700);

    // Through SQS, with a key S3 encodes (space and `+`), next to the s3:TestEvent.
    let key = "keeper/via sqs/export c++.ndjson.gz";
    put(&moto, key, keeper_export("via-sqs", 300), None).await;
    let bodies = [
        s3_notice(key).to_string(),
        fixture("s3-test-event.json").to_string(),
    ];
    let (event, _) = sqs_event(&moto, &bodies).await;
    let (status, answer) = function.invoke(&event).await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(rows_tagged(&emulator, "via-sqs"), 300);

    // EventBridge "Object Created", straight to the function.
    put(
        &moto,
        "keeper/eventbridge.ndjson.gz",
        keeper_export("eventbridge", 250),
        None,
    )
    .await;
    let mut event = fixture("eventbridge-object-created.json");
    event["detail"]["bucket"]["name"] = BUCKET.into();
    event["detail"]["object"]["key"] = "keeper/eventbridge.ndjson.gz".into();
    let (status, answer) = function.invoke(&event).await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(rows_tagged(&emulator, "eventbridge"), 250);

    // EventBridge keys with a space and `+`: taken as written, and when that object does
    // not exist, read as S3 notifications encode keys (whether EventBridge encodes them is
    // not documented; both readings reach the object).
    for (tag, key, written) in [
        (
            "eb-raw",
            "keeper/eb c++.ndjson.gz",
            "keeper/eb c++.ndjson.gz",
        ),
        (
            "eb-encoded",
            "keeper/eb encoded.ndjson.gz",
            "keeper/eb+encoded.ndjson.gz",
        ),
    ] {
        put(&moto, key, keeper_export(tag, 25), None).await;
        event["detail"]["object"]["key"] = written.into();
        let (status, answer) = function.invoke(&event).await;
        assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
        assert_eq!(rows_tagged(&emulator, tag), 25, "{key}");
    }

    // A notice for an object deleted since: logged, skipped, not retried.
    let (status, answer) = function
        .invoke(&s3_notice("keeper/deleted.ndjson.gz"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer["events_in"], 0, "{answer}");
    assert!(function.binary.output().contains("does not exist"));

    // Nothing twice, nothing lost, nothing dead-lettered, one token for the warm container.
    assert_eq!(emulator.rows().len(), 1300);
    assert!(dead_letter_objects(&moto).await.is_empty());
    assert_eq!(emulator.stats().token_requests, 1);
    let log = function.binary.output();
    assert_eq!(log.matches("Invocation finished.").count(), 6, "{log}");
    assert_eq!(log.matches("\"CloudWatchMetrics\"").count(), 6, "{log}");
    assert!(
        !log.contains(&emulator.config().client_secret),
        "the secret leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_forwarder_reports_exactly_the_message_whose_object_cannot_be_read_yet() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = start_moto(dir.path()).await;
    let env = function_env(&emulator, &moto).await;
    let function = start_function("sqs-forwarder", &env, dir.path()).await;

    put(
        &moto,
        "keeper/ready.ndjson.gz",
        keeper_export("ready", 400),
        None,
    )
    .await;
    // The poisoned message: an object archived to Glacier. S3 answers 403 InvalidObjectState
    // until it is restored, so the message must come back later, not be dropped.
    put(
        &moto,
        "keeper/archived.ndjson.gz",
        keeper_export("archived", 50),
        Some("GLACIER"),
    )
    .await;
    let bodies = [
        keeper_lines("inline", 40).join("\n"),
        s3_notice("keeper/ready.ndjson.gz").to_string(),
        s3_notice("keeper/archived.ndjson.gz").to_string(),
        "{\"audit_event\": \"login\", this is not JSON".to_string(),
    ];
    let (event, ids) = sqs_event(&moto, &bodies).await;
    let (status, answer) = function.invoke(&event).await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": ids[2]}]}),
        "{}",
        function.binary.output()
    );
    assert_eq!(rows_tagged(&emulator, "inline"), 40);
    assert_eq!(rows_tagged(&emulator, "ready"), 400);
    assert_eq!(rows_tagged(&emulator, "archived"), 0);

    // The malformed body is in the S3 dead letter, filed under its message, with a reason.
    let dead = dead_letter_objects(&moto).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, body) = &dead[0];
    assert!(key.starts_with("failed/sqs-arn-aws-sqs-"), "{key}");
    let entry: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert!(
        entry["source"].as_str().unwrap().ends_with(&ids[3]),
        "{entry}"
    );
    assert!(!entry["reason"].as_str().unwrap().is_empty(), "{entry}");
    assert!(
        entry["raw"].as_str().unwrap().contains("this is not JSON"),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_forwarder_rejects_a_wrong_token_and_accepts_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = start_moto(dir.path()).await;
    let mut env = function_env(&emulator, &moto).await;
    let token = moto
        .secrets
        .create_secret()
        .name("logrelay-http-token")
        .secret_string(HTTP_TOKEN)
        .send()
        .await
        .unwrap();
    env.push((
        "LOGRELAY_HTTP_TOKEN_ARN".into(),
        token.arn().unwrap().to_string(),
    ));
    let function = start_function("http-forwarder", &env, dir.path()).await;

    // cargo-lambda turns plain HTTP requests into Function URL events (payload 2.0).
    let url = format!("http://127.0.0.1:{}/events", function.port);
    let http = reqwest::Client::builder()
        .timeout(INVOKE_TIMEOUT)
        .build()
        .unwrap();
    let body = keeper_lines("http", 25).join("\n");
    let wrong = http
        .post(&url)
        .bearer_auth("not-the-token")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "{}", function.binary.output());
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    assert_eq!(rows_tagged(&emulator, "http"), 0);

    let right = http
        .post(&url)
        .bearer_auth(HTTP_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = right.status();
    let answer: Value = right.json().await.unwrap();
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer["delivered"], 25, "{answer}");
    assert_eq!(rows_tagged(&emulator, "http"), 25);
    let log = function.binary.output();
    assert!(!log.contains(HTTP_TOKEN), "the token leaked into the log");
    // One summary and one metrics line for the delivering invocation, none for the refusal.
    assert_eq!(log.matches("Invocation finished.").count(), 1, "{log}");
    assert_eq!(log.matches("\"CloudWatchMetrics\"").count(), 1, "{log}");
}

/// Bounded memory on a big object: a gzipped Keeper export of `LOGRELAY_BIG_OBJECT_MB`
/// (default 200) MB in moto, forwarded by the s3-forwarder; prints the function's peak RSS
/// (VmHWM). Run (release binaries, built first):
/// `cargo build --release -p s3-forwarder && LOGRELAY_BIG_OBJECT_MB=200 cargo test --release
/// -p logrelay-tests --test aws_e2e -- --ignored --nocapture big`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes of CPU and a few GB of emulator memory"]
async fn big_gzipped_object_forwards_with_bounded_memory() {
    let megabytes: usize = std::env::var("LOGRELAY_BIG_OBJECT_MB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = start_moto(dir.path()).await;
    let mut env = function_env(&emulator, &moto).await;
    env.push(("LOGRELAY_DEADLINE_SECS".into(), "3600".into()));

    // Random fields keep gzip near 3:1, so the object is big on the wire as well.
    let started = Instant::now();
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut events = 0_u64;
    let mut rng = fastrand::Rng::with_seed(7);
    while gzip.get_ref().len() < megabytes << 20 {
        for _ in 0..1000 {
            let line = json!({
                "audit_event": "record_update", "category": "usage", "enterprise_id": 3141592,
                "remote_address": format!("198.51.{}.{}", rng.u8(..), rng.u8(..)),
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "username": format!("big-{events}@acme-corp.example"),
                "data": {"record_uid": format!("{:032x}", rng.u128(..))}
            });
            gzip.write_all(line.to_string().as_bytes()).unwrap();
            gzip.write_all(b"\n").unwrap();
            events += 1;
        }
    }
    let object = gzip.finish().unwrap();
    let size = object.len();
    put(&moto, "keeper/big.ndjson.gz", object, None).await;
    println!(
        "generated {events} events, {size} bytes gzipped, in {:?}",
        started.elapsed()
    );

    let function = start_function("s3-forwarder", &env, dir.path()).await;
    let started = Instant::now();
    let (status, answer) = function
        .invoke_within(
            &s3_notice("keeper/big.ndjson.gz"),
            Duration::from_secs(3600),
        )
        .await;
    let elapsed = started.elapsed();
    let pid = function.binary.child.id();
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak = status_file
        .lines()
        .find(|line| line.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown")
        .to_string();
    println!("forwarded in {elapsed:?}; function {peak}; answer {answer}");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], events, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_manager_source_caches_and_reads_again_on_refresh() {
    use logrelay::auth::SecretSource;
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto(dir.path()).await;
    let created = moto
        .secrets
        .create_secret()
        .name("rotating")
        .secret_string(json!({"client_secret": "first"}).to_string())
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_string();
    let source = logrelay::aws::SecretsManagerSource::new(moto.secrets.clone(), arn.clone());
    assert_eq!(source.client_secret(false).await.unwrap().expose(), "first");

    // Rotation: the plain-text form is accepted too.
    moto.secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string("second")
        .send()
        .await
        .unwrap();
    assert_eq!(source.client_secret(false).await.unwrap().expose(), "first");
    assert_eq!(source.client_secret(true).await.unwrap().expose(), "second");
    assert_eq!(
        source.client_secret(false).await.unwrap().expose(),
        "second"
    );
    assert!(!format!("{source:?}").contains("second"));

    let missing = logrelay::aws::SecretsManagerSource::new(moto.secrets.clone(), "no-such-secret");
    let error = missing.client_secret(false).await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("GetSecretValue"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_503_with_retry_after_while_azure_keeps_throttling() {
    use logrelay::router::{app, RequestDeadline, RouterState};

    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(azmon_emulator::Faults {
        status_rate: 1.0,
        statuses: vec![429],
        retry_after_secs: 1,
        ..azmon_emulator::Faults::default()
    });
    let env = emulator.env();
    let config = logrelay::config::Config::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let dead = std::sync::Arc::new(logrelay::dead_letter::MemoryDeadLetter::new());
    let decode = logrelay::keeper::DecodeOptions {
        schema: logrelay::keeper::SchemaMode::Keeper,
        max_decompressed_bytes: 1 << 30,
        now: SystemTime::now(),
    };
    let relay = logrelay::relay::Relay::from_config(&config, dead.clone(), decode, None)
        .await
        .unwrap();
    let router = app(RouterState::new(
        std::sync::Arc::new(relay),
        logrelay::secret::Secret::new(HTTP_TOKEN),
    ))
    // Two seconds for the request, as a Lambda deadline would set it.
    .layer(axum::Extension(RequestDeadline(
        Instant::now() + Duration::from_secs(2),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/events"))
        .bearer_auth(HTTP_TOKEN)
        .body(keeper_lines("throttled", 10).join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    let answer: Value = response.json().await.unwrap();
    server.abort();
    assert_eq!(answer["failed_transient"], 10, "{answer}");
    assert!(answer["throttled"].as_u64().unwrap() >= 1, "{answer}");
    // Failed for a retry by the client, not dead-lettered.
    assert!(dead.entries().is_empty());
    assert_eq!(emulator.rows().len(), 0);
}
