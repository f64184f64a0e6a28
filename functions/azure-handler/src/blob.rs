//! Blob trigger (`blob_events`): one blob, any Keeper container, gzip or not.
//!
//! With `dataType: binary` the host serialises the blob's bytes as a base64 JSON string in
//! `Data.blob` (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>). A binding left at `dataType: string` sends
//! the text wrapped as JSON text instead; both are accepted.

use base64::Engine;

use crate::forward::Plan;
use crate::invocation::{text_of, Invocation};

/// The trigger binding name in blob_events/function.json.
pub(crate) const BINDING: &str = "blob";

/// What to send for one blob invocation.
pub(crate) fn plan(invocation: &Invocation) -> Plan {
    let source = source_of(invocation);
    let value = match invocation.data.get(BINDING) {
        None | Some(serde_json::Value::Null) => {
            return Plan::reject(
                format!("the invocation has no `Data.{BINDING}`: check the binding name in blob_events/function.json"),
                source,
                b"",
            )
        }
        Some(value) => value,
    };
    let serde_json::Value::String(text) = value else {
        // An object or array: the host parsed JSON content itself.
        return Plan::input(value.to_string().into_bytes(), source);
    };
    if text.starts_with('"') {
        // `dataType: string`: JSON text of the content; base64 never starts with a quote.
        let content = text_of(value).unwrap_or_default();
        return Plan::input(content.into_bytes(), source);
    }
    match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
        Ok(bytes) if bytes.is_empty() => Plan::default(),
        Ok(bytes) => Plan::input(bytes, source),
        Err(error) => Plan::reject(
            format!("blob content is not base64 ({error}); set \"dataType\": \"binary\" on the blobTrigger binding"),
            source,
            text.as_bytes(),
        ),
    }
}

/// The blob's URI, or `<container>/<name>` when the host sent no `Uri`.
fn source_of(invocation: &Invocation) -> String {
    if let Some(uri) = invocation.meta_text("Uri") {
        return uri;
    }
    // Some hosts serialise `Uri` as an object (`{"AbsoluteUri": ...}`).
    if let Some(uri) = invocation.meta_json("Uri").and_then(|uri| {
        uri.get("AbsoluteUri")
            .and_then(|value| value.as_str().map(str::to_string))
    }) {
        return uri;
    }
    match invocation.meta_text("name") {
        Some(name) => format!("blob keeper-events/{name}"),
        None => "blob".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use base64::Engine;
    use flate2::{read::GzDecoder, write::GzEncoder, Compression};

    use super::*;

    fn invocation(body: &str) -> Invocation {
        Invocation::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn base64_blob_data_is_decoded_to_the_original_bytes_gzip_included() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b"{\"audit_event\":\"login\"}\n").unwrap();
        let gzip = gz.finish().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&gzip);
        let plan = plan(&invocation(&format!(
            r#"{{"Data":{{"blob":"{encoded}"}},"Metadata":{{"Uri":"\"http://127.0.0.1:10000/devstoreaccount1/keeper-events/a.json.gz\"","name":"\"a.json.gz\""}}}}"#
        )));
        assert_eq!(plan.inputs[0].bytes, gzip);
        assert_eq!(
            plan.inputs[0].source,
            "http://127.0.0.1:10000/devstoreaccount1/keeper-events/a.json.gz"
        );
        let mut text = String::new();
        GzDecoder::new(&plan.inputs[0].bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"audit_event\":\"login\"}\n");
    }

    #[test]
    fn a_string_binding_is_accepted_as_text() {
        let plan = plan(&invocation(
            r#"{"Data":{"blob":"\"{\\\"audit_event\\\":\\\"login\\\"}\""},"Metadata":{"name":"x.json"}}"#,
        ));
        assert_eq!(plan.inputs[0].bytes, &br#"{"audit_event":"login"}"#[..]);
        assert_eq!(plan.inputs[0].source, "blob keeper-events/x.json");
    }

    #[test]
    fn content_that_is_not_base64_is_dead_lettered_with_advice() {
        let plan = plan(&invocation(r#"{"Data":{"blob":"{oops"},"Metadata":{}}"#));
        assert!(plan.inputs.is_empty());
        assert!(
            plan.rejects[0].reason.contains("dataType"),
            "{}",
            plan.rejects[0].reason
        );
        assert_eq!(plan.rejects[0].raw.as_deref(), Some("{oops"));
    }

    #[test]
    fn an_empty_blob_sends_nothing() {
        assert_eq!(
            plan(&invocation(r#"{"Data":{"blob":""}}"#)),
            Plan::default()
        );
    }
}
