//! http-forwarder: Keeper events POSTed to a Lambda Function URL or API Gateway HTTP API →
//! Azure Monitor Logs, through the shared axum router.

mod handler;

use std::sync::Arc;

use lambda_http::{service_fn, Error};
use logrelay_core::router::{app, RouterState};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logrelay_core::telemetry::init();
    let container = logrelay_core::aws::container_from_env().await?;
    let token = logrelay_core::aws::secrets::http_token(
        &container.config.http_token,
        &container.clients.secrets,
    )
    .await?;
    let router = app(RouterState::new(Arc::new(container.forwarder.relay), token));
    let router = &router;
    lambda_http::run(service_fn(move |request| {
        handler::function_handler(router, request)
    }))
    .await
}
