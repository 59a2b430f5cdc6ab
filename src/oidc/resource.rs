//! The endpoints portals call with tokens: userinfo (OIDC Core 5.3),
//! introspection (RFC 7662) and revocation (RFC 7009). An access token is
//! valid when its signature, issuer, type and lifetime are right, it was not
//! revoked, and — for a person's token — the grant it came from still stands.
use serde_json::{Value, json};

use crate::account::users;
use crate::crypto::{jws, random};
use crate::error::{Error, Result};
use crate::oidc::tokens;
use crate::realm::cache::{Client, Realm};
use crate::state::AppState;
use crate::store::{grants, now};

pub struct ValidAccessToken {
    pub claims: Value,
    /// The grant a person's token was issued under (None for a client's own).
    pub grant: Option<grants::GrantRecord>,
}

impl ValidAccessToken {
    pub fn str(&self, k: &str) -> &str {
        self.claims.get(k).and_then(Value::as_str).unwrap_or_default()
    }
}

/// Checks a JWT access token of this realm; `Ok(None)` means not active.
pub async fn check_access_token(state: &AppState, realm: &Realm, token: &str) -> Result<Option<ValidAccessToken>> {
    let Ok(jwt) = jws::verify(token, &realm.public_jwks, &["RS256", "ES256", "EdDSA"]) else {
        return Ok(None);
    };
    if jwt.header.get("typ").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() != Some("at+jwt") {
        return Ok(None);
    }
    let c = &jwt.claims;
    let t = now();
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
    if s("iss") != realm.issuer || c.get("exp").and_then(Value::as_i64).is_none_or(|e| e <= t) {
        return Ok(None);
    }
    if tokens::jti_denied(state, &realm.name, s("jti")).await? {
        return Ok(None);
    }
    let mut grant = None;
    if c.get("auth_time").is_some() {
        // A person's token: its grant must still stand, and be the one it
        // was issued under (not a newer grant after a revocation).
        let iat = c.get("iat").and_then(Value::as_i64).unwrap_or(0);
        grant = grants::active_by_subject(&state.db, &realm.name, s("client_id"), s("sub")).await?;
        if grant.as_ref().is_none_or(|g| g.created_at > iat) {
            return Ok(None);
        }
        // All of the person's sessions were ended (disabled, password reset,
        // an operator) after this token was issued.
        if let Some(g) = &grant
            && crate::logout::person::cut_off(state, realm, &g.user_id, iat, c.get("sid").and_then(Value::as_str))
                .await?
        {
            return Ok(None);
        }
    } else if realm.client(s("client_id")).is_none() {
        return Ok(None);
    }
    Ok(Some(ValidAccessToken { claims: jwt.claims, grant }))
}

pub async fn userinfo(state: &AppState, realm: &Realm, token: &str) -> Result<Value> {
    let at = check_access_token(state, realm, token)
        .await?
        .ok_or_else(|| Error::invalid_token("the access token is not valid"))?;
    if !super::has_scope(at.str("scope"), "openid") || at.claims.get("auth_time").is_none() {
        return Err(Error::OAuth {
            status: 403,
            code: "insufficient_scope",
            description: "the token was not issued with the openid scope".into(),
            www_authenticate: Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".into()),
        });
    }
    let grant = at.grant.as_ref().ok_or_else(|| Error::invalid_token("the grant was revoked"))?;
    let attrs = users::attributes(&state.db, &state.secrets, &realm.name, &grant.user_id)
        .await?
        .ok_or_else(|| Error::invalid_token("the account no longer exists"))?;
    let mut out = super::claims::for_scopes(realm, at.str("scope"), at.str("sub"), &attrs);
    // Scope `realname`: only what was verified, and the ID number in full
    // only for portals allowed it.
    if super::has_scope(at.str("scope"), "realname")
        && let Some(p) = crate::realname::proven(state, &realm.name, &grant.user_id).await?
    {
        let release = realm.client(at.str("client_id")).is_some_and(|c| c.settings.release_id_number);
        super::claims::add_realname(realm, &mut out, &p, release);
    }
    // The enterprise acted for, as the access token names it: only for a
    // portal allowed scope `enterprise`, and only while the person still
    // represents or acts for it.
    if let Some(uscc) = at.claims.get("org_uscc").and_then(Value::as_str)
        && realm.client(at.str("client_id")).is_some_and(|c| super::flow::enterprise_capable(realm, c))
        && let Some(org) = crate::realname::enterprise::orgs_of(state, &realm.name, &grant.user_id)
            .await?
            .into_iter()
            .find(|o| o.uscc == uscc)
        && let Some(obj) = out.as_object_mut()
    {
        obj.insert("org_uscc".into(), json!(org.uscc));
        obj.insert("org_name".into(), json!(org.name));
        obj.insert("org_role".into(), json!(org.role));
    }
    // verified_claims only when asked for, only what was verified.
    let asked: Vec<String> = at
        .claims
        .get("verified_claims_request")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if !asked.is_empty()
        && let Some(client) = realm.client(at.str("client_id"))
        && let Some(p) = crate::realname::proven(state, &realm.name, &grant.user_id).await?
        && let Some(vc) = super::claims::verified_claims(realm, client, &p, &asked)
        && let Some(obj) = out.as_object_mut()
    {
        obj.insert("verified_claims".into(), vc);
    }
    Ok(out)
}

pub async fn introspect(
    state: &AppState,
    realm: &Realm,
    caller: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<Value> {
    let inactive = json!({ "active": false });
    if token.is_empty() || token.len() > 16 * 1024 {
        return Ok(inactive);
    }
    let as_refresh = || async {
        let hash = random::sha256_b64(token.as_bytes());
        let Some(r) = grants::refresh_by_hash(&state.db, &realm.name, &hash).await? else {
            return Ok::<_, Error>(None);
        };
        let Some(g) = grants::get(&state.db, &realm.name, &r.grant_id).await? else {
            return Ok(None);
        };
        let live = r.rotated_at.is_none() && r.revoked_at.is_none() && g.revoked_at.is_none() && r.expires_at > now();
        if !live || g.client_id != caller.client_id {
            return Ok(None);
        }
        Ok(Some(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": r.scope,
            "client_id": g.client_id,
            "sub": g.subject,
            "iss": realm.issuer,
            "exp": r.expires_at,
            "iat": r.created_at,
        })))
    };
    let as_access = || async {
        let Some(at) = check_access_token(state, realm, token).await? else {
            return Ok::<_, Error>(None);
        };
        let aud_has = |c: &str| match at.claims.get("aud") {
            Some(Value::String(a)) => a == c,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(c)),
            _ => false,
        };
        // A token is shown to the client it was issued to and to the
        // resource servers it is meant for, nobody else.
        if at.str("client_id") != caller.client_id && !aud_has(&caller.client_id) {
            return Ok(None);
        }
        let mut out = at.claims.clone();
        if let Some(o) = out.as_object_mut() {
            o.insert("active".into(), json!(true));
            o.insert("token_type".into(), json!("Bearer"));
        }
        Ok(Some(out))
    };
    let found = if hint == Some("refresh_token") {
        match as_refresh().await? {
            Some(v) => Some(v),
            None => as_access().await?,
        }
    } else {
        match as_access().await? {
            Some(v) => Some(v),
            None => as_refresh().await?,
        }
    };
    Ok(found.unwrap_or(inactive))
}

/// RFC 7009: always succeeds for the caller, whether or not the token was
/// known; only the client a token was issued to can revoke it.
pub async fn revoke(state: &AppState, realm: &Realm, caller: &Client, token: &str) -> Result<Option<&'static str>> {
    if token.is_empty() || token.len() > 16 * 1024 {
        return Ok(None);
    }
    let hash = random::sha256_b64(token.as_bytes());
    if let Some(r) = grants::refresh_by_hash(&state.db, &realm.name, &hash).await? {
        if let Some(g) = grants::get(&state.db, &realm.name, &r.grant_id).await?
            && g.client_id == caller.client_id
        {
            tokens::revoke_family(state, &realm.name, &r.family_id).await?;
            return Ok(Some("refresh_token"));
        }
        return Ok(None);
    }
    if let Ok(jwt) = jws::verify(token, &realm.public_jwks, &["RS256", "ES256", "EdDSA"]) {
        let c = &jwt.claims;
        if c.get("iss").and_then(Value::as_str) == Some(realm.issuer.as_str())
            && c.get("client_id").and_then(Value::as_str) == Some(caller.client_id.as_str())
            && let (Some(jti), Some(exp)) = (c.get("jti").and_then(Value::as_str), c.get("exp").and_then(Value::as_i64))
            && exp > now()
        {
            tokens::deny_jti(state, &realm.name, jti, exp).await?;
            return Ok(Some("access_token"));
        }
    }
    Ok(None)
}
