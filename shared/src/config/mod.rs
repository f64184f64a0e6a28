//! The settings module: every environment variable is read here, once, through one lookup
//! (values trimmed, empty ones unset), and validated with messages a person can act on. The
//! parsers live with what they configure: the credential in [`crate::auth`], the endpoint and
//! tuning in [`crate::ingest`].

use crate::auth::credential::read_auth;
use crate::ingest::endpoint::read_endpoint;
use crate::ingest::tuning::read_tuning;
use crate::keeper::SchemaMode;
use crate::model::Lookup;
use crate::secret::Secret;
use crate::{Error, Result};

pub use crate::auth::{AuthConfig, Cloud, Credential};
pub use crate::ingest::endpoint::{parse_endpoint_url, IngestionEndpoint, API_VERSION};
pub use crate::ingest::Tuning;

#[cfg(test)]
mod tests;
pub mod vars;

pub use vars::Platform;
use vars::{
    AZURE_DEAD_LETTER_DIR, FUNCTIONS_APP_ROOT_PATH, LOGRELAY_DEAD_LETTER, LOGRELAY_HTTP_TOKEN,
    LOGRELAY_HTTP_TOKEN_ARN, LOGRELAY_SCHEMA, LOGRELAY_TIME_FIELD, WEBSITE_SITE_NAME,
};

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub auth: AuthConfig,
    pub endpoint: IngestionEndpoint,
    pub tuning: Tuning,
    /// `LOGRELAY_SCHEMA` (with `LOGRELAY_TIME_FIELD`): how records become rows.
    pub schema: SchemaMode,
    /// `LOGRELAY_DEAD_LETTER`, or the platform's default (a directory or, on AWS, `s3://`).
    pub dead_letter: String,
    /// `LOGRELAY_HTTP_TOKEN` / `LOGRELAY_HTTP_TOKEN_ARN`: what the HTTP routes' callers send.
    pub http_token: HttpToken,
    /// Non-fatal findings (e.g. a host that is not `*.ingest.monitor.azure.*`), to log once.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates the configuration from the process environment, with
    /// `platform`'s defaults. Call once in `main`.
    pub fn from_env(platform: Platform) -> Result<Config> {
        Config::for_platform(platform, |name| std::env::var(name).ok())
    }

    /// [`Config::for_platform`] with the command line's defaults (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        Config::for_platform(Platform::Cli, lookup)
    }

    /// Reads and validates the configuration from any variable lookup, with `platform`'s
    /// defaults. Values are trimmed (pasted values often carry a newline) and empty ones count
    /// as unset, for every variable alike.
    pub fn for_platform(
        platform: Platform,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let get = trimmed(&lookup);
        let get = &get;
        let mut warnings = Vec::new();
        let auth = read_auth(get, &mut warnings)?;
        let endpoint = read_endpoint(get, &mut warnings)?;
        if platform == Platform::Aws && get(LOGRELAY_DEAD_LETTER).is_none() {
            warnings.push(format!(
                "LOGRELAY_DEAD_LETTER is not set; undeliverable events go to {}, which is lost with the container. Set s3://bucket/prefix/.",
                vars::LAMBDA_DEAD_LETTER_DIR
            ));
        }
        warnings.extend(endpoint.host_warning(auth.cloud));
        let tuning = read_tuning(get)?;
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
            schema: read_schema(get)?,
            dead_letter: dead_letter_location(platform, get)?,
            http_token: read_http_token(get),
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
            Credential::AwsFederation { audience } => {
                summary.push(("LOGRELAY_AWS_FEDERATION", "true".to_string()));
                summary.push(("federation audience", audience.clone()));
            }
            Credential::Certificate { path, send_chain } => {
                summary.push(("AZURE_CLIENT_CERTIFICATE_PATH", path.display().to_string()));
                summary.push((
                    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
                    send_chain.to_string(),
                ));
            }
            Credential::FederatedTokenFile { path } => {
                summary.push(("AZURE_FEDERATED_TOKEN_FILE", path.display().to_string()));
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

/// `lookup` with values trimmed and empty ones unset: the one rule for every variable.
pub fn trimmed(lookup: &impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        debug_assert!(
            vars::find(name).is_some(),
            "{name} is read but not in the settings table (config/vars.rs)"
        );
        lookup(name)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    }
}

/// Where the HTTP routes' shared bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpToken {
    /// `LOGRELAY_HTTP_TOKEN` itself.
    Value(Secret),
    /// `LOGRELAY_HTTP_TOKEN_ARN`: read from AWS Secrets Manager (plain, or JSON with `token`).
    SecretArn(String),
    /// Neither is set: the HTTP routes cannot authorize anyone.
    Unset,
}

fn read_http_token(get: Lookup<'_>) -> HttpToken {
    match (get(LOGRELAY_HTTP_TOKEN), get(LOGRELAY_HTTP_TOKEN_ARN)) {
        (Some(token), _) => HttpToken::Value(Secret::new(token)),
        (None, Some(arn)) => HttpToken::SecretArn(arn),
        (None, None) => HttpToken::Unset,
    }
}

/// `LOGRELAY_SCHEMA` (`keeper`, the default, or `passthrough`) and, for passthrough,
/// `LOGRELAY_TIME_FIELD`, which is then required: the time must come from a named field,
/// never from a guess.
pub fn read_schema(get: Lookup<'_>) -> Result<SchemaMode> {
    match get(LOGRELAY_SCHEMA) {
        None => Ok(SchemaMode::Keeper),
        Some(mode) if mode.eq_ignore_ascii_case("keeper") => Ok(SchemaMode::Keeper),
        Some(mode) if mode.eq_ignore_ascii_case("passthrough") => match get(LOGRELAY_TIME_FIELD) {
            Some(time_field) => Ok(SchemaMode::Passthrough { time_field }),
            None => Err(Error::MissingConfig {
                name: LOGRELAY_TIME_FIELD,
                hint: "the passthrough schema takes TimeGenerated from this field of each row; `logrelay send` also takes --time-field",
            }),
        },
        Some(other) => Err(Error::invalid(
            LOGRELAY_SCHEMA,
            format!("`{other}` is not a schema; use `keeper` (the default) or `passthrough`"),
        )),
    }
}

/// `LOGRELAY_DEAD_LETTER`, or `platform`'s default from the settings table. On Azure the
/// value must be a directory; App Service (`WEBSITE_SITE_NAME` set) defaults to the persistent
/// `/home` share, a local run to `dead-letter` under `FUNCTIONS_APP_ROOT_PATH`.
pub fn dead_letter_location(platform: Platform, get: Lookup<'_>) -> Result<String> {
    let value = get(LOGRELAY_DEAD_LETTER);
    if platform == Platform::Azure {
        if let Some(url) = value.as_deref().filter(|value| value.contains("://")) {
            return Err(Error::invalid(
                LOGRELAY_DEAD_LETTER,
                format!(
                    "`{url}` is a URL; the Azure handler writes dead letters to a directory \
                     (e.g. {AZURE_DEAD_LETTER_DIR}, or an Azure Files mount)"
                ),
            ));
        }
        if value.is_none() && get(WEBSITE_SITE_NAME).is_none() {
            let root = get(FUNCTIONS_APP_ROOT_PATH).unwrap_or_else(|| ".".into());
            return Ok(std::path::Path::new(&root)
                .join("dead-letter")
                .to_string_lossy()
                .into_owned());
        }
    }
    match value {
        Some(value) => Ok(value),
        None => vars::find(LOGRELAY_DEAD_LETTER)
            .and_then(|var| var.default_on(platform))
            .map(str::to_string)
            .ok_or(Error::MissingConfig {
                name: LOGRELAY_DEAD_LETTER,
                hint: "a directory for undeliverable events",
            }),
    }
}

/// Checks `AWS_ENDPOINT_URL` and every `AWS_ENDPOINT_URL_<SERVICE>` in `environment` (the
/// SDK's endpoint overrides,
/// <https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>): each must be
/// https, or http to loopback, since signed requests and secrets travel there. True when any
/// is set (a local endpoint: S3 then needs path-style addressing).
pub fn check_aws_endpoints(
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<bool> {
    let mut any = false;
    for (name, value) in environment {
        let overrides = name == vars::AWS_ENDPOINT_URL
            || name.starts_with(&format!("{}_", vars::AWS_ENDPOINT_URL));
        let value = value.trim();
        if !overrides || value.is_empty() {
            continue;
        }
        let url = url::Url::parse(value)
            .map_err(|error| Error::invalid(&name, format!("`{value}` is not a URL ({error})")))?;
        crate::http::require_tls_or_loopback(&name, &url)?;
        any = true;
    }
    Ok(any)
}
