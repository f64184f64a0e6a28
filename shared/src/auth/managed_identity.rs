//! App Service managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): secretless tokens
//! for the Azure Functions custom handler.
//!
//! OWNER: azure-handler helper.

use url::Url;

use crate::auth::{AccessToken, BoxFuture, TokenProvider};
use crate::secret::Secret;
use crate::{Error, Result};

/// Fetches tokens from the App Service identity endpoint.
#[derive(Debug)]
pub struct ManagedIdentityProvider {
    http: reqwest::Client,
    endpoint: Url,
    header: Secret,
    client_id: Option<String>,
    /// Resource (audience), e.g. `https://monitor.azure.com`.
    resource: String,
}

impl ManagedIdentityProvider {
    /// A provider for `endpoint` (IDENTITY_ENDPOINT) with `header` (IDENTITY_HEADER), asking for
    /// `resource`; `client_id` selects a user-assigned identity.
    pub fn new(http: reqwest::Client, endpoint: Url, header: Secret, client_id: Option<String>, resource: String) -> Self {
        ManagedIdentityProvider { http, endpoint, header, client_id, resource }
    }
}

impl TokenProvider for ManagedIdentityProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(async move {
            let _ = (&self.http, &self.header, &self.client_id, &self.resource);
            Err(Error::TokenTransport { host: self.endpoint.to_string(), reason: "managed identity: not yet built".into() })
        })
    }
}
