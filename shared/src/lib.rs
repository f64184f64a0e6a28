//! logrelay: Keeper Security audit events into Azure Monitor Logs (Microsoft Sentinel)
//! through the DCR-based Logs Ingestion API.
//!
//! The crate is a pure core with I/O at the edges:
//! - [`keeper`] decodes every container and event shape Keeper produces into table rows;
//! - [`ingest`] packs rows under the request limit, gzips them and sends them with bounded
//!   concurrency, retries and a dead letter;
//! - [`auth`] acquires Entra ID tokens and caches them across warm invocations;
//! - [`relay`] glues a byte stream to an ingestion session; every binary calls it;
//! - [`replay`] sends the dead letter's rows again.

pub mod auth;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod diagnose;
pub mod error;
pub mod http;
pub mod ingest;
pub mod keeper;
pub mod metrics;
pub mod model;
pub mod relay;
pub mod replay;
pub mod schema;
pub mod secret;
pub mod telemetry;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "http-server")]
pub mod router;

pub use error::{Error, Result};
