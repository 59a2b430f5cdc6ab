//! Client authentication at the token, introspection and revocation
//! endpoints (RFC 6749 2.3, OIDC Core 9, RFC 7523): `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt` and `none`. A client must use the
//! one method it registered; secrets are compared as SHA-256 digests in
//! constant time; assertion `jti`s are single-use across nodes.
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::crypto::{jws, random};
use crate::error::{Error, Result};
use crate::oidc::discovery::ASSERTION_ALGS;
use crate::realm::cache::{Client, Realm};
use crate::realm::model::AuthMethod;
use crate::state::AppState;
use crate::store::now;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWKS_FRESH: Duration = Duration::from_secs(300);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(15);

#[derive(Default, Debug)]
pub struct Presented {
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub assertion: Option<String>,
    pub assertion_type: Option<String>,
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.as_bytes()).map(|(k, v)| format!("{k}{v}")).collect()
}

impl Presented {
    pub fn new(authorization: Option<&str>, form: &[(String, String)]) -> Result<Presented> {
        let field = |name: &str| super::single(form, name).map(|v| v.map(str::to_string));
        let basic = match authorization {
            None => None,
            Some(h) => {
                let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) else {
                    return Err(Error::invalid_client("unsupported Authorization scheme", true));
                };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| Error::invalid_client("malformed Basic credentials", true))?;
                let text =
                    String::from_utf8(raw).map_err(|_| Error::invalid_client("malformed Basic credentials", true))?;
                let (id, secret) =
                    text.split_once(':').ok_or_else(|| Error::invalid_client("malformed Basic credentials", true))?;
                Some((form_decode(id), form_decode(secret)))
            }
        };
        Ok(Presented {
            basic,
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            assertion: field("client_assertion")?,
            assertion_type: field("client_assertion_type")?,
        })
    }
}

/// Authenticates the calling client; `endpoint` is the URL that was called,
/// accepted as assertion audience only for clients allowed to use it.
pub async fn authenticate(state: &AppState, realm: &Realm, p: &Presented, endpoint: &str) -> Result<Arc<Client>> {
    let methods = [p.basic.is_some(), p.client_secret.is_some(), p.assertion.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(Error::invalid_request("use exactly one client authentication method"));
    }
    let basic_used = p.basic.is_some();
    let unknown = || Error::invalid_client("client authentication failed", basic_used);

    if let Some(assertion) = &p.assertion {
        if p.assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(Error::invalid_request(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        let unverified = jws::decode_unverified(assertion).map_err(|_| unknown())?;
        let sub = unverified.claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        if p.client_id.as_deref().is_some_and(|c| c != sub) {
            return Err(unknown());
        }
        let client = realm.client(sub).ok_or_else(unknown)?;
        if client.settings.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(unknown());
        }
        verify_assertion(state, realm, client, assertion, endpoint).await?;
        return Ok(client.clone());
    }

    let (id, secret) = match (&p.basic, &p.client_id, &p.client_secret) {
        (Some((id, secret)), form_id, None) => {
            if form_id.as_ref().is_some_and(|f| f != id) {
                return Err(Error::invalid_request("client_id differs from the Basic credentials"));
            }
            (id.as_str(), Some(secret.as_str()))
        }
        (None, Some(id), secret) => (id.as_str(), secret.as_deref()),
        (None, None, _) => return Err(Error::invalid_client("client authentication required", false)),
        _ => return Err(unknown()),
    };
    let client = realm.client(id).ok_or_else(unknown)?;
    let method = client.settings.token_endpoint_auth_method;
    match (method, secret) {
        (AuthMethod::None, None) => Ok(client.clone()),
        (AuthMethod::ClientSecretBasic, Some(s)) if basic_used => {
            check_secret(client, s).then(|| client.clone()).ok_or_else(unknown)
        }
        (AuthMethod::ClientSecretPost, Some(s)) if !basic_used => {
            check_secret(client, s).then(|| client.clone()).ok_or_else(unknown)
        }
        _ => Err(unknown()),
    }
}

fn check_secret(client: &Client, secret: &str) -> bool {
    match &client.secret_sha256 {
        Some(stored) => random::ct_eq(&random::sha256(secret.as_bytes()), stored),
        None => false,
    }
}

async fn verify_assertion(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    assertion: &str,
    endpoint: &str,
) -> Result<()> {
    let fail = |why: &'static str| Error::invalid_client(why, false);
    let keys = client_keys(state, client, false).await?;
    let jwt = match jws::verify(assertion, &keys, &ASSERTION_ALGS) {
        Ok(j) => j,
        Err(_) if client.settings.jwks_uri.is_some() => {
            // The client may have rotated its keys: fetch once more.
            let keys = client_keys(state, client, true).await?;
            jws::verify(assertion, &keys, &ASSERTION_ALGS).map_err(|_| fail("client assertion signature invalid"))?
        }
        Err(_) => return Err(fail("client assertion signature invalid")),
    };
    let c = &jwt.claims;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("iss") != Some(client.client_id.as_str()) || s("sub") != Some(client.client_id.as_str()) {
        return Err(fail("client assertion iss and sub must be the client_id"));
    }
    let aud_ok = |a: &str| a == realm.issuer || (client.settings.allow_token_endpoint_audience && a == endpoint);
    let aud = match c.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud {
        return Err(fail("client assertion aud must be the issuer"));
    }
    let t = now();
    let exp = c.get("exp").and_then(Value::as_i64).ok_or_else(|| fail("client assertion needs exp"))?;
    if exp + super::SKEW_SECS < t {
        return Err(fail("client assertion expired"));
    }
    if exp > t + 3600 {
        return Err(fail("client assertion lives too long"));
    }
    if let Some(nbf) = c.get("nbf").and_then(Value::as_i64)
        && nbf > t + super::SKEW_SECS
    {
        return Err(fail("client assertion not yet valid"));
    }
    let jti = s("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| fail("client assertion needs jti"))?;
    let key = format!("jti:{}:{}:{}", realm.name, client.client_id, random::sha256_b64(jti.as_bytes()));
    let ttl = (exp - t + super::SKEW_SECS).max(1) as u64;
    if !state.eph.put_new(&key, "1", ttl).await? {
        return Err(fail("client assertion replayed"));
    }
    Ok(())
}

async fn client_keys(state: &AppState, client: &Client, refetch: bool) -> Result<Arc<Vec<Value>>> {
    if let Some(jwks) = &client.settings.jwks {
        let keys = jwks.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
        return Ok(Arc::new(keys));
    }
    let Some(uri) = client.settings.jwks_uri.as_deref() else {
        return Ok(Arc::new(Vec::new()));
    };
    let cached = {
        let map = match state.client_jwks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(uri).cloned()
    };
    if let Some((keys, at)) = &cached {
        let age = at.elapsed();
        if age < JWKS_FRESH && (!refetch || age < JWKS_MIN_REFETCH) {
            return Ok(keys.clone());
        }
    }
    let fetched: Result<Value> = async {
        let resp = state.http.get(uri).send().await.map_err(|e| Error::internal(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(Error::internal(format!("jwks_uri answered {}", resp.status())));
        }
        resp.json::<Value>().await.map_err(|e| Error::internal(e.to_string()))
    }
    .await;
    match fetched {
        Ok(v) => {
            let keys = Arc::new(v.get("keys").and_then(Value::as_array).cloned().unwrap_or_default());
            let mut map = match state.client_jwks.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.insert(uri.to_string(), (keys.clone(), Instant::now()));
            Ok(keys)
        }
        Err(e) => {
            tracing::warn!(client = client.client_id, "fetching jwks_uri failed: {e}");
            Ok(cached.map(|(k, _)| k).unwrap_or_default())
        }
    }
}
