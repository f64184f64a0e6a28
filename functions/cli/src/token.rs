//! `logrelay token`: fetch a token with the configured identity and show what it is for
//! (audience, tenant, app id, expiry). The token itself only with `--show`.

use std::process::ExitCode;

use logrelay_core::config::{Config, Platform};
use logrelay_core::diagnose::{describe_token, explain_token_error};

/// Runs the command; `Err` is a configuration problem (exit 2).
pub(crate) async fn run(show: bool, json: bool) -> Result<ExitCode, String> {
    let config = Config::from_env(Platform::Cli).map_err(|error| error.to_string())?;
    let http = logrelay_core::http::build_client(config.tuning.request_timeout)
        .map_err(|error| error.to_string())?;
    let provider = logrelay_core::auth::build_provider(&config.auth, http, None)
        .map_err(|error| error.to_string())?;
    let token = match provider.fetch().await {
        Ok(token) => token,
        Err(error) => {
            let advice = explain_token_error(&error);
            eprintln!("logrelay: {error}");
            eprintln!(
                "  credential: {}",
                logrelay_core::auth::credential_used(&config.auth)
            );
            eprintln!("  fix: {}", advice.fix);
            eprintln!("  where: {}", advice.portal);
            return Ok(ExitCode::from(1));
        }
    };
    let facts = describe_token(&token);
    let credential = logrelay_core::auth::credential_used(&config.auth);
    if json {
        let mut value = serde_json::to_value(&facts).map_err(|error| error.to_string())?;
        value["credential"] = serde_json::Value::String(credential.clone());
        if show {
            value["token"] = serde_json::Value::String(token.secret.expose().to_string());
        }
        crate::print_json(&value)?;
    } else {
        let or_unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| "?".into());
        let mut text = format!(
            "credential {credential}\naudience  {}\ntenant    {}\napp id    {}\nexpires   {} (in {} min)\n",
            or_unknown(&facts.audience),
            or_unknown(&facts.tenant),
            or_unknown(&facts.app_id),
            facts.expires_at,
            facts.expires_in_secs / 60
        );
        if show {
            text.push_str(&format!("token     {}\n", token.secret.expose()));
        }
        crate::print_out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
