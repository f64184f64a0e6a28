//! AWS SDK clients built once per container from the environment, and SDK errors mapped to
//! the crate's [`Error`] with a transient/permanent verdict.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::{Error, Result};

/// Service error codes worth retrying although their status is 4xx. Source: AWS SDK standard
/// retry classifier (throttling and timeout codes).
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalServiceError",
    "ServiceUnavailable",
];

/// The shared SDK configuration and the clients the functions use.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// S3 (object reads, the S3 dead letter).
    pub s3: aws_sdk_s3::Client,
    /// Secrets Manager (client secret, HTTP token).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// STS (`GetWebIdentityToken` for `LOGRELAY_AWS_FEDERATION`). Regional: the SDK resolves
    /// `sts.<region>.amazonaws.com`, and the operation is not on the global endpoint
    /// (<https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html>).
    pub sts: aws_sdk_sts::Client,
}

impl AwsClients {
    /// Loads the SDK configuration from the environment (region, credentials,
    /// `AWS_ENDPOINT_URL`) and builds the clients. Call once in `main`.
    /// Every `AWS_ENDPOINT_URL[_<SERVICE>]` must be https or loopback: the SDK sends signed
    /// requests (and Secrets Manager answers with secrets) there.
    pub async fn from_env() -> Result<AwsClients> {
        let local = crate::config::check_aws_endpoints(std::env::vars())?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Ok(AwsClients::from_sdk_config(&shared, local))
    }

    /// The clients over an already loaded configuration; `path_style` forces path-style S3
    /// addressing (local endpoints: `bucket.localhost` does not resolve).
    pub fn from_sdk_config(shared: &aws_config::SdkConfig, path_style: bool) -> AwsClients {
        let s3_config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(path_style)
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            secrets: aws_sdk_secretsmanager::Client::new(shared),
            sts: aws_sdk_sts::Client::new(shared),
        }
    }
}

/// The service error code of an SDK error, if the service answered.
pub(crate) fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
}

/// Maps an SDK error: no response, timeouts, 5xx, 429 and throttling codes are transient;
/// other service answers (403, 404, validation) are permanent.
pub(crate) fn aws_error<E>(
    service: &'static str,
    operation: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient = match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service_error) => {
            let code = service_error.err().code().unwrap_or_default();
            let status = service_error.raw().status().as_u16();
            status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code)
        }
        _ => true,
    };
    Error::Aws {
        service,
        operation,
        reason: DisplayErrorContext(error).to_string(),
        transient,
    }
}
