//! A `logrelay send` killed mid-file, then the same command again.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use serde_json::Value;

use crate::common;
use crate::harness::*;

/// How long the first run may take to store the rows the kill waits for (a debug build on two
/// loaded cores; it usually takes a few seconds).
const FIRST_ROWS_TIMEOUT: Duration = Duration::from_secs(300);

/// EventId → how many rows of it are in `rows`.
fn counts<'a>(rows: impl Iterator<Item = &'a Value>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for row in rows {
        let id = row["EventId"]
            .as_str()
            .expect("every stored row has an EventId");
        *counts.entry(id.to_string()).or_default() += 1;
    }
    counts
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
    let landed = emulator.wait_for_rows(10_000, FIRST_ROWS_TIMEOUT).await;
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("the killed child is reaped");
    assert!(landed >= 10_000, "rows landed before the kill: {landed}");
    assert!(
        status.code().is_none(),
        "killed by a signal, not finished: {status:?}"
    );
    // Requests the emulator was still holding (latency) may complete after the kill: count
    // only once none is in progress and the dead client's connections are closed. Rows are
    // told apart by the token that carried them, so even a straggler is attributed right.
    let after_kill = settled(&emulator).await;
    let first_run_tokens = after_kill.tokens_issued;
    assert!(first_run_tokens >= 1, "the first run fetched a token");

    emulator.set_faults(Faults::none());
    let rerun = logrelay(
        &["send", "--json", "--dead-letter", "dl", "big.ndjson"],
        emulator.env(),
        dir.path(),
        Stdin::Null,
    )
    .await;

    rerun.assert_no_panic("the rerun");
    settled(&emulator).await;
    let stored = emulator.rows_with_token_serial();
    let first_run = counts(
        stored
            .iter()
            .filter(|(serial, _)| *serial <= first_run_tokens)
            .map(|(_, row)| row),
    );
    let second_run = counts(
        stored
            .iter()
            .filter(|(serial, _)| *serial > first_run_tokens)
            .map(|(_, row)| row),
    );
    let first_rows = first_run.values().sum::<u64>();
    assert!(
        first_rows < STORM_EVENTS,
        "the kill came before the end: {first_rows}"
    );
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
    assert!(
        first_run.values().all(|count| *count == 1),
        "the killed run stored each event at most once"
    );
    assert_eq!(
        (second_run.len() as u64, second_run.values().sum::<u64>()),
        (STORM_EVENTS, STORM_EVENTS),
        "the rerun stored every event exactly once"
    );
    assert_eq!(
        duplicated, first_rows,
        "the rerun has no checkpoint: each event the first run delivered is there twice, no more"
    );
}
