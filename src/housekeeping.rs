//! The housekeeping job (`housekeeping_secs`, every node; deleting twice is
//! harmless): what `store::housekeeping` removes, for every realm.
use crate::state::AppState;
use crate::store::housekeeping::{self, Pruned};

/// One run at `now`. Errors are logged and the next table is tried.
pub async fn run(state: &AppState, now: i64) -> Pruned {
    let mut p = Pruned::default();
    let before = now - (state.settings.record_retention_days as i64) * 86_400;
    for realm in state.realms.names() {
        let absolute = state.realms.get(&realm).map(|r| r.settings.session.absolute_secs).unwrap_or(86_400);
        match housekeeping::refresh_tokens(&state.db, &realm, now, absolute).await {
            Ok(n) => p.refresh_tokens += n,
            Err(e) => tracing::warn!(realm, "removing dead refresh tokens failed: {e}"),
        }
        match housekeeping::sessions(&state.db, &realm, before).await {
            Ok(n) => p.sessions += n,
            Err(e) => tracing::warn!(realm, "removing ended sessions failed: {e}"),
        }
    }
    match housekeeping::deliveries(&state.db, before).await {
        Ok((d, a)) => {
            p.deliveries += d;
            p.attempts += a;
        }
        Err(e) => tracing::warn!("removing finished logout deliveries failed: {e}"),
    }
    match housekeeping::registry_changes(&state.db, before).await {
        Ok(n) => p.registry_changes += n,
        Err(e) => tracing::warn!("removing applied registry changes failed: {e}"),
    }
    if p.total() > 0 {
        tracing::info!(
            refresh_tokens = p.refresh_tokens,
            sessions = p.sessions,
            logout_deliveries = p.deliveries,
            logout_attempts = p.attempts,
            registry_changes = p.registry_changes,
            "housekeeping removed records no longer needed"
        );
    }
    p
}
