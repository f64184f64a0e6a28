//! `logrelay doctor` against the emulator set up to fail in each way people hit: the step
//! that fails, the fix it names and the portal step; all ✓ when everything is right; and no
//! secret or token in anything it prints.

mod common;

use azmon_emulator::{Emulator, EmulatorConfig, Faults};
use common::Run;
use serde_json::Value;

/// Runs `logrelay args` with only `env`, at debug log level.
async fn logrelay(args: &[&str], env: Vec<(String, String)>) -> Run {
    common::run_logrelay(args, env, None, None).await
}

/// The emulator's environment with `name` replaced (or removed when `value` is `None`).
fn env_with(emulator: &Emulator, name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = emulator
        .env()
        .into_iter()
        .filter(|(key, _)| key != name)
        .collect();
    if let Some(value) = value {
        env.push((name.to_string(), value.to_string()));
    }
    env
}

fn endpoint(emulator: &Emulator) -> String {
    emulator.ingestion_endpoint()
}

/// Runs `doctor --json` and `doctor`, checks they agree and hide secrets, returns the steps.
/// The secret scanned for is the one configured in `env` (what doctor was given and could
/// leak), as well as the emulator's `secret` (what a token request could echo).
async fn doctor(env: Vec<(String, String)>, secret: &str) -> (i32, Vec<Value>, String) {
    let configured = env
        .iter()
        .find(|(name, _)| name == "AZURE_CLIENT_SECRET")
        .map(|(_, value)| value.clone());
    let mut secrets = vec![secret];
    secrets.extend(configured.as_deref());
    let json = logrelay(&["doctor", "--json"], env.clone()).await;
    let human = logrelay(&["doctor"], env).await;
    assert_eq!(json.code, human.code);
    for output in [&json.stdout, &json.stderr, &human.stdout, &human.stderr] {
        common::assert_no_secrets(output, &secrets, "doctor's output");
    }
    let value: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|error| panic!("doctor --json ({error}): {}", json.stdout));
    assert_eq!(value["ok"], json.code == 0);
    let steps = value["steps"].as_array().expect("steps").clone();
    assert_eq!(steps.len(), 5);
    (json.code, steps, human.stdout)
}

/// Asserts exactly `name` failed, earlier steps passed, later ones were skipped, and the fix
/// and portal step mention `fix_words` and `portal_words`.
fn assert_fails_at(
    code: i32,
    steps: &[Value],
    name: &str,
    fix_words: &[&str],
    portal_words: &str,
) -> Value {
    assert_eq!(code, 1, "doctor exits non-zero when a step fails");
    let index = steps
        .iter()
        .position(|step| step["status"] == "failed")
        .unwrap_or_else(|| panic!("no step failed: {steps:?}"));
    let failed = &steps[index];
    assert_eq!(failed["name"], name, "{failed}");
    assert!(steps[..index].iter().all(|step| step["status"] == "ok"));
    assert!(steps[index + 1..]
        .iter()
        .all(|step| step["status"] == "skipped"));
    let fix = failed["fix"].as_str().unwrap_or_default();
    for word in fix_words {
        assert!(fix.contains(word), "fix lacks {word:?}: {fix}");
    }
    let portal = failed["portal"].as_str().unwrap_or_default();
    assert!(
        portal.contains(portal_words),
        "portal lacks {portal_words:?}: {portal}"
    );
    failed.clone()
}

fn probe_rows(emulator: &Emulator) -> Vec<Value> {
    emulator
        .rows()
        .into_iter()
        .filter(|row| row["audit_event"] == "logrelay_doctor_probe")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_right_gives_five_ticks_exit_0_and_one_marked_probe_row() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();

    let (code, steps, human) = doctor(emulator.env(), &secret).await;

    assert_eq!(code, 0, "{human}");
    assert!(steps.iter().all(|step| step["status"] == "ok"), "{steps:?}");
    // One line per step; notes are indented under their step.
    let lines: Vec<&str> = human
        .lines()
        .filter(|line| !line.starts_with(' '))
        .collect();
    for number in 1..=5 {
        assert!(
            lines[number - 1].starts_with(&format!("✓ {number}. ")),
            "{human}"
        );
    }
    assert_eq!(lines[5], "All checks passed: logrelay can deliver events.");
    assert!(steps[4]["detail"].as_str().unwrap().starts_with("204"));
    let probes = probe_rows(&emulator);
    assert_eq!(
        probes.len(),
        2,
        "one probe event per doctor run (json + human)"
    );
    for probe in probes {
        assert!(probe["EventId"]
            .as_str()
            .unwrap()
            .starts_with("logrelay-doctor-"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_token_step_and_asks_for_the_secret_value() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    // A Secret ID (a GUID) pasted where the Value belongs.
    let env = env_with(
        &emulator,
        "AZURE_CLIENT_SECRET",
        Some("8d1e6f0a-3b2c-4d5e-9f8a-7b6c5d4e3f2a"),
    );

    let (code, steps, human) = doctor(env, &secret).await;

    let failed = assert_fails_at(
        code,
        &steps,
        "token",
        &["AADSTS7000215", "Value", "Secret ID"],
        "Certificates & secrets",
    );
    assert!(failed["detail"].as_str().unwrap().contains("AADSTS7000215"));
    assert!(human.contains("✗ 4. "), "{human}");
    assert!(human.contains("- 5. "), "{human}");
    assert!(
        probe_rows(&emulator).is_empty(),
        "no probe after a failed token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_client_fails_the_token_step_naming_the_client_id() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let env = env_with(
        &emulator,
        "AZURE_CLIENT_ID",
        Some("11111111-2222-4333-8444-555555555555"),
    );

    let (code, steps, _) = doctor(env, &secret).await;

    assert_fails_at(
        code,
        &steps,
        "token",
        &["AADSTS700016", "AZURE_CLIENT_ID"],
        "App registrations",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_fails_the_token_step_naming_tenant_and_cloud() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let env = env_with(
        &emulator,
        "AZURE_TENANT_ID",
        Some("99999999-8888-4777-8666-555555555555"),
    );

    let (code, steps, _) = doctor(env, &secret).await;

    assert_fails_at(
        code,
        &steps,
        "token",
        &["AADSTS90002", "AZURE_TENANT_ID", "AZURE_CLOUD"],
        "Directory (tenant) ID",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_the_role_fails_the_probe_with_403_and_the_role_to_grant() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });

    let (code, steps, human) = doctor(emulator.env(), &secret).await;

    let failed = assert_fails_at(
        code,
        &steps,
        "ingestion",
        &["403", "Monitoring Metrics Publisher", "30 minutes"],
        "Access control (IAM)",
    );
    assert!(failed["detail"].as_str().unwrap().contains("403"));
    assert!(
        human.contains("✓ 4. ") && human.contains("✗ 5. "),
        "{human}"
    );
    assert!(emulator.rows().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dcr_fails_the_probe_with_404_and_names_the_immutable_id() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let dcr = config.dcr_id.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let url = endpoint(&emulator).replace(&dcr, "dcr-00000000000000000000000000000000");
    let env = env_with(&emulator, "LOGS_INGESTION_ENDPOINT", Some(&url));

    let (code, steps, _) = doctor(env, &secret).await;

    assert_fails_at(
        code,
        &steps,
        "ingestion",
        &["404", "immutable id"],
        "JSON View",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_stream_fails_the_probe_and_names_the_stream_declarations() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let url = endpoint(&emulator).replace(
        "/streams/Custom-KeeperAuditEvents",
        "/streams/Custom-KeeperEvents",
    );
    assert_ne!(url, endpoint(&emulator), "the default stream is in the URL");
    let env = env_with(&emulator, "LOGS_INGESTION_ENDPOINT", Some(&url));

    let (code, steps, _) = doctor(env, &secret).await;

    assert_fails_at(
        code,
        &steps,
        "ingestion",
        &["404", "streamDeclarations"],
        "JSON View",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_name_in_the_url_fails_the_endpoint_step_before_any_network_call() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let dcr = config.dcr_id.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let url = endpoint(&emulator).replace(&dcr, "KeeperSecurityEventLogs_DCR");
    let env = env_with(&emulator, "LOGS_INGESTION_ENDPOINT", Some(&url));

    let (code, steps, _) = doctor(env, &secret).await;

    assert_fails_at(code, &steps, "endpoint", &["immutableId"], "Endpoint URL");
    assert_eq!(emulator.stats().token_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_fails_the_configuration_step_by_name() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let env = env_with(&emulator, "AZURE_TENANT_ID", None);

    let (code, steps, _) = doctor(env, &secret).await;

    let failed = assert_fails_at(
        code,
        &steps,
        "configuration",
        &["AZURE_TENANT_ID"],
        "Keeper guide",
    );
    assert!(!failed["detail"]
        .as_str()
        .unwrap()
        .contains("AZURE_CLIENT_ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_authority_fails_the_network_step() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    // A port nothing listens on: bind one, note it, free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = env_with(
        &emulator,
        "AZURE_AUTHORITY_HOST",
        Some(&format!("http://127.0.0.1:{port}")),
    );

    let (code, steps, _) = doctor(env, &secret).await;

    let failed = assert_fails_at(code, &steps, "network", &["reachable"], "outbound HTTPS");
    assert!(
        failed["detail"].as_str().unwrap().contains("Entra ID"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_identity_configuration_passes_every_step() {
    let config = EmulatorConfig::default();
    let header = config.identity_header.clone();
    let emulator = Emulator::start(config).await.unwrap();

    let (code, steps, human) = doctor(emulator.identity_env(), &header).await;

    assert_eq!(code, 0, "{human}");
    assert!(steps[0]["detail"]
        .as_str()
        .unwrap()
        .contains("managed identity"));
    assert!(steps[2]["detail"]
        .as_str()
        .unwrap()
        .contains("identity endpoint"));
    assert_eq!(probe_rows(&emulator).len(), 2);
}
