//! Client assertions: a JWT sent to Entra in place of a client secret
//! (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, RFC 7523),
//! and the provider that exchanges one for an access token.
//!
//! Three sources make assertions ([`AssertionSource`]): a certificate signing its own
//! ([`super::certificate`]), a token file another platform writes ([`super::federated_file`]),
//! and AWS STS `GetWebIdentityToken` ([`super::aws_federation`]). Whatever the source, an
//! assertion with less than [`ASSERTION_MIN_REMAINING`] left on the injected clock is never sent.
//!
//! Request shape: <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#second-case-access-token-request-with-a-certificate>
//! and <https://learn.microsoft.com/entra/workload-id/workload-identity-federation>.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;
use url::Url;

use crate::auth::entra::{host_of, parse_refusal, parse_token, token_url, transport, GRANT_TYPE};
use crate::auth::{refresh_at, AccessToken, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// The assertion type for a JWT client assertion. Source: RFC 7523 section 2.2
/// (<https://www.rfc-editor.org/rfc/rfc7523#section-2.2>).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An assertion with less time than this left is not sent: it could expire in flight or on a
/// clock a little ahead of ours (Entra answers AADSTS700024).
pub const ASSERTION_MIN_REMAINING: Duration = Duration::from_secs(30);

/// A JWT to present as `client_assertion`, and when it stops being valid.
#[derive(Clone)]
pub struct Assertion {
    /// The compact JWT. Never logged.
    pub jwt: Secret,
    /// When it was obtained (or its `iat`).
    pub issued_at: SystemTime,
    /// Its `exp`.
    pub expires_at: SystemTime,
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("jwt", &"***")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Assertion {
    /// Whether it may still be sent at `now` (at least [`ASSERTION_MIN_REMAINING`] left).
    pub fn usable_at(&self, now: SystemTime) -> bool {
        now + ASSERTION_MIN_REMAINING < self.expires_at
    }
}

/// Where client assertions come from.
pub trait AssertionSource: Send + Sync + fmt::Debug {
    /// An assertion for the token endpoint `token_url` (a certificate uses it as `aud`).
    fn assertion<'a>(&'a self, token_url: &'a Url) -> BoxFuture<'a, Result<Assertion>>;

    /// Which credential this is, for `logrelay token` and doctor (never a secret).
    fn describe(&self) -> String;
}

/// Keeps the last assertion of a source that fetches them (STS) and reuses it until its
/// refresh point ([`refresh_at`]: half-life for short ones), so the source is not asked for
/// every access token, and never past [`Assertion::usable_at`].
#[derive(Debug, Default)]
pub struct AssertionCache {
    cached: Mutex<Option<Assertion>>,
}

impl AssertionCache {
    /// The cached assertion if it is neither due nor close to expiry at `now`.
    pub fn fresh(&self, now: SystemTime) -> Option<Assertion> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|assertion| {
                now < refresh_at(assertion.issued_at, assertion.expires_at)
                    && assertion.usable_at(now)
            })
            .cloned()
    }

    /// Remembers `assertion`.
    pub fn store(&self, assertion: &Assertion) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(assertion.clone());
    }

    /// Forgets the cached assertion (Entra refused it).
    pub fn clear(&self) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Client credentials with a client assertion: `POST {authority}/{tenant}/oauth2/v2.0/token`.
#[derive(Debug)]
pub struct ClientAssertionProvider {
    http: reqwest::Client,
    authority_host: Url,
    tenant_id: String,
    client_id: String,
    scope: String,
    source: Arc<dyn AssertionSource>,
    clock: Arc<dyn Clock>,
}

impl ClientAssertionProvider {
    /// A provider exchanging `source`'s assertions for tokens of `scope`.
    pub fn new(
        http: reqwest::Client,
        authority_host: Url,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        scope: impl Into<String>,
        source: Arc<dyn AssertionSource>,
    ) -> Self {
        ClientAssertionProvider {
            http,
            authority_host,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            source,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` (tests), for the assertion check and token stamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The token endpoint (also a certificate assertion's `aud`).
    pub fn token_url(&self) -> Url {
        token_url(&self.authority_host, &self.tenant_id)
    }
}

impl TokenProvider for ClientAssertionProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let url = self.token_url();
            let host = host_of(&url);
            let assertion = self.source.assertion(&url).await?;
            let issued_at = self.clock.now();
            if !assertion.usable_at(issued_at) {
                // Never send an expired (or about to expire) assertion: Entra would refuse it
                // with AADSTS700024 and the cause would be hidden.
                return Err(Error::TokenTransport {
                    host,
                    reason: format!(
                        "the client assertion from {} expires within {} s (or has expired); not sending it. Check the system clock, or that the token is being renewed",
                        self.source.describe(),
                        ASSERTION_MIN_REMAINING.as_secs()
                    ),
                });
            }
            let response = self
                .http
                .post(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&[
                    ("client_id", self.client_id.as_str()),
                    ("scope", self.scope.as_str()),
                    ("grant_type", GRANT_TYPE),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                    ("client_assertion", assertion.jwt.expose()),
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
                parse_token(&body, issued_at)
                    .map_err(|reason| Error::TokenTransport { host, reason })
            } else {
                Err(parse_refusal(status.as_u16(), &body, &assertion.jwt))
            }
        })
    }

    fn endpoint_host(&self) -> String {
        host_of(&self.authority_host)
    }
}

/// base64url without padding (RFC 7515 section 2, "Base64url Encoding").
pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a compact JWT (not verified: the relay only reads `exp`/`iat` of a token it
/// was given, Entra verifies it). `None` when it is not three base64url parts with a JSON
/// payload. Never quotes the token.
pub(crate) fn unverified_claims(jwt: &str) -> Option<serde_json::Value> {
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A numeric-date claim (`exp`, `iat`, `nbf`) as a time.
pub(crate) fn time_claim(claims: &serde_json::Value, name: &str) -> Option<SystemTime> {
    let seconds = claims.get(name)?;
    let seconds = seconds
        .as_u64()
        .or_else(|| seconds.as_f64().filter(|s| *s >= 0.0).map(|s| s as u64))?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}
