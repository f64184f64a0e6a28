//! `logrelay replay` end to end: the real binary against the in-process emulator and moto.
//! Events are dead-lettered by `logrelay send` while the emulator answers 403 (the role
//! assignment has not "arrived"), to a directory and to an S3 prefix; once the emulator's
//! clock passes the scripted time, `replay` delivers each of them exactly once with its
//! EventId unchanged, and a second replay sends nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use common::{Moto, Run, DEAD_LETTER_BUCKET};
use serde_json::Value;

/// How long the role assignment takes to "arrive", in emulator time.
const ROLE_DELAY: Duration = Duration::from_secs(10 * 60);

/// The S3 dead-letter prefix the test sends to and replays from.
const S3_PREFIX: &str = "failed/";

/// An emulator that answers 403 to every ingestion request for the first [`ROLE_DELAY`] of
/// its clock.
async fn emulator_without_the_role_yet() -> Emulator {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("the emulator starts");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    emulator.set_faults(Faults {
        forbidden_until_secs: Some((now + ROLE_DELAY).as_secs()),
        ..Faults::default()
    });
    emulator
}

/// Moves the emulator's clock past the scripted 403s: the role has arrived.
fn the_role_arrives(emulator: &Emulator) {
    emulator.advance_clock(ROLE_DELAY + Duration::from_secs(60));
}

async fn logrelay(args: &[&str], env: &[(String, String)], dir: &Path) -> Run {
    common::run_logrelay(args, env.to_vec(), Some(dir), None).await
}

/// Writes generated Keeper events with `logrelay generate`.
async fn generate(dir: &Path, file: &str, events: u64, seed: u64) {
    let (events, seed) = (events.to_string(), seed.to_string());
    let args = [
        "generate", "--events", &events, "--shape", "push", "--seed", &seed, "--out", file,
    ];
    let run = logrelay(&args, &[], dir).await;
    assert_eq!(run.code, 0, "generate failed: {}", run.stderr);
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("--json prints JSON ({error}): {}", run.all_output()))
}

/// The emulator's environment plus moto as the S3 endpoint (standard AWS variables).
fn env_with_s3(emulator: &Emulator, moto: &Moto) -> Vec<(String, String)> {
    let mut env = emulator.env();
    for (key, value) in [
        ("AWS_ENDPOINT_URL_S3", moto.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        env.push((key.to_string(), value.to_string()));
    }
    env
}

/// How many stored rows carry each EventId.
fn rows_by_event_id(emulator: &Emulator) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for row in emulator.rows() {
        let id = row["EventId"].as_str().expect("every row has an EventId");
        *counts.entry(id.to_string()).or_default() += 1;
    }
    counts
}

/// The EventIds of dead-letter entries.
fn event_ids(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|entry| {
            entry["event"]["EventId"]
                .as_str()
                .unwrap_or_else(|| panic!("a dead-lettered row with an EventId: {entry}"))
                .to_string()
        })
        .collect()
}

/// Dead-letter entries in S3 objects under `prefix`, and the objects' keys.
async fn s3_entries(moto: &Moto, prefix: &str) -> (Vec<String>, Vec<Value>) {
    let mut keys = Vec::new();
    let mut entries = Vec::new();
    for (key, body) in common::dead_letter_objects(moto).await {
        if !key.starts_with(prefix) {
            continue;
        }
        entries.extend(
            body.lines().map(|line| {
                serde_json::from_str::<Value>(line).expect("a dead-letter line is JSON")
            }),
        );
        keys.push(key);
    }
    (keys, entries)
}

/// The `.ndjson` files directly in `dir` (not in its subfolders).
fn ndjson_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the dead-letter directory exists")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".ndjson"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_every_dead_lettered_event_once_from_a_directory_and_s3_and_a_second_replay_sends_nothing(
) {
    let emulator = emulator_without_the_role_yet().await;
    let dir = tempfile::tempdir().unwrap();
    let moto = common::start_moto(dir.path()).await;
    moto.s3
        .create_bucket()
        .bucket(DEAD_LETTER_BUCKET)
        .send()
        .await
        .expect("bucket created in moto");
    let env = env_with_s3(&emulator, &moto);
    generate(dir.path(), "to-dir.ndjson", 3_000, 11).await;
    generate(dir.path(), "to-s3.ndjson", 2_000, 12).await;
    let s3_uri = format!("s3://{DEAD_LETTER_BUCKET}/{S3_PREFIX}");

    // Before the role arrives: every event is dead-lettered with the 403.
    let to_dir = logrelay(
        &["send", "--json", "--dead-letter", "dl", "to-dir.ndjson"],
        &env,
        dir.path(),
    )
    .await;
    assert_eq!(to_dir.code, 1, "{}", to_dir.all_output());
    assert_eq!(json_of(&to_dir)["dead_lettered"], 3_000);
    let to_s3 = logrelay(
        &["send", "--json", "--dead-letter", &s3_uri, "to-s3.ndjson"],
        &env,
        dir.path(),
    )
    .await;
    assert_eq!(to_s3.code, 1, "{}", to_s3.all_output());
    assert_eq!(json_of(&to_s3)["dead_lettered"], 2_000);
    assert!(emulator.rows().is_empty(), "nothing got through the 403s");
    let dl = dir.path().join("dl");
    let dir_entries = common::dead_letter_lines(&dl);
    let (s3_keys, s3_dead) = s3_entries(&moto, S3_PREFIX).await;
    assert_eq!(dir_entries.len(), 3_000);
    assert_eq!(s3_dead.len(), 2_000);
    assert!(dir_entries
        .iter()
        .chain(&s3_dead)
        .all(|entry| entry["reason"].as_str().unwrap().contains("403")));
    let dir_ids = event_ids(&dir_entries);
    let s3_ids = event_ids(&s3_dead);
    assert_eq!((dir_ids.len(), s3_ids.len()), (3_000, 2_000));
    assert!(dir_ids.is_disjoint(&s3_ids));

    the_role_arrives(&emulator);
    let from_dir = logrelay(&["replay", "--json", "dl"], &env, dir.path()).await;
    assert_eq!(from_dir.code, 0, "{}", from_dir.all_output());
    let from_s3 = logrelay(&["replay", "--json", &s3_uri], &env, dir.path()).await;
    assert_eq!(from_s3.code, 0, "{}", from_s3.all_output());
    for (run, events) in [(&from_dir, 3_000), (&from_s3, 2_000)] {
        let outcome = json_of(run);
        assert_eq!(outcome["replayable"], events, "{outcome}");
        assert_eq!(outcome["report"]["delivered"], events, "{outcome}");
        assert_eq!(outcome["report"]["dead_lettered"], 0, "{outcome}");
        assert_eq!(outcome["files_replayed"], outcome["files"], "{outcome}");
    }

    // Every dead-lettered event arrived exactly once, under the EventId it was dead-lettered with.
    let arrived = rows_by_event_id(&emulator);
    let expected: BTreeSet<String> = dir_ids.union(&s3_ids).cloned().collect();
    assert_eq!(arrived.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        arrived.values().all(|count| *count == 1),
        "a row arrived twice"
    );
    // The rows are the dead-lettered rows: same fields as sent before the 403s.
    let stored: BTreeMap<String, Value> = emulator
        .rows()
        .into_iter()
        .map(|row| (row["EventId"].as_str().unwrap().to_string(), row))
        .collect();
    for entry in dir_entries.iter().chain(&s3_dead) {
        let event = &entry["event"];
        let row = &stored[event["EventId"].as_str().unwrap()];
        for field in ["audit_event", "username", "remote_address", "timestamp"] {
            assert_eq!(row[field], event[field], "{field} of {event}");
        }
    }

    // Replayed files and objects were moved aside.
    assert!(ndjson_files(&dl).is_empty(), "{:?}", ndjson_files(&dl));
    assert_eq!(
        event_ids(&common::dead_letter_lines(&dl.join("replayed"))),
        dir_ids
    );
    let (left, _) = s3_entries(&moto, S3_PREFIX).await;
    let (moved, moved_entries) = s3_entries(&moto, &format!("{S3_PREFIX}replayed/")).await;
    assert_eq!(moved.len(), s3_keys.len(), "{left:?}");
    assert_eq!(
        left.len(),
        moved.len(),
        "only the moved objects are left: {left:?}"
    );
    assert_eq!(event_ids(&moved_entries), s3_ids);

    // A second replay sends nothing.
    let requests = emulator.stats().ingestion_requests;
    for location in ["dl", s3_uri.as_str()] {
        let again = logrelay(&["replay", "--json", location], &env, dir.path()).await;
        assert_eq!(again.code, 0, "{}", again.all_output());
        let outcome = json_of(&again);
        assert_eq!(outcome["files"], 0, "{outcome}");
        assert_eq!(outcome["report"]["events_in"], 0, "{outcome}");
    }
    assert_eq!(emulator.stats().ingestion_requests, requests);
    assert_eq!(emulator.rows().len(), 5_000);
}

/// Dead-letters `mixed.ndjson` (`good` events and one line that is not JSON) while the
/// emulator answers 403: `good` entries with a 403 reason, one never decoded.
async fn dead_letter_a_mixed_file(emulator: &Emulator, dir: &Path, good: u64) {
    generate(dir, "good.ndjson", good, 21).await;
    let mut text = std::fs::read_to_string(dir.join("good.ndjson")).expect("generated");
    text.push_str("{\"audit_event\": \"login\", this is not json\n");
    std::fs::write(dir.join("mixed.ndjson"), text).expect("mixed.ndjson written");
    let sent = logrelay(
        &["send", "--json", "--dead-letter", "dl", "mixed.ndjson"],
        &emulator.env(),
        dir,
    )
    .await;
    assert_eq!(sent.code, 1, "{}", sent.all_output());
    assert_eq!(json_of(&sent)["dead_lettered"], good + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_entries_by_reason_and_source_and_sends_and_moves_nothing() {
    let emulator = emulator_without_the_role_yet().await;
    let dir = tempfile::tempdir().unwrap();
    dead_letter_a_mixed_file(&emulator, dir.path(), 40).await;
    let dl = dir.path().join("dl");
    let files_before = ndjson_files(&dl);
    the_role_arrives(&emulator);
    let requests = emulator.stats().ingestion_requests;

    // No Azure settings needed to count.
    let dry = logrelay(&["replay", "--dry-run", "--json", "dl"], &[], dir.path()).await;

    assert_eq!(dry.code, 0, "{}", dry.all_output());
    let outcome = json_of(&dry);
    assert_eq!(outcome["dry_run"], true);
    assert_eq!(outcome["replayable"], 40);
    assert_eq!(outcome["never_decoded"], 1);
    let by_reason = outcome["by_reason"].as_object().unwrap();
    assert_eq!(by_reason.len(), 2, "{by_reason:?}");
    let forbidden: Vec<u64> = by_reason
        .iter()
        .filter(|(reason, _)| reason.contains("403"))
        .map(|(_, count)| count.as_u64().unwrap())
        .collect();
    assert_eq!(forbidden, [40], "{by_reason:?}");
    assert_eq!(
        outcome["by_source"],
        serde_json::json!({"mixed.ndjson": 41})
    );
    assert_eq!(
        outcome["never_decoded_sources"],
        serde_json::json!({"mixed.ndjson": 1})
    );
    assert_eq!(
        emulator.stats().ingestion_requests,
        requests,
        "nothing sent"
    );
    assert_eq!(ndjson_files(&dl), files_before, "nothing moved");
    assert!(!dl.join("replayed").exists());

    let text = logrelay(&["replay", "--dry-run", "dl"], &[], dir.path()).await;
    assert_eq!(text.code, 0, "{}", text.all_output());
    assert!(
        text.stdout.starts_with(&format!(
            "logrelay replay --dry-run: {} files in dl, 40 entries to replay, 1 never decoded",
            files_before.len()
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("      40  HTTP 403"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_decoded_entry_is_reported_not_sent_and_stays_in_the_dead_letter() {
    let emulator = emulator_without_the_role_yet().await;
    let dir = tempfile::tempdir().unwrap();
    dead_letter_a_mixed_file(&emulator, dir.path(), 25).await;
    let dl = dir.path().join("dl");
    let raw_before: Vec<Value> = common::dead_letter_lines(&dl)
        .into_iter()
        .filter(|entry| entry.get("event").is_none())
        .collect();
    assert_eq!(raw_before.len(), 1, "the line that is not JSON");
    the_role_arrives(&emulator);

    let run = logrelay(&["replay", "dl"], &emulator.env(), dir.path()).await;

    assert_eq!(
        run.code,
        0,
        "every replayable event was delivered: {}",
        run.all_output()
    );
    assert!(
        run.stdout
            .contains("25 delivered, 0 dead-lettered again; 1 never decoded (kept)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "never decoded (raw input, not sent), by source:\n           1  mixed.ndjson"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(emulator.rows().len(), 25, "the raw line is not sent");
    // Still in the dead letter, as it was; the replayed events are not.
    let left = common::dead_letter_lines(&dl);
    assert_eq!(left, raw_before);

    let again = logrelay(&["replay", "--json", "dl"], &emulator.env(), dir.path()).await;
    assert_eq!(again.code, 0, "{}", again.all_output());
    let outcome = json_of(&again);
    assert_eq!(outcome["never_decoded"], 1, "{outcome}");
    assert_eq!(outcome["report"]["events_in"], 0, "{outcome}");
    assert_eq!(outcome["files_kept"], 1, "{outcome}");
    assert_eq!(emulator.rows().len(), 25);
}
