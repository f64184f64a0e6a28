//! Reliability and security: the real binaries against the local Azure emulator while it
//! throttles, drops, stalls, expires tokens and refuses everything; a crash and a rerun;
//! hostile input; refused callers and refused configurations; no secret in any output.
//!
//! Each scenario writes its counts to `target/reliability/*.json`;
//! `scripts/reliability.sh` runs this suite and renders RELIABILITY.md from them. "Lost" is
//! always computed from what went in (the EventIds decoded from the input with logrelay's own
//! decoder, or the record count of the input as written), never from the binary's own report.
//!
//! Nothing here waits by sleeping: a scenario counts only once the emulator reports that no
//! request is in progress (and, for a client that has exited, no connection is open). Fault
//! schedules are drawn from a seed (`LOGRELAY_FAULT_SEED` overrides it; a failing scenario
//! prints the seed it ran with), and the faults a scenario asserts happened are scripted.
//!
//! `harness` runs binaries and writes results; one module per scenario group.

#[path = "../common/mod.rs"]
mod common;

mod harness;

mod crash;
mod hostile;
mod outage;
mod security;
mod storm;
