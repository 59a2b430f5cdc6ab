//! The citizen's own account centre: what they see of their account and
//! what they may change without an operator — their name, phone and email
//! (re-proven by a code to the new one), password, sessions, the portals
//! they consented to, a copy of their data (PIPL), and cancelling the
//! account (注销), whose personal data is purged after the realm's retention.
use serde_json::{Value, json};

use crate::account::identifiers::Identifier;
use crate::account::registration::{Completed, Started};
use crate::account::senders::{Channel, Message};
use crate::account::users::{self, Profile};
use crate::audit::{self, Event};
use crate::authn::limits;
use crate::authn::otp::{self, Check, Issue, Target};
use crate::authn::session;
use crate::crypto::{password, random};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{self, grants, now, sessions, users as user_store};
use crate::web::{self, Locale};

/// Sensitive changes need a sign-in at most this long ago.
pub const RECENT_SIGNIN_SECS: i64 = 600;

/// The person acting in the account centre, and from where.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub realm: &'a str,
    pub user_id: &'a str,
    /// Their current session.
    pub session_id: &'a str,
    pub ip: Option<&'a str>,
}

/// A person's live session, for their list.
pub struct SessionView {
    pub id: String,
    pub browser: Option<&'static str>,
    pub os: Option<&'static str>,
    pub ip: Option<String>,
    pub started: i64,
    pub last_seen: i64,
    pub current: bool,
}

/// A portal the person gave access to.
pub struct PortalView {
    pub grant_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub since: i64,
}

pub struct Overview {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub has_password: bool,
    pub sessions: Vec<SessionView>,
    pub portals: Vec<PortalView>,
}

/// Browser and operating system named in a `User-Agent`, as far as known.
pub fn device(ua: &str) -> (Option<&'static str>, Option<&'static str>) {
    let has = |s: &str| ua.contains(s);
    let browser = if has("MicroMessenger") {
        Some("WeChat")
    } else if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        Some("Edge")
    } else if has("OPR/") {
        Some("Opera")
    } else if has("SamsungBrowser") {
        Some("Samsung Internet")
    } else if has("UCBrowser") {
        Some("UC")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") {
        Some("Chrome")
    } else if has("Safari/") {
        Some("Safari")
    } else {
        None
    };
    let os = if has("HarmonyOS") || has("OpenHarmony") {
        Some("HarmonyOS")
    } else if has("Android") {
        Some("Android")
    } else if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Macintosh") || has("Mac OS X") {
        Some("macOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    (browser, os)
}

/// What the account page shows.
pub async fn overview(state: &AppState, realm: &str, user_id: &str, current_sid: &str) -> Result<Overview> {
    let attrs = users::attributes(&state.db, &state.secrets, realm, user_id)
        .await?
        .ok_or_else(|| Error::page(400, "error.expired"))?;
    let user = user_store::get(&state.db, realm, user_id).await?.ok_or_else(|| Error::page(400, "error.expired"))?;
    let t = now();
    let idle = state.realms.get(realm).map(|r| r.settings.session.idle_secs as i64).unwrap_or(i64::MAX / 4);
    let mut list: Vec<SessionView> = sessions::live_of_user(&state.db, realm, user_id)
        .await?
        .into_iter()
        .filter(|s| s.expires_at > t && s.last_seen_at + idle > t)
        .map(|s| {
            let (browser, os) = device(s.user_agent.as_deref().unwrap_or_default());
            SessionView {
                current: s.id == current_sid,
                id: s.id,
                browser,
                os,
                ip: s.ip,
                started: s.auth_time,
                last_seen: s.last_seen_at,
            }
        })
        .collect();
    list.sort_by(|a, b| b.current.cmp(&a.current).then(b.last_seen.cmp(&a.last_seen)));
    let portals = grants::of_user(&state.db, realm, user_id, false)
        .await?
        .into_iter()
        .map(|g| PortalView {
            scopes: crate::oidc::scopes(&g.scopes).into_iter().filter(|s| s != "openid").collect(),
            grant_id: g.id,
            client_id: g.client_id,
            since: g.created_at,
        })
        .collect();
    Ok(Overview {
        name: attrs.profile.name.unwrap_or_default(),
        phone: attrs.phone.map(|p| p.0),
        email: attrs.email.map(|e| e.0),
        username: attrs.username,
        has_password: user.password_hash.is_some(),
        sessions: list,
        portals,
    })
}

/// Why a display name is refused, if it is.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.chars().count() > 64 || name.chars().any(char::is_control) { Some("account.error.name") } else { None }
}

pub async fn set_name(state: &AppState, realm: &str, user_id: &str, name: &str, ip: Option<&str>) -> Result<()> {
    let name = name.trim();
    let mut profile = users::attributes(&state.db, &state.secrets, realm, user_id)
        .await?
        .map(|a| a.profile)
        .unwrap_or_else(Profile::default);
    profile.name = (!name.is_empty()).then(|| name.to_string());
    let sealed = users::seal_profile(&state.secrets, realm, user_id, &profile)?;
    user_store::set_profile(&state.db, realm, user_id, sealed).await?;
    audit::record(
        state,
        Event::new(realm, "account.profile_changed", "success")
            .actor(user_id)
            .ip(ip)
            .detail(json!({ "fields": ["name"] })),
    )
    .await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Changing the phone number or email address

fn pending_key(realm: &str, session_id: &str, kind: &str) -> String {
    format!("acct-change:{realm}:{session_id}:{kind}")
}

fn pending_aad(realm: &str, session_id: &str, kind: &str) -> Vec<u8> {
    format!("account change\0{realm}\0{session_id}\0{kind}").into_bytes()
}

fn change_target(state: &AppState, realm: &str, user_id: &str, new: &Identifier) -> Target {
    Target::new(realm, &format!("account-{}:{user_id}", new.kind()), &new.blind_index(&state.secrets.sealer))
}

async fn deliver(state: &AppState, to: &Identifier, subject: String, body: String) -> bool {
    let (channel, sender) = match to {
        Identifier::Email(_) => (Channel::Email, &state.email),
        _ => (Channel::Sms, &state.sms),
    };
    let m = Message { channel, to: to.value().to_string(), subject, body };
    sender.send(m).await.is_ok()
}

fn text_key(kind: &str, what: &str) -> String {
    format!("account.{kind}.msg.{what}")
}

/// Whether `new` is already this person's own phone number or email address
/// (which tells them nothing about anyone else).
pub async fn is_own(state: &AppState, realm: &str, user_id: &str, new: &Identifier) -> Result<bool> {
    let index = new.blind_index(&state.secrets.sealer);
    Ok(user_store::find_by_identifier(&state.db, realm, new.kind(), &index).await?.is_some_and(|u| u.id == user_id))
}

/// Sends a code to the new phone number or email address, and remembers
/// (sealed, for this session only) what is being proven. If another account
/// holds it, its holder gets a notice instead and the answer is the same.
pub async fn start_change(state: &AppState, who: Who<'_>, new: &Identifier, locale: Locale) -> Result<Started> {
    let Who { realm, user_id, session_id, ip } = who;
    let index = new.blind_index(&state.secrets.sealer);
    let code = match otp::issue(state, &change_target(state, realm, user_id, new)).await? {
        Issue::Code(c) => c,
        Issue::TooSoon(n) => return Ok(Started::TooSoon(n)),
        Issue::DailyLimit => return Ok(Started::DailyLimit),
    };
    let kind = new.kind();
    let taken = user_store::identifier_exists(&state.db, realm, kind, &index).await?;
    let (subject, body) = if taken {
        (web::text(locale, &text_key(kind, "subject"), &[]), web::text(locale, &text_key(kind, "taken"), &[]))
    } else {
        (
            web::text(locale, &text_key(kind, "subject"), &[]),
            web::text(locale, &text_key(kind, "code"), &[("code", &code)]),
        )
    };
    let sealed = state.secrets.sealer.seal(new.value(), &pending_aad(realm, session_id, kind))?;
    state.eph.put(&pending_key(realm, session_id, kind), &random::b64(&sealed), otp::TTL_SECS).await?;
    let sent = deliver(state, new, subject, body).await;
    audit::record(
        state,
        Event::new(realm, "account.change_code_sent", if sent { "success" } else { "failure" })
            .actor(user_id)
            .ip(ip)
            .detail(json!({ "kind": kind, "to": crate::admin::mask(kind, new.value()) })),
    )
    .await;
    Ok(if sent { Started::Sent } else { Started::SendFailed })
}

/// The phone number or email address being proven in this session, if any.
pub async fn pending_change(state: &AppState, realm: &str, session_id: &str, kind: &str) -> Result<Option<Identifier>> {
    let Some(blob) = state.eph.get(&pending_key(realm, session_id, kind)).await? else {
        return Ok(None);
    };
    let Ok(bytes) = random::b64_decode(&blob) else { return Ok(None) };
    let Ok(value) = state.secrets.sealer.open(&bytes, &pending_aad(realm, session_id, kind)) else {
        return Ok(None);
    };
    Ok(match kind {
        "phone" => Identifier::phone(&value),
        "email" => Identifier::email(&value),
        _ => None,
    })
}

pub enum Changed {
    Done,
    BadCode,
    /// Nothing pending (expired, or never started in this session).
    NothingPending,
}

/// Checks the code sent to the new phone number or email address and makes
/// it the account's; the old one is told.
pub async fn complete_change(
    state: &AppState,
    who: Who<'_>,
    kind: &str,
    code: &str,
    locale: Locale,
) -> Result<Changed> {
    let Who { realm, user_id, session_id, ip } = who;
    let Some(new) = pending_change(state, realm, session_id, kind).await? else {
        return Ok(Changed::NothingPending);
    };
    if otp::check(state, &change_target(state, realm, user_id, &new), code).await? != Check::Valid {
        audit::record(
            state,
            Event::new(realm, audit_kind(kind), "failure").actor(user_id).ip(ip).detail(json!({ "reason": "code" })),
        )
        .await;
        return Ok(Changed::BadCode);
    }
    let old = users::attributes(&state.db, &state.secrets, realm, user_id).await?.and_then(|a| match kind {
        "phone" => a.phone.map(|p| p.0),
        _ => a.email.map(|e| e.0),
    });
    let index = new.blind_index(&state.secrets.sealer);
    let sealed = state.secrets.sealer.seal(new.value(), &Identifier::aad(realm, kind))?;
    let txn = crate::store::begin_write(&state.db).await?;
    if user_store::identifier_exists(&txn, realm, kind, &index).await? {
        // Another account took it since (its holder got no code, so this
        // is a race): refuse as a wrong code would be.
        return Ok(Changed::BadCode);
    }
    user_store::replace_identifier(&txn, realm, user_id, kind, &index, sealed).await?;
    txn.commit().await?;
    state.eph.delete(&pending_key(realm, session_id, kind)).await?;
    if let Some(old) =
        old.as_deref().and_then(|o| if kind == "phone" { Identifier::phone(o) } else { Identifier::email(o) })
    {
        let masked = crate::admin::mask(kind, new.value());
        let subject = web::text(locale, &text_key(kind, "subject"), &[]);
        let body = web::text(locale, &text_key(kind, "changed"), &[("to", &masked)]);
        if !deliver(state, &old, subject, body).await {
            tracing::warn!(realm, "the old {kind} could not be told of the change");
        }
    }
    audit::record(
        state,
        Event::new(realm, audit_kind(kind), "success").actor(user_id).ip(ip).detail(json!({
            "from": old.as_deref().map(|o| crate::admin::mask(kind, o)),
            "to": crate::admin::mask(kind, new.value()),
        })),
    )
    .await;
    Ok(Changed::Done)
}

fn audit_kind(kind: &str) -> &'static str {
    if kind == "phone" { "account.phone_changed" } else { "account.email_changed" }
}

// ---------------------------------------------------------------------------
// Password

pub enum PasswordChange {
    Done,
    /// The current password is wrong (or missing).
    WrongCurrent,
    /// Too many wrong current passwords: wait this many seconds.
    Locked(u64),
    /// The new one is refused; the registration's answer says why.
    Refused(Completed),
}

/// The one place the account centre asks whether a new password is good
/// enough (the realm's policy lives behind `password_problem`).
async fn new_password_problem(
    state: &AppState,
    realm: &str,
    user_id: &str,
    new: &str,
    repeated: &str,
) -> Result<Option<Completed>> {
    let attrs = users::attributes(&state.db, &state.secrets, realm, user_id).await?;
    let ident = attrs
        .and_then(|a| {
            a.phone
                .and_then(|p| Identifier::phone(&p.0))
                .or_else(|| a.email.and_then(|e| Identifier::email(&e.0)))
                .or_else(|| a.username.and_then(|u| Identifier::username(&u)))
        })
        .unwrap_or_else(|| Identifier::Username(user_id.to_string()));
    let policy = state.realms.get(realm).map(|r| r.settings.accounts.password.clone()).unwrap_or_default();
    crate::account::registration::new_password_refused(
        state,
        realm,
        &policy,
        &ident,
        new,
        repeated,
        "account.password_changed",
        None,
    )
    .await
}

/// How the current password checked out.
enum Current {
    Ok,
    Wrong,
    /// Too many wrong tries: wait this many seconds.
    Locked(u64),
}

/// Checks the account's current password (an account without one passes),
/// under the sign-in limits, so that a borrowed session cannot guess it.
async fn check_current(
    state: &AppState,
    realm: &str,
    user: &user_store::UserRecord,
    given: &str,
    ip: Option<&str>,
) -> Result<Current> {
    let Some(hash) = user.password_hash.clone() else { return Ok(Current::Ok) };
    let attempt = limits::Attempt::new(realm, &user.id, Some(format!("self:{}", user.id)), ip);
    if let Some(wait) = limits::locked(state, &attempt).await? {
        return Ok(Current::Locked(wait));
    }
    let given = given.to_string();
    let ok = !given.is_empty()
        && given.len() <= 1024
        && crate::authn::password::hashing(move || password::verify(&hash, &given)).await?;
    if ok {
        limits::succeeded(state, &attempt).await?;
        return Ok(Current::Ok);
    }
    Ok(match limits::failed(state, &attempt).await? {
        Some(wait) => Current::Locked(wait),
        None => Current::Wrong,
    })
}

/// Changes the password; the person's other sessions end.
pub async fn change_password(
    state: &AppState,
    who: Who<'_>,
    current: &str,
    new: &str,
    repeated: &str,
) -> Result<PasswordChange> {
    let Who { realm, user_id, session_id, ip } = who;
    let user = user_store::get(&state.db, realm, user_id).await?.ok_or_else(|| Error::page(400, "error.expired"))?;
    let checked = check_current(state, realm, &user, current, ip).await?;
    if !matches!(checked, Current::Ok) {
        audit::record(
            state,
            Event::new(realm, "account.password_changed", "failure")
                .actor(user_id)
                .ip(ip)
                .detail(json!({ "reason": "wrong_current" })),
        )
        .await;
        return Ok(match checked {
            Current::Locked(wait) => PasswordChange::Locked(wait),
            _ => PasswordChange::WrongCurrent,
        });
    }
    if let Some(problem) = new_password_problem(state, realm, user_id, new, repeated).await? {
        return Ok(PasswordChange::Refused(problem));
    }
    let pw = new.to_string();
    let hash = crate::authn::password::hashing(move || password::hash(&pw)).await??;
    user_store::set_password(&state.db, realm, user_id, Some(hash)).await?;
    let ended = session::end_all_but(state, realm, user_id, Some(session_id), "password_changed").await?;
    audit::record(
        state,
        Event::new(realm, "account.password_changed", "success")
            .actor(user_id)
            .ip(ip)
            .detail(json!({ "sessions_ended": ended })),
    )
    .await;
    Ok(PasswordChange::Done)
}

// ---------------------------------------------------------------------------
// Sessions and portals

/// Ends one of the person's own sessions; false if it is not theirs or not live.
pub async fn end_session(
    state: &AppState,
    realm: &str,
    user_id: &str,
    session_id: &str,
    reason: &str,
    ip: Option<&str>,
) -> Result<bool> {
    let Some(s) = sessions::get(&state.db, realm, session_id).await?.filter(|s| s.user_id == user_id) else {
        return Ok(false);
    };
    let ended = session::end_one(state, realm, &s, reason).await?;
    if ended {
        audit::record(
            state,
            Event::new(realm, "session.ended", "success")
                .actor(user_id)
                .ip(ip)
                .detail(json!({ "sid": s.id, "reason": reason })),
        )
        .await;
    }
    Ok(ended)
}

/// Ends every session of the person but `keep`.
pub async fn end_other_sessions(
    state: &AppState,
    realm: &str,
    user_id: &str,
    keep: &str,
    ip: Option<&str>,
) -> Result<usize> {
    let n = session::end_all_but(state, realm, user_id, Some(keep), "ended_by_user").await?;
    audit::record(
        state,
        Event::new(realm, "session.ended", "success")
            .actor(user_id)
            .ip(ip)
            .detail(json!({ "others_of": keep, "count": n, "reason": "ended_by_user" })),
    )
    .await;
    Ok(n)
}

/// Withdraws the person's consent to a portal: the grant and its refresh
/// tokens are revoked, and its access tokens stop passing userinfo and
/// introspection. False if the grant is not theirs or already revoked.
pub async fn withdraw(state: &AppState, realm: &str, user_id: &str, grant_id: &str, ip: Option<&str>) -> Result<bool> {
    let Some(g) =
        grants::get(&state.db, realm, grant_id).await?.filter(|g| g.user_id == user_id && g.revoked_at.is_none())
    else {
        return Ok(false);
    };
    grants::revoke(&state.db, realm, &g.id).await?;
    audit::record(
        state,
        Event::new(realm, "consent.withdrawn", "success")
            .actor(user_id)
            .client(&g.client_id)
            .ip(ip)
            .detail(json!({ "grant": g.id })),
    )
    .await;
    Ok(true)
}

// ---------------------------------------------------------------------------
// Data export (PIPL)

/// Everything civid holds about the person, as one JSON document.
pub async fn export(state: &AppState, realm: &str, user_id: &str, ip: Option<&str>) -> Result<Value> {
    let user = user_store::get(&state.db, realm, user_id).await?.ok_or_else(|| Error::page(400, "error.expired"))?;
    let attrs = users::attributes(&state.db, &state.secrets, realm, user_id).await?;
    let mut identifiers = Vec::new();
    for i in user_store::identifiers_of(&state.db, realm, user_id).await? {
        let value = state.secrets.sealer.open(&i.sealed, &Identifier::aad(realm, &i.kind)).ok();
        identifiers.push(json!({
            "kind": i.kind, "value": value, "verified": i.verified, "created_at": i.created_at,
        }));
    }
    let sessions: Vec<Value> = sessions::all_of_user(&state.db, realm, user_id)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "started_at": s.created_at, "auth_time": s.auth_time,
                "methods": serde_json::from_str::<Value>(&s.amr).unwrap_or(Value::Null),
                "last_seen_at": s.last_seen_at, "expires_at": s.expires_at,
                "ended_at": s.ended_at, "end_reason": s.end_reason,
                "ip": s.ip, "user_agent": s.user_agent,
            })
        })
        .collect();
    let grants: Vec<Value> = grants::of_user(&state.db, realm, user_id, true)
        .await?
        .into_iter()
        .map(|g| {
            json!({
                "portal": g.client_id, "scopes": g.scopes,
                "created_at": g.created_at, "updated_at": g.updated_at, "revoked_at": g.revoked_at,
            })
        })
        .collect();
    let credentials: Vec<Value> = store::credentials::of_user(&state.db, realm, user_id, None)
        .await?
        .into_iter()
        .map(|c| json!({ "kind": c.kind, "name": c.name, "created_at": c.created_at, "last_used_at": c.last_used_at }))
        .collect();
    let q = store::audit::Query { actor: Some(user_id), limit: 10_000, ..store::audit::Query::realm(realm) };
    let events: Vec<Value> = store::audit::search(&state.db, &q)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "at": e.at, "kind": e.kind, "outcome": e.outcome, "portal": e.client_id, "ip": e.ip,
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    let doc = json!({
        "exported_at": now(),
        "realm": realm,
        "account": {
            "id": user.id, "status": user.status, "created_at": user.created_at,
            "updated_at": user.updated_at, "last_sign_in_at": user.last_login_at,
            "has_password": user.password_hash.is_some(),
        },
        "profile": { "name": attrs.and_then(|a| a.profile.name) },
        "identifiers": identifiers,
        "sessions": sessions,
        "portals": grants,
        "credentials": credentials,
        "audit_events": events,
    });
    audit::record(state, Event::new(realm, "account.data_exported", "success").actor(user_id).ip(ip)).await;
    Ok(doc)
}

// ---------------------------------------------------------------------------
// Cancellation (注销) and purge

pub enum Cancelled {
    Done,
    WrongPassword,
    /// Too many wrong passwords: wait this many seconds.
    Locked(u64),
    NotConfirmed,
}

/// Cancels the account: every session ends, every grant and refresh token
/// is revoked, passkeys and TOTP are deleted, and the personal data is kept
/// only until the realm's retention ends. Sign-in then fails as for an
/// unknown account; the phone and email stay taken until the purge.
pub async fn cancel(
    state: &AppState,
    realm: &str,
    user_id: &str,
    password: &str,
    confirmed: bool,
    ip: Option<&str>,
) -> Result<Cancelled> {
    let user = user_store::get(&state.db, realm, user_id).await?.ok_or_else(|| Error::page(400, "error.expired"))?;
    let checked = check_current(state, realm, &user, password, ip).await?;
    if !matches!(checked, Current::Ok) {
        audit::record(
            state,
            Event::new(realm, "account.cancelled", "failure")
                .actor(user_id)
                .ip(ip)
                .detail(json!({ "reason": "wrong_password" })),
        )
        .await;
        return Ok(match checked {
            Current::Locked(wait) => Cancelled::Locked(wait),
            _ => Cancelled::WrongPassword,
        });
    }
    if !confirmed {
        return Ok(Cancelled::NotConfirmed);
    }
    let days = state.realms.get(realm).map(|r| r.settings.accounts.cancellation_retention_days).unwrap_or(30);
    let purge_after = now() + (days as i64) * 86_400;
    if !user_store::cancel(&state.db, realm, user_id, purge_after).await? {
        return Ok(Cancelled::Done);
    }
    let ended = session::end_all(state, realm, user_id, "account_cancelled").await?;
    let standing = grants::of_user(&state.db, realm, user_id, false).await?;
    for g in &standing {
        grants::revoke(&state.db, realm, &g.id).await?;
    }
    let credentials = store::credentials::delete_all_of_user(&state.db, realm, user_id).await?;
    audit::record(
        state,
        Event::new(realm, "account.cancelled", "success").actor(user_id).ip(ip).detail(json!({
            "purge_after": purge_after,
            "sessions_ended": ended,
            "grants_revoked": standing.len(),
            "credentials_deleted": credentials,
        })),
    )
    .await;
    Ok(Cancelled::Done)
}

/// Purges the cancelled accounts of every realm whose retention ended by
/// `at`: identifiers, sealed profile, password and session devices go; the
/// anonymised row stays (status `purged`) so that no id or `sub` is reused.
/// Returns how many were purged.
pub async fn purge_due(state: &AppState, at: i64) -> Result<usize> {
    let mut n = 0;
    for realm in state.realms.names() {
        for u in user_store::due_for_purge(&state.db, &realm, at).await? {
            user_store::purge(&state.db, &realm, &u.id).await?;
            sessions::forget_devices(&state.db, &realm, &u.id).await?;
            audit::record(
                state,
                Event::new(&realm, "account.purged", "success")
                    .actor(&u.id)
                    .detail(json!({ "cancelled_purge_after": u.purge_after })),
            )
            .await;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_are_named_by_browser_and_os() {
        let chrome_android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                              Chrome/120.0.0.0 Mobile Safari/537.36";
        assert_eq!(device(chrome_android), (Some("Chrome"), Some("Android")));
        let safari_ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                          (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
        assert_eq!(device(safari_ios), (Some("Safari"), Some("iOS")));
        let wechat = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/116.0 MicroMessenger/8.0.44";
        assert_eq!(device(wechat), (Some("WeChat"), Some("Android")));
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(device(edge), (Some("Edge"), Some("Windows")));
        assert_eq!(
            device("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1; rv:120.0) Firefox/120.0"),
            (Some("Firefox"), Some("macOS"))
        );
        assert_eq!(device(""), (None, None));
    }
}
