//! The Lambda functions for real: the debug binaries under cargo-lambda's local Lambda
//! runtime, reading S3, SQS and Secrets Manager from moto and delivering to the emulator.
//! Every server is started here on 127.0.0.1 and stopped on drop.
//!
//! IAM is enforced wherever a test touches AWS (common/iam.rs): each function runs with the
//! temporary credentials of its role as `infra/aws/template.yaml` writes it, the buckets are
//! versioned as the template makes them, notifications carry `versionId` as S3 sends them, and
//! SQS messages are received with the function's role, as Lambda's event source does.
//!
//! Needs `scripts/tools.sh aws` (moto, cargo-lambda) and the function binaries built
//! (`cargo build --workspace`, as `make test` does).

// Test helpers outside #[test] functions: a failed set-up step should stop the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig};
use common::iam::{self, put, s3_notice, Stack};
use common::{dead_letter_objects, fixture, start_function, Moto, BUCKET, INVOKE_TIMEOUT};
use flate2::write::GzEncoder;
use serde_json::{json, Value};

const HTTP_TOKEN: &str = "e2e-shared-http-token";

/// The template's IAM deployed into `moto` (from [`iam::start_moto`]) and enforced; the
/// environment of the function built from `binary`, with its role's credentials and a 30 s
/// invocation deadline.
async fn enforced(
    emulator: &Emulator,
    moto: &Moto,
    binary: &str,
) -> (Stack, Vec<(String, String)>) {
    let base = common::function_env(emulator, moto).await;
    let client_secret = &base
        .iter()
        .find(|(key, _)| key == "AZURE_CLIENT_SECRET_ARN")
        .unwrap()
        .1;
    let stack = Stack::deploy(moto, client_secret, HTTP_TOKEN).await;
    let mut env = stack.function_env(&base, binary);
    env.push(("LOGRELAY_DEADLINE_SECS".into(), "30".into()));
    (stack, env)
}

/// The function's log, led by the permissions its role lacked when AWS refused it.
fn report(stack: &Stack, function: &common::Function, binary: &str) -> String {
    let log = function.binary.output();
    format!("{}\n{log}", stack.explain_denials(binary, &log))
}

/// The template's dead-letter prefix (`LOGRELAY_DEAD_LETTER` in its Globals).
fn dead_letter_prefix(env: &[(String, String)]) -> String {
    let uri = &env
        .iter()
        .find(|(key, _)| key == "LOGRELAY_DEAD_LETTER")
        .unwrap()
        .1;
    let prefix = uri
        .strip_prefix(&format!("s3://{}/", common::DEAD_LETTER_BUCKET))
        .unwrap_or_else(|| panic!("{uri} is not in the dead-letter bucket"));
    prefix.to_string()
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

/// The key of the must-show export: a space and a `+`, which S3 notifications encode.
const MUST_SHOW_KEY: &str = "keeper/2026/12/01/export c++ 0900.ndjson.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_forwarder_with_only_its_template_role_forwards_a_versioned_export_and_dead_letters_its_bad_record(
) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env) = enforced(&emulator, &moto, "s3-forwarder").await;
    let function = start_function("s3-forwarder", &env, dir.path()).await;

    // Keeper's export: 200 events and one record that is not an event object.
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in keeper_lines("must-show", 200) {
        writeln!(gzip, "{line}").unwrap();
    }
    writeln!(gzip, "42").unwrap();
    let version = put(&moto, MUST_SHOW_KEY, gzip.finish().unwrap(), None).await;

    // The notification S3 sends for it, through the template's export queue.
    let notice = s3_notice(MUST_SHOW_KEY, &version);
    assert_eq!(
        notice["Records"][0]["s3"]["object"]["key"],
        "keeper/2026/12/01/export+c%2B%2B+0900.ndjson.gz"
    );
    let (event, _) = stack
        .sqs_event(&moto, "ExportQueue", "s3-forwarder", &[notice.to_string()])
        .await;
    let (status, answer) = function.invoke(&event).await;
    let why = || report(&stack, &function, "s3-forwarder");
    assert_eq!(status, 200, "{answer}\n{}", why());
    assert_eq!(answer, json!({"batchItemFailures": []}), "{}", why());
    stack
        .acknowledge("ExportQueue", "s3-forwarder", &event, &answer)
        .await;
    assert_eq!(rows_tagged(&emulator, "must-show"), 200, "{}", why());
    // The client secret came from Secrets Manager: the function has no other.
    assert!(!env.iter().any(|(key, _)| key == "AZURE_CLIENT_SECRET"));
    assert_eq!(emulator.stats().token_requests, 1);

    // The bad record is in the S3 dead letter under the template's prefix, with its reason.
    let dead = dead_letter_objects(&moto).await;
    assert_eq!(dead.len(), 1, "{dead:?}\n{}", why());
    let (key, body) = &dead[0];
    assert!(key.starts_with(&dead_letter_prefix(&env)), "{key}");
    let entry: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(entry["source"], format!("s3://{BUCKET}/{MUST_SHOW_KEY}"));
    assert!(
        entry["reason"].as_str().unwrap().contains("number"),
        "{entry}"
    );

    // The role holds nothing more than the template grants: it may not write exports.
    let role_s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(
            &iam::sdk_config(&moto.url, &stack.role_of("s3-forwarder").keys).await,
        )
        .force_path_style(true)
        .build(),
    );
    let refused = role_s3
        .put_object()
        .bucket(BUCKET)
        .key("keeper/forged.ndjson.gz")
        .body(Vec::new().into())
        .send()
        .await;
    assert!(refused.is_err(), "the s3-forwarder role may write exports");
    // Nothing left on the queue: the message was received and deleted as the role.
    let attributes = moto
        .sqs
        .get_queue_attributes()
        .queue_url(
            stack
                .names
                .resolve(&json!({"Ref": "ExportQueue"}))
                .as_str()
                .unwrap(),
        )
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    for name in [
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ] {
        assert_eq!(attributes[&name], "0", "{name:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_forwarder_delivers_every_event_from_direct_sqs_and_eventbridge_notices() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env) = enforced(&emulator, &moto, "s3-forwarder").await;
    let function = start_function("s3-forwarder", &env, dir.path()).await;

    // Direct S3 notification.
    let version = put(
        &moto,
        "keeper/direct.ndjson.gz",
        keeper_export("direct", 700),
        None,
    )
    .await;
    let (status, answer) = function
        .invoke(&s3_notice("keeper/direct.ndjson.gz", &version))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer["delivered"], 700, "{answer}");
    assert_eq!(rows_tagged(&emulator, "direct"), 700);

    // Through the export queue, with a key S3 encodes (space and `+`), next to the
    // s3:TestEvent.
    let key = "keeper/via sqs/export c++.ndjson.gz";
    let version = put(&moto, key, keeper_export("via-sqs", 300), None).await;
    let bodies = [
        s3_notice(key, &version).to_string(),
        fixture("s3-test-event.json").to_string(),
    ];
    let (event, _) = stack
        .sqs_event(&moto, "ExportQueue", "s3-forwarder", &bodies)
        .await;
    let (status, answer) = function.invoke(&event).await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(answer, json!({"batchItemFailures": []}));
    stack
        .acknowledge("ExportQueue", "s3-forwarder", &event, &answer)
        .await;
    assert_eq!(rows_tagged(&emulator, "via-sqs"), 300);

    // EventBridge "Object Created", straight to the function, with its `version-id`.
    let version = put(
        &moto,
        "keeper/eventbridge.ndjson.gz",
        keeper_export("eventbridge", 250),
        None,
    )
    .await;
    let mut event = fixture("eventbridge-object-created.json");
    event["detail"]["bucket"]["name"] = BUCKET.into();
    event["detail"]["object"]["key"] = "keeper/eventbridge.ndjson.gz".into();
    event["detail"]["object"]["version-id"] = version.into();
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
        let version = put(&moto, key, keeper_export(tag, 25), None).await;
        event["detail"]["object"]["key"] = written.into();
        event["detail"]["object"]["version-id"] = version.into();
        let (status, answer) = function.invoke(&event).await;
        assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
        assert_eq!(rows_tagged(&emulator, tag), 25, "{key}");
    }

    // A notice for a version deleted since (the template's lifecycle expires noncurrent
    // versions): not retried, and one dead-letter entry names the object and its version.
    let version = put(
        &moto,
        "keeper/deleted.ndjson.gz",
        keeper_export("deleted", 5),
        None,
    )
    .await;
    moto.s3
        .delete_object()
        .bucket(BUCKET)
        .key("keeper/deleted.ndjson.gz")
        .version_id(&version)
        .send()
        .await
        .unwrap();
    let (status, answer) = function
        .invoke(&s3_notice("keeper/deleted.ndjson.gz", &version))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", function.binary.output());
    assert_eq!(
        (
            &answer["delivered"],
            &answer["dead_lettered"],
            &answer["unreadable_sources"]
        ),
        (&json!(0), &json!(1), &json!(1)),
        "{answer}"
    );
    assert!(function.binary.output().contains("does not exist"));
    let dead = dead_letter_objects(&moto).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry: Value = serde_json::from_str(dead[0].1.trim()).unwrap();
    assert_eq!(
        entry["source"],
        format!("s3://{BUCKET}/keeper/deleted.ndjson.gz?versionId={version}"),
        "{entry}"
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("no such object version"),
        "{entry}"
    );

    // Nothing twice, nothing lost, only the missing version dead-lettered, one token for the
    // warm container.
    assert_eq!(emulator.rows().len(), 1300);
    assert_eq!(dead_letter_objects(&moto).await.len(), 1);
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
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env) = enforced(&emulator, &moto, "sqs-forwarder").await;
    let function = start_function("sqs-forwarder", &env, dir.path()).await;

    let ready = put(
        &moto,
        "keeper/ready.ndjson.gz",
        keeper_export("ready", 400),
        None,
    )
    .await;
    // The poisoned message: an object archived to Glacier. S3 answers 403 InvalidObjectState
    // until it is restored, so the message must come back later, not be dropped.
    let archived = put(
        &moto,
        "keeper/archived.ndjson.gz",
        keeper_export("archived", 50),
        Some("GLACIER"),
    )
    .await;
    let bodies = [
        keeper_lines("inline", 40).join("\n"),
        s3_notice("keeper/ready.ndjson.gz", &ready).to_string(),
        s3_notice("keeper/archived.ndjson.gz", &archived).to_string(),
        "{\"audit_event\": \"login\", this is not JSON".to_string(),
    ];
    let (event, ids) = stack
        .sqs_event(&moto, "EventsQueue", "sqs-forwarder", &bodies)
        .await;
    let (status, answer) = function.invoke(&event).await;
    let why = || report(&stack, &function, "sqs-forwarder");
    assert_eq!(status, 200, "{answer}\n{}", why());
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": ids[2]}]}),
        "{}",
        why()
    );
    stack
        .acknowledge("EventsQueue", "sqs-forwarder", &event, &answer)
        .await;
    assert_eq!(rows_tagged(&emulator, "inline"), 40);
    assert_eq!(rows_tagged(&emulator, "ready"), 400);
    assert_eq!(rows_tagged(&emulator, "archived"), 0);
    assert_eq!(emulator.stats().token_requests, 1);

    // The malformed body is in the S3 dead letter, filed under its message, with a reason.
    let dead = dead_letter_objects(&moto).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, body) = &dead[0];
    assert!(
        key.starts_with(&format!("{}sqs-arn-aws-sqs-", dead_letter_prefix(&env))),
        "{key}"
    );
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
    let moto = iam::start_moto(dir.path()).await;
    // The token is the template's HttpTokenSecret (LOGRELAY_HTTP_TOKEN_ARN from the template).
    let (stack, env) = enforced(&emulator, &moto, "http-forwarder").await;
    assert!(env
        .iter()
        .any(|(key, value)| key == "LOGRELAY_HTTP_TOKEN_ARN" && value.contains(":secret:")));
    let function = start_function("http-forwarder", &env, dir.path()).await;

    // cargo-lambda turns plain HTTP requests into Function URL events (payload 2.0).
    let url = format!("http://127.0.0.1:{}/events", function.port);
    let http = reqwest::Client::builder()
        .timeout(INVOKE_TIMEOUT)
        .build()
        .unwrap();
    let mut lines = keeper_lines("http", 25);
    // One record that is not an event object: dead-lettered to S3 with the HTTP role.
    lines.push("42".into());
    let body = lines.join("\n");
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
    let why = || report(&stack, &function, "http-forwarder");
    assert_eq!(status, 200, "{answer}\n{}", why());
    assert_eq!(answer["delivered"], 25, "{answer}\n{}", why());
    assert_eq!(answer["dead_lettered"], 1, "{answer}\n{}", why());
    assert_eq!(rows_tagged(&emulator, "http"), 25);
    let dead = dead_letter_objects(&moto).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.starts_with(&dead_letter_prefix(&env)), "{dead:?}");
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
    let moto = iam::start_moto(dir.path()).await;
    let (_stack, mut env) = enforced(&emulator, &moto, "s3-forwarder").await;
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
    let version = put(&moto, "keeper/big.ndjson.gz", object, None).await;
    println!(
        "generated {events} events, {size} bytes gzipped, in {:?}",
        started.elapsed()
    );

    let function = start_function("s3-forwarder", &env, dir.path()).await;
    let started = Instant::now();
    let (status, answer) = function
        .invoke_within(
            &s3_notice("keeper/big.ndjson.gz", &version),
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
    use logrelay_core::auth::SecretSource;
    let dir = tempfile::tempdir().unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let created = moto
        .secrets
        .create_secret()
        .name("rotating")
        .secret_string(json!({"client_secret": "first"}).to_string())
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_string();
    // Read as the s3-forwarder's role, the secret standing in for ClientSecretSecret.
    let stack = Stack::deploy(&moto, &arn, HTTP_TOKEN).await;
    let role = aws_sdk_secretsmanager::Client::new(
        &iam::sdk_config(&moto.url, &stack.role_of("s3-forwarder").keys).await,
    );
    let source = logrelay_core::aws::SecretsManagerSource::new(role.clone(), arn.clone());
    assert_eq!(source.client_secret(false).await.unwrap().expose(), "first");

    // Rotation (by the operator): the plain-text form is accepted too.
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

    let missing = logrelay_core::aws::SecretsManagerSource::new(role, "no-such-secret");
    let error = missing.client_secret(false).await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("GetSecretValue"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_503_with_retry_after_while_azure_keeps_throttling() {
    use logrelay_core::router::{app, RequestDeadline, RouterState};

    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(azmon_emulator::Faults {
        status_rate: 1.0,
        statuses: vec![429],
        retry_after_secs: 1,
        ..azmon_emulator::Faults::default()
    });
    let env = emulator.env();
    let config = logrelay_core::config::Config::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let dead = std::sync::Arc::new(logrelay_core::dead_letter::MemoryDeadLetter::new());
    let decode = logrelay_core::keeper::DecodeOptions {
        schema: logrelay_core::keeper::SchemaMode::Keeper,
        max_decompressed_bytes: 1 << 30,
        now: SystemTime::now(),
    };
    let relay = logrelay_core::relay::Relay::from_config(&config, dead.clone(), decode, None)
        .await
        .unwrap();
    let router = app(RouterState::new(
        std::sync::Arc::new(relay),
        logrelay_core::secret::Secret::new(HTTP_TOKEN),
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

/// The SQS event shape of the `aws_lambda_events` fixtures (`example-sqs-event.json`: a
/// message whose body is the text `Message Body`), in one batch with a good S3 notice, an
/// events array and a notice naming a key that was never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_forwarder_dead_letters_a_text_body_and_a_missing_object_and_delivers_the_rest_of_the_batch(
) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env) = enforced(&emulator, &moto, "sqs-forwarder").await;
    let function = start_function("sqs-forwarder", &env, dir.path()).await;

    let good = put(
        &moto,
        "keeper/good.ndjson.gz",
        keeper_export("noticed", 120),
        None,
    )
    .await;
    // A version id S3 never gave for a key never written (the shape S3 sends).
    let missing_version = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY";
    let bodies = [
        s3_notice("keeper/good.ndjson.gz", &good).to_string(),
        "Message Body".to_string(),
        format!("[{}]", keeper_lines("array", 30).join(",")),
        s3_notice("keeper/never-written.ndjson.gz", missing_version).to_string(),
    ];
    let (event, ids) = stack
        .sqs_event(&moto, "EventsQueue", "sqs-forwarder", &bodies)
        .await;
    let (status, answer) = function.invoke(&event).await;
    let why = || report(&stack, &function, "sqs-forwarder");
    assert_eq!(status, 200, "{answer}\n{}", why());
    // Nothing to retry: both unusable sources are in the dead letter.
    assert_eq!(answer, json!({"batchItemFailures": []}), "{}", why());
    stack
        .acknowledge("EventsQueue", "sqs-forwarder", &event, &answer)
        .await;
    assert_eq!(rows_tagged(&emulator, "noticed"), 120);
    assert_eq!(rows_tagged(&emulator, "array"), 30);
    assert_eq!(emulator.rows().len(), 150);

    let mut entries: Vec<Value> = dead_letter_objects(&moto)
        .await
        .iter()
        .flat_map(|(_, body)| {
            body.lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    entries.sort_by_key(|entry| entry["source"].as_str().unwrap().to_string());
    assert_eq!(entries.len(), 2, "{entries:?}\n{}", why());
    // The missing object, by key and version, with what S3 said and what to do.
    assert_eq!(
        entries[0]["source"],
        format!("s3://{BUCKET}/keeper/never-written.ndjson.gz?versionId={missing_version}"),
        "{entries:?}"
    );
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(reason.contains("upload it again"), "{reason}");
    // The text body, with its text and what was expected.
    assert!(
        entries[1]["source"].as_str().unwrap().ends_with(&ids[1]),
        "{entries:?}"
    );
    assert_eq!(entries[1]["raw"], "Message Body");
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("expected Keeper audit events"),
        "{entries:?}"
    );

    // The invocation's summary and its metrics count both.
    let log = function.binary.output();
    assert!(log.contains("unreadable_sources=2"), "{log}");
    assert!(log.contains("\"UnreadableSources\":2"), "{log}");
    assert!(log.contains("dead_lettered=2"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_dead_letter_never_replaces_an_object_and_concurrent_writers_keep_every_entry() {
    use logrelay_core::aws::S3DeadLetter;
    use logrelay_core::dead_letter::{DeadLetterEntry, DeadLetterSink};

    let dir = tempfile::tempdir().unwrap();
    let moto = common::start_moto(dir.path()).await;
    moto.s3.create_bucket().bucket("dlq").send().await.unwrap();
    let sink = |prefix: &str| S3DeadLetter::new(moto.s3.clone(), "dlq".into(), prefix.into());

    // If-None-Match: * on the put: a key that exists is refused, not replaced.
    let first = sink("taken/");
    assert!(first.put_new("taken/x.ndjson", b"first\n").await.unwrap());
    assert!(!first.put_new("taken/x.ndjson", b"second\n").await.unwrap());
    let kept = moto
        .s3
        .get_object()
        .bucket("dlq")
        .key("taken/x.ndjson")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&kept[..], b"first\n");

    // Two writers (two containers) at once, same source, same prefix: every batch survives.
    let source = "s3://keeper-audit/keeper/2026/12/01/events.ndjson.gz";
    let writers = ["a", "b"].map(|tag| {
        let sink = sink("failed/");
        async move {
            for batch in 0..40 {
                let entry = DeadLetterEntry {
                    reason: "HTTP 403".into(),
                    source: source.into(),
                    record: Some(1),
                    event: Some(json!({"writer": tag, "batch": batch})),
                    raw: None,
                };
                sink.write(&[entry]).await.unwrap();
            }
        }
    });
    let [a, b] = writers;
    tokio::join!(a, b);
    let listed = moto
        .s3
        .list_objects_v2()
        .bucket("dlq")
        .prefix("failed/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 80, "{keys:?}");
    assert!(keys
        .iter()
        .all(|key| key.starts_with("failed/s3-keeper-audit-keeper-2026-12-01-events-ndjson-gz/")));
}
