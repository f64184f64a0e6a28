//! End to end: the real `azure-handler` binary, started the way the Functions host starts it
//! (`FUNCTIONS_CUSTOMHANDLER_PORT`, readiness on `GET /`), invoked with the payloads each
//! trigger really sends (tests/fixtures/azure), delivering into the local Azure emulator.
//!
//! Core Tools cannot be installed offline, so the host is played by these tests; the protocol
//! shapes come from Microsoft Learn's "Azure Functions custom handlers" page and the host's own
//! code (see the fixtures README). The last tests hold infra/azure/function-app (and the app
//! settings of infra/azure/main.json) to the host's naming rules.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use common::{free_port, INVOKE_TIMEOUT};
use serde_json::Value;

/// How long the handler may take to answer `GET /` (the host allows 30–60 s; ours is instant).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The shared bearer token the HTTP tests configure (`LOGRELAY_HTTP_TOKEN`); the classic fixture
/// carries it in `Data.req.Headers.Authorization`.
const HTTP_TOKEN: &str = "keeper-webhook-shared-token";

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
            "the host needs JSON answers (docs/emulator-facts.md §5.3); got {status} {text}"
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
        .invoke("queue_events", &fixture("queue-double-encoded.json"))
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
        .invoke("queue_events", &fixture("queue-plain.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    assert_eq!(usernames(&emulator), users(&["dia.plain", "eli.plain"]));
}

#[tokio::test]
async fn a_gzip_blob_sent_as_base64_is_delivered() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    let (status, answer) = handler
        .invoke("blob_events", &fixture("blob-gzip-ndjson.json"))
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
        .invoke("eventhub_events", &fixture("eventhub-many.json"))
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
        .invoke("queue_events", &fixture("queue-double-encoded.json"))
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
        .invoke("queue_events", &fixture("queue-double-encoded.json"))
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
        .invoke("queue_events", &fixture("queue-malformed.json"))
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
    let (status, _) = handler.invoke("blob_events", "this is not JSON").await;
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
    let (status, answer) = handler.invoke("blob_events", &invocation.to_string()).await;
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
    let (status, answer) = handler.invoke("blob_events", &invocation.to_string()).await;
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
        .invoke("queue_events", &fixture("queue-plain.json"))
        .await;
    let advice = "X-IDENTITY-HEADER";
    // A 401 from the identity endpoint is permanent (a wrong header does not fix itself), so
    // the rows go to the dead letter with the advice and the message is completed: 200.
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    let logs = logs_of(&answer);
    assert!(logs.contains("events_in=2"), "{logs}");
    assert!(logs.contains("delivered=0"), "{logs}");
    assert!(logs.contains("dead_lettered=2"), "{logs}");
    let entries = handler.dead_letters();
    assert_eq!(entries.len(), 2, "{answer}");
    assert!(
        entries.iter().all(|entry| entry["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(advice))),
        "{entries:?}"
    );
    assert!(emulator.rows().is_empty());
    assert!(!handler.logs().contains("stale-identity-header-value"));
    assert!(!answer.to_string().contains("stale-identity-header-value"));
}

/// The handler with the emulator's credentials and the HTTP function's shared token.
async fn http_handler(emulator: &Emulator) -> Handler {
    let mut env = emulator.env();
    env.push(("LOGRELAY_HTTP_TOKEN".into(), HTTP_TOKEN.into()));
    Handler::start(env).await
}

/// `Outputs.res` of a classic HTTP invocation answer: status, body, headers.
fn res_of(answer: &Value) -> (u16, String, Value) {
    let res = &answer["Outputs"]["res"];
    let status = res["statusCode"]
        .as_str()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("`Outputs.res.statusCode` is not a status string: {answer}"));
    assert_eq!(
        res["status"], res["statusCode"],
        "hosts that require `Status` get the same code: {answer}"
    );
    let body = res["body"]
        .as_str()
        .unwrap_or_else(|| panic!("`Outputs.res.body` is not a string: {answer}"))
        .to_string();
    (status, body, res["headers"].clone())
}

/// The classic invocation fixture with the caller's `Authorization` replaced (or removed) and
/// its body replaced.
fn classic_invocation(authorization: Option<&str>, body: &str) -> String {
    let mut invocation: Value =
        serde_json::from_str(&fixture("http-classic-invocation.json")).expect("fixture is JSON");
    let req = &mut invocation["Data"]["req"];
    let headers = req["Headers"].as_object_mut().expect("Headers object");
    match authorization {
        Some(value) => {
            headers.insert("Authorization".into(), serde_json::json!([value]));
        }
        None => {
            headers.remove("Authorization");
        }
    }
    req["Body"] = Value::String(body.to_string());
    invocation.to_string()
}

#[tokio::test]
async fn a_classic_http_invocation_shaped_as_the_docs_show_delivers_and_answers_in_outputs_res() {
    let emulator = emulator().await;
    let handler = http_handler(&emulator).await;
    // The host POSTs to /<function name> with no Authorization of its own; the caller's
    // token is in Data.req.Headers.
    let (status, answer) = handler
        .invoke("events", &fixture("http-classic-invocation.json"))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", handler.logs());
    let (code, body, headers) = res_of(&answer);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(headers["content-type"], "application/json", "{answer}");
    let report: Value = serde_json::from_str(&body).expect("the report is JSON");
    assert_eq!(report["events_in"], 2, "{report}");
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(report["dead_lettered"], 0, "{report}");
    assert_eq!(usernames(&emulator), users(&["nia.classic", "oto.classic"]));
    assert!(logs_of(&answer).contains("classic"), "{answer}");
    assert!(!handler.logs().contains(HTTP_TOKEN));
}

#[tokio::test]
async fn both_host_modes_give_the_caller_the_same_refusals() {
    let emulator = emulator().await;
    let handler = http_handler(&emulator).await;
    let events = fixture("http-events.json");
    let bearer = format!("Bearer {HTTP_TOKEN}");
    // One byte past the shared routes' limit, so the limit is the router's, not the envelope's.
    let oversized = format!("[{}", " ".repeat(logrelay_core::router::MAX_BODY_BYTES));
    let cases: [(&str, Option<&str>, &str, u16); 4] = [
        ("a wrong token", Some("Bearer wrong-token"), &events, 401),
        ("no token", None, &events, 401),
        ("an empty body", Some(&bearer), "  ", 400),
        ("a body over the limit", Some(&bearer), &oversized, 413),
    ];
    for (case, authorization, body, expected) in cases {
        // Proxied: the caller's request as is.
        let (proxied_status, proxied_challenge, proxied_body) =
            proxied_post(&handler.base, authorization, body).await;
        assert_eq!(proxied_status, expected, "proxied, {case}: {proxied_body}");
        // Classic: the same request inside the invocation envelope.
        let (status, answer) = handler
            .invoke("events", &classic_invocation(authorization, body))
            .await;
        assert_eq!(status, 200, "classic, {case}: {answer}");
        let (code, classic_body, headers) = res_of(&answer);
        assert_eq!(code, expected, "classic, {case}: {answer}");
        assert_eq!(classic_body, proxied_body, "{case}");
        assert_eq!(
            headers["www-authenticate"].as_str().map(str::to_string),
            proxied_challenge,
            "{case}"
        );
    }
    // Past the handler's envelope limit (6 × the body limit + 1 MiB) and without a token: not
    // read, and refused as the proxied mode refuses any request without a token.
    let (_, _, unauthorized) = proxied_post(&handler.base, None, &events).await;
    let huge = " ".repeat(8 * logrelay_core::router::MAX_BODY_BYTES);
    let (status, challenge, body) = proxied_post(&handler.base, None, &huge).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    assert_eq!(body, unauthorized);
    assert!(emulator.rows().is_empty());
    assert!(handler.dead_letters().is_empty());
}

/// `POST /events` as a caller sends it through a proxying host, over a plain socket: the
/// handler may answer (401, 413) before the body is read and close the connection, which an
/// HTTP client still writing the body reports as a broken pipe instead of the answer. Returns
/// the status, the `WWW-Authenticate` header and the body.
async fn proxied_post(
    base: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the handler");
    let mut head = format!(
        "POST /events HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the request head");
    // The handler may stop reading once it has answered; the answer is what counts.
    let _ = stream.write_all(body.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(INVOKE_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("the handler answers within the timeout");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let challenge = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("www-authenticate")
            .then(|| value.trim().to_string())
    });
    (status, challenge, body.to_string())
}

/// Folders of infra/azure/function-app holding a function.json: the function names.
fn function_folders() -> Vec<(String, Value)> {
    let dir = common::repo().join("infra/azure/function-app");
    let mut folders: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("function.json").is_file())
        .map(|path| {
            let text = std::fs::read_to_string(path.join("function.json")).expect("function.json");
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .file_name()
                .expect("folder name")
                .to_string_lossy()
                .into_owned();
            (name, json)
        })
        .collect();
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        !folders.is_empty(),
        "no function folders in {}",
        dir.display()
    );
    folders
}

/// The Functions host's rule for a function name: `^[a-z][a-z0-9_\-]{0,127}$`, case-insensitive,
/// and not `host` (Azure/azure-functions-host, `Utility.FunctionNameValidationRegex`).
fn is_valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 128
        && !name.eq_ignore_ascii_case("host")
}

/// App setting names "can contain only letters, numbers (0-9), periods (.), and underscores
/// (_)" (Microsoft Learn, "Configure an App Service app", Configure app settings).
fn is_valid_setting_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

/// The host's rule for a binding name: `^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$`
/// (Azure/azure-functions-host, `Utility.BindingNameValidationRegex`).
fn is_valid_binding_name(name: &str) -> bool {
    let mut chars = name.chars();
    name == "$return"
        || (chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
            && name.len() <= 128)
}

/// Every `%NAME%` in `text`: the host resolves them from app settings.
fn percent_names(text: &str) -> Vec<String> {
    text.split('%')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_naming_rules_refuse_what_the_host_refuses() {
    // The rule checks themselves, on names the host's regexes and the docs decide.
    for valid in ["events", "queue_events", "eventhub-events", "A1"] {
        assert!(is_valid_function_name(valid), "{valid}");
    }
    for invalid in [
        "1events",
        "host",
        "Host",
        "queue.events",
        "",
        &"a".repeat(129),
    ] {
        assert!(!is_valid_function_name(invalid), "{invalid}");
    }
    for valid in [
        "AzureWebJobs.eventhub_events.Disabled",
        "KEEPER_EVENT_HUB_NAME",
    ] {
        assert!(is_valid_setting_name(valid), "{valid}");
    }
    for invalid in ["AzureWebJobs.eventhub-events.Disabled", "A B", "a:b", ""] {
        assert!(!is_valid_setting_name(invalid), "{invalid}");
    }
    assert!(is_valid_binding_name("msg") && is_valid_binding_name("$return"));
    assert!(!is_valid_binding_name("my_msg") && !is_valid_binding_name("1x"));
    assert_eq!(
        percent_names(r#"{"a":"%ONE%","b":"x%TWO%y"}"#),
        ["ONE", "TWO"]
    );
}

#[test]
fn no_function_name_or_setting_name_in_the_function_app_breaks_the_hosts_naming_rules() {
    let dir = common::repo().join("infra/azure/function-app");
    for (name, function) in function_folders() {
        assert!(
            is_valid_function_name(&name),
            "function `{name}` breaks the host's function name rule"
        );
        let disabled = format!("AzureWebJobs.{name}.Disabled");
        assert!(
            is_valid_setting_name(&disabled),
            "`{disabled}` is not a valid app setting name, so function `{name}` cannot be disabled"
        );
        let bindings = function["bindings"].as_array().expect("bindings array");
        for binding in bindings {
            let binding_name = binding["name"].as_str().unwrap_or_default();
            assert!(
                is_valid_binding_name(binding_name),
                "{name}: binding name `{binding_name}`"
            );
            if let Some(connection) = binding["connection"].as_str() {
                assert!(
                    is_valid_setting_name(connection),
                    "{name}: connection `{connection}` is not a valid app setting name"
                );
            }
        }
        let text = function.to_string();
        for setting in percent_names(&text) {
            assert!(
                is_valid_setting_name(&setting),
                "{name}: `%{setting}%` is not a valid app setting name"
            );
        }
    }
    let host = std::fs::read_to_string(dir.join("host.json")).expect("host.json");
    for setting in percent_names(&host) {
        assert!(is_valid_setting_name(&setting), "host.json: `%{setting}%`");
    }
}

/// Every app setting name written as a literal in a template: `name: '<literal>'` next to a
/// `value` in main.bicep, `"name": "<literal>"` in main.json's `appSettings` arrays.
fn template_setting_names() -> Vec<(String, String)> {
    fn walk(value: &Value, inside_settings: bool, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if inside_settings {
                    if let (Some(Value::String(name)), true) =
                        (map.get("name"), map.contains_key("value"))
                    {
                        // `[...]` is an ARM expression, not a literal name.
                        if !name.starts_with('[') {
                            found.push(name.clone());
                        }
                    }
                }
                for (key, child) in map {
                    walk(child, inside_settings || key == "appSettings", found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, inside_settings, found);
                }
            }
            _ => {}
        }
    }
    let path = common::repo().join("infra/azure/main.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("main.json is JSON");
    let mut names = Vec::new();
    walk(&json, false, &mut names);
    let mut found: Vec<(String, String)> = names
        .into_iter()
        .map(|name| ("main.json".to_string(), name))
        .collect();
    let bicep =
        std::fs::read_to_string(common::repo().join("infra/azure/main.bicep")).expect("main.bicep");
    // Each string literal that starts with `AzureWebJobs`, up to its closing quote.
    for (start, _) in bicep.match_indices("'AzureWebJobs") {
        let literal = bicep[start + 1..].split('\'').next().unwrap_or_default();
        // `${..}` interpolations are expressions, not literal names.
        if !literal.contains("${") {
            found.push(("main.bicep".to_string(), literal.to_string()));
        }
    }
    found
}

#[test]
fn every_app_setting_the_templates_set_is_a_valid_name_and_disables_only_real_functions() {
    let functions: Vec<String> = function_folders()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let settings = template_setting_names();
    assert!(
        settings.iter().any(|(file, _)| file == "main.json"),
        "no literal app setting found in main.json's appSettings"
    );
    assert!(
        settings.iter().any(|(file, _)| file == "main.bicep"),
        "no `AzureWebJobs...` setting found in main.bicep"
    );
    for (file, name) in &settings {
        assert!(
            is_valid_setting_name(name),
            "{file}: app setting `{name}` is not a valid app setting name"
        );
        if let Some(function) = name
            .strip_prefix("AzureWebJobs.")
            .and_then(|rest| rest.strip_suffix(".Disabled"))
        {
            assert!(
                functions.iter().any(|known| known == function),
                "{file}: `{name}` disables `{function}`, which is not a function folder ({functions:?})"
            );
        }
    }
}

#[test]
fn the_blob_function_uses_the_event_grid_source_flex_consumption_requires() {
    // "The Blob storage trigger only supports the Event Grid source" (Microsoft Learn, Azure
    // Functions Flex Consumption plan hosting, Considerations).
    let folders = function_folders();
    let blob_triggers: Vec<&Value> = folders
        .iter()
        .flat_map(|(_, function)| function["bindings"].as_array().into_iter().flatten())
        .filter(|binding| binding["type"] == "blobTrigger")
        .collect();
    assert!(!blob_triggers.is_empty());
    for binding in blob_triggers {
        assert_eq!(binding["source"], "EventGrid", "{binding}");
    }
}

#[tokio::test]
async fn every_non_http_function_folder_is_a_route_of_the_handler() {
    let emulator = emulator().await;
    let handler = Handler::start(emulator.env()).await;
    for (name, function) in function_folders() {
        let bindings = function["bindings"].as_array().expect("bindings");
        if bindings
            .iter()
            .any(|binding| binding["type"] == "httpTrigger")
        {
            continue;
        }
        // An invocation without the trigger's data: answered (not 404) and dead-lettered with
        // the function's own name in the advice.
        let (status, answer) = handler.invoke(&name, r#"{"Data":{},"Metadata":{}}"#).await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert!(
            logs_of(&answer).contains(&format!("logrelay {name}:")),
            "{name}: {answer}"
        );
    }
    let entries = handler.dead_letters();
    for (name, _) in function_folders()
        .iter()
        .filter(|(name, _)| name != "events")
    {
        assert!(
            entries.iter().any(|entry| entry["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains(&format!("{name}/function.json")))),
            "{name}: {entries:?}"
        );
    }
    assert!(emulator.rows().is_empty());
}

/// A dead-letter location that cannot be created: a directory under a regular file.
fn unwritable_dead_letter(dir: &Path) -> (String, String) {
    let file = dir.join("a-regular-file");
    std::fs::write(&file, b"not a directory").expect("a regular file");
    (
        "LOGRELAY_DEAD_LETTER".to_string(),
        file.join("dead-letter").display().to_string(),
    )
}

#[tokio::test]
async fn a_queue_message_whose_dead_letter_write_fails_answers_500_so_the_host_retries_it() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = emulator.env();
    env.push(unwritable_dead_letter(dir.path()));
    let handler = Handler::start(env).await;
    let (status, answer) = handler
        .invoke("queue_events", &fixture("queue-malformed.json"))
        .await;
    // Not 200: the message stays in the queue (and reaches `<queue>-poison` at worst).
    assert_eq!(status, 500, "{answer}\n{}", handler.logs());
    assert!(logs_of(&answer).contains("host retries"), "{answer}");
}

#[tokio::test]
async fn an_event_hub_batch_on_its_last_attempt_whose_dead_letter_fails_logs_every_event_id_at_error_level(
) {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = emulator.env();
    env.push(unwritable_dead_letter(dir.path()));
    let handler = Handler::start(env).await;
    let (status, answer) = handler
        .invoke("eventhub_events", &fixture("eventhub-last-retry.json"))
        .await;
    // The host checkpoints past the batch whatever the answer; 500 records the failure.
    assert_eq!(status, 500, "{answer}\n{}", handler.logs());
    let logs = handler.logs();
    let lost: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("ERROR") || line.contains("\"level\":\"ERROR\""))
        .filter(|line| line.contains("unrecorded_events"))
        .collect();
    // The events' ids are Keeper's `id`s (the fixture's), never their contents.
    let ids = lost.join("\n");
    for id in ["kpr-2025-06-02-000001", "kpr-2025-06-02-000003"] {
        assert!(
            ids.contains(id),
            "{id} missing from the error lines:\n{logs}"
        );
    }
    assert!(
        !ids.contains("lea.hub"),
        "event contents in the log:\n{ids}"
    );
    // Two events with an id and the truncated body without one; the process total too.
    assert!(
        ids.contains("unrecorded_events=3") || ids.contains("\"unrecorded_events\":3"),
        "{ids}"
    );
    assert!(
        ids.contains("unrecorded_events_total=3") || ids.contains("\"unrecorded_events_total\":3"),
        "{ids}"
    );
    assert!(
        logs_of(&answer).contains("unrecorded_events_total=3"),
        "{answer}"
    );
}
