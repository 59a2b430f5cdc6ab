//! The realm's `end_session_endpoint` (RP-Initiated Logout 1.0) and the
//! page that signs a browser out of every portal: the SSO session ends
//! (which queues the back-channel logout tokens), the portals that asked
//! for front-channel logout get their pages loaded in hidden iframes, and
//! the browser goes back to the portal only to a URI it registered.
//!
//! Without an `id_token_hint` of this browser's own session and person the
//! citizen is asked to confirm (the spec's MUST: a logout link alone must
//! not sign anyone out); with one, the realm's `session.confirm_logout`
//! decides.
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use minijinja::context;
use serde_json::json;

use super::login::{PageResult, client_name, current_session, form_get, no_store, realm_logo, realm_name, with_cookie};
use super::{ClientIp, PageError, cookies, form_pairs, locale, query_pairs};
use crate::audit;
use crate::authn::session::{self, SsoSession};
use crate::error::Error;
use crate::oidc::flow;
use crate::oidc::logout::{self, Checked, Hint, LogoutRequest, Refusal};
use crate::realm::cache::Realm;
use crate::state::SharedState;
use crate::web::Locale;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/logout", get(logout_get).post(logout_post))
        .route("/realms/{realm}/logout/confirm", post(confirm))
        .route("/static/logout.js", get(script))
}

async fn script() -> Response {
    super::static_script(crate::web::LOGOUT_JS)
}

async fn logout_get(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> PageResult {
    start(&state, &name, query_pairs(q.as_deref()), ip.as_deref(), &headers).await
}

async fn logout_post(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    start(&state, &name, form_pairs(&body), ip.as_deref(), &headers).await
}

/// The realm, the page language and the checked request; a refused
/// request is audited and answered with a page, never a redirect.
async fn checked(
    state: &SharedState,
    name: &str,
    pairs: &[(String, String)],
    ip: Option<&str>,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<Realm>, Locale, LogoutRequest, Checked), PageError> {
    let ui = form_get(pairs, "ui_locales").filter(|v| v.len() <= 64);
    let loc = locale(headers, ui);
    let realm = super::realm(state, name).map_err(|e| PageError(e, loc))?;
    let realm_name = realm.name.as_str();
    let refuse = |why: Refusal| async move {
        audit::record(
            state,
            audit::Event::new(realm_name, "logout", "failure").ip(ip).detail(json!({ "reason": why.reason() })),
        )
        .await;
        PageError(Error::page(400, why.page_key()), loc)
    };
    let req = match LogoutRequest::from_pairs(pairs) {
        Ok(r) => r,
        Err(why) => return Err(refuse(why).await),
    };
    match logout::check(&realm, &req) {
        Ok(c) => Ok((realm.clone(), loc, req, c)),
        Err(why) => Err(refuse(why).await),
    }
}

async fn start(
    state: &SharedState,
    name: &str,
    pairs: Vec<(String, String)>,
    ip: Option<&str>,
    headers: &HeaderMap,
) -> PageResult {
    let (realm, loc, req, checked) = checked(state, name, &pairs, ip, headers).await?;
    let current = current_session(state, &realm, headers).await.map_err(|e| PageError(e, loc))?;
    let Some((token_hash, sess)) = current else {
        // Nothing to end in this browser (already signed out, or a replayed
        // request): the portal still gets its registered page back.
        return Ok(finish(state, &realm, loc, &req, checked.redirect, &[], false));
    };
    let own = checked.hint.as_ref().is_some_and(|h| hint_is_of(state, &realm, h, &sess));
    if own && !realm.settings.session.confirm_logout {
        return sign_out(state, &realm, loc, &req, checked, &sess, ip, "id_token_hint").await;
    }
    Ok(confirm_page(state, &realm, loc, &req, &checked, &token_hash))
}

/// Whether the hint names this browser's session (by `sid`) and person (by
/// the subject its portal knows them by).
fn hint_is_of(state: &SharedState, realm: &Realm, h: &Hint, sess: &SsoSession) -> bool {
    if h.sid.as_deref().is_some_and(|sid| sid != sess.id) {
        return false;
    }
    h.aud.iter().filter_map(|a| realm.client(a)).any(|c| flow::subject_for(state, realm, c, &sess.user_id) == h.sub)
}

const CSRF_ACTION: &str = "logout:confirm";

fn confirm_page(
    state: &SharedState,
    realm: &Realm,
    loc: Locale,
    req: &LogoutRequest,
    checked: &Checked,
    token_hash: &str,
) -> Response {
    let fields: Vec<(&str, &str)> = req.pairs().into_iter().filter(|(k, _)| *k != "ui_locales").collect();
    let ui = loc.tag();
    let mut switch: Vec<(&str, &str)> = req.pairs().into_iter().filter(|(k, _)| *k != "ui_locales").collect();
    let other = if ui == "en" { "zh-CN" } else { "en" };
    switch.push(("ui_locales", other));
    let switch_url = format!("/realms/{}/logout?{}", realm.name, encode(&switch));
    let ctx = context! {
        realm_name => realm_name(realm, loc),
        realm_logo => realm_logo(realm),
        action => format!("/realms/{}/logout/confirm", realm.name),
        csrf => state.secrets.csrf_token(token_hash, CSRF_ACTION),
        fields => fields.iter().map(|(k, v)| context! { name => k, value => v }).collect::<Vec<_>>(),
        ui_locales => ui,
        client => checked.client.as_ref().map(|c| client_name(realm, &c.client_id, loc)),
        stay_url => format!("/realms/{}/account?ui_locales={}", realm.name, ui),
        switch_url => switch_url,
    };
    no_store(Html(super::render("logout_confirm.html", loc, ctx)).into_response())
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn confirm(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let pairs: Vec<(String, String)> = form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    let (realm, loc, req, checked) = checked(&state, &name, &pairs, ip.as_deref(), &headers).await?;
    let current = current_session(&state, &realm, &headers).await.map_err(|e| PageError(e, loc))?;
    let Some((token_hash, sess)) = current else {
        return Ok(finish(&state, &realm, loc, &req, checked.redirect, &[], false));
    };
    let token = form_get(&form, "csrf").unwrap_or_default();
    if !state.secrets.csrf_ok(&token_hash, CSRF_ACTION, token) {
        return Err(PageError(Error::page(403, "error.csrf"), loc));
    }
    sign_out(&state, &realm, loc, &req, checked, &sess, ip.as_deref(), "confirmed").await
}

/// Ends the session everywhere and answers with the front-channel page or
/// the redirect.
#[allow(clippy::too_many_arguments)]
async fn sign_out(
    state: &SharedState,
    realm: &Realm,
    loc: Locale,
    req: &LogoutRequest,
    checked: Checked,
    sess: &SsoSession,
    ip: Option<&str>,
    how: &str,
) -> PageResult {
    let ended = end(state, realm, sess, ip, checked.client.as_ref().map(|c| c.client_id.as_str()), how)
        .await
        .map_err(|e| PageError(e, loc))?;
    Ok(finish(state, realm, loc, req, checked.redirect, &ended.frames, true))
}

/// What ending a session in the browser leaves to do there.
pub(super) struct Ended {
    /// Front-channel logout pages to load.
    pub frames: Vec<String>,
}

/// Ends one SSO session (every node, refresh tokens bound to it, the
/// back-channel notices queued) and audits the logout: who, which session,
/// which portals took part, who asked.
pub(super) async fn end(
    state: &SharedState,
    realm: &Realm,
    sess: &SsoSession,
    ip: Option<&str>,
    initiator: Option<&str>,
    how: &str,
) -> Result<Ended, Error> {
    let rec = crate::store::sessions::get(&state.db, &realm.name, &sess.id).await?;
    let stored: Vec<String> = match &rec {
        Some(r) => serde_json::from_str(&r.clients).unwrap_or_default(),
        None => sess.clients.clone(),
    };
    let clients = session::participants(&state.db, &realm.name, &sess.id, &stored).await?;
    if let Some(r) = &rec {
        session::end_one(state, &realm.name, r, "logout").await?;
    }
    let frames = frames(realm, &clients, &sess.id);
    let mut ev = audit::Event::new(&realm.name, "logout", "success")
        .actor(&sess.user_id)
        .ip(ip)
        .detail(json!({ "sid": sess.id, "how": how, "portals": clients, "front_channel": frames.len() }));
    if let Some(c) = initiator {
        ev = ev.client(c);
    }
    audit::record(state, ev).await;
    Ok(Ended { frames })
}

/// The front-channel logout pages of the portals that took part.
pub(super) fn frames(realm: &Realm, clients: &[String], sid: &str) -> Vec<String> {
    clients
        .iter()
        .filter_map(|id| realm.client(id))
        .filter_map(|c| {
            let uri = c.settings.frontchannel_logout_uri.as_deref()?;
            logout::frontchannel_url(uri, &realm.issuer, sid, c.settings.frontchannel_logout_session_required)
        })
        .collect()
}

/// The answer once there is nothing (more) to end: the portal's registered
/// page, or the signed-out page — which first loads the front-channel
/// pages, when there are any, and then continues by itself.
fn finish(
    state: &SharedState,
    realm: &Realm,
    loc: Locale,
    req: &LogoutRequest,
    redirect: Option<String>,
    frames: &[String],
    clear_cookie: bool,
) -> Response {
    let https = state.settings.https();
    let clear = |r: Response| {
        if clear_cookie {
            with_cookie(r, &cookies::set(&session::cookie_name(&realm.name, https), "", https, Some(0)))
        } else {
            r
        }
    };
    if frames.is_empty()
        && let Some(to) = &redirect
    {
        return clear(no_store(Redirect::to(to).into_response()));
    }
    let mut switch: Vec<(&str, &str)> = req.pairs().into_iter().filter(|(k, _)| *k != "ui_locales").collect();
    let other = if loc.tag() == "en" { "zh-CN" } else { "en" };
    switch.push(("ui_locales", other));
    let ctx = context! {
        realm_name => realm_name(realm, loc),
        realm_logo => realm_logo(realm),
        title => "logout.done.title",
        message => "logout.done.message",
        frames => frames,
        continue_url => redirect,
        signin_url => format!("/realms/{}/account?ui_locales={}", realm.name, loc.tag()),
        switch_url => if frames.is_empty() { Some(format!("/realms/{}/logout?{}", realm.name, encode(&switch))) } else { None },
    };
    let mut resp = no_store(Html(super::render("logout.html", loc, ctx)).into_response());
    if !frames.is_empty()
        && let Ok(v) = HeaderValue::from_str(&csp_with_frames(frames))
    {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    clear(resp)
}

/// The page's Content-Security-Policy: the usual one, plus the origins of
/// the front-channel pages it loads.
pub(super) fn csp_with_frames(frames: &[String]) -> String {
    let mut origins: Vec<String> = frames
        .iter()
        .filter_map(|f| url::Url::parse(f).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    origins.sort();
    origins.dedup();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src {}; \
         frame-ancestors 'none'; base-uri 'none'",
        if origins.is_empty() { "'none'".to_string() } else { origins.join(" ") }
    )
}

/// The signed-out page of the account centre's own "sign out": the same
/// front-channel page, without a portal to return to.
pub(super) fn signed_out_page(state: &SharedState, realm: &Realm, loc: Locale, frames: &[String]) -> Response {
    finish(state, realm, loc, &LogoutRequest::default(), None, frames, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_lists_each_frame_origin_once() {
        let csp = csp_with_frames(&[
            "https://a.example/fc?sid=1".into(),
            "https://a.example/other".into(),
            "http://127.0.0.1:9000/fc".into(),
        ]);
        assert!(csp.contains("frame-src http://127.0.0.1:9000 https://a.example;"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
