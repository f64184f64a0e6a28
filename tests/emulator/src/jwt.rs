//! Signed JWTs for the emulator's OIDC issuers (RFC 7515 JWS compact form, RFC 7517 JWKs,
//! RFC 7518 `RS256`/`ES384`/`PS256`), and the few DER and PEM reads the checks need. The crypto
//! is aws-lc-rs, the library rustls already uses in this tree.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

/// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
pub(crate) const RS256: &str = "RS256";
/// `ES384`: ECDSA P-384 with SHA-384 (RFC 7518 §3.4).
pub(crate) const ES384: &str = "ES384";
/// `PS256`: RSASSA-PSS with SHA-256 (RFC 7518 §3.5).
pub(crate) const PS256: &str = "PS256";

/// One issuer's signing keys: an RSA-2048 key for `RS256` and a P-384 key for `ES384`.
pub(crate) struct SigningKeys {
    rsa: RsaKeyPair,
    rsa_kid: String,
    ec: EcdsaKeyPair,
    ec_kid: String,
}

impl std::fmt::Debug for SigningKeys {
    // Private keys stay out of Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("rsa_kid", &self.rsa_kid)
            .field("ec_kid", &self.ec_kid)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Fresh keys (a few tens of milliseconds: RSA key generation).
    pub(crate) fn generate() -> Result<SigningKeys, String> {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "RSA key generation failed".to_string())?;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| "P-384 key generation failed".to_string())?;
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "P-384 key parse failed".to_string())?;
        // A key id is the RFC 7638-style SHA-256 of the public key (stable, unique per key).
        let rsa_kid = URL_SAFE_NO_PAD.encode(sha256(rsa.public_key().as_ref()));
        let ec_kid = URL_SAFE_NO_PAD.encode(sha256(ec.public_key().as_ref()));
        Ok(SigningKeys {
            rsa,
            rsa_kid,
            ec,
            ec_kid,
        })
    }

    /// Signs `claims` with `alg` (`RS256` or `ES384`) as a compact JWS.
    pub(crate) fn sign(&self, alg: &str, claims: &Value) -> Result<String, String> {
        let kid = if alg == ES384 {
            &self.ec_kid
        } else {
            &self.rsa_kid
        };
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match alg {
            RS256 => {
                let mut out = vec![0u8; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut out,
                    )
                    .map_err(|_| "RS256 signing failed".to_string())?;
                out
            }
            ES384 => self
                .ec
                .sign(&rng, input.as_bytes())
                .map_err(|_| "ES384 signing failed".to_string())?
                .as_ref()
                .to_vec(),
            other => return Err(format!("unsupported algorithm {other}")),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The JWK Set (RFC 7517 §5) with both public keys.
    pub(crate) fn jwks(&self) -> Value {
        let (n, e) = rsa_components(self.rsa.public_key().as_ref()).unwrap_or_default();
        let point = self.ec.public_key().as_ref();
        // An uncompressed SEC 1 point: 0x04 || X (48 bytes) || Y (48 bytes) for P-384.
        let (x, y) = if point.len() == 97 {
            (&point[1..49], &point[49..])
        } else {
            (&point[..0], &point[..0])
        };
        json!({"keys": [
            {"kty": "RSA", "use": "sig", "alg": RS256, "kid": self.rsa_kid,
             "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)},
            {"kty": "EC", "use": "sig", "alg": ES384, "kid": self.ec_kid, "crv": "P-384",
             "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)},
        ]})
    }

    /// Verifies an `RS256` JWS by this issuer's RSA key (the `kid` must name it).
    pub(crate) fn verify_rs256(&self, jwt: &Jwt) -> bool {
        jwt.alg() == Some(RS256)
            && jwt.header.get("kid").and_then(Value::as_str) == Some(self.rsa_kid.as_str())
            && UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                self.rsa.public_key().as_ref(),
            )
            .verify(jwt.signing_input.as_bytes(), &jwt.signature)
            .is_ok()
    }
}

/// A decoded (not yet verified) compact JWS.
#[derive(Clone)]
pub(crate) struct Jwt {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl std::fmt::Debug for Jwt {
    // The token itself stays out of Debug output; its header is not secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Splits and decodes `header.claims.signature`; `None` if it is not a JWS with JSON parts.
    pub(crate) fn decode(token: &str) -> Option<Jwt> {
        let mut parts = token.trim().split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let claims_value: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        if !header.is_object() || !claims_value.is_object() {
            return None;
        }
        Some(Jwt {
            header,
            claims: claims_value,
            signing_input: token.trim().rsplit_once('.')?.0.to_string(),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// The header's `alg`.
    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// A string claim.
    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim (RFC 7519 §2), in whole seconds.
    pub(crate) fn claim_secs(&self, name: &str) -> Option<u64> {
        let value = self.claims.get(name)?;
        value
            .as_u64()
            .or_else(|| value.as_f64().filter(|v| *v >= 0.0).map(|v| v as u64))
    }

    /// `aud` as a list (RFC 7519 §4.1.3: a string or an array of strings).
    pub(crate) fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Verifies the signature with the RSA key in `spki` (a certificate's
    /// SubjectPublicKeyInfo): `PS256` or `RS256`.
    pub(crate) fn verify_with_rsa_spki(&self, spki: &[u8]) -> bool {
        let algorithm: &'static dyn signature::VerificationAlgorithm = match self.alg() {
            Some(PS256) => &signature::RSA_PSS_2048_8192_SHA256,
            Some(RS256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
        UnparsedPublicKey::new(algorithm, spki)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// A registered certificate: its DER, thumbprints and public key.
#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    /// `x5t#S256`: base64url SHA-256 of the DER (RFC 7515 §4.1.8).
    pub(crate) x5t_s256: String,
    /// `x5t`: base64url SHA-1 of the DER (RFC 7515 §4.1.7).
    pub(crate) x5t: String,
    /// The SubjectPublicKeyInfo, DER.
    pub(crate) spki: Vec<u8>,
}

impl Certificate {
    /// Reads the first `CERTIFICATE` block of a PEM text.
    pub(crate) fn from_pem(pem: &str) -> Option<Certificate> {
        let der = pem_block(pem, "CERTIFICATE")?;
        let spki = certificate_spki(&der)?.to_vec();
        Some(Certificate {
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256(&der)),
            x5t: URL_SAFE_NO_PAD
                .encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref()),
            spki,
        })
    }
}

pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// The base64 body of the first `-----BEGIN {label}-----` block (RFC 7468).
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// One DER TLV: (tag, the whole TLV, its contents, the bytes after it).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The DER TLV at the start of `input`.
fn der_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for byte in input.get(2..2 + count)? {
            len = (len << 8) | usize::from(*byte);
        }
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, &whole[header..], &input[end..]))
}

/// RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, ... }, and tbsCertificate ::=
/// SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, ... }: returns the subjectPublicKeyInfo TLV.
fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let (0x30, _, certificate, _) = der_tlv(der)? else {
        return None;
    };
    let (0x30, _, tbs, _) = der_tlv(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_tlv(rest)?.3;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der_tlv(rest)?.3;
    }
    let (0x30, spki, _, _) = der_tlv(rest)? else {
        return None;
    };
    Some(spki)
}

/// RFC 8017 §A.1.1: RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }:
/// (n, e) as unsigned big-endian bytes.
fn rsa_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (0x30, _, body, _) = der_tlv(der)? else {
        return None;
    };
    let (0x02, _, n, rest) = der_tlv(body)? else {
        return None;
    };
    let (0x02, _, e, _) = der_tlv(rest)? else {
        return None;
    };
    let unsigned = |bytes: &[u8]| {
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        bytes[skip.min(bytes.len().saturating_sub(1))..].to_vec()
    };
    Some((unsigned(n), unsigned(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_a_changed_claim_does_not() {
        let keys = SigningKeys::generate().unwrap();
        let token = keys.sign(RS256, &json!({"sub": "a"})).unwrap();
        let jwt = Jwt::decode(&token).unwrap();
        assert!(keys.verify_rs256(&jwt));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(json!({"sub": "b"}).to_string())
        );
        assert!(!keys.verify_rs256(&Jwt::decode(&forged).unwrap()));
    }

    #[test]
    fn the_jwks_carries_the_rsa_exponent_65537_and_a_p384_point() {
        let keys = SigningKeys::generate().unwrap();
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        let n = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(n.len(), 256, "a 2048-bit modulus without a sign byte");
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][1]["x"].as_str().unwrap())
            .unwrap();
        assert_eq!(x.len(), 48);
    }

    #[test]
    fn non_jws_text_is_not_decoded() {
        assert!(Jwt::decode("not a token").is_none());
        assert!(Jwt::decode("a.b").is_none());
        assert!(Jwt::decode("e30.e30.AA.x").is_none());
        assert!(
            Jwt::decode("e30.e30.").is_some(),
            "two empty JSON objects and an empty signature"
        );
    }
}
