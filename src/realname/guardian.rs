//! Minors verified with a guardian (realm setting `realname.minors =
//! "guardian"`, PIPL Art. 31). A person younger than the realm's `min_age`
//! whose name and ID number match the registry is not raised at once: they
//! get a one-time guardian code (50 random bits, shown once, stored only as
//! a keyed hash in the ephemeral store for 24 hours, bound to their account
//! and that ID number). A guardian — an adult (18 or older by their own
//! proven ID number) at L3 or above in the same realm — enters the code,
//! the minor's name and number, the relationship, and consents to the
//! processing of the minor's sensitive personal information; the minor's
//! account then becomes L3 with the guardian recorded.
//!
//! What the registry verified (name, number, hence birth date and sex) is
//! the proof; the relationship is only attested by the guardian, so it is
//! kept in `guardians` and the audit, never in `verified_claims`.
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Event};
use crate::crypto::random;
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{now, realname as store};

/// How long a guardian code is valid.
pub const CODE_SECS: u64 = 86_400;
/// Guardians are adults (Civil Code Art. 17).
pub const ADULT_AGE: i32 = 18;
/// The relationships a guardian may state.
pub const RELATIONSHIPS: [&str; 2] = ["parent", "guardian"];

/// Crockford's base32: no I, L, O, U, so a code read aloud or copied by
/// hand survives; ten characters are 50 bits.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 10;

/// Whole years from `birth` to `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i32 {
    today.year() - birth.year() - i32::from((today.month(), today.day()) < (birth.month(), birth.day()))
}

/// A new code, as shown: `ABCDE-FGHJK`.
fn new_code() -> Result<String> {
    let mut bytes = [0u8; CODE_LEN];
    random::fill(&mut bytes)?;
    let chars: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
    Ok(format!("{}-{}", &chars[..5], &chars[5..]))
}

/// A code as typed, in canonical form: case, spaces and dashes ignored,
/// O read as 0 and I or L as 1. `None` when it cannot be a code.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Ephemeral key of a code: its keyed hash (HMAC under the node's index
/// key), so the store never holds a code that could be replayed.
fn code_key(state: &AppState, realm: &str, canonical: &str) -> String {
    let h = state.secrets.sealer.blind_index("guardian_code", &format!("{realm}\0{canonical}"));
    format!("guardian-code:{realm}:{h}")
}

/// The one live code of an account (a new code replaces it).
fn user_key(realm: &str, user_id: &str) -> String {
    format!("guardian-user:{realm}:{user_id}")
}

fn name_index(state: &AppState, realm: &str, name: &str) -> String {
    state.secrets.sealer.blind_index("guardian_name", &format!("{realm}\0{}", super::normalize_name(name)))
}

/// What a code stands for.
#[derive(Serialize, Deserialize)]
struct Pending {
    /// The minor's account.
    user_id: String,
    /// Blind index of the ID number the registry matched.
    id_index: String,
    /// Keyed hash of the matched name.
    name_index: String,
    /// When, and by which verifier, the registry matched.
    checked_at: i64,
    method: String,
}

/// The registry matched a minor: returns the code to show them (once).
pub async fn issue(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    id_index: &str,
    name: &str,
    method: &str,
) -> Result<String> {
    let r = realm.name.as_str();
    let shown = new_code()?;
    let canonical = normalize_code(&shown).unwrap_or_default();
    let key = code_key(state, r, &canonical);
    if let Some(old) = state.eph.take(&user_key(r, user_id)).await? {
        state.eph.delete(&old).await?;
    }
    let pending = Pending {
        user_id: user_id.to_string(),
        id_index: id_index.to_string(),
        name_index: name_index(state, r, name),
        checked_at: now(),
        method: method.to_string(),
    };
    let value = serde_json::to_string(&pending).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    state.eph.put(&key, &value, CODE_SECS).await?;
    state.eph.put(&user_key(r, user_id), &key, CODE_SECS).await?;
    Ok(shown)
}

/// What a guardian's confirmation came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// The minor's account is L3 now.
    Confirmed,
    /// The guardian is not real-name verified (L3) in this realm.
    NotVerified,
    /// The guardian is not an adult by their own proven ID number.
    NotAdult,
    /// No such code (wrong, expired, used): this many tries left today.
    WrongCode(u32),
    /// The code is right but the minor's name or number is not the one it
    /// was given for: this many tries left today.
    Mismatch(u32),
    /// Too many failed tries today.
    Limited,
    /// Another account proved the minor's number meanwhile.
    Taken,
}

fn day() -> i64 {
    now() / 86_400
}

/// The guardian `guardian_id` confirms the minor the code was given to.
/// `minor_id` is the normalised ID number the guardian typed, `relationship`
/// one of `RELATIONSHIPS`; the guardian consented (Art. 31) at `consent_at`.
#[allow(clippy::too_many_arguments)]
pub async fn confirm(
    state: &AppState,
    realm: &Realm,
    guardian_id: &str,
    code: &str,
    minor_id: &str,
    minor_name: &str,
    relationship: &str,
    consent_at: i64,
    ip: Option<&str>,
) -> Result<Confirmed> {
    let r = realm.name.as_str();
    let masked = crate::identity::mask_id(minor_id);
    let ev = |outcome: &'static str, detail: serde_json::Value| {
        Event::new(r, "realname.guardian", outcome).actor(guardian_id).ip(ip).detail(detail)
    };
    // The guardian: L3 or above here, and an adult by their own number.
    let Some(g) = super::proven(state, r, guardian_id).await? else {
        audit::record(state, ev("failure", json!({ "reason": "guardian not verified", "id_number": masked }))).await;
        return Ok(Confirmed::NotVerified);
    };
    if super::rank(&g.level) < 3 {
        audit::record(state, ev("failure", json!({ "reason": "guardian not verified", "id_number": masked }))).await;
        return Ok(Confirmed::NotVerified);
    }
    let today = chrono::Utc::now().date_naive();
    let adult = crate::identity::ResidentId::parse(&g.id_number, today)
        .is_ok_and(|id| age_on(id.birth_date(), today) >= ADULT_AGE);
    if !adult {
        audit::record(state, ev("failure", json!({ "reason": "guardian not an adult", "id_number": masked }))).await;
        return Ok(Confirmed::NotAdult);
    }
    let minor_index = super::id_index(state, minor_id);
    let limit = realm.settings.realname.failures_per_day.max(1) as i64;
    let user_key_ = format!("gd-fail:{r}:user:{guardian_id}:{}", day());
    let id_key = format!("gd-fail:{r}:id:{minor_index}:{}", day());
    let failures = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let so_far = failures(state.eph.get(&user_key_).await?).max(failures(state.eph.get(&id_key).await?));
    if so_far >= limit {
        audit::record(state, ev("failure", json!({ "reason": "limited", "id_number": masked }))).await;
        return Ok(Confirmed::Limited);
    }
    let failed = |reason: &'static str| {
        let (user_key_, id_key) = (user_key_.clone(), id_key.clone());
        let masked = masked.clone();
        async move {
            let a = state.eph.incr(&user_key_, 86_400).await?;
            let b = state.eph.incr(&id_key, 86_400).await?;
            audit::record(state, ev("failure", json!({ "reason": reason, "id_number": masked }))).await;
            Ok::<u32, crate::error::Error>((limit - a.max(b)).max(0) as u32)
        }
    };
    let key = normalize_code(code).map(|c| code_key(state, r, &c));
    let pending = match &key {
        Some(k) => state.eph.get(k).await?.and_then(|v| serde_json::from_str::<Pending>(&v).ok()),
        None => None,
    };
    let (Some(key), Some(pending)) = (key, pending) else {
        return Ok(Confirmed::WrongCode(failed("wrong code").await?));
    };
    let same_number = random::ct_eq(pending.id_index.as_bytes(), minor_index.as_bytes());
    let same_name = random::ct_eq(pending.name_index.as_bytes(), name_index(state, r, minor_name).as_bytes());
    if !(same_number && same_name) {
        return Ok(Confirmed::Mismatch(failed("name or number not those of the code").await?));
    }
    // Used once: whoever takes it first.
    if state.eph.take(&key).await?.is_none() {
        return Ok(Confirmed::WrongCode(failed("wrong code").await?));
    }
    state.eph.delete(&user_key(r, &pending.user_id)).await?;
    let minor = pending.user_id.as_str();
    let active = crate::store::users::get(&state.db, r, minor).await?.is_some_and(|u| u.status == "active");
    if !active {
        audit::record(state, ev("failure", json!({ "reason": "minor's account not active", "id_number": masked })))
            .await;
        return Ok(Confirmed::WrongCode((limit - so_far).max(0) as u32));
    }
    if let Some(holder) = store::holder_of(&state.db, r, &minor_index).await?
        && holder.user_id != minor
    {
        audit::record(state, ev("failure", json!({ "reason": "taken", "id_number": masked }))).await;
        return Ok(Confirmed::Taken);
    }
    let t = now();
    let aad = |what: &str| super::proof_aad(r, minor, what);
    let evidence = json!([{
        "type": "electronic_record",
        "check_details": [{ "check_method": "data", "txn": random::token(12)? }],
        "time": super::iso(pending.checked_at),
        "record": { "type": "population_register", "source": { "name": if pending.method == "http" { "external verification service" } else { "population registry" } } },
    }]);
    let proof = store::ProofRecord {
        realm: r.to_string(),
        user_id: minor.to_string(),
        id_index: minor_index.clone(),
        id_sealed: state.secrets.sealer.seal(minor_id, &aad("id"))?,
        name_sealed: state.secrets.sealer.seal(&super::normalize_name(minor_name), &aad("name"))?,
        level: "L3".into(),
        method: pending.method.clone(),
        evidence: evidence.to_string(),
        verified_at: t,
        consent_at,
    };
    let txn = crate::store::begin_write(&state.db).await?;
    if store::proof_of(&txn, r, minor).await?.is_some() {
        store::delete_proof(&txn, r, minor).await?;
    }
    if store::insert_proof(&txn, proof).await.is_err() {
        drop(txn);
        audit::record(state, ev("failure", json!({ "reason": "taken", "id_number": masked }))).await;
        return Ok(Confirmed::Taken);
    }
    store::insert_guardian(
        &txn,
        store::GuardianRecord {
            id: uuid::Uuid::new_v4().to_string(),
            realm: r.to_string(),
            minor_user_id: minor.to_string(),
            guardian_user_id: guardian_id.to_string(),
            relationship: relationship.to_string(),
            consent_at,
            confirmed_at: t,
        },
    )
    .await?;
    txn.commit().await?;
    crate::authn::session::set_level_of_user(state, realm, minor, "L3").await?;
    audit::record(
        state,
        ev("success", json!({ "minor": minor, "relationship": relationship, "id_number": masked, "pipl": "Art. 31" })),
    )
    .await;
    audit::record(
        state,
        Event::new(r, "realname.verify", "success").actor(minor).detail(json!({
            "level": "L3", "id_number": masked, "guardian": guardian_id, "relationship": relationship,
            "consent_at": consent_at,
        })),
    )
    .await;
    Ok(Confirmed::Confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fifty_bits_and_forgive_typing() {
        let c = new_code().expect("rng");
        assert_eq!(c.len(), 11);
        let n = normalize_code(&c).expect("its own code");
        assert_eq!(n.len(), 10);
        assert_eq!(normalize_code(&format!(" {} ", c.to_lowercase().replace('-', " "))).as_deref(), Some(n.as_str()));
        assert_eq!(normalize_code("OIL23-45678").as_deref(), Some("0112345678"));
        assert_eq!(normalize_code("ABCDE-FGHJ"), None);
        assert_eq!(normalize_code("ABCDE-FGHJU"), None, "U is not in the alphabet");
        assert_ne!(new_code().expect("rng"), new_code().expect("rng"));
    }

    #[test]
    fn ages() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("date");
        assert_eq!(age_on(d(2012, 6, 1), d(2026, 5, 31)), 13);
        assert_eq!(age_on(d(2012, 6, 1), d(2026, 6, 1)), 14);
    }
}
