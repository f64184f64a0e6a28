//! `logrelay doctor`: checks each link from configuration to a probe ingestion call, in
//! order, and says for a broken link what to fix and which portal step of Keeper's Azure
//! Monitor guide it belongs to.
//!
//! The explanations are pure functions (unit-tested here); the network work goes through the
//! crate's HTTP client and a [`TokenProvider`]. Nothing here ever prints a secret or a token.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use url::Url;

use crate::auth::{AccessToken, TokenProvider};
use crate::config::{Config, Credential, API_VERSION};
use crate::schema::KEEPER_COLUMNS;
use crate::Error;

/// `audit_event` of the one event the probe sends, so it is easy to find and filter out.
pub const PROBE_AUDIT_EVENT: &str = "logrelay_doctor_probe";

/// Every probe row's `EventId` starts with this.
pub const PROBE_EVENT_ID_PREFIX: &str = "logrelay-doctor-";

/// How long one reachability check (DNS, TCP, TLS) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where in Keeper's Azure Monitor guide (docs.keeper.io, "Azure Monitor Logs") each value
/// is set up. Named, not numbered: the guide's numbering changes between revisions.
pub mod portal {
    /// App registration: client and tenant ids.
    pub const APP_REGISTRATION: &str = "Keeper guide, \"Register an application\": Microsoft Entra ID > App registrations > your app > Overview (Application (client) ID, Directory (tenant) ID)";
    /// The client secret.
    pub const CLIENT_SECRET: &str = "Keeper guide, \"Create a client secret\": App registrations > your app > Certificates & secrets (copy the secret's Value when it is created, not its Secret ID)";
    /// The data collection endpoint.
    pub const DATA_COLLECTION_ENDPOINT: &str = "Keeper guide, \"Create a data collection endpoint\": Monitor > Data Collection Endpoints > your DCE > Overview (Logs Ingestion endpoint)";
    /// The custom table and its data collection rule.
    pub const TABLE_AND_RULE: &str = "Keeper guide, \"Create the custom table and data collection rule\": Log Analytics workspace > Tables > New custom log (DCR-based); the rule's JSON View shows immutableId and the stream name";
    /// The role assignment on the rule.
    pub const ROLE_ASSIGNMENT: &str = "Keeper guide, \"Assign permissions on the data collection rule\": your DCR > Access control (IAM) > Add role assignment > Monitoring Metrics Publisher > your app";
    /// The Endpoint URL the Keeper Admin Console (and logrelay) takes.
    pub const ENDPOINT_URL: &str = "Keeper guide, \"Configure Azure Monitor Logs in the Keeper Admin Console\": Endpoint URL = <endpoint>/dataCollectionRules/<immutable id>/streams/<stream>?api-version=2023-01-01";
    /// Not a portal step: the network path.
    pub const NETWORK: &str =
        "Not a portal step: allow outbound HTTPS (TCP 443) and DNS from where logrelay runs";
    /// Not a portal step: logrelay's own settings.
    pub const LOGRELAY_SETTINGS: &str =
        "Not a portal step: logrelay's environment (see README, Configuration)";
}

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

// ---------------------------------------------------------------------------------------
// Step 1: which variables are missing.
// ---------------------------------------------------------------------------------------

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
        if !set("AZURE_CLIENT_SECRET") && !set("AZURE_CLIENT_SECRET_ARN") {
            missing.push(
                "AZURE_CLIENT_SECRET (the client secret's Value; or AZURE_CLIENT_SECRET_ARN, or a managed identity)"
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

// ---------------------------------------------------------------------------------------
// Step 2: the endpoint URL, checked piece by piece.
// ---------------------------------------------------------------------------------------

/// What the endpoint check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFindings {
    /// A one-line description of a good URL.
    pub summary: String,
    /// Problems that stop ingestion, each with its fix.
    pub problems: Vec<String>,
    /// Observations that do not stop ingestion.
    pub notes: Vec<String>,
}

/// The endpoint URL as configured: the full variable, or one assembled from the three parts.
pub fn configured_endpoint(lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    if let Some(full) = get("LOGS_INGESTION_ENDPOINT") {
        return Some(full.trim().to_string());
    }
    let dce = get("LOGS_INGESTION_DCE")?;
    let dcr = get("LOGS_INGESTION_DCR_ID")?;
    let stream =
        get("LOGS_INGESTION_STREAM").unwrap_or_else(|| crate::schema::DEFAULT_STREAM.to_string());
    Some(format!(
        "{}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
        dce.trim().trim_end_matches('/'),
        dcr.trim(),
        stream.trim()
    ))
}

/// True for `dcr-` followed by 32 lowercase hex characters (§1.1).
pub fn is_dcr_immutable_id(id: &str) -> bool {
    id.strip_prefix("dcr-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks an endpoint URL the way a person would, naming each mistake people make.
pub fn check_endpoint_url(raw: &str) -> EndpointFindings {
    let mut findings = EndpointFindings::default();
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(error) => {
            findings.problems.push(format!(
                "`{raw}` is not a URL ({error}); it should look like https://<name>.<region>-1.ingest.monitor.azure.com/dataCollectionRules/dcr-<32 hex>/streams/Custom-<table>?api-version={API_VERSION}"
            ));
            return findings;
        }
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let loopback = crate::http::is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => findings
            .notes
            .push("plain http:// to a loopback address (a local emulator)".into()),
        "http" => findings.problems.push(
            "the URL uses http://; the Logs Ingestion API takes https:// only (TLS 1.2+)".into(),
        ),
        other => findings
            .problems
            .push(format!("unsupported scheme `{other}`; use https://")),
    }

    let ingest_host = [
        ".ingest.monitor.azure.com",
        ".ingest.monitor.azure.us",
        ".ingest.monitor.azure.cn",
    ]
    .iter()
    .any(|suffix| host.ends_with(suffix));
    let kind = if host.contains(".handler.control.monitor.azure") {
        findings.problems.push(format!(
            "{host} is the data collection endpoint's Configuration access endpoint; use its Logs Ingestion endpoint (…ingest.monitor.azure.com) instead"
        ));
        "configuration access endpoint"
    } else if host.ends_with(".ods.opinsights.azure.com") {
        findings.problems.push(format!(
            "{host} is a workspace's legacy HTTP Data Collector API address; the Logs Ingestion API needs a data collection endpoint (or a Direct DCR's own logs-ingestion endpoint)"
        ));
        "legacy Data Collector API"
    } else if host == "management.azure.com" || host.starts_with("portal.azure") {
        findings.problems.push(format!(
            "{host} is the Azure Resource Manager / portal address, not an ingestion endpoint; use the DCE's Logs Ingestion endpoint"
        ));
        "Azure Resource Manager"
    } else if ingest_host {
        "logs-ingestion endpoint (a DCE's, or a Direct DCR's own)"
    } else if loopback {
        "local endpoint"
    } else {
        findings.notes.push(format!(
            "{host} is not a *.ingest.monitor.azure.* host; fine for a private link or proxy, otherwise check the DCE's Logs Ingestion endpoint"
        ));
        "unrecognised host"
    };

    let segments: Vec<&str> = url
        .path_segments()
        .map(|parts| parts.filter(|part| !part.is_empty()).collect())
        .unwrap_or_default();
    let (dcr, stream) = match segments.as_slice() {
        ["dataCollectionRules", dcr, "streams", stream] => (Some(*dcr), Some(*stream)),
        [] => {
            findings.problems.push(format!(
                "the URL has only the endpoint; append /dataCollectionRules/<dcr immutable id>/streams/<stream>?api-version={API_VERSION}"
            ));
            (None, None)
        }
        other => {
            if other
                .iter()
                .any(|part| part.eq_ignore_ascii_case("subscriptions"))
            {
                findings.problems.push(
                    "the path is an Azure resource id (/subscriptions/…); the endpoint path is /dataCollectionRules/<immutable id>/streams/<stream>".into(),
                );
            } else {
                findings.problems.push(format!(
                    "the path `{}` is not /dataCollectionRules/<dcr immutable id>/streams/<stream>",
                    url.path()
                ));
            }
            (None, None)
        }
    };
    if let Some(dcr) = dcr {
        if !is_dcr_immutable_id(dcr) {
            findings.problems.push(format!(
                "`{dcr}` is not a DCR immutable id (`dcr-` followed by 32 hex characters); use the rule's immutableId from its JSON View, not its name or resource id"
            ));
        }
    }
    if let Some(stream) = stream {
        if !stream.starts_with("Custom-") {
            findings.problems.push(format!(
                "stream `{stream}` does not start with `Custom-`; stream names are the keys of the DCR's streamDeclarations, e.g. Custom-{stream}"
            ));
        }
    }
    let versions: Vec<String> = url
        .query_pairs()
        .filter(|(key, _)| key == "api-version")
        .map(|(_, value)| value.into_owned())
        .collect();
    match versions.as_slice() {
        [] => findings.notes.push(format!(
            "no api-version in the URL; logrelay sends api-version={API_VERSION}"
        )),
        [version] if version == API_VERSION => {}
        [version, ..] => findings.problems.push(format!(
            "api-version={version}; the Logs Ingestion API version logrelay speaks is {API_VERSION}"
        )),
    }
    findings.summary = format!(
        "{host} ({kind}), DCR {}, stream {}, api-version {API_VERSION}",
        dcr.unwrap_or("?"),
        stream.unwrap_or("?")
    );
    findings
}

// ---------------------------------------------------------------------------------------
// Step 4 and 5: what Entra ID and the ingestion endpoint answers mean.
// ---------------------------------------------------------------------------------------

/// A fix in plain words and the portal step it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub fix: String,
    pub portal: &'static str,
}

fn advice(fix: impl Into<String>, portal: &'static str) -> Advice {
    Advice {
        fix: fix.into(),
        portal,
    }
}

/// Explains a failed token request: each AADSTS code in words, and where to fix it.
pub fn explain_token_error(error: &Error) -> Advice {
    let text = match error {
        Error::Token { code, advice, .. } => format!("{code} {advice}"),
        Error::TokenTransport { host, reason } => {
            return advice(
                format!("Entra ID at {host} could not be reached or answered nonsense ({reason}); check AZURE_AUTHORITY_HOST / AZURE_CLOUD, proxies and outbound HTTPS"),
                portal::NETWORK,
            )
        }
        Error::MissingConfig { .. } | Error::InvalidConfig { .. } => {
            return advice(error.to_string(), portal::LOGRELAY_SETTINGS)
        }
        other => other.to_string(),
    };
    let has = |code: &str| {
        text.match_indices(code).any(|(at, _)| {
            // Whole code only: AADSTS700016 must not match AADSTS7000160.
            !text[at + code.len()..].starts_with(|c: char| c.is_ascii_digit())
        })
    };
    if has("7000215") {
        advice(
            "AADSTS7000215: the secret is not valid for this app. AZURE_CLIENT_SECRET must be the secret's Value (shown once, when it is created), not its Secret ID; create a new secret if the Value was not saved",
            portal::CLIENT_SECRET,
        )
    } else if has("7000222") {
        advice(
            "AADSTS7000222: the client secret has expired. Create a new secret and put its Value in AZURE_CLIENT_SECRET (and the Keeper Admin Console)",
            portal::CLIENT_SECRET,
        )
    } else if has("700016") {
        advice(
            "AADSTS700016: no application with AZURE_CLIENT_ID exists in tenant AZURE_TENANT_ID. Copy the Application (client) ID from the app registration's Overview, and check the tenant id is that app's directory",
            portal::APP_REGISTRATION,
        )
    } else if has("90002") {
        advice(
            "AADSTS90002: the tenant was not found. Check AZURE_TENANT_ID (Directory (tenant) ID) and that AZURE_CLOUD names the cloud the tenant lives in (public, usgovernment, china)",
            portal::APP_REGISTRATION,
        )
    } else if has("7000218") {
        advice(
            "AADSTS7000218: no secret was sent. Set AZURE_CLIENT_SECRET to the secret's Value",
            portal::CLIENT_SECRET,
        )
    } else if has("70011") {
        advice(
            "AADSTS70011: the scope was refused; AZURE_CLOUD must match the cloud of the tenant and the workspace",
            portal::LOGRELAY_SETTINGS,
        )
    } else if has("90055") || has("90024") {
        advice(
            "Entra ID is throttling this tenant; wait a minute and run doctor again",
            portal::NETWORK,
        )
    } else {
        advice(
            format!("Entra ID refused the token request: {text}"),
            portal::APP_REGISTRATION,
        )
    }
}

/// Explains the probe's HTTP answer; `None` for 204 (success).
pub fn explain_ingestion_status(status: u16, code: &str, message: &str) -> Option<Advice> {
    let service = if code.is_empty() && message.is_empty() {
        String::new()
    } else {
        format!(" (service said: {code} {message})")
    };
    Some(match status {
        204 => return None,
        401 => advice(
            format!("401: the endpoint did not accept the token. The token's audience must be the endpoint's cloud: AZURE_CLOUD=public for *.azure.com, usgovernment for *.azure.us, china for *.azure.cn{service}"),
            portal::LOGRELAY_SETTINGS,
        ),
        403 => advice(
            format!("403: the app may not write to this rule. Grant the role Monitoring Metrics Publisher on the data collection rule to the app (service principal); a new role assignment can take up to 30 minutes to take effect{service}"),
            portal::ROLE_ASSIGNMENT,
        ),
        404 if format!("{code} {message}").to_ascii_lowercase().contains("stream") => advice(
            format!("404: the stream is not declared in this rule. The URL's /streams/<name> (LOGS_INGESTION_STREAM) must be a key of the DCR's streamDeclarations, e.g. Custom-KeeperAuditEvents, spelled exactly{service}"),
            portal::TABLE_AND_RULE,
        ),
        404 => advice(
            format!("404: no such rule at this endpoint. Check the DCR immutable id (the rule's JSON View, immutableId: dcr-…) and that the endpoint is the one the rule is associated with; a wrong stream name also gives 404{service}"),
            portal::TABLE_AND_RULE,
        ),
        413 => advice(
            format!("413: the endpoint refused a one-event request as too large; a proxy in between may limit bodies, or the endpoint is not a Logs Ingestion endpoint{service}"),
            portal::NETWORK,
        ),
        400 => advice(
            format!("400: the rule refused the row. Make the stream declaration match `logrelay schema`{service}"),
            portal::TABLE_AND_RULE,
        ),
        429 | 500..=599 => advice(
            format!("{status}: the service is throttling or failing right now; run doctor again in a minute{service}"),
            portal::NETWORK,
        ),
        other => advice(
            format!("unexpected HTTP {other}{service}"),
            portal::ENDPOINT_URL,
        ),
    })
}

// ---------------------------------------------------------------------------------------
// Tokens: claims for display (never the token itself).
// ---------------------------------------------------------------------------------------

/// The claims of a JWT access token, decoded from its middle part WITHOUT verifying the
/// signature (for display only). `None` if it is not a JWT.
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Audience, tenant, app id and expiry of a token, as display text. Never the token.
pub fn describe_token(token: &AccessToken) -> TokenFacts {
    let claims = jwt_claims(token.secret.expose()).unwrap_or(Value::Null);
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let expires_at: chrono::DateTime<chrono::Utc> = token.expires_at.into();
    TokenFacts {
        audience: text("aud"),
        tenant: text("tid"),
        app_id: text("appid").or_else(|| text("azp")),
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        expires_in_secs: token
            .expires_at
            .duration_since(std::time::SystemTime::now())
            .map_or(0, |left| left.as_secs()),
    }
}

/// What `logrelay token` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenFacts {
    pub audience: Option<String>,
    pub tenant: Option<String>,
    pub app_id: Option<String>,
    pub expires_at: String,
    pub expires_in_secs: u64,
}

/// The audience a token for `scope` should carry (`https://monitor.azure.com/.default` →
/// `https://monitor.azure.com`).
fn audience_of_scope(scope: &str) -> String {
    scope
        .trim_end_matches("/.default")
        .trim_end_matches('/')
        .to_string()
}

// ---------------------------------------------------------------------------------------
// The probe row.
// ---------------------------------------------------------------------------------------

/// The one marked test event the probe sends, as a row of the Keeper table.
pub fn probe_row(now: chrono::DateTime<chrono::Utc>) -> Value {
    let time = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "TimeGenerated": time,
        "EventId": format!("{PROBE_EVENT_ID_PREFIX}{}", uuid::Uuid::new_v4().simple()),
        "audit_event": PROBE_AUDIT_EVENT,
        "category": "logrelay",
        "remote_address": "127.0.0.1",
        "client_version": concat!("logrelay ", env!("CARGO_PKG_VERSION")),
        "username": "logrelay-doctor",
        "enterprise_id": 0,
        "timestamp": time,
        "data": { "note": "Test event sent by `logrelay doctor`; safe to ignore." },
    })
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

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

/// Runs every step in order; a failure marks the later steps skipped.
pub async fn diagnose(
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    make_provider: ProviderFactory<'_>,
    connect_timeout: Duration,
) -> Diagnosis {
    let mut steps = Vec::new();

    // 1. Configuration.
    let missing = missing_variables(lookup);
    if !missing.is_empty() {
        steps.push(Step::failed(
            1,
            format!("missing: {}", missing.join(", ")),
            missing
                .iter()
                .map(|variable| format!("set {variable}"))
                .collect::<Vec<_>>()
                .join("\n"),
            if missing
                .iter()
                .all(|name| name.starts_with("LOGS_INGESTION"))
            {
                portal::ENDPOINT_URL
            } else {
                portal::APP_REGISTRATION
            },
        ));
        return Diagnosis::from_steps(steps);
    }
    let endpoint_raw = configured_endpoint(lookup).unwrap_or_default();
    let findings = check_endpoint_url(&endpoint_raw);
    let config = match Config::from_lookup(|name| lookup(name).filter(|v| !v.trim().is_empty())) {
        Ok(config) => config,
        Err(error) => {
            let about_endpoint = matches!(&error, Error::InvalidConfig { name, .. } if name.starts_with("LOGS_INGESTION"))
                || matches!(&error, Error::MissingConfig { name, .. } if name.starts_with("LOGS_INGESTION"));
            if about_endpoint {
                steps.push(Step::ok(1, "every required variable is set"));
                let mut problems = findings.problems.clone();
                problems.push(error.to_string());
                steps.push(
                    Step::failed(
                        2,
                        endpoint_raw.clone(),
                        problems.join("\n"),
                        portal::ENDPOINT_URL,
                    )
                    .with_notes(findings.notes),
                );
            } else {
                let portal = if error.to_string().contains("SECRET") {
                    portal::CLIENT_SECRET
                } else {
                    portal::LOGRELAY_SETTINGS
                };
                steps.push(Step::failed(
                    1,
                    "a variable is set but unusable",
                    error.to_string(),
                    portal,
                ));
            }
            return Diagnosis::from_steps(steps);
        }
    };
    steps.push(Step::ok(1, describe_config(&config)).with_notes(config.warnings.clone()));

    // 2. Endpoint URL.
    if findings.problems.is_empty() {
        steps.push(Step::ok(2, findings.summary).with_notes(findings.notes));
    } else {
        steps.push(
            Step::failed(
                2,
                endpoint_raw,
                findings.problems.join("\n"),
                portal::ENDPOINT_URL,
            )
            .with_notes(findings.notes),
        );
        return Diagnosis::from_steps(steps);
    }

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
    let mut targets = vec![("ingestion endpoint", config.endpoint.base.clone())];
    match &config.auth.credential {
        Credential::ManagedIdentity { endpoint, .. } => {
            targets.insert(0, ("identity endpoint", endpoint.clone()))
        }
        _ => targets.insert(0, ("Entra ID", config.auth.authority_host.clone())),
    }
    let mut reached = Vec::new();
    for (role, url) in &targets {
        match reach(&http, url, connect_timeout).await {
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

    // 4. Token.
    let token = match make_provider(&config, &http) {
        Ok(provider) => provider.fetch().await,
        Err(error) => Err(error),
    };
    let token = match token {
        Ok(token) => token,
        Err(error) => {
            let advice = explain_token_error(&error);
            steps.push(Step::failed(
                4,
                error.to_string(),
                advice.fix,
                advice.portal,
            ));
            return Diagnosis::from_steps(steps);
        }
    };
    let facts = describe_token(&token);
    let expected = audience_of_scope(&config.auth.scope);
    let mut notes = Vec::new();
    if let Some(audience) = &facts.audience {
        if audience_of_scope(audience) != expected {
            notes.push(format!(
                "the token's audience {audience} differs from {expected}; check AZURE_CLOUD"
            ));
        }
    }
    steps.push(
        Step::ok(
            4,
            format!(
                "token for {} (tenant {}, app {}), expires {}",
                facts.audience.as_deref().unwrap_or("?"),
                facts.tenant.as_deref().unwrap_or("?"),
                facts.app_id.as_deref().unwrap_or("?"),
                facts.expires_at
            ),
        )
        .with_notes(notes),
    );

    // 5. Probe ingestion.
    steps.push(probe(&http, &config, &token).await);
    Diagnosis::from_steps(steps)
}

fn describe_config(config: &Config) -> String {
    let credential = match &config.auth.credential {
        Credential::ClientSecret(_) => "client secret (AZURE_CLIENT_SECRET, set)".to_string(),
        Credential::SecretArn(arn) => format!("client secret from Secrets Manager ({arn})"),
        Credential::ManagedIdentity { client_id, .. } => match client_id {
            Some(id) => format!("managed identity (user-assigned {id})"),
            None => "managed identity (system-assigned)".to_string(),
        },
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

/// Sends the one marked probe event and explains the answer.
async fn probe(http: &reqwest::Client, config: &Config, token: &AccessToken) -> Step {
    let row = probe_row(chrono::Utc::now());
    let event_id = row["EventId"].as_str().unwrap_or_default().to_string();
    let body = Value::Array(vec![row]).to_string();
    let url = config.endpoint.upload_url();
    let response = http
        .post(url.clone())
        .bearer_auth(token.secret.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            return Step::failed(
                5,
                format!("the request failed: {}", error.without_url()),
                "check the network path to the ingestion endpoint",
                portal::NETWORK,
            )
        }
    };
    let status = response.status().as_u16();
    let header_code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.unwrap_or_default();
    let (code, message) = error_body(&body);
    let code = header_code.unwrap_or(code);
    match explain_ingestion_status(status, &code, &message) {
        None => Step::ok(
            5,
            format!(
                "204: one test event accepted (audit_event {PROBE_AUDIT_EVENT}, EventId {event_id})"
            ),
        ),
        Some(advice) => Step::failed(
            5,
            format!("HTTP {status} {code}").trim().to_string(),
            advice.fix,
            advice.portal,
        ),
    }
}

/// `error.code` and `error.message` of an Azure error body, when there is one.
fn error_body(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| {
        value["error"][name]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect::<String>()
    };
    (field("code"), field("message"))
}

/// The probe's columns are exactly the table's (checked in tests).
#[doc(hidden)]
pub fn probe_columns_match_schema(row: &Value) -> bool {
    let names: BTreeSet<&str> = KEEPER_COLUMNS.iter().map(|column| column.name).collect();
    row.as_object()
        .is_some_and(|object| object.keys().map(String::as_str).collect::<BTreeSet<_>>() == names)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GOOD: &str = "https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-KeeperAuditEvents?api-version=2023-01-01";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_correct_endpoint_url_has_no_problems() {
        let findings = check_endpoint_url(GOOD);
        assert!(findings.problems.is_empty(), "{findings:?}");
        assert!(findings
            .summary
            .contains("dcr-0123456789abcdef0123456789abcdef"));
        assert!(findings.summary.contains("Custom-KeeperAuditEvents"));
    }

    #[test]
    fn the_configuration_access_endpoint_is_named_as_the_wrong_endpoint() {
        let url = GOOD.replace(".ingest.", ".handler.control.");
        let findings = check_endpoint_url(&url);
        assert!(
            findings.problems[0].contains("Configuration access endpoint"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_rule_name_instead_of_the_immutable_id_is_named() {
        let url = GOOD.replace(
            "dcr-0123456789abcdef0123456789abcdef",
            "KeeperSecurityEventLogs_DCR",
        );
        let findings = check_endpoint_url(&url);
        assert!(
            findings.problems.iter().any(|p| p.contains("immutableId")),
            "{findings:?}"
        );
    }

    #[test]
    fn a_stream_without_the_custom_prefix_is_named() {
        let url = GOOD.replace("Custom-KeeperAuditEvents", "KeeperAuditEvents_CL");
        let findings = check_endpoint_url(&url);
        assert!(
            findings.problems.iter().any(|p| p.contains("Custom-")),
            "{findings:?}"
        );
    }

    #[test]
    fn a_wrong_api_version_and_a_missing_path_are_named() {
        let findings = check_endpoint_url(&GOOD.replace("2023-01-01", "2021-11-01-preview"));
        assert!(findings
            .problems
            .iter()
            .any(|p| p.contains("api-version=2021-11-01-preview")));
        let findings =
            check_endpoint_url("https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com");
        assert!(findings
            .problems
            .iter()
            .any(|p| p.contains("append /dataCollectionRules")));
    }

    #[test]
    fn plain_http_is_a_problem_except_to_loopback() {
        assert!(!check_endpoint_url(&GOOD.replace("https://", "http://"))
            .problems
            .is_empty());
        let local = "http://127.0.0.1:4000/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-X?api-version=2023-01-01";
        assert!(check_endpoint_url(local).problems.is_empty());
    }

    #[test]
    fn missing_variables_are_listed_by_name() {
        let missing = missing_variables(&lookup(&[("AZURE_CLIENT_ID", "x")]));
        let text = missing.join(" ");
        assert!(text.contains("AZURE_TENANT_ID"));
        assert!(text.contains("AZURE_CLIENT_SECRET"));
        assert!(text.contains("LOGS_INGESTION_ENDPOINT"));
        assert!(!text.contains("AZURE_CLIENT_ID"));
        let with_identity = missing_variables(&lookup(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("LOGS_INGESTION_ENDPOINT", GOOD),
        ]));
        assert!(with_identity.is_empty(), "{with_identity:?}");
    }

    #[test]
    fn the_endpoint_can_be_assembled_from_three_parts() {
        let raw = configured_endpoint(&lookup(&[
            (
                "LOGS_INGESTION_DCE",
                "https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com/",
            ),
            (
                "LOGS_INGESTION_DCR_ID",
                "dcr-0123456789abcdef0123456789abcdef",
            ),
            ("LOGS_INGESTION_STREAM", "Custom-KeeperAuditEvents"),
        ]))
        .unwrap();
        assert_eq!(raw, GOOD);
    }

    fn token_error(code: &str, advice: &str) -> Error {
        Error::Token {
            code: code.into(),
            advice: advice.into(),
            permanent: true,
        }
    }

    #[test]
    fn each_aadsts_code_is_explained_with_its_portal_step() {
        let secret_id = explain_token_error(&token_error(
            "AADSTS7000215",
            "Invalid client secret provided.",
        ));
        assert!(secret_id.fix.contains("Value") && secret_id.fix.contains("Secret ID"));
        assert_eq!(secret_id.portal, portal::CLIENT_SECRET);
        let expired = explain_token_error(&token_error("invalid_client", "AADSTS7000222: expired"));
        assert!(expired.fix.contains("expired"));
        let unknown_app =
            explain_token_error(&token_error("AADSTS700016", "not found in the directory"));
        assert!(unknown_app.fix.contains("AZURE_CLIENT_ID"));
        assert_eq!(unknown_app.portal, portal::APP_REGISTRATION);
        let tenant = explain_token_error(&token_error("AADSTS90002", "Tenant not found"));
        assert!(tenant.fix.contains("AZURE_TENANT_ID") && tenant.fix.contains("AZURE_CLOUD"));
        // A longer code is not mistaken for a shorter one.
        let other = explain_token_error(&token_error("AADSTS7000160", "something else"));
        assert!(!other.fix.contains("AADSTS700016:"), "{other:?}");
    }

    #[test]
    fn each_ingestion_status_is_explained() {
        assert!(explain_ingestion_status(204, "", "").is_none());
        let forbidden = explain_ingestion_status(403, "OperationFailed", "no access").unwrap();
        assert!(
            forbidden.fix.contains("Monitoring Metrics Publisher")
                && forbidden.fix.contains("30 minutes")
        );
        assert_eq!(forbidden.portal, portal::ROLE_ASSIGNMENT);
        let not_found = explain_ingestion_status(
            404,
            "NotFound",
            "Data collection rule with immutable Id 'x' not found.",
        )
        .unwrap();
        assert!(not_found.fix.contains("immutable id") && not_found.fix.contains("stream"));
        let no_stream =
            explain_ingestion_status(404, "InvalidStream", "Stream 'Custom-X' is not declared")
                .unwrap();
        assert!(
            no_stream.fix.contains("streamDeclarations") && !no_stream.fix.contains("immutable id")
        );
        assert!(explain_ingestion_status(401, "", "")
            .unwrap()
            .fix
            .contains("AZURE_CLOUD"));
        assert!(
            explain_ingestion_status(413, "ContentLengthLimitExceeded", "")
                .unwrap()
                .fix
                .starts_with("413")
        );
    }

    #[test]
    fn jwt_claims_are_read_from_the_middle_part() {
        let claims =
            json!({"aud": "https://monitor.azure.com", "tid": "t", "appid": "a", "exp": 1});
        let middle = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("eyJhbGciOiJub25lIn0.{middle}.c2ln");
        assert_eq!(jwt_claims(&token).unwrap(), claims);
        assert!(jwt_claims("not-a-jwt").is_none());
    }

    #[test]
    fn the_probe_row_is_marked_and_has_exactly_the_table_columns() {
        let row = probe_row(chrono::Utc::now());
        assert!(probe_columns_match_schema(&row), "{row}");
        assert_eq!(row["audit_event"], PROBE_AUDIT_EVENT);
        assert!(row["EventId"]
            .as_str()
            .unwrap()
            .starts_with(PROBE_EVENT_ID_PREFIX));
    }

    #[test]
    fn later_steps_are_skipped_after_a_failure_and_the_render_names_the_fix() {
        let diagnosis = Diagnosis::from_steps(vec![Step::failed(
            1,
            "missing: AZURE_TENANT_ID",
            "set AZURE_TENANT_ID",
            portal::APP_REGISTRATION,
        )]);
        assert!(!diagnosis.ok);
        assert_eq!(diagnosis.steps.len(), 5);
        assert!(diagnosis.steps[1..]
            .iter()
            .all(|s| s.status == Status::Skipped));
        let text = diagnosis.render();
        assert!(text.starts_with("✗ 1. Configuration parsed: missing: AZURE_TENANT_ID\n"));
        assert!(text.contains("fix: set AZURE_TENANT_ID"));
        assert!(text.contains("where: Keeper guide"));
        assert!(text.contains("- 5. Probe ingestion call"));
    }

    #[tokio::test]
    async fn missing_configuration_fails_the_first_step_without_network() {
        let provider = |_: &Config, _: &reqwest::Client| -> crate::Result<Arc<dyn TokenProvider>> {
            panic!("no token request when configuration is missing")
        };
        let diagnosis = diagnose(&lookup(&[]), &provider, Duration::from_millis(100)).await;
        assert_eq!(diagnosis.failed_step().unwrap().name, "configuration");
    }
}
