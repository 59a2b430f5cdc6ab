//! Passkeys and authenticator apps: usernameless sign-in (with conditional
//! UI), the second step of a sign-in or a step-up, and adding, naming and
//! removing them in the account centre. The WebAuthn ceremonies answer JSON
//! to `static/webauthn.js`; everything else is a plain form.
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use minijinja::context;
use serde_json::json;

use super::login::{
    PageResult, TxCtx, client_name, current_session, form_get, load_tx, no_store, open_session, realm_name, respond,
    signed_in_with, submitted, switch_url, with_session_cookie,
};
use super::{ClientIp, PageError, form_pairs, query_pairs};
use crate::audit;
use crate::authn::passkey::{self, Registered, SignedIn};
use crate::authn::session::{self, SsoSession};
use crate::authn::totp::{self, Confirmed, Verified};
use crate::error::Error;
use crate::oidc::flow;
use crate::realm::cache::Realm;
use crate::state::SharedState;
use crate::store::credentials;
use crate::web::Locale;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/static/webauthn.js", get(script))
        .route("/realms/{realm}/passkey/options", post(signin_options))
        .route("/realms/{realm}/passkey/signin", post(signin_finish))
        .route("/realms/{realm}/login/second", get(second_page).post(second_submit))
        .route("/realms/{realm}/login/passkey", get(passkey_setup_page))
        .route("/realms/{realm}/login/continue", get(continue_flow))
        .route("/realms/{realm}/account/passkeys/options", post(add_passkey_options))
        .route("/realms/{realm}/account/passkeys", post(add_passkey))
        .route("/realms/{realm}/account/totp", get(totp_page).post(totp_confirm))
        .route("/realms/{realm}/account/credentials/{id}/rename", post(rename))
        .route("/realms/{realm}/account/credentials/{id}/delete", post(remove))
}

async fn script() -> Response {
    super::static_script(crate::web::WEBAUTHN_JS)
}

/// A JSON answer to the page's script; never cached.
fn json_reply(status: StatusCode, v: serde_json::Value) -> Response {
    no_store((status, Json(v)).into_response())
}

fn json_error(loc: Locale, key: &str) -> Response {
    json_reply(StatusCode::BAD_REQUEST, json!({ "error": crate::web::text(loc, key, &[]) }))
}

fn to_json_page(e: PageError) -> Response {
    let PageError(err, loc) = e;
    let (status, key) = match &err {
        Error::Page { status, key, .. } => (StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST), *key),
        Error::Db(_) | Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "error.unavailable.message"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "error.server.message"),
    };
    if status.is_server_error() {
        tracing::error!("passkey: {err}");
    }
    let key = if key.ends_with(".message") { key.to_string() } else { format!("{key}.message") };
    json_reply(status, json!({ "error": crate::web::text(loc, &key, &[]) }))
}

// ---------------------------------------------------------------------------
// Sign-in: usernameless passkey, and the second step.

/// Options for `navigator.credentials.get`, bound to the transaction.
async fn signin_options(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let c = match submitted(&state, &name, &headers, &form, "passkey").await {
        Ok(c) => c,
        Err(e) => return to_json_page(e),
    };
    if !c.realm.settings.accounts.allows("passkey") {
        return json_error(c.loc, "passkey.error.disabled");
    }
    match passkey::start_signin(&state, &c.realm, &c.tx_id).await {
        Ok(rcr) => json_reply(StatusCode::OK, json!(rcr)),
        Err(e) => to_json_page(PageError(e, c.loc)),
    }
}

/// The browser's answer: signs in (or completes the second step, or steps
/// up), then tells the script where to go.
async fn signin_finish(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let c = match submitted(&state, &name, &headers, &form, "passkey").await {
        Ok(c) => c,
        Err(e) => return to_json_page(e),
    };
    let loc = c.loc;
    let credential = form_get(&form, "credential").unwrap_or_default();
    let outcome = match passkey::finish_signin(&state, &c.realm, &c.tx_id, credential).await {
        Ok(o) => o,
        Err(e) => return to_json_page(PageError(e, loc)),
    };
    let client_id = c.tx.request.client_id.clone();
    let (user_id, amr) = match outcome {
        SignedIn::Person { user_id, amr, .. } => (user_id, amr),
        SignedIn::Expired => return json_error(loc, "passkey.error.expired"),
        SignedIn::Rejected(reason) => {
            crate::metrics::signin("passkey", "failure", &client_id);
            audit::record(
                &state,
                audit::Event::new(&c.realm.name, "signin.passkey", "failure")
                    .client(&client_id)
                    .ip(ip.as_deref())
                    .detail(json!({ "reason": reason })),
            )
            .await;
            return json_error(loc, "passkey.error.rejected");
        }
    };
    // In a second step the passkey must be the pending person's own.
    if let Some(p) = &c.tx.pending
        && p.user_id != user_id
    {
        audit::record(
            &state,
            audit::Event::new(&c.realm.name, "signin.passkey", "failure")
                .actor(&p.user_id)
                .client(&client_id)
                .ip(ip.as_deref())
                .detail(json!({ "reason": "passkey of another account" })),
        )
        .await;
        return json_error(loc, "passkey.error.other_account");
    }
    crate::metrics::signin("passkey", "success", &client_id);
    let resp = match c.tx.pending.is_some() {
        true => complete_second(&state, c, &headers, amr, ip.as_deref(), "passkey").await,
        false => signed_in_with(&state, c, &user_id, ip.as_deref(), "signin.passkey", amr, None).await,
    };
    // The script follows the redirect itself; the cookie rides along.
    match resp {
        Ok(r) => {
            let to = r.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("/").to_string();
            let mut out = json_reply(StatusCode::OK, json!({ "redirect": to }));
            for c in r.headers().get_all(header::SET_COOKIE) {
                out.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            out
        }
        Err(e) => to_json_page(e),
    }
}

fn second_view(
    state: &SharedState,
    c: &TxCtx,
    held: &[credentials::CredentialRecord],
    error: Option<String>,
) -> Response {
    let has = |k: &str| held.iter().any(|h| h.kind == k);
    let path = format!("/realms/{}/login/second", c.realm.name);
    let stepping_up = c.tx.pending.as_ref().is_some_and(|p| p.session_id.is_some());
    let need = flow::required_authn(&c.realm, &c.tx.request);
    // A portal that demands a passkey is not stepped up to by an app's code
    // (a new sign-in still asks for the person's own app first).
    let totp_helps = !(stepping_up && need == crate::realm::model::RequireAuthn::Passkey);
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        required => !need.met_by(&[]),
        stepping_up => stepping_up,
        has_totp => has("totp") && totp_helps,
        has_passkey => has("passkey") && c.realm.settings.accounts.allows("passkey"),
        action => path.clone(),
        csrf => state.secrets.csrf_token(&c.binding, &format!("second:{}", c.tx_id)),
        passkey_csrf => state.secrets.csrf_token(&c.binding, &format!("passkey:{}", c.tx_id)),
        passkey_options => format!("/realms/{}/passkey/options", c.realm.name),
        passkey_finish => format!("/realms/{}/passkey/signin", c.realm.name),
        tx => c.tx_id.clone(),
        error => error,
        account_url => format!("/realms/{}/account?continue={}", c.realm.name, c.tx_id),
        switch_url => switch_url(&path, &c.tx_id, c.loc),
    };
    no_store(Html(super::render("second.html", c.loc, ctx)).into_response())
}

async fn pending_of(state: &SharedState, c: &TxCtx) -> Result<Vec<credentials::CredentialRecord>, PageError> {
    let Some(p) = &c.tx.pending else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    credentials::of_user(&state.db, &c.realm.name, &p.user_id, None).await.map_err(|e| PageError(e.into(), c.loc))
}

async fn second_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    let held = pending_of(&state, &c).await?;
    Ok(second_view(&state, &c, &held, None))
}

async fn second_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "second").await?;
    let held = pending_of(&state, &c).await?;
    let Some(p) = c.tx.pending.clone() else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    let code = form_get(&form, "code").unwrap_or_default();
    let verified = totp::verify(&state, &c.realm, &p.user_id, code).await.map_err(|e| PageError(e, c.loc))?;
    let fail = |reason: &'static str, extra: serde_json::Value| {
        audit::Event::new(&c.realm.name, "signin.totp", "failure")
            .actor(&p.user_id)
            .client(&c.tx.request.client_id)
            .ip(ip.as_deref())
            .detail(json!({ "reason": reason, "detail": extra }))
    };
    match verified {
        Verified::Ok { .. } => {
            complete_second(&state, c, &headers, vec!["otp".into(), "mfa".into()], ip.as_deref(), "totp").await
        }
        Verified::WrongCode { left } => {
            audit::record(&state, fail("wrong code", json!({ "left": left }))).await;
            let msg = crate::web::text(c.loc, "second.error.code", &[("n", &left.to_string())]);
            Ok(second_view(&state, &c, &held, Some(msg)))
        }
        Verified::Locked { retry_after } => {
            audit::record(&state, fail("locked", json!({ "retry_after": retry_after }))).await;
            let msg = crate::web::text(c.loc, "second.error.locked", &[("n", &retry_after.div_ceil(60).to_string())]);
            let mut r = second_view(&state, &c, &held, Some(msg));
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(r)
        }
    }
}

fn static_kind(k: &str) -> &'static str {
    match k {
        "signin.password" => "signin.password",
        "signin.sms" => "signin.sms",
        "signin.recovery" => "signin.recovery",
        "signin.registration" => "signin.registration",
        _ => "signin.stepup",
    }
}

/// The second factor is proven: starts the session, or steps the existing
/// one up, and goes on with the portal's request.
async fn complete_second(
    state: &SharedState,
    mut c: TxCtx,
    headers: &HeaderMap,
    added: Vec<String>,
    ip: Option<&str>,
    method: &str,
) -> PageResult {
    let Some(p) = c.tx.pending.take() else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    let Some(sid) = p.session_id.clone() else {
        let mut amr = p.amr.clone();
        amr.extend(added.into_iter().filter(|a| !p.amr.contains(a)));
        if !amr.iter().any(|a| a == "mfa") {
            amr.push("mfa".into());
        }
        return signed_in_with(state, c, &p.user_id, ip, static_kind(&p.event_kind), amr, None).await;
    };
    // A step-up: the same browser session, now stronger.
    let Some((token_hash, mut s)) = current_session(state, &c.realm, headers).await.map_err(|e| PageError(e, c.loc))?
    else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    if s.id != sid || s.user_id != p.user_id {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    }
    session::step_up(state, &c.realm, &token_hash, &mut s, &added).await.map_err(|e| PageError(e, c.loc))?;
    audit::record(
        state,
        audit::Event::new(&c.realm.name, "signin.stepup", "success")
            .actor(&s.user_id)
            .client(&c.tx.request.client_id)
            .ip(ip)
            .detail(json!({ "sid": s.id, "method": method, "amr": s.amr })),
    )
    .await;
    c.tx.fresh_session = Some(s.id.clone());
    let next = flow::proceed(state, &c.realm, c.tx.clone(), Some(&c.tx_id), Some((token_hash, s)))
        .await
        .map_err(|e| PageError(e, c.loc))?;
    Ok(respond(&c.realm, next))
}

// ---------------------------------------------------------------------------
// The account centre's part: adding, naming and removing.

/// The signed-in person of the account centre, or where to send them.
pub(super) struct Me {
    pub realm: std::sync::Arc<Realm>,
    pub token_hash: String,
    pub session: SsoSession,
    pub loc: Locale,
}

impl Me {
    /// CSRF token of the account centre's forms: bound to the session.
    pub fn csrf(&self, state: &SharedState, purpose: &str) -> String {
        state.secrets.csrf_token(&self.token_hash, &format!("account:{purpose}"))
    }

    pub fn csrf_ok(&self, state: &SharedState, purpose: &str, form: &[(String, String)]) -> bool {
        state.secrets.csrf_ok(
            &self.token_hash,
            &format!("account:{purpose}"),
            form_get(form, "csrf").unwrap_or_default(),
        )
    }
}

pub(super) async fn me(state: &SharedState, name: &str, headers: &HeaderMap) -> Result<Option<Me>, PageError> {
    let loc = super::locale(headers, None);
    let realm = super::realm(state, name).map_err(|e| PageError(e, loc))?;
    Ok(current_session(state, &realm, headers).await.map_err(|e| PageError(e, loc))?.map(|(token_hash, session)| Me {
        realm,
        token_hash,
        session,
        loc,
    }))
}

fn to_account(realm: &Realm, done: &str) -> Response {
    no_store(Redirect::to(&format!("/realms/{}/account?done={done}", realm.name)).into_response())
}

fn forbidden(loc: Locale) -> PageError {
    PageError(Error::page(403, "error.csrf"), loc)
}

/// Options for `navigator.credentials.create`.
async fn add_passkey_options(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let m = match me(&state, &name, &headers).await {
        Ok(Some(m)) => m,
        Ok(None) => return json_error(super::locale(&headers, None), "error.expired.message"),
        Err(e) => return to_json_page(e),
    };
    if !m.csrf_ok(&state, "factors", &form) {
        return to_json_page(forbidden(m.loc));
    }
    if !m.realm.settings.accounts.allows("passkey") {
        return json_error(m.loc, "passkey.error.disabled");
    }
    let label = account_label(&state, &m).await;
    match passkey::start_registration(&state, &m.realm, &m.session.user_id, &label).await {
        Ok((options, ceremony)) => json_reply(StatusCode::OK, json!({ "ceremony": ceremony, "options": options })),
        Err(e) => to_json_page(PageError(e, m.loc)),
    }
}

/// How the person's account is named in their authenticator: their phone,
/// email or username, whichever they have.
async fn account_label(state: &SharedState, m: &Me) -> String {
    match crate::account::users::attributes(&state.db, &state.secrets, &m.realm.name, &m.session.user_id).await {
        Ok(Some(a)) => {
            a.phone.map(|p| p.0).or(a.email.map(|e| e.0)).or(a.username).unwrap_or_else(|| m.realm.name.clone())
        }
        _ => m.realm.name.clone(),
    }
}

async fn add_passkey(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let m = match me(&state, &name, &headers).await {
        Ok(Some(m)) => m,
        Ok(None) => return json_error(super::locale(&headers, None), "error.expired.message"),
        Err(e) => return to_json_page(e),
    };
    if !m.csrf_ok(&state, "factors", &form) {
        return to_json_page(forbidden(m.loc));
    }
    let get = |k| form_get(&form, k).unwrap_or_default();
    let done = passkey::finish_registration(
        &state,
        &m.realm,
        &m.session.user_id,
        get("ceremony"),
        get("name"),
        get("credential"),
    )
    .await;
    let ev = |outcome| {
        audit::Event::new(&m.realm.name, "credential.added", outcome).actor(&m.session.user_id).ip(ip.as_deref())
    };
    match done {
        Ok(Registered::Added { id, discoverable }) => {
            audit::record(
                &state,
                ev("success").detail(json!({ "kind": "passkey", "id": id, "discoverable": discoverable })),
            )
            .await;
            // Added during a sign-in (registration without a password): on
            // to the portal; otherwise back to the account centre.
            let next = get("next");
            let to = if !next.is_empty()
                && next.len() <= 64
                && next.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                format!("/realms/{}/login/continue?tx={next}", m.realm.name)
            } else {
                format!("/realms/{}/account?done=passkey", m.realm.name)
            };
            json_reply(StatusCode::OK, json!({ "redirect": to }))
        }
        Ok(Registered::Expired) => json_error(m.loc, "passkey.error.expired"),
        Ok(Registered::Rejected(why)) => {
            audit::record(&state, ev("failure").detail(json!({ "kind": "passkey", "reason": why }))).await;
            json_error(m.loc, "passkey.error.rejected")
        }
        Err(e) => to_json_page(PageError(e, m.loc)),
    }
}

fn totp_view(
    state: &SharedState,
    m: &Me,
    enrolment: Option<&totp::Enrolment>,
    id: &str,
    error: Option<&str>,
) -> Response {
    let ctx = context! {
        realm_name => realm_name(&m.realm, m.loc),
        realm_logo => super::login::realm_logo(&m.realm),
        action => format!("/realms/{}/account/totp", m.realm.name),
        account_url => format!("/realms/{}/account", m.realm.name),
        csrf => m.csrf(state, "factors"),
        id => id,
        secret => enrolment.map(|e| e.secret.clone()),
        uri => enrolment.map(|e| e.uri.clone()),
        qr => enrolment.map(|e| minijinja::Value::from_safe_string(e.qr_svg.clone())),
        error => error,
    };
    no_store(Html(super::render("totp.html", m.loc, ctx)).into_response())
}

pub(super) async fn signed_in_me(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
) -> Result<Result<Me, Response>, PageError> {
    Ok(match me(state, name, headers).await? {
        Some(m) => Ok(m),
        None => Err(no_store(Redirect::to(&format!("/realms/{name}/account")).into_response())),
    })
}

/// [`signed_in_me`] for a form post: the form's CSRF token for `action`
/// must be this session's, else 403.
pub(super) async fn signed_in_form(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    action: &str,
) -> Result<Result<Me, Response>, PageError> {
    let m = match signed_in_me(state, name, headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(Err(r)),
    };
    if !m.csrf_ok(state, action, form) {
        return Err(forbidden(m.loc));
    }
    Ok(Ok(m))
}

async fn totp_page(State(state): State<SharedState>, Path(name): Path<String>, headers: HeaderMap) -> PageResult {
    let m = match signed_in_me(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    if !m.realm.settings.accounts.totp {
        return Err(PageError(Error::page(404, "error.not_found"), m.loc));
    }
    let label = account_label(&state, &m).await;
    let e = totp::start(&state, &m.realm, &m.session.user_id, &label).await.map_err(|e| PageError(e, m.loc))?;
    Ok(totp_view(&state, &m, Some(&e), &e.id, None))
}

async fn totp_confirm(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match signed_in_form(&state, &name, &headers, &form, "factors").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let get = |k| form_get(&form, k).unwrap_or_default();
    let id = get("id");
    let done = totp::confirm(&state, &m.realm, &m.session.user_id, id, get("code"), get("name"))
        .await
        .map_err(|e| PageError(e, m.loc))?;
    match done {
        Confirmed::Added { id } => {
            audit::record(
                &state,
                audit::Event::new(&m.realm.name, "credential.added", "success")
                    .actor(&m.session.user_id)
                    .ip(ip.as_deref())
                    .detail(json!({ "kind": "totp", "id": id })),
            )
            .await;
            Ok(to_account(&m.realm, "totp"))
        }
        Confirmed::WrongCode => Ok(totp_view(&state, &m, None, id, Some("totp.error.code"))),
        Confirmed::Expired => Ok(totp_view(&state, &m, None, "", Some("totp.error.expired"))),
    }
}

async fn rename(
    State(state): State<SharedState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match signed_in_form(&state, &name, &headers, &form, "factors").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let new: String = form_get(&form, "name").unwrap_or_default().trim().chars().take(passkey::NAME_MAX).collect();
    if !new.is_empty() {
        credentials::rename(&state.db, &m.realm.name, &m.session.user_id, &id, &new)
            .await
            .map_err(|e| PageError(e.into(), m.loc))?;
    }
    Ok(to_account(&m.realm, "renamed"))
}

async fn remove(
    State(state): State<SharedState>,
    Path((name, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match signed_in_form(&state, &name, &headers, &form, "factors").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let removed = credentials::delete(&state.db, &m.realm.name, &m.session.user_id, &id)
        .await
        .map_err(|e| PageError(e.into(), m.loc))?;
    if removed {
        audit::record(
            &state,
            audit::Event::new(&m.realm.name, "credential.removed", "success")
                .actor(&m.session.user_id)
                .ip(ip.as_deref())
                .detail(json!({ "id": id })),
        )
        .await;
    }
    Ok(to_account(&m.realm, "removed"))
}

/// What the account centre shows of a person's passkeys and apps.
pub(super) async fn factors_context(state: &SharedState, m: &Me) -> Result<minijinja::Value, PageError> {
    let held = credentials::of_user(&state.db, &m.realm.name, &m.session.user_id, None)
        .await
        .map_err(|e| PageError(e.into(), m.loc))?;
    let day = |t: i64| chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d").to_string());
    let items: Vec<_> = held
        .iter()
        .map(|h| {
            context! {
                id => h.id.clone(),
                kind => h.kind.clone(),
                name => h.name.clone(),
                created => day(h.created_at),
                last_used => h.last_used_at.and_then(day),
                rename_action => format!("/realms/{}/account/credentials/{}/rename", m.realm.name, h.id),
                delete_action => format!("/realms/{}/account/credentials/{}/delete", m.realm.name, h.id),
            }
        })
        .collect();
    Ok(context! {
        items => items,
        csrf => m.csrf(state, "factors"),
        passkeys_allowed => m.realm.settings.accounts.allows("passkey"),
        totp_allowed => m.realm.settings.accounts.totp,
        passkey_options => format!("/realms/{}/account/passkeys/options", m.realm.name),
        passkey_finish => format!("/realms/{}/account/passkeys", m.realm.name),
        totp_url => format!("/realms/{}/account/totp", m.realm.name),
    })
}

// ---------------------------------------------------------------------------
// Registration without a password: signed in, then a passkey, then on.

/// A person who registered without a password is signed in (the session
/// is fresh in the transaction) and asked for a passkey before the portal.
pub(super) async fn signed_in_to_add_passkey(
    state: &SharedState,
    mut c: TxCtx,
    user_id: &str,
    ip: Option<&str>,
    event_kind: &'static str,
    amr: &str,
) -> PageResult {
    let (cookie, _, _) = open_session(state, &mut c, user_id, ip, event_kind, vec![amr.to_string()], None).await?;
    flow::save_tx(state, &c.realm, &c.tx, Some(&c.tx_id)).await.map_err(|e| PageError(e, c.loc))?;
    let to = format!("/realms/{}/login/passkey?tx={}", c.realm.name, c.tx_id);
    Ok(with_session_cookie(state, &c.realm, no_store(Redirect::to(&to).into_response()), &cookie))
}

/// The transaction and the session it just started, or an expired page.
async fn fresh_in_tx(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<(TxCtx, Me), PageError> {
    let params = query_pairs(q);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(state, name, headers, get("tx"), get("ui_locales")).await?;
    let m = me(state, name, headers).await?;
    match m {
        Some(m) if c.tx.fresh_session.as_deref() == Some(m.session.id.as_str()) => {
            let loc = c.loc;
            Ok((c, Me { loc, ..m }))
        }
        _ => Err(PageError(Error::page(400, "error.expired"), c.loc)),
    }
}

async fn passkey_setup_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let (c, m) = fresh_in_tx(&state, &name, &headers, q.as_deref()).await?;
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        csrf => m.csrf(&state, "factors"),
        tx => c.tx_id.clone(),
        passkey_options => format!("/realms/{}/account/passkeys/options", c.realm.name),
        passkey_finish => format!("/realms/{}/account/passkeys", c.realm.name),
        continue_url => format!("/realms/{}/login/continue?tx={}", c.realm.name, c.tx_id),
    };
    Ok(no_store(Html(super::render("passkey_setup.html", c.loc, ctx)).into_response()))
}

/// Goes on with the portal's request after the passkey step (added or
/// skipped): only for the session that this transaction started.
async fn continue_flow(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let (c, m) = fresh_in_tx(&state, &name, &headers, q.as_deref()).await?;
    let next = flow::proceed(&state, &c.realm, c.tx.clone(), Some(&c.tx_id), Some((m.token_hash, m.session)))
        .await
        .map_err(|e| PageError(e, c.loc))?;
    Ok(respond(&c.realm, next))
}
