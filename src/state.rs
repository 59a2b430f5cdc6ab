//! Everything a request handler may use, built once at start.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::audit::AuditWriter;
use crate::config::Settings;
use crate::realm::cache::RealmCache;
use crate::secrets::Secrets;
use crate::store::Db;
use crate::store::ephemeral::Ephemeral;

/// A client's keys fetched from its `jwks_uri`, and when.
pub type FetchedJwks = (Arc<Vec<Value>>, Instant);

pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    /// The audit writer's connection. On SQLite one connection of its own,
    /// and the reads of every sign-in (the account, the portal's grant) go
    /// to it too: SQLite drops a connection's page cache whenever another
    /// connection has committed, so reads there find warm what the
    /// writer's own commits touched (docs/PERFORMANCE.md, "Password
    /// sign-in"). On PostgreSQL the pool itself.
    pub hot: Db,
    pub eph: Ephemeral,
    pub secrets: Secrets,
    pub realms: RealmCache,
    pub audit: AuditWriter,
    /// Where SMS and email leave.
    pub sms: crate::account::senders::Sender,
    pub email: crate::account::senders::Sender,
    /// Outbound HTTP (client `jwks_uri`s), with short timeouts.
    pub http: reqwest::Client,
    /// The external verification and face services (HMAC and/or mutual
    /// TLS), with the verifier's circuit breaker.
    pub services: crate::realname::transport::Services,
    /// Keys fetched from clients' `jwks_uri`, with when they were fetched.
    pub client_jwks: Mutex<HashMap<String, FetchedJwks>>,
    /// Wakes the cache refresher at once (a change was announced).
    pub refresh_now: tokio::sync::Notify,
    /// Wakes this node's back-channel logout worker (a session ended).
    pub logout_wake: tokio::sync::Notify,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Reloads realms whose generation changed; logs rather than fails.
    pub async fn refresh_realms(&self) {
        match self.realms.refresh(&self.settings, &self.db, &self.secrets.kek).await {
            Ok(names) if !names.is_empty() => tracing::debug!(?names, "realm cache reloaded"),
            Ok(_) => {}
            Err(e) => tracing::warn!("realm cache refresh failed: {e}"),
        }
    }

    /// After a change to realms, clients or keys: reload here and tell the
    /// other nodes.
    pub async fn announce_change(&self, realm: &str) {
        self.refresh_realms().await;
        if let Err(e) = self.eph.publish_invalidation(realm).await {
            tracing::warn!("could not announce a change of realm {realm}: {e}");
        }
    }
}
