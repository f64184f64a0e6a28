//! The HTTP function `events` when the host sends the classic custom-handler invocation
//! instead of proxying the caller's request.
//!
//! Microsoft Learn, "Azure Functions custom handlers"
//! (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>), shows both
//! modes. With `enableProxyingHttpRequest` the host forwards the caller's request itself. A host
//! that does not honour the setting POSTs `{"Data":{"req":{"Url","Method","Query","Headers",
//! "Params","Body"}},"Metadata":{..}}` to `/<function name>` and takes the HTTP answer from the
//! `res` output of a 2xx JSON reply: `{"Outputs":{"res":{"statusCode","body","headers"}},
//! "Logs":[..],"ReturnValue":..}`.
//!
//! The function is named `events` and routed at `events` with `routePrefix: ""`, so both modes
//! arrive as `POST /events`. [`translate`] tells them apart, rebuilds the caller's request from
//! `Data.req`, runs it through the same shared routes as the proxied mode (bearer token, body
//! limit, every answer), and wraps their answer in `Outputs.res`. There is one implementation of
//! the HTTP function, not two.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::invocation::{json_answer, json_of, Invocation, InvocationResult};

/// The function (folder) name, the route in events/function.json, and so the path of both modes.
pub(crate) const HTTP_FUNCTION: &str = "events";

/// The httpTrigger binding name in events/function.json: the key of the request in `Data`.
pub(crate) const BINDING: &str = "req";

/// The http output binding name in events/function.json: the key of the answer in `Outputs`.
pub(crate) const OUTPUT_BINDING: &str = "res";

/// Largest classic invocation read. The body inside is held to the shared router's limit like a
/// proxied one; the envelope around it is bigger, since JSON escapes a control byte as six
/// characters (`\u0000`, RFC 8259 §7) and base64 grows binary bodies by 4/3 (RFC 4648 §4).
pub(crate) const MAX_ENVELOPE_BYTES: usize = 6 * logrelay_core::router::MAX_BODY_BYTES + (1 << 20);

/// Largest answer of the shared routes carried back (they answer small JSON reports).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Request headers that describe the envelope's transport, not the caller's body.
const DROPPED_REQUEST_HEADERS: &[HeaderName] = &[
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Answer headers the host sets itself when it writes the caller's response.
const DROPPED_ANSWER_HEADERS: &[HeaderName] = &[
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Middleware on the HTTP function's routes: a classic invocation is unwrapped, run through
/// `next` (the shared routes) and wrapped again; anything else passes through unchanged.
///
/// A request is read as a classic invocation only when it is `POST /events` **without** an
/// `Authorization` header (the host's invocation request carries none: the caller's headers are
/// inside `Data.req.Headers`) and its body is a JSON object with `Data.req`. A proxied caller
/// always sends the bearer token, so an authenticated request is never reinterpreted; an
/// unauthenticated one is refused either way, since the token is then checked on the
/// headers inside the envelope.
pub(crate) async fn translate(request: Request, next: Next) -> Response {
    let candidate = request.method() == Method::POST
        && request.uri().path().strip_prefix('/') == Some(HTTP_FUNCTION)
        && !request.headers().contains_key(header::AUTHORIZATION);
    if !candidate {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok());
    let bytes = if declared.is_some_and(|length| length > MAX_ENVELOPE_BYTES) {
        None
    } else {
        axum::body::to_bytes(body, MAX_ENVELOPE_BYTES).await.ok()
    };
    let Some(bytes) = bytes else {
        // Too big to be an invocation worth reading. Without a token the shared routes refuse
        // it whatever the body (401, or 503 with no token configured), so they answer it with
        // none: exactly what a proxied caller gets. (A host would turn that non-2xx into a 500.)
        parts.headers.remove(header::CONTENT_LENGTH);
        return next.run(Request::from_parts(parts, Body::empty())).await;
    };
    let Some(req) = classic_request(&bytes) else {
        // Not an invocation: the caller's own request, proxied; the shared routes answer it.
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let inner = match caller_request(&req) {
        Ok(inner) => inner,
        Err(reason) => {
            tracing::warn!(function = HTTP_FUNCTION, %reason, "Classic HTTP invocation refused.");
            return wrap_parts(
                StatusCode::BAD_REQUEST,
                &[(header::CONTENT_TYPE.as_str(), "application/json")],
                json!({ "error": reason }).to_string(),
                "refused the invocation",
            );
        }
    };
    let method = inner.method().clone();
    let answer = next.run(inner).await;
    wrap(answer, &method).await
}

/// `Data.req` when `bytes` is a classic invocation of the HTTP function.
fn classic_request(bytes: &Bytes) -> Option<Value> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return None;
    }
    let invocation = Invocation::parse(bytes).ok()?;
    invocation.data.get(BINDING).map(json_of)
}

/// The caller's request rebuilt from `Data.req` (shape: `HttpRequestExtensions
/// .GetRequestAsJObject` in Azure/azure-functions-host): `Method`, `Url` (its query is kept),
/// `Headers` (`{"Name":["value",..]}`; a plain string value is accepted too), and `Body`, the
/// body as text, or base64 of its bytes when the content type is `application/octet-stream` or
/// `multipart/*`. `Query` and `Params` repeat what `Url` holds and are not needed.
fn caller_request(req: &Value) -> Result<Request, String> {
    let Value::Object(req) = req else {
        return Err(format!(
            "`Data.{BINDING}` is not the HTTP request object the Functions host sends"
        ));
    };
    let field = |name: &str| {
        req.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    };
    let method = match field("Method") {
        None | Some(Value::Null) => Method::POST,
        Some(Value::String(method)) => Method::from_bytes(method.trim().as_bytes())
            .map_err(|_| format!("`Data.{BINDING}.Method` `{method}` is not an HTTP method"))?,
        Some(_) => return Err(format!("`Data.{BINDING}.Method` is not a string")),
    };
    let path = format!("/{HTTP_FUNCTION}");
    let query = field("Url")
        .and_then(Value::as_str)
        .and_then(|url| url.split_once('?'))
        .map(|(_, query)| query.split('#').next().unwrap_or_default())
        .filter(|query| !query.is_empty());
    // The shared routes ignore the query; one that is not a valid URI part is dropped.
    let uri = query
        .and_then(|query| format!("{path}?{query}").parse::<Uri>().ok())
        .or_else(|| path.parse::<Uri>().ok())
        .unwrap_or_else(|| Uri::from_static("/"));

    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    if let Some(Value::Object(sent)) = field("Headers").map(json_of) {
        for (name, values) in &sent {
            let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                continue;
            };
            if DROPPED_REQUEST_HEADERS.contains(&name) {
                continue;
            }
            let values = match values {
                Value::Array(values) => values.iter().filter_map(text).collect(),
                single => text(single).into_iter().collect::<Vec<_>>(),
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_octet_or_multipart);
    let body = match field("Body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if binary => base64::engine::general_purpose::STANDARD
            .decode(text.trim().as_bytes())
            .map_err(|error| {
                format!("`Data.{BINDING}.Body` of a binary request is not base64 ({error})")
            })?,
        Some(Value::String(text)) => text.clone().into_bytes(),
        // Objects and arrays: a host that parsed a JSON body; scalars as their JSON text.
        Some(other) => other.to_string().into_bytes(),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *request.body_mut() = Body::from(body);
    Ok(request)
}

/// A header value as text: strings as written, other JSON values as their JSON text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// The content types whose body the host sends as bytes (base64 in JSON), per
/// `HttpRequestExtensions.IsMediaTypeOctetOrMultipart` in Azure/azure-functions-host.
fn is_octet_or_multipart(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/octet-stream" || media.contains("multipart/")
}

/// The shared routes' answer as the invocation reply the host expects.
async fn wrap(answer: Response, method: &Method) -> Response {
    let (parts, body) = answer.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => {
            tracing::error!(%error, "The HTTP function's answer could not be read.");
            return wrap_parts(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[(header::CONTENT_TYPE.as_str(), "application/json")],
                json!({"error": "the answer could not be produced; try again"}).to_string(),
                "failed",
            );
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in &parts.headers {
        if DROPPED_ANSWER_HEADERS.contains(name) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        match headers.iter_mut().find(|(known, _)| known == name.as_str()) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => headers.push((name.as_str().to_string(), value.to_string())),
        }
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    wrap_parts(
        parts.status,
        &headers,
        body,
        &format!("{method} answered {}", parts.status.as_u16()),
    )
}

/// `{"Outputs":{"res":{..}},"Logs":[..],"ReturnValue":null}` with status 200: the host fails
/// an invocation whose reply is not a 2xx, and would then answer the caller 500 whatever `res`
/// said, so the caller's status travels in `res`.
///
/// `statusCode` and `status` are both set (as strings): some host versions deserialise `res` into
/// `HttpOutputBindingResponse` with all of `StatusCode`, `Status`, `Body` and `Headers` required
/// (Azure/azure-functions-host, Workers/Http/HttpOutputBindingResponse.cs), and the HTTP output
/// binding reads `statusCode` first, then `status` (`HttpBinding.TryParseStatusCode`). The
/// host's base64 decoding of string outputs applies to non-HTTP bindings only
/// (`HttpScriptInvocationResultExtensions.GetOutputValue`), so a JSON body is passed as written.
fn wrap_parts(status: StatusCode, headers: &[(&str, &str)], body: String, what: &str) -> Response {
    let code = status.as_u16().to_string();
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_string(), Value::String((*value).to_string())))
        .collect();
    let mut outputs = Map::new();
    outputs.insert(
        OUTPUT_BINDING.to_string(),
        json!({
            "statusCode": code,
            "status": code,
            "body": body,
            "headers": headers,
        }),
    );
    let result = InvocationResult {
        outputs,
        logs: vec![format!(
            "logrelay {HTTP_FUNCTION}: {what} (classic custom-handler invocation)"
        )],
        return_value: Value::Null,
    };
    json_answer(StatusCode::OK, &result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(req: Value) -> Request {
        caller_request(&req).unwrap()
    }

    async fn body_of(request: Request) -> Vec<u8> {
        axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn the_callers_request_is_rebuilt_from_the_docs_shape() {
        // Microsoft Learn's sample, with `Query` as the JSON text the docs show.
        let inner = request(json!({
            "Url": "http://localhost:7071/events?source=keeper",
            "Method": "POST",
            "Query": "{}",
            "Headers": {"Content-Type": ["application/json"], "Authorization": ["Bearer t"]},
            "Params": {},
            "Body": "{\"id\":1005}"
        }));
        assert_eq!(inner.method(), Method::POST);
        assert_eq!(inner.uri(), "/events?source=keeper");
        assert_eq!(inner.headers()["authorization"], "Bearer t");
        assert_eq!(inner.headers()["content-type"], "application/json");
        assert_eq!(inner.headers()["content-length"], "11");
        assert_eq!(body_of(inner).await, b"{\"id\":1005}");
    }

    #[tokio::test]
    async fn a_binary_body_arrives_as_base64_and_is_decoded() {
        let inner = request(json!({
            "Method": "POST",
            "Headers": {"Content-Type": "application/octet-stream"},
            "Body": "H4sIAAAAAAAA/w=="
        }));
        assert_eq!(
            body_of(inner).await,
            [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
        );
        let error = caller_request(&json!({
            "Headers": {"Content-Type": ["application/octet-stream"]},
            "Body": "not base64!"
        }))
        .unwrap_err();
        assert!(error.contains("not base64"), "{error}");
    }

    #[tokio::test]
    async fn the_envelopes_own_length_is_replaced_by_the_bodys() {
        let inner = request(json!({
            "Headers": {"Content-Length": ["999999"], "X-Forwarded-For": ["203.0.113.50", "10.0.0.1"]},
            "Body": "[]"
        }));
        assert_eq!(inner.method(), Method::POST);
        assert_eq!(inner.headers()["content-length"], "2");
        let forwarded: Vec<_> = inner.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["203.0.113.50", "10.0.0.1"]);
    }

    #[test]
    fn a_request_object_that_is_not_one_is_refused_with_a_reason() {
        let error = caller_request(&json!("GET /")).unwrap_err();
        assert!(error.contains("Data.req"), "{error}");
        let error = caller_request(&json!({"Method": "NOT A METHOD"})).unwrap_err();
        assert!(error.contains("not an HTTP method"), "{error}");
    }

    #[test]
    fn only_an_object_with_data_req_is_a_classic_invocation() {
        let classic = Bytes::from_static(br#" {"Data":{"req":{"Method":"POST"}},"Metadata":{}}"#);
        assert_eq!(classic_request(&classic), Some(json!({"Method": "POST"})));
        for body in [
            &br#"[{"audit_event":"login"}]"#[..],
            br#"{"audit_event":"login"}"#,
            br#"{"Data":{"msg":"x"}}"#,
            b"\x1f\x8b\x08\x00",
            b"",
        ] {
            assert_eq!(classic_request(&Bytes::copy_from_slice(body)), None);
        }
    }

    #[test]
    fn binary_content_types_are_recognised_as_the_host_does() {
        assert!(is_octet_or_multipart("application/octet-stream"));
        assert!(is_octet_or_multipart("Application/Octet-Stream; charset=x"));
        assert!(is_octet_or_multipart("multipart/form-data; boundary=x"));
        assert!(!is_octet_or_multipart("application/json"));
        assert!(!is_octet_or_multipart("application/gzip"));
    }
}
