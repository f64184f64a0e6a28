//! Entra's checks of a JWT `client_assertion` (docs/emulator-facts.md §2.5, §2.7): a certificate
//! assertion (header `x5t#S256`/`x5t` naming a registered certificate) or a federated one (an
//! external issuer's token matched against the app's federated identity credentials), each
//! refused with the AADSTS code Entra gives.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;

use crate::config::EmulatorConfig;
use crate::jwt::{Certificate, Jwt, RS256};
use crate::state::State;
use crate::token::{entra_error, Grant};

/// Checks `assertion` for `client_id` and says which grant it is.
pub(crate) fn check(
    state: &State,
    tenant: &str,
    client_id: &str,
    assertion: &str,
) -> Result<Grant, Response> {
    let config = &state.config;
    let Some(jwt) = Jwt::decode(assertion) else {
        return Err(invalid_jwt(
            config,
            "Invalid JWT token. The token is malformed (not a signed JWT).",
        ));
    };
    let thumbprint = ["x5t#S256", "x5t"]
        .into_iter()
        .find_map(|name| Some((name, jwt.header.get(name)?.as_str()?.to_string())));
    match thumbprint {
        Some((kind, thumbprint)) => {
            certificate(state, tenant, client_id, &jwt, kind, &thumbprint)?;
            Ok(Grant::CertificateAssertion)
        }
        None => {
            federated(state, &jwt)?;
            Ok(Grant::FederatedAssertion)
        }
    }
}

/// A certificate assertion: signed (PS256 or RS256) by a registered certificate's key,
/// `iss` = `sub` = the client id, `aud` = this token endpoint, within `nbf`..`exp`.
fn certificate(
    state: &State,
    tenant: &str,
    client_id: &str,
    jwt: &Jwt,
    kind: &str,
    thumbprint: &str,
) -> Result<(), Response> {
    let config = &state.config;
    let registered = state
        .certificates()
        .iter()
        .filter_map(|pem| Certificate::from_pem(pem))
        .find(|cert| {
            if kind == "x5t" {
                cert.x5t == thumbprint
            } else {
                cert.x5t_s256 == thumbprint
            }
        });
    let Some(cert) = registered else {
        // AADSTS700027. Source: docs/emulator-facts.md §2.5 (reference-error-codes).
        return Err(entra_error(
            config,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            &format!(
                "Client assertion failed signature validation. (Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.)"
            ),
        ));
    };
    if !jwt.verify_with_rsa_spki(&cert.spki) {
        return Err(entra_error(
            config,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    let iss = jwt.claim_str("iss").unwrap_or_default();
    let sub = jwt.claim_str("sub").unwrap_or_default();
    if iss != sub {
        // AADSTS50048 SubjectMismatchesIssuer. Source: docs/emulator-facts.md §2.5 (reference-error-codes).
        return Err(entra_error(
            config,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50048,
            "Subject mismatches Issuer claim in the client assertion.",
        ));
    }
    if iss != client_id {
        return Err(invalid_jwt(
            config,
            &format!(
                "Invalid JWT token: unexpected issuer '{iss}'; a client assertion's iss and sub are the client id '{client_id}'."
            ),
        ));
    }
    let token_url = format!("{}/{tenant}/oauth2/v2.0/token", state.base_url);
    let audiences = jwt.audiences();
    if !audiences
        .iter()
        .any(|aud| aud.trim_end_matches('/') == token_url)
    {
        return Err(invalid_jwt(
            config,
            &format!(
                "Invalid JWT token: unexpected audience '{}'; expected the token endpoint '{token_url}'.",
                audiences.join(", ")
            ),
        ));
    }
    time_range(state, jwt)
}

/// A federated assertion: `iss` among the app's federated credentials and hosted here, RS256
/// by that issuer's key, then `sub` and `aud` against a credential, within `nbf`..`exp`.
fn federated(state: &State, jwt: &Jwt) -> Result<(), Response> {
    let config = &state.config;
    let iss = jwt.claim_str("iss").unwrap_or_default();
    let sub = jwt.claim_str("sub").unwrap_or_default();
    let audiences = jwt.audiences();
    let aud = audiences.join(", ");
    let credentials = state.federated_credentials();
    if credentials.is_empty() {
        // AADSTS70021 (the app has no federated credential at all). Source: docs/emulator-facts.md §2.7.
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    let for_issuer: Vec<_> = credentials
        .iter()
        .filter(|credential| credential.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
        .collect();
    if for_issuer.is_empty() {
        // AADSTS700211. Source: docs/emulator-facts.md §2.7.
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    let Some(issuer) = state.hosted_issuer(iss) else {
        // Emulator-defined: Entra would fetch the issuer's discovery document; only the
        // emulator's own issuers can be reached here.
        return Err(invalid_jwt(
            config,
            &format!(
                "Invalid JWT token: unable to retrieve the signing keys of issuer '{iss}' (the emulator hosts only its own issuers)."
            ),
        ));
    };
    if jwt.alg() != Some(RS256) {
        // Entra supports only RS256 issuers. Source: docs/emulator-facts.md §2.7.
        return Err(invalid_jwt(
            config,
            &format!(
                "Invalid JWT token: '{}' is not a supported signature algorithm; only RS256 is.",
                jwt.alg().unwrap_or("none")
            ),
        ));
    }
    let verified = issuer
        .keys()
        .map(|keys| keys.verify_rs256(jwt))
        .unwrap_or(false);
    if !verified {
        // AADSTS50027 lists "External ID token from issuer failed signature verification".
        return Err(invalid_jwt(
            config,
            &format!("Invalid JWT token. External ID token from issuer '{iss}' failed signature verification."),
        ));
    }
    let for_subject: Vec<_> = for_issuer
        .into_iter()
        .filter(|credential| credential.subject == sub)
        .collect();
    if for_subject.is_empty() {
        // AADSTS700213 (case-sensitive comparison). Source: docs/emulator-facts.md §2.7.
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    if !for_subject
        .iter()
        .any(|credential| audiences.contains(&credential.audience))
    {
        // AADSTS700212. Source: docs/emulator-facts.md §2.7.
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{aud}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    time_range(state, jwt)
}

/// `nbf` <= now < `exp` on the emulator's clock, else AADSTS700024 (docs/emulator-facts.md §2.5) with the times it saw.
fn time_range(state: &State, jwt: &Jwt) -> Result<(), Response> {
    let config = &state.config;
    let Some(exp) = jwt.claim_secs("exp") else {
        return Err(invalid_jwt(
            config,
            "Invalid JWT token: the assertion has no 'exp' claim.",
        ));
    };
    let now = state.now();
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let nbf = jwt.claim_secs("nbf");
    let early = nbf.is_some_and(|nbf| now_secs < nbf);
    if now_secs >= exp || early {
        let valid_from = nbf.map(iso).unwrap_or_else(|| "(no nbf)".to_string());
        return Err(entra_error(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {valid_from}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                iso_time(now),
                iso(exp)
            ),
        ));
    }
    Ok(())
}

/// AADSTS50027 InvalidJwtToken (docs/emulator-facts.md §2.5).
fn invalid_jwt(config: &EmulatorConfig, message: &str) -> Response {
    entra_error(
        config,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        50027,
        message,
    )
}

fn iso(secs: u64) -> String {
    iso_time(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Entra's form, with seven fractional digits: `2024-04-05T23:01:54.2089203Z`.
fn iso_time(time: SystemTime) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from(time);
    format!(
        "{}.{:07}Z",
        time.format("%Y-%m-%dT%H:%M:%S"),
        time.timestamp_subsec_nanos() / 100
    )
}
