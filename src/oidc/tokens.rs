//! Minting tokens: ID tokens (OIDC Core 2), JWT access tokens (RFC 9068)
//! and opaque refresh tokens (stored as digests, rotated on use).
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::crypto::keys::Alg;
use crate::crypto::{jws, random};
use crate::error::{Error, Result};
use crate::realm::cache::{Client, Realm};
use crate::state::AppState;
use crate::store::{grants, now};

/// Who authenticated and how: carried from the session into tokens, and
/// stored with refresh tokens so a refresh reproduces it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthContext {
    pub user_id: String,
    pub subject: String,
    pub grant_id: String,
    pub session_id: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    /// `verified_claims` the portal asked for (Identity Assurance).
    #[serde(default)]
    pub verified: super::authorize::VerifiedRequest,
    /// The enterprise the person acts for (scope `enterprise`), if any.
    #[serde(default)]
    pub org: Option<crate::realname::enterprise::Org>,
}

/// `org_uscc`, `org_name`, `org_role` of the enterprise acted for.
fn add_org(obj: &mut serde_json::Map<String, Value>, ctx: &AuthContext) {
    if let Some(o) = &ctx.org {
        obj.insert("org_uscc".into(), json!(o.uscc));
        obj.insert("org_name".into(), json!(o.name));
        obj.insert("org_role".into(), json!(o.role));
    }
}

pub struct AccessToken {
    pub token: String,
    pub jti: String,
    pub exp: i64,
}

/// Signs `claims` with the realm's current key for `alg`.
pub(crate) fn sign(realm: &Realm, alg: Alg, typ: Option<&str>, claims: &Value) -> Result<String> {
    let key = realm
        .keys
        .signer(alg, now())
        .ok_or_else(|| Error::internal(format!("realm {} has no {alg} signing key", realm.name)))?;
    Ok(jws::sign_jwt(key, typ, claims)?)
}

/// The algorithm of access tokens for a resource (or the realm default).
fn access_alg(realm: &Realm, resource: Option<&str>) -> Alg {
    resource
        .and_then(|r| realm.settings.resources.iter().find(|x| x.uri == r))
        .and_then(|r| r.access_token_alg)
        .unwrap_or(realm.settings.tokens.access_token_alg)
}

pub fn access_token(
    realm: &Realm,
    client_id: &str,
    sub: &str,
    scope: &str,
    resource: Option<&str>,
    ctx: Option<&AuthContext>,
) -> Result<AccessToken> {
    let t = now();
    let exp = t + realm.settings.tokens.access_token_ttl_secs as i64;
    let jti = random::token(16)?;
    let mut claims = json!({
        "iss": realm.issuer,
        "sub": sub,
        "aud": resource.unwrap_or(realm.default_audience()),
        "exp": exp,
        "iat": t,
        "nbf": t,
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    });
    if let (Some(ctx), Some(obj)) = (ctx, claims.as_object_mut()) {
        obj.insert("auth_time".into(), json!(ctx.auth_time));
        obj.insert("acr".into(), json!(ctx.acr));
        obj.insert("amr".into(), json!(ctx.amr));
        if let Some(sid) = &ctx.session_id {
            obj.insert("sid".into(), json!(sid));
        }
        add_org(obj, ctx);
        // What userinfo is to return inside verified_claims.
        if !ctx.verified.userinfo.is_empty() {
            obj.insert("verified_claims_request".into(), json!(ctx.verified.userinfo));
        }
    }
    let token = sign(realm, access_alg(realm, resource), Some("at+jwt"), &claims)?;
    Ok(AccessToken { token, jti, exp })
}

pub fn id_token(
    realm: &Realm,
    client: &Client,
    ctx: &AuthContext,
    nonce: Option<&str>,
    access_token: &str,
    extra: Option<Value>,
) -> Result<String> {
    let t = now();
    let alg = client.settings.id_token_signed_response_alg.unwrap_or(realm.settings.tokens.id_token_alg);
    let mut claims = json!({
        "iss": realm.issuer,
        "sub": ctx.subject,
        "aud": client.client_id,
        "azp": client.client_id,
        "exp": t + realm.settings.tokens.id_token_ttl_secs as i64,
        "iat": t,
        "auth_time": ctx.auth_time,
        "acr": ctx.acr,
        "amr": ctx.amr,
        "at_hash": jws::at_hash(alg, access_token),
    });
    if let Some(obj) = claims.as_object_mut() {
        if let Some(n) = nonce {
            obj.insert("nonce".into(), json!(n));
        }
        if let Some(sid) = &ctx.session_id {
            obj.insert("sid".into(), json!(sid));
        }
        add_org(obj, ctx);
        if let Some(Value::Object(more)) = extra {
            obj.extend(more);
        }
    }
    sign(realm, alg, None, &claims)
}

/// A new refresh token in `family_id` (all tokens rotated from one code)
/// and the row to store for it; the caller stores the row (with the
/// rotation of its predecessor, on a refresh) before handing the token out.
pub fn refresh_token(
    realm: &Realm,
    family_id: &str,
    scope: &str,
    ctx: &AuthContext,
    issued_with: &AccessToken,
) -> Result<(String, grants::RefreshRecord)> {
    let token = random::token(32)?;
    let offline = super::has_scope(scope, "offline_access");
    let t = now();
    let ttl = if offline {
        realm.settings.tokens.offline_token_ttl_secs
    } else {
        realm.settings.tokens.refresh_token_ttl_secs
    };
    let record = grants::RefreshRecord {
        id: random::token(16)?,
        realm: realm.name.clone(),
        grant_id: ctx.grant_id.clone(),
        family_id: family_id.to_string(),
        session_id: ctx.session_id.clone(),
        token_hash: random::sha256_b64(token.as_bytes()),
        scope: scope.to_string(),
        context: serde_json::to_string(ctx).map_err(|e| Error::internal(e.to_string()))?,
        offline,
        created_at: t,
        expires_at: t + ttl as i64,
        rotated_at: None,
        revoked_at: None,
        access_jti: Some(issued_with.jti.clone()),
        access_exp: Some(issued_with.exp),
    };
    Ok((token, record))
}

/// Revokes a family of refresh tokens and the access tokens issued with them
/// (RFC 7009 2.1: revoking a refresh token invalidates the access tokens of
/// the same grant it produced).
pub async fn revoke_family(state: &AppState, realm: &str, family_id: &str) -> Result<()> {
    let live = grants::family_access_tokens(&state.db, realm, family_id).await?;
    grants::revoke_family(&state.db, realm, family_id).await?;
    for (jti, exp) in live {
        deny_jti(state, realm, &jti, exp).await?;
    }
    Ok(())
}

/// Access tokens revoked before they expire (code replay, RFC 7009).
pub async fn deny_jti(state: &AppState, realm: &str, jti: &str, exp: i64) -> Result<()> {
    let ttl = (exp - now()).max(1) as u64;
    state.eph.put(&format!("jti-revoked:{realm}:{jti}"), "1", ttl).await?;
    Ok(())
}

pub async fn jti_denied(state: &AppState, realm: &str, jti: &str) -> Result<bool> {
    Ok(state.eph.get(&format!("jti-revoked:{realm}:{jti}")).await?.is_some())
}
