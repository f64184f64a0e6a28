//! End to end: the real `azure-handler` binary, started the way the Functions host starts it
//! (`FUNCTIONS_CUSTOMHANDLER_PORT`, readiness on `GET /`), invoked with the payloads each
//! trigger really sends (tests/fixtures/azure), delivering into the local Azure emulator.
//!
//! Core Tools cannot be installed offline (offline-toolbox.md §5), so the host is played by
//! these tests; the protocol shapes come from the host's own code (see the fixtures README).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use common::free_port;
use serde_json::Value;

/// How long the handler may take to answer `GET /` (the host allows 30–60 s; ours is instant).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Inherited variables that would change the handler's configuration.
const SCRUBBED: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET_ARN",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLOUD",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "LOGS_INGESTION_ENDPOINT",
    "LOGS_INGESTION_DCE",
    "LOGS_INGESTION_DCR_ID",
    "LOGS_INGESTION_STREAM",
    "LOGRELAY_DEAD_LETTER",
    "LOGRELAY_SCHEMA",
    "LOGRELAY_DEADLINE_SECS",
    "LOGRELAY_QUEUE_BODY_ENCODING",
    "LOGRELAY_HTTP_TOKEN",
    "WEBSITE_SITE_NAME",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/azure")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `target/debug/azure-handler`, next to this test's own `deps/` directory.
fn handler_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut candidates = Vec::new();
    if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
        candidates.push(profile_dir.join("azure-handler"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/azure-handler"));
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the azure-handler binary is missing (looked at {candidates:?}); \
                 build it first: `cargo build -p azure-handler` (`make test` does)"
            )
        })
}

/// The running handler process; killed on drop.
struct Handler {
    child: Child,
    base: String,
    dead_letter: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Handler {
    /// Starts the binary with `env` (emulator credentials and extras) and waits for readiness.
    async fn start(env: Vec<(String, String)>) -> Handler {
        let dir = tempfile::tempdir().expect("temp dir");
        let dead_letter = dir.path().join("dead-letter");
        let log = dir.path().join("handler.log");
        let port = free_port();
        let mut command = Command::new(handler_binary());
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "test-worker")
            .env("LOGRELAY_DEAD_LETTER", &dead_letter)
            .env("RUST_LOG", "info")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            ));
        let child = command.spawn().expect("start azure-handler");
        let mut handler = Handler {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dead_letter,
            log,
            _dir: dir,
        };
        handler.wait_ready().await;
        handler
    }

    /// Polls `GET /` as the host does: any HTTP answer means ready.
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "azure-handler exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if client.get(format!("{}/", self.base)).send().await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "azure-handler not ready after {READY_TIMEOUT:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs an invocation as the host does; returns the status and the parsed answer.
    async fn invoke(&self, function: &str, body: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/{function}", self.base))
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("User-Agent", "Azure-Functions-Host/4.1040.300.0")
            .body(body.to_string())
            .send()
            .await
            .expect("invocation request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.expect("invocation answer");
        assert_eq!(
            content_type, "application/json",
            "the host needs JSON answers (§5.3); got {status} {text}"
        );
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        (status, answer)
    }

    /// Every dead-letter line written so far.
    fn dead_letters(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.dead_letter) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "ndjson") {
                let text = std::fs::read_to_string(&path).expect("dead-letter file");
                lines.extend(text.lines().map(|line| {
                    serde_json::from_str::<Value>(line).expect("dead-letter line is JSON")
                }));
            }
        }
        lines
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

fn usernames(emulator: &Emulator) -> Vec<String> {
    let mut names: Vec<String> = emulator
        .rows()
        .iter()
        .filter_map(|row| {
            row.get("Username")
                .or_else(|| row.get("username"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn users(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names
        .iter()
        .map(|name| format!("{name}@acme-corp.example"))
        .collect();
    names.sort();
    names
}

fn logs_of(answer: &Value) -> String {
    answer["Logs"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_queue_message_double_encoded_by_the_host_is_delivered() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-double-encoded.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert_eq!(answer["ReturnValue"], Value::Null);
    assert!(answer["Outputs"].is_object(), "{answer}");
    let logs = logs_of(&answer);
    for counter in [
        "events_in=3",
        "delivered=3",
        "dead_lettered=0",
        "retries=0",
        "token_fetches=1",
    ] {
        assert!(logs.contains(counter), "{counter} missing in {logs}");
    }
    assert_eq!(
        usernames(&emulator),
        users(&["ana.queue", "ben.queue", "cai.queue"])
    );
}

#[tokio::test]
async fn a_plain_queue_message_is_delivered() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-plain.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert_eq!(usernames(&emulator), users(&["dia.plain", "eli.plain"]));
}

#[tokio::test]
async fn a_gzip_blob_sent_as_base64_is_delivered() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("blob-events", &fixture("blob-gzip-ndjson.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert!(logs_of(&answer).contains("delivered=4"), "{answer}");
    assert_eq!(
        usernames(&emulator),
        users(&["gus0.blob", "gus1.blob", "gus2.blob", "gus3.blob"])
    );
    assert!(emulator.stats().gzip_requests >= 1);
}

#[tokio::test]
async fn an_event_hub_batch_delivers_every_event_of_every_body_in_one_request() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("eventhub-events", &fixture("eventhub-many.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert_eq!(
        usernames(&emulator),
        users(&["hal.hub", "ivy.hub", "jon.hub", "kim.hub"])
    );
    // The bodies share one session, so four small events cost one request, not four.
    assert_eq!(emulator.stats().accepted_requests, 1);
}

#[tokio::test]
async fn managed_identity_delivers_without_a_client_secret() {
    let emulator = emulator().await;
    let env = emulator.identity_env();
    assert!(env.iter().all(|(name, _)| name != "AZURE_CLIENT_SECRET"));
    let handler = Handler::start(env).await;
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-double-encoded.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert_eq!(
        usernames(&emulator),
        users(&["ana.queue", "ben.queue", "cai.queue"])
    );
    let stats = emulator.stats();
    assert_eq!(stats.identity_requests, 1, "{stats:?}");
    assert_eq!(stats.token_requests, 0, "{stats:?}");
    // The identity header never reaches the logs.
    assert!(!handler.logs().contains(&emulator.identity_header()));
}

#[tokio::test]
async fn throttling_past_the_deadline_fails_the_invocation_so_the_host_retries() {
    let emulator = emulator().await;
    emulator.set_faults(Faults {
        status_rate: 1.0,
        statuses: vec![503],
        retry_after_secs: 1,
        ..Faults::default()
    });
    let mut env = emulator.env();
    env.push(("LOGRELAY_DEADLINE_SECS".into(), "2".into()));
    env.push(("LOGRELAY_REQUEST_TIMEOUT_SECS".into(), "2".into()));
    let handler = Handler::start(env).await;
    let started = Instant::now();
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-double-encoded.json"))
        .await;
    assert_eq!(status, 500, "{answer}\n{}", handler.logs());
    assert!(logs_of(&answer).contains("failed_transient=3"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(emulator.rows().is_empty());
    // Not dead-lettered: the message stays in the queue for the retry.
    assert!(
        handler.dead_letters().is_empty(),
        "{:?}",
        handler.dead_letters()
    );
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_with_its_reason_and_acknowledged() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-malformed.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert!(logs_of(&answer).contains("dead_lettered=1"), "{answer}");
    let entries = handler.dead_letters();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("malformed")),
        "{entry}"
    );
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|source| source.contains("0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b")),
        "{entry}"
    );
    assert!(entry.to_string().contains("fay.broken"), "{entry}");
    assert!(emulator.rows().is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_an_invocation_is_kept_in_the_dead_letter() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, _) = handler.invoke("blob-events", "this is not JSON").await;
    assert_eq!(status, 200);
    let entries = handler.dead_letters();
    assert_eq!(entries[0]["raw"], "this is not JSON", "{entries:?}");
}

#[tokio::test]
async fn bad_configuration_stops_the_handler_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(handler_binary())
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
        .output()
        .expect("run azure-handler");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("azure-handler: missing configuration: set `"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_proxied_http_function_delivers_with_the_shared_token_and_refuses_without() {
    let emulator = emulator().await;
    let mut env = emulator.env();
    env.push((
        "LOGRELAY_HTTP_TOKEN".into(),
        "keeper-webhook-shared-token".into(),
    ));
    let handler = Handler::start(env).await;
    let client = reqwest::Client::new();
    // With enableProxyingHttpRequest and routePrefix "", the host forwards the caller's
    // request unchanged: same path, headers and body.
    let refused = client
        .post(format!("{}/events", handler.base))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer wrong-token")
        .body(fixture("http-events.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 401);
    assert!(emulator.rows().is_empty());
    let accepted = client
        .post(format!("{}/events", handler.base))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer keeper-webhook-shared-token")
        .header("X-Forwarded-For", "203.0.113.50")
        .body(fixture("http-events.json"))
        .send()
        .await
        .expect("request");
    let status = accepted.status().as_u16();
    let body = accepted.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}\n{}", handler.logs());
    assert_eq!(usernames(&emulator), users(&["lou.http", "max.http"]));
    assert!(!handler.logs().contains("keeper-webhook-shared-token"));
}

#[tokio::test]
async fn a_truncated_gzip_blob_is_dead_lettered_by_uri_and_acknowledged() {
    use base64::Engine;
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let mut invocation: Value =
        serde_json::from_str(&fixture("blob-gzip-ndjson.json")).expect("fixture is JSON");
    let engine = base64::engine::general_purpose::STANDARD;
    let gzip = engine
        .decode(invocation["Data"]["blob"].as_str().expect("blob data"))
        .expect("fixture blob is base64");
    // An upload cut short: the gzip header and part of the stream, no trailer.
    invocation["Data"]["blob"] = Value::String(engine.encode(&gzip[..gzip.len() / 2]));
    let (status, answer) = handler.invoke("blob-events", &invocation.to_string()).await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    let entries = handler.dead_letters();
    assert!(!entries.is_empty(), "{answer}");
    assert!(
        entries.iter().any(|entry| entry["source"]
            .as_str()
            .is_some_and(|source| source.ends_with("keeper-0900.ndjson.gz"))),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|entry| entry["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("gzip"))),
        "{entries:?}"
    );
    let logs = logs_of(&answer);
    assert!(!logs.contains("dead_lettered=0"), "{logs}");
}

#[tokio::test]
async fn a_blob_inflating_past_the_limit_is_dead_lettered_not_retried() {
    use std::io::Write;

    use base64::Engine;
    let emulator = emulator().await;
    let mut env = emulator.env();
    env.push(("LOGRELAY_MAX_DECOMPRESSED_BYTES".into(), "1024".into()));
    let handler = Handler::start(env).await;
    // A small gzip that inflates to 1 MiB of zeros: a gzip bomb for a 1 KiB guard.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&vec![0u8; 1 << 20]).expect("gzip");
    let gzip = gzip.finish().expect("gzip");
    let mut invocation: Value =
        serde_json::from_str(&fixture("blob-gzip-ndjson.json")).expect("fixture is JSON");
    invocation["Data"]["blob"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(&gzip));
    let (status, answer) = handler.invoke("blob-events", &invocation.to_string()).await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    let entries = handler.dead_letters();
    assert_eq!(entries.len(), 1, "{answer}");
    assert!(
        entries[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("LOGRELAY_MAX_DECOMPRESSED_BYTES")),
        "{entries:?}"
    );
    assert!(emulator.rows().is_empty());
}

#[tokio::test]
async fn a_wrong_identity_header_surfaces_the_advice_loses_nothing_and_is_never_printed() {
    let emulator = emulator().await;
    let mut env: Vec<(String, String)> = emulator
        .identity_env()
        .into_iter()
        .filter(|(name, _)| name != "IDENTITY_HEADER")
        .collect();
    env.push((
        "IDENTITY_HEADER".into(),
        "stale-identity-header-value".into(),
    ));
    let handler = Handler::start(env).await;
    let (status, answer) = handler
        .invoke("queue-events", &fixture("queue-plain.json"))
        .await;
    let advice = "X-IDENTITY-HEADER";
    if status == 200 {
        // Acknowledged only because both events are in the dead letter with the advice.
        let entries = handler.dead_letters();
        assert_eq!(entries.len(), 2, "{answer}");
        assert!(entries.iter().all(|entry| entry["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(advice))));
    } else {
        assert_eq!(status, 500, "{answer}");
        assert!(logs_of(&answer).contains(advice), "{answer}");
    }
    assert!(emulator.rows().is_empty());
    assert!(!handler.logs().contains("stale-identity-header-value"));
    assert!(!answer.to_string().contains("stale-identity-header-value"));
}
