//! What the emulator pretends to be: the tenant, the app registration, the DCR and its streams.

use std::fmt;

use logrelay_core::config::Cloud;
use logrelay_core::schema::{DEFAULT_STREAM, KEEPER_COLUMNS};

use crate::faults::Faults;

/// Default access-token lifetime in seconds. Entra picks 60–90 min (docs/emulator-facts.md §2.3); one hour
/// is a representative value.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;

/// A column type in a DCR stream declaration. Source: docs/emulator-facts.md §1.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// `string`
    String,
    /// `int`
    Int,
    /// `long`
    Long,
    /// `real`
    Real,
    /// `boolean`
    Boolean,
    /// `dynamic` (any JSON)
    Dynamic,
    /// `datetime` (ISO 8601)
    Datetime,
}

impl ColumnType {
    /// Parses a stream-declaration type name (`string`, `int`, ..., `datetime`).
    pub fn parse(name: &str) -> Option<ColumnType> {
        match name {
            "string" => Some(ColumnType::String),
            "int" => Some(ColumnType::Int),
            "long" => Some(ColumnType::Long),
            "real" => Some(ColumnType::Real),
            "boolean" => Some(ColumnType::Boolean),
            "dynamic" => Some(ColumnType::Dynamic),
            "datetime" => Some(ColumnType::Datetime),
            _ => None,
        }
    }
}

/// One declared column of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name, e.g. `TimeGenerated`.
    pub name: String,
    /// Declared type.
    pub kind: ColumnType,
}

impl ColumnDef {
    /// A column named `name` of type `kind`.
    pub fn new(name: impl Into<String>, kind: ColumnType) -> Self {
        ColumnDef {
            name: name.into(),
            kind,
        }
    }
}

/// A stream declared in the DCR (`streamDeclarations` key and its columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Stream name; real ones begin `Custom-` (docs/emulator-facts.md §1.1).
    pub name: String,
    /// Declared columns; everything else a row carries is dropped.
    pub columns: Vec<ColumnDef>,
}

impl StreamConfig {
    /// The Keeper stream exactly as `logrelay_core::schema` declares it (the one table definition).
    pub fn keeper() -> Self {
        StreamConfig {
            name: DEFAULT_STREAM.to_string(),
            columns: KEEPER_COLUMNS
                .iter()
                .map(|column| ColumnDef {
                    name: column.name.to_string(),
                    // The schema's own test checks every stream_type is a valid one.
                    kind: ColumnType::parse(column.stream_type).unwrap_or(ColumnType::Dynamic),
                })
                .collect(),
        }
    }

    /// A stream named `name` with `(column, stream type)` pairs, e.g.
    /// `StreamConfig::new("Custom-Flat", &[("TimeGenerated", "datetime"), ("msg", "string")])`.
    /// Unknown type names become `dynamic`.
    pub fn new(name: impl Into<String>, columns: &[(&str, &str)]) -> Self {
        StreamConfig {
            name: name.into(),
            columns: columns
                .iter()
                .map(|(column, kind)| {
                    ColumnDef::new(
                        *column,
                        ColumnType::parse(kind).unwrap_or(ColumnType::Dynamic),
                    )
                })
                .collect(),
        }
    }
}

/// A federated identity credential on the app registration (Entra "Federated credentials"):
/// an assertion is accepted when its `iss`, `sub` and `aud` equal these (docs/emulator-facts.md §2.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    /// The external issuer's URL, e.g. [`crate::Emulator::aws_issuer`].
    pub issuer: String,
    /// The subject, e.g. the IAM role ARN for AWS outbound federation.
    pub subject: String,
    /// The audience, usually [`ENTRA_TOKEN_EXCHANGE_AUDIENCE`].
    pub audience: String,
}

impl FederatedCredential {
    /// A credential for `issuer` and `subject` with the recommended audience
    /// [`ENTRA_TOKEN_EXCHANGE_AUDIENCE`].
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        FederatedCredential {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: ENTRA_TOKEN_EXCHANGE_AUDIENCE.to_string(),
        }
    }

    /// A credential for the emulator's own AWS-account issuer (resolved when it starts, since
    /// the issuer URL holds the bound port): [`AWS_ISSUER_PLACEHOLDER`] as the issuer.
    pub fn aws(subject: impl Into<String>) -> Self {
        FederatedCredential::new(AWS_ISSUER_PLACEHOLDER, subject)
    }

    /// A credential for the emulator's external issuer (resolved when it starts).
    pub fn external(subject: impl Into<String>) -> Self {
        FederatedCredential::new(EXTERNAL_ISSUER_PLACEHOLDER, subject)
    }

    /// The same credential with another audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }
}

/// A federated credential issuer that stands for [`crate::Emulator::aws_issuer`], replaced
/// when the emulator starts.
pub const AWS_ISSUER_PLACEHOLDER: &str = "{aws_issuer}";
/// A federated credential issuer that stands for [`crate::Emulator::external_issuer`].
pub const EXTERNAL_ISSUER_PLACEHOLDER: &str = "{external_issuer}";

/// The audience Entra recommends for federated identity credentials. Source:
/// docs/emulator-facts.md §2.7 (Learn, "Workload identity federation").
pub const ENTRA_TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Everything the emulator knows: identities, the DCR, limits and the initial faults.
/// `Default` gives fixed test identities and the Keeper stream.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Directory (tenant) id, a GUID.
    pub tenant_id: String,
    /// App registration (client) id, a GUID.
    pub client_id: String,
    /// The client secret's value.
    pub client_secret: String,
    /// Object id of the app's service principal (the token's `oid`).
    pub object_id: String,
    /// The cloud whose token audience is accepted (`monitor.azure.com/.us/.cn`).
    pub cloud: Cloud,
    /// DCR immutable id, `dcr-` + 32 hex.
    pub dcr_id: String,
    /// Declared streams; the first is the one `ingestion_endpoint()` names.
    pub streams: Vec<StreamConfig>,
    /// Access-token lifetime unless `faults.token_lifetime_secs` overrides it.
    pub token_lifetime_secs: u64,
    /// The `X-IDENTITY-HEADER` value the managed-identity endpoint requires.
    pub identity_header: String,
    /// Client id of the (system-assigned) managed identity.
    pub identity_client_id: String,
    /// Strict mode (default on): also 413 a *decompressed* body over 1 MiB, and 400 a body
    /// that is not a JSON array of objects (the real service answers 204 and drops it).
    pub strict: bool,
    /// Keep every accepted row (default on). Off ("count-only", for benchmarks): every check
    /// still runs and the stats count rows, but no row is kept or shaped, so the emulator
    /// spends little of the CPU the client under test needs.
    pub store_rows: bool,
    /// Faults in force from the start.
    pub faults: Faults,
    /// Federated identity credentials registered on the app (default: none).
    pub federated_credentials: Vec<FederatedCredential>,
    /// PEM certificates (public part) registered on the app (default: none).
    pub certificates: Vec<String>,
    /// Whether the emulated AWS account has outbound web identity federation enabled
    /// (default true); when false STS answers `OutboundWebIdentityFederationDisabledException`.
    pub aws_federation_enabled: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            tenant_id: "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f".to_string(),
            client_id: "0b5f7a41-3c2e-4d8b-9a61-5e2f8c7d1b90".to_string(),
            client_secret: "Qx8~pL2vN.d7Rk_Tz4mW9sYb-Hc3Jf6Ge1Ua5Vo0".to_string(),
            object_id: "d3c1a9e7-5b2f-4e8a-8c6d-1f0b9a7e3c52".to_string(),
            cloud: Cloud::Public,
            dcr_id: "dcr-5c8e1f3a7b9d4e2f8a6c0b1d3e5f7a9c".to_string(),
            streams: vec![StreamConfig::keeper()],
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            identity_header: "b7e4c2a9-1f3d-4a6b-8e5c-9d0f2a4b6c8e".to_string(),
            identity_client_id: "6a2d8f4c-0e1b-4c7a-9f3e-2b5d7c9a1e40".to_string(),
            strict: true,
            store_rows: true,
            faults: Faults::default(),
            federated_credentials: Vec::new(),
            certificates: Vec::new(),
            aws_federation_enabled: true,
        }
    }
}

impl EmulatorConfig {
    /// Adds (or replaces) a declared stream.
    pub fn with_stream(mut self, stream: StreamConfig) -> Self {
        self.streams.retain(|existing| existing.name != stream.name);
        self.streams.push(stream);
        self
    }

    /// Registers a federated identity credential on the app.
    pub fn with_federated_credential(mut self, credential: FederatedCredential) -> Self {
        self.federated_credentials.push(credential);
        self
    }

    /// Registers a certificate (PEM, public part) on the app.
    pub fn with_certificate(mut self, pem: impl Into<String>) -> Self {
        self.certificates.push(pem.into());
        self
    }

    /// Turns the AWS account's outbound web identity federation on or off.
    pub fn with_aws_federation_enabled(mut self, enabled: bool) -> Self {
        self.aws_federation_enabled = enabled;
        self
    }

    /// The declared stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|stream| stream.name == name)
    }

    /// The first declared stream's name (the Keeper stream by default).
    pub fn default_stream(&self) -> &str {
        self.streams
            .first()
            .map(|stream| stream.name.as_str())
            .unwrap_or(DEFAULT_STREAM)
    }

    /// The token audience for the configured cloud, e.g. `https://monitor.azure.com`.
    pub fn audience(&self) -> &'static str {
        match self.cloud {
            Cloud::Public => "https://monitor.azure.com",
            Cloud::UsGovernment => "https://monitor.azure.us",
            Cloud::China => "https://monitor.azure.cn",
        }
    }

    /// The real authority host of the configured cloud (used in `error_uri`).
    pub(crate) fn real_authority_host(&self) -> &'static str {
        self.cloud.authority_host()
    }
}

impl fmt::Debug for EmulatorConfig {
    // The secret and the identity header stay out of Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("port", &self.port)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .field("cloud", &self.cloud)
            .field("dcr_id", &self.dcr_id)
            .field("streams", &self.streams)
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("identity_header", &"<hidden>")
            .field("strict", &self.strict)
            .field("store_rows", &self.store_rows)
            .field("faults", &self.faults)
            .field("federated_credentials", &self.federated_credentials)
            .field("certificates", &self.certificates.len())
            .field("aws_federation_enabled", &self.aws_federation_enabled)
            .finish()
    }
}
