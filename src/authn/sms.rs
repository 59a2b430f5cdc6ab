//! Passwordless sign-in with an SMS code to the account's own number. The
//! pages answer the same whether or not the number is registered. Numbers
//! are recycled by carriers, so a code alone does not sign in to an account
//! unused for over six months (nor, once they exist, one with a passkey or
//! TOTP): that needs a second proof.
use crate::account::identifiers::Identifier;
use crate::account::recovery::DORMANT_SECS;
use crate::account::registration::{Completed, Started, code_ok, new_code, text};
use crate::audit::{self, Event};
use crate::error::Result;
use crate::state::AppState;
use crate::store::{now, users as user_store};
use crate::web::{self, Locale};

const PURPOSE: &str = "signin";

pub async fn start(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match new_code(state, realm, PURPOSE, phone).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = phone.blind_index(&state.secrets.sealer);
    if !user_store::identifier_exists(&state.db, realm, phone.kind(), &index).await? {
        return Ok(Started::Sent);
    }
    let body = web::text(locale, "sms.login", &[("code", &code)]);
    Ok(text(state, realm, phone, body, "signin.sms.code_sent", ip).await)
}

/// Checks the code; `Created(user)` means: sign this person in.
pub async fn complete(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    code: &str,
    ip: Option<&str>,
) -> Result<Completed> {
    if !code_ok(state, realm, PURPOSE, phone, code).await? {
        audit::record(
            state,
            Event::new(realm, "signin.sms", "failure").ip(ip).detail(serde_json::json!({ "reason": "code" })),
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
        let reason = if user.status != "active" { "account_disabled" } else { "second_proof_needed" };
        audit::record(
            state,
            Event::new(realm, "signin.sms", "failure")
                .actor(&user.id)
                .ip(ip)
                .detail(serde_json::json!({ "reason": reason })),
        )
        .await;
        return Ok(Completed::SecondProof);
    }
    Ok(Completed::Created(user.id))
}
