//! sqs-forwarder: SQS messages holding Keeper events (any container) or S3 notices → Azure
//! Monitor Logs, with partial batch responses.

mod handler;

use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logrelay_core::telemetry::init();
    let forwarder = logrelay_core::aws::container_from_env().await?.forwarder;
    let forwarder = &forwarder;
    lambda_runtime::run(service_fn(move |event| {
        handler::function_handler(forwarder, event)
    }))
    .await
}
