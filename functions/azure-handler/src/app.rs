//! The handler's HTTP surface: readiness at `/`, one route per non-HTTP function (the folder
//! name in infra/azure/function-app), and the shared `/events` routes for the HTTP function in
//! both host modes (proxied, or the classic invocation: [`classic_http`]).

mod classic_http;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::{Json, Router};

use logrelay_core::ingest::TransientPolicy;
use logrelay_core::router::RouterState;

use crate::forward::{Plan, PlanForwarder};
use crate::invocation::{summary_line, Invocation, Outcome};
use crate::queue::BodyEncoding;
use crate::{blob, eventhub, queue};

/// Largest invocation request accepted. A blob trigger carries the whole blob, base64 (4/3 of
/// its size) inside JSON; the Functions host itself buffers it, so this only guards the handler.
pub(crate) const MAX_INVOCATION_BYTES: usize = 256 << 20;

/// Header the host sets on every invocation request (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>).
pub(crate) const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// Function names: the folder names under infra/azure/function-app, which the host uses as
/// paths. Underscores, not hyphens: the host accepts both in a function name
/// (`^[a-z][a-z0-9_\-]{0,127}$`, Azure/azure-functions-host `Utility.IsValidFunctionName`), but
/// the setting that disables a function, `AzureWebJobs.<name>.Disabled`, must be a valid app
/// setting name, and those "can contain only letters, numbers (0-9), periods (.), and
/// underscores (_)" (Microsoft Learn, "Configure an App Service app").
pub(crate) const QUEUE_FUNCTION: &str = "queue_events";
pub(crate) const BLOB_FUNCTION: &str = "blob_events";
pub(crate) const EVENTHUB_FUNCTION: &str = "eventhub_events";
pub(crate) use classic_http::HTTP_FUNCTION;

/// What every invocation shares, built once in `main`.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) forwarder: Arc<dyn PlanForwarder>,
    pub(crate) queue_encoding: BodyEncoding,
}

/// Readiness, the non-HTTP trigger routes, and the HTTP function `events`.
///
/// host.json sets `enableProxyingHttpRequest` and `routePrefix: ""`, so a host that honours it
/// proxies the caller's original request (`POST /events`, headers and body unchanged) and
/// returns our answer as is: the shared routes of [`logrelay_core::router`] serve it exactly as the
/// AWS HTTP function does (bearer token, 200/202/400/401/413/503). A host that does not sends the
/// classic invocation to the same path; [`classic_http::translate`] unwraps it for the same
/// routes and wraps their answer in `Outputs.res`. Without `LOGRELAY_HTTP_TOKEN` (`http` is
/// `None`) `/events` answers 503 naming the missing setting, in either mode.
pub(crate) fn routes(state: AppState, http: Option<RouterState>) -> Router {
    let triggers = Router::new()
        .route("/", get(ready))
        .route(&format!("/{QUEUE_FUNCTION}"), post(queue_events))
        .route(&format!("/{BLOB_FUNCTION}"), post(blob_events))
        .route(&format!("/{EVENTHUB_FUNCTION}"), post(eventhub_events))
        .layer(DefaultBodyLimit::max(MAX_INVOCATION_BYTES))
        .with_state(state);
    let http_routes = match http {
        Some(http) => logrelay_core::router::app(http),
        None => Router::new().route(&format!("/{HTTP_FUNCTION}"), any(http_disabled)),
    };
    triggers.merge(http_routes.layer(from_fn(classic_http::translate)))
}

/// `/events` when no shared token is configured: refuse rather than accept unauthenticated events.
async fn http_disabled() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({
            "error": "the HTTP function is disabled: set the LOGRELAY_HTTP_TOKEN app setting (a Key Vault reference works)"
        })),
    )
}

/// The host polls `GET /` until anything answers (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>).
async fn ready() -> &'static str {
    "logrelay azure-handler ready\n"
}

async fn queue_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Outcome {
    let encoding = state.queue_encoding;
    // Failing leaves the message in the queue; after maxDequeueCount the host moves it to
    // `<queue>-poison`, so nothing is lost by asking for a retry.
    invoke(&state, QUEUE_FUNCTION, &headers, &body, |invocation| {
        (queue::plan(invocation, encoding), TransientPolicy::Fail)
    })
    .await
}

async fn blob_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Outcome {
    // Failing makes the host retry the blob (5 times, then a poison-queue message naming it);
    // the blob itself stays in its container.
    invoke(&state, BLOB_FUNCTION, &headers, &body, |invocation| {
        (blob::plan(invocation), TransientPolicy::Fail)
    })
    .await
}

async fn eventhub_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    invoke(&state, EVENTHUB_FUNCTION, &headers, &body, |invocation| {
        let policy = eventhub_policy(invocation);
        let mut plan = eventhub::plan(invocation);
        // No retry left: the host checkpoints past the batch even when this run fails.
        plan.checkpointed = policy == TransientPolicy::DeadLetter;
        (plan, policy)
    })
    .await
}

/// Event Hub checkpoints move on after a failed invocation unless a retry policy re-runs it,
/// so failing is only safe while retries remain; otherwise undeliverable events are
/// dead-lettered instead of being skipped.
fn eventhub_policy(invocation: &Invocation) -> TransientPolicy {
    if invocation.has_retry_policy() && !invocation.is_final_retry() {
        TransientPolicy::Fail
    } else {
        TransientPolicy::DeadLetter
    }
}

/// Parses the invocation, plans it, runs the plan and turns the result into the host answer.
async fn invoke(
    state: &AppState,
    function: &str,
    headers: &HeaderMap,
    body: &[u8],
    plan: impl FnOnce(&Invocation) -> (Plan, TransientPolicy),
) -> Outcome {
    let invocation_id = headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    let (plan, policy) = match Invocation::parse(body) {
        Ok(invocation) => plan(&invocation),
        // Not the protocol shape: keep the body and complete, rather than retry it forever.
        Err(reason) => (
            Plan::reject(reason, format!("{function} invocation"), body),
            TransientPolicy::DeadLetter,
        ),
    };
    match state.forwarder.forward(plan, policy).await {
        Ok(report) => {
            let summary = summary_line(function, &report);
            tracing::info!(
                function,
                invocation_id,
                counters = %report.summary_line(),
                "Invocation finished."
            );
            if report.failed_transient > 0 {
                let retry = format!(
                    "logrelay {function}: {} events not delivered yet (throttling or outage past the deadline); failing the invocation so the host retries it",
                    report.failed_transient
                );
                Outcome::Retry {
                    logs: vec![summary, retry],
                }
            } else {
                Outcome::Done {
                    logs: vec![summary],
                }
            }
        }
        Err(error) => {
            tracing::error!(function, invocation_id, %error, transient = error.is_transient(), "Invocation failed; the host retries it unless it checkpoints (an Event Hub last attempt).");
            Outcome::Retry {
                logs: vec![format!(
                    "logrelay {function}: {error}; failing the invocation so the host retries it (an Event Hub batch on its last attempt is checkpointed anyway: its EventIds are in the error log)"
                )],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::fake::Recorder;
    use crate::invocation::InvocationResult;

    fn app(recorder: Arc<Recorder>) -> Router {
        routes(
            AppState {
                forwarder: recorder,
                queue_encoding: BodyEncoding::None,
            },
            None,
        )
    }

    /// Serves `app` on a free loopback port, as the host would reach it.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    async fn post(app: Router, path: &str, body: &str) -> (StatusCode, String, InvocationResult) {
        let base = serve(app).await;
        let response = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn readiness_answers_at_once() {
        let base = serve(app(Arc::default())).await;
        let response = reqwest::get(format!("{base}/")).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn without_a_shared_token_the_http_function_refuses_with_the_setting_to_fix() {
        let base = serve(app(Arc::default())).await;
        let response = reqwest::Client::new()
            .post(format!("{base}/events"))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("LOGRELAY_HTTP_TOKEN"));
    }

    #[tokio::test]
    async fn a_delivered_queue_message_answers_200_json_with_the_summary_in_logs() {
        let recorder = Arc::new(Recorder::default());
        let (status, content_type, result) = post(
            app(recorder.clone()),
            "/queue_events",
            r#"{"Data":{"msg":"\"{\\\"audit_event\\\":\\\"login\\\"}\""},"Metadata":{"Id":"\"q1\""}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert!(result.outputs.is_empty());
        assert_eq!(result.return_value, serde_json::Value::Null);
        assert!(result.logs[0].contains("delivered=1"), "{:?}", result.logs);
        let plans = recorder.plans.lock().unwrap();
        assert_eq!(plans[0].1, TransientPolicy::Fail);
        assert_eq!(plans[0].0.inputs[0].source, "queue message q1");
    }

    #[tokio::test]
    async fn transient_failures_answer_500_so_the_host_retries() {
        let recorder = Arc::new(Recorder {
            transient_failure: true,
            ..Recorder::default()
        });
        let (status, content_type, result) =
            post(app(recorder), "/blob_events", r#"{"Data":{"blob":"e30="}}"#).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/json");
        assert!(result.logs[1].contains("host retries"), "{:?}", result.logs);
    }

    #[tokio::test]
    async fn a_forwarding_error_answers_500_with_the_reason_and_no_secret() {
        let recorder = Arc::new(Recorder::default());
        *recorder.fail_with.lock().unwrap() = Some(logrelay_core::Error::TokenTransport {
            host: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        });
        let (status, _, result) =
            post(app(recorder), "/queue_events", r#"{"Data":{"msg":"x"}}"#).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            result.logs[0].contains("connection refused"),
            "{:?}",
            result.logs
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_invocation_is_dead_lettered_and_acknowledged() {
        let recorder = Arc::new(Recorder::default());
        let (status, _, result) = post(app(recorder.clone()), "/queue_events", "garbage").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            result.logs[0].contains("dead_lettered=1"),
            "{:?}",
            result.logs
        );
        let plans = recorder.plans.lock().unwrap();
        assert_eq!(plans[0].0.rejects[0].raw.as_deref(), Some("garbage"));
    }

    #[tokio::test]
    async fn without_a_shared_token_a_classic_invocation_gets_the_503_inside_outputs_res() {
        let base = serve(app(Arc::default())).await;
        // The classic invocation of Microsoft Learn's custom-handler page: no Authorization
        // header on the host's own request, the caller's headers inside `Data.req`.
        let response = reqwest::Client::new()
            .post(format!("{base}/events"))
            .header("content-type", "application/json")
            .body(
                r#"{"Data":{"req":{"Url":"http://localhost:7071/events","Method":"POST","Query":"{}",
                    "Headers":{"Content-Type":["application/json"]},"Params":{},"Body":"[]"}},"Metadata":{}}"#,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let result: InvocationResult = response.json().await.unwrap();
        let res = &result.outputs["res"];
        assert_eq!(res["statusCode"], "503");
        assert_eq!(res["status"], "503");
        assert_eq!(res["headers"]["content-type"], "application/json");
        assert!(res["body"]
            .as_str()
            .is_some_and(|body| body.contains("LOGRELAY_HTTP_TOKEN")));
        assert!(result.logs[0].contains("classic"), "{:?}", result.logs);
    }

    #[tokio::test]
    async fn an_authenticated_request_is_never_read_as_an_invocation() {
        let base = serve(app(Arc::default())).await;
        let response = reqwest::Client::new()
            .post(format!("{base}/events"))
            .header("authorization", "Bearer anything")
            .body(r#"{"Data":{"req":{"Method":"POST","Body":"[]"}}}"#)
            .send()
            .await
            .unwrap();
        // The proxied answer itself, not an envelope.
        assert_eq!(response.status().as_u16(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.get("Outputs").is_none(), "{body}");
    }

    /// infra/azure/function-app, read from the repository.
    fn function_app_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/azure/function-app")
    }

    fn bindings_of(function: &str) -> Vec<serde_json::Value> {
        let path = function_app_dir().join(function).join("function.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["bindings"].as_array().unwrap().clone()
    }

    #[test]
    fn the_functions_served_are_exactly_the_folders_of_the_function_app() {
        let mut folders: Vec<String> = std::fs::read_dir(function_app_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("function.json").is_file())
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut served = vec![
            HTTP_FUNCTION,
            QUEUE_FUNCTION,
            BLOB_FUNCTION,
            EVENTHUB_FUNCTION,
        ];
        served.sort_unstable();
        assert_eq!(folders, served);
    }

    #[test]
    fn each_handler_reads_the_binding_names_its_function_json_declares() {
        let trigger = |function: &str| -> String {
            bindings_of(function)
                .iter()
                .find(|binding| binding["direction"] == "in")
                .and_then(|binding| binding["name"].as_str())
                .unwrap()
                .to_string()
        };
        assert_eq!(trigger(QUEUE_FUNCTION), queue::BINDING);
        assert_eq!(trigger(BLOB_FUNCTION), blob::BINDING);
        assert_eq!(trigger(EVENTHUB_FUNCTION), eventhub::BINDING);
        assert_eq!(trigger(HTTP_FUNCTION), classic_http::BINDING);
        let http = bindings_of(HTTP_FUNCTION);
        let output = http
            .iter()
            .find(|binding| binding["type"] == "http" && binding["direction"] == "out")
            .unwrap();
        assert_eq!(output["name"], classic_http::OUTPUT_BINDING);
        // Both modes reach one path only if the route is the function name (routePrefix "").
        let route = http
            .iter()
            .find(|binding| binding["type"] == "httpTrigger")
            .unwrap();
        assert_eq!(route["route"], HTTP_FUNCTION);
        let host: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(function_app_dir().join("host.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(host["extensions"]["http"]["routePrefix"], "");
    }

    #[tokio::test]
    async fn event_hub_fails_only_while_its_retry_policy_has_attempts_left() {
        let recorder = Arc::new(Recorder::default());
        let events = r#""[\"{}\"]""#;
        for (metadata, expected) in [
            (r#"{}"#, TransientPolicy::DeadLetter),
            (
                r#"{"RetryContext":{"RetryCount":0,"MaxRetryCount":5}}"#,
                TransientPolicy::Fail,
            ),
            (
                r#"{"RetryContext":{"RetryCount":5,"MaxRetryCount":5}}"#,
                TransientPolicy::DeadLetter,
            ),
        ] {
            let body = format!(r#"{{"Data":{{"events":{events}}},"Metadata":{metadata}}}"#);
            let (status, _, _) = post(app(recorder.clone()), "/eventhub_events", &body).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                recorder.plans.lock().unwrap().last().unwrap().1,
                expected,
                "{metadata}"
            );
        }
    }
}
