//! Entra ID client-credentials flow (`/{tenant}/oauth2/v2.0/token`) and its error advice.
//!
//! OWNER: core-auth helper.
//!
//! The request and response shapes are in azure-monitor-protocol.md §2.1–§2.4. Error advice
//! is a pure function ([`advice_for`]) so every mapping is table-tested; the provider adds
//! only I/O and one retry with a re-read secret after Entra rejects it (rotation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use crate::auth::{AccessToken, BoxFuture, SecretSource, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::secret::Secret;
use crate::{Error, Result};

/// The OAuth2 grant for app-only tokens. Source: §2.1.
pub const GRANT_TYPE: &str = "client_credentials";

/// Longest `expires_in` believed; Entra issues 60–90 minutes (§2.3), so anything beyond a day
/// is nonsense and would keep a dead token cached.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(86_400);

/// Where to look up an AADSTS code nobody mapped. Source: §2.4 (`reference-error-codes.md`).
const ERROR_CODES_PAGE: &str =
    "https://learn.microsoft.com/entra/identity-platform/reference-error-codes";

/// AADSTS codes meaning the client secret itself was refused (wrong value, expired).
const REJECTED_SECRET_CODES: [u64; 2] = [7_000_215, 7_000_222];

/// Client-credentials token provider (`AZURE_CLIENT_SECRET` or a Secrets Manager secret).
#[derive(Debug)]
pub struct ClientSecretProvider {
    http: reqwest::Client,
    authority_host: Url,
    tenant_id: String,
    client_id: String,
    scope: String,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
}

impl ClientSecretProvider {
    /// A provider posting to `{authority_host}/{tenant_id}/oauth2/v2.0/token` for `scope`.
    pub fn new(
        http: reqwest::Client,
        authority_host: Url,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        scope: impl Into<String>,
        secrets: Arc<dyn SecretSource>,
    ) -> Self {
        ClientSecretProvider {
            http,
            authority_host,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            secrets,
            clock: Arc::new(SystemClock),
        }
    }

    /// Stamps tokens with `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Url {
        let mut url = self.authority_host.clone();
        url.set_query(None);
        if let Ok(mut segments) = url.path_segments_mut() {
            // `push` percent-encodes, so the tenant cannot change the path's shape.
            segments
                .clear()
                .push(&self.tenant_id)
                .extend(["oauth2", "v2.0", "token"]);
        }
        url
    }

    /// One token request with `secret`.
    async fn request(&self, secret: &Secret) -> Result<AccessToken> {
        let url = self.token_url();
        let host = host_of(&url);
        let issued_at = self.clock.now();
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("scope", self.scope.as_str()),
                ("client_secret", secret.expose()),
                ("grant_type", GRANT_TYPE),
            ])
            .send()
            .await
            .map_err(|error| transport(&host, error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport(&host, error))?;
        if status.is_success() {
            parse_token(&body, issued_at).map_err(|reason| Error::TokenTransport { host, reason })
        } else {
            Err(parse_refusal(status.as_u16(), &body, secret))
        }
    }
}

impl TokenProvider for ClientSecretProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let secret = self.secrets.client_secret(false).await?;
            let error = match self.request(&secret).await {
                Err(error) if rejects_secret(&error) => error,
                other => return other,
            };
            // A rotated Secrets Manager secret shows up as a changed value; a fixed one doesn't.
            match self.secrets.client_secret(true).await {
                Ok(fresh) if fresh != secret => {
                    tracing::info!(
                        "Entra refused the client secret; retrying once with the secret read again from its source."
                    );
                    self.request(&fresh).await
                }
                Ok(_) => Err(error),
                Err(reread) => {
                    tracing::warn!(error = %reread, "Could not read the client secret again after Entra refused it.");
                    Err(error)
                }
            }
        })
    }

    fn endpoint_host(&self) -> String {
        host_of(&self.authority_host)
    }
}

/// Whether Entra refused the secret itself (so a rotated secret may help).
fn rejects_secret(error: &Error) -> bool {
    matches!(error, Error::Token { code, .. }
        if REJECTED_SECRET_CODES.iter().any(|known| *code == format!("AADSTS{known}")))
}

/// Host and port only: never the path, query or body.
fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => "(no host)".to_string(),
    }
}

/// A transport failure described by its cause chain, without the URL.
fn transport(host: &str, error: reqwest::Error) -> Error {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut reason = kind.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(inner) = cause {
        reason.push_str(": ");
        reason.push_str(&inner.to_string());
        cause = inner.source();
    }
    Error::TokenTransport {
        host: host.to_string(),
        reason,
    }
}

/// The success body (§2.3). Unknown fields are ignored; `expires_in` may be a number or a string.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Seconds>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Whole(u64),
    Fraction(f64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Seconds::Whole(seconds) => Some(*seconds),
            Seconds::Fraction(seconds) if seconds.is_finite() && *seconds >= 0.0 => {
                Some(seconds.round() as u64)
            }
            Seconds::Fraction(_) => None,
            Seconds::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// Parses a token response; the error text never quotes the body (it holds the token).
fn parse_token(body: &[u8], issued_at: SystemTime) -> std::result::Result<AccessToken, String> {
    let response: TokenResponse = serde_json::from_slice(body).map_err(|error| {
        format!(
            "the token response is not the expected JSON ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        )
    })?;
    if let Some(kind) = response
        .token_type
        .as_deref()
        .filter(|kind| !kind.eq_ignore_ascii_case("Bearer"))
    {
        return Err(format!("token_type is `{kind}`, expected Bearer"));
    }
    let token = response
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or("the token response has no access_token")?;
    let expires_in = response
        .expires_in
        .as_ref()
        .ok_or("the token response has no expires_in")?
        .get()
        .map(Duration::from_secs)
        .filter(|seconds| !seconds.is_zero() && *seconds <= MAX_EXPIRES_IN)
        .ok_or("the token response's expires_in is not a number of seconds between 1 and 86400")?;
    Ok(AccessToken {
        secret: Secret::new(token),
        issued_at,
        expires_at: issued_at + expires_in,
    })
}

/// The error body (§2.4).
#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Turns a refusal into [`Error::Token`]; the secret is scrubbed from anything Entra echoed.
fn parse_refusal(status: u16, body: &[u8], secret: &Secret) -> Error {
    let response: ErrorResponse = serde_json::from_slice(body).unwrap_or_default();
    let mut description = response.error_description;
    if !secret.is_empty() {
        description = description.replace(secret.expose(), "***");
    }
    let (code, advice, permanent) =
        advice_for(status, &response.error, &response.error_codes, &description);
    Error::Token {
        code,
        advice,
        permanent,
    }
}

/// The first AADSTS number in `text` (`AADSTS7000215: Invalid client secret ...`).
fn code_in(text: &str) -> Option<u64> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What a token refusal means and what to do: `(code, advice, permanent)`.
///
/// `code` is `AADSTS<n>` when Entra gave one (in `error_codes` or the description), else
/// Entra's `error`, else `HTTP <status>`. HTTP 429 and 5xx are never permanent.
pub fn advice_for(
    status: u16,
    error: &str,
    error_codes: &[u64],
    description: &str,
) -> (String, String, bool) {
    let aadsts = error_codes
        .first()
        .copied()
        .or_else(|| code_in(description));
    let code = match aadsts {
        Some(number) => format!("AADSTS{number}"),
        None if !error.is_empty() => error.to_string(),
        None => format!("HTTP {status}"),
    };
    let transient_status = status == 429 || status >= 500;
    let advice: String = match aadsts {
        Some(7_000_215) => "the client secret is wrong: use the secret's *Value* (shown once when created), not its *Secret ID*; set it in AZURE_CLIENT_SECRET (or the Secrets Manager secret)".into(),
        Some(7_000_222) => "the client secret has expired: create a new one under the app registration's Certificates & secrets and update AZURE_CLIENT_SECRET (or the Secrets Manager secret)".into(),
        Some(700_016) => "the client id (application id) is not in that tenant: check AZURE_CLIENT_ID (the Application (client) ID) and AZURE_TENANT_ID (the Directory (tenant) ID)".into(),
        Some(90_002) => "the tenant id is wrong or belongs to another cloud: check AZURE_TENANT_ID and AZURE_CLOUD (public, usgovernment, china)".into(),
        Some(70_011 | 1_002_012) => "the token scope was refused: the scope follows AZURE_CLOUD (https://monitor.azure.com/.default for public, .us for usgovernment, .cn for china); check AZURE_CLOUD".into(),
        Some(7_000_218 | 900_144) => "the token request lacked a required parameter: check that AZURE_CLIENT_SECRET (or the Secrets Manager secret) is set and not empty, and AZURE_CLIENT_ID is set".into(),
        Some(90_055 | 90_024) => "Entra is throttling token requests; the relay will retry later".into(),
        Some(70_021) => "no matching federated identity credential yet; a new one can take a few minutes to propagate".into(),
        Some(7_000_112) => "the application is disabled in this tenant: enable the app registration's service principal (Enterprise applications)".into(),
        Some(53_003) => "a Conditional Access policy blocked the token: exempt this service principal or allow its location".into(),
        _ if transient_status => format!("Entra answered HTTP {status}; this is usually temporary and the request will be retried"),
        None if error == "invalid_client" => "Entra did not accept the client credentials: check AZURE_CLIENT_ID and the client secret's *Value*".into(),
        _ => {
            let error = if error.is_empty() { "(no error field)" } else { error };
            let number = aadsts.map(|n| format!(" (AADSTS{n})")).unwrap_or_default();
            let first_line: String = description.lines().next().unwrap_or_default().trim().chars().take(300).collect();
            let detail = if first_line.is_empty() { String::new() } else { format!(": {first_line}") };
            format!("Entra answered HTTP {status} `{error}`{number}{detail}; look the code up at {ERROR_CODES_PAGE}")
        }
    };
    let permanent = !transient_status && !matches!(aadsts, Some(90_055 | 90_024 | 70_021));
    (code, advice, permanent)
}
