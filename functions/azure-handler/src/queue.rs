//! Storage queue trigger (`queue_events`): one message, holding events in any Keeper container.
//!
//! The host has already undone the queue's `messageEncoding` (host.json: base64) and hands us
//! the message text in `Data.msg`, usually wrapped once more as JSON text (see
//! [`crate::invocation`]). A producer that base64-encoded the body *itself* on top of that is
//! declared with `LOGRELAY_QUEUE_BODY_ENCODING=base64`: guessing is unsafe, since plain words
//! and many short JSON-free strings are valid base64 too.

use base64::Engine;

use crate::forward::Plan;
use crate::invocation::{unwrap_text, Invocation, Unwrapped};

/// The trigger binding name in queue_events/function.json.
pub(crate) const BINDING: &str = "msg";

/// How the message text itself is encoded, beyond the queue's own `messageEncoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum BodyEncoding {
    /// The text is the events (default).
    #[default]
    None,
    /// The text is base64 of the events (possibly gzip).
    Base64,
}

impl BodyEncoding {
    /// Reads `LOGRELAY_QUEUE_BODY_ENCODING` (`none` | `base64`).
    pub(crate) fn parse(value: Option<&str>) -> Result<BodyEncoding, logrelay_core::Error> {
        match value.map(str::trim) {
            None | Some("") => Ok(BodyEncoding::None),
            Some(v) if v.eq_ignore_ascii_case("none") => Ok(BodyEncoding::None),
            Some(v) if v.eq_ignore_ascii_case("base64") => Ok(BodyEncoding::Base64),
            Some(other) => Err(logrelay_core::Error::InvalidConfig {
                name: "LOGRELAY_QUEUE_BODY_ENCODING".into(),
                reason: format!("`{other}` is not `none` or `base64`"),
            }),
        }
    }
}

/// What to send for one queue invocation.
pub(crate) fn plan(invocation: &Invocation, encoding: BodyEncoding) -> Plan {
    let source = match invocation.meta_text("Id") {
        Some(id) => format!("queue message {id}"),
        None => "queue message".to_string(),
    };
    let text = match unwrap_text(invocation.data.get(BINDING)) {
        Unwrapped::Text(text) => text,
        // An object or array the host embedded: the events themselves.
        Unwrapped::Json(json) => return Plan::input(json.to_string().into_bytes(), source),
        Unwrapped::Missing => {
            return Plan::reject(
                format!("the invocation has no `Data.{BINDING}`: check the binding name in queue_events/function.json"),
                source,
                b"",
            )
        }
    };
    if text.trim().is_empty() {
        return Plan::reject("empty queue message", source, text.as_bytes());
    }
    match encoding {
        BodyEncoding::None => Plan::input(text.into_bytes(), source),
        BodyEncoding::Base64 => {
            let compact: String = text.split_whitespace().collect();
            match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                Ok(bytes) => Plan::input(bytes, source),
                Err(error) => Plan::reject(
                    format!("queue message is not base64 ({error}) although LOGRELAY_QUEUE_BODY_ENCODING=base64"),
                    source,
                    text.as_bytes(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(body: &str) -> Invocation {
        Invocation::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_double_encoded_json_message_is_unwrapped_once() {
        let plan = plan(
            &invocation(
                r#"{"Data":{"msg":"\"{\\\"audit_event\\\":\\\"login\\\"}\""},"Metadata":{"Id":"\"a1\""}}"#,
            ),
            BodyEncoding::None,
        );
        assert_eq!(
            plan,
            Plan::input(&b"{\"audit_event\":\"login\"}"[..], "queue message a1")
        );
    }

    #[test]
    fn a_plain_message_is_sent_as_written() {
        let plan = plan(
            &invocation(
                r#"{"Data":{"msg":"{\"audit_event\":\"login\"}\n{\"audit_event\":\"logout\"}"},"Metadata":{}}"#,
            ),
            BodyEncoding::None,
        );
        assert_eq!(
            plan.inputs[0].bytes,
            &b"{\"audit_event\":\"login\"}\n{\"audit_event\":\"logout\"}"[..]
        );
        assert_eq!(plan.inputs[0].source, "queue message");
    }

    #[test]
    fn an_embedded_object_is_used_as_is() {
        let plan = plan(
            &invocation(r#"{"Data":{"msg":{"audit_event":"login"}},"Metadata":{}}"#),
            BodyEncoding::None,
        );
        assert_eq!(plan.inputs[0].bytes, &br#"{"audit_event":"login"}"#[..]);
    }

    #[test]
    fn base64_bodies_are_decoded_only_when_declared() {
        let body = r#"{"Data":{"msg":"\"eyJhIjoxfQ==\""},"Metadata":{}}"#;
        let declared = plan(&invocation(body), BodyEncoding::Base64);
        assert_eq!(declared.inputs[0].bytes, &br#"{"a":1}"#[..]);
        let undeclared = plan(&invocation(body), BodyEncoding::None);
        assert_eq!(undeclared.inputs[0].bytes, &b"eyJhIjoxfQ=="[..]);
    }

    #[test]
    fn a_message_that_is_not_base64_when_declared_is_dead_lettered_with_the_reason() {
        let plan = plan(
            &invocation(r#"{"Data":{"msg":"{not base64}"},"Metadata":{"Id":"m9"}}"#),
            BodyEncoding::Base64,
        );
        assert!(plan.inputs.is_empty());
        let entry = &plan.rejects[0];
        assert!(entry.reason.contains("not base64"), "{}", entry.reason);
        assert_eq!(entry.source, "queue message m9");
        assert_eq!(entry.raw.as_deref(), Some("{not base64}"));
    }

    #[test]
    fn empty_and_missing_messages_are_dead_lettered() {
        let empty = plan(
            &invocation(r#"{"Data":{"msg":"\"\""}}"#),
            BodyEncoding::None,
        );
        assert_eq!(empty.rejects[0].reason, "empty queue message");
        let missing = plan(&invocation(r#"{"Data":{"other":"x"}}"#), BodyEncoding::None);
        assert!(missing.rejects[0].reason.contains("Data.msg"));
    }

    #[test]
    fn the_encoding_setting_accepts_none_and_base64_only() {
        assert_eq!(BodyEncoding::parse(None).unwrap(), BodyEncoding::None);
        assert_eq!(
            BodyEncoding::parse(Some("Base64")).unwrap(),
            BodyEncoding::Base64
        );
        assert!(BodyEncoding::parse(Some("hex")).is_err());
    }
}
