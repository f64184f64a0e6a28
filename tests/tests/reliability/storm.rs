//! 100,000 events through a seeded fault storm: the CLI and the S3 forwarder.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use azmon_emulator::{Emulator, EmulatorConfig, Faults, DROP_CONNECTION, STALL};

use crate::common;
use crate::harness::*;

/// The client's per-attempt timeout in the storms: generous for a debug emulator on two loaded
/// cores (a normal answer takes well under a second).
const CLIENT_TIMEOUT_SECS: &str = "8";

/// Requests in flight at once in the storms (default 16): the storm is about faults, not
/// throughput, and sixteen 1 MB bodies at once keep a debug emulator on two loaded cores busy
/// past any client timeout.
const CLIENT_CONCURRENCY: &str = "4";

/// How long a stalled request is held: 2.5 times the client timeout, so every stall is one the
/// client gives up on, however slow the machine.
const STALL_MS: u64 = 20_000;

/// Token lifetime in the storms: refreshed at half-life (6 s), which the scripted start below
/// outlasts by construction, so more than one token is issued.
const TOKEN_LIFETIME_SECS: u64 = 12;

/// The fault storm of the 100,000-event scenarios: 30% 429/503, 5% drops, 15% stalls past the
/// client timeout, 12 s tokens, each request's fate drawn from (`seed`, its first EventId, its
/// attempt). The first request (the one starting with `first_event_id`) is scripted to be
/// dropped, throttled, stalled and refused with 503 before it is served, so every kind of
/// fault happens whatever the draws.
fn storm_faults(seed: u64, first_event_id: &str) -> Faults {
    Faults {
        status_rate: 0.3,
        statuses: vec![429, 503],
        retry_after_secs: 1,
        drop_rate: 0.05,
        stall_rate: 0.15,
        stall_ms: STALL_MS,
        token_lifetime_secs: Some(TOKEN_LIFETIME_SECS),
        by_request: BTreeMap::from([(
            format!("event:{first_event_id}"),
            vec![DROP_CONNECTION, 429, STALL, 503],
        )]),
        seed: Some(seed),
        ..Faults::default()
    }
}

/// What the storm's description says, for RELIABILITY.md.
fn storm_injected() -> String {
    format!(
        "30% 429/503 (Retry-After 1 s), 5% dropped connections, 15% stalls of {} s past a {CLIENT_TIMEOUT_SECS} s client timeout, tokens living {TOKEN_LIFETIME_SECS} s, {CLIENT_CONCURRENCY} requests in flight; the first request scripted: drop, 429, stall, 503; fates drawn from the seed and each request's first EventId",
        STALL_MS / 1000
    )
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
    let (seed, _seed_report) = fault_seed("10-cli-fault-storm", 20_251_124);
    emulator.set_faults(storm_faults(seed, &ids[0]));

    let env = env_with(
        &emulator,
        &[
            ("LOGRELAY_REQUEST_TIMEOUT_SECS", CLIENT_TIMEOUT_SECS),
            ("LOGRELAY_CONCURRENCY", CLIENT_CONCURRENCY),
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
    // Counted once nothing the client sent can still land (a stalled request is answered
    // or cancelled by then).
    let stats = settled(&emulator).await;
    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&dead_letters(&dir.path().join("dl")));
    let lost = lost(&expected, &table, &dead);
    let duplicated = duplicated(&table);
    record(&Outcome {
        id: "10-cli-fault-storm",
        scenario: "100,000 events under a fault storm",
        path: "logrelay send",
        injected: &storm_injected(),
        events_in: STORM_EVENTS,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated,
        lost,
        notes: format!(
            "seed {seed}; {} requests, {} client retries ({} answered 429, {} answered 503, {} dropped, {} stalled); duplicates would be bodies the emulator stored but answered after the client's timeout, so the retry sent them again; {} tokens issued, {} expired-token uses, largest body {} B, {:.0} s, peak RSS {}",
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
    // The faults really happened (the test would prove nothing otherwise): scripted on the
    // first request, so by construction.
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
async fn the_s3_forwarder_delivers_100000_events_through_the_fault_storm() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = common::start_moto(dir.path()).await;
    let mut env = common::function_env(&emulator, &moto).await;
    for (name, value) in [
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", CLIENT_TIMEOUT_SECS),
        ("LOGRELAY_CONCURRENCY", CLIENT_CONCURRENCY),
        ("LOGRELAY_MAX_ATTEMPTS", "30"),
        ("LOGRELAY_DEADLINE_SECS", "300"),
    ] {
        env.push((name.into(), value.into()));
    }
    let key = "keeper/storm.ndjson.gz";
    let (expected, first_event_id) =
        put_generated_first(&moto, dir.path(), key, STORM_EVENTS, 16).await;
    let function = common::start_function("s3-forwarder", &env, dir.path()).await;
    let (seed, _seed_report) = fault_seed("11-s3-forwarder-fault-storm", 20_251_125);
    emulator.set_faults(storm_faults(seed, &first_event_id));

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
    // The function keeps its connections pooled: wait for requests, not connections.
    let stats = requests_finished(&emulator).await;
    let table = table_counts(&emulator);
    let dead = dead_letter_event_ids(&s3_dead_letters(&moto).await);
    let lost = lost(&expected, &table, &dead);
    record(&Outcome {
        id: "11-s3-forwarder-fault-storm",
        scenario: "100,000 events from one S3 object under a fault storm",
        path: "s3-forwarder (cargo-lambda + moto)",
        injected: &format!("the same storm as the CLI: {}", storm_injected()),
        events_in: STORM_EVENTS,
        delivered: table.len() as u64,
        dead_lettered: dead.len() as u64,
        duplicated: duplicated(&table),
        lost,
        notes: format!(
            "seed {seed}; {} invocation(s); {} requests ({} answered 429, {} answered 503, {} dropped, {} stalled), {} tokens issued, {} expired-token uses, largest body {} B",
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
    // Scripted on the first request, so these hold by construction.
    assert!(
        stats.status_counts.get(&429).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        stats.status_counts.get(&503).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(stats.stalled_requests > 0, "{stats:?}");
    assert!(stats.tokens_issued > 1, "{stats:?}");
}
