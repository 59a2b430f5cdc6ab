//! Asymmetric signing keys: generation as PKCS#8, loading into ring key pairs,
//! public JWK export and RFC 7638 JWK thumbprints (used as `kid`).

use std::fmt;
use std::str::FromStr;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Map, Value};

use crate::crypto::CryptoError;
use crate::crypto::random::{b64, sha256_b64};

/// Algorithms civid signs with (ID tokens, JWT access tokens, logout tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Alg::RS256),
            "ES256" => Ok(Alg::ES256),
            "EdDSA" => Ok(Alg::EdDSA),
            other => Err(CryptoError::UnsupportedAlg(other.to_owned())),
        }
    }
}

/// Generates a new private key for `alg`, encoded as PKCS#8 v1 DER.
///
/// RSA goes through the `rsa` crate only because ring cannot generate RSA keys;
/// signing always happens in ring.
pub fn generate_pkcs8(alg: Alg) -> Result<Vec<u8>, CryptoError> {
    let rng = SystemRandom::new();
    match alg {
        Alg::RS256 => generate_rsa_pkcs8(),
        Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| CryptoError::Internal("P-256 key generation failed")),
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| CryptoError::Internal("Ed25519 key generation failed")),
    }
}

fn generate_rsa_pkcs8() -> Result<Vec<u8>, CryptoError> {
    use rsa::pkcs8::EncodePrivateKey as _;

    let mut rng = RingRng::default();
    // `new` uses e = 65537.
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048);
    // The rsa crate's RNG interface has an infallible `fill_bytes`, so a failure
    // there can only be noticed afterwards; a key built from zeroed "randomness"
    // must never be used.
    if rng.failed {
        return Err(CryptoError::Internal("system RNG failure"));
    }
    let key = key.map_err(|_| CryptoError::Internal("RSA key generation failed"))?;
    let doc = key.to_pkcs8_der().map_err(|_| CryptoError::Internal("RSA PKCS#8 encoding failed"))?;
    Ok(doc.as_bytes().to_vec())
}

/// Adapts ring's `SystemRandom` to the `rand_core` 0.6 traits the `rsa` crate
/// needs, so that all of civid's randomness comes from the same source.
#[derive(Default)]
struct RingRng {
    failed: bool,
}

impl rsa::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.try_fill_bytes(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        crate::crypto::random::fill(dest).map_err(|_| {
            self.failed = true;
            rsa::rand_core::Error::new("system RNG failure")
        })
    }
}

impl rsa::rand_core::CryptoRng for RingRng {}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key with its precomputed public JWK and `kid`.
pub struct SigningKey {
    alg: Alg,
    pair: KeyPair,
    kid: String,
    jwk: Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<SigningKey, CryptoError> {
        let rejected = |e: ring::error::KeyRejected| CryptoError::KeyRejected(e.to_string());
        let mut jwk = Map::new();
        let pair = match alg {
            Alg::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64(&public.n).into());
                jwk.insert("e".into(), b64(&public.e).into());
                KeyPair::Rsa(pair)
            }
            Alg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                    .map_err(rejected)?;
                let (x, y) = split_uncompressed_point(pair.public_key().as_ref(), 32)?;
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), b64(x).into());
                jwk.insert("y".into(), b64(y).into());
                KeyPair::Ec(pair)
            }
            Alg::EdDSA => {
                // "maybe_unchecked" accepts PKCS#8 v1 files (no embedded public
                // key), which is what most tools, including older ring, emit.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?;
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(pair.public_key().as_ref()).into());
                KeyPair::Ed(pair)
            }
        };
        let mut jwk = Value::Object(jwk);
        let kid = jwk_thumbprint(&jwk)?;
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".into(), kid.clone().into());
            members.insert("alg".into(), alg.as_str().into());
            members.insert("use".into(), "sig".into());
        }
        Ok(SigningKey { alg, pair, kid, jwk })
    }

    /// The RFC 7638 thumbprint of the public key, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public JWK (with `kid`, `alg` and `use`) to publish in the JWKS.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `msg` in JWS form: PKCS#1 v1.5 for RS256, fixed-width r||s for
    /// ES256 (not DER, which JWS forbids), plain Ed25519 for EdDSA.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| CryptoError::Internal("RSA signing failed"))?;
                Ok(sig)
            }
            KeyPair::Ec(pair) => pair
                .sign(&rng, msg)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| CryptoError::Internal("ECDSA signing failed")),
            KeyPair::Ed(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

/// Splits an uncompressed SEC1 point (0x04 || x || y) into its coordinates.
fn split_uncompressed_point(point: &[u8], coord_len: usize) -> Result<(&[u8], &[u8]), CryptoError> {
    match point.split_first() {
        Some((4, xy)) if xy.len() == 2 * coord_len => Ok(xy.split_at(coord_len)),
        _ => Err(CryptoError::Internal("unexpected EC public key encoding")),
    }
}

/// RFC 7638 JWK thumbprint: base64url SHA-256 over the JSON of the required
/// public members only, in lexicographic order and without whitespace.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, CryptoError> {
    let member = |name: &'static str| -> Result<&str, CryptoError> {
        jwk.get(name).and_then(Value::as_str).ok_or(CryptoError::Malformed("JWK lacks a required string member"))
    };
    let required: &[&'static str] = match member("kty")? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(CryptoError::Malformed("unsupported JWK kty")),
    };
    // Members are inserted in sorted order so the output is canonical even if
    // serde_json's `preserve_order` feature gets enabled by another crate.
    let mut canonical = Map::new();
    for name in required {
        canonical.insert((*name).to_owned(), member(name)?.into());
    }
    let json = serde_json::to_string(&Value::Object(canonical))
        .map_err(|_| CryptoError::Internal("JWK serialization failed"))?;
    Ok(sha256_b64(json.as_bytes()))
}

/// Keys for tests, shared across this module's test suites so that the slow
/// RSA generation happens at most once per test run.
#[cfg(test)]
pub(crate) fn test_key(alg: Alg) -> SigningKey {
    static RSA_DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let der = match alg {
        Alg::RS256 => RSA_DER.get_or_init(|| generate_pkcs8(Alg::RS256).expect("RSA generation")).clone(),
        _ => generate_pkcs8(alg).expect("key generation"),
    };
    SigningKey::from_pkcs8(alg, &der).expect("load generated key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alg_names_round_trip() {
        for alg in [Alg::RS256, Alg::ES256, Alg::EdDSA] {
            assert_eq!(alg.as_str().parse::<Alg>().unwrap(), alg);
            assert_eq!(serde_json::to_value(alg).unwrap(), Value::from(alg.as_str()));
        }
        assert!(matches!("none".parse::<Alg>(), Err(CryptoError::UnsupportedAlg(_))));
        assert!("rs256".parse::<Alg>().is_err());
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn rfc8037_okp_thumbprint() {
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        });
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn thumbprint_rejects_bad_jwks() {
        assert!(jwk_thumbprint(&json!({"kty": "oct", "k": "AAAA"})).is_err());
        assert!(jwk_thumbprint(&json!({"kty": "RSA", "n": "AQAB"})).is_err());
        assert!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": 1, "y": "a"})).is_err());
        assert!(jwk_thumbprint(&json!("RSA")).is_err());
    }

    #[test]
    fn public_jwks_have_expected_members() {
        let rsa = test_key(Alg::RS256);
        let jwk = rsa.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        // 2048-bit modulus: 256 bytes -> 342 base64url characters.
        assert_eq!(jwk["n"].as_str().unwrap().len(), 342);
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], rsa.kid());
        assert_eq!(jwk_thumbprint(jwk).unwrap(), rsa.kid());
        assert!(jwk.get("d").is_none());

        let ec = test_key(Alg::ES256);
        let jwk = ec.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["y"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["alg"], "ES256");
        assert!(jwk.get("d").is_none());

        let ed = test_key(Alg::EdDSA);
        let jwk = ed.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["alg"], "EdDSA");
        assert!(jwk.get("d").is_none());
    }

    #[test]
    fn signature_sizes() {
        assert_eq!(test_key(Alg::RS256).sign(b"m").unwrap().len(), 256);
        assert_eq!(test_key(Alg::ES256).sign(b"m").unwrap().len(), 64);
        assert_eq!(test_key(Alg::EdDSA).sign(b"m").unwrap().len(), 64);
    }

    #[test]
    fn from_pkcs8_rejects_garbage_and_wrong_alg() {
        assert!(matches!(SigningKey::from_pkcs8(Alg::RS256, b"not a key"), Err(CryptoError::KeyRejected(_))));
        let ed = generate_pkcs8(Alg::EdDSA).unwrap();
        assert!(SigningKey::from_pkcs8(Alg::ES256, &ed).is_err());
        assert!(SigningKey::from_pkcs8(Alg::RS256, &ed).is_err());
        let ec = generate_pkcs8(Alg::ES256).unwrap();
        assert!(SigningKey::from_pkcs8(Alg::EdDSA, &ec).is_err());
    }

    #[test]
    fn signing_key_is_send_sync_and_debug_hides_secret() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SigningKey>();
        let key = test_key(Alg::EdDSA);
        let dbg = format!("{key:?}");
        assert!(dbg.contains(key.kid()));
    }
}
