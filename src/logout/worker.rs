//! The delivery worker of one node. It claims due outbox rows under a lease
//! (an atomic conditional UPDATE, so two nodes never send the same attempt
//! at once; a node that dies mid-attempt loses its lease after `LEASE_SECS`
//! and another node retries), delivers up to `logout_concurrency` at a time,
//! each with its own short timeout, so a slow or dead portal holds one
//! permit and nothing else; results go to a writer task that records them
//! in batches (one INSERT of attempts, one UPDATE for the delivered rows).
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::audit::{self, Event};
use crate::crypto::random;
use crate::state::SharedState;
use crate::store::logout::{self as outbox, AttemptRecord, DeliveryRecord};
use crate::store::now;

/// A claim lasts this long: longer than any attempt plus its recording.
const LEASE_SECS: i64 = 60;
/// An attempt never outlives its lease, whatever `logout_timeout_ms` says.
const MAX_TIMEOUT_MS: u64 = 30_000;
/// Rows claimed by one query at most.
const CLAIM_BATCH: usize = 256;
/// How often a node looks for rows due (retries, rows of other nodes)
/// when nothing woke it.
const POLL: Duration = Duration::from_secs(1);

/// How one attempt went.
struct Outcome {
    row: DeliveryRecord,
    lease: String,
    at: i64,
    duration_ms: i32,
    status: Option<i32>,
    error: Option<String>,
    /// Nothing will change by retrying (the portal is no longer registered).
    permanent: bool,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// Starts the worker (claiming and delivering) and its writer.
pub fn spawn(state: SharedState) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<Outcome>(4 * CLAIM_BATCH);
    let writer = tokio::spawn(write_outcomes(state.clone(), rx));
    let worker = tokio::spawn(run(state, tx));
    vec![worker, writer]
}

async fn run(state: SharedState, tx: mpsc::Sender<Outcome>) {
    let permits = Arc::new(Semaphore::new(state.settings.logout_concurrency.max(1)));
    loop {
        let Ok(first) = permits.clone().acquire_owned().await else { return };
        let free = (permits.available_permits() + 1).min(CLAIM_BATCH);
        let lease = match random::token(12) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("logout worker: no randomness: {e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let t = now();
        let rows = match outbox::claim(&state.db, &lease, t, t + LEASE_SECS, free as u64).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("logout worker: claiming deliveries failed: {e}");
                drop(first);
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if rows.is_empty() {
            drop(first);
            tokio::select! {
                _ = state.logout_wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let mut first = Some(first);
        for row in rows {
            let permit = match first.take() {
                Some(p) => p,
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (s, tx, lease) = (state.clone(), tx.clone(), lease.clone());
            tokio::spawn(async move {
                let outcome = attempt(&s, row, lease).await;
                drop(permit);
                let _ = tx.send(outcome).await;
            });
        }
    }
}

/// One attempt: a fresh logout token, one POST, a short timeout.
async fn attempt(state: &SharedState, row: DeliveryRecord, lease: String) -> Outcome {
    let at = now();
    let start = Instant::now();
    let mut out = Outcome { row, lease, at, duration_ms: 0, status: None, error: None, permanent: false };
    let realm = state.realms.get(&out.row.realm);
    let client = realm.as_ref().and_then(|r| r.client(&out.row.client_id).cloned());
    let (Some(realm), Some(client)) = (realm, client) else {
        out.error = Some("the portal is no longer registered or is disabled".into());
        out.permanent = true;
        return out;
    };
    let token = match super::token::logout_token(&realm, &client, &out.row.subject, &out.row.session_id, at) {
        Ok(t) => t,
        Err(e) => {
            out.error = Some(format!("signing the logout token failed: {e}"));
            return out;
        }
    };
    let sent = state
        .http
        .post(&out.row.uri)
        .timeout(Duration::from_millis(state.settings.logout_timeout_ms.clamp(1, MAX_TIMEOUT_MS)))
        .header(reqwest::header::CACHE_CONTROL, "no-store")
        .form(&[("logout_token", token.as_str())])
        .send()
        .await;
    out.duration_ms = start.elapsed().as_millis().min(i32::MAX as u128) as i32;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            out.status = Some(status as i32);
            // Drain (a little of) the body so the connection can be reused.
            let _ = tokio::time::timeout(Duration::from_millis(200), resp.bytes()).await;
            if !(status == 200 || status == 204) {
                out.error = Some(format!("HTTP {status}"));
            }
        }
        Err(e) if e.is_timeout() => {
            out.error =
                Some(format!("no answer within {} ms", state.settings.logout_timeout_ms.clamp(1, MAX_TIMEOUT_MS)));
        }
        Err(e) if e.is_connect() => out.error = Some("connection failed".into()),
        Err(e) => out.error = Some(format!("request failed: {}", e.without_url())),
    }
    out
}

/// The wait before the next try after `attempts` failed ones: doubling from
/// `initial` up to `max`, with jitter (half to all of it) so portals that
/// come back are not hit by every node at the same second.
pub fn backoff(attempts: i32, initial: u64, max: u64) -> i64 {
    let exp = attempts.clamp(1, 30) as u32 - 1;
    let full = initial.max(1).saturating_mul(1u64 << exp.min(20)).min(max.max(initial.max(1)));
    let mut b = [0u8; 8];
    let r = if random::fill(&mut b).is_ok() { u64::from_le_bytes(b) } else { 0 };
    let half = full / 2;
    (full - half + r % (half + 1)).max(1) as i64
}

async fn write_outcomes(state: SharedState, mut rx: mpsc::Receiver<Outcome>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let outcomes = std::mem::replace(&mut batch, Vec::with_capacity(512));
        if let Err(e) = record(&state, outcomes).await {
            // The leases run out and another try follows.
            tracing::warn!("logout worker: recording delivery results failed: {e}");
        }
    }
}

async fn record(state: &SharedState, outcomes: Vec<Outcome>) -> Result<(), sea_orm::DbErr> {
    let attempts: Vec<AttemptRecord> = outcomes
        .iter()
        .map(|o| AttemptRecord {
            id: 0,
            delivery_id: o.row.id.clone(),
            n: o.row.attempts + 1,
            at: o.at,
            duration_ms: o.duration_ms,
            status: o.status,
            error: o.error.clone(),
        })
        .collect();
    outbox::record_attempts(&state.db, attempts).await?;
    let t = now();
    // Delivered rows: one UPDATE per (lease, status).
    let mut groups: std::collections::BTreeMap<(String, i32), Vec<String>> = Default::default();
    for o in outcomes.iter().filter(|o| o.delivered()) {
        groups.entry((o.lease.clone(), o.status.unwrap_or(200))).or_default().push(o.row.id.clone());
    }
    for ((lease, status), ids) in groups {
        outbox::mark_delivered(&state.db, ids, &lease, status, t).await?;
    }
    let mut given_up = Vec::new();
    for o in outcomes.iter().filter(|o| !o.delivered()) {
        let settings = state.realms.get(&o.row.realm).map(|r| r.settings.backchannel.clone()).unwrap_or_default();
        let next = t + backoff(o.row.attempts + 1, settings.retry_initial_secs, settings.retry_max_secs);
        let next = (!o.permanent && next <= o.row.deadline).then_some(next);
        let error = o.error.as_deref().unwrap_or_default();
        if outbox::mark_failed(&state.db, &o.row.id, &o.lease, o.status, error, next, t).await? > 0 && next.is_none() {
            given_up.push(o);
        }
        if next.is_some() {
            metrics::counter!("civid_logout_deliveries_total", "outcome" => "retry").increment(1);
        }
    }
    let delivered: Vec<&Outcome> = outcomes.iter().filter(|o| o.delivered()).collect();
    metrics::counter!("civid_logout_deliveries_total", "outcome" => "delivered").increment(delivered.len() as u64);
    metrics::counter!("civid_logout_deliveries_total", "outcome" => "given_up").increment(given_up.len() as u64);
    for o in &given_up {
        tracing::warn!(
            realm = o.row.realm,
            client = o.row.client_id,
            attempts = o.row.attempts + 1,
            "back-channel logout given up: {}",
            o.error.as_deref().unwrap_or_default()
        );
    }
    // The summary per delivery, in one group commit of the audit writer.
    let audits = delivered
        .iter()
        .map(|o| (o, "logout.backchannel.delivered", "success"))
        .chain(given_up.iter().map(|o| (o, "logout.backchannel.given_up", "failure")));
    futures_util::future::join_all(audits.map(|(o, kind, outcome)| {
        audit::record(
            state,
            Event::new(&o.row.realm, kind, outcome).client(&o.row.client_id).detail(json!({
                "user": o.row.user_id,
                "sid": o.row.session_id,
                "delivery": o.row.id,
                "attempts": o.row.attempts + 1,
                "status": o.status,
                "error": o.error,
            })),
        )
    }))
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for _ in 0..200 {
            let b1 = backoff(1, 2, 300);
            assert!((1..=2).contains(&b1), "{b1}");
            let b3 = backoff(3, 2, 300);
            assert!((4..=8).contains(&b3), "{b3}");
            let b20 = backoff(20, 2, 300);
            assert!((150..=300).contains(&b20), "{b20}");
        }
        assert!(backoff(1, 1, 1) >= 1);
    }
}
