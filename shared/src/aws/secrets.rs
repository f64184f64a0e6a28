//! Secrets from AWS Secrets Manager: the Entra client secret (`AZURE_CLIENT_SECRET_ARN`) and
//! the HTTP function's shared token (`LOGRELAY_HTTP_TOKEN_ARN`).

use std::fmt;

use tokio::sync::Mutex;

use crate::auth::SecretSource;
use crate::config::HttpToken;
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

use super::clients::aws_error;

/// The JSON field read when a secret is stored as key/value JSON (the console's default).
pub const CLIENT_SECRET_FIELD: &str = "client_secret";

/// The JSON field read for the HTTP token when stored as key/value JSON.
pub const HTTP_TOKEN_FIELD: &str = "token";

/// The client secret read from Secrets Manager once per container and cached; read again
/// when the caller asks for a refresh (Entra rejected the cached one: rotation).
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    field: &'static str,
    cached: Mutex<Option<Secret>>,
}

impl fmt::Debug for SecretsManagerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerSource")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerSource {
    /// A source for the client secret stored under `secret_id` (ARN or name): plain text, or
    /// JSON with a `client_secret` field.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSource::with_field(client, secret_id, CLIENT_SECRET_FIELD)
    }

    /// A source whose JSON form keeps the value under `field`.
    pub fn with_field(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        field: &'static str,
    ) -> Self {
        SecretsManagerSource {
            client,
            secret_id: secret_id.into(),
            field,
            cached: Mutex::new(None),
        }
    }

    /// The secret, from the cache unless `refresh`.
    pub async fn get(&self, refresh: bool) -> Result<Secret> {
        // Held across the read so concurrent callers make one GetSecretValue, not many.
        let mut cached = self.cached.lock().await;
        if let (Some(secret), false) = (cached.as_ref(), refresh) {
            return Ok(secret.clone());
        }
        let secret = self.read().await?;
        *cached = Some(secret.clone());
        Ok(secret)
    }

    async fn read(&self) -> Result<Secret> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|error| aws_error("secretsmanager", "GetSecretValue", &error))?;
        let text = output.secret_string().ok_or_else(|| Error::InvalidConfig {
            name: self.secret_id.clone(),
            reason: "the secret has no SecretString (binary secrets are not supported); store the value as text".into(),
        })?;
        secret_value(text, self.field).map_err(|reason| Error::InvalidConfig {
            name: self.secret_id.clone(),
            reason,
        })
    }
}

impl SecretSource for SecretsManagerSource {
    fn client_secret(&self, refresh: bool) -> BoxFuture<'_, Result<Secret>> {
        Box::pin(self.get(refresh))
    }
}

/// The value in a secret string: the text itself, or `field` of a JSON object. Errors never
/// quote the secret.
pub fn secret_value(text: &str, field: &str) -> std::result::Result<Secret, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|_| "the secret looks like JSON but does not parse".to_string())?;
        return match value.get(field).and_then(serde_json::Value::as_str) {
            Some(found) if !found.is_empty() => Ok(Secret::new(found)),
            _ => Err(format!(
                "the secret is JSON without a non-empty string field `{field}`"
            )),
        };
    }
    if trimmed.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret::new(trimmed))
}

/// The HTTP function's shared token: `LOGRELAY_HTTP_TOKEN`, else the secret named by
/// `LOGRELAY_HTTP_TOKEN_ARN` (plain text or JSON with `token`).
pub async fn http_token(
    token: &HttpToken,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<Secret> {
    match token {
        HttpToken::Value(token) => Ok(token.clone()),
        HttpToken::SecretArn(arn) => {
            SecretsManagerSource::with_field(client.clone(), arn.clone(), HTTP_TOKEN_FIELD)
                .get(false)
                .await
        }
        HttpToken::Unset => Err(Error::MissingConfig {
            name: "LOGRELAY_HTTP_TOKEN",
            hint: "the shared bearer token callers must send, or LOGRELAY_HTTP_TOKEN_ARN naming a Secrets Manager secret that holds it",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_secret_is_the_value_itself() {
        assert_eq!(
            secret_value("  s3cr3t\n", "client_secret")
                .unwrap()
                .expose(),
            "s3cr3t"
        );
    }

    #[test]
    fn a_json_secret_yields_its_field() {
        let secret = secret_value(r#"{"client_secret":"abc","other":"x"}"#, "client_secret");
        assert_eq!(secret.unwrap().expose(), "abc");
    }

    #[test]
    fn a_json_secret_without_the_field_is_refused_without_quoting_it() {
        let error = secret_value(r#"{"password":"hunter2"}"#, "client_secret").unwrap_err();
        assert!(error.contains("`client_secret`"), "{error}");
        assert!(!error.contains("hunter2"));
        let error = secret_value(r#"{"client_secret":"hunter2""#, "client_secret").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(secret_value("  ", "client_secret").is_err());
    }
}
