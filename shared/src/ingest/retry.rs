//! Pure retry policy: which statuses are transient, Retry-After parsing, capped exponential
//! backoff with full jitter, and advice for the errors that retrying cannot fix.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::Deserialize;

/// Longest `Retry-After` honoured. Longer waits are clamped: the service asks for seconds,
/// and a bogus large value must not park a Lambda until its timeout.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// First backoff step (attempt 1 waits up to this). Source: azure-core's factor is 0.8 s.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Largest backoff step before jitter. azure-core caps at 120 s; 30 s suits a Lambda budget.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What to do after an answer from the Logs Ingestion API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// 2xx: accepted (the API answers 204, <https://learn.microsoft.com/rest/api/monitor/dataplane/logs-ingestion/upload>).
    Success,
    /// 408, 429, 500, 502, 503, 504, ≥ 506: try again later (azure-core's list, <https://learn.microsoft.com/rest/api/monitor/dataplane/logs-ingestion/upload>).
    Retry,
    /// 413: the body is too large; send each half separately.
    Split,
    /// 401: forget the cached token and try once more with a fresh one.
    Reauthenticate,
    /// Anything else (400, 403, 404, other 4xx, 501, 505): retrying cannot help.
    Permanent,
}

/// Classifies an HTTP status. Source: <https://learn.microsoft.com/rest/api/monitor/dataplane/logs-ingestion/upload>.
pub fn classify(status: u16) -> RetryAction {
    match status {
        200..=299 => RetryAction::Success,
        408 | 429 | 500 | 502 | 503 | 504 => RetryAction::Retry,
        506.. => RetryAction::Retry,
        413 => RetryAction::Split,
        401 => RetryAction::Reauthenticate,
        _ => RetryAction::Permanent,
    }
}

/// The server's requested wait, from `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After`
/// (seconds or HTTP-date, relative to `now`), clamped to [`MAX_RETRY_AFTER`]. Same headers,
/// same order as azure-core (<https://learn.microsoft.com/rest/api/monitor/dataplane/logs-ingestion/upload>).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let millis = |name: &str| {
        text(name)
            .and_then(|value| value.parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(MAX_RETRY_AFTER.as_secs_f64())))
    };
    let wait = millis("retry-after-ms")
        .or_else(|| millis("x-ms-retry-after-ms"))
        .or_else(|| text("retry-after").and_then(|value| parse_retry_after(value, now)))?;
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Parses a `Retry-After` value: delta-seconds (decimals tolerated) or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    // A date in the past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Capped exponential backoff with full jitter: a uniform wait in
/// `[0, min(cap, base · 2^(attempt−1)))`. `random` returns a value in `[0, 1)`; inject it so
/// tests are deterministic. Example: base 0.5 s, attempt 4 → up to 4 s.
pub fn backoff(
    attempt: u32,
    base: Duration,
    cap: Duration,
    random: impl FnOnce() -> f64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(cap);
    ceiling.mul_f64(random().clamp(0.0, 1.0))
}

/// How long to wait before the next attempt: the larger of the server's request and our own
/// backoff, so a `Retry-After` is never undercut.
pub fn next_delay(server: Option<Duration>, backoff: Duration) -> Duration {
    server.map_or(backoff, |server| server.max(backoff))
}

/// Azure's error answer: `{"error":{"code","message"}}` and the `x-ms-error-code` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureError {
    /// `error.code`, or the `x-ms-error-code` header when the body has none.
    pub code: Option<String>,
    /// `error.message`.
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

/// Longest error message kept from a response (bodies can be large or hostile).
const MAX_MESSAGE_CHARS: usize = 1_000;

impl AzureError {
    /// Reads the error code and message from a response's headers and body.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> AzureError {
        let detail = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let header_code = headers
            .get("x-ms-error-code")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let code = detail
            .as_ref()
            .and_then(|d| d.code.clone())
            .filter(|c| !c.is_empty())
            .or(header_code);
        let message = detail
            .and_then(|d| d.message)
            .filter(|m| !m.is_empty())
            .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect());
        AzureError { code, message }
    }

    /// The code, or `-` when Azure sent none.
    pub fn code_or_dash(&self) -> &str {
        self.code.as_deref().unwrap_or("-")
    }

    fn describe(&self) -> String {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.clone(),
            (None, Some(message)) => message.clone(),
            (None, None) => "no error details".to_string(),
        }
    }
}

/// What to fix, for an answer retrying cannot help. `dcr_id` names the rule in the advice.
pub fn advice(status: u16, error: &AzureError, dcr_id: &str) -> String {
    let azure = error.describe();
    match status {
        401 => format!(
            "HTTP 401 even with a freshly fetched token ({azure}): the token's audience does \
             not match the endpoint's cloud; check AZURE_CLOUD (public, usgovernment, china) \
             and that LOGS_INGESTION_ENDPOINT belongs to that cloud"
        ),
        403 => format!(
            "HTTP 403 ({azure}): grant the role Monitoring Metrics Publisher on the data \
             collection rule {dcr_id} to the app's service principal (AZURE_CLIENT_ID), then \
             allow up to 30 minutes for the assignment to propagate"
        ),
        404 if azure.to_ascii_lowercase().contains("stream") => format!(
            "HTTP 404 ({azure}): the stream is not declared in the rule: the URL's \
             /streams/<name> (LOGS_INGESTION_STREAM) must be a key of the DCR's \
             streamDeclarations, e.g. Custom-KeeperAuditEvents, spelled exactly"
        ),
        404 => format!(
            "HTTP 404 ({azure}): check the DCR immutable id {dcr_id} (properties.immutableId, \
             `dcr-` + 32 hex characters), the stream name, and that the DCR is in the same \
             region as the ingestion endpoint"
        ),
        400 => format!(
            "HTTP 400 ({azure}): Azure refused the body; check that the rows match the DCR \
             stream declaration (column names and types, `logrelay schema`)"
        ),
        413 => format!(
            "HTTP 413 ({azure}): a single row is larger than Azure accepts in one request; \
             shorten its fields"
        ),
        _ => format!("HTTP {status} ({azure}): Azure refused the request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn classifies_statuses_like_the_azure_sdks() {
        let cases = [
            (200, RetryAction::Success),
            (204, RetryAction::Success),
            (408, RetryAction::Retry),
            (429, RetryAction::Retry),
            (500, RetryAction::Retry),
            (502, RetryAction::Retry),
            (503, RetryAction::Retry),
            (504, RetryAction::Retry),
            (506, RetryAction::Retry),
            (599, RetryAction::Retry),
            (413, RetryAction::Split),
            (401, RetryAction::Reauthenticate),
            (400, RetryAction::Permanent),
            (403, RetryAction::Permanent),
            (404, RetryAction::Permanent),
            (409, RetryAction::Permanent),
            (415, RetryAction::Permanent),
            (501, RetryAction::Permanent),
            (505, RetryAction::Permanent),
            (301, RetryAction::Permanent),
        ];
        for (status, expected) in cases {
            assert_eq!(classify(status), expected, "{status}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn reads_retry_after_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06T08:49:37Z
        type Case = (Vec<(&'static str, &'static str)>, Option<Duration>);
        let cases: Vec<Case> = vec![
            (vec![("retry-after", "1")], Some(Duration::from_secs(1))),
            (
                vec![("retry-after", " 2.5 ")],
                Some(Duration::from_millis(2500)),
            ),
            (
                vec![("retry-after-ms", "250")],
                Some(Duration::from_millis(250)),
            ),
            (
                vec![("x-ms-retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            // The millisecond headers win over Retry-After, as in azure-core.
            (
                vec![("retry-after", "9"), ("retry-after-ms", "100")],
                Some(Duration::from_millis(100)),
            ),
            (
                vec![("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")],
                Some(Duration::from_secs(10)),
            ),
            // A date in the past: retry now.
            (
                vec![("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            // Clamped.
            (vec![("retry-after", "86400")], Some(MAX_RETRY_AFTER)),
            (vec![("retry-after-ms", "999999999")], Some(MAX_RETRY_AFTER)),
            // Nonsense is ignored.
            (vec![("retry-after", "soon")], None),
            (vec![("retry-after", "-3")], None),
            (vec![], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(retry_after(&headers(&pairs), now), expected, "{pairs:?}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        // random = 1.0 shows the ceiling.
        assert_eq!(backoff(1, base, cap, || 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, base, cap, || 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, base, cap, || 1.0), Duration::from_secs(4));
        assert_eq!(backoff(7, base, cap, || 1.0), Duration::from_secs(30));
        assert_eq!(
            backoff(u32::MAX, base, cap, || 1.0),
            Duration::from_secs(30)
        );
        // Full jitter: anywhere from zero to the ceiling.
        assert_eq!(backoff(4, base, cap, || 0.0), Duration::ZERO);
        assert_eq!(backoff(4, base, cap, || 0.25), Duration::from_secs(1));
    }

    #[test]
    fn a_retry_after_is_never_undercut_by_the_backoff() {
        let one = Duration::from_secs(1);
        assert_eq!(next_delay(Some(one), Duration::from_millis(10)), one);
        assert_eq!(
            next_delay(Some(one), Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            next_delay(None, Duration::from_millis(10)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn parses_azure_error_bodies_and_the_error_code_header() {
        let body = br#"{"error":{"code":"NotFound","message":"Data collection rule with immutable Id 'dcr-x' not found."}}"#;
        let error = AzureError::parse(&HeaderMap::new(), body);
        assert_eq!(error.code.as_deref(), Some("NotFound"));
        assert!(error.message.unwrap().contains("not found"));

        let header_only = AzureError::parse(
            &headers(&[("x-ms-error-code", "ContentLengthLimitExceeded")]),
            b"",
        );
        assert_eq!(
            header_only.code.as_deref(),
            Some("ContentLengthLimitExceeded")
        );
        assert_eq!(header_only.message, None);

        let garbage = AzureError::parse(&HeaderMap::new(), b"<html>oops</html>");
        assert_eq!(garbage, AzureError::default());
        assert_eq!(garbage.code_or_dash(), "-");
    }

    #[test]
    fn advice_says_what_to_fix() {
        let error = AzureError {
            code: Some("OperationFailed".into()),
            message: Some("The authentication token provided does not have access".into()),
        };
        let forbidden = advice(403, &error, "dcr-0123");
        assert!(
            forbidden.contains("Monitoring Metrics Publisher"),
            "{forbidden}"
        );
        assert!(forbidden.contains("30 minutes"), "{forbidden}");
        assert!(forbidden.contains("dcr-0123"), "{forbidden}");
        assert!(forbidden.contains("OperationFailed"), "{forbidden}");

        let not_found = advice(404, &AzureError::default(), "dcr-0123");
        assert!(not_found.contains("immutable id dcr-0123"), "{not_found}");
        assert!(not_found.contains("region"), "{not_found}");

        let bad = AzureError {
            code: Some("InvalidPayload".into()),
            message: Some("column x has the wrong type".into()),
        };
        let bad_request = advice(400, &bad, "dcr-0123");
        assert!(bad_request.contains("InvalidPayload: column x has the wrong type"));
        assert!(bad_request.contains("stream declaration"));

        let unauthorized = advice(401, &AzureError::default(), "dcr-0123");
        assert!(unauthorized.contains("AZURE_CLOUD"), "{unauthorized}");
    }
}
