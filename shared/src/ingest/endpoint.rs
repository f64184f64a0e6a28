//! Where rows go: the Logs Ingestion endpoint, parsed from the full URL (as the Keeper
//! Admin Console takes it) or from its three parts, with messages that say what was pasted.

use url::Url;

use crate::auth::credential::looks_like_guid;
use crate::auth::Cloud;
use crate::http::{is_loopback, parse_host_url, require_tls_or_loopback};
use crate::model::Lookup;
use crate::{Error, Result};

/// Logs Ingestion API version. Source: <https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview>.
pub const API_VERSION: &str = "2023-01-01";

/// Custom stream names begin with this. Source: the DCR structure page
/// (<https://learn.microsoft.com/azure/azure-monitor/data-collection/data-collection-rule-structure>).
pub const CUSTOM_STREAM_PREFIX: &str = "Custom-";

/// DCR immutable ids are `dcr-` followed by this many hex characters. Source: <https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview>.
pub const DCR_ID_HEX_LEN: usize = 32;

/// The form of a full endpoint URL, shown in error messages.
pub const ENDPOINT_URL_FORM: &str = "https://<dce-name>.<region>-1.ingest.monitor.azure.com/dataCollectionRules/dcr-<32 hex>/streams/Custom-<Stream>?api-version=2023-01-01";

pub(crate) const ENDPOINT_VAR: &str = "LOGS_INGESTION_ENDPOINT";
pub(crate) const DCE_VAR: &str = "LOGS_INGESTION_DCE";
pub(crate) const DCR_VAR: &str = "LOGS_INGESTION_DCR_ID";
pub(crate) const STREAM_VAR: &str = "LOGS_INGESTION_STREAM";

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

pub(crate) fn read_endpoint(
    get: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<IngestionEndpoint> {
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
        Error::invalid(ENDPOINT_VAR, reason)
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
            return Err(Error::invalid(
                ENDPOINT_VAR,
                format!(
                    "this is only the endpoint host; the full URL is {}dataCollectionRules/<DCR Immutable ID>/streams/Custom-<Stream>?api-version={API_VERSION} (or set this host as {DCE_VAR} with {DCR_VAR} and {STREAM_VAR})",
                    origin(&url)
                ),
            ))
        }
        (None, _) => {
            return Err(Error::invalid(
                ENDPOINT_VAR,
                format!("the path `{}` has no /dataCollectionRules/ part; expected {ENDPOINT_URL_FORM}", url.path()),
            ))
        }
        (Some(0), [_, dcr, streams, stream]) if streams.eq_ignore_ascii_case("streams") => {
            (dcr.as_str(), stream.as_str())
        }
        (Some(_), _) => {
            return Err(Error::invalid(
                ENDPOINT_VAR,
                format!("the path `{}` is not /dataCollectionRules/<DCR Immutable ID>/streams/<stream>; expected {ENDPOINT_URL_FORM}", url.path()),
            ))
        }
    };
    for (key, version) in url.query_pairs() {
        if key.eq_ignore_ascii_case("api-version") {
            if version != API_VERSION {
                return Err(Error::invalid(
                    ENDPOINT_VAR,
                    format!("api-version `{version}` is not supported; logrelay speaks the stable {API_VERSION} (end the URL with ?api-version={API_VERSION})"),
                ));
            }
        } else {
            return Err(Error::invalid(
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
        return Err(Error::invalid(
            DCE_VAR,
            format!("this is a full endpoint URL; set it as {ENDPOINT_VAR} instead (or give only the host here)"),
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(Error::invalid(
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
        return Err(Error::invalid(
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
        Some(mistake) => Err(Error::invalid(
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
    Err(Error::invalid(
        name,
        format!(
            "`{value}` is not a DCR Immutable ID{looks_like}: expected `dcr-` followed by {DCR_ID_HEX_LEN} hex characters, e.g. dcr-000a00a000a00000a000000aa000a0aa; it is `immutableId` in the DCR's JSON view (Overview → JSON View)"
        ),
    ))
}

/// Only custom streams: every stream a DCR declares for the Logs Ingestion API begins
/// `Custom-` (<https://learn.microsoft.com/azure/azure-monitor/data-collection/data-collection-rule-structure>); `Microsoft-` names are output streams of built-in tables
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
            return Err(Error::invalid(name, reason));
        }
    };
    let well_formed = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Err(Error::invalid(
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
