//! Ending SSO sessions and telling the portals (OpenID Connect Back-Channel
//! Logout 1.0).
//!
//! Every path that ends a session goes through `authn::session::end_one`,
//! which calls `end_and_enqueue` here: in one transaction the session row is
//! ended and a row per portal that took part and registered a
//! `backchannel_logout_uri` is put in the outbox (`logout_deliveries`). The
//! citizen's response waits for that commit only; delivery is the worker's
//! (`worker.rs`): every node claims due rows under a lease, POSTs a freshly
//! signed logout token (`token.rs`) with a short timeout, retries with
//! back-off until the realm's retry window closes, and records every
//! attempt. `expiry.rs` ends sessions past their lifetimes the same way;
//! `person.rs` is what ending all of a person's sessions does to their
//! tokens.
use serde_json::json;

use crate::audit::{self, Event};
use crate::crypto::random;
use crate::error::Result;
use crate::state::AppState;
use crate::store::logout::{self as outbox, DeliveryRecord};
use crate::store::{now, sessions};

pub mod expiry;
pub mod person;
pub mod token;
pub mod worker;

/// The `events` member of a logout token.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What ending a session did.
#[derive(Clone, Debug, Default)]
pub struct Ended {
    pub user_id: String,
    /// Portals that took part in the session.
    pub clients: Vec<String>,
    /// Those of them that get a logout token.
    pub notified: Vec<String>,
}

/// Ends session `session_id` of `realm` if it is live and enqueues, in the
/// same transaction, one delivery per portal that took part and registered
/// a `backchannel_logout_uri`; audits it and wakes this node's worker.
/// Returns `None` when the session was already ended (nothing is sent
/// twice). Callers go through `authn::session::end_one`, which also revokes
/// the session's refresh tokens and drops its cache entry.
pub async fn end_and_enqueue(state: &AppState, realm: &str, session_id: &str, reason: &str) -> Result<Option<Ended>> {
    let t = now();
    let txn = crate::store::begin_write(&state.db).await?;
    if !sessions::end(&txn, realm, session_id, reason, t).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let Some(row) = sessions::get(&txn, realm, session_id).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    let stored: Vec<String> = serde_json::from_str(&row.clients).unwrap_or_default();
    let clients = crate::authn::session::participants(&txn, realm, session_id, &stored).await?;
    let mut rows = Vec::new();
    if let Some(r) = state.realms.get(realm) {
        let deadline = t + r.settings.backchannel.retry_window_secs as i64;
        for client_id in &clients {
            let Some(client) = r.client(client_id) else { continue };
            let Some(uri) = &client.settings.backchannel_logout_uri else { continue };
            rows.push(DeliveryRecord {
                id: random::token(16)?,
                realm: realm.to_string(),
                client_id: client_id.clone(),
                session_id: session_id.to_string(),
                user_id: row.user_id.clone(),
                subject: crate::oidc::flow::subject_for(state, &r, client, &row.user_id),
                uri: uri.clone(),
                reason: reason.to_string(),
                state: outbox::PENDING.into(),
                attempts: 0,
                created_at: t,
                next_attempt_at: t,
                deadline,
                lease: None,
                lease_until: None,
                last_status: None,
                last_error: None,
                finished_at: None,
            });
        }
    }
    let notified: Vec<String> = rows.iter().map(|r| r.client_id.clone()).collect();
    outbox::insert_many(&txn, rows).await?;
    txn.commit().await?;
    if !notified.is_empty() {
        state.logout_wake.notify_one();
    }
    audit::record(
        state,
        Event::new(realm, "logout.session", "success").detail(json!({
            "user": row.user_id,
            "sid": session_id,
            "reason": reason,
            "portals": clients,
            "backchannel": notified,
        })),
    )
    .await;
    Ok(Some(Ended { user_id: row.user_id, clients, notified }))
}
