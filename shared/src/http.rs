//! The outbound HTTP client and the rule that plain HTTP goes only to loopback.

use std::time::Duration;

use url::Url;

use crate::{Error, Result};

/// Refuses `http://` to anything but a loopback address; tokens must never cross a network in clear.
pub fn require_tls_or_loopback(name: &str, url: &Url) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Error::InvalidConfig {
            name: name.to_string(),
            reason: format!(
                "plain http:// is refused for {}; use https:// (http is allowed only to 127.0.0.1, [::1] or localhost)",
                url.host_str().unwrap_or("?")
            ),
        }),
        other => Err(Error::InvalidConfig {
            name: name.to_string(),
            reason: format!("unsupported URL scheme `{other}`; use https://"),
        }),
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Builds the shared reqwest client: rustls, a per-attempt timeout, no redirects (a redirect
/// would carry the bearer token somewhere unchecked).
pub fn build_client(request_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("logrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::InvalidConfig {
            name: "http client".into(),
            reason: error.to_string(),
        })
}

/// A host given with or without its scheme (https assumed), as a URL.
pub(crate) fn parse_host_url(name: &str, value: &str, example: &str) -> Result<Url> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    Url::parse(&with_scheme).map_err(|error| {
        Error::invalid(
            name,
            format!("`{value}` is not a URL ({error}); expected e.g. {example}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://[::1]:1/",
            "http://localhost:9/",
            "https://example.com/",
        ] {
            assert!(
                require_tls_or_loopback("X", &Url::parse(ok).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://10.0.0.1/",
            "http://example.ingest.monitor.azure.com/",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                require_tls_or_loopback("X", &Url::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
