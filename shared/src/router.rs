//! The HTTP ingestion routes shared by the AWS HTTP function (Function URL / API Gateway) and
//! the Azure Functions custom handler.
//!
//! `POST /events` and `POST /` take events in any container the decoder knows (JSON array,
//! NDJSON, gzip) behind a shared bearer token; `GET /health` answers without auth.
//!
//! Answers never carry internals (bucket names, role ARNs, the DCR id): error bodies say
//! what the caller can do and name the request, whose details are in the log. Events the
//! ingestion service refused for reasons other than their content (a 403 while a role
//! assignment propagates, a wrong DCR id) are kept in the dead letter for the operator to
//! replay: the answer is 202 with counts saying so, never a 400 blaming the events.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ingest::{Report, SessionOptions, TransientPolicy};
use crate::relay::{Input, Relay};
use crate::secret::Secret;

/// Largest request body accepted: 6 MB, the Lambda synchronous invocation payload limit
/// (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>). Bigger bodies could not reach the function anyway.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Time a request may spend delivering when the caller sets no [`RequestDeadline`]: under the
/// 230 s Azure load balancer limit for HTTP-triggered functions (Azure Functions docs, HTTP
/// trigger "request timeout").
pub const DEFAULT_REQUEST_BUDGET: Duration = Duration::from_secs(200);

/// Seconds a client is asked to wait after a 503 (the service kept throttling).
pub const RETRY_AFTER_SECS: u64 = 30;

/// A gzip body may inflate to at most this many times the body limit (`max_body_bytes`):
/// 32 × 6 MiB = 192 MiB per request, decoded in seconds. Keeper NDJSON compresses about 6×
/// (the bundled `samples/keeper-events.ndjson.gz`: 5.7× as shipped, 8.8× at gzip -9), so 32
/// leaves more than 3× margin, while a gzip bomb (about 1000× for repeated bytes) is refused
/// before any event is forwarded. The global `LOGRELAY_MAX_DECOMPRESSED_BYTES` still applies.
pub const MAX_INFLATE_RATIO: u64 = 32;

/// The gzip magic bytes (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How a request's dead-letter reason starts when the ingestion service refused the rows
/// (`ingest::retry::advice`): the events are kept for replay, not the caller's fault.
const SERVICE_REFUSAL_PREFIX: &str = "HTTP ";

/// Shared state of the routes.
#[derive(Debug, Clone)]
pub struct RouterState {
    /// The relay every request forwards through (built once in `main`).
    pub relay: Arc<Relay>,
    /// The shared bearer token callers must send.
    pub token: Secret,
    /// Largest body accepted (413 above it); usually [`MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
}

impl RouterState {
    /// State with the default body limit.
    pub fn new(relay: Arc<Relay>, token: Secret) -> Self {
        RouterState {
            relay,
            token,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// When delivery must stop for a request: set as a request extension by the caller (the
/// Lambda deadline minus a margin); [`DEFAULT_REQUEST_BUDGET`] from now otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

/// The routes.
pub fn app(state: RouterState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/events", post(events))
        .route("/", post(events))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Whether `headers` carry `Authorization: Bearer <token>`. Both sides are hashed first so
/// the comparison takes the same time whatever the length or content of a guess.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return false;
    }
    let presented = Sha256::digest(presented.trim().as_bytes());
    let expected = Sha256::digest(token.expose().as_bytes());
    presented.ct_eq(&expected).into()
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn unauthorized() -> Response {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token: send `Authorization: Bearer <LOGRELAY_HTTP_TOKEN>`",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn too_large(limit: usize) -> Response {
    let body = json!({
        "error": format!("the body is larger than {limit} bytes (the request body limit); send smaller batches"),
        "limit": "body_bytes",
        "limit_bytes": limit,
    });
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}

fn inflates_too_much(limit: u64, body_limit: usize) -> Response {
    let body = json!({
        "error": format!(
            "the gzip body inflates past {limit} bytes ({MAX_INFLATE_RATIO} × the {body_limit}-byte body limit, the per-request decompression limit); nothing was forwarded: send smaller gzip bodies"
        ),
        "limit": "decompressed_bytes",
        "limit_bytes": limit,
    });
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}

/// The most a request's gzip body may inflate to: [`MAX_INFLATE_RATIO`] × the body limit,
/// never more than the relay's global cap.
fn inflate_limit(state: &RouterState) -> u64 {
    let ratio = (state.max_body_bytes as u64).saturating_mul(MAX_INFLATE_RATIO);
    ratio.min(state.relay.decode_options().max_decompressed_bytes)
}

/// Whether a gzip `body` inflates past `limit` bytes. Counts without keeping the output
/// (bounded: it stops one byte past the limit). A corrupt stream is left to the decoder,
/// which dead-letters what it cannot read.
fn inflates_past(body: &[u8], limit: u64) -> bool {
    if !body.starts_with(&GZIP_MAGIC) {
        return false;
    }
    let decoder = flate2::read::MultiGzDecoder::new(body);
    let mut capped = decoder.take(limit.saturating_add(1));
    let inflated = std::io::copy(&mut capped, &mut std::io::sink());
    matches!(inflated, Ok(n) if n > limit)
}

async fn events(State(state): State<RouterState>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&parts.headers, &state.token) {
        return unauthorized();
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.max_body_bytes) {
        return too_large(state.max_body_bytes);
    }
    // The only way an in-memory body fails to buffer is the limit; a network body that
    // breaks mid-way has no one left to read the answer.
    let Ok(bytes) = axum::body::to_bytes(body, state.max_body_bytes).await else {
        return too_large(state.max_body_bytes);
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body is empty: send events as a JSON array, NDJSON or gzip",
        );
    }
    let limit = inflate_limit(&state);
    let counted = bytes.clone();
    // Inflating is CPU work (a 192 MiB count takes a fraction of a second): off the workers.
    let too_much = tokio::task::spawn_blocking(move || inflates_past(&counted, limit))
        .await
        .unwrap_or(true);
    if too_much {
        tracing::warn!(
            limit,
            "A request body inflates past the per-request limit; refused."
        );
        return inflates_too_much(limit, state.max_body_bytes);
    }
    let deadline = parts
        .extensions
        .get::<RequestDeadline>()
        .map_or_else(|| Instant::now() + DEFAULT_REQUEST_BUDGET, |found| found.0);
    let source = format!("http-request-{}", uuid::Uuid::new_v4());
    forward(&state.relay, bytes, source, deadline).await
}

async fn forward(relay: &Relay, bytes: Bytes, source: String, deadline: Instant) -> Response {
    let options = SessionOptions {
        deadline: Some(deadline),
        transient: TransientPolicy::Fail,
    };
    let forwarded = relay
        .forward([Input::bytes(source.clone(), bytes)], options)
        .await
        .and_then(|mut forwarded| match forwarded.read_errors.pop() {
            // A body in memory that stops decoding is bad content (corrupt gzip, a bomb).
            Some(failed) => Err(failed.error),
            None => Ok(forwarded.report),
        });
    // The error's text names buckets, ARNs or the DCR: it goes to the log, never the answer.
    match forwarded {
        Ok(report) => answer(&report, &source),
        Err(error) if error.is_transient() => {
            tracing::warn!(source = %source, error = %error, "Request not delivered; asking the client to retry.");
            retry_later(json!({
                "error": format!("the events could not be delivered now; resend the same body after {RETRY_AFTER_SECS} s (every event has a stable EventId, so a resend adds no duplicates)"),
                "request": source,
            }))
        }
        Err(error) => {
            tracing::error!(source = %source, error = %error, "Request failed.");
            let body = json!({
                "error": "the relay could not keep these events safe, so none is confirmed: resend the body later; the operator finds the cause in the relay's log under this request",
                "request": source,
            });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

fn retry_later(body: serde_json::Value) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// The status for a finished request: 503 when rows are still failing transiently (the
/// client resends; rows carry a stable `EventId`), 202 when the service refused rows that are
/// now kept in the dead letter for replay (the caller must not resend), 400 when every event
/// was malformed, else 200.
/// The report also rides along as a response extension, so a caller (the Lambda handler's
/// metrics) takes it as a value instead of parsing the JSON body back.
fn answer(report: &Report, source: &str) -> Response {
    let mut response = answer_body(report, source);
    response.extensions_mut().insert(report.clone());
    response
}

fn answer_body(report: &Report, source: &str) -> Response {
    tracing::info!(
        source = %source,
        counters = %report.summary_line(),
        duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        "Request forwarded."
    );
    let mut body = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    // The service's refusals name the DCR and the app: logged, replaced by a count here.
    let mut kept_for_replay = 0;
    if let Some(reasons) = body
        .get_mut("dead_letter_reasons")
        .and_then(serde_json::Value::as_object_mut)
    {
        reasons.retain(|reason, count| {
            let refused = reason.starts_with(SERVICE_REFUSAL_PREFIX);
            if refused {
                kept_for_replay += count.as_u64().unwrap_or(0);
            }
            !refused
        });
    }
    if let Some(object) = body.as_object_mut() {
        object.insert("request".into(), json!(source));
        object.insert("kept_for_replay".into(), json!(kept_for_replay));
    }
    if report.failed_transient > 0 {
        return retry_later(body);
    }
    if kept_for_replay > 0 {
        tracing::warn!(source = %source, kept_for_replay, reasons = ?report.dead_letter_reasons, "The ingestion service refused events; they are kept in the dead letter for replay.");
        if let Some(object) = body.as_object_mut() {
            object.insert(
                "note".into(),
                json!(format!("{kept_for_replay} events were refused by the ingestion service (not because of their content) and are kept in the relay's dead letter; the operator replays them once the cause is fixed: do not resend them")),
            );
        }
        return (StatusCode::ACCEPTED, Json(body)).into_response();
    }
    if report.events_in > 0 && report.delivered == 0 && report.dead_lettered == report.events_in {
        if let Some(object) = body.as_object_mut() {
            object.insert(
                "error".into(),
                json!("no event in the body could be used; see dead_letter_reasons"),
            );
        }
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::dead_letter::MemoryDeadLetter;
    use crate::keeper::{DecodeOptions, SchemaMode};
    use tower::ServiceExt;

    const TOKEN: &str = "shared-token-for-tests";

    /// A relay whose endpoints are a closed loopback port: these tests never reach it.
    async fn state() -> RouterState {
        let env = [
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
            ("AZURE_CLIENT_SECRET", "not-used"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
            ("LOGS_INGESTION_ENDPOINT", "http://127.0.0.1:9/dataCollectionRules/dcr-000a00a000a00000a000000aa000a0aa/streams/Custom-KeeperSecurityEvents?api-version=2023-01-01"),
        ];
        let config = Config::from_lookup(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_string())
        })
        .unwrap();
        let decode = DecodeOptions {
            schema: SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: std::time::SystemTime::now(),
        };
        let relay = Relay::from_config(&config, Arc::new(MemoryDeadLetter::new()), decode, None)
            .await
            .unwrap();
        RouterState {
            relay: Arc::new(relay),
            token: Secret::new(TOKEN),
            max_body_bytes: 1024,
        }
    }

    fn post(path: &str, auth: Option<&str>, body: &'static str) -> Request<Body> {
        let mut builder = Request::post(path).header("content-type", "application/json");
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        builder.body(Body::from(body)).unwrap()
    }

    async fn call(request: Request<Body>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = app(state().await).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn health_answers_without_a_token() {
        let request = Request::get("/health").body(Body::empty()).unwrap();
        let (status, _, body) = call(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }

    #[tokio::test]
    async fn a_missing_token_is_401_with_a_bearer_challenge() {
        let (status, headers, body) = call(post("/events", None, "[{}]")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!body.to_string().contains(TOKEN));
    }

    #[tokio::test]
    async fn a_wrong_token_or_scheme_is_401_on_both_routes() {
        for path in ["/events", "/"] {
            let (status, _, _) = call(post(path, Some("Bearer wrong"), "[{}]")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let basic = format!("Basic {TOKEN}");
        let (status, _, _) = call(post("/events", Some(basic.leak()), "[{}]")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        let (status, _, _) = call(post("/events", Some(prefix.leak()), "[{}]")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_empty_body_is_400_saying_so() {
        let auth = format!("bearer {TOKEN}");
        let (status, _, body) = call(post("/events", Some(auth.leak()), "  \n")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let auth = format!("Bearer {TOKEN}");
        let big: &'static str = "x".repeat(2000).leak();
        let (status, _, _) = call(post("/events", Some(auth.clone().leak()), big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // Without a Content-Length the limit still holds while buffering.
        let stream = futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 600]))),
        );
        let request = Request::post("/events")
            .header("authorization", auth)
            .body(Body::from_stream(stream))
            .unwrap();
        let (status, _, _) = call(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn post_bytes(body: Vec<u8>, deadline: Option<Instant>) -> Request<Body> {
        let mut request = Request::post("/events")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        if let Some(deadline) = deadline {
            request.extensions_mut().insert(RequestDeadline(deadline));
        }
        request
    }

    #[tokio::test]
    async fn a_gzip_body_inflating_past_the_ratio_is_413_naming_that_limit() {
        // The test state's body limit is 1024 bytes, so the request may inflate to 32 KiB.
        // 300 KB of newlines gzip to well under 1024 bytes.
        let bomb = gzip(&vec![b'\n'; 300_000]);
        assert!(bomb.len() < 1024, "{}", bomb.len());
        let (status, _, body) = call(post_bytes(bomb, None)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["limit"], "decompressed_bytes", "{body}");
        assert_eq!(body["limit_bytes"], 1024 * MAX_INFLATE_RATIO, "{body}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("decompression limit"));
        // The body limit itself is told apart.
        let (status, _, body) = call(post_bytes(vec![b' '; 2000], None)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["limit"], "body_bytes", "{body}");
    }

    #[tokio::test]
    async fn a_gzip_body_within_the_ratio_is_forwarded() {
        // Eight Keeper events: compressed under 1024 bytes, inflated under 32 KiB.
        let events: String = (0..8)
            .map(|i| format!("{{\"audit_event\":\"login\",\"username\":\"u{i}@acme-corp.example\",\"timestamp\":\"2026-11-24T10:00:0{i}Z\"}}\n"))
            .collect();
        let body = gzip(events.as_bytes());
        assert!(body.len() < 1024);
        // The relay's endpoint is a closed port: a short deadline ends in a 503, past the
        // decompression check.
        let deadline = Instant::now() + Duration::from_secs(1);
        let (status, headers, body) = call(post_bytes(body, Some(deadline))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(headers[header::RETRY_AFTER], "30");
        assert_eq!(body["events_in"], 8, "{body}");
    }

    #[test]
    fn counting_the_inflated_size_stops_one_byte_past_the_limit() {
        let data = gzip(&vec![b'x'; 10_000]);
        assert!(inflates_past(&data, 9_999));
        assert!(!inflates_past(&data, 10_000));
        assert!(!inflates_past(b"[{}]", 0), "plain bodies are not inflated");
        // Two members, as `cat a.gz b.gz` makes: both count.
        let two = [data.clone(), data].concat();
        assert!(inflates_past(&two, 19_999));
    }

    #[tokio::test]
    async fn refusals_by_the_service_are_202_kept_for_replay_without_their_internals() {
        let reason = "HTTP 403 (OperationFailed): grant the role Monitoring Metrics Publisher on the data collection rule dcr-000a00a000a00000a000000aa000a0aa to the app's service principal (AZURE_CLIENT_ID)";
        let report = Report {
            events_in: 3,
            dead_lettered: 3,
            dead_letter_reasons: std::collections::BTreeMap::from([(reason.to_string(), 3)]),
            ..Report::default()
        };
        let response = answer(&report, "http-request-1");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("dcr-"), "{text}");
        assert!(!text.contains("AZURE_CLIENT_ID"), "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["kept_for_replay"], 3, "{body}");
        assert_eq!(body["dead_lettered"], 3, "{body}");
        assert!(body["note"].as_str().unwrap().contains("do not resend"));
    }

    #[test]
    fn the_token_comparison_needs_the_whole_token() {
        let token = Secret::new("abc");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            authorized(&headers, &token)
        };
        assert!(with("Bearer abc"));
        assert!(with("BEARER  abc "));
        assert!(!with("Bearer ab"));
        assert!(!with("Bearer abcd"));
        assert!(!with("Bearer"));
        assert!(!authorized(&HeaderMap::new(), &token));
        assert!(!authorized(&HeaderMap::new(), &Secret::new("")));
    }

    #[test]
    fn a_report_with_transient_failures_answers_503_with_retry_after() {
        let report = Report {
            events_in: 3,
            delivered: 1,
            failed_transient: 2,
            ..Report::default()
        };
        let response = answer(&report, "test");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    }

    #[test]
    fn a_report_where_every_event_was_malformed_answers_400() {
        let report = Report {
            events_in: 2,
            dead_lettered: 2,
            ..Report::default()
        };
        assert_eq!(answer(&report, "test").status(), StatusCode::BAD_REQUEST);
        let partly = Report {
            events_in: 2,
            delivered: 1,
            dead_lettered: 1,
            ..Report::default()
        };
        assert_eq!(answer(&partly, "test").status(), StatusCode::OK);
    }
}
