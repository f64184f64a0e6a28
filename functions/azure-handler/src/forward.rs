//! The seam between the trigger handlers (pure: invocation in, plan out) and the relay (I/O).
//!
//! A [`Plan`] is what one invocation asks for: inputs to decode and send, and entries the handler
//! already knows are undeliverable (a blob that is not base64, an empty queue message). The
//! [`PlanForwarder`] runs the whole plan in one ingestion session, so many small Event Hub events
//! share batches instead of costing a request each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use logrelay_core::dead_letter::{raw_text, DeadLetterEntry};
use logrelay_core::ingest::{Report, SessionOptions, TransientPolicy};
use logrelay_core::keeper::{DecodeOptions, Decoded, RowReader};
use logrelay_core::model::BoxFuture;
use logrelay_core::relay::{self, Relay};
use logrelay_core::Result;

/// One byte source to decode (any Keeper container: JSON, NDJSON, CSV, syslog, gzip).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Input {
    pub(crate) bytes: Bytes,
    /// Names it in dead letters and messages: `queue message <id>`, the blob URI, `eventhub ...`.
    pub(crate) source: String,
}

/// What one invocation sends.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub(crate) inputs: Vec<Input>,
    pub(crate) rejects: Vec<DeadLetterEntry>,
    /// The host moves past these events whatever the answer (an Event Hub batch on its last
    /// attempt, or without a retry policy: the checkpoint advances after a failed run). If
    /// they can be neither delivered nor dead-lettered, they are lost: the forwarder then logs
    /// their EventIds at error level and counts them ([`unrecorded_events_total`]).
    pub(crate) checkpointed: bool,
}

impl Plan {
    /// A plan with one input.
    pub(crate) fn input(bytes: impl Into<Bytes>, source: impl Into<String>) -> Plan {
        Plan {
            inputs: vec![Input {
                bytes: bytes.into(),
                source: source.into(),
            }],
            rejects: Vec::new(),
            checkpointed: false,
        }
    }

    /// A plan that dead-letters `raw` with `reason`.
    pub(crate) fn reject(reason: impl Into<String>, source: impl Into<String>, raw: &[u8]) -> Plan {
        Plan {
            inputs: Vec::new(),
            rejects: vec![rejected(reason, source, None, raw)],
            checkpointed: false,
        }
    }
}

/// A dead-letter entry for input the handler could not even hand to the decoder. `raw` is
/// capped by [`raw_text`] (queue messages, at most 64 KiB, stay whole; a huge undecodable blob
/// stays in its container, named by `source`).
pub(crate) fn rejected(
    reason: impl Into<String>,
    source: impl Into<String>,
    record: Option<u64>,
    raw: &[u8],
) -> DeadLetterEntry {
    DeadLetterEntry {
        reason: reason.into(),
        source: source.into(),
        record,
        event: None,
        raw: Some(raw_text(raw)),
    }
}

/// Runs a plan: decode every input, send the rows, dead-letter what cannot be delivered.
pub(crate) trait PlanForwarder: Send + Sync + std::fmt::Debug {
    /// One ingestion session for the whole plan. Err means nothing can be promised (token
    /// transport, dead letter unwritable): the invocation must fail so the host retries.
    fn forward(&self, plan: Plan, transient: TransientPolicy) -> BoxFuture<'_, Result<Report>>;
}

/// The production forwarder: the shared relay, one session per invocation.
#[derive(Debug, Clone)]
pub(crate) struct RelayForwarder {
    relay: Relay,
    /// How long one invocation may keep retrying (`LOGRELAY_DEADLINE_SECS`).
    deadline: Duration,
}

impl RelayForwarder {
    /// Wraps `relay`; each invocation gives up retrying after `deadline`.
    pub(crate) fn new(relay: Relay, deadline: Duration) -> Self {
        RelayForwarder { relay, deadline }
    }
}

/// EventIds per error line, so one huge batch does not make one unreadable line.
const EVENT_IDS_PER_LINE: usize = 500;

/// Events lost since the process started: checkpointed past by the host with neither
/// delivery nor a dead-letter entry (see [`Plan::checkpointed`]).
static UNRECORDED_EVENTS: AtomicU64 = AtomicU64::new(0);

/// [`UNRECORDED_EVENTS`] so far.
pub(crate) fn unrecorded_events_total() -> u64 {
    UNRECORDED_EVENTS.load(Ordering::Relaxed)
}

/// The `EventId` of every event `inputs` decode to (decoded again, in memory, without
/// sending), and how many records have none (undecodable ones).
fn event_ids(inputs: &[Input], options: &DecodeOptions) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut without = 0;
    for input in inputs {
        let rows = RowReader::new(input.bytes.clone().reader(), &input.source, options);
        for item in rows {
            let id = match item {
                Ok(Decoded::Row(row)) => serde_json::from_slice::<serde_json::Value>(&row.json)
                    .ok()
                    .and_then(|row| row.get("EventId")?.as_str().map(str::to_string)),
                Ok(Decoded::Rejected(_)) | Err(_) => None,
            };
            match id {
                Some(id) => ids.push(id),
                None => without += 1,
            }
        }
    }
    (ids, without)
}

impl RelayForwarder {
    /// Says, at error level, which events of a checkpointed plan are lost because the run
    /// failed (`error`), and counts them.
    /// Returns how many, and the process total.
    fn report_unrecorded(
        &self,
        error: &logrelay_core::Error,
        inputs: &[Input],
        rejects: u64,
    ) -> (u64, u64) {
        let (ids, without) = event_ids(inputs, self.relay.decode_options());
        let lost = ids.len() as u64 + without + rejects;
        let total = UNRECORDED_EVENTS.fetch_add(lost, Ordering::Relaxed) + lost;
        tracing::error!(
            unrecorded_events = lost,
            unrecorded_events_total = total,
            without_event_id = without + rejects,
            %error,
            "The host checkpoints past this Event Hub batch (last attempt), and its events could be neither delivered for sure nor dead-lettered: they are lost unless found by EventId in the table (some may have arrived). EventIds follow."
        );
        for chunk in ids.chunks(EVENT_IDS_PER_LINE) {
            tracing::error!(
                unrecorded_events = chunk.len(),
                event_ids = %chunk.join(","),
                "EventIds of events the host checkpointed past without a dead-letter entry."
            );
        }
        (lost, total)
    }
}

impl PlanForwarder for RelayForwarder {
    fn forward(&self, plan: Plan, transient: TransientPolicy) -> BoxFuture<'_, Result<Report>> {
        Box::pin(async move {
            let checkpointed = plan
                .checkpointed
                .then(|| (plan.inputs.clone(), plan.rejects.len() as u64));
            let mut ran = self.run(plan, transient).await;
            if let (Err(error), Some((inputs, rejects))) = (&mut ran, checkpointed) {
                let (lost, total) = self.report_unrecorded(error, &inputs, rejects);
                // The same counters in the invocation's `Logs`, which the host keeps.
                if let logrelay_core::Error::DeadLetter { reason, .. } = error {
                    reason.push_str(&format!(
                        "; the host checkpoints past this batch (last attempt): \
                         unrecorded_events={lost} unrecorded_events_total={total} \
                         (their EventIds are in the error log)"
                    ));
                }
            }
            ran
        })
    }
}

impl RelayForwarder {
    /// The plan in one session; Err as [`PlanForwarder::forward`].
    async fn run(&self, plan: Plan, transient: TransientPolicy) -> Result<Report> {
        {
            let options = SessionOptions {
                deadline: Some(Instant::now() + self.deadline),
                transient,
            };
            // The relay is the process's one (built in main): its old-event warning is logged
            // once per process, and "now" is taken per input for the old-event check.
            let inputs = plan.rejects.into_iter().map(relay::Input::Rejected).chain(
                plan.inputs
                    .into_iter()
                    .map(|input| relay::Input::bytes(input.source, input.bytes)),
            );
            let forwarded = self.relay.forward(inputs, options).await?;
            let mut report = forwarded.report;
            // The bytes are in memory, so a read error is bad content (corrupt gzip, a gzip
            // bomb): retrying cannot help. Keep the input in the dead letter.
            let rejects: Vec<DeadLetterEntry> = forwarded
                .read_errors
                .into_iter()
                .map(|failed| {
                    let raw = failed.bytes.unwrap_or_default();
                    rejected(
                        format!(
                            "{} (rows decoded before this point were delivered)",
                            failed.error
                        ),
                        failed.source,
                        None,
                        &raw,
                    )
                })
                .collect();
            report += self.relay.reject(rejects).await?;
            Ok(report)
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording forwarder for handler tests.

    use std::sync::Mutex;

    use super::*;

    /// Records every plan; answers with a report that counts inputs as delivered events.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub(crate) plans: Mutex<Vec<(Plan, TransientPolicy)>>,
        /// When set, `forward` fails with this error instead.
        pub(crate) fail_with: Mutex<Option<logrelay_core::Error>>,
        /// When set, every input counts as failed transiently.
        pub(crate) transient_failure: bool,
    }

    impl PlanForwarder for Recorder {
        fn forward(&self, plan: Plan, transient: TransientPolicy) -> BoxFuture<'_, Result<Report>> {
            Box::pin(async move {
                if let Some(error) = self.fail_with.lock().unwrap().take() {
                    return Err(error);
                }
                let inputs = plan.inputs.len() as u64;
                let rejects = plan.rejects.len() as u64;
                let mut report = Report {
                    events_in: inputs + rejects,
                    dead_lettered: rejects,
                    ..Report::default()
                };
                if self.transient_failure && transient == TransientPolicy::Fail {
                    report.failed_transient = inputs;
                } else {
                    report.delivered = inputs;
                }
                self.plans.lock().unwrap().push((plan, transient));
                Ok(report)
            })
        }
    }
}
