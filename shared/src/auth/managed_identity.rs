//! App Service managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): secretless tokens
//! for the Azure Functions custom handler.
//!
//! Protocol (<https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference>): `GET {IDENTITY_ENDPOINT}?resource=<resource>
//! &api-version=2019-08-01[&client_id=<id>]` with header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`.
//! The answer carries `access_token` and `expires_on` in epoch seconds as a *string*.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use url::Url;

use crate::auth::{AccessToken, TokenProvider};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// App Service identity endpoint API version. Source: <https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference>.
pub const IDENTITY_API_VERSION: &str = "2019-08-01";

/// The header that proves the caller runs inside the app. Source: <https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference>.
pub const IDENTITY_HEADER_NAME: &str = "X-IDENTITY-HEADER";

/// Longest piece of an error body quoted in a message (the body never holds the header or a token).
const MAX_QUOTED_BODY: usize = 300;

/// Fetches tokens from the App Service identity endpoint.
#[derive(Debug)]
pub struct ManagedIdentityProvider {
    http: reqwest::Client,
    endpoint: Url,
    header: Secret,
    client_id: Option<String>,
    /// Resource (audience), e.g. `https://monitor.azure.com`.
    resource: String,
}

impl ManagedIdentityProvider {
    /// A provider for `endpoint` (IDENTITY_ENDPOINT) with `header` (IDENTITY_HEADER), asking for
    /// `resource`; `client_id` selects a user-assigned identity.
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        header: Secret,
        client_id: Option<String>,
        resource: String,
    ) -> Self {
        ManagedIdentityProvider {
            http,
            endpoint,
            header,
            client_id,
            resource,
        }
    }

    /// The token request URL (no secret in it: the proof travels in a header).
    pub fn request_url(&self) -> Url {
        request_url(&self.endpoint, &self.resource, self.client_id.as_deref())
    }

    /// `host[:port]` of the endpoint, for messages.
    fn host(&self) -> String {
        match (self.endpoint.host_str(), self.endpoint.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "IDENTITY_ENDPOINT".to_string(),
        }
    }
}

impl TokenProvider for ManagedIdentityProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let response = self
                .http
                .get(self.request_url())
                .header(IDENTITY_HEADER_NAME, self.header.expose())
                .send()
                .await
                .map_err(|error| Error::TokenTransport {
                    host: self.host(),
                    reason: format!(
                        "managed identity endpoint unreachable ({}); check IDENTITY_ENDPOINT \
                         (App Service sets it when an identity is enabled)",
                        error.without_url()
                    ),
                })?;
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|error| Error::TokenTransport {
                    host: self.host(),
                    reason: format!("managed identity answer cut short: {}", error.without_url()),
                })?;
            if (200..300).contains(&status) {
                parse_token_response(&body, SystemTime::now()).map_err(|reason| {
                    Error::TokenTransport {
                        host: self.host(),
                        reason,
                    }
                })
            } else {
                Err(status_error(
                    status,
                    &body,
                    &self.resource,
                    self.client_id.as_deref(),
                ))
            }
        })
    }
}

/// `endpoint?resource=..&api-version=2019-08-01[&client_id=..]`. A scope (`.../.default`) given
/// as the resource is reduced to the resource, since the identity endpoint wants the audience.
pub fn request_url(endpoint: &Url, resource: &str, client_id: Option<&str>) -> Url {
    let resource = resource
        .strip_suffix("/.default")
        .map(|base| base.trim_end_matches('/'))
        .unwrap_or(resource);
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("resource", resource);
        query.append_pair("api-version", IDENTITY_API_VERSION);
        if let Some(client_id) = client_id.filter(|id| !id.is_empty()) {
            query.append_pair("client_id", client_id);
        }
    }
    url
}

/// The identity endpoint's success body; unknown fields are ignored.
#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_on: Option<serde_json::Value>,
    expires_in: Option<serde_json::Value>,
}

/// Parses a success body received at `now`. `expires_on` (epoch seconds, string or number) wins;
/// `expires_in` (seconds from now) is the fallback. Errors never quote the body (it holds the token).
pub fn parse_token_response(
    body: &[u8],
    now: SystemTime,
) -> std::result::Result<AccessToken, String> {
    let parsed: TokenBody = serde_json::from_slice(body).map_err(|error| {
        format!("managed identity answer is not the expected JSON (line {}, column {}); is IDENTITY_ENDPOINT the App Service identity endpoint?", error.line(), error.column())
    })?;
    let token = parsed
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or("managed identity answer has no `access_token`")?;
    let expires_at = match (parsed.expires_on, parsed.expires_in) {
        (Some(on), _) => {
            let seconds = seconds_of(&on).ok_or(
                "managed identity `expires_on` is not epoch seconds (a number or a numeric string)",
            )?;
            UNIX_EPOCH + Duration::from_secs(seconds)
        }
        (None, Some(within)) => {
            let seconds = seconds_of(&within)
                .ok_or("managed identity `expires_in` is not a number of seconds")?;
            now + Duration::from_secs(seconds)
        }
        (None, None) => {
            return Err("managed identity answer has neither `expires_on` nor `expires_in`".into())
        }
    };
    if expires_at <= now {
        return Err("managed identity returned a token that has already expired; check the clock of this host".into());
    }
    Ok(AccessToken {
        secret: Secret::new(token),
        issued_at: now,
        expires_at,
    })
}

/// Whole seconds from a JSON number or numeric string (`"1718000000"`, `1718000000`, `"3599.0"`).
fn seconds_of(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(number) => number
            .as_u64()
            .or_else(|| number.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(text) => {
            let text = text.trim();
            text.parse::<u64>().ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

/// A non-2xx answer turned into advice. 4xx is permanent (configuration), 429/5xx transient.
pub fn status_error(status: u16, body: &[u8], resource: &str, client_id: Option<&str>) -> Error {
    let quoted = quote_body(body);
    let identity = match client_id {
        Some(id) => format!("the user-assigned identity `{id}`"),
        None => "the system-assigned identity".to_string(),
    };
    let (advice, permanent) = match status {
        400 | 404 => (
            format!(
                "the Function App has no managed identity enabled, or {identity} is not assigned to it \
                 (enable it under Identity, or set AZURE_CLIENT_ID to an assigned user identity's client id); \
                 resource `{resource}`"
            ),
            true,
        ),
        401 | 403 => (
            "the identity endpoint refused X-IDENTITY-HEADER; use the IDENTITY_HEADER value the \
             platform sets (it rotates: do not copy it into settings)"
                .to_string(),
            true,
        ),
        429 => (
            "the identity endpoint is throttling; it will be retried".to_string(),
            false,
        ),
        500..=599 => (
            "the identity endpoint failed; it will be retried".to_string(),
            false,
        ),
        _ => (
            "unexpected answer from the identity endpoint".to_string(),
            true,
        ),
    };
    let advice = if quoted.is_empty() {
        advice
    } else {
        format!("{advice}; endpoint said: {quoted}")
    };
    Error::Token {
        code: format!("managed identity HTTP {status}"),
        advice,
        permanent,
    }
}

/// The message of an error body (`{"message":..}`, `{"error":{"message":..}}`,
/// `{"error_description":..}`) or the capped text itself.
fn quote_body(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => [
            json.get("message"),
            json.get("Message"),
            json.get("error_description"),
            json.get("error").and_then(|error| error.get("message")),
            json.get("error"),
        ]
        .into_iter()
        .flatten()
        .find_map(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn expires_on_as_a_string_of_epoch_seconds_is_the_expiry() {
        let body = br#"{"access_token":"eyJ0eXAi.x.y","expires_on":"1718003600","resource":"https://monitor.azure.com","token_type":"Bearer","client_id":"11111111-2222-3333-4444-555555555555"}"#;
        let token = parse_token_response(body, at(1_718_000_000)).unwrap();
        assert_eq!(token.secret.expose(), "eyJ0eXAi.x.y");
        assert_eq!(token.expires_at, at(1_718_003_600));
        assert_eq!(token.issued_at, at(1_718_000_000));
    }

    #[test]
    fn expires_on_as_a_number_is_accepted_too() {
        let body = br#"{"access_token":"t","expires_on":1718003600}"#;
        let token = parse_token_response(body, at(1_718_000_000)).unwrap();
        assert_eq!(token.expires_at, at(1_718_003_600));
    }

    #[test]
    fn expires_in_is_the_fallback_when_expires_on_is_missing() {
        let body = br#"{"access_token":"t","expires_in":"3599"}"#;
        let token = parse_token_response(body, at(1_000)).unwrap();
        assert_eq!(token.expires_at, at(4_599));
    }

    #[test]
    fn a_body_without_token_or_expiry_is_refused_without_quoting_it() {
        let no_token = parse_token_response(br#"{"expires_on":"99999999999"}"#, at(0)).unwrap_err();
        assert!(no_token.contains("access_token"), "{no_token}");
        let no_expiry = parse_token_response(br#"{"access_token":"sekrit"}"#, at(0)).unwrap_err();
        assert!(no_expiry.contains("expires_on"), "{no_expiry}");
        assert!(!no_expiry.contains("sekrit"));
        let garbage = parse_token_response(b"<html>sekrit</html>", at(0)).unwrap_err();
        assert!(!garbage.contains("sekrit"), "{garbage}");
        let bad_number =
            parse_token_response(br#"{"access_token":"t","expires_on":"soon"}"#, at(0))
                .unwrap_err();
        assert!(bad_number.contains("epoch seconds"), "{bad_number}");
    }

    #[test]
    fn an_already_expired_token_is_refused() {
        let error = parse_token_response(br#"{"access_token":"t","expires_on":"100"}"#, at(200))
            .unwrap_err();
        assert!(error.contains("expired"), "{error}");
    }

    #[test]
    fn the_request_url_carries_resource_api_version_and_optional_client_id() {
        let endpoint = Url::parse("http://127.0.0.1:41234/msi/token").unwrap();
        let system = request_url(&endpoint, "https://monitor.azure.com", None);
        assert_eq!(
            system.as_str(),
            "http://127.0.0.1:41234/msi/token?resource=https%3A%2F%2Fmonitor.azure.com&api-version=2019-08-01"
        );
        let user = request_url(
            &endpoint,
            "https://monitor.azure.com//.default",
            Some("abc"),
        );
        let pairs: Vec<(String, String)> = user.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("resource".into(), "https://monitor.azure.com".into()),
                ("api-version".into(), "2019-08-01".into()),
                ("client_id".into(), "abc".into()),
            ]
        );
    }

    #[test]
    fn a_400_says_the_app_has_no_managed_identity_and_is_permanent() {
        let error = status_error(
            400,
            br#"{"statusCode":400,"message":"Unable to load the proper Managed Identity."}"#,
            "https://monitor.azure.com",
            None,
        );
        let text = error.to_string();
        assert!(text.contains("no managed identity enabled"), "{text}");
        assert!(
            text.contains("Unable to load the proper Managed Identity"),
            "{text}"
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        assert!(status_error(503, b"", "r", None).is_transient());
        assert!(status_error(429, b"", "r", None).is_transient());
        assert!(!status_error(401, b"", "r", Some("id")).is_transient());
    }

    #[test]
    fn debug_output_never_shows_the_identity_header() {
        let provider = ManagedIdentityProvider::new(
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:1/msi/token").unwrap(),
            Secret::new("header-value-do-not-print"),
            None,
            "https://monitor.azure.com".into(),
        );
        assert!(!format!("{provider:?}").contains("header-value-do-not-print"));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_transient_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let provider = ManagedIdentityProvider::new(
            reqwest::Client::new(),
            Url::parse(&format!("http://127.0.0.1:{port}/msi/token")).unwrap(),
            Secret::new("header-value-do-not-print"),
            None,
            "https://monitor.azure.com".into(),
        );
        let error = provider.fetch().await.unwrap_err();
        assert!(matches!(error, Error::TokenTransport { .. }), "{error:?}");
        assert!(error.is_transient());
        assert!(!error.to_string().contains("header-value-do-not-print"));
    }
}
