//! Registration, password recovery and SMS sign-in pages, inside a sign-in
//! transaction: a mobile number or an email address (as the realm allows),
//! then the code sent to it (and a new password); the person is signed in
//! and the portal's request goes on. The flows share the pages and differ in
//! what the domain does with the code. A flow the realm does not offer
//! answers 404.
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
use crate::error::Error;
use crate::oidc::flow;
use crate::realm::cache::Realm;
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

/// Codes one client IP may have sent per hour, whatever the destinations.
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

/// What the identifier field takes, or (on the code step) what was given.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Phone,
    Email,
    Any,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Phone => "phone",
            Via::Email => "email",
            Via::Any => "any",
        }
    }

    fn of(ident: &Identifier) -> Via {
        if matches!(ident, Identifier::Email(_)) { Via::Email } else { Via::Phone }
    }

    fn parse(self, typed: &str) -> Option<Identifier> {
        match self {
            Via::Phone => Identifier::phone(typed),
            Via::Email => Identifier::email(typed),
            Via::Any if typed.contains('@') => Identifier::email(typed),
            Via::Any => Identifier::phone(typed),
        }
    }

    fn takes(self, ident: &Identifier) -> bool {
        match ident {
            Identifier::Phone(_) => self != Via::Email,
            Identifier::Email(_) => self != Via::Phone,
            Identifier::Username(_) => false,
        }
    }

    fn bad_input(self) -> &'static str {
        match self {
            Via::Phone => "register.error.phone",
            Via::Email => "register.error.email",
            Via::Any => "register.error.any",
        }
    }
}

/// What `flow` takes in this realm; `None`: the realm does not offer it.
fn accepts(flow: Flow, r: &Realm) -> Option<Via> {
    let a = &r.settings.accounts;
    match flow {
        Flow::SmsLogin => a.allows("sms").then_some(Via::Phone),
        // Whatever a person registered with, they may recover with.
        Flow::Recover => Some(Via::Any),
        Flow::Register => match (a.registers_by("phone"), a.registers_by("email")) {
            (true, true) => Some(Via::Any),
            (true, false) => Some(Via::Phone),
            (false, true) => Some(Via::Email),
            (false, false) => None,
        },
    }
}

/// What `flow` takes in realm `name`, or the localized 404 page.
fn gate(state: &SharedState, name: &str, headers: &HeaderMap, ui: Option<&str>, flow: Flow) -> Result<Via, PageError> {
    let loc = super::locale(headers, ui);
    let r = super::realm(state, name).map_err(|e| PageError(e, loc))?;
    accepts(flow, &r).ok_or(PageError(Error::page(404, "error.not_found"), loc))
}

struct View<'a> {
    flow: Flow,
    step: &'a str,
    via: Via,
    ident: &'a str,
    error: Option<&'a str>,
    /// The `{n}` of the error text.
    n: Option<u64>,
    retry_after: Option<u64>,
}

impl<'a> View<'a> {
    fn form(flow: Flow, via: Via, ident: &'a str, error: Option<&'a str>) -> View<'a> {
        View { flow, step: "phone", via, ident, error, n: None, retry_after: None }
    }
}

fn page(state: &SharedState, c: &TxCtx, v: View<'_>) -> axum::response::Response {
    let base = format!("/realms/{}/{}", c.realm.name, v.flow.name());
    let purpose = format!("{}{}", v.flow.name(), if v.step == "verify" { "-verify" } else { "" });
    let action = if v.step == "verify" { format!("{base}/verify") } else { base.clone() };
    let masked = crate::admin::mask(if v.via == Via::Email { "email" } else { "phone" }, v.ident);
    let policy = &c.realm.settings.accounts.password;
    let ctx = context! {
        realm_name => realm_name(&c.realm, c.loc),
        realm_logo => super::login::realm_logo(&c.realm),
        client_name => client_name(&c.realm, &c.tx.request.client_id, c.loc),
        flow => v.flow.name(),
        step => v.step,
        via => v.via.name(),
        action => action.clone(),
        csrf => state.secrets.csrf_token(&c.binding, &format!("{purpose}:{}", c.tx_id)),
        tx => c.tx_id.clone(),
        phone => if v.step == "verify" { "" } else { v.ident },
        phone_masked => masked,
        error => v.error,
        n => v.n.or(v.retry_after),
        min_length => policy.min_length.max(1),
        max_length => policy.max_length,
        passkey_instead => v.flow == Flow::Register && c.realm.settings.accounts.allows("passkey"),
        restart_url => format!("{base}?tx={}", c.tx_id),
        realname_url => (v.flow == Flow::Recover).then(|| format!("/realms/{}/recover/realname?tx={}", c.realm.name, c.tx_id)),
        login_url => format!("/realms/{}/login?tx={}", c.realm.name, c.tx_id),
        switch_url => switch_url(&action, &c.tx_id, c.loc),
    };
    let status = if v.retry_after.is_some() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::OK };
    no_store((status, Html(super::render("register.html", c.loc, ctx))).into_response())
}

/// The identifier in the transaction is sealed (AES-GCM, bound to the realm
/// and transaction): the ephemeral store never holds it in clear.
fn ident_aad(c: &TxCtx) -> Vec<u8> {
    format!("tx phone\0{}\0{}", c.realm.name, c.tx_id).into_bytes()
}

fn seal_ident(state: &SharedState, c: &TxCtx, ident: &Identifier) -> Result<String, Error> {
    Ok(crate::crypto::random::b64(&state.secrets.sealer.seal(ident.value(), &ident_aad(c))?))
}

/// The number or address being proven, if it is one `via` takes.
fn open_ident(state: &SharedState, c: &TxCtx, via: Via) -> Option<Identifier> {
    let blob = crate::crypto::random::b64_decode(c.tx.registering.as_deref()?).ok()?;
    let ident = Identifier::parse(&state.secrets.sealer.open(&blob, &ident_aad(c)).ok()?)?;
    via.takes(&ident).then_some(ident)
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
    let via = gate(&state, &name, &headers, ui.as_deref(), flow)?;
    let c = load_tx(&state, &name, &headers, tx.as_deref(), ui.as_deref()).await?;
    Ok(page(&state, &c, View::form(flow, via, "", None)))
}

async fn phone_submit(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let via = gate(&state, &name, &headers, None, flow)?;
    let form = form_pairs(&body);
    let mut c = submitted(&state, &name, &headers, &form, flow.name()).await?;
    let typed: String = form_get(&form, "phone").unwrap_or_default().trim().chars().take(320).collect();
    let Some(ident) = via.parse(&typed) else {
        return Ok(page(&state, &c, View::form(flow, via, &typed, Some(via.bad_input()))));
    };
    // One client cannot make civid text or mail many destinations (bombing).
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
            let v = View { retry_after: Some(wait.unwrap_or(3600)), ..View::form(flow, via, &typed, None) };
            return Ok(page(&state, &c, View { error: Some("register.error.wait"), ..v }));
        }
    }
    let started = match flow {
        Flow::Register => registration::start(&state, &c.realm.name, &ident, c.loc, ip.as_deref()).await,
        Flow::Recover => recovery::start(&state, &c.realm.name, &ident, c.loc, ip.as_deref()).await,
        Flow::SmsLogin => sms::start(&state, &c.realm.name, &ident, c.loc, ip.as_deref()).await,
    }
    .map_err(|e| PageError(e, c.loc))?;
    let email = Via::of(&ident) == Via::Email;
    let (error, retry) = match started {
        Started::Sent => (None, None),
        Started::TooSoon(n) => (Some("register.error.wait"), Some(n)),
        Started::DailyLimit if email => (Some("register.email.error.daily"), None),
        Started::DailyLimit => (Some("register.error.daily"), None),
        Started::SendFailed if email => (Some("register.email.error.send"), None),
        Started::SendFailed => (Some("register.error.send"), None),
    };
    if let Some(e) = error {
        let v = View { retry_after: retry, ..View::form(flow, via, &typed, Some(e)) };
        return Ok(page(&state, &c, v));
    }
    c.tx.registering = Some(seal_ident(&state, &c, &ident).map_err(|e| PageError(e, c.loc))?);
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
    let via = gate(&state, &name, &headers, ui.as_deref(), flow)?;
    let c = load_tx(&state, &name, &headers, tx.as_deref(), ui.as_deref()).await?;
    let Some(ident) = open_ident(&state, &c, via) else {
        return Ok(page(&state, &c, View::form(flow, via, "", None)));
    };
    let v = View { step: "verify", ..View::form(flow, Via::of(&ident), ident.value(), None) };
    Ok(page(&state, &c, v))
}

async fn verify_submit(
    flow: Flow,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let via = gate(&state, &name, &headers, None, flow)?;
    let form = form_pairs(&body);
    let c = submitted(&state, &name, &headers, &form, &format!("{}-verify", flow.name())).await?;
    let Some(ident) = open_ident(&state, &c, via) else {
        return Ok(page(&state, &c, View::form(flow, via, "", None)));
    };
    let code = form_get(&form, "code").unwrap_or_default();
    let pw = form_get(&form, "password").unwrap_or_default();
    let pw2 = form_get(&form, "password2").unwrap_or_default();
    let policy = &c.realm.settings.accounts.password;
    let r = c.realm.name.as_str();
    // Registration may skip the password for a passkey, added right after.
    let passkey_instead = flow == Flow::Register
        && form_get(&form, "skip") == Some("passkey")
        && c.realm.settings.accounts.allows("passkey");
    let password = (!passkey_instead).then_some((pw, pw2));
    let done = match flow {
        Flow::Register => registration::complete(&state, r, policy, &ident, code, password, ip.as_deref()).await,
        Flow::Recover => recovery::complete(&state, r, policy, &ident, code, pw, pw2, ip.as_deref()).await,
        Flow::SmsLogin => sms::complete(&state, r, &ident, code, ip.as_deref()).await,
    }
    .map_err(|e| PageError(e, c.loc))?;
    let email = Via::of(&ident) == Via::Email;
    let mut n = None;
    let error = match done {
        Completed::Created(user_id) => {
            let kind = match flow {
                Flow::Register => "signin.registration",
                Flow::Recover => "signin.recovery",
                Flow::SmsLogin => "signin.sms",
            };
            // RFC 8176: a code by SMS is `sms`, one by email a plain `otp`.
            let amr = if email { "otp" } else { "sms" };
            if passkey_instead {
                return super::factors::signed_in_to_add_passkey(&state, c, &user_id, ip.as_deref(), kind, amr).await;
            }
            return first_factor(&state, c, &user_id, ip.as_deref(), kind, amr, None).await;
        }
        Completed::SecondProof if flow == Flow::SmsLogin => "smslogin.error.second_proof",
        Completed::SecondProof => "recover.error.second_proof",
        Completed::BadCode => "register.error.code",
        Completed::BadPassword(key) => {
            let limit = if key == "password.error.long" { policy.max_length } else { policy.min_length.max(1) };
            n = Some(limit as u64);
            key
        }
        Completed::Mismatch => "register.error.mismatch",
        Completed::Taken if email => "register.email.error.taken",
        Completed::Taken => "register.error.taken",
    };
    let v = View { step: "verify", n, ..View::form(flow, Via::of(&ident), ident.value(), Some(error)) };
    Ok(page(&state, &c, v))
}
