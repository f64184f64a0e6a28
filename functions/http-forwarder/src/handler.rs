//! One HTTP request (payload format 2.0, Function URL or API Gateway HTTP API) through the
//! shared router. `lambda_http` converts the event to an `http::Request` and the answer back
//! (base64 bodies, the separate `cookies` field, multi-value headers), so this file only
//! adds the deadline and the metrics.

use std::time::Instant;

use axum::body::Body;
use axum::Router;
use http::Method;
use lambda_http::{Body as LambdaBody, Error, Request, RequestExt, Response};
use logrelay_core::aws::forward::{log_summary, session_deadline};
use logrelay_core::ingest::Report;
use logrelay_core::router::{RequestDeadline, DEFAULT_REQUEST_BUDGET};
use tower::ServiceExt;

/// The metrics dimension when the runtime does not name the function.
const FUNCTION: &str = "http-forwarder";

/// Handles one request: its deadline is the invocation's minus a safety margin.
pub(crate) async fn function_handler(
    router: &Router,
    request: Request,
) -> Result<Response<LambdaBody>, Error> {
    let started = Instant::now();
    let context = request.lambda_context_ref().cloned().unwrap_or_default();
    let deadline = session_deadline(context.deadline(), DEFAULT_REQUEST_BUDGET);
    let (mut parts, body) = request.into_parts();
    let body = body.to_vec();
    if parts.method == Method::GET && !body.is_empty() {
        // A body with no method recorded: only POST carries one here.
        parts.method = Method::POST;
    }
    let mut request = http::Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(RequestDeadline(deadline));
    let response = router.clone().oneshot(request).await?;
    // Requests refused before forwarding (401, 413) carry no report and print nothing.
    if let Some(report) = response.extensions().get::<Report>() {
        let function = match context.env_config.function_name.as_str() {
            "" => FUNCTION,
            named => named,
        };
        log_summary(function, report, 0, started.elapsed());
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    // JSON answers stay text; anything else lambda_http base64-encodes.
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => LambdaBody::Empty,
        Ok(text) => LambdaBody::Text(text),
        Err(error) => LambdaBody::Binary(error.into_bytes()),
    };
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use lambda_http::Context;
    use logrelay_core::dead_letter::MemoryDeadLetter;
    use logrelay_core::router::{app, RouterState};
    use logrelay_core::secret::Secret;
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const TOKEN: &str = "http-token-for-tests";

    /// A Function URL request in the documented payload 2.0 shape
    /// (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>).
    fn payload(auth: Option<&str>, body: &str, base64: bool) -> Value {
        let mut headers = json!({
            "content-type": "application/json",
            "x-forwarded-for": "203.0.113.7",
        });
        if let Some(auth) = auth {
            headers["authorization"] = auth.into();
        }
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/events", "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012", "apiId": "abcdefghij",
                "domainName": "abcdefghij.lambda-url.us-east-1.on.aws", "domainPrefix": "abcdefghij",
                "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": "$default",
                "stage": "$default", "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1795514400000_i64
            },
            "body": if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_string() },
            "isBase64Encoded": base64
        })
    }

    /// The event as lambda_http hands it to the handler, with a deadline 30 s away.
    fn request(payload: &Value) -> Request {
        request_within(payload, Duration::from_secs(30))
    }

    /// The event with an invocation deadline `left` from now.
    fn request_within(payload: &Value, left: Duration) -> Request {
        let mut context = Context::default();
        let deadline = SystemTime::now() + left;
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        lambda_http::request::from_str(&payload.to_string())
            .unwrap()
            .with_lambda_context(context)
    }

    async fn router() -> Router {
        let dead = Arc::new(MemoryDeadLetter::new());
        let forwarder = logrelay_core::aws::offline_forwarder(dead).await.unwrap();
        app(RouterState::new(
            Arc::new(forwarder.relay),
            Secret::new(TOKEN),
        ))
    }

    fn text(response: &Response<LambdaBody>) -> String {
        match response.body() {
            LambdaBody::Text(text) => text.clone(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_without_the_token_is_answered_401() {
        let event = request(&payload(None, "[{}]", false));
        let response = function_handler(&router().await, event).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert!(text(&response).contains("bearer token"));
    }

    #[tokio::test]
    async fn a_base64_body_is_decoded_before_routing() {
        let auth = format!("Bearer {TOKEN}");
        // Whitespace only, base64-encoded: reaches the router as an empty body (400), which
        // proves the decoding happened (the encoded text is not whitespace).
        let event = request(&payload(Some(&auth), "  \n ", true));
        let response = function_handler(&router().await, event).await.unwrap();
        assert_eq!(response.status(), 400, "{}", text(&response));
        assert!(text(&response).contains("empty"));
    }

    #[tokio::test]
    async fn health_is_routed_by_path_and_method() {
        let mut event = payload(None, "", false);
        event["rawPath"] = "/health".into();
        event["requestContext"]["http"]["method"] = "GET".into();
        event["requestContext"]["http"]["path"] = "/health".into();
        event.as_object_mut().unwrap().remove("body");
        let response = function_handler(&router().await, request(&event))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(text(&response).contains("ok"));
    }

    #[tokio::test]
    async fn the_answer_counts_the_fields_truncated_at_64_kib() {
        let auth = format!("Bearer {TOKEN}");
        // A Keeper push-shape event whose `message` is over the 64 KiB field limit
        // (logrelay_core::keeper::MAX_FIELD_BYTES), and one that is not.
        let long = "x".repeat(logrelay_core::keeper::MAX_FIELD_BYTES + 10);
        let body = format!(
            "{}\n{}\n",
            json!({"audit_event": "login", "category": "login", "username": "a@acme-corp.example", "timestamp": "2026-11-24T10:00:00Z", "message": long}),
            json!({"audit_event": "login", "category": "login", "username": "b@acme-corp.example", "timestamp": "2026-11-24T10:00:01Z"}),
        );
        // The offline relay cannot deliver: a short invocation ends in a 503 whose body is
        // still the request's report.
        let event = request_within(&payload(Some(&auth), &body, false), Duration::from_secs(3));
        let response = function_handler(&router().await, event).await.unwrap();
        assert_eq!(response.status(), 503, "{}", text(&response));
        let answer: Value = serde_json::from_str(&text(&response)).unwrap();
        assert_eq!(answer["truncated_fields"], 1, "{answer}");
        assert_eq!(answer["events_in"], 2, "{answer}");
    }

    #[test]
    fn the_separate_cookies_field_reaches_the_router_as_a_cookie_header() {
        let mut event = payload(None, "", false);
        event["cookies"] = json!(["session=abc", "theme=dark"]);
        let request = request(&event);
        assert_eq!(request.headers()["cookie"], "session=abc; theme=dark");
    }
}
