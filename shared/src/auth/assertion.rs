//! Client assertions: a JWT sent to Entra in place of a client secret
//! (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, RFC 7523),
//! and the provider that exchanges one for an access token.
//!
//! Three sources make assertions ([`AssertionSource`]): a certificate signing its own
//! ([`super::certificate`]), a token file another platform writes ([`super::federated_file`]),
//! and AWS STS `GetWebIdentityToken` (`crate::aws::web_identity`). Whatever the source, an
//! assertion with less than [`ASSERTION_MIN_REMAINING`] left on the injected clock is never sent.
//!
//! Request shape: <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#second-case-access-token-request-with-a-certificate>
//! and <https://learn.microsoft.com/entra/workload-id/workload-identity-federation>.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;
use url::Url;

use crate::auth::entra::{host_of, TokenEndpoint};
use crate::auth::{refresh_at, AccessToken, TokenProvider};
use crate::clock::Clock;
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
    endpoint: TokenEndpoint,
    source: Arc<dyn AssertionSource>,
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
            endpoint: TokenEndpoint::new(http, authority_host, tenant_id, client_id, scope),
            source,
        }
    }

    /// Reads time from `clock` (tests), for the assertion check and token stamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.endpoint.clock = clock;
        self
    }

    /// The token endpoint (also a certificate assertion's `aud`).
    pub fn token_url(&self) -> Url {
        self.endpoint.url()
    }
}

impl TokenProvider for ClientAssertionProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let url = self.token_url();
            let assertion = self.source.assertion(&url).await?;
            if !assertion.usable_at(self.endpoint.clock.now()) {
                // Never send an expired (or about to expire) assertion: Entra would refuse it
                // with AADSTS700024 and the cause would be hidden.
                return Err(Error::TokenTransport {
                    host: host_of(&url),
                    reason: format!(
                        "the client assertion from {} expires within {} s (or has expired); not sending it. Check the system clock, or that the token is being renewed",
                        self.source.describe(),
                        ASSERTION_MIN_REMAINING.as_secs()
                    ),
                });
            }
            let proof = [
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", assertion.jwt.expose()),
            ];
            self.endpoint.grant(&proof, &assertion.jwt).await
        })
    }

    fn endpoint_host(&self) -> String {
        self.endpoint.host()
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

/// Against a scripted Entra on 127.0.0.1 (axum is available with `http-server`).
#[cfg(test)]
#[cfg(feature = "http-server")]
mod http_tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::extract::{Form, State};
    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;
    use crate::auth::TokenCache;
    use crate::clock::ManualClock;

    /// What the scripted Entra saw: each assertion, and whether it had expired on the shared
    /// clock when it arrived.
    #[derive(Debug, Default)]
    struct Seen {
        forms: Vec<HashMap<String, String>>,
        expired_on_arrival: u64,
    }

    #[derive(Clone)]
    struct Entra {
        clock: Arc<ManualClock>,
        seen: Arc<Mutex<Seen>>,
        /// `expires_in` of the access tokens it issues; 0 = refuse with `refusal`.
        expires_in: u64,
    }

    /// An Entra answering short-lived tokens (or a refusal echoing the assertion, to prove it
    /// is scrubbed). The assertion's `exp` is read from the test source's JWT shape.
    async fn entra(clock: &Arc<ManualClock>, expires_in: u64) -> (Url, Arc<Mutex<Seen>>) {
        let state = Entra {
            clock: clock.clone(),
            seen: Arc::default(),
            expires_in,
        };
        let seen = state.seen.clone();
        let app = axum::Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(
                    |State(entra): State<Entra>, Form(form): Form<HashMap<String, String>>| async move {
                        let jwt = form.get("client_assertion").cloned().unwrap_or_default();
                        let exp = unverified_claims(&jwt)
                            .and_then(|claims| time_claim(&claims, "exp"))
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        let mut seen = entra.seen.lock().unwrap();
                        if exp <= entra.clock.now() {
                            seen.expired_on_arrival += 1;
                        }
                        seen.forms.push(form);
                        if entra.expires_in == 0 {
                            let body = format!(r#"{{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'arn:aws:iam::1:role/x'. Assertion {jwt}","error_codes":[700213]}}"#);
                            return (StatusCode::BAD_REQUEST, body);
                        }
                        let n = seen.forms.len();
                        (StatusCode::OK, format!(r#"{{"token_type":"Bearer","expires_in":{},"access_token":"access-{n}"}}"#, entra.expires_in))
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Url::parse(&format!("http://{address}")).unwrap(), seen)
    }

    /// A source like STS: JWTs living `lifetime`, kept in an [`AssertionCache`].
    #[derive(Debug)]
    struct ShortLived {
        clock: Arc<ManualClock>,
        lifetime: Duration,
        cache: AssertionCache,
        minted: AtomicU64,
    }

    impl ShortLived {
        fn new(clock: &Arc<ManualClock>, lifetime: Duration) -> Self {
            ShortLived {
                clock: clock.clone(),
                lifetime,
                cache: AssertionCache::default(),
                minted: AtomicU64::new(0),
            }
        }
    }

    impl AssertionSource for ShortLived {
        fn assertion<'a>(&'a self, _token_url: &'a Url) -> BoxFuture<'a, Result<Assertion>> {
            Box::pin(async move {
                let now = self.clock.now();
                if let Some(cached) = self.cache.fresh(now) {
                    return Ok(cached);
                }
                let n = self.minted.fetch_add(1, Ordering::SeqCst) + 1;
                let exp = (now + self.lifetime)
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let claims = b64url(format!(r#"{{"sub":"role","n":{n},"exp":{exp}}}"#).as_bytes());
                let assertion = Assertion {
                    jwt: Secret::new(format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")),
                    issued_at: now,
                    expires_at: now + self.lifetime,
                };
                self.cache.store(&assertion);
                Ok(assertion)
            })
        }

        fn describe(&self) -> String {
            "a short-lived test source".into()
        }
    }

    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn provider(
        authority: Url,
        source: Arc<dyn AssertionSource>,
        clock: &Arc<ManualClock>,
    ) -> ClientAssertionProvider {
        ClientAssertionProvider::new(
            reqwest::Client::new(),
            authority,
            "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f",
            "11111111-2222-3333-4444-555555555555",
            "https://monitor.azure.com/.default",
            source,
        )
        .with_clock(clock.clone())
    }

    #[tokio::test]
    async fn posts_the_jwt_bearer_client_assertion_form() {
        let clock = Arc::new(ManualClock::new(start()));
        let (authority, seen) = entra(&clock, 3599).await;
        let source = Arc::new(ShortLived::new(&clock, Duration::from_secs(300)));
        let token = provider(authority, source, &clock).fetch().await.unwrap();
        assert_eq!(token.secret.expose(), "access-1");
        let seen = seen.lock().unwrap();
        let form = &seen.forms[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(form["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(form["scope"], "https://monitor.azure.com/.default");
        assert!(form["client_assertion"].starts_with("eyJhbGciOiJSUzI1NiJ9."));
        assert!(!form.contains_key("client_secret"));
    }

    #[tokio::test]
    async fn the_token_cache_on_an_injected_clock_never_sends_an_expired_assertion() {
        // Access tokens of 120 s are refreshed at half-life (60 s); assertions of 300 s are
        // reused until their half-life (150 s). Over 20 minutes in 20 s steps, every
        // assertion Entra receives is still valid on the same clock, and new ones are made.
        let clock = Arc::new(ManualClock::new(start()));
        let (authority, seen) = entra(&clock, 120).await;
        let source = Arc::new(ShortLived::new(&clock, Duration::from_secs(300)));
        let cache = TokenCache::new(
            Arc::new(provider(authority, source.clone(), &clock)),
            clock.clone(),
        );
        for _ in 0..60 {
            cache.get().await.unwrap();
            clock.advance(Duration::from_secs(20));
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.expired_on_arrival, 0);
        assert_eq!(seen.forms.len() as u64, cache.fetches());
        assert!(cache.fetches() >= 20, "{}", cache.fetches());
        // Tokens are fetched every 60 s; an assertion made at t is reused until t + 150 s, so
        // the next one is made at the first fetch from then: t + 180 s. In 1200 s: at 0, 180,
        // ..., 1080 = 7 assertions, each sent for three tokens.
        assert_eq!(source.minted.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn an_assertion_about_to_expire_is_not_sent() {
        let clock = Arc::new(ManualClock::new(start()));
        let (authority, seen) = entra(&clock, 3599).await;
        // A source whose assertions live less than the minimum remaining time.
        let source = Arc::new(ShortLived::new(&clock, ASSERTION_MIN_REMAINING));
        let error = provider(authority, source, &clock)
            .fetch()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not sending it"), "{error}");
        assert!(seen.lock().unwrap().forms.is_empty());
    }

    /// Collects log lines for a secrets search.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn no_assertion_or_private_key_reaches_logs_errors_or_debug_output() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let clock = Arc::new(ManualClock::new(start()));
        // A certificate credential against an Entra that refuses and echoes the assertion.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key_pem = key.serialize_pem();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, format!("{}{key_pem}", cert.pem())).unwrap();
        let certificate = crate::auth::certificate::CertificateSource::load(&path, "client", false)
            .unwrap()
            .with_clock(clock.clone());
        let (authority, seen) = entra(&clock, 0).await;
        let certificate: Arc<dyn AssertionSource> = Arc::new(certificate);
        let provider = provider(authority, certificate.clone(), &clock);
        let cache = TokenCache::new(Arc::new(provider), clock.clone());
        let error = cache.get().await.unwrap_err();
        let sent = seen.lock().unwrap().forms[0]["client_assertion"].clone();
        assert!(sent.split('.').count() == 3 && sent.len() > 100);

        let shown = format!(
            "{error} {error:?} {certificate:?} {:?} {}",
            cache,
            String::from_utf8_lossy(&logs.0.lock().unwrap())
        );
        assert!(shown.contains("AADSTS700213"), "{shown}");
        assert!(!shown.contains(&sent), "the assertion leaked: {shown}");
        // Neither the signature nor any line of the private key.
        assert!(!shown.contains(sent.rsplit('.').next().unwrap()), "{shown}");
        for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!shown.contains(line), "a private key line leaked: {shown}");
        }
    }
}
