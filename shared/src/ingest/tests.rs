//! Session behaviour against a scripted HTTP server (axum) on 127.0.0.1, with the real reqwest
//! client.
//!
//! The full-protocol tests against the Azure emulator live in
//! `tests/tests/ingest_e2e.rs`; these pin the session's own decisions one at a time. The
//! scripted server is shared with the relay tests.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::*;
use crate::auth::{AccessToken, TokenProvider};
use crate::clock::SystemClock;
use crate::dead_letter::MemoryDeadLetter;
use crate::model::BoxFuture;
use crate::secret::Secret;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) wire_bytes: usize,
    pub(crate) json_bytes: usize,
    pub(crate) rows: Vec<Value>,
    pub(crate) at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The scripted answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

pub(crate) fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: String::new(),
        delay: Duration::ZERO,
    }
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// What every request handler shares.
#[derive(Clone)]
struct Scripted {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

pub(crate) struct Server {
    url: url::Url,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) async fn start(
        script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let state = Scripted {
            seen: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(script),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let server = Server {
            url,
            seen: state.seen.clone(),
            max_in_flight: state.max_in_flight.clone(),
        };
        let app = axum::Router::new().fallback(serve).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn endpoint(&self) -> IngestionEndpoint {
        IngestionEndpoint {
            base: self.url.clone(),
            dcr_id: "dcr-00000000000000000000000000000000".into(),
            stream: "Custom-KeeperAuditEvents".into(),
        }
    }
}

/// Records the request, then answers as the script says (after its delay).
async fn serve(
    State(state): State<Scripted>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    wire: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&wire[..])
        .read_to_end(&mut json)
        .unwrap();
    let request = Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect(),
        wire_bytes: wire.len(),
        json_bytes: json.len(),
        rows: serde_json::from_slice(&json).unwrap(),
        at: Instant::now(),
    };
    let answer = {
        let mut all = state.seen.lock().unwrap();
        all.push(request.clone());
        (state.script)(all.len() - 1, &request)
    };
    tokio::time::sleep(answer.delay).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

/// Hands out `token-1`, `token-2`, ... valid for an hour, counting fetches.
#[derive(Debug, Default)]
pub(crate) struct CountingProvider(AtomicU64);

impl TokenProvider for CountingProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            let now = SystemTime::now();
            Ok(AccessToken {
                secret: Secret::new(format!("token-{n}")),
                issued_at: now,
                expires_at: now + Duration::from_secs(3600),
            })
        })
    }
}

pub(crate) fn tuning(batch_bytes: usize) -> Tuning {
    Tuning {
        batch_bytes,
        request_timeout: Duration::from_secs(5),
        ..Tuning::default()
    }
}

pub(crate) fn ingestor(server: &Server, tuning: Tuning) -> Ingestor {
    let tokens = Arc::new(TokenCache::new(
        Arc::new(CountingProvider::default()),
        Arc::new(SystemClock),
    ));
    let http = crate::http::build_client(tuning.request_timeout).unwrap();
    Ingestor::new(server.endpoint(), tokens, http, tuning)
}

fn row(i: u64) -> EncodedRow {
    EncodedRow {
        json: serde_json::to_vec(&json!({"EventId": format!("e{i}"), "n": i})).unwrap(),
        origin: Origin {
            source: Arc::from("events.json"),
            record: i,
        },
    }
}

async fn run(
    ingestor: &Ingestor,
    rows: impl IntoIterator<Item = EncodedRow>,
    options: SessionOptions,
) -> (Result<Report>, Arc<MemoryDeadLetter>) {
    let dead = Arc::new(MemoryDeadLetter::new());
    let mut session = ingestor.session(dead.clone(), options);
    for row in rows {
        session.push(row).await.unwrap();
    }
    (session.finish().await, dead)
}

fn numbers(seen: &[Seen]) -> Vec<u64> {
    seen.iter()
        .flat_map(|s| s.rows.iter().map(|r| r["n"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn delivers_every_row_in_gzipped_arrays_of_consecutive_rows_under_the_batch_limit() {
    let server = Server::start(|_, _| reply(204)).await;
    let ingestor = ingestor(&server, tuning(300));
    let (report, dead) = run(&ingestor, (0..100).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    let seen = server.seen();

    let mut delivered = numbers(&seen);
    delivered.sort_unstable(); // batches run concurrently
    assert_eq!(delivered, (0..100).collect::<Vec<_>>());
    for request in &seen {
        assert!(request.json_bytes <= 300, "{}", request.json_bytes);
        // A body holds a run of consecutive rows; inside it they are laid out for
        // compression (`pack::layout`), not in input order.
        let mut ns: Vec<u64> = request
            .rows
            .iter()
            .map(|r| r["n"].as_u64().unwrap())
            .collect();
        ns.sort_unstable();
        assert!(ns.windows(2).all(|w| w[1] == w[0] + 1), "{ns:?}");
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert!(request
            .header("authorization")
            .unwrap()
            .starts_with("Bearer token-"));
        let id = request.header("x-ms-client-request-id").unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    // The Logs Ingestion API's upload call: POST to the DCR's stream with the API version.
    // Source: https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview
    for request in &seen {
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.path,
            "/dataCollectionRules/dcr-00000000000000000000000000000000/streams/Custom-KeeperAuditEvents"
        );
        assert_eq!(request.query.as_deref(), Some("api-version=2023-01-01"));
    }
    assert!(dead.entries().is_empty());
    assert_eq!(report.events_in, 100);
    assert_eq!(report.delivered, 100);
    assert_eq!(report.requests, seen.len() as u64);
    assert!(seen.len() > 1);
    assert_eq!(
        report.bytes_sent,
        seen.iter().map(|s| s.wire_bytes as u64).sum::<u64>()
    );
    assert_eq!(
        report.bytes_uncompressed,
        seen.iter().map(|s| s.json_bytes as u64).sum::<u64>()
    );
    assert!(report.is_balanced());
}

#[tokio::test]
async fn retries_a_429_after_the_retry_after_delay() {
    let server = Server::start(|index, _| {
        if index == 0 {
            let mut throttled = reply(429);
            throttled.headers.push(("retry-after-ms", "400".into()));
            throttled
        } else {
            reply(204)
        }
    })
    .await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let (report, _) = run(&ingestor, (0..5).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(400));
    assert_eq!(
        seen[0].header("x-ms-client-request-id"),
        seen[1].header("x-ms-client-request-id"),
        "one request id across the retries of one body"
    );
    assert_eq!(report.delivered, 5);
    assert_eq!(
        (report.requests, report.retries, report.throttled),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn splits_a_413_body_until_each_part_fits_and_dead_letters_a_single_row_still_refused() {
    // The "service" takes at most 3 rows per body and never takes row 7.
    let server = Server::start(|_, seen| {
        let has_seven = seen.rows.iter().any(|r| r["n"] == 7);
        if seen.rows.len() > 3 || has_seven {
            let mut too_large = reply(413);
            too_large
                .headers
                .push(("x-ms-error-code", "ContentLengthLimitExceeded".into()));
            too_large
        } else {
            reply(204)
        }
    })
    .await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let (report, dead) = run(&ingestor, (0..10).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    let accepted: Vec<u64> = server
        .seen()
        .iter()
        .filter(|s| s.rows.len() <= 3 && !s.rows.iter().any(|r| r["n"] == 7))
        .flat_map(|s| s.rows.iter().map(|r| r["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        accepted,
        vec![0, 1, 2, 3, 4, 5, 6, 8, 9],
        "in order, once each"
    );
    let entries = dead.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event, Some(json!({"EventId": "e7", "n": 7})));
    assert!(
        entries[0].reason.contains("ContentLengthLimitExceeded"),
        "{}",
        entries[0].reason
    );
    assert_eq!((report.delivered, report.dead_lettered), (9, 1));
    assert!(report.is_balanced());
}

#[tokio::test]
async fn a_403_dead_letters_every_row_with_advice_on_the_role() {
    let server = Server::start(|_, _| {
        let mut forbidden = reply(403);
        forbidden.body =
            r#"{"error":{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data"}}"#.into();
        forbidden
    })
    .await;
    let ingestor = ingestor(&server, tuning(200));
    let (report, dead) = run(&ingestor, (0..20).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    let entries = dead.entries();
    assert_eq!(entries.len(), 20);
    let mut records: Vec<u64> = entries.iter().map(|e| e.record.unwrap()).collect();
    records.sort_unstable();
    assert_eq!(records, (0..20).collect::<Vec<_>>());
    for entry in &entries {
        assert!(
            entry.reason.contains("Monitoring Metrics Publisher"),
            "{}",
            entry.reason
        );
        assert!(entry.reason.contains("OperationFailed"));
        assert_eq!(entry.source, "events.json");
    }
    assert_eq!(report.retries, 0, "a 403 is not retried");
    assert_eq!(report.dead_lettered, 20);
    assert_eq!(report.dead_letter_reasons.values().sum::<u64>(), 20);
    assert_eq!(
        dead.writes() as u64,
        report.requests,
        "one write per failed batch"
    );
    assert!(report.is_balanced());
}

#[tokio::test]
async fn a_401_fetches_a_fresh_token_and_retries_once() {
    let server = Server::start(|index, _| reply(if index == 0 { 401 } else { 204 })).await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let (report, _) = run(&ingestor, (0..3).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].header("authorization"),
        seen[1].header("authorization")
    );
    assert_eq!(report.delivered, 3);
}

#[tokio::test]
async fn a_second_401_is_permanent_and_points_at_the_cloud_setting() {
    let server = Server::start(|_, _| reply(401)).await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let (report, dead) = run(&ingestor, (0..3).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    assert_eq!(server.seen().len(), 2, "exactly one retry after a 401");
    assert_eq!(report.dead_lettered, 3);
    assert!(dead.entries()[0].reason.contains("AZURE_CLOUD"));
}

fn quick_503() -> Reply {
    let mut unavailable = reply(503);
    unavailable.headers.push(("retry-after-ms", "1".into()));
    unavailable
}

#[tokio::test]
async fn transient_failures_that_outlast_the_attempts_fail_rows_without_dead_lettering_them() {
    let server = Server::start(|_, _| quick_503()).await;
    let mut tuning = tuning(MAX_BATCH_BYTES);
    tuning.max_attempts = 2;
    // Backoff still applies (up to 0.5 s of jitter before attempt 2).
    let ingestor = ingestor(&server, tuning);
    let options = SessionOptions {
        deadline: None,
        transient: TransientPolicy::Fail,
    };
    let (report, dead) = run(&ingestor, (0..4).map(row), options).await;
    let report = report.unwrap();
    assert_eq!(server.seen().len(), 2);
    assert_eq!(report.failed_transient, 4);
    assert_eq!(report.dead_lettered, 0);
    assert!(dead.entries().is_empty());
    assert!(report.is_balanced());
}

#[tokio::test]
async fn transient_failures_that_outlast_the_attempts_go_to_the_dead_letter_when_asked() {
    let server = Server::start(|_, _| quick_503()).await;
    let mut tuning = tuning(MAX_BATCH_BYTES);
    tuning.max_attempts = 2;
    let ingestor = ingestor(&server, tuning);
    let (report, dead) = run(&ingestor, (0..4).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    assert_eq!(report.dead_lettered, 4);
    let reason = &dead.entries()[0].reason;
    assert!(
        reason.contains("retries exhausted after 2 attempts"),
        "{reason}"
    );
    assert!(reason.contains("HTTP 503"), "{reason}");
}

#[tokio::test]
async fn nothing_is_sent_after_the_session_deadline() {
    let server = Server::start(|_, _| reply(204)).await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let options = SessionOptions {
        deadline: Some(Instant::now()),
        transient: TransientPolicy::Fail,
    };
    let (report, _) = run(&ingestor, (0..4).map(row), options).await;
    let report = report.unwrap();
    assert!(server.seen().is_empty());
    assert_eq!((report.requests, report.failed_transient), (0, 4));
}

#[tokio::test]
async fn unreachable_endpoints_are_retried_as_transport_errors() {
    // Bind then drop a listener: nothing answers on that port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = IngestionEndpoint {
        base: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        dcr_id: "dcr-00000000000000000000000000000000".into(),
        stream: "Custom-X".into(),
    };
    let mut tuning = tuning(MAX_BATCH_BYTES);
    tuning.max_attempts = 2;
    let tokens = Arc::new(TokenCache::new(
        Arc::new(CountingProvider::default()),
        Arc::new(SystemClock),
    ));
    let http = crate::http::build_client(tuning.request_timeout).unwrap();
    let ingestor = Ingestor::new(endpoint, tokens, http, tuning);
    let (report, dead) = run(&ingestor, (0..2).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    assert_eq!((report.requests, report.retries), (2, 1));
    assert!(dead.entries()[0].reason.contains("transport error"));
}

#[tokio::test]
async fn rejects_and_oversized_rows_go_to_the_dead_letter_and_are_counted() {
    let server = Server::start(|_, _| reply(204)).await;
    let ingestor = ingestor(&server, tuning(100));
    let dead = Arc::new(MemoryDeadLetter::new());
    let mut session = ingestor.session(dead.clone(), SessionOptions::default());
    session.push(row(1)).await.unwrap();
    let big = EncodedRow {
        json: serde_json::to_vec(&json!({"n": 2, "pad": "x".repeat(200)})).unwrap(),
        origin: Origin {
            source: Arc::from("events.json"),
            record: 2,
        },
    };
    session.push(big).await.unwrap();
    session
        .reject(DeadLetterEntry {
            reason: "line 3: not JSON".into(),
            source: "events.json".into(),
            record: Some(3),
            event: None,
            raw: Some("{oops".into()),
        })
        .await
        .unwrap();
    session.note_conversion(2, 1);
    let report = session.finish().await.unwrap();
    assert_eq!(report.events_in, 3);
    assert_eq!((report.delivered, report.dead_lettered), (1, 2));
    assert_eq!((report.truncated_fields, report.old_events), (2, 1));
    let entries = dead.entries();
    assert_eq!(entries.len(), 2);
    assert!(
        entries[0].reason.contains("at most 100 bytes"),
        "{}",
        entries[0].reason
    );
    assert_eq!(entries[0].event.as_ref().unwrap()["n"], 2);
    assert_eq!(entries[1].raw.as_deref(), Some("{oops"));
    assert_eq!(dead.writes(), 1, "rejects are written together");
    assert_eq!(report.dead_letter_reasons["line 3: not JSON"], 1);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_fails_the_run() {
    let server = Server::start(|_, _| reply(404)).await;
    let ingestor = ingestor(&server, tuning(MAX_BATCH_BYTES));
    let mut session = ingestor.session(
        Arc::new(MemoryDeadLetter::failing()),
        SessionOptions::default(),
    );
    session.push(row(1)).await.unwrap();
    let error = session.finish().await.unwrap_err();
    assert!(matches!(error, crate::Error::DeadLetter { .. }), "{error}");
}

#[tokio::test]
async fn no_more_than_concurrency_requests_are_in_flight() {
    let server = Server::start(|_, _| {
        let mut slow = reply(204);
        slow.delay = Duration::from_millis(50);
        slow
    })
    .await;
    let mut tuning = tuning(100);
    tuning.concurrency = 2;
    let ingestor = ingestor(&server, tuning);
    let (report, _) = run(&ingestor, (0..60).map(row), SessionOptions::default()).await;
    let report = report.unwrap();
    assert!(report.requests >= 10);
    assert_eq!(report.delivered, 60);
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2);
}
