//! `logrelay doctor`: the checks live in `logrelay_core::diagnose`; this prints them.

use std::process::ExitCode;

use logrelay_core::diagnose::{configured_provider, diagnose, DEFAULT_CONNECT_TIMEOUT};

/// Runs every check against the process environment; exit 1 when any step fails.
pub(crate) async fn run(json: bool) -> Result<ExitCode, String> {
    let lookup = |name: &str| std::env::var(name).ok();
    let diagnosis = diagnose(&lookup, &configured_provider, DEFAULT_CONNECT_TIMEOUT).await;
    if json {
        crate::print_json(&diagnosis)?;
    } else {
        crate::print_out(&diagnosis.render())?;
    }
    Ok(if diagnosis.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
