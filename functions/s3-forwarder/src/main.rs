//! s3-forwarder: Keeper exports written to S3 → Azure Monitor Logs. Triggered by S3
//! notifications directly, through SQS (SNS or EventBridge in between), or by EventBridge.

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
