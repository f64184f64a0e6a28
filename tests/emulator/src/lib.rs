//! A strict local stand-in for Entra ID's token endpoint, the App Service managed-identity
//! endpoint and the Azure Monitor Logs Ingestion API, with fault injection, for tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use azmon_emulator::{Emulator, EmulatorConfig, Faults};
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let env = emulator.env(); // AZURE_TENANT_ID, ..., LOGS_INGESTION_ENDPOINT
//! emulator.set_faults(Faults::scripted(&[429, 503]));
//! // ... run the code under test with `env` ...
//! assert_eq!(emulator.stats().status_counts.get(&429), Some(&1));
//! let rows = emulator.rows();
//! # drop((env, rows)); Ok(()) }
//! ```
//!
//! Tests wait on what the emulator reports, never on time: [`Emulator::wait_for_rows`],
//! [`Emulator::wait_until_idle`] (no request in progress, no connection open), and
//! [`Emulator::advance_clock`] instead of waiting for a token to expire. Random faults are a
//! function of a seed and each request's content (see [`Faults`]), so a run replays.
//!
//! Protocol facts, with their public sources, are in `docs/emulator-facts.md` (§1, §2.1–2.7,
//! §7, §8); where the real service's answer is unknown the emulator says "emulator-defined".

// Handlers return early with an axum `Response` as the error; one per request, so its size
// does not matter.
#![allow(clippy::result_large_err)]

mod assertion;
mod columns;
mod config;
mod conn;
mod control;
mod faults;
mod ingestion;
mod jwt;
mod mi;
mod oidc;
mod state;
mod sts;
mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::columns::{
    MAX_FIELD_BYTES, MAX_TIME_GENERATED_AGE, MAX_TIME_GENERATED_AHEAD, TIME_GENERATED,
};
pub use crate::config::{
    ColumnDef, ColumnType, EmulatorConfig, FederatedCredential, StreamConfig,
    AWS_ISSUER_PLACEHOLDER, DEFAULT_TOKEN_LIFETIME_SECS, ENTRA_TOKEN_EXCHANGE_AUDIENCE,
    EXTERNAL_ISSUER_PLACEHOLDER,
};
pub use crate::faults::{request_key, Faults, DROP_CONNECTION, STALL};
pub use crate::ingestion::{API_VERSION, MAX_BODY_BYTES, MAX_LENIENT_DECOMPRESSED_BYTES};
pub use crate::mi::{IDENTITY_API_VERSION, IDENTITY_HEADER_NAME, IDENTITY_PATH};
pub use crate::state::Stats;
pub use crate::sts::{DEFAULT_WEB_IDENTITY_DURATION_SECS, STS_API_VERSION};
pub use crate::token::decode_claims;

use crate::conn::{Connection, KillableListener};
use crate::state::State;

/// How long `shutdown` waits for open requests (e.g. a stalled one) before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running emulator on 127.0.0.1. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Binds 127.0.0.1:`config.port` (0 = a free port) and serves until dropped or shut down.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config, format!("http://{addr}")));
        let app = router(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(
            KillableListener {
                listener,
                open: Arc::clone(&state.connections),
                changed: Arc::clone(&state.changed),
            },
            app.into_make_service_with_connect_info::<Connection>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "Emulator server failed.");
            }
        });
        tracing::info!(%addr, "Emulator listening.");
        Ok(Emulator {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the authority host and the DCE.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.state.config
    }

    /// The full `LOGS_INGESTION_ENDPOINT` URL for the first declared stream:
    /// `{base}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`.
    pub fn ingestion_endpoint(&self) -> String {
        self.ingestion_url(self.state.config.default_stream())
    }

    /// The upload URL for `stream` in the configured DCR.
    pub fn ingestion_url(&self, stream: &str) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
            self.base_url(),
            self.state.config.dcr_id,
            stream
        )
    }

    /// The token URL for the configured tenant: `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base_url(),
            self.state.config.tenant_id
        )
    }

    /// The managed-identity endpoint (`IDENTITY_ENDPOINT`): `{base}/msi/token`.
    pub fn identity_endpoint(&self) -> String {
        format!("{}{IDENTITY_PATH}", self.base_url())
    }

    /// The value the managed-identity endpoint requires in `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
    pub fn identity_header(&self) -> String {
        self.state.config.identity_header.clone()
    }

    /// Environment for a client-secret child process: AZURE_TENANT_ID, AZURE_CLIENT_ID,
    /// AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST (= `base_url`), LOGS_INGESTION_ENDPOINT,
    /// and AZURE_CLOUD when the cloud is not the public one.
    pub fn env(&self) -> Vec<(String, String)> {
        let config = &self.state.config;
        let mut env = vec![
            ("AZURE_TENANT_ID".to_string(), config.tenant_id.clone()),
            ("AZURE_CLIENT_ID".to_string(), config.client_id.clone()),
            (
                "AZURE_CLIENT_SECRET".to_string(),
                config.client_secret.clone(),
            ),
            ("AZURE_AUTHORITY_HOST".to_string(), self.base_url()),
            (
                "LOGS_INGESTION_ENDPOINT".to_string(),
                self.ingestion_endpoint(),
            ),
        ];
        if config.cloud != logrelay_core::config::Cloud::Public {
            env.push(("AZURE_CLOUD".to_string(), config.cloud.name().to_string()));
        }
        env
    }

    /// Environment for a managed-identity child process: IDENTITY_ENDPOINT, IDENTITY_HEADER,
    /// LOGS_INGESTION_ENDPOINT (no client secret).
    pub fn identity_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("IDENTITY_ENDPOINT".to_string(), self.identity_endpoint()),
            ("IDENTITY_HEADER".to_string(), self.identity_header()),
            (
                "LOGS_INGESTION_ENDPOINT".to_string(),
                self.ingestion_endpoint(),
            ),
        ];
        if self.state.config.cloud != logrelay_core::config::Cloud::Public {
            env.push((
                "AZURE_CLOUD".to_string(),
                self.state.config.cloud.name().to_string(),
            ));
        }
        env
    }

    /// The URL to give the AWS SDK as `AWS_ENDPOINT_URL_STS` (= [`Emulator::base_url`]): STS
    /// `GetWebIdentityToken` is served at `POST /` in the AWS query protocol.
    pub fn sts_endpoint(&self) -> String {
        self.base_url()
    }

    /// SigV4-signed STS requests with `access_key_id` come from `role_arn` (the token's `sub`).
    /// Requests with any other key get `AccessDenied`; unsigned ones `MissingAuthenticationToken`.
    pub fn allow_sts_caller(&self, access_key_id: &str, role_arn: &str) {
        self.state
            .lock()
            .sts_callers
            .insert(access_key_id.to_string(), role_arn.to_string());
    }

    /// Registers a federated identity credential on the app now (beside the configured ones);
    /// its issuer may be [`Emulator::aws_issuer`] or [`Emulator::external_issuer`].
    pub fn add_federated_credential(&self, credential: FederatedCredential) {
        self.state.lock().federated_credentials.push(credential);
    }

    /// Registers a certificate (PEM, public part) on the app now.
    pub fn add_certificate(&self, pem: &str) {
        self.state.lock().certificates.push(pem.to_string());
    }

    /// The AWS account's outbound-federation issuer URL, `{base}/aws-outbound/<uuid>`; it serves
    /// `/.well-known/openid-configuration` and `/.well-known/jwks.json`.
    pub fn aws_issuer(&self) -> String {
        self.state.aws_issuer()
    }

    /// A second OIDC issuer, `{base}/external/<uuid>` (think Kubernetes service-account tokens),
    /// with its own discovery document and JWKS.
    pub fn external_issuer(&self) -> String {
        self.state.external_issuer()
    }

    /// An RS256 token from [`Emulator::external_issuer`] with `sub`, `aud`, and `exp` =
    /// now + `lifetime_secs` on the emulator's clock (for `AZURE_FEDERATED_TOKEN_FILE` tests).
    /// Empty only if key generation failed, which the next request would report.
    pub fn mint_external_token(&self, subject: &str, audience: &str, lifetime_secs: u64) -> String {
        let claims = oidc::standard_claims(
            &self.external_issuer(),
            subject,
            &[audience.to_string()],
            self.state.now(),
            lifetime_secs,
        );
        self.state
            .issuers
            .external
            .keys()
            .and_then(|keys| keys.sign(jwt::RS256, &claims))
            .unwrap_or_default()
    }

    /// Every stored row, all streams, in arrival order (as the table would hold them).
    pub fn rows(&self) -> Vec<Value> {
        self.state.rows(None)
    }

    /// The stored rows of `stream`.
    pub fn rows_for(&self, stream: &str) -> Vec<Value> {
        self.state.rows(Some(stream))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// The faults in force (a script shrinks as it plays).
    pub fn faults(&self) -> Faults {
        self.state.lock().faults.clone()
    }

    /// Puts `faults` in force (replacing the previous ones).
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().set_faults(faults);
    }

    /// Revokes every token issued so far (their next use is a 401).
    pub fn revoke_tokens(&self) {
        let mut inner = self.state.lock();
        for token in inner.tokens.values_mut() {
            token.revoked = true;
        }
    }

    /// Issues a valid token for the configured client directly (no HTTP), with the configured
    /// (or fault) lifetime; for tests that need a bearer token without a token request.
    pub fn issue_token(&self) -> String {
        let lifetime = token::lifetime_secs(&self.state);
        self.issue_token_for(lifetime)
    }

    /// Issues a valid token that lives `lifetime_secs` seconds.
    pub fn issue_token_for(&self, lifetime_secs: u64) -> String {
        let config = &self.state.config;
        let (token, issued) = token::mint(
            config,
            &config.client_id,
            config.audience(),
            lifetime_secs,
            self.state.now(),
        );
        token::remember(&self.state, &token, issued);
        token
    }

    /// Clears rows, counters and faults (back to the configured ones); tokens stay valid.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Every stored row with the serial of the token its request carried (1 = the first
    /// token issued): tells apart what two runs of a client stored, whenever it landed.
    pub fn rows_with_token_serial(&self) -> Vec<(u64, Value)> {
        self.state.rows_with_token_serial()
    }

    /// Moves the emulator's clock forward by `by`: issued tokens expire as if that much time
    /// had passed (token issue, expiry and validation use the emulator's clock).
    pub fn advance_clock(&self, by: Duration) {
        self.state.advance_clock(by);
    }

    /// Waits until at least `count` rows are stored or `timeout` passes; returns the count.
    /// Woken by each store, so it never polls.
    pub async fn wait_for_rows(&self, count: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |state| state.lock().rows.len() >= count)
            .await;
        self.state.lock().rows.len()
    }

    /// Waits until no ingestion request is in progress and no connection is open (nothing a
    /// client sent can still be stored), at most `timeout`. `Ok` with the stats when idle,
    /// `Err` with them when the time ran out.
    pub async fn wait_until_idle(&self, timeout: Duration) -> Result<Stats, Stats> {
        let idle = self
            .wait_until(timeout, |state| {
                let stats = state.stats();
                stats.in_flight_requests == 0 && stats.open_connections == 0
            })
            .await;
        if idle {
            Ok(self.stats())
        } else {
            Err(self.stats())
        }
    }

    /// Waits until no ingestion request is in progress, at most `timeout` (for a client that
    /// keeps pooled connections open, where [`Emulator::wait_until_idle`] would never hold).
    pub async fn wait_for_requests_to_finish(&self, timeout: Duration) -> Result<Stats, Stats> {
        let done = self
            .wait_until(timeout, |state| state.stats().in_flight_requests == 0)
            .await;
        if done {
            Ok(self.stats())
        } else {
            Err(self.stats())
        }
    }

    /// Waits until `done(state)` holds, re-checking whenever rows are stored, a request ends or
    /// a connection closes; false if `timeout` passed first.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.state.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the check and the await wakes us.
            changed.as_mut().enable();
            if done(&self.state) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(&self.state);
            }
        }
    }

    /// Stops the server, giving open requests a short grace period.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A self-signed RSA-2048 certificate made now, and its private key, both PEM
/// (`CERTIFICATE`, PKCS#8 `PRIVATE KEY`): register the first with
/// [`EmulatorConfig::with_certificate`] and sign client assertions with the second. Made at run
/// time so no private key is ever committed.
pub fn test_certificate() -> (String, String) {
    let made = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).and_then(|key| {
        let params = rcgen::CertificateParams::new(vec!["logrelay-test-client".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    });
    // Key generation with aws-lc-rs does not fail in practice; a test needs the pair.
    #[allow(clippy::expect_used)]
    made.expect("generating a test certificate")
}

/// Every route the emulator serves.
fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", post(sts::sts_endpoint))
        .route(
            "/aws-outbound/{id}/.well-known/openid-configuration",
            get(oidc::aws_discovery),
        )
        .route(
            "/aws-outbound/{id}/.well-known/jwks.json",
            get(oidc::aws_jwks),
        )
        .route(
            "/external/{id}/.well-known/openid-configuration",
            get(oidc::external_discovery),
        )
        .route(
            "/external/{id}/.well-known/jwks.json",
            get(oidc::external_jwks),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_endpoint))
        .route(IDENTITY_PATH, get(mi::identity_endpoint))
        .route(
            "/dataCollectionRules/{dcr}/streams/{stream}",
            post(ingestion::ingest),
        )
        .route("/_emulator/rows", get(control::rows))
        .route("/_emulator/stats", get(control::stats))
        .route(
            "/_emulator/faults",
            put(control::put_faults).get(control::get_faults),
        )
        .route("/_emulator/reset", post(control::reset))
        .route("/_emulator/clock", post(control::advance_clock))
        .route("/_emulator/health", get(control::health))
        // The ingestion handler reads bodies itself to answer 413 in the service's shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
