//! The crate's one error type. Messages say what went wrong and what to do about it.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in logrelay.
///
/// No variant ever carries a client secret or an access token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required environment variable is not set.
    #[error("missing configuration: set `{name}` ({hint})")]
    MissingConfig {
        name: &'static str,
        hint: &'static str,
    },

    /// A configuration value is present but unusable.
    #[error("invalid configuration `{name}`: {reason}")]
    InvalidConfig { name: String, reason: String },

    /// Entra ID refused to issue a token.
    #[error("Entra ID refused the token request ({code}): {advice}")]
    Token {
        code: String,
        advice: String,
        permanent: bool,
    },

    /// Entra ID or the identity endpoint could not be reached or answered nonsense.
    #[error("token request to {host} failed: {reason}")]
    TokenTransport { host: String, reason: String },

    /// The Logs Ingestion API answered with a permanent error.
    #[error("Logs Ingestion API answered {status} {code}: {advice}")]
    Ingestion {
        status: u16,
        code: String,
        advice: String,
    },

    /// Input that cannot be decoded; names the source and the record.
    #[error("{source_name}: record {record}: {reason}")]
    Decode {
        source_name: String,
        record: u64,
        reason: String,
    },

    /// Reading input failed.
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The dead letter could not be written: events would be lost, so this is fatal.
    #[error("cannot write the dead letter to {location}: {reason}")]
    DeadLetter { location: String, reason: String },

    /// A local file path problem.
    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },

    /// An AWS service call failed.
    #[error("AWS {service} {operation} failed: {reason}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        reason: String,
        transient: bool,
    },

    /// The invocation ran out of time with work still pending; the platform should retry.
    #[error(
        "deadline exceeded with {pending} events not yet delivered; the invocation will be retried"
    )]
    DeadlineExceeded { pending: u64 },
}

impl Error {
    /// An [`Error::InvalidConfig`] naming the variable `name`.
    pub fn invalid(name: &str, reason: impl Into<String>) -> Error {
        Error::InvalidConfig {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether retrying the same work later may succeed (throttling, outages, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::TokenTransport { .. } | Error::DeadlineExceeded { .. } => true,
            Error::Token { permanent, .. } => !permanent,
            Error::Aws { transient, .. } => *transient,
            Error::Io { .. } => true,
            _ => false,
        }
    }
}

impl Error {
    /// The variant's name: the error's type for platforms that categorise failures (Lambda's
    /// `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::MissingConfig { .. } => "MissingConfig",
            Error::InvalidConfig { .. } => "InvalidConfig",
            Error::Token { .. } => "Token",
            Error::TokenTransport { .. } => "TokenTransport",
            Error::Ingestion { .. } => "Ingestion",
            Error::Decode { .. } => "Decode",
            Error::Io { .. } => "Io",
            Error::DeadLetter { .. } => "DeadLetter",
            Error::Path { .. } => "Path",
            Error::Aws { .. } => "Aws",
            Error::DeadlineExceeded { .. } => "DeadlineExceeded",
        }
    }
}

/// A failed Lambda invocation carries a typed `errorType` (`logrelay.DeadlineExceeded`, ...)
/// instead of the boxed error's Rust type name (Lambda runtime API, "Invocation error":
/// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-invokeerror>).
#[cfg(feature = "aws")]
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("logrelay.{}", error.kind()),
            error_message: error.to_string(),
        }
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_diagnostic_names_the_error_kind_and_keeps_the_message() {
        let diagnostic = lambda_runtime::Diagnostic::from(Error::DeadlineExceeded { pending: 3 });
        assert_eq!(diagnostic.error_type, "logrelay.DeadlineExceeded");
        assert!(
            diagnostic.error_message.contains("3 events"),
            "{}",
            diagnostic.error_message
        );
    }
}
