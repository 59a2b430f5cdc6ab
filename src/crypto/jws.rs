//! Compact JWS / JWT: signing with civid's keys, decoding, verification
//! against sets of public JWKs (e.g. clients' `private_key_jwt` keys), and the
//! OIDC `at_hash` / `c_hash` computation.

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, EcdsaVerificationAlgorithm, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384,
    RSA_PSS_2048_8192_SHA512, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::{Map, Value};

use crate::crypto::CryptoError;
use crate::crypto::keys::{Alg, SigningKey};
use crate::crypto::random::{b64, b64_decode};

/// Tokens above this size are rejected before any decoding, bounding the work
/// an unauthenticated request can cause.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A decoded JWS. Only trust it if it came from [`verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
}

/// Signs `claims` (a JSON object) as a compact JWS with header
/// `{"alg", "kid"[, "typ"]}`.
pub fn sign_jwt(key: &SigningKey, typ: Option<&str>, claims: &Value) -> Result<String, CryptoError> {
    if !claims.is_object() {
        return Err(CryptoError::Malformed("JWT claims must be a JSON object"));
    }
    let mut header = Map::new();
    header.insert("alg".into(), key.alg().as_str().into());
    header.insert("kid".into(), key.kid().into());
    if let Some(typ) = typ {
        header.insert("typ".into(), typ.into());
    }
    let header = serde_json::to_vec(&header).map_err(|_| CryptoError::Internal("JWS header serialization failed"))?;
    let claims = serde_json::to_vec(claims).map_err(|_| CryptoError::Internal("JWT claims serialization failed"))?;

    let mut token = b64(&header);
    token.push('.');
    token.push_str(&b64(&claims));
    let sig = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64(&sig));
    Ok(token)
}

struct Parts<'a> {
    /// `header.payload` exactly as received: the signature covers these bytes,
    /// not a re-encoding of the parsed JSON.
    signing_input: &'a str,
    signature: Vec<u8>,
    jwt: Jwt,
}

fn split(token: &str) -> Result<Parts<'_>, CryptoError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(CryptoError::Malformed("JWS too large"));
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CryptoError::Malformed("JWS must have exactly three parts"));
    };
    let signing_input = token.get(..header.len() + 1 + claims.len()).ok_or(CryptoError::Internal("JWS split"))?;
    Ok(Parts {
        signing_input,
        signature: b64_decode(signature)?,
        jwt: Jwt { header: decode_object(header)?, claims: decode_object(claims)? },
    })
}

fn decode_object(part: &str) -> Result<Value, CryptoError> {
    let bytes = b64_decode(part)?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(CryptoError::Malformed("JWS part is not a JSON object")),
        Err(_) => Err(CryptoError::Malformed("JWS part is not valid JSON")),
    }
}

/// Decodes a compact JWS without checking its signature, e.g. to read `iss`
/// or `kid` in order to pick the keys to pass to [`verify`].
pub fn decode_unverified(token: &str) -> Result<Jwt, CryptoError> {
    split(token).map(|parts| parts.jwt)
}

/// How signatures of one JWS `alg` are checked, and which JWKs can do it.
enum Verifier {
    Rsa(&'static RsaParameters),
    Ec { alg: &'static EcdsaVerificationAlgorithm, crv: &'static str, coord_len: usize },
    Ed25519,
}

impl Verifier {
    fn for_alg(alg: &str) -> Option<Verifier> {
        Some(match alg {
            "RS256" => Verifier::Rsa(&RSA_PKCS1_2048_8192_SHA256),
            "RS384" => Verifier::Rsa(&RSA_PKCS1_2048_8192_SHA384),
            "RS512" => Verifier::Rsa(&RSA_PKCS1_2048_8192_SHA512),
            "PS256" => Verifier::Rsa(&RSA_PSS_2048_8192_SHA256),
            "PS384" => Verifier::Rsa(&RSA_PSS_2048_8192_SHA384),
            "PS512" => Verifier::Rsa(&RSA_PSS_2048_8192_SHA512),
            // The FIXED variants require JWS's r||s form and reject DER.
            "ES256" => Verifier::Ec { alg: &ECDSA_P256_SHA256_FIXED, crv: "P-256", coord_len: 32 },
            "ES384" => Verifier::Ec { alg: &ECDSA_P384_SHA384_FIXED, crv: "P-384", coord_len: 48 },
            "EdDSA" => Verifier::Ed25519,
            _ => return None,
        })
    }

    /// `None` when the JWK cannot be used for this algorithm or is malformed,
    /// which only disqualifies that key, not the whole key set.
    fn verify(&self, jwk: &Value, msg: &[u8], sig: &[u8]) -> Option<bool> {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let decoded = |name: &str| member(name).and_then(|v| b64_decode(v).ok());
        let ok = match self {
            Verifier::Rsa(params) => {
                if member("kty")? != "RSA" {
                    return None;
                }
                let key = RsaPublicKeyComponents { n: decoded("n")?, e: decoded("e")? };
                key.verify(params, msg, sig).is_ok()
            }
            Verifier::Ec { alg, crv, coord_len } => {
                if member("kty")? != "EC" || member("crv")? != *crv {
                    return None;
                }
                let (x, y) = (decoded("x")?, decoded("y")?);
                if x.len() != *coord_len || y.len() != *coord_len {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * coord_len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(*alg, point).verify(msg, sig).is_ok()
            }
            Verifier::Ed25519 => {
                if member("kty")? != "OKP" || member("crv")? != "Ed25519" {
                    return None;
                }
                UnparsedPublicKey::new(&ED25519, decoded("x")?).verify(msg, sig).is_ok()
            }
        };
        Some(ok)
    }
}

/// Whether the JWK's optional usage restrictions permit verifying `alg`.
fn jwk_permits(jwk: &Value, alg: &str) -> bool {
    let use_ok = jwk.get("use").is_none_or(|u| u == "sig");
    let alg_ok = jwk.get("alg").is_none_or(|a| a == alg);
    let ops_ok =
        jwk.get("key_ops").is_none_or(|ops| ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify")));
    use_ok && alg_ok && ops_ok
}

/// Verifies a compact JWS against `jwks` and returns its decoded content.
///
/// The header `alg` must be listed in `allowed` and be one this module
/// implements; `none` and HMAC algorithms are refused even if listed, since a
/// public JWK set must never double as an HMAC secret. With a header `kid`,
/// only JWKs carrying that exact `kid` are tried.
///
/// Errors: `Malformed` for undecodable tokens, `UnsupportedAlg` for refused
/// algorithms, `BadSignature` when no eligible key verifies the signature
/// (including when no key matches at all).
pub fn verify(token: &str, jwks: &[Value], allowed: &[&str]) -> Result<Jwt, CryptoError> {
    let parts = split(token)?;
    let header = &parts.jwt.header;
    let alg =
        header.get("alg").and_then(Value::as_str).ok_or(CryptoError::Malformed("JWS header lacks a string alg"))?;
    let forbidden = alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS");
    let verifier = Verifier::for_alg(alg)
        .filter(|_| !forbidden && allowed.contains(&alg))
        // Truncated because the name is attacker-chosen and may end up in logs.
        .ok_or_else(|| CryptoError::UnsupportedAlg(alg.chars().take(32).collect()))?;
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored,
    // and civid understands none.
    if header.get("crit").is_some() {
        return Err(CryptoError::Malformed("JWS crit header is not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(CryptoError::Malformed("JWS kid is not a string")),
    };

    let msg = parts.signing_input.as_bytes();
    let verified = jwks
        .iter()
        .filter(|jwk| kid.is_none_or(|kid| jwk.get("kid").and_then(Value::as_str) == Some(kid)))
        .filter(|jwk| jwk_permits(jwk, alg))
        .any(|jwk| verifier.verify(jwk, msg, &parts.signature) == Some(true));
    if verified { Ok(parts.jwt) } else { Err(CryptoError::BadSignature) }
}

/// OIDC `at_hash` (and `c_hash`): base64url of the left half of the hash of
/// the ASCII token, the hash being the one used by the ID token's `alg`.
///
/// For EdDSA that is SHA-512 (Ed25519's hash), as OIDC libraries commonly do.
pub fn at_hash(alg: Alg, token: &str) -> String {
    let (digest_alg, half) = match alg {
        Alg::RS256 | Alg::ES256 => (&ring::digest::SHA256, 16),
        Alg::EdDSA => (&ring::digest::SHA512, 32),
    };
    let digest = ring::digest::digest(digest_alg, token.as_bytes());
    b64(digest.as_ref().get(..half).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::{generate_pkcs8, test_key};
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use serde_json::json;

    const ALGS: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    fn claims() -> Value {
        json!({"iss": "https://id.example.gov", "sub": "123", "aud": "client", "exp": 2_000_000_000u64})
    }

    /// Builds a token from an arbitrary header, signed by `key`.
    fn token_with_header(key: &SigningKey, header: &Value) -> String {
        let input =
            format!("{}.{}", b64(&serde_json::to_vec(header).unwrap()), b64(&serde_json::to_vec(&claims()).unwrap()));
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&sig))
    }

    fn replace_part(token: &str, index: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = part;
        parts.join(".")
    }

    #[test]
    fn round_trip_each_alg() {
        for alg in ALGS {
            let key = test_key(alg);
            let token = sign_jwt(&key, Some("JWT"), &claims()).unwrap();
            let jwt = verify(&token, &[key.public_jwk().clone()], &[alg.as_str()]).unwrap();
            assert_eq!(jwt.claims, claims());
            assert_eq!(jwt.header["alg"], alg.as_str());
            assert_eq!(jwt.header["kid"], key.kid());
            assert_eq!(jwt.header["typ"], "JWT");
            assert_eq!(decode_unverified(&token).unwrap(), jwt);
        }
    }

    #[test]
    fn typ_is_optional() {
        let key = test_key(Alg::EdDSA);
        let token = sign_jwt(&key, None, &claims()).unwrap();
        let jwt = verify(&token, &[key.public_jwk().clone()], &["EdDSA"]).unwrap();
        assert!(jwt.header.get("typ").is_none());
        assert!(sign_jwt(&key, None, &json!(["not", "an", "object"])).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        for alg in ALGS {
            let key = test_key(alg);
            let jwks = [key.public_jwk().clone()];
            let token = sign_jwt(&key, None, &claims()).unwrap();

            let mut forged = claims();
            forged["sub"] = json!("admin");
            let forged = b64(&serde_json::to_vec(&forged).unwrap());
            let tampered = replace_part(&token, 1, &forged);
            assert!(matches!(verify(&tampered, &jwks, &[alg.as_str()]), Err(CryptoError::BadSignature)));

            let mut sig = b64_decode(token.rsplit('.').next().unwrap()).unwrap();
            sig[5] ^= 1;
            let tampered = replace_part(&token, 2, &b64(&sig));
            assert!(matches!(verify(&tampered, &jwks, &[alg.as_str()]), Err(CryptoError::BadSignature)));

            let truncated = replace_part(&token, 2, &b64(&sig[..sig.len() - 1]));
            assert!(verify(&truncated, &jwks, &[alg.as_str()]).is_err());
            let empty = replace_part(&token, 2, "");
            assert!(verify(&empty, &jwks, &[alg.as_str()]).is_err());
        }
    }

    #[test]
    fn wrong_key_fails() {
        let key = test_key(Alg::ES256);
        let other = test_key(Alg::ES256);
        let token = sign_jwt(&key, None, &claims()).unwrap();
        let mut jwk = other.public_jwk().clone();
        jwk["kid"] = json!(key.kid());
        assert!(matches!(verify(&token, &[jwk], &["ES256"]), Err(CryptoError::BadSignature)));
    }

    #[test]
    fn none_and_hmac_are_rejected_even_if_allowed() {
        let claims = b64(&serde_json::to_vec(&claims()).unwrap());
        let jwks = [test_key(Alg::EdDSA).public_jwk().clone()];
        for alg in ["none", "None", "NONE", "HS256", "HS512", "hs256"] {
            let header = b64(&serde_json::to_vec(&json!({"alg": alg})).unwrap());
            for sig in ["", "AAAA"] {
                let token = format!("{header}.{claims}.{sig}");
                assert!(matches!(verify(&token, &jwks, &[alg, "EdDSA"]), Err(CryptoError::UnsupportedAlg(_))));
            }
        }
    }

    #[test]
    fn alg_outside_allow_list_is_rejected() {
        let key = test_key(Alg::ES256);
        let token = sign_jwt(&key, None, &claims()).unwrap();
        let jwks = [key.public_jwk().clone()];
        assert!(matches!(verify(&token, &jwks, &["RS256", "EdDSA"]), Err(CryptoError::UnsupportedAlg(_))));
        assert!(verify(&token, &jwks, &[]).is_err());
        assert!(verify(&token, &jwks, &["es256"]).is_err());
    }

    #[test]
    fn rs256_signature_fails_under_ps256_only() {
        let key = test_key(Alg::RS256);
        let mut jwk = key.public_jwk().clone();
        let token = sign_jwt(&key, None, &claims()).unwrap();
        assert!(verify(&token, std::slice::from_ref(&jwk), &["PS256"]).is_err());

        // Relabelling the header as PS256 cannot reuse the PKCS#1 signature,
        // even with a JWK that does not pin its alg.
        jwk.as_object_mut().unwrap().remove("alg");
        let header = b64(&serde_json::to_vec(&json!({"alg": "PS256", "kid": key.kid()})).unwrap());
        let relabelled = replace_part(&token, 0, &header);
        assert!(matches!(verify(&relabelled, &[jwk], &["PS256"]), Err(CryptoError::BadSignature)));
    }

    #[test]
    fn kid_selects_keys() {
        let key = test_key(Alg::EdDSA);
        let token = sign_jwt(&key, None, &claims()).unwrap();

        let mut renamed = key.public_jwk().clone();
        renamed["kid"] = json!("some-other-kid");
        assert!(matches!(verify(&token, std::slice::from_ref(&renamed), &["EdDSA"]), Err(CryptoError::BadSignature)));
        let mut unnamed = renamed.clone();
        unnamed.as_object_mut().unwrap().remove("kid");
        assert!(verify(&token, &[unnamed.clone()], &["EdDSA"]).is_err());

        // Without a header kid, every key of a fitting kty is tried.
        let no_kid = token_with_header(&key, &json!({"alg": "EdDSA"}));
        let decoys = [
            test_key(Alg::ES256).public_jwk().clone(),
            test_key(Alg::EdDSA).public_jwk().clone(),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "!!"}),
        ];
        let mut jwks = decoys.to_vec();
        assert!(verify(&no_kid, &jwks, &["EdDSA"]).is_err());
        jwks.push(unnamed);
        assert!(verify(&no_kid, &jwks, &["EdDSA"]).is_ok());
        jwks.push(renamed);
        assert!(verify(&no_kid, &jwks, &["EdDSA"]).is_ok());

        let bad_kid = token_with_header(&key, &json!({"alg": "EdDSA", "kid": 7}));
        assert!(matches!(verify(&bad_kid, &jwks, &["EdDSA"]), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn jwk_restrictions_are_honoured() {
        let key = test_key(Alg::ES256);
        let token = sign_jwt(&key, None, &claims()).unwrap();
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut jwk = key.public_jwk().clone();
            edit(&mut jwk);
            verify(&token, &[jwk], &["ES256"]).is_ok()
        };
        assert!(check(&|_| {}));
        assert!(!check(&|j| j["use"] = json!("enc")));
        assert!(!check(&|j| j["alg"] = json!("ES384")));
        assert!(!check(&|j| j["crv"] = json!("P-384")));
        assert!(!check(&|j| j["kty"] = json!("RSA")));
        assert!(!check(&|j| j["key_ops"] = json!(["encrypt"])));
        assert!(check(&|j| j["key_ops"] = json!(["verify"])));
        assert!(check(&|j| {
            j.as_object_mut().unwrap().remove("use");
        }));
    }

    #[test]
    fn es256_requires_fixed_signatures() {
        let der = generate_pkcs8(Alg::ES256).unwrap();
        let key = SigningKey::from_pkcs8(Alg::ES256, &der).unwrap();
        let jwks = [key.public_jwk().clone()];
        let token = sign_jwt(&key, None, &claims()).unwrap();
        let sig = b64_decode(token.rsplit('.').next().unwrap()).unwrap();
        assert_eq!(sig.len(), 64);
        assert!(verify(&token, &jwks, &["ES256"]).is_ok());

        let rng = ring::rand::SystemRandom::new();
        let asn1 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng).unwrap();
        let input = token.rsplit_once('.').unwrap().0;
        let der_sig = asn1.sign(&rng, input.as_bytes()).unwrap();
        assert_eq!(der_sig.as_ref()[0], 0x30);
        let der_token = format!("{input}.{}", b64(der_sig.as_ref()));
        assert!(matches!(verify(&der_token, &jwks, &["ES256"]), Err(CryptoError::BadSignature)));
    }

    #[test]
    fn crit_header_is_rejected() {
        let key = test_key(Alg::EdDSA);
        let token = token_with_header(&key, &json!({"alg": "EdDSA", "kid": key.kid(), "crit": ["exp"], "exp": 1}));
        assert!(verify(&token, &[key.public_jwk().clone()], &["EdDSA"]).is_err());
    }

    #[test]
    fn decode_unverified_rejects_malformed_tokens() {
        let key = test_key(Alg::EdDSA);
        let token = sign_jwt(&key, None, &claims()).unwrap();
        assert!(decode_unverified(&token).is_ok());
        let (h, rest) = token.split_once('.').unwrap();
        let (c, s) = rest.split_once('.').unwrap();
        let not_object = b64(b"[1,2]");
        let not_json = b64(b"{nope");
        for bad in [
            "",
            "..",
            h,
            &format!("{h}.{c}"),
            &format!("{h}.{c}.{s}."),
            &format!("{h}.{c}.{s}.{s}"),
            &format!("{h}.{not_object}.{s}"),
            &format!("{not_object}.{c}.{s}"),
            &format!("{h}.{not_json}.{s}"),
            &format!("{h}=.{c}.{s}"),
            &format!("{h}.{c}.{s}="),
            &format!("{h}.{c}.*"),
        ] {
            assert!(matches!(decode_unverified(bad), Err(CryptoError::Malformed(_))), "{bad}");
            assert!(verify(bad, &[key.public_jwk().clone()], &["EdDSA"]).is_err());
        }

        let big = json!({"pad": "x".repeat(MAX_TOKEN_LEN)});
        let big = sign_jwt(&key, None, &big).unwrap();
        assert!(matches!(decode_unverified(&big), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn at_hash_values() {
        // OpenID Connect Core 1.0, appendix A.3 (RS256).
        assert_eq!(at_hash(Alg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(Alg::ES256, "abc"), at_hash(Alg::RS256, "abc"));
        let sha512 = ring::digest::digest(&ring::digest::SHA512, b"abc");
        assert_eq!(at_hash(Alg::EdDSA, "abc"), b64(&sha512.as_ref()[..32]));
    }
}
