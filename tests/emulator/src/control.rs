//! The control plane under `/_emulator/`: rows, stats, faults, reset and health, for tests
//! that run the emulator as a separate process.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::faults::Faults;
use crate::state::State;

/// `GET /_emulator/rows[?stream=..][&limit=N]`: stored rows as a JSON array (the first `N`;
/// a big run stores millions, and a caller showing a few must not fetch them all).
pub(crate) async fn rows(
    AxumState(state): AxumState<Arc<State>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match query.get("limit").map(|value| value.parse::<usize>()) {
        None => usize::MAX,
        Some(Ok(limit)) => limit,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "limit must be a number").into_response(),
    };
    Json(state.rows_limited(query.get("stream").map(String::as_str), limit)).into_response()
}

/// `GET /_emulator/stats` (with `in_flight_requests` and `open_connections`, which a test
/// polls to know nothing can still land).
pub(crate) async fn stats(AxumState(state): AxumState<Arc<State>>) -> Response {
    Json(state.stats()).into_response()
}

/// `GET /_emulator/faults`: the faults in force (scripts shrink as they play).
pub(crate) async fn get_faults(AxumState(state): AxumState<Arc<State>>) -> Response {
    Json(state.lock().faults.clone()).into_response()
}

/// `PUT /_emulator/faults` with a JSON [`Faults`] (missing fields = no fault).
pub(crate) async fn put_faults(
    AxumState(state): AxumState<Arc<State>>,
    Json(faults): Json<Faults>,
) -> Response {
    tracing::info!(?faults, "Faults set.");
    state.lock().set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_emulator/reset`: clears rows, counters and faults; issued tokens stay valid.
pub(crate) async fn reset(AxumState(state): AxumState<Arc<State>>) -> Response {
    state.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_emulator/clock` with `{"advance_ms": N}`: moves the emulator's clock forward (tokens
/// expire as if N ms had passed).
pub(crate) async fn advance_clock(
    AxumState(state): AxumState<Arc<State>>,
    Json(body): Json<ClockAdvance>,
) -> Response {
    state.advance_clock(std::time::Duration::from_millis(body.advance_ms));
    StatusCode::NO_CONTENT.into_response()
}

/// The body of `POST /_emulator/clock`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ClockAdvance {
    advance_ms: u64,
}

/// `GET /_emulator/health`.
pub(crate) async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}
