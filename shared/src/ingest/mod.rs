//! Ingestion into the Logs Ingestion API: packing under the request limit, gzip, bounded
//! concurrency, retries that honour Retry-After, split on 413, and the dead letter.

pub mod endpoint;
pub mod pack;
pub mod retry;
mod send;
#[cfg(test)]
pub(crate) mod tests;
pub mod tuning;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use crate::auth::TokenCache;
use crate::dead_letter::{DeadLetterEntry, DeadLetterSink};
pub use crate::model::{EncodedRow, Origin, Report, MAX_BATCH_BYTES};
use crate::Result;
pub use endpoint::IngestionEndpoint;
use pack::{Batch, Packed, Packer};
pub use send::gzip;
use send::{BatchContext, MAX_ENTRIES_PER_WRITE};
pub use tuning::Tuning;

/// What the service enforces on the wire: 1 MiB (413 `ContentLengthLimitExceeded`, <https://learn.microsoft.com/rest/api/monitor/dataplane/logs-ingestion/upload>).
pub const SERVICE_MAX_BODY_BYTES: usize = 1_048_576;

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

impl Default for SessionOptions {
    /// No deadline of its own (each batch still stops at `Tuning::deadline`); transient
    /// failures go to the dead letter.
    fn default() -> Self {
        SessionOptions {
            deadline: None,
            transient: TransientPolicy::DeadLetter,
        }
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

    /// The endpoint rows are sent to.
    pub fn endpoint(&self) -> &IngestionEndpoint {
        &self.inner.endpoint
    }

    /// The tuning in force.
    pub fn tuning(&self) -> &Tuning {
        &self.inner.tuning
    }

    /// Starts a session: push rows, then `finish`.
    pub fn session(
        &self,
        dead_letter: Arc<dyn DeadLetterSink>,
        options: SessionOptions,
    ) -> Session {
        let tuning = &self.inner.tuning;
        Session {
            delivery: BatchContext {
                inner: self.inner.clone(),
                dead_letter: dead_letter.clone(),
                policy: options.transient,
                deadline: options.deadline,
            },
            dead_letter,
            packer: Packer::new(tuning.batch_bytes.clamp(MIN_BATCH_BYTES, MAX_BATCH_BYTES)),
            permits: Arc::new(Semaphore::new(tuning.concurrency.max(1))),
            tasks: JoinSet::new(),
            rejects: Vec::new(),
            rejects_bytes: 0,
            fetches_at_start: self.inner.tokens.fetches(),
            started: Instant::now(),
            report: Report::default(),
        }
    }
}

/// Smallest batch limit accepted: brackets plus a one-byte row.
const MIN_BATCH_BYTES: usize = 3;

/// Buffered reject bytes (raw and event text, roughly) that force a dead-letter write.
const MAX_BUFFERED_REJECT_BYTES: usize = 8 << 20;

/// One run's worth of rows. Push rows as they are decoded; full batches are sent in the
/// background with bounded concurrency, so `push` waits when the pipe is full (backpressure).
///
/// Memory stays bounded: the batch being filled, at most `concurrency` batches in flight, and
/// at most 5,000 (`MAX_ENTRIES_PER_WRITE`) buffered rejects.
#[derive(Debug)]
pub struct Session {
    delivery: BatchContext,
    dead_letter: Arc<dyn DeadLetterSink>,
    packer: Packer,
    permits: Arc<Semaphore>,
    tasks: JoinSet<Result<Report>>,
    rejects: Vec<DeadLetterEntry>,
    rejects_bytes: usize,
    fetches_at_start: u64,
    started: Instant,
    report: Report,
}

impl Session {
    /// Adds one row. Waits while `concurrency` batches are in flight. Errs only when the dead
    /// letter cannot be written (the run must stop: events would be lost).
    pub async fn push(&mut self, row: EncodedRow) -> Result<()> {
        self.report.events_in += 1;
        match self.packer.push(row) {
            Packed::Added => Ok(()),
            Packed::Full(batch) => self.dispatch(batch).await,
            Packed::Oversized(row, reason) => {
                self.report.count_dead_letter(&reason, 1);
                self.buffer_reject(DeadLetterEntry::for_row(&row, reason))
                    .await
            }
        }
    }

    /// Sends an entry straight to the dead letter (input that could not be decoded). Counts
    /// as one event in and one dead-lettered.
    pub async fn reject(&mut self, entry: DeadLetterEntry) -> Result<()> {
        self.report.events_in += 1;
        self.report.count_dead_letter(&entry.reason, 1);
        self.buffer_reject(entry).await
    }

    /// Adds conversion counters (truncated fields, old events) to the report.
    pub fn note_conversion(&mut self, truncated_fields: u64, old_events: u64) {
        self.report.truncated_fields += truncated_fields;
        self.report.old_events += old_events;
    }

    /// Counters so far (batches still in flight are not yet counted).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Sends what is left, waits for everything in flight, writes dead letters, and reports.
    /// Errs only when the dead letter cannot be written.
    pub async fn finish(mut self) -> Result<Report> {
        let last = self.packer.take();
        if !last.is_empty() {
            self.dispatch(last).await?;
        }
        self.flush_rejects().await?;
        while let Some(joined) = self.tasks.join_next().await {
            self.report += settle(joined)?;
        }
        let fetches = self.delivery.inner.tokens.fetches();
        self.report.token_fetches = fetches.saturating_sub(self.fetches_at_start);
        self.report.duration = self.started.elapsed();
        debug_assert!(self.report.is_balanced(), "{:?}", self.report);
        Ok(self.report)
    }

    /// Starts sending `batch` once a permit is free; collects finished batches on the way.
    async fn dispatch(&mut self, batch: Batch) -> Result<()> {
        while let Some(joined) = self.tasks.try_join_next() {
            self.report += settle(joined)?;
        }
        // Wait for a free slot, collecting results meanwhile so a failure surfaces early.
        let permit = loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                break permit;
            }
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    match permit {
                        Ok(permit) => break permit,
                        // The semaphore is never closed; treat it as "no limit" rather than lose rows.
                        Err(_) => continue,
                    }
                }
                Some(joined) = self.tasks.join_next() => self.report += settle(joined)?,
            }
        };
        let delivery = self.delivery.clone();
        self.tasks.spawn(async move {
            let tally = send::deliver(delivery, batch).await;
            drop(permit);
            tally
        });
        Ok(())
    }

    async fn buffer_reject(&mut self, entry: DeadLetterEntry) -> Result<()> {
        self.rejects_bytes += entry.raw.as_ref().map_or(0, String::len)
            + entry.event.as_ref().map_or(0, |_| 256)
            + entry.reason.len();
        self.rejects.push(entry);
        if self.rejects.len() >= MAX_ENTRIES_PER_WRITE
            || self.rejects_bytes >= MAX_BUFFERED_REJECT_BYTES
        {
            self.flush_rejects().await?;
        }
        Ok(())
    }

    async fn flush_rejects(&mut self) -> Result<()> {
        if !self.rejects.is_empty() {
            self.dead_letter.write(&self.rejects).await?;
            self.rejects.clear();
            self.rejects_bytes = 0;
        }
        Ok(())
    }
}

/// A batch task's result; a panic in one is re-raised rather than losing its rows silently.
fn settle(joined: Result<Result<Report>, JoinError>) -> Result<Report> {
    match joined {
        Ok(tally) => tally,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Tasks are aborted only when the session is dropped, so this is unreachable here.
        Err(error) => Err(crate::Error::DeadLetter {
            location: "ingestion task".into(),
            reason: error.to_string(),
        }),
    }
}
