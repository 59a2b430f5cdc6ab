//! Back-channel protocol endpoints: discovery, JWKS, token, userinfo,
//! introspection, revocation. JSON in, JSON out, OAuth errors.
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;

use super::{ClientIp, form_pairs};
use crate::error::{Error, Result};
use crate::oidc::{client_auth, resource, token};
use crate::realm::cache::Realm;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/.well-known/openid-configuration", get(discovery))
        .route("/realms/{realm}/jwks", get(jwks))
        .route("/realms/{realm}/token", post(token_endpoint))
        .route("/realms/{realm}/userinfo", get(userinfo).post(userinfo))
        .route("/realms/{realm}/introspect", post(introspect))
        .route("/realms/{realm}/revoke", post(revoke))
}

fn realm(state: &SharedState, name: &str) -> Result<Arc<Realm>> {
    state.realms.get(name).ok_or_else(|| Error::oauth(404, "invalid_request", "unknown realm"))
}

fn json_doc(body: Bytes, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        ],
        body,
    )
        .into_response()
}

async fn discovery(State(state): State<SharedState>, Path(name): Path<String>) -> Result<Response> {
    let r = realm(&state, &name)?;
    Ok(json_doc(r.discovery.clone(), "public, max-age=300"))
}

async fn jwks(State(state): State<SharedState>, Path(name): Path<String>) -> Result<Response> {
    let r = realm(&state, &name)?;
    // Short enough that a rotation's new key is seen within its lead time.
    Ok(json_doc(r.jwks.clone(), "public, max-age=300"))
}

fn no_store(v: Value) -> Response {
    let mut resp = axum::Json(v).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn require_form(headers: &HeaderMap) -> Result<()> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        Ok(())
    } else {
        Err(Error::invalid_request("the body must be application/x-www-form-urlencoded"))
    }
}

/// Parses a form body and authenticates the calling client.
async fn authenticated_form(
    state: &SharedState,
    r: &Realm,
    headers: &HeaderMap,
    body: &Bytes,
    endpoint: &str,
) -> Result<(Arc<crate::realm::cache::Client>, Vec<(String, String)>)> {
    require_form(headers)?;
    let form = form_pairs(body);
    let authz = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("invalid"));
    let presented = client_auth::Presented::new(authz, &form)?;
    let client = client_auth::authenticate(state, r, &presented, &format!("{}/{endpoint}", r.issuer)).await?;
    Ok((client, form))
}

async fn token_endpoint(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let r = realm(&state, &name)?;
    let (client, form) = authenticated_form(&state, &r, &headers, &body, "token").await?;
    let out = token::exchange(&state, &r, &client, &form, ip.as_deref()).await?;
    Ok(no_store(out))
}

async fn userinfo(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let r = realm(&state, &name)?;
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    let body_token = if body.is_empty() {
        None
    } else {
        require_form(&headers)?;
        crate::oidc::single(&form_pairs(&body), "access_token")?.map(str::to_string)
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => return Err(Error::invalid_request("send the access token one way only")),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            return Err(Error::OAuth {
                status: 401,
                code: "invalid_request",
                description: "an access token is required".into(),
                www_authenticate: Some(format!("Bearer realm=\"{}\"", r.issuer)),
            });
        }
    };
    let claims = resource::userinfo(&state, &r, &token).await?;
    Ok(no_store(claims))
}

async fn introspect(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let r = realm(&state, &name)?;
    let (client, form) = authenticated_form(&state, &r, &headers, &body, "introspect").await?;
    if client.settings.is_public() {
        return Err(Error::invalid_client("public clients cannot introspect", false));
    }
    let token = crate::oidc::single(&form, "token")?.ok_or_else(|| Error::invalid_request("token is required"))?;
    let out = resource::introspect(&state, &r, &client, token, crate::oidc::single(&form, "token_type_hint")?).await?;
    Ok(no_store(out))
}

async fn revoke(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let r = realm(&state, &name)?;
    let (client, form) = authenticated_form(&state, &r, &headers, &body, "revoke").await?;
    let token = crate::oidc::single(&form, "token")?.ok_or_else(|| Error::invalid_request("token is required"))?;
    if let Some(kind) = resource::revoke(&state, &r, &client, token).await? {
        crate::audit::record(
            &state,
            crate::audit::Event::new(&r.name, "token.revoked", "success")
                .client(&client.client_id)
                .ip(ip.as_deref())
                .detail(serde_json::json!({ "token_type": kind })),
        )
        .await;
    }
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response())
}
