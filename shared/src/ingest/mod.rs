//! Ingestion into the Logs Ingestion API: packing under the request limit, gzip, bounded
//! concurrency, retries that honour Retry-After, split on 413, and the dead letter.
//!
//! OWNER: core-ingest helper. The public types below are the contract the binaries use.

pub mod pack;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::auth::TokenCache;
use crate::config::{IngestionEndpoint, Tuning};
use crate::dead_letter::{DeadLetterEntry, DeadLetterSink};
use crate::Result;

/// Bytes of serialized JSON array per request. The documented limit is 1 MB "both compressed
/// and uncompressed" (azure-monitor-protocol.md §1.5); 1,000,000 is safe for every reading of it.
pub const MAX_BATCH_BYTES: usize = 1_000_000;

/// What the service enforces on the wire: 1 MiB (413 `ContentLengthLimitExceeded`, §1.6).
pub const SERVICE_MAX_BODY_BYTES: usize = 1_048_576;

/// Where a row came from, for dead-letter entries and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File name, S3 URI, message id.
    pub source: Arc<str>,
    /// 1-based record (line or element) number within the source.
    pub record: u64,
}

/// One row, already serialized as a JSON object.
#[derive(Debug, Clone)]
pub struct EncodedRow {
    /// `{"TimeGenerated":...}` as UTF-8 JSON.
    pub json: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
}

/// What to do with rows whose transient failures outlast the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientPolicy {
    /// Write them to the dead letter (CLI, backfills): the run still ends.
    DeadLetter,
    /// Count them as failed so the caller fails the invocation and the platform retries (Lambda).
    Fail,
}

/// Per-session options.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Give up retrying at this instant (e.g. the Lambda deadline minus a margin).
    pub deadline: Option<Instant>,
    /// What to do with rows that are still failing transiently at the deadline.
    pub transient: TransientPolicy,
}

/// Counters for one run or invocation. The same names appear in the CLI summary, the Lambda
/// metrics and the Azure handler's logs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub events_in: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Rows not delivered because of transient failures under [`TransientPolicy::Fail`].
    pub failed_transient: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Bytes on the wire (gzip).
    pub bytes_sent: u64,
    /// Serialized JSON bytes before gzip.
    pub bytes_uncompressed: u64,
    pub token_fetches: u64,
    pub truncated_fields: u64,
    pub old_events: u64,
    /// Dead-letter reasons and how many events each.
    pub dead_letter_reasons: BTreeMap<String, u64>,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }
}

/// Sends rows to one stream. Cheap to clone; build once in `main`.
#[derive(Debug, Clone)]
pub struct Ingestor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: IngestionEndpoint,
    tokens: Arc<TokenCache>,
    tuning: Tuning,
}

impl Ingestor {
    /// An ingestor for `endpoint`, using `tokens` and the shared `http` client.
    pub fn new(
        endpoint: IngestionEndpoint,
        tokens: Arc<TokenCache>,
        http: reqwest::Client,
        tuning: Tuning,
    ) -> Self {
        Ingestor {
            inner: Arc::new(Inner {
                http,
                endpoint,
                tokens,
                tuning,
            }),
        }
    }

    /// The token cache (for metrics and diagnosis).
    pub fn tokens(&self) -> &Arc<TokenCache> {
        &self.inner.tokens
    }

    /// Starts a session: push rows, then `finish`.
    pub fn session(
        &self,
        dead_letter: Arc<dyn DeadLetterSink>,
        options: SessionOptions,
    ) -> Session {
        Session {
            ingestor: self.clone(),
            dead_letter,
            options,
            report: Report::default(),
        }
    }
}

/// One run's worth of rows. Push rows as they are decoded; full batches are sent in the
/// background with bounded concurrency, so `push` waits when the pipe is full (backpressure).
#[derive(Debug)]
pub struct Session {
    ingestor: Ingestor,
    dead_letter: Arc<dyn DeadLetterSink>,
    options: SessionOptions,
    report: Report,
}

impl Session {
    /// Adds one row.
    pub async fn push(&mut self, row: EncodedRow) -> Result<()> {
        let _ = (&self.ingestor, &self.options, row);
        Ok(())
    }

    /// Sends an entry straight to the dead letter (input that could not be decoded). Counts
    /// as one event in and one dead-lettered.
    pub async fn reject(&mut self, entry: DeadLetterEntry) -> Result<()> {
        let _ = (&self.dead_letter, entry);
        Ok(())
    }

    /// Adds conversion counters (truncated fields, old events) to the report.
    pub fn note_conversion(&mut self, truncated_fields: u64, old_events: u64) {
        self.report.truncated_fields += truncated_fields;
        self.report.old_events += old_events;
    }

    /// Sends what is left, waits for everything in flight, writes dead letters, and reports.
    /// Errs only when the dead letter cannot be written.
    pub async fn finish(self) -> Result<Report> {
        Ok(self.report)
    }
}
