//! Verifiers behind one interface, chosen per realm: `registry` (the
//! imported population registry) and `http` (an external verification
//! service: HMAC-SHA256-signed request and/or mutual TLS, timeout,
//! retries, and a circuit breaker so a dead service costs citizens no
//! waiting).
use serde_json::json;

use crate::crypto::random;
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::realname as store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Match,
    NoMatch,
    /// The registry knows the number, for a person who died.
    Deceased,
    Unavailable,
}

/// Associated data of a sealed column of a registry row (table, column,
/// the row's key), as the import writes it.
pub fn registry_aad(table: &str, column: &str, key: &str) -> Vec<u8> {
    crate::registry::aad(table, column, key)
}

/// The AAD of a registry person's sealed name.
pub fn registry_name_aad(id_index: &str) -> Vec<u8> {
    registry_aad("registry_persons", "name_sealed", id_index)
}

pub async fn check(state: &AppState, realm: &Realm, id: &str, index: &str, name: &str) -> Result<Check> {
    match realm.settings.realname.verifier.as_str() {
        "http" => Ok(http(state, id, name).await),
        _ => registry(state, index, name).await,
    }
}

async fn registry(state: &AppState, index: &str, name: &str) -> Result<Check> {
    let Some(row) = store::registry_person(&state.db, index).await? else {
        return Ok(Check::NoMatch);
    };
    let known = state.secrets.sealer.open(&row.name_sealed, &registry_name_aad(index))?;
    if !random::ct_eq(super::normalize_name(&known).as_bytes(), name.as_bytes()) {
        return Ok(Check::NoMatch);
    }
    Ok(if row.status == "deceased" { Check::Deceased } else { Check::Match })
}

/// `POST {verifier_url}` with `{"id_number", "name"}` (signed and/or over
/// mutual TLS, see `transport`); answer `{"match": true|false,
/// "deceased"?: bool}`. Retried; a call that fails after its retries
/// counts toward the node's circuit breaker.
async fn http(state: &AppState, id: &str, name: &str) -> Check {
    let s = &state.settings;
    let Some(svc) = state.services.verifier.as_ref() else {
        tracing::warn!("a realm uses the http verifier, but this node has no verifier_url");
        return Check::Unavailable;
    };
    if state.services.verifier_circuit_open() {
        return Check::Unavailable;
    }
    let body = json!({ "id_number": id, "name": name }).to_string();
    for attempt in 0..=s.verifier_retries {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
        }
        let answer = svc.post(&svc.url, &body, s.verifier_timeout_ms).await;
        if let Some(a) = answer
            && let Some(m) = a.get("match").and_then(|m| m.as_bool())
        {
            state.services.verifier_answered();
            return match (m, a.get("deceased").and_then(|d| d.as_bool()).unwrap_or(false)) {
                (true, true) => Check::Deceased,
                (true, false) => Check::Match,
                _ => Check::NoMatch,
            };
        }
    }
    state.services.verifier_failed();
    Check::Unavailable
}
