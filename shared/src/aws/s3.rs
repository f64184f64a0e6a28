//! S3 objects streamed into the relay, and the S3 dead letter.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncRead;

use crate::dead_letter::{slug, DeadLetterEntry, DeadLetterSink};
use crate::ingest::{Report, SessionOptions};
use crate::model::BoxFuture;
use crate::relay::{Input, Relay};
use crate::{Error, Result};

use super::clients::{aws_error, error_code};
use super::notification::ObjectRef;

/// S3 error codes meaning "this object is not there": skipped, never retried (retrying a
/// deleted object cannot succeed). Source: S3 GetObject error list.
const MISSING_CODES: &[&str] = &["NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"];

/// What became of one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    /// Read and forwarded.
    Forwarded(Report),
    /// Not there (deleted, or a key that never existed): logged and skipped.
    Missing(String),
}

/// An opened object body, read as a stream so memory stays bounded however large it is.
pub type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

/// Opens `object` (trying `alt_key` when `key` does not exist). `Ok(None)` when it does not
/// exist under either key; transient and permanent errors as [`Error::Aws`].
pub async fn open_object(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
) -> Result<Option<(String, ObjectBody)>> {
    let keys = std::iter::once(&object.key).chain(object.alt_key.as_ref());
    for key in keys {
        let mut request = client.get_object().bucket(&object.bucket).key(key);
        if let Some(version) = &object.version_id {
            request = request.version_id(version);
        }
        match request.send().await {
            Ok(output) => {
                let body: ObjectBody = Box::new(output.body.into_async_read());
                return Ok(Some((key.clone(), body)));
            }
            Err(error) => {
                let status = error.raw_response().map(|raw| raw.status().as_u16());
                let missing = status == Some(404)
                    || error_code(&error).is_some_and(|code| MISSING_CODES.contains(&code));
                if !missing {
                    let mut mapped = aws_error("s3", "GetObject", &error);
                    // An object named in a notification may be readable later (permissions
                    // fixed, KMS key enabled): let the platform retry instead of losing it.
                    if let Error::Aws { transient, .. } = &mut mapped {
                        *transient = true;
                    }
                    return Err(mapped);
                }
            }
        }
    }
    Ok(None)
}

/// Reads `object` and forwards it through `relay` in its own session.
pub async fn forward_object(
    client: &aws_sdk_s3::Client,
    relay: &Relay,
    object: &ObjectRef,
    options: SessionOptions,
) -> Result<ObjectOutcome> {
    let Some((key, body)) = open_object(client, object).await? else {
        let uri = object.uri();
        tracing::warn!(object = %uri, "The object does not exist (deleted or never written); skipping it.");
        return Ok(ObjectOutcome::Missing(uri));
    };
    let source = format!("s3://{}/{key}", object.bucket);
    let mut forwarded = relay
        .forward([Input::async_reader(source, body)], options)
        .await?;
    match forwarded.read_errors.pop() {
        // The stream broke part-way: the rows before were sent; the object is retried.
        Some(failed) => Err(failed.error),
        None => Ok(ObjectOutcome::Forwarded(forwarded.report)),
    }
}

/// Writes each batch of dead-letter entries as one NDJSON object
/// `<prefix><source slug>/<UTC timestamp>-<n>.ndjson`, so a person can find the entries for
/// a given source object by listing its folder.
#[derive(Debug)]
pub struct S3DeadLetter {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    next: AtomicU64,
}

/// The URI scheme that selects the S3 dead letter in `LOGRELAY_DEAD_LETTER`.
pub const S3_SCHEME: &str = "s3://";

impl S3DeadLetter {
    /// A dead letter writing under `s3://bucket/prefix`.
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        S3DeadLetter {
            client,
            bucket,
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// Parses `s3://bucket/prefix/` (the prefix may be empty; a missing final `/` is added).
    pub fn parse(uri: &str) -> Result<(String, String)> {
        let invalid = |reason: &str| Error::InvalidConfig {
            name: "LOGRELAY_DEAD_LETTER".into(),
            reason: format!("`{uri}`: {reason}; expected s3://bucket/prefix/"),
        };
        let rest = uri
            .strip_prefix(S3_SCHEME)
            .ok_or_else(|| invalid("not an s3:// URI"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket is empty"));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok((bucket.to_string(), prefix))
    }

    /// The object key for a batch from `source`, numbered `n`.
    pub fn object_key(&self, source: &str, n: u64) -> String {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        format!("{}{}/{stamp}-{n}.ndjson", self.prefix, slug(source))
    }
}

impl DeadLetterSink for S3DeadLetter {
    fn write<'a>(&'a self, entries: &'a [DeadLetterEntry]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            let failed = |reason: String| Error::DeadLetter {
                location: self.location(),
                reason,
            };
            let mut body = Vec::new();
            for entry in entries {
                serde_json::to_writer(&mut body, entry)
                    .map_err(|error| failed(error.to_string()))?;
                body.push(b'\n');
            }
            let source = entries.first().map_or("", |entry| entry.source.as_str());
            let key = self.object_key(source, self.next.fetch_add(1, Ordering::Relaxed));
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/x-ndjson")
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|error| failed(aws_error("s3", "PutObject", &error).to_string()))?;
            tracing::warn!(
                object = %format!("s3://{}/{key}", self.bucket),
                entries = entries.len(),
                "Wrote events to the dead letter."
            );
            Ok(())
        })
    }

    fn location(&self) -> String {
        format!("{S3_SCHEME}{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_uris_split_into_bucket_and_prefix() {
        assert_eq!(
            S3DeadLetter::parse("s3://dlq/keeper/failed").unwrap(),
            ("dlq".to_string(), "keeper/failed/".to_string())
        );
        assert_eq!(
            S3DeadLetter::parse("s3://dlq").unwrap(),
            ("dlq".to_string(), String::new())
        );
        assert!(S3DeadLetter::parse("s3:///x").is_err());
        assert!(S3DeadLetter::parse("/tmp/dead").is_err());
    }

    #[test]
    fn dead_letter_objects_are_filed_under_their_source() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        let sink = S3DeadLetter::new(
            aws_sdk_s3::Client::from_conf(config),
            "dlq".into(),
            "failed/".into(),
        );
        let key = sink.object_key("s3://keeper-audit/2026/11/events.json.gz", 3);
        assert!(
            key.starts_with("failed/s3-keeper-audit-2026-11-events-json-gz/"),
            "{key}"
        );
        assert!(key.ends_with("-3.ndjson"), "{key}");
        assert_eq!(sink.location(), "s3://dlq/failed/");
    }
}
