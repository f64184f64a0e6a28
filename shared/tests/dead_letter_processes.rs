//! Two processes (two Lambda containers, two Function App instances on one `/home/data`)
//! writing dead letters into one directory, at the same millisecond, for the same source:
//! every entry of both survives.
//!
//! The test runs this test binary twice more as the writers (`std::env::current_exe`, only
//! the ignored `writer_process` test, told by environment variables where to write). Each
//! writer stops its clock at the same instant, says it is ready on stdout and waits for a line on
//! stdin; the parent sends it to both only when both are ready, so they write at once.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] fns are test code too.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use logrelay_core::clock::ManualClock;
use logrelay_core::dead_letter::{DeadLetterEntry, DeadLetterSink, LocalDirDeadLetter};

/// Where a writer process writes; set only for the writers.
const DIR_VAR: &str = "LOGRELAY_TEST_WRITER_DIR";
/// Which writer it is (`a` or `b`), written into every entry.
const TAG_VAR: &str = "LOGRELAY_TEST_WRITER_TAG";
/// What a writer prints when its clock is stopped and it waits for the start line.
const READY: &str = "writer-ready";
/// Batches each writer writes (one file each) and entries per batch.
const BATCHES: u64 = 100;
const ENTRIES: u64 = 3;
/// The one source both name: the same slug in every file name.
const SOURCE: &str = "s3://keeper-audit/keeper/2026/12/01/events.ndjson.gz";
/// The instant both clocks are stopped at: 2026-12-01T09:30:00.123Z.
const STOPPED_AT_MS: u64 = 1_796_117_400_123;

fn writer(tag: &str, dir: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "writer_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(TAG_VAR, tag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until it says `ready`; the reader is kept to drain the rest.
fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the writer ended before it was ready"
        );
        // libtest prints `test writer_process ... ` on the same line first.
        if line.trim_end().ends_with(READY) {
            return out;
        }
    }
}

#[test]
fn two_processes_writing_at_the_same_millisecond_for_the_same_source_keep_every_entry() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("dead-letter");
    let mut children = [writer("a", &dir), writer("b", &dir)];
    let mut outputs: Vec<_> = children.iter_mut().map(wait_ready).collect();
    // Both are ready: let them go together.
    for child in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }
    for (child, out) in children.iter_mut().zip(&mut outputs) {
        let mut rest = String::new();
        std::io::Read::read_to_string(out, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "writer failed: {status}\n{rest}");
    }

    let mut names = Vec::new();
    let mut seen = BTreeSet::new();
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(entry["source"], SOURCE);
            let tag = entry["event"]["writer"].as_str().unwrap().to_string();
            let id = (
                tag,
                entry["event"]["batch"].as_u64().unwrap(),
                entry["event"]["n"].as_u64().unwrap(),
            );
            assert!(seen.insert(id), "an entry twice: {line}");
        }
        names.push(name);
    }
    // Same millisecond and slug in every name: only the random part tells them apart.
    let stems: BTreeSet<&str> = names
        .iter()
        .map(|name| name.rsplit_once('-').unwrap().0)
        .collect();
    assert_eq!(
        stems,
        BTreeSet::from(["20261201T093000.123Z-s3-keeper-audit-keeper-2026-12-01-events-ndjson-gz"]),
        "{names:?}"
    );
    assert_eq!(names.len() as u64, 2 * BATCHES, "one file per batch");
    assert_eq!(seen.len() as u64, 2 * BATCHES * ENTRIES, "every entry");
}

/// One writer; does nothing unless started by the test above.
#[tokio::test]
#[ignore = "a writer process of two_processes_writing_at_the_same_millisecond_..."]
async fn writer_process() {
    let (Some(dir), Some(tag)) = (std::env::var_os(DIR_VAR), std::env::var(TAG_VAR).ok()) else {
        return;
    };
    let stopped = SystemTime::UNIX_EPOCH + Duration::from_millis(STOPPED_AT_MS);
    let sink = LocalDirDeadLetter::with_clock(dir, Arc::new(ManualClock::new(stopped)));
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    for batch in 0..BATCHES {
        let entries: Vec<DeadLetterEntry> = (0..ENTRIES)
            .map(|n| DeadLetterEntry {
                reason: "HTTP 403 from the Logs Ingestion API".into(),
                source: SOURCE.into(),
                record: Some(n + 1),
                event: Some(serde_json::json!({"writer": tag, "batch": batch, "n": n})),
                raw: None,
            })
            .collect();
        sink.write(&entries).await.unwrap();
    }
}
