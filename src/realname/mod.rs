//! Real-name verification: a signed-in person at L2 gives their name and
//! ID number, after a separate consent to processing sensitive personal
//! information (PIPL Art. 29); the realm's verifier checks them against the
//! population registry (or an external service); on a match the account is
//! L3 and the person's sessions carry `acr` L3.
//!
//! One ID number belongs to one account per realm: a second account trying
//! it is led to recover the first, never given a duplicate. Failed matches
//! are limited per account and per ID number a day, so the form cannot probe
//! the registry; every attempt is audited (with the number masked).
use chrono::{Datelike, NaiveDate};
use serde_json::json;

use crate::audit::{self, Event};
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{now, realname as store};

pub mod enterprise;
pub mod face;
pub mod guardian;
pub mod transport;
pub mod verifier;

pub use verifier::Check;

/// The levels in order; `acr` values a portal may ask for.
pub const LEVELS: [&str; 4] = ["L2", "L3", "L4", "L5"];

/// The rank of a level (`L2` → 2); unknown values rank lowest.
pub fn rank(level: &str) -> u8 {
    match level {
        "L3" => 3,
        "L4" => 4,
        "L5" => 5,
        _ => 2,
    }
}

/// The blind index of a normalised resident ID number.
pub fn id_index(state: &AppState, id: &str) -> String {
    state.secrets.sealer.blind_index(crate::registry::RESIDENT_ID_INDEX, id)
}

fn proof_aad(realm: &str, user_id: &str, what: &str) -> Vec<u8> {
    format!("identity_proofs\0{realm}\0{user_id}\0{what}").into_bytes()
}

/// The level an account has proven in a realm (L2 if none).
pub async fn level_of(state: &AppState, realm: &str, user_id: &str) -> Result<String> {
    Ok(level_or_default(store::proof_of(&state.db, realm, user_id).await?.map(|p| p.level)))
}

/// An account's identity level from its proof's, if it has one: without
/// one it is L2 (a proven phone or email address).
pub fn level_or_default(proof_level: Option<String>) -> String {
    proof_level.unwrap_or_else(|| "L2".into())
}

/// What a person proved, unsealed, for claims.
pub struct Proven {
    pub name: String,
    pub id_number: String,
    pub level: String,
    pub method: String,
    pub verified_at: i64,
    /// The evidence of the check (Identity Assurance `evidence` array).
    pub evidence: serde_json::Value,
}

pub async fn proven(state: &AppState, realm: &str, user_id: &str) -> Result<Option<Proven>> {
    let Some(p) = store::proof_of(&state.db, realm, user_id).await? else {
        return Ok(None);
    };
    let name = state.secrets.sealer.open(&p.name_sealed, &proof_aad(realm, user_id, "name"))?;
    let id_number = state.secrets.sealer.open(&p.id_sealed, &proof_aad(realm, user_id, "id"))?;
    let evidence = serde_json::from_str(&p.evidence).unwrap_or_else(|_| json!([]));
    Ok(Some(Proven { name, id_number, level: p.level, method: p.method, verified_at: p.verified_at, evidence }))
}

/// What a verification attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified: the account is now at this level.
    Verified(String),
    /// Name and number do not match; this many tries are left today.
    Mismatch(u32),
    /// Too many failed matches today (for this account or this number).
    Limited,
    /// Another account of the realm proved this number: recover that one.
    Taken,
    /// Younger than the realm's minimum age: a guardian is needed at a
    /// service hall (realm setting `minors = "service_hall"`).
    Minor,
    /// Younger than the realm's minimum age, name and number matched: a
    /// guardian confirms online with this one-time code (shown once).
    GuardianNeeded(String),
    /// The verifier cannot answer now; nothing was counted.
    Unavailable,
}

/// An Identity Assurance time: RFC 3339, UTC.
fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn day() -> i64 {
    now() / 86_400
}

/// Normalises a name as people type it: trimmed, inner spaces and the
/// middle dot variants of minority and foreign names unified.
pub fn normalize_name(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if matches!(c, '.' | '•' | '‧' | '∙' | '・') { '·' } else { c })
        .collect()
}

/// The population registry now lists these persons (blind indexes) as
/// deceased: every account that proved one of them falls back to L2 and its
/// sessions end, on every node; each is audited. Returns how many accounts.
/// (Imports record their changes and apply them through
/// [`crate::registry::changes`], which calls [`registry_deceased_one`].)
pub async fn registry_deceased(state: &AppState, indexes: &[String]) -> Result<usize> {
    let mut n = 0;
    for index in indexes {
        n += registry_deceased_one(state, index, None).await?.accounts_demoted as usize;
    }
    Ok(n)
}

/// One person (blind index) newly deceased: the accounts that proved them
/// above L2 are demoted to L2 and their sessions end. Idempotent: each
/// demotion and its audit entry commit together, only if the proof is still
/// at the level read, so applying a change again (after a stopped run, or
/// on two nodes at once) neither demotes nor audits twice. Sessions end
/// before the demotion commits (ending them again is harmless, so nothing
/// is lost if the run stops in between) and once more after it, for a
/// sign-in that read the old level meanwhile. With `change`, the change is
/// marked applied in the transaction of the last demotion.
pub async fn registry_deceased_one(
    state: &AppState,
    index: &str,
    change: Option<&crate::store::registry::ChangeRecord>,
) -> Result<crate::registry::changes::Effects> {
    use crate::authn::session;
    let mut fx = crate::registry::changes::Effects::default();
    let proofs: Vec<_> =
        store::proofs_by_index(&state.db, index).await?.into_iter().filter(|p| p.level != "L2").collect();
    let last = proofs.len().saturating_sub(1);
    for (i, p) in proofs.iter().enumerate() {
        let ended = session::end_all(state, &p.realm, &p.user_id, "registry_deceased").await?;
        let mark = change.filter(|_| i == last).map(|c| c.id);
        let (realm, user, idx, from) = (p.realm.clone(), p.user_id.clone(), index.to_string(), p.level.clone());
        let demote: audit::Change = Box::new(move |txn| {
            Box::pin(async move {
                if !store::demote_if(txn, &realm, &user, &idx, &from, "L2").await? {
                    return Err(sea_orm::DbErr::RecordNotUpdated);
                }
                if let Some(id) = mark {
                    crate::store::registry::changes_mark_applied(txn, &[id], now()).await?;
                }
                Ok(())
            })
        });
        let mut detail =
            json!({ "from": p.level, "to": "L2", "reason": "registry: deceased", "sessions_ended": ended });
        if let Some(c) = change {
            detail["registry_change"] = json!(c.id);
            detail["import"] = json!(c.import_id);
        }
        let event = Event::new(&p.realm, "realname.demoted", "success").actor(&p.user_id).detail(detail);
        if audit::commit_with(state, event, demote).await {
            fx.accounts_demoted += 1;
            fx.marked |= mark.is_some();
        } else if store::proof_of(&state.db, &p.realm, &p.user_id)
            .await?
            .is_some_and(|q| q.level == p.level && q.id_index == index)
        {
            // Not applied elsewhere meanwhile: the database refused it.
            return Err(crate::error::Error::Db(sea_orm::DbErr::Custom(
                "the demotion and its audit entry could not be committed".into(),
            )));
        }
        let late = session::end_all(state, &p.realm, &p.user_id, "registry_deceased").await?;
        fx.sessions_ended += (ended + late) as u64;
    }
    Ok(fx)
}

pub enum InPerson {
    Recorded,
    /// The account proved a different number.
    OtherNumber,
    /// Another account of the realm proved this number.
    Taken,
}

/// An operator saw the person and their ID card at a service hall: the
/// account is L5, with the operator named in the evidence.
pub async fn record_in_person(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    id: &str,
    name: &str,
    operator: &str,
) -> Result<InPerson> {
    let r = realm.name.as_str();
    let index = id_index(state, id);
    if let Some(holder) = store::holder_of(&state.db, r, &index).await?
        && holder.user_id != user_id
    {
        return Ok(InPerson::Taken);
    }
    let existing = store::proof_of(&state.db, r, user_id).await?;
    if existing.as_ref().is_some_and(|p| p.id_index != index) {
        return Ok(InPerson::OtherNumber);
    }
    let t = now();
    let evidence = json!([{
        "type": "document",
        "check_details": [{ "check_method": "vpip", "organization": r }],
        "verifier": { "organization": r, "txn": operator },
        "time": iso(t),
        "document_details": { "type": "idcard" },
    }]);
    let consent_at = existing.as_ref().map(|p| p.consent_at).unwrap_or(t);
    if existing.is_some() {
        store::delete_proof(&state.db, r, user_id).await?;
    }
    store::insert_proof(
        &state.db,
        store::ProofRecord {
            realm: r.to_string(),
            user_id: user_id.to_string(),
            id_index: index,
            id_sealed: state.secrets.sealer.seal(id, &proof_aad(r, user_id, "id"))?,
            name_sealed: state.secrets.sealer.seal(name, &proof_aad(r, user_id, "name"))?,
            level: "L5".into(),
            method: "in_person".into(),
            evidence: evidence.to_string(),
            verified_at: t,
            consent_at,
        },
    )
    .await?;
    crate::authn::session::set_level_of_user(state, realm, user_id, "L5").await?;
    Ok(InPerson::Recorded)
}

/// Recovery when everything else is lost: the person proves their real
/// name again; the account of the realm that proved this number (if any)
/// is theirs. The same limits, checks and audit as a verification.
pub enum Recovery {
    Account(String),
    /// The name and number match the registry, but no account of the realm
    /// proved them: register instead.
    NoAccount,
    Failed(Outcome),
}

pub async fn recover_check(
    state: &AppState,
    realm: &Realm,
    id: &str,
    birth: NaiveDate,
    name: &str,
    ip: Option<&str>,
) -> Result<Recovery> {
    let r = realm.name.as_str();
    let index = id_index(state, id);
    let masked = crate::identity::mask_id(id);
    let ev = |outcome: &'static str, detail: serde_json::Value| {
        Event::new(r, "recovery.realname", outcome).ip(ip).detail(detail)
    };
    let limit = realm.settings.realname.failures_per_day.max(1) as i64;
    let id_key = format!("rn-fail:{r}:id:{index}:{}", day());
    let ip_key = format!("rn-fail:{r}:ip:{}:{}", ip.unwrap_or("-"), day());
    let failures = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let so_far = failures(state.eph.get(&id_key).await?).max(failures(state.eph.get(&ip_key).await?));
    if so_far >= limit {
        audit::record(state, ev("failure", json!({ "reason": "limited", "id_number": masked }))).await;
        return Ok(Recovery::Failed(Outcome::Limited));
    }
    let today = chrono::Utc::now().date_naive();
    let age = today.year() - birth.year() - i32::from((today.month(), today.day()) < (birth.month(), birth.day()));
    if age < realm.settings.realname.min_age as i32 {
        return Ok(Recovery::Failed(Outcome::Minor));
    }
    let name = normalize_name(name);
    match verifier::check(state, realm, id, &index, &name).await? {
        Check::Match => {}
        Check::Unavailable => return Ok(Recovery::Failed(Outcome::Unavailable)),
        Check::NoMatch | Check::Deceased => {
            let a = state.eph.incr(&id_key, 86_400).await?;
            let b = state.eph.incr(&ip_key, 86_400).await?;
            audit::record(state, ev("failure", json!({ "reason": "no match", "id_number": masked }))).await;
            return Ok(Recovery::Failed(Outcome::Mismatch((limit - a.max(b)).max(0) as u32)));
        }
    }
    let holder = store::holder_of(&state.db, r, &index).await?;
    let active = match &holder {
        Some(p) => crate::store::users::get(&state.db, r, &p.user_id).await?.is_some_and(|u| u.status == "active"),
        None => false,
    };
    match holder.filter(|_| active) {
        Some(p) => {
            let e = Event::new(r, "recovery.realname", "success").actor(&p.user_id).ip(ip);
            audit::record(state, e.detail(json!({ "step": "identity proven", "id_number": masked }))).await;
            Ok(Recovery::Account(p.user_id))
        }
        None => Ok(Recovery::NoAccount),
    }
}

/// Gives the recovered account a new phone number and password; the lost
/// passkeys and authenticator apps are removed and every session ends.
/// `Ok(false)`: another account holds that number.
pub async fn recover_complete(
    state: &AppState,
    realm: &str,
    user_id: &str,
    phone: &crate::account::identifiers::Identifier,
    password_hash: String,
    ip: Option<&str>,
) -> Result<bool> {
    let sealed =
        state.secrets.sealer.seal(phone.value(), &crate::account::identifiers::Identifier::aad(realm, phone.kind()))?;
    let index = phone.blind_index(&state.secrets.sealer);
    let txn = crate::store::begin_write(&state.db).await?;
    if crate::store::users::replace_identifier(&txn, realm, user_id, phone.kind(), &index, sealed).await.is_err() {
        return Ok(false);
    }
    crate::store::users::set_password(&txn, realm, user_id, Some(password_hash)).await?;
    let removed = crate::store::credentials::delete_all_of_user(&txn, realm, user_id).await?;
    txn.commit().await?;
    let ended = crate::authn::session::end_all(state, realm, user_id, "recovered_by_real_name").await?;
    audit::record(
        state,
        Event::new(realm, "recovery.realname", "success").actor(user_id).ip(ip).detail(json!({
            "step": "new phone and password", "credentials_removed": removed, "sessions_ended": ended,
        })),
    )
    .await;
    Ok(true)
}

/// Checks `name` and the normalised ID number `id` (born `birth`) for the
/// signed-in person `user_id`, after consent given at `consent_at`.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    id: &str,
    birth: NaiveDate,
    name: &str,
    consent_at: i64,
    ip: Option<&str>,
) -> Result<Outcome> {
    let r = realm.name.as_str();
    let index = id_index(state, id);
    let masked = crate::identity::mask_id(id);
    let ev = |outcome: &'static str, detail: serde_json::Value| {
        Event::new(r, "realname.verify", outcome).actor(user_id).ip(ip).detail(detail)
    };
    let limit = realm.settings.realname.failures_per_day.max(1) as i64;
    let user_key = format!("rn-fail:{r}:user:{user_id}:{}", day());
    let id_key = format!("rn-fail:{r}:id:{index}:{}", day());
    let failures = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let so_far = failures(state.eph.get(&user_key).await?).max(failures(state.eph.get(&id_key).await?));
    if so_far >= limit {
        audit::record(state, ev("failure", json!({ "reason": "limited", "id_number": masked }))).await;
        return Ok(Outcome::Limited);
    }
    if let Some(holder) = store::holder_of(&state.db, r, &index).await?
        && holder.user_id != user_id
    {
        audit::record(state, ev("failure", json!({ "reason": "taken", "id_number": masked }))).await;
        return Ok(Outcome::Taken);
    }
    let today = chrono::Utc::now().date_naive();
    let minor = guardian::age_on(birth, today) < realm.settings.realname.min_age as i32;
    if minor && realm.settings.realname.minors != "guardian" {
        audit::record(state, ev("failure", json!({ "reason": "minor", "id_number": masked }))).await;
        return Ok(Outcome::Minor);
    }
    let name = normalize_name(name);
    let check = verifier::check(state, realm, id, &index, &name).await?;
    match check {
        Check::Match => {}
        Check::Unavailable => {
            audit::record(state, ev("failure", json!({ "reason": "verifier unavailable", "id_number": masked }))).await;
            return Ok(Outcome::Unavailable);
        }
        Check::NoMatch | Check::Deceased => {
            let a = state.eph.incr(&user_key, 86_400).await?;
            let b = state.eph.incr(&id_key, 86_400).await?;
            let reason = if check == Check::Deceased { "registry: deceased" } else { "no match" };
            audit::record(state, ev("failure", json!({ "reason": reason, "id_number": masked }))).await;
            return Ok(Outcome::Mismatch((limit - a.max(b)).max(0) as u32));
        }
    }
    let method = realm.settings.realname.verifier.clone();
    if minor {
        // Not raised yet: a guardian confirms with the code.
        let code = guardian::issue(state, realm, user_id, &index, &name, &method).await?;
        audit::record(state, ev("pending", json!({ "reason": "guardian needed", "id_number": masked }))).await;
        return Ok(Outcome::GuardianNeeded(code));
    }
    let t = now();
    let evidence = json!([{
        "type": "electronic_record",
        "check_details": [{ "check_method": "data", "txn": crate::crypto::random::token(12)? }],
        "time": iso(t),
        "record": { "type": "population_register", "source": { "name": if method == "http" { "external verification service" } else { "population registry" } } },
    }]);
    let proof = store::ProofRecord {
        realm: r.to_string(),
        user_id: user_id.to_string(),
        id_index: index,
        id_sealed: state.secrets.sealer.seal(id, &proof_aad(r, user_id, "id"))?,
        name_sealed: state.secrets.sealer.seal(&name, &proof_aad(r, user_id, "name"))?,
        level: "L3".into(),
        method,
        evidence: evidence.to_string(),
        verified_at: t,
        consent_at,
    };
    // A concurrent attempt with the same number by another account loses
    // on the unique index.
    if store::proof_of(&state.db, r, user_id).await?.is_some() {
        store::delete_proof(&state.db, r, user_id).await?;
    }
    if store::insert_proof(&state.db, proof).await.is_err() {
        audit::record(state, ev("failure", json!({ "reason": "taken", "id_number": masked }))).await;
        return Ok(Outcome::Taken);
    }
    crate::authn::session::set_level_of_user(state, realm, user_id, "L3").await?;
    audit::record(state, ev("success", json!({ "level": "L3", "id_number": masked, "consent_at": consent_at }))).await;
    Ok(Outcome::Verified("L3".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_normalises() {
        assert_eq!(normalize_name(" 阿依 古丽 "), "阿依古丽");
        assert_eq!(normalize_name("买买提.艾力"), "买买提·艾力");
        assert!(rank("L3") > rank("L2") && rank("L5") > rank("L4") && rank("x") == 2);
    }
}
