//! Entra ID client-credentials flow (`/{tenant}/oauth2/v2.0/token`) and its error advice.
//!
//! The request and response shapes are in <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>. Error advice
//! is a pure function ([`advice_for`]) so every mapping is table-tested; the provider adds
//! only I/O and one retry with a re-read secret after Entra rejects it (rotation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use crate::auth::{AccessToken, SecretSource, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// The OAuth2 grant for app-only tokens. Source: <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>.
pub const GRANT_TYPE: &str = "client_credentials";

/// Longest `expires_in` believed; Entra issues 60–90 minutes (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#successful-response-1>), so anything beyond a day
/// is nonsense and would keep a dead token cached.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(86_400);

/// Where to look up an AADSTS code nobody mapped. Source: <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>.
const ERROR_CODES_PAGE: &str =
    "https://learn.microsoft.com/entra/identity-platform/reference-error-codes";

/// AADSTS codes meaning the client secret itself was refused (wrong value, expired).
const REJECTED_SECRET_CODES: [u64; 2] = [7_000_215, 7_000_222];

/// Entra's token endpoint for one app registration: what every client-credentials grant
/// shares, whatever proves the client (a secret or an assertion).
#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    http: reqwest::Client,
    authority_host: Url,
    tenant_id: String,
    client_id: String,
    scope: String,
    /// Stamps the tokens (and, for assertions, judges their expiry).
    pub(crate) clock: Arc<dyn Clock>,
}

impl TokenEndpoint {
    /// `{authority_host}/{tenant_id}/oauth2/v2.0/token` for `client_id` and `scope`.
    pub(crate) fn new(
        http: reqwest::Client,
        authority_host: Url,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        TokenEndpoint {
            http,
            authority_host,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub(crate) fn url(&self) -> Url {
        token_url(&self.authority_host, &self.tenant_id)
    }

    /// The authority's host and port, for messages.
    pub(crate) fn host(&self) -> String {
        host_of(&self.authority_host)
    }

    /// One client-credentials request, the client proven by `proof` (the form fields of a
    /// secret or an assertion). `credential` is scrubbed from any refusal Entra echoes.
    pub(crate) async fn grant(
        &self,
        proof: &[(&str, &str)],
        credential: &Secret,
    ) -> Result<AccessToken> {
        let url = self.url();
        let host = host_of(&url);
        let issued_at = self.clock.now();
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
            ("grant_type", GRANT_TYPE),
        ];
        form.extend_from_slice(proof);
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
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
            Err(parse_refusal(status.as_u16(), &body, credential))
        }
    }
}

/// Client-credentials token provider (`AZURE_CLIENT_SECRET` or a Secrets Manager secret).
#[derive(Debug)]
pub struct ClientSecretProvider {
    endpoint: TokenEndpoint,
    secrets: Arc<dyn SecretSource>,
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
            endpoint: TokenEndpoint::new(http, authority_host, tenant_id, client_id, scope),
            secrets,
        }
    }

    /// Stamps tokens with `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.endpoint.clock = clock;
        self
    }

    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Url {
        self.endpoint.url()
    }

    /// One token request with `secret`.
    async fn request(&self, secret: &Secret) -> Result<AccessToken> {
        self.endpoint
            .grant(&[("client_secret", secret.expose())], secret)
            .await
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
        self.endpoint.host()
    }
}

/// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
pub(crate) fn token_url(authority_host: &Url, tenant_id: &str) -> Url {
    let mut url = authority_host.clone();
    url.set_query(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        // `push` percent-encodes, so the tenant cannot change the path's shape.
        segments
            .clear()
            .push(tenant_id)
            .extend(["oauth2", "v2.0", "token"]);
    }
    url
}

/// Whether Entra refused the secret itself (so a rotated secret may help).
fn rejects_secret(error: &Error) -> bool {
    matches!(error, Error::Token { code, .. }
        if REJECTED_SECRET_CODES.iter().any(|known| *code == format!("AADSTS{known}")))
}

/// Host and port only: never the path, query or body.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => "(no host)".to_string(),
    }
}

/// A transport failure described by its cause chain, without the URL.
pub(crate) fn transport(host: &str, error: reqwest::Error) -> Error {
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

/// The success body (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#successful-response-1>). Unknown fields are ignored; `expires_in` may be a number or a string.
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
pub(crate) fn parse_token(
    body: &[u8],
    issued_at: SystemTime,
) -> std::result::Result<AccessToken, String> {
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

/// The error body (<https://learn.microsoft.com/entra/identity-platform/reference-error-codes>).
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
pub(crate) fn parse_refusal(status: u16, body: &[u8], secret: &Secret) -> Error {
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

/// The part of Entra's description that says what it saw (issuer, subject, audience), first
/// line only; federation errors name it, and it holds no secret.
fn seen(description: &str) -> String {
    let first: String = description
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(400)
        .collect();
    match first.find("assertion") {
        Some(_) if !first.is_empty() => format!(" (Entra: {first})"),
        _ => String::new(),
    }
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
        Some(70_021) => format!("no federated identity credential on the app registration matches the assertion's issuer, subject and audience: add one (`az ad app federated-credential create`, infra/README.md) with exactly what the token carries; a new one can take a few minutes to propagate{}", seen(description)),
        Some(700_211) => format!("no federated identity credential has the assertion's issuer: set the federated credential's issuer to the token's `iss` exactly (AWS: `aws iam get-outbound-web-identity-federation-info`; Kubernetes: the cluster's OIDC issuer URL){}", seen(description)),
        Some(700_212) => format!("the federated identity credential's audience does not match the assertion's `aud`: register api://AzureADTokenExchange (…USGov / …China in the national clouds) as the federated credential's audience{}", seen(description)),
        Some(700_213) => format!("the federated identity credential's subject does not match the assertion's `sub`: for AWS the subject is the function role's ARN (the stack's FederationSubjects output), for Kubernetes system:serviceaccount:<namespace>:<name>; fix the federated credential's subject{}", seen(description)),
        Some(700_024) => "the client assertion is not within its valid time range (expired or not yet valid): check the system clock of the host (clock skew), and for AZURE_FEDERATED_TOKEN_FILE that the platform renews the file".into(),
        Some(50_027) => "the client assertion is not a valid JWT: check AZURE_FEDERATED_TOKEN_FILE holds the platform's token (or the certificate PEM in AZURE_CLIENT_CERTIFICATE_PATH)".into(),
        Some(700_027) => "the client assertion's signature did not verify: upload this certificate's public part to the app registration (Certificates & secrets > Certificates); the x5t#S256 header names its SHA-256 thumbprint".into(),
        Some(700_023) => "the client assertion's audience is wrong: it must be the token endpoint of this tenant; check AZURE_TENANT_ID and AZURE_AUTHORITY_HOST".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticSecret;

    const SECRET: &str = "Xy7Q~super-secret-value-do-not-print";

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn refusals_map_to_actionable_advice() {
        // (status, error, error_codes, description, code, advice contains, permanent)
        type Case<'a> = (u16, &'a str, &'a [u64], &'a str, &'a str, &'a str, bool);
        let cases: [Case<'_>; 24] = [
            (400, "invalid_client", &[70021], "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://i'. Assertion Subject: 'arn:aws:iam::1:role/r'. Assertion Audience: 'api://AzureADTokenExchange'.", "AADSTS70021", "federated identity credential", false),
            (400, "invalid_client", &[700211], "AADSTS700211: No matching federated identity record found for presented assertion issuer 'https://i'.", "AADSTS700211", "issuer", true),
            (400, "invalid_client", &[700212], "AADSTS700212: No matching federated identity record found for presented assertion audience 'api://wrong'.", "AADSTS700212", "federated identity credential's audience", true),
            (400, "invalid_client", &[700213], "AADSTS700213: No matching federated identity record found for presented assertion subject 'arn:aws:iam::1:role/other'.", "AADSTS700213", "federated identity credential's subject", true),
            (400, "invalid_client", &[700024], "AADSTS700024: Client assertion is not within its valid time range.", "AADSTS700024", "clock", true),
            (400, "invalid_client", &[50027], "AADSTS50027: JWT token is invalid or malformed.", "AADSTS50027", "not a valid JWT", true),
            (401, "invalid_client", &[700027], "AADSTS700027: Client assertion failed signature validation.", "AADSTS700027", "Certificates & secrets", true),
            (401, "invalid_client", &[7000215], "AADSTS7000215: Invalid client secret provided.", "AADSTS7000215", "not its *Secret ID*", true),
            (401, "invalid_client", &[], "AADSTS7000215: Invalid client secret provided.", "AADSTS7000215", "*Value*", true),
            (401, "invalid_client", &[7000222], "AADSTS7000222: InvalidClientSecretExpiredKeysProvided", "AADSTS7000222", "expired: create a new one", true),
            (400, "unauthorized_client", &[700016], "AADSTS700016: Application with identifier 'x' was not found", "AADSTS700016", "check AZURE_CLIENT_ID", true),
            (400, "invalid_request", &[90002], "AADSTS90002: Tenant 'x' not found.", "AADSTS90002", "AZURE_CLOUD", true),
            (400, "invalid_scope", &[70011], "AADSTS70011: The provided value for the input parameter 'scope' is not valid.", "AADSTS70011", "scope", true),
            (400, "invalid_scope", &[1002012], "", "AADSTS1002012", "AZURE_CLOUD", true),
            (400, "invalid_request", &[7000218], "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", "AADSTS7000218", "AZURE_CLIENT_SECRET", true),
            (400, "invalid_request", &[900144], "AADSTS900144: The request body must contain the following parameter: 'grant_type'.", "AADSTS900144", "required parameter", true),
            (429, "temporarily_unavailable", &[90055], "AADSTS90055: TenantThrottlingError", "AADSTS90055", "throttling", false),
            (400, "", &[90024], "AADSTS90024: RequestBudgetExceededError", "AADSTS90024", "throttling", false),
            (503, "", &[], "", "HTTP 503", "temporary", false),
            (500, "server_error", &[], "", "server_error", "HTTP 500", false),
            (429, "", &[], "", "HTTP 429", "retried", false),
            (401, "invalid_client", &[], "", "invalid_client", "AZURE_CLIENT_ID", true),
            (400, "invalid_grant", &[12345], "AADSTS12345: Something new.\r\nTrace ID: abc", "AADSTS12345", "`invalid_grant` (AADSTS12345): AADSTS12345: Something new.; look the code up", true),
            (403, "", &[], "", "HTTP 403", "HTTP 403", true),
        ];
        for (status, error, codes, description, code, advice, permanent) in cases {
            let (got_code, got_advice, got_permanent) =
                advice_for(status, error, codes, description);
            assert_eq!(got_code, code, "{status} {error} {codes:?}");
            assert!(
                got_advice.contains(advice),
                "{code}: `{got_advice}` lacks `{advice}`"
            );
            assert_eq!(got_permanent, permanent, "{code}");
        }
    }

    #[test]
    fn the_unknown_code_advice_keeps_only_the_first_line_of_the_description() {
        let (_, advice, _) = advice_for(
            400,
            "invalid_grant",
            &[1],
            "AADSTS1: First.\r\nTrace ID: t\r\nCorrelation ID: c",
        );
        assert!(!advice.contains("Trace ID"), "{advice}");
    }

    #[test]
    fn a_token_response_parses_with_expires_in_as_number_or_string() {
        let bodies: [&[u8]; 4] = [
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.a.b"}"#,
            br#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","access_token":"eyJ.a.b"}"#,
            br#"{"token_type":"bearer","expires_in":3599.0,"access_token":"eyJ.a.b","refresh_in":1799,"scope":"x"}"#,
            br#"{"expires_in":3599,"access_token":"eyJ.a.b"}"#,
        ];
        for body in bodies {
            let token = parse_token(body, at(1_000)).unwrap();
            assert_eq!(token.secret.expose(), "eyJ.a.b");
            assert_eq!(token.issued_at, at(1_000));
            assert_eq!(token.expires_at, at(4_599));
        }
    }

    #[test]
    fn a_malformed_token_response_is_refused_without_quoting_it() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"token_type":"Bearer","expires_in":3599}"#,
                "no access_token",
            ),
            (
                br#"{"token_type":"Bearer","access_token":"sekrit-token"}"#,
                "no expires_in",
            ),
            (
                br#"{"expires_in":"soon","access_token":"sekrit-token"}"#,
                "between 1 and 86400",
            ),
            (
                br#"{"expires_in":0,"access_token":"sekrit-token"}"#,
                "between 1 and 86400",
            ),
            (
                br#"{"token_type":"pop","expires_in":3599,"access_token":"sekrit-token"}"#,
                "expected Bearer",
            ),
            (b"<html>sekrit-token</html>", "not the expected JSON"),
        ];
        for (body, expected) in cases {
            let reason = parse_token(body, at(0)).unwrap_err();
            assert!(reason.contains(expected), "{reason}");
            assert!(!reason.contains("sekrit"), "{reason}");
        }
    }

    #[test]
    fn a_refusal_never_repeats_the_secret_even_if_entra_echoed_it() {
        let body = format!(
            r#"{{"error":"invalid_request","error_description":"AADSTS99999: bad value {SECRET}","error_codes":[99999]}}"#
        );
        let error = parse_refusal(400, body.as_bytes(), &Secret::new(SECRET));
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("AADSTS99999"), "{shown}");
    }

    #[test]
    fn the_token_url_is_authority_tenant_oauth2_v2_token() {
        let provider = |authority: &str, tenant: &str| {
            ClientSecretProvider::new(
                reqwest::Client::new(),
                Url::parse(authority).unwrap(),
                tenant,
                "client",
                "https://monitor.azure.com/.default",
                Arc::new(StaticSecret(Secret::new(SECRET))),
            )
        };
        assert_eq!(
            provider(
                "https://login.microsoftonline.com/",
                "contoso.onmicrosoft.com"
            )
            .token_url()
            .as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            provider("http://127.0.0.1:9", "a/b?c").token_url().as_str(),
            "http://127.0.0.1:9/a%2Fb%3Fc/oauth2/v2.0/token"
        );
        let debug = format!("{:?}", provider("https://login.microsoftonline.com", "t"));
        assert!(!debug.contains(SECRET), "{debug}");
    }
}

/// Against a real HTTP server on 127.0.0.1 (axum is available with `http-server`).
#[cfg(test)]
#[cfg(feature = "http-server")]
mod http_tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use axum::extract::{Form, Path, State};
    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;
    use crate::auth::StaticSecret;
    use crate::clock::ManualClock;

    const GOOD: &str = "Xy7Q~the-current-secret-value";
    const OLD: &str = "Ab1Q~the-rotated-away-secret-value";

    type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

    /// A token endpoint accepting only `GOOD`; `status_override` answers every request.
    async fn entra(status_override: Option<u16>) -> (Url, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(
                    move |State(seen): State<Seen>,
                          Path(tenant): Path<String>,
                          Form(form): Form<HashMap<String, String>>| async move {
                        let accepted = form.get("client_secret").map(String::as_str) == Some(GOOD);
                        seen.lock().unwrap().push((tenant, form));
                        if let Some(status) = status_override {
                            return (StatusCode::from_u16(status).unwrap(), "<html>busy</html>".to_string());
                        }
                        if accepted {
                            (StatusCode::OK, r#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":3599,"access_token":"eyJ0.issued.token"}"#.to_string())
                        } else {
                            (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[7000215],"error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#.to_string())
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Url::parse(&format!("http://{address}")).unwrap(), seen)
    }

    /// Returns `first` until asked to refresh, then `after`; counts refreshes.
    #[derive(Debug)]
    struct Rotating {
        first: &'static str,
        after: &'static str,
        refreshes: AtomicU64,
    }

    impl SecretSource for Rotating {
        fn client_secret(&self, refresh: bool) -> BoxFuture<'_, Result<Secret>> {
            Box::pin(async move {
                if refresh {
                    self.refreshes.fetch_add(1, Ordering::SeqCst);
                }
                let rotated = self.refreshes.load(Ordering::SeqCst) > 0;
                Ok(Secret::new(if rotated { self.after } else { self.first }))
            })
        }
    }

    fn provider(authority: Url, secrets: Arc<dyn SecretSource>) -> ClientSecretProvider {
        ClientSecretProvider::new(
            reqwest::Client::new(),
            authority,
            "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f",
            "11111111-2222-3333-4444-555555555555",
            "https://monitor.azure.com/.default",
            secrets,
        )
    }

    #[tokio::test]
    async fn posts_the_client_credentials_form_and_reads_the_token() {
        let (authority, seen) = entra(None).await;
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        ));
        let provider = provider(authority, Arc::new(StaticSecret(Secret::new(GOOD))))
            .with_clock(clock.clone());
        let token = provider.fetch().await.unwrap();
        assert_eq!(token.secret.expose(), "eyJ0.issued.token");
        assert_eq!(token.expires_at, clock.now() + Duration::from_secs(3599));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (tenant, form) = &seen[0];
        assert_eq!(tenant, "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f");
        let expected: HashMap<String, String> = [
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("scope", "https://monitor.azure.com/.default"),
            ("client_secret", GOOD),
            ("grant_type", "client_credentials"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(form, &expected);
    }

    #[tokio::test]
    async fn a_wrong_fixed_secret_is_refused_once_with_advice_and_never_shown() {
        let (authority, seen) = entra(None).await;
        let provider = provider(authority, Arc::new(StaticSecret(Secret::new(OLD))));
        let error = provider.fetch().await.unwrap_err();
        assert!(
            matches!(&error, Error::Token { code, permanent: true, .. } if code == "AADSTS7000215"),
            "{error:?}"
        );
        assert!(error.to_string().contains("*Secret ID*"), "{error}");
        let shown = format!("{error} {error:?} {provider:?}");
        assert!(!shown.contains(OLD), "{shown}");
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "a fixed secret is not retried"
        );
    }

    #[tokio::test]
    async fn a_rotated_secret_is_read_again_and_the_request_retried_once() {
        let (authority, seen) = entra(None).await;
        let source = Arc::new(Rotating {
            first: OLD,
            after: GOOD,
            refreshes: AtomicU64::new(0),
        });
        let token = provider(authority, source.clone()).fetch().await.unwrap();
        assert_eq!(token.secret.expose(), "eyJ0.issued.token");
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
        let secrets: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, form)| form["client_secret"].clone())
            .collect();
        assert_eq!(secrets, [OLD, GOOD]);
    }

    #[tokio::test]
    async fn a_secret_still_wrong_after_rotation_is_retried_only_once() {
        let (authority, seen) = entra(None).await;
        let source = Arc::new(Rotating {
            first: OLD,
            after: "Zz9Q~also-wrong",
            refreshes: AtomicU64::new(0),
        });
        let error = provider(authority, source).fetch().await.unwrap_err();
        assert!(
            matches!(&error, Error::Token { code, .. } if code == "AADSTS7000215"),
            "{error:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_unavailable_entra_is_a_transient_error() {
        let (authority, _) = entra(Some(503)).await;
        let error = provider(authority, Arc::new(StaticSecret(Secret::new(GOOD))))
            .fetch()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Token { code, .. } if code == "HTTP 503"),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn an_unreachable_entra_names_only_the_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let authority = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let error = provider(authority, Arc::new(StaticSecret(Secret::new(GOOD))))
            .fetch()
            .await
            .unwrap_err();
        match &error {
            Error::TokenTransport { host, reason } => {
                assert_eq!(host, &format!("127.0.0.1:{port}"));
                assert!(reason.starts_with("could not connect"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains("oauth2") && !shown.contains(GOOD),
            "{shown}"
        );
        assert!(error.is_transient());
    }
}
