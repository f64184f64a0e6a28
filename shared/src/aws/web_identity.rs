//! AWS IAM outbound identity federation: the function's role asks STS `GetWebIdentityToken`
//! for a JWT with the Entra audience and presents it as the client assertion, so no secret
//! exists anywhere (<https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html>,
//! <https://learn.microsoft.com/entra/workload-id/workload-identity-federation>).
//!
//! The JWT is kept and reused until its refresh point (half of its short life), and never
//! once it is within [`crate::auth::assertion::ASSERTION_MIN_REMAINING`] of expiry, on the
//! injected clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;

use super::clients::{aws_error, error_code};
use crate::auth::assertion::{
    time_claim, unverified_claims, Assertion, AssertionCache, AssertionSource,
};
use crate::clock::{Clock, SystemClock};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// Entra accepts only RS256-signed federated tokens ("Only issuers that provide tokens signed
/// using the RS256 algorithm are supported",
/// <https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations>).
pub const SIGNING_ALGORITHM: &str = "RS256";

/// How long each STS token lives: short, since it is reused only to get one access token.
/// STS takes 60-3600 s, default 300
/// (<https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html>).
pub const TOKEN_DURATION: Duration = Duration::from_secs(300);

/// STS's error code when the account has not enabled outbound identity federation
/// (<https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html#API_GetWebIdentityToken_Errors>).
pub const FEDERATION_DISABLED_CODE: &str = "OutboundWebIdentityFederationDisabledException";

/// Gets assertions from STS `GetWebIdentityToken` (regional endpoint: the operation is not on
/// the global one; the SDK's STS client is regional by default).
#[derive(Debug)]
pub struct StsWebIdentitySource {
    client: aws_sdk_sts::Client,
    audience: String,
    clock: Arc<dyn Clock>,
    cache: AssertionCache,
}

impl StsWebIdentitySource {
    /// A source asking for tokens with `audience` (e.g. `api://AzureADTokenExchange`).
    pub fn new(client: aws_sdk_sts::Client, audience: impl Into<String>) -> Self {
        StsWebIdentitySource {
            client,
            audience: audience.into(),
            clock: Arc::new(SystemClock),
            cache: AssertionCache::default(),
        }
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn fetch(&self) -> Result<Assertion> {
        let now = self.clock.now();
        if let Some(cached) = self.cache.fresh(now) {
            return Ok(cached);
        }
        let output = self
            .client
            .get_web_identity_token()
            .audience(self.audience.clone())
            .signing_algorithm(SIGNING_ALGORITHM)
            .duration_seconds(TOKEN_DURATION.as_secs() as i32)
            .send()
            .await
            .map_err(|error| {
                let code = error_code(&error).map(str::to_string);
                let mapped = aws_error("STS", "GetWebIdentityToken", &error);
                with_advice(mapped, code.as_deref(), &self.audience)
            })?;
        let jwt = output
            .web_identity_token()
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Error::Aws {
                service: "STS",
                operation: "GetWebIdentityToken",
                reason: "the answer has no WebIdentityToken".into(),
                transient: true,
            })?
            .to_string();
        let claims = unverified_claims(&jwt);
        let expires_at = output
            .expiration()
            .and_then(|at| SystemTime::try_from(*at).ok())
            .or_else(|| claims.as_ref().and_then(|c| time_claim(c, "exp")))
            .unwrap_or(now + TOKEN_DURATION);
        let issued_at = claims
            .as_ref()
            .and_then(|c| time_claim(c, "iat"))
            .filter(|iat| *iat <= expires_at)
            .unwrap_or(now);
        let assertion = Assertion {
            jwt: Secret::new(jwt),
            issued_at,
            expires_at,
        };
        self.cache.store(&assertion);
        tracing::debug!(
            valid_for_secs = expires_at.duration_since(now).unwrap_or_default().as_secs(),
            "Got a web identity token from STS."
        );
        Ok(assertion)
    }
}

/// Adds what to do for the STS refusals federation meets.
fn with_advice(error: Error, code: Option<&str>, audience: &str) -> Error {
    let advice = match code {
        Some(FEDERATION_DISABLED_CODE) => Some(
            "outbound identity federation is not enabled for this AWS account: run `aws iam enable-outbound-web-identity-federation` once (infra/README.md)".to_string(),
        ),
        Some("AccessDenied" | "AccessDeniedException") => Some(format!(
            "the function's role may not call sts:GetWebIdentityToken for audience {audience}: add that permission with the condition sts:IdentityTokenAudience = {audience} (the SAM template does when EntraCredential=AwsFederation)"
        )),
        _ => None,
    };
    match (error, advice) {
        (
            Error::Aws {
                service,
                operation,
                reason,
                transient,
            },
            Some(advice),
        ) => Error::Aws {
            service,
            operation,
            reason: format!("{reason}; fix: {advice}"),
            transient,
        },
        (error, _) => error,
    }
}

impl AssertionSource for StsWebIdentitySource {
    fn assertion<'a>(&'a self, _token_url: &'a Url) -> BoxFuture<'a, Result<Assertion>> {
        Box::pin(self.fetch())
    }

    fn describe(&self) -> String {
        format!(
            "AWS web identity federation (STS GetWebIdentityToken, audience {})",
            self.audience
        )
    }
}
