//! What the Lambda functions do with an invocation: forward the objects a notice names, or
//! the events an SQS message holds, and say per message what must be retried.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;

use crate::dead_letter::{raw_text, DeadLetterEntry};
use crate::ingest::{Report, SessionOptions, TransientPolicy};
use crate::relay::{is_deadline_stop, Forwarded, Input, Relay};
use crate::{Error, Result};

use super::notification::{extract_text, Extracted, ObjectRef};
use super::s3::{forward_object, ObjectOutcome};

/// Most time kept back from the Lambda deadline to write dead letters, log the summary and
/// answer before the platform stops the invocation.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// Least time kept back, for functions with short timeouts (Lambda's default is 3 s).
pub const MIN_DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// Deadlines below this many milliseconds since the epoch (2001-09-09) cannot be wall-clock
/// instants and are read as a time span instead (see [`session_deadline`]). Lambda timeouts
/// are at most 900 s, far below it.
const RELATIVE_DEADLINE_BELOW: Duration = Duration::from_millis(1_000_000_000_000);

/// The SQS `eventSource` of SQS records (<https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html>).
const SQS_EVENT_SOURCE: &str = "aws:sqs";

/// Time kept back from `remaining`: a tenth of it, between [`MIN_DEADLINE_MARGIN`] and
/// [`DEADLINE_MARGIN`] (a 3 s function keeps 0.5 s, a 15 min one keeps 5 s).
pub fn margin(remaining: Duration) -> Duration {
    (remaining / 10).clamp(MIN_DEADLINE_MARGIN, DEADLINE_MARGIN)
}

/// The delivery deadline for an invocation ending at `lambda_deadline`: the earlier of that
/// minus its [`margin`] and `budget` from now (`LOGRELAY_DEADLINE_SECS`).
pub fn session_deadline(lambda_deadline: SystemTime, budget: Duration) -> Instant {
    let since_epoch = lambda_deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let remaining = if since_epoch < RELATIVE_DEADLINE_BELOW {
        // Not a wall-clock instant: cargo-lambda's local runtime sends the timeout itself
        // (`lambda-runtime-deadline-ms: 600000`); real Lambda always sends epoch milliseconds.
        since_epoch
    } else {
        lambda_deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    let usable = remaining.saturating_sub(margin(remaining));
    Instant::now() + usable.min(budget)
}

/// Logs the one summary line of an invocation and prints its CloudWatch EMF line to stdout.
pub fn log_summary(function: &str, report: &Report, failed_messages: usize, elapsed: Duration) {
    let mut report = report.clone();
    report.duration = elapsed;
    tracing::info!(
        function = function,
        counters = %report.summary_line(),
        failed_messages = failed_messages,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "Invocation finished."
    );
    println!(
        "{}",
        crate::metrics::emf_line(METRICS_NAMESPACE, function, &report)
    );
}

/// CloudWatch namespace of the functions' metrics.
pub const METRICS_NAMESPACE: &str = "logrelay";

/// Whether `value` is an SQS event (records from `aws:sqs` with a message id and a body).
pub fn is_sqs_event(value: &serde_json::Value) -> bool {
    value
        .get("Records")
        .and_then(serde_json::Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(serde_json::Value::as_str)
        == Some(SQS_EVENT_SOURCE)
}

/// What SQS message bodies may hold besides S3 notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Only S3 notices (the s3-forwarder): anything else is dead-lettered.
    NoticesOnly,
    /// Keeper events in any container, or S3 notices (the sqs-forwarder).
    EventsOrNotices,
}

/// The relay and S3 client a function works with; built once per container.
#[derive(Debug, Clone)]
pub struct LambdaForwarder {
    /// Decoder, ingestor and dead letter.
    pub relay: Relay,
    /// Object reads.
    pub s3: aws_sdk_s3::Client,
    /// `LOGRELAY_DEADLINE_SECS`: the most one invocation spends delivering.
    pub budget: Duration,
}

/// The outcome of one unit of work (an invocation or an SQS message).
#[derive(Debug, Default)]
pub struct Handled {
    /// Counters over everything forwarded.
    pub report: Report,
    /// Whether the work must be retried (transient failure, deadline, dead letter failure).
    pub retry: bool,
    /// Whether the session deadline stopped the work (reading or sending) before it ended.
    pub deadline_passed: bool,
}

impl LambdaForwarder {
    fn options(deadline: Instant) -> SessionOptions {
        SessionOptions {
            deadline: Some(deadline),
            transient: TransientPolicy::Fail,
        }
    }

    /// Forwards every object of `found`, logging test events and ignored notices.
    pub async fn objects(&self, found: &Extracted, deadline: Instant) -> Handled {
        if found.test_events > 0 {
            tracing::info!(
                count = found.test_events,
                "Acknowledged an s3:TestEvent; nothing to forward."
            );
        }
        for ignored in &found.ignored {
            tracing::info!(notice = %ignored, "Ignored a notice that is not an object creation.");
        }
        let mut outcome = Handled::default();
        for object in &found.objects {
            self.object(object, deadline, &mut outcome).await;
        }
        outcome
    }

    async fn object(&self, object: &ObjectRef, deadline: Instant, outcome: &mut Handled) {
        if Instant::now() >= deadline {
            tracing::warn!(object = %object.uri(), "No time left; leaving the object for the retry.");
            outcome.retry = true;
            outcome.deadline_passed = true;
            return;
        }
        match forward_object(&self.s3, &self.relay, object, Self::options(deadline)).await {
            Ok(ObjectOutcome::Forwarded(report)) => {
                if report.failed_transient > 0 {
                    tracing::warn!(object = %object.uri(), failed_transient = report.failed_transient, "Events still failing at the deadline; the object will be retried.");
                    outcome.retry = true;
                }
                outcome.report += report;
            }
            Ok(ObjectOutcome::Missing(report)) => outcome.report += report,
            Err(error) => {
                tracing::warn!(object = %object.uri(), error = %error, transient = error.is_transient(), "Reading or forwarding the object failed; it will be retried.");
                outcome.retry = true;
                outcome.deadline_passed |= is_deadline_stop(&error);
            }
        }
    }

    /// Handles one SQS message: an S3 notice (objects forwarded), Keeper events (when
    /// `bodies` allows), or something unusable (dead-lettered and acknowledged).
    pub async fn message(
        &self,
        message: &SqsMessage,
        bodies: Bodies,
        deadline: Instant,
    ) -> Handled {
        let id = message.message_id.clone().unwrap_or_default();
        let source = format!(
            "sqs://{}/{id}",
            message.event_source_arn.as_deref().unwrap_or("queue")
        );
        let body = message.body.as_deref().unwrap_or_default();
        match (extract_text(body), bodies) {
            (Ok(Some(found)), _) => self.objects(&found, deadline).await,
            (Ok(None), Bodies::EventsOrNotices) => self.events(body, source, deadline).await,
            (Ok(None), Bodies::NoticesOnly) => {
                self.reject(
                    &source,
                    body,
                    "the message is not an S3 notification (S3, SNS or EventBridge)",
                )
                .await
            }
            (Err(malformed), _) => {
                let reason = format!("unusable S3 notification: {}", malformed.0);
                self.reject(&source, body, &reason).await
            }
        }
    }

    async fn events(&self, body: &str, source: String, deadline: Instant) -> Handled {
        if Instant::now() >= deadline {
            return Handled {
                retry: true,
                deadline_passed: true,
                ..Handled::default()
            };
        }
        let input = Input::bytes(source.clone(), Bytes::copy_from_slice(body.as_bytes()));
        match self.relay.forward([input], Self::options(deadline)).await {
            Ok(forwarded) if forwarded.read_errors.is_empty() => Handled {
                retry: forwarded.report.failed_transient > 0,
                report: forwarded.report,
                deadline_passed: false,
            },
            // The counters of what was sent before reading stopped are kept: the summary and
            // the metrics show the rows delivered before a deadline.
            Ok(Forwarded {
                read_errors,
                report,
            }) => {
                let mut deadline_passed = false;
                for failed in read_errors {
                    deadline_passed |= is_deadline_stop(&failed.error);
                    tracing::warn!(source = %source, error = %failed.error, "Decoding the message failed; it will be retried.");
                }
                Handled {
                    retry: true,
                    report,
                    deadline_passed,
                }
            }
            Err(error) => {
                tracing::warn!(source = %source, error = %error, "Forwarding the message failed; it will be retried.");
                Handled {
                    retry: true,
                    ..Handled::default()
                }
            }
        }
    }

    /// Writes an unusable input to the dead letter. Acknowledged when written; retried when
    /// the dead letter itself fails (the input would otherwise be lost).
    pub async fn reject(&self, source: &str, raw: &str, reason: &str) -> Handled {
        tracing::warn!(source = %source, reason = %reason, "Unusable input; writing it to the dead letter.");
        let entry = DeadLetterEntry {
            reason: reason.to_string(),
            source: source.to_string(),
            record: None,
            event: None,
            raw: Some(raw_text(raw.as_bytes())),
        };
        match self.relay.reject(vec![entry]).await {
            Ok(report) => Handled {
                report,
                ..Handled::default()
            },
            Err(error) => {
                tracing::error!(source = %source, error = %error, "The dead letter failed; the input will be retried.");
                Handled {
                    retry: true,
                    ..Handled::default()
                }
            }
        }
    }

    /// Handles an SQS batch message by message, in order, and lists the messages to retry
    /// (partial batch response; needs `ReportBatchItemFailures` on the event source mapping).
    pub async fn sqs_batch(
        &self,
        event: &SqsEvent,
        bodies: Bodies,
        deadline: Instant,
    ) -> (SqsBatchResponse, Report) {
        let mut response = SqsBatchResponse::default();
        let mut total = Report::default();
        for message in &event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let outcome = self.message(message, bodies, deadline).await;
            total += outcome.report;
            if outcome.retry {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        (response, total)
    }
}

/// The error an invocation fails with so the platform retries it.
pub fn retry_error(outcome: &Handled) -> Error {
    if outcome.report.failed_transient > 0 || outcome.deadline_passed {
        return Error::DeadlineExceeded {
            pending: outcome.report.failed_transient,
        };
    }
    Error::Aws {
        service: "s3",
        operation: "GetObject",
        reason: "an object could not be read or forwarded (see the log above); the invocation will be retried".into(),
        transient: true,
    }
}

/// Parses an SQS event out of a generic invocation payload.
pub fn sqs_event(value: serde_json::Value) -> Result<SqsEvent> {
    serde_json::from_value(value).map_err(|error| Error::Decode {
        source_name: "SQS event".into(),
        record: 0,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_session_deadline_keeps_a_margin_before_the_lambda_deadline() {
        let lambda = SystemTime::now() + Duration::from_secs(60);
        let deadline = session_deadline(lambda, Duration::from_secs(300));
        let left = deadline - Instant::now();
        assert!(
            left <= Duration::from_secs(55) && left > Duration::from_secs(53),
            "{left:?}"
        );
    }

    #[test]
    fn a_short_function_keeps_half_a_second_back() {
        let lambda = SystemTime::now() + Duration::from_secs(3);
        let left = session_deadline(lambda, Duration::from_secs(300)) - Instant::now();
        assert!(
            left <= Duration::from_millis(2500) && left > Duration::from_millis(2300),
            "{left:?}"
        );
        assert_eq!(margin(Duration::from_secs(900)), DEADLINE_MARGIN);
    }

    #[test]
    fn the_session_deadline_never_exceeds_the_configured_budget() {
        let lambda = SystemTime::now() + Duration::from_secs(900);
        let left = session_deadline(lambda, Duration::from_secs(10)) - Instant::now();
        assert!(left <= Duration::from_secs(10), "{left:?}");
    }

    #[test]
    fn a_past_lambda_deadline_leaves_no_time() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let deadline = session_deadline(past, Duration::from_secs(10));
        assert!(deadline <= Instant::now());
        assert!(
            session_deadline(SystemTime::UNIX_EPOCH, Duration::from_secs(10)) <= Instant::now()
        );
    }

    #[test]
    fn a_deadline_that_is_a_time_span_is_read_as_one() {
        // cargo-lambda's local runtime sends `lambda-runtime-deadline-ms: 600000`.
        let span = SystemTime::UNIX_EPOCH + Duration::from_secs(600);
        let left = session_deadline(span, Duration::from_secs(3600)) - Instant::now();
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(595),
            "{left:?}"
        );
    }

    #[test]
    fn a_direct_invocation_stopped_by_the_deadline_fails_as_deadline_exceeded() {
        let stopped = Handled {
            retry: true,
            deadline_passed: true,
            ..Handled::default()
        };
        let error = retry_error(&stopped);
        assert!(matches!(error, Error::DeadlineExceeded { .. }), "{error}");
        assert!(error.is_transient(), "the platform retries it");
        let unreadable = Handled {
            retry: true,
            ..Handled::default()
        };
        assert!(matches!(retry_error(&unreadable), Error::Aws { .. }));
    }

    #[test]
    fn reports_add_up_with_their_reasons() {
        let one = Report {
            events_in: 3,
            delivered: 2,
            dead_lettered: 1,
            dead_letter_reasons: BTreeMap::from([("bad".to_string(), 1)]),
            ..Report::default()
        };
        let mut total = Report::default();
        total += &one;
        total += &one;
        assert_eq!(
            (total.events_in, total.delivered, total.dead_lettered),
            (6, 4, 2)
        );
        assert_eq!(total.dead_letter_reasons["bad"], 2);
    }

    #[test]
    fn sqs_events_are_told_apart_from_s3_notifications() {
        let sqs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../tests/fixtures/aws/sqs-s3.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(is_sqs_event(&sqs));
        let s3: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../tests/fixtures/aws/s3-put.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(!is_sqs_event(&s3));
        let parsed = sqs_event(sqs).unwrap();
        assert_eq!(parsed.records.len(), 2);
    }
}
