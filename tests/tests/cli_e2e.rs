//! The real `logrelay` binary against the in-process emulator: delivery counts, one token
//! for a whole run, exit codes, dead letters with reasons, and no secret in any output.

mod common;

use std::collections::HashSet;
use std::path::Path;

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use common::Run;
use serde_json::Value;

/// Runs `logrelay args` with only `env` (plus debug logging), in `dir`, feeding `stdin`.
async fn logrelay(
    args: &[&str],
    env: &[(String, String)],
    dir: &Path,
    stdin: Option<Vec<u8>>,
) -> Run {
    common::run_logrelay(args, env.to_vec(), Some(dir), stdin).await
}

/// Writes generated events with `logrelay generate`.
async fn generate(dir: &Path, file: &str, events: u64, shape: &str, seed: u64, extra: &[&str]) {
    let events = events.to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "generate", "--events", &events, "--shape", shape, "--seed", &seed, "--out", file,
    ];
    args.extend_from_slice(extra);
    let run = logrelay(&args, &[], dir, None).await;
    assert_eq!(run.code, 0, "generate failed: {}", run.stderr);
}

fn report_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("--json prints the report ({error}): {}", run.all_output()))
}

/// Every dead-letter line in `dir`.
fn dead_letters(dir: &Path) -> Vec<Value> {
    common::dead_letter_lines(dir)
}

/// No client secret and no JWT anywhere in `text`.
fn assert_no_secrets(text: &str, secret: &str, what: &str) {
    common::assert_no_secrets(text, &[secret], what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_100000_events_from_three_files_with_one_token_request() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "push.ndjson", 50_000, "push", 1, &[]).await;
    generate(
        dir.path(),
        "flat.json.gz",
        30_000,
        "flat",
        2,
        &["--gzip", "--array"],
    )
    .await;
    generate(dir.path(), "commander.json", 20_000, "commander", 3, &[]).await;

    let run = logrelay(
        &[
            "send",
            "--json",
            "push.ndjson",
            "flat.json.gz",
            "commander.json",
        ],
        &emulator.env(),
        dir.path(),
        None,
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    let report = report_of(&run);
    assert_eq!(report["events_in"], 100_000);
    assert_eq!(report["delivered"], 100_000);
    assert_eq!(report["dead_lettered"], 0);
    assert_eq!(report["token_fetches"], 1);
    let rows = emulator.rows();
    assert_eq!(rows.len(), 100_000);
    let ids: HashSet<&str> = rows
        .iter()
        .filter_map(|row| row["EventId"].as_str())
        .collect();
    assert_eq!(ids.len(), 100_000, "every row has its own EventId");
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 1, "one token for the whole run");
    assert_eq!(
        stats.accepted_requests,
        report["requests"].as_u64().unwrap()
    );
    assert!(
        !dir.path().join("logrelay-dead-letter").exists(),
        "the dead-letter directory is created only when needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reads_stdin_and_prints_a_summary() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 500, "push", 4, &[]).await;
    let input = std::fs::read(dir.path().join("events.ndjson")).unwrap();

    let run = logrelay(&["send", "-"], &emulator.env(), dir.path(), Some(input)).await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stdout
            .starts_with("logrelay send: 500 events in, 500 delivered, 0 dead-lettered\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 token fetches"), "{}", run.stdout);
    assert!(
        run.stdout.contains("events_in=500 delivered=500"),
        "{}",
        run.stdout
    );
    assert_eq!(emulator.rows().len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_principal_dead_letters_every_event_with_the_reason_and_exits_1() {
    let config = EmulatorConfig::default();
    let client_id = config.client_id.clone();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    emulator.set_faults(Faults {
        forbidden_clients: vec![client_id],
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 120, "push", 5, &[]).await;

    let run = logrelay(
        &["send", "--json", "--dead-letter", "dl", "events.ndjson"],
        &emulator.env(),
        dir.path(),
        None,
    )
    .await;

    assert_eq!(run.code, 1, "{}", run.all_output());
    let report = report_of(&run);
    assert_eq!(report["events_in"], 120);
    assert_eq!(report["delivered"], 0);
    assert_eq!(report["dead_lettered"], 120);
    assert!(emulator.rows().is_empty());
    let entries = dead_letters(&dir.path().join("dl"));
    assert_eq!(entries.len(), 120, "every event is in the dead letter");
    for entry in &entries {
        let reason = entry["reason"].as_str().unwrap();
        assert!(reason.contains("403"), "{reason}");
        assert_eq!(entry["source"], "events.ndjson");
        assert!(entry["event"]["audit_event"].is_string(), "{entry}");
        assert_no_secrets(&entry.to_string(), &secret, "a dead-letter entry");
    }
    assert_no_secrets(&run.all_output(), &secret, "send's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_with_their_line_and_the_rest_delivered() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "good.ndjson", 10, "push", 6, &[]).await;
    let mut text = std::fs::read_to_string(dir.path().join("good.ndjson")).unwrap();
    text.push_str("{\"audit_event\": \"login\", this is not json\n");
    std::fs::write(dir.path().join("mixed.ndjson"), text).unwrap();

    let run = logrelay(
        &["send", "--json", "--dead-letter", "dl", "mixed.ndjson"],
        &emulator.env(),
        dir.path(),
        None,
    )
    .await;

    assert_eq!(
        run.code,
        1,
        "not everything was delivered: {}",
        run.all_output()
    );
    let report = report_of(&run);
    assert_eq!(report["events_in"], 11);
    assert_eq!(report["delivered"], 10);
    assert_eq!(report["dead_lettered"], 1);
    let entries = dead_letters(&dir.path().join("dl"));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["record"], 11, "{}", entries[0]);
    assert!(!entries[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(emulator.rows().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_exits_2_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 3, "push", 7, &[]).await;

    let run = logrelay(&["send", "events.ndjson"], &[], dir.path(), None).await;

    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("AZURE_"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_file_with_a_valid_configuration_exits_2_and_names_the_file() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A configuration that works, so the missing file is what fails, not the settings.
    let missing_file = logrelay(&["send", "nope.ndjson"], &emulator.env(), dir.path(), None).await;

    assert_eq!(missing_file.code, 2, "{}", missing_file.all_output());
    assert!(
        missing_file.stderr.contains("nope.ndjson"),
        "{}",
        missing_file.stderr
    );
    assert!(emulator.rows().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_any_output_even_at_debug_level() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 50, "push", 8, &[]).await;
    let env = emulator.env();

    let mut outputs = Vec::new();
    for args in [
        &["doctor"][..],
        &["doctor", "--json"],
        &["token"],
        &["token", "--json"],
        &["send", "events.ndjson"],
    ] {
        let run = logrelay(args, &env, dir.path(), None).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.all_output());
        outputs.push((args.join(" "), run.all_output()));
    }
    // Failing runs print errors: still nothing secret.
    let mut wrong_secret = env.clone();
    for (name, value) in wrong_secret.iter_mut() {
        if name == "AZURE_CLIENT_SECRET" {
            *value = format!("{secret}-rotated");
        }
    }
    for args in [&["token"][..], &["send", "events.ndjson"], &["doctor"]] {
        let run = logrelay(args, &wrong_secret, dir.path(), None).await;
        assert_ne!(run.code, 0, "{args:?} with a wrong secret fails");
        outputs.push((
            format!("{} (wrong secret)", args.join(" ")),
            run.all_output(),
        ));
    }
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let run = logrelay(&["send", "events.ndjson"], &env, dir.path(), None).await;
    assert_eq!(run.code, 1);
    outputs.push(("send (forbidden)".into(), run.all_output()));

    for (what, output) in &outputs {
        assert!(
            output.contains("DEBUG") || what.starts_with("token"),
            "{what} ran at debug level"
        );
        assert_no_secrets(output, &secret, what);
    }

    // The check above can fail: `--show` does print a token, and it is a JWT.
    let shown = logrelay(&["token", "--show"], &env, dir.path(), None).await;
    assert_eq!(shown.code, 0);
    assert!(shown.stdout.contains("eyJ"), "{}", shown.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_shows_audience_tenant_app_and_expiry() {
    let config = EmulatorConfig::default();
    let (tenant, client) = (config.tenant_id.clone(), config.client_id.clone());
    let emulator = Emulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let run = logrelay(&["token", "--json"], &emulator.env(), dir.path(), None).await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    let facts: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(facts["audience"], "https://monitor.azure.com");
    assert_eq!(facts["tenant"], tenant.as_str());
    assert_eq!(facts["app_id"], client.as_str());
    assert!(facts["expires_in_secs"].as_u64().unwrap() > 60, "{facts}");
    assert!(facts.get("token").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_takes_time_generated_from_the_named_field() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 40, "push", 9, &[]).await;
    let sent: Vec<Value> = std::fs::read_to_string(dir.path().join("events.ndjson"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    let without_field = logrelay(
        &["send", "--schema", "passthrough", "events.ndjson"],
        &emulator.env(),
        dir.path(),
        None,
    )
    .await;
    assert_eq!(without_field.code, 2, "{}", without_field.all_output());
    assert!(without_field.stderr.contains("--time-field"));

    let run = logrelay(
        &[
            "send",
            "--schema",
            "passthrough",
            "--time-field",
            "timestamp",
            "events.ndjson",
        ],
        &emulator.env(),
        dir.path(),
        None,
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    let rows = emulator.rows();
    assert_eq!(rows.len(), 40);
    // Passthrough rows keep every field as sent: paired by the event's time, user and type.
    let rows = common::in_order_of(rows, &sent, |value| {
        format!(
            "{}|{}|{}",
            value["timestamp"], value["username"], value["audit_event"]
        )
    });
    for (row, event) in rows.iter().zip(&sent) {
        let stored: chrono::DateTime<chrono::Utc> =
            row["TimeGenerated"].as_str().unwrap().parse().unwrap();
        let original: chrono::DateTime<chrono::Utc> =
            event["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored, original);
        assert_eq!(row["audit_event"], event["audit_event"]);
    }
}
