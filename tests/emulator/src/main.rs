//! `azmon-emulator`: runs the strict Azure emulator (Entra token, managed identity, Logs
//! Ingestion API) on 127.0.0.1 until SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "azmon-emulator",
    about = "Strict local stand-in for Entra ID and the Azure Monitor Logs Ingestion API"
)]
struct Args {
    /// Port on 127.0.0.1 (0 = a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write KEY=VALUE environment lines here once listening (written atomically).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Delay every ingestion answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long)]
    token_lifetime_secs: Option<u64>,
    /// Share (0.0–1.0) of ingestion requests answered with one of --fault-statuses.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Statuses for --fault-rate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "429,503")]
    fault_statuses: Vec<u16>,
    /// Retry-After seconds on injected 429/503 answers.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Keep accepted rows for /_emulator/rows (`false`: check and count them only, for
    /// benchmarks, so the emulator takes less of the CPU the client under test needs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    store_rows: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("azmon-emulator: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--fault-rate {} is not between 0 and 1", args.fault_rate),
        ));
    }
    let mut config = EmulatorConfig {
        port: args.port,
        faults: Faults {
            status_rate: args.fault_rate,
            statuses: args.fault_statuses,
            retry_after_secs: args.retry_after_secs,
            latency_ms: args.latency_ms,
            ..Faults::default()
        },
        store_rows: args.store_rows,
        ..EmulatorConfig::default()
    };
    if let Some(lifetime) = args.token_lifetime_secs {
        config.token_lifetime_secs = lifetime;
    }
    let emulator = Emulator::start(config).await?;
    if let Some(path) = &args.env_file {
        write_env_file(path, &emulator)?;
    }
    println!("azmon-emulator listening on {}", emulator.base_url());
    wait_for_signal().await?;
    tracing::info!("Shutting down.");
    emulator.shutdown().await;
    Ok(())
}

/// Writes the environment lines to a temporary file beside `path`, then renames it, so a
/// reader polling for the file never sees half of it.
fn write_env_file(path: &Path, emulator: &Emulator) -> std::io::Result<()> {
    let mut lines: Vec<(String, String)> = emulator.env();
    lines.push(("AZMON_EMULATOR_PORT".into(), emulator.port().to_string()));
    lines.push(("AZMON_EMULATOR_URL".into(), emulator.base_url()));
    // Named apart from IDENTITY_ENDPOINT/IDENTITY_HEADER so a client-secret run is unambiguous.
    lines.push((
        "AZMON_EMULATOR_IDENTITY_ENDPOINT".into(),
        emulator.identity_endpoint(),
    ));
    lines.push((
        "AZMON_EMULATOR_IDENTITY_HEADER".into(),
        emulator.identity_header(),
    ));
    let text: String = lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
