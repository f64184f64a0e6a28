//! The emulator's OIDC issuers: `{issuer}/.well-known/openid-configuration` (OpenID Connect
//! Discovery 1.0 §4) and `{issuer}/.well-known/jwks.json` (RFC 7517 §5), for the AWS account's
//! outbound-federation issuer and a second "external" issuer (docs/emulator-facts.md §8.3).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::jwt::{ES384, RS256};
use crate::state::{Issuer, State};

/// `GET /aws-outbound/{id}/.well-known/openid-configuration`.
pub(crate) async fn aws_discovery(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Response {
    discovery(&state, &state.issuers.aws, "aws-outbound", &id)
}

/// `GET /aws-outbound/{id}/.well-known/jwks.json`.
pub(crate) async fn aws_jwks(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Response {
    jwks(&state.issuers.aws, "aws-outbound", &id)
}

/// `GET /external/{id}/.well-known/openid-configuration`.
pub(crate) async fn external_discovery(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Response {
    discovery(&state, &state.issuers.external, "external", &id)
}

/// `GET /external/{id}/.well-known/jwks.json`.
pub(crate) async fn external_jwks(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Response {
    jwks(&state.issuers.external, "external", &id)
}

fn discovery(state: &State, issuer: &Issuer, prefix: &str, id: &str) -> Response {
    if issuer.path != format!("/{prefix}/{id}") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let url = format!("{}{}", state.base_url, issuer.path);
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [RS256, ES384],
        "claims_supported": ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"],
    }))
    .into_response()
}

fn jwks(issuer: &Issuer, prefix: &str, id: &str) -> Response {
    if issuer.path != format!("/{prefix}/{id}") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match issuer.keys() {
        Ok(keys) => Json(keys.jwks()).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

/// Claims of a token from `issuer_url`: `iss`, `sub`, `aud` (a string for one audience, an
/// array for several, RFC 7519 §4.1.3), `iat`, `nbf`, `exp` and a fresh `jti`.
pub(crate) fn standard_claims(
    issuer_url: &str,
    subject: &str,
    audiences: &[String],
    now: SystemTime,
    lifetime_secs: u64,
) -> Value {
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let aud = match audiences {
        [one] => Value::String(one.clone()),
        many => Value::from(many.to_vec()),
    };
    json!({
        "iss": issuer_url,
        "sub": subject,
        "aud": aud,
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime_secs,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}
