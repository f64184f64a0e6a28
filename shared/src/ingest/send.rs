//! BatchContext of one batch: gzip, POST, classify, retry with backoff, reauthenticate once on
//! 401, split on 413, and the dead letter for what cannot be delivered.
//!
//! One `x-ms-client-request-id` is used for every attempt of the same body, so Azure support
//! can follow one body across its retries; a split half is a new body with a new id.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::pack::{write_body, Batch};
use super::retry::{self, AzureError, RetryAction};
use super::{Inner, TransientPolicy, SERVICE_MAX_BODY_BYTES};
use crate::dead_letter::{DeadLetterEntry, DeadLetterSink};
use crate::model::Report;
use crate::Result;

/// Most entries in one dead-letter write (one file or object).
pub(crate) const MAX_ENTRIES_PER_WRITE: usize = 5_000;

/// Longest error body read from a response; Azure's error JSON is far smaller.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// Everything a batch task needs from its session.
#[derive(Debug, Clone)]
pub(crate) struct BatchContext {
    pub(crate) inner: Arc<Inner>,
    pub(crate) dead_letter: Arc<dyn DeadLetterSink>,
    pub(crate) policy: TransientPolicy,
    /// The session's overall deadline, if any.
    pub(crate) deadline: Option<Instant>,
}

/// How one body ended.
enum SendResult {
    Delivered,
    /// 413: too large for the service.
    TooLarge(String),
    /// Retrying cannot help; the reason says what to fix.
    Permanent(String),
    /// Still failing transiently when attempts or time ran out.
    Exhausted(String),
}

/// Delivers `batch` (splitting on 413) and writes what failed to the dead letter. Errs only
/// when the dead letter cannot be written.
pub(crate) async fn deliver(delivery: BatchContext, batch: Batch) -> Result<Report> {
    let batch_deadline = Instant::now() + delivery.inner.tuning.deadline;
    let deadline = delivery
        .deadline
        .map_or(batch_deadline, |session| session.min(batch_deadline));
    let mut tally = Report::default();
    let mut failed: Vec<DeadLetterEntry> = Vec::new();
    let mut queue = VecDeque::from([batch]);
    while let Some(batch) = queue.pop_front() {
        let rows = batch.rows.len() as u64;
        let (reason, transient) = match send(&delivery, &batch, deadline, &mut tally).await {
            SendResult::Delivered => {
                tally.delivered += rows;
                continue;
            }
            SendResult::TooLarge(_) if batch.rows.len() > 1 => {
                tracing::debug!(rows, "Splitting a body Azure found too large.");
                let (first, second) = batch.split();
                queue.push_front(second);
                queue.push_front(first);
                continue;
            }
            SendResult::TooLarge(reason) | SendResult::Permanent(reason) => (reason, false),
            SendResult::Exhausted(reason) => (reason, true),
        };
        if transient && delivery.policy == TransientPolicy::Fail {
            tracing::warn!(rows, %reason, "Rows not delivered; the invocation will fail so they are retried.");
            tally.failed_transient += rows;
            continue;
        }
        tracing::warn!(rows, %reason, "Rows go to the dead letter.");
        tally.count_dead_letter(&reason, rows);
        failed.extend(
            batch
                .rows
                .iter()
                .map(|row| DeadLetterEntry::for_row(row, reason.clone())),
        );
    }
    for chunk in failed.chunks(MAX_ENTRIES_PER_WRITE) {
        delivery.dead_letter.write(chunk).await?;
    }
    Ok(tally)
}

/// Gzips the JSON array of `batch` at `level` with libdeflate (a whole-buffer compressor:
/// the body is at most 1 MB, so it is laid out once and compressed in one call). Inline
/// rather than on a blocking thread: a few milliseconds per megabyte, and the batch never
/// leaves this task, so no path can lose it.
pub fn gzip(batch: &Batch, level: u8) -> std::io::Result<Bytes> {
    let lvl = libdeflater::CompressionLvl::new(i32::from(level)).map_err(|error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("gzip level {level}: {error:?}"),
        )
    })?;
    GZIP_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch {
            compressor,
            body,
            out,
        } = &mut *scratch;
        let compressor = match compressor {
            Some((at, compressor)) if *at == level => compressor,
            slot => &mut slot.insert((level, libdeflater::Compressor::new(lvl))).1,
        };
        body.clear();
        write_body(&batch.rows, body)?;
        out.resize(compressor.gzip_compress_bound(body.len()), 0);
        let written = compressor
            .gzip_compress(body, out)
            .map_err(|error| std::io::Error::other(format!("gzip: {error:?}")))?;
        // An exact copy: the body is kept for retries, the scratch is the thread's.
        Ok(Bytes::copy_from_slice(&out[..written]))
    })
}

/// A worker thread's compression state, kept between bodies: allocating a compressor and
/// megabyte buffers costs more than compressing a small body, and kept buffers make the
/// memory per thread fixed.
#[derive(Default)]
struct Scratch {
    /// The compressor and its level.
    compressor: Option<(u8, libdeflater::Compressor)>,
    /// The body laid out as JSON.
    body: Vec<u8>,
    /// Room for the compressed body (libdeflate needs its bound up front).
    out: Vec<u8>,
}

thread_local! {
    static GZIP_SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Sends one body until it is delivered, refused, or out of attempts or time.
async fn send(
    delivery: &BatchContext,
    batch: &Batch,
    deadline: Instant,
    tally: &mut Report,
) -> SendResult {
    let inner = &delivery.inner;
    let body = match gzip(batch, inner.tuning.gzip_level) {
        Ok(body) => body,
        Err(error) => {
            return SendResult::Permanent(format!("cannot gzip the request body: {error}"))
        }
    };
    if body.len() > SERVICE_MAX_BODY_BYTES {
        // Cannot happen for JSON ≤ 1,000,000 bytes; handled like the service's own 413.
        return SendResult::TooLarge(format!(
            "gzipped body is {} bytes, over the service limit of {SERVICE_MAX_BODY_BYTES}",
            body.len()
        ));
    }
    let url = inner.endpoint.upload_url();
    let request_id = uuid::Uuid::new_v4().to_string();
    let rows = batch.rows.len();
    let max_attempts = inner.tuning.max_attempts.max(1);
    let mut attempt: u32 = 0;
    let mut reauthenticated = false;
    let mut last = String::from("no attempt made");
    // The service's last answer survives a later transport error (e.g. a final attempt cut short
    // by the deadline), so the dead-letter reason still says what Azure answered.
    let mut last_answer: Option<String> = None;
    loop {
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            return SendResult::Exhausted(format!(
                "retries exhausted: the deadline passed after {} attempts; {}",
                attempt - 1,
                last_errors(&last, last_answer.as_deref())
            ));
        }
        if attempt > 1 {
            tally.retries += 1;
        }
        let mut server_wait = None;
        let token = match inner.tokens.get_by(Some(deadline)).await {
            Ok(token) => Some(token),
            Err(error) if error.is_transient() => {
                last = error.to_string();
                None
            }
            Err(error) => return SendResult::Permanent(error.to_string()),
        };
        if let Some(token) = token {
            tally.requests += 1;
            tally.bytes_sent += body.len() as u64;
            tally.bytes_uncompressed += batch.json_bytes as u64;
            let timeout = inner.tuning.request_timeout.min(deadline - now);
            let response = inner
                .http
                .post(url.clone())
                .bearer_auth(token.secret.expose())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::CONTENT_ENCODING, "gzip")
                .header("x-ms-client-request-id", &request_id)
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            match response {
                Err(error) => {
                    // reqwest errors carry the URL, never headers: no token here.
                    last = format!("transport error: {error}");
                    tracing::debug!(attempt, rows, request_id, error = %error, "Ingestion request failed.");
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::debug!(
                        status,
                        rows,
                        bytes = body.len(),
                        attempt,
                        request_id,
                        "Ingestion request answered."
                    );
                    let action = retry::classify(status);
                    if action == RetryAction::Success {
                        return SendResult::Delivered;
                    }
                    let headers = response.headers().clone();
                    let error_body = read_capped(response).await;
                    let error = AzureError::parse(&headers, &error_body);
                    match action {
                        RetryAction::Success => return SendResult::Delivered,
                        RetryAction::Split => {
                            return SendResult::TooLarge(retry::advice(
                                status,
                                &error,
                                &inner.endpoint.dcr_id,
                            ))
                        }
                        RetryAction::Permanent => {
                            return SendResult::Permanent(retry::advice(
                                status,
                                &error,
                                &inner.endpoint.dcr_id,
                            ))
                        }
                        RetryAction::Reauthenticate if !reauthenticated => {
                            tracing::warn!(
                                request_id,
                                "Ingestion answered 401; fetching a fresh token and trying once more."
                            );
                            inner.tokens.invalidate(&token);
                            reauthenticated = true;
                            continue;
                        }
                        RetryAction::Reauthenticate => {
                            return SendResult::Permanent(retry::advice(
                                status,
                                &error,
                                &inner.endpoint.dcr_id,
                            ))
                        }
                        RetryAction::Retry => {
                            if status == 429 {
                                tally.throttled += 1;
                            }
                            server_wait = retry::retry_after(&headers, SystemTime::now());
                            last = format!("HTTP {status} {}", error.code_or_dash());
                            last_answer = Some(last.clone());
                        }
                    }
                }
            }
        }
        if attempt >= max_attempts {
            return SendResult::Exhausted(format!(
                "retries exhausted after {attempt} attempts; {}",
                last_errors(&last, last_answer.as_deref())
            ));
        }
        let delay = retry::next_delay(
            server_wait,
            retry::backoff(
                attempt,
                retry::BACKOFF_BASE,
                retry::BACKOFF_CAP,
                fastrand::f64,
            ),
        );
        if Instant::now() + delay >= deadline {
            return SendResult::Exhausted(format!(
                "retries exhausted: waiting {delay:?} more would pass the deadline after {attempt} attempts; {}",
                last_errors(&last, last_answer.as_deref())
            ));
        }
        tracing::warn!(
            attempt,
            rows,
            request_id,
            delay_ms = delay.as_millis() as u64,
            error = %last,
            "Retrying an ingestion request."
        );
        tokio::time::sleep(delay).await;
    }
}

/// The end of an exhaustion reason: the last error, and the service's last answer when a later
/// attempt failed otherwise (a timeout says less to an operator than the 503 before it).
fn last_errors(last: &str, last_answer: Option<&str>) -> String {
    match last_answer {
        Some(answer) if answer != last => {
            format!("last error: {last}; last answer from the service: {answer}")
        }
        _ => format!("last error: {last}"),
    }
}

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of a response body; errors give what was read.
async fn read_capped(mut response: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::last_errors;

    #[test]
    fn an_exhaustion_reason_keeps_the_services_last_answer_after_a_later_timeout() {
        assert_eq!(
            last_errors("transport error: operation timed out", Some("HTTP 503 -")),
            "last error: transport error: operation timed out; last answer from the service: HTTP 503 -"
        );
    }

    #[test]
    fn an_exhaustion_reason_names_the_answer_once_when_it_was_the_last_error() {
        assert_eq!(
            last_errors("HTTP 503 -", Some("HTTP 503 -")),
            "last error: HTTP 503 -"
        );
        assert_eq!(
            last_errors("transport error: refused", None),
            "last error: transport error: refused"
        );
    }
}
