//! Entra ID access tokens: acquisition and a process-wide cache shared by warm invocations.
//!
//! - [`TokenProvider`] fetches a fresh token (client secret, managed identity, test fakes).
//! - [`TokenCache`] hands out a cached token, refreshes it ahead of expiry with one fetch at a
//!   time however many tasks ask (single flight), and forgets it when ingestion answers 401.
//! - [`refresh_at`] is the pure refresh decision.
//! - [`build_provider`] turns an [`AuthConfig`] into the right provider.

pub mod assertion;
pub mod certificate;
pub mod credential;
pub mod entra;
pub mod federated_file;
pub mod managed_identity;

pub use assertion::{AssertionSource, ClientAssertionProvider};
pub use credential::{AuthConfig, Cloud, Credential};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::Clock;
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// Refresh this long before expiry. Source: Entra convention (azure_identity cache, 300 s).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Tokens living less than this are refreshed at half-life instead (five minutes early would
/// be at or before the moment they were issued).
pub const SHORT_LIFETIME: Duration = Duration::from_secs(600);

/// How long one fetch may take before the cache gives up with [`Error::TokenTransport`].
/// Source: smithy-rs `LazyCache`'s default load timeout
/// (<https://docs.rs/aws-smithy-runtime/latest/aws_smithy_runtime/client/identity/struct.LazyCacheBuilder.html>).
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A bearer token and its lifetime.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer value. Never logged.
    pub secret: Secret,
    /// When the token was obtained.
    pub issued_at: SystemTime,
    /// When Entra says it stops working.
    pub expires_at: SystemTime,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"***")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Fetches a new token from somewhere (Entra client credentials, an identity endpoint, a fake).
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// One fetch. Errors carry actionable advice and never the secret.
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>>;

    /// Where tokens come from (a host name), for error messages such as a load timeout.
    fn endpoint_host(&self) -> String {
        "the token endpoint".to_string()
    }
}

/// When a token issued at `issued_at` and expiring at `expires_at` should be replaced:
/// five minutes early, or at half-life for tokens that live less than ten minutes.
///
/// Worked example: Entra's usual token (`expires_in` 3599) issued at 12:00:00 expires at
/// 12:59:59 and is refreshed from 12:54:59. A 6-minute token issued at 12:00:00 is refreshed
/// from 12:03:00 (half of 360 s), not at 12:01:00 — a 4-minute token would otherwise be
/// "due" a minute before it was issued. A token whose expiry is not after its issue time is
/// due at once.
pub fn refresh_at(issued_at: SystemTime, expires_at: SystemTime) -> SystemTime {
    let lifetime = expires_at
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    if lifetime < SHORT_LIFETIME {
        issued_at + lifetime / 2
    } else {
        expires_at - REFRESH_BEFORE_EXPIRY
    }
}

/// The cached token and when it is due.
#[derive(Debug)]
struct Cached {
    token: AccessToken,
    refresh_at: SystemTime,
}

/// The outcome of the last load, kept under the load lock.
#[derive(Debug, Default)]
struct Loads {
    /// Loads finished so far (success or failure).
    completed: u64,
    /// The error of the last load if it failed, handed to the tasks that queued behind it.
    last_failure: Option<Error>,
}

/// The process-wide token cache. Build one in `main`; warm invocations reuse it.
///
/// `get` reads the cached token under a short read lock (no await held). When the token is
/// missing or due, callers queue on one async mutex; the first fetches, the others re-check
/// and take its token. Tasks that were queued behind a failed fetch get a copy of that error
/// rather than each hammering Entra in turn; a later `get` fetches again.
#[derive(Debug)]
pub struct TokenCache {
    provider: Arc<dyn TokenProvider>,
    clock: Arc<dyn Clock>,
    cached: RwLock<Option<Cached>>,
    loads: tokio::sync::Mutex<Loads>,
    /// Mirror of `loads.completed`, read before queueing for the lock.
    loads_completed: AtomicU64,
    fetches: AtomicU64,
    load_timeout: Duration,
}

impl TokenCache {
    /// A cache over `provider`, reading time from `clock`.
    pub fn new(provider: Arc<dyn TokenProvider>, clock: Arc<dyn Clock>) -> Self {
        TokenCache {
            provider,
            clock,
            cached: RwLock::new(None),
            loads: tokio::sync::Mutex::new(Loads::default()),
            loads_completed: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
        }
    }

    /// Replaces the per-fetch timeout ([`DEFAULT_LOAD_TIMEOUT`]).
    pub fn with_load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// A token that is valid now, fetching one if needed (one fetch at a time).
    ///
    /// A cached token is returned only before its refresh point (and so before expiry); a
    /// freshly fetched one only if it has not expired.
    pub async fn get(&self) -> Result<AccessToken> {
        self.get_by(None).await
    }

    /// [`TokenCache::get`] with a fetch bounded by `deadline` too (an invocation's), so a slow
    /// token endpoint cannot hold the work past it.
    pub async fn get_by(&self, deadline: Option<Instant>) -> Result<AccessToken> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.loads_completed.load(Ordering::Acquire);
        let mut loads = self.loads.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if loads.completed != seen {
            if let Some(error) = &loads.last_failure {
                return Err(replicate(error));
            }
        }
        let outcome = self.load(deadline).await;
        loads.completed += 1;
        self.loads_completed
            .store(loads.completed, Ordering::Release);
        loads.last_failure = outcome.as_ref().err().map(replicate);
        outcome
    }

    /// Forgets `token` if it is still the cached one (after a 401), so the next `get` fetches.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if cached
            .as_ref()
            .is_some_and(|cached| cached.token.secret == token.secret)
        {
            *cached = None;
            tracing::debug!("Forgot the cached access token.");
        }
    }

    /// How many fetches this cache has made (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The cached token if it is not yet due.
    fn fresh(&self) -> Option<AccessToken> {
        let now = self.clock.now();
        let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|cached| now < cached.refresh_at && now < cached.token.expires_at)
            .map(|cached| cached.token.clone())
    }

    /// One fetch under the load lock; stores the token on success.
    async fn load(&self, deadline: Option<Instant>) -> Result<AccessToken> {
        let fetches = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = deadline.map_or(self.load_timeout, |at| {
            self.load_timeout
                .min(at.saturating_duration_since(Instant::now()))
        });
        let token = match tokio::time::timeout(limit, self.provider.fetch()).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(Error::TokenTransport {
                    host: self.provider.endpoint_host(),
                    reason: format!(
                        "no token within {} s; the endpoint is unreachable or too slow",
                        limit.as_secs_f32()
                    ),
                })
            }
        };
        let now = self.clock.now();
        if now >= token.expires_at {
            return Err(Error::TokenTransport {
                host: self.provider.endpoint_host(),
                reason: "the token returned has already expired; check the system clock".into(),
            });
        }
        let due = refresh_at(token.issued_at, token.expires_at);
        tracing::debug!(
            fetches,
            valid_for_secs = token
                .expires_at
                .duration_since(now)
                .unwrap_or_default()
                .as_secs(),
            "Fetched a new access token."
        );
        *self.cached.write().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
            token: token.clone(),
            refresh_at: due,
        });
        Ok(token)
    }
}

/// A copy of a token-path error for the tasks that queued behind it ([`Error`] is not `Clone`).
fn replicate(error: &Error) -> Error {
    match error {
        Error::Token {
            code,
            advice,
            permanent,
        } => Error::Token {
            code: code.clone(),
            advice: advice.clone(),
            permanent: *permanent,
        },
        Error::TokenTransport { host, reason } => Error::TokenTransport {
            host: host.clone(),
            reason: reason.clone(),
        },
        Error::MissingConfig { name, hint } => Error::MissingConfig { name, hint },
        Error::InvalidConfig { name, reason } => Error::InvalidConfig {
            name: name.clone(),
            reason: reason.clone(),
        },
        Error::Aws {
            service,
            operation,
            reason,
            transient,
        } => Error::Aws {
            service,
            operation,
            reason: reason.clone(),
            transient: *transient,
        },
        other => Error::TokenTransport {
            host: "the token provider".into(),
            reason: other.to_string(),
        },
    }
}

/// Where a client secret comes from: the environment (fixed), or AWS Secrets Manager (read
/// once per container, read again with `refresh = true` after Entra rejects it: rotation).
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The client secret; `refresh` forces a fresh read instead of the cached value.
    fn client_secret(&self, refresh: bool) -> BoxFuture<'_, Result<Secret>>;
}

/// A secret fixed for the life of the process (`AZURE_CLIENT_SECRET`); `refresh` changes nothing.
#[derive(Debug, Clone)]
pub struct StaticSecret(pub Secret);

impl SecretSource for StaticSecret {
    fn client_secret(&self, _refresh: bool) -> BoxFuture<'_, Result<Secret>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// What a platform adds for the credentials it alone can serve: the Lambda functions' Secrets
/// Manager secret and STS web identity tokens.
#[derive(Debug, Default, Clone)]
pub struct CredentialSources {
    /// Where `AZURE_CLIENT_SECRET_ARN` is read from.
    pub secret: Option<Arc<dyn SecretSource>>,
    /// Where `LOGRELAY_AWS_FEDERATION` gets its assertions (STS `GetWebIdentityToken`).
    pub web_identity: Option<Arc<dyn AssertionSource>>,
}

impl From<Option<Arc<dyn SecretSource>>> for CredentialSources {
    fn from(secret: Option<Arc<dyn SecretSource>>) -> Self {
        CredentialSources {
            secret,
            web_identity: None,
        }
    }
}

/// The provider for `auth`: Entra client credentials (a secret from the environment or from
/// `sources`, e.g. Secrets Manager; or a client assertion from a certificate, a federated
/// token file or STS) or the App Service managed identity.
pub fn build_provider(
    auth: &AuthConfig,
    http: reqwest::Client,
    sources: impl Into<CredentialSources>,
) -> Result<Arc<dyn TokenProvider>> {
    let CredentialSources {
        secret: secrets,
        web_identity,
    } = sources.into();
    let assertion = |source: Arc<dyn AssertionSource>| -> Arc<dyn TokenProvider> {
        Arc::new(ClientAssertionProvider::new(
            http.clone(),
            auth.authority_host.clone(),
            auth.tenant_id.clone(),
            auth.client_id.clone(),
            auth.scope.clone(),
            source,
        ))
    };
    let client_secret = |secrets: Arc<dyn SecretSource>| -> Arc<dyn TokenProvider> {
        Arc::new(entra::ClientSecretProvider::new(
            http.clone(),
            auth.authority_host.clone(),
            auth.tenant_id.clone(),
            auth.client_id.clone(),
            auth.scope.clone(),
            secrets,
        ))
    };
    match &auth.credential {
        Credential::ClientSecret(secret) => Ok(client_secret(Arc::new(StaticSecret(secret.clone())))),
        Credential::SecretArn(_) => match secrets {
            Some(secrets) => Ok(client_secret(secrets)),
            None => Err(Error::InvalidConfig {
                name: "AZURE_CLIENT_SECRET_ARN".into(),
                reason: "AZURE_CLIENT_SECRET_ARN needs a Secrets Manager source (AWS functions only); set AZURE_CLIENT_SECRET for the CLI".into(),
            }),
        },
        Credential::ManagedIdentity {
            endpoint,
            header,
            client_id,
        } => {
            // The identity endpoint takes a resource (audience), not a scope.
            let resource = auth
                .scope
                .strip_suffix("/.default")
                .unwrap_or(&auth.scope)
                .to_string();
            Ok(Arc::new(managed_identity::ManagedIdentityProvider::new(
                http.clone(),
                endpoint.clone(),
                header.clone(),
                client_id.clone(),
                resource,
            )))
        }
        Credential::Certificate { path, send_chain } => Ok(assertion(Arc::new(
            certificate::CertificateSource::load(path, auth.client_id.clone(), *send_chain)?,
        ))),
        Credential::FederatedTokenFile { path } => Ok(assertion(Arc::new(
            federated_file::FederatedTokenFile::new(path.clone()),
        ))),
        Credential::AwsFederation { .. } => match web_identity {
            Some(source) => Ok(assertion(source)),
            None => Err(Error::InvalidConfig {
                name: "LOGRELAY_AWS_FEDERATION".into(),
                reason: "AWS web identity federation needs the AWS functions' STS client (it runs as the function's IAM role); the CLI takes AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE".into(),
            }),
        },
    }
}

/// Which credential a provider built by [`build_provider`] for `auth` uses (for `logrelay
/// token` and doctor).
pub fn credential_used(auth: &AuthConfig) -> String {
    auth.credential.describe()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use super::{Cloud, Credential};
    use crate::clock::ManualClock;

    const MINUTE: Duration = Duration::from_secs(60);

    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Counts fetches; token `n` is `token-n`, issued now by the shared clock.
    #[derive(Debug)]
    struct CountingProvider {
        clock: Arc<ManualClock>,
        lifetime: Duration,
        delay: Duration,
        calls: AtomicU64,
        /// Scripted failures, consumed one per fetch before tokens are issued.
        failures: Mutex<VecDeque<Error>>,
    }

    impl CountingProvider {
        fn new(clock: &Arc<ManualClock>, lifetime: Duration) -> Self {
            CountingProvider {
                clock: clock.clone(),
                lifetime,
                delay: Duration::ZERO,
                calls: AtomicU64::new(0),
                failures: Mutex::new(VecDeque::new()),
            }
        }

        fn slow(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        fn failing_first(self, error: Error) -> Self {
            self.failures.lock().unwrap().push_back(error);
            self
        }
    }

    impl TokenProvider for CountingProvider {
        fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                if let Some(error) = self.failures.lock().unwrap().pop_front() {
                    return Err(error);
                }
                let now = self.clock.now();
                Ok(AccessToken {
                    secret: Secret::new(format!("token-{n}")),
                    issued_at: now,
                    expires_at: now + self.lifetime,
                })
            })
        }
    }

    fn cache_over(
        provider: CountingProvider,
        clock: &Arc<ManualClock>,
    ) -> (Arc<TokenCache>, Arc<CountingProvider>) {
        let provider = Arc::new(provider);
        let cache = TokenCache::new(provider.clone(), clock.clone());
        (Arc::new(cache), provider)
    }

    fn throttled() -> Error {
        Error::Token {
            code: "AADSTS90055".into(),
            advice: "throttled".into(),
            permanent: false,
        }
    }

    #[test]
    fn refresh_is_five_minutes_early_or_at_half_life_for_short_tokens() {
        let t = start();
        let cases = [
            // (lifetime, refresh after issue)
            (Duration::from_secs(3599), Duration::from_secs(3299)),
            (Duration::from_secs(5400), Duration::from_secs(5100)),
            (Duration::from_secs(600), Duration::from_secs(300)),
            (Duration::from_secs(599), Duration::from_millis(299_500)),
            (Duration::from_secs(360), Duration::from_secs(180)),
            (Duration::from_secs(240), Duration::from_secs(120)),
            (Duration::ZERO, Duration::ZERO),
        ];
        for (lifetime, after) in cases {
            assert_eq!(refresh_at(t, t + lifetime), t + after, "{lifetime:?}");
        }
        // Expiry before issue (a confused clock): due at once.
        assert_eq!(refresh_at(t, t - MINUTE), t);
    }

    #[tokio::test]
    async fn the_first_get_fetches_and_later_gets_reuse_the_token_until_its_refresh_point() {
        let clock = Arc::new(ManualClock::new(start()));
        let (cache, _) = cache_over(CountingProvider::new(&clock, 60 * MINUTE), &clock);
        let first = cache.get().await.unwrap();
        assert_eq!(first.secret.expose(), "token-1");
        clock.advance(54 * MINUTE);
        let again = cache.get().await.unwrap();
        assert_eq!(again.secret.expose(), "token-1");
        assert_eq!(cache.fetches(), 1);
    }

    #[tokio::test]
    async fn a_token_is_replaced_once_the_clock_reaches_its_refresh_point() {
        let clock = Arc::new(ManualClock::new(start()));
        let (cache, _) = cache_over(CountingProvider::new(&clock, 60 * MINUTE), &clock);
        cache.get().await.unwrap();
        clock.advance(55 * MINUTE);
        let refreshed = cache.get().await.unwrap();
        assert_eq!(refreshed.secret.expose(), "token-2");
        assert_eq!(cache.fetches(), 2);
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-2");
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_concurrent_gets_cause_exactly_one_fetch() {
        let clock = Arc::new(ManualClock::new(start()));
        let provider = CountingProvider::new(&clock, 60 * MINUTE).slow(Duration::from_millis(50));
        let (cache, provider) = cache_over(provider, &clock);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get().await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().secret.expose(), "token-1");
        }
        assert_eq!(cache.fetches(), 1);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidating_the_cached_token_forces_exactly_one_new_fetch() {
        let clock = Arc::new(ManualClock::new(start()));
        let (cache, _) = cache_over(CountingProvider::new(&clock, 60 * MINUTE), &clock);
        let old = cache.get().await.unwrap();
        cache.invalidate(&old);
        let new = cache.get().await.unwrap();
        assert_eq!(new.secret.expose(), "token-2");
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-2");
        assert_eq!(cache.fetches(), 2);
        // A late 401 for the old token must not throw away the new one.
        cache.invalidate(&old);
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-2");
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_returns_its_error_and_the_next_get_tries_again() {
        let clock = Arc::new(ManualClock::new(start()));
        let provider = CountingProvider::new(&clock, 60 * MINUTE).failing_first(throttled());
        let (cache, _) = cache_over(provider, &clock);
        let error = cache.get().await.unwrap_err();
        assert!(
            matches!(&error, Error::Token { code, .. } if code == "AADSTS90055"),
            "{error:?}"
        );
        assert!(error.is_transient());
        let token = cache.get().await.unwrap();
        assert_eq!(token.secret.expose(), "token-2");
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_queued_behind_a_failed_fetch_share_its_error_instead_of_refetching() {
        let clock = Arc::new(ManualClock::new(start()));
        let provider = CountingProvider::new(&clock, 60 * MINUTE)
            .slow(Duration::from_millis(50))
            .failing_first(throttled());
        let (cache, _) = cache_over(provider, &clock);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get().await })
            })
            .collect();
        for task in tasks {
            let error = task.await.unwrap().unwrap_err();
            assert!(
                matches!(error, Error::Token { ref code, .. } if code == "AADSTS90055"),
                "{error:?}"
            );
        }
        assert_eq!(cache.fetches(), 1);
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-2");
    }

    #[tokio::test]
    async fn an_expired_token_is_never_returned() {
        let clock = Arc::new(ManualClock::new(start()));
        let (cache, _) = cache_over(CountingProvider::new(&clock, 60 * MINUTE), &clock);
        cache.get().await.unwrap();
        clock.advance(2 * 60 * MINUTE);
        let token = cache.get().await.unwrap();
        assert_eq!(token.secret.expose(), "token-2");
        assert!(clock.now() < token.expires_at);

        // A provider handing out dead tokens gets an error, not a dead token passed along.
        let (cache, _) = cache_over(CountingProvider::new(&clock, Duration::ZERO), &clock);
        let error = cache.get().await.unwrap_err();
        assert!(
            matches!(error, Error::TokenTransport { ref reason, .. } if reason.contains("already expired")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_short_lived_token_is_reused_until_half_life() {
        let clock = Arc::new(ManualClock::new(start()));
        let (cache, _) = cache_over(CountingProvider::new(&clock, 4 * MINUTE), &clock);
        cache.get().await.unwrap();
        clock.advance(Duration::from_secs(119));
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-1");
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get().await.unwrap().secret.expose(), "token-2");
    }

    #[tokio::test]
    async fn a_fetch_that_hangs_times_out_as_a_transport_error() {
        let clock = Arc::new(ManualClock::new(start()));
        let provider =
            Arc::new(CountingProvider::new(&clock, 60 * MINUTE).slow(Duration::from_secs(5)));
        let cache =
            TokenCache::new(provider, clock.clone()).with_load_timeout(Duration::from_millis(20));
        let error = cache.get().await.unwrap_err();
        assert!(matches!(error, Error::TokenTransport { .. }), "{error:?}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_static_secret_is_the_same_when_refreshed() {
        let source = StaticSecret(Secret::new("s3cr3t-value"));
        assert_eq!(
            source.client_secret(false).await.unwrap(),
            source.client_secret(true).await.unwrap()
        );
        assert!(!format!("{source:?}").contains("s3cr3t-value"));
    }

    fn auth(credential: Credential) -> AuthConfig {
        AuthConfig {
            cloud: Cloud::UsGovernment,
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            credential,
            authority_host: url::Url::parse("https://login.microsoftonline.us").unwrap(),
            scope: Cloud::UsGovernment.scope().into(),
        }
    }

    #[test]
    fn a_secret_arn_without_a_secrets_manager_source_is_refused() {
        let config = auth(Credential::SecretArn(
            "arn:aws:secretsmanager:us-east-1:1:secret:x".into(),
        ));
        let error = build_provider(&config, reqwest::Client::new(), None).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("AZURE_CLIENT_SECRET_ARN needs a Secrets Manager source"),
            "{message}"
        );
        assert!(
            message.contains("set AZURE_CLIENT_SECRET for the CLI"),
            "{message}"
        );
        let source: Arc<dyn SecretSource> = Arc::new(StaticSecret(Secret::new("x")));
        assert!(build_provider(&config, reqwest::Client::new(), Some(source)).is_ok());
    }

    #[test]
    fn providers_are_built_for_each_credential_without_showing_secrets() {
        let secret = auth(Credential::ClientSecret(Secret::new("client-secret-value")));
        let provider = build_provider(&secret, reqwest::Client::new(), None).unwrap();
        let debug = format!("{provider:?}");
        assert!(debug.contains("ClientSecretProvider"), "{debug}");
        assert!(!debug.contains("client-secret-value"), "{debug}");
        assert_eq!(provider.endpoint_host(), "login.microsoftonline.us");

        let identity = auth(Credential::ManagedIdentity {
            endpoint: url::Url::parse("http://localhost:8081/msi/token").unwrap(),
            header: Secret::new("identity-header-value"),
            client_id: None,
        });
        let provider = build_provider(&identity, reqwest::Client::new(), None).unwrap();
        let debug = format!("{provider:?}");
        assert!(debug.contains("ManagedIdentityProvider"), "{debug}");
        // The identity endpoint takes the resource, not the `/.default` scope.
        assert!(debug.contains("\"https://monitor.azure.us\""), "{debug}");
        assert!(!debug.contains("identity-header-value"), "{debug}");
    }
}
