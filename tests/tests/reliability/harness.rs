//! The runner, the measurements and the report writer shared by every scenario group.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, Stats};
use logrelay_core::keeper::{DecodeOptions, Decoded, RowReader, SchemaMode};
use serde_json::{json, Value};

use crate::common;

/// The Logs Ingestion API's request limit on the wire: 1 MB, measured as 1,048,576 bytes (the
/// service's 413 says "Maximum allowed content length: 1048576 bytes (1 MB)"). Source:
/// https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api
pub(crate) const SERVICE_MAX_BODY_BYTES: u64 = 1_048_576;

/// Peak resident memory allowed for one `logrelay send` on hostile input. The inputs below are
/// 256 MB lines and 2 GiB gzip bombs, so a reader that buffers would blow far past this.
pub(crate) const HOSTILE_PEAK_RSS_KB: u64 = 160 * 1024;

/// Events in the fault-storm and crash scenarios.
pub(crate) const STORM_EVENTS: u64 = 100_000;

// ---------------------------------------------------------------------------------------------
// Running the binaries
// ---------------------------------------------------------------------------------------------

/// GNU time reports the child's peak RSS from `wait4`, exact whatever the run's length.
pub(crate) fn gnu_time() -> PathBuf {
    let path = PathBuf::from("/usr/bin/time");
    assert!(
        path.is_file(),
        "/usr/bin/time (GNU time) is missing: install it (`apt-get install time`); the hostile-input scenarios measure peak memory with it"
    );
    path
}

/// Writes a streamed stdin.
pub(crate) type StdinWriter = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// What goes to the child's stdin.
pub(crate) enum Stdin {
    Null,
    Bytes(Vec<u8>),
    /// Written on a thread as the child reads, so huge inputs never sit in memory.
    Stream(StdinWriter),
}

/// One finished run ([`common::Run`]: exit code and output) with its measurements.
pub(crate) struct Measured {
    pub(crate) run: common::Run,
    /// Peak resident set of the child, in KiB (GNU time's `%M`).
    pub(crate) peak_rss_kb: u64,
    pub(crate) elapsed: Duration,
}

impl Deref for Measured {
    type Target = common::Run;

    fn deref(&self) -> &common::Run {
        &self.run
    }
}

impl Measured {
    /// The `--json` report on stdout.
    pub(crate) fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "--json prints the report ({error}):\n{}",
                tail(&self.all_output())
            )
        })
    }

    pub(crate) fn assert_no_panic(&self, what: &str) {
        assert!(
            !self.all_output().contains("panicked"),
            "{what} panicked:\n{}",
            tail(&self.all_output())
        );
    }
}

/// The last few KB of a long output, for assertion messages.
pub(crate) fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(6_000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}

/// Runs `binary args` under GNU time with only `env`, in `dir`.
pub(crate) async fn run(
    binary: PathBuf,
    args: &[&str],
    env: Vec<(String, String)>,
    dir: &Path,
    stdin: Stdin,
) -> Measured {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let dir = dir.to_path_buf();
    // The child talks to the emulator served by this runtime, so wait on a blocking thread.
    tokio::task::spawn_blocking(move || {
        let rss_file = dir.join(format!(".peak-rss-{}", uuid::Uuid::new_v4()));
        let started = Instant::now();
        let mut child = Command::new(gnu_time())
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(&binary)
            .args(&args)
            .env_clear()
            .envs(env)
            .current_dir(&dir)
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                _ => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let writer = match stdin {
            Stdin::Null => None,
            Stdin::Bytes(bytes) => {
                let mut pipe = child.stdin.take().expect("stdin pipe");
                Some(std::thread::spawn(move || {
                    // The child may stop reading early (that is the point of some inputs).
                    let _ = pipe.write_all(&bytes);
                }))
            }
            Stdin::Stream(write) => {
                let mut pipe = child.stdin.take().expect("stdin pipe");
                Some(std::thread::spawn(move || {
                    let _ = write(&mut pipe);
                }))
            }
        };
        let output = child.wait_with_output().expect("the binary finishes");
        if let Some(writer) = writer {
            writer.join().expect("stdin writer");
        }
        let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
        let _ = std::fs::remove_file(&rss_file);
        let peak_rss_kb = rss
            .lines()
            .rev()
            .find_map(|line| line.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("GNU time wrote no peak RSS: {rss:?}"));
        Measured {
            run: common::Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            peak_rss_kb,
            elapsed: started.elapsed(),
        }
    })
    .await
    .expect("runner thread")
}

pub(crate) async fn logrelay(
    args: &[&str],
    env: Vec<(String, String)>,
    dir: &Path,
    stdin: Stdin,
) -> Measured {
    run(common::debug_binary("logrelay"), args, env, dir, stdin).await
}

/// Writes generated Keeper events with `logrelay generate`.
pub(crate) async fn generate(dir: &Path, file: &str, events: u64, shape: &str, seed: u64) {
    let (events, seed) = (events.to_string(), seed.to_string());
    let run = logrelay(
        &[
            "generate", "--events", &events, "--shape", shape, "--seed", &seed, "--out", file,
        ],
        Vec::new(),
        dir,
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 0, "generate failed: {}", run.stderr);
}

/// The emulator's client-secret environment plus `extra`.
pub(crate) fn env_with(emulator: &Emulator, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = emulator.env();
    for (name, value) in extra {
        env.retain(|(existing, _)| existing != name);
        env.push(((*name).to_string(), (*value).to_string()));
    }
    env
}

// ---------------------------------------------------------------------------------------------
// What went in, what came out
// ---------------------------------------------------------------------------------------------

/// The EventIds of every event in `path`, decoded with logrelay's own decoder: the set the
/// table must end up holding. Panics if the input has undecodable records (not expected here).
pub(crate) fn expected_event_ids(path: &Path) -> Vec<String> {
    let options = DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: u64::MAX,
        now: SystemTime::now(),
    };
    let file = BufReader::new(File::open(path).expect("input file"));
    RowReader::new(file, "expected", &options)
        .map(|item| match item.expect("the input reads") {
            Decoded::Row(row) => {
                let row: Value = serde_json::from_slice(&row.json).expect("rows are JSON");
                row["EventId"]
                    .as_str()
                    .expect("every row has an EventId")
                    .to_string()
            }
            Decoded::Rejected(entry) => panic!("the generated input has a bad record: {entry:?}"),
        })
        .collect()
}

/// EventId → how many times it is in the table.
pub(crate) fn table_counts(emulator: &Emulator) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for row in emulator.rows() {
        let id = row["EventId"]
            .as_str()
            .expect("every stored row has an EventId")
            .to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Every dead-letter line under `dir` (absent directory = none).
pub(crate) fn dead_letters(dir: &Path) -> Vec<Value> {
    if !dir.is_dir() {
        return Vec::new();
    }
    common::dead_letter_lines(dir)
}

/// The raw text of every dead-letter file under `dir`, for secret scans.
pub(crate) fn dead_letter_text(dir: &Path) -> String {
    dead_letters(dir)
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn dead_letter_event_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| entry["event"]["EventId"].as_str().map(str::to_string))
        .collect()
}

/// Events of `expected` neither in the table nor in the dead letter.
pub(crate) fn lost(
    expected: &HashSet<String>,
    table: &HashMap<String, u64>,
    dead: &[String],
) -> u64 {
    let dead: HashSet<&str> = dead.iter().map(String::as_str).collect();
    expected
        .iter()
        .filter(|id| !table.contains_key(*id) && !dead.contains(id.as_str()))
        .count() as u64
}

/// Rows stored more than once (each extra copy counts one).
pub(crate) fn duplicated(table: &HashMap<String, u64>) -> u64 {
    table.values().map(|count| count.saturating_sub(1)).sum()
}

pub(crate) fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

// ---------------------------------------------------------------------------------------------
// Seeds and settling
// ---------------------------------------------------------------------------------------------

/// Environment variable that overrides every scenario's fault seed, to replay a failed run.
pub(crate) const FAULT_SEED_VAR: &str = "LOGRELAY_FAULT_SEED";

/// How long the emulator may take to finish what it holds once the client is done (a request
/// held by a stall is cancelled when its client gives up, so this is a bound, not a wait).
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The fault seed of a scenario: `LOGRELAY_FAULT_SEED` when set, else `default`. The returned
/// guard prints the seed if the scenario fails, so the run can be replayed.
pub(crate) fn fault_seed(scenario: &str, default: u64) -> (u64, SeedOnFailure) {
    let seed = match std::env::var(FAULT_SEED_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{FAULT_SEED_VAR}={text:?} is not a number")),
        Err(_) => default,
    };
    (
        seed,
        SeedOnFailure {
            scenario: scenario.to_string(),
            seed,
        },
    )
}

/// Prints the scenario's fault seed when dropped during a panic (a failed assertion).
pub(crate) struct SeedOnFailure {
    scenario: String,
    seed: u64,
}

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}: fault seed {} (replay with {FAULT_SEED_VAR}={})",
                self.scenario, self.seed, self.seed
            );
        }
    }
}

/// Waits until the emulator holds no request and no connection (the client has exited, so
/// nothing it sent can still land); the counters then. Panics past [`SETTLE_TIMEOUT`].
pub(crate) async fn settled(emulator: &Emulator) -> Stats {
    emulator
        .wait_until_idle(SETTLE_TIMEOUT)
        .await
        .unwrap_or_else(|stats| {
            panic!("the emulator still holds requests after {SETTLE_TIMEOUT:?}: {stats:?}")
        })
}

/// Waits until the emulator has no request in progress while a long-running client (a
/// function process keeping its connections pooled) is idle; the counters then.
pub(crate) async fn requests_finished(emulator: &Emulator) -> Stats {
    emulator
        .wait_for_requests_to_finish(SETTLE_TIMEOUT)
        .await
        .unwrap_or_else(|stats| {
            panic!("the emulator still holds requests after {SETTLE_TIMEOUT:?}: {stats:?}")
        })
}

// ---------------------------------------------------------------------------------------------
// Results for RELIABILITY.md
// ---------------------------------------------------------------------------------------------

/// One row of RELIABILITY.md.
pub(crate) struct Outcome<'a> {
    /// File name and sort key, e.g. `10-cli-fault-storm`.
    pub(crate) id: &'a str,
    pub(crate) scenario: &'a str,
    /// Which binary ran.
    pub(crate) path: &'a str,
    pub(crate) injected: &'a str,
    pub(crate) events_in: u64,
    pub(crate) delivered: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) duplicated: u64,
    pub(crate) lost: u64,
    /// Measurements worth showing (peak RSS, requests, injected faults seen).
    pub(crate) notes: String,
}

/// Writes `target/reliability/<id>.json`.
pub(crate) fn record(outcome: &Outcome<'_>) {
    let dir = common::repo().join("target/reliability");
    std::fs::create_dir_all(&dir).expect("target/reliability");
    let value = json!({
        "id": outcome.id,
        "scenario": outcome.scenario,
        "path": outcome.path,
        "injected": outcome.injected,
        "events_in": outcome.events_in,
        "delivered": outcome.delivered,
        "dead_lettered": outcome.dead_lettered,
        "duplicated": outcome.duplicated,
        "lost": outcome.lost,
        "notes": outcome.notes,
        "recorded_at": chrono::Utc::now().to_rfc3339(),
    });
    std::fs::write(
        dir.join(format!("{}.json", outcome.id)),
        serde_json::to_vec_pretty(&value).expect("JSON"),
    )
    .expect("result written");
}

pub(crate) fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

/// A push-shape Keeper event as one JSON line, numbered `i`, with `data`.
pub(crate) fn keeper_line(i: u64, data: Value) -> String {
    let event = json!({
        "audit_event": "record_update",
        "category": "usage",
        "client_version": "Web Vault 17.0.0",
        "data": data,
        "enterprise_id": 3141592,
        "remote_address": "192.0.2.7",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "username": format!("user{i}@acme-corp.example"),
    });
    format!("{event}\n")
}

/// `len` pseudo-random letters: gzip cannot shrink them, so sizes stay honest.
pub(crate) fn noise(len: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.alphanumeric()).collect()
}

// ---------------------------------------------------------------------------------------------
// The Lambda functions (cargo-lambda runtime API + moto)
// ---------------------------------------------------------------------------------------------

/// How many times a failed invocation is retried here, as the platform would (async invokes
/// retry twice; SQS redelivers until maxReceiveCount).
pub(crate) const PLATFORM_ATTEMPTS: usize = 4;

/// Dead-letter entries written by a function into the dead-letter bucket.
pub(crate) async fn s3_dead_letters(moto: &common::Moto) -> Vec<Value> {
    common::dead_letter_objects(moto)
        .await
        .iter()
        .flat_map(|(_, body)| {
            body.lines()
                .map(|line| {
                    serde_json::from_str::<Value>(line).expect("dead-letter lines are JSON")
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Generates `events` gzipped NDJSON events, puts them at `key`; the expected EventIds.
pub(crate) async fn put_generated(
    moto: &common::Moto,
    dir: &Path,
    key: &str,
    events: u64,
    seed: u64,
) -> HashSet<String> {
    put_generated_first(moto, dir, key, events, seed).await.0
}

/// [`put_generated`], also returning the object's first EventId (its first request's key).
pub(crate) async fn put_generated_first(
    moto: &common::Moto,
    dir: &Path,
    key: &str,
    events: u64,
    seed: u64,
) -> (HashSet<String>, String) {
    let file = format!("object-{seed}.ndjson.gz");
    let (count, seed_text) = (events.to_string(), seed.to_string());
    let run = logrelay(
        &[
            "generate", "--events", &count, "--shape", "push", "--seed", &seed_text, "--gzip",
            "--out", &file,
        ],
        Vec::new(),
        dir,
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 0, "generate failed: {}", run.stderr);
    let path = dir.join(&file);
    let ids = expected_event_ids(&path);
    let first = ids.first().cloned().expect("at least one event");
    let expected: HashSet<String> = ids.into_iter().collect();
    assert_eq!(expected.len() as u64, events, "distinct generated events");
    common::put(
        moto,
        key,
        std::fs::read(&path).expect("generated object"),
        None,
    )
    .await;
    (expected, first)
}
