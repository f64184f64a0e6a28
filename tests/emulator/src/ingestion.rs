//! The Logs Ingestion API: `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//! (docs/emulator-facts.md §1), strict about auth, headers, sizes and the body, with injected faults.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde_json::{json, Value};

use crate::columns::{self, Changes};
use crate::conn::Connection;
use crate::faults::{self, Action};
use crate::state::{State, StoredRow};
use crate::token::{self, Refusal};

/// The only data-plane API version served. Source: docs/emulator-facts.md §1.1.
pub const API_VERSION: &str = "2023-01-01";

/// Largest body, on the wire and (strict mode) decompressed: 1 MB = 1,048,576 bytes.
/// Source: docs/emulator-facts.md §1.5 (observed 413 message).
pub const MAX_BODY_BYTES: usize = 1_048_576;

/// Largest decompressed body outside strict mode (~50 MiB observed). Source: docs/emulator-facts.md §1.5.
pub const MAX_LENIENT_DECOMPRESSED_BYTES: usize = 50 * 1024 * 1024;

/// The most the emulator reads of one body; anything larger is a 413 anyway.
const READ_CAP_BYTES: usize = 64 * 1024 * 1024;

/// The service's request id header on every answer. Source: docs/emulator-facts.md §7.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// The error code header. Source: docs/emulator-facts.md §1.6 (swagger `x-ms-error-code`).
const ERROR_CODE: HeaderName = HeaderName::from_static("x-ms-error-code");

/// The caller's troubleshooting id, echoed back. Source: docs/emulator-facts.md §1.2.
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");

/// One ingestion request, as axum hands it over.
pub(crate) struct Request {
    pub(crate) dcr: String,
    pub(crate) stream: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
}

/// `POST /dataCollectionRules/{dcr}/streams/{stream}`.
pub(crate) async fn ingest(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(conn): ConnectInfo<Connection>,
    Path((dcr, stream)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let in_flight = state.enter();
    // Spawned, so a client that gives up (timeout, kill) does not cancel what the service
    // received: a real service keeps processing, and whether a stalled body is stored must not
    // depend on when its connection's close is noticed. Tests wait for in-flight to reach 0.
    let task = tokio::spawn(async move {
        let _in_flight = in_flight;
        receive(state, conn, dcr, stream, query, headers, body).await
    });
    task.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Reads, fates, checks and answers one ingestion request.
async fn receive(
    state: Arc<State>,
    conn: Connection,
    dcr: String,
    stream: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.lock().stats.ingestion_requests += 1;
    // The token is judged as of arrival (a gateway authenticates on receipt), so a slow
    // upload, a stall or a latency fault never turns a valid token into an expired one.
    let received_at = state.now();
    // Read the whole body first, so a dropped connection is dropped after the client sent it.
    let body = axum::body::to_bytes(body, READ_CAP_BYTES).await;
    let gzip = content_encoding(&headers) == Ok(true);
    // Decompressing and parsing a 1 MB body is real CPU in a debug build: it runs on the
    // blocking pool so the async workers keep answering token requests and the control plane
    // while many uploads are in progress on a loaded machine.
    let fate = match &body {
        Ok(wire) => {
            let (wire, keyed) = (wire.clone(), Arc::clone(&state));
            tokio::task::spawn_blocking(move || {
                // Count-only mode keys fates by the body as sent (the key's own fallback):
                // no second gunzip and parse per request.
                let key = if keyed.config.store_rows {
                    faults::request_key(&wire, gzip)
                } else {
                    faults::request_key(&wire, false)
                };
                let mut inner = keyed.lock();
                let seen = inner.attempts.entry(key.clone()).or_insert(0);
                let attempt = *seen;
                *seen += 1;
                faults::fate(&inner.faults, &key, attempt)
            })
            .await
            .unwrap_or(SERVE)
        }
        Err(_) => SERVE,
    };
    if fate.delay_ms > 0 {
        if fate.stalled {
            state.lock().stats.stalled_requests += 1;
        }
        // The fault itself: the answer is held this long (the client may give up meanwhile).
        tokio::time::sleep(Duration::from_millis(fate.delay_ms)).await;
    }
    if fate.drop {
        return drop_connection(&state, &conn);
    }
    let request = Request {
        dcr,
        stream,
        query,
        headers,
    };
    let client_request_id = request.headers.get(&CLIENT_REQUEST_ID).cloned();
    let (request, mut response) = match body {
        Ok(body) => {
            let worker = Arc::clone(&state);
            let answered = tokio::task::spawn_blocking(move || {
                let response = handle(&worker, &conn, &request, body, fate.action, received_at);
                (request, response)
            })
            .await;
            match answered {
                Ok(answered) => answered,
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        // Only a body over READ_CAP_BYTES (or a broken upload) gets here.
        Err(_) => {
            let response = too_large(
                MAX_BODY_BYTES,
                content_length(&request.headers).unwrap_or(READ_CAP_BYTES + 1),
            );
            (request, response)
        }
    };
    let status = response.status().as_u16();
    state.lock().count_status(status);
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(REQUEST_ID, id);
    }
    if let Some(id) = client_request_id {
        headers.insert(CLIENT_REQUEST_ID, id);
    }
    tracing::debug!(stream = %request.stream, status, "Ingestion request answered.");
    response
}

/// The fate of a request whose body could not be read: no fault.
const SERVE: faults::Fate = faults::Fate {
    drop: false,
    delay_ms: 0,
    stalled: false,
    action: Action::Serve,
};

/// Checks one request in the gateway's order and stores its rows.
fn handle(
    state: &State,
    conn: &Connection,
    request: &Request,
    wire: Bytes,
    drawn: Action,
    received_at: SystemTime,
) -> Response {
    let config = &state.config;
    {
        let mut inner = state.lock();
        inner.stats.max_wire_bytes = inner.stats.max_wire_bytes.max(wire.len() as u64);
        inner.stats.total_wire_bytes += wire.len() as u64;
    }
    if let Err(response) = check_api_version(request.query.as_deref()) {
        return response;
    }
    let (token_serial, client_id) = match token::validate(state, &request.headers, received_at) {
        Ok(valid) => valid,
        Err(refusal) => return unauthorized(&refusal, config.audience()),
    };
    if request.dcr != config.dcr_id {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "Data collection rule with immutable Id '{}' not found.",
                request.dcr
            ),
        );
    }
    if state.lock().faults.forbids_at(&client_id, received_at) {
        return forbidden(config, &client_id);
    }
    let Some(stream) = config.stream(&request.stream) else {
        // Emulator-defined: no real answer for an unknown stream was found (docs/emulator-facts.md §1.6).
        return error(
            StatusCode::NOT_FOUND,
            "InvalidStream",
            &format!(
                "Stream '{}' is not declared in data collection rule with immutable Id '{}'.",
                request.stream, config.dcr_id
            ),
        );
    };
    let (action, limit, retry_after) = {
        let mut inner = state.lock();
        let inner = &mut *inner;
        let limit = inner
            .faults
            .max_body_bytes
            .map_or(MAX_BODY_BYTES, |max| max.min(MAX_BODY_BYTES));
        (
            faults::next_scripted(&mut inner.faults).unwrap_or(drawn),
            limit,
            inner.faults.retry_after_secs,
        )
    };
    match action {
        Action::Serve => {}
        Action::Drop => return drop_connection(state, conn),
        Action::Status(status) => {
            state.lock().stats.injected_statuses += 1;
            return injected(status, retry_after, limit, wire.len());
        }
    }
    if !is_json(&request.headers) {
        // Emulator-defined status: the real one for a wrong Content-Type is unverified (docs/emulator-facts.md §7).
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The Content-Type header must be application/json.",
        );
    }
    let gzip = match content_encoding(&request.headers) {
        Ok(gzip) => gzip,
        Err(encoding) => {
            // Emulator-defined status: only gzip is documented (docs/emulator-facts.md §1.2).
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedContentEncoding",
                &format!("Content-Encoding '{encoding}' is not supported; use gzip or none."),
            );
        }
    };
    if wire.len() > limit {
        return too_large(limit, wire.len());
    }
    if wire.is_empty() {
        // Observed: an empty body is a 500 with no error body (docs/emulator-facts.md §1.3).
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = if gzip {
        state.lock().stats.gzip_requests += 1;
        match gunzip(&wire, MAX_LENIENT_DECOMPRESSED_BYTES) {
            Ok(body) => body,
            Err(GunzipError::TooLarge) => {
                return too_large(limit, MAX_LENIENT_DECOMPRESSED_BYTES + 1)
            }
            Err(GunzipError::Corrupt(reason)) => {
                // Emulator-defined: a body that is not gzip despite the header.
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidContentEncoding",
                    &format!("The request body is not valid gzip: {reason}."),
                );
            }
        }
    } else {
        wire.to_vec()
    };
    {
        let mut inner = state.lock();
        inner.stats.max_decompressed_bytes =
            inner.stats.max_decompressed_bytes.max(body.len() as u64);
    }
    if gzip && config.strict && body.len() > limit {
        return too_large(limit, body.len());
    }
    if body.is_empty() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if !config.store_rows {
        return count_only(state, &body, config.strict);
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error_) => return malformed(&error_),
    };
    let rows = match parsed {
        Value::Array(items) if items.iter().all(Value::is_object) => items,
        other if config.strict => {
            let what = match other {
                Value::Array(_) => "an array with an item that is not an object",
                Value::Object(_) => "a JSON object",
                _ => "a JSON scalar",
            };
            // Strict mode: the real service accepts a bare object and drops it (docs/emulator-facts.md §1.3).
            return not_array_of_objects(what);
        }
        _ => Vec::new(),
    };
    store(state, &stream.name, rows, stream, token_serial);
    StatusCode::NO_CONTENT.into_response()
}

/// The 400 for a body that is not JSON.
fn malformed(error_: &serde_json::Error) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidPayload",
        &format!(
            "malformed JSON at line {}, column {}: the body must be UTF-8 JSON.",
            error_.line(),
            error_.column()
        ),
    )
}

/// The strict 400 for JSON that is not an array of objects (`what` it is instead).
fn not_array_of_objects(what: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidPayload",
        &format!("The body must be a JSON array of objects; got {what}."),
    )
}

/// Count-only mode: the same JSON checks and answers as storing, without building the rows.
fn count_only(state: &State, body: &[u8], strict: bool) -> Response {
    let items: Vec<Item> = match serde_json::from_slice::<Shape>(body) {
        Ok(Shape::Array(items)) => items,
        Ok(other) if strict => {
            let what = match other {
                Shape::Array(_) => "an array with an item that is not an object",
                Shape::Object => "a JSON object",
                Shape::Scalar => "a JSON scalar",
            };
            return not_array_of_objects(what);
        }
        Ok(_) => Vec::new(),
        Err(error_) => return malformed(&error_),
    };
    if items.contains(&Item::Other) {
        if strict {
            return not_array_of_objects("an array with an item that is not an object");
        }
        count_rows(state, 0);
    } else {
        count_rows(state, items.len() as u64);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A body's top-level shape, its items read without being built.
enum Shape {
    Array(Vec<Item>),
    Object,
    Scalar,
}

/// One array item: an object or anything else.
#[derive(PartialEq, Eq)]
enum Item {
    Object,
    Other,
}

/// Accepts any JSON value and tells which of `T`'s kinds it was, skipping its contents.
struct Kind<T>(std::marker::PhantomData<T>);

trait FromKind: Sized {
    fn array<'de, A: serde::de::SeqAccess<'de>>(seq: A) -> Result<Self, A::Error>;
    fn object() -> Self;
    fn scalar() -> Self;
}

impl FromKind for Shape {
    fn array<'de, A: serde::de::SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            items.push(item);
        }
        Ok(Shape::Array(items))
    }
    fn object() -> Self {
        Shape::Object
    }
    fn scalar() -> Self {
        Shape::Scalar
    }
}

impl FromKind for Item {
    fn array<'de, A: serde::de::SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Item::Other)
    }
    fn object() -> Self {
        Item::Object
    }
    fn scalar() -> Self {
        Item::Other
    }
}

impl<'de, T: FromKind> serde::de::Visitor<'de> for Kind<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::scalar())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::array(seq)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(T::object())
    }
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Kind(std::marker::PhantomData))
    }
}

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Kind(std::marker::PhantomData))
    }
}

/// The row counters one accepted request moves, whether or not its rows are kept.
fn count_rows(state: &State, count: u64) {
    let mut inner = state.lock();
    let stats = &mut inner.stats;
    stats.rows += count;
    stats.max_rows_per_request = stats.max_rows_per_request.max(count);
    if count == 0 {
        stats.empty_batches += 1;
    }
    drop(inner);
    state.changed.notify_waiters();
}

fn store(
    state: &State,
    name: &str,
    rows: Vec<Value>,
    stream: &crate::config::StreamConfig,
    token_serial: u64,
) {
    let received = chrono::Utc::now();
    let mut changes = Changes::default();
    let count = rows.len() as u64;
    let shaped: Vec<StoredRow> = rows
        .into_iter()
        .filter_map(|row| match row {
            Value::Object(map) => Some(StoredRow {
                stream: name.to_string(),
                row: columns::shape_row(stream, map, received, &mut changes),
                token_serial,
            }),
            _ => None,
        })
        .collect();
    let mut inner = state.lock();
    let stats = &mut inner.stats;
    stats.rows += count;
    stats.max_rows_per_request = stats.max_rows_per_request.max(count);
    if count == 0 {
        stats.empty_batches += 1;
    }
    stats.dropped_columns += changes.dropped.len() as u64;
    stats.dropped_column_names.extend(changes.dropped);
    stats.truncated_fields += changes.truncated;
    stats.replaced_time_generated += changes.replaced_time;
    stats.filled_time_generated += changes.filled_time;
    stats.type_mismatches += changes.mismatches;
    inner.rows.extend(shaped);
    drop(inner);
    state.changed.notify_waiters();
}

fn check_api_version(query: Option<&str>) -> Result<(), Response> {
    let version = query.and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "api-version")
            .map(|(_, value)| value.into_owned())
    });
    match version.as_deref() {
        Some(API_VERSION) => Ok(()),
        // Emulator-defined codes, after the Azure REST convention.
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
            &format!("The api-version '{other}' is not supported; use {API_VERSION}."),
        )),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required.",
        )),
    }
}

/// 401 `InvalidToken` (assumed shape, docs/emulator-facts.md §1.6: no real 401 was captured).
fn unauthorized(refusal: &Refusal, audience: &str) -> Response {
    let message = match refusal {
        Refusal::Missing => "An Authorization header with a Bearer token is required.".to_string(),
        Refusal::Unknown => "The provided authentication token is not valid.".to_string(),
        Refusal::Expired => "The provided authentication token has expired.".to_string(),
        Refusal::Revoked => "The provided authentication token has been revoked.".to_string(),
        Refusal::WrongAudience(aud) => format!(
            "The audience '{aud}' of the provided authentication token is not valid; expected '{audience}'."
        ),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, "InvalidToken", &message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// 403 `OperationFailed` with the real message pattern (docs/emulator-facts.md §1.6).
fn forbidden(config: &crate::config::EmulatorConfig, client_id: &str) -> Response {
    let dcr_arm_id = format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-logrelay/providers/Microsoft.Insights/dataCollectionRules/{}",
        config.dcr_id
    );
    error(
        StatusCode::FORBIDDEN,
        "OperationFailed",
        &format!(
            "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '{dcr}' PipelineAccessResult: AccessGranted: False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: {dcr_arm_id}, Message: Required authorization action was not found for tenantId {tenant} objectId {client_id} on resourceId {dcr_arm_id} ConfigurationId: {dcr}.",
            dcr = config.dcr_id,
            tenant = config.tenant_id,
        ),
    )
}

/// 413 `ContentLengthLimitExceeded`, body and `x-ms-error-code` (docs/emulator-facts.md §1.5).
fn too_large(limit: usize, provided: usize) -> Response {
    let human = if limit % MAX_BODY_BYTES == 0 {
        format!("{} MB", limit / MAX_BODY_BYTES)
    } else {
        format!("{} KB", limit / 1024)
    };
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ContentLengthLimitExceeded",
        &format!(
            "Maximum allowed content length: {limit} bytes ({human}). Provided content length: {provided} bytes."
        ),
    )
}

/// An injected status: 429 and 503 carry `Retry-After`.
fn injected(status: u16, retry_after_secs: u64, limit: usize, wire: usize) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = match status {
        413 => too_large(limit, wire),
        500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => error(
            code,
            code.canonical_reason()
                .unwrap_or("Error")
                .replace(' ', "")
                .as_str(),
            "Injected by the emulator.",
        ),
    };
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

fn drop_connection(state: &State, conn: &Connection) -> Response {
    conn.kill();
    state.lock().stats.dropped_connections += 1;
    tracing::debug!("Connection dropped by a fault.");
    // Never delivered: the connection refuses the write.
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// The Azure error body `{"error":{"code","message"}}` plus `x-ms-error-code` (docs/emulator-facts.md §1.6).
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert(ERROR_CODE, value);
    }
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// `Ok(true)` for gzip, `Ok(false)` for none/identity, else the unsupported encoding.
fn content_encoding(headers: &HeaderMap) -> Result<bool, String> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let text = value
        .to_str()
        .unwrap_or("<binary>")
        .trim()
        .to_ascii_lowercase();
    match text.as_str() {
        "gzip" => Ok(true),
        "" | "identity" => Ok(false),
        _ => Err(text),
    }
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

enum GunzipError {
    TooLarge,
    Corrupt(String),
}

/// Decompresses up to `max` bytes; more is `TooLarge` (so a gzip bomb costs at most `max`).
fn gunzip(wire: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity(wire.len() * 4);
    let mut decoder = MultiGzDecoder::new(wire).take(max as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|error| GunzipError::Corrupt(error.to_string()))?;
    if out.len() > max {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}
