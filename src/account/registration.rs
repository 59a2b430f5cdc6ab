//! Registering with a mainland mobile number proven by an SMS code. A number
//! that already has an account gets a notice instead of a code, and the
//! pages answer exactly as for a new number: registration never reveals
//! whether a number is registered.
use crate::account::identifiers::Identifier;
use crate::account::senders::{Channel, Message};
use crate::account::users::{self, CreateError, NewUser, Profile};
use crate::audit::{self, Event};
use crate::authn::otp::{self, Check, Issue, Target};
use crate::error::Result;
use crate::state::AppState;
use crate::store::users as user_store;
use crate::web::{self, Locale};

pub enum Started {
    Sent,
    TooSoon(u64),
    DailyLimit,
    SendFailed,
}

pub enum Completed {
    Created(String),
    BadCode,
    BadPassword,
    Mismatch,
    /// Only someone who received the code can learn this.
    Taken,
    /// Recovery by SMS alone is not enough for this account.
    SecondProof,
}

/// What is wrong with a new password, if anything: too short, too long, the
/// phone number in it, or not repeated alike.
pub fn password_problem(phone: &Identifier, password: &str, repeated: &str) -> Option<Completed> {
    if password != repeated {
        return Some(Completed::Mismatch);
    }
    let digits = phone.value().trim_start_matches("+86");
    if password.chars().count() < 8 || password.len() > 1024 || password.contains(digits) {
        return Some(Completed::BadPassword);
    }
    None
}

fn target(state: &AppState, realm: &str, phone: &Identifier) -> Target {
    Target::new(realm, "register", &phone.blind_index(&state.secrets.sealer))
}

/// Sends a registration code (or, for a registered number, a notice).
pub async fn start(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match otp::issue(state, &target(state, realm, phone)).await? {
        Issue::Code(c) => c,
        Issue::TooSoon(n) => return Ok(Started::TooSoon(n)),
        Issue::DailyLimit => return Ok(Started::DailyLimit),
    };
    let exists =
        user_store::identifier_exists(&state.db, realm, phone.kind(), &phone.blind_index(&state.secrets.sealer))
            .await?;
    let body = if exists {
        web::text(locale, "sms.register_exists", &[])
    } else {
        web::text(locale, "sms.register", &[("code", &code)])
    };
    let sent = state
        .sms
        .send(Message { channel: Channel::Sms, to: phone.value().to_string(), subject: String::new(), body })
        .await;
    audit::record(
        state,
        Event::new(realm, "registration.code_sent", if sent.is_ok() { "success" } else { "failure" })
            .ip(ip)
            .detail(serde_json::json!({ "channel": "sms" })),
    )
    .await;
    Ok(if sent.is_ok() { Started::Sent } else { Started::SendFailed })
}

/// Checks the code and password and creates the account.
pub async fn complete(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    code: &str,
    password: &str,
    repeated: &str,
    ip: Option<&str>,
) -> Result<Completed> {
    if let Some(problem) = password_problem(phone, password, repeated) {
        return Ok(problem);
    }
    match otp::check(state, &target(state, realm, phone), code).await? {
        Check::Valid => {}
        Check::Wrong(_) | Check::NoCode => {
            audit::record(
                state,
                Event::new(realm, "registration", "failure").ip(ip).detail(serde_json::json!({ "reason": "code" })),
            )
            .await;
            return Ok(Completed::BadCode);
        }
    }
    let new =
        NewUser { identifiers: vec![phone.clone()], password: Some(password.to_string()), profile: Profile::default() };
    match users::create(&state.db, &state.secrets, realm, new).await {
        Ok(id) => {
            audit::record(
                state,
                Event::new(realm, "registration", "success")
                    .actor(&id)
                    .ip(ip)
                    .detail(serde_json::json!({ "method": "sms" })),
            )
            .await;
            Ok(Completed::Created(id))
        }
        Err(CreateError::Taken(_)) => Ok(Completed::Taken),
        Err(CreateError::NoIdentifier) => Ok(Completed::BadCode),
        Err(CreateError::Other(e)) => Err(e),
    }
}
