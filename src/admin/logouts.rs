//! The operator's view of back-channel logout: each delivery of a logout
//! token to a portal (per ended session), its state and every attempt.
use serde_json::{Value, json};

use super::Problem;
use crate::state::AppState;
use crate::store::logout::{self as outbox, Filter};

pub struct Query<'a> {
    pub client_id: Option<&'a str>,
    pub state: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub limit: Option<u64>,
}

/// Deliveries of a realm, newest first, with their attempts.
pub async fn deliveries(state: &AppState, realm: &str, q: &Query<'_>) -> Result<Value, Problem> {
    if state.realms.get(realm).is_none() {
        return Err(Problem::not_found(format!("realm {realm}")));
    }
    if let Some(s) = q.state
        && ![outbox::PENDING, outbox::DELIVERED, outbox::FAILED].contains(&s)
    {
        return Err(Problem::new(400, "invalid_state", "state is one of pending, delivered, failed".to_string()));
    }
    let filter = Filter {
        realm,
        client_id: q.client_id,
        state: q.state,
        user_id: q.user_id,
        session_id: q.session_id,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = outbox::search(&state.db, &filter).await?;
    let attempts = outbox::attempts_of(&state.db, rows.iter().map(|r| r.id.clone()).collect()).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let tries: Vec<Value> = attempts
                .iter()
                .filter(|a| a.delivery_id == r.id)
                .map(|a| json!({ "n": a.n, "at": a.at, "duration_ms": a.duration_ms, "status": a.status, "error": a.error }))
                .collect();
            json!({
                "id": r.id, "client_id": r.client_id, "session_id": r.session_id, "user_id": r.user_id,
                "reason": r.reason, "state": r.state, "attempts": r.attempts, "created_at": r.created_at,
                "next_attempt_at": (r.state == outbox::PENDING).then_some(r.next_attempt_at),
                "deadline": r.deadline, "last_status": r.last_status, "last_error": r.last_error,
                "finished_at": r.finished_at, "attempt_log": tries,
            })
        })
        .collect();
    Ok(json!({ "items": items }))
}
