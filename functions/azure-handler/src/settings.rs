//! The handler's own settings (beyond [`logrelay_core::config::Config`]), read once at start-up.

use std::path::PathBuf;

use logrelay_core::config::{self, Platform};
use logrelay_core::keeper::SchemaMode;
use logrelay_core::{Error, Result};

use crate::queue::BodyEncoding;

/// Port for local runs when the host did not set one. The host always sets
/// `FUNCTIONS_CUSTOMHANDLER_PORT` (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>).
pub(crate) const DEFAULT_PORT: u16 = 8080;

#[cfg(test)]
pub(crate) use logrelay_core::config::vars::AZURE_DEAD_LETTER_DIR;

/// Settings read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) port: u16,
    pub(crate) dead_letter_dir: PathBuf,
    pub(crate) schema: SchemaMode,
    pub(crate) queue_encoding: BodyEncoding,
}

impl Settings {
    /// Reads the settings through `lookup` (the process environment in `main`, a map in tests).
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let get = logrelay_core::config::trimmed(&lookup);
        let port = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            None => DEFAULT_PORT,
            Some(value) => value.trim().parse().map_err(|_| Error::InvalidConfig {
                name: "FUNCTIONS_CUSTOMHANDLER_PORT".into(),
                reason: format!("`{value}` is not a port number"),
            })?,
        };
        let dead_letter_dir = PathBuf::from(config::dead_letter_location(Platform::Azure, &get)?);
        let schema = config::read_schema(&get)?;
        let queue_encoding = BodyEncoding::parse(get("LOGRELAY_QUEUE_BODY_ENCODING").as_deref())?;
        Ok(Settings {
            port,
            dead_letter_dir,
            schema,
            queue_encoding,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn local_runs_default_to_port_8080_and_a_dead_letter_dir_under_the_app_root() {
        let local = settings(&[("FUNCTIONS_APP_ROOT_PATH", "/app")]).unwrap();
        assert_eq!(local.port, 8080);
        assert_eq!(local.dead_letter_dir, PathBuf::from("/app/dead-letter"));
        assert_eq!(local.schema, SchemaMode::Keeper);
        assert_eq!(local.queue_encoding, BodyEncoding::None);
    }

    #[test]
    fn on_azure_the_dead_letter_defaults_to_the_persistent_home_share() {
        let azure = settings(&[
            ("WEBSITE_SITE_NAME", "keeper-relay"),
            ("FUNCTIONS_APP_ROOT_PATH", "/home/site/wwwroot"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "41234"),
        ])
        .unwrap();
        assert_eq!(azure.port, 41234);
        assert_eq!(azure.dead_letter_dir, PathBuf::from(AZURE_DEAD_LETTER_DIR));
    }

    #[test]
    fn explicit_settings_win_and_bad_ones_are_named() {
        let explicit = settings(&[
            ("LOGRELAY_DEAD_LETTER", "/mnt/dl"),
            ("LOGRELAY_SCHEMA", "passthrough"),
            ("LOGRELAY_TIME_FIELD", "ts"),
            ("LOGRELAY_QUEUE_BODY_ENCODING", "base64"),
        ])
        .unwrap();
        assert_eq!(explicit.dead_letter_dir, PathBuf::from("/mnt/dl"));
        assert_eq!(
            explicit.schema,
            SchemaMode::Passthrough {
                time_field: "ts".into()
            }
        );
        assert_eq!(explicit.queue_encoding, BodyEncoding::Base64);
        for (name, value) in [
            ("LOGRELAY_DEAD_LETTER", "s3://bucket/dl/"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "http"),
            ("LOGRELAY_SCHEMA", "csv"),
        ] {
            let error = settings(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
