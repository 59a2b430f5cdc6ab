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
    let ok = hashing(move || match hash {
        Some(h) => password::verify(&h, &secret),
        None => {
            password::dummy_verify(&secret);
            false
        }
    })
    .await?;
    Ok(match user {
        None => Outcome::Failure { reason: "unknown_identifier", user_id: None },
        Some(u) if !ok => Outcome::Failure { reason: "wrong_password", user_id: Some(u.id) },
        Some(u) if u.status != "active" => Outcome::Failure { reason: "account_disabled", user_id: Some(u.id) },
        Some(u) => Outcome::Success { user_id: u.id },
    })
}

/// Argon2id takes 19 MiB and ~17 ms of a core per hash. At most one hash per
/// core runs at once: more only queue for the same cores, and each would hold
/// its own 19 MiB (which the allocator keeps afterwards).
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
});

/// Runs a password hash or verification off the async workers, bounded.
pub async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = HASHING.acquire().await.map_err(|e| Error::internal(format!("password hashing: {e}")))?;
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("password hashing: {e}")))
}
