//! doctor's steps, each checked without a network where it can be.
use std::collections::HashMap;

use super::*;
use base64::Engine;
use serde_json::json;

use crate::ingest::retry::AzureError;

const GOOD: &str = "https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-KeeperAuditEvents?api-version=2023-01-01";

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const CREDENTIALS: [(&str, &str); 3] = [
    ("AZURE_TENANT_ID", "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f"),
    ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
    ("AZURE_CLIENT_SECRET", "Abc8Q~not-a-real-secret"),
];

/// Steps 1 and 2 for `url` with a complete client-secret configuration.
fn settings_steps(url: &str) -> Vec<Step> {
    let mut pairs = CREDENTIALS.to_vec();
    pairs.push(("LOGS_INGESTION_ENDPOINT", url));
    match check_settings(&lookup(&pairs)) {
        Ok((_, steps)) | Err(steps) => steps,
    }
}

/// The endpoint step's fix for `url`, which must fail at step 2.
fn endpoint_problem(url: &str) -> String {
    let steps = settings_steps(url);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[1].status, Status::Failed, "{url}: {steps:?}");
    assert_eq!(steps[1].portal, Some(portal::ENDPOINT_URL));
    steps[1].fix.clone().unwrap_or_default()
}

#[test]
fn a_correct_endpoint_url_has_no_problems() {
    let steps = settings_steps(GOOD);
    assert!(
        steps.iter().all(|step| step.status == Status::Ok),
        "{steps:?}"
    );
    assert!(steps[1]
        .detail
        .contains("dcr-0123456789abcdef0123456789abcdef"));
    assert!(steps[1].detail.contains("Custom-KeeperAuditEvents"));
    assert!(steps[1].notes.is_empty(), "{steps:?}");
}

#[test]
fn the_configuration_access_endpoint_is_named_as_the_wrong_endpoint() {
    let fix = endpoint_problem(&GOOD.replace(".ingest.", ".handler.control."));
    assert!(fix.contains("configuration access URL"), "{fix}");
}

#[test]
fn a_rule_name_instead_of_the_immutable_id_is_named() {
    let fix = endpoint_problem(&GOOD.replace("dcr-0123456789abcdef0123456789abcdef", "KeeperDCR"));
    assert!(
        fix.contains("immutableId") && fix.contains("KeeperDCR"),
        "{fix}"
    );
}

#[test]
fn a_stream_without_the_custom_prefix_is_named() {
    let fix = endpoint_problem(&GOOD.replace("Custom-KeeperAuditEvents", "KeeperAuditEvents"));
    assert!(fix.contains("Custom-KeeperAuditEvents"), "{fix}");
}

#[test]
fn a_wrong_api_version_and_a_missing_path_are_named() {
    let fix = endpoint_problem(&GOOD.replace("2023-01-01", "2021-11-01-preview"));
    assert!(
        fix.contains("2021-11-01-preview") && fix.contains("2023-01-01"),
        "{fix}"
    );
    let fix = endpoint_problem("https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com");
    assert!(fix.contains("/dataCollectionRules/"), "{fix}");
}

#[test]
fn plain_http_is_a_problem_except_to_loopback() {
    let fix = endpoint_problem(&GOOD.replace("https://", "http://"));
    assert!(fix.contains("https://"), "{fix}");
    let local = "http://127.0.0.1:8080/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-KeeperAuditEvents";
    assert!(settings_steps(local)
        .iter()
        .all(|step| step.status == Status::Ok));
}

#[test]
fn missing_variables_are_listed_by_name() {
    let missing = missing_variables(&lookup(&[("AZURE_CLIENT_ID", "x")]));
    let text = missing.join(" ");
    assert!(text.contains("AZURE_TENANT_ID"));
    assert!(text.contains("AZURE_CLIENT_SECRET"));
    assert!(text.contains("LOGS_INGESTION_ENDPOINT"));
    assert!(!text.contains("AZURE_CLIENT_ID"));
    let with_identity = missing_variables(&lookup(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
        ("IDENTITY_HEADER", "h"),
        ("LOGS_INGESTION_ENDPOINT", GOOD),
    ]));
    assert!(with_identity.is_empty(), "{with_identity:?}");
}

#[test]
fn the_endpoint_can_be_assembled_from_three_parts() {
    let mut pairs = CREDENTIALS.to_vec();
    pairs.extend([
        (
            "LOGS_INGESTION_DCE",
            "https://keeper-dce-a1b2.eastus-1.ingest.monitor.azure.com/",
        ),
        (
            "LOGS_INGESTION_DCR_ID",
            "dcr-0123456789abcdef0123456789abcdef",
        ),
        ("LOGS_INGESTION_STREAM", "Custom-KeeperAuditEvents"),
    ]);
    let (config, steps) = check_settings(&lookup(&pairs)).unwrap();
    assert_eq!(config.endpoint.upload_url().as_str(), GOOD);
    assert_eq!(steps[1].status, Status::Ok);
}

fn token_error(code: &str, advice: &str) -> Error {
    Error::Token {
        code: code.into(),
        advice: advice.into(),
        permanent: true,
    }
}

#[test]
fn each_aadsts_code_is_explained_with_its_portal_step() {
    let secret_id = explain_token_error(&token_error(
        "AADSTS7000215",
        "Invalid client secret provided.",
    ));
    assert!(secret_id.fix.contains("Value") && secret_id.fix.contains("Secret ID"));
    assert_eq!(secret_id.portal, portal::CLIENT_SECRET);
    let expired = explain_token_error(&token_error("invalid_client", "AADSTS7000222: expired"));
    assert!(expired.fix.contains("expired"));
    let unknown_app =
        explain_token_error(&token_error("AADSTS700016", "not found in the directory"));
    assert!(unknown_app.fix.contains("AZURE_CLIENT_ID"));
    assert_eq!(unknown_app.portal, portal::APP_REGISTRATION);
    let tenant = explain_token_error(&token_error("AADSTS90002", "Tenant not found"));
    assert!(tenant.fix.contains("AZURE_TENANT_ID") && tenant.fix.contains("AZURE_CLOUD"));
    // A longer code is not mistaken for a shorter one.
    let other = explain_token_error(&token_error("AADSTS7000160", "something else"));
    assert!(!other.fix.contains("AADSTS700016:"), "{other:?}");
}

#[test]
fn each_ingestion_status_is_explained() {
    let azure = |code: &str, message: &str| AzureError {
        code: Some(code.into()),
        message: Some(message.into()),
    };
    let dcr = "dcr-0123456789abcdef0123456789abcdef";
    let forbidden = explain_ingestion_status(403, &azure("OperationFailed", "no access"), dcr);
    assert!(
        forbidden.fix.contains("Monitoring Metrics Publisher")
            && forbidden.fix.contains("30 minutes")
    );
    assert_eq!(forbidden.portal, portal::ROLE_ASSIGNMENT);
    let not_found = explain_ingestion_status(
        404,
        &azure(
            "NotFound",
            "Data collection rule with immutable Id 'x' not found.",
        ),
        dcr,
    );
    assert!(not_found.fix.contains("immutable id") && not_found.fix.contains("stream"));
    let no_stream = explain_ingestion_status(
        404,
        &azure("InvalidStream", "Stream 'Custom-X' is not declared"),
        dcr,
    );
    assert!(
        no_stream.fix.contains("streamDeclarations") && !no_stream.fix.contains("immutable id")
    );
    assert!(explain_ingestion_status(401, &AzureError::default(), dcr)
        .fix
        .contains("AZURE_CLOUD"));
    assert!(
        explain_ingestion_status(413, &azure("ContentLengthLimitExceeded", ""), dcr)
            .fix
            .starts_with("HTTP 413")
    );
    let busy = explain_ingestion_status(503, &AzureError::default(), dcr);
    assert!(busy.fix.contains("run doctor again") && busy.portal == portal::NETWORK);
}

#[test]
fn the_status_is_read_from_the_relays_reason() {
    assert_eq!(
        http_status_in("HTTP 403 (OperationFailed: x): grant"),
        Some(403)
    );
    assert_eq!(
        http_status_in("retries exhausted after 1 attempts; last error: HTTP 429 TooManyRequests"),
        Some(429)
    );
    assert_eq!(http_status_in("connection refused"), None);
}

#[test]
fn jwt_claims_are_read_from_the_middle_part() {
    let claims = json!({"aud": "https://monitor.azure.com", "tid": "t", "appid": "a", "exp": 1});
    let middle = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let token = format!("eyJhbGciOiJub25lIn0.{middle}.c2ln");
    assert_eq!(jwt_claims(&token).unwrap(), claims);
    assert!(jwt_claims("not-a-jwt").is_none());
}

#[test]
fn the_probe_row_is_marked_and_has_exactly_the_table_columns() {
    let row = probe_row(chrono::Utc::now());
    assert!(probe_columns_match_schema(&row), "{row}");
    assert_eq!(row["audit_event"], PROBE_AUDIT_EVENT);
    assert!(row["EventId"]
        .as_str()
        .unwrap()
        .starts_with(PROBE_EVENT_ID_PREFIX));
}

#[test]
fn later_steps_are_skipped_after_a_failure_and_the_render_names_the_fix() {
    let diagnosis = Diagnosis::from_steps(vec![Step::failed(
        1,
        "missing: AZURE_TENANT_ID",
        "set AZURE_TENANT_ID",
        portal::APP_REGISTRATION,
    )]);
    assert!(!diagnosis.ok);
    assert_eq!(diagnosis.steps.len(), 5);
    assert!(diagnosis.steps[1..]
        .iter()
        .all(|s| s.status == Status::Skipped));
    let text = diagnosis.render();
    assert!(text.starts_with("✗ 1. Configuration parsed: missing: AZURE_TENANT_ID\n"));
    assert!(text.contains("fix: set AZURE_TENANT_ID"));
    assert!(text.contains("where: Keeper guide"));
    assert!(text.contains("- 5. Probe ingestion call"));
}

#[tokio::test]
async fn missing_configuration_fails_the_first_step_without_network() {
    let provider = |_: &Config, _: &reqwest::Client| -> crate::Result<Arc<dyn TokenProvider>> {
        panic!("no token request when configuration is missing")
    };
    let diagnosis = diagnose(&lookup(&[]), &provider, Duration::from_millis(100)).await;
    assert_eq!(diagnosis.failed_step().unwrap().name, "configuration");
}

#[test]
fn each_federation_failure_is_named_with_its_fix() {
    let sts = |reason: &str| crate::Error::Aws {
        service: "STS",
        operation: "GetWebIdentityToken",
        reason: reason.into(),
        transient: false,
    };
    // (error, what the fix says, portal step)
    let cases = [
        (
            sts("service error: OutboundWebIdentityFederationDisabledException: The outbound web identity federation feature is not enabled for this account"),
            "aws iam enable-outbound-web-identity-federation",
            portal::AWS_FEDERATION,
        ),
        (
            sts("service error: AccessDenied: User: arn:aws:sts::1:assumed-role/R/s is not authorized to perform: sts:GetWebIdentityToken"),
            "sts:IdentityTokenAudience",
            portal::AWS_FEDERATION,
        ),
        (
            token_error("AADSTS70021", "No matching federated identity record found for presented assertion."),
            "az ad app federated-credential create",
            portal::FEDERATED_CREDENTIAL,
        ),
        (
            token_error("AADSTS700213", "No matching federated identity record found for presented assertion subject 'arn:aws:iam::1:role/x'."),
            "FederationSubjects",
            portal::FEDERATED_CREDENTIAL,
        ),
        (
            token_error("AADSTS700212", "No matching federated identity record found for presented assertion audience 'api://x'."),
            "api://AzureADTokenExchange",
            portal::FEDERATED_CREDENTIAL,
        ),
        (
            token_error("AADSTS700024", "Client assertion is not within its valid time range."),
            "clock skew",
            portal::LOGRELAY_SETTINGS,
        ),
        (
            token_error("AADSTS700027", "Client assertion failed signature validation."),
            "Upload the public part",
            portal::CERTIFICATE,
        ),
    ];
    for (error, fix, step) in cases {
        let advice = explain_token_error(&error);
        assert!(advice.fix.contains(fix), "{error}: {advice:?}");
        assert_eq!(advice.portal, step, "{error}");
    }
}

#[test]
fn a_secretless_credential_is_not_reported_missing() {
    for (name, value) in [
        ("AZURE_CLIENT_CERTIFICATE_PATH", "/etc/logrelay/cert.pem"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("LOGRELAY_AWS_FEDERATION", "true"),
    ] {
        let missing = missing_variables(&lookup(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            (name, value),
            ("LOGS_INGESTION_ENDPOINT", GOOD),
        ]));
        assert!(missing.is_empty(), "{name}: {missing:?}");
    }
    let missing = missing_variables(&lookup(&[("LOGRELAY_AWS_FEDERATION", "false")]));
    assert!(
        missing.join(" ").contains("AZURE_CLIENT_SECRET"),
        "{missing:?}"
    );
}
