//! How a person proves who they are, and the SSO session that remembers it.
pub mod limits;
pub mod otp;
pub mod passkey;
pub mod password;
pub mod session;
pub mod sms;
pub mod totp;
