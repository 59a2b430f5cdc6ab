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
        /// Its second factors and identity level, read with it.
        facts: users::SignInFacts,
    },
    /// Unknown identifier, wrong password or disabled account: the caller
    /// must not tell which.
    Failure { reason: &'static str, user_id: Option<String> },
}

pub async fn authenticate(state: &AppState, realm: &str, identifier: &str, secret: String) -> Result<Outcome> {
    let user = match Identifier::parse(identifier) {
        Some(id) => {
            let index = id.blind_index(&state.secrets.sealer);
            users::find_for_sign_in(&state.hot, realm, id.kind(), &index).await?
        }
        None => None,
    };
    let hash = user.as_ref().and_then(|(u, _)| u.password_hash.clone());
    let ok = hashing(move || match hash {
        Some(h) => password::verify(&h, &secret),
        None => {
            password::dummy_verify(&secret);
            false
        }
    })
    .await?;
    Ok(match user {
        // A cancelled account answers like an unknown one (same message,
        // same cost: the hash was checked either way).
        Some((u, _)) if crate::account::recovery::is_gone(&u) => {
            Outcome::Failure { reason: "account_cancelled", user_id: Some(u.id) }
        }
        None => Outcome::Failure { reason: "unknown_identifier", user_id: None },
        Some((u, _)) if !ok => Outcome::Failure { reason: "wrong_password", user_id: Some(u.id) },
        Some((u, _)) if u.status != "active" => Outcome::Failure { reason: "account_disabled", user_id: Some(u.id) },
        Some((u, facts)) => Outcome::Success { user_id: u.id, facts },
    })
}

/// Argon2id takes 19 MiB and ~17 ms of a core per hash. Hashes run on a
/// few dedicated threads, one per core: more would only queue for the same
/// cores, and every thread that ever hashed keeps its 19 MiB in its malloc
/// arena (on tokio's blocking pool that grew resident memory to hundreds of
/// MiB under load).
type Job = Box<dyn FnOnce() + Send>;

static HASHERS: std::sync::LazyLock<Option<std::sync::mpsc::Sender<Job>>> = std::sync::LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    for i in 0..n {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("civid-hash-{i}")).spawn(move || {
            loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(p) => p.into_inner().recv(),
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if spawned.is_err() {
            return None;
        }
    }
    Some(tx)
});

/// Runs a password hash or verification on the hashing threads.
pub async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(f());
    });
    match HASHERS.as_ref() {
        Some(pool) => pool.send(job).map_err(|_| Error::internal("password hashing threads stopped"))?,
        None => return Err(Error::internal("password hashing threads could not start")),
    }
    result.await.map_err(|_| Error::internal("password hashing failed"))
}
