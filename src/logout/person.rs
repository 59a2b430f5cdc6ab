//! What ending all of a person's sessions (disabling the account, a
//! password reset, an operator's "end all sessions") does to their tokens:
//! every refresh token they hold is revoked — offline ones too, since the
//! reason is that someone else may hold them — and every access token
//! issued before that moment stops passing userinfo and introspection, on
//! every node.
//!
//! The cut-off is a time per person in the ephemeral store, kept as long as
//! an access token issued before it could live. Access tokens carry `iat`
//! in seconds: one issued in the very second of the cut-off is refused when
//! the session it names (`sid`) is no longer live, so a sign-in right after
//! the cut-off works at once.
use crate::authn::session;
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{grants, now};

fn key(realm: &str, user_id: &str) -> String {
    format!("at-cutoff:{realm}:{user_id}")
}

/// Revokes the person's refresh tokens and cuts off their access tokens.
pub async fn revoke_tokens(state: &AppState, realm: &str, user_id: &str) -> Result<u64> {
    let t = now();
    // As long as an access token issued before now can live.
    let ttl = state.realms.get(realm).map(|r| r.settings.tokens.access_token_ttl_secs).unwrap_or(3600) + 60;
    state.eph.put(&key(realm, user_id), &t.to_string(), ttl).await?;
    Ok(grants::revoke_user_refresh_tokens(&state.db, realm, user_id).await?)
}

/// Whether an access token of this person, issued at `iat` under session
/// `sid`, was cut off.
pub async fn cut_off(state: &AppState, realm: &Realm, user_id: &str, iat: i64, sid: Option<&str>) -> Result<bool> {
    let Some(at) = state.eph.get(&key(&realm.name, user_id)).await? else { return Ok(false) };
    let at: i64 = at.parse().unwrap_or(i64::MAX);
    if iat < at {
        return Ok(true);
    }
    if iat > at {
        return Ok(false);
    }
    Ok(match sid {
        Some(sid) => !session::is_live(state, realm, sid).await?,
        None => true,
    })
}
