//! A forgotten password, recovered with a code sent by SMS to the account's
//! own number or by email to its own address: always the same account (same
//! `sub` everywhere). The pages answer the same whether or not the number or
//! address is registered. Mobile numbers are recycled by carriers (and mail
//! domains lapse), so a code alone does not recover an account unused for
//! over six months (nor, once they exist, one with a passkey or TOTP): that
//! needs a second proof.
use crate::account::identifiers::Identifier;
use crate::account::registration::{Completed, Started, code_ok, deliver, method, new_code, new_password_refused};
use crate::audit::{self, Event};
use crate::authn::session;
use crate::crypto::password;
use crate::error::Result;
use crate::realm::model::PasswordPolicy;
use crate::state::AppState;
use crate::store::{now, users as user_store};
use crate::web::Locale;

/// Unused this long, an account needs more than an SMS code.
pub const DORMANT_SECS: i64 = 183 * 86_400;

pub async fn start(
    state: &AppState,
    realm: &str,
    ident: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    code_to_holder(state, realm, "recover", ident, locale, "recover", "recovery.code_sent", ip).await
}

/// A cancelled (or purged) account: every path treats it as unknown.
pub(crate) fn is_gone(u: &user_store::UserRecord) -> bool {
    u.status == "cancelled" || u.status == "purged"
}

/// Sends a code for `purpose` (message `what`, see
/// [`crate::account::registration::compose`]) only if `ident` (a number or
/// an address) belongs to an account; for an unknown one nothing is sent
/// and the answer is the same.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn code_to_holder(
    state: &AppState,
    realm: &str,
    purpose: &str,
    ident: &Identifier,
    locale: Locale,
    what: &str,
    audit_kind: &'static str,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match new_code(state, realm, purpose, ident).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = ident.blind_index(&state.secrets.sealer);
    let holder = user_store::find_by_identifier(&state.db, realm, ident.kind(), &index).await?;
    if holder.is_none_or(|u| is_gone(&u)) {
        // Nothing to send, and nothing to tell: the page reads the same. A
        // cancelled account is treated as unknown.
        return Ok(Started::Sent);
    }
    deliver(state, realm, purpose, ident, locale, what, &code, audit_kind, ip).await
}

/// The active, recently used account whose number a code for `purpose`
/// proved; otherwise what to answer (a wrong code, or a second proof needed
/// for a dormant or disabled account), audited under `audit_kind`.
pub(crate) async fn proven_holder(
    state: &AppState,
    realm: &str,
    purpose: &str,
    ident: &Identifier,
    code: &str,
    audit_kind: &'static str,
    ip: Option<&str>,
) -> Result<std::result::Result<user_store::UserRecord, Completed>> {
    if !code_ok(state, realm, purpose, ident, code).await? {
        let detail = serde_json::json!({ "method": method(ident), "reason": "code" });
        let e = Event::new(realm, audit_kind, "failure").ip(ip).detail(detail);
        audit::record(state, e).await;
        return Ok(Err(Completed::BadCode));
    }
    let index = ident.blind_index(&state.secrets.sealer);
    let Some(user) = user_store::find_by_identifier(&state.db, realm, ident.kind(), &index).await? else {
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
            .detail(serde_json::json!({ "method": method(ident), "reason": reason }));
        audit::record(state, e).await;
        return Ok(Err(Completed::SecondProof));
    }
    Ok(Ok(user))
}

#[allow(clippy::too_many_arguments)]
pub async fn complete(
    state: &AppState,
    realm: &str,
    policy: &PasswordPolicy,
    ident: &Identifier,
    code: &str,
    new_password: &str,
    repeated: &str,
    ip: Option<&str>,
) -> Result<Completed> {
    if let Some(refusal) =
        new_password_refused(state, realm, policy, ident, new_password, repeated, "recovery", ip).await?
    {
        return Ok(refusal);
    }
    let user = match proven_holder(state, realm, "recover", ident, code, "recovery", ip).await? {
        Ok(u) => u,
        Err(answer) => return Ok(answer),
    };
    // Numbers are recycled and mailboxes taken over: whoever holds a passkey
    // or an authenticator app must use it (then change the password in the
    // account centre); a code alone does not recover such an account.
    if !crate::store::credentials::of_user(&state.db, realm, &user.id, None).await?.is_empty() {
        let e = Event::new(realm, "recovery", "failure").actor(&user.id).ip(ip).detail(
            serde_json::json!({ "method": method(ident), "reason": "second_proof_needed", "has": "credentials" }),
        );
        audit::record(state, e).await;
        return Ok(Completed::SecondProof);
    }
    let pw = new_password.to_string();
    let hash = crate::authn::password::hashing(move || password::hash(&pw)).await??;
    user_store::set_password(&state.db, realm, &user.id, Some(hash)).await?;
    let ended = session::end_all(state, realm, &user.id, "password_reset").await?;
    audit::record(
        state,
        Event::new(realm, "recovery", "success")
            .actor(&user.id)
            .ip(ip)
            .detail(serde_json::json!({ "method": method(ident), "sessions_ended": ended })),
    )
    .await;
    Ok(Completed::Created(user.id))
}
