//! Verifiers behind one interface, chosen per realm: `registry` (the
//! imported population registry) and `http` (an external verification
//! service: HMAC-SHA256-signed request, timeout, retries, and a circuit
//! breaker so a dead service costs citizens no waiting).
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use serde_json::json;

use crate::crypto::random;
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{now, realname as store};

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

/// Consecutive failures of the external service, and until when the
/// breaker stays open (per node).
static FAILURES: AtomicU32 = AtomicU32::new(0);
static OPEN_UNTIL: AtomicI64 = AtomicI64::new(0);
const BREAKER_AFTER: u32 = 5;
const BREAKER_SECS: i64 = 30;

/// `POST {verifier_url}` with `{"id_number", "name"}`; headers
/// `x-civid-timestamp` and `x-civid-signature: hex(HMAC-SHA256(secret,
/// timestamp + "." + body))`; answer `{"match": true|false, "deceased"?: bool}`.
/// One JSON POST to an external service, signed: `x-civid-timestamp` and
/// `x-civid-signature` = hex HMAC-SHA256 of `{timestamp}.{body}`. The
/// answer's JSON, or `None` when it failed or refused.
pub async fn signed_post(
    state: &AppState,
    url: &str,
    secret: &str,
    body: &str,
    timeout_ms: u64,
) -> Option<serde_json::Value> {
    let ts = now().to_string();
    let sig = crate::crypto::seal::hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes());
    let sig: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    let sent = state
        .http
        .post(url)
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .header("content-type", "application/json")
        .header("x-civid-timestamp", ts)
        .header("x-civid-signature", sig)
        .body(body.to_string())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
        Ok(r) => {
            tracing::warn!(status = %r.status(), "external service refused the request");
            None
        }
        Err(_) => None,
    }
}

async fn http(state: &AppState, id: &str, name: &str) -> Check {
    let s = &state.settings;
    if s.verifier_url.is_empty() || now() < OPEN_UNTIL.load(Ordering::Relaxed) {
        return Check::Unavailable;
    }
    let body = json!({ "id_number": id, "name": name }).to_string();
    for attempt in 0..=s.verifier_retries {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
        }
        let answer = signed_post(state, &s.verifier_url, &s.verifier_secret, &body, s.verifier_timeout_ms).await;
        if let Some(a) = answer
            && let Some(m) = a.get("match").and_then(|m| m.as_bool())
        {
            FAILURES.store(0, Ordering::Relaxed);
            return match (m, a.get("deceased").and_then(|d| d.as_bool()).unwrap_or(false)) {
                (true, true) => Check::Deceased,
                (true, false) => Check::Match,
                _ => Check::NoMatch,
            };
        }
    }
    if FAILURES.fetch_add(1, Ordering::Relaxed) + 1 >= BREAKER_AFTER {
        OPEN_UNTIL.store(now() + BREAKER_SECS, Ordering::Relaxed);
        FAILURES.store(0, Ordering::Relaxed);
        tracing::warn!("verification service failing: circuit open for {BREAKER_SECS} s");
    }
    Check::Unavailable
}
