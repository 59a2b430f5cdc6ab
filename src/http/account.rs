//! The account centre (`/realms/{realm}/account`): a citizen manages their
//! own account with their SSO session. Without one, they sign in through a
//! login transaction of the pseudo client `civid-account` and come back.
//! Sensitive changes need a sign-in within the last ten minutes. Every form
//! carries a CSRF token bound to the session; every change answers with a
//! redirect to the page and a flash message (POST-redirect-GET).
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Offset;
use minijinja::context;

use super::login::{PageResult, client_name, form_get, no_store, realm_name, with_cookie};
use super::{ClientIp, PageError, cookies, form_pairs, locale, query_pairs};
use crate::account::identifiers::Identifier;
use crate::account::registration::{Completed, Started};
use crate::account::selfservice::{self as selfsvc, Cancelled, Changed, PasswordChange, RECENT_SIGNIN_SECS};
use crate::audit;
use crate::authn::session::{self, SsoSession};
use crate::crypto::random;
use crate::error::Error;
use crate::oidc::flow;
use crate::realm::cache::Realm;
use crate::state::SharedState;
use crate::store::now;
use crate::web::Locale;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/account", get(account_page))
        .route("/realms/{realm}/account/profile", post(profile_submit))
        .route("/realms/{realm}/account/phone", post(|s, p, q, i, h, b| change_start("phone", s, p, q, i, h, b)))
        .route("/realms/{realm}/account/email", post(|s, p, q, i, h, b| change_start("email", s, p, q, i, h, b)))
        .route("/realms/{realm}/account/verify", get(verify_page).post(verify_submit))
        .route("/realms/{realm}/account/password", post(password_submit))
        .route("/realms/{realm}/account/sessions/end", post(end_session))
        .route("/realms/{realm}/account/sessions/end-others", post(end_others))
        .route("/realms/{realm}/account/portals/withdraw", post(withdraw))
        .route("/realms/{realm}/account/export", post(export))
        .route("/realms/{realm}/account/logout", post(logout))
        .route("/realms/{realm}/account/cancel", get(cancel_page).post(cancel_submit))
}

/// A signed-in person in the account centre.
struct Ctx {
    realm: Arc<Realm>,
    loc: Locale,
    /// `ui_locales` of the request, kept in every link and form action.
    ui: Option<String>,
    token_hash: String,
    sess: SsoSession,
    ip: Option<String>,
}

impl Ctx {
    fn base(&self) -> String {
        format!("/realms/{}/account", self.realm.name)
    }

    /// A URL of the account centre, keeping the chosen language.
    fn url(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(ui) = &self.ui {
            q.append_pair("ui_locales", ui);
        }
        let q = q.finish();
        let path = format!("{}{path}", self.base());
        if q.is_empty() { path } else { format!("{path}?{q}") }
    }

    fn csrf(&self, state: &SharedState, action: &str) -> String {
        state.secrets.csrf_token(&self.token_hash, &format!("account:{action}"))
    }

    fn csrf_ok(&self, state: &SharedState, action: &str, form: &[(String, String)]) -> bool {
        let token = form_get(form, "csrf").unwrap_or_default();
        state.secrets.csrf_ok(&self.token_hash, &format!("account:{action}"), token)
    }

    fn recent(&self) -> bool {
        now() - self.sess.auth_time < RECENT_SIGNIN_SECS
    }

    fn err(&self, e: Error) -> PageError {
        PageError(e, self.loc)
    }

    fn done(&self, what: &str) -> Response {
        no_store(Redirect::to(&self.url("", &[("done", what)])).into_response())
    }

    fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    fn who(&self) -> selfsvc::Who<'_> {
        selfsvc::Who { realm: &self.realm.name, user_id: &self.sess.user_id, session_id: &self.sess.id, ip: self.ip() }
    }
}

fn ui_of(q: Option<&str>) -> Option<String> {
    query_pairs(q).into_iter().find(|(k, _)| k == "ui_locales").map(|(_, v)| v).filter(|v| v.len() <= 64)
}

/// The person signed in to this realm in this browser, or the redirect that
/// signs them in (`fresh`: again, even if signed in) and brings them back.
async fn signed_in(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    ip: Option<String>,
    fresh: bool,
) -> Result<Result<Ctx, Response>, PageError> {
    let ui = ui_of(q);
    let loc = locale(headers, ui.as_deref());
    let realm = super::realm(state, name).map_err(|e| PageError(e, loc))?;
    let https = state.settings.https();
    let current = match cookies::get(headers, &session::cookie_name(&realm.name, https)) {
        Some(c) => session::current(state, &realm, &c).await.map_err(|e| PageError(e, loc))?,
        None => None,
    };
    match current {
        Some((token_hash, sess)) if !fresh => Ok(Ok(Ctx { realm, loc, ui, token_hash, sess, ip })),
        _ => Ok(Err(to_sign_in(state, &realm, headers, ui, fresh).await.map_err(|e| PageError(e, loc))?)),
    }
}

/// Starts a sign-in for the account centre and sends the browser to it.
async fn to_sign_in(
    state: &SharedState,
    realm: &Realm,
    headers: &HeaderMap,
    ui: Option<String>,
    fresh: bool,
) -> Result<Response, Error> {
    let https = state.settings.https();
    let bind_name = cookies::binding_name(https);
    let (binding, new_binding) = match cookies::get(headers, bind_name).filter(|b| b.len() >= 16 && b.len() <= 64) {
        Some(b) => (b, false),
        None => (random::token(16)?, true),
    };
    let tx = flow::account_tx(realm, binding.clone(), ui, fresh);
    let id = flow::save_tx(state, realm, &tx, None).await?;
    let resp = no_store(Redirect::to(&format!("/realms/{}/login?tx={id}", realm.name)).into_response());
    Ok(if new_binding { with_cookie(resp, &cookies::set(bind_name, &binding, https, None)) } else { resp })
}

/// A submitted form of the account centre: the person, their form, and the
/// CSRF check for `action`. `sensitive` actions need a recent sign-in.
#[allow(clippy::too_many_arguments)]
async fn submitted(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    ip: Option<String>,
    body: &Bytes,
    action: &str,
    sensitive: bool,
) -> Result<Result<(Ctx, Vec<(String, String)>), Response>, PageError> {
    let form = form_pairs(body);
    let c = match signed_in(state, name, headers, q, ip, false).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(Err(redirect)),
    };
    if !c.csrf_ok(state, action, &form) {
        return Err(c.err(Error::page(403, "error.csrf")));
    }
    if sensitive && !c.recent() {
        let resp = to_sign_in(state, &c.realm, headers, c.ui.clone(), true).await.map_err(|e| c.err(e))?;
        return Ok(Err(resp));
    }
    Ok(Ok((c, form)))
}

macro_rules! form_or_return {
    ($e:expr) => {
        match $e? {
            Ok(x) => x,
            Err(resp) => return Ok(resp),
        }
    };
}

/// Errors and typed values to show again on the page.
#[derive(Default)]
struct View {
    errors: Vec<(&'static str, String)>,
    values: Vec<(&'static str, String)>,
    retry_after: Option<u64>,
    /// A portal's sign-in waiting for a stronger authentication (step-up):
    /// its resume URL and the portal's name.
    continue_to: Option<(String, String)>,
}

fn time(t: i64) -> String {
    // Shown in China Standard Time, the city's time.
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| chrono::Utc.fix());
    match chrono::DateTime::from_timestamp(t, 0) {
        Some(d) => d.with_timezone(&offset).format("%Y-%m-%d %H:%M").to_string(),
        None => String::new(),
    }
}

async fn render_page(state: &SharedState, c: &Ctx, done: Option<&str>, v: View) -> PageResult {
    let o = selfsvc::overview(state, &c.realm.name, &c.sess.user_id, &c.sess.id).await.map_err(|e| c.err(e))?;
    let unknown = crate::web::t(c.loc, "account.sessions.unknown");
    let sessions: Vec<minijinja::Value> = o
        .sessions
        .iter()
        .map(|s| {
            context! {
                id => s.id,
                device => match (s.browser, s.os) {
                    (None, None) => crate::web::t(c.loc, "account.sessions.unknown_device").to_string(),
                    (b, o) => format!("{} · {}", b.unwrap_or(unknown), o.unwrap_or(unknown)),
                },
                ip => s.ip.clone().unwrap_or_else(|| "-".into()),
                started => time(s.started),
                last_seen => time(s.last_seen),
                current => s.current,
            }
        })
        .collect();
    let portals: Vec<minijinja::Value> = o
        .portals
        .iter()
        .map(|p| {
            context! {
                id => p.grant_id,
                name => client_name(&c.realm, &p.client_id, c.loc),
                scopes => p.scopes,
                since => time(p.since),
            }
        })
        .collect();
    let errors: std::collections::BTreeMap<&str, String> = v.errors.into_iter().collect();
    let values: std::collections::BTreeMap<&str, String> = v.values.into_iter().collect();
    let done = done.filter(|d| DONE.contains(d));
    let actions: std::collections::BTreeMap<&str, String> =
        ACTIONS.iter().map(|(a, path)| (*a, c.url(path, &[]))).collect();
    let csrf: std::collections::BTreeMap<&str, String> = ACTIONS.iter().map(|(a, _)| (*a, c.csrf(state, a))).collect();
    let switch = {
        let other = if c.loc == Locale::ZhCn { "en" } else { "zh-CN" };
        format!("{}?ui_locales={other}", c.base())
    };
    let has_errors = !errors.is_empty();
    let me = super::factors::Me {
        realm: c.realm.clone(),
        token_hash: c.token_hash.clone(),
        session: c.sess.clone(),
        loc: c.loc,
    };
    let factors = super::factors::factors_context(state, &me).await?;
    let enterprises = super::realname::enterprises_context(state, &me).await?;
    let ctx = context! {
        factors => factors,
        enterprises => enterprises,
        level => c.sess.acr.clone(),
        verify_url => format!("/realms/{}/verify", c.realm.name),
        guardian_url => (c.realm.settings.realname.minors == "guardian")
            .then(|| format!("/realms/{}/account/guardian", c.realm.name)),
        continue_url => v.continue_to.as_ref().map(|c| c.0.clone()),
        continue_client => v.continue_to.as_ref().map(|c| c.1.clone()),
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        switch_url => switch,
        name => values.get("name").cloned().unwrap_or(o.name),
        phone => o.phone,
        email => o.email,
        username => o.username,
        has_password => o.has_password,
        sessions => sessions,
        portals => portals,
        done => done,
        errors => errors,
        values => values,
        retry_after => v.retry_after,
        actions => actions,
        csrf => csrf,
        cancel_url => c.url("/cancel", &[]),
    };
    let status = if has_errors { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(no_store((status, Html(super::render("account.html", c.loc, ctx))).into_response()))
}

/// Forms of the page: (action, path under the account centre).
const ACTIONS: &[(&str, &str)] = &[
    ("profile", "/profile"),
    ("phone", "/phone"),
    ("email", "/email"),
    ("password", "/password"),
    ("end_session", "/sessions/end"),
    ("end_others", "/sessions/end-others"),
    ("withdraw", "/portals/withdraw"),
    ("export", "/export"),
    ("logout", "/logout"),
];

/// Flash messages after a change (`?done=…`).
const DONE: &[&str] = &[
    "verified",
    "guardian_confirmed",
    "enterprise_claimed",
    "enterprise_code",
    "enterprise_not_verified",
    "enterprise_no_match",
    "enterprise_not_representative",
    "agent_appointed",
    "agent_unknown",
    "agent_revoked",
    "profile",
    "phone",
    "email",
    "password",
    "session",
    "sessions",
    "withdrawn",
    "passkey",
    "totp",
    "renamed",
    "removed",
];

async fn account_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> PageResult {
    let c = match signed_in(&state, &name, &headers, q.as_deref(), ip, false).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    let params = query_pairs(q.as_deref());
    let done = params.iter().find(|(k, _)| k == "done").map(|(_, v)| v.as_str());
    // Sent here by a portal's step-up to add a second factor: the page
    // offers the way back to it for as long as that sign-in lives.
    let https = state.settings.https();
    let cookie = format!("{}civid-continue-{}", if https { "__Host-" } else { "" }, c.realm.name);
    let asked = params.iter().find(|(k, _)| k == "continue").map(|(_, v)| v.clone());
    let tx_id = asked.clone().or_else(|| cookies::get(&headers, &cookie));
    let mut continue_to = None;
    if let Some(t) = tx_id
        .as_deref()
        .filter(|t| t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        && let Some(binding) = cookies::get(&headers, cookies::binding_name(https))
        && let Ok(Some(tx)) = flow::load_tx(&state, &c.realm, t, &binding).await
    {
        let to = format!("/realms/{}/login?tx={t}", c.realm.name);
        continue_to = Some((to, client_name(&c.realm, &tx.request.client_id, c.loc)));
    }
    let remember = asked.filter(|_| continue_to.is_some());
    let resp = render_page(&state, &c, done, View { continue_to, ..View::default() }).await?;
    Ok(match remember {
        Some(t) => with_cookie(resp, &cookies::set(&cookie, &t, https, Some(1800))),
        None => resp,
    })
}

async fn profile_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) =
        form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "profile", false).await);
    let display = form_get(&form, "name").unwrap_or_default().trim().to_string();
    if let Some(problem) = selfsvc::name_problem(&display) {
        let v = View { errors: vec![("name", problem.into())], values: vec![("name", display)], ..View::default() };
        return render_page(&state, &c, None, v).await;
    }
    selfsvc::set_name(&state, &c.realm.name, &c.sess.user_id, &display, c.ip()).await.map_err(|e| c.err(e))?;
    Ok(c.done("profile"))
}

fn started_error(s: Started) -> Option<(&'static str, Option<u64>)> {
    match s {
        Started::Sent => None,
        Started::TooSoon(n) => Some(("register.error.wait", Some(n))),
        Started::DailyLimit => Some(("register.error.daily", None)),
        Started::SendFailed => Some(("register.error.send", None)),
    }
}

async fn change_start(
    kind: &'static str,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) = form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, kind, true).await);
    let typed = form_get(&form, kind).unwrap_or_default().trim().to_string();
    let parsed = if kind == "phone" { Identifier::phone(&typed) } else { Identifier::email(&typed) };
    let Some(new) = parsed.filter(|_| typed.len() <= 254) else {
        let v = View {
            errors: vec![(kind, format!("account.{kind}.error.invalid"))],
            values: vec![(kind, typed)],
            ..View::default()
        };
        return render_page(&state, &c, None, v).await;
    };
    if selfsvc::is_own(&state, &c.realm.name, &c.sess.user_id, &new).await.map_err(|e| c.err(e))? {
        let v = View {
            errors: vec![(kind, format!("account.{kind}.error.same"))],
            values: vec![(kind, typed)],
            ..View::default()
        };
        return render_page(&state, &c, None, v).await;
    }
    let started = selfsvc::start_change(&state, c.who(), &new, c.loc).await.map_err(|e| c.err(e))?;
    if let Some((error, retry_after)) = started_error(started) {
        let v =
            View { errors: vec![(kind, error.into())], values: vec![(kind, typed)], retry_after, ..View::default() };
        return render_page(&state, &c, None, v).await;
    }
    Ok(no_store(Redirect::to(&c.url("/verify", &[("kind", kind)])).into_response()))
}

fn verify_view(state: &SharedState, c: &Ctx, kind: &str, to: &Identifier, error: Option<&str>) -> Response {
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        kind => kind,
        to => crate::admin::mask(kind, to.value()),
        action => c.url("/verify", &[]),
        csrf => c.csrf(state, &format!("verify-{kind}")),
        back_url => c.url("", &[]),
        error => error,
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    no_store((status, Html(super::render("account_verify.html", c.loc, ctx))).into_response())
}

fn kind_of(v: Option<&str>) -> Option<&'static str> {
    match v {
        Some("phone") => Some("phone"),
        Some("email") => Some("email"),
        _ => None,
    }
}

async fn verify_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> PageResult {
    let c = match signed_in(&state, &name, &headers, q.as_deref(), ip, false).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    let params = query_pairs(q.as_deref());
    let kind = kind_of(params.iter().find(|(k, _)| k == "kind").map(|(_, v)| v.as_str()));
    let pending = match kind {
        Some(k) => selfsvc::pending_change(&state, &c.realm.name, &c.sess.id, k).await.map_err(|e| c.err(e))?,
        None => None,
    };
    match (kind, pending) {
        (Some(k), Some(to)) => Ok(verify_view(&state, &c, k, &to, None)),
        _ => Ok(no_store(Redirect::to(&c.url("", &[])).into_response())),
    }
}

async fn verify_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let Some(kind) = kind_of(form_pairs(&body).iter().find(|(k, _)| k == "kind").map(|(_, v)| v.as_str())) else {
        return Err(PageError(
            Error::page(400, "error.invalid_request"),
            locale(&headers, ui_of(q.as_deref()).as_deref()),
        ));
    };
    let action = format!("verify-{kind}");
    let (c, form) = form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, &action, true).await);
    let code = form_get(&form, "code").unwrap_or_default();
    let r = selfsvc::complete_change(&state, c.who(), kind, code, c.loc).await.map_err(|e| c.err(e))?;
    match r {
        Changed::Done => Ok(c.done(kind)),
        Changed::NothingPending => Ok(no_store(Redirect::to(&c.url("", &[])).into_response())),
        Changed::BadCode => {
            match selfsvc::pending_change(&state, &c.realm.name, &c.sess.id, kind).await.map_err(|e| c.err(e))? {
                Some(to) => Ok(verify_view(&state, &c, kind, &to, Some("register.error.code"))),
                None => Ok(no_store(Redirect::to(&c.url("", &[])).into_response())),
            }
        }
    }
}

/// How a refused new password is explained, tied to the new-password field.
fn password_error(p: &Completed) -> (&'static str, &'static str) {
    match p {
        Completed::Mismatch => ("password2", "register.error.mismatch"),
        Completed::BadPassword(key) => ("password", key),
        _ => ("password", "register.error.password"),
    }
}

async fn password_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) =
        form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "password", true).await);
    let current = form_get(&form, "current").unwrap_or_default();
    let new = form_get(&form, "password").unwrap_or_default();
    let repeated = form_get(&form, "password2").unwrap_or_default();
    let r = selfsvc::change_password(&state, c.who(), current, new, repeated).await.map_err(|e| c.err(e))?;
    let error = match r {
        PasswordChange::Done => return Ok(c.done("password")),
        PasswordChange::WrongCurrent => ("current", "account.password.error.current", None),
        PasswordChange::Locked(wait) => ("current", "account.password.error.locked", Some(wait)),
        PasswordChange::Refused(p) => {
            let (field, key) = password_error(&p);
            // The message's `{n}`: the policy's bound that was not met.
            let policy = &c.realm.settings.accounts.password;
            let n = match key {
                "password.error.short" => Some(policy.min_length as u64),
                "password.error.long" => Some(policy.max_length as u64),
                _ => None,
            };
            (field, key, n)
        }
    };
    let v = View { errors: vec![(error.0, error.1.into())], retry_after: error.2, ..View::default() };
    render_page(&state, &c, None, v).await
}

async fn end_session(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) =
        form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "end_session", false).await);
    let sid = form_get(&form, "sid").unwrap_or_default();
    if sid == c.sess.id {
        // This device: that is signing out.
        return Ok(no_store(Redirect::to(&c.url("", &[])).into_response()));
    }
    selfsvc::end_session(&state, &c.realm.name, &c.sess.user_id, sid, "ended_by_user", c.ip())
        .await
        .map_err(|e| c.err(e))?;
    Ok(c.done("session"))
}

async fn end_others(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, _) =
        form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "end_others", false).await);
    selfsvc::end_other_sessions(&state, &c.realm.name, &c.sess.user_id, &c.sess.id, c.ip())
        .await
        .map_err(|e| c.err(e))?;
    Ok(c.done("sessions"))
}

async fn withdraw(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) =
        form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "withdraw", false).await);
    let grant = form_get(&form, "grant").unwrap_or_default();
    selfsvc::withdraw(&state, &c.realm.name, &c.sess.user_id, grant, c.ip()).await.map_err(|e| c.err(e))?;
    Ok(c.done("withdrawn"))
}

async fn export(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, _) = form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "export", false).await);
    let doc = selfsvc::export(&state, &c.realm.name, &c.sess.user_id, c.ip()).await.map_err(|e| c.err(e))?;
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| c.err(Error::internal(e.to_string())))?;
    let mut resp = no_store(body.into_response());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"civid-account.json\""));
    Ok(resp)
}

/// A page of the account centre for someone no longer signed in.
fn farewell(state: &SharedState, realm: &Realm, loc: Locale, ui: Option<&str>, title: &str, message: &str) -> Response {
    let https = state.settings.https();
    let mut back = format!("/realms/{}/account", realm.name);
    if let Some(ui) = ui {
        back.push_str(&format!(
            "?ui_locales={}",
            url::form_urlencoded::byte_serialize(ui.as_bytes()).collect::<String>()
        ));
    }
    let ctx = context! {
        realm_name => realm_name(realm, loc),
        realm_logo => super::login::realm_logo(realm),
        title => title,
        message => message,
        link_url => back,
        link_text => "account.signin_again",
    };
    let resp = no_store(Html(super::render("notice.html", loc, ctx)).into_response());
    with_cookie(resp, &cookies::set(&session::cookie_name(&realm.name, https), "", https, Some(0)))
}

async fn logout(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let ui = ui_of(q.as_deref());
    let loc = locale(&headers, ui.as_deref());
    let realm = super::realm(&state, &name).map_err(|e| PageError(e, loc))?;
    let https = state.settings.https();
    let current = match cookies::get(&headers, &session::cookie_name(&realm.name, https)) {
        Some(cookie) => session::current(&state, &realm, &cookie).await.map_err(|e| PageError(e, loc))?,
        None => None,
    };
    if let Some((token_hash, sess)) = current {
        let c = Ctx { realm: realm.clone(), loc, ui: ui.clone(), token_hash, sess, ip };
        if !c.csrf_ok(&state, "logout", &form_pairs(&body)) {
            return Err(c.err(Error::page(403, "error.csrf")));
        }
        let clients =
            session::participants(&state.db, &realm.name, &c.sess.id, &c.sess.clients).await.map_err(|e| c.err(e))?;
        selfsvc::end_session(&state, &realm.name, &c.sess.user_id, &c.sess.id, "logout", c.ip())
            .await
            .map_err(|e| c.err(e))?;
        // Portals that asked for front-channel logout get their pages
        // loaded before the signed-out page settles.
        let frames = super::logout::frames(&realm, &clients, &c.sess.id);
        if !frames.is_empty() {
            return Ok(super::logout::signed_out_page(&state, &realm, loc, &frames));
        }
    }
    Ok(farewell(&state, &realm, loc, ui.as_deref(), "account.signed_out.title", "account.signed_out.message"))
}

fn cancel_view(
    state: &SharedState,
    c: &Ctx,
    has_password: bool,
    error: Option<(&str, &str)>,
    retry_after: Option<u64>,
) -> Response {
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        action => c.url("/cancel", &[]),
        csrf => c.csrf(state, "cancel"),
        back_url => c.url("", &[]),
        has_password => has_password,
        retention_days => c.realm.settings.accounts.cancellation_retention_days,
        error_field => error.map(|e| e.0),
        error => error.map(|e| e.1),
        retry_after => retry_after,
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    no_store((status, Html(super::render("account_cancel.html", c.loc, ctx))).into_response())
}

async fn has_password(state: &SharedState, c: &Ctx) -> Result<bool, PageError> {
    Ok(crate::store::users::get(&state.db, &c.realm.name, &c.sess.user_id)
        .await
        .map_err(|e| c.err(e.into()))?
        .is_some_and(|u| u.password_hash.is_some()))
}

async fn cancel_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> PageResult {
    let c = match signed_in(&state, &name, &headers, q.as_deref(), ip, false).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    if !c.recent() {
        return to_sign_in(&state, &c.realm, &headers, c.ui.clone(), true).await.map_err(|e| c.err(e));
    }
    let pw = has_password(&state, &c).await?;
    Ok(cancel_view(&state, &c, pw, None, None))
}

async fn cancel_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (c, form) = form_or_return!(submitted(&state, &name, &headers, q.as_deref(), ip, &body, "cancel", true).await);
    let password = form_get(&form, "password").unwrap_or_default();
    let confirmed = form_get(&form, "confirm") == Some("yes");
    let r = selfsvc::cancel(&state, &c.realm.name, &c.sess.user_id, password, confirmed, c.ip())
        .await
        .map_err(|e| c.err(e))?;
    let error = match r {
        Cancelled::Done => {
            audit::record(
                &state,
                audit::Event::new(&c.realm.name, "session.ended", "success")
                    .actor(&c.sess.user_id)
                    .ip(c.ip())
                    .detail(serde_json::json!({ "sid": c.sess.id, "reason": "account_cancelled" })),
            )
            .await;
            return Ok(farewell(
                &state,
                &c.realm,
                c.loc,
                c.ui.as_deref(),
                "account.cancelled.title",
                "account.cancelled.message",
            ));
        }
        Cancelled::WrongPassword => ("password", "account.password.error.current", None),
        Cancelled::Locked(wait) => ("password", "account.password.error.locked", Some(wait)),
        Cancelled::NotConfirmed => ("confirm", "account.cancel.error.confirm", None),
    };
    let pw = has_password(&state, &c).await?;
    Ok(cancel_view(&state, &c, pw, Some((error.0, error.1)), error.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> minijinja::Value {
        let actions: std::collections::BTreeMap<&str, String> =
            ACTIONS.iter().map(|(a, p)| (*a, format!("/realms/t/account{p}"))).collect();
        let csrf: std::collections::BTreeMap<&str, String> = ACTIONS.iter().map(|(a, _)| (*a, "tok".into())).collect();
        context! {
            realm_name => "示例市政务服务",
            switch_url => "/realms/t/account?ui_locales=en",
            name => "李明", phone => "+86138****8000", email => "li@example.cn", username => "liming",
            has_password => true,
            sessions => vec![
                context! { id => "s1", device => "Chrome · Android", ip => "127.0.0.1", started => "2026-11-26 20:00", last_seen => "2026-11-26 20:01", current => true },
                context! { id => "s2", device => "Safari · iOS", ip => "10.0.0.1", started => "2026-11-25 08:00", last_seen => "2026-11-25 09:00", current => false },
            ],
            portals => vec![context! { id => "g1", name => "门户甲", scopes => vec!["profile", "email"], since => "2026-11-01 10:00" }],
            done => "password",
            errors => context! { password => "register.error.password", phone => "register.error.wait" },
            values => context! { phone => "138" },
            retry_after => 42,
            actions => actions, csrf => csrf, cancel_url => "/realms/t/account/cancel",
            level => "L2", verify_url => "/realms/t/verify", guardian_url => "/realms/t/account/guardian",
            enterprises => context! {
                items => vec![context! { name => "示例科技有限公司", uscc => "91350100M000100Y43", role => "legal_representative",
                    representative => true, appoint_action => "/realms/t/account/enterprises/x/agents",
                    agents => vec![context! { who => "+86138****8000", role => "经办人", until => "2027-11-26",
                        revoke_action => "/realms/t/account/enterprises/x/agents/d1/revoke" }] }],
                csrf => "tok", verified => true, claim_action => "/realms/t/account/enterprises/claim",
            },
            factors => context! {
                items => vec![
                    context! { id => "c1", kind => "passkey", name => "我的手机", created => "2026-11-26", last_used => "2026-11-26",
                        rename_action => "/realms/t/account/credentials/c1/rename", delete_action => "/realms/t/account/credentials/c1/delete" },
                    context! { id => "c2", kind => "totp", name => "验证器", created => "2026-11-20",
                        rename_action => "/realms/t/account/credentials/c2/rename", delete_action => "/realms/t/account/credentials/c2/delete" },
                ],
                csrf => "tok", passkeys_allowed => true, totp_allowed => true,
                passkey_options => "/realms/t/account/passkeys/options", passkey_finish => "/realms/t/account/passkeys",
                totp_url => "/realms/t/account/totp",
            },
        }
    }

    #[test]
    fn account_pages_render_in_both_locales_without_missing_texts() {
        for loc in [Locale::ZhCn, Locale::En] {
            let fallback = crate::web::t(loc, "no.such.key");
            let html = super::super::render("account.html", loc, sample());
            assert!(html.contains("<form id=\"signout\""), "{html}");
            assert!(html.contains("id=\"factors\""), "factors slot");
            assert!(html.contains("aria-describedby=\"password-error"), "error tied to its field");
            assert!(!html.contains(fallback), "missing text in {loc:?}: {html}");
            assert!(!html.contains('{') && !html.contains('}'), "unfilled placeholder: {html}");
            // The one script is the WebAuthn file, never inline code.
            assert!(html.contains("<script src=\"/static/webauthn.js\" defer></script>"));
            assert_eq!(html.to_lowercase().matches("<script").count(), 1);
            assert!(!html.contains(" style="));
            assert!(html.contains("id=\"passkey-add\"") && html.contains("class=\"passkey\""));
            assert!(crate::web::lookup(loc, "account.sessions.unknown_device").is_some());
            for done in DONE {
                assert!(crate::web::lookup(loc, &format!("account.done.{done}")).is_some(), "{done}");
            }
            for kind in ["phone", "email"] {
                for what in ["subject", "code", "taken", "changed"] {
                    assert!(crate::web::lookup(loc, &format!("account.{kind}.msg.{what}")).is_some());
                }
                assert!(crate::web::lookup(loc, &format!("account.{kind}.error.invalid")).is_some());
                assert!(crate::web::lookup(loc, &format!("account.{kind}.error.same")).is_some());
            }
            let verify = super::super::render(
                "account_verify.html",
                loc,
                context! { realm_name => "示例市政务服务", kind => "phone", to => "+86138****8000", action => "/a", csrf => "t", back_url => "/b", error => "register.error.code" },
            );
            assert!(!verify.contains(fallback) && verify.contains("aria-describedby=\"code-error\""), "{verify}");
            let cancel = super::super::render(
                "account_cancel.html",
                loc,
                context! { realm_name => "示例市政务服务", action => "/a", csrf => "t", back_url => "/b", has_password => true, retention_days => 30, error_field => "confirm", error => "account.cancel.error.confirm" },
            );
            assert!(!cancel.contains(fallback) && cancel.contains("aria-describedby=\"confirm-error\""), "{cancel}");
            assert!(!cancel.contains('{'), "{cancel}");
        }
    }
}
