//! Entra ID client-credentials flow (`/{tenant}/oauth2/v2.0/token`) and its error advice.
//!
//! OWNER: core-auth helper.
