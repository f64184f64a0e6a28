//! A federated token file (`AZURE_FEDERATED_TOKEN_FILE`): a JWT another platform writes and
//! renews (Kubernetes workload identity projects a service-account token there,
//! <https://azure.github.io/azure-workload-identity/docs/quick-start.html>), sent to Entra as
//! the client assertion. The file is read again whenever its modification time or size
//! changes, so a renewed token is picked up without a restart; a token that has expired is
//! never sent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use url::Url;

use crate::auth::assertion::{time_claim, unverified_claims, Assertion, AssertionSource};
use crate::clock::{Clock, SystemClock};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Reads `AZURE_FEDERATED_TOKEN_FILE`.
#[derive(Debug)]
pub struct FederatedTokenFile {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    last: Mutex<Option<(Stamp, Assertion)>>,
}

impl FederatedTokenFile {
    /// A source reading `path` (the file is read on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FederatedTokenFile {
            path: path.into(),
            clock: Arc::new(SystemClock),
            last: Mutex::new(None),
        }
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The token in the file, read again if the file changed since the last read.
    pub fn current(&self) -> Result<Assertion> {
        let stamp = stamp_of(&self.path)?;
        {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((seen, assertion)) = last.as_ref() {
                // Same mtime and size: the same token, unless it is about to expire (then
                // read anyway: some writers keep the size and a coarse mtime).
                if *seen == stamp && assertion.usable_at(self.clock.now()) {
                    return Ok(assertion.clone());
                }
            }
        }
        let assertion = read_token(&self.path, self.clock.now())?;
        tracing::debug!(path = %self.path.display(), "Read the federated token file.");
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((stamp, assertion.clone()));
        Ok(assertion)
    }
}

fn stamp_of(path: &Path) -> Result<Stamp> {
    let metadata = std::fs::metadata(path).map_err(|error| Error::Path {
        path: path.to_path_buf(),
        reason: format!("cannot read AZURE_FEDERATED_TOKEN_FILE ({error}); the platform (e.g. the workload identity webhook) writes it"),
    })?;
    Ok(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

/// Reads and checks the token: a JWT with an `exp` still ahead of `now`. Never quotes it.
fn read_token(path: &Path, now: SystemTime) -> Result<Assertion> {
    let refuse = |reason: String| Error::Path {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| refuse(format!("cannot read AZURE_FEDERATED_TOKEN_FILE ({error})")))?;
    let jwt = text.trim();
    let claims = unverified_claims(jwt).ok_or_else(|| {
        refuse("AZURE_FEDERATED_TOKEN_FILE does not hold a JWT (three base64url parts with a JSON payload)".into())
    })?;
    let expires_at = time_claim(&claims, "exp").ok_or_else(|| {
        refuse("the token in AZURE_FEDERATED_TOKEN_FILE has no `exp` claim".into())
    })?;
    let issued_at = time_claim(&claims, "iat").unwrap_or(now);
    let assertion = Assertion {
        jwt: Secret::new(jwt),
        issued_at,
        expires_at,
    };
    if !assertion.usable_at(now) {
        let ago = now.duration_since(expires_at).unwrap_or_default().as_secs();
        return Err(refuse(format!(
            "the token in AZURE_FEDERATED_TOKEN_FILE has expired (or expires within seconds; {ago} s past its exp); the platform writing it stopped renewing it (check the pod's projected service-account token)"
        )));
    }
    Ok(assertion)
}

impl AssertionSource for FederatedTokenFile {
    fn assertion<'a>(&'a self, _token_url: &'a Url) -> BoxFuture<'a, Result<Assertion>> {
        Box::pin(async move { self.current() })
    }

    fn describe(&self) -> String {
        format!("federated token file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::assertion::b64url;
    use crate::clock::ManualClock;

    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// A JWT of the shape a Kubernetes projected service-account token has (header, claims,
    /// signature; the signature is not checked here, Entra checks it).
    fn token(subject: &str, iat: u64, exp: u64) -> String {
        let header = b64url(br#"{"alg":"RS256","kid":"k1"}"#);
        let claims = b64url(
            serde_json::json!({
                "aud": ["api://AzureADTokenExchange"],
                "iss": "https://oidc.example.test",
                "sub": subject,
                "iat": iat, "nbf": iat, "exp": exp,
            })
            .to_string()
            .as_bytes(),
        );
        format!("{header}.{claims}.c2lnbmF0dXJl")
    }

    #[test]
    fn a_changed_file_is_read_again_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let clock = Arc::new(ManualClock::new(start()));
        let first = token(
            "system:serviceaccount:ns:first",
            1_800_000_000,
            1_800_003_600,
        );
        std::fs::write(&path, format!("{first}\n")).unwrap();
        let source = FederatedTokenFile::new(&path).with_clock(clock.clone());
        assert_eq!(source.current().unwrap().jwt.expose(), first);
        assert_eq!(
            source.current().unwrap().expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_003_600)
        );

        // The platform renews the token (a different length, so the stamp changes even on a
        // file system with a coarse mtime).
        let second = token(
            "system:serviceaccount:ns:second-token",
            1_800_000_100,
            1_800_003_700,
        );
        std::fs::write(&path, &second).unwrap();
        assert_eq!(source.current().unwrap().jwt.expose(), second);
    }

    #[test]
    fn an_expired_token_in_the_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let stale = token("sub", 1_799_990_000, 1_799_999_990);
        std::fs::write(&path, &stale).unwrap();
        let source = FederatedTokenFile::new(&path).with_clock(Arc::new(ManualClock::new(start())));
        let error = source.current().unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("has expired"), "{shown}");
        assert!(!shown.contains(&stale), "{shown}");
    }

    #[test]
    fn a_cached_token_close_to_expiry_is_read_again_and_refused_if_not_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let clock = Arc::new(ManualClock::new(start()));
        std::fs::write(&path, token("sub", 1_800_000_000, 1_800_000_600)).unwrap();
        let source = FederatedTokenFile::new(&path).with_clock(clock.clone());
        source.current().unwrap();
        clock.advance(Duration::from_secs(590));
        assert!(
            source.current().is_err(),
            "a token 10 s from expiry is never handed out"
        );
    }

    #[test]
    fn a_file_without_a_jwt_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "not-a-token-at-all").unwrap();
        let error = FederatedTokenFile::new(&path).current().unwrap_err();
        assert!(error.to_string().contains("does not hold a JWT"), "{error}");
        assert!(!error.to_string().contains("not-a-token-at-all"), "{error}");
        let error = FederatedTokenFile::new(dir.path().join("absent"))
            .current()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read AZURE_FEDERATED_TOKEN_FILE"),
            "{error}"
        );
    }
}
