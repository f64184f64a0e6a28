//! The glue every binary uses: a byte source in, rows decoded on a blocking thread, pushed
//! into an ingestion session, a report out.
//!
//! Decoding is synchronous (it reads, inflates and parses), so it runs on a blocking thread
//! and hands items to the async side in chunks (at most [`DECODED_CHUNK_ITEMS`] items or
//! [`DECODED_CHUNK_BYTES`] bytes of rows) over a channel of [`DECODED_CHANNEL_CHUNKS`]: when
//! sending falls behind, decoding waits, and memory stays bounded whatever the input size.
//! Chunks rather than single items keep the two threads from waking each other per record.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Buf, Bytes};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::auth::{self, TokenCache};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::dead_letter::{raw_text, DeadLetterEntry, DeadLetterSink, MAX_RAW_CHARS};
use crate::ingest::{Ingestor, Report, Session, SessionOptions};
use crate::keeper::{DecodeOptions, DecodeStats, Decoded, RowReader};
use crate::Result;

/// Decoded items handed over at once.
pub const DECODED_CHUNK_ITEMS: usize = 256;

/// Row bytes handed over at once: a chunk is sent early when its rows reach this size.
pub const DECODED_CHUNK_BYTES: usize = 1 << 20;

/// Chunks buffered between the decoding thread and the sender (so at most about
/// `DECODED_CHANNEL_CHUNKS × DECODED_CHUNK_BYTES` of rows wait in memory).
pub const DECODED_CHANNEL_CHUNKS: usize = 4;

/// The warning logged (once per relay) when events older than two days were seen. Source:
/// <https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated>.
pub const OLD_EVENTS_WARNING: &str = "Azure replaces TimeGenerated older than 2 days with the arrival time; the original time stays in `timestamp`.";

/// Marks a read stopped at the session deadline (inside an [`std::io::Error`] of kind
/// `TimedOut`), so callers tell it from a stream that broke.
#[derive(Debug)]
struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the invocation deadline passed; reading stopped and the rest is left for the retry",
        )
    }
}

impl std::error::Error for DeadlinePassed {}

/// The read error of an input whose reading stopped at the session deadline (transient).
fn deadline_passed(source: &str) -> crate::Error {
    crate::Error::Io {
        what: source.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, DeadlinePassed),
    }
}

/// Whether `error` is a read stopped at the session deadline (see [`Relay::forward`]).
pub fn is_deadline_stop(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Io { source, .. }
        if source.get_ref().is_some_and(|inner| inner.is::<DeadlinePassed>()))
}

/// Decoder, ingestor and dead letter wired together. Cheap to clone; build once in `main`.
#[derive(Debug, Clone)]
pub struct Relay {
    ingestor: Ingestor,
    dead_letter: Arc<dyn DeadLetterSink>,
    decode: DecodeOptions,
    warned_old_events: Arc<AtomicBool>,
}

/// One input to [`Relay::forward`].
pub enum Input {
    /// Bytes already in memory (a request or message body, an Event Hub event, a blob).
    Bytes { source: String, bytes: Bytes },
    /// A stream read on the decoding thread (a file, stdin, an S3 object body).
    Reader {
        source: String,
        reader: Box<dyn Read + Send>,
    },
    /// Something the caller already knows is undeliverable: straight to the dead letter.
    Rejected(DeadLetterEntry),
}

impl Input {
    /// Bytes in memory; `source` names them in dead letters and messages.
    pub fn bytes(source: impl Into<String>, bytes: impl Into<Bytes>) -> Input {
        Input::Bytes {
            source: source.into(),
            bytes: bytes.into(),
        }
    }

    /// A blocking reader.
    pub fn reader(source: impl Into<String>, reader: impl Read + Send + 'static) -> Input {
        Input::Reader {
            source: source.into(),
            reader: Box::new(reader),
        }
    }

    /// An async reader (an S3 body); the bridge blocks on the runtime from the decoding
    /// thread, never from a worker.
    pub fn async_reader(
        source: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Input {
        Input::reader(source, SyncIoBridge::new(reader))
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Bytes { source, bytes } => {
                write!(f, "Input::Bytes({source}, {} bytes)", bytes.len())
            }
            Input::Reader { source, .. } => write!(f, "Input::Reader({source})"),
            Input::Rejected(entry) => write!(f, "Input::Rejected({})", entry.source),
        }
    }
}

/// What [`Relay::forward`] did.
#[derive(Debug)]
pub struct Forwarded {
    /// Counters over every input.
    pub report: Report,
    /// Inputs whose reading stopped early, in order.
    pub read_errors: Vec<ReadError>,
}

/// An input whose reading failed after the rows before the failure were sent.
#[derive(Debug)]
pub struct ReadError {
    /// The input's name.
    pub source: String,
    /// What failed: transient for a dropped stream, permanent for bad content (corrupt gzip).
    pub error: crate::Error,
    /// The input, when it was bytes in memory (so a caller can keep it in the dead letter).
    pub bytes: Option<Bytes>,
}

/// What the decoding thread sends.
enum Item {
    Decoded(Vec<Decoded>),
    /// The input ended; here are its counters.
    Done(DecodeStats),
    /// Reading the input failed; what was decoded before was already sent.
    Failed(crate::Error, DecodeStats),
}

impl Relay {
    /// A relay over an existing ingestor.
    pub fn new(
        ingestor: Ingestor,
        dead_letter: Arc<dyn DeadLetterSink>,
        decode: DecodeOptions,
    ) -> Self {
        Relay {
            ingestor,
            dead_letter,
            decode,
            warned_old_events: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Builds the whole stack from configuration: the HTTP client, the token provider
    /// (client secret, Secrets Manager or managed identity), the process-wide token cache on
    /// the system clock, and the ingestor. `secrets` overrides where a client secret is read
    /// from (Lambda passes its Secrets Manager source).
    pub async fn from_config(
        config: &Config,
        dead_letter: Arc<dyn DeadLetterSink>,
        decode: DecodeOptions,
        secrets: impl Into<auth::CredentialSources>,
    ) -> Result<Relay> {
        crate::http::require_tls_or_loopback("LOGS_INGESTION_ENDPOINT", &config.endpoint.base)?;
        let http = crate::http::build_client(config.tuning.request_timeout)?;
        let provider = auth::build_provider(&config.auth, http.clone(), secrets)?;
        let tokens = Arc::new(TokenCache::new(provider, Arc::new(SystemClock)));
        for warning in &config.warnings {
            tracing::warn!(warning = %warning, "Configuration warning.");
        }
        let ingestor = Ingestor::new(config.endpoint.clone(), tokens, http, config.tuning.clone());
        Ok(Relay::new(ingestor, dead_letter, decode))
    }

    /// The ingestor (for its token cache, endpoint and tuning).
    pub fn ingestor(&self) -> &Ingestor {
        &self.ingestor
    }

    /// The dead letter every session of this relay writes to.
    pub fn dead_letter(&self) -> &Arc<dyn DeadLetterSink> {
        &self.dead_letter
    }

    /// The decoding options.
    pub fn decode_options(&self) -> &DecodeOptions {
        &self.decode
    }

    /// A new session writing to this relay's dead letter.
    pub fn session(&self, options: SessionOptions) -> Session {
        self.ingestor.session(self.dead_letter.clone(), options)
    }

    /// THE way to forward: decodes and sends every input, in order, in one session (so small
    /// inputs share request bodies), and reports. Every binary calls this: the CLI with its
    /// files, the Lambda functions with S3 objects and SQS bodies, the HTTP routes with a
    /// request body, the Azure handler with an invocation's inputs.
    ///
    /// An input whose reading fails part-way (after its rows so far were sent) is listed in
    /// [`Forwarded::read_errors`] and the next input goes on. Errs only when the dead letter
    /// cannot be written: events would be lost, so the run stops.
    ///
    /// With a session deadline, reading stops when it passes (checked per record on the
    /// decoding thread, and while waiting on a slow reader): the input is listed in
    /// `read_errors` with an error [`is_deadline_stop`] recognises, the rows pushed before it
    /// are sent or counted as failed by the session, and the rest is never read.
    pub async fn forward(
        &self,
        inputs: impl IntoIterator<Item = Input>,
        options: SessionOptions,
    ) -> Result<Forwarded> {
        let deadline = options.deadline;
        let mut session = self.session(options);
        let mut read_errors = Vec::new();
        let mut fatal = None;
        let mut unreadable = 0;
        for input in inputs {
            let (source, forwarded, bytes) = match input {
                Input::Rejected(entry) => match session.reject(entry).await {
                    Ok(()) => {
                        unreadable += 1;
                        continue;
                    }
                    Err(error) => {
                        fatal = Some(error);
                        break;
                    }
                },
                Input::Bytes { source, bytes } => {
                    let forwarded = self
                        .forward_into(
                            &mut session,
                            bytes.clone().reader(),
                            source.clone(),
                            deadline,
                        )
                        .await;
                    (source, forwarded, Some(bytes))
                }
                Input::Reader { source, reader } => {
                    let forwarded = self
                        .forward_into(&mut session, reader, source.clone(), deadline)
                        .await;
                    (source, forwarded, None)
                }
            };
            match forwarded {
                Ok(Yield::Events) => {}
                Ok(Yield::Nothing) => unreadable += 1,
                Err(error @ crate::Error::DeadLetter { .. }) => {
                    fatal = Some(error);
                    break;
                }
                Err(error) => read_errors.push(ReadError {
                    source,
                    error,
                    bytes,
                }),
            }
        }
        let finished = session.finish().await;
        match (finished, fatal) {
            (Ok(mut report), None) => {
                report.unreadable_sources += unreadable;
                Ok(Forwarded {
                    report,
                    read_errors,
                })
            }
            (Err(error), _) | (Ok(_), Some(error)) => Err(error),
        }
    }

    /// Writes entries the caller knows are undeliverable straight to the dead letter and
    /// counts them (each one source that could not be read: one event in, dead-lettered).
    /// Errs when the dead letter fails.
    pub async fn reject(&self, entries: Vec<DeadLetterEntry>) -> Result<Report> {
        let mut report = Report::default();
        if entries.is_empty() {
            return Ok(report);
        }
        self.dead_letter.write(&entries).await?;
        for entry in &entries {
            report.events_in += 1;
            report.unreadable_sources += 1;
            report.count_dead_letter(&entry.reason, 1);
        }
        Ok(report)
    }

    /// Decodes `reader` into `session`. Rows and rejects are pushed; conversion counters are
    /// added. A non-empty input that decodes to nothing at all is one dead-letter entry
    /// keeping its text ([`Yield::Nothing`]). Errs on an I/O error of the reader (after pushing
    /// what came before it) or when the dead letter cannot be written. Stops at `deadline`
    /// (see [`Relay::forward`]).
    async fn forward_into(
        &self,
        session: &mut Session,
        reader: impl Read + Send + 'static,
        source: String,
        deadline: Option<Instant>,
    ) -> Result<Yield> {
        let (reader, head) = Head::capture(reader);
        let dead_letter_source = source.clone();
        let (sender, mut receiver) = mpsc::channel::<Item>(DECODED_CHANNEL_CHUNKS);
        // "Now" is taken per input: a warm Lambda container or a long-lived handler must not
        // judge event age against the time it started.
        let decode = DecodeOptions {
            now: SystemTime::now().max(self.decode.now),
            ..self.decode.clone()
        };
        let name = source.clone();
        let decoder = tokio::task::spawn_blocking(move || {
            decode_into(reader, &source, &decode, &sender, deadline)
        });

        let mut outcome = Ok(());
        let mut stats = None;
        let mut items = 0;
        loop {
            let next = match deadline {
                // A reader stalled past the deadline (a slow S3 stream) must not hold the
                // invocation: stop waiting; the decoding thread ends at its next send.
                Some(deadline) => tokio::time::timeout_at(deadline.into(), receiver.recv())
                    .await
                    .ok(),
                None => Some(receiver.recv().await),
            };
            let item = match next {
                Some(Some(item)) => item,
                Some(None) => break,
                None => {
                    tracing::warn!(source = %name, "The deadline passed while reading; the rest of the input is left for the retry.");
                    return Err(deadline_passed(&name));
                }
            };
            if matches!(item, Item::Decoded(_)) && deadline.is_some_and(|at| Instant::now() >= at) {
                // Rows decoded after the deadline are not pushed: the retry reads them again.
                tracing::warn!(source = %name, "The deadline passed while reading; the rest of the input is left for the retry.");
                return Err(deadline_passed(&name));
            }
            let pushed = match item {
                Item::Decoded(chunk) => {
                    items += chunk.len();
                    push_chunk(session, chunk).await
                }
                Item::Done(done) => {
                    stats = Some(done);
                    Ok(())
                }
                Item::Failed(error, done) => {
                    stats = Some(done);
                    outcome = Err(error);
                    Ok(())
                }
            };
            if let Err(error) = pushed {
                // Dropping the receiver stops the decoding thread at its next send.
                drop(receiver);
                let _ = decoder.await;
                return Err(error);
            }
        }
        if let Err(error) = decoder.await {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        if let Some(stats) = stats {
            session.note_conversion(stats.truncated_fields, stats.old_events);
            if stats.old_events > 0 && !self.warned_old_events.swap(true, Ordering::Relaxed) {
                tracing::warn!(old_events = stats.old_events, "{}", OLD_EVENTS_WARNING);
            }
        }
        outcome?;
        if items > 0 {
            return Ok(Yield::Events);
        }
        match head.no_events_entry(dead_letter_source) {
            Some(entry) => {
                tracing::warn!(source = %entry.source, "A non-empty input held no event; writing it to the dead letter.");
                session.reject(entry).await?;
                Ok(Yield::Nothing)
            }
            None => Ok(Yield::Events),
        }
    }
}

/// Whether an input gave anything (rows or per-record dead-letter entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Yield {
    /// Rows or entries, or nothing because there was nothing (empty, blank, `[]`).
    Events,
    /// Non-empty, yet no event: dead-lettered whole.
    Nothing,
}

/// The first bytes of an input, kept while the decoder reads it, for the dead-letter entry of
/// an input that held no event.
#[derive(Debug, Clone, Default)]
struct Head(Arc<std::sync::Mutex<HeadBytes>>);

#[derive(Debug, Default)]
struct HeadBytes {
    bytes: Vec<u8>,
    /// Bytes read past what is kept.
    more: bool,
}

/// What an input is expected to hold, for the reason of an input that held no event.
const EXPECTED: &str = "expected Keeper audit events: a JSON array or object, NDJSON, \
    CSV with a header row and at least one row, or RFC 5424 syslog lines (any of them gzipped)";

/// The gzip magic bytes (RFC 1952, section 2.3.1).
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

impl Head {
    /// Wraps `reader` so its first [`MAX_RAW_CHARS`] bytes are kept.
    fn capture<R: Read>(reader: R) -> (Capturing<R>, Head) {
        let head = Head::default();
        (
            Capturing {
                inner: reader,
                head: head.clone(),
                full: false,
            },
            head,
        )
    }

    /// The entry for an input that held no event, or `None` when there was nothing to hold
    /// one: no bytes, only blanks and a byte-order mark, or an empty JSON array (gzipped or
    /// not).
    fn no_events_entry(&self, source: String) -> Option<DeadLetterEntry> {
        let head = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let gzip = head.bytes.starts_with(GZIP_MAGIC);
        let (text, more) = if gzip {
            // Inflate what was kept (bounded), to see what it says.
            let mut inflated = Vec::new();
            let reading = flate2::read::MultiGzDecoder::new(head.bytes.as_slice())
                .take(MAX_RAW_CHARS as u64 * 4)
                .read_to_end(&mut inflated);
            let more = head.more || reading.is_err() || inflated.len() >= MAX_RAW_CHARS * 4;
            (inflated, more)
        } else {
            (head.bytes.clone(), head.more)
        };
        let content = String::from_utf8_lossy(&text);
        let significant: String = content
            .trim_start_matches('\u{feff}')
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !more && (significant.is_empty() || significant == "[]") {
            return None;
        }
        let read_as = match significant.as_bytes().first() {
            Some(b'[' | b'{') => "JSON with no event in it",
            Some(b'<') => "syslog with no event in it",
            _ => "a CSV header with no rows",
        };
        let gzipped = if gzip { "gzipped " } else { "" };
        Some(DeadLetterEntry {
            reason: format!(
                "the {gzipped}input is not empty but holds no event (read as {read_as}); {EXPECTED}"
            ),
            source,
            record: None,
            event: None,
            raw: Some(raw_text(&text)),
        })
    }
}

/// A reader keeping its first bytes in a [`Head`].
struct Capturing<R> {
    inner: R,
    head: Head,
    /// The head is full: nothing more to keep (saves the lock on every read).
    full: bool,
}

impl<R: Read> Read for Capturing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 && !self.full {
            let mut head = self
                .head
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let room = MAX_RAW_CHARS.saturating_sub(head.bytes.len());
            let kept = n.min(room);
            head.bytes.extend_from_slice(&buf[..kept]);
            if kept < n {
                head.more = true;
                self.full = true;
            }
        }
        Ok(n)
    }
}

/// Pushes one chunk into the session, in order; stops at the first error.
async fn push_chunk(session: &mut Session, chunk: Vec<Decoded>) -> Result<()> {
    for decoded in chunk {
        match decoded {
            Decoded::Row(row) => session.push(row).await?,
            Decoded::Rejected(entry) => session.reject(entry).await?,
        }
    }
    Ok(())
}

/// The decoding thread: every item over the channel in chunks, then the counters. Stops
/// reading once `deadline` passes (checked before each record: a clock read is far cheaper
/// than parsing one).
fn decode_into(
    reader: impl Read + Send,
    source: &str,
    options: &DecodeOptions,
    sender: &mpsc::Sender<Item>,
    deadline: Option<Instant>,
) {
    let mut rows = RowReader::new(reader, source, options);
    let mut chunk = Vec::with_capacity(DECODED_CHUNK_ITEMS);
    let mut chunk_bytes = 0;
    loop {
        if deadline.is_some_and(|at| Instant::now() >= at) {
            let _ = sender.blocking_send(Item::Failed(deadline_passed(source), rows.stats()));
            return;
        }
        let Some(item) = rows.next() else { break };
        match item {
            Ok(decoded) => {
                if let Decoded::Row(row) = &decoded {
                    chunk_bytes += row.json.len();
                }
                chunk.push(decoded);
            }
            Err(error) => {
                // What was decoded before the failure is still sent, then the failure.
                if !chunk.is_empty() && sender.blocking_send(Item::Decoded(chunk)).is_err() {
                    return;
                }
                let _ = sender.blocking_send(Item::Failed(error, rows.stats()));
                return;
            }
        }
        if chunk.len() >= DECODED_CHUNK_ITEMS || chunk_bytes >= DECODED_CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(DECODED_CHUNK_ITEMS));
            chunk_bytes = 0;
            if sender.blocking_send(Item::Decoded(full)).is_err() {
                return; // the session stopped (dead letter failure); nothing more is wanted
            }
        }
    }
    if !chunk.is_empty() && sender.blocking_send(Item::Decoded(chunk)).is_err() {
        return;
    }
    let _ = sender.blocking_send(Item::Done(rows.stats()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::MemoryDeadLetter;
    use crate::ingest::tests::{ingestor, reply, tuning, Server};
    use crate::ingest::MAX_BATCH_BYTES;
    use crate::keeper::SchemaMode;
    use std::io::Cursor;
    use std::time::SystemTime;

    fn event(i: u64) -> String {
        format!(
            r#"{{"audit_event": "login", "category": "login", "remote_address": "203.0.113.10", "client_version": "Web Vault 17.0.0", "username": "user{i}@example.com", "enterprise_id": 1234, "timestamp": "2025-01-15T10:31:02.123Z"}}"#
        )
    }

    fn ndjson(range: std::ops::Range<u64>) -> String {
        range.map(|i| event(i) + "\n").collect()
    }

    fn relay(server: &Server, batch_bytes: usize) -> (Relay, Arc<MemoryDeadLetter>) {
        let dead = Arc::new(MemoryDeadLetter::new());
        let decode = DecodeOptions {
            schema: SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: SystemTime::now(),
        };
        let relay = Relay::new(ingestor(server, tuning(batch_bytes)), dead.clone(), decode);
        (relay, dead)
    }

    fn usernames(server: &Server) -> Vec<String> {
        let mut names: Vec<String> = server
            .seen()
            .iter()
            .flat_map(|s| {
                s.rows
                    .iter()
                    .map(|r| r["username"].as_str().unwrap().to_string())
            })
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn forwards_every_decoded_row_and_dead_letters_undecodable_lines() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        let input = format!("{}not json at all\n{}", ndjson(0..2), ndjson(2..3));
        let report = relay
            .forward(
                [Input::bytes("events.ndjson", input)],
                SessionOptions::default(),
            )
            .await
            .unwrap()
            .report;
        assert_eq!(report.events_in, 4);
        assert_eq!((report.delivered, report.dead_lettered), (3, 1));
        assert_eq!(report.old_events, 3, "2025 events are older than two days");
        assert!(report.is_balanced());
        assert_eq!(usernames(&server).len(), 3);
        let entries = dead.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].source, "events.ndjson");
        assert_eq!(entries[0].record, Some(3));
    }

    #[tokio::test]
    async fn many_rows_flow_through_the_bounded_channel_with_backpressure() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, 20_000);
        let input = Input::reader("big.ndjson", Cursor::new(ndjson(0..5_000).into_bytes()));
        let report = relay
            .forward([input], SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!(report.delivered, 5_000);
        assert_eq!(usernames(&server).len(), 5_000);
        assert!(report.requests > 10);
    }

    #[tokio::test]
    async fn an_async_reader_is_decoded_like_a_blocking_one() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let reader = Cursor::new(ndjson(0..10).into_bytes());
        let input = Input::async_reader("s3://bucket/key", reader);
        let report = relay
            .forward([input], SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!(report.delivered, 10);
    }

    /// Yields `data`, then fails as a dropped connection would.
    struct FailsAfter(Cursor<Vec<u8>>);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )),
                n => Ok(n),
            }
        }
    }

    #[tokio::test]
    async fn a_read_error_is_returned_after_the_rows_before_it_are_sent() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let reader = FailsAfter(Cursor::new(ndjson(0..3).into_bytes()));
        let forwarded = relay
            .forward(
                [
                    Input::reader("events.ndjson", reader),
                    Input::bytes("next.ndjson", ndjson(3..4)),
                ],
                SessionOptions::default(),
            )
            .await
            .unwrap();
        let [failed] = forwarded.read_errors.as_slice() else {
            panic!("{:?}", forwarded.read_errors);
        };
        assert!(failed.error.is_transient(), "{}", failed.error);
        assert_eq!(failed.source, "events.ndjson");
        assert_eq!(usernames(&server).len(), 4, "the next input still goes");
    }

    #[tokio::test]
    async fn many_inputs_share_one_session_and_one_report() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let inputs = [("a.ndjson", 0..4), ("b.ndjson", 4..7)]
            .map(|(name, range)| Input::reader(name, Cursor::new(ndjson(range).into_bytes())));
        let report = relay
            .forward(inputs, SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!((report.events_in, report.delivered), (7, 7));
        assert_eq!(report.requests, 1, "small inputs share one body");
        assert_eq!(report.old_events, 7);
    }

    #[tokio::test]
    async fn a_failing_dead_letter_stops_the_input_with_its_error() {
        let server = Server::start(|_, _| reply(204)).await;
        let decode = DecodeOptions {
            schema: SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: SystemTime::now(),
        };
        let relay = Relay::new(
            ingestor(&server, tuning(MAX_BATCH_BYTES)),
            Arc::new(MemoryDeadLetter::failing()),
            decode,
        );
        // Enough bad lines to force a dead-letter write before the input ends.
        let input: String = (0..6_000).map(|_| "garbage\n").collect();
        let error = relay
            .forward(
                [Input::bytes("bad.ndjson", input)],
                SessionOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, crate::Error::DeadLetter { .. }), "{error}");
    }

    /// An export that never ends: Keeper events for as long as anyone reads.
    struct Endless {
        next: u64,
        line: Cursor<Vec<u8>>,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.line.position() as usize == self.line.get_ref().len() {
                self.line = Cursor::new((event(self.next) + "\n").into_bytes());
                self.next += 1;
            }
            self.line.read(buf)
        }
    }

    fn failing_options(deadline: Instant) -> SessionOptions {
        SessionOptions {
            deadline: Some(deadline),
            transient: crate::ingest::TransientPolicy::Fail,
        }
    }

    /// Generous bound on how long a forward that stops at its deadline may take in all.
    const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

    #[tokio::test]
    async fn decoding_stops_reading_at_the_session_deadline() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, 20_000);
        let input = Input::reader(
            "s3://bucket/endless.ndjson",
            Endless {
                next: 0,
                line: Cursor::new(Vec::new()),
            },
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        // Without the deadline check this never returns: the input has no end.
        let forwarded = tokio::time::timeout(
            STOP_WITHIN,
            relay.forward([input], failing_options(deadline)),
        )
        .await
        .expect("forward stopped")
        .unwrap();
        let [stopped] = forwarded.read_errors.as_slice() else {
            panic!("{:?}", forwarded.read_errors);
        };
        assert!(is_deadline_stop(&stopped.error), "{}", stopped.error);
        assert!(stopped.error.is_transient(), "the platform retries it");
        let report = forwarded.report;
        assert!(report.is_balanced(), "{report:?}");
        assert_eq!(
            report.dead_lettered, 0,
            "nothing is dead-lettered at a deadline"
        );
        // Requests cut short at the deadline may still have arrived: the server saw at least
        // what was confirmed, never a row that was not pushed.
        let seen = usernames(&server).len() as u64;
        assert!(
            (report.delivered..=report.events_in).contains(&seen),
            "{seen} seen, {report:?}"
        );
        assert!(report.delivered > 0, "{report:?}");
        assert!(dead.entries().is_empty());
    }

    /// Yields `data`, then blocks until the test lets go (a stalled S3 stream).
    struct Stalls {
        data: Cursor<Vec<u8>>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl Read for Stalls {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.data.read(buf)? {
                0 => {
                    let _ = self.release.recv();
                    Ok(0)
                }
                n => Ok(n),
            }
        }
    }

    #[tokio::test]
    async fn a_reader_stalled_past_the_deadline_does_not_hold_the_invocation() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let (release, stalled) = std::sync::mpsc::channel();
        let input = Input::reader(
            "s3://bucket/stalled.ndjson",
            Stalls {
                data: Cursor::new(ndjson(0..3).into_bytes()),
                release: stalled,
            },
        );
        let deadline = Instant::now() + std::time::Duration::from_millis(500);
        let forwarded = tokio::time::timeout(
            STOP_WITHIN,
            relay.forward([input], failing_options(deadline)),
        )
        .await
        .expect("forward stopped while the reader was still stalled")
        .unwrap();
        // The reader is released only now: the forward ended while it was blocked.
        drop(release);
        let [stopped] = forwarded.read_errors.as_slice() else {
            panic!("{:?}", forwarded.read_errors);
        };
        assert!(is_deadline_stop(&stopped.error), "{}", stopped.error);
        assert!(forwarded.report.is_balanced(), "{:?}", forwarded.report);
    }

    /// A token endpoint that never answers.
    #[derive(Debug)]
    struct Silent;

    impl auth::TokenProvider for Silent {
        fn fetch(&self) -> crate::model::BoxFuture<'_, Result<auth::AccessToken>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_token_fetch_is_bounded_by_the_session_deadline_not_the_load_timeout() {
        let endpoint = crate::ingest::endpoint::parse_endpoint_url(
            "http://127.0.0.1:9/dataCollectionRules/dcr-000a00a000a00000a000000aa000a0aa/streams/Custom-KeeperSecurityEvents?api-version=2023-01-01",
        )
        .unwrap();
        let tokens = Arc::new(TokenCache::new(Arc::new(Silent), Arc::new(SystemClock)));
        let tuning = tuning(MAX_BATCH_BYTES);
        let http = crate::http::build_client(tuning.request_timeout).unwrap();
        let decode = DecodeOptions {
            schema: SchemaMode::Keeper,
            max_decompressed_bytes: 1 << 30,
            now: SystemTime::now(),
        };
        let dead = Arc::new(MemoryDeadLetter::new());
        let relay = Relay::new(Ingestor::new(endpoint, tokens, http, tuning), dead, decode);
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_secs(1);
        let report = relay
            .forward(
                [Input::bytes("events.ndjson", ndjson(0..3))],
                failing_options(deadline),
            )
            .await
            .unwrap()
            .report;
        // The cache's own load timeout is 30 s; the deadline (1 s) must end the wait.
        assert!(
            started.elapsed() < auth::DEFAULT_LOAD_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(report.failed_transient, 3, "{report:?}");
        assert!(report.is_balanced());
    }

    #[tokio::test]
    async fn a_text_message_that_holds_no_event_is_dead_lettered_with_its_text_and_the_rest_goes() {
        // The bodies of the aws_lambda_events SQS fixture ("Message Body") between events.
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        let array = format!("[{},{}]", event(0), event(1));
        let inputs = [
            Input::bytes("sqs://queue/MessageID_0", array),
            Input::bytes("sqs://queue/MessageID_1", "Message Body"),
            Input::reader("events.ndjson", Cursor::new(ndjson(2..3).into_bytes())),
        ];
        let report = relay
            .forward(inputs, SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!(
            (report.events_in, report.delivered, report.dead_lettered),
            (4, 3, 1)
        );
        assert_eq!(report.unreadable_sources, 1);
        assert!(report.is_balanced());
        assert_eq!(usernames(&server).len(), 3);
        let [entry] = dead.entries().try_into().unwrap();
        assert_eq!(entry.source, "sqs://queue/MessageID_1");
        assert_eq!(entry.raw.as_deref(), Some("Message Body"));
        assert!(
            entry.reason.contains("holds no event") && entry.reason.contains("CSV header"),
            "{}",
            entry.reason
        );
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn a_gzipped_csv_header_without_rows_is_dead_lettered_with_the_inflated_text() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        let header = "audit_event,username,timestamp\n";
        let reader = Cursor::new(gzip(header.as_bytes()));
        let report = relay
            .forward(
                [Input::reader("s3://b/empty.csv.gz", reader)],
                SessionOptions::default(),
            )
            .await
            .unwrap()
            .report;
        assert_eq!((report.events_in, report.dead_lettered), (1, 1));
        let [entry] = dead.entries().try_into().unwrap();
        assert_eq!(entry.raw.as_deref(), Some(header));
        assert!(entry.reason.contains("gzipped input"), "{}", entry.reason);
    }

    #[tokio::test]
    async fn inputs_with_nothing_in_them_leave_no_dead_letter_entry() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        let inputs = [
            Input::bytes("empty", ""),
            Input::bytes("blank", " \r\n\t\n"),
            Input::bytes("bom", "\u{feff}\n"),
            Input::bytes("empty array", "[ \n ]"),
            Input::reader("empty gzip", Cursor::new(gzip(b""))),
            Input::reader("gzipped empty array", Cursor::new(gzip(b"[]\n"))),
        ];
        let report = relay
            .forward(inputs, SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!((report.events_in, report.unreadable_sources), (0, 0));
        assert!(dead.entries().is_empty(), "{:?}", dead.entries());
    }

    #[tokio::test]
    async fn a_long_input_without_events_keeps_only_the_capped_text() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        // One CSV header line longer than the cap, no rows.
        let header = "column,".repeat(MAX_RAW_CHARS / 4);
        let reader = Cursor::new(header.clone().into_bytes());
        let report = relay
            .forward(
                [Input::reader("wide.csv", reader)],
                SessionOptions::default(),
            )
            .await
            .unwrap()
            .report;
        assert_eq!(report.unreadable_sources, 1);
        let [entry] = dead.entries().try_into().unwrap();
        let raw = entry.raw.unwrap();
        assert_eq!(raw.len(), MAX_RAW_CHARS);
        assert!(header.starts_with(&raw));
    }

    #[tokio::test]
    async fn rejected_inputs_are_dead_lettered_and_counted_with_the_rest() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, dead) = relay(&server, MAX_BATCH_BYTES);
        let entry = |reason: &str| DeadLetterEntry {
            reason: reason.into(),
            source: "queue message 7".into(),
            record: None,
            event: None,
            raw: Some("%%".into()),
        };
        let inputs = [
            Input::Rejected(entry("not base64")),
            Input::bytes("a", ndjson(0..2)),
        ];
        let report = relay
            .forward(inputs, SessionOptions::default())
            .await
            .unwrap()
            .report;
        assert_eq!(
            (report.events_in, report.delivered, report.dead_lettered),
            (3, 2, 1)
        );
        assert_eq!(report.unreadable_sources, 1);
        let alone = relay.reject(vec![entry("empty message")]).await.unwrap();
        assert_eq!((alone.events_in, alone.dead_lettered), (1, 1));
        assert_eq!(alone.unreadable_sources, 1);
        assert_eq!(alone.dead_letter_reasons["empty message"], 1);
        assert_eq!(dead.entries().len(), 2);
    }
}
