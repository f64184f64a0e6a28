//! App Service managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): secretless tokens
//! for the Azure Functions custom handler.
//!
//! OWNER: azure-handler helper.
