//! S3 object references out of every way a "new object" notice reaches a function: S3 event
//! notifications (direct, in SQS, in SNS, SNS in SQS) and EventBridge "Object Created" events.
//!
//! Pure: JSON in, object references out. Shapes are in <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>.
//! Each wrapper is recognised by its discriminating field (`Event`, `Type`, `source`, `s3`,
//! `body`, `Sns`) and then read through the `aws_lambda_events` type for that payload.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Entity;
use aws_lambda_events::sns::SnsMessage;
use aws_lambda_events::sqs::SqsMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `eventName` prefix of every S3 "object created" notification (`ObjectCreated:Put`, ...).
/// Source: AWS S3 notification-how-to, supported event types.
const OBJECT_CREATED_PREFIX: &str = "ObjectCreated:";

/// The `Event` of the test message S3 sends when a notification is configured (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>).
const S3_TEST_EVENT: &str = "s3:TestEvent";

/// EventBridge `detail-type` of a new object (AWS `ev-events` page, <https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>).
const EVENTBRIDGE_OBJECT_CREATED: &str = "Object Created";

/// EventBridge `source` of S3 events.
const EVENTBRIDGE_S3_SOURCE: &str = "aws.s3";

/// SNS envelope `Type` of a published message (<https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>).
const SNS_NOTIFICATION_TYPE: &str = "Notification";

/// Wrappers nest at most SQS → SNS → S3; more means a loop or nonsense.
const MAX_NESTING: usize = 4;

/// One object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// Another reading of the key, tried when `key` does not exist. Set for EventBridge keys
    /// with `+` or `%`: whether EventBridge URL-encodes keys is not documented (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>).
    pub alt_key: Option<String>,
    /// Size in bytes, when the notification says.
    pub size: Option<u64>,
    /// Version id on versioned buckets.
    pub version_id: Option<String>,
}

impl ObjectRef {
    /// `s3://bucket/key`, used as the source name in reports and dead letters.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What a notification asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// New objects to forward, in notification order.
    pub objects: Vec<ObjectRef>,
    /// `s3:TestEvent` messages seen (acknowledged, nothing to do).
    pub test_events: usize,
    /// Records that are S3 notices but not "object created", described for the log.
    pub ignored: Vec<String>,
}

impl Extracted {
    fn merge(&mut self, other: Extracted) {
        self.objects.extend(other.objects);
        self.test_events += other.test_events;
        self.ignored.extend(other.ignored);
    }
}

/// A notice that looks like an S3 notification but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// Extracts object references from any incoming event or message body.
///
/// `Ok(None)` means the value is not a notification at all (for example a message body that
/// holds Keeper events); `Err` means it is one but a required field is missing.
pub fn extract(value: &Value) -> Result<Option<Extracted>, Malformed> {
    extract_nested(value, 0)
}

/// [`extract`] on a text body (SQS message body, SNS message). Text that is not JSON is not
/// a notification.
pub fn extract_text(text: &str) -> Result<Option<Extracted>, Malformed> {
    extract_text_nested(text, 0)
}

fn extract_text_nested(text: &str, depth: usize) -> Result<Option<Extracted>, Malformed> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => extract_nested(&value, depth),
        Err(_) => Ok(None),
    }
}

fn extract_nested(value: &Value, depth: usize) -> Result<Option<Extracted>, Malformed> {
    if depth > MAX_NESTING {
        return Err(Malformed(format!(
            "notification nested deeper than {MAX_NESTING} wrappers"
        )));
    }
    let Some(object) = value.as_object() else {
        return Ok(None);
    };
    if object.get("Event").and_then(Value::as_str) == Some(S3_TEST_EVENT) {
        return Ok(Some(Extracted {
            test_events: 1,
            ..Extracted::default()
        }));
    }
    if object.get("Type").and_then(Value::as_str) == Some(SNS_NOTIFICATION_TYPE) {
        if let Some(message) = sns_message(value) {
            return extract_text_nested(&message, depth + 1);
        }
    }
    if object.get("source").and_then(Value::as_str) == Some(EVENTBRIDGE_S3_SOURCE) {
        return eventbridge(value).map(Some);
    }
    let Some(records) = object.get("Records").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Extracted::default();
    let mut recognised = false;
    for (index, record) in records.iter().enumerate() {
        if record.get("s3").is_some() {
            recognised = true;
            out.merge(s3_record(record, index)?);
        } else if let Some(body) = sqs_body(record) {
            // SQS record: the body is the wrapped notice.
            if let Some(inner) = extract_text_nested(&body, depth + 1)? {
                recognised = true;
                out.merge(inner);
            }
        } else if let Some(message) = record.get("Sns").and_then(sns_message) {
            // SNS delivered straight to Lambda.
            if let Some(inner) = extract_text_nested(&message, depth + 1)? {
                recognised = true;
                out.merge(inner);
            }
        }
    }
    Ok(recognised.then_some(out))
}

/// The body of an SQS record, when it is one and has a body.
fn sqs_body(record: &Value) -> Option<String> {
    SqsMessage::deserialize(record).ok()?.body
}

/// The `Message` of an SNS envelope: the one SNS hands to Lambda (`Records[].Sns`) and the one it
/// writes into an SQS body without raw delivery are the same message, only the two URL field
/// names differ in case, which `SnsMessage` accepts both ways
/// (<https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>). A value
/// that is not a whole SNS message is not one.
fn sns_message(value: &Value) -> Option<String> {
    SnsMessage::deserialize(value).ok().map(|sns| sns.message)
}

/// What an S3 notification record says that is read here: the event name and the `s3` entity
/// of [`aws_lambda_events::s3::S3EventRecord`]. The record's other required fields
/// (`eventTime`, `userIdentity`, `requestParameters`) are not needed to find the object, so a
/// record without them is still read rather than refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Notice {
    #[serde(default)]
    event_name: Option<String>,
    s3: S3Entity,
}

fn s3_record(record: &Value, index: usize) -> Result<Extracted, Malformed> {
    let notice = S3Notice::deserialize(record)
        .map_err(|error| Malformed(format!("Records[{index}] is not an S3 record: {error}")))?;
    let event_name = notice.event_name.unwrap_or_default();
    let bucket = notice
        .s3
        .bucket
        .name
        .ok_or_else(|| Malformed(format!("Records[{index}].s3.bucket.name is missing")))?;
    let object = notice.s3.object;
    let raw_key = object
        .key
        .ok_or_else(|| Malformed(format!("Records[{index}].s3.object.key is missing")))?;
    let key = decode_form_urlencoded(&raw_key);
    if !event_name.starts_with(OBJECT_CREATED_PREFIX) {
        return Ok(Extracted {
            ignored: vec![format!("{event_name} s3://{bucket}/{key}")],
            ..Extracted::default()
        });
    }
    Ok(Extracted {
        objects: vec![ObjectRef {
            bucket,
            key,
            alt_key: None,
            size: object.size.and_then(|size| u64::try_from(size).ok()),
            version_id: object.version_id.filter(|v| !v.is_empty()),
        }],
        ..Extracted::default()
    })
}

/// The `detail` of an S3 EventBridge event, the part read here
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>).
#[derive(Debug, Default, Deserialize, Serialize)]
struct S3EventDetail {
    #[serde(default)]
    bucket: Option<S3DetailBucket>,
    #[serde(default)]
    object: Option<S3DetailObject>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct S3DetailBucket {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
struct S3DetailObject {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    version_id: Option<String>,
}

fn eventbridge(value: &Value) -> Result<Extracted, Malformed> {
    let event = EventBridgeEvent::<S3EventDetail>::deserialize(value)
        .map_err(|error| Malformed(format!("not an S3 EventBridge event: {error}")))?;
    let detail_type = event.detail_type;
    let bucket = event
        .detail
        .bucket
        .and_then(|bucket| bucket.name)
        .ok_or_else(|| Malformed("EventBridge detail.bucket.name is missing".into()))?;
    let object = event.detail.object.unwrap_or_default();
    let key = object
        .key
        .ok_or_else(|| Malformed("EventBridge detail.object.key is missing".into()))?;
    if detail_type != EVENTBRIDGE_OBJECT_CREATED {
        return Ok(Extracted {
            ignored: vec![format!("{detail_type} s3://{bucket}/{key}")],
            ..Extracted::default()
        });
    }
    // Taken as written; the form-decoded reading is the fallback (see `ObjectRef::alt_key`).
    let decoded = decode_form_urlencoded(&key);
    Ok(Extracted {
        objects: vec![ObjectRef {
            bucket,
            alt_key: (decoded != key).then_some(decoded),
            key,
            size: object.size,
            version_id: object.version_id.filter(|v| !v.is_empty()),
        }],
        ..Extracted::default()
    })
}

/// Decodes a key as S3 notifications encode it: `application/x-www-form-urlencoded`, so `+`
/// is a space and `%XX` is a byte (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>). A `%` not followed by two hex digits stays as is;
/// bytes that are not UTF-8 are replaced (S3 keys are UTF-8, so that cannot match anyway).
/// The decoding is `form_urlencoded`'s (the WHATWG URL Standard's application/x-www-form-urlencoded parser).
pub fn decode_form_urlencoded(key: &str) -> String {
    // A key is one form value: decode each `&`-separated piece as the value of an unnamed
    // pair (`=` + piece, so a `=` in it stays), keeping any raw `&` a sender left unencoded.
    key.split('&')
        .map(|piece| {
            let pair = format!("={piece}");
            form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn events_object() -> ObjectRef {
        ObjectRef {
            bucket: "keeper-audit".into(),
            key: "keeper/2026/11/24/events.ndjson.gz".into(),
            alt_key: None,
            size: Some(1024),
            version_id: None,
        }
    }

    #[test]
    fn a_direct_s3_notification_names_its_object() {
        let found = extract(&fixture("s3-put.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
        assert_eq!(
            found.objects[0].uri(),
            "s3://keeper-audit/keeper/2026/11/24/events.ndjson.gz"
        );
    }

    #[test]
    fn keys_are_form_decoded_and_removals_are_ignored() {
        let found = extract(&fixture("s3-put-encoded-key.json"))
            .unwrap()
            .unwrap();
        assert_eq!(found.objects.len(), 1);
        let object = &found.objects[0];
        assert_eq!(object.key, "keeper/dt=2026-11-24/red flower c++ été.json");
        assert_eq!(
            object.version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
        );
        assert_eq!(object.size, Some(2048));
        assert_eq!(
            found.ignored,
            vec!["ObjectRemoved:Delete s3://keeper-audit/keeper/old.json"]
        );
    }

    #[test]
    fn the_s3_test_event_is_recognised_and_carries_no_objects() {
        let found = extract(&fixture("s3-test-event.json")).unwrap().unwrap();
        assert_eq!(found.test_events, 1);
        assert!(found.objects.is_empty());
    }

    #[test]
    fn an_sqs_batch_of_s3_notifications_yields_every_object_and_the_test_event() {
        let found = extract(&fixture("sqs-s3.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
        assert_eq!(found.test_events, 1);
    }

    #[test]
    fn an_sns_envelope_inside_sqs_is_unwrapped() {
        let found = extract(&fixture("sqs-sns-s3.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
    }

    #[test]
    fn sns_raw_delivery_inside_sqs_is_the_s3_notification_itself() {
        let found = extract(&fixture("sqs-sns-raw-s3.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
    }

    #[test]
    fn sns_delivered_straight_to_lambda_is_unwrapped() {
        let found = extract(&fixture("sns-s3.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
    }

    #[test]
    fn an_eventbridge_object_created_event_names_its_object() {
        let found = extract(&fixture("eventbridge-object-created.json"))
            .unwrap()
            .unwrap();
        assert_eq!(found.objects, vec![events_object()]);
    }

    #[test]
    fn an_eventbridge_event_inside_sqs_is_unwrapped() {
        let found = extract(&fixture("sqs-eventbridge.json")).unwrap().unwrap();
        assert_eq!(found.objects, vec![events_object()]);
    }

    #[test]
    fn eventbridge_keys_are_taken_raw_with_the_decoded_reading_as_fallback() {
        let found = extract(&fixture("eventbridge-key-space-plus.json"))
            .unwrap()
            .unwrap();
        let object = &found.objects[0];
        assert_eq!(object.key, "keeper/red flower c++.json");
        assert_eq!(
            object.alt_key.as_deref(),
            Some("keeper/red flower c  .json")
        );
        assert_eq!(
            object.version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
        );
    }

    #[test]
    fn an_eventbridge_key_without_plus_or_percent_has_no_fallback() {
        let found = extract(&fixture("eventbridge-object-created.json"))
            .unwrap()
            .unwrap();
        assert_eq!(found.objects[0].alt_key, None);
    }

    #[test]
    fn eventbridge_deletions_are_ignored() {
        let found = extract(&fixture("eventbridge-object-deleted.json"))
            .unwrap()
            .unwrap();
        assert!(found.objects.is_empty());
        assert_eq!(found.ignored.len(), 1);
        assert!(found.ignored[0].starts_with("Object Deleted s3://keeper-audit/"));
    }

    #[test]
    fn keeper_events_are_not_a_notification() {
        let keeper = serde_json::json!([{"audit_event":"login","remote_address":"1.2.3.4"}]);
        assert_eq!(extract(&keeper).unwrap(), None);
        assert_eq!(extract_text(r#"{"audit_event":"login"}"#).unwrap(), None);
        assert_eq!(extract_text("not json at all").unwrap(), None);
        assert_eq!(
            extract_text(r#"{"audit_event":"login"}\n{"audit_event":"x"}"#).unwrap(),
            None
        );
    }

    #[test]
    fn a_notification_without_a_key_is_malformed() {
        let value = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]});
        let error = extract(&value).unwrap_err();
        assert!(error.0.contains("Records[0].s3.object.key"), "{error:?}");
    }

    #[test]
    fn a_notification_without_a_bucket_name_is_malformed() {
        let value = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{},"object":{"key":"k"}}}]});
        let error = extract(&value).unwrap_err();
        assert!(error.0.contains("Records[0].s3.bucket.name"), "{error:?}");
    }

    #[test]
    fn an_eventbridge_s3_event_without_a_key_is_malformed() {
        let mut value = fixture("eventbridge-object-created.json");
        value["detail"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("key");
        let error = extract(&value).unwrap_err();
        assert!(error.0.contains("detail.object.key"), "{error:?}");
    }

    #[test]
    fn an_sns_envelope_without_a_message_is_not_a_notification() {
        let mut value = fixture("sns-s3.json");
        let sns = value["Records"][0]["Sns"].clone();
        value["Records"][0]["Sns"]
            .as_object_mut()
            .unwrap()
            .remove("Message");
        assert_eq!(extract(&value).unwrap(), None);
        let mut envelope = sns;
        envelope.as_object_mut().unwrap().remove("Message");
        assert_eq!(extract(&envelope).unwrap(), None);
    }

    #[test]
    fn form_decoding_follows_the_s3_rules() {
        assert_eq!(decode_form_urlencoded("red+flower.jpg"), "red flower.jpg");
        assert_eq!(decode_form_urlencoded("c%2B%2B"), "c++");
        assert_eq!(decode_form_urlencoded("a/b%3Ac%3Dd"), "a/b:c=d");
        assert_eq!(decode_form_urlencoded("100%"), "100%");
        assert_eq!(decode_form_urlencoded("%zz%4"), "%zz%4");
        assert_eq!(decode_form_urlencoded("%C3%A9"), "é");
        assert_eq!(
            decode_form_urlencoded("q&a=b+c"),
            "q&a=b c",
            "raw & and = are kept"
        );
    }
}
