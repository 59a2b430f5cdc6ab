//! Real-name verification pages: from the account centre, or in the middle
//! of a portal's sign-in that asked for `acr_values=L3`. A separate consent
//! to processing the ID number (PIPL Art. 29), then name and number.
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use minijinja::context;

use super::factors::{Me, signed_in_me};
use super::login::{
    PageResult, TxCtx, client_name, current_session, form_get, load_tx, no_store, realm_logo, realm_name, respond,
    signed_in_with, submitted,
};
use super::{ClientIp, PageError, form_pairs, query_pairs};
use crate::account::identifiers::Identifier;
use crate::account::registration::{self, Completed, Started};
use crate::audit;
use crate::error::Error;
use crate::identity::ResidentId;
use crate::oidc::flow::{self, LoginTx};
use crate::realname::{self, Outcome, Recovery, enterprise};
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/verify", get(page).post(submit))
        .route("/realms/{realm}/verify/cancel", post(cancel))
        .route("/realms/{realm}/verify/face", post(face_start))
        .route("/realms/{realm}/verify/face/return", get(face_return))
        .route("/realms/{realm}/recover/realname", get(recover_page).post(recover_submit))
        .route("/realms/{realm}/acting", get(acting_page).post(acting_submit))
        .route("/realms/{realm}/account/enterprises/claim", post(claim_submit))
        .route("/realms/{realm}/account/enterprises/{index}/agents", post(appoint_submit))
        .route("/realms/{realm}/account/enterprises/{index}/agents/{id}/revoke", post(revoke_submit))
        .route("/realms/{realm}/recover/realname/verify", get(recover_code_page).post(recover_code_submit))
        .route("/realms/{realm}/account/guardian", get(guardian_page).post(guardian_submit))
}

/// The portal's transaction this verification belongs to, if any: only
/// this browser's, and only for the signed-in person.
async fn tx_of(state: &SharedState, m: &Me, headers: &HeaderMap, tx: Option<&str>) -> Option<(String, LoginTx)> {
    let tx = tx.filter(|t| !t.is_empty())?;
    let binding = super::cookies::get(headers, super::cookies::binding_name(state.settings.https()))?;
    let loaded = flow::load_tx(state, &m.realm, tx, &binding).await.ok()??;
    Some((tx.to_string(), loaded))
}

struct View<'a> {
    error: Option<String>,
    name: &'a str,
    status: StatusCode,
}

/// The verification page of a minor whose guardian must confirm: the code,
/// shown this once.
fn guardian_code_view(state: &SharedState, m: &Me, tx: Option<&(String, LoginTx)>, code: &str) -> Response {
    let path = format!("/realms/{}/verify", m.realm.name);
    let ctx = context! {
        realm_name => realm_name(&m.realm, m.loc),
        realm_logo => realm_logo(&m.realm),
        client_name => tx.map(|(_, t)| client_name(&m.realm, &t.request.client_id, m.loc)),
        cancel_action => tx.map(|_| format!("{path}/cancel")),
        account_url => format!("/realms/{}/account", m.realm.name),
        csrf => m.csrf(state, "verify"),
        tx => tx.map(|(id, _)| id.clone()).unwrap_or_default(),
        guardian_code => code,
        min_age => m.realm.settings.realname.min_age,
        hours => realname::guardian::CODE_SECS / 3600,
    };
    no_store(Html(super::render("verify.html", m.loc, ctx)).into_response())
}

fn render(state: &SharedState, m: &Me, tx: Option<&(String, LoginTx)>, v: View) -> Response {
    let path = format!("/realms/{}/verify", m.realm.name);
    let ctx = context! {
        realm_name => realm_name(&m.realm, m.loc),
        realm_logo => realm_logo(&m.realm),
        client_name => tx.map(|(_, t)| client_name(&m.realm, &t.request.client_id, m.loc)),
        action => path.clone(),
        cancel_action => tx.map(|_| format!("{path}/cancel")),
        account_url => format!("/realms/{}/account", m.realm.name),
        csrf => m.csrf(state, "verify"),
        tx => tx.map(|(id, _)| id.clone()).unwrap_or_default(),
        error => v.error,
        name => v.name,
        level => m.session.acr.clone(),
        // L3 already: the next step is the face match (L4).
        face => realname::rank(&m.session.acr) >= 3 && realname::face::available(state),
        face_action => format!("{path}/face"),
    };
    let mut r = no_store(Html(super::render("verify.html", m.loc, ctx)).into_response());
    *r.status_mut() = v.status;
    r
}

async fn page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let m = match signed_in_me(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let tx = tx_of(&state, &m, &headers, get("tx")).await;
    Ok(render(&state, &m, tx.as_ref(), View { error: None, name: "", status: StatusCode::OK }))
}

async fn submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match super::factors::signed_in_form(&state, &name, &headers, &form, "verify").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let tx = tx_of(&state, &m, &headers, form_get(&form, "tx")).await;
    let typed_name = form_get(&form, "name").unwrap_or_default().trim();
    let err = |key: &str, args: &[(&str, &str)]| Some(crate::web::text(m.loc, key, args));
    let show =
        |error: Option<String>, status| render(&state, &m, tx.as_ref(), View { error, name: typed_name, status });
    if form_get(&form, "consent") != Some("yes") {
        return Ok(show(err("realname.error.consent", &[]), StatusCode::BAD_REQUEST));
    }
    let name_chars = typed_name.chars().count();
    if !(2..=50).contains(&name_chars) {
        return Ok(show(err("realname.error.name", &[]), StatusCode::BAD_REQUEST));
    }
    let today = chrono::Utc::now().date_naive();
    let id = match ResidentId::parse(form_get(&form, "id_number").unwrap_or_default(), today) {
        Ok(id) => id,
        Err(e) => return Ok(show(err(e.key(), &[]), StatusCode::BAD_REQUEST)),
    };
    let consent_at = crate::store::now();
    audit::record(
        &state,
        audit::Event::new(&m.realm.name, "realname.consent", "success")
            .actor(&m.session.user_id)
            .ip(ip.as_deref())
            .detail(serde_json::json!({ "purpose": "real-name verification", "pipl": "Art. 29" })),
    )
    .await;
    let outcome = realname::verify(
        &state,
        &m.realm,
        &m.session.user_id,
        id.as_str(),
        id.birth_date(),
        typed_name,
        consent_at,
        ip.as_deref(),
    )
    .await
    .map_err(|e| PageError(e, m.loc))?;
    match outcome {
        Outcome::Verified(_) => {}
        Outcome::Mismatch(left) => {
            return Ok(show(err("realname.error.mismatch", &[("n", &left.to_string())]), StatusCode::BAD_REQUEST));
        }
        Outcome::Limited => return Ok(show(err("realname.error.limited", &[]), StatusCode::TOO_MANY_REQUESTS)),
        Outcome::Taken => return Ok(show(err("realname.error.taken", &[]), StatusCode::CONFLICT)),
        Outcome::Minor => {
            let age = m.realm.settings.realname.min_age.to_string();
            return Ok(show(err("realname.error.minor", &[("n", &age)]), StatusCode::BAD_REQUEST));
        }
        Outcome::GuardianNeeded(code) => return Ok(guardian_code_view(&state, &m, tx.as_ref(), &code)),
        Outcome::Unavailable => {
            let mut r = show(err("realname.error.unavailable", &[]), StatusCode::SERVICE_UNAVAILABLE);
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
            return Ok(r);
        }
    }
    // Verified: back to the portal that asked, with the session now at L3.
    let Some((tx_id, tx)) = tx else {
        return Ok(no_store(Redirect::to(&format!("/realms/{}/account?done=verified", m.realm.name)).into_response()));
    };
    let session = current_session(&state, &m.realm, &headers).await.map_err(|e| PageError(e, m.loc))?;
    let next = flow::proceed(&state, &m.realm, tx, Some(&tx_id), session).await.map_err(|e| PageError(e, m.loc))?;
    Ok(respond(&m.realm, next))
}

/// The citizen gives up: the portal learns the level was not reached.
async fn cancel(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match super::factors::signed_in_form(&state, &name, &headers, &form, "verify").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let Some((tx_id, tx)) = tx_of(&state, &m, &headers, form_get(&form, "tx")).await else {
        return Err(PageError(Error::page(400, "error.expired"), m.loc));
    };
    flow::end_tx(&state, &m.realm, &tx_id).await.map_err(|e| PageError(e, m.loc))?;
    // The portal's own page for people who cannot reach the level, if it
    // registered one (a registered URI: never an open redirect).
    if let Some(to) = m.realm.client(&tx.request.client_id).and_then(|c| c.settings.acr_fallback_uri.clone()) {
        return Ok(no_store(Redirect::to(&to).into_response()));
    }
    let desc = "real-name verification was not completed";
    Ok(respond(&m.realm, flow::to_client_error(&m.realm, &tx.request, "unmet_authentication_requirements", desc)))
}

// ---------------------------------------------------------------------------
// Recovery by real name: phone and passkey lost, the real name proven again.

fn recover_view(state: &SharedState, c: &TxCtx, step: &str, error: Option<String>, status: StatusCode) -> Response {
    let base = format!("/realms/{}/recover/realname", c.realm.name);
    let action = if step == "code" { format!("{base}/verify") } else { base.clone() };
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => realm_logo(&c.realm),
        step => step,
        action => action,
        csrf => state.secrets.csrf_token(&c.binding, &format!("rn-recover:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        error => error,
        min_length => c.realm.settings.accounts.password.min_length.max(1),
        restart_url => format!("{base}?tx={}", c.tx_id),
        register_url => format!("/realms/{}/register?tx={}", c.realm.name, c.tx_id),
        login_url => format!("/realms/{}/login?tx={}", c.realm.name, c.tx_id),
    };
    let mut r = no_store(Html(super::render("recover_realname.html", c.loc, ctx)).into_response());
    *r.status_mut() = status;
    r
}

fn phone_aad(c: &TxCtx) -> Vec<u8> {
    format!("tx recover phone\0{}\0{}", c.realm.name, c.tx_id).into_bytes()
}

fn recovering(state: &SharedState, c: &TxCtx) -> Option<(String, Identifier)> {
    let uid = c.tx.recovering.clone()?;
    let sealed = crate::crypto::random::b64_decode(c.tx.registering.as_deref()?).ok()?;
    let phone = Identifier::phone(&state.secrets.sealer.open(&sealed, &phone_aad(c)).ok()?)?;
    Some((uid, phone))
}

async fn recover_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    Ok(recover_view(&state, &c, "identity", None, StatusCode::OK))
}

async fn recover_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let mut c = submitted(&state, &name, &headers, &form, "rn-recover").await?;
    let err = |c: &TxCtx, key: &str, args: &[(&str, &str)]| Some(crate::web::text(c.loc, key, args));
    if form_get(&form, "consent") != Some("yes") {
        let e = err(&c, "realname.error.consent", &[]);
        return Ok(recover_view(&state, &c, "identity", e, StatusCode::BAD_REQUEST));
    }
    let typed_name = form_get(&form, "name").unwrap_or_default().trim().to_string();
    if !(2..=50).contains(&typed_name.chars().count()) {
        let e = err(&c, "realname.error.name", &[]);
        return Ok(recover_view(&state, &c, "identity", e, StatusCode::BAD_REQUEST));
    }
    let today = chrono::Utc::now().date_naive();
    let id = match ResidentId::parse(form_get(&form, "id_number").unwrap_or_default(), today) {
        Ok(id) => id,
        Err(e) => return Ok(recover_view(&state, &c, "identity", err(&c, e.key(), &[]), StatusCode::BAD_REQUEST)),
    };
    let Some(phone) = Identifier::phone(form_get(&form, "phone").unwrap_or_default()) else {
        let e = err(&c, "register.error.phone", &[]);
        return Ok(recover_view(&state, &c, "identity", e, StatusCode::BAD_REQUEST));
    };
    let found = realname::recover_check(&state, &c.realm, id.as_str(), id.birth_date(), &typed_name, ip.as_deref())
        .await
        .map_err(|e| PageError(e, c.loc))?;
    let user_id = match found {
        Recovery::Account(u) => u,
        Recovery::NoAccount => {
            let e = err(&c, "recover.realname.error.none", &[]);
            return Ok(recover_view(&state, &c, "identity", e, StatusCode::NOT_FOUND));
        }
        Recovery::Failed(o) => {
            let (key, n, status) = match o {
                Outcome::Mismatch(left) => ("realname.error.mismatch", left.to_string(), StatusCode::BAD_REQUEST),
                Outcome::Limited => ("realname.error.limited", String::new(), StatusCode::TOO_MANY_REQUESTS),
                Outcome::Minor => {
                    ("realname.error.minor", c.realm.settings.realname.min_age.to_string(), StatusCode::BAD_REQUEST)
                }
                _ => ("realname.error.unavailable", String::new(), StatusCode::SERVICE_UNAVAILABLE),
            };
            return Ok(recover_view(&state, &c, "identity", err(&c, key, &[("n", &n)]), status));
        }
    };
    let r = c.realm.name.clone();
    let code = match registration::new_code(&state, &r, "rn-recover", &phone).await.map_err(|e| PageError(e, c.loc))? {
        Ok(code) => code,
        Err(Started::TooSoon(n)) => {
            let e = err(&c, "register.error.wait", &[("n", &n.to_string())]);
            return Ok(recover_view(&state, &c, "identity", e, StatusCode::TOO_MANY_REQUESTS));
        }
        Err(_) => {
            let e = err(&c, "register.error.daily", &[]);
            return Ok(recover_view(&state, &c, "identity", e, StatusCode::TOO_MANY_REQUESTS));
        }
    };
    let sent = registration::deliver(
        &state,
        &r,
        "rn-recover",
        &phone,
        c.loc,
        "recover",
        &code,
        "recovery.realname.code_sent",
        ip.as_deref(),
    )
    .await
    .map_err(|e| PageError(e, c.loc))?;
    if !matches!(sent, Started::Sent) {
        let e = err(&c, "register.error.send", &[]);
        return Ok(recover_view(&state, &c, "identity", e, StatusCode::SERVICE_UNAVAILABLE));
    }
    let sealed = state.secrets.sealer.seal(phone.value(), &phone_aad(&c)).map_err(|e| PageError(e.into(), c.loc))?;
    c.tx.registering = Some(crate::crypto::random::b64(&sealed));
    c.tx.recovering = Some(user_id);
    flow::save_tx(&state, &c.realm, &c.tx, Some(&c.tx_id)).await.map_err(|e| PageError(e, c.loc))?;
    let to = format!("/realms/{}/recover/realname/verify?tx={}", c.realm.name, c.tx_id);
    Ok(no_store(Redirect::to(&to).into_response()))
}

async fn recover_code_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    let step = if recovering(&state, &c).is_some() { "code" } else { "identity" };
    Ok(recover_view(&state, &c, step, None, StatusCode::OK))
}

async fn recover_code_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "rn-recover").await?;
    let Some((user_id, phone)) = recovering(&state, &c) else {
        return Ok(recover_view(&state, &c, "identity", None, StatusCode::BAD_REQUEST));
    };
    let err = |key: &str, args: &[(&str, &str)]| Some(crate::web::text(c.loc, key, args));
    let r = c.realm.name.clone();
    let code = form_get(&form, "code").unwrap_or_default();
    if !registration::code_ok(&state, &r, "rn-recover", &phone, code).await.map_err(|e| PageError(e, c.loc))? {
        return Ok(recover_view(&state, &c, "code", err("register.error.code", &[]), StatusCode::BAD_REQUEST));
    }
    let pw = form_get(&form, "password").unwrap_or_default();
    let pw2 = form_get(&form, "password2").unwrap_or_default();
    let policy = c.realm.settings.accounts.password.clone();
    if let Some(refused) =
        registration::new_password_refused(&state, &r, &policy, &phone, pw, pw2, "recovery.realname", ip.as_deref())
            .await
            .map_err(|e| PageError(e, c.loc))?
    {
        let (key, n) = match refused {
            Completed::BadPassword(k) if k == "password.error.long" => (k, policy.max_length),
            Completed::BadPassword(k) => (k, policy.min_length.max(1)),
            _ => ("register.error.mismatch", 0),
        };
        return Ok(recover_view(&state, &c, "code", err(key, &[("n", &n.to_string())]), StatusCode::BAD_REQUEST));
    }
    let owned = pw.to_string();
    let hash = crate::authn::password::hashing(move || crate::crypto::password::hash(&owned))
        .await
        .map_err(|e| PageError(e, c.loc))?
        .map_err(|e| PageError(e.into(), c.loc))?;
    if !realname::recover_complete(&state, &r, &user_id, &phone, hash, ip.as_deref())
        .await
        .map_err(|e| PageError(e, c.loc))?
    {
        return Ok(recover_view(&state, &c, "code", err("register.error.taken", &[]), StatusCode::CONFLICT));
    }
    signed_in_with(&state, c, &user_id, ip.as_deref(), "signin.recovery", vec!["sms".into()], None).await
}

// ---------------------------------------------------------------------------
// Enterprises: acting for one at sign-in, claiming, appointing agents.

async fn acting_view(state: &SharedState, c: &TxCtx, headers: &HeaderMap, error: bool) -> PageResult {
    // Only a portal allowed scope `enterprise` ever asks.
    if c.realm.client(&c.tx.request.client_id).is_none_or(|cl| !flow::enterprise_capable(&c.realm, cl)) {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    }
    let Some((_, s)) = current_session(state, &c.realm, headers).await.map_err(|e| PageError(e, c.loc))? else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    let orgs = enterprise::orgs_of(state, &c.realm.name, &s.user_id).await.map_err(|e| PageError(e, c.loc))?;
    let options: Vec<_> = orgs
        .iter()
        .map(|o| context! { value => o.uscc_index.clone(), name => o.name.clone(), role => o.role.clone() })
        .collect();
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        action => format!("/realms/{}/acting", c.realm.name),
        csrf => state.secrets.csrf_token(&c.binding, &format!("acting:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        options => options,
        error => error,
    };
    Ok(no_store(Html(super::render("acting.html", c.loc, ctx)).into_response()))
}

async fn acting_page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let c = load_tx(&state, &name, &headers, get("tx"), get("ui_locales")).await?;
    acting_view(&state, &c, &headers, false).await
}

async fn acting_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, "acting").await?;
    let Some((token_hash, s)) = current_session(&state, &c.realm, &headers).await.map_err(|e| PageError(e, c.loc))?
    else {
        return Err(PageError(Error::page(400, "error.expired"), c.loc));
    };
    let choice = form_get(&form, "acting").unwrap_or_default();
    let next = flow::acting_chosen(&state, &c.realm, c.tx.clone(), &c.tx_id, token_hash, s, choice, ip.as_deref())
        .await
        .map_err(|e| PageError(e, c.loc))?;
    match next {
        Some(next) => Ok(respond(&c.realm, next)),
        None => acting_view(&state, &c, &headers, true).await,
    }
}

fn to_account(m: &Me, done: &str) -> Response {
    no_store(Redirect::to(&format!("/realms/{}/account?done={done}", m.realm.name)).into_response())
}

/// The account centre's enterprises section.
pub(super) async fn enterprises_context(state: &SharedState, m: &Me) -> Result<minijinja::Value, PageError> {
    let orgs = enterprise::orgs_of(state, &m.realm.name, &m.session.user_id).await.map_err(|e| PageError(e, m.loc))?;
    let t = crate::store::now();
    let mut items = Vec::new();
    for o in &orgs {
        let mut agents = Vec::new();
        if o.role == enterprise::REPRESENTATIVE {
            let ds = crate::store::enterprises::delegations_for(&state.db, &m.realm.name, &o.uscc_index, t)
                .await
                .map_err(|e| PageError(e.into(), m.loc))?;
            for d in ds {
                let who = crate::account::users::attributes(&state.db, &state.secrets, &m.realm.name, &d.user_id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|a| a.phone.map(|p| crate::admin::mask("phone", &p.0)).or(a.username))
                    .unwrap_or_else(|| d.user_id.chars().take(8).collect());
                agents.push(context! {
                    who => who,
                    role => d.role,
                    until => chrono::DateTime::from_timestamp(d.expires_at, 0).map(|x| x.format("%Y-%m-%d").to_string()),
                    revoke_action => format!("/realms/{}/account/enterprises/{}/agents/{}/revoke", m.realm.name, o.uscc_index, d.id),
                });
            }
        }
        items.push(context! {
            name => o.name.clone(),
            uscc => o.uscc.clone(),
            role => o.role.clone(),
            representative => o.role == enterprise::REPRESENTATIVE,
            agents => agents,
            appoint_action => format!("/realms/{}/account/enterprises/{}/agents", m.realm.name, o.uscc_index),
        });
    }
    Ok(context! {
        items => items,
        csrf => m.csrf(state, "enterprise"),
        verified => crate::realname::rank(&m.session.acr) >= 3,
        claim_action => format!("/realms/{}/account/enterprises/claim", m.realm.name),
    })
}

async fn enterprise_form(
    state: &SharedState,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Result<(Me, Vec<(String, String)>), Response>, PageError> {
    let form = form_pairs(body);
    let m = match signed_in_me(state, name, headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(Err(r)),
    };
    if !m.csrf_ok(state, "enterprise", &form) {
        return Err(PageError(Error::page(403, "error.csrf"), m.loc));
    }
    Ok(Ok((m, form)))
}

async fn claim_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (m, form) = match enterprise_form(&state, &name, &headers, &body).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    let Ok(uscc) = crate::identity::Uscc::parse(form_get(&form, "uscc").unwrap_or_default()) else {
        return Ok(to_account(&m, "enterprise_code"));
    };
    let org_name = form_get(&form, "org_name").unwrap_or_default().trim().to_string();
    let done = enterprise::claim(&state, &m.realm, &m.session.user_id, &uscc, &org_name, ip.as_deref())
        .await
        .map_err(|e| PageError(e, m.loc))?;
    Ok(to_account(
        &m,
        match done {
            enterprise::Claimed::Claimed => "enterprise_claimed",
            enterprise::Claimed::NotVerified => "enterprise_not_verified",
            enterprise::Claimed::NoMatch => "enterprise_no_match",
            enterprise::Claimed::NotRepresentative => "enterprise_not_representative",
        },
    ))
}

async fn appoint_submit(
    State(state): State<SharedState>,
    Path((name, index)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (m, form) = match enterprise_form(&state, &name, &headers, &body).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    let Some(agent) = Identifier::parse(form_get(&form, "agent").unwrap_or_default().trim()) else {
        return Ok(to_account(&m, "agent_unknown"));
    };
    let role = form_get(&form, "role").unwrap_or_default().trim();
    let role = if role.is_empty() { "agent" } else { role };
    let days: u32 = form_get(&form, "days").and_then(|d| d.parse().ok()).unwrap_or(365);
    let done =
        enterprise::appoint(&state, &m.realm.name, &m.session.user_id, &index, &agent, role, days, ip.as_deref())
            .await
            .map_err(|e| PageError(e, m.loc))?;
    Ok(to_account(
        &m,
        match done {
            enterprise::Appointed::Appointed(_) => "agent_appointed",
            enterprise::Appointed::NotRepresentative => "enterprise_not_representative",
            enterprise::Appointed::NoSuchAgent => "agent_unknown",
        },
    ))
}

async fn revoke_submit(
    State(state): State<SharedState>,
    Path((name, index, id)): Path<(String, String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (m, _) = match enterprise_form(&state, &name, &headers, &body).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    enterprise::revoke(&state, &m.realm.name, &m.session.user_id, &index, &id, ip.as_deref())
        .await
        .map_err(|e| PageError(e, m.loc))?;
    Ok(to_account(&m, "agent_revoked"))
}

// ---------------------------------------------------------------------------
// L4: a face match by the external service.

async fn face_start(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match super::factors::signed_in_form(&state, &name, &headers, &form, "verify").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let tx = tx_of(&state, &m, &headers, form_get(&form, "tx")).await;
    let tx_id = tx.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
    let back = format!(
        "{}/realms/{}/verify/face/return?tx={tx_id}",
        state.settings.public_url.trim_end_matches('/'),
        m.realm.name
    );
    match realname::face::start(&state, &m.realm, &m.session.user_id, &back).await.map_err(|e| PageError(e, m.loc))? {
        Some(to) => Ok(no_store(Redirect::to(&to).into_response())),
        None => {
            let error = Some(crate::web::text(m.loc, "realname.error.unavailable", &[]));
            Ok(render(&state, &m, tx.as_ref(), View { error, name: "", status: StatusCode::SERVICE_UNAVAILABLE }))
        }
    }
}

async fn face_return(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let m = match signed_in_me(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let tx = tx_of(&state, &m, &headers, get("tx")).await;
    let done =
        realname::face::finish(&state, &m.realm, &m.session.user_id, get("session").unwrap_or_default(), ip.as_deref())
            .await
            .map_err(|e| PageError(e, m.loc))?;
    let key = match done {
        realname::face::Finished::Verified => None,
        realname::face::Finished::NoMatch => Some("realname.error.face"),
        realname::face::Finished::Expired => Some("realname.error.face_expired"),
        realname::face::Finished::Unavailable => Some("realname.error.unavailable"),
    };
    if let Some(key) = key {
        let error = Some(crate::web::text(m.loc, key, &[]));
        return Ok(render(&state, &m, tx.as_ref(), View { error, name: "", status: StatusCode::BAD_REQUEST }));
    }
    let Some((tx_id, tx)) = tx else {
        return Ok(no_store(Redirect::to(&format!("/realms/{}/account?done=verified", m.realm.name)).into_response()));
    };
    let session = current_session(&state, &m.realm, &headers).await.map_err(|e| PageError(e, m.loc))?;
    let next = flow::proceed(&state, &m.realm, tx, Some(&tx_id), session).await.map_err(|e| PageError(e, m.loc))?;
    Ok(respond(&m.realm, next))
}

// ---------------------------------------------------------------------------
// A guardian confirms a minor's verification (realm `minors = "guardian"`).

#[derive(Default)]
struct GuardianForm {
    /// Field → catalog key of its error.
    errors: std::collections::BTreeMap<&'static str, String>,
    /// An error about the guardian, not a field.
    alert: Option<String>,
    minor_name: String,
    relationship: String,
}

fn guardian_view(state: &SharedState, m: &Me, f: GuardianForm, status: StatusCode) -> Response {
    let ctx = context! {
        realm_name => realm_name(&m.realm, m.loc),
        realm_logo => realm_logo(&m.realm),
        action => format!("/realms/{}/account/guardian", m.realm.name),
        account_url => format!("/realms/{}/account", m.realm.name),
        verify_url => format!("/realms/{}/verify", m.realm.name),
        csrf => m.csrf(state, "guardian"),
        verified => realname::rank(&m.session.acr) >= 3,
        errors => f.errors,
        alert => f.alert,
        minor_name => f.minor_name,
        relationship => f.relationship,
    };
    let mut r = no_store(Html(super::render("guardian.html", m.loc, ctx)).into_response());
    *r.status_mut() = status;
    r
}

fn guardian_realm(m: &Me) -> Result<(), PageError> {
    if m.realm.settings.realname.minors == "guardian" {
        Ok(())
    } else {
        Err(PageError(Error::page(404, "error.not_found"), m.loc))
    }
}

async fn guardian_page(State(state): State<SharedState>, Path(name): Path<String>, headers: HeaderMap) -> PageResult {
    let m = match signed_in_me(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    guardian_realm(&m)?;
    Ok(guardian_view(&state, &m, GuardianForm::default(), StatusCode::OK))
}

async fn guardian_submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    use realname::guardian::{self, Confirmed};
    let form = form_pairs(&body);
    let m = match super::factors::signed_in_form(&state, &name, &headers, &form, "guardian").await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    guardian_realm(&m)?;
    let text = |key: &str, args: &[(&str, &str)]| crate::web::text(m.loc, key, args);
    let mut f = GuardianForm {
        minor_name: form_get(&form, "minor_name").unwrap_or_default().trim().to_string(),
        relationship: form_get(&form, "relationship").unwrap_or_default().to_string(),
        ..Default::default()
    };
    let code = form_get(&form, "code").unwrap_or_default();
    if guardian::normalize_code(code).is_none() {
        f.errors.insert("code", text("guardian.error.code_format", &[]));
    }
    if !(2..=50).contains(&f.minor_name.chars().count()) {
        f.errors.insert("minor_name", text("realname.error.name", &[]));
    }
    let today = chrono::Utc::now().date_naive();
    let minor_id = match ResidentId::parse(form_get(&form, "minor_id").unwrap_or_default(), today) {
        Ok(id) => Some(id),
        Err(e) => {
            f.errors.insert("minor_id", text(e.key(), &[]));
            None
        }
    };
    if !guardian::RELATIONSHIPS.contains(&f.relationship.as_str()) {
        f.errors.insert("relationship", text("guardian.error.relationship", &[]));
    }
    if form_get(&form, "consent") != Some("yes") {
        f.errors.insert("consent", text("guardian.error.consent", &[]));
    }
    let Some(minor_id) = minor_id.filter(|_| f.errors.is_empty()) else {
        return Ok(guardian_view(&state, &m, f, StatusCode::BAD_REQUEST));
    };
    let consent_at = crate::store::now();
    audit::record(
        &state,
        audit::Event::new(&m.realm.name, "realname.consent", "success")
            .actor(&m.session.user_id)
            .ip(ip.as_deref())
            .detail(
                serde_json::json!({ "purpose": "real-name verification of a minor, as guardian", "pipl": "Art. 31" }),
            ),
    )
    .await;
    let done = guardian::confirm(
        &state,
        &m.realm,
        &m.session.user_id,
        code,
        minor_id.as_str(),
        &f.minor_name,
        &f.relationship,
        consent_at,
        ip.as_deref(),
    )
    .await
    .map_err(|e| PageError(e, m.loc))?;
    let status = match done {
        Confirmed::Confirmed => return Ok(to_account(&m, "guardian_confirmed")),
        Confirmed::NotVerified => {
            f.alert = Some(text("guardian.error.not_verified", &[]));
            StatusCode::FORBIDDEN
        }
        Confirmed::NotAdult => {
            f.alert = Some(text("guardian.error.not_adult", &[]));
            StatusCode::FORBIDDEN
        }
        Confirmed::WrongCode(left) => {
            f.errors.insert("code", text("guardian.error.code", &[("n", &left.to_string())]));
            StatusCode::BAD_REQUEST
        }
        Confirmed::Mismatch(left) => {
            f.errors.insert("minor", text("guardian.error.mismatch", &[("n", &left.to_string())]));
            StatusCode::BAD_REQUEST
        }
        Confirmed::Limited => {
            f.alert = Some(text("realname.error.limited", &[]));
            StatusCode::TOO_MANY_REQUESTS
        }
        Confirmed::Taken => {
            f.alert = Some(text("guardian.error.taken", &[]));
            StatusCode::CONFLICT
        }
    };
    Ok(guardian_view(&state, &m, f, status))
}

#[cfg(test)]
mod tests {
    use crate::web::Locale;
    use minijinja::context;

    #[test]
    fn guardian_pages_render_in_both_locales_with_errors_tied_to_fields() {
        for loc in [Locale::ZhCn, Locale::En] {
            let fallback = crate::web::t(loc, "no.such.key");
            let html = super::super::render(
                "guardian.html",
                loc,
                context! {
                    realm_name => "示例市政务服务", action => "/realms/t/account/guardian", account_url => "/realms/t/account",
                    verify_url => "/realms/t/verify", csrf => "tok", verified => true,
                    errors => context! { code => "x", minor => "y", relationship => "z", consent => "w" },
                    minor_name => "李小明", relationship => "parent",
                },
            );
            assert!(!html.contains(fallback) && !html.contains('{'), "{html}");
            for id in ["code-error", "minor-error", "relationship-error", "consent-error"] {
                assert!(html.contains(&format!("id=\"{id}\"")), "{id}: {html}");
            }
            assert!(
                html.contains("aria-describedby=\"code-error\"") && html.contains("aria-describedby=\"minor-error\"")
            );
            assert!(html.contains("name=\"csrf\" value=\"tok\"") && html.contains("value=\"parent\" required checked"));
            let not_yet = super::super::render(
                "guardian.html",
                loc,
                context! { realm_name => "示例", action => "/a", account_url => "/b", verify_url => "/v", csrf => "t", verified => false },
            );
            assert!(!not_yet.contains("<form") && !not_yet.contains(fallback), "{not_yet}");
            let code = super::super::render(
                "verify.html",
                loc,
                context! { realm_name => "示例", account_url => "/b", csrf => "t", guardian_code => "ABCDE-FGHJK", min_age => 14, hours => 24 },
            );
            assert!(code.contains(">ABCDE-FGHJK<") && code.contains("14") && code.contains("24"), "{code}");
            assert!(!code.contains("name=\"id_number\"") && !code.contains(fallback) && !code.contains('{'), "{code}");
        }
    }
}
