//! App Service managed-identity endpoint: `GET /msi/token?resource=..&api-version=2019-08-01`
//! with `X-IDENTITY-HEADER` (docs/emulator-facts.md §2.6). `expires_on` is epoch seconds as a *string*.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::faults;
use crate::state::State;
use crate::token;

/// Path of the identity endpoint (App Service uses `http://localhost:<port>/msi/token`).
pub const IDENTITY_PATH: &str = "/msi/token";

/// The identity endpoint's API version. Source: docs/emulator-facts.md §2.6.
pub const IDENTITY_API_VERSION: &str = "2019-08-01";

/// The header that proves the caller runs inside the app. Source: docs/emulator-facts.md §2.6.
pub const IDENTITY_HEADER_NAME: &str = "X-IDENTITY-HEADER";

/// `GET /msi/token`.
pub(crate) async fn identity_endpoint(
    AxumState(state): AxumState<Arc<State>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let scripted = {
        let mut inner = state.lock();
        inner.stats.identity_requests += 1;
        faults::next_token_status(&mut inner.faults)
            .map(|status| (status, inner.faults.retry_after_secs))
    };
    let outcome = match scripted {
        Some((status, retry_after)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = error(
                code,
                "The identity endpoint is temporarily unavailable (injected by the emulator).",
            );
            if matches!(status, 429 | 503) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Err(response)
        }
        None => issue(&state, &query, &headers),
    };
    outcome.unwrap_or_else(|response| {
        state.lock().stats.identity_failures += 1;
        tracing::info!(
            status = response.status().as_u16(),
            "Managed identity token request refused."
        );
        response
    })
}

fn issue(
    state: &State,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let config = &state.config;
    let Some(presented) = headers.get(IDENTITY_HEADER_NAME) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "The X-IDENTITY-HEADER header is missing.",
        ));
    };
    if presented.as_bytes() != config.identity_header.as_bytes() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header does not match this app's identity header.",
        ));
    }
    match query.get("api-version").map(String::as_str) {
        Some(IDENTITY_API_VERSION) => {}
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("The api-version '{other}' is not supported; use {IDENTITY_API_VERSION}."),
            ))
        }
        None => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "The api-version query parameter is required.",
            ))
        }
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "The resource query parameter is required.",
        ));
    };
    if let Some(client_id) = query.get("client_id").filter(|id| !id.is_empty()) {
        if *client_id != config.identity_client_id {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("Unable to load the proper Managed Identity: no identity with client_id '{client_id}' is assigned to this app."),
            ));
        }
    }
    let lifetime = token::lifetime_secs(state);
    let now = state.now();
    let (access_token, issued) =
        token::mint(config, &config.identity_client_id, resource, lifetime, now);
    token::remember(state, &access_token, issued);
    let expires_on = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + lifetime;
    tracing::info!(resource = %resource, expires_on, "Managed identity token issued.");
    Ok(Json(json!({
        "access_token": access_token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": config.identity_client_id,
    }))
    .into_response())
}

/// The identity endpoint's error shape (emulator-defined: App Service documents none).
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "message": message})),
    )
        .into_response()
}
