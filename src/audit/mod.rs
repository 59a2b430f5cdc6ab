//! The audit log: who did what, when, from where, and how it ended. Events
//! name people by their internal id and never carry secrets or unmasked
//! personal data. (The tamper-evident chain arrives with the operators
//! issue; the event vocabulary starts here.)
use serde_json::Value;

use crate::state::AppState;
use crate::store::audit as table;

pub struct Event<'a> {
    realm: &'a str,
    kind: &'static str,
    outcome: &'static str,
    actor: Option<&'a str>,
    client: Option<&'a str>,
    ip: Option<&'a str>,
    detail: Value,
}

impl<'a> Event<'a> {
    pub fn new(realm: &'a str, kind: &'static str, outcome: &'static str) -> Event<'a> {
        Event { realm, kind, outcome, actor: None, client: None, ip: None, detail: Value::Object(Default::default()) }
    }

    pub fn actor(mut self, actor: &'a str) -> Self {
        self.actor = Some(actor);
        self
    }

    pub fn client(mut self, client: &'a str) -> Self {
        self.client = Some(client);
        self
    }

    pub fn ip(mut self, ip: Option<&'a str>) -> Self {
        self.ip = ip;
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Appends an event. A failure to write is logged loudly; the request it
/// describes has already been decided.
pub async fn record(state: &AppState, e: Event<'_>) {
    append(&state.db, e).await;
}

pub async fn append(db: &crate::store::Db, e: Event<'_>) {
    let kind = e.kind;
    let r = table::append(
        db,
        table::NewEvent {
            realm: e.realm,
            kind: e.kind,
            outcome: e.outcome,
            actor: e.actor,
            client_id: e.client,
            ip: e.ip,
            detail: e.detail.to_string(),
        },
    )
    .await;
    if let Err(err) = r {
        tracing::error!(kind, "audit event not written: {err}");
    }
}
