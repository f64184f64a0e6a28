//! The secretless credentials end to end, against the emulator's STS and Entra (their checks
//! follow Microsoft's and AWS's documents: docs/emulator-facts.md):
//!
//! - the s3-forwarder deployed with `EntraCredential=AwsFederation`, running with its
//!   template role's moto credentials under IAM enforcement (as aws_e2e.rs runs it) and no
//!   client secret anywhere, gets its token through STS `GetWebIdentityToken` and a federated
//!   identity credential, and delivers an export; Entra counts zero client-secret grants;
//! - a wrong subject and a wrong audience fail with their AADSTS code and a fix naming the
//!   federated credential;
//! - a certificate (`AZURE_CLIENT_CERTIFICATE_PATH`) and a federated token file
//!   (`AZURE_FEDERATED_TOKEN_FILE`) each deliver through `logrelay send`.
//!
//! No test output may show an assertion, a JWT or the private key.
//!
//! Needs `scripts/tools.sh aws` (moto, cargo-lambda) and the binaries built
//! (`cargo build --workspace`, as `make test` does).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use azmon_emulator::{
    Emulator, EmulatorConfig, FederatedCredential, ENTRA_TOKEN_EXCHANGE_AUDIENCE,
};
use common::iam::{self, allows, put, s3_notice, Stack, ACCOUNT, AWS_FEDERATION};
use common::{assert_no_secrets, start_function, Moto, BUCKET, DEAD_LETTER_BUCKET, INVOKE_TIMEOUT};
use serde_json::json;

const HTTP_TOKEN: &str = "federation-e2e-http-token";

/// The Kubernetes-style subject of the federated token file tests.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:keeper:logrelay";

/// Keeper events as NDJSON lines, usernames tagged `tag`.
fn keeper_lines(tag: &str, count: usize) -> String {
    let now = chrono::Utc::now();
    (0..count)
        .map(|i| {
            json!({
                "audit_event": "login",
                "category": "login",
                "client_version": "Web Vault 17.0.4",
                "enterprise_id": 3141592,
                "remote_address": "198.51.100.7",
                "timestamp": (now - chrono::Duration::seconds(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "username": format!("{tag}-{i}@acme-corp.example"),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// The emulator's Azure settings without the client secret, plus `extra`.
fn secretless_env(emulator: &Emulator, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = emulator
        .env()
        .into_iter()
        .filter(|(key, _)| key != "AZURE_CLIENT_SECRET")
        .collect();
    env.extend(
        extra
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone())),
    );
    env
}

fn rows_tagged(emulator: &Emulator, tag: &str) -> usize {
    let prefix = format!("{tag}-");
    emulator
        .rows()
        .iter()
        .filter(|row| {
            row["username"]
                .as_str()
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .count()
}

/// The s3-forwarder's environment under `EntraCredential=AwsFederation`: the template's
/// variables with its role's credentials, moto for S3/SQS, the emulator for STS and Entra,
/// and no client secret or secret ARN at all. The role is registered as the STS caller only
/// if the template lets it call `sts:GetWebIdentityToken`.
async fn federated_s3_forwarder(
    emulator: &Emulator,
    moto: &Moto,
) -> (Stack, Vec<(String, String)>, String) {
    for bucket in [BUCKET, DEAD_LETTER_BUCKET] {
        moto.s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let stack = Stack::deploy_as(moto, AWS_FEDERATION, "(no client secret)", HTTP_TOKEN).await;
    let globals = &stack.template.json["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["LOGRELAY_AWS_FEDERATION"], "true");
    let base = secretless_env(
        emulator,
        &[
            ("AWS_ENDPOINT_URL", moto.url.clone()),
            ("AWS_ENDPOINT_URL_STS", emulator.sts_endpoint()),
            ("AWS_REGION", iam::REGION.to_string()),
            ("LOGRELAY_AWS_FEDERATION", "true".to_string()),
            ("LOGRELAY_DEADLINE_SECS", "30".to_string()),
        ],
    );
    let env = stack.function_env(&base, "s3-forwarder");
    for (key, _) in &env {
        assert!(
            !key.starts_with("AZURE_CLIENT_SECRET"),
            "{key} is set: the federated function must have no secret"
        );
    }
    let role_id = stack
        .template
        .function_role(&stack.template.function_for_binary("s3-forwarder"));
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role_id}");
    let role = stack.role_of("s3-forwarder");
    assert!(
        role.policies
            .iter()
            .any(|(_, document)| allows(document, "sts:GetWebIdentityToken", "*")),
        "the template does not let {role_id} call sts:GetWebIdentityToken"
    );
    emulator.allow_sts_caller(&role.keys.access_key_id, &role_arn);
    (stack, env, role_arn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_forwarder_with_aws_federation_and_no_secret_anywhere_delivers_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env, role_arn) = federated_s3_forwarder(&emulator, &moto).await;
    emulator.add_federated_credential(FederatedCredential::new(emulator.aws_issuer(), &role_arn));
    let function = start_function("s3-forwarder", &env, dir.path()).await;

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(keeper_lines("federated", 50).as_bytes())
        .unwrap();
    let key = "keeper/2026/12/01/federated.ndjson.gz";
    let version = put(&moto, key, gzip.finish().unwrap(), None).await;
    let (event, _) = stack
        .sqs_event(
            &moto,
            "ExportQueue",
            "s3-forwarder",
            &[s3_notice(key, &version).to_string()],
        )
        .await;
    let (status, answer) = function.invoke(&event).await;
    let log = function.binary.output();
    assert_eq!(status, 200, "{answer}\n{log}");
    assert!(answer.get("errorType").is_none(), "{answer}\n{log}");
    assert_eq!(
        emulator.wait_for_rows(50, INVOKE_TIMEOUT).await,
        50,
        "{answer}\n{log}"
    );
    assert_eq!(rows_tagged(&emulator, "federated"), 50);

    let stats = emulator.stats();
    assert_eq!(stats.client_secret_grants, 0, "{stats:?}");
    assert!(stats.sts_web_identity_tokens >= 1, "{stats:?}");
    assert!(stats.federated_assertion_grants >= 1, "{stats:?}");
    assert_no_secrets(
        &log,
        &[&emulator.config().client_secret],
        "the function's log",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_forwarder_whose_role_is_not_the_federated_subject_fails_with_aadsts700213_and_the_fix(
) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let moto = iam::start_moto(dir.path()).await;
    let (stack, env, _) = federated_s3_forwarder(&emulator, &moto).await;
    emulator.add_federated_credential(FederatedCredential::new(
        emulator.aws_issuer(),
        format!("arn:aws:iam::{ACCOUNT}:role/SomeOtherRole"),
    ));
    let function = start_function("s3-forwarder", &env, dir.path()).await;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(keeper_lines("wrong-subject", 3).as_bytes())
        .unwrap();
    let key = "keeper/2026/12/01/wrong-subject.ndjson.gz";
    let version = put(&moto, key, gzip.finish().unwrap(), None).await;
    let (event, _) = stack
        .sqs_event(
            &moto,
            "ExportQueue",
            "s3-forwarder",
            &[s3_notice(key, &version).to_string()],
        )
        .await;
    let _ = function.invoke(&event).await;
    let log = function.binary.output();
    assert!(log.contains("AADSTS700213"), "{log}");
    assert!(
        log.contains("federated identity credential's subject"),
        "{log}"
    );
    assert_eq!(rows_tagged(&emulator, "wrong-subject"), 0);
    assert_eq!(emulator.stats().client_secret_grants, 0);
    assert_no_secrets(&log, &[], "the function's log");
}

/// `logrelay send` of a few events with `env`, in `dir`.
async fn send(dir: &Path, env: Vec<(String, String)>, tag: &str) -> common::Run {
    let file = dir.join(format!("{tag}.ndjson"));
    std::fs::write(&file, keeper_lines(tag, 5)).unwrap();
    common::run_logrelay(&["send", file.to_str().unwrap()], env, Some(dir), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_delivers_through_logrelay_send_without_showing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (cert_pem, key_pem) = azmon_emulator::test_certificate();
    emulator.add_certificate(&cert_pem);
    let path = dir.path().join("logrelay-cert.pem");
    std::fs::write(&path, format!("{cert_pem}{key_pem}")).unwrap();
    let env = secretless_env(
        &emulator,
        &[("AZURE_CLIENT_CERTIFICATE_PATH", path.display().to_string())],
    );
    let run = send(dir.path(), env, "certificate").await;
    let output = run.all_output();
    assert_eq!(run.code, 0, "{output}");
    assert_eq!(rows_tagged(&emulator, "certificate"), 5, "{output}");
    let stats = emulator.stats();
    assert_eq!(stats.client_secret_grants, 0, "{stats:?}");
    assert!(stats.certificate_assertion_grants >= 1, "{stats:?}");
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert_no_secrets(&output, &key_lines, "logrelay send's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_token_file_delivers_through_logrelay_send() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.add_federated_credential(FederatedCredential::new(
        emulator.external_issuer(),
        SERVICE_ACCOUNT,
    ));
    let token = emulator.mint_external_token(SERVICE_ACCOUNT, ENTRA_TOKEN_EXCHANGE_AUDIENCE, 600);
    let path = dir.path().join("azure-identity-token");
    std::fs::write(&path, &token).unwrap();
    let env = secretless_env(
        &emulator,
        &[("AZURE_FEDERATED_TOKEN_FILE", path.display().to_string())],
    );
    let run = send(dir.path(), env, "token-file").await;
    let output = run.all_output();
    assert_eq!(run.code, 0, "{output}");
    assert_eq!(rows_tagged(&emulator, "token-file"), 5, "{output}");
    let stats = emulator.stats();
    assert_eq!(stats.client_secret_grants, 0, "{stats:?}");
    assert!(stats.federated_assertion_grants >= 1, "{stats:?}");
    assert_no_secrets(&output, &[&token], "logrelay send's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_subject_and_a_wrong_audience_each_fail_with_their_code_and_a_fix_naming_the_federated_credential(
) {
    // (registered subject, registered audience, code, what the fix names)
    let cases = [
        (
            "system:serviceaccount:keeper:someone-else",
            ENTRA_TOKEN_EXCHANGE_AUDIENCE,
            "AADSTS700213",
            "federated credential's subject",
        ),
        (
            SERVICE_ACCOUNT,
            "api://SomeOtherAudience",
            "AADSTS700212",
            "federated credential's audience",
        ),
    ];
    for (subject, audience, code, fix) in cases {
        let dir = tempfile::tempdir().unwrap();
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        emulator.add_federated_credential(
            FederatedCredential::new(emulator.external_issuer(), subject).with_audience(audience),
        );
        let token =
            emulator.mint_external_token(SERVICE_ACCOUNT, ENTRA_TOKEN_EXCHANGE_AUDIENCE, 600);
        let path = dir.path().join("azure-identity-token");
        std::fs::write(&path, &token).unwrap();
        let env = secretless_env(
            &emulator,
            &[("AZURE_FEDERATED_TOKEN_FILE", path.display().to_string())],
        );
        let run = common::run_logrelay(&["token"], env, Some(dir.path()), None).await;
        let output = run.all_output();
        assert_eq!(run.code, 1, "{output}");
        assert!(output.contains(code), "{code}: {output}");
        assert!(output.contains(fix), "{code}: {output}");
        assert!(
            output.contains("credential: federated token file"),
            "{output}"
        );
        assert_no_secrets(&output, &[&token], "logrelay token's output");
        assert_eq!(emulator.stats().client_secret_grants, 0);
        tokio::time::timeout(Duration::from_secs(30), emulator.shutdown())
            .await
            .unwrap();
    }
}
