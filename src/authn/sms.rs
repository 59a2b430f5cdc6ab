//! Passwordless sign-in with an SMS code to the account's own number. The
//! pages answer the same whether or not the number is registered. Numbers
//! are recycled by carriers, so a code alone does not sign in to an account
//! unused for over six months (nor, once they exist, one with a passkey or
//! TOTP): that needs a second proof.
use crate::account::identifiers::Identifier;
use crate::account::recovery::{code_to_holder, proven_holder};
use crate::account::registration::{Completed, Started};
use crate::error::Result;
use crate::state::AppState;
use crate::web::Locale;

const PURPOSE: &str = "signin";

pub async fn start(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    code_to_holder(state, realm, PURPOSE, phone, locale, "login", "signin.sms.code_sent", ip).await
}

/// Checks the code; `Created(user)` means: sign this person in.
pub async fn complete(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    code: &str,
    ip: Option<&str>,
) -> Result<Completed> {
    Ok(match proven_holder(state, realm, PURPOSE, phone, code, "signin.sms", ip).await? {
        Ok(user) => Completed::Created(user.id),
        Err(answer) => answer,
    })
}
