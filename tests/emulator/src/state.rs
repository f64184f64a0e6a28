//! The emulator's memory: issued tokens, stored rows, counters and the faults in force.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use serde::Serialize;
use serde_json::Value;

use crate::config::{
    EmulatorConfig, FederatedCredential, AWS_ISSUER_PLACEHOLDER, EXTERNAL_ISSUER_PLACEHOLDER,
};
use crate::faults::Faults;
use crate::jwt::SigningKeys;

/// Counters of everything the emulator saw. Serialized as the `/_emulator/stats` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Requests to the client-credentials token endpoint.
    pub token_requests: u64,
    /// Token requests answered with an error (including scripted ones).
    pub token_failures: u64,
    /// Tokens issued by either token endpoint.
    pub tokens_issued: u64,
    /// Tokens issued for a client secret.
    pub client_secret_grants: u64,
    /// Tokens issued for a federated client assertion (an external issuer's JWT).
    pub federated_assertion_grants: u64,
    /// Tokens issued for a certificate client assertion.
    pub certificate_assertion_grants: u64,
    /// Requests to STS (`POST /`, any action).
    pub sts_requests: u64,
    /// Web identity tokens STS issued (`GetWebIdentityToken` answered 200).
    pub sts_web_identity_tokens: u64,
    /// Requests to the managed-identity endpoint.
    pub identity_requests: u64,
    /// Managed-identity requests answered with an error.
    pub identity_failures: u64,
    /// Requests to the ingestion endpoint (every one, answered or not).
    pub ingestion_requests: u64,
    /// Ingestion requests answered 204.
    pub accepted_requests: u64,
    /// Ingestion answers by HTTP status.
    pub status_counts: BTreeMap<u16, u64>,
    /// Largest request body on the wire, in bytes.
    pub max_wire_bytes: u64,
    /// Sum of request bodies on the wire, in bytes.
    pub total_wire_bytes: u64,
    /// Largest body after decoding `Content-Encoding`, in bytes.
    pub max_decompressed_bytes: u64,
    /// Ingestion requests with `Content-Encoding: gzip`.
    pub gzip_requests: u64,
    /// Ingestion requests that carried an expired token (each answered 401).
    pub expired_token_uses: u64,
    /// Ingestion requests that carried a revoked token (each answered 401).
    pub revoked_token_uses: u64,
    /// Undeclared columns dropped (one per column per row).
    pub dropped_columns: u64,
    /// Names of the dropped columns.
    pub dropped_column_names: BTreeSet<String>,
    /// String values cut to 64 KB.
    pub truncated_fields: u64,
    /// TimeGenerated values outside [received − 2 d, received + 1 d] replaced by the received time.
    pub replaced_time_generated: u64,
    /// Rows without a (parseable) TimeGenerated given the received time.
    pub filled_time_generated: u64,
    /// Values that did not fit their declared type and were stored as null.
    pub type_mismatches: u64,
    /// Rows stored.
    pub rows: u64,
    /// Most rows in one accepted request.
    pub max_rows_per_request: u64,
    /// Accepted requests whose body was an empty array.
    pub empty_batches: u64,
    /// Distinct access tokens presented to the ingestion endpoint.
    pub distinct_tokens_used: u64,
    /// Connections closed without an answer (fault).
    pub dropped_connections: u64,
    /// Requests held by a stall fault.
    pub stalled_requests: u64,
    /// Answers decided by a fault (scripted or random status).
    pub injected_statuses: u64,
    /// Most ingestion requests in progress at one time.
    pub max_concurrent_requests: u64,
    /// Ingestion requests in progress now (read, held by a latency or stall fault, or being
    /// answered). Tests wait for 0 instead of sleeping.
    pub in_flight_requests: u64,
    /// TCP connections open now. With `in_flight_requests`, 0 means nothing can still land.
    pub open_connections: u64,
    /// The seed the random faults in force are drawn from (chosen when none was given), so a
    /// failing run can be replayed with `Faults { seed: Some(..) }`.
    pub fault_seed: u64,
}

/// One token the emulator issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    /// The app (client) id it was issued to.
    pub(crate) client_id: String,
    /// Its `aud` claim.
    pub(crate) audience: String,
    /// When it stops being valid.
    pub(crate) expires_at: SystemTime,
    /// Revoked by a fault.
    pub(crate) revoked: bool,
    /// 1 for the first token issued, 2 for the next, ...: which client run stored a row.
    pub(crate) serial: u64,
}

/// A stored row and the stream it was sent to.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub(crate) stream: String,
    pub(crate) row: Value,
    /// The serial of the token the request carried.
    pub(crate) token_serial: u64,
}

/// Mutable state behind one lock (never held across an await).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) faults: Faults,
    /// Attempts seen so far per request key (see [`crate::faults::request_key`]).
    pub(crate) attempts: HashMap<String, u32>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) tokens_used: HashSet<String>,
    pub(crate) rows: Vec<StoredRow>,
    pub(crate) stats: Stats,
    /// STS callers: access key id -> the role ARN its requests come from.
    pub(crate) sts_callers: HashMap<String, String>,
    /// Federated credentials added after start (beside the configured ones).
    pub(crate) federated_credentials: Vec<FederatedCredential>,
    /// Certificates (PEM) added after start.
    pub(crate) certificates: Vec<String>,
}

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    inner: Mutex<Inner>,
    in_flight: AtomicU64,
    /// Open connections, counted by the listener.
    pub(crate) connections: Arc<AtomicU64>,
    /// Milliseconds the emulator's clock (token issue and expiry) is ahead of the system's.
    clock_offset_ms: AtomicU64,
    /// Notified when rows are stored or a request ends, for waits without polling.
    pub(crate) changed: Arc<Notify>,
    /// `http://127.0.0.1:PORT`, for issuer URLs and the token endpoint's own URL.
    pub(crate) base_url: String,
    /// The AWS account's outbound-federation issuer and the second ("external") issuer.
    pub(crate) issuers: Issuers,
}

/// The emulator's two OIDC issuers. Keys are made on first use, so emulators that never
/// federate never pay for RSA key generation.
#[derive(Debug)]
pub(crate) struct Issuers {
    pub(crate) aws: Issuer,
    pub(crate) external: Issuer,
}

/// One OIDC issuer hosted by the emulator at `{base}{path}`.
#[derive(Debug)]
pub(crate) struct Issuer {
    /// e.g. `/aws-outbound/<uuid>`.
    pub(crate) path: String,
    keys: OnceLock<Result<SigningKeys, String>>,
}

impl Issuer {
    fn new(prefix: &str) -> Self {
        Issuer {
            path: format!("/{prefix}/{}", uuid::Uuid::new_v4()),
            keys: OnceLock::new(),
        }
    }

    /// The signing keys (generated on first call).
    pub(crate) fn keys(&self) -> Result<&SigningKeys, String> {
        self.keys
            .get_or_init(SigningKeys::generate)
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl State {
    pub(crate) fn new(mut config: EmulatorConfig, base_url: String) -> Self {
        let issuers = Issuers {
            aws: Issuer::new("aws-outbound"),
            external: Issuer::new("external"),
        };
        for credential in &mut config.federated_credentials {
            if credential.issuer == AWS_ISSUER_PLACEHOLDER {
                credential.issuer = format!("{base_url}{}", issuers.aws.path);
            } else if credential.issuer == EXTERNAL_ISSUER_PLACEHOLDER {
                credential.issuer = format!("{base_url}{}", issuers.external.path);
            }
        }
        let faults = config.faults.clone();
        let mut inner = Inner {
            faults: Faults::default(),
            attempts: HashMap::new(),
            tokens: HashMap::new(),
            tokens_used: HashSet::new(),
            rows: Vec::new(),
            stats: Stats::default(),
            sts_callers: HashMap::new(),
            federated_credentials: Vec::new(),
            certificates: Vec::new(),
        };
        inner.set_faults(faults);
        State {
            config,
            inner: Mutex::new(inner),
            in_flight: AtomicU64::new(0),
            connections: Arc::new(AtomicU64::new(0)),
            clock_offset_ms: AtomicU64::new(0),
            changed: Arc::new(Notify::new()),
            base_url,
            issuers,
        }
    }

    /// The AWS account's issuer URL.
    pub(crate) fn aws_issuer(&self) -> String {
        format!("{}{}", self.base_url, self.issuers.aws.path)
    }

    /// The external issuer's URL.
    pub(crate) fn external_issuer(&self) -> String {
        format!("{}{}", self.base_url, self.issuers.external.path)
    }

    /// The configured federated credentials and those added since.
    pub(crate) fn federated_credentials(&self) -> Vec<FederatedCredential> {
        let mut all = self.config.federated_credentials.clone();
        all.extend(self.lock().federated_credentials.iter().cloned());
        all
    }

    /// The configured certificates and those added since.
    pub(crate) fn certificates(&self) -> Vec<String> {
        let mut all = self.config.certificates.clone();
        all.extend(self.lock().certificates.iter().cloned());
        all
    }

    /// The issuer hosted here whose URL is `url`.
    pub(crate) fn hosted_issuer(&self, url: &str) -> Option<&Issuer> {
        let path = url.strip_prefix(self.base_url.as_str())?;
        [&self.issuers.aws, &self.issuers.external]
            .into_iter()
            .find(|issuer| issuer.path == path.trim_end_matches('/'))
    }

    /// The emulator's time: the system's plus any [`State::advance_clock`].
    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.clock_offset_ms.load(Ordering::SeqCst))
    }

    /// Moves the emulator's clock forward (tokens expire without waiting in real time).
    pub(crate) fn advance_clock(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.clock_offset_ms.fetch_add(millis, Ordering::SeqCst);
    }

    /// The lock; a panic elsewhere must not wedge the emulator, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks one more ingestion request in progress until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut inner = self.lock();
        inner.stats.max_concurrent_requests = inner.stats.max_concurrent_requests.max(now);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn stats(&self) -> Stats {
        let inner = self.lock();
        let mut stats = inner.stats.clone();
        stats.distinct_tokens_used = inner.tokens_used.len() as u64;
        stats.in_flight_requests = self.in_flight.load(Ordering::SeqCst);
        stats.open_connections = self.connections.load(Ordering::SeqCst);
        stats.fault_seed = inner.faults.seed.unwrap_or_default();
        stats
    }

    pub(crate) fn rows(&self, stream: Option<&str>) -> Vec<Value> {
        self.rows_limited(stream, usize::MAX)
    }

    /// The first `limit` stored rows of `stream` (all streams when `None`).
    pub(crate) fn rows_limited(&self, stream: Option<&str>, limit: usize) -> Vec<Value> {
        self.lock()
            .rows
            .iter()
            .filter(|stored| stream.is_none_or(|name| stored.stream == name))
            .take(limit)
            .map(|stored| stored.row.clone())
            .collect()
    }

    /// Every stored row with the serial of the token that carried it, in arrival order.
    pub(crate) fn rows_with_token_serial(&self) -> Vec<(u64, Value)> {
        self.lock()
            .rows
            .iter()
            .map(|stored| (stored.token_serial, stored.row.clone()))
            .collect()
    }

    /// Clears rows, counters and faults (back to the configured ones); issued tokens stay valid.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.rows.clear();
        inner.attempts.clear();
        inner.stats = Stats::default();
        inner.tokens_used.clear();
        inner.set_faults(self.config.faults.clone());
    }
}

impl Inner {
    /// Puts `faults` in force; `revoke_tokens` revokes every token issued so far, once.
    pub(crate) fn set_faults(&mut self, mut faults: Faults) {
        if faults.revoke_tokens {
            for token in self.tokens.values_mut() {
                token.revoked = true;
            }
            faults.revoke_tokens = false;
        }
        // A schedule is a function of the seed; without one, pick one and keep it visible.
        faults.seed.get_or_insert_with(|| fastrand::u64(..));
        self.attempts.clear();
        self.faults = faults;
    }

    /// Counts one ingestion answer.
    pub(crate) fn count_status(&mut self, status: u16) {
        *self.stats.status_counts.entry(status).or_insert(0) += 1;
        if status == 204 {
            self.stats.accepted_requests += 1;
        }
    }
}

/// An ingestion request in progress.
pub(crate) struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}
