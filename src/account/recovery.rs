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
    let code = match new_code(state, realm, "recover", phone).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = phone.blind_index(&state.secrets.sealer);
    if !user_store::identifier_exists(&state.db, realm, phone.kind(), &index).await? {
        // Nothing to send, and nothing to tell: the page reads the same.
        return Ok(Started::Sent);
    }
    let body = web::text(locale, "sms.recover", &[("code", &code)]);
    Ok(text(state, realm, phone, body, "recovery.code_sent", ip).await)
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
    if !code_ok(state, realm, "recover", phone, code).await? {
        audit::record(
            state,
            Event::new(realm, "recovery", "failure").ip(ip).detail(serde_json::json!({ "reason": "code" })),
        )
        .await;
        return Ok(Completed::BadCode);
    }
    let index = phone.blind_index(&state.secrets.sealer);
    let Some(user) = user_store::find_by_identifier(&state.db, realm, phone.kind(), &index).await? else {
        return Ok(Completed::BadCode);
    };
    let last_used = user.last_login_at.unwrap_or(user.created_at);
    if now() - last_used > DORMANT_SECS || user.status != "active" {
        audit::record(
            state,
            Event::new(realm, "recovery", "failure")
                .actor(&user.id)
                .ip(ip)
                .detail(serde_json::json!({ "reason": "second_proof_needed" })),
        )
        .await;
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
            .detail(serde_json::json!({ "method": "sms", "sessions_ended": ended })),
    )
    .await;
    Ok(Completed::Created(user.id))
}
