//! TOTP (RFC 6238) as a second factor: SHA-1, 6 digits, 30-second steps, one
//! step of clock skew either way — what every authenticator app supports.
//! Each step is accepted once (RFC 6238 5.2), five wrong codes lock the
//! second factor for 15 minutes, and the secret is sealed at rest.
use totp_rs::{Builder, Secret, Totp};

use crate::crypto::random;
use crate::error::{Error, Result};
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{credentials, now};

/// An enrolment (the secret shown, waiting for its first code) lives this long.
const ENROL_SECS: u64 = 600;
/// Wrong codes before the second factor locks…
const MAX_FAILURES: i64 = 5;
/// …for this long.
const LOCK_SECS: u64 = 900;

fn build(secret: &[u8], issuer: &str, account: &str) -> Result<Totp> {
    Builder::new()
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|e| Error::internal(format!("totp: {e:?}")))
}

fn issuer(realm: &Realm) -> String {
    if realm.settings.display_name.is_empty() { realm.name.clone() } else { realm.settings.display_name.clone() }
}

fn enrol_key(realm: &str, user_id: &str, id: &str) -> String {
    format!("totpreg:{realm}:{user_id}:{id}")
}

fn aad(realm: &str, user_id: &str, id: &str) -> Vec<u8> {
    format!("credentials\0{realm}\0{user_id}\0{id}").into_bytes()
}

/// What the person sees to set up their app.
pub struct Enrolment {
    pub id: String,
    /// The secret in base32, for typing in by hand.
    pub secret: String,
    pub uri: String,
    /// The `otpauth://` URI as an SVG QR code.
    pub qr_svg: String,
}

/// Starts adding an authenticator app: a fresh 160-bit secret, held (sealed)
/// in the ephemeral store until the first code proves the app has it.
pub async fn start(state: &AppState, realm: &Realm, user_id: &str, account: &str) -> Result<Enrolment> {
    let mut secret = [0u8; 20];
    random::fill(&mut secret)?;
    let id = random::token(12)?;
    let totp = build(&secret, &issuer(realm), account)?;
    let uri = totp.to_url().map_err(|e| Error::internal(format!("totp: {e:?}")))?;
    let b32 = totp.secret().to_base32();
    let sealed = state.secrets.sealer.seal(&random::b64(&secret), &aad(&realm.name, user_id, &id))?;
    state.eph.put(&enrol_key(&realm.name, user_id, &id), &random::b64(&sealed), ENROL_SECS).await?;
    let qr_svg = qrcode::QrCode::new(uri.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .dark_color(qrcode::render::svg::Color("#000000"))
                .light_color(qrcode::render::svg::Color("#ffffff"))
                .build()
        })
        .map_err(|e| Error::internal(format!("qr: {e}")))?;
    Ok(Enrolment { id, secret: b32, uri, qr_svg })
}

pub enum Confirmed {
    Added { id: String },
    WrongCode,
    Expired,
}

/// Checks the first code from the app and stores the secret.
pub async fn confirm(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    id: &str,
    code: &str,
    name: &str,
) -> Result<Confirmed> {
    if id.is_empty() || id.len() > 64 {
        return Ok(Confirmed::Expired);
    }
    let key = enrol_key(&realm.name, user_id, id);
    let Some(held) = state.eph.get(&key).await? else {
        return Ok(Confirmed::Expired);
    };
    let sealed = random::b64_decode(&held)?;
    let secret_b64 = state.secrets.sealer.open(&sealed, &aad(&realm.name, user_id, id))?;
    let secret = random::b64_decode(&secret_b64)?;
    let totp = build(&secret, &issuer(realm), "enrolment")?;
    let Some(step) = check(&totp, code) else {
        return Ok(Confirmed::WrongCode);
    };
    if state.eph.take(&key).await?.is_none() {
        return Ok(Confirmed::Expired);
    }
    // The code that proved the app cannot also sign in.
    state.eph.put_new(&used_key(&realm.name, id, step), "1", 120).await?;
    let name: String = name.trim().chars().take(super::passkey::NAME_MAX).collect();
    credentials::insert(
        &state.db,
        credentials::CredentialRecord {
            id: id.to_string(),
            realm: realm.name.clone(),
            user_id: user_id.to_string(),
            kind: "totp".into(),
            name: if name.is_empty() { "Authenticator".into() } else { name },
            lookup: None,
            sealed,
            created_at: now(),
            last_used_at: Some(now()),
        },
    )
    .await?;
    Ok(Confirmed::Added { id: id.to_string() })
}

fn check(totp: &Totp, code: &str) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp.check(&code, now().max(0) as u64)
}

fn used_key(realm: &str, cred: &str, step: u64) -> String {
    format!("totpused:{realm}:{cred}:{step}")
}

fn fail_key(realm: &str, user_id: &str) -> String {
    format!("totpfail:{realm}:{user_id}")
}

pub enum Verified {
    Ok {
        credential_id: String,
    },
    WrongCode {
        left: i64,
    },
    /// Too many wrong codes: try again after this many seconds.
    Locked {
        retry_after: u64,
    },
}

/// Checks a code against the person's authenticator apps.
pub async fn verify(state: &AppState, realm: &Realm, user_id: &str, code: &str) -> Result<Verified> {
    let fails = fail_key(&realm.name, user_id);
    let so_far: i64 = state.eph.get(&fails).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
    if so_far >= MAX_FAILURES {
        return Ok(Verified::Locked { retry_after: state.eph.ttl(&fails).await?.unwrap_or(LOCK_SECS) });
    }
    for c in credentials::of_user(&state.db, &realm.name, user_id, Some("totp")).await? {
        let secret = random::b64_decode(&state.secrets.sealer.open(&c.sealed, &aad(&realm.name, user_id, &c.id))?)?;
        let totp = build(&secret, &issuer(realm), "verify")?;
        if let Some(step) = check(&totp, code)
            && state.eph.put_new(&used_key(&realm.name, &c.id, step), "1", 120).await?
        {
            credentials::used(&state.db, &realm.name, &c.id, now(), None).await?;
            state.eph.delete(&fails).await?;
            return Ok(Verified::Ok { credential_id: c.id });
        }
    }
    let n = state.eph.incr(&fails, LOCK_SECS).await?;
    if n >= MAX_FAILURES {
        return Ok(Verified::Locked { retry_after: LOCK_SECS });
    }
    Ok(Verified::WrongCode { left: MAX_FAILURES - n })
}

/// The current code of a secret, for tests of the whole flow.
pub fn code_at(secret_b32: &str, at: u64) -> Option<String> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    let totp = Builder::new().with_secret(secret).with_account_name("x").build().ok()?;
    Some(totp.generate(at).to_string())
}
