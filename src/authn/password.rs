//! Password sign-in: find the person by any identifier they have, check the
//! Argon2id hash off the async workers, and cost the same time whether or
//! not the account exists.
use crate::account::identifiers::Identifier;
use crate::crypto::password;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::users;

pub enum Outcome {
    Success {
        user_id: String,
    },
    /// Unknown identifier, wrong password or disabled account: the caller
    /// must not tell which.
    Failure {
        reason: &'static str,
        user_id: Option<String>,
    },
}

pub async fn authenticate(state: &AppState, realm: &str, identifier: &str, secret: String) -> Result<Outcome> {
    let user = match Identifier::parse(identifier) {
        Some(id) => {
            let index = id.blind_index(&state.secrets.sealer);
            users::find_by_identifier(&state.db, realm, id.kind(), &index).await?
        }
        None => None,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password::verify(&h, &secret),
        None => {
            password::dummy_verify(&secret);
            false
        }
    })
    .await
    .map_err(|e| Error::internal(format!("password check: {e}")))?;
    Ok(match user {
        None => Outcome::Failure { reason: "unknown_identifier", user_id: None },
        Some(u) if !ok => Outcome::Failure { reason: "wrong_password", user_id: Some(u.id) },
        Some(u) if u.status != "active" => Outcome::Failure { reason: "account_disabled", user_id: Some(u.id) },
        Some(u) => Outcome::Success { user_id: u.id },
    })
}
