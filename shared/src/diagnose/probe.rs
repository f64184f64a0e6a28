//! Step 5: one marked test event through a real ingestion session, and what its answer means.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{explain_ingestion_status, portal, Step, PROBE_AUDIT_EVENT, PROBE_EVENT_ID_PREFIX};
use crate::auth::TokenCache;
use crate::config::Config;
use crate::dead_letter::MemoryDeadLetter;
use crate::ingest::retry::AzureError;
use crate::ingest::{Ingestor, SessionOptions, TransientPolicy};
use crate::model::{EncodedRow, Origin};
use crate::schema::KEEPER_COLUMNS;

/// The one marked test event the probe sends, as a row of the Keeper table.
pub fn probe_row(now: chrono::DateTime<chrono::Utc>) -> Value {
    let time = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "TimeGenerated": time,
        "EventId": format!("{PROBE_EVENT_ID_PREFIX}{}", uuid::Uuid::new_v4().simple()),
        "audit_event": PROBE_AUDIT_EVENT,
        "category": "logrelay",
        "remote_address": "127.0.0.1",
        "client_version": concat!("logrelay ", env!("CARGO_PKG_VERSION")),
        "username": "logrelay-doctor",
        "enterprise_id": 0,
        "timestamp": time,
        "data": { "note": "Test event sent by `logrelay doctor`; safe to ignore." },
    })
}

/// Sends the one marked probe event through a real ingestion session (one attempt, no
/// retries: doctor reports rather than waits) and explains the answer.
pub(super) async fn probe(config: &Config, http: reqwest::Client, tokens: Arc<TokenCache>) -> Step {
    let row = probe_row(chrono::Utc::now());
    let event_id = row["EventId"].as_str().unwrap_or_default().to_string();
    let mut tuning = config.tuning.clone();
    tuning.max_attempts = 1;
    let ingestor = Ingestor::new(config.endpoint.clone(), tokens, http, tuning);
    let dead_letter = Arc::new(MemoryDeadLetter::new());
    let mut session = ingestor.session(
        dead_letter,
        SessionOptions {
            deadline: None,
            transient: TransientPolicy::DeadLetter,
        },
    );
    let encoded = EncodedRow {
        json: row.to_string().into_bytes(),
        origin: Origin {
            source: Arc::from("logrelay doctor"),
            record: 1,
        },
    };
    let report = match session.push(encoded).await {
        Ok(()) => session.finish().await,
        Err(error) => Err(error),
    };
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            return Step::failed(
                5,
                error.to_string(),
                "report this as a bug",
                portal::NETWORK,
            )
        }
    };
    if report.delivered == 1 {
        return Step::ok(
            5,
            format!("204: one test event accepted (audit_event {PROBE_AUDIT_EVENT}, EventId {event_id})"),
        );
    }
    let reason = report
        .dead_letter_reasons
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    let Some(status) = http_status_in(&reason) else {
        return Step::failed(
            5,
            reason,
            "check the network path to the ingestion endpoint",
            portal::NETWORK,
        );
    };
    // The relay's reason already carries Azure's code and message and the fix.
    let advice = explain_ingestion_status(status, &AzureError::default(), &config.endpoint.dcr_id);
    let detail = match reason.split_once("): ") {
        Some((head, _)) => format!("{head})"),
        None => reason.clone(),
    };
    Step::failed(5, detail, reason, advice.portal)
}

/// The status in a relay reason (`HTTP 403 (...)`, `... last error: HTTP 429 ...`).
pub(super) fn http_status_in(reason: &str) -> Option<u16> {
    let at = reason.find("HTTP ")? + "HTTP ".len();
    reason.get(at..at + 3)?.parse().ok()
}

/// The probe's columns are exactly the table's (checked in tests).
#[doc(hidden)]
pub fn probe_columns_match_schema(row: &Value) -> bool {
    let names: BTreeSet<&str> = KEEPER_COLUMNS.iter().map(|column| column.name).collect();
    row.as_object()
        .is_some_and(|object| object.keys().map(String::as_str).collect::<BTreeSet<_>>() == names)
}
