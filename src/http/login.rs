//! Browser-facing flow: the authorization endpoint, the sign-in page and the
//! consent page. Every form carries a CSRF token bound to the browser's
//! binding cookie; every error is a localized page unless the client and
//! redirect URI are known good.
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use minijinja::context;

use super::{ClientIp, PageError, cookies, form_pairs, locale, query_pairs};
use crate::account::identifiers::Identifier;
use crate::audit;
use crate::authn::limits;
use crate::authn::password::{self, Outcome};
use crate::authn::session::{self, SsoSession};
use crate::crypto::random;
use crate::error::Error;
use crate::oidc::authorize::{self, Rejection};
use crate::oidc::flow::{self, LoginTx, Next};
use crate::realm::cache::Realm;
use crate::state::SharedState;
use crate::store::users::SignInFacts;
use crate::web::Locale;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/authorize", get(authorize_get).post(authorize_post))
        .route("/realms/{realm}/login", get(login_page).post(login_submit))
        .route("/realms/{realm}/login/cancel", post(cancel))
        .route("/realms/{realm}/consent", get(consent_page).post(consent_submit))
}

pub(super) type PageResult = Result<Response, PageError>;

pub(super) fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn realm_or_page(state: &SharedState, name: &str, loc: Locale) -> Result<Arc<Realm>, PageError> {
    super::realm(state, name).map_err(|e| PageError(e, loc))
}

/// The browser's live session in this realm, if any.
pub(super) async fn current_session(
    state: &SharedState,
    r: &Realm,
    headers: &HeaderMap,
) -> Result<Option<(String, SsoSession)>, Error> {
    match cookies::get(headers, &session::cookie_name(&r.name, state.settings.https())) {
        Some(c) => session::current(state, r, &c).await,
        None => Ok(None),
    }
}

pub(super) fn respond(r: &Realm, next: Next) -> Response {
    no_store(match next {
        Next::Login { tx } => Redirect::to(&format!("/realms/{}/login?tx={tx}", r.name)).into_response(),
        Next::Consent { tx } => Redirect::to(&format!("/realms/{}/consent?tx={tx}", r.name)).into_response(),
        Next::Verify { tx } => Redirect::to(&format!("/realms/{}/verify?tx={tx}", r.name)).into_response(),
        Next::Acting { tx } => Redirect::to(&format!("/realms/{}/acting?tx={tx}", r.name)).into_response(),
        Next::Redirect(url) => Redirect::to(&url).into_response(),
    })
}

async fn authorize_get(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    authorize(state, name, params, headers).await
}

async fn authorize_post(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    authorize(state, name, form_pairs(&body), headers).await
}

async fn authorize(state: SharedState, name: String, params: Vec<(String, String)>, headers: HeaderMap) -> PageResult {
    let ui = params.iter().find(|(k, _)| k == "ui_locales").map(|(_, v)| v.as_str());
    let loc = locale(&headers, ui);
    let r = realm_or_page(&state, &name, loc)?;
    let req = match authorize::parse(&r, &params) {
        Ok(req) => req,
        Err(Rejection::Page(e)) => return Err(PageError(e, loc)),
        Err(Rejection::Redirect { redirect_uri, state: st, error, description }) => {
            let url = authorize::error_redirect(&r.issuer, &redirect_uri, st.as_deref(), error, &description);
            return Ok(no_store(Redirect::to(&url).into_response()));
        }
    };
    let https = state.settings.https();
    let bind_name = cookies::binding_name(https);
    let (binding, new_binding) = match cookies::get(&headers, bind_name).filter(|b| b.len() >= 16 && b.len() <= 64) {
        Some(b) => (b, false),
        None => (random::token(16).map_err(|e| PageError(e.into(), loc))?, true),
    };
    let sess = current_session(&state, &r, &headers).await.map_err(|e| PageError(e, loc))?;
    let signed_out = sess.is_none();
    let tx = LoginTx {
        request: req,
        binding: binding.clone(),
        fresh_session: None,
        registering: None,
        pending: None,
        recovering: None,
        acting: None,
    };
    // Kept for the sign-in page below (a browser without a session).
    let page_tx = signed_out.then(|| tx.clone());
    let next = flow::proceed(&state, &r, tx, None, sess).await.map_err(|e| PageError(e, loc))?;
    let resp = match (next, page_tx) {
        // A browser without a session gets the sign-in page in this
        // response instead of a redirect to it: one round trip less on a
        // phone's network, one request less for the server. Its form, its
        // links and the language switch name the transaction, as the page
        // at `/login?tx=` does (where a session that must step up goes).
        (Next::Login { tx: tx_id }, Some(tx)) => {
            let user_agent = user_agent_of(&headers);
            let hint = tx.request.login_hint.clone().unwrap_or_default();
            let c = TxCtx { realm: r.clone(), tx, tx_id, binding: binding.clone(), loc, user_agent };
            login_form(&state, &c, &hint, None)
        }
        (next, _) => respond(&r, next),
    };
    Ok(if new_binding { with_cookie(resp, &cookies::set(bind_name, &binding, https, None)) } else { resp })
}

/// The browser's own description (first 200 characters), kept with a
/// session it starts.
fn user_agent_of(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(200).collect::<String>())
}

pub(super) struct TxCtx {
    pub realm: Arc<Realm>,
    pub tx: LoginTx,
    pub tx_id: String,
    pub binding: String,
    pub loc: Locale,
    /// The browser's own description, kept with a session it starts.
    pub user_agent: Option<String>,
}

/// Loads the transaction named in the request, for this browser only.
pub(super) async fn load_tx(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    tx_id: Option<&str>,
    ui: Option<&str>,
) -> Result<TxCtx, PageError> {
    let loc0 = locale(headers, ui);
    let r = realm_or_page(state, name, loc0)?;
    let expired = |loc| PageError(Error::page(400, "error.expired"), loc);
    let binding = cookies::get(headers, cookies::binding_name(state.settings.https())).ok_or_else(|| expired(loc0))?;
    let tx_id = tx_id.ok_or_else(|| expired(loc0))?.to_string();
    let tx = flow::load_tx(state, &r, &tx_id, &binding)
        .await
        .map_err(|e| PageError(e, loc0))?
        .ok_or_else(|| expired(loc0))?;
    let loc = locale(headers, ui.or(tx.request.ui_locales.as_deref()));
    let user_agent = user_agent_of(headers);
    Ok(TxCtx { realm: r, tx, tx_id, binding, loc, user_agent })
}

pub(super) fn switch_url(path: &str, tx: &str, loc: Locale) -> String {
    let other = if loc == Locale::ZhCn { "en" } else { "zh-CN" };
    format!("{path}?tx={tx}&ui_locales={other}")
}

pub(super) fn client_name(r: &Realm, client_id: &str, loc: Locale) -> String {
    if client_id == flow::ACCOUNT_CLIENT {
        return crate::web::text(loc, "account.title", &[]);
    }
    match r.clients.get(client_id) {
        Some(c) if loc == Locale::En && !c.settings.name_en.is_empty() => c.settings.name_en.clone(),
        Some(c) if !c.settings.name.is_empty() => c.settings.name.clone(),
        _ => client_id.to_string(),
    }
}

/// The realm's logo for the page header, if it is one the pages' CSP
/// loads: a path on this server or an image `data:` URI.
pub(super) fn realm_logo(r: &Realm) -> Option<String> {
    logo_of(&r.settings.accounts.logo)
}

fn logo_of(logo: &str) -> Option<String> {
    let logo = logo.trim();
    let local = logo.starts_with('/') && !logo.starts_with("//") && !logo.contains('\\');
    let data = logo.starts_with("data:image/") && logo.len() <= 64 * 1024;
    (local || data).then(|| logo.to_string())
}

pub(super) fn realm_name(r: &Realm, loc: Locale) -> String {
    match loc {
        Locale::En if !r.settings.display_name_en.is_empty() => r.settings.display_name_en.clone(),
        _ if !r.settings.display_name.is_empty() => r.settings.display_name.clone(),
        _ => r.name.clone(),
    }
}

fn login_form(state: &SharedState, c: &TxCtx, identifier: &str, error: Option<&str>) -> Response {
    login_page_with(state, c, identifier, error, None)
}

fn login_page_with(
    state: &SharedState,
    c: &TxCtx,
    identifier: &str,
    error: Option<&str>,
    retry_after: Option<u64>,
) -> Response {
    let path = format!("/realms/{}/login", c.realm.name);
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        action => path.clone(),
        cancel_action => format!("/realms/{}/login/cancel", c.realm.name),
        csrf => state.secrets.csrf_token(&c.binding, &format!("login:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        identifier => identifier,
        error => error,
        retry_after => retry_after,
        register_url => (!c.realm.settings.accounts.registration.is_empty())
            .then(|| format!("/realms/{}/register?tx={}", c.realm.name, c.tx_id)),
        recover_url => format!("/realms/{}/recover?tx={}", c.realm.name, c.tx_id),
        sms_url => c.realm.settings.accounts.allows("sms")
            .then(|| format!("/realms/{}/smslogin?tx={}", c.realm.name, c.tx_id)),
        passkey => c.realm.settings.accounts.allows("passkey").then(|| context! {
            options => format!("/realms/{}/passkey/options", c.realm.name),
            finish => format!("/realms/{}/passkey/signin", c.realm.name),
            csrf => state.secrets.csrf_token(&c.binding, &format!("passkey:{}", c.tx_id)),
            conditional => "1",
        }),
        switch_url => switch_url(&path, &c.tx_id, c.loc),
    };
    let status =
        if retry_after.is_some() { axum::http::StatusCode::TOO_MANY_REQUESTS } else { axum::http::StatusCode::OK };
    let mut resp = no_store((status, Html(super::render("login.html", c.loc, ctx))).into_response());
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn login_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    // Signed in, but not strongly enough for this portal: the second step.
    if let Some((_, s)) = current_session(&state, &c.realm, &headers).await.map_err(|e| PageError(e, c.loc))?
        && flow::needs_step_up(&c.realm, &c.tx, &s)
    {
        c.tx.pending = Some(flow::Pending {
            user_id: s.user_id.clone(),
            amr: s.amr.clone(),
            event_kind: "signin.stepup".into(),
            session_id: Some(s.id.clone()),
        });
        flow::save_tx(&state, &c.realm, &c.tx, Some(&c.tx_id)).await.map_err(|e| PageError(e, c.loc))?;
        return Ok(no_store(
            Redirect::to(&format!("/realms/{}/login/second?tx={}", c.realm.name, c.tx_id)).into_response(),
        ));
    }
    let hint = c.tx.request.login_hint.clone().unwrap_or_default();
    Ok(login_form(&state, &c, &hint, None))
}

pub(super) fn form_get<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Loads the transaction of a submitted form and checks its CSRF token.
pub(super) async fn submitted(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    purpose: &str,
) -> Result<TxCtx, PageError> {
    let c = load_tx(state, name, headers, form_get(form, "tx"), None).await?;
    let token = form_get(form, "csrf").unwrap_or_default();
    if !state.secrets.csrf_ok(&c.binding, &format!("{purpose}:{}", c.tx_id), token) {
        return Err(PageError(Error::page(403, "error.csrf"), c.loc));
    }
    Ok(c)
}

async fn login_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "login").await?;
    let identifier = form_get(&form, "identifier").unwrap_or_default().trim().to_string();
    let secret = form_get(&form, "password").unwrap_or_default().to_string();
    if identifier.is_empty() || secret.is_empty() || identifier.len() > 320 || secret.len() > 1024 {
        return Ok(login_form(&state, &c, &identifier, Some("login.error.required")));
    }
    let r = c.realm.clone();
    let client_id = c.tx.request.client_id.clone();
    let account_key = Identifier::parse(&identifier).map(|i| i.blind_index(&state.secrets.sealer));
    let attempt = limits::Attempt::new(&r.name, &identifier, account_key, ip.as_deref());
    if let Some(wait) = limits::locked(&state, &attempt).await.map_err(|e| PageError(e, c.loc))? {
        crate::metrics::signin("pwd", "locked", &client_id);
        audit::record(
            &state,
            audit::Event::new(&r.name, "signin.password", "failure")
                .client(&client_id)
                .ip(ip.as_deref())
                .detail(serde_json::json!({ "reason": "locked", "retry_after": wait })),
        )
        .await;
        return Ok(login_page_with(&state, &c, &identifier, Some("login.error.locked"), Some(wait)));
    }
    let outcome =
        password::authenticate(&state, &r.name, &identifier, secret).await.map_err(|e| PageError(e, c.loc))?;
    let (user_id, facts) = match outcome {
        Outcome::Failure { reason, user_id } => {
            crate::metrics::signin("pwd", "failure", &client_id);
            let lock = limits::failed(&state, &attempt).await.map_err(|e| PageError(e, c.loc))?;
            let mut ev = audit::Event::new(&r.name, "signin.password", "failure")
                .client(&client_id)
                .ip(ip.as_deref())
                .detail(serde_json::json!({ "reason": reason, "locked_for": lock }));
            if let Some(u) = user_id.as_deref() {
                ev = ev.actor(u);
            }
            audit::record(&state, ev).await;
            return Ok(match lock {
                Some(secs) => login_page_with(&state, &c, &identifier, Some("login.error.locked"), Some(secs)),
                None => login_form(&state, &c, &identifier, Some("login.error.invalid")),
            });
        }
        Outcome::Success { user_id, facts } => {
            crate::metrics::signin("pwd", "success", &client_id);
            limits::succeeded(&state, &attempt).await.map_err(|e| PageError(e, c.loc))?;
            (user_id, facts)
        }
    };
    first_factor(&state, c, &user_id, ip.as_deref(), "signin.password", "pwd", Some(facts)).await
}

/// After a person proved who they are in a transaction: starts the SSO
/// session (with the last-sign-in time and the audit entry written at the
/// same time, so the audit adds no round trip), sets the cookie and goes on
/// with the authorization request.
/// After the first factor: signs the person in, unless a second one is
/// due — they have an authenticator app, or proved only their phone while
/// holding a passkey, or the portal demands more than this method — in
/// which case the second step's page comes first.
pub(super) async fn first_factor(
    state: &SharedState,
    mut c: TxCtx,
    user_id: &str,
    ip: Option<&str>,
    event_kind: &'static str,
    amr: &str,
    facts: Option<SignInFacts>,
) -> PageResult {
    // The identity level comes with the facts read with the account;
    // otherwise `open_session` reads it.
    let (facts, level) = match facts {
        Some(f) => {
            let level = crate::realname::level_or_default(f.proof_level.clone());
            (f, Some(level))
        }
        None => {
            let held = crate::store::credentials::of_user(&state.db, &c.realm.name, user_id, None)
                .await
                .map_err(|e| PageError(e.into(), c.loc))?;
            let has = |k: &str| held.iter().any(|h| h.kind == k);
            let f = SignInFacts {
                totp: has("totp"),
                passkey: has("passkey"),
                any_credential: !held.is_empty(),
                proof_level: None,
            };
            (f, None)
        }
    };
    let first = vec![amr.to_string()];
    let more = facts.totp
        || (matches!(amr, "sms" | "otp") && facts.passkey)
        || !flow::required_authn(&c.realm, &c.tx.request).met_by(&first);
    if !more || !facts.any_credential {
        // Without a second factor a portal that demands one gets the
        // step-up page after sign-in, which explains how to add one.
        return signed_in_with(state, c, user_id, ip, event_kind, first, level).await;
    }
    c.tx.pending = Some(flow::Pending {
        user_id: user_id.to_string(),
        amr: first,
        event_kind: event_kind.to_string(),
        session_id: None,
    });
    flow::save_tx(state, &c.realm, &c.tx, Some(&c.tx_id)).await.map_err(|e| PageError(e, c.loc))?;
    Ok(no_store(Redirect::to(&format!("/realms/{}/login/second?tx={}", c.realm.name, c.tx_id)).into_response()))
}

pub(super) async fn signed_in_with(
    state: &SharedState,
    mut c: TxCtx,
    user_id: &str,
    ip: Option<&str>,
    event_kind: &'static str,
    amr: Vec<String>,
    level: Option<String>,
) -> PageResult {
    let (cookie, token_hash, sess) = open_session(state, &mut c, user_id, ip, event_kind, amr, level).await?;
    let r = c.realm.clone();
    let next = flow::proceed(state, &r, c.tx.clone(), Some(&c.tx_id), Some((token_hash, sess)))
        .await
        .map_err(|e| PageError(e, c.loc))?;
    Ok(with_session_cookie(state, &r, respond(&r, next), &cookie))
}

pub(super) fn with_session_cookie(state: &SharedState, r: &Realm, resp: Response, cookie: &str) -> Response {
    let https = state.settings.https();
    with_cookie(resp, &cookies::set(&session::cookie_name(&r.name, https), cookie, https, None))
}

/// Starts the SSO session of a sign-in within the transaction (marked as
/// fresh in it); returns the cookie value, its digest and the session.
/// `level` is the account's identity level when the caller read it with
/// the account; otherwise it is read here.
pub(super) async fn open_session(
    state: &SharedState,
    c: &mut TxCtx,
    user_id: &str,
    ip: Option<&str>,
    event_kind: &'static str,
    amr: Vec<String>,
    level: Option<String>,
) -> Result<(String, String, SsoSession), PageError> {
    let r = c.realm.clone();
    let sid = session::new_id().map_err(|e| PageError(e, c.loc))?;
    let event = audit::Event::new(&r.name, event_kind, "success")
        .actor(user_id)
        .client(&c.tx.request.client_id)
        .ip(ip)
        .detail(serde_json::json!({ "sid": sid, "amr": amr }));
    let acr = match level {
        Some(l) => l,
        None => crate::realname::level_of(state, &r.name, user_id).await.map_err(|e| PageError(e, c.loc))?,
    };
    let (cookie, mut rec) = session::prepare(&r, sid, user_id, amr, &acr).map_err(|e| PageError(e, c.loc))?;
    rec.ip = ip.map(str::to_string);
    rec.user_agent = c.user_agent.clone();
    // The session row, the last-sign-in time and the audit entry commit
    // together, in the audit writer's shared transaction: the audit costs
    // the sign-in no commit of its own.
    let backend = state.db.get_database_backend();
    let change = vec![
        crate::store::sessions::insert_statement(backend, rec.clone()),
        crate::store::users::touch_login_statement(backend, &r.name, user_id),
    ];
    if !audit::commit_statements_with(state, event, change).await {
        return Err(PageError(
            crate::error::Error::Db(sea_orm::DbErr::Custom("the sign-in could not be stored".into())),
            c.loc,
        ));
    }
    let sess = session::started(state, rec).await;
    c.tx.fresh_session = Some(sess.id.clone());
    let token_hash = random::sha256_b64(cookie.as_bytes());
    Ok((cookie, token_hash, sess))
}

async fn cancel(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "login").await?;
    flow::end_tx(&state, &c.realm, &c.tx_id).await.map_err(|e| PageError(e, c.loc))?;
    Ok(respond(
        &c.realm,
        flow::to_client_error(&c.realm, &c.tx.request, "access_denied", "the person cancelled the sign-in"),
    ))
}

async fn consent_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    if current_session(&state, &c.realm, &headers).await.map_err(|e| PageError(e, c.loc))?.is_none() {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    }
    let client = c.realm.clients.get(&c.tx.request.client_id);
    let path = format!("/realms/{}/consent", c.realm.name);
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        client_uri => client.map(|c| c.settings.client_uri.clone()).filter(|u| !u.is_empty()),
        scopes => crate::oidc::scopes(&c.tx.request.scope),
        action => path.clone(),
        csrf => state.secrets.csrf_token(&c.binding, &format!("consent:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        switch_url => switch_url(&path, &c.tx_id, c.loc),
    };
    Ok(no_store(Html(super::render("consent.html", c.loc, ctx)).into_response()))
}

async fn consent_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "consent").await?;
    let Some((token_hash, mut sess)) =
        current_session(&state, &c.realm, &headers).await.map_err(|e| PageError(e, c.loc))?
    else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    if form_get(&form, "decision") != Some("allow") {
        flow::end_tx(&state, &c.realm, &c.tx_id).await.map_err(|e| PageError(e, c.loc))?;
        audit::record(
            &state,
            audit::Event::new(&c.realm.name, "consent.denied", "success")
                .actor(&sess.user_id)
                .client(&c.tx.request.client_id)
                .ip(ip.as_deref()),
        )
        .await;
        return Ok(respond(
            &c.realm,
            flow::to_client_error(&c.realm, &c.tx.request, "access_denied", "the person declined"),
        ));
    }
    let next = flow::consent_given(&state, &c.realm, &c.tx, &c.tx_id, &token_hash, &mut sess, ip.as_deref())
        .await
        .map_err(|e| PageError(e, c.loc))?;
    Ok(respond(&c.realm, next))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_or_data_logos_are_shown() {
        for (l, want) in [
            ("/static/logo.svg", true),
            ("data:image/png;base64,AAAA", true),
            ("https://evil.example/logo.png", false),
            ("//evil.example/logo.png", false),
            ("/\\evil.example/logo.png", false),
            ("javascript:alert(1)", false),
            ("", false),
        ] {
            assert_eq!(super::logo_of(l).is_some(), want, "{l}");
        }
    }
}
