//! The emulator is strict and faithful: Entra's token errors, the ingestion API's limits and
//! error shapes, the table's column rules, and the injected faults, checked with a real client.

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
    assert_eq!(emulator.rows_for(logrelay::schema::DEFAULT_STREAM).len(), 2);
    let stats = emulator.stats();
    assert_eq!(stats.accepted_requests, 1);
    assert_eq!(stats.rows, 2);
    assert_eq!(stats.distinct_tokens_used, 1);
    assert_eq!(stats.status_counts.get(&204), Some(&1));
}
