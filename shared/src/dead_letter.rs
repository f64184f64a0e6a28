//! The dead letter: where every event that cannot be delivered goes, with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
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
/// `<UTC time to the millisecond>-<source slug>-<16 random hex digits>.ndjson`, e.g.
/// `20261201T093000.123Z-s3-keeper-audit-2026-12-01-events-json-gz-9f3c2a7d1e4b8c06.ndjson`.
/// The directory is created only when there is something to write.
///
/// Nothing is ever overwritten, however many processes share the directory (two Lambda
/// containers, Function App instances on one `/home/data`): the random part makes a clash
/// all but impossible, and the final name is created exclusively anyway (a clash picks a new
/// name). Files appear whole and are on disk before `write` answers: written under a hidden
/// `.<name>.partial`, fsynced, hard-linked to the final name (which fails rather than
/// replaces), and the directory fsynced.
#[derive(Debug)]
pub struct LocalDirDeadLetter {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

/// Names tried before giving up; a clash needs the same millisecond, source and 64 random
/// bits, so a second try is already a sign of something broken.
pub const MAX_NAME_ATTEMPTS: usize = 8;

/// The time part of dead-letter names: UTC, basic ISO 8601, to the millisecond.
pub fn name_stamp(now: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(now)
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

/// The random part of dead-letter names: 64 bits as 16 hex digits.
pub fn name_nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

impl LocalDirDeadLetter {
    /// A dead letter writing into `dir` (created lazily).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalDirDeadLetter::with_clock(dir, Arc::new(SystemClock))
    }

    /// A dead letter whose names take their time from `clock` (tests stop it, to prove
    /// writers at the same millisecond do not collide).
    pub fn with_clock(dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Self {
        LocalDirDeadLetter {
            dir: dir.into(),
            clock,
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
        let stem = format!(
            "{}-{}",
            name_stamp(self.clock.now()),
            slug(entries.first().map_or("", |entry| entry.source.as_str()))
        );
        let dir = self.dir.clone();
        // Plain blocking calls on a blocking thread: fsync and link have no async form.
        tokio::task::spawn_blocking(move || write_new_file(&dir, &stem, &body))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Creates `<dir>/<stem>-<nonce>.ndjson` holding `body`, never replacing a file, synced to
/// disk with its directory entry.
fn write_new_file(dir: &Path, stem: &str, body: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for _ in 0..MAX_NAME_ATTEMPTS {
        let name = format!("{stem}-{}.ndjson", name_nonce());
        match create_exclusive(dir, &name, body) {
            Ok(path) => {
                sync_dir(dir)?;
                return Ok(path);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{MAX_NAME_ATTEMPTS} random file names were all taken"),
    ))
}

/// Writes `body` to `dir/name` whole, or fails with `AlreadyExists` leaving what is there
/// untouched.
fn create_exclusive(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let written = write_synced(&partial, body);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    let linked = std::fs::hard_link(&partial, &path);
    let _ = std::fs::remove_file(&partial);
    match linked {
        Ok(()) => Ok(path),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(error),
        // A file system without hard links (some network shares): create the final name
        // exclusively instead; a reader may then see it before it is whole.
        Err(_) => write_synced(&path, body).map(|()| path),
    }
}

/// Creates `path` (failing if it exists), writes `body` and fsyncs it.
fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Fsyncs `dir` so the new name survives a crash (fsync(2): syncing a file does not sync the
/// directory entry). File systems that cannot sync a directory say so with `EINVAL`; they
/// persist names themselves.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        match std::fs::File::open(dir).and_then(|handle| handle.sync_all()) {
            Err(error) if error.kind() != std::io::ErrorKind::InvalidInput => return Err(error),
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
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
    async fn writers_stopped_at_the_same_millisecond_never_share_a_file() {
        let temp = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(SystemTime::UNIX_EPOCH));
        // Two sinks as two containers would have them, on one directory and one instant.
        let sinks = [
            LocalDirDeadLetter::with_clock(temp.path(), clock.clone()),
            LocalDirDeadLetter::with_clock(temp.path(), clock),
        ];
        for i in 0..20 {
            for sink in &sinks {
                let entry = DeadLetterEntry::for_row(&row(&format!(r#"{{"i":{i}}}"#), i), "why");
                sink.write(&[entry]).await.unwrap();
            }
        }
        let names: Vec<String> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names.len(), 40, "{names:?}");
        for name in &names {
            let (stem, nonce) = name
                .strip_suffix(".ndjson")
                .unwrap()
                .rsplit_once('-')
                .unwrap();
            assert_eq!(
                stem,
                "19700101T000000.000Z-s3-bucket-keeper-2025-01-events-json-gz"
            );
            assert_eq!(nonce.len(), 16);
            assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        }
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let name = "19700101T000000.000Z-input-0000000000000000.ndjson";
        create_exclusive(temp.path(), name, b"first\n").unwrap();
        let error = create_exclusive(temp.path(), name, b"second\n").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read_to_string(temp.path().join(name)).unwrap(),
            "first\n"
        );
        let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no partial file stays behind");
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
