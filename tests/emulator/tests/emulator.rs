//! The emulator is strict and faithful: Entra's token errors, the ingestion API's limits and
//! error shapes, the table's column rules, and the injected faults, checked with a real client.

// Helpers panic on unexpected values just like the tests that call them.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::Duration;

use azmon_emulator::{Emulator, EmulatorConfig, Faults, StreamConfig, MAX_BODY_BYTES};
use flate2::write::GzEncoder;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn env(emulator: &Emulator, name: &str) -> String {
    emulator
        .env()
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap()
}

/// The form a real client sends, with `overrides` replacing (or, with "", removing) fields.
fn token_form(emulator: &Emulator, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let config = emulator.config();
    let mut form = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("client_id".to_string(), config.client_id.clone()),
        ("client_secret".to_string(), config.client_secret.clone()),
        (
            "scope".to_string(),
            "https://monitor.azure.com/.default".to_string(),
        ),
    ];
    for (name, value) in overrides {
        form.retain(|(key, _)| key != name);
        if !value.is_empty() {
            form.push((name.to_string(), value.to_string()));
        }
    }
    form
}

async fn request_token(
    emulator: &Emulator,
    tenant: &str,
    form: &[(String, String)],
) -> (StatusCode, Value) {
    let response = client()
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            env(emulator, "AZURE_AUTHORITY_HOST")
        ))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn token(emulator: &Emulator) -> String {
    let (status, body) = request_token(
        emulator,
        &emulator.config().tenant_id,
        &token_form(emulator, &[]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn upload(emulator: &Emulator, token: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(emulator.ingestion_endpoint())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn upload_json(emulator: &Emulator, token: &str, rows: &Value) -> reqwest::Response {
    upload(emulator, token, serde_json::to_vec(rows).unwrap()).await
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn login_row(time: &str, user: &str) -> Value {
    json!({
        "TimeGenerated": time,
        "EventId": format!("evt-{user}"),
        "audit_event": "login",
        "category": "login",
        "remote_address": "203.0.113.10",
        "client_version": "Web Vault 17.0.0",
        "username": user,
        "enterprise_id": 1234,
        "timestamp": time,
        "data": {}
    })
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let header = response
        .headers()
        .get("x-ms-error-code")
        .map(|value| value.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, header, body)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A one-row JSON array of exactly `size` bytes (padding goes into `data.pad`, a dynamic
/// column, so no truncation applies).
fn body_of_exact_size(size: usize) -> Vec<u8> {
    let mut row = login_row(&now(), "alice@example.com");
    row["data"] = json!({"pad": ""});
    let base = serde_json::to_vec(&json!([row])).unwrap().len();
    row["data"]["pad"] = Value::String("x".repeat(size - base));
    let body = serde_json::to_vec(&json!([row])).unwrap();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn issues_a_jwt_bearer_token_for_either_monitor_scope_form() {
    let emulator = start().await;
    for scope in [
        "https://monitor.azure.com/.default",
        "https://monitor.azure.com//.default",
    ] {
        let (status, body) = request_token(
            &emulator,
            &emulator.config().tenant_id,
            &token_form(&emulator, &[("scope", scope)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["ext_expires_in"], 3600);
        let claims = azmon_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://monitor.azure.com");
        assert_eq!(claims["tid"], emulator.config().tenant_id.as_str());
        assert_eq!(claims["appid"], emulator.config().client_id.as_str());
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }
    assert_eq!(emulator.stats().token_requests, 2);
}

#[tokio::test]
async fn accepts_rows_with_204_an_empty_body_and_a_request_id() {
    let emulator = start().await;
    let token = token(&emulator).await;
    let time = now();
    let rows = json!([
        login_row(&time, "alice@example.com"),
        login_row(&time, "bob@example.com")
    ]);
    let response = upload_json(&emulator, &token, &rows).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers().contains_key("x-ms-request-id"));
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(emulator.rows(), rows.as_array().unwrap().clone());
    assert_eq!(
        emulator
            .rows_for(logrelay_core::schema::DEFAULT_STREAM)
            .len(),
        2
    );
    let stats = emulator.stats();
    assert_eq!(stats.accepted_requests, 1);
    assert_eq!(stats.rows, 2);
    assert_eq!(stats.distinct_tokens_used, 1);
    assert_eq!(stats.status_counts.get(&204), Some(&1));
}

#[tokio::test]
async fn token_errors_have_entra_shape_and_status() {
    let emulator = start().await;
    let tenant = emulator.config().tenant_id.clone();
    let unknown_tenant = "11111111-2222-3333-4444-555555555555";
    /// (case, tenant, form overrides, status, `error`, AADSTS code)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
        u64,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong secret",
            &tenant,
            vec![("client_secret", "not-the-secret")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        (
            "unknown client",
            &tenant,
            vec![("client_id", "9f9f9f9f-0000-4000-8000-000000000000")],
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
        (
            "unknown tenant",
            unknown_tenant,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
        ),
        (
            "bad scope",
            &tenant,
            vec![("scope", "https://management.azure.com/.default")],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
        ),
        (
            "government scope in the public cloud",
            &tenant,
            vec![("scope", "https://monitor.azure.us/.default")],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
        ),
        (
            "missing scope",
            &tenant,
            vec![("scope", "")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            "missing client_id",
            &tenant,
            vec![("client_id", "")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            "missing grant_type",
            &tenant,
            vec![("grant_type", "")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            "missing secret",
            &tenant,
            vec![("client_secret", "")],
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000218,
        ),
        (
            "other grant",
            &tenant,
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (case, tenant, overrides, status, error, code) in &cases {
        let (got, body) = request_token(&emulator, tenant, &token_form(&emulator, overrides)).await;
        assert_eq!(got, *status, "{case}: {body}");
        assert_eq!(body["error"], *error, "{case}: {body}");
        assert_eq!(body["error_codes"], json!([code]), "{case}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{case}: {description}"
        );
        assert!(description.contains("\r\nTrace ID: "), "{case}");
        assert!(
            !description.contains(&emulator.config().client_secret),
            "{case}"
        );
        for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
            assert!(body[field].is_string(), "{case}: {field}");
        }
    }
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, cases.len() as u64);
    assert_eq!(stats.token_failures, cases.len() as u64);
    assert_eq!(stats.tokens_issued, 0);
}

#[tokio::test]
async fn a_wire_body_of_exactly_1_mib_is_accepted_and_one_byte_more_is_413() {
    let emulator = start().await;
    let token = token(&emulator).await;
    let response = upload(&emulator, &token, body_of_exact_size(MAX_BODY_BYTES)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = upload(&emulator, &token, body_of_exact_size(MAX_BODY_BYTES + 1)).await;
    let (status, header, body) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header.as_deref(), Some("ContentLengthLimitExceeded"));
    assert_eq!(body["error"]["code"], "ContentLengthLimitExceeded");
    assert_eq!(
        body["error"]["message"],
        "Maximum allowed content length: 1048576 bytes (1 MB). Provided content length: 1048577 bytes."
    );
    let stats = emulator.stats();
    assert_eq!(stats.max_wire_bytes, MAX_BODY_BYTES as u64 + 1);
    assert_eq!(stats.rows, 1);
    assert_eq!(stats.status_counts.get(&413), Some(&1));
}

#[tokio::test]
async fn gzip_is_decoded_and_a_decompressed_body_over_1_mib_is_413_in_strict_mode() {
    let emulator = start().await;
    let token = token(&emulator).await;
    let send = |body: Vec<u8>| {
        client()
            .post(emulator.ingestion_endpoint())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .body(gzip(&body))
            .send()
    };
    let response = send(body_of_exact_size(MAX_BODY_BYTES)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = send(body_of_exact_size(MAX_BODY_BYTES + 1)).await.unwrap();
    let (status, header, body) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header.as_deref(), Some("ContentLengthLimitExceeded"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("Provided content length: 1048577 bytes."));
    let stats = emulator.stats();
    assert_eq!(stats.gzip_requests, 2);
    assert_eq!(stats.max_decompressed_bytes, MAX_BODY_BYTES as u64 + 1);
    assert!(stats.max_wire_bytes < 64 * 1024, "{}", stats.max_wire_bytes);
}

#[tokio::test]
async fn a_token_with_a_one_second_lifetime_is_refused_401_once_expired() {
    let emulator = start().await;
    emulator.set_faults(Faults {
        token_lifetime_secs: Some(1),
        ..Faults::default()
    });
    let (status, body) = request_token(
        &emulator,
        &emulator.config().tenant_id,
        &token_form(&emulator, &[]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap().to_string();
    let rows = json!([login_row(&now(), "alice@example.com")]);
    assert_eq!(
        upload_json(&emulator, &token, &rows).await.status(),
        StatusCode::NO_CONTENT
    );
    // The emulator's clock moves past the token's expiry: no waiting in real time.
    emulator.advance_clock(Duration::from_secs(2));
    let (status, header, body) = error_of(upload_json(&emulator, &token, &rows).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header.as_deref(), Some("InvalidToken"));
    assert_eq!(body["error"]["code"], "InvalidToken");
    let stats = emulator.stats();
    assert_eq!(stats.expired_token_uses, 1);
    assert_eq!(stats.rows, 1);
}

#[tokio::test]
async fn missing_unknown_and_wrong_audience_tokens_are_401() {
    let emulator = start().await;
    let rows = serde_json::to_vec(&json!([login_row(&now(), "alice@example.com")])).unwrap();
    let without = client()
        .post(emulator.ingestion_endpoint())
        .header(CONTENT_TYPE, "application/json")
        .body(rows.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);

    // A JWT-shaped token the emulator never issued (e.g. from another tenant).
    let issued = emulator.issue_token();
    let forged = format!("{}.forged", issued.rsplit_once('.').unwrap().0);
    assert_eq!(
        upload(&emulator, &forged, rows.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A managed-identity token for another resource has the wrong audience.
    let body: Value = client()
        .get(format!(
            "{}?resource=https://management.azure.com&api-version=2019-08-01",
            emulator.identity_endpoint()
        ))
        .header("X-IDENTITY-HEADER", emulator.identity_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, _, error) =
        error_of(upload(&emulator, body["access_token"].as_str().unwrap(), rows).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("https://management.azure.com"));
    assert_eq!(emulator.stats().rows, 0);
}

#[tokio::test]
async fn undeclared_columns_are_dropped_and_counted_long_strings_cut_and_old_times_replaced() {
    let emulator = start().await;
    let token = token(&emulator).await;
    let mut old = login_row("2020-01-01T00:00:00Z", "old@example.com");
    old["severity"] = json!("high");
    old["extra"] = json!({"a": 1});
    let mut long = login_row(&now(), "long@example.com");
    long["username"] = json!("u".repeat(70_000));
    let mut missing = login_row(&now(), "missing@example.com");
    missing.as_object_mut().unwrap().remove("TimeGenerated");
    let before = chrono::Utc::now();
    let response = upload_json(&emulator, &token, &json!([old, long, missing])).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let rows = emulator.rows();
    assert!(rows[0].get("severity").is_none() && rows[0].get("extra").is_none());
    let replaced =
        chrono::DateTime::parse_from_rfc3339(rows[0]["TimeGenerated"].as_str().unwrap()).unwrap();
    assert!(replaced >= before - chrono::TimeDelta::seconds(1));
    assert_eq!(
        rows[0]["timestamp"], "2020-01-01T00:00:00Z",
        "the event's own time is kept"
    );
    assert_eq!(rows[1]["username"].as_str().unwrap().len(), 64 * 1024);
    assert!(rows[2]["TimeGenerated"].is_string());
    let stats = emulator.stats();
    assert_eq!(stats.dropped_columns, 2);
    assert_eq!(
        stats.dropped_column_names.iter().collect::<Vec<_>>(),
        vec!["extra", "severity"]
    );
    assert_eq!(stats.truncated_fields, 1);
    assert_eq!(stats.replaced_time_generated, 1);
    assert_eq!(stats.filled_time_generated, 1);
}

#[tokio::test]
async fn a_fault_script_plays_in_order_with_retry_after_then_service_resumes() {
    let emulator = start().await;
    emulator.set_faults(Faults::scripted(&[429, 503, 500]));
    let token = token(&emulator).await;
    let rows = json!([login_row(&now(), "alice@example.com")]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = upload_json(&emulator, &token, &rows).await;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_string());
        seen.push((response.status().as_u16(), retry_after));
    }
    assert_eq!(
        seen,
        vec![
            (429, Some("1".to_string())),
            (503, Some("1".to_string())),
            (500, None),
            (204, None)
        ]
    );
    let stats = emulator.stats();
    assert_eq!(stats.rows, 1, "only the served request stored its row");
    assert_eq!(stats.injected_statuses, 3);
    assert!(emulator.faults().script.is_empty());
}

#[tokio::test]
async fn a_dropped_connection_gives_the_client_no_answer() {
    let emulator = start().await;
    emulator.set_faults(Faults::scripted(&[azmon_emulator::DROP_CONNECTION]));
    let token = token(&emulator).await;
    let rows = serde_json::to_vec(&json!([login_row(&now(), "alice@example.com")])).unwrap();
    let error = client()
        .post(emulator.ingestion_endpoint())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(rows.clone())
        .send()
        .await
        .expect_err("the connection is closed without an answer");
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");
    assert_eq!(
        upload(&emulator, &token, rows).await.status(),
        StatusCode::NO_CONTENT
    );
    let stats = emulator.stats();
    assert_eq!(stats.dropped_connections, 1);
    assert_eq!(stats.rows, 1);
}

#[tokio::test]
async fn a_stalled_request_outlasts_a_client_timeout() {
    let emulator = start().await;
    emulator.set_faults(Faults {
        stall_rate: 1.0,
        stall_ms: 600,
        ..Faults::default()
    });
    let token = emulator.issue_token();
    let error = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap()
        .post(emulator.ingestion_endpoint())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&json!([login_row(&now(), "a@example.com")])).unwrap())
        .send()
        .await
        .expect_err("the stall outlasts the timeout");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(emulator.stats().stalled_requests, 1);
}

#[tokio::test]
async fn the_managed_identity_endpoint_checks_its_header_and_returns_expires_on_as_a_string() {
    let emulator = start().await;
    let url = format!(
        "{}?resource=https://monitor.azure.com&api-version=2019-08-01",
        emulator.identity_endpoint()
    );
    let missing = client().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let wrong = client()
        .get(&url)
        .header("X-IDENTITY-HEADER", "not-the-header")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let old_version = client()
        .get(url.replace("2019-08-01", "2017-09-01"))
        .header("X-IDENTITY-HEADER", emulator.identity_header())
        .send()
        .await
        .unwrap();
    assert_eq!(old_version.status(), StatusCode::BAD_REQUEST);

    let body: Value = client()
        .get(&url)
        .header("X-IDENTITY-HEADER", emulator.identity_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expires_on: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3590..=now + 3600).contains(&expires_on),
        "{expires_on}"
    );
    assert_eq!(body["resource"], "https://monitor.azure.com");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["client_id"],
        emulator.config().identity_client_id.as_str()
    );

    let rows = json!([login_row(
        &chrono::Utc::now().to_rfc3339(),
        "mi@example.com"
    )]);
    let response = upload_json(&emulator, body["access_token"].as_str().unwrap(), &rows).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let stats = emulator.stats();
    assert_eq!(stats.identity_requests, 4);
    assert_eq!(stats.identity_failures, 3);
}

#[tokio::test]
async fn requests_outside_the_contract_get_the_documented_or_declared_errors() {
    let emulator = start().await;
    let token = token(&emulator).await;
    let rows = serde_json::to_vec(&json!([login_row(&now(), "a@example.com")])).unwrap();
    let base = emulator.base_url();
    let dcr = emulator.config().dcr_id.clone();
    let stream = logrelay_core::schema::DEFAULT_STREAM;
    let post =
        |url: String, content_type: &'static str, encoding: Option<&'static str>, body: Vec<u8>| {
            let mut request = client()
                .post(url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(CONTENT_TYPE, content_type)
                .body(body);
            if let Some(encoding) = encoding {
                request = request.header(CONTENT_ENCODING, encoding);
            }
            request.send()
        };
    let url = |dcr: &str, stream: &str, version: &str| {
        format!("{base}/dataCollectionRules/{dcr}/streams/{stream}?api-version={version}")
    };

    let (status, _, body) = error_of(
        post(
            url("dcr-00000000000000000000000000000000", stream, "2023-01-01"),
            "application/json",
            None,
            rows.clone(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NotFound");
    assert_eq!(
        body["error"]["message"],
        "Data collection rule with immutable Id 'dcr-00000000000000000000000000000000' not found."
    );

    /// (url, content type, content encoding, body, expected status)
    type Case = (
        String,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            url(&dcr, "Custom-Unknown", "2023-01-01"),
            "application/json",
            None,
            rows.clone(),
            StatusCode::NOT_FOUND,
        ),
        (
            url(&dcr, stream, "2021-11-01-preview"),
            "application/json",
            None,
            rows.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}/dataCollectionRules/{dcr}/streams/{stream}"),
            "application/json",
            None,
            rows.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "text/plain",
            None,
            rows.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "application/json",
            Some("br"),
            rows.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "application/json",
            Some("gzip"),
            rows.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "application/json",
            None,
            b"{\"a\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "application/json",
            None,
            b"[1,2]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            url(&dcr, stream, "2023-01-01"),
            "application/json",
            None,
            b"[{\"a\":".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (url, content_type, encoding, body, expected) in cases {
        let response = post(url.clone(), content_type, encoding, body)
            .await
            .unwrap();
        let (status, header, body) = error_of(response).await;
        assert_eq!(
            status, expected,
            "{url} {content_type} {encoding:?}: {body}"
        );
        assert_eq!(header.as_deref(), body["error"]["code"].as_str(), "{url}");
    }

    let empty = post(
        url(&dcr, stream, "2023-01-01"),
        "application/json",
        None,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(empty.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(empty.bytes().await.unwrap().is_empty());
    assert_eq!(emulator.stats().rows, 0);
}

#[tokio::test]
async fn a_forbidden_client_gets_403_operation_failed_with_the_real_message() {
    let emulator = start().await;
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let token = token(&emulator).await;
    let (status, header, body) = error_of(
        upload_json(
            &emulator,
            &token,
            &json!([login_row(&now(), "a@example.com")]),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(header.as_deref(), Some("OperationFailed"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!(
        "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '{}'",
        emulator.config().dcr_id
    )));
    assert!(message.contains("AccessGranted: False"));
}

#[tokio::test]
async fn revoked_tokens_are_401_and_a_fresh_token_works() {
    let emulator = start().await;
    let old = token(&emulator).await;
    emulator.set_faults(Faults {
        revoke_tokens: true,
        ..Faults::default()
    });
    let rows = json!([login_row(&now(), "a@example.com")]);
    assert_eq!(
        upload_json(&emulator, &old, &rows).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = token(&emulator).await;
    assert_eq!(
        upload_json(&emulator, &fresh, &rows).await.status(),
        StatusCode::NO_CONTENT
    );
    let stats = emulator.stats();
    assert_eq!(stats.revoked_token_uses, 1);
    assert_eq!(stats.distinct_tokens_used, 1);
    assert!(
        !emulator.faults().revoke_tokens,
        "revocation is a one-shot action"
    );
}

#[tokio::test]
async fn a_token_script_throttles_the_next_token_requests_in_entra_shape() {
    let emulator = start().await;
    emulator.set_faults(Faults {
        token_script: vec![429, 503],
        ..Faults::default()
    });
    for (expected, aadsts) in [(429, 90055), (503, 90024)] {
        let response = client()
            .post(emulator.token_url())
            .form(&token_form(&emulator, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_codes"], json!([aadsts]));
    }
    token(&emulator).await;
    let stats = emulator.stats();
    assert_eq!(
        (
            stats.token_requests,
            stats.token_failures,
            stats.tokens_issued
        ),
        (3, 2, 1)
    );
}

#[tokio::test]
async fn a_stricter_size_limit_fault_answers_413_at_its_threshold() {
    let emulator = start().await;
    emulator.set_faults(Faults {
        max_body_bytes: Some(4096),
        ..Faults::default()
    });
    let token = emulator.issue_token();
    assert_eq!(
        upload(&emulator, &token, body_of_exact_size(4096))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (status, _, body) =
        error_of(upload(&emulator, &token, body_of_exact_size(4097)).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body["error"]["message"],
        "Maximum allowed content length: 4096 bytes (4 KB). Provided content length: 4097 bytes."
    );
}

#[tokio::test]
async fn extra_streams_can_be_declared_for_passthrough_rows() {
    let config = EmulatorConfig::default().with_stream(StreamConfig::new(
        "Custom-Flat",
        &[
            ("TimeGenerated", "datetime"),
            ("message", "string"),
            ("count", "int"),
        ],
    ));
    let emulator = Emulator::start(config).await.unwrap();
    let token = emulator.issue_token();
    let response = client()
        .post(emulator.ingestion_url("Custom-Flat"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .json(&json!([{"TimeGenerated": now(), "message": "hi", "count": 3, "other": true}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let rows = emulator.rows_for("Custom-Flat");
    assert_eq!(
        (rows[0]["message"].clone(), rows[0]["count"].clone()),
        (json!("hi"), json!(3))
    );
    assert!(emulator
        .rows_for(logrelay_core::schema::DEFAULT_STREAM)
        .is_empty());
    assert_eq!(emulator.stats().dropped_columns, 1);
}

#[tokio::test]
async fn the_control_plane_sets_faults_reports_stats_and_rows_and_resets() {
    let emulator = start().await;
    let http = client();
    let base = emulator.base_url();
    let health = http
        .get(format!("{base}/_emulator/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let put = http
        .put(format!("{base}/_emulator/faults"))
        .json(&json!({"script": [503]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let token = emulator.issue_token();
    let rows = json!([login_row(&now(), "a@example.com")]);
    assert_eq!(
        upload_json(&emulator, &token, &rows).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        upload_json(&emulator, &token, &rows).await.status(),
        StatusCode::NO_CONTENT
    );

    let stats: Value = http
        .get(format!("{base}/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["ingestion_requests"], 2);
    assert_eq!(stats["status_counts"]["503"], 1);
    let stored: Value = http
        .get(format!(
            "{base}/_emulator/rows?stream={}",
            logrelay_core::schema::DEFAULT_STREAM
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, rows);
    let first: Value = http
        .get(format!("{base}/_emulator/rows?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, Value::Array(rows.as_array().unwrap()[..1].to_vec()));

    let reset = http
        .post(format!("{base}/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert!(emulator.rows().is_empty());
    assert_eq!(emulator.stats().ingestion_requests, 0);
    assert_eq!(
        upload_json(&emulator, &token, &rows).await.status(),
        StatusCode::NO_CONTENT,
        "tokens stay valid across a reset"
    );
}

#[tokio::test]
async fn the_binary_writes_its_env_file_once_listening_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("emulator.env");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_azmon-emulator"))
        .args(["--port", "0", "--env-file"])
        .arg(&env_file)
        .args(["--fault-rate", "1", "--fault-statuses", "503"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !env_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no env file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&env_file).unwrap();
    let vars: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    for name in [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_AUTHORITY_HOST",
        "LOGS_INGESTION_ENDPOINT",
        "AZMON_EMULATOR_PORT",
    ] {
        assert!(vars.contains_key(name), "{name} missing from {text}");
    }
    let base = vars["AZURE_AUTHORITY_HOST"];
    assert_eq!(
        base,
        format!("http://127.0.0.1:{}", vars["AZMON_EMULATOR_PORT"])
    );
    let health = client()
        .get(format!("{base}/_emulator/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // The command-line faults are in force: every ingestion request is a 503.
    let token: Value = client()
        .post(format!(
            "{base}/{}/oauth2/v2.0/token",
            vars["AZURE_TENANT_ID"]
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", vars["AZURE_CLIENT_ID"]),
            ("client_secret", vars["AZURE_CLIENT_SECRET"]),
            ("scope", "https://monitor.azure.com//.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = client()
        .post(vars["LOGS_INGESTION_ENDPOINT"])
        .bearer_auth(token["access_token"].as_str().unwrap())
        .header(CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&json!([login_row(&now(), "a@example.com")])).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = child.0.take().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        (status, stdout)
    })
    .await
    .unwrap();
    assert!(output.0.success(), "{:?}", output.0);
    assert_eq!(
        output.1.trim(),
        format!("azmon-emulator listening on {base}")
    );
}

/// Kills a child process if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn a_government_cloud_emulator_takes_only_the_us_scope_and_audience() {
    let emulator = Emulator::start(EmulatorConfig {
        cloud: logrelay_core::config::Cloud::UsGovernment,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    assert!(emulator
        .env()
        .contains(&("AZURE_CLOUD".to_string(), "usgovernment".to_string())));
    let tenant = emulator.config().tenant_id.clone();
    let (status, body) = request_token(
        &emulator,
        &tenant,
        &token_form(
            &emulator,
            &[("scope", "https://monitor.azure.com/.default")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(
        body["error_uri"],
        "https://login.microsoftonline.us/error?code=70011"
    );
    let (status, body) = request_token(
        &emulator,
        &tenant,
        &token_form(
            &emulator,
            &[("scope", "https://monitor.azure.us//.default")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        azmon_emulator::decode_claims(token).unwrap()["aud"],
        "https://monitor.azure.us"
    );
    let rows = json!([login_row(&now(), "gov@example.com")]);
    assert_eq!(
        upload_json(&emulator, token, &rows).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn outside_strict_mode_a_bare_object_is_accepted_and_dropped_as_observed() {
    let emulator = Emulator::start(EmulatorConfig {
        strict: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let token = emulator.issue_token();
    let response = upload_json(&emulator, &token, &login_row(&now(), "a@example.com")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(emulator.rows().is_empty());
    assert_eq!(emulator.stats().accepted_requests, 1);
}

async fn upload_gzip(emulator: &Emulator, token: &str, body: &[u8]) -> reqwest::Response {
    client()
        .post(emulator.ingestion_endpoint())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_ENCODING, "gzip")
        .body(gzip(body))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_count_only_emulator_counts_every_row_stores_none_and_still_refuses_bad_bodies() {
    let emulator = Emulator::start(EmulatorConfig {
        store_rows: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let token = emulator.issue_token();
    let time = now();
    let two = json!([
        login_row(&time, "a@example.com"),
        login_row(&time, "b@example.com")
    ]);
    let one = json!([login_row(&time, "c@example.com")]);
    for rows in [&two, &one] {
        let response = upload_gzip(&emulator, &token, &serde_json::to_vec(rows).unwrap()).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let stats = emulator.stats();
    assert_eq!((stats.rows, stats.ingestion_requests), (3, 2));
    assert!(emulator.rows().is_empty());

    // The checks still run: a non-object item, a bare object, broken gzip, a wrong token and a
    // decompressed body over the limit are refused, and count no rows.
    let refusals: [(&[u8], &str, StatusCode, &str); 3] = [
        (
            b"[{\"a\":1},2]",
            "token",
            StatusCode::BAD_REQUEST,
            "InvalidPayload",
        ),
        (
            b"{\"a\":1}",
            "token",
            StatusCode::BAD_REQUEST,
            "InvalidPayload",
        ),
        (
            b"[{\"a\":1}]",
            "not-a-token",
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
        ),
    ];
    for (body, which, want_status, want_code) in refusals {
        let bearer = if which == "token" {
            token.as_str()
        } else {
            which
        };
        let (status, code, _) = error_of(upload_gzip(&emulator, bearer, body).await).await;
        assert_eq!((status, code.as_deref()), (want_status, Some(want_code)));
    }
    let corrupt = client()
        .post(emulator.ingestion_endpoint())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_ENCODING, "gzip")
        .body(&b"\x1f\x8b\x08 not gzip"[..])
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(corrupt).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::BAD_REQUEST, Some("InvalidContentEncoding"))
    );
    let too_big = body_of_exact_size(MAX_BODY_BYTES + 1);
    let (status, code, _) = error_of(upload_gzip(&emulator, &token, &too_big).await).await;
    assert_eq!(
        (status, code.as_deref()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("ContentLengthLimitExceeded")
        )
    );
    assert_eq!(emulator.stats().rows, 3);
    assert!(emulator.rows().is_empty());
}
