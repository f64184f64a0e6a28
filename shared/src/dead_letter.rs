//! The dead letter: where every event that cannot be delivered goes, with the reason.
//!
//! OWNER: core-ingest helper (trait + local directory + memory); the AWS helper adds S3 in `aws`.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::Result;

/// One undeliverable event.
#[derive(Debug, Clone, Serialize, PartialEq)]
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

/// A boxed future for dyn-compatible async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Somewhere to write undeliverable events. A failed write is fatal for the run: the
/// events would otherwise be lost.
pub trait DeadLetterSink: Send + Sync + std::fmt::Debug {
    /// Writes one batch of entries (one file or object per call).
    fn write<'a>(&'a self, entries: &'a [DeadLetterEntry]) -> BoxFuture<'a, Result<()>>;

    /// Where this sink writes, for messages.
    fn location(&self) -> String;
}
