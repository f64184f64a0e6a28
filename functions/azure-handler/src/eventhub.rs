//! Event Hub trigger (`eventhub_events`, `cardinality: many`, `dataType: string`).
//!
//! `Data.events` is JSON text of an array of event bodies (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>);
//! each element is one Keeper event or a container of events (a JSON array, NDJSON...). The
//! elements become the inputs of one plan, so they share request batches.

use serde_json::Value;

use crate::forward::{rejected, Input, Plan};
use crate::invocation::{json_of, unwrap_text, Invocation, Unwrapped};

/// The trigger binding name in eventhub_events/function.json.
pub(crate) const BINDING: &str = "events";

/// What to send for one Event Hub batch.
pub(crate) fn plan(invocation: &Invocation) -> Plan {
    let partition = invocation
        .meta_json("PartitionContext")
        .and_then(|context| {
            context
                .get("PartitionId")
                .and_then(|id| id.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "?".to_string());
    let sequence_numbers = invocation.meta_json("SequenceNumberArray");
    let source_of = |index: usize| -> String {
        match sequence_numbers
            .as_ref()
            .and_then(|numbers| numbers.get(index))
        {
            Some(sequence) => format!("eventhub partition {partition} sequence {sequence}"),
            None => format!("eventhub partition {partition} event {}", index + 1),
        }
    };
    let elements = match unwrap_text(invocation.data.get(BINDING)) {
        Unwrapped::Missing => {
            return Plan::reject(
                format!("the invocation has no `Data.{BINDING}`: check the binding name in eventhub_events/function.json"),
                source_of(0),
                b"",
            )
        }
        Unwrapped::Json(Value::Array(elements)) => elements,
        Unwrapped::Json(single) => vec![single],
        Unwrapped::Text(text) => match json_of(&Value::String(text.clone())) {
            Value::Array(elements) => elements,
            // `cardinality: one`, or a body the host did not wrap: one event (or container).
            _ => vec![Value::String(text)],
        },
    };
    let mut plan = Plan::default();
    for (index, element) in elements.into_iter().enumerate() {
        let source = source_of(index);
        match element {
            Value::String(body) if body.trim().is_empty() => plan.rejects.push(rejected(
                "empty Event Hub event body",
                source,
                Some(index as u64 + 1),
                body.as_bytes(),
            )),
            Value::String(body) => plan.inputs.push(Input {
                bytes: body.into_bytes().into(),
                source,
            }),
            Value::Null => plan.rejects.push(rejected(
                "Event Hub event body is null",
                source,
                Some(index as u64 + 1),
                b"null",
            )),
            structured => plan.inputs.push(Input {
                bytes: structured.to_string().into_bytes().into(),
                source,
            }),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(body: &str) -> Invocation {
        Invocation::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn each_element_of_the_array_text_is_an_input_named_by_partition_and_sequence() {
        let plan = plan(&invocation(
            r#"{"Data":{"events":"[\"{\\\"audit_event\\\":\\\"login\\\"}\",\"[{\\\"audit_event\\\":\\\"a\\\"},{\\\"audit_event\\\":\\\"b\\\"}]\"]"},
                "Metadata":{"PartitionContext":{"PartitionId":"3"},"SequenceNumberArray":[41,42]}}"#,
        ));
        assert_eq!(plan.inputs.len(), 2);
        assert_eq!(plan.inputs[0].bytes, &br#"{"audit_event":"login"}"#[..]);
        assert_eq!(plan.inputs[0].source, "eventhub partition 3 sequence 41");
        assert_eq!(
            plan.inputs[1].bytes,
            &br#"[{"audit_event":"a"},{"audit_event":"b"}]"#[..]
        );
        assert!(plan.rejects.is_empty());
    }

    #[test]
    fn array_text_wrapped_once_more_and_embedded_arrays_both_work() {
        let wrapped = plan(&invocation(
            r#"{"Data":{"events":"\"[\\\"{\\\\\\\"a\\\\\\\":1}\\\"]\""}}"#,
        ));
        assert_eq!(wrapped.inputs[0].bytes, &br#"{"a":1}"#[..]);
        let embedded = plan(&invocation(r#"{"Data":{"events":[{"a":1},"{\"b\":2}"]}}"#));
        assert_eq!(embedded.inputs[0].bytes, &br#"{"a":1}"#[..]);
        assert_eq!(embedded.inputs[1].bytes, &br#"{"b":2}"#[..]);
        assert_eq!(embedded.inputs[1].source, "eventhub partition ? event 2");
    }

    #[test]
    fn a_single_body_is_one_input() {
        let plan = plan(&invocation(r#"{"Data":{"events":"{\"a\":1}"}}"#));
        assert_eq!(plan.inputs.len(), 1);
        assert_eq!(plan.inputs[0].bytes, &br#"{"a":1}"#[..]);
    }

    #[test]
    fn empty_and_null_elements_are_dead_lettered_with_their_position() {
        let plan = plan(&invocation(r#"{"Data":{"events":"[\"\",null,\"{}\"]"}}"#));
        assert_eq!(plan.inputs.len(), 1);
        assert_eq!(plan.rejects.len(), 2);
        assert_eq!(plan.rejects[0].record, Some(1));
        assert_eq!(plan.rejects[1].reason, "Event Hub event body is null");
    }
}
