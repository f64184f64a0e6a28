//! AWS adapters: S3 notices and objects, the S3 dead letter, Secrets Manager. OWNER: aws helper.

pub mod clients;
pub mod notification;
pub mod s3;
pub mod secrets;

use std::sync::Arc;

use crate::config::Config;
use crate::dead_letter::{DeadLetterSink, LocalDirDeadLetter};
use crate::keeper::{DecodeOptions, SchemaMode};
use crate::{Error, Result};

pub use clients::AwsClients;
pub use notification::{extract, extract_text, Extracted, ObjectRef};
pub use s3::{forward_object, ObjectOutcome, S3DeadLetter};
pub use secrets::SecretsManagerSource;

/// Where Lambda may write files: the only writable path in the sandbox.
const LAMBDA_TMP_DEAD_LETTER: &str = "/tmp/logrelay-dead-letter";

/// The dead letter named by `LOGRELAY_DEAD_LETTER`: `s3://bucket/prefix/` or a directory
/// (default `/tmp/logrelay-dead-letter`, which does not outlive the container: set an S3 URI
/// in production).
pub fn dead_letter_from_env(clients: &AwsClients) -> Result<Arc<dyn DeadLetterSink>> {
    match std::env::var("LOGRELAY_DEAD_LETTER") {
        Ok(uri) if uri.starts_with(s3::S3_SCHEME) => {
            let (bucket, prefix) = S3DeadLetter::parse(&uri)?;
            Ok(Arc::new(S3DeadLetter::new(
                clients.s3.clone(),
                bucket,
                prefix,
            )))
        }
        Ok(dir) if !dir.is_empty() => Ok(Arc::new(LocalDirDeadLetter::new(dir))),
        _ => {
            tracing::warn!(
                dir = LAMBDA_TMP_DEAD_LETTER,
                "LOGRELAY_DEAD_LETTER is not set; undeliverable events go to a local directory that is lost with the container. Set s3://bucket/prefix/."
            );
            Ok(Arc::new(LocalDirDeadLetter::new(LAMBDA_TMP_DEAD_LETTER)))
        }
    }
}

/// Decoding options from `LOGRELAY_SCHEMA` (`keeper`, default, or `passthrough` with
/// `LOGRELAY_TIME_FIELD`) and the configured decompression limit.
pub fn decode_options_from_env(config: &Config) -> Result<DecodeOptions> {
    let schema = match std::env::var("LOGRELAY_SCHEMA").as_deref() {
        Err(_) | Ok("") | Ok("keeper") => SchemaMode::Keeper,
        Ok("passthrough") => SchemaMode::Passthrough {
            time_field: std::env::var("LOGRELAY_TIME_FIELD")
                .ok()
                .filter(|field| !field.is_empty())
                .unwrap_or_else(|| "TimeGenerated".into()),
        },
        Ok(other) => {
            return Err(Error::InvalidConfig {
                name: "LOGRELAY_SCHEMA".into(),
                reason: format!("`{other}` is not a schema; use keeper (default) or passthrough"),
            })
        }
    };
    Ok(DecodeOptions {
        schema,
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: std::time::SystemTime::now(),
    })
}
