//! Symmetric protection of data at rest: the key-encryption key (KEK) that
//! wraps private signing keys and data keys, and the [`Sealer`] that encrypts
//! PII and computes blind indexes so it can still be looked up.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{hkdf, hmac};

use crate::crypto::CryptoError;
use crate::crypto::random::{b64, fill};

/// First byte of every blob, so the format can evolve without guessing.
const BLOB_VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// AES-256-GCM with a random 96-bit nonce: `version || nonce || ciphertext+tag`.
///
/// Random nonces are safe here because each key encrypts far fewer than the
/// 2^32 messages after which collisions become a concern.
fn aead_seal(key: &LessSafeKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill(&mut nonce)?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| CryptoError::Internal("AEAD seal failed"))?;
    let mut blob = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
    blob.push(BLOB_VERSION);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&in_out);
    Ok(blob)
}

/// Every failure is the same `Unwrap` error so callers cannot be used as an
/// oracle distinguishing truncation, unknown versions and bad tags.
fn aead_open(key: &LessSafeKey, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let Some((&BLOB_VERSION, rest)) = blob.split_first() else {
        return Err(CryptoError::Unwrap);
    };
    if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(CryptoError::Unwrap);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unwrap)?;
    let mut in_out = ciphertext.to_vec();
    let plaintext_len = key.open_in_place(nonce, Aad::from(aad), &mut in_out).map_err(|_| CryptoError::Unwrap)?.len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::KeyRejected(format!("AES-256 key must be {KEY_LEN} bytes")))
}

/// The key-encryption key, supplied by the operator (e.g. from a secret store).
///
/// During a KEK rotation a node also holds the previous KEK: [`Kek::unwrap`]
/// tries the current key, then the previous one; [`Kek::wrap`] always uses
/// the current key.
pub struct Kek {
    raw: [u8; KEY_LEN],
    key: LessSafeKey,
    previous: Option<LessSafeKey>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// A fresh random KEK (for `civid` key-generation commands and tests).
    pub fn generate() -> Result<Kek, CryptoError> {
        let mut raw = [0u8; KEY_LEN];
        fill(&mut raw)?;
        Kek::from_raw(raw)
    }

    fn from_raw(raw: [u8; KEY_LEN]) -> Result<Kek, CryptoError> {
        Ok(Kek { key: aes_key(&raw)?, raw, previous: None })
    }

    /// This KEK, also opening blobs wrapped by `previous` (during a rotation).
    pub fn with_previous(mut self, previous: Kek) -> Kek {
        self.previous = Some(previous.key);
        self
    }

    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// Parses a KEK given as standard or URL-safe base64, padded or not.
    ///
    /// Lenient about the alphabet because operators paste keys produced by
    /// various tools (`openssl rand -base64 32`, ...); strict about length.
    pub fn from_b64(s: &str) -> Result<Kek, CryptoError> {
        let rejected = || CryptoError::KeyRejected(format!("KEK must be base64 encoding exactly {KEY_LEN} bytes"));
        let normalized: String = s
            .trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let bytes = URL_SAFE_NO_PAD.decode(normalized).map_err(|_| rejected())?;
        let raw: [u8; KEY_LEN] = bytes.try_into().map_err(|_| rejected())?;
        Kek::from_raw(raw)
    }

    /// base64url without padding, accepted back by [`Kek::from_b64`].
    pub fn to_b64(&self) -> String {
        b64(&self.raw)
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. the key id or row id,
    /// so a wrapped blob cannot be swapped onto another record).
    pub fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead_seal(&self.key, plaintext, aad)
    }

    /// Decrypts a blob from [`Kek::wrap`] with the current KEK, else the
    /// previous one; `Unwrap` on wrong key, wrong `aad`, tampering or
    /// truncation.
    pub fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match (self.unwrap_current(blob, aad), &self.previous) {
            (Err(_), Some(previous)) => aead_open(previous, blob, aad),
            (result, _) => result,
        }
    }

    /// Decrypts a blob with the current KEK only (whether a blob still needs
    /// re-wrapping).
    pub fn unwrap_current(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead_open(&self.key, blob, aad)
    }
}

const SEAL_INFO: &[u8] = b"civid/seal/aes-256-gcm/v1";
const BLIND_INDEX_INFO: &[u8] = b"civid/blind-index/hmac-sha256/v1";

/// Encrypts PII at rest and computes blind indexes over it.
///
/// Both keys are derived from one data key so only one secret has to be
/// stored (wrapped by the KEK); distinct HKDF info strings keep them
/// independent, so the index key reveals nothing about the encryption key.
pub struct Sealer {
    aead: LessSafeKey,
    index: hmac::Key,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// Builds a sealer from a 32-byte data key.
    pub fn new(data_key: &[u8]) -> Result<Sealer, CryptoError> {
        if data_key.len() != KEY_LEN {
            return Err(CryptoError::KeyRejected(format!("data key must be exactly {KEY_LEN} bytes")));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(data_key);
        let derive_failed = |_| CryptoError::Internal("HKDF expansion failed");
        let aead = prk.expand(&[SEAL_INFO], &AES_256_GCM).map(UnboundKey::from).map_err(derive_failed)?;
        let index = prk.expand(&[BLIND_INDEX_INFO], hmac::HMAC_SHA256).map(hmac::Key::from).map_err(derive_failed)?;
        Ok(Sealer { aead: LessSafeKey::new(aead), index })
    }

    /// Encrypts `plaintext`, bound to `aad` (e.g. table, column and row id).
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead_seal(&self.aead, plaintext.as_bytes(), aad)
    }

    /// Decrypts a blob from [`Sealer::seal`] with the same `aad`.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(aead_open(&self.aead, blob, aad)?)
            .map_err(|_| CryptoError::Malformed("sealed value is not UTF-8"))
    }

    /// Deterministic keyed index of `normalized_value`, so equal values can be
    /// found without decrypting. `kind` (e.g. "email", "phone") separates the
    /// index spaces so equal strings of different kinds do not link records;
    /// it must not contain NUL, which separates it from the value.
    pub fn blind_index(&self, kind: &str, normalized_value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(normalized_value.as_bytes());
        b64(ctx.sign().as_ref())
    }
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_wrap_round_trip() {
        let kek = Kek::generate().unwrap();
        let blob = kek.wrap(b"private key", b"kid-1").unwrap();
        assert_eq!(blob[0], BLOB_VERSION);
        assert_eq!(blob.len(), 1 + 12 + 11 + 16);
        assert_eq!(kek.unwrap(&blob, b"kid-1").unwrap(), b"private key");
        // Random nonces: wrapping twice gives different blobs.
        assert_ne!(blob, kek.wrap(b"private key", b"kid-1").unwrap());
        assert_eq!(kek.unwrap(&kek.wrap(b"", b"").unwrap(), b"").unwrap(), b"");
    }

    #[test]
    fn kek_unwrap_failures() {
        let kek = Kek::generate().unwrap();
        let other = Kek::generate().unwrap();
        let blob = kek.wrap(b"secret", b"aad").unwrap();
        let is_unwrap = |r: Result<Vec<u8>, CryptoError>| matches!(r, Err(CryptoError::Unwrap));

        assert!(is_unwrap(other.unwrap(&blob, b"aad")));
        assert!(is_unwrap(kek.unwrap(&blob, b"other aad")));
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert!(is_unwrap(kek.unwrap(&tampered, b"aad")), "byte {i}");
        }
        for len in 0..blob.len() {
            assert!(is_unwrap(kek.unwrap(&blob[..len], b"aad")), "len {len}");
        }
    }

    #[test]
    fn kek_with_previous_opens_both_and_wraps_with_current() {
        let old = Kek::generate().unwrap();
        let old_blob = old.wrap(b"secret", b"aad").unwrap();
        let old_again = Kek::from_b64(&old.to_b64()).unwrap();
        let new = Kek::generate().unwrap();
        let new_only = Kek::from_b64(&new.to_b64()).unwrap();
        let both = new.with_previous(old_again);
        assert!(both.has_previous());
        assert_eq!(both.unwrap(&old_blob, b"aad").unwrap(), b"secret");
        assert!(both.unwrap_current(&old_blob, b"aad").is_err());
        assert!(both.unwrap(&old_blob, b"other aad").is_err());
        let fresh = both.wrap(b"fresh", b"aad").unwrap();
        assert_eq!(new_only.unwrap(&fresh, b"aad").unwrap(), b"fresh");
        assert!(old.unwrap(&fresh, b"aad").is_err(), "new blobs use the current KEK");
        assert!(!new_only.has_previous());
    }

    #[test]
    fn kek_b64_formats() {
        let kek = Kek::generate().unwrap();
        let encoded = kek.to_b64();
        assert_eq!(Kek::from_b64(&encoded).unwrap().to_b64(), encoded);

        let raw: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(250)).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(std.contains('+') || std.contains('/'));
        let expected = b64(&raw);
        for input in [
            std.clone(),
            std.trim_end_matches('=').to_owned(),
            format!("  {std}\n"),
            expected.clone(),
            format!("{expected}="),
        ] {
            assert_eq!(Kek::from_b64(&input).unwrap().to_b64(), expected, "{input}");
        }

        for bad in [String::new(), b64(&[0u8; 31]), b64(&[0u8; 33]), "not base64!".to_owned()] {
            let err = Kek::from_b64(&bad).unwrap_err();
            assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
        }
    }

    #[test]
    fn debug_does_not_leak_keys() {
        let kek = Kek::generate().unwrap();
        let dbg = format!("{kek:?}");
        assert!(!dbg.contains(&kek.to_b64()));
        assert_eq!(dbg, "Kek(<redacted>)");
        let sealer = Sealer::new(&[7u8; 32]).unwrap();
        assert_eq!(format!("{sealer:?}"), "Sealer(<redacted>)");
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let sealer = Sealer::new(&[1u8; 32]).unwrap();
        let blob = sealer.seal("alice@example.org", b"users.email:42").unwrap();
        assert_eq!(sealer.open(&blob, b"users.email:42").unwrap(), "alice@example.org");
        assert!(matches!(sealer.open(&blob, b"users.email:43"), Err(CryptoError::Unwrap)));
        let other = Sealer::new(&[2u8; 32]).unwrap();
        assert!(other.open(&blob, b"users.email:42").is_err());
        assert!(sealer.open(&[], b"").is_err());
    }

    #[test]
    fn sealer_and_kek_keys_are_independent() {
        // The derived AEAD key must differ from the raw data key.
        let data_key = [9u8; 32];
        let sealer = Sealer::new(&data_key).unwrap();
        let kek = Kek::from_b64(&b64(&data_key)).unwrap();
        let blob = sealer.seal("x", b"").unwrap();
        assert!(kek.unwrap(&blob, b"").is_err());
    }

    #[test]
    fn sealer_requires_32_byte_key() {
        assert!(matches!(Sealer::new(&[0u8; 16]), Err(CryptoError::KeyRejected(_))));
        assert!(Sealer::new(&[]).is_err());
    }

    #[test]
    fn blind_index_is_deterministic_and_kind_separated() {
        let sealer = Sealer::new(&[3u8; 32]).unwrap();
        let a = sealer.blind_index("email", "alice@example.org");
        assert_eq!(a, sealer.blind_index("email", "alice@example.org"));
        assert_eq!(a.len(), 43);
        assert_ne!(a, sealer.blind_index("email", "bob@example.org"));
        assert_ne!(a, sealer.blind_index("phone", "alice@example.org"));
        // The separator prevents shifting bytes between kind and value.
        assert_ne!(sealer.blind_index("ab", "c"), sealer.blind_index("a", "bc"));
        let other = Sealer::new(&[4u8; 32]).unwrap();
        assert_ne!(a, other.blind_index("email", "alice@example.org"));
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
