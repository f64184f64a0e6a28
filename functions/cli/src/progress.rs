//! The one progress line long commands redraw on a terminal's stderr.

use std::time::{Duration, Instant};

/// How often the line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Redraws `line(seconds since the start)` on stderr every [`PROGRESS_EVERY`], until the
/// returned task is aborted.
pub(crate) fn spawn_line(
    line: impl Fn(f64) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // `\r` and "erase line" (ECMA-48 EL, CSI 2 K) so the line is redrawn in place.
            eprint!("\r\x1b[2K{}", line(started.elapsed().as_secs_f64()));
        }
    })
}
