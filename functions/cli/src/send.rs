//! `logrelay send`: local files or stdin, any Keeper container and shape, forwarded in one
//! session with the environment's configuration; a summary at the end.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use clap::ValueEnum;
use logrelay_core::config::{vars, Config, Platform};
use logrelay_core::dead_letter::DeadLetterSink;
use logrelay_core::ingest::{Report, SessionOptions};
use logrelay_core::keeper::DecodeOptions;
use logrelay_core::relay::{Forwarded, Input, Relay};

/// How many dead-letter reasons the summary lists.
const TOP_REASONS: usize = 5;

/// `--schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Schema {
    /// Keeper events of any shape become Keeper table rows.
    Keeper,
    /// Other JSON objects are forwarded as they are (needs --time-field).
    Passthrough,
}

/// What `send` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct SendArgs {
    pub(crate) inputs: Vec<String>,
    pub(crate) dead_letter: Option<String>,
    pub(crate) schema: Option<Schema>,
    pub(crate) time_field: Option<String>,
    pub(crate) json: bool,
}

/// One input, opened.
struct OpenFile {
    name: String,
    reader: Box<dyn Read + Send>,
    size: Option<u64>,
}

/// Opens every input before sending anything, so a typo fails fast.
fn open_inputs(names: &[String]) -> Result<Vec<OpenFile>, String> {
    let names: Vec<String> = if names.is_empty() {
        if io::stdin().is_terminal() {
            return Err(
                "nothing to send: name files (`logrelay send export.json.gz`) or pipe events in (`logrelay send - < events.ndjson`)".into(),
            );
        }
        vec!["-".to_string()]
    } else {
        names.to_vec()
    };
    if names.iter().filter(|name| *name == "-").count() > 1 {
        return Err("stdin (`-`) can be given only once".into());
    }
    names
        .into_iter()
        .map(|name| {
            if name == "-" {
                return Ok(OpenFile {
                    name: "stdin".into(),
                    reader: Box::new(io::stdin()),
                    size: None,
                });
            }
            let file = File::open(&name).map_err(|error| format!("cannot open {name}: {error}"))?;
            let size = file.metadata().ok().map(|meta| meta.len());
            Ok(OpenFile {
                name,
                reader: Box::new(file),
                size,
            })
        })
        .collect()
}

/// Counts the bytes read, for the progress line.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs `send`; `Err` is a configuration or argument problem (exit 2).
pub(crate) async fn run(args: SendArgs) -> Result<ExitCode, String> {
    // Flags stand in for their variables, so both go through the one settings reader.
    let schema = args.schema.map(|schema| match schema {
        Schema::Keeper => "keeper",
        Schema::Passthrough => "passthrough",
    });
    let config = Config::for_platform(Platform::Cli, |name| {
        let flag = match name {
            vars::LOGRELAY_DEAD_LETTER => args.dead_letter.clone(),
            vars::LOGRELAY_SCHEMA => schema.map(str::to_string),
            vars::LOGRELAY_TIME_FIELD => args.time_field.clone(),
            _ => None,
        };
        flag.or_else(|| std::env::var(name).ok())
    })
    .map_err(|error| error.to_string())?;
    let inputs = open_inputs(&args.inputs)?;
    let decode = DecodeOptions {
        schema: config.schema.clone(),
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: SystemTime::now(),
    };
    let dead_letter: Arc<dyn DeadLetterSink> =
        crate::replay::dead_letter_sink(&config.dead_letter).await?;
    let relay = Relay::from_config(&config, dead_letter.clone(), decode, None)
        .await
        .map_err(|error| error.to_string())?;

    let total: Option<u64> = inputs.iter().map(|input| input.size).sum();
    let read = Arc::new(AtomicU64::new(0));
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(read.clone(), total));

    // Every file in one session: small files share request bodies.
    let inputs = inputs.into_iter().map(|input| {
        let reader = Counting {
            inner: input.reader,
            read: read.clone(),
        };
        Input::reader(input.name, reader)
    });
    let forwarded = relay.forward(inputs, SessionOptions::default()).await;
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }
    let (report, input_errors) = match forwarded {
        Ok(Forwarded {
            report,
            read_errors,
        }) => {
            let errors: Vec<String> = read_errors
                .into_iter()
                .map(|failed| format!("{}: {}", failed.source, failed.error))
                .collect();
            (report, errors)
        }
        Err(error) => {
            eprintln!("logrelay: {error}");
            eprintln!("logrelay: stopped: undeliverable events could not be kept, so the run is not complete");
            return Ok(ExitCode::from(1));
        }
    };
    for error in &input_errors {
        eprintln!("logrelay: reading stopped early: {error}");
    }
    if args.json {
        crate::print_json(&report)?;
    } else {
        crate::print_out(&summary(&report, &dead_letter.location()))?;
    }
    let complete = input_errors.is_empty() && report.delivered == report.events_in;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Bytes read so far (of the total, when known) and the rate, redrawn on stderr.
fn spawn_progress(read: Arc<AtomicU64>, total: Option<u64>) -> tokio::task::JoinHandle<()> {
    crate::progress::spawn_line(move |seconds| {
        let bytes = read.load(Ordering::Relaxed);
        let share = total
            .filter(|total| *total > 0)
            .map(|total| {
                format!(
                    " of {} ({:.0}%)",
                    mb(total),
                    100.0 * bytes as f64 / total as f64
                )
            })
            .unwrap_or_default();
        format!(
            "read {}{share}, {:.1} MB/s, {seconds:.0} s",
            mb(bytes),
            bytes as f64 / 1e6 / seconds.max(0.001),
        )
    })
}

fn mb(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} KB", bytes as f64 / 1e3)
    }
}

/// The human summary: headline, counters (the shared names), reasons, where dead letters went.
pub(crate) fn summary(report: &Report, dead_letter: &str) -> String {
    let seconds = report.duration.as_secs_f64();
    let rate = if seconds > 0.0 {
        report.events_in as f64 / seconds
    } else {
        0.0
    };
    let mut out = format!(
        "logrelay send: {} events in, {} delivered, {} dead-lettered{}\n",
        report.events_in,
        report.delivered,
        report.dead_lettered,
        if report.failed_transient > 0 {
            format!(", {} failed transiently", report.failed_transient)
        } else {
            String::new()
        }
    );
    out.push_str(&format!(
        "  {} requests, {} retries, {} throttled, {} token fetches\n",
        report.requests, report.retries, report.throttled, report.token_fetches
    ));
    out.push_str(&format!(
        "  {} sent ({} uncompressed) in {seconds:.2} s, {rate:.0} events/s\n",
        mb(report.bytes_sent),
        mb(report.bytes_uncompressed)
    ));
    if report.old_events > 0 || report.truncated_fields > 0 {
        out.push_str(&format!(
            "  {} events older than 2 days (Azure sets their TimeGenerated to the arrival time; `timestamp` keeps the original), {} fields truncated at 64 KB\n",
            report.old_events, report.truncated_fields
        ));
    }
    if report.dead_lettered > 0 {
        out.push_str(&format!(
            "  dead letter: {dead_letter} (each line holds the event and the reason)\n"
        ));
        let mut reasons: Vec<(&String, &u64)> = report.dead_letter_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (reason, count) in reasons.into_iter().take(TOP_REASONS) {
            out.push_str(&format!("    {count:>8}  {reason}\n"));
        }
    }
    let counters: Vec<String> = logrelay_core::metrics::summary_fields(report)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    out.push_str(&format!("  counters: {}\n", counters.join(" ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_summary_names_counts_reasons_and_the_dead_letter() {
        let mut report = Report {
            events_in: 10,
            delivered: 7,
            dead_lettered: 3,
            requests: 2,
            token_fetches: 1,
            duration: Duration::from_secs(2),
            ..Report::default()
        };
        report
            .dead_letter_reasons
            .insert("403 OperationFailed".into(), 2);
        report.dead_letter_reasons.insert("not JSON".into(), 1);
        let text = summary(&report, "./logrelay-dead-letter");
        assert!(text.starts_with("logrelay send: 10 events in, 7 delivered, 3 dead-lettered\n"));
        assert!(text.contains("1 token fetches"));
        assert!(text.contains("./logrelay-dead-letter"));
        let first = text.find("403 OperationFailed").unwrap();
        assert!(
            first < text.find("not JSON").unwrap(),
            "most frequent first"
        );
        assert!(text.contains("events_in=10 delivered=7 dead_lettered=3"));
        assert!(text.contains("5 events/s"));
    }
}
