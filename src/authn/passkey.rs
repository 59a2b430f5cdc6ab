//! Passkeys (WebAuthn, webauthn-rs): registration from the account centre
//! (or right after registering, instead of a password) and usernameless
//! sign-in, with conditional UI (autofill) where the browser has it.
//!
//! webauthn-rs asks for `residentKey: discouraged`; usernameless sign-in
//! needs a discoverable credential, so registration asks for one
//! (`required`) and records whether the browser says it made one
//! (`credProps.rk`). Ceremony states live five minutes in the ephemeral
//! store and are taken once, so a challenge cannot be answered twice.
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::crypto::random;
use crate::error::{Error, Result};
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{credentials, now};

/// A ceremony must be answered within this long.
const CEREMONY_SECS: u64 = 300;
/// Longest name a person may give a credential.
pub const NAME_MAX: usize = 40;

/// The relying party: the host of `public_url` (an IP address cannot be an
/// RP id; use `localhost` for local development).
pub fn webauthn(state: &AppState, realm: &Realm) -> Result<Webauthn> {
    let origin = Url::parse(&state.settings.public_url).map_err(|e| Error::internal(format!("public_url: {e}")))?;
    let host = origin.host_str().ok_or_else(|| Error::internal("public_url has no host"))?.to_string();
    let name =
        if realm.settings.display_name.is_empty() { realm.name.clone() } else { realm.settings.display_name.clone() };
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name(&name).build())
        .map_err(|e| Error::internal(format!("webauthn: {e}")))
}

/// The WebAuthn user handle of a person: derived, so nothing more is stored
/// and it says nothing about the account.
pub fn user_handle(realm: &str, user_id: &str) -> Uuid {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("civid passkey user\0{realm}\0{user_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    Uuid::from_bytes(b)
}

fn lookup_of(cred_id: &[u8]) -> String {
    random::b64(cred_id)
}

fn aad(realm: &str, user_id: &str, id: &str) -> Vec<u8> {
    format!("credentials\0{realm}\0{user_id}\0{id}").into_bytes()
}

/// What is kept (sealed) for a passkey.
#[derive(Serialize, Deserialize)]
struct Stored {
    passkey: Passkey,
    /// Whether the browser reported a discoverable credential.
    discoverable: Option<bool>,
}

fn ser<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(e.to_string()))
}

/// Starts adding a passkey for a signed-in person: the options for
/// `navigator.credentials.create`, and the ceremony id to answer with.
pub async fn start_registration(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    user_name: &str,
) -> Result<(serde_json::Value, String)> {
    let wa = webauthn(state, realm)?;
    let existing = credentials::of_user(&state.db, &realm.name, user_id, Some("passkey")).await?;
    let exclude: Vec<_> = existing
        .iter()
        .filter_map(|c| c.lookup.as_deref())
        .filter_map(|l| random::b64_decode(l).ok())
        .collect::<Vec<webauthn_rs::prelude::CredentialID>>();
    let (ccr, reg) = wa
        .start_passkey_registration(
            user_handle(&realm.name, user_id),
            user_name,
            user_name,
            (!exclude.is_empty()).then_some(exclude),
        )
        .map_err(|e| Error::internal(format!("webauthn: {e}")))?;
    let mut ccr = serde_json::to_value(&ccr).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(sel) = ccr.pointer_mut("/publicKey/authenticatorSelection").and_then(|v| v.as_object_mut()) {
        sel.insert("residentKey".into(), "required".into());
        sel.insert("requireResidentKey".into(), true.into());
    }
    let id = random::token(16)?;
    let key = format!("pkreg:{}:{user_id}:{id}", realm.name);
    state.eph.put(&key, &ser(&reg)?, CEREMONY_SECS).await?;
    Ok((ccr, id))
}

pub enum Registered {
    Added {
        id: String,
        discoverable: Option<bool>,
    },
    /// The ceremony expired or was answered already.
    Expired,
    /// The browser's answer did not verify, or the credential is known.
    Rejected(String),
}

/// Verifies the browser's answer and stores the passkey.
pub async fn finish_registration(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    ceremony: &str,
    name: &str,
    credential_json: &str,
) -> Result<Registered> {
    if ceremony.is_empty() || ceremony.len() > 64 {
        return Ok(Registered::Expired);
    }
    let key = format!("pkreg:{}:{user_id}:{ceremony}", realm.name);
    let Some(reg) = state.eph.take(&key).await? else {
        return Ok(Registered::Expired);
    };
    let reg: PasskeyRegistration = serde_json::from_str(&reg).map_err(|e| Error::internal(e.to_string()))?;
    let cred: RegisterPublicKeyCredential = match serde_json::from_str(credential_json) {
        Ok(c) => c,
        Err(e) => return Ok(Registered::Rejected(format!("malformed credential: {e}"))),
    };
    let discoverable = cred.extensions.cred_props.as_ref().and_then(|p| p.rk);
    let passkey = match webauthn(state, realm)?.finish_passkey_registration(&cred, &reg) {
        Ok(p) => p,
        Err(e) => return Ok(Registered::Rejected(e.to_string())),
    };
    let lookup = lookup_of(passkey.cred_id().as_ref());
    if credentials::by_lookup(&state.db, &realm.name, &lookup).await?.is_some() {
        return Ok(Registered::Rejected("credential already registered".into()));
    }
    let id = random::token(16)?;
    let sealed =
        state.secrets.sealer.seal(&ser(&Stored { passkey, discoverable })?, &aad(&realm.name, user_id, &id))?;
    let name: String = name.trim().chars().take(NAME_MAX).collect();
    credentials::insert(
        &state.db,
        credentials::CredentialRecord {
            id: id.clone(),
            realm: realm.name.clone(),
            user_id: user_id.to_string(),
            kind: "passkey".into(),
            name: if name.is_empty() { "Passkey".into() } else { name },
            lookup: Some(lookup),
            sealed,
            created_at: now(),
            last_used_at: None,
        },
    )
    .await?;
    Ok(Registered::Added { id, discoverable })
}

/// Starts a usernameless sign-in bound to `scope` (a login transaction):
/// the options for `navigator.credentials.get`.
pub async fn start_signin(state: &AppState, realm: &Realm, scope: &str) -> Result<RequestChallengeResponse> {
    let (rcr, auth) =
        webauthn(state, realm)?.start_discoverable_authentication().map_err(|e| Error::internal(e.to_string()))?;
    state.eph.put(&format!("pkauth:{}:{scope}", realm.name), &ser(&auth)?, CEREMONY_SECS).await?;
    Ok(rcr)
}

pub enum SignedIn {
    /// The person, and the `amr` of the passkey: `hwk` for a key bound to
    /// one device, `swk` for a synced one; always with `mfa`, since user
    /// verification (PIN or biometrics) is required.
    Person {
        user_id: String,
        amr: Vec<String>,
        credential_id: String,
    },
    Expired,
    Rejected(&'static str),
}

/// Verifies a usernameless sign-in answered for `scope`.
pub async fn finish_signin(state: &AppState, realm: &Realm, scope: &str, credential_json: &str) -> Result<SignedIn> {
    let Some(auth) = state.eph.take(&format!("pkauth:{}:{scope}", realm.name)).await? else {
        return Ok(SignedIn::Expired);
    };
    let auth: DiscoverableAuthentication = serde_json::from_str(&auth).map_err(|e| Error::internal(e.to_string()))?;
    let Ok(cred) = serde_json::from_str::<PublicKeyCredential>(credential_json) else {
        return Ok(SignedIn::Rejected("malformed"));
    };
    let wa = webauthn(state, realm)?;
    let Ok((handle, cred_id)) = wa.identify_discoverable_authentication(&cred) else {
        return Ok(SignedIn::Rejected("no user handle"));
    };
    let Some(rec) = credentials::by_lookup(&state.db, &realm.name, &lookup_of(cred_id)).await? else {
        return Ok(SignedIn::Rejected("unknown credential"));
    };
    if handle != user_handle(&realm.name, &rec.user_id) {
        return Ok(SignedIn::Rejected("user handle mismatch"));
    }
    // A disabled (or cancelled) account signs in with nothing.
    let user = crate::store::users::get(&state.db, &realm.name, &rec.user_id).await?;
    if user.is_none_or(|u| u.status != "active") {
        return Ok(SignedIn::Rejected("account not active"));
    }
    let aad = aad(&realm.name, &rec.user_id, &rec.id);
    let mut stored: Stored = serde_json::from_str(&state.secrets.sealer.open(&rec.sealed, &aad)?)
        .map_err(|e| Error::internal(e.to_string()))?;
    let result = match wa.finish_discoverable_authentication_v2(&cred, auth, &stored.passkey) {
        Ok(r) => r,
        Err(_) => return Ok(SignedIn::Rejected("assertion did not verify")),
    };
    let resealed = match stored.passkey.update_credential(&result) {
        Some(true) => Some(state.secrets.sealer.seal(&ser(&stored)?, &aad)?),
        _ => None,
    };
    credentials::used(&state.db, &realm.name, &rec.id, now(), resealed).await?;
    let kind = if result.backup_eligible() { "swk" } else { "hwk" };
    Ok(SignedIn::Person { user_id: rec.user_id, amr: vec![kind.into(), "mfa".into()], credential_id: rec.id })
}
