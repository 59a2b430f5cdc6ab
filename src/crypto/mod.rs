//! Cryptographic primitives for civid: signing keys and JWKs, compact JWS/JWT,
//! key wrapping and sealing of PII at rest, password hashing, and randomness.
//!
//! Everything here may see attacker-controlled input, so nothing in this module
//! is allowed to panic on bad data: failures are reported as [`CryptoError`].
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod jws;
pub mod keys;
pub mod password;
pub mod random;
pub mod seal;

/// Errors from the crypto module.
///
/// Messages never contain key material or secrets, so they are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Input is structurally invalid (bad base64, JSON, JWK member, ...).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// No acceptable key verified the signature.
    #[error("signature verification failed")]
    BadSignature,
    /// The algorithm is unknown, forbidden, or not in the caller's allow-list.
    #[error("unsupported or disallowed algorithm: {0}")]
    UnsupportedAlg(String),
    /// AEAD open failed: wrong key, wrong associated data, or tampered/short blob.
    #[error("decryption failed (wrong key or tampered data)")]
    Unwrap,
    /// Key material was refused (wrong length, invalid encoding, rejected by ring).
    #[error("key rejected: {0}")]
    KeyRejected(String),
    /// A failure that should not happen in practice (RNG or library failure).
    #[error("internal crypto error: {0}")]
    Internal(&'static str),
}
