//! `logrelay replay`: sends the dead letter's rows again (a directory or `s3://bucket/prefix/`),
//! unchanged, in the environment's configuration; moves replayed files aside; `--dry-run`
//! only counts. Also builds the dead letter `send` writes to (a directory or S3).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use logrelay_core::aws::{AwsClients, S3DeadLetter};
use logrelay_core::config::{Config, Platform};
use logrelay_core::dead_letter::{DeadLetterSink, LocalDirDeadLetter};
use logrelay_core::keeper::DecodeOptions;
use logrelay_core::relay::Relay;
use logrelay_core::replay::{self, Progress, Replayed, Store};

/// How many reasons and sources the summary lists.
const TOP: usize = 10;

/// The `s3://` scheme that names an S3 dead letter.
const S3_SCHEME: &str = "s3://";

/// What `replay` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct ReplayArgs {
    pub(crate) location: String,
    pub(crate) dry_run: bool,
    pub(crate) json: bool,
}

/// The dead letter at `location`: `s3://bucket/prefix/` (S3 client from the standard AWS
/// environment) or a directory.
pub(crate) async fn dead_letter_sink(location: &str) -> Result<Arc<dyn DeadLetterSink>, String> {
    if location.starts_with(S3_SCHEME) {
        return Ok(store(location).await?.sink());
    }
    Ok(Arc::new(LocalDirDeadLetter::new(location)))
}

/// The store at `location`; a directory must exist.
async fn store(location: &str) -> Result<Store, String> {
    if location.starts_with(S3_SCHEME) {
        let (bucket, prefix) = S3DeadLetter::parse(location).map_err(|error| error.to_string())?;
        let clients = AwsClients::from_env()
            .await
            .map_err(|error| error.to_string())?;
        return Ok(Store::S3 {
            client: clients.s3,
            bucket,
            prefix,
        });
    }
    let dir = std::path::PathBuf::from(location);
    if !dir.is_dir() {
        return Err(format!(
            "{location} is not a directory: name the dead-letter directory (LOGRELAY_DEAD_LETTER of the run that wrote it) or an s3://bucket/prefix/"
        ));
    }
    Ok(Store::Local { dir })
}

/// Runs `replay`; `Err` is a configuration or argument problem (exit 2).
pub(crate) async fn run(args: ReplayArgs) -> Result<ExitCode, String> {
    let store = store(&args.location).await?;
    let progress = Arc::new(Progress::default());
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(progress.clone()));
    let outcome = if args.dry_run {
        replay::survey(&store, &progress).await
    } else {
        let config = Config::from_env(Platform::Cli).map_err(|error| error.to_string())?;
        let decode = DecodeOptions {
            schema: config.schema.clone(),
            max_decompressed_bytes: config.tuning.max_decompressed_bytes,
            now: SystemTime::now(),
        };
        // Rows that fail again go back where they came from, with the new reason.
        let relay = Relay::from_config(&config, store.sink(), decode, None)
            .await
            .map_err(|error| error.to_string())?;
        replay::replay(&store, &relay, &progress).await
    };
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[2K");
    }
    let done = match outcome {
        Ok(done) => done,
        Err(error) => {
            eprintln!("logrelay: {error}");
            eprintln!("logrelay: stopped: files not yet replayed stay in the dead letter; run replay again");
            return Ok(ExitCode::from(1));
        }
    };
    for error in &done.errors {
        eprintln!("logrelay: {error}");
    }
    if args.json {
        crate::print_json(&done)?;
    } else {
        crate::print_out(&summary(&done))?;
    }
    Ok(if args.dry_run || done.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Files, rows and deliveries so far, redrawn on stderr.
fn spawn_progress(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    crate::progress::spawn_line(move |seconds| {
        format!(
            "files {}/{}, rows sent {}, delivered {}, {seconds:.0} s",
            progress.files_read.load(Ordering::Relaxed),
            progress.files_total.load(Ordering::Relaxed),
            progress.rows_pushed.load(Ordering::Relaxed),
            progress.delivered.load(Ordering::Relaxed),
        )
    })
}

/// The most frequent `TOP` of `counts`, one per line.
fn top(out: &mut String, title: &str, counts: &std::collections::BTreeMap<String, u64>) {
    if counts.is_empty() {
        return;
    }
    out.push_str(&format!("  {title}:\n"));
    let mut sorted: Vec<(&String, &u64)> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (name, count) in sorted.iter().take(TOP) {
        out.push_str(&format!("    {count:>8}  {name}\n"));
    }
    if sorted.len() > TOP {
        out.push_str(&format!("    ... and {} more\n", sorted.len() - TOP));
    }
}

/// The human summary.
pub(crate) fn summary(done: &Replayed) -> String {
    let mut out = if done.dry_run {
        format!(
            "logrelay replay --dry-run: {} files in {}, {} entries to replay, {} never decoded (not replayable)\n",
            done.files, done.location, done.replayable, done.never_decoded
        )
    } else {
        format!(
            "logrelay replay: {} files in {}, {} rows sent, {} delivered, {} dead-lettered again; {} never decoded (kept)\n",
            done.files,
            done.location,
            done.report.events_in,
            done.report.delivered,
            done.report.dead_lettered,
            done.never_decoded
        )
    };
    if !done.dry_run {
        out.push_str(&format!(
            "  {} files moved aside into {}/, {} left in place (only never-decoded entries), {} with problems\n",
            done.files_replayed,
            replay::REPLAYED,
            done.files_kept,
            done.errors.len()
        ));
        out.push_str(&format!(
            "  {} requests, {} retries, {} throttled, {} token fetches\n",
            done.report.requests,
            done.report.retries,
            done.report.throttled,
            done.report.token_fetches
        ));
        top(
            &mut out,
            "dead-lettered again, by new reason",
            &done.report.dead_letter_reasons,
        );
    }
    let heading = if done.dry_run {
        "by reason"
    } else {
        "entries found, by reason"
    };
    top(&mut out, heading, &done.by_reason);
    top(&mut out, "by source", &done.by_source);
    top(
        &mut out,
        "never decoded (raw input, not sent), by source",
        &done.never_decoded_sources,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_summary_counts_by_reason_and_source() {
        let mut done = Replayed {
            location: "dl".into(),
            dry_run: true,
            files: 2,
            replayable: 3,
            never_decoded: 1,
            ..Replayed::default()
        };
        done.by_reason.insert("HTTP 403".into(), 3);
        done.by_reason.insert("not JSON".into(), 1);
        done.by_source.insert("events.ndjson".into(), 4);
        done.never_decoded_sources.insert("events.ndjson".into(), 1);
        let text = summary(&done);
        assert!(text.starts_with(
            "logrelay replay --dry-run: 2 files in dl, 3 entries to replay, 1 never decoded"
        ));
        assert!(text.find("HTTP 403").unwrap() < text.find("not JSON").unwrap());
        assert!(text.contains("never decoded (raw input, not sent), by source"));
    }
}
