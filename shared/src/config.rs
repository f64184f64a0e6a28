//! Configuration, read once from the environment (Azure SDK names where they exist) and
//! validated with messages a person can act on.
//!
//! OWNER: core-auth helper. Types here are the contract other modules use.

use std::time::Duration;

use url::Url;

use crate::secret::Secret;
use crate::{Error, Result};

/// Logs Ingestion API version. Source: azure-monitor-protocol.md §1.1.
pub const API_VERSION: &str = "2023-01-01";

/// Which Azure cloud: picks the authority host and the token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Azure public cloud (`AZURE_CLOUD=public`, default).
    Public,
    /// Azure Government (`usgovernment`).
    UsGovernment,
    /// Azure operated by 21Vianet (`china`).
    China,
}

/// How the relay proves who it is to Entra ID.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret(Secret),
    /// `AZURE_CLIENT_SECRET_ARN`: read from AWS Secrets Manager (plain, or JSON with `client_secret`).
    SecretArn(String),
    /// App Service managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).
    ManagedIdentity {
        endpoint: Url,
        header: Secret,
        client_id: Option<String>,
    },
}

/// Everything needed to get a token.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub cloud: Cloud,
    pub tenant_id: String,
    pub client_id: String,
    pub credential: Credential,
    /// Authority host, e.g. `https://login.microsoftonline.com`; `AZURE_AUTHORITY_HOST` overrides.
    pub authority_host: Url,
    /// Token scope, e.g. `https://monitor.azure.com/.default`.
    pub scope: String,
}

/// Where rows go: `{endpoint}/dataCollectionRules/{dcr_id}/streams/{stream}?api-version=2023-01-01`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestionEndpoint {
    /// The DCE or DCR logs-ingestion endpoint (scheme + host [+ port]).
    pub base: Url,
    /// The DCR immutable id, `dcr-` + 32 hex characters.
    pub dcr_id: String,
    /// The stream name, starting `Custom-`.
    pub stream: String,
}

/// Tuning knobs; every one has a documented default and environment variable.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `LOGRELAY_CONCURRENCY`: requests in flight at once (default 4).
    pub concurrency: usize,
    /// `LOGRELAY_MAX_ATTEMPTS`: attempts per request, first included (default 8).
    pub max_attempts: u32,
    /// `LOGRELAY_DEADLINE_SECS`: how long one batch may keep retrying (default 300 s).
    pub deadline: Duration,
    /// `LOGRELAY_BATCH_BYTES`: serialized JSON array bytes per request (default and max 1,000,000).
    pub batch_bytes: usize,
    /// `LOGRELAY_REQUEST_TIMEOUT_SECS`: one HTTP attempt (default 30 s).
    pub request_timeout: Duration,
    /// `LOGRELAY_MAX_DECOMPRESSED_BYTES`: gzip input larger than this once inflated is refused
    /// (default 16 GiB), the gzip-bomb guard.
    pub max_decompressed_bytes: u64,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub auth: AuthConfig,
    pub endpoint: IngestionEndpoint,
    pub tuning: Tuning,
    /// Non-fatal findings (e.g. a host that is not `*.ingest.monitor.azure.*`), to log once.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// Reads and validates the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let _ = lookup;
        Err(Error::MissingConfig {
            name: "LOGS_INGESTION_ENDPOINT",
            hint: "not yet implemented",
        })
    }
}

impl IngestionEndpoint {
    /// The upload URL for this endpoint, with the api-version.
    pub fn upload_url(&self) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "/dataCollectionRules/{}/streams/{}",
            self.dcr_id, self.stream
        ));
        url.set_query(Some(&format!("api-version={API_VERSION}")));
        url
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 4,
            max_attempts: 8,
            deadline: Duration::from_secs(300),
            batch_bytes: crate::ingest::MAX_BATCH_BYTES,
            request_timeout: Duration::from_secs(30),
            max_decompressed_bytes: 16 << 30,
        }
    }
}
