//! AWS adapters: S3 notices and objects, the S3 dead letter, Secrets Manager.

pub mod clients;
pub mod forward;
pub mod notification;
pub mod s3;
pub mod secrets;
pub mod web_identity;

use std::sync::Arc;

use crate::auth::SecretSource;
use crate::config::{Config, Credential, Platform};
use crate::dead_letter::{DeadLetterSink, LocalDirDeadLetter};
use crate::keeper::{DecodeOptions, SchemaMode};
use crate::relay::Relay;
use crate::Result;

pub use clients::AwsClients;
pub use forward::{Bodies, Handled, LambdaForwarder};
pub use notification::{extract, extract_text, Extracted, ObjectRef};
pub use s3::{forward_object, ObjectOutcome, S3DeadLetter};
pub use secrets::SecretsManagerSource;

/// The dead letter `config.dead_letter` names: `s3://bucket/prefix/` or a directory (the
/// default `/tmp` one does not outlive the container: set an S3 URI in production).
pub fn dead_letter_for(config: &Config, clients: &AwsClients) -> Result<Arc<dyn DeadLetterSink>> {
    let location = &config.dead_letter;
    if location.starts_with(s3::S3_SCHEME) {
        let (bucket, prefix) = S3DeadLetter::parse(location)?;
        return Ok(Arc::new(S3DeadLetter::new(
            clients.s3.clone(),
            bucket,
            prefix,
        )));
    }
    Ok(Arc::new(LocalDirDeadLetter::new(location.clone())))
}

/// Decoding options from the configured schema and decompression limit.
pub fn decode_options(config: &Config) -> DecodeOptions {
    DecodeOptions {
        schema: config.schema.clone(),
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: std::time::SystemTime::now(),
    }
}

/// What a Lambda container holds, built once from the environment.
#[derive(Debug, Clone)]
pub struct Container {
    /// The relay and S3 client the handlers forward through.
    pub forwarder: LambdaForwarder,
    /// The SDK clients.
    pub clients: AwsClients,
    /// The settings read at start.
    pub config: Config,
}

/// Everything a Lambda function needs, built once per container from the environment:
/// configuration, AWS clients, the client secret from Secrets Manager when
/// `AZURE_CLIENT_SECRET_ARN` is set, the dead letter, and the relay.
pub async fn container_from_env() -> Result<Container> {
    let config = Config::from_env(Platform::Aws)?;
    let clients = AwsClients::from_env().await?;
    let secrets: Option<Arc<dyn SecretSource>> = match &config.auth.credential {
        Credential::SecretArn(arn) => Some(Arc::new(SecretsManagerSource::new(
            clients.secrets.clone(),
            arn.clone(),
        ))),
        _ => None,
    };
    let web_identity: Option<Arc<dyn crate::auth::AssertionSource>> = match &config.auth.credential
    {
        Credential::AwsFederation { audience } => Some(Arc::new(
            web_identity::StsWebIdentitySource::new(clients.sts.clone(), audience.clone()),
        )),
        _ => None,
    };
    let sources = crate::auth::CredentialSources {
        secret: secrets,
        web_identity,
    };
    let dead_letter = dead_letter_for(&config, &clients)?;
    let relay = Relay::from_config(&config, dead_letter, decode_options(&config), sources).await?;
    let forwarder = LambdaForwarder {
        relay,
        s3: clients.s3.clone(),
        budget: config.tuning.deadline,
    };
    Ok(Container {
        forwarder,
        clients,
        config,
    })
}

/// A forwarder whose Azure, Entra and S3 endpoints are a closed loopback port, writing to
/// `dead_letter`: for handler tests that must never reach a service.
pub async fn offline_forwarder(dead_letter: Arc<dyn DeadLetterSink>) -> Result<LambdaForwarder> {
    const CLOSED: &str = "http://127.0.0.1:9";
    let config = Config::from_lookup(|name| {
        let value = match name {
            "AZURE_TENANT_ID" => "00000000-0000-0000-0000-000000000001".to_string(),
            "AZURE_CLIENT_ID" => "00000000-0000-0000-0000-000000000002".to_string(),
            "AZURE_CLIENT_SECRET" => "offline".to_string(),
            "AZURE_AUTHORITY_HOST" => CLOSED.to_string(),
            "LOGS_INGESTION_ENDPOINT" => format!("{CLOSED}/dataCollectionRules/dcr-000a00a000a00000a000000aa000a0aa/streams/Custom-KeeperSecurityEvents?api-version=2023-01-01"),
            _ => return None,
        };
        Some(value)
    })?;
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(CLOSED)
        .build();
    let clients = AwsClients::from_sdk_config(&sdk, true);
    let decode = DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: std::time::SystemTime::now(),
    };
    let relay = Relay::from_config(&config, dead_letter, decode, None).await?;
    Ok(LambdaForwarder {
        relay,
        s3: clients.s3,
        budget: config.tuning.deadline,
    })
}
