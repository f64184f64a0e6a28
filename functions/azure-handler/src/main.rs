//! Azure Functions custom handler: the Keeper relay behind the Functions host.
#![allow(dead_code)]

mod app;
mod blob;
mod eventhub;
mod forward;
mod invocation;
mod queue;

fn main() {}
