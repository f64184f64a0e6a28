//! Tracing set-up: JSON in Lambda (`AWS_LAMBDA_LOG_FORMAT=json`), human output elsewhere,
//! coloured only when stderr is a terminal (a pipe or a file gets no ANSI codes).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. `RUST_LOG` / `AWS_LAMBDA_LOG_LEVEL` choose the level
/// (default `info`). Logs go to stderr so stdout stays free for command output.
pub fn init() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|level| EnvFilter::new(level.to_ascii_lowercase()))
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .with_current_span(false)
            .with_target(false)
            .without_time()
            .try_init()
    } else if in_lambda {
        builder
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .try_init()
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    // A second init (tests, or a binary that already set one up) is harmless.
    drop(result);
}
