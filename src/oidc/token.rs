//! The token endpoint's grants (RFC 6749 4.1.3, 6, 4.4; RFC 7636 4.6).
//! Codes are single-use across nodes: a second redemption fails and revokes
//! what the first issued. Refresh tokens rotate; presenting a used one
//! revokes the whole grant (RFC 9700 4.14.2).
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit;
use crate::authn::session;
use crate::crypto::random;
use crate::error::{Error, Result};
use crate::oidc::flow::{CodeData, code_key};
use crate::oidc::tokens::{self, AuthContext};
use crate::realm::cache::{Client, Realm};
use crate::state::AppState;
use crate::store::{grants, now};

#[derive(Serialize, Deserialize)]
struct Redeemed {
    family_id: String,
    jti: String,
    exp: i64,
}

fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str> {
    super::single(form, name)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::invalid_request(format!("{name} is required")))
}

pub async fn exchange(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    form: &[(String, String)],
    ip: Option<&str>,
) -> Result<Value> {
    let grant_type = required(form, "grant_type")?;
    if !["authorization_code", "refresh_token", "client_credentials"].contains(&grant_type) {
        return Err(Error::oauth(400, "unsupported_grant_type", "grant_type is not supported"));
    }
    if !client.settings.allows_grant(grant_type) {
        return Err(Error::unauthorized_client(format!("the client may not use {grant_type}")));
    }
    let (out, grant) = match grant_type {
        "authorization_code" => (authorization_code(state, realm, client, form, ip).await, "authorization_code"),
        "refresh_token" => (refresh(state, realm, client, form, ip).await, "refresh_token"),
        _ => (client_credentials(state, realm, client, form, ip).await, "client_credentials"),
    };
    if out.is_ok() {
        crate::metrics::token_issued(grant);
    }
    out
}

/// Audits an issued token: by whom (if a person), to which client, how.
#[allow(clippy::too_many_arguments)]
async fn issued(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    ip: Option<&str>,
    person: Option<&str>,
    grant_type: &str,
    scope: &str,
    jti: &str,
) {
    let mut e = audit::Event::new(&realm.name, "token.issued", "success")
        .client(&client.client_id)
        .ip(ip)
        .detail(json!({ "grant_type": grant_type, "scope": scope, "jti": jti }));
    if let Some(p) = person {
        e = e.actor(p);
    }
    audit::record(state, e).await;
}

fn pkce_ok(challenge: &str, verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        && random::ct_eq(random::sha256_b64(verifier.as_bytes()).as_bytes(), challenge.as_bytes())
}

async fn authorization_code(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    form: &[(String, String)],
    ip: Option<&str>,
) -> Result<Value> {
    let code = required(form, "code")?;
    if code.len() > 200 {
        return Err(Error::invalid_grant("unknown code"));
    }
    let key = code_key(&realm.name, code);
    let Some(json) = state.eph.take(&key).await? else {
        return Err(replayed_or_unknown(state, realm, &key, client, ip).await);
    };
    let data: CodeData = serde_json::from_str(&json).map_err(|e| Error::internal(e.to_string()))?;
    match redeem(state, realm, client, form, ip, &key, &data).await {
        Err(e) if e.is_unavailable() => {
            // Storage failed and nothing reached the client: the code goes
            // back for the retry the 503 asks for, rather than being lost
            // to an outage and refused afterwards as unknown.
            restore_code(state, &key, &json, data.expires_at).await;
            Err(e)
        }
        out => out,
    }
}

/// Puts a taken code back for the rest of its lifetime (not at all for a
/// code of an older node, which did not record it).
async fn restore_code(state: &AppState, key: &str, json: &str, expires_at: i64) {
    let left = expires_at - now();
    if left > 0
        && let Err(e) = state.eph.put_new(key, json, left as u64).await
    {
        tracing::warn!("an authorization code could not be put back after a storage failure: {e}");
    }
}

/// The checks and the issuance of a code taken from the store.
async fn redeem(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    form: &[(String, String)],
    ip: Option<&str>,
    key: &str,
    data: &CodeData,
) -> Result<Value> {
    if data.client_id != client.client_id {
        return Err(Error::invalid_grant("the code was issued to another client"));
    }
    if super::single(form, "redirect_uri")? != Some(data.redirect_uri.as_str()) {
        return Err(Error::invalid_grant("redirect_uri does not match the authorization request"));
    }
    match (&data.code_challenge, super::single(form, "code_verifier")?) {
        (Some(ch), Some(v)) if pkce_ok(ch, v) => {}
        (Some(_), Some(_)) => return Err(Error::invalid_grant("code_verifier does not match code_challenge")),
        (Some(_), None) => return Err(Error::invalid_grant("code_verifier is required")),
        (None, Some(_)) => return Err(Error::invalid_grant("code_verifier sent but no code_challenge was")),
        (None, None) => {}
    }
    // A portal whose part in the session is recorded by the refresh token
    // issued now is checked after that row is written (below): a sign-out
    // racing this exchange then either finds the row and tells the portal,
    // or has ended the session before the check, which refuses.
    let recorded_by_token = session::recorded_by_refresh_token(client);
    if let Some(sid) = &data.ctx.session_id
        && !recorded_by_token
        && !session::is_live(state, realm, sid).await?
    {
        return Err(Error::invalid_grant("the sign-in session has ended"));
    }
    // The used-marker goes in before anything is issued, so a replay racing
    // this redemption still finds what to revoke.
    let family_id = random::token(16)?;
    let ttl = (realm.settings.tokens.access_token_ttl_secs).max(realm.settings.tokens.code_ttl_secs * 10);
    let mut marker = Redeemed { family_id: family_id.clone(), jti: String::new(), exp: 0 };
    if let Ok(m) = serde_json::to_string(&marker) {
        state.eph.put(&format!("{key}:used"), &m, ttl).await?;
    }
    let scope = data.scope.as_str();
    let out =
        issue(state, realm, client, scope, data.resource.as_deref(), &data.ctx, data.nonce.as_deref(), &family_id)
            .await?;
    if let Some(r) = out.2 {
        grants::insert_refresh(&state.db, r).await?;
    }
    if let Some(sid) = &data.ctx.session_id
        && recorded_by_token
        && !session::is_live_now(state, realm, sid).await?
    {
        // Nothing issued leaves: the refresh token is revoked, the access
        // token denied.
        tokens::revoke_family(state, &realm.name, &family_id).await?;
        tokens::deny_jti(state, &realm.name, &out.1.jti, out.1.exp).await?;
        return Err(Error::invalid_grant("the sign-in session has ended"));
    }
    marker.jti = out.1.jti.clone();
    marker.exp = out.1.exp;
    if let Ok(m) = serde_json::to_string(&marker) {
        state.eph.put(&format!("{key}:used"), &m, ttl).await?;
    }
    issued(state, realm, client, ip, Some(&data.ctx.user_id), "authorization_code", &data.scope, &marker.jti).await;
    Ok(out.0)
}

/// A code that is not there: unknown, expired, or already redeemed. In the
/// last case what the first redemption issued is revoked.
async fn replayed_or_unknown(state: &AppState, realm: &Realm, key: &str, client: &Client, ip: Option<&str>) -> Error {
    let used = match state.eph.take(&format!("{key}:used")).await {
        Ok(u) => u,
        Err(e) => return e.into(),
    };
    if let Some(m) = used.and_then(|j| serde_json::from_str::<Redeemed>(&j).ok()) {
        // The family's tokens, and the first access token even when no
        // refresh token was issued with it.
        let revoked = tokens::revoke_family(state, &realm.name, &m.family_id).await;
        let denied = if m.jti.is_empty() { Ok(()) } else { tokens::deny_jti(state, &realm.name, &m.jti, m.exp).await };
        if let Err(e) = revoked.and(denied) {
            return e;
        }
        audit::record(
            state,
            audit::Event::new(&realm.name, "code.replayed", "failure")
                .client(&client.client_id)
                .ip(ip)
                .detail(json!({ "revoked_jti": m.jti })),
        )
        .await;
        return Error::invalid_grant("the code was already used; the tokens issued for it are revoked");
    }
    Error::invalid_grant("unknown or expired code")
}

/// The token response, its access token, and the row of the refresh token
/// in it (if any), which the caller stores before sending the response.
#[allow(clippy::too_many_arguments)]
async fn issue(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    scope: &str,
    resource: Option<&str>,
    ctx: &AuthContext,
    nonce: Option<&str>,
    family_id: &str,
) -> Result<(Value, tokens::AccessToken, Option<grants::RefreshRecord>)> {
    // Whom the person acts for is checked again at every issuance: only for
    // a portal allowed scope `enterprise`, only while the person still
    // represents or acts for it. A refresh token issued now keeps the result.
    let checked;
    let ctx = match &ctx.org {
        None => ctx,
        Some(o) => {
            let org = match super::flow::enterprise_capable(realm, client) {
                true => crate::realname::enterprise::still_acting(state, &realm.name, &ctx.user_id, o).await?,
                false => None,
            };
            checked = AuthContext { org, ..ctx.clone() };
            &checked
        }
    };
    let at = tokens::access_token(realm, &client.client_id, &ctx.subject, scope, resource, Some(ctx))?;
    let mut body = json!({
        "access_token": at.token,
        "token_type": "Bearer",
        "expires_in": realm.settings.tokens.access_token_ttl_secs,
        "scope": scope,
    });
    let obj = body.as_object_mut().ok_or_else(|| Error::internal("token response"))?;
    if super::has_scope(scope, "openid") {
        let extra = match ctx.verified.id_token.is_empty() {
            true => None,
            false => match crate::realname::proven(state, &realm.name, &ctx.user_id).await? {
                Some(p) => super::claims::verified_claims(realm, client, &p, &ctx.verified.id_token)
                    .map(|vc| json!({ "verified_claims": vc })),
                None => None,
            },
        };
        obj.insert("id_token".into(), json!(tokens::id_token(realm, client, ctx, nonce, &at.token, extra)?));
    }
    let mut record = None;
    if client.settings.allows_grant("refresh_token") {
        let (token, r) = tokens::refresh_token(realm, family_id, scope, ctx, &at)?;
        obj.insert("refresh_token".into(), json!(token));
        record = Some(r);
    }
    Ok((body, at, record))
}

async fn refresh(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    form: &[(String, String)],
    ip: Option<&str>,
) -> Result<Value> {
    let token = required(form, "refresh_token")?;
    let hash = random::sha256_b64(token.as_bytes());
    let Some(rec) = grants::refresh_by_hash(&state.db, &realm.name, &hash).await? else {
        return Err(Error::invalid_grant("unknown refresh token"));
    };
    let ctx: AuthContext = serde_json::from_str(&rec.context).map_err(|e| Error::internal(e.to_string()))?;
    let grant = grants::get(&state.db, &realm.name, &rec.grant_id).await?;
    let Some(grant) = grant.filter(|g| g.client_id == client.client_id) else {
        return Err(Error::invalid_grant("unknown refresh token"));
    };
    if rec.revoked_at.is_some() || grant.revoked_at.is_some() {
        return Err(Error::invalid_grant("the refresh token was revoked"));
    }
    if rec.rotated_at.is_some() {
        return Err(reused(state, realm, client, ip, &grant).await);
    }
    if rec.expires_at <= now() {
        return Err(Error::invalid_grant("the refresh token expired"));
    }
    if !rec.offline
        && let Some(sid) = &rec.session_id
        && !session::is_live(state, realm, sid).await?
    {
        return Err(Error::invalid_grant("the sign-in session has ended"));
    }
    let scope = match super::single(form, "scope")? {
        None => rec.scope.clone(),
        Some(s) => {
            let asked = super::scopes(s);
            let had = super::scopes(&rec.scope);
            if asked.iter().any(|x| !had.contains(x)) {
                return Err(Error::invalid_scope("a refresh cannot widen the scope"));
            }
            asked.join(" ")
        }
    };
    let (body, at, next) = issue(state, realm, client, &scope, None, &ctx, None, &rec.family_id).await?;
    // The presented token is rotated and its successor stored in one
    // transaction: a storage failure between the two must not leave the
    // client with a used token and no new one, whose retry would then look
    // like reuse and revoke the grant. Nothing else runs inside it.
    let txn = crate::store::begin_write(&state.db).await?;
    if !grants::rotate_refresh(&txn, &realm.name, &rec.id).await? {
        // Rotated meanwhile by a concurrent redemption of the same token.
        txn.rollback().await?;
        return Err(reused(state, realm, client, ip, &grant).await);
    }
    if let Some(r) = next {
        grants::insert_refresh(&txn, r).await?;
    }
    txn.commit().await?;
    issued(state, realm, client, ip, Some(&ctx.user_id), "refresh_token", &scope, &at.jti).await;
    Ok(body)
}

/// Reuse of a rotated refresh token: someone holds a copy. Revokes the
/// whole grant.
async fn reused(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    ip: Option<&str>,
    grant: &grants::GrantRecord,
) -> Error {
    if let Err(e) = grants::revoke(&state.db, &realm.name, &grant.id).await {
        return e.into();
    }
    audit::record(
        state,
        audit::Event::new(&realm.name, "refresh.reused", "failure")
            .actor(&grant.user_id)
            .client(&client.client_id)
            .ip(ip)
            .detail(json!({ "grant": grant.id })),
    )
    .await;
    Error::invalid_grant("the refresh token was already used; the grant is revoked")
}

async fn client_credentials(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    form: &[(String, String)],
    ip: Option<&str>,
) -> Result<Value> {
    if client.settings.is_public() {
        return Err(Error::unauthorized_client("a public client cannot use client_credentials"));
    }
    let asked = super::scopes(super::single(form, "scope")?.unwrap_or(""));
    for s in &asked {
        if s == "openid" || s == "offline_access" || !client.settings.scopes.contains(s) {
            return Err(Error::invalid_scope(format!("scope {s} is not available to client_credentials")));
        }
    }
    let resource = match super::single(form, "resource")? {
        None => None,
        Some(r) if realm.settings.resources.iter().any(|x| x.uri == r) => Some(r),
        Some(_) => return Err(Error::oauth(400, "invalid_target", "unknown resource")),
    };
    let scope = asked.join(" ");
    let at = tokens::access_token(realm, &client.client_id, &client.client_id, &scope, resource, None)?;
    issued(state, realm, client, ip, None, "client_credentials", &scope, &at.jti).await;
    let mut body = json!({
        "access_token": at.token,
        "token_type": "Bearer",
        "expires_in": realm.settings.tokens.access_token_ttl_secs,
    });
    if !scope.is_empty()
        && let Some(o) = body.as_object_mut()
    {
        o.insert("scope".into(), json!(scope));
    }
    Ok(body)
}
