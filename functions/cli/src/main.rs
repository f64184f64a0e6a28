//! `logrelay`: send Keeper audit events to Azure Monitor Logs from files or stdin, replay the
//! dead letter, diagnose a configuration, print the table schema. `main` only parses arguments and dispatches.

mod doctor;
mod generate;
mod progress;
mod replay;
mod send;
mod token;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use flate2::write::GzEncoder;
use flate2::Compression;

/// Exit code for configuration errors (bad or missing environment variables, bad arguments).
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "logrelay",
    version,
    about = "Keeper audit events into Azure Monitor Logs (Logs Ingestion API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send Keeper events from files or stdin (JSON array, NDJSON, CSV, syslog, gzip or not)
    /// in one session; exits 0 only when every event was delivered.
    Send {
        /// Input files; `-` (or none) reads stdin.
        files: Vec<String>,
        /// Where undeliverable events go, as NDJSON with the reason beside each (created
        /// only when needed): a directory or s3://bucket/prefix/
        /// [default: LOGRELAY_DEAD_LETTER, else ./logrelay-dead-letter].
        #[arg(long)]
        dead_letter: Option<String>,
        /// How records become rows [default: LOGRELAY_SCHEMA, else keeper].
        #[arg(long, value_enum)]
        schema: Option<send::Schema>,
        /// Passthrough: the field TimeGenerated is taken from [default: LOGRELAY_TIME_FIELD].
        #[arg(long)]
        time_field: Option<String>,
        /// Print the report as JSON on stdout instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Send the dead letter's events again, unchanged (so their EventId dedupes anything that
    /// did arrive), from a directory or s3://bucket/prefix/; replayed files are moved into
    /// `replayed/`, events that fail again are dead-lettered again with the new reason;
    /// exits 0 only when every replayable event was delivered.
    Replay {
        /// The dead letter: a directory or s3://bucket/prefix/.
        location: String,
        /// Only count the entries, by reason and by source; send nothing, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome as JSON on stdout instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Print the stream declaration, table columns, transform and data sample as JSON.
    Schema {
        /// DCR stream name.
        #[arg(long, default_value = logrelay_core::schema::DEFAULT_STREAM)]
        stream: String,
        /// Log Analytics table name.
        #[arg(long, default_value = logrelay_core::schema::DEFAULT_TABLE)]
        table: String,
    },
    /// Write the data sample the portal's "New custom log (DCR-based)" wizard asks for.
    Sample {
        /// Where to write it (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check every link (configuration, endpoint URL, network, token, a probe ingestion call)
    /// and say what to fix and where.
    Doctor {
        /// Print the steps as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a token and show its audience, tenant, app id and expiry (never the token itself
    /// unless --show).
    Token {
        /// Also print the token (it is a credential: handle with care).
        #[arg(long)]
        show: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write synthetic Keeper events (tests, benchmarks, `make run`).
    #[command(hide = true)]
    Generate {
        /// How many events.
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// Which Keeper shape.
        #[arg(long, value_enum, default_value = "push")]
        shape: generate::Shape,
        /// JSON shapes: write one JSON array instead of NDJSON.
        #[arg(long)]
        array: bool,
        /// Gzip the output.
        #[arg(long)]
        gzip: bool,
        /// Random seed; the same seed gives the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    logrelay_core::telemetry::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("logrelay: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Send {
            files,
            dead_letter,
            schema,
            time_field,
            json,
        } => block_on(send::run(send::SendArgs {
            inputs: files,
            dead_letter,
            schema,
            time_field,
            json,
        })),
        Command::Replay {
            location,
            dry_run,
            json,
        } => block_on(replay::run(replay::ReplayArgs {
            location,
            dry_run,
            json,
        })),
        Command::Doctor { json } => block_on(doctor::run(json)),
        Command::Token { show, json } => block_on(token::run(show, json)),
        Command::Schema { stream, table } => {
            let document = logrelay_core::schema::document(&stream, &table);
            print_json(&document)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample { out } => {
            let sample = logrelay_core::schema::data_sample();
            let text = serde_json::to_string_pretty(&sample).map_err(|e| e.to_string())?;
            write_output(out.as_ref(), false, |writer| writeln!(writer, "{text}"))?;
            if let Some(path) = out {
                eprintln!(
                    "Wrote the data sample to {}: upload it in the table wizard's \"Schema and transformation\" step.",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            events,
            shape,
            array,
            gzip,
            seed,
            out,
        } => {
            let options = generate::Options {
                events,
                shape,
                array,
                seed,
                now: SystemTime::now(),
            };
            write_output(out.as_ref(), gzip, |writer| {
                generate::write(&options, writer)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs an async command on a multi-threaded runtime.
fn block_on<T>(future: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?
        .block_on(future)
}

/// Pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    print_out(&format!("{text}\n"))
}

/// Writes command output to stdout. A closed pipe (`logrelay schema | head`) ends the output
/// quietly instead of panicking as `println!` would.
pub(crate) fn print_out(text: &str) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {error}"))
        }
        _ => Ok(()),
    }
}

/// Runs `body` against a file (or stdout), optionally gzipped, and flushes it.
fn write_output(
    out: Option<&PathBuf>,
    gzip: bool,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), String> {
    let name = out.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    let fail = |error: io::Error| format!("cannot write {name}: {error}");
    let result = write_output_inner(out, gzip, body, fail);
    match result {
        // The reader of stdout went away (`logrelay generate | head`): not an error.
        Err((kind, _)) if out.is_none() && kind == io::ErrorKind::BrokenPipe => Ok(()),
        Err((_, message)) => Err(message),
        Ok(()) => Ok(()),
    }
}

fn write_output_inner(
    out: Option<&PathBuf>,
    gzip: bool,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    fail: impl Fn(io::Error) -> String,
) -> Result<(), (io::ErrorKind, String)> {
    let fail = |error: io::Error| (error.kind(), fail(error));
    let sink: Box<dyn Write> = match out {
        Some(path) => Box::new(File::create(path).map_err(fail)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut sink = BufWriter::with_capacity(1 << 16, sink);
    if gzip {
        // Events are written a few bytes at a time; the encoder wants large writes.
        let mut encoder =
            BufWriter::with_capacity(1 << 16, GzEncoder::new(&mut sink, Compression::fast()));
        body(&mut encoder).map_err(fail)?;
        encoder
            .into_inner()
            .map_err(|error| fail(error.into_error()))?
            .finish()
            .map_err(fail)?;
    } else {
        body(&mut sink).map_err(fail)?;
    }
    sink.flush().map_err(fail)
}
