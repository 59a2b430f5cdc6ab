//! Registration and password recovery pages, inside a sign-in transaction:
//! the mobile number, then the SMS code and a password; the person is signed
//! in and the portal's request goes on. Both flows share the pages and
//! differ in what the domain does with the code.
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use bytes::Bytes;
use minijinja::context;

use super::login::{
    PageResult, TxCtx, client_name, first_factor, form_get, load_tx, no_store, realm_name, submitted, switch_url,
};
use super::{ClientIp, PageError, form_pairs, query_pairs};
use crate::account::identifiers::Identifier;
use crate::account::recovery;
use crate::account::registration::{self, Completed, Started};
use crate::authn::sms;
use crate::oidc::flow;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/realms/{realm}/register",
            get(|s, p, q, h| phone_page(Flow::Register, s, p, q, h))
                .post(|s, p, i, h, b| phone_submit(Flow::Register, s, p, i, h, b)),
        )
        .route(
            "/realms/{realm}/register/verify",
            get(|s, p, q, h| verify_page(Flow::Register, s, p, q, h))
                .post(|s, p, i, h, b| verify_submit(Flow::Register, s, p, i, h, b)),
        )
        .route(
            "/realms/{realm}/smslogin",
            get(|s, p, q, h| phone_page(Flow::SmsLogin, s, p, q, h))
                .post(|s, p, i, h, b| phone_submit(Flow::SmsLogin, s, p, i, h, b)),
        )
        .route(
            "/realms/{realm}/smslogin/verify",
            get(|s, p, q, h| verify_page(Flow::SmsLogin, s, p, q, h))
                .post(|s, p, i, h, b| verify_submit(Flow::SmsLogin, s, p, i, h, b)),
        )
        .route(
            "/realms/{realm}/recover",
            get(|s, p, q, h| phone_page(Flow::Recover, s, p, q, h))
                .post(|s, p, i, h, b| phone_submit(Flow::Recover, s, p, i, h, b)),
        )
        .route(
            "/realms/{realm}/recover/verify",
            get(|s, p, q, h| verify_page(Flow::Recover, s, p, q, h))
                .post(|s, p, i, h, b| verify_submit(Flow::Recover, s, p, i, h, b)),
        )
}

/// Codes one client IP may have sent per hour, whatever the numbers.
const SMS_PER_IP_HOUR: i64 = 20;

#[derive(Clone, Copy, PartialEq)]
enum Flow {
    Register,
    Recover,
    SmsLogin,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Register => "register",
            Flow::Recover => "recover",
            Flow::SmsLogin => "smslogin",
        }
    }
}

struct View<'a> {
    flow: Flow,
    step: &'a str,
    phone: &'a str,
    error: Option<&'a str>,
    retry_after: Option<u64>,
}

fn page(state: &SharedState, c: &TxCtx, v: View<'_>) -> axum::response::Response {
    let base = format!("/realms/{}/{}", c.realm.name, v.flow.name());
    let purpose = format!("{}{}", v.flow.name(), if v.step == "verify" { "-verify" } else { "" });
    let action = if v.step == "verify" { format!("{base}/verify") } else { base.clone() };
    let masked = crate::admin::mask("phone", v.phone);
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        flow => v.flow.name(),
        step => v.step,
        action => action.clone(),
        csrf => state.secrets.csrf_token(&c.binding, &format!("{purpose}:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        phone => if v.step == "verify" { "" } else { v.phone },
        phone_masked => masked,
        error => v.error,
        retry_after => v.retry_after,
        restart_url => format!("{base}?tx={}", c.tx_id),
        login_url => format!("/realms/{}/login?tx={}", c.realm.name, c.tx_id),
        switch_url => switch_url(&action, &c.tx_id, c.loc),
    };
    let status = if v.retry_after.is_some() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::OK };
    no_store((status, Html(super::render("register.html", c.loc, ctx))).into_response())
}

fn phone_aad(c: &TxCtx) -> Vec<u8> {
    format!("tx phone\0{}\0{}", c.realm.name, c.tx_id).into_bytes()
}

fn seal_phone(state: &SharedState, c: &TxCtx, phone: &Identifier) -> Result<String, crate::error::Error> {
    Ok(crate::crypto::random::b64(&state.secrets.sealer.seal(phone.value(), &phone_aad(c))?))
}

fn open_phone(state: &SharedState, c: &TxCtx) -> Option<Identifier> {
    let blob = crate::crypto::random::b64_decode(c.tx.registering.as_deref()?).ok()?;
    Identifier::phone(&state.secrets.sealer.open(&blob, &phone_aad(c)).ok()?)
}

fn params_tx(q: Option<&str>) -> (Option<String>, Option<String>) {
    let p = query_pairs(q);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    (get("tx"), get("ui_locales"))
}

async fn phone_page(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let (tx, ui) = params_tx(q.as_deref());
    let c = load_tx(&state, &name, &headers, tx.as_deref(), ui.as_deref()).await?;
    Ok(page(&state, &c, View { flow, step: "phone", phone: "", error: None, retry_after: None }))
}

async fn phone_submit(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let mut c = submitted(&state, &name, &headers, &form, flow.name()).await?;
    let typed = form_get(&form, "phone").unwrap_or_default().trim().to_string();
    let Some(phone) = Identifier::phone(&typed) else {
        return Ok(page(
            &state,
            &c,
            View { flow, step: "phone", phone: &typed, error: Some("register.error.phone"), retry_after: None },
        ));
    };
    // One client cannot make civid text many numbers (SMS bombing).
    if let Some(ip) = ip.as_deref() {
        let sent = state
            .eph
            .incr(&format!("rl:sms:ip:{}:{ip}", c.realm.name), 3600)
            .await
            .map_err(|e| PageError(e.into(), c.loc))?;
        if sent > SMS_PER_IP_HOUR {
            let wait = state
                .eph
                .ttl(&format!("rl:sms:ip:{}:{ip}", c.realm.name))
                .await
                .map_err(|e| PageError(e.into(), c.loc))?;
            return Ok(page(
                &state,
                &c,
                View {
                    flow,
                    step: "phone",
                    phone: &typed,
                    error: Some("register.error.wait"),
                    retry_after: Some(wait.unwrap_or(3600)),
                },
            ));
        }
    }
    let started = match flow {
        Flow::Register => registration::start(&state, &c.realm.name, &phone, c.loc, ip.as_deref()).await,
        Flow::Recover => recovery::start(&state, &c.realm.name, &phone, c.loc, ip.as_deref()).await,
        Flow::SmsLogin => sms::start(&state, &c.realm.name, &phone, c.loc, ip.as_deref()).await,
    }
    .map_err(|e| PageError(e, c.loc))?;
    let (error, retry) = match started {
        Started::Sent => (None, None),
        Started::TooSoon(n) => (Some("register.error.wait"), Some(n)),
        Started::DailyLimit => (Some("register.error.daily"), None),
        Started::SendFailed => (Some("register.error.send"), None),
    };
    if let Some(e) = error {
        return Ok(page(&state, &c, View { flow, step: "phone", phone: &typed, error: Some(e), retry_after: retry }));
    }
    c.tx.registering = Some(seal_phone(&state, &c, &phone).map_err(|e| PageError(e, c.loc))?);
    flow::save_tx(&state, &c.realm, &c.tx, Some(&c.tx_id)).await.map_err(|e| PageError(e, c.loc))?;
    Ok(no_store(
        Redirect::to(&format!("/realms/{}/{}/verify?tx={}", c.realm.name, flow.name(), c.tx_id)).into_response(),
    ))
}

async fn verify_page(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let (tx, ui) = params_tx(q.as_deref());
    let c = load_tx(&state, &name, &headers, tx.as_deref(), ui.as_deref()).await?;
    let Some(phone) = open_phone(&state, &c).map(|p| p.value().to_string()) else {
        return Ok(page(&state, &c, View { flow, step: "phone", phone: "", error: None, retry_after: None }));
    };
    Ok(page(&state, &c, View { flow, step: "verify", phone: &phone, error: None, retry_after: None }))
}

async fn verify_submit(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, &format!("{}-verify", flow.name())).await?;
    let Some(phone) = open_phone(&state, &c) else {
        return Ok(page(&state, &c, View { flow, step: "phone", phone: "", error: None, retry_after: None }));
    };
    let code = form_get(&form, "code").unwrap_or_default();
    let pw = form_get(&form, "password").unwrap_or_default();
    let pw2 = form_get(&form, "password2").unwrap_or_default();
    let done = match flow {
        Flow::Register => registration::complete(&state, &c.realm.name, &phone, code, pw, pw2, ip.as_deref()).await,
        Flow::Recover => recovery::complete(&state, &c.realm.name, &phone, code, pw, pw2, ip.as_deref()).await,
        Flow::SmsLogin => sms::complete(&state, &c.realm.name, &phone, code, ip.as_deref()).await,
    }
    .map_err(|e| PageError(e, c.loc))?;
    let error = match done {
        Completed::Created(user_id) => {
            let kind = match flow {
                Flow::Register => "signin.registration",
                Flow::Recover => "signin.recovery",
                Flow::SmsLogin => "signin.sms",
            };
            return first_factor(&state, c, &user_id, ip.as_deref(), kind, "sms").await;
        }
        Completed::SecondProof if flow == Flow::SmsLogin => "smslogin.error.second_proof",
        Completed::SecondProof => "recover.error.second_proof",
        Completed::BadCode => "register.error.code",
        Completed::BadPassword => "register.error.password",
        Completed::Mismatch => "register.error.mismatch",
        Completed::Taken => "register.error.taken",
    };
    Ok(page(&state, &c, View { flow, step: "verify", phone: phone.value(), error: Some(error), retry_after: None }))
}
