//! S3 objects streamed into the relay, and the S3 dead letter.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncRead;

use crate::dead_letter::{
    name_nonce, name_stamp, slug, DeadLetterEntry, DeadLetterSink, MAX_NAME_ATTEMPTS,
};
use crate::ingest::{Report, SessionOptions};
use crate::model::BoxFuture;
use crate::relay::{Input, Relay};
use crate::{Error, Result};

use super::clients::{aws_error, error_code};
use super::notification::ObjectRef;

/// S3 error codes meaning "this object is not there": dead-lettered (naming the object and
/// why), never retried (retrying a deleted object cannot succeed). Source: S3 GetObject error
/// list (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>).
const MISSING_CODES: &[&str] = &["NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"];

/// What became of one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    /// Read and forwarded.
    Forwarded(Report),
    /// Not there (deleted, expired, or a key that never existed): one dead-letter entry
    /// names it and why; the report counts it (`unreadable_sources`).
    Missing(Report),
}

/// An opened object body, read as a stream so memory stays bounded however large it is.
pub type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

/// Opens `object` (trying `alt_key` when `key` does not exist). `Ok(None)` when it does not
/// exist under either key; transient and permanent errors as [`Error::Aws`].
pub async fn open_object(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
) -> Result<Option<(String, ObjectBody)>> {
    Ok(open_or_missing(client, object).await?.ok())
}

/// Like [`open_object`], with the error code S3 gave when the object is not there.
async fn open_or_missing(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
) -> Result<std::result::Result<(String, ObjectBody), String>> {
    let keys = std::iter::once(&object.key).chain(object.alt_key.as_ref());
    let mut why = String::from("404");
    for key in keys {
        let mut request = client.get_object().bucket(&object.bucket).key(key);
        if let Some(version) = &object.version_id {
            request = request.version_id(version);
        }
        match request.send().await {
            Ok(output) => {
                let body: ObjectBody = Box::new(output.body.into_async_read());
                return Ok(Ok((key.clone(), body)));
            }
            Err(error) => {
                let status = error.raw_response().map(|raw| raw.status().as_u16());
                let code = error_code(&error);
                let missing =
                    status == Some(404) || code.is_some_and(|code| MISSING_CODES.contains(&code));
                if !missing {
                    let mut mapped = aws_error("s3", "GetObject", &error);
                    // An object named in a notification may be readable later (permissions
                    // fixed, KMS key enabled): let the platform retry instead of losing it.
                    if let Error::Aws { transient, .. } = &mut mapped {
                        *transient = true;
                    }
                    return Err(mapped);
                }
                why = code.unwrap_or("404 Not Found").to_string();
            }
        }
    }
    Ok(Err(why))
}

/// The dead-letter entry for an object a notice names that S3 does not have. `source` is
/// the object's URI with its version (`s3://bucket/key?versionId=...`), so the entry says
/// exactly what was asked for; `code` is what S3 answered.
pub fn missing_object_entry(object: &ObjectRef, code: &str) -> DeadLetterEntry {
    let mut source = object.uri();
    if let Some(version) = &object.version_id {
        source.push_str("?versionId=");
        source.push_str(version);
    }
    let what = match (code, &object.version_id) {
        // Kept free of names (they are in `source`): reasons are counted by their text.
        ("NoSuchBucket", _) => format!(
            "S3 has no such bucket ({code}): the notice names a bucket that does not exist \
             (deleted, or a notification from another account or region). Nothing was forwarded"
        ),
        ("NoSuchVersion", _) | (_, Some(_)) => format!(
            "S3 has no such object version ({code}): it was deleted, or expired by a \
             lifecycle rule (noncurrent versions), before it was read. Its events were not \
             forwarded; if they matter, find the object (`aws s3api list-object-versions` on \
             the bucket and key of this entry's source) and upload it again"
        ),
        _ => format!(
            "S3 has no such object ({code}): it was deleted before it was read, or the \
             notice names a key that was never written. Its events were not forwarded; if they \
             matter, upload the object again"
        ),
    };
    DeadLetterEntry {
        reason: what,
        source,
        record: None,
        event: None,
        raw: None,
    }
}

/// Reads `object` and forwards it through `relay` in its own session. An object that is
/// not there is dead-lettered (one entry naming it) and not retried.
pub async fn forward_object(
    client: &aws_sdk_s3::Client,
    relay: &Relay,
    object: &ObjectRef,
    options: SessionOptions,
) -> Result<ObjectOutcome> {
    let (key, body) = match open_or_missing(client, object).await? {
        Ok(opened) => opened,
        Err(code) => {
            let entry = missing_object_entry(object, &code);
            tracing::warn!(object = %entry.source, code = %code, "The object does not exist (deleted, expired or never written); writing it to the dead letter.");
            let report = relay.reject(vec![entry]).await?;
            return Ok(ObjectOutcome::Missing(report));
        }
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
/// `<prefix><source slug>/<UTC time to the millisecond>-<16 random hex digits>.ndjson`, so a
/// person can find the entries for a given source object by listing its folder.
///
/// Nothing is overwritten, however many containers write at once: besides the random part,
/// every PutObject carries `If-None-Match: *`, so S3 refuses (412) rather than replaces an
/// existing key and the batch is written under a new name.
#[derive(Debug)]
pub struct S3DeadLetter {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

/// The URI scheme that selects the S3 dead letter in `LOGRELAY_DEAD_LETTER`.
pub const S3_SCHEME: &str = "s3://";

/// S3 answers a conditional write whose key exists with 412 Precondition Failed, and one that
/// races another conditional write to the same key with 409 ConditionalRequestConflict ("retry
/// the upload"). Source: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>.
const KEY_TAKEN_CODES: &[&str] = &["PreconditionFailed", "ConditionalRequestConflict"];

impl S3DeadLetter {
    /// A dead letter writing under `s3://bucket/prefix`.
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        S3DeadLetter {
            client,
            bucket,
            prefix,
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

    /// The object key for a batch from `source` written at `now`, with the random `nonce`.
    pub fn object_key(&self, source: &str, now: SystemTime, nonce: &str) -> String {
        format!(
            "{}{}/{}-{nonce}.ndjson",
            self.prefix,
            slug(source),
            name_stamp(now)
        )
    }

    /// Puts `body` under `key` (a full key, prefix included) unless the key exists:
    /// `Ok(false)` when it does (or a concurrent conditional write holds it), never replacing
    /// it.
    pub async fn put_new(&self, key: &str, body: &[u8]) -> Result<bool> {
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(error) => {
                let status = error.raw_response().map(|raw| raw.status().as_u16());
                let taken = matches!(status, Some(412 | 409))
                    || error_code(&error).is_some_and(|code| KEY_TAKEN_CODES.contains(&code));
                if taken {
                    tracing::warn!(object = %format!("s3://{}/{key}", self.bucket), "The dead-letter key exists already; writing under a new name.");
                    Ok(false)
                } else {
                    Err(aws_error("s3", "PutObject", &error))
                }
            }
        }
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
            for _ in 0..MAX_NAME_ATTEMPTS {
                let key = self.object_key(source, SystemTime::now(), &name_nonce());
                let written = self
                    .put_new(&key, &body)
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                if written {
                    tracing::warn!(
                        object = %format!("s3://{}/{key}", self.bucket),
                        entries = entries.len(),
                        "Wrote events to the dead letter."
                    );
                    return Ok(());
                }
            }
            Err(failed(format!(
                "{MAX_NAME_ATTEMPTS} random object keys were all taken"
            )))
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
        let key = sink.object_key(
            "s3://keeper-audit/2026/11/events.json.gz",
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_583_200_123),
            "9f3c2a7d1e4b8c06",
        );
        assert_eq!(
            key,
            "failed/s3-keeper-audit-2026-11-events-json-gz/20251201T100000.123Z-9f3c2a7d1e4b8c06.ndjson"
        );
        assert_eq!(sink.location(), "s3://dlq/failed/");
    }
}
