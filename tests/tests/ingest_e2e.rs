//! End-to-end ingestion against the Azure emulator over real HTTP: the real configuration,
//! Entra client-credentials provider, token cache, ingestor and dead letter.
//!
//! Rows are built here as the encoded JSON the Keeper decoder
//! would produce, so these tests pin the ingestion path alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use logrelay_core::config::Config;
use logrelay_core::dead_letter::MemoryDeadLetter;
use logrelay_core::ingest::{
    EncodedRow, Origin, Report, SessionOptions, TransientPolicy, MAX_BATCH_BYTES,
};
use logrelay_core::keeper::{DecodeOptions, SchemaMode};
use logrelay_core::relay::Relay;
use serde_json::json;

/// One Keeper row in the table's shape, padded with `pad` bytes of event data.
fn keeper_row(i: u64, pad: usize) -> EncodedRow {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Pseudo-random padding keeps gzip honest (repeated bytes would compress to nothing).
    let mut rng = fastrand::Rng::with_seed(i);
    let noise: String = (0..pad).map(|_| rng.alphanumeric()).collect();
    let row = json!({
        "TimeGenerated": now,
        "EventId": format!("evt-{i:08}"),
        "audit_event": "login",
        "category": "login",
        "remote_address": "203.0.113.10",
        "client_version": "Web Vault 17.0.0",
        "username": format!("user{i}@example.com"),
        "enterprise_id": 1234,
        "timestamp": now,
        "data": {"note": noise},
    });
    EncodedRow {
        json: serde_json::to_vec(&row).expect("a JSON value serializes"),
        origin: Origin {
            source: Arc::from("e2e.ndjson"),
            record: i + 1,
        },
    }
}

/// The configuration a binary would read, pointed at `emulator`, with `extra` overrides.
fn config(emulator: &Emulator, extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = emulator.env().into_iter().collect();
    for (name, value) in extra {
        env.insert((*name).to_string(), (*value).to_string());
    }
    Config::from_lookup(|name| env.get(name).cloned())
        .expect("the emulator's environment is a valid configuration")
}

async fn relay(config: &Config) -> (Relay, Arc<MemoryDeadLetter>) {
    let dead = Arc::new(MemoryDeadLetter::new());
    let decode = DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: config.tuning.max_decompressed_bytes,
        now: SystemTime::now(),
    };
    let relay = Relay::from_config(config, dead.clone(), decode, None)
        .await
        .expect("the relay builds from configuration");
    (relay, dead)
}

async fn send(relay: &Relay, rows: impl IntoIterator<Item = EncodedRow>) -> Report {
    let mut session = relay.session(SessionOptions::default());
    for row in rows {
        session
            .push(row)
            .await
            .expect("push never fails with a working dead letter");
    }
    let report = session
        .finish()
        .await
        .expect("finish never fails with a working dead letter");
    assert!(report.is_balanced(), "{report:?}");
    report
}

fn event_ids(emulator: &Emulator) -> BTreeSet<String> {
    emulator
        .rows()
        .iter()
        .map(|row| {
            row["EventId"]
                .as_str()
                .expect("stored rows keep EventId")
                .to_string()
        })
        .collect()
}

fn expected_ids(range: std::ops::Range<u64>) -> BTreeSet<String> {
    range.map(|i| format!("evt-{i:08}")).collect()
}

#[tokio::test]
async fn bodies_stay_under_one_megabyte_are_gzipped_and_every_row_lands() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (relay, dead) = relay(&config(&emulator, &[])).await;
    // About 3.5 MB of JSON: at least four bodies.
    let report = send(&relay, (0..3_000).map(|i| keeper_row(i, 1_000))).await;

    let stats = emulator.stats();
    assert_eq!(event_ids(&emulator), expected_ids(0..3_000));
    assert_eq!(report.delivered, 3_000);
    assert!(dead.entries().is_empty());
    assert!(stats.ingestion_requests >= 4, "{stats:?}");
    assert_eq!(stats.gzip_requests, stats.ingestion_requests);
    assert!(
        stats.max_decompressed_bytes <= MAX_BATCH_BYTES as u64,
        "{stats:?}"
    );
    assert!(
        stats.max_wire_bytes < stats.max_decompressed_bytes,
        "{stats:?}"
    );
    assert_eq!(report.requests, stats.ingestion_requests);
    assert_eq!(report.bytes_sent, stats.total_wire_bytes);
    assert_eq!(
        stats.dropped_columns, 0,
        "rows match the stream declaration"
    );
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_delay_and_everything_lands() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        script: vec![429],
        retry_after_secs: 1,
        ..Faults::default()
    });
    let (relay, _) = relay(&config(&emulator, &[])).await;
    let started = Instant::now();
    let report = send(&relay, (0..50).map(|i| keeper_row(i, 100))).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(event_ids(&emulator), expected_ids(0..50));
    assert_eq!(
        (report.throttled, report.retries, report.delivered),
        (1, 1, 50)
    );
    assert_eq!(emulator.stats().status_counts.get(&429), Some(&1));
}

#[tokio::test]
async fn a_413_splits_the_body_until_the_service_takes_it() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    // The service takes at most 200 kB while we pack up to 1,000,000 bytes per body.
    emulator.set_faults(Faults {
        max_body_bytes: Some(200_000),
        ..Faults::default()
    });
    let (relay, dead) = relay(&config(&emulator, &[])).await;
    let report = send(&relay, (0..1_500).map(|i| keeper_row(i, 1_000))).await;

    let stats = emulator.stats();
    assert_eq!(event_ids(&emulator), expected_ids(0..1_500));
    assert!(dead.entries().is_empty());
    assert!(
        stats.status_counts.get(&413).copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert_eq!(report.delivered, 1_500);
    assert_eq!(stats.rows, 1_500, "no row stored twice");
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_delivers() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (relay, _) = relay(&config(&emulator, &[])).await;
    send(&relay, (0..10).map(|i| keeper_row(i, 100))).await;
    assert_eq!(emulator.stats().token_requests, 1);

    emulator.set_faults(Faults {
        revoke_tokens: true,
        ..Faults::default()
    });
    let report = send(&relay, (10..20).map(|i| keeper_row(i, 100))).await;
    let stats = emulator.stats();
    assert_eq!(event_ids(&emulator), expected_ids(0..20));
    assert_eq!(stats.status_counts.get(&401), Some(&1), "{stats:?}");
    assert_eq!(stats.token_requests, 2);
    assert_eq!(report.token_fetches, 1);
    assert_eq!(report.delivered, 10);
}

#[tokio::test]
async fn a_hundred_concurrent_sessions_share_one_token_request() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (relay, _) = relay(&config(&emulator, &[])).await;
    let mut tasks = Vec::new();
    for session in 0..100u64 {
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &relay,
                (session * 5..session * 5 + 5).map(|i| keeper_row(i, 50)),
            )
            .await
        }));
    }
    let mut delivered = 0;
    for task in tasks {
        delivered += task.await.unwrap().delivered;
    }
    assert_eq!(delivered, 500);
    assert_eq!(event_ids(&emulator), expected_ids(0..500));
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 1, "{stats:?}");
    assert_eq!(stats.ingestion_requests, 100);
}

#[tokio::test]
async fn an_expired_token_is_never_sent() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    // Tokens refreshed at half-life (2 s): a request never reaches the emulator with less
    // than that left, however loaded the machine.
    emulator.set_faults(Faults {
        token_lifetime_secs: Some(4),
        ..Faults::default()
    });
    let (relay, _) = relay(&config(&emulator, &[])).await;
    // Send back to back for 9 s of real time, more than two token lifetimes; token expiry is
    // real time on the client's side, so it is the one thing here that must pass, not be
    // waited on.
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < Duration::from_secs(9) {
        send(
            &relay,
            (rounds * 10..rounds * 10 + 10).map(|i| keeper_row(i, 50)),
        )
        .await;
        rounds += 1;
    }
    let stats = emulator.stats();
    assert_eq!(event_ids(&emulator), expected_ids(0..rounds * 10));
    assert_eq!(stats.expired_token_uses, 0, "{stats:?}");
    assert!(
        stats.token_requests >= 3,
        "tokens were refreshed: {stats:?}"
    );
    assert_eq!(stats.status_counts.get(&401), None);
}

#[tokio::test]
async fn a_forbidden_client_dead_letters_every_row_with_the_role_to_grant() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let (relay, dead) = relay(&config(&emulator, &[])).await;
    let report = send(&relay, (0..40).map(|i| keeper_row(i, 100))).await;
    assert!(emulator.rows().is_empty());
    assert_eq!(
        (report.delivered, report.dead_lettered, report.retries),
        (0, 40, 0)
    );
    let entries = dead.entries();
    let ids: BTreeSet<String> = entries
        .iter()
        .map(|e| {
            e.event.as_ref().unwrap()["EventId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, expected_ids(0..40));
    for entry in &entries {
        assert!(entry.reason.contains("403"), "{}", entry.reason);
        assert!(
            entry.reason.contains("Monitoring Metrics Publisher"),
            "{}",
            entry.reason
        );
        assert_eq!(entry.source, "e2e.ndjson");
    }
}

#[tokio::test]
async fn an_unknown_dcr_dead_letters_every_row_pointing_at_the_immutable_id() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let wrong = format!(
        "{}/dataCollectionRules/dcr-ffffffffffffffffffffffffffffffff/streams/Custom-KeeperAuditEvents",
        emulator.base_url().trim_end_matches('/')
    );
    let (relay, dead) = relay(&config(&emulator, &[("LOGS_INGESTION_ENDPOINT", &wrong)])).await;
    let report = send(&relay, (0..5).map(|i| keeper_row(i, 100))).await;
    assert_eq!(report.dead_lettered, 5);
    let reason = &dead.entries()[0].reason;
    assert!(reason.contains("404"), "{reason}");
    assert!(
        reason.contains("dcr-ffffffffffffffffffffffffffffffff"),
        "{reason}"
    );
    assert!(reason.contains("NotFound"), "{reason}");
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_the_rows_land() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults::scripted(&[azmon_emulator::DROP_CONNECTION]));
    let (relay, dead) = relay(&config(&emulator, &[])).await;
    let report = send(&relay, (0..20).map(|i| keeper_row(i, 100))).await;
    assert_eq!(event_ids(&emulator), expected_ids(0..20));
    assert_eq!((report.delivered, report.retries), (20, 1));
    assert!(dead.entries().is_empty());
}

#[tokio::test]
async fn an_outage_outlasting_the_attempts_fails_rows_for_the_platform_to_retry() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.set_faults(Faults::random_statuses(1.0, &[503], 0));
    let (relay, dead) = relay(&config(&emulator, &[("LOGRELAY_MAX_ATTEMPTS", "2")])).await;
    let mut session = relay.session(SessionOptions {
        deadline: Some(Instant::now() + Duration::from_secs(20)),
        transient: TransientPolicy::Fail,
    });
    for row in (0..30).map(|i| keeper_row(i, 100)) {
        session.push(row).await.unwrap();
    }
    let report = session.finish().await.unwrap();
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!((report.failed_transient, report.dead_lettered), (30, 0));
    assert_eq!(report.requests, 2);
    assert!(
        dead.entries().is_empty(),
        "failed rows are retried by the platform, not dead-lettered"
    );
    assert!(emulator.rows().is_empty());
}
