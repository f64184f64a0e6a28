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
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::auth::{self, TokenCache};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::dead_letter::DeadLetterSink;
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
/// azure-monitor-protocol.md §1.7.
pub const OLD_EVENTS_WARNING: &str = "Azure replaces TimeGenerated older than 2 days with the arrival time; the original time stays in `timestamp`.";

/// Decoder, ingestor and dead letter wired together. Cheap to clone; build once in `main`.
#[derive(Debug, Clone)]
pub struct Relay {
    ingestor: Ingestor,
    dead_letter: Arc<dyn DeadLetterSink>,
    decode: DecodeOptions,
    warned_old_events: Arc<AtomicBool>,
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
        secrets: Option<Arc<dyn auth::SecretSource>>,
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

    /// Decodes and sends one whole input in its own session.
    ///
    /// An I/O error from `reader` is returned after the rows decoded before it were sent: the
    /// error is transient, and the caller retries the source (rows carry a stable `EventId`).
    pub async fn forward_reader(
        &self,
        reader: impl Read + Send + 'static,
        source: String,
        options: SessionOptions,
    ) -> Result<Report> {
        let mut session = self.session(options);
        let forwarded = self.forward_into(&mut session, reader, source).await;
        let report = session.finish().await?;
        forwarded.map(|()| report)
    }

    /// [`Relay::forward_reader`] for an async reader (an S3 body, a request body).
    pub async fn forward_async_reader(
        &self,
        reader: impl AsyncRead + Send + Unpin + 'static,
        source: String,
        options: SessionOptions,
    ) -> Result<Report> {
        // The bridge blocks on the runtime from the decoding thread, never from a worker.
        self.forward_reader(SyncIoBridge::new(reader), source, options)
            .await
    }

    /// [`Relay::forward_reader`] for bytes already in memory.
    pub async fn forward_bytes(
        &self,
        bytes: Bytes,
        source: String,
        options: SessionOptions,
    ) -> Result<Report> {
        self.forward_reader(bytes.reader(), source, options).await
    }

    /// Decodes `reader` into an existing session, so many inputs share one session and one
    /// report (the CLI). Rows and rejects are pushed; conversion counters are added. Errs on
    /// an I/O error of the reader (after pushing what came before it) or when the dead letter
    /// cannot be written.
    pub async fn forward_into(
        &self,
        session: &mut Session,
        reader: impl Read + Send + 'static,
        source: String,
    ) -> Result<()> {
        let (sender, mut receiver) = mpsc::channel::<Item>(DECODED_CHANNEL_CHUNKS);
        // "Now" is taken per input: a warm Lambda container or a long-lived handler must not
        // judge event age against the time it started.
        let decode = DecodeOptions {
            now: SystemTime::now().max(self.decode.now),
            ..self.decode.clone()
        };
        let decoder =
            tokio::task::spawn_blocking(move || decode_into(reader, &source, &decode, &sender));

        let mut outcome = Ok(());
        let mut stats = None;
        while let Some(item) = receiver.recv().await {
            let pushed = match item {
                Item::Decoded(chunk) => push_chunk(session, chunk).await,
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
        outcome
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

/// The decoding thread: every item over the channel in chunks, then the counters.
fn decode_into(
    reader: impl Read + Send,
    source: &str,
    options: &DecodeOptions,
    sender: &mpsc::Sender<Item>,
) {
    let mut rows = RowReader::new(reader, source, options);
    let mut chunk = Vec::with_capacity(DECODED_CHUNK_ITEMS);
    let mut chunk_bytes = 0;
    while let Some(item) = rows.next() {
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
            .forward_bytes(
                Bytes::from(input),
                "events.ndjson".into(),
                SessionOptions::default(),
            )
            .await
            .unwrap();
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
        let report = relay
            .forward_reader(
                Cursor::new(ndjson(0..5_000).into_bytes()),
                "big.ndjson".into(),
                SessionOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(report.delivered, 5_000);
        assert_eq!(usernames(&server).len(), 5_000);
        assert!(report.requests > 10);
    }

    #[tokio::test]
    async fn an_async_reader_is_decoded_like_a_blocking_one() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let reader = Cursor::new(ndjson(0..10).into_bytes());
        let report = relay
            .forward_async_reader(reader, "s3://bucket/key".into(), SessionOptions::default())
            .await
            .unwrap();
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
        let error = relay
            .forward_reader(reader, "events.ndjson".into(), SessionOptions::default())
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(usernames(&server).len(), 3);
    }

    #[tokio::test]
    async fn many_inputs_share_one_session_and_one_report() {
        let server = Server::start(|_, _| reply(204)).await;
        let (relay, _) = relay(&server, MAX_BATCH_BYTES);
        let mut session = relay.session(SessionOptions::default());
        for (name, range) in [("a.ndjson", 0..4), ("b.ndjson", 4..7)] {
            let input = Cursor::new(ndjson(range).into_bytes());
            relay
                .forward_into(&mut session, input, name.into())
                .await
                .unwrap();
        }
        let report = session.finish().await.unwrap();
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
            .forward_bytes(
                Bytes::from(input),
                "bad.ndjson".into(),
                SessionOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, crate::Error::DeadLetter { .. }), "{error}");
    }
}
