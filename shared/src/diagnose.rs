//! `logrelay doctor`: checks each link from configuration to a probe ingestion call, in
//! order, and says for a broken link what to fix and which portal step of Keeper's Azure
//! Monitor guide it belongs to.
//!
//! It runs the relay's own code for everything the relay does: the settings module parses
//! the configuration and the endpoint, the token cache fetches the token, a real ingestion
//! session sends the probe, and the retry classifier's advice explains a refusal. What it adds
//! is what the relay never does: listing every missing variable at once, DNS/TCP/TLS checks,
//! reading the token's claims. Nothing here ever prints a secret or a token.

mod explain;
mod probe;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use crate::auth::{TokenCache, TokenProvider};
use crate::clock::SystemClock;
use crate::config::{Config, Credential, API_VERSION};
use crate::Error;

pub use explain::{
    describe_token, explain_ingestion_status, explain_token_error, jwt_claims, portal, Advice,
    TokenFacts,
};
#[cfg(test)]
use probe::http_status_in;
use probe::probe;
pub use probe::{probe_columns_match_schema, probe_row};

/// `audit_event` of the one event the probe sends, so it is easy to find and filter out.
pub const PROBE_AUDIT_EVENT: &str = "logrelay_doctor_probe";

/// `EventId` prefix of probe events.
pub const PROBE_EVENT_ID_PREFIX: &str = "logrelay-doctor-";

/// How long each reachability check may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// 1-based position.
    pub number: u8,
    /// Stable machine name: configuration, endpoint, network, token, ingestion.
    pub name: &'static str,
    /// What the step checks, for people.
    pub title: &'static str,
    pub status: Status,
    /// What was found (never a secret or token).
    pub detail: String,
    /// On failure: what to do, in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// On failure: where that is done (a Keeper guide portal step, or "not a portal step").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<&'static str>,
    /// Non-fatal observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// True when every step passed.
    pub ok: bool,
    pub steps: Vec<Step>,
}

const STEPS: [(&str, &str); 5] = [
    ("configuration", "Configuration parsed"),
    ("endpoint", "Endpoint URL well formed"),
    (
        "network",
        "DNS, TCP and TLS to Entra ID and the ingestion endpoint",
    ),
    ("token", "Entra ID token"),
    ("ingestion", "Probe ingestion call (one marked test event)"),
];

impl Step {
    fn new(number: u8, status: Status, detail: impl Into<String>) -> Step {
        let (name, title) = STEPS[usize::from(number - 1)];
        Step {
            number,
            name,
            title,
            status,
            detail: detail.into(),
            fix: None,
            portal: None,
            notes: Vec::new(),
        }
    }

    fn ok(number: u8, detail: impl Into<String>) -> Step {
        Step::new(number, Status::Ok, detail)
    }

    fn failed(
        number: u8,
        detail: impl Into<String>,
        fix: impl Into<String>,
        portal: &'static str,
    ) -> Step {
        Step {
            fix: Some(fix.into()),
            portal: Some(portal),
            ..Step::new(number, Status::Failed, detail)
        }
    }

    fn skipped(number: u8) -> Step {
        Step::new(number, Status::Skipped, "skipped: an earlier step failed")
    }

    fn with_notes(mut self, notes: Vec<String>) -> Step {
        self.notes = notes;
        self
    }
}

impl Diagnosis {
    fn from_steps(mut steps: Vec<Step>) -> Diagnosis {
        let done = steps.len();
        for number in done + 1..=STEPS.len() {
            steps.push(Step::skipped(number as u8));
        }
        Diagnosis {
            ok: steps.iter().all(|step| step.status == Status::Ok),
            steps,
        }
    }

    /// The failed step, if any.
    pub fn failed_step(&self) -> Option<&Step> {
        self.steps.iter().find(|step| step.status == Status::Failed)
    }

    /// One line per step (`✓`, `✗`, `-`), and under a failure the fix and the portal step.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let mark = match step.status {
                Status::Ok => "✓",
                Status::Failed => "✗",
                Status::Skipped => "-",
            };
            out.push_str(&format!(
                "{mark} {}. {}: {}\n",
                step.number, step.title, step.detail
            ));
            for note in &step.notes {
                out.push_str(&format!("    note: {note}\n"));
            }
            if let Some(fix) = &step.fix {
                for line in fix.lines() {
                    out.push_str(&format!("    fix: {line}\n"));
                }
            }
            if let Some(portal) = step.portal {
                out.push_str(&format!("    where: {portal}\n"));
            }
        }
        out.push_str(if self.ok {
            "All checks passed: logrelay can deliver events.\n"
        } else {
            "A check failed: fix it and run `logrelay doctor` again.\n"
        });
        out
    }
}

// Step 1: which variables are missing (the settings module stops at the first).

/// The variables that are required and not set, with what each is for.
pub fn missing_variables(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let set = |name: &str| lookup(name).is_some_and(|value| !value.trim().is_empty());
    let managed_identity = set("IDENTITY_ENDPOINT") && set("IDENTITY_HEADER");
    let mut missing = Vec::new();
    if !managed_identity {
        if !set("AZURE_TENANT_ID") {
            missing.push("AZURE_TENANT_ID (Directory (tenant) ID)".to_string());
        }
        if !set("AZURE_CLIENT_ID") {
            missing.push("AZURE_CLIENT_ID (Application (client) ID)".to_string());
        }
        let federation = lookup("LOGRELAY_AWS_FEDERATION").is_some_and(|value| {
            matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            )
        });
        let any_credential = federation
            || crate::auth::credential::CREDENTIAL_VARIABLES
                .iter()
                .filter(|name| **name != "LOGRELAY_AWS_FEDERATION")
                .any(|name| set(name));
        if !any_credential {
            missing.push(
                "AZURE_CLIENT_SECRET (the client secret's Value; or AZURE_CLIENT_SECRET_ARN, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE, LOGRELAY_AWS_FEDERATION=true on AWS, or a managed identity)"
                    .to_string(),
            );
        }
    }
    if !set("LOGS_INGESTION_ENDPOINT") {
        let parts = ["LOGS_INGESTION_DCE", "LOGS_INGESTION_DCR_ID"];
        let absent: Vec<&str> = parts.into_iter().filter(|name| !set(name)).collect();
        if absent.len() == parts.len() {
            missing.push(
                "LOGS_INGESTION_ENDPOINT (the full Endpoint URL; or LOGS_INGESTION_DCE + LOGS_INGESTION_DCR_ID + LOGS_INGESTION_STREAM)"
                    .to_string(),
            );
        } else {
            missing.extend(absent.into_iter().map(str::to_string));
        }
    }
    missing
}

/// Builds the token provider for a configuration (the CLI passes `auth::build_provider`).
pub type ProviderFactory<'a> =
    &'a (dyn Fn(&Config, &reqwest::Client) -> crate::Result<Arc<dyn TokenProvider>> + Sync);

/// The provider the configuration names (client secret or managed identity), as the CLI
/// uses it. A Secrets Manager ARN needs the AWS functions' secret source, so it is refused here.
pub fn configured_provider(
    config: &Config,
    http: &reqwest::Client,
) -> crate::Result<Arc<dyn TokenProvider>> {
    crate::auth::build_provider(&config.auth, http.clone(), None)
}

/// Steps 1 and 2 through the settings module itself: the configuration, or the steps that
/// say why there is none. No network.
pub fn check_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Step>), Vec<Step>> {
    let missing = missing_variables(lookup);
    if !missing.is_empty() {
        let portal = if missing
            .iter()
            .all(|name| name.starts_with("LOGS_INGESTION"))
        {
            portal::ENDPOINT_URL
        } else {
            portal::APP_REGISTRATION
        };
        let fix: Vec<String> = missing
            .iter()
            .map(|variable| format!("set {variable}"))
            .collect();
        let detail = format!("missing: {}", missing.join(", "));
        return Err(vec![Step::failed(1, detail, fix.join("\n"), portal)]);
    }
    let config = match Config::from_lookup(lookup) {
        Ok(config) => config,
        Err(error) => {
            let name = match &error {
                Error::InvalidConfig { name, .. } => name.as_str(),
                Error::MissingConfig { name, .. } => name,
                _ => "",
            };
            if name.starts_with("LOGS_INGESTION") {
                let raw = lookup(name).unwrap_or_default().trim().to_string();
                return Err(vec![
                    Step::ok(1, "every required variable is set"),
                    Step::failed(2, raw, error.to_string(), portal::ENDPOINT_URL),
                ]);
            }
            let portal = if name.contains("SECRET") {
                portal::CLIENT_SECRET
            } else {
                portal::LOGRELAY_SETTINGS
            };
            let detail = "a variable is set but unusable";
            return Err(vec![Step::failed(1, detail, error.to_string(), portal)]);
        }
    };
    let endpoint = &config.endpoint;
    let host = endpoint.base.host_str().unwrap_or("?").to_string();
    let summary = format!(
        "{host}, DCR {}, stream {}, api-version {API_VERSION}",
        endpoint.dcr_id, endpoint.stream
    );
    let host_notes = endpoint
        .host_warning(config.auth.cloud)
        .into_iter()
        .collect();
    let steps = vec![
        Step::ok(1, describe_config(&config)).with_notes(config.warnings.clone()),
        Step::ok(2, summary).with_notes(host_notes),
    ];
    Ok((config, steps))
}

/// Runs every step in order; a failure marks the later steps skipped.
pub async fn diagnose(
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    make_provider: ProviderFactory<'_>,
    connect_timeout: Duration,
) -> Diagnosis {
    let (config, mut steps) = match check_settings(lookup) {
        Ok(found) => found,
        Err(steps) => return Diagnosis::from_steps(steps),
    };

    // 3. Reachability. The client keeps the configured request timeout for the token and the
    // probe; each reachability check has its own shorter one.
    let http = match crate::http::build_client(config.tuning.request_timeout) {
        Ok(http) => http,
        Err(error) => {
            steps.push(Step::failed(
                3,
                error.to_string(),
                "report this as a bug",
                portal::NETWORK,
            ));
            return Diagnosis::from_steps(steps);
        }
    };
    let first = match &config.auth.credential {
        Credential::ManagedIdentity { endpoint, .. } => ("identity endpoint", endpoint.clone()),
        _ => ("Entra ID", config.auth.authority_host.clone()),
    };
    let mut reached = Vec::new();
    for (role, url) in [first, ("ingestion endpoint", config.endpoint.base.clone())] {
        match reach(&http, &url, connect_timeout).await {
            Ok(detail) => reached.push(format!("{role} {detail}")),
            Err(problem) => {
                steps.push(Step::failed(
                    3,
                    format!("{role}: {problem}"),
                    format!("make {} reachable from here: DNS, firewall or proxy allowing outbound HTTPS; check the host name is right", url.host_str().unwrap_or("?")),
                    portal::NETWORK,
                ));
                return Diagnosis::from_steps(steps);
            }
        }
    }
    steps.push(Step::ok(3, reached.join("; ")));

    // 4. Token, through the relay's token cache (the probe then reuses it).
    let tokens = match make_provider(&config, &http) {
        Ok(provider) => Arc::new(TokenCache::new(provider, Arc::new(SystemClock))),
        Err(error) => return Diagnosis::from_steps(with_token_failure(steps, &error)),
    };
    let token = match tokens.get().await {
        Ok(token) => token,
        Err(error) => return Diagnosis::from_steps(with_token_failure(steps, &error)),
    };
    let facts = describe_token(&token);
    let expected = audience_of_scope(&config.auth.scope);
    let notes = facts
        .audience
        .iter()
        .filter(|audience| audience_of_scope(audience) != expected)
        .map(|audience| {
            format!("the token's audience {audience} differs from {expected}; check AZURE_CLOUD")
        })
        .collect();
    let detail = format!(
        "token for {} (tenant {}, app {}), expires {}",
        facts.audience.as_deref().unwrap_or("?"),
        facts.tenant.as_deref().unwrap_or("?"),
        facts.app_id.as_deref().unwrap_or("?"),
        facts.expires_at
    );
    steps.push(Step::ok(4, detail).with_notes(notes));

    // 5. Probe ingestion.
    steps.push(probe(&config, http, tokens).await);
    Diagnosis::from_steps(steps)
}

fn with_token_failure(mut steps: Vec<Step>, error: &Error) -> Vec<Step> {
    let advice = explain_token_error(error);
    steps.push(Step::failed(
        4,
        error.to_string(),
        advice.fix,
        advice.portal,
    ));
    steps
}

/// The audience a token for `scope` should carry (`https://monitor.azure.com/.default` →
/// `https://monitor.azure.com`).
fn audience_of_scope(scope: &str) -> String {
    scope
        .trim_end_matches("/.default")
        .trim_end_matches('/')
        .to_string()
}

fn describe_config(config: &Config) -> String {
    let credential = match &config.auth.credential {
        Credential::ClientSecret(_) => "client secret (AZURE_CLIENT_SECRET, set)".to_string(),
        Credential::SecretArn(arn) => format!("client secret from Secrets Manager ({arn})"),
        Credential::ManagedIdentity { client_id, .. } => match client_id {
            Some(id) => format!("managed identity (user-assigned {id})"),
            None => "managed identity (system-assigned)".to_string(),
        },
        other => other.describe(),
    };
    format!(
        "tenant {}, client {}, {credential}, cloud {}",
        config.auth.tenant_id,
        config.auth.client_id,
        config.auth.cloud.name()
    )
}

/// DNS, TCP, and for https a TLS handshake (a HEAD request: any HTTP answer proves TLS).
async fn reach(http: &reqwest::Client, url: &Url, timeout: Duration) -> Result<String, String> {
    let host = url.host_str().ok_or("the URL has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let started = Instant::now();
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("DNS lookup of {host} timed out"))?
        .map_err(|error| format!("DNS lookup of {host} failed: {error}"))?;
    let addresses: BTreeSet<SocketAddr> = lookup.collect();
    let first = *addresses
        .iter()
        .next()
        .ok_or_else(|| format!("DNS: {host} has no addresses"))?;
    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(first))
        .await
        .map_err(|_| format!("TCP connect to {host}:{port} ({first}) timed out"))?
        .map_err(|error| format!("TCP connect to {host}:{port} ({first}) failed: {error}"))?;
    let tls = if url.scheme() == "https" {
        let mut root = url.clone();
        root.set_path("/");
        root.set_query(None);
        http.head(root)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| format!("TLS/HTTPS to {host}:{port} failed: {error}"))?;
        "TLS ok"
    } else {
        "plain HTTP, loopback"
    };
    Ok(format!(
        "{host}:{port} ({} address(es), TCP ok, {tls}, {} ms)",
        addresses.len(),
        started.elapsed().as_millis()
    ))
}
