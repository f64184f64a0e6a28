//! What Entra ID's and the ingestion endpoint's answers mean, and which step of Keeper's
//! Azure Monitor guide fixes each. The ingestion advice is the relay's own
//! ([`crate::ingest::retry::advice`]); this adds only the portal step, and the token claims
//! the relay never reads.

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::auth::AccessToken;
use crate::ingest::retry::{self, AzureError};
use crate::Error;

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
    /// Federated identity credentials (AWS federation, federated token file).
    pub const FEDERATED_CREDENTIAL: &str = "App registrations > your app > Certificates & secrets > Federated credentials (issuer, subject, audience; infra/README.md, \"AWS web identity federation\")";
    /// The certificate credential.
    pub const CERTIFICATE: &str = "App registrations > your app > Certificates & secrets > Certificates (upload the certificate's public part)";
    /// AWS account and role setup for federation.
    pub const AWS_FEDERATION: &str = "Not a portal step: the AWS account (aws iam enable-outbound-web-identity-federation) and the function role (infra/aws/template.yaml, EntraCredential=AwsFederation)";
    /// Not a portal step: the network path.
    pub const NETWORK: &str =
        "Not a portal step: allow outbound HTTPS (TCP 443) and DNS from where logrelay runs";
    /// Not a portal step: logrelay's own settings.
    pub const LOGRELAY_SETTINGS: &str =
        "Not a portal step: logrelay's environment (see README, Configuration)";
}

/// A fix in plain words and the portal step it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub fix: String,
    pub portal: &'static str,
}

pub(super) fn advice(fix: impl Into<String>, portal: &'static str) -> Advice {
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
        Error::MissingConfig { .. } | Error::InvalidConfig { .. } | Error::Path { .. } => {
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
    if text.contains("OutboundWebIdentityFederationDisabled") {
        advice(
            "The AWS account has not enabled outbound identity federation, so STS GetWebIdentityToken refuses every role: run `aws iam enable-outbound-web-identity-federation` once (it prints the issuer to register on the federated credential)",
            portal::AWS_FEDERATION,
        )
    } else if text.contains("GetWebIdentityToken")
        && (text.contains("AccessDenied") || text.contains("not authorized"))
    {
        advice(
            "The function's role may not call sts:GetWebIdentityToken for the Entra audience: deploy the template with EntraCredential=AwsFederation (it adds the permission with the sts:IdentityTokenAudience condition), or add that statement to the role",
            portal::AWS_FEDERATION,
        )
    } else if has("700213") {
        advice(
            "AADSTS700213: the federated credential's subject differs from the token's sub. For AWS the subject is the function role's ARN (stack output FederationSubjects); for Kubernetes system:serviceaccount:<namespace>:<name>. Fix the federated credential's subject",
            portal::FEDERATED_CREDENTIAL,
        )
    } else if has("700212") {
        advice(
            "AADSTS700212: the federated credential's audience differs from the token's aud. Register api://AzureADTokenExchange (…USGov / …China in the national clouds) as the federated credential's audience",
            portal::FEDERATED_CREDENTIAL,
        )
    } else if has("700211") {
        advice(
            "AADSTS700211: no federated credential has the token's issuer. Register the issuer exactly (AWS: `aws iam get-outbound-web-identity-federation-info --query IssuerIdentifier`)",
            portal::FEDERATED_CREDENTIAL,
        )
    } else if has("70021") {
        advice(
            "AADSTS70021: no federated credential on the app registration matches the token (issuer, subject, audience). Add one with `az ad app federated-credential create` (infra/README.md); a new one takes a few minutes to apply",
            portal::FEDERATED_CREDENTIAL,
        )
    } else if has("700024") {
        advice(
            "AADSTS700024: the client assertion is outside its valid time range. Check this host's clock (clock skew: sync it with NTP); for AZURE_FEDERATED_TOKEN_FILE, check the platform renews the file",
            portal::LOGRELAY_SETTINGS,
        )
    } else if has("700027") {
        advice(
            "AADSTS700027: the assertion's signature did not verify against a registered certificate. Upload the public part of the certificate in AZURE_CLIENT_CERTIFICATE_PATH to the app registration",
            portal::CERTIFICATE,
        )
    } else if has("7000215") {
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

/// Explains a refused probe with the relay's own advice for `status`, and the portal step.
pub fn explain_ingestion_status(status: u16, error: &AzureError, dcr_id: &str) -> Advice {
    let portal = match status {
        401 => portal::LOGRELAY_SETTINGS,
        403 => portal::ROLE_ASSIGNMENT,
        400 | 404 => portal::TABLE_AND_RULE,
        413 | 408 | 429 | 500..=599 => portal::NETWORK,
        _ => portal::ENDPOINT_URL,
    };
    let mut fix = retry::advice(status, error, dcr_id);
    if retry::classify(status) == retry::RetryAction::Retry {
        fix.push_str(
            "; the service is throttling or failing right now: run doctor again in a minute",
        );
    }
    advice(fix, portal)
}

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
