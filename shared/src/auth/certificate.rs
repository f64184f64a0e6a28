//! A certificate credential (`AZURE_CLIENT_CERTIFICATE_PATH`): a PEM file with the
//! certificate and its RSA private key; each assertion is a fresh JWT signed PS256 with the
//! `x5t#S256` header, as
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials> describes
//! (claims `aud` = the token endpoint, `iss` = `sub` = the client id, `jti`, `nbf`, `iat`,
//! `exp`). Signing uses aws-lc-rs, the crypto rustls already brings; no OpenSSL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PSS_SHA256};
use base64::Engine;
use rustls_pki_types::pem::{PemObject, SectionKind};
use sha2::{Digest, Sha256};
use url::Url;

use crate::auth::assertion::{b64url, Assertion, AssertionSource};
use crate::clock::{Clock, SystemClock};
use crate::model::BoxFuture;
use crate::secret::Secret;
use crate::{Error, Result};

/// How long a certificate assertion is valid. The certificate-credentials page asks for
/// `exp` 5-10 minutes after `nbf`
/// (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials#claims-payload>).
pub const CERTIFICATE_ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// The variable naming the file, for messages.
const PATH_VAR: &str = "AZURE_CLIENT_CERTIFICATE_PATH";

/// The certificate (chain) and private key read from `AZURE_CLIENT_CERTIFICATE_PATH`.
pub struct CertificateSource {
    path: PathBuf,
    client_id: String,
    key: RsaKeyPair,
    /// DER of every certificate in the file, the signing certificate first.
    chain: Vec<Vec<u8>>,
    /// base64url SHA-256 of the first certificate's DER: the `x5t#S256` header.
    thumbprint: String,
    send_chain: bool,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

impl fmt::Debug for CertificateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSource")
            .field("path", &self.path)
            .field("client_id", &self.client_id)
            .field("key", &"***")
            .field("certificates", &self.chain.len())
            .field("x5t#S256", &self.thumbprint)
            .field("send_chain", &self.send_chain)
            .finish()
    }
}

impl CertificateSource {
    /// Reads and checks the PEM file: at least one certificate and one RSA private key
    /// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). Errors never quote the key.
    pub fn load(path: &Path, client_id: impl Into<String>, send_chain: bool) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|error| Error::Path {
            path: path.to_path_buf(),
            reason: format!("cannot read the certificate file ({error}); {PATH_VAR} must name a PEM file with the certificate and its private key"),
        })?;
        Self::from_pem(path, &bytes, client_id.into(), send_chain)
    }

    fn from_pem(path: &Path, bytes: &[u8], client_id: String, send_chain: bool) -> Result<Self> {
        let refuse = |reason: String| Error::Path {
            path: path.to_path_buf(),
            reason,
        };
        let text = String::from_utf8_lossy(bytes);
        if !text.contains("-----BEGIN ") {
            return Err(refuse(format!(
                "not a PEM file (a PFX/PKCS#12 file is not supported); convert it with `openssl pkcs12 -in cert.pfx -out cert.pem -nodes` and set {PATH_VAR} to the PEM"
            )));
        }
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || text.contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(refuse(
                "the private key is encrypted, which logrelay does not support; decrypt it (`openssl pkcs8 -in key.pem -out plain.pem`) and protect the file with permissions or a secret store instead".into(),
            ));
        }
        let mut chain = Vec::new();
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
            let (kind, der) =
                section.map_err(|error| refuse(format!("the PEM file is malformed ({error})")))?;
            match kind {
                SectionKind::Certificate => chain.push(der),
                SectionKind::PrivateKey => {
                    key = Some(RsaKeyPair::from_pkcs8(&der).map_err(|error| {
                        refuse(format!("the private key is not an RSA key this relay can sign PS256 with ({error})"))
                    })?)
                }
                SectionKind::RsaPrivateKey => {
                    key = Some(RsaKeyPair::from_der(&der).map_err(|error| {
                        refuse(format!("the RSA private key cannot be read ({error})"))
                    })?)
                }
                SectionKind::EcPrivateKey => {
                    return Err(refuse(
                        "the private key is an EC key; Entra certificate assertions here are signed PS256, which needs an RSA key".into(),
                    ))
                }
                _ => {}
            }
        }
        let key = key.ok_or_else(|| {
            refuse(format!("no private key in the file; {PATH_VAR} must hold the certificate and its private key (PEM)"))
        })?;
        let first = chain.first().ok_or_else(|| {
            refuse(format!("no certificate in the file; {PATH_VAR} must hold the certificate and its private key (PEM)"))
        })?;
        let thumbprint = b64url(&Sha256::digest(first));
        Ok(CertificateSource {
            path: path.to_path_buf(),
            client_id,
            key,
            thumbprint,
            chain,
            send_chain,
            clock: Arc::new(SystemClock),
            rng: SystemRandom::new(),
        })
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The `x5t#S256` thumbprint (base64url SHA-256 of the certificate's DER).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed assertion for `token_url`.
    pub fn sign(&self, token_url: &Url) -> Result<Assertion> {
        let now = self.clock.now();
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::invalid(PATH_VAR, "the system clock is before 1970"))?
            .as_secs();
        let expires_at = UNIX_EPOCH + Duration::from_secs(seconds) + CERTIFICATE_ASSERTION_LIFETIME;
        let mut header = serde_json::json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t#S256": self.thumbprint,
        });
        if self.send_chain {
            // x5c: standard base64 (not base64url) DER, signing certificate first
            // (RFC 7515 section 4.1.6).
            let chain: Vec<String> = self
                .chain
                .iter()
                .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
                .collect();
            header["x5c"] = serde_json::json!(chain);
        }
        let claims = serde_json::json!({
            "aud": token_url.as_str(),
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": seconds,
            "iat": seconds,
            "exp": seconds + CERTIFICATE_ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PSS_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::Path {
                path: self.path.clone(),
                reason: "signing the client assertion with the private key failed".into(),
            })?;
        Ok(Assertion {
            jwt: Secret::new(format!("{signing_input}.{}", b64url(&signature))),
            issued_at: UNIX_EPOCH + Duration::from_secs(seconds),
            expires_at,
        })
    }
}

impl AssertionSource for CertificateSource {
    fn assertion<'a>(&'a self, token_url: &'a Url) -> BoxFuture<'a, Result<Assertion>> {
        Box::pin(async move { self.sign(token_url) })
    }

    fn describe(&self) -> String {
        format!(
            "certificate {} (x5t#S256 {}{})",
            self.path.display(),
            self.thumbprint,
            if self.send_chain { ", chain sent" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PSS_2048_8192_SHA256};

    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

    /// A self-signed RSA certificate generated now (no key is committed): (PEM file, the
    /// certificate's SubjectPublicKeyInfo read out of its DER, the certificate DER).
    fn generated() -> (String, Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["logrelay-test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let der = cert.der().to_vec();
        (pem, spki_of_certificate(&der), der)
    }

    fn read_len(der: &[u8], at: usize) -> (usize, usize) {
        let first = der[at] as usize;
        if first < 0x80 {
            (first, 1)
        } else {
            let n = first & 0x7f;
            let len = der[at + 1..at + 1 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 1 + n)
        }
    }

    /// The element at `at`: (start of its contents, end of the element).
    fn element(der: &[u8], at: usize) -> (usize, usize) {
        let (len, header) = read_len(der, at + 1);
        (at + 1 + header, at + 1 + header + len)
    }

    /// The SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 section 4.1: Certificate ->
    /// TBSCertificate -> [0] version, serial, signature, issuer, validity, subject, SPKI).
    fn spki_of_certificate(cert: &[u8]) -> Vec<u8> {
        let (tbs_at, _) = element(cert, 0);
        let (mut at, _) = element(cert, tbs_at);
        if cert[at] == 0xa0 {
            at = element(cert, at).1;
        }
        for _ in 0..5 {
            at = element(cert, at).1;
        }
        assert_eq!(cert[at], 0x30, "SubjectPublicKeyInfo");
        cert[at..element(cert, at).1].to_vec()
    }

    fn decode(part: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap()
    }

    fn source(pem: &str, send_chain: bool) -> CertificateSource {
        CertificateSource::from_pem(
            Path::new("cert.pem"),
            pem.as_bytes(),
            CLIENT.into(),
            send_chain,
        )
        .unwrap()
    }

    #[test]
    fn the_assertion_is_ps256_with_the_certificate_thumbprint_and_the_entra_claims() {
        let (pem, public_key, cert_der) = generated();
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let source = source(&pem, false).with_clock(Arc::new(ManualClock::new(start)));
        let url = Url::parse("http://127.0.0.1:9/tenant-id/oauth2/v2.0/token").unwrap();
        let assertion = source.sign(&url).unwrap();
        let jwt = assertion.jwt.expose();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);

        // The signature verifies with the certificate's public key, independently of the signer.
        // aws-lc-rs verifies with the PKCS#1 RSAPublicKey inside the certificate's SPKI.
        let rsa_public = rsa_public_key_from_spki(&public_key);
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &rsa_public)
            .verify(signed.as_bytes(), &decode(parts[2]))
            .expect("the PS256 signature verifies with the certificate's key");

        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        let expected_thumbprint =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&cert_der));
        assert_eq!(header["x5t#S256"], expected_thumbprint.as_str());
        assert!(header.get("x5c").is_none(), "{header}");

        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(claims["aud"], url.as_str());
        assert_eq!(claims["iss"], CLIENT);
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["nbf"], 1_800_000_000u64);
        assert_eq!(claims["iat"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_600u64);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        assert_eq!(assertion.expires_at, start + Duration::from_secs(600));

        // Every assertion has its own jti.
        let again = source.sign(&url).unwrap();
        let claims_again: serde_json::Value =
            serde_json::from_slice(&decode(again.jwt.expose().split('.').nth(1).unwrap())).unwrap();
        assert_ne!(claims_again["jti"], claims["jti"]);
    }

    #[test]
    fn sending_the_chain_puts_the_certificates_in_x5c() {
        let (pem, _, cert_der) = generated();
        let url = Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap();
        let assertion = source(&pem, true).sign(&url).unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&decode(assertion.jwt.expose().split('.').next().unwrap()))
                .unwrap();
        let x5c = header["x5c"].as_array().unwrap();
        assert_eq!(x5c.len(), 1);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(x5c[0].as_str().unwrap())
                .unwrap(),
            cert_der
        );
    }

    #[test]
    fn unusable_files_are_refused_with_a_reason_and_never_the_key() {
        let (pem, _, _) = generated();
        let key_only: String = pem[pem.find("-----BEGIN PRIVATE KEY-----").unwrap()..].to_string();
        let cert_only: String = pem[..pem.find("-----BEGIN PRIVATE KEY-----").unwrap()].to_string();
        let body_of_key: String = key_only.lines().nth(1).unwrap().to_string();
        let cases = [
            (key_only.clone(), "no certificate"),
            (cert_only, "no private key"),
            ("\u{30}\u{82}binary-pfx".to_string(), "PFX/PKCS#12 file is not supported"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIabc\n-----END ENCRYPTED PRIVATE KEY-----\n".to_string(),
                "encrypted",
            ),
        ];
        for (file, expected) in cases {
            let error = CertificateSource::from_pem(
                Path::new("c.pem"),
                file.as_bytes(),
                CLIENT.into(),
                false,
            )
            .unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(shown.contains(expected), "{shown}");
            assert!(!shown.contains(&body_of_key), "{shown}");
        }
        let debug = format!("{:?}", source(&pem, false));
        assert!(!debug.contains(&body_of_key), "{debug}");
        assert!(debug.contains("x5t#S256"), "{debug}");
    }

    /// The RSAPublicKey (PKCS#1) inside an RSA SubjectPublicKeyInfo: the BIT STRING after
    /// the AlgorithmIdentifier (RFC 5280 section 4.1, RFC 8017 appendix A.1.1).
    fn rsa_public_key_from_spki(spki: &[u8]) -> Vec<u8> {
        assert_eq!(spki[0], 0x30);
        let (algorithm, _) = element(spki, 0);
        let bits = element(spki, algorithm).1;
        assert_eq!(spki[bits], 0x03, "BIT STRING");
        let (contents, end) = element(spki, bits);
        spki[contents + 1..end].to_vec() // skip the unused-bits byte
    }
}
