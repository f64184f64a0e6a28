//! One SQS batch: each message's events (or the objects its S3 notice names) forwarded; the
//! messages to retry listed in `batchItemFailures`.

use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use logrelay_core::aws::forward::{log_summary, session_deadline};
use logrelay_core::aws::{Bodies, LambdaForwarder};
use logrelay_core::Error;

/// The metrics dimension when the runtime does not name the function.
const FUNCTION: &str = "sqs-forwarder";

/// Transient failures (throttling past the deadline, unreadable objects, a failing dead
/// letter) are reported per message so SQS redelivers only those; malformed events go to
/// the dead letter and their messages are acknowledged.
pub(crate) async fn function_handler(
    forwarder: &LambdaForwarder,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let started = Instant::now();
    let function = match event.context.env_config.function_name.as_str() {
        "" => FUNCTION,
        name => name,
    };
    let deadline = session_deadline(event.context.deadline(), forwarder.budget);
    let (response, report) = forwarder
        .sqs_batch(&event.payload, Bodies::EventsOrNotices, deadline)
        .await;
    log_summary(
        function,
        &report,
        response.batch_item_failures.len(),
        started.elapsed(),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use logrelay_core::dead_letter::MemoryDeadLetter;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn fixture(name: &str) -> SqsEvent {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn event(payload: SqsEvent, seconds_left: u64) -> LambdaEvent<SqsEvent> {
        let mut context = Context::default();
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
    async fn a_malformed_body_is_dead_lettered_and_acknowledged() {
        let (forwarder, dead) = forwarder().await;
        let mut batch = fixture("sqs-s3.json");
        batch.records.truncate(1);
        batch.records[0].body = Some("{\"audit_event\": \"login\", broken".into());
        let response = function_handler(&forwarder, event(batch, 60))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let entries = dead.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(
            entries[0].source.starts_with("sqs://"),
            "{}",
            entries[0].source
        );
    }

    #[tokio::test]
    async fn the_s3_test_event_is_acknowledged() {
        let (forwarder, dead) = forwarder().await;
        let mut batch = fixture("sqs-s3.json");
        batch.records.remove(0);
        let response = function_handler(&forwarder, event(batch, 60))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(dead.writes(), 0);
    }

    #[tokio::test]
    async fn messages_that_cannot_start_before_the_deadline_are_reported_for_retry() {
        let (forwarder, dead) = forwarder().await;
        let mut batch = fixture("sqs-s3.json");
        batch.records[1].body = Some(r#"[{"audit_event":"login"}]"#.into());
        let ids: Vec<String> = batch
            .records
            .iter()
            .map(|record| record.message_id.clone().unwrap())
            .collect();
        let response = function_handler(&forwarder, event(batch, 0)).await.unwrap();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(dead.writes(), 0);
    }
}
