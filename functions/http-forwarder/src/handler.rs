//! One HTTP request (payload format 2.0, Function URL or API Gateway HTTP API) through the
//! shared router, converted both ways.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::body::Body;
use axum::Router;
use base64::Engine;
use http::{HeaderValue, Method, Request};
use lambda_runtime::{Error, LambdaEvent};
use logrelay::aws::forward::{log_summary, session_deadline};
use logrelay::ingest::Report;
use logrelay::router::{RequestDeadline, DEFAULT_REQUEST_BUDGET};
use tower::ServiceExt;

/// The metrics dimension when the runtime does not name the function.
const FUNCTION: &str = "http-forwarder";

/// Handles one request: its deadline is the invocation's minus a safety margin.
pub(crate) async fn function_handler(
    router: &Router,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, Error> {
    let started = Instant::now();
    let deadline = session_deadline(event.context.deadline(), DEFAULT_REQUEST_BUDGET);
    let mut request = to_http(event.payload)?;
    request.extensions_mut().insert(RequestDeadline(deadline));
    let response = router.clone().oneshot(request).await?;
    // Requests refused before forwarding (401, 413) carry no report and print nothing.
    if let Some(report) = response.extensions().get::<Report>() {
        let function = match event.context.env_config.function_name.as_str() {
            "" => FUNCTION,
            named => named,
        };
        log_summary(function, report, 0, started.elapsed());
    }
    from_http(response).await
}

/// The payload 2.0 request as an `http::Request` (method, path and query, headers, body).
fn to_http(event: ApiGatewayV2httpRequest) -> Result<Request<Body>, Error> {
    let method = event.request_context.http.method.clone();
    let method = if method == Method::GET && event.body.is_some() {
        Method::POST // a body with no method recorded: only POST carries one here
    } else {
        method
    };
    let path = event.raw_path.as_deref().unwrap_or("/");
    let uri = match event.raw_query_string.as_deref() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_string(),
    };
    let body = match event.body {
        Some(body) if event.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD.decode(body.as_bytes())?
        }
        Some(body) => body.into_bytes(),
        None => Vec::new(),
    };
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(headers) = request.headers_mut() {
        *headers = event.headers;
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(request.body(Body::from(body))?)
}

/// The router's answer as a payload 2.0 response; JSON bodies stay text.
async fn from_http(response: http::Response<Body>) -> Result<ApiGatewayV2httpResponse, Error> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) if !text.is_empty() => out.body = Some(LambdaBody::Text(text)),
        Ok(_) => {}
        Err(_) => {
            out.body = Some(LambdaBody::Text(
                base64::engine::general_purpose::STANDARD.encode(&bytes),
            ));
            out.is_base64_encoded = true;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use logrelay::dead_letter::MemoryDeadLetter;
    use logrelay::router::{app, RouterState};
    use logrelay::secret::Secret;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const TOKEN: &str = "http-token-for-tests";

    /// A Function URL request in the documented payload 2.0 shape (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>).
    fn request(auth: Option<&str>, body: &str, base64: bool) -> ApiGatewayV2httpRequest {
        let mut headers = serde_json::json!({
            "content-type": "application/json",
            "x-forwarded-for": "203.0.113.7",
        });
        if let Some(auth) = auth {
            headers["authorization"] = auth.into();
        }
        serde_json::from_value(serde_json::json!({
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
        }))
        .unwrap()
    }

    fn event(payload: ApiGatewayV2httpRequest) -> LambdaEvent<ApiGatewayV2httpRequest> {
        let mut context = Context::default();
        let deadline = SystemTime::now() + Duration::from_secs(30);
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        LambdaEvent::new(payload, context)
    }

    async fn router() -> Router {
        let dead = Arc::new(MemoryDeadLetter::new());
        let forwarder = logrelay::aws::offline_forwarder(dead).await.unwrap();
        app(RouterState::new(
            Arc::new(forwarder.relay),
            Secret::new(TOKEN),
        ))
    }

    fn text(response: &ApiGatewayV2httpResponse) -> String {
        match &response.body {
            Some(LambdaBody::Text(text)) => text.clone(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_without_the_token_is_answered_401() {
        let response = function_handler(&router().await, event(request(None, "[{}]", false)))
            .await
            .unwrap();
        assert_eq!(response.status_code, 401);
        assert_eq!(response.headers["www-authenticate"], "Bearer");
        assert!(text(&response).contains("bearer token"));
    }

    #[tokio::test]
    async fn a_base64_body_is_decoded_before_routing() {
        let auth = format!("Bearer {TOKEN}");
        // Whitespace only, base64-encoded: reaches the router as an empty body (400), which
        // proves the decoding happened (the encoded text is not whitespace).
        let response =
            function_handler(&router().await, event(request(Some(&auth), "  \n ", true)))
                .await
                .unwrap();
        assert_eq!(response.status_code, 400, "{}", text(&response));
        assert!(text(&response).contains("empty"));
    }

    #[tokio::test]
    async fn health_is_routed_by_path_and_method() {
        let mut payload = request(None, "", false);
        payload.raw_path = Some("/health".into());
        payload.request_context.http.method = Method::GET;
        payload.body = None;
        let response = function_handler(&router().await, event(payload))
            .await
            .unwrap();
        assert_eq!(response.status_code, 200);
        assert!(text(&response).contains("ok"));
    }
}
