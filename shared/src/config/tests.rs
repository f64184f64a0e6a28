//! The settings' tests: every variable through [`Config::from_lookup`], as a deployment sets it.
use std::collections::HashMap;

use std::time::Duration;

use super::*;
use crate::ingest::endpoint::{DCE_VAR, DCR_VAR, ENDPOINT_VAR, STREAM_VAR};
use crate::keeper::SchemaMode;
use crate::secret::Secret;
use crate::Error;

const DCR: &str = "dcr-000a00a000a00000a000000aa000a0aa";
const HOST: &str = "https://my-dce-5kyl.eastus-1.ingest.monitor.azure.com";
const SECRET: &str = "Abc8Q~not-a-real-secret-value-0123456789";

fn keeper_url() -> String {
    format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-KeeperSecurityEventNewLogs?api-version=2023-01-01")
}

/// A complete client-secret configuration, with `changes` applied (`None` removes).
fn env(changes: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("AZURE_TENANT_ID", "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f"),
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.insert(ENDPOINT_VAR.into(), keeper_url());
    for (name, value) in changes {
        match value {
            Some(value) => vars.insert(name.to_string(), value.to_string()),
            None => vars.remove(*name),
        };
    }
    vars
}

fn load(changes: &[(&str, Option<&str>)]) -> Result<Config> {
    let vars = env(changes);
    Config::from_lookup(|name| vars.get(name).cloned())
}

fn error_of(changes: &[(&str, Option<&str>)]) -> Error {
    match load(changes) {
        Ok(config) => panic!("expected an error for {changes:?}, got {config:?}"),
        Err(error) => error,
    }
}

/// The variable an error names.
fn named(error: &Error) -> String {
    match error {
        Error::MissingConfig { name, .. } => name.to_string(),
        Error::InvalidConfig { name, .. } => name.clone(),
        other => panic!("not a configuration error: {other:?}"),
    }
}

#[test]
fn the_keeper_admin_console_url_is_taken_as_is() {
    let config = load(&[]).unwrap();
    assert_eq!(config.endpoint.base.as_str(), format!("{HOST}/"));
    assert_eq!(config.endpoint.dcr_id, DCR);
    assert_eq!(config.endpoint.stream, "Custom-KeeperSecurityEventNewLogs");
    assert_eq!(config.endpoint.upload_url().as_str(), keeper_url());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.auth.cloud, Cloud::Public);
    assert_eq!(config.auth.scope, "https://monitor.azure.com/.default");
    assert_eq!(
        config.auth.authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );
    assert!(matches!(&config.auth.credential, Credential::ClientSecret(s) if s.expose() == SECRET));
}

#[test]
fn endpoint_urls_that_are_accepted() {
    let cases = [
        // api-version may be left out; it is added on upload.
        format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper"),
        format!("  {HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper_CL/?api-version=2023-01-01\n"),
        format!("\"{HOST}/dataCollectionRules/{DCR}/streams/Custom-Keeper\""),
        format!("http://127.0.0.1:8080/dataCollectionRules/{DCR}/streams/Custom-Keeper?api-version=2023-01-01"),
        format!("https://my-dcr.usgovvirginia-1.ingest.monitor.azure.us/datacollectionrules/{DCR}/streams/Custom-Keeper"),
    ];
    for url in cases {
        let endpoint = parse_endpoint_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(endpoint.dcr_id, DCR, "{url}");
        assert!(endpoint.stream.starts_with("Custom-Keeper"), "{url}");
        assert_eq!(endpoint.base.path(), "/", "{url}");
        assert_eq!(endpoint.base.query(), None, "{url}");
    }
}

#[test]
fn endpoint_urls_that_are_refused_say_why() {
    let cases: Vec<(String, &str)> = vec![
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-K?api-version=2021-11-01-preview"), "2021-11-01-preview` is not supported"),
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/KeeperLogs"), "must begin `Custom-`"),
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/Microsoft-Syslog"), "built-in output stream"),
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/custom-Keeper"), "write `Custom-Keeper`"),
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-"), "followed by letters"),
        (format!("{HOST}/dataCollectionRules/dcr-123/streams/Custom-K"), "Immutable ID"),
        (format!("{HOST}/dataCollectionRules/11111111-2222-3333-4444-555555555555/streams/Custom-K"), "a GUID is a resource"),
        (format!("{HOST}/dataCollectionRules/{DCR}/streams/Custom-K?api-version=2023-01-01&sig=x"), "unexpected query parameter `sig`"),
        (format!("{HOST}/dataCollectionRules/{DCR}"), "is not /dataCollectionRules/"),
        (format!("{HOST}/prefix/dataCollectionRules/{DCR}/streams/Custom-K"), "is not /dataCollectionRules/"),
        (format!("{HOST}/api/logs"), "has no /dataCollectionRules/"),
        (HOST.to_string(), "only the endpoint host"),
        (format!("http://my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/Custom-K"), "plain http://"),
        ("https://1234.ods.opinsights.azure.com/api/logs?api-version=2016-04-01".into(), "HTTP Data Collector API"),
        ("https://portal.azure.com/#@contoso/resource/x".into(), "Azure portal link"),
        (format!("https://management.azure.com/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/{DCR}"), "Resource Manager"),
        ("https://api.loganalytics.io/v1/workspaces/x/query".into(), "query API"),
        ("https://my-dce.eastus-1.handler.control.monitor.azure.com".into(), "configuration access"),
        ("my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules".into(), "is not a URL"),
        (DCR.into(), "looks like a DCR Immutable ID"),
        (format!("https://user:pw@x.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/Custom-K"), "user name or password"),
    ];
    for (url, expected) in cases {
        let error = match parse_endpoint_url(&url) {
            Ok(endpoint) => panic!("{url} was accepted as {endpoint:?}"),
            Err(error) => error,
        };
        assert_eq!(named(&error), ENDPOINT_VAR, "{url}");
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{url}: `{message}` lacks `{expected}`"
        );
    }
}

#[test]
fn a_bad_dcr_id_message_shows_the_expected_form_and_where_to_find_it() {
    let error = parse_endpoint_url(&format!(
        "{HOST}/dataCollectionRules/KeeperDCR/streams/Custom-K"
    ))
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("dcr-000a00a000a00000a000000aa000a0aa"),
        "{message}"
    );
    assert!(message.contains("immutableId"), "{message}");
    assert!(message.contains("JSON View"), "{message}");
}

#[test]
fn the_endpoint_can_be_given_in_three_parts() {
    let config = load(&[
        (ENDPOINT_VAR, None),
        (
            DCE_VAR,
            Some("my-dce-5kyl.eastus-1.ingest.monitor.azure.com"),
        ),
        (DCR_VAR, Some(DCR)),
        (STREAM_VAR, Some("Custom-KeeperSecurityEventNewLogs")),
    ])
    .unwrap();
    assert_eq!(config.endpoint.upload_url().as_str(), keeper_url());
}

#[test]
fn a_missing_part_is_named() {
    fn three<'a>(
        dce: Option<&'a str>,
        dcr: Option<&'a str>,
        stream: Option<&'a str>,
    ) -> Vec<(&'static str, Option<&'a str>)> {
        vec![
            (ENDPOINT_VAR, None),
            (DCE_VAR, dce),
            (DCR_VAR, dcr),
            (STREAM_VAR, stream),
        ]
    }
    let full = keeper_url();
    let cases = [
        (three(None, None, None), ENDPOINT_VAR),
        (three(None, Some(DCR), Some("Custom-K")), DCE_VAR),
        (three(Some(HOST), None, Some("Custom-K")), DCR_VAR),
        (three(Some(HOST), Some(DCR), None), STREAM_VAR),
        (
            three(Some(HOST), Some("dcr-xyz"), Some("Custom-K")),
            DCR_VAR,
        ),
        (three(Some(HOST), Some(DCR), Some("Keeper")), STREAM_VAR),
        (
            three(Some("http://10.1.2.3"), Some(DCR), Some("Custom-K")),
            DCE_VAR,
        ),
        (three(Some(&full), Some(DCR), Some("Custom-K")), DCE_VAR),
        (
            three(
                Some("https://x.ingest.monitor.azure.com/extra"),
                Some(DCR),
                Some("Custom-K"),
            ),
            DCE_VAR,
        ),
    ];
    for (changes, expected) in cases {
        let error = error_of(&changes);
        assert_eq!(named(&error), expected, "{changes:?}: {error}");
    }
}

#[test]
fn the_full_url_wins_over_the_parts_with_a_warning() {
    let config = load(&[(STREAM_VAR, Some("Custom-Other"))]).unwrap();
    assert_eq!(config.endpoint.stream, "Custom-KeeperSecurityEventNewLogs");
    assert!(
        config.warnings.iter().any(|w| w.contains("are ignored")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn unusual_hosts_are_a_warning_not_an_error() {
    let cases = [
        (format!("https://example.com/dataCollectionRules/{DCR}/streams/Custom-K"), None, Some("not a Logs Ingestion host")),
        (format!("https://x.eastus-1.ingest.monitor.azure.us/dataCollectionRules/{DCR}/streams/Custom-K"), None, Some("AZURE_CLOUD=usgovernment")),
        (format!("https://x.eastus-1.ingest.monitor.azure.us/dataCollectionRules/{DCR}/streams/Custom-K"), Some("usgovernment"), None),
        (format!("https://x.chinaeast2-1.ingest.monitor.azure.cn/dataCollectionRules/{DCR}/streams/Custom-K"), Some("AzureChinaCloud"), None),
        (format!("http://localhost:9/dataCollectionRules/{DCR}/streams/Custom-K"), None, None),
    ];
    for (url, cloud, expected) in cases {
        let config = load(&[(ENDPOINT_VAR, Some(&url)), ("AZURE_CLOUD", cloud)]).unwrap();
        match expected {
            None => assert!(config.warnings.is_empty(), "{url}: {:?}", config.warnings),
            Some(text) => assert!(
                config.warnings.iter().any(|w| w.contains(text)),
                "{url}: {:?}",
                config.warnings
            ),
        }
    }
}

#[test]
fn clouds_pick_the_authority_host_and_scope() {
    let cases = [
        (
            None,
            "https://login.microsoftonline.com/",
            "https://monitor.azure.com/.default",
        ),
        (
            Some("public"),
            "https://login.microsoftonline.com/",
            "https://monitor.azure.com/.default",
        ),
        (
            Some("AzurePublicCloud"),
            "https://login.microsoftonline.com/",
            "https://monitor.azure.com/.default",
        ),
        (
            Some("usgovernment"),
            "https://login.microsoftonline.us/",
            "https://monitor.azure.us/.default",
        ),
        (
            Some("AzureUSGovernment"),
            "https://login.microsoftonline.us/",
            "https://monitor.azure.us/.default",
        ),
        (
            Some("CHINA"),
            "https://login.partner.microsoftonline.cn/",
            "https://monitor.azure.cn/.default",
        ),
        (
            Some("AzureChinaCloud"),
            "https://login.partner.microsoftonline.cn/",
            "https://monitor.azure.cn/.default",
        ),
    ];
    for (cloud, host, scope) in cases {
        let config = load(&[("AZURE_CLOUD", cloud)]).unwrap();
        assert_eq!(config.auth.authority_host.as_str(), host, "{cloud:?}");
        assert_eq!(config.auth.scope, scope, "{cloud:?}");
    }
    let error = error_of(&[("AZURE_CLOUD", Some("mars"))]);
    assert_eq!(named(&error), "AZURE_CLOUD");
    assert!(error.to_string().contains("usgovernment"), "{error}");
}

#[test]
fn the_authority_host_can_be_overridden_only_safely() {
    let ok = [
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000/"),
        (
            "https://login.microsoftonline.us/",
            "https://login.microsoftonline.us/",
        ),
        (
            "login.microsoftonline.com",
            "https://login.microsoftonline.com/",
        ),
    ];
    for (value, expected) in ok {
        let config = load(&[("AZURE_AUTHORITY_HOST", Some(value))]).unwrap();
        assert_eq!(config.auth.authority_host.as_str(), expected);
    }
    for bad in [
        "http://login.example.com",
        "https://login.microsoftonline.com/tenant-x",
        "https://x/?a=b",
        "ftp://127.0.0.1",
    ] {
        let error = error_of(&[("AZURE_AUTHORITY_HOST", Some(bad))]);
        assert_eq!(named(&error), "AZURE_AUTHORITY_HOST", "{bad}");
    }
    let config = load(&[(
        "AZURE_AUTHORITY_HOST",
        Some("https://login.microsoftonline.us"),
    )])
    .unwrap();
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("AZURE_CLOUD=usgovernment")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn missing_identity_settings_are_named() {
    type Changes<'a> = Vec<(&'a str, Option<&'a str>)>;
    let cases: Vec<(Changes<'_>, &str)> = vec![
        (vec![("AZURE_TENANT_ID", None)], "AZURE_TENANT_ID"),
        (vec![("AZURE_CLIENT_ID", None)], "AZURE_CLIENT_ID"),
        (vec![("AZURE_CLIENT_SECRET", None)], "AZURE_CLIENT_SECRET"),
        (
            vec![("AZURE_CLIENT_SECRET", Some("   "))],
            "AZURE_CLIENT_SECRET",
        ),
        (
            vec![
                ("AZURE_CLIENT_SECRET", None),
                ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
            ],
            "IDENTITY_HEADER",
        ),
        (
            vec![
                ("AZURE_CLIENT_SECRET", None),
                ("IDENTITY_HEADER", Some("h")),
            ],
            "IDENTITY_ENDPOINT",
        ),
        (
            vec![(
                "AZURE_TENANT_ID",
                Some("https://login.microsoftonline.com/x"),
            )],
            "AZURE_TENANT_ID",
        ),
        (vec![("AZURE_TENANT_ID", Some("common"))], "AZURE_TENANT_ID"),
        (
            vec![
                ("AZURE_CLIENT_SECRET", None),
                (
                    "AZURE_CLIENT_SECRET_ARN",
                    Some("arn:aws:ssm:us-east-1:1:parameter/x"),
                ),
            ],
            "AZURE_CLIENT_SECRET_ARN",
        ),
        (
            vec![
                ("AZURE_CLIENT_SECRET", None),
                ("IDENTITY_ENDPOINT", Some("http://10.0.0.5/msi/token")),
                ("IDENTITY_HEADER", Some("h")),
            ],
            "IDENTITY_ENDPOINT",
        ),
    ];
    for (changes, expected) in cases {
        let error = error_of(&changes);
        assert_eq!(named(&error), expected, "{changes:?}: {error}");
    }
}

#[test]
fn the_missing_secret_message_lists_the_alternatives() {
    let message = error_of(&[("AZURE_CLIENT_SECRET", None)]).to_string();
    for alternative in [
        "AZURE_CLIENT_SECRET_ARN",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
    ] {
        assert!(message.contains(alternative), "{message}");
    }
}

#[test]
fn credentials_are_chosen_in_order_of_precedence() {
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:entra-AbCdEf";
    let config = load(&[("AZURE_CLIENT_SECRET_ARN", Some(arn))]).unwrap();
    assert!(matches!(
        config.auth.credential,
        Credential::ClientSecret(_)
    ));
    assert!(
        config.warnings.iter().any(|w| w.contains("both")),
        "{:?}",
        config.warnings
    );

    let config = load(&[
        ("AZURE_CLIENT_SECRET", None),
        ("AZURE_CLIENT_SECRET_ARN", Some(arn)),
    ])
    .unwrap();
    assert!(matches!(&config.auth.credential, Credential::SecretArn(a) if a == arn));

    let config = load(&[
        ("AZURE_CLIENT_SECRET", None),
        ("AZURE_TENANT_ID", None),
        ("AZURE_CLIENT_ID", None),
        ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
        ("IDENTITY_HEADER", Some("header-value")),
    ])
    .unwrap();
    match &config.auth.credential {
        Credential::ManagedIdentity {
            endpoint,
            header,
            client_id,
        } => {
            assert_eq!(endpoint.as_str(), "http://localhost:8081/msi/token");
            assert_eq!(header.expose(), "header-value");
            assert_eq!(client_id, &None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(config.auth.tenant_id, "");

    let config = load(&[
        ("AZURE_CLIENT_SECRET", None),
        (
            "IDENTITY_ENDPOINT",
            Some("http://169.254.129.2:8081/msi/token"),
        ),
        ("IDENTITY_HEADER", Some("header-value")),
    ])
    .unwrap();
    assert!(matches!(
        &config.auth.credential,
        Credential::ManagedIdentity { client_id: Some(id), .. } if id == "11111111-2222-3333-4444-555555555555"
    ));
}

#[test]
fn a_secret_id_pasted_for_the_secret_value_is_flagged() {
    let config = load(&[(
        "AZURE_CLIENT_SECRET",
        Some("0a1b2c3d-1111-2222-3333-444455556666"),
    )])
    .unwrap();
    assert!(
        config.warnings.iter().any(|w| w.contains("*Value*")),
        "{:?}",
        config.warnings
    );
    let config = load(&[("AZURE_CLIENT_ID", Some("my-app"))]).unwrap();
    assert!(
        config.warnings.iter().any(|w| w.contains("not a GUID")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn tuning_defaults_and_overrides() {
    let config = load(&[]).unwrap();
    assert_eq!(config.tuning.concurrency, 16);
    assert_eq!(config.tuning.max_attempts, 8);
    assert_eq!(config.tuning.deadline, Duration::from_secs(300));
    assert_eq!(config.tuning.batch_bytes, 1_000_000);
    assert_eq!(config.tuning.request_timeout, Duration::from_secs(30));
    assert_eq!(config.tuning.max_decompressed_bytes, 16 << 30);

    let config = load(&[
        ("LOGRELAY_CONCURRENCY", Some("64")),
        ("LOGRELAY_MAX_ATTEMPTS", Some("1")),
        ("LOGRELAY_DEADLINE_SECS", Some("900")),
        ("LOGRELAY_BATCH_BYTES", Some("1024")),
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", Some("5")),
        ("LOGRELAY_MAX_DECOMPRESSED_BYTES", Some("1_000_000")),
    ])
    .unwrap();
    assert_eq!(config.tuning.concurrency, 64);
    assert_eq!(config.tuning.max_attempts, 1);
    assert_eq!(config.tuning.deadline, Duration::from_secs(900));
    assert_eq!(config.tuning.batch_bytes, 1024);
    assert_eq!(config.tuning.request_timeout, Duration::from_secs(5));
    assert_eq!(config.tuning.max_decompressed_bytes, 1_000_000);
}

#[test]
fn bad_tuning_values_name_the_variable_and_the_range() {
    let cases = [
        ("LOGRELAY_CONCURRENCY", "0", "1..=64"),
        ("LOGRELAY_CONCURRENCY", "65", "1..=64"),
        ("LOGRELAY_CONCURRENCY", "four", "not a whole number"),
        ("LOGRELAY_MAX_ATTEMPTS", "51", "1..=50"),
        ("LOGRELAY_MAX_ATTEMPTS", "-1", "1..=50"),
        ("LOGRELAY_DEADLINE_SECS", "0", "1..=86400"),
        ("LOGRELAY_BATCH_BYTES", "1023", "1024..=1000000"),
        (
            "LOGRELAY_BATCH_BYTES",
            "1048576",
            "refuses requests over 1 MB",
        ),
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", "1.5", "not a whole number"),
        ("LOGRELAY_MAX_DECOMPRESSED_BYTES", "10", "1024..="),
    ];
    for (name, value, expected) in cases {
        let error = error_of(&[(name, Some(value))]);
        assert_eq!(named(&error), name);
        let message = error.to_string();
        assert!(message.contains(expected), "{name}={value}: {message}");
    }
}

#[test]
fn the_summary_hides_secrets() {
    let config = load(&[]).unwrap();
    let summary = config.redacted_summary();
    let text = format!("{summary:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(summary.contains(&("AZURE_CLIENT_SECRET", "set (hidden)".to_string())));
    assert!(summary.contains(&("LOGS_INGESTION_ENDPOINT", keeper_url())));
    assert!(!format!("{config:?}").contains(SECRET));

    let config = load(&[
        ("AZURE_CLIENT_SECRET", None),
        ("IDENTITY_ENDPOINT", Some("http://localhost:8081/msi/token")),
        ("IDENTITY_HEADER", Some("very-private-header")),
    ])
    .unwrap();
    let text = format!("{:?} {config:?}", config.redacted_summary());
    assert!(!text.contains("very-private-header"), "{text}");
    assert!(text.contains("IDENTITY_HEADER"), "{text}");
}

#[test]
fn errors_never_contain_the_secret() {
    let error = error_of(&[("LOGRELAY_CONCURRENCY", Some("x"))]);
    assert!(!format!("{error} {error:?}").contains(SECRET));
}

fn schema(vars: &[(&str, &str)]) -> Result<SchemaMode> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    };
    let get = trimmed(&lookup);
    read_schema(&get)
}

#[test]
fn the_schema_is_keeper_unless_passthrough_is_asked_for_with_its_time_field() {
    assert_eq!(schema(&[]).unwrap(), SchemaMode::Keeper);
    assert_eq!(
        schema(&[("LOGRELAY_SCHEMA", " Keeper ")]).unwrap(),
        SchemaMode::Keeper
    );
    assert_eq!(
        schema(&[
            ("LOGRELAY_SCHEMA", "passthrough"),
            ("LOGRELAY_TIME_FIELD", "ts")
        ])
        .unwrap(),
        SchemaMode::Passthrough {
            time_field: "ts".into()
        }
    );
}

#[test]
fn passthrough_without_a_time_field_or_an_unknown_schema_is_named() {
    let missing = schema(&[("LOGRELAY_SCHEMA", "passthrough")])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("LOGRELAY_TIME_FIELD"), "{missing}");
    let unknown = schema(&[("LOGRELAY_SCHEMA", "csv")])
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("LOGRELAY_SCHEMA") && unknown.contains("`csv`"),
        "{unknown}"
    );
}

#[test]
fn every_variable_the_settings_read_is_in_the_table() {
    for platform in [Platform::Cli, Platform::Aws, Platform::Azure] {
        let map = env(&[
            ("LOGRELAY_SCHEMA", Some("passthrough")),
            ("LOGRELAY_TIME_FIELD", Some("ts")),
        ]);
        let asked = std::cell::RefCell::new(Vec::new());
        let config = Config::for_platform(platform, |name| {
            asked.borrow_mut().push(name.to_string());
            map.get(name).cloned()
        })
        .unwrap();
        assert!(!config.dead_letter.is_empty());
        for name in asked.borrow().iter() {
            assert!(
                vars::find(name).is_some(),
                "{name} is read but not in the table"
            );
        }
    }
}

#[test]
fn the_dead_letter_default_depends_on_the_platform_and_comes_from_the_table() {
    let load_on = |platform, changes: &[(&str, Option<&str>)]| {
        let map = env(changes);
        Config::for_platform(platform, |name| map.get(name).cloned())
    };
    assert_eq!(
        load_on(Platform::Cli, &[]).unwrap().dead_letter,
        "./logrelay-dead-letter"
    );
    let aws = load_on(Platform::Aws, &[]).unwrap();
    assert_eq!(aws.dead_letter, vars::LAMBDA_DEAD_LETTER_DIR);
    assert!(
        aws.warnings.iter().any(|w| w.contains("s3://")),
        "{:?}",
        aws.warnings
    );
    let on_app_service = load_on(Platform::Azure, &[("WEBSITE_SITE_NAME", Some("relay"))]);
    assert_eq!(
        on_app_service.unwrap().dead_letter,
        vars::AZURE_DEAD_LETTER_DIR
    );
    let by_hand = load_on(
        Platform::Azure,
        &[("FUNCTIONS_APP_ROOT_PATH", Some("/app"))],
    );
    assert_eq!(by_hand.unwrap().dead_letter, "/app/dead-letter");
    let s3 = load_on(
        Platform::Aws,
        &[("LOGRELAY_DEAD_LETTER", Some(" s3://b/dl/\n"))],
    );
    assert_eq!(s3.unwrap().dead_letter, "s3://b/dl/");
    let error = load_on(
        Platform::Azure,
        &[("LOGRELAY_DEAD_LETTER", Some("s3://b/dl/"))],
    );
    assert_eq!(named(&error.unwrap_err()), "LOGRELAY_DEAD_LETTER");
}

#[test]
fn the_http_token_is_trimmed_like_every_other_value() {
    let config = load(&[("LOGRELAY_HTTP_TOKEN", Some("  tok-1\n"))]).unwrap();
    assert_eq!(config.http_token, HttpToken::Value(Secret::new("tok-1")));
    let config = load(&[
        ("LOGRELAY_HTTP_TOKEN", Some("  ")),
        ("LOGRELAY_HTTP_TOKEN_ARN", Some("arn:x")),
    ])
    .unwrap();
    assert_eq!(config.http_token, HttpToken::SecretArn("arn:x".into()));
    assert_eq!(load(&[]).unwrap().http_token, HttpToken::Unset);
}

#[test]
fn the_table_defaults_are_the_ones_the_code_applies() {
    let tuning = Tuning::default();
    let on = |name: &str| vars::find(name).and_then(|var| var.default_on(Platform::Cli));
    assert_eq!(
        on("LOGRELAY_CONCURRENCY"),
        Some(tuning.concurrency.to_string().as_str())
    );
    assert_eq!(
        on("LOGRELAY_MAX_ATTEMPTS"),
        Some(tuning.max_attempts.to_string().as_str())
    );
    assert_eq!(
        on("LOGRELAY_DEADLINE_SECS"),
        Some(tuning.deadline.as_secs().to_string().as_str())
    );
    assert_eq!(
        on("LOGRELAY_BATCH_BYTES"),
        Some(tuning.batch_bytes.to_string().as_str())
    );
    assert_eq!(
        on("LOGRELAY_REQUEST_TIMEOUT_SECS"),
        Some(tuning.request_timeout.as_secs().to_string().as_str())
    );
    assert_eq!(
        on("LOGRELAY_MAX_DECOMPRESSED_BYTES"),
        Some(tuning.max_decompressed_bytes.to_string().as_str())
    );
    assert_eq!(on("AZURE_CLOUD"), Some(Cloud::Public.name()));
    assert_eq!(on("LOGRELAY_SCHEMA"), Some("keeper"));
}

#[test]
fn aws_endpoint_overrides_must_be_https_or_loopback() {
    let check = |pairs: &[(&str, &str)]| {
        check_aws_endpoints(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    };
    assert!(!check(&[("HOME", "/root")]).unwrap());
    assert!(check(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).unwrap());
    assert!(check(&[("AWS_ENDPOINT_URL_S3", "https://s3.example.com")]).unwrap());
    for (name, value) in [
        ("AWS_ENDPOINT_URL", "http://moto.internal:5000"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://10.0.0.8"),
        ("AWS_ENDPOINT_URL_S3", "not a url"),
    ] {
        let error = check(&[(name, value)]).unwrap_err();
        assert_eq!(named(&error), name, "{error}");
    }
}

mod credentials {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AZURE_TENANT_ID", "3f1c2a7e-9b4d-4e58-a6f0-1d2c3b4a5e6f"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("LOGS_INGESTION_ENDPOINT", "https://dce-a.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/dcr-000a00a000a00000a000000aa000a0aa/streams/Custom-KeeperSecurityEvents?api-version=2023-01-01"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> crate::Result<Config> {
        let mut vars = base();
        vars.extend_from_slice(extra);
        Config::from_lookup(move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn each_secretless_credential_is_read_from_its_variable() {
        let config = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/etc/logrelay/cert.pem"),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true"),
        ])
        .unwrap();
        assert!(
            matches!(&config.auth.credential, Credential::Certificate { path, send_chain: true } if path.to_str() == Some("/etc/logrelay/cert.pem"))
        );
        let config = with(&[(
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        )])
        .unwrap();
        assert!(matches!(
            &config.auth.credential,
            Credential::FederatedTokenFile { .. }
        ));
        let config = with(&[("LOGRELAY_AWS_FEDERATION", "true")]).unwrap();
        assert!(
            matches!(&config.auth.credential, Credential::AwsFederation { audience } if audience == "api://AzureADTokenExchange")
        );
        let config = with(&[
            ("LOGRELAY_AWS_FEDERATION", "true"),
            ("AZURE_CLOUD", "usgovernment"),
        ])
        .unwrap();
        assert!(
            matches!(&config.auth.credential, Credential::AwsFederation { audience } if audience == "api://AzureADTokenExchangeUSGov")
        );
        // false is no credential at all.
        let error = with(&[("LOGRELAY_AWS_FEDERATION", "false")]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingConfig {
                    name: "AZURE_CLIENT_SECRET",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn two_credentials_at_once_are_refused_naming_both() {
        // (variables set, the two names the refusal must give)
        type Case<'a> = (&'a [(&'a str, &'a str)], [&'a str; 2]);
        let cases: [Case<'_>; 4] = [
            (
                &[
                    ("AZURE_CLIENT_SECRET", "Xy7Q~secret"),
                    ("AZURE_CLIENT_CERTIFICATE_PATH", "c.pem"),
                ],
                ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"],
            ),
            (
                &[
                    (
                        "AZURE_CLIENT_SECRET_ARN",
                        "arn:aws:secretsmanager:us-east-1:1:secret:x",
                    ),
                    ("LOGRELAY_AWS_FEDERATION", "true"),
                ],
                ["AZURE_CLIENT_SECRET_ARN", "LOGRELAY_AWS_FEDERATION"],
            ),
            (
                &[
                    ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                    ("AZURE_CLIENT_CERTIFICATE_PATH", "c.pem"),
                ],
                [
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                    "AZURE_FEDERATED_TOKEN_FILE",
                ],
            ),
            (
                &[
                    ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                    ("LOGRELAY_AWS_FEDERATION", "1"),
                ],
                ["AZURE_FEDERATED_TOKEN_FILE", "LOGRELAY_AWS_FEDERATION"],
            ),
        ];
        for (extra, names) in cases {
            let message = with(extra).unwrap_err().to_string();
            for name in names {
                assert!(message.contains(name), "{message}");
            }
            assert!(!message.contains("Xy7Q~secret"), "{message}");
        }
        // The secret beside its own ARN stays a warning (the secret wins).
        let config = with(&[
            ("AZURE_CLIENT_SECRET", "Xy7Q~secret"),
            (
                "AZURE_CLIENT_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ),
        ])
        .unwrap();
        assert!(matches!(
            config.auth.credential,
            Credential::ClientSecret(_)
        ));
    }

    #[test]
    fn a_certificate_password_and_a_bad_flag_are_refused_with_what_to_do() {
        let error = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "c.pfx"),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-password-value"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("not supported") && error.contains("openssl pkcs12"),
            "{error}"
        );
        assert!(!error.contains("pfx-password-value"), "{error}");
        let error = with(&[("LOGRELAY_AWS_FEDERATION", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("LOGRELAY_AWS_FEDERATION") && error.contains("true or false"),
            "{error}"
        );
    }
}
