//! Sessions that end by themselves: a periodic job finds live sessions past
//! their realm's absolute lifetime (`session.absolute_secs`, fixed at
//! sign-in as `expires_at`) or idle lifetime (`session.idle_secs` since
//! `last_seen_at`) and ends them through `session::end_one`, so their
//! portals get logout tokens and their refresh tokens are revoked. Run by
//! every node: a session ends once (the UPDATE is conditional), so nothing
//! is sent twice.
use futures_util::StreamExt;

use crate::authn::session;
use crate::error::Result;
use crate::state::AppState;
use crate::store::{now, sessions};

/// Sessions ended by one query's worth of work.
const BATCH: u64 = 500;

/// Ends the sessions of `realm` past their lifetimes; returns how many.
pub async fn sweep(state: &AppState, realm: &str) -> Result<usize> {
    let Some(r) = state.realms.get(realm) else { return Ok(0) };
    let idle = r.settings.session.idle_secs as i64;
    let mut total = 0;
    loop {
        let t = now();
        let due = sessions::past_lifetime(&state.db, realm, t, t - idle, BATCH).await?;
        let n = due.len();
        let ended: Vec<Result<bool>> = futures_util::stream::iter(due)
            .map(|s| async move {
                let reason = if s.expires_at <= t { "expired" } else { "idle" };
                session::end_one(state, realm, &s, reason).await
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for e in ended {
            if e? {
                total += 1;
            }
        }
        if (n as u64) < BATCH {
            return Ok(total);
        }
    }
}

/// One pass over every realm (the background job).
pub async fn sweep_all(state: &AppState) {
    for realm in state.realms.names() {
        match sweep(state, &realm).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(realm, sessions = n, "expired sessions ended"),
            Err(e) => tracing::warn!(realm, "ending expired sessions failed: {e}"),
        }
    }
}
