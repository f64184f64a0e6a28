//! Azure Functions custom handler: the Keeper relay behind the Functions host.
//!
//! The host starts this binary with `FUNCTIONS_CUSTOMHANDLER_PORT`, polls `GET /` until it
//! answers, then POSTs one request per invocation to `/<function name>` (queue, blob, Event
//! Hub) or proxies the original HTTP request (`/events`). Everything expensive (config, HTTP
//! client, token cache, relay) is built once here and shared by every invocation.

mod app;
mod blob;
mod eventhub;
mod forward;
mod invocation;
mod queue;
mod settings;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use logrelay_core::config::{Config, HttpToken, Platform};
use logrelay_core::dead_letter::LocalDirDeadLetter;
use logrelay_core::keeper::DecodeOptions;
use logrelay_core::relay::Relay;
use logrelay_core::router::RouterState;

use crate::app::AppState;
use crate::forward::RelayForwarder;
use crate::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    logrelay_core::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "The custom handler cannot start.");
            eprintln!("azure-handler: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> logrelay_core::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    let settings = Settings::from_lookup(env)?;
    let config = Config::from_env(Platform::Azure)?;
    let dead_letter = Arc::new(LocalDirDeadLetter::new(settings.dead_letter_dir.clone()));
    let decode = DecodeOptions {
        schema: settings.schema.clone(),
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: SystemTime::now(),
    };
    let relay = Relay::from_config(&config, dead_letter, decode, None).await?;
    tracing::info!(
        credential = %config.auth.credential.describe(),
        endpoint = %config.endpoint.upload_url(),
        dead_letter = %settings.dead_letter_dir.display(),
        port = settings.port,
        "Custom handler configured."
    );
    let http = match &config.http_token {
        HttpToken::Value(token) => Some(RouterState::new(Arc::new(relay.clone()), token.clone())),
        _ => {
            tracing::warn!("LOGRELAY_HTTP_TOKEN is not set: the HTTP function `events` answers 503 until it is.");
            None
        }
    };
    let state = AppState {
        forwarder: Arc::new(RelayForwarder::new(relay, config.tuning.deadline)),
        queue_encoding: settings.queue_encoding,
    };
    let router = app::routes(state, http);
    // The host talks to us on loopback only; the port "isn't the public facing port" (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>).
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| logrelay_core::Error::Io {
            what: format!("listening socket {address}"),
            source,
        })?;
    tracing::info!(%address, "Custom handler listening.");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|source| logrelay_core::Error::Io {
            what: format!("HTTP server on {address}"),
            source,
        })
}

/// Resolves on SIGTERM (the host stopping the worker) or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("Custom handler stopping.");
}
