//! L4 (real person): after L3, a face match by an external service. civid
//! opens a session at the service with the proven name and number and the
//! URL to return to, sends the citizen there (the service's page does the
//! liveness check and the match), and on return asks the service for the
//! result — signed both ways like the verifier, the session bound to the
//! person who started it.
use serde_json::json;

use crate::audit::{self, Event};
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{now, realname as store};

const SESSION_SECS: u64 = 600;

fn key(realm: &str, session: &str) -> String {
    format!("face:{realm}:{session}")
}

/// Whether L4 can be reached on this node.
pub fn available(state: &AppState) -> bool {
    state.services.face.is_some()
}

fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// Opens a face session for an L3 person; the URL to send them to, or
/// `None` (not L3, or the service is unavailable or answered oddly).
pub async fn start(state: &AppState, realm: &Realm, user_id: &str, return_url: &str) -> Result<Option<String>> {
    let s = &state.settings;
    let Some(p) = super::proven(state, &realm.name, user_id).await? else {
        return Ok(None);
    };
    let Some(svc) = state.services.face.as_ref() else {
        return Ok(None);
    };
    if super::rank(&p.level) < 3 {
        return Ok(None);
    }
    let base = svc.url.trim_end_matches('/');
    let body = json!({ "id_number": p.id_number, "name": p.name, "return_url": return_url }).to_string();
    let Some(a) = svc.post(&format!("{base}/sessions"), &body, s.verifier_timeout_ms).await else {
        return Ok(None);
    };
    let (Some(session), Some(to)) = (a["session"].as_str(), a["url"].as_str()) else {
        return Ok(None);
    };
    // Only to the configured service: never an open redirect.
    if session.is_empty() || session.len() > 128 || !same_origin(to, base) {
        return Ok(None);
    }
    state.eph.put(&key(&realm.name, session), user_id, SESSION_SECS).await?;
    Ok(Some(to.to_string()))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    Verified,
    NoMatch,
    /// Unknown or expired session, or another person's.
    Expired,
    Unavailable,
}

/// The citizen is back: the service says whether the face matched.
pub async fn finish(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    session: &str,
    ip: Option<&str>,
) -> Result<Finished> {
    let s = &state.settings;
    if session.is_empty() || session.len() > 128 {
        return Ok(Finished::Expired);
    }
    match state.eph.take(&key(&realm.name, session)).await? {
        Some(owner) if owner == user_id => {}
        _ => return Ok(Finished::Expired),
    }
    let Some(svc) = state.services.face.as_ref() else {
        return Ok(Finished::Unavailable);
    };
    let base = svc.url.trim_end_matches('/');
    let url = format!(
        "{base}/sessions/{}/result",
        url::form_urlencoded::byte_serialize(session.as_bytes()).collect::<String>()
    );
    let Some(a) = svc.post(&url, "{}", s.verifier_timeout_ms).await else {
        return Ok(Finished::Unavailable);
    };
    let r = realm.name.as_str();
    if a["match"].as_bool() != Some(true) {
        audit::record(
            state,
            Event::new(r, "realname.face", "failure").actor(user_id).ip(ip).detail(json!({ "reason": "no match" })),
        )
        .await;
        return Ok(Finished::NoMatch);
    }
    let Some(mut p) = store::proof_of(&state.db, r, user_id).await? else {
        return Ok(Finished::Expired);
    };
    if super::rank(&p.level) < 4 {
        let mut evidence: serde_json::Value = serde_json::from_str(&p.evidence).unwrap_or_else(|_| json!([]));
        if let Some(list) = evidence.as_array_mut() {
            list.push(json!({
                "type": "electronic_record",
                "check_details": [{ "check_method": "bvr", "txn": session }],
                "time": chrono::DateTime::from_timestamp(now(), 0).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "record": { "type": "face_verification", "source": { "name": "face verification service" } },
            }));
        }
        p.level = "L4".into();
        p.evidence = evidence.to_string();
        p.verified_at = now();
        store::delete_proof(&state.db, r, user_id).await?;
        store::insert_proof(&state.db, p).await?;
        crate::authn::session::set_level_of_user(state, realm, user_id, "L4").await?;
    }
    audit::record(
        state,
        Event::new(r, "realname.face", "success").actor(user_id).ip(ip).detail(json!({ "level": "L4" })),
    )
    .await;
    Ok(Finished::Verified)
}
