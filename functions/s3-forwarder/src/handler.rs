//! One invocation: find the objects the event names, stream each into Azure, and say what
//! must be retried (the whole invocation, or single SQS messages).

use std::time::Instant;

use lambda_runtime::LambdaEvent;
use logrelay_core::aws::forward::{
    is_sqs_event, log_summary, retry_error, session_deadline, sqs_event,
};
use logrelay_core::aws::{extract, Bodies, LambdaForwarder};
use logrelay_core::Error;
use serde_json::Value;

/// The metrics dimension when the runtime does not name the function.
const FUNCTION: &str = "s3-forwarder";

/// Handles S3, SNS and EventBridge events directly (a failure fails the invocation, so the
/// platform retries it) and SQS batches (failures listed per message in `batchItemFailures`).
pub(crate) async fn function_handler(
    forwarder: &LambdaForwarder,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let started = Instant::now();
    let (payload, context) = (event.payload, event.context);
    let function = match context.env_config.function_name.as_str() {
        "" => FUNCTION,
        name => name,
    };
    let deadline = session_deadline(context.deadline(), forwarder.budget);
    if is_sqs_event(&payload) {
        let sqs = sqs_event(payload)?;
        let (response, report) = forwarder
            .sqs_batch(&sqs, Bodies::NoticesOnly, deadline)
            .await;
        log_summary(
            function,
            &report,
            response.batch_item_failures.len(),
            started.elapsed(),
        );
        return Ok(json(&response));
    }
    let source = format!("lambda-event-{}", context.request_id);
    let outcome = match extract(&payload) {
        Ok(Some(found)) => forwarder.objects(&found, deadline).await,
        Ok(None) => {
            let reason = "the event is not an S3 notification (S3, SNS, SQS or EventBridge)";
            forwarder
                .reject(&source, &payload.to_string(), reason)
                .await
        }
        Err(malformed) => {
            let reason = format!("unusable S3 notification: {}", malformed.0);
            forwarder
                .reject(&source, &payload.to_string(), &reason)
                .await
        }
    };
    log_summary(
        function,
        &outcome.report,
        usize::from(outcome.retry),
        started.elapsed(),
    );
    if outcome.retry {
        return Err(retry_error(&outcome));
    }
    let mut report = outcome.report;
    report.duration = started.elapsed();
    Ok(json(&report))
}

/// The answer as JSON; plain structs of numbers and strings always serialise.
fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use logrelay_core::dead_letter::MemoryDeadLetter;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn event(payload: Value, seconds_left: u64) -> LambdaEvent<Value> {
        let mut context = Context::default();
        context.request_id = "req-1".into();
        let deadline = SystemTime::now() + Duration::from_secs(seconds_left);
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        LambdaEvent::new(payload, context)
    }

    async fn forwarder() -> (LambdaForwarder, Arc<MemoryDeadLetter>) {
        let dead = Arc::new(MemoryDeadLetter::new());
        let forwarder = logrelay_core::aws::offline_forwarder(dead.clone())
            .await
            .unwrap();
        (forwarder, dead)
    }

    #[tokio::test]
    async fn the_s3_test_event_is_acknowledged_without_work() {
        let (forwarder, dead) = forwarder().await;
        let answer = function_handler(&forwarder, event(fixture("s3-test-event.json"), 60))
            .await
            .unwrap();
        assert_eq!(answer["events_in"], 0);
        assert_eq!(dead.writes(), 0);
    }

    #[tokio::test]
    async fn an_event_that_is_not_a_notification_is_dead_lettered_and_acknowledged() {
        let (forwarder, dead) = forwarder().await;
        let payload = serde_json::json!({"hello": "world"});
        let answer = function_handler(&forwarder, event(payload, 60))
            .await
            .unwrap();
        assert_eq!(answer["dead_lettered"], 1);
        let entries = dead.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].source, "lambda-event-req-1");
        assert!(entries[0].raw.as_deref().unwrap().contains("hello"));
    }

    #[tokio::test]
    async fn an_object_with_no_time_left_fails_the_invocation_for_a_retry() {
        let (forwarder, dead) = forwarder().await;
        // No time left: nothing may start.
        let error = function_handler(&forwarder, event(fixture("s3-put.json"), 0))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("retried"), "{error}");
        assert_eq!(dead.writes(), 0);
    }

    #[tokio::test]
    async fn an_sqs_batch_lists_only_the_messages_to_retry() {
        let (forwarder, dead) = forwarder().await;
        let mut payload = fixture("sqs-s3.json");
        // A third message that is not a notification at all: dead-lettered, acknowledged.
        let mut junk = payload["Records"][1].clone();
        junk["messageId"] = "junk-1".into();
        junk["body"] = r#"[{"audit_event":"login"}]"#.into();
        payload["Records"].as_array_mut().unwrap().push(junk);
        let answer = function_handler(&forwarder, event(payload, 0))
            .await
            .unwrap();
        // The notice has no time left; the test event and the junk are done with.
        assert_eq!(
            answer,
            serde_json::json!({"batchItemFailures":[{"itemIdentifier":"059f36b4-87a3-44ab-83d2-661975830a7d"}]})
        );
        let entries = dead.entries();
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0].source.ends_with("/junk-1"),
            "{}",
            entries[0].source
        );
    }
}
