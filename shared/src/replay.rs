//! Replaying the dead letter: the NDJSON files of a directory, or the objects under an S3
//! prefix, read back; the rows they keep sent again exactly as they were dead-lettered (so
//! their `EventId` dedupes anything that did arrive); each replayed file moved aside.
//!
//! Names are never parsed: every `*.ndjson` under the location is a dead-letter file, except
//! what lies in its [`REPLAYED`] area. Rows go through ordinary ingestion sessions (packing,
//! gzip, retries), one per group of files; rows that fail again are written to the same
//! location's dead letter with the new reason. A file is moved aside only after its session
//! finished, i.e. every row of it was delivered or dead-lettered again. Entries that were
//! never decoded (only `raw`) cannot be sent: they are counted and stay in the dead letter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::dead_letter::{DeadLetterEntry, DeadLetterSink, LocalDirDeadLetter};
use crate::ingest::{EncodedRow, Origin, Report, Session, SessionOptions, MAX_BATCH_BYTES};
use crate::relay::Relay;
use crate::{Error, Result};

/// The folder (or key prefix part) under the dead-letter location that replayed files are
/// moved into; never listed again.
pub const REPLAYED: &str = "replayed";

/// The extension every dead-letter file and object has.
pub const EXTENSION: &str = "ndjson";

/// Row bytes pushed into one session before it is finished (at the next file boundary) and
/// its files are moved aside: enough to keep a few requests in flight, small enough that a
/// stopped run leaves little to send twice.
pub const GROUP_ROW_BYTES: usize = 4 * MAX_BATCH_BYTES;

/// Where a dead letter lives.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory written by [`LocalDirDeadLetter`].
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// A prefix written by [`crate::aws::S3DeadLetter`].
    #[cfg(feature = "aws")]
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// The key prefix, empty or ending in `/`.
        prefix: String,
    },
}

/// One dead-letter file or object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredFile {
    /// The path or `s3://` URI, for messages.
    pub location: String,
    key: FileKey,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum FileKey {
    Path(PathBuf),
    #[cfg(feature = "aws")]
    Object(String),
}

impl Store {
    /// The location, as a person would name it.
    pub fn location(&self) -> String {
        match self {
            Store::Local { dir } => dir.display().to_string(),
            #[cfg(feature = "aws")]
            Store::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The dead letter that writes where this store reads (for entries that fail again).
    pub fn sink(&self) -> Arc<dyn DeadLetterSink> {
        match self {
            Store::Local { dir } => Arc::new(LocalDirDeadLetter::new(dir.clone())),
            #[cfg(feature = "aws")]
            Store::S3 {
                client,
                bucket,
                prefix,
            } => Arc::new(crate::aws::S3DeadLetter::new(
                client.clone(),
                bucket.clone(),
                prefix.clone(),
            )),
        }
    }

    /// Every dead-letter file outside the replayed area, in name order.
    pub async fn list(&self) -> Result<Vec<StoredFile>> {
        let mut files = match self {
            Store::Local { dir } => list_local(dir).await?,
            #[cfg(feature = "aws")]
            Store::S3 {
                client,
                bucket,
                prefix,
            } => s3::list(client, bucket, prefix).await?,
        };
        files.sort();
        Ok(files)
    }

    /// The bytes of one file.
    pub async fn read(&self, file: &StoredFile) -> Result<Vec<u8>> {
        match (&file.key, self) {
            (FileKey::Path(path), _) => tokio::fs::read(path).await.map_err(|source| Error::Io {
                what: file.location.clone(),
                source,
            }),
            #[cfg(feature = "aws")]
            (FileKey::Object(key), Store::S3 { client, bucket, .. }) => {
                s3::read(client, bucket, key).await
            }
            #[cfg(feature = "aws")]
            (FileKey::Object(_), Store::Local { .. }) => Err(wrong_store(file)),
        }
    }

    /// Moves `file` into the replayed area, never over another file; where it went.
    pub async fn move_aside(&self, file: &StoredFile) -> Result<String> {
        match (&file.key, self) {
            (FileKey::Path(path), Store::Local { dir }) => move_local(dir, path).await,
            #[cfg(feature = "aws")]
            (
                FileKey::Object(key),
                Store::S3 {
                    client,
                    bucket,
                    prefix,
                },
            ) => s3::move_aside(client, bucket, prefix, key).await,
            #[cfg(feature = "aws")]
            _ => Err(wrong_store(file)),
        }
    }
}

#[cfg(feature = "aws")]
fn wrong_store(file: &StoredFile) -> Error {
    Error::Path {
        path: PathBuf::from(&file.location),
        reason: "listed by another store".into(),
    }
}

/// Whether a file name is a dead-letter file: `*.ndjson`, not hidden (a partial write).
fn is_dead_letter_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .rsplit_once('.')
            .is_some_and(|(stem, extension)| !stem.is_empty() && extension == EXTENSION)
}

async fn list_local(dir: &Path) -> Result<Vec<StoredFile>> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |source| Error::Io { what, source }
    };
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let mut entries = tokio::fs::read_dir(&folder).await.map_err(io(&folder))?;
        while let Some(entry) = entries.next_entry().await.map_err(io(&folder))? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().await.map_err(io(&path))?;
            if kind.is_dir() {
                let replayed_area = folder == dir && name == REPLAYED;
                if !replayed_area && !name.starts_with('.') {
                    folders.push(path);
                }
            } else if kind.is_file() && is_dead_letter_name(&name) {
                files.push(StoredFile {
                    location: path.display().to_string(),
                    key: FileKey::Path(path),
                });
            }
        }
    }
    Ok(files)
}

/// `dir/replayed/<path relative to dir>`, with `-<n>` before the extension when taken.
/// A hard link is create-exclusive (it fails when the name exists), so nothing is replaced.
async fn move_local(dir: &Path, path: &Path) -> Result<String> {
    let failed = |reason: String| Error::Path {
        path: path.to_path_buf(),
        reason: format!("cannot move it aside into {REPLAYED}/: {reason}"),
    };
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let target = dir.join(REPLAYED).join(relative);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|error| failed(error.to_string()))?;
    }
    let mut candidate = target.clone();
    for n in 1..=1000u32 {
        match tokio::fs::hard_link(path, &candidate).await {
            Ok(()) => {
                tokio::fs::remove_file(path)
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                return Ok(candidate.display().to_string());
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                candidate = numbered(&target, n);
            }
            // No hard links here (some network file systems): rename to a free name.
            Err(_) if !tokio::fs::try_exists(&candidate).await.unwrap_or(true) => {
                tokio::fs::rename(path, &candidate)
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                return Ok(candidate.display().to_string());
            }
            Err(error) => return Err(failed(error.to_string())),
        }
    }
    Err(failed("every numbered name is taken".into()))
}

/// `a/b.ndjson` → `a/b-<n>.ndjson`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}-{n}.{EXTENSION}"))
}

#[cfg(feature = "aws")]
mod s3 {
    use super::{is_dead_letter_name, FileKey, StoredFile, EXTENSION, REPLAYED};
    use crate::aws::clients::aws_error;
    use crate::{Error, Result};

    pub(super) async fn list(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<StoredFile>> {
        let replayed = format!("{prefix}{REPLAYED}/");
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut files = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| aws_error("s3", "ListObjectsV2", &error))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let name = key.rsplit('/').next().unwrap_or(key);
                if key.starts_with(&replayed) || !is_dead_letter_name(name) {
                    continue;
                }
                files.push(StoredFile {
                    location: format!("s3://{bucket}/{key}"),
                    key: FileKey::Object(key.to_string()),
                });
            }
        }
        Ok(files)
    }

    pub(super) async fn read(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<u8>> {
        let output = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| aws_error("s3", "GetObject", &error))?;
        let body = output.body.collect().await.map_err(|error| Error::Aws {
            service: "s3",
            operation: "GetObject",
            reason: error.to_string(),
            transient: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    /// Copies `key` to `<prefix>replayed/<rest>` (a free name), then deletes it. A crash
    /// between the two leaves both: the next replay sends the rows again, and their
    /// `EventId` dedupes them.
    pub(super) async fn move_aside(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        key: &str,
    ) -> Result<String> {
        let rest = key.strip_prefix(prefix).unwrap_or(key);
        let mut target = format!("{prefix}{REPLAYED}/{rest}");
        if client
            .head_object()
            .bucket(bucket)
            .key(&target)
            .send()
            .await
            .is_ok()
        {
            let stem = target
                .strip_suffix(&format!(".{EXTENSION}"))
                .unwrap_or(&target);
            target = format!("{stem}-{:08x}.{EXTENSION}", fastrand::u32(..));
        }
        client
            .copy_object()
            .bucket(bucket)
            .copy_source(format!("{bucket}/{}", encode_key(key)))
            .key(&target)
            .send()
            .await
            .map_err(|error| aws_error("s3", "CopyObject", &error))?;
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| aws_error("s3", "DeleteObject", &error))?;
        Ok(format!("s3://{bucket}/{target}"))
    }

    /// `x-amz-copy-source` is URL-encoded (CopyObject API reference,
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>): every byte but
    /// the unreserved ones and `/` as `%XX`.
    pub(super) fn encode_key(key: &str) -> String {
        let mut out = String::with_capacity(key.len());
        for byte in key.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
}

/// One line of a dead-letter file, the event kept as its exact text.
#[derive(serde::Deserialize)]
struct Line<'a> {
    reason: String,
    source: String,
    #[serde(default)]
    record: Option<u64>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
}

/// A dead-letter file, read.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// Rows to send, exactly as they were dead-lettered, with their source and record.
    pub rows: Vec<EncodedRow>,
    /// The reason each row was dead-lettered, in `rows` order.
    pub reasons: Vec<String>,
    /// Entries that cannot be sent (never decoded: no `event`, or an `event` that is not
    /// an object); kept in the dead letter.
    pub kept: Vec<DeadLetterEntry>,
}

/// Reads every line of a dead-letter file. Errs with the 1-based line number of the first
/// line that is not a dead-letter entry (the file is then left alone).
pub fn parse_file(bytes: &[u8]) -> std::result::Result<ParsedFile, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|error| (0, error.to_string()))?;
    let mut parsed = ParsedFile::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |error: serde_json::Error| (index + 1, error.to_string());
        let entry: Line<'_> = serde_json::from_str(line).map_err(bad)?;
        match entry.event.filter(|event| event.get().starts_with('{')) {
            Some(event) => {
                parsed.rows.push(EncodedRow {
                    json: event.get().as_bytes().to_vec(),
                    origin: Origin {
                        source: Arc::from(entry.source.as_str()),
                        // 0: the entry did not say (1-based otherwise).
                        record: entry.record.unwrap_or(0),
                    },
                });
                parsed.reasons.push(entry.reason);
            }
            None => parsed
                .kept
                .push(serde_json::from_str::<DeadLetterEntry>(line).map_err(bad)?),
        }
    }
    Ok(parsed)
}

/// Live counters for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files listed.
    pub files_total: AtomicU64,
    /// Files read so far.
    pub files_read: AtomicU64,
    /// Rows handed to the sessions so far.
    pub rows_pushed: AtomicU64,
    /// Rows delivered so far (counted when a group of files is finished).
    pub delivered: AtomicU64,
}

/// What a replay (or a dry run) found and did.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    /// Where it read.
    pub location: String,
    /// Whether anything was sent.
    pub dry_run: bool,
    /// Dead-letter files found.
    pub files: u64,
    /// Files moved aside (every row delivered or dead-lettered again).
    pub files_replayed: u64,
    /// Files left in place: only never-decoded entries in them.
    pub files_kept: u64,
    /// Entries with a row that can be sent.
    pub replayable: u64,
    /// Entries that were never decoded (raw input only): not sent, kept.
    pub never_decoded: u64,
    /// Entries by dead-letter reason (replayable and never decoded).
    pub by_reason: BTreeMap<String, u64>,
    /// Entries by source (replayable and never decoded).
    pub by_source: BTreeMap<String, u64>,
    /// Never-decoded entries by source.
    pub never_decoded_sources: BTreeMap<String, u64>,
    /// The sessions' counters: `events_in` rows sent, `delivered`, `dead_lettered` again.
    pub report: Report,
    /// Files that could not be read, understood or moved aside (each left where it was).
    pub errors: Vec<String>,
}

impl Replayed {
    /// Every replayable row was delivered and every file handled.
    pub fn complete(&self) -> bool {
        self.errors.is_empty() && self.report.delivered == self.replayable
    }

    fn count(&mut self, parsed: &ParsedFile) {
        self.replayable += parsed.rows.len() as u64;
        self.never_decoded += parsed.kept.len() as u64;
        let rows = parsed.rows.iter().zip(&parsed.reasons);
        let pairs = rows
            .map(|(row, reason)| (&*row.origin.source, reason.as_str()))
            .chain(
                parsed
                    .kept
                    .iter()
                    .map(|entry| (entry.source.as_str(), entry.reason.as_str())),
            );
        for (source, reason) in pairs {
            *self.by_reason.entry(reason.to_string()).or_default() += 1;
            *self.by_source.entry(source.to_string()).or_default() += 1;
        }
        for entry in &parsed.kept {
            *self
                .never_decoded_sources
                .entry(entry.source.clone())
                .or_default() += 1;
        }
    }
}

/// Counts what `store` holds, by reason and source, without sending anything.
pub async fn survey(store: &Store, progress: &Progress) -> Result<Replayed> {
    run(store, None, progress).await
}

/// Sends every replayable row `store` holds through `relay` (whose dead letter must be
/// [`Store::sink`]), moves replayed files aside and counts. Errs when the store cannot be
/// listed or the dead letter cannot be written (the run stops; files of the unfinished group
/// stay in place). Per-file problems are in [`Replayed::errors`].
pub async fn replay(store: &Store, relay: &Relay, progress: &Progress) -> Result<Replayed> {
    run(store, Some(relay), progress).await
}

/// Files whose rows are in the current session, with the entries they keep.
struct Group {
    session: Session,
    files: Vec<(StoredFile, Vec<DeadLetterEntry>)>,
    row_bytes: usize,
}

async fn run(store: &Store, relay: Option<&Relay>, progress: &Progress) -> Result<Replayed> {
    let files = store.list().await?;
    let mut out = Replayed {
        location: store.location(),
        dry_run: relay.is_none(),
        files: files.len() as u64,
        ..Replayed::default()
    };
    progress
        .files_total
        .store(files.len() as u64, Ordering::Relaxed);
    let mut group: Option<Group> = None;
    for file in files {
        let read = store.read(&file).await;
        progress.files_read.fetch_add(1, Ordering::Relaxed);
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(error) => {
                out.errors.push(format!("{error}; left in place"));
                continue;
            }
        };
        let parsed = match parse_file(&bytes) {
            Ok(parsed) => parsed,
            Err((line, why)) => {
                out.errors.push(format!(
                    "{}: line {line} is not a dead-letter entry ({why}); left in place",
                    file.location
                ));
                continue;
            }
        };
        out.count(&parsed);
        let Some(relay) = relay else { continue };
        if parsed.rows.is_empty() {
            out.files_kept += 1;
            continue;
        }
        let current = group.get_or_insert_with(|| Group {
            session: relay.session(SessionOptions::default()),
            files: Vec::new(),
            row_bytes: 0,
        });
        for row in parsed.rows {
            current.row_bytes += row.json.len();
            current.session.push(row).await?;
            progress.rows_pushed.fetch_add(1, Ordering::Relaxed);
        }
        current.files.push((file, parsed.kept));
        if current.row_bytes >= GROUP_ROW_BYTES {
            if let Some(full) = group.take() {
                settle(store, relay, full, &mut out, progress).await?;
            }
        }
    }
    if let (Some(relay), Some(last)) = (relay, group.take()) {
        settle(store, relay, last, &mut out, progress).await?;
    }
    Ok(out)
}

/// Finishes a group's session; then, file by file, keeps its never-decoded entries in the
/// dead letter and moves it aside.
async fn settle(
    store: &Store,
    relay: &Relay,
    group: Group,
    out: &mut Replayed,
    progress: &Progress,
) -> Result<()> {
    let report = group.session.finish().await?;
    progress
        .delivered
        .fetch_add(report.delivered, Ordering::Relaxed);
    out.report += report;
    for (file, kept) in group.files {
        relay.dead_letter().write(&kept).await?;
        match store.move_aside(&file).await {
            Ok(moved) => {
                tracing::info!(file = %file.location, moved = %moved, "Replayed a dead-letter file.");
                out.files_replayed += 1;
            }
            Err(error) => out.errors.push(format!(
                "{error} (its rows were sent; a second replay sends them again, deduped by EventId)"
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::{ingestor, reply, tuning, Server};
    use crate::keeper::{DecodeOptions, SchemaMode};

    fn entry_line(reason: &str, source: &str, record: u64, event: &str) -> String {
        format!(r#"{{"reason":"{reason}","source":"{source}","record":{record},"event":{event}}}"#)
    }

    fn raw_line(source: &str) -> String {
        format!(r#"{{"reason":"not JSON","source":"{source}","record":3,"raw":"{{oops"}}"#)
    }

    #[test]
    fn a_file_splits_into_rows_kept_byte_for_byte_and_never_decoded_entries() {
        let event = r#"{"n":1.50,"EventId":"e1","z":{"b":2,"a":1}}"#;
        let text = format!(
            "{}\n\n{}\n{}\n",
            entry_line("HTTP 403", "a.json", 7, event),
            raw_line("b.csv"),
            entry_line("odd", "c.json", 1, "[1,2]"),
        );
        let parsed = parse_file(text.as_bytes()).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].json, event.as_bytes(), "the row's own text");
        assert_eq!(&*parsed.rows[0].origin.source, "a.json");
        assert_eq!(parsed.rows[0].origin.record, 7);
        assert_eq!(parsed.reasons, ["HTTP 403"]);
        assert_eq!(parsed.kept.len(), 2, "raw, and an event that is no row");
        assert_eq!(parsed.kept[0].raw.as_deref(), Some("{oops"));
        assert_eq!(parse_file(b"{\"reason\":\"x\"}\n").unwrap_err().0, 1);
        assert_eq!(parse_file(b"\n\nnot json\n").unwrap_err().0, 3);
    }

    #[test]
    fn only_visible_ndjson_files_are_dead_letter_files() {
        assert!(is_dead_letter_name("20261201T000000.000Z-x-1.ndjson"));
        assert!(is_dead_letter_name("a.b.ndjson"));
        assert!(!is_dead_letter_name(".x.ndjson.123.partial"));
        assert!(!is_dead_letter_name(".x.ndjson"));
        assert!(!is_dead_letter_name("notes.txt"));
        assert!(!is_dead_letter_name(".ndjson"));
    }

    #[tokio::test]
    async fn listing_skips_the_replayed_area_and_moving_aside_never_replaces_a_file() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(REPLAYED)).unwrap();
        for name in [
            "a.ndjson",
            "sub/b.ndjson",
            "replayed/old.ndjson",
            ".c.partial",
            "d.txt",
        ] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let store = Store::Local {
            dir: dir.to_path_buf(),
        };
        let files = store.list().await.unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(
            names,
            [
                dir.join("a.ndjson").display().to_string(),
                dir.join("sub/b.ndjson").display().to_string()
            ]
        );
        std::fs::write(dir.join("replayed/a.ndjson"), "earlier").unwrap();
        let moved = store.move_aside(&files[0]).await.unwrap();
        assert_eq!(moved, dir.join("replayed/a-1.ndjson").display().to_string());
        assert_eq!(
            std::fs::read_to_string(dir.join("replayed/a.ndjson")).unwrap(),
            "earlier"
        );
        store.move_aside(&files[1]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("replayed/sub/b.ndjson")).unwrap(),
            "sub/b.ndjson"
        );
        assert!(store.list().await.unwrap().is_empty());
    }

    fn relay_over(server: &Server, dir: &Path) -> Relay {
        let decode = DecodeOptions {
            schema: SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: std::time::SystemTime::now(),
        };
        let sink = Store::Local {
            dir: dir.to_path_buf(),
        }
        .sink();
        Relay::new(ingestor(server, tuning(MAX_BATCH_BYTES)), sink, decode)
    }

    #[tokio::test]
    async fn rows_are_sent_unchanged_failures_rewritten_and_raw_entries_kept() {
        // Rows whose EventId starts "bad" are refused (400) by the scripted server.
        let server = Server::start(|_, seen| {
            if seen
                .rows
                .iter()
                .any(|row| row["EventId"].as_str().unwrap().starts_with("bad"))
            {
                reply(400)
            } else {
                reply(204)
            }
        })
        .await;
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let good = format!(
            "{}\n{}\n{}\n",
            entry_line("HTTP 403", "a.json", 1, r#"{"EventId":"g1","n":1}"#),
            entry_line("HTTP 403", "a.json", 2, r#"{"EventId":"g2","n":2}"#),
            raw_line("a.json"),
        );
        std::fs::write(dir.join("one.ndjson"), good).unwrap();
        let only_raw = format!("{}\n", raw_line("b.csv"));
        std::fs::write(dir.join("two.ndjson"), only_raw).unwrap();
        let store = Store::Local {
            dir: dir.to_path_buf(),
        };
        let relay = relay_over(&server, dir);

        let progress = Progress::default();
        let done = replay(&store, &relay, &progress).await.unwrap();

        let sent: Vec<serde_json::Value> = server
            .seen()
            .into_iter()
            .flat_map(|seen| seen.rows)
            .collect();
        assert_eq!(
            sent,
            [
                serde_json::json!({"EventId":"g1","n":1}),
                serde_json::json!({"EventId":"g2","n":2})
            ]
        );
        assert_eq!((done.replayable, done.never_decoded), (2, 2));
        assert_eq!((done.report.delivered, done.report.dead_lettered), (2, 0));
        assert_eq!((done.files_replayed, done.files_kept), (1, 1));
        assert!(done.complete(), "{done:?}");
        assert!(dir.join("replayed/one.ndjson").exists());
        assert!(dir.join("two.ndjson").exists(), "raw-only files stay");
        // The raw entry of the replayed file is back in the dead letter, as it was.
        let left = store.list().await.unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        let mut kept = Vec::new();
        for file in &left {
            let parsed = parse_file(&store.read(file).await.unwrap()).unwrap();
            assert!(parsed.rows.is_empty());
            kept.extend(parsed.kept);
        }
        kept.sort_by(|a, b| a.source.cmp(&b.source));
        assert_eq!(kept[0].source, "a.json");
        assert_eq!(kept[0].reason, "not JSON");
        assert_eq!(kept[0].raw.as_deref(), Some("{oops"));

        // A row refused again is rewritten with the new reason; its file is still moved.
        let bad = entry_line("HTTP 403", "c.json", 4, r#"{"EventId":"bad1"}"#);
        std::fs::write(dir.join("three.ndjson"), bad + "\n").unwrap();
        let again = replay(&store, &relay, &Progress::default()).await.unwrap();
        assert_eq!((again.replayable, again.report.dead_lettered), (1, 1));
        assert!(!again.complete());
        assert!(dir.join("replayed/three.ndjson").exists());
        let rewritten: Vec<DeadLetterEntry> = {
            let mut all = Vec::new();
            for file in store.list().await.unwrap() {
                let bytes = store.read(&file).await.unwrap();
                let text = String::from_utf8(bytes).unwrap();
                all.extend(
                    text.lines()
                        .filter(|l| l.contains("bad1"))
                        .map(|l| serde_json::from_str::<DeadLetterEntry>(l).unwrap()),
                );
            }
            all
        };
        assert_eq!(rewritten.len(), 1);
        assert_eq!(rewritten[0].source, "c.json");
        assert_eq!(rewritten[0].record, Some(4));
        assert!(
            rewritten[0].reason.contains("400"),
            "{}",
            rewritten[0].reason
        );
    }
}
