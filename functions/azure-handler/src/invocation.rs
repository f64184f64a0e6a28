//! The custom handler protocol: the host's invocation request (`Data`/`Metadata`) and the
//! handler's answer (`Outputs`/`Logs`/`ReturnValue`). Source: <https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers#request-payload>.
//!
//! The host turns strings, numbers and arrays into JSON *text* (`JsonConvert.SerializeObject`),
//! so a queue message `{"a":1}` arrives as the string `"{\"a\":1}"` with quotes included, while
//! older hosts and the docs show it unwrapped. [`unwrap_text`] accepts both.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use logrelay_core::ingest::Report;

/// One invocation request from the Functions host.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Invocation {
    /// Trigger and input binding values by binding name.
    #[serde(default, alias = "Data", alias = "data")]
    pub(crate) data: Map<String, Value>,
    /// Trigger metadata (`Id`, `DequeueCount`, `Uri`, `PartitionContext`, `RetryContext`...).
    #[serde(default, alias = "Metadata", alias = "metadata")]
    pub(crate) metadata: Map<String, Value>,
}

impl Invocation {
    /// Parses a request body; the error names what is wrong without quoting the payload.
    pub(crate) fn parse(body: &[u8]) -> Result<Invocation, String> {
        serde_json::from_slice(body).map_err(|error| {
            format!(
                "the invocation request is not the custom handler JSON shape \
                 ({{\"Data\":{{..}},\"Metadata\":{{..}}}}): {error}"
            )
        })
    }

    /// A metadata value as text (`"\"abc\""`, `"abc"` and `5` all work).
    pub(crate) fn meta_text(&self, key: &str) -> Option<String> {
        self.metadata.get(key).and_then(text_of)
    }

    /// A metadata value as structured JSON (objects the host sent as JSON text are parsed).
    pub(crate) fn meta_json(&self, key: &str) -> Option<Value> {
        self.metadata.get(key).map(json_of)
    }

    /// True when the host will not run this invocation again after a failure: a retry policy is
    /// active (`RetryContext`) and this is its last attempt.
    pub(crate) fn is_final_retry(&self) -> bool {
        let Some(context) = self.meta_json("RetryContext") else {
            return false;
        };
        let number = |key: &str| {
            context
                .get(key)
                .and_then(|value| text_of(value)?.parse::<i64>().ok())
        };
        match (number("RetryCount"), number("MaxRetryCount")) {
            // -1 means "retry forever".
            (Some(count), Some(max)) if max >= 0 => count >= max,
            _ => false,
        }
    }

    /// True when the trigger has a retry policy at all.
    pub(crate) fn has_retry_policy(&self) -> bool {
        self.metadata.contains_key("RetryContext")
    }
}

/// A binding value after undoing the host's JSON-text wrapping once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unwrapped {
    /// Text: the message or event body exactly as the producer wrote it.
    Text(String),
    /// Structured JSON the host embedded as an object or array.
    Json(Value),
    /// `null` or absent.
    Missing,
}

/// Undoes the host's serialisation once: a string that parses as a JSON *string* is replaced by
/// that inner string; any other string is kept as written; objects and arrays are kept as is.
pub(crate) fn unwrap_text(value: Option<&Value>) -> Unwrapped {
    match value {
        None | Some(Value::Null) => Unwrapped::Missing,
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::String(inner)) => Unwrapped::Text(inner),
            _ => Unwrapped::Text(text.clone()),
        },
        Some(structured @ (Value::Object(_) | Value::Array(_))) => {
            Unwrapped::Json(structured.clone())
        }
        Some(scalar) => Unwrapped::Text(scalar.to_string()),
    }
}

/// A scalar as text, unwrapping JSON-text strings once.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match unwrap_text(Some(value)) {
        Unwrapped::Text(text) => Some(text),
        Unwrapped::Json(_) | Unwrapped::Missing => None,
    }
}

/// Structured JSON, parsing strings that hold JSON objects or arrays (host bug #5815 sent nested
/// metadata objects as strings).
pub(crate) fn json_of(value: &Value) -> Value {
    match value {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::String(inner)) => {
                serde_json::from_str::<Value>(&inner).unwrap_or(Value::String(inner))
            }
            Ok(parsed) => parsed,
            Err(_) => value.clone(),
        },
        other => other.clone(),
    }
}

/// The handler's answer body. The host warns when `Outputs` is empty or `ReturnValue` null;
/// these functions have no output bindings, so that warning is expected.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InvocationResult {
    pub(crate) outputs: Map<String, Value>,
    pub(crate) logs: Vec<String>,
    pub(crate) return_value: Value,
}

/// How an invocation ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every event delivered or dead-lettered: 200, the host completes the message.
    Done { logs: Vec<String> },
    /// Retry later (throttling past the deadline, token transport): 500, the host's retry and
    /// poison rules apply.
    Retry { logs: Vec<String> },
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let (status, logs) = match self {
            Outcome::Done { logs } => (StatusCode::OK, logs),
            Outcome::Retry { logs } => (StatusCode::INTERNAL_SERVER_ERROR, logs),
        };
        let body = InvocationResult {
            outputs: Map::new(),
            logs,
            return_value: Value::Null,
        };
        json_answer(status, &body)
    }
}

/// `body` as the JSON reply the host reads (`Content-Type: application/json` is required: the
/// host refuses `text/plain`, azure-functions-host#6462).
pub(crate) fn json_answer(status: StatusCode, body: &InvocationResult) -> Response {
    // Serialising this struct cannot fail; an empty object is the harmless fallback.
    let json = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The summary line for the `Logs` array: function name and every report counter.
pub(crate) fn summary_line(function: &str, report: &Report) -> String {
    let mut line = format!("logrelay {function}:");
    for (name, value) in logrelay_core::metrics::summary_fields(report) {
        line.push_str(&format!(" {name}={value}"));
    }
    for (reason, count) in &report.dead_letter_reasons {
        line.push_str(&format!(" dead_letter[{reason}]={count}"));
    }
    // Events lost by this process so far (Event Hub checkpoints past a failed last attempt):
    // in every later summary, so a log query sees the count even after the error lines.
    let unrecorded = crate::forward::unrecorded_events_total();
    if unrecorded > 0 {
        line.push_str(&format!(" unrecorded_events_total={unrecorded}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_holding_a_json_string_is_unwrapped_once() {
        // What current hosts send for the queue message {"a":1}.
        let value = json!("\"{\\\"a\\\":1}\"");
        assert_eq!(
            unwrap_text(Some(&value)),
            Unwrapped::Text("{\"a\":1}".into())
        );
    }

    #[test]
    fn a_string_holding_json_text_is_kept_as_written() {
        // Older hosts and the docs sample: the message text itself.
        let value = json!("{\"a\":1}");
        assert_eq!(
            unwrap_text(Some(&value)),
            Unwrapped::Text("{\"a\":1}".into())
        );
        let plain = json!("not json at all");
        assert_eq!(
            unwrap_text(Some(&plain)),
            Unwrapped::Text("not json at all".into())
        );
    }

    #[test]
    fn only_one_layer_is_removed() {
        let twice = json!("\"\\\"inner\\\"\"");
        assert_eq!(
            unwrap_text(Some(&twice)),
            Unwrapped::Text("\"inner\"".into())
        );
    }

    #[test]
    fn objects_and_arrays_are_used_as_they_are() {
        let object = json!({"audit_event": "login"});
        assert_eq!(unwrap_text(Some(&object)), Unwrapped::Json(object.clone()));
        assert_eq!(unwrap_text(Some(&Value::Null)), Unwrapped::Missing);
        assert_eq!(unwrap_text(None), Unwrapped::Missing);
    }

    #[test]
    fn metadata_text_and_json_accept_the_host_encodings() {
        let invocation = Invocation::parse(
            br#"{"Data":{},"Metadata":{"Id":"\"5b3c\"","DequeueCount":"2","Count":3,
                "PartitionContext":"{\"PartitionId\":\"1\"}"}}"#,
        )
        .unwrap();
        assert_eq!(invocation.meta_text("Id").as_deref(), Some("5b3c"));
        assert_eq!(invocation.meta_text("DequeueCount").as_deref(), Some("2"));
        assert_eq!(invocation.meta_text("Count").as_deref(), Some("3"));
        assert_eq!(
            invocation.meta_json("PartitionContext"),
            Some(json!({"PartitionId": "1"}))
        );
    }

    #[test]
    fn the_last_attempt_of_a_retry_policy_is_recognised() {
        let last = Invocation::parse(
            br#"{"Data":{},"Metadata":{"RetryContext":{"RetryCount":3,"MaxRetryCount":3}}}"#,
        )
        .unwrap();
        assert!(last.is_final_retry());
        let earlier = Invocation::parse(
            br#"{"Data":{},"Metadata":{"RetryContext":{"RetryCount":1,"MaxRetryCount":3}}}"#,
        )
        .unwrap();
        assert!(!earlier.is_final_retry());
        assert!(earlier.has_retry_policy());
        let forever = Invocation::parse(
            br#"{"Data":{},"Metadata":{"RetryContext":{"RetryCount":9,"MaxRetryCount":-1}}}"#,
        )
        .unwrap();
        assert!(!forever.is_final_retry());
        assert!(!Invocation::default().has_retry_policy());
    }

    #[test]
    fn a_body_that_is_not_the_protocol_shape_is_refused_with_a_reason() {
        let error = Invocation::parse(b"[1,2]").unwrap_err();
        assert!(error.contains("custom handler JSON shape"), "{error}");
    }

    #[test]
    fn the_summary_line_carries_every_counter() {
        let report = Report {
            events_in: 3,
            delivered: 2,
            dead_lettered: 1,
            token_fetches: 1,
            ..Report::default()
        };
        let line = summary_line("queue_events", &report);
        for expected in [
            "events_in=3",
            "delivered=2",
            "dead_lettered=1",
            "retries=0",
            "throttled=0",
            "token_fetches=1",
            "bytes_sent=0",
        ] {
            assert!(line.contains(expected), "{line}");
        }
    }
}
