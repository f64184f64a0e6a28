//! Entra ID's client-credentials token endpoint (`POST /{tenant}/oauth2/v2.0/token`), with
//! Entra's error shapes and statuses (docs/emulator-facts.md §2.1–2.4), JWT-shaped tokens and their validation.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::assertion;
use crate::config::EmulatorConfig;
use crate::faults;
use crate::state::{IssuedToken, State};

/// The only grant this endpoint serves. Source: docs/emulator-facts.md §2.1.
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2). Source: docs/emulator-facts.md §2.5.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a token is, at most, in the issued-token map past its expiry (keeps expired ones
/// recognisable as "expired" rather than "unknown").
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token_endpoint(
    AxumState(state): AxumState<Arc<State>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scripted = {
        let mut inner = state.lock();
        inner.stats.token_requests += 1;
        faults::next_token_status(&mut inner.faults)
            .map(|status| (status, inner.faults.retry_after_secs))
    };
    let outcome = match scripted {
        Some((status, retry_after)) => Err(scripted_error(&state.config, status, retry_after)),
        None => issue(&state, &tenant, &headers, &body),
    };
    match outcome {
        Ok(response) => response,
        Err(response) => {
            state.lock().stats.token_failures += 1;
            tracing::info!(
                tenant = %tenant,
                status = response.status().as_u16(),
                "Token request refused."
            );
            response
        }
    }
}

/// Checks a token request in Entra's order and issues a token.
fn issue(
    state: &State,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    let config = &state.config;
    if tenant != config.tenant_id {
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ));
    }
    let form = if is_form(headers) {
        Form::parse(body)
    } else {
        // Entra reads nothing from a body that is not form-encoded.
        Form::default()
    };
    let basic = basic_credentials(headers);
    let grant_type = form.require(config, "grant_type")?;
    if grant_type != CLIENT_CREDENTIALS {
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = match (&basic, form.get("client_id")) {
        (Some((id, _)), _) => id.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => return Err(missing(config, "client_id")),
    };
    if client_id != config.client_id {
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    let grant = match form.get("client_assertion") {
        Some(assertion) => {
            if basic.is_some() || form.get("client_secret").is_some() {
                // Emulator-defined: one credential per request (docs/emulator-facts.md §7).
                return Err(entra_error(
                    config,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    90023,
                    "InvalidRequest - The authentication service request isn't valid: both a client secret and a client assertion were sent (emulator).",
                ));
            }
            let assertion_type = form.require(config, "client_assertion_type")?;
            if assertion_type != JWT_BEARER {
                return Err(entra_error(
                    config,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    90023,
                    &format!(
                        "InvalidRequest - The authentication service request isn't valid: client_assertion_type must be '{JWT_BEARER}', not '{assertion_type}' (emulator)."
                    ),
                ));
            }
            assertion::check(state, tenant, &client_id, assertion)?
        }
        None => {
            check_secret(config, &basic, &form, &client_id)?;
            Grant::ClientSecret
        }
    };
    let scope = form.require(config, "scope")?;
    let audience = config.audience();
    let scope_ok =
        scope == format!("{audience}/.default") || scope == format!("{audience}//.default");
    if !scope_ok {
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        ));
    }
    let lifetime = lifetime_secs(state);
    let (token, issued) = mint(config, &client_id, audience, lifetime, state.now());
    remember(state, &token, issued);
    {
        let mut inner = state.lock();
        match grant {
            Grant::ClientSecret => inner.stats.client_secret_grants += 1,
            Grant::FederatedAssertion => inner.stats.federated_assertion_grants += 1,
            Grant::CertificateAssertion => inner.stats.certificate_assertion_grants += 1,
        }
    }
    tracing::info!(client_id = %client_id, expires_in = lifetime, grant = ?grant, "Token issued.");
    Ok(Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
    .into_response())
}

/// Which credential a token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    ClientSecret,
    FederatedAssertion,
    CertificateAssertion,
}

/// Checks the client secret (form or Basic), in Entra's words.
fn check_secret(
    config: &EmulatorConfig,
    basic: &Option<(String, String)>,
    form: &Form,
    client_id: &str,
) -> Result<(), Response> {
    let secret = match (&basic, form.get("client_secret")) {
        (Some((_, secret)), _) => secret.clone(),
        (None, Some(secret)) => secret.to_string(),
        (None, None) => {
            return Err(entra_error(
                config,
                StatusCode::BAD_REQUEST,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ))
        }
    };
    // A test double: a plain comparison is fine (no timing attacker on loopback).
    if secret != config.client_secret {
        return Err(entra_error(
            config,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    Ok(())
}

/// The lifetime of a token issued now: the fault's, else the configured one.
pub(crate) fn lifetime_secs(state: &State) -> u64 {
    state
        .lock()
        .faults
        .token_lifetime_secs
        .unwrap_or(state.config.token_lifetime_secs)
}

/// Stores an issued token for strict validation and forgets long-expired ones.
pub(crate) fn remember(state: &State, token: &str, mut issued: IssuedToken) {
    let now = state.now();
    let mut inner = state.lock();
    inner
        .tokens
        .retain(|_, known| known.expires_at + FORGET_AFTER > now);
    inner.stats.tokens_issued += 1;
    issued.serial = inner.stats.tokens_issued;
    inner.tokens.insert(token.to_string(), issued);
}

/// A JWT-shaped token: base64url(header).base64url(claims).base64url(random). The signature
/// is random: the emulator validates by lookup, never by signature.
pub(crate) fn mint(
    config: &EmulatorConfig,
    client_id: &str,
    audience: &str,
    lifetime_secs: u64,
    now: SystemTime,
) -> (String, IssuedToken) {
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let exp = iat + lifetime_secs;
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "azmon-emulator"});
    let claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", config.tenant_id),
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "appid": client_id,
        "appidacr": "1",
        "idtyp": "app",
        "oid": config.object_id,
        "sub": config.object_id,
        "tid": config.tenant_id,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "1.0",
    });
    let mut signature = [0u8; 64];
    for byte in &mut signature {
        *byte = fastrand::u8(..);
    }
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    );
    let issued = IssuedToken {
        client_id: client_id.to_string(),
        audience: audience.to_string(),
        expires_at: now + Duration::from_secs(lifetime_secs),
        revoked: false,
        serial: 0,
    };
    (token, issued)
}

/// The claims of a JWT-shaped token, if it is one (for messages about foreign tokens).
pub fn decode_claims(token: &str) -> Option<Value> {
    let claims = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Entra's error body and status (docs/emulator-facts.md §2.4). `error_description` starts `AADSTS<code>:`.
pub(crate) fn entra_error(
    config: &EmulatorConfig,
    status: StatusCode,
    error: &str,
    code: u32,
    message: &str,
) -> Response {
    let trace_id = uuid::Uuid::new_v4();
    let correlation_id = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {}",
            now.format("%Y-%m-%d %H:%M:%S%.3fZ")
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id.to_string(),
        "correlation_id": correlation_id.to_string(),
        "error_uri": format!("{}/error?code={code}", config.real_authority_host()),
    });
    (status, Json(body)).into_response()
}

/// A scripted token-endpoint failure: throttling (429) and transient 5xx in Entra's shape.
fn scripted_error(config: &EmulatorConfig, status: u16, retry_after_secs: u64) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let (error, aadsts, message) = match status {
        // AADSTS90055 TenantThrottlingError. Source: docs/emulator-facts.md §2.4.
        429 => ("temporarily_unavailable", 90055, "TenantThrottlingError - There are too many incoming requests. This exception is thrown for blocked tenants."),
        // AADSTS90024 RequestBudgetExceededError (transient). Source: docs/emulator-facts.md §2.4.
        500..=599 => ("temporarily_unavailable", 90024, "RequestBudgetExceededError - A transient error has occurred. Try again."),
        _ => ("invalid_request", 90014, "A required field for a protocol message was missing or invalid (injected by the emulator)."),
    };
    let mut response = entra_error(config, code, error, aadsts, message);
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

fn missing(config: &EmulatorConfig, name: &str) -> Response {
    entra_error(
        config,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1; docs/emulator-facts.md §2.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_component(id), form_component(secret)))
}

/// One form-urlencoded component (`+` is a space, `%XX` an escape; malformed escapes are kept).
/// A raw `&` or `=` is escaped first so `form_urlencoded` reads the whole text as one name.
fn form_component(raw: &str) -> String {
    let one_name = raw.replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(one_name.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default()
}

/// A parsed form body; the first occurrence of a name wins.
#[derive(Default)]
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    fn require(&self, config: &EmulatorConfig, name: &str) -> Result<&str, Response> {
        self.get(name).ok_or_else(|| missing(config, name))
    }
}

/// Why a bearer token is refused at the ingestion endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Missing,
    Unknown,
    Expired,
    Revoked,
    WrongAudience(String),
}

/// Validates `Authorization: Bearer <token>` strictly: issued here, not revoked, not expired,
/// audience of the configured cloud. Returns the token's serial and its client id.
pub(crate) fn validate(
    state: &State,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<(u64, String), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(Refusal::Missing)?;
    let audience = state.config.audience();
    let mut inner = state.lock();
    let Some(issued) = inner.tokens.get(token).cloned() else {
        return Err(Refusal::Unknown);
    };
    if issued.revoked {
        inner.stats.revoked_token_uses += 1;
        return Err(Refusal::Revoked);
    }
    if issued.audience.trim_end_matches('/') != audience {
        return Err(Refusal::WrongAudience(issued.audience));
    }
    if now >= issued.expires_at {
        inner.stats.expired_token_uses += 1;
        return Err(Refusal::Expired);
    }
    inner.tokens_used.insert(token.to_string());
    Ok((issued.serial, issued.client_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_jwt_shaped_with_the_monitor_audience() {
        let config = EmulatorConfig::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (token, issued) = mint(&config, &config.client_id, config.audience(), 60, now);
        assert_eq!(token.split('.').count(), 3);
        let claims = decode_claims(&token).unwrap();
        assert_eq!(claims["aud"], "https://monitor.azure.com");
        assert_eq!(
            claims["iss"],
            format!("https://sts.windows.net/{}/", config.tenant_id)
        );
        assert_eq!(claims["appid"], config.client_id.as_str());
        assert_eq!(claims["exp"], 1_700_000_060u64);
        assert_eq!(issued.expires_at, now + Duration::from_secs(60));
    }

    #[test]
    fn form_bodies_are_split_and_decoded_and_the_first_non_empty_value_wins() {
        let form = Form::parse(
            b"grant_type=client_credentials&scope=https%3A%2F%2Fmonitor.azure.com%2F.default&client_secret=a+b%7E%zz&flag&scope=second",
        );
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        assert_eq!(
            form.get("scope"),
            Some("https://monitor.azure.com/.default")
        );
        assert_eq!(form.get("client_secret"), Some("a b~%zz"));
        assert_eq!(form.get("flag"), None, "a name without a value is absent");
        assert_eq!(form_component("a+b=c&d%3D"), "a b=c&d=");
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let mut headers = HeaderMap::new();
        let raw = STANDARD.encode("my%20id:a%2Bb%7Ec");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {raw}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("my id".to_string(), "a+b~c".to_string()))
        );
    }
}
