//! Logout tokens (Back-Channel Logout 1.0, 2.4): a JWT with `typ`
//! `logout+jwt`, signed like the portal's ID tokens, naming the session
//! (`sid`) and the person as the portal knows them (`sub`); never a `nonce`.
//! Each delivery attempt signs a new one, so a retry an hour later still
//! carries a token that lives about two minutes.
use serde_json::json;

use crate::crypto::random;
use crate::error::Result;
use crate::realm::cache::{Client, Realm};

/// How long a logout token is valid.
pub const TTL_SECS: i64 = 120;

/// A logout token for `client` about session `sid` of the person it knows
/// as `sub`, issued at `at`.
pub fn logout_token(realm: &Realm, client: &Client, sub: &str, sid: &str, at: i64) -> Result<String> {
    let alg = client.settings.id_token_signed_response_alg.unwrap_or(realm.settings.tokens.id_token_alg);
    let claims = json!({
        "iss": realm.issuer,
        "sub": sub,
        "aud": client.client_id,
        "iat": at,
        "exp": at + TTL_SECS,
        "jti": random::token(16)?,
        "sid": sid,
        "events": { super::EVENT: {} },
    });
    crate::oidc::tokens::sign(realm, alg, Some("logout+jwt"), &claims)
}
