//! Secretless federation through the emulator: STS `GetWebIdentityToken` called with the real
//! aws-sdk-sts client, the issuers' discovery documents and JWKS read over HTTP, tokens verified
//! with the independent `jsonwebtoken` crate, and Entra's client-assertion checks (federated and
//! certificate) with the AADSTS code of each refusal.

// Helpers panic on unexpected values just like the tests that call them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::ProvideErrorMetadata as _;
use azmon_emulator::{
    test_certificate, Emulator, EmulatorConfig, FederatedCredential, ENTRA_TOKEN_EXCHANGE_AUDIENCE,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest as _;

/// The credentials a Lambda function's role session would have (moto-style test values).
const ACCESS_KEY_ID: &str = "AKIAFEDEMUTEST000001";
const SECRET_ACCESS_KEY: &str = "fedemu/test/secret/key/not/a/real/one/0001";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/logrelay-s3-forwarder";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An emulator whose app trusts the AWS issuer for `ROLE_ARN` (audience `api://AzureADTokenExchange`).
async fn start_federated() -> Emulator {
    start(EmulatorConfig::default().with_federated_credential(FederatedCredential::aws(ROLE_ARN)))
        .await
}

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

fn sts_client(emulator: &Emulator, access_key_id: &str) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(emulator.sts_endpoint())
        .credentials_provider(Credentials::new(
            access_key_id,
            SECRET_ACCESS_KEY,
            None,
            None,
            "federation-test",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

async fn sts_token(emulator: &Emulator, audience: &str) -> String {
    sts_client(emulator, ACCESS_KEY_ID)
        .get_web_identity_token()
        .audience(audience)
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap()
        .web_identity_token()
        .unwrap()
        .to_string()
}

/// The issuer's JWKS, found the way a relying party finds it: through the discovery document.
async fn jwks_of(issuer: &str) -> JwkSet {
    let discovery: Value = client()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer);
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{issuer}/.well-known/jwks.json"));
    client()
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies `token` with `jsonwebtoken` against the issuer's served JWKS.
async fn verify(token: &str, issuer: &str, audience: &str, alg: Algorithm) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, alg);
    let jwks = jwks_of(issuer).await;
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

/// `POST {token_url}` with a client assertion; the status and the JSON answer.
async fn exchange(emulator: &Emulator, assertion: &str) -> (StatusCode, Value) {
    let config = emulator.config();
    let response = client()
        .post(emulator.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("scope", "https://monitor.azure.com//.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or_default()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- STS ----

#[tokio::test]
async fn a_registered_caller_gets_a_jwt_whose_claims_are_right_and_whose_signature_verifies_against_the_served_jwks(
) {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let before = now_secs();
    let output = sts_client(&emulator, ACCESS_KEY_ID)
        .get_web_identity_token()
        .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
        .signing_algorithm("RS256")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let token = output.web_identity_token().unwrap();
    let claims = verify(
        token,
        &emulator.aws_issuer(),
        ENTRA_TOKEN_EXCHANGE_AUDIENCE,
        Algorithm::RS256,
    )
    .await;
    assert_eq!(claims["sub"], ROLE_ARN);
    assert_eq!(claims["aud"], ENTRA_TOKEN_EXCHANGE_AUDIENCE);
    let exp = claims["exp"].as_u64().unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(exp - iat, 900, "exp = iat + DurationSeconds");
    assert!(iat >= before && iat <= now_secs());
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    assert_eq!(
        claims["https://sts.amazonaws.com/"]["principal_id"],
        ROLE_ARN
    );
    let expiration = output.expiration().unwrap();
    assert_eq!(
        expiration.secs() as u64,
        exp,
        "Expiration is the token's exp"
    );
    assert!(emulator.aws_issuer().starts_with(&emulator.base_url()));
    assert_eq!(emulator.stats().sts_web_identity_tokens, 1);
}

#[tokio::test]
async fn es384_tokens_and_the_default_300_second_lifetime_verify_against_the_jwks_too() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let output = sts_client(&emulator, ACCESS_KEY_ID)
        .get_web_identity_token()
        .audience("https://relying-party.example")
        .audience("api://second")
        .signing_algorithm("ES384")
        .send()
        .await
        .unwrap();
    let claims = verify(
        output.web_identity_token().unwrap(),
        &emulator.aws_issuer(),
        "api://second",
        Algorithm::ES384,
    )
    .await;
    assert_eq!(
        claims["aud"],
        json!(["https://relying-party.example", "api://second"])
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
}

#[tokio::test]
async fn an_unsigned_request_is_refused_with_missing_authentication_token() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let response = client()
        .post(emulator.sts_endpoint())
        .form(&[
            ("Action", "GetWebIdentityToken"),
            ("Version", "2011-06-15"),
            ("Audience.member.1", ENTRA_TOKEN_EXCHANGE_AUDIENCE),
            ("SigningAlgorithm", "RS256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("<Code>MissingAuthenticationToken</Code>"),
        "{body}"
    );
    assert!(body.starts_with("<ErrorResponse"), "{body}");
    assert_eq!(emulator.stats().sts_web_identity_tokens, 0);
}

#[tokio::test]
async fn a_caller_that_was_not_registered_is_denied() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let error = sts_client(&emulator, "AKIAUNKNOWNCALLER001")
        .get_web_identity_token()
        .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap_err();
    let service = error.into_service_error();
    assert_eq!(service.code(), Some("AccessDenied"));
    assert!(service
        .message()
        .unwrap()
        .contains("sts:GetWebIdentityToken"));
}

#[tokio::test]
async fn out_of_range_parameters_get_validation_errors_in_the_sdk_and_on_the_wire() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let sts = sts_client(&emulator, ACCESS_KEY_ID);
    for duration in [59, 3601] {
        let error = sts
            .get_web_identity_token()
            .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
            .signing_algorithm("RS256")
            .duration_seconds(duration)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(error.code(), Some("ValidationError"), "{duration}");
        assert!(error.message().unwrap().contains("durationSeconds"));
    }
    let error = sts
        .get_web_identity_token()
        .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
        .signing_algorithm("HS256")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("ValidationError"));
    let mut eleven = sts.get_web_identity_token().signing_algorithm("RS256");
    for n in 0..11 {
        eleven = eleven.audience(format!("api://audience-{n}"));
    }
    let error = eleven.send().await.unwrap_err().into_service_error();
    assert_eq!(error.code(), Some("ValidationError"));
    assert!(error
        .message()
        .unwrap()
        .contains("less than or equal to 10"));
    assert_eq!(emulator.stats().sts_web_identity_tokens, 0);
}

#[tokio::test]
async fn an_account_without_outbound_federation_gets_the_documented_exception() {
    let emulator = start(EmulatorConfig::default().with_aws_federation_enabled(false)).await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let error = sts_client(&emulator, ACCESS_KEY_ID)
        .get_web_identity_token()
        .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
        .signing_algorithm("RS256")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        error.is_outbound_web_identity_federation_disabled_exception(),
        "{error:?}"
    );
}

// ---- Federated assertions ----

#[tokio::test]
async fn an_sts_token_for_the_registered_issuer_subject_and_audience_buys_a_monitor_token() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&emulator, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
    let (status, body) = exchange(&emulator, &assertion).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let stats = emulator.stats();
    assert_eq!(stats.federated_assertion_grants, 1);
    assert_eq!(stats.client_secret_grants, 0);
    assert_eq!(stats.certificate_assertion_grants, 0);
}

#[tokio::test]
async fn a_wrong_subject_is_refused_with_700213_naming_the_subject_it_saw() {
    let emulator = start(EmulatorConfig::default().with_federated_credential(
        FederatedCredential::aws("arn:aws:iam::123456789012:role/some-other-role"),
    ))
    .await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&emulator, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
    let (status, body) = exchange(&emulator, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 700213, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(
        "AADSTS700213: No matching federated identity record found for presented assertion subject"
    ));
    assert!(description.contains(ROLE_ARN), "{description}");
    assert_eq!(emulator.stats().federated_assertion_grants, 0);
}

#[tokio::test]
async fn a_wrong_audience_is_refused_with_700212_naming_the_audience_it_saw() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&emulator, "api://not-the-exchange").await;
    let (status, body) = exchange(&emulator, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 700212, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("'api://not-the-exchange'"));
}

#[tokio::test]
async fn an_issuer_no_credential_names_is_refused_with_700211_and_no_credential_at_all_with_70021()
{
    let emulator = start(
        EmulatorConfig::default()
            .with_federated_credential(FederatedCredential::external(ROLE_ARN)),
    )
    .await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&emulator, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
    let (status, body) = exchange(&emulator, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 700211, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains(&emulator.aws_issuer()));

    let bare = start(EmulatorConfig::default()).await;
    bare.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&bare, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
    let (_, body) = exchange(&bare, &assertion).await;
    assert_eq!(aadsts(&body), 70021, "{body}");
}

#[tokio::test]
async fn an_assertion_past_its_exp_on_the_emulator_clock_is_refused_with_700024() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_client(&emulator, ACCESS_KEY_ID)
        .get_web_identity_token()
        .audience(ENTRA_TOKEN_EXCHANGE_AUDIENCE)
        .signing_algorithm("RS256")
        .duration_seconds(60)
        .send()
        .await
        .unwrap()
        .web_identity_token()
        .unwrap()
        .to_string();
    emulator.advance_clock(Duration::from_secs(61));
    let (status, body) = exchange(&emulator, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 700024, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("Client assertion is not within its valid time range"));
}

#[tokio::test]
async fn a_tampered_assertion_fails_signature_verification_with_50027() {
    let emulator = start_federated().await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let assertion = sts_token(&emulator, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
    // Same header and signature, claims re-encoded with a later exp: the signature no longer fits.
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 3600);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let (status, body) = exchange(&emulator, &forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 50027, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("failed signature verification"));
    let (_, body) = exchange(&emulator, "not-a-jwt").await;
    assert_eq!(aadsts(&body), 50027, "{body}");
}

#[tokio::test]
async fn an_external_issuer_token_serves_a_federated_token_file_and_its_jwks_verifies_it() {
    let subject = "system:serviceaccount:logrelay:forwarder";
    // Registered at run time with the issuer URL the emulator reports.
    let emulator = start(EmulatorConfig::default()).await;
    emulator.add_federated_credential(FederatedCredential::new(
        emulator.external_issuer(),
        subject,
    ));
    let token = emulator.mint_external_token(subject, ENTRA_TOKEN_EXCHANGE_AUDIENCE, 600);
    let claims = verify(
        &token,
        &emulator.external_issuer(),
        ENTRA_TOKEN_EXCHANGE_AUDIENCE,
        Algorithm::RS256,
    )
    .await;
    assert_eq!(claims["sub"], subject);
    assert_ne!(emulator.external_issuer(), emulator.aws_issuer());
    let (status, body) = exchange(&emulator, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(emulator.stats().federated_assertion_grants, 1);
}

// ---- Certificate assertions ----

/// The DER of a PEM certificate, decoded here (not by the emulator).
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// A certificate assertion as Microsoft's docs describe it: PS256, `x5t#S256`, iss = sub =
/// client id, aud = the token endpoint, jti, nbf, exp.
fn certificate_assertion(emulator: &Emulator, cert_pem: &str, key_pem: &str) -> String {
    let now = now_secs();
    let client_id = &emulator.config().client_id;
    let claims = json!({
        "aud": emulator.token_url(),
        "iss": client_id,
        "sub": client_id,
        "jti": "6a0c3f4e-6f0b-4d47-9d1e-4f1c2b3a4d5e",
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    sign_certificate_assertion(Algorithm::PS256, cert_pem, key_pem, &claims)
}

/// Signs `claims` with `key_pem`, naming `cert_pem` by `x5t#S256` (PS256) or, for the legacy
/// RS256 form, by the SHA-1 `x5t`.
fn sign_certificate_assertion(
    alg: Algorithm,
    cert_pem: &str,
    key_pem: &str,
    claims: &Value,
) -> String {
    let der = pem_der(cert_pem);
    let mut header = Header::new(alg);
    if alg == Algorithm::RS256 {
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1.as_ref()));
    } else {
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der)));
    }
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_legacy_rs256_x5t_assertion_is_accepted_and_bad_claims_get_50027_50048_or_700024() {
    let (cert, key) = test_certificate();
    let emulator = start(EmulatorConfig::default()).await;
    emulator.add_certificate(&cert);
    let client_id = emulator.config().client_id.clone();
    let now = now_secs();
    let good = json!({
        "aud": emulator.token_url(), "iss": client_id, "sub": client_id,
        "jti": "0d9b1c52-3f7e-4a61-8e2d-5b4c3a2f1e0d", "nbf": now, "exp": now + 600,
    });
    let legacy = sign_certificate_assertion(Algorithm::RS256, &cert, &key, &good);
    let (status, body) = exchange(&emulator, &legacy).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("https://login.microsoftonline.com/other/oauth2/v2.0/token");
    let mut wrong_subject = good.clone();
    wrong_subject["sub"] = json!("someone-else");
    let mut expired = good.clone();
    expired["nbf"] = json!(now - 1200);
    expired["exp"] = json!(now - 600);
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(now + 600);
    not_yet["exp"] = json!(now + 1200);
    for (claims, code) in [
        (wrong_audience, 50027),
        (wrong_subject, 50048),
        (expired, 700024),
        (not_yet, 700024),
    ] {
        let assertion = sign_certificate_assertion(Algorithm::PS256, &cert, &key, &claims);
        let (status, body) = exchange(&emulator, &assertion).await;
        assert_ne!(status, StatusCode::OK, "{claims}");
        assert_eq!(aadsts(&body), code, "{claims}: {body}");
    }
    assert_eq!(emulator.stats().certificate_assertion_grants, 1);
}

#[tokio::test]
async fn a_ps256_assertion_signed_by_a_registered_certificate_buys_a_token_and_an_unregistered_one_gets_700027(
) {
    let (cert, key) = test_certificate();
    let (other_cert, other_key) = test_certificate();
    let emulator = Emulator::start(EmulatorConfig::default().with_certificate(cert.clone()))
        .await
        .unwrap();
    let (status, body) = exchange(&emulator, &certificate_assertion(&emulator, &cert, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(emulator.stats().certificate_assertion_grants, 1);

    let (status, body) = exchange(
        &emulator,
        &certificate_assertion(&emulator, &other_cert, &other_key),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(aadsts(&body), 700027, "{body}");
    // The registered certificate's thumbprint with another key's signature: also 700027.
    let forged = certificate_assertion(&emulator, &cert, &other_key);
    let (status, body) = exchange(&emulator, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(aadsts(&body), 700027, "{body}");
    assert_eq!(emulator.stats().certificate_assertion_grants, 1);
}

#[tokio::test]
async fn stats_count_each_grant_kind_separately() {
    let (cert, key) = test_certificate();
    let emulator = start(
        EmulatorConfig::default()
            .with_certificate(cert.clone())
            .with_federated_credential(FederatedCredential::aws(ROLE_ARN)),
    )
    .await;
    emulator.allow_sts_caller(ACCESS_KEY_ID, ROLE_ARN);
    let config = emulator.config().clone();
    let response = client()
        .post(emulator.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("scope", "https://monitor.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = exchange(&emulator, &certificate_assertion(&emulator, &cert, &key)).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let assertion = sts_token(&emulator, ENTRA_TOKEN_EXCHANGE_AUDIENCE).await;
        let (status, _) = exchange(&emulator, &assertion).await;
        assert_eq!(status, StatusCode::OK);
    }
    let stats = emulator.stats();
    assert_eq!(stats.client_secret_grants, 1);
    assert_eq!(stats.certificate_assertion_grants, 1);
    assert_eq!(stats.federated_assertion_grants, 2);
    assert_eq!(stats.sts_web_identity_tokens, 2);
    assert_eq!(stats.tokens_issued, 4);
}
