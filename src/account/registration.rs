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

fn target(state: &AppState, realm: &str, purpose: &str, phone: &Identifier) -> Target {
    Target::new(realm, purpose, &phone.blind_index(&state.secrets.sealer))
}

/// A fresh code for `purpose` to `phone`, or why none may be sent now.
pub(crate) async fn new_code(
    state: &AppState,
    realm: &str,
    purpose: &str,
    phone: &Identifier,
) -> Result<Result<String, Started>> {
    Ok(match otp::issue(state, &target(state, realm, purpose, phone)).await? {
        Issue::Code(c) => Ok(c),
        Issue::TooSoon(n) => Err(Started::TooSoon(n)),
        Issue::DailyLimit => Err(Started::DailyLimit),
    })
}

/// Sends an SMS and audits that it was (or could not be) sent.
pub(crate) async fn text(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    body: String,
    kind: &'static str,
    ip: Option<&str>,
) -> Started {
    let message = Message { channel: Channel::Sms, to: phone.value().to_string(), subject: String::new(), body };
    let sent = state.sms.send(message).await;
    let outcome = if sent.is_ok() { "success" } else { "failure" };
    audit::record(state, Event::new(realm, kind, outcome).ip(ip).detail(serde_json::json!({ "channel": "sms" }))).await;
    if sent.is_ok() { Started::Sent } else { Started::SendFailed }
}

/// Checks a code sent for `purpose`.
pub(crate) async fn code_ok(
    state: &AppState,
    realm: &str,
    purpose: &str,
    phone: &Identifier,
    code: &str,
) -> Result<bool> {
    Ok(otp::check(state, &target(state, realm, purpose, phone), code).await? == Check::Valid)
}

/// Sends a registration code (or, for a registered number, a notice).
pub async fn start(
    state: &AppState,
    realm: &str,
    phone: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match new_code(state, realm, "register", phone).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = phone.blind_index(&state.secrets.sealer);
    let body = if user_store::identifier_exists(&state.db, realm, phone.kind(), &index).await? {
        web::text(locale, "sms.register_exists", &[])
    } else {
        web::text(locale, "sms.register", &[("code", &code)])
    };
    Ok(text(state, realm, phone, body, "registration.code_sent", ip).await)
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
    match code_ok(state, realm, "register", phone, code).await? {
        true => {}
        false => {
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
