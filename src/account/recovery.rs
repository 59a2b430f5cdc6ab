//! A forgotten password, recovered with an SMS code to the account's own
//! number: always the same account (same `sub` everywhere). The pages answer
//! the same whether or not the number is registered. Mobile numbers are
//! recycled by carriers, so an SMS code alone does not recover an account
//! unused for over six months (nor, once they exist, one with a passkey or
//! TOTP): that needs a second proof.
use crate::account::identifiers::Identifier;
use crate::account::registration::{Completed, Started, code_ok, new_code, text};
use crate::audit::{self, Event};
use crate::authn::session;
use crate::crypto::password;
use crate::error::Result;
use crate::state::AppState;
use crate::store::{now, users as user_store};
use crate::web::{self, Locale};

/// Unused this long, an account needs more than an SMS code.
pub const DORMANT_SECS: i64 = 183 * 86_400;

pub async fn start(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    code_to_holder(state, realm, "recover", phone, locale, "sms.recover", "recovery.code_sent", ip).await
}

/// A cancelled (or purged) account: every path treats it as unknown.
pub(crate) fn is_gone(u: &user_store::UserRecord) -> bool {
    u.status == "cancelled" || u.status == "purged"
}

/// Sends a code for `purpose` only if `phone` belongs to an account; for an
/// unknown number nothing is sent and the answer is the same.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn code_to_holder(
    state: &AppState,
    realm: &str,
    purpose: &str,
    phone: &Identifier,
    locale: Locale,
    message_key: &str,
    audit_kind: &'static str,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match new_code(state, realm, purpose, phone).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = phone.blind_index(&state.secrets.sealer);
    let holder = user_store::find_by_identifier(&state.db, realm, phone.kind(), &index).await?;
    if holder.is_none_or(|u| is_gone(&u)) {
        // Nothing to send, and nothing to tell: the page reads the same. A
        // cancelled account is treated as unknown.
        return Ok(Started::Sent);
    }
    let body = web::text(locale, message_key, &[("code", &code)]);
    Ok(text(state, realm, phone, body, audit_kind, ip).await)
}

/// The active, recently used account whose number a code for `purpose`
/// proved; otherwise what to answer (a wrong code, or a second proof needed
/// for a dormant or disabled account), audited under `audit_kind`.
pub(crate) async fn proven_holder(
    state: &AppState,
    realm: &str,
    purpose: &str,
    phone: &Identifier,
    code: &str,
    audit_kind: &'static str,
    ip: Option<&str>,
) -> Result<std::result::Result<user_store::UserRecord, Completed>> {
    if !code_ok(state, realm, purpose, phone, code).await? {
        let e = Event::new(realm, audit_kind, "failure").ip(ip).detail(serde_json::json!({ "reason": "code" }));
        audit::record(state, e).await;
        return Ok(Err(Completed::BadCode));
    }
    let index = phone.blind_index(&state.secrets.sealer);
    let Some(user) = user_store::find_by_identifier(&state.db, realm, phone.kind(), &index).await? else {
        return Ok(Err(Completed::BadCode));
    };
    if is_gone(&user) {
        return Ok(Err(Completed::BadCode));
    }
    let last_used = user.last_login_at.unwrap_or(user.created_at);
    if now() - last_used > DORMANT_SECS || user.status != "active" {
        let reason = if user.status != "active" { "account_disabled" } else { "second_proof_needed" };
        let e = Event::new(realm, audit_kind, "failure")
            .actor(&user.id)
            .ip(ip)
            .detail(serde_json::json!({ "reason": reason }));
        audit::record(state, e).await;
        return Ok(Err(Completed::SecondProof));
    }
    Ok(Ok(user))
}

pub async fn complete(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    code: &str,
    new_password: &str,
    repeated: &str,
    ip: Option<&str>,
) -> Result<Completed> {
    if let Some(weak) = super::registration::password_problem(phone, new_password, repeated) {
        return Ok(weak);
    }
    let user = match proven_holder(state, realm, "recover", phone, code, "recovery", ip).await? {
        Ok(u) => u,
        Err(answer) => return Ok(answer),
    };
    let pw = new_password.to_string();
    let hash = crate::authn::password::hashing(move || password::hash(&pw)).await??;
    user_store::set_password(&state.db, realm, &user.id, Some(hash)).await?;
    let ended = session::end_all(state, realm, &user.id, "password_reset").await?;
    audit::record(
        state,
        Event::new(realm, "recovery", "success")
            .actor(&user.id)
            .ip(ip)
            .detail(serde_json::json!({ "method": "sms", "sessions_ended": ended })),
    )
    .await;
    Ok(Completed::Created(user.id))
}
