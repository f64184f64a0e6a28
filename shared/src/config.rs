//! Configuration, read once from the environment (Azure SDK names where they exist) and
//! validated with messages a person can act on.

use std::time::Duration;

use url::Url;

use crate::http::{is_loopback, require_tls_or_loopback};
use crate::secret::Secret;
use crate::{Error, Result};

/// Logs Ingestion API version. Source: azure-monitor-protocol.md §1.1.
pub const API_VERSION: &str = "2023-01-01";

/// Custom stream names begin with this. Source: azure-monitor-protocol.md §1.1 (DCR structure).
pub const CUSTOM_STREAM_PREFIX: &str = "Custom-";

/// DCR immutable ids are `dcr-` followed by this many hex characters. Source: §1.1.
pub const DCR_ID_HEX_LEN: usize = 32;

/// The form of a full endpoint URL, shown in error messages.
pub const ENDPOINT_URL_FORM: &str = "https://<dce-name>.<region>-1.ingest.monitor.azure.com/dataCollectionRules/dcr-<32 hex>/streams/Custom-<Stream>?api-version=2023-01-01";

const ENDPOINT_VAR: &str = "LOGS_INGESTION_ENDPOINT";
const DCE_VAR: &str = "LOGS_INGESTION_DCE";
const DCR_VAR: &str = "LOGS_INGESTION_DCR_ID";
const STREAM_VAR: &str = "LOGS_INGESTION_STREAM";

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

impl Cloud {
    /// Parses `AZURE_CLOUD` (case-insensitive; the Azure CLI / SDK names are accepted too).
    pub fn parse(value: &str) -> Option<Cloud> {
        match value.trim().to_ascii_lowercase().as_str() {
            "public" | "azurepubliccloud" | "azurecloud" | "azure" | "global" => {
                Some(Cloud::Public)
            }
            "usgovernment" | "azureusgovernment" | "azureusgovernmentcloud" | "usgov" => {
                Some(Cloud::UsGovernment)
            }
            "china" | "azurechinacloud" | "21vianet" => Some(Cloud::China),
            _ => None,
        }
    }

    /// The short name used in `AZURE_CLOUD`.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGovernment => "usgovernment",
            Cloud::China => "china",
        }
    }

    /// Entra authority host. Source: azure-monitor-protocol.md §2.2 (national clouds page).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// Token scope for the Logs Ingestion API. Source: azure-monitor-protocol.md §1.2, §2.1.
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://monitor.azure.com/.default",
            Cloud::UsGovernment => "https://monitor.azure.us/.default",
            Cloud::China => "https://monitor.azure.cn/.default",
        }
    }

    /// Top-level domain of this cloud's ingestion hosts (`*.ingest.monitor.azure.<tld>`).
    fn ingestion_tld(self) -> &'static str {
        match self {
            Cloud::Public => "com",
            Cloud::UsGovernment => "us",
            Cloud::China => "cn",
        }
    }
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

impl Credential {
    /// A short description for logs and `logrelay doctor`; never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credential::ClientSecret(_) => {
                "client secret (AZURE_CLIENT_SECRET, set (hidden))".into()
            }
            Credential::SecretArn(arn) => format!("client secret from Secrets Manager ({arn})"),
            Credential::ManagedIdentity { client_id, .. } => match client_id {
                Some(id) => format!("managed identity (user-assigned, client id {id})"),
                None => "managed identity (system-assigned)".into(),
            },
        }
    }
}

/// Everything needed to get a token.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub cloud: Cloud,
    /// `AZURE_TENANT_ID`; empty only for a managed identity configured without it.
    pub tenant_id: String,
    /// `AZURE_CLIENT_ID`; empty only for a system-assigned managed identity.
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
    /// `LOGRELAY_CONCURRENCY`: requests in flight at once (default 16: at 50 ms to Azure one
    /// process then sustains one DCR's 2 GB a minute; see BENCHMARKS.md).
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

/// Looks a variable up; empty or whitespace-only values count as unset.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// Reads and validates the configuration from any variable lookup (tests pass a map).
    ///
    /// Values are trimmed (pasted values often carry a newline) and empty ones count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let mut warnings = Vec::new();
        let auth = read_auth(&get, &mut warnings)?;
        let endpoint = read_endpoint(&get, &mut warnings)?;
        warnings.extend(endpoint.host_warning(auth.cloud));
        let tuning = read_tuning(&get)?;
        if tuning.request_timeout > tuning.deadline {
            warnings.push(format!(
                "LOGRELAY_REQUEST_TIMEOUT_SECS ({}) is longer than LOGRELAY_DEADLINE_SECS ({}): a single slow attempt can use the whole deadline",
                tuning.request_timeout.as_secs(),
                tuning.deadline.as_secs()
            ));
        }
        Ok(Config {
            auth,
            endpoint,
            tuning,
            warnings,
        })
    }

    /// The effective settings as (name, value) pairs for `logrelay doctor`; secrets show as
    /// `set (hidden)`.
    pub fn redacted_summary(&self) -> Vec<(&'static str, String)> {
        let auth = &self.auth;
        let or_unset = |value: &str| {
            if value.is_empty() {
                "(not set)".to_string()
            } else {
                value.to_string()
            }
        };
        let mut summary = vec![
            ("AZURE_CLOUD", auth.cloud.name().to_string()),
            ("AZURE_TENANT_ID", or_unset(&auth.tenant_id)),
            ("AZURE_CLIENT_ID", or_unset(&auth.client_id)),
            ("credential", auth.credential.describe()),
        ];
        match &auth.credential {
            Credential::ClientSecret(_) => {
                summary.push(("AZURE_CLIENT_SECRET", HIDDEN.to_string()));
            }
            Credential::SecretArn(arn) => summary.push(("AZURE_CLIENT_SECRET_ARN", arn.clone())),
            Credential::ManagedIdentity { endpoint, .. } => {
                summary.push(("IDENTITY_ENDPOINT", endpoint.to_string()));
                summary.push(("IDENTITY_HEADER", HIDDEN.to_string()));
            }
        }
        let tuning = &self.tuning;
        summary.extend([
            ("authority host", auth.authority_host.to_string()),
            ("token scope", auth.scope.clone()),
            (
                "LOGS_INGESTION_ENDPOINT",
                self.endpoint.upload_url().to_string(),
            ),
            ("DCR immutable id", self.endpoint.dcr_id.clone()),
            ("stream", self.endpoint.stream.clone()),
            ("LOGRELAY_CONCURRENCY", tuning.concurrency.to_string()),
            ("LOGRELAY_MAX_ATTEMPTS", tuning.max_attempts.to_string()),
            (
                "LOGRELAY_DEADLINE_SECS",
                tuning.deadline.as_secs().to_string(),
            ),
            ("LOGRELAY_BATCH_BYTES", tuning.batch_bytes.to_string()),
            (
                "LOGRELAY_REQUEST_TIMEOUT_SECS",
                tuning.request_timeout.as_secs().to_string(),
            ),
            (
                "LOGRELAY_MAX_DECOMPRESSED_BYTES",
                tuning.max_decompressed_bytes.to_string(),
            ),
        ]);
        summary
    }
}

/// How a secret value appears in summaries.
const HIDDEN: &str = "set (hidden)";

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn read_auth(get: Lookup<'_>, warnings: &mut Vec<String>) -> Result<AuthConfig> {
    let cloud = match get("AZURE_CLOUD") {
        None => Cloud::Public,
        Some(value) => Cloud::parse(&value).ok_or_else(|| {
            invalid(
                "AZURE_CLOUD",
                format!("unknown cloud `{value}`; use public (default), usgovernment or china"),
            )
        })?,
    };
    let authority_host = match get("AZURE_AUTHORITY_HOST") {
        Some(value) => {
            let url = parse_authority_host(&value)?;
            if let Some(other) = known_authority_cloud(&url).filter(|other| *other != cloud) {
                warnings.push(format!(
                    "AZURE_AUTHORITY_HOST is the {} cloud's sign-in host but AZURE_CLOUD is {}: the token scope will not match; set AZURE_CLOUD={}",
                    other.name(),
                    cloud.name(),
                    other.name()
                ));
            }
            url
        }
        None => Url::parse(cloud.authority_host())
            .map_err(|error| invalid("AZURE_CLOUD", error.to_string()))?,
    };

    let tenant_id = get("AZURE_TENANT_ID");
    let client_id = get("AZURE_CLIENT_ID");
    let credential = read_credential(get, client_id.clone(), warnings)?;
    let managed = matches!(credential, Some(Credential::ManagedIdentity { .. }));
    let tenant_id = match tenant_id {
        Some(tenant) => validate_tenant(&tenant)?,
        None if managed => String::new(),
        None => {
            return Err(Error::MissingConfig {
                name: "AZURE_TENANT_ID",
                hint: "the Directory (tenant) ID from the app registration's Overview page",
            })
        }
    };
    let client_id = match client_id {
        Some(client) => {
            if !looks_like_guid(&client) {
                warnings.push(format!(
                    "AZURE_CLIENT_ID `{client}` is not a GUID; it should be the Application (client) ID from the app registration's Overview page"
                ));
            }
            client
        }
        None if managed => String::new(),
        None => {
            return Err(Error::MissingConfig {
                name: "AZURE_CLIENT_ID",
                hint: "the Application (client) ID from the app registration's Overview page",
            })
        }
    };
    let credential = credential.ok_or(Error::MissingConfig {
        name: "AZURE_CLIENT_SECRET",
        hint: "the client secret's Value from Certificates & secrets; alternatives: AZURE_CLIENT_SECRET_ARN (AWS Secrets Manager) or a managed identity (IDENTITY_ENDPOINT + IDENTITY_HEADER, set by App Service)",
    })?;
    Ok(AuthConfig {
        cloud,
        tenant_id,
        client_id,
        credential,
        authority_host,
        scope: cloud.scope().to_string(),
    })
}

/// The credential in order of precedence: secret, secret ARN, managed identity; `None` if none.
fn read_credential(
    get: Lookup<'_>,
    client_id: Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<Credential>> {
    if let Some(secret) = get("AZURE_CLIENT_SECRET") {
        if get("AZURE_CLIENT_SECRET_ARN").is_some() {
            warnings.push(
                "both AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_ARN are set; AZURE_CLIENT_SECRET is used".into(),
            );
        }
        if looks_like_guid(&secret) {
            warnings.push(
                "AZURE_CLIENT_SECRET looks like a GUID, which is usually the secret's *Secret ID*; Entra needs its *Value* (shown once when the secret is created)".into(),
            );
        }
        return Ok(Some(Credential::ClientSecret(Secret::new(secret))));
    }
    if let Some(arn) = get("AZURE_CLIENT_SECRET_ARN") {
        // Secrets Manager also takes a plain secret name; an ARN must be a Secrets Manager one.
        if arn.starts_with("arn:") && !arn.contains(":secretsmanager:") {
            return Err(invalid(
                "AZURE_CLIENT_SECRET_ARN",
                format!("`{arn}` is not a Secrets Manager ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"),
            ));
        }
        return Ok(Some(Credential::SecretArn(arn)));
    }
    match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
        (Some(endpoint), Some(header)) => {
            let endpoint = parse_identity_endpoint(&endpoint)?;
            Ok(Some(Credential::ManagedIdentity {
                endpoint,
                header: Secret::new(header),
                client_id,
            }))
        }
        (Some(_), None) => Err(Error::MissingConfig {
            name: "IDENTITY_HEADER",
            hint: "IDENTITY_ENDPOINT is set, so a managed identity is meant; App Service sets both once the identity is enabled",
        }),
        (None, Some(_)) => Err(Error::MissingConfig {
            name: "IDENTITY_ENDPOINT",
            hint: "IDENTITY_HEADER is set, so a managed identity is meant; App Service sets both once the identity is enabled",
        }),
        (None, None) => Ok(None),
    }
}

fn parse_identity_endpoint(value: &str) -> Result<Url> {
    let url = Url::parse(value).map_err(|error| {
        invalid(
            "IDENTITY_ENDPOINT",
            format!(
                "not a URL ({error}); App Service sets it, e.g. http://localhost:8081/msi/token"
            ),
        )
    })?;
    // The platform's identity endpoint is local: loopback, or link-local on some hosts.
    let link_local = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_link_local());
    if url.scheme() == "http" && link_local {
        return Ok(url);
    }
    require_tls_or_loopback("IDENTITY_ENDPOINT", &url)?;
    Ok(url)
}

/// A host given with or without its scheme (https assumed), as a URL.
fn parse_host_url(name: &str, value: &str, example: &str) -> Result<Url> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    Url::parse(&with_scheme).map_err(|error| {
        invalid(
            name,
            format!("`{value}` is not a URL ({error}); expected e.g. {example}"),
        )
    })
}

fn parse_authority_host(value: &str) -> Result<Url> {
    const NAME: &str = "AZURE_AUTHORITY_HOST";
    let url = parse_host_url(NAME, value, "https://login.microsoftonline.us")?;
    require_tls_or_loopback(NAME, &url)?;
    if url.host_str().is_none() {
        return Err(invalid(NAME, "the URL has no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            NAME,
            format!(
                "`{value}` has a path or query; give only the host, e.g. https://login.microsoftonline.us (the tenant goes in AZURE_TENANT_ID)"
            ),
        ));
    }
    Ok(url)
}

/// The cloud a well-known sign-in host belongs to (§2.2, including the older aliases).
fn known_authority_cloud(url: &Url) -> Option<Cloud> {
    let host = url.host_str()?.to_ascii_lowercase();
    match host.as_str() {
        "login.microsoftonline.com"
        | "login.microsoft.com"
        | "login.windows.net"
        | "sts.windows.net" => Some(Cloud::Public),
        "login.microsoftonline.us" | "login.usgovcloudapi.net" => Some(Cloud::UsGovernment),
        "login.partner.microsoftonline.cn" | "login.chinacloudapi.cn" => Some(Cloud::China),
        _ => None,
    }
}

fn validate_tenant(tenant: &str) -> Result<String> {
    const NAME: &str = "AZURE_TENANT_ID";
    if ["common", "organizations", "consumers"]
        .iter()
        .any(|alias| tenant.eq_ignore_ascii_case(alias))
    {
        return Err(invalid(
            NAME,
            format!("`{tenant}` cannot issue app-only tokens; use the Directory (tenant) ID GUID"),
        ));
    }
    let well_formed = tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !well_formed {
        return Err(invalid(
            NAME,
            "expected the Directory (tenant) ID, a GUID (or a domain such as contoso.onmicrosoft.com), not a URL",
        ));
    }
    Ok(tenant.to_string())
}

/// True for the 8-4-4-4-12 hex form.
fn looks_like_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn read_endpoint(get: Lookup<'_>, warnings: &mut Vec<String>) -> Result<IngestionEndpoint> {
    let dce = get(DCE_VAR);
    let dcr = get(DCR_VAR);
    let stream = get(STREAM_VAR);
    if let Some(url) = get(ENDPOINT_VAR) {
        if dce.is_some() || dcr.is_some() || stream.is_some() {
            warnings.push(format!(
                "{ENDPOINT_VAR} is set, so {DCE_VAR}, {DCR_VAR} and {STREAM_VAR} are ignored"
            ));
        }
        return parse_endpoint_url(&url);
    }
    let (dce, dcr, stream) = match (dce, dcr, stream) {
        (None, None, None) => {
            return Err(Error::MissingConfig {
                name: ENDPOINT_VAR,
                hint: "the full URL as the Keeper Admin Console takes it, https://<dce>/dataCollectionRules/<dcr-immutable-id>/streams/Custom-<Stream>?api-version=2023-01-01; or the three parts LOGS_INGESTION_DCE, LOGS_INGESTION_DCR_ID and LOGS_INGESTION_STREAM",
            })
        }
        (Some(dce), Some(dcr), Some(stream)) => (dce, dcr, stream),
        (dce, dcr, _) => {
            let name = if dce.is_none() {
                DCE_VAR
            } else if dcr.is_none() {
                DCR_VAR
            } else {
                STREAM_VAR
            };
            return Err(Error::MissingConfig {
                name,
                hint: "the endpoint is given in three parts, so LOGS_INGESTION_DCE, LOGS_INGESTION_DCR_ID and LOGS_INGESTION_STREAM are all needed (or set the full LOGS_INGESTION_ENDPOINT URL instead)",
            });
        }
    };
    Ok(IngestionEndpoint {
        base: parse_dce(&dce)?,
        dcr_id: validate_dcr_id(DCR_VAR, &dcr)?,
        stream: validate_stream(STREAM_VAR, &stream)?,
    })
}

/// Parses a full Logs Ingestion URL exactly as the Keeper Admin Console takes it:
/// `https://<host>/dataCollectionRules/<dcr-immutable-id>/streams/<stream>?api-version=2023-01-01`.
///
/// The `api-version` may be left out (it is added when uploading); any other value is refused.
/// Errors name `LOGS_INGESTION_ENDPOINT` and say what the correct form is.
pub fn parse_endpoint_url(value: &str) -> Result<IngestionEndpoint> {
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    let url = Url::parse(value).map_err(|_| {
        let reason = if value.starts_with("dcr-") {
            format!("`{value}` looks like a DCR Immutable ID, not the full URL; expected {ENDPOINT_URL_FORM}")
        } else {
            format!("`{value}` is not a URL; expected {ENDPOINT_URL_FORM}")
        };
        invalid(ENDPOINT_VAR, reason)
    })?;
    check_service_host(ENDPOINT_VAR, &url)?;
    require_tls_or_loopback(ENDPOINT_VAR, &url)?;
    check_no_userinfo(ENDPOINT_VAR, &url)?;

    let segments: Vec<String> = url
        .path_segments()
        .map(|segments| {
            segments
                .filter(|segment| !segment.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let rules_at = segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("dataCollectionRules"));
    let (dcr, stream) = match (rules_at, segments.as_slice()) {
        (None, []) => {
            return Err(invalid(
                ENDPOINT_VAR,
                format!(
                    "this is only the endpoint host; the full URL is {}dataCollectionRules/<DCR Immutable ID>/streams/Custom-<Stream>?api-version={API_VERSION} (or set this host as {DCE_VAR} with {DCR_VAR} and {STREAM_VAR})",
                    origin(&url)
                ),
            ))
        }
        (None, _) => {
            return Err(invalid(
                ENDPOINT_VAR,
                format!("the path `{}` has no /dataCollectionRules/ part; expected {ENDPOINT_URL_FORM}", url.path()),
            ))
        }
        (Some(0), [_, dcr, streams, stream]) if streams.eq_ignore_ascii_case("streams") => {
            (dcr.as_str(), stream.as_str())
        }
        (Some(_), _) => {
            return Err(invalid(
                ENDPOINT_VAR,
                format!("the path `{}` is not /dataCollectionRules/<DCR Immutable ID>/streams/<stream>; expected {ENDPOINT_URL_FORM}", url.path()),
            ))
        }
    };
    for (key, version) in url.query_pairs() {
        if key.eq_ignore_ascii_case("api-version") {
            if version != API_VERSION {
                return Err(invalid(
                    ENDPOINT_VAR,
                    format!("api-version `{version}` is not supported; logrelay speaks the stable {API_VERSION} (end the URL with ?api-version={API_VERSION})"),
                ));
            }
        } else {
            return Err(invalid(
                ENDPOINT_VAR,
                format!("unexpected query parameter `{key}`; the URL takes only api-version={API_VERSION}"),
            ));
        }
    }
    Ok(IngestionEndpoint {
        base: origin(&url),
        dcr_id: validate_dcr_id(ENDPOINT_VAR, dcr)?,
        stream: validate_stream(ENDPOINT_VAR, stream)?,
    })
}

/// `LOGS_INGESTION_DCE`: the endpoint host alone (scheme optional, https assumed).
fn parse_dce(value: &str) -> Result<Url> {
    let url = parse_host_url(
        DCE_VAR,
        value,
        "https://my-dce-ab12.eastus-1.ingest.monitor.azure.com",
    )?;
    check_service_host(DCE_VAR, &url)?;
    require_tls_or_loopback(DCE_VAR, &url)?;
    check_no_userinfo(DCE_VAR, &url)?;
    if url
        .path()
        .to_ascii_lowercase()
        .contains("/datacollectionrules")
    {
        return Err(invalid(
            DCE_VAR,
            format!("this is a full endpoint URL; set it as {ENDPOINT_VAR} instead (or give only the host here)"),
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(invalid(
            DCE_VAR,
            "give only the endpoint host, e.g. https://my-dce-ab12.eastus-1.ingest.monitor.azure.com",
        ));
    }
    Ok(origin(&url))
}

/// Scheme, host and port only.
fn origin(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base.set_fragment(None);
    base
}

fn check_no_userinfo(name: &str, url: &Url) -> Result<()> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            name,
            "the URL must not carry a user name or password",
        ));
    }
    Ok(())
}

/// Recognises URLs of other Azure services people paste by mistake, and says what to use.
fn check_service_host(name: &str, url: &Url) -> Result<()> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let path = url.path().to_ascii_lowercase();
    let mistake = if host.contains(".ods.opinsights.azure.") {
        Some("this is a workspace's HTTP Data Collector API URL (the retired legacy API); logrelay uses the Logs Ingestion API through a data collection endpoint")
    } else if host.contains(".oms.opinsights.azure.") {
        Some("this is a workspace agent URL, not a Logs Ingestion endpoint")
    } else if host.starts_with("portal.azure.") {
        Some("this is an Azure portal link; copy the data collection endpoint's Logs Ingestion URL and the DCR's Immutable ID from the DCR's JSON view instead")
    } else if host.starts_with("management.") || path.starts_with("/subscriptions/") {
        Some("this is an Azure Resource Manager resource URL; the DCR is addressed by its Immutable ID (`immutableId` in the DCR's JSON view) on the ingestion endpoint")
    } else if host.contains("loganalytics.") {
        Some("this is the Log Analytics query API, which cannot ingest")
    } else if host.contains(".handler.control.monitor.azure.") {
        Some("this is the data collection endpoint's configuration access URL; use its Logs Ingestion URL (*.ingest.monitor.azure.com)")
    } else {
        None
    };
    match mistake {
        Some(mistake) => Err(invalid(
            name,
            format!("{mistake}; expected {ENDPOINT_URL_FORM}"),
        )),
        None => Ok(()),
    }
}

fn validate_dcr_id(name: &str, value: &str) -> Result<String> {
    let hex = value.strip_prefix("dcr-").unwrap_or_default();
    if hex.len() == DCR_ID_HEX_LEN && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(value.to_string());
    }
    let looks_like =
        if value.starts_with('/') || value.to_ascii_lowercase().contains("microsoft.insights") {
            " (that is the DCR's resource ID)"
        } else if looks_like_guid(value) {
            " (a GUID is a resource or object id)"
        } else {
            ""
        };
    Err(invalid(
        name,
        format!(
            "`{value}` is not a DCR Immutable ID{looks_like}: expected `dcr-` followed by {DCR_ID_HEX_LEN} hex characters, e.g. dcr-000a00a000a00000a000000aa000a0aa; it is `immutableId` in the DCR's JSON view (Overview → JSON View)"
        ),
    ))
}

/// Only custom streams: every stream a DCR declares for the Logs Ingestion API begins
/// `Custom-` (§1.1, DCR structure); `Microsoft-` names are output streams of built-in tables
/// and are not posted to directly.
fn validate_stream(name: &str, value: &str) -> Result<String> {
    let rest = match value.strip_prefix(CUSTOM_STREAM_PREFIX) {
        Some(rest) => rest,
        None => {
            let reason = if value.starts_with("Microsoft-") {
                format!("`{value}` is a built-in output stream; post to the custom input stream declared in the DCR's streamDeclarations, which begins `Custom-` (e.g. Custom-KeeperSecurityEventNewLogs)")
            } else if let Some(rest) = value
                .get(..CUSTOM_STREAM_PREFIX.len())
                .filter(|prefix| prefix.eq_ignore_ascii_case(CUSTOM_STREAM_PREFIX))
                .and_then(|_| value.get(CUSTOM_STREAM_PREFIX.len()..))
            {
                format!("stream names are case-sensitive: write `Custom-{rest}`")
            } else {
                format!("stream `{value}` must begin `Custom-` as declared in the DCR's streamDeclarations, e.g. `Custom-{value}`")
            };
            return Err(invalid(name, reason));
        }
    };
    let well_formed = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Err(invalid(
            name,
            format!("stream `{value}` must be `Custom-` followed by letters, digits, `_` or `-`"),
        ));
    }
    Ok(value.to_string())
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

    /// A warning when the host is not a Logs Ingestion host of `cloud`
    /// (`*.ingest.monitor.azure.com|us|cn`); loopback (the emulator) is fine.
    pub fn host_warning(&self, cloud: Cloud) -> Option<String> {
        if is_loopback(&self.base) {
            return None;
        }
        let host = self
            .base
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let found = [Cloud::Public, Cloud::UsGovernment, Cloud::China]
            .into_iter()
            .find(|candidate| {
                host.ends_with(&format!(
                    ".ingest.monitor.azure.{}",
                    candidate.ingestion_tld()
                ))
            });
        match found {
            Some(found) if found == cloud => None,
            Some(found) => Some(format!(
                "the endpoint host {host} is in the {} cloud but AZURE_CLOUD is {}: its tokens will be refused (401); set AZURE_CLOUD={}",
                found.name(),
                cloud.name(),
                found.name()
            )),
            None => Some(format!(
                "the endpoint host {host} is not a Logs Ingestion host (*.ingest.monitor.azure.com, .us or .cn); continuing, but check {ENDPOINT_VAR} if uploads fail"
            )),
        }
    }
}

/// Accepted ranges, shown in error messages.
const CONCURRENCY_RANGE: (u64, u64) = (1, 64);
const MAX_ATTEMPTS_RANGE: (u64, u64) = (1, 50);
const DEADLINE_SECS_RANGE: (u64, u64) = (1, 86_400);
const BATCH_BYTES_RANGE: (u64, u64) = (1024, crate::ingest::MAX_BATCH_BYTES as u64);
const REQUEST_TIMEOUT_SECS_RANGE: (u64, u64) = (1, 600);
const MAX_DECOMPRESSED_BYTES_RANGE: (u64, u64) = (1024, 1 << 50);

fn read_tuning(get: Lookup<'_>) -> Result<Tuning> {
    let defaults = Tuning::default();
    let number = |name: &'static str, default: u64, (min, max): (u64, u64)| -> Result<u64> {
        let Some(value) = get(name) else {
            return Ok(default);
        };
        let parsed: u64 = value.replace('_', "").parse().map_err(|_| {
            invalid(
                name,
                format!("`{value}` is not a whole number; accepted range is {min}..={max}"),
            )
        })?;
        if parsed > max && name == "LOGRELAY_BATCH_BYTES" {
            return Err(invalid(
                name,
                format!("{parsed} is too large: the Logs Ingestion API refuses requests over 1 MB, so batches are at most {max} bytes; accepted range is {min}..={max}"),
            ));
        }
        if !(min..=max).contains(&parsed) {
            return Err(invalid(
                name,
                format!("{parsed} is out of range; accepted range is {min}..={max}"),
            ));
        }
        Ok(parsed)
    };
    // The ranges above bound every value well inside usize/u32, so the casts cannot truncate.
    Ok(Tuning {
        concurrency: number(
            "LOGRELAY_CONCURRENCY",
            defaults.concurrency as u64,
            CONCURRENCY_RANGE,
        )? as usize,
        max_attempts: number(
            "LOGRELAY_MAX_ATTEMPTS",
            u64::from(defaults.max_attempts),
            MAX_ATTEMPTS_RANGE,
        )? as u32,
        deadline: Duration::from_secs(number(
            "LOGRELAY_DEADLINE_SECS",
            defaults.deadline.as_secs(),
            DEADLINE_SECS_RANGE,
        )?),
        batch_bytes: number(
            "LOGRELAY_BATCH_BYTES",
            defaults.batch_bytes as u64,
            BATCH_BYTES_RANGE,
        )? as usize,
        request_timeout: Duration::from_secs(number(
            "LOGRELAY_REQUEST_TIMEOUT_SECS",
            defaults.request_timeout.as_secs(),
            REQUEST_TIMEOUT_SECS_RANGE,
        )?),
        max_decompressed_bytes: number(
            "LOGRELAY_MAX_DECOMPRESSED_BYTES",
            defaults.max_decompressed_bytes,
            MAX_DECOMPRESSED_BYTES_RANGE,
        )?,
    })
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 16,
            max_attempts: 8,
            deadline: Duration::from_secs(300),
            batch_bytes: crate::ingest::MAX_BATCH_BYTES,
            request_timeout: Duration::from_secs(30),
            max_decompressed_bytes: 16 << 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const DCR: &str = "dcr-000a00a000a00000a000000aa000a0aa";
    const HOST: &str = "https://my-dce-5kyl.eastus-1.ingest.monitor.azure.com";
    const SECRET: &str = "Abc8Q~not-a-real-secret-value-0123456789";

    fn keeper_url() -> String {
        format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-KeeperSecurityEventNewLogs?api-version=2023-01-01")
    }

    /// A complete client-secret configuration, with `changes` applied (`None` removes).
    fn env(changes: &[(&str, Option<&str>)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("AZURE_TENANT_ID", "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_CLIENT_SECRET", SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.insert(ENDPOINT_VAR.into(), keeper_url());
        for (name, value) in changes {
            match value {
                Some(value) => vars.insert(name.to_string(), value.to_string()),
                None => vars.remove(*name),
            };
        }
        vars
    }

    fn load(changes: &[(&str, Option<&str>)]) -> Result<Config> {
        let vars = env(changes);
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    fn error_of(changes: &[(&str, Option<&str>)]) -> Error {
        match load(changes) {
            Ok(config) => panic!("expected an error for {changes:?}, got {config:?}"),
            Err(error) => error,
        }
    }

    /// The variable an error names.
    fn named(error: &Error) -> String {
        match error {
            Error::MissingConfig { name, .. } => name.to_string(),
            Error::InvalidConfig { name, .. } => name.clone(),
            other => panic!("not a configuration error: {other:?}"),
        }
    }

    #[test]
    fn the_keeper_admin_console_url_is_taken_as_is() {
        let config = load(&[]).unwrap();
        assert_eq!(config.endpoint.base.as_str(), format!("{HOST}/"));
        assert_eq!(config.endpoint.dcr_id, DCR);
        assert_eq!(config.endpoint.stream, "Custom-KeeperSecurityEventNewLogs");
        assert_eq!(config.endpoint.upload_url().as_str(), keeper_url());
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.auth.cloud, Cloud::Public);
        assert_eq!(config.auth.scope, "https://monitor.azure.com/.default");
        assert_eq!(
            config.auth.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(
            matches!(&config.auth.credential, Credential::ClientSecret(s) if s.expose() == SECRET)
        );
    }

    #[test]
    fn endpoint_urls_that_are_accepted() {
        let cases = [
            // api-version may be left out; it is added on upload.
            format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper"),
            format!("  {HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper_CL/?api-version=2023-01-01\n"),
            format!("\"{HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper\""),
            format!("http://127.0.0.1:8080/dataCollectionRules/{DCR}/streams/Custom-Keeper?api-version=2023-01-01"),
            format!("https://my-dcr.usgovvirginia-1.ingest.monitor.azure.us/datacollectionrules/{DCR}/streams/Custom-Keeper"),
        ];
        for url in cases {
            let endpoint = parse_endpoint_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(endpoint.dcr_id, DCR, "{url}");
            assert!(endpoint.stream.starts_with("Custom-Keeper"), "{url}");
            assert_eq!(endpoint.base.path(), "/", "{url}");
            assert_eq!(endpoint.base.query(), None, "{url}");
        }
    }

    #[test]
    fn endpoint_urls_that_are_refused_say_why() {
        let cases: Vec<(String, &str)> = vec![
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-K?api-version=2021-11-01-preview"), "2021-11-01-preview` is not supported"),
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/KeeperLogs"), "must begin `Custom-`"),
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/Microsoft-Syslog"), "built-in output stream"),
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/custom-Keeper"), "write `Custom-Keeper`"),
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-"), "followed by letters"),
            (format!("{HOST}/dataCollectionRules/dcr-123/streams/Custom-K"), "Immutable ID"),
            (format!("{HOST}/dataCollectionRules/11111111-2222-3333-4444-555555555555/streams/Custom-K"), "a GUID is a resource"),
            (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-K?api-version=2023-01-01&sig=x"), "unexpected query parameter `sig`"),
            (format!("{HOST}/dataCollectionRules/{DCR}"), "is not /dataCollectionRules/"),
            (format!("{HOST}/prefix/dataCollectionRules/{DCR}/streams/Custom-K"), "is not /dataCollectionRules/"),
            (format!("{HOST}/api/logs"), "has no /dataCollectionRules/"),
            (HOST.to_string(), "only the endpoint host"),
            (format!("http://my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/Custom-K"), "plain http://"),
            ("https://1234.ods.opinsights.azure.com/api/logs?api-version=2016-04-01".into(), "HTTP Data Collector API"),
            ("https://portal.azure.com/#@contoso/resource/x".into(), "Azure portal link"),
            (format!("https://management.azure.com/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/{DCR}"), "Resource Manager"),
            ("https://api.loganalytics.io/v1/workspaces/x/query".into(), "query API"),
            ("https://my-dce.eastus-1.handler.control.monitor.azure.com".into(), "configuration access"),
            ("my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules".into(), "is not a URL"),
            (DCR.into(), "looks like a DCR Immutable ID"),
            (format!("https://user:pw@x.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/Custom-K"), "user name or password"),
        ];
        for (url, expected) in cases {
            let error = match parse_endpoint_url(&url) {
                Ok(endpoint) => panic!("{url} was accepted as {endpoint:?}"),
                Err(error) => error,
            };
            assert_eq!(named(&error), ENDPOINT_VAR, "{url}");
            let message = error.to_string();
            assert!(
                message.contains(expected),
                "{url}: `{message}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn a_bad_dcr_id_message_shows_the_expected_form_and_where_to_find_it() {
        let error = parse_endpoint_url(&format!(
            "{HOST}/dataCollectionRules/KeeperDCR/streams/Custom-K"
        ))
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("dcr-000a00a000a00000a000000aa000a0aa"),
            "{message}"
        );
        assert!(message.contains("immutableId"), "{message}");
        assert!(message.contains("JSON View"), "{message}");
    }

    #[test]
    fn the_endpoint_can_be_given_in_three_parts() {
        let config = load(&[
            (ENDPOINT_VAR, None),
            (
                DCE_VAR,
                Some("my-dce-5kyl.eastus-1.ingest.monitor.azure.com"),
            ),
            (DCR_VAR, Some(DCR)),
            (STREAM_VAR, Some("Custom-KeeperSecurityEventNewLogs")),
        ])
        .unwrap();
        assert_eq!(config.endpoint.upload_url().as_str(), keeper_url());
    }

    #[test]
    fn a_missing_part_is_named() {
        fn three<'a>(
            dce: Option<&'a str>,
            dcr: Option<&'a str>,
            stream: Option<&'a str>,
        ) -> Vec<(&'static str, Option<&'a str>)> {
            vec![
                (ENDPOINT_VAR, None),
                (DCE_VAR, dce),
                (DCR_VAR, dcr),
                (STREAM_VAR, stream),
            ]
        }
        let full = keeper_url();
        let cases = [
            (three(None, None, None), ENDPOINT_VAR),
            (three(None, Some(DCR), Some("Custom-K")), DCE_VAR),
            (three(Some(HOST), None, Some("Custom-K")), DCR_VAR),
            (three(Some(HOST), Some(DCR), None), STREAM_VAR),
            (
                three(Some(HOST), Some("dcr-xyz"), Some("Custom-K")),
                DCR_VAR,
            ),
            (three(Some(HOST), Some(DCR), Some("Keeper")), STREAM_VAR),
            (
                three(Some("http://10.1.2.3"), Some(DCR), Some("Custom-K")),
                DCE_VAR,
            ),
            (three(Some(&full), Some(DCR), Some("Custom-K")), DCE_VAR),
            (
                three(
                    Some("https://x.ingest.monitor.azure.com/extra"),
                    Some(DCR),
                    Some("Custom-K"),
                ),
                DCE_VAR,
            ),
        ];
        for (changes, expected) in cases {
            let error = error_of(&changes);
            assert_eq!(named(&error), expected, "{changes:?}: {error}");
        }
    }

    #[test]
    fn the_full_url_wins_over_the_parts_with_a_warning() {
        let config = load(&[(STREAM_VAR, Some("Custom-Other"))]).unwrap();
        assert_eq!(config.endpoint.stream, "Custom-KeeperSecurityEventNewLogs");
        assert!(
            config.warnings.iter().any(|w| w.contains("are ignored")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn unusual_hosts_are_a_warning_not_an_error() {
        let cases = [
            (format!("https://example.com/dataCollectionRules/{DCR}/streams/Custom-K"), None, Some("not a Logs Ingestion host")),
            (format!("https://x.eastus-1.ingest.monitor.azure.us/dataCollectionRules/{DCR}/streams/Custom-K"), None, Some("AZURE_CLOUD=usgovernment")),
            (format!("https://x.eastus-1.ingest.monitor.azure.us/dataCollectionRules/{DCR}/streams/Custom-K"), Some("usgovernment"), None),
            (format!("https://x.chinaeast2-1.ingest.monitor.azure.cn/dataCollectionRules/{DCR}/streams/Custom-K"), Some("AzureChinaCloud"), None),
            (format!("http://localhost:9/dataCollectionRules/{DCR}/streams/Custom-K"), None, None),
        ];
        for (url, cloud, expected) in cases {
            let config = load(&[(ENDPOINT_VAR, Some(&url)), ("AZURE_CLOUD", cloud)]).unwrap();
            match expected {
                None => assert!(config.warnings.is_empty(), "{url}: {:?}", config.warnings),
                Some(text) => assert!(
                    config.warnings.iter().any(|w| w.contains(text)),
                    "{url}: {:?}",
                    config.warnings
                ),
            }
        }
    }

    #[test]
    fn clouds_pick_the_authority_host_and_scope() {
        let cases = [
            (
                None,
                "https://login.microsoftonline.com/",
                "https://monitor.azure.com/.default",
            ),
            (
                Some("public"),
                "https://login.microsoftonline.com/",
                "https://monitor.azure.com/.default",
            ),
            (
                Some("AzurePublicCloud"),
                "https://login.microsoftonline.com/",
                "https://monitor.azure.com/.default",
            ),
            (
                Some("usgovernment"),
                "https://login.microsoftonline.us/",
                "https://monitor.azure.us/.default",
            ),
            (
                Some("AzureUSGovernment"),
                "https://login.microsoftonline.us/",
                "https://monitor.azure.us/.default",
            ),
            (
                Some("CHINA"),
                "https://login.partner.microsoftonline.cn/",
                "https://monitor.azure.cn/.default",
            ),
            (
                Some("AzureChinaCloud"),
                "https://login.partner.microsoftonline.cn/",
                "https://monitor.azure.cn/.default",
            ),
        ];
        for (cloud, host, scope) in cases {
            let config = load(&[("AZURE_CLOUD", cloud)]).unwrap();
            assert_eq!(config.auth.authority_host.as_str(), host, "{cloud:?}");
            assert_eq!(config.auth.scope, scope, "{cloud:?}");
        }
        let error = error_of(&[("AZURE_CLOUD", Some("mars"))]);
        assert_eq!(named(&error), "AZURE_CLOUD");
        assert!(error.to_string().contains("usgovernment"), "{error}");
    }

    #[test]
    fn the_authority_host_can_be_overridden_only_safely() {
        let ok = [
            ("http://127.0.0.1:4000", "http://127.0.0.1:4000/"),
            (
                "https://login.microsoftonline.us/",
                "https://login.microsoftonline.us/",
            ),
            (
                "login.microsoftonline.com",
                "https://login.microsoftonline.com/",
            ),
        ];
        for (value, expected) in ok {
            let config = load(&[("AZURE_AUTHORITY_HOST", Some(value))]).unwrap();
            assert_eq!(config.auth.authority_host.as_str(), expected);
        }
        for bad in [
            "http://login.example.com",
            "https://login.microsoftonline.com/tenant-x",
            "https://x/?a=b",
            "ftp://127.0.0.1",
        ] {
            let error = error_of(&[("AZURE_AUTHORITY_HOST", Some(bad))]);
            assert_eq!(named(&error), "AZURE_AUTHORITY_HOST", "{bad}");
        }
        let config = load(&[(
            "AZURE_AUTHORITY_HOST",
            Some("https://login.microsoftonline.us"),
        )])
        .unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("AZURE_CLOUD=usgovernment")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn missing_identity_settings_are_named() {
        type Changes<'a> = Vec<(&'a str, Option<&'a str>)>;
        let cases: Vec<(Changes<'_>, &str)> = vec![
            (vec![("AZURE_TENANT_ID", None)], "AZURE_TENANT_ID"),
            (vec![("AZURE_CLIENT_ID", None)], "AZURE_CLIENT_ID"),
            (vec![("AZURE_CLIENT_SECRET", None)], "AZURE_CLIENT_SECRET"),
            (
                vec![("AZURE_CLIENT_SECRET", Some("   "))],
                "AZURE_CLIENT_SECRET",
            ),
            (
                vec![
                    ("AZURE_CLIENT_SECRET", None),
                    ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
                ],
                "IDENTITY_HEADER",
            ),
            (
                vec![
                    ("AZURE_CLIENT_SECRET", None),
                    ("IDENTITY_HEADER", Some("h")),
                ],
                "IDENTITY_ENDPOINT",
            ),
            (
                vec![(
                    "AZURE_TENANT_ID",
                    Some("https://login.microsoftonline.com/x"),
                )],
                "AZURE_TENANT_ID",
            ),
            (vec![("AZURE_TENANT_ID", Some("common"))], "AZURE_TENANT_ID"),
            (
                vec![
                    ("AZURE_CLIENT_SECRET", None),
                    (
                        "AZURE_CLIENT_SECRET_ARN",
                        Some("arn:aws:ssm:us-east-1:1:parameter/x"),
                    ),
                ],
                "AZURE_CLIENT_SECRET_ARN",
            ),
            (
                vec![
                    ("AZURE_CLIENT_SECRET", None),
                    ("IDENTITY_ENDPOINT", Some("http://10.0.0.5/msi/token")),
                    ("IDENTITY_HEADER", Some("h")),
                ],
                "IDENTITY_ENDPOINT",
            ),
        ];
        for (changes, expected) in cases {
            let error = error_of(&changes);
            assert_eq!(named(&error), expected, "{changes:?}: {error}");
        }
    }

    #[test]
    fn the_missing_secret_message_lists_the_alternatives() {
        let message = error_of(&[("AZURE_CLIENT_SECRET", None)]).to_string();
        for alternative in [
            "AZURE_CLIENT_SECRET_ARN",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
        ] {
            assert!(message.contains(alternative), "{message}");
        }
    }

    #[test]
    fn credentials_are_chosen_in_order_of_precedence() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:entra-AbCdEf";
        let config = load(&[("AZURE_CLIENT_SECRET_ARN", Some(arn))]).unwrap();
        assert!(matches!(
            config.auth.credential,
            Credential::ClientSecret(_)
        ));
        assert!(
            config.warnings.iter().any(|w| w.contains("both")),
            "{:?}",
            config.warnings
        );

        let config = load(&[
            ("AZURE_CLIENT_SECRET", None),
            ("AZURE_CLIENT_SECRET_ARN", Some(arn)),
        ])
        .unwrap();
        assert!(matches!(&config.auth.credential, Credential::SecretArn(a) if a == arn));

        let config = load(&[
            ("AZURE_CLIENT_SECRET", None),
            ("AZURE_TENANT_ID", None),
            ("AZURE_CLIENT_ID", None),
            ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
            ("IDENTITY_HEADER", Some("header-value")),
        ])
        .unwrap();
        match &config.auth.credential {
            Credential::ManagedIdentity {
                endpoint,
                header,
                client_id,
            } => {
                assert_eq!(endpoint.as_str(), "http://localhost:8081/msi/token");
                assert_eq!(header.expose(), "header-value");
                assert_eq!(client_id, &None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.auth.tenant_id, "");

        let config = load(&[
            ("AZURE_CLIENT_SECRET", None),
            (
                "IDENTITY_ENDPOINT",
                Some("http://169.254.129.2:8081/msi/token"),
            ),
            ("IDENTITY_HEADER", Some("header-value")),
        ])
        .unwrap();
        assert!(matches!(
            &config.auth.credential,
            Credential::ManagedIdentity { client_id: Some(id), .. } if id == "11111111-2222-3333-4444-555555555555"
        ));
    }

    #[test]
    fn a_secret_id_pasted_for_the_secret_value_is_flagged() {
        let config = load(&[(
            "AZURE_CLIENT_SECRET",
            Some("0a1b2c3d-1111-2222-3333-444455556666"),
        )])
        .unwrap();
        assert!(
            config.warnings.iter().any(|w| w.contains("*Value*")),
            "{:?}",
            config.warnings
        );
        let config = load(&[("AZURE_CLIENT_ID", Some("my-app"))]).unwrap();
        assert!(
            config.warnings.iter().any(|w| w.contains("not a GUID")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn tuning_defaults_and_overrides() {
        let config = load(&[]).unwrap();
        assert_eq!(config.tuning.concurrency, 16);
        assert_eq!(config.tuning.max_attempts, 8);
        assert_eq!(config.tuning.deadline, Duration::from_secs(300));
        assert_eq!(config.tuning.batch_bytes, 1_000_000);
        assert_eq!(config.tuning.request_timeout, Duration::from_secs(30));
        assert_eq!(config.tuning.max_decompressed_bytes, 16 << 30);

        let config = load(&[
            ("LOGRELAY_CONCURRENCY", Some("64")),
            ("LOGRELAY_MAX_ATTEMPTS", Some("1")),
            ("LOGRELAY_DEADLINE_SECS", Some("900")),
            ("LOGRELAY_BATCH_BYTES", Some("1024")),
            ("LOGRELAY_REQUEST_TIMEOUT_SECS", Some("5")),
            ("LOGRELAY_MAX_DECOMPRESSED_BYTES", Some("1_000_000")),
        ])
        .unwrap();
        assert_eq!(config.tuning.concurrency, 64);
        assert_eq!(config.tuning.max_attempts, 1);
        assert_eq!(config.tuning.deadline, Duration::from_secs(900));
        assert_eq!(config.tuning.batch_bytes, 1024);
        assert_eq!(config.tuning.request_timeout, Duration::from_secs(5));
        assert_eq!(config.tuning.max_decompressed_bytes, 1_000_000);
    }

    #[test]
    fn bad_tuning_values_name_the_variable_and_the_range() {
        let cases = [
            ("LOGRELAY_CONCURRENCY", "0", "1..=64"),
            ("LOGRELAY_CONCURRENCY", "65", "1..=64"),
            ("LOGRELAY_CONCURRENCY", "four", "not a whole number"),
            ("LOGRELAY_MAX_ATTEMPTS", "51", "1..=50"),
            ("LOGRELAY_MAX_ATTEMPTS", "-1", "1..=50"),
            ("LOGRELAY_DEADLINE_SECS", "0", "1..=86400"),
            ("LOGRELAY_BATCH_BYTES", "1023", "1024..=1000000"),
            (
                "LOGRELAY_BATCH_BYTES",
                "1048576",
                "refuses requests over 1 MB",
            ),
            ("LOGRELAY_REQUEST_TIMEOUT_SECS", "1.5", "not a whole number"),
            ("LOGRELAY_MAX_DECOMPRESSED_BYTES", "10", "1024..="),
        ];
        for (name, value, expected) in cases {
            let error = error_of(&[(name, Some(value))]);
            assert_eq!(named(&error), name);
            let message = error.to_string();
            assert!(message.contains(expected), "{name}={value}: {message}");
        }
    }

    #[test]
    fn the_summary_hides_secrets() {
        let config = load(&[]).unwrap();
        let summary = config.redacted_summary();
        let text = format!("{summary:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(summary.contains(&("AZURE_CLIENT_SECRET", "set (hidden)".to_string())));
        assert!(summary.contains(&("LOGS_INGESTION_ENDPOINT", keeper_url())));
        assert!(!format!("{config:?}").contains(SECRET));

        let config = load(&[
            ("AZURE_CLIENT_SECRET", None),
            ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
            ("IDENTITY_HEADER", Some("very-private-header")),
        ])
        .unwrap();
        let text = format!("{:?} {config:?}", config.redacted_summary());
        assert!(!text.contains("very-private-header"), "{text}");
        assert!(text.contains("IDENTITY_HEADER"), "{text}");
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let error = error_of(&[("LOGRELAY_CONCURRENCY", Some("x"))]);
        assert!(!format!("{error} {error:?}").contains(SECRET));
    }
}
