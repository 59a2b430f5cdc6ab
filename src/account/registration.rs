//! Registering with a mainland mobile number proven by an SMS code, or an
//! email address proven by an emailed code. An identifier that already has
//! an account gets a notice instead of a code, and the pages answer exactly
//! as for a new one: registration never reveals whether a number or address
//! is registered. New passwords meet the realm's policy (`password_problem`).
use crate::account::identifiers::Identifier;
use crate::account::senders::{Channel, Message};
use crate::account::users::{self, CreateError, NewUser, Profile};
use crate::audit::{self, Event};
use crate::authn::otp::{self, Check, Issue, Target};
use crate::error::Result;
use crate::realm::model::PasswordPolicy;
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
    /// The new password breaks the policy: a catalog key of
    /// [`PASSWORD_PROBLEMS`].
    BadPassword(&'static str),
    Mismatch,
    /// Only someone who received the code can learn this.
    Taken,
    /// Recovery by a code alone is not enough for this account.
    SecondProof,
}

/// Every catalog key [`password_problem`] may return. `{n}` in the texts of
/// the first two is the policy's minimum / maximum length.
pub const PASSWORD_PROBLEMS: &[&str] = &[
    "password.error.short",
    "password.error.long",
    "password.error.phone",
    "password.error.email",
    "password.error.username",
    "password.error.guessable",
];

/// zxcvbn looks at no more than this many characters: its cost grows faster
/// than the length (debug build: 9 ms for 32 characters, 40 ms for 64,
/// 170 ms for 128; test `zxcvbn_cost`), and 64 characters that pass the
/// other checks are not guessable anyway.
const ZXCVBN_MAX_CHARS: usize = 64;

/// An identifier's part that must not appear in a password, shorter than
/// this, only an equal password is refused (a two-letter mailbox name would
/// otherwise forbid half the dictionary).
const CONTAINS_MIN_CHARS: usize = 4;

/// What is wrong with a new `password` under `policy`, as a catalog key
/// (see [`PASSWORD_PROBLEMS`]), or `None` if it is acceptable.
/// `identifiers` are the person's phone numbers, email addresses and
/// usernames as stored or typed: a password may not contain the national
/// number, the email's local part or the username, and zxcvbn counts them
/// as known words. Lengths count characters, not bytes.
pub fn password_problem(policy: &PasswordPolicy, password: &str, identifiers: &[&str]) -> Option<&'static str> {
    let chars = password.chars().count();
    if chars < policy.min_length.max(1) {
        return Some("password.error.short");
    }
    if (policy.max_length > 0 && chars > policy.max_length) || password.len() > 4096 {
        return Some("password.error.long");
    }
    let lower = password.to_lowercase();
    let mut words: Vec<String> = Vec::new();
    for ident in identifiers.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let (part, key) = if let Some((local, _)) = ident.split_once('@') {
            (local.to_lowercase(), "password.error.email")
        } else if let Some(Identifier::Phone(p)) = Identifier::phone(ident) {
            (p.trim_start_matches("+86").to_string(), "password.error.phone")
        } else {
            (ident.to_lowercase(), "password.error.username")
        };
        if part.is_empty() {
            continue;
        }
        let hit = if part.chars().count() >= CONTAINS_MIN_CHARS { lower.contains(&part) } else { lower == part };
        if hit || lower == ident.to_lowercase() {
            return Some(key);
        }
        words.push(part);
        words.push(ident.to_lowercase());
    }
    if policy.min_score > 0 {
        let cut: String = password.chars().take(ZXCVBN_MAX_CHARS).collect();
        let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
        let score: u8 = zxcvbn::zxcvbn(&cut, &inputs).score().into();
        if score < policy.min_score {
            return Some("password.error.guessable");
        }
    }
    None
}

fn target(state: &AppState, realm: &str, purpose: &str, ident: &Identifier) -> Target {
    Target::new(realm, purpose, &ident.blind_index(&state.secrets.sealer))
}

/// How codes reach `ident`: `sms` or `email` (also the audit's `method`).
pub(crate) fn method(ident: &Identifier) -> &'static str {
    match ident {
        Identifier::Phone(_) => "sms",
        _ => "email",
    }
}

/// A fresh code for `purpose` to `ident`, or why none may be sent now.
pub(crate) async fn new_code(
    state: &AppState,
    realm: &str,
    purpose: &str,
    ident: &Identifier,
) -> Result<Result<String, Started>> {
    Ok(match otp::issue(state, &target(state, realm, purpose, ident)).await? {
        Issue::Code(c) => Ok(c),
        Issue::TooSoon(n) => Err(Started::TooSoon(n)),
        Issue::DailyLimit => Err(Started::DailyLimit),
    })
}

/// The message `what` (`register`, `register_exists`, `recover`, `login`)
/// for `ident` in `locale`: an SMS (`sms.{what}`) or an email
/// (`mail.{what}.subject`, `mail.{what}.body`).
pub(crate) fn compose(ident: &Identifier, locale: Locale, what: &str, code: &str) -> Message {
    let args = [("code", code)];
    match ident {
        Identifier::Phone(p) => Message {
            channel: Channel::Sms,
            to: p.clone(),
            subject: String::new(),
            body: web::text(locale, &format!("sms.{what}"), &args),
        },
        other => Message {
            channel: Channel::Email,
            to: other.value().to_string(),
            subject: web::text(locale, &format!("mail.{what}.subject"), &args),
            body: web::text(locale, &format!("mail.{what}.body"), &args),
        },
    }
}

/// Sends message `what` for `purpose` by SMS or email and audits that it
/// was (or could not be) sent. When sending failed, the resend wait is
/// lifted: the person may ask again at once.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver(
    state: &AppState,
    realm: &str,
    purpose: &str,
    ident: &Identifier,
    locale: Locale,
    what: &str,
    code: &str,
    kind: &'static str,
    ip: Option<&str>,
) -> Result<Started> {
    let message = compose(ident, locale, what, code);
    let sender = if message.channel == Channel::Sms { &state.sms } else { &state.email };
    let sent = sender.send(message).await;
    let (outcome, detail) = match &sent {
        Ok(()) => ("success", serde_json::json!({ "channel": method(ident) })),
        Err(_) => ("failure", serde_json::json!({ "channel": method(ident), "reason": "send_failed" })),
    };
    audit::record(state, Event::new(realm, kind, outcome).ip(ip).detail(detail)).await;
    if sent.is_err() {
        otp::release(state, &target(state, realm, purpose, ident)).await?;
        return Ok(Started::SendFailed);
    }
    Ok(Started::Sent)
}

/// Checks a code sent for `purpose`.
pub(crate) async fn code_ok(
    state: &AppState,
    realm: &str,
    purpose: &str,
    ident: &Identifier,
    code: &str,
) -> Result<bool> {
    Ok(otp::check(state, &target(state, realm, purpose, ident), code).await? == Check::Valid)
}

/// Checks a new password and its repetition; a refusal is audited under
/// `audit_kind` with the reason. zxcvbn runs off the async threads.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn new_password_refused(
    state: &AppState,
    realm: &str,
    policy: &PasswordPolicy,
    ident: &Identifier,
    password: &str,
    repeated: &str,
    audit_kind: &'static str,
    ip: Option<&str>,
) -> Result<Option<Completed>> {
    let (refusal, problem) = if password != repeated {
        (Completed::Mismatch, "mismatch")
    } else {
        let (policy, pw, id) = (policy.clone(), password.to_string(), ident.value().to_string());
        let checked = tokio::task::spawn_blocking(move || password_problem(&policy, &pw, &[id.as_str()]))
            .await
            .map_err(|e| crate::error::Error::internal(format!("password check: {e}")))?;
        let Some(key) = checked else {
            return Ok(None);
        };
        (Completed::BadPassword(key), key)
    };
    let detail = serde_json::json!({ "method": method(ident), "reason": "password", "problem": problem });
    audit::record(state, Event::new(realm, audit_kind, "failure").ip(ip).detail(detail)).await;
    Ok(Some(refusal))
}

/// Sends a registration code (or, for a registered identifier, a notice).
pub async fn start(
    state: &AppState,
    realm: &str,
    ident: &Identifier,
    locale: Locale,
    ip: Option<&str>,
) -> Result<Started> {
    let code = match new_code(state, realm, "register", ident).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let index = ident.blind_index(&state.secrets.sealer);
    let what = if user_store::identifier_exists(&state.db, realm, ident.kind(), &index).await? {
        "register_exists"
    } else {
        "register"
    };
    deliver(state, realm, "register", ident, locale, what, &code, "registration.code_sent", ip).await
}

/// Checks the code and password and creates the account.
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    state: &AppState,
    realm: &str,
    policy: &PasswordPolicy,
    ident: &Identifier,
    code: &str,
    password: Option<(&str, &str)>,
    ip: Option<&str>,
) -> Result<Completed> {
    // `None`: no password; the person adds a passkey right after.
    if let Some((password, repeated)) = password
        && let Some(refusal) =
            new_password_refused(state, realm, policy, ident, password, repeated, "registration", ip).await?
    {
        return Ok(refusal);
    }
    if !code_ok(state, realm, "register", ident, code).await? {
        let detail = serde_json::json!({ "method": method(ident), "reason": "code" });
        audit::record(state, Event::new(realm, "registration", "failure").ip(ip).detail(detail)).await;
        return Ok(Completed::BadCode);
    }
    let new = NewUser {
        identifiers: vec![ident.clone()],
        password: password.map(|(p, _)| p.to_string()),
        profile: Profile::default(),
    };
    match users::create(&state.db, &state.secrets, realm, new).await {
        Ok(id) => {
            audit::record(
                state,
                Event::new(realm, "registration", "success")
                    .actor(&id)
                    .ip(ip)
                    .detail(serde_json::json!({ "method": method(ident), "password": password.is_some() })),
            )
            .await;
            Ok(Completed::Created(id))
        }
        Err(CreateError::Taken(_)) => {
            let detail = serde_json::json!({ "method": method(ident), "reason": "taken" });
            audit::record(state, Event::new(realm, "registration", "failure").ip(ip).detail(detail)).await;
            Ok(Completed::Taken)
        }
        Err(CreateError::NoIdentifier) => Ok(Completed::BadCode),
        Err(CreateError::Other(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy { min_length: 8, max_length: 64, min_score: 2 }
    }

    #[test]
    fn lengths_count_characters() {
        let p = policy();
        assert_eq!(password_problem(&p, "短密码七个字符", &[]), Some("password.error.short"));
        // Eight characters, 24 bytes: long enough, and not guessable.
        assert_eq!(password_problem(&p, "城市统一身份认证", &[]), None);
        assert_eq!(password_problem(&p, "", &[]), Some("password.error.short"));
        assert_eq!(password_problem(&p, &"长".repeat(65), &[]), Some("password.error.long"));
        let long: String = "我们在城市的广场上看见一只白色的猫和三只黑色的狗".chars().cycle().take(64).collect();
        assert_eq!(password_problem(&p, &long, &[]), None, "64 characters are allowed");
    }

    #[test]
    fn common_passwords_are_refused() {
        let p = policy();
        for pw in ["password123", "12345678", "qwertyui", "iloveyou", "11111111", "abcd1234", "Password1"] {
            assert_eq!(password_problem(&p, pw, &[]), Some("password.error.guessable"), "{pw}");
        }
        for pw in ["a good long password", "first owner password", "the brand new password", "Xq7#mLp2$vRt"] {
            assert_eq!(password_problem(&p, pw, &[]), None, "{pw}");
        }
        let lenient = PasswordPolicy { min_score: 0, ..policy() };
        assert_eq!(password_problem(&lenient, "password123", &[]), None);
    }

    #[test]
    fn identifiers_are_not_passwords() {
        let p = policy();
        let phone = ["+8613912345678"];
        assert_eq!(password_problem(&p, "13912345678", &phone), Some("password.error.phone"));
        assert_eq!(password_problem(&p, "my13912345678x", &phone), Some("password.error.phone"));
        let email = ["li.ming@example.cn"];
        assert_eq!(password_problem(&p, "Li.Ming2024!!", &email), Some("password.error.email"));
        assert_eq!(password_problem(&p, "li.ming@example.cn", &email), Some("password.error.email"));
        // A very short local part forbids only itself.
        assert_eq!(password_problem(&p, "a good long password", &["a@example.cn"]), None);
        assert_eq!(password_problem(&p, "liming-secret", &["liming"]), Some("password.error.username"));
        // zxcvbn knows the identifiers: a near miss is easy to guess.
        assert_eq!(password_problem(&p, "liming88", &["liming@example.cn"]), Some("password.error.email"));
    }

    #[test]
    fn every_problem_and_message_has_both_texts() {
        for key in PASSWORD_PROBLEMS {
            for loc in [Locale::ZhCn, Locale::En] {
                assert!(web::lookup(loc, key).is_some(), "{key} ({loc:?})");
            }
        }
        for what in ["register", "register_exists", "recover"] {
            for part in ["subject", "body"] {
                let key = format!("mail.{what}.{part}");
                for loc in [Locale::ZhCn, Locale::En] {
                    assert!(web::lookup(loc, &key).is_some(), "{key} ({loc:?})");
                }
            }
        }
        let m = compose(&Identifier::Email("li@example.cn".into()), Locale::En, "register", "123456");
        assert!(m.body.contains("123456") && !m.subject.contains("123456"), "{m:?}");
    }

    #[test]
    #[ignore = "a measurement: cargo test --lib zxcvbn_cost -- --ignored --nocapture"]
    fn zxcvbn_cost() {
        let _ = zxcvbn::zxcvbn("warm up the dictionaries", &[]);
        let words = "correct horse battery staple river moon 城市 广场 sunlight orange piano 7#q";
        for n in [16usize, 32, 64, 128, 256] {
            let pw: String = words.chars().cycle().take(n).collect();
            let t = std::time::Instant::now();
            for _ in 0..5 {
                let _ = zxcvbn::zxcvbn(&pw, &["13912345678", "li.ming"]);
            }
            println!("zxcvbn {n} chars: {:?} each", t.elapsed() / 5);
        }
        let t = std::time::Instant::now();
        let _ = password_problem(&PasswordPolicy::default(), &words.repeat(10), &["13912345678"]);
        println!("password_problem, {} chars: {:?}", words.chars().count() * 10, t.elapsed());
    }
}
