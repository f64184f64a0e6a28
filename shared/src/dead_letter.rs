//! The dead letter: where every event that cannot be delivered goes, with the reason.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::model::BoxFuture;
use crate::model::EncodedRow;
use crate::{Error, Result};

/// One undeliverable event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterEntry {
    /// Why it was not delivered, in words a person can act on.
    pub reason: String,
    /// Where it came from: file name, S3 URI, queue message id.
    pub source: String,
    /// Record number within the source (1-based line or element), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// The row as it would have been sent, when it was decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// The raw input (lossy UTF-8, capped), when it could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Somewhere to write undeliverable events. A failed write is fatal for the run: the
/// events would otherwise be lost.
pub trait DeadLetterSink: Send + Sync + std::fmt::Debug {
    /// Writes one batch of entries (one file or object per call).
    fn write<'a>(&'a self, entries: &'a [DeadLetterEntry]) -> BoxFuture<'a, Result<()>>;

    /// Where this sink writes, for messages.
    fn location(&self) -> String;
}

/// Longest `raw` text kept in an entry: enough to find and fix the record, bounded so one
/// huge bad record cannot blow up the dead letter.
pub const MAX_RAW_CHARS: usize = 64 * 1024;

impl DeadLetterEntry {
    /// The entry for a decoded row that could not be delivered. `event` is the row object
    /// itself, exactly as it would have been sent.
    pub fn for_row(row: &EncodedRow, reason: impl Into<String>) -> DeadLetterEntry {
        let (event, raw) = match serde_json::from_slice::<serde_json::Value>(&row.json) {
            Ok(value) => (Some(value), None),
            // Rows are built by serde_json, so this is a bug elsewhere; keep the bytes anyway.
            Err(_) => (None, Some(raw_text(&row.json))),
        };
        DeadLetterEntry {
            reason: reason.into(),
            source: row.origin.source.to_string(),
            record: Some(row.origin.record),
            event,
            raw,
        }
    }
}

/// Lossy UTF-8 of `bytes`, capped at [`MAX_RAW_CHARS`] characters.
pub fn raw_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_RAW_CHARS)
        .collect()
}

/// Writes each batch of entries as one NDJSON file in a local directory, named
/// `<UTC timestamp>-<source slug>-<n>.ndjson`. The directory is created only when there is
/// something to write. Files appear whole: written under a temporary name, then renamed.
#[derive(Debug)]
pub struct LocalDirDeadLetter {
    dir: PathBuf,
    next: AtomicU64,
}

impl LocalDirDeadLetter {
    /// A dead letter writing into `dir` (created lazily).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalDirDeadLetter {
            dir: dir.into(),
            next: AtomicU64::new(1),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn write_file(&self, entries: &[DeadLetterEntry]) -> std::io::Result<PathBuf> {
        let mut body = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut body, entry).map_err(std::io::Error::other)?;
            body.push(b'\n');
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let slug = slug(entries.first().map_or("", |entry| entry.source.as_str()));
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let name = format!("{stamp}-{slug}-{n}.ndjson");
            let path = self.dir.join(&name);
            if tokio::fs::try_exists(&path).await? {
                continue; // another writer (or process) took this name
            }
            let partial = self
                .dir
                .join(format!(".{name}.{}.partial", std::process::id()));
            tokio::fs::write(&partial, &body).await?;
            tokio::fs::rename(&partial, &path).await?;
            return Ok(path);
        }
    }
}

impl DeadLetterSink for LocalDirDeadLetter {
    fn write<'a>(&'a self, entries: &'a [DeadLetterEntry]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            let path = self
                .write_file(entries)
                .await
                .map_err(|error| Error::DeadLetter {
                    location: self.location(),
                    reason: error.to_string(),
                })?;
            tracing::warn!(
                path = %path.display(),
                entries = entries.len(),
                "Wrote events to the dead letter."
            );
            Ok(())
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Longest source slug in a file name.
const MAX_SLUG_CHARS: usize = 60;

/// A file-name-safe slug of a source (`s3://bucket/a b.json` → `s3-bucket-a-b-json`).
pub fn slug(source: &str) -> String {
    let mut out = String::new();
    for c in source.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= MAX_SLUG_CHARS {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "input".to_string()
    } else {
        out.to_string()
    }
}

/// An in-memory dead letter for tests; can be told to fail every write.
#[derive(Debug, Default)]
pub struct MemoryDeadLetter {
    writes: Mutex<Vec<Vec<DeadLetterEntry>>>,
    fail: bool,
}

impl MemoryDeadLetter {
    /// An empty, working dead letter.
    pub fn new() -> Self {
        MemoryDeadLetter::default()
    }

    /// A dead letter whose every write fails (to prove such failures are fatal).
    pub fn failing() -> Self {
        MemoryDeadLetter {
            writes: Mutex::default(),
            fail: true,
        }
    }

    /// Every entry written so far, in write order.
    pub fn entries(&self) -> Vec<DeadLetterEntry> {
        self.lock().iter().flatten().cloned().collect()
    }

    /// How many `write` calls carried entries.
    pub fn writes(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<DeadLetterEntry>>> {
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl DeadLetterSink for MemoryDeadLetter {
    fn write<'a>(&'a self, entries: &'a [DeadLetterEntry]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.fail {
                return Err(Error::DeadLetter {
                    location: self.location(),
                    reason: "the test sink refuses every write".into(),
                });
            }
            if !entries.is_empty() {
                self.lock().push(entries.to_vec());
            }
            Ok(())
        })
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;
    use std::sync::Arc;

    fn row(json: &str, record: u64) -> EncodedRow {
        EncodedRow {
            json: json.as_bytes().to_vec(),
            origin: Origin {
                source: Arc::from("s3://bucket/keeper/2025/01/events.json.gz"),
                record,
            },
        }
    }

    #[test]
    fn an_entry_for_a_row_holds_the_row_object_itself() {
        let entry = DeadLetterEntry::for_row(&row(r#"{"EventId":"a","n":1}"#, 7), "HTTP 403");
        assert_eq!(entry.event, Some(serde_json::json!({"EventId":"a","n":1})));
        assert_eq!(entry.record, Some(7));
        assert_eq!(entry.raw, None);
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            line,
            r#"{"reason":"HTTP 403","source":"s3://bucket/keeper/2025/01/events.json.gz","record":7,"event":{"EventId":"a","n":1}}"#
        );
    }

    #[test]
    fn slugs_are_safe_file_name_parts() {
        assert_eq!(slug("s3://Bucket/a b.json"), "s3-bucket-a-b-json");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug(""), "input");
        assert_eq!(slug("///"), "input");
        assert!(slug(&"x".repeat(500)).len() <= MAX_SLUG_CHARS);
    }

    #[tokio::test]
    async fn writes_one_ndjson_file_per_batch_and_creates_the_directory_lazily() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("dead");
        let sink = LocalDirDeadLetter::new(&dir);
        sink.write(&[]).await.unwrap();
        assert!(!dir.exists(), "nothing to write, no directory");

        let batch: Vec<DeadLetterEntry> = (1..=3)
            .map(|i| DeadLetterEntry::for_row(&row(&format!(r#"{{"i":{i}}}"#), i), "why"))
            .collect();
        sink.write(&batch).await.unwrap();
        sink.write(&batch[..1]).await.unwrap();

        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2);
        let name = files[0].file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.contains("-s3-bucket-keeper-2025-01-events-json-gz-") && name.ends_with(".ndjson"),
            "{name}"
        );
        let mut lines = 0;
        for file in &files {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(value["reason"], "why");
                assert!(value["event"]["i"].is_number());
                lines += 1;
            }
        }
        assert_eq!(lines, 4);
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_a_dead_letter_error() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let sink = LocalDirDeadLetter::new(file.join("sub"));
        let entry = DeadLetterEntry::for_row(&row("{}", 1), "why");
        let error = sink.write(&[entry]).await.unwrap_err();
        assert!(matches!(error, Error::DeadLetter { .. }), "{error}");
    }
}
