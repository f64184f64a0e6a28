//! Outages longer than the deadline: the CLI dead-letters, the Lambda functions fail so the
//! platform retries.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use serde_json::json;

use crate::common;
use crate::harness::*;

/// The deadline in the outage scenarios: short, so retries give up within the test, yet long
/// enough on two loaded cores for the first requests to be sent and refused.
const OUTAGE_DEADLINE_SECS: &str = "20";

/// The functions' deadline during the Lambda outage: the outage outlasts it.
const LAMBDA_OUTAGE_DEADLINE_SECS: &str = "5";

/// The functions' deadline once the service is back: ample for 6,000 events on loaded cores,
/// and within the test's invocation timeout.
const LAMBDA_RECOVERY_DEADLINE_SECS: &str = "60";

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
        env_with(
            &emulator,
            &[("LOGRELAY_DEADLINE_SECS", OUTAGE_DEADLINE_SECS)],
        ),
        dir.path(),
        Stdin::Null,
    )
    .await;

    run.assert_no_panic("send during an outage");
    let entries = dead_letters(&dir.path().join("dl"));
    let dead = dead_letter_event_ids(&entries);
    let table = table_counts(&emulator);
    let lost = lost(&expected, &table, &dead);
    let stats = settled(&emulator).await;
    record(&Outcome {
        id: "30-cli-outage",
        scenario: "Outage longer than the deadline (TransientPolicy::DeadLetter)",
        path: "logrelay send",
        injected:
            "every ingestion request answered 503 (Retry-After 1 s); LOGRELAY_DEADLINE_SECS=20",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_the_lambda_functions_fail_so_the_platform_retries_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = common::start_moto(dir.path()).await;
    let env = common::function_env(&emulator, &moto).await;
    let with_deadline = |secs: &str| {
        let mut env = env.clone();
        env.push(("LOGRELAY_DEADLINE_SECS".into(), secs.into()));
        env
    };
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
    let outage_env = with_deadline(LAMBDA_OUTAGE_DEADLINE_SECS);
    let s3 = common::start_function("s3-forwarder", &outage_env, dir.path()).await;
    let sqs = common::start_function("sqs-forwarder", &outage_env, dir.path()).await;
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
    // The platform retries on a fresh container: the failed ones are gone, and with them any
    // retry they still had pending (a frozen container would not run it either). Counted once
    // the emulator holds nothing from them.
    drop((s3, sqs));
    let refused = settled(&emulator).await.ingestion_requests;
    let recovery_env = with_deadline(LAMBDA_RECOVERY_DEADLINE_SECS);
    let s3 = common::start_function("s3-forwarder", &recovery_env, dir.path()).await;
    let sqs = common::start_function("sqs-forwarder", &recovery_env, dir.path()).await;

    // The service is back: the platform's retries deliver everything.
    emulator.set_faults(Faults::none());
    let (status, answer) = s3
        .invoke_within(
            &common::s3_notice("keeper/outage-direct.ndjson.gz"),
            timeout,
        )
        .await;
    assert!(
        !common::invocation_failed(status, &answer),
        "{answer}\n{}",
        tail(&s3.binary.output())
    );
    let (status, answer) = sqs.invoke_within(&event, timeout).await;
    assert_eq!(status, 200, "{answer}\n{}", tail(&sqs.binary.output()));
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
            injected: "every ingestion request answered 503 for the first invocation (LOGRELAY_DEADLINE_SECS=5), then service restored and the invocation retried on a fresh container (deadline 60 s)",
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
