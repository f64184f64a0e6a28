//! Who the relay is to Entra ID: the cloud (authority host and token scope) and the
//! credential, parsed from their variables with messages a person can act on.

use std::path::PathBuf;

use url::Url;

use crate::http::{parse_host_url, require_tls_or_loopback};
use crate::model::Lookup;
use crate::secret::Secret;
use crate::{Error, Result};

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

    /// Entra authority host. Source: <https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud> (national clouds page).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// Token scope for the Logs Ingestion API. Source: <https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview#headers>.
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://monitor.azure.com/.default",
            Cloud::UsGovernment => "https://monitor.azure.us/.default",
            Cloud::China => "https://monitor.azure.cn/.default",
        }
    }

    /// Top-level domain of this cloud's ingestion hosts (`*.ingest.monitor.azure.<tld>`).
    pub(crate) fn ingestion_tld(self) -> &'static str {
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
    /// `LOGRELAY_AWS_FEDERATION=true`: the function's IAM role gets a JWT from STS
    /// `GetWebIdentityToken` with `audience` and presents it to Entra (no secret anywhere).
    AwsFederation { audience: String },
    /// `AZURE_CLIENT_CERTIFICATE_PATH`: a PEM with the certificate and its private key;
    /// `send_chain` from `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` (the `x5c` header).
    Certificate { path: PathBuf, send_chain: bool },
    /// `AZURE_FEDERATED_TOKEN_FILE`: a JWT another platform writes and renews (Kubernetes
    /// workload identity), read again when it changes.
    FederatedTokenFile { path: PathBuf },
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
            Credential::AwsFederation { audience } => format!(
                "AWS web identity federation (LOGRELAY_AWS_FEDERATION: STS GetWebIdentityToken, audience {audience})"
            ),
            Credential::Certificate { path, send_chain } => format!(
                "certificate (AZURE_CLIENT_CERTIFICATE_PATH {}{})",
                path.display(),
                if *send_chain { ", chain sent" } else { "" }
            ),
            Credential::FederatedTokenFile { path } => format!(
                "federated token file (AZURE_FEDERATED_TOKEN_FILE {})",
                path.display()
            ),
        }
    }

    /// Whether Entra sees a federated assertion (its errors name the federated credential).
    pub fn is_federated(&self) -> bool {
        matches!(
            self,
            Credential::AwsFederation { .. } | Credential::FederatedTokenFile { .. }
        )
    }
}

/// The audience a federated identity credential takes, per cloud. Source:
/// <https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust#important-considerations-and-restrictions>
/// (`api://AzureADTokenExchange`; the national clouds have their own).
pub fn token_exchange_audience(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "api://AzureADTokenExchange",
        Cloud::UsGovernment => "api://AzureADTokenExchangeUSGov",
        Cloud::China => "api://AzureADTokenExchangeChina",
    }
}

/// The variables that each select a credential, in precedence order: setting two of them
/// (other than the secret and its ARN, where the secret wins) is refused.
pub const CREDENTIAL_VARIABLES: [&str; 5] = [
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET_ARN",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "LOGRELAY_AWS_FEDERATION",
];

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

pub(crate) fn read_auth(get: Lookup<'_>, warnings: &mut Vec<String>) -> Result<AuthConfig> {
    let cloud = match get("AZURE_CLOUD") {
        None => Cloud::Public,
        Some(value) => Cloud::parse(&value).ok_or_else(|| {
            Error::invalid(
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
            .map_err(|error| Error::invalid("AZURE_CLOUD", error.to_string()))?,
    };

    let tenant_id = get("AZURE_TENANT_ID");
    let client_id = get("AZURE_CLIENT_ID");
    let credential = read_credential(get, cloud, client_id.clone(), warnings)?;
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
        hint: "the client secret's Value from Certificates & secrets; alternatives: AZURE_CLIENT_SECRET_ARN (AWS Secrets Manager), LOGRELAY_AWS_FEDERATION=true (AWS, no secret), AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE, or a managed identity (IDENTITY_ENDPOINT + IDENTITY_HEADER, set by App Service)",
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

/// `LOGRELAY_AWS_FEDERATION`: true/false (also 1/0, yes/no, on/off); unset is false.
fn read_flag(get: Lookup<'_>, name: &str) -> Result<bool> {
    match get(name) {
        None => Ok(false),
        Some(value) => match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Error::invalid(
                name,
                format!("`{value}` is not true or false"),
            )),
        },
    }
}

/// Refuses two credentials at once (the secret with its ARN excepted), naming both.
fn refuse_ambiguous(get: Lookup<'_>) -> Result<()> {
    let mut chosen: Vec<&str> = Vec::new();
    for name in CREDENTIAL_VARIABLES {
        let set = if name == "LOGRELAY_AWS_FEDERATION" {
            read_flag(get, name)?
        } else {
            get(name).is_some()
        };
        if set {
            chosen.push(name);
        }
    }
    // A secret and its Secrets Manager ARN are one credential (the secret wins, with a warning).
    let kinds: Vec<&str> = chosen
        .iter()
        .copied()
        .filter(|name| {
            !(*name == "AZURE_CLIENT_SECRET_ARN" && chosen.contains(&"AZURE_CLIENT_SECRET"))
        })
        .collect();
    if kinds.len() > 1 {
        return Err(Error::invalid(
            kinds[0],
            format!(
                "{} each select a credential and are set together; set exactly one (README, Credentials)",
                kinds.join(" and ")
            ),
        ));
    }
    Ok(())
}

/// The credential: at most one of secret (or its ARN), certificate, federated token file and
/// AWS federation; else the managed identity; `None` if none.
fn read_credential(
    get: Lookup<'_>,
    cloud: Cloud,
    client_id: Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<Credential>> {
    refuse_ambiguous(get)?;
    if get("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
        return Err(Error::invalid(
            "AZURE_CLIENT_CERTIFICATE_PASSWORD",
            "password-protected certificates (encrypted PEM or PFX) are not supported; give AZURE_CLIENT_CERTIFICATE_PATH an unencrypted PEM (`openssl pkcs12 -in cert.pfx -out cert.pem -nodes`) and protect the file instead",
        ));
    }
    let send_chain = read_flag(get, "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")?;
    if let Some(path) = get("AZURE_CLIENT_CERTIFICATE_PATH") {
        return Ok(Some(Credential::Certificate {
            path: PathBuf::from(path),
            send_chain,
        }));
    }
    if send_chain {
        warnings.push(
            "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN is set but AZURE_CLIENT_CERTIFICATE_PATH is not; it is ignored".into(),
        );
    }
    if let Some(path) = get("AZURE_FEDERATED_TOKEN_FILE") {
        return Ok(Some(Credential::FederatedTokenFile {
            path: PathBuf::from(path),
        }));
    }
    if read_flag(get, "LOGRELAY_AWS_FEDERATION")? {
        return Ok(Some(Credential::AwsFederation {
            audience: token_exchange_audience(cloud).to_string(),
        }));
    }
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
            return Err(Error::invalid(
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
        Error::invalid(
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

fn parse_authority_host(value: &str) -> Result<Url> {
    const NAME: &str = "AZURE_AUTHORITY_HOST";
    let url = parse_host_url(NAME, value, "https://login.microsoftonline.us")?;
    require_tls_or_loopback(NAME, &url)?;
    if url.host_str().is_none() {
        return Err(Error::invalid(NAME, "the URL has no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            NAME,
            format!(
                "`{value}` has a path or query; give only the host, e.g. https://login.microsoftonline.us (the tenant goes in AZURE_TENANT_ID)"
            ),
        ));
    }
    Ok(url)
}

/// The cloud a well-known sign-in host belongs to (<https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud>, including the older aliases).
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
        return Err(Error::invalid(
            NAME,
            format!("`{tenant}` cannot issue app-only tokens; use the Directory (tenant) ID GUID"),
        ));
    }
    let well_formed = tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !well_formed {
        return Err(Error::invalid(
            NAME,
            "expected the Directory (tenant) ID, a GUID (or a domain such as contoso.onmicrosoft.com), not a URL",
        ));
    }
    Ok(tenant.to_string())
}

/// True for the 8-4-4-4-12 hex form.
pub(crate) fn looks_like_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}
