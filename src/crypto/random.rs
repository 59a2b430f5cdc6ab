//! Randomness, hashing, constant-time comparison and the base64url encoding
//! used throughout civid (JOSE requires unpadded base64url).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom as _, SystemRandom};
use subtle::ConstantTimeEq as _;

use crate::crypto::CryptoError;

/// Fills `buf` from the operating system CSPRNG.
///
/// There is deliberately no fallback source: if the OS RNG fails, callers must
/// fail rather than produce guessable tokens or keys.
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new().fill(buf).map_err(|_| CryptoError::Internal("system RNG failure"))
}

/// Returns `bytes` random bytes encoded as base64url without padding.
pub fn token(bytes: usize) -> Result<String, CryptoError> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(b64(&buf))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    for (o, d) in out.iter_mut().zip(digest.as_ref()) {
        *o = *d;
    }
    out
}

/// SHA-256 of `data`, base64url without padding (e.g. PKCE S256 challenges).
pub fn sha256_b64(data: &[u8]) -> String {
    b64(&sha256(data))
}

/// Constant-time equality; slices of different lengths are unequal.
///
/// Only the contents are compared in constant time: lengths of secrets such as
/// tokens are not considered secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Base64url without padding.
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url without padding: padding, the standard alphabet and
/// non-canonical trailing bits are rejected, since JWS forbids them and
/// accepting them would make one token have several encodings.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| CryptoError::Malformed("invalid base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_urlsafe() {
        let a = token(32).unwrap();
        let b = token(32).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(token(0).unwrap(), "");
    }

    #[test]
    fn sha256_known_answer() {
        // RFC 7636 appendix B: PKCE S256 example.
        assert_eq!(
            sha256_b64(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn ct_eq_behaviour() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn b64_is_strict() {
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(b64_decode("-_8=").is_err());
        assert!(b64_decode("+/8").is_err());
        assert!(b64_decode("-_9").is_err()); // non-zero trailing bits
        assert!(b64_decode("a").is_err());
        assert!(b64_decode("a b").is_err());
    }
}
