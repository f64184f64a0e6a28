//! AWS STS `GetWebIdentityToken` (IAM outbound identity federation) at `POST /`, in the AWS
//! query protocol: a form body in, `GetWebIdentityTokenResponse` XML or an `ErrorResponse` out
//! (docs/emulator-facts.md §8). The JWT is signed by the emulator's AWS-account issuer.
//!
//! Like moto, the emulator reads the caller's access key id from the SigV4 `Authorization`
//! header and does NOT verify the signature itself: a registered key is the role it was
//! registered with ([`crate::Emulator::allow_sts_caller`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::jwt::{ES384, RS256};
use crate::oidc::standard_claims;
use crate::state::State;

/// The STS API version every query-protocol request names. Source: docs/emulator-facts.md §8.1 (the STS API reference).
pub const STS_API_VERSION: &str = "2011-06-15";
/// The XML namespace of STS answers (the service model's `xmlNamespace`). Source: docs/emulator-facts.md §8.1.
const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// `Audience.member.N`: 1 to 10 values. Source: docs/emulator-facts.md §8.1.
const MAX_AUDIENCES: usize = 10;
/// Each audience is 1 to 1000 characters. Source: docs/emulator-facts.md §8.1.
const MAX_AUDIENCE_CHARS: usize = 1000;
/// `DurationSeconds` range. Source: docs/emulator-facts.md §8.1.
const MIN_DURATION_SECS: i64 = 60;
/// `DurationSeconds` range. Source: docs/emulator-facts.md §8.1.
const MAX_DURATION_SECS: i64 = 3600;
/// `DurationSeconds` when absent. Source: docs/emulator-facts.md §8.1.
pub const DEFAULT_WEB_IDENTITY_DURATION_SECS: u64 = 300;
/// The SigV4 `Authorization` scheme. Source: docs/emulator-facts.md §8.2 (AWS SigV4 reference).
const SIGV4_SCHEME: &str = "AWS4-HMAC-SHA256";

/// `POST /`: the STS query API.
pub(crate) async fn sts_endpoint(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.lock().stats.sts_requests += 1;
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let action = get("Action").unwrap_or_default();
    let version = get("Version").unwrap_or_default();
    let outcome = match (action, version) {
        ("GetWebIdentityToken", STS_API_VERSION) => get_web_identity_token(&state, &headers, &form),
        _ => Err(sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {action} for version {version}"),
        )),
    };
    match outcome {
        Ok(response) => response,
        Err(response) => {
            tracing::info!(
                action,
                status = response.status().as_u16(),
                "STS request refused."
            );
            response
        }
    }
}

fn get_web_identity_token(
    state: &State,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Response, Response> {
    let (access_key_id, region) = sigv4_credential(headers).ok_or_else(|| {
        sts_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    })?;
    let role_arn = state
        .lock()
        .sts_callers
        .get(&access_key_id)
        .cloned()
        .ok_or_else(|| {
            sts_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!(
                    "User with access key id {access_key_id} is not authorized to perform: sts:GetWebIdentityToken (emulator: this key is not registered with allow_sts_caller)"
                ),
            )
        })?;
    let request = WebIdentityTokenRequest::parse(form).map_err(|problems| {
        let count = problems.len();
        let noun = if count == 1 { "error" } else { "errors" };
        sts_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!(
                "{count} validation {noun} detected: {}",
                problems.join("; ")
            ),
        )
    })?;
    if !state.config.aws_federation_enabled {
        return Err(sts_error(
            StatusCode::FORBIDDEN,
            "OutboundWebIdentityFederationDisabledException",
            "The outbound web identity federation feature is not enabled for this account. To use this feature, you must first enable it through the AWS Management Console or API.",
        ));
    }
    let issuer_url = state.aws_issuer();
    let now = state.now();
    let mut claims = standard_claims(
        &issuer_url,
        &role_arn,
        &request.audiences,
        now,
        request.duration_secs,
    );
    // AWS puts its own claims under the `https://sts.amazonaws.com/` namespace (docs/emulator-facts.md §8.3).
    claims["https://sts.amazonaws.com/"] = serde_json::json!({
        "aws_account": account_of(&role_arn),
        "principal_id": role_arn,
        "source_region": region,
    });
    let keys =
        state.issuers.aws.keys().map_err(|error| {
            sts_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", &error)
        })?;
    let token = keys
        .sign(&request.algorithm, &claims)
        .map_err(|error| sts_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", &error))?;
    let expiration =
        chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(request.duration_secs))
            .format("%Y-%m-%dT%H:%M:%SZ");
    state.lock().stats.sts_web_identity_tokens += 1;
    tracing::info!(role = %role_arn, expires_in = request.duration_secs, "STS web identity token issued.");
    let request_id = uuid::Uuid::new_v4();
    let body = format!(
        "<GetWebIdentityTokenResponse xmlns=\"{STS_XMLNS}\">\n  <GetWebIdentityTokenResult>\n    <WebIdentityToken>{}</WebIdentityToken>\n    <Expiration>{expiration}</Expiration>\n  </GetWebIdentityTokenResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</GetWebIdentityTokenResponse>\n",
        xml_escape(&token)
    );
    Ok(xml_response(StatusCode::OK, body, request_id))
}

/// A validated `GetWebIdentityToken` request.
#[derive(Debug)]
struct WebIdentityTokenRequest {
    audiences: Vec<String>,
    algorithm: String,
    duration_secs: u64,
}

impl WebIdentityTokenRequest {
    /// Reads and validates the parameters, collecting every problem as STS's validation layer
    /// words them (`Value ... at 'name' failed to satisfy constraint: ...`).
    fn parse(form: &[(String, String)]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        // `Audience.member.N`, ordered by N (the query protocol's list form).
        let mut members: Vec<(u32, String)> = form
            .iter()
            .filter_map(|(key, value)| {
                let n = key.strip_prefix("Audience.member.")?.parse().ok()?;
                Some((n, value.clone()))
            })
            .collect();
        members.sort_by_key(|(n, _)| *n);
        let audiences: Vec<String> = members.into_iter().map(|(_, value)| value).collect();
        if audiences.is_empty() {
            problems.push(
                "Value null at 'audience' failed to satisfy constraint: Member must not be null"
                    .to_string(),
            );
        } else if audiences.len() > MAX_AUDIENCES {
            problems.push(format!(
                "Value '[{}]' at 'audience' failed to satisfy constraint: Member must have length less than or equal to {MAX_AUDIENCES}",
                audiences.join(", ")
            ));
        }
        for (index, audience) in audiences.iter().enumerate() {
            let chars = audience.chars().count();
            if chars == 0 || chars > MAX_AUDIENCE_CHARS {
                problems.push(format!(
                    "Value '{audience}' at 'audience.{}.member' failed to satisfy constraint: Member must have length between 1 and {MAX_AUDIENCE_CHARS}",
                    index + 1
                ));
            }
        }
        let algorithm = form
            .iter()
            .find(|(key, _)| key == "SigningAlgorithm")
            .map(|(_, value)| value.clone());
        match algorithm.as_deref() {
            None => problems.push(
                "Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null"
                    .to_string(),
            ),
            Some(RS256 | ES384) => {}
            // The model says only "length 5"; the set is the documented one (emulator-defined wording).
            Some(other) => problems.push(format!(
                "Value '{other}' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [{RS256}, {ES384}]"
            )),
        }
        let duration = form
            .iter()
            .find(|(key, _)| key == "DurationSeconds")
            .map(|(_, value)| value.as_str());
        let duration_secs = match duration {
            None => DEFAULT_WEB_IDENTITY_DURATION_SECS,
            Some(raw) => match raw.parse::<i64>() {
                Ok(secs) if secs < MIN_DURATION_SECS => {
                    problems.push(format!(
                        "Value '{secs}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION_SECS}"
                    ));
                    0
                }
                Ok(secs) if secs > MAX_DURATION_SECS => {
                    problems.push(format!(
                        "Value '{secs}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION_SECS}"
                    ));
                    0
                }
                Ok(secs) => secs.unsigned_abs(),
                Err(_) => {
                    problems.push(format!(
                        "Value '{raw}' at 'durationSeconds' failed to satisfy constraint: Member must be an integer"
                    ));
                    0
                }
            },
        };
        if problems.is_empty() {
            Ok(WebIdentityTokenRequest {
                audiences,
                algorithm: algorithm.unwrap_or_default(),
                duration_secs,
            })
        } else {
            Err(problems)
        }
    }
}

/// The access key id and region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=<AKID>/<date>/<region>/<service>/aws4_request, SignedHeaders=..., Signature=...`.
fn sigv4_credential(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let rest = value.strip_prefix(SIGV4_SCHEME)?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    let mut scope = credential.split('/');
    let access_key_id = scope.next().filter(|id| !id.is_empty())?;
    let _date = scope.next()?;
    let region = scope.next()?;
    // A signature must be there, even though the emulator does not check it (as moto).
    rest.contains("Signature=")
        .then(|| (access_key_id.to_string(), region.to_string()))
}

/// The account id of an ARN (`arn:aws:iam::123456789012:role/name`).
fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_string()
}

/// A query-protocol error: `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`.
fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let request_id = uuid::Uuid::new_v4();
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(code),
        xml_escape(message)
    );
    xml_response(status, body, request_id)
}

fn xml_response(status: StatusCode, body: String, request_id: uuid::Uuid) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(id) = HeaderValue::from_str(&request_id.to_string()) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_duration_defaults_to_300_seconds_and_audiences_keep_their_member_order() {
        let request = WebIdentityTokenRequest::parse(&form(&[
            ("Audience.member.2", "b"),
            ("Audience.member.1", "a"),
            ("SigningAlgorithm", "RS256"),
        ]))
        .unwrap();
        assert_eq!(request.duration_secs, 300);
        assert_eq!(request.audiences, ["a", "b"]);
    }

    #[test]
    fn every_invalid_parameter_is_reported() {
        let problems = WebIdentityTokenRequest::parse(&form(&[
            ("SigningAlgorithm", "HS256"),
            ("DurationSeconds", "59"),
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("'audience'"));
        assert!(problems[1].contains("'HS256' at 'signingAlgorithm'"));
        assert!(problems[2].contains("greater than or equal to 60"));
    }

    #[test]
    fn the_access_key_id_and_region_come_from_the_sigv4_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261201/eu-west-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"),
        );
        assert_eq!(
            sigv4_credential(&headers),
            Some(("AKIAEXAMPLE".to_string(), "eu-west-1".to_string()))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(sigv4_credential(&headers), None);
    }
}
