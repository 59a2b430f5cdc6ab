//! The audit log: who did what, when, from where, and how it ended. Events
//! name people by their internal id and never carry secrets or unmasked
//! personal data. (The tamper-evident chain arrives with the operators
//! issue; the event vocabulary and the group commit start here.)
//!
//! An event is committed before the response it describes is sent: the
//! request waits for its write. Concurrent requests share one INSERT (group
//! commit), so auditing every token stays cheap under load.
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;
use crate::store::Db;
use crate::store::audit::{self as table, EventRow};

/// Most events written by one INSERT.
const BATCH: usize = 256;

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

    fn row(self) -> EventRow {
        EventRow {
            realm: self.realm.to_string(),
            at: crate::store::now(),
            kind: self.kind.to_string(),
            outcome: self.outcome.to_string(),
            actor: self.actor.map(str::to_string),
            client_id: self.client.map(str::to_string),
            ip: self.ip.map(str::to_string),
            detail: self.detail.to_string(),
        }
    }
}

type Job = (EventRow, oneshot::Sender<bool>);

/// The group-commit writer of one node.
pub struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

impl AuditWriter {
    pub fn spawn(db: Db) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * BATCH);
        tokio::spawn(async move {
            let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut jobs, BATCH).await > 0 {
                let (rows, acks): (Vec<EventRow>, Vec<oneshot::Sender<bool>>) = jobs.drain(..).unzip();
                let n = rows.len();
                let ok = match table::append_many(&db, rows).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(events = n, "audit events not written: {e}");
                        false
                    }
                };
                for ack in acks {
                    let _ = ack.send(ok);
                }
            }
        });
        AuditWriter { tx }
    }
}

/// Appends an event and waits until it is committed. A failure to write is
/// logged loudly; the request it describes has already been decided.
pub async fn record(state: &AppState, e: Event<'_>) {
    let (ack, done) = oneshot::channel();
    let row = e.row();
    match state.audit.tx.send((row, ack)).await {
        Ok(()) => {
            let _ = done.await;
        }
        Err(mpsc::error::SendError((row, _))) => write_now(&state.db, row).await,
    }
}

/// Appends one event directly (CLI commands, which have no writer).
pub async fn append(db: &Db, e: Event<'_>) {
    write_now(db, e.row()).await;
}

async fn write_now(db: &Db, row: EventRow) {
    let kind = row.kind.clone();
    if let Err(err) = table::append_many(db, vec![row]).await {
        tracing::error!(kind, "audit event not written: {err}");
    }
}
