//! The audit log: who did what, when, from where, and how it ended. Events
//! name people by their internal id and never carry secrets or unmasked
//! personal data.
//!
//! Durable: `record` returns once its entry is committed, so an entry is
//! written before the response it describes is sent. Concurrent requests
//! share one INSERT (group commit) made by the node's writer task.
//!
//! Tamper-evident without a global lock: each node appends to its own chain
//! per realm (an entry's hash covers its content and the previous entry's
//! hash), and checkpoints of all chain heads are signed with the realm's
//! audit key (`checkpoint`); `verify` checks both and names the first broken
//! entry.
use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::random;
use crate::state::AppState;
use crate::store::Db;
use crate::store::audit::{self as table, EventRow};

pub mod checkpoint;
pub mod verify;

/// Most entries written by one INSERT.
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
            chain_id: String::new(),
            seq: 0,
            prev_hash: String::new(),
            hash: String::new(),
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

/// The hash of an entry: SHA-256 over its place in the chain, its content
/// and its predecessor's hash, as a canonical JSON array.
pub fn entry_hash(e: &EventRow) -> String {
    let canonical =
        json!([e.chain_id, e.seq, e.prev_hash, e.realm, e.at, e.kind, e.outcome, e.actor, e.client_id, e.ip, e.detail]);
    random::sha256_b64(canonical.to_string().as_bytes())
}

/// One node's chains, one per realm, extended only by the writer task.
struct Chains {
    id: String,
    heads: HashMap<String, (i64, String)>,
}

impl Chains {
    fn new() -> Chains {
        Chains { id: new_chain_id(), heads: HashMap::new() }
    }

    fn link(&mut self, row: &mut EventRow) {
        let (seq, prev) = self.heads.get(&row.realm).cloned().unwrap_or((0, String::new()));
        row.chain_id = self.id.clone();
        row.seq = seq + 1;
        row.prev_hash = prev;
        row.hash = entry_hash(row);
        self.heads.insert(row.realm.clone(), (row.seq, row.hash.clone()));
    }
}

fn new_chain_id() -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    format!("{stamp}-{}", random::token(6).unwrap_or_else(|_| "node".into()))
}

/// A change a request commits together with its audit entry.
pub type Change = Box<
    dyn for<'c> FnOnce(
            &'c sea_orm::DatabaseTransaction,
        ) -> futures_util::future::BoxFuture<'c, Result<(), sea_orm::DbErr>>
        + Send,
>;

/// What a request commits with its audit entry.
enum Work {
    /// Code run inside the writer's transaction.
    Run(Change),
    /// Statements (inserts and updates that read nothing back). Alone in
    /// its batch on SQLite they go to the database in one command with the
    /// audit entry's INSERT: one hand-off to the connection's thread
    /// instead of one per statement.
    Statements(Vec<sea_orm::Statement>),
}

impl Work {
    async fn apply(self, txn: &sea_orm::DatabaseTransaction) -> Result<(), sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        match self {
            Work::Run(change) => change(txn).await,
            Work::Statements(statements) => {
                for s in statements {
                    txn.execute_raw(s).await?;
                }
                Ok(())
            }
        }
    }
}

/// Statements joined into one (SQLite runs the statements of one command
/// in order, binding the `?` parameters across them in turn).
fn joined(statements: Vec<sea_orm::Statement>) -> Option<sea_orm::Statement> {
    let first = statements.first()?;
    let backend = first.db_backend;
    let mut sql = Vec::with_capacity(statements.len());
    let mut values = Vec::new();
    for s in statements {
        sql.push(s.sql);
        if let Some(v) = s.values {
            values.extend(v.0);
        }
    }
    Some(sea_orm::Statement::from_sql_and_values(backend, sql.join(";\n"), values))
}

struct Job {
    row: EventRow,
    change: Option<Work>,
    /// The request the change is made for: its statements count to it.
    cost: Option<std::sync::Arc<crate::metrics::Cost>>,
    ack: oneshot::Sender<bool>,
}

/// The group-commit writer of one node.
pub struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

impl AuditWriter {
    pub fn spawn(db: Db) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * BATCH);
        tokio::spawn(async move {
            let mut chains = Chains::new();
            let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut jobs, BATCH).await > 0 {
                let batch = std::mem::replace(&mut jobs, Vec::with_capacity(BATCH));
                let n = batch.len();
                match write_batch(&db, &mut chains, batch).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(entries = n, "audit entries not written: {e}");
                        // Whether they were is unknown: continue on a new
                        // chain rather than risk a fork or a gap in this one.
                        chains = Chains::new();
                    }
                }
            }
        });
        AuditWriter { tx }
    }
}

/// One transaction for a batch: each request's change (in a savepoint, so
/// one failing change fails only its request; a change alone in its batch
/// needs none), then the audit entries of
/// the requests whose change held, linked into the chain, then one commit.
async fn write_batch(db: &Db, chains: &mut Chains, mut batch: Vec<Job>) -> Result<(), sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    if batch.len() == 1
        && db.get_database_backend() == sea_orm::DbBackend::Sqlite
        && matches!(batch[0].change, Some(Work::Statements(_)))
        && let Some(job) = batch.pop()
    {
        return write_alone_in_one_command(db, chains, job).await;
    }
    let txn = crate::store::begin_write(db).await?;
    let mut rows = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    let mut refused = Vec::new();
    let alone = batch.len() == 1;
    for job in batch {
        let held = match job.change {
            None => true,
            // Alone in its batch (most batches while the node is not
            // busy), a change needs no savepoint: if it fails, rolling
            // back the whole transaction undoes nothing else. Two
            // statements fewer per sign-in.
            Some(change) if alone => match crate::metrics::on_behalf(job.cost, change.apply(&txn)).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("a change with its audit entry failed: {e}");
                    let _ = txn.rollback().await;
                    let _ = job.ack.send(false);
                    return Ok(());
                }
            },
            Some(change) => {
                let sp = txn.begin().await?;
                match crate::metrics::on_behalf(job.cost, change.apply(&sp)).await {
                    Ok(()) => sp.commit().await.is_ok(),
                    Err(e) => {
                        tracing::warn!("a change with its audit entry failed: {e}");
                        let _ = sp.rollback().await;
                        false
                    }
                }
            }
        };
        if held {
            rows.push(job.row);
            acks.push(job.ack);
        } else {
            refused.push(job.ack);
        }
    }
    let saved = chains.heads.clone();
    for row in rows.iter_mut() {
        chains.link(row);
    }
    let result = async {
        table::append_many(&txn, rows).await?;
        txn.commit().await
    }
    .await;
    let ok = result.is_ok();
    if !ok {
        chains.heads = saved;
    }
    for ack in acks {
        let _ = ack.send(ok);
    }
    for ack in refused {
        let _ = ack.send(false);
    }
    result
}

/// A job alone in its batch, on SQLite, whose change is statements: the
/// change and the audit entry, inside their transaction, reach the database
/// in one command (`store::sqlite_write_in_one_command`: one hand-off to the
/// connection's thread instead of one per statement and two for BEGIN and
/// COMMIT). If it fails, nothing of it is kept and the chain's head stays
/// where it was.
async fn write_alone_in_one_command(db: &Db, chains: &mut Chains, job: Job) -> Result<(), sea_orm::DbErr> {
    let Job { mut row, change, cost, ack } = job;
    let mut statements = match change {
        Some(Work::Statements(s)) => s,
        _ => Vec::new(),
    };
    let saved = chains.heads.clone();
    chains.link(&mut row);
    statements.push(table::append_statement(db.get_database_backend(), vec![row]));
    let result = match joined(statements) {
        Some(one) => crate::metrics::on_behalf(cost, crate::store::sqlite_write_in_one_command(db, one)).await,
        None => Ok(()),
    };
    if let Err(e) = &result {
        tracing::warn!("a change with its audit entry failed: {e}");
        chains.heads = saved;
    }
    let _ = ack.send(result.is_ok());
    Ok(())
}

/// Appends an event and waits until it is committed. A failure to write is
/// logged loudly; the request it describes has already been decided.
pub async fn record(state: &AppState, e: Event<'_>) {
    let (ack, done) = oneshot::channel();
    match state.audit.tx.send(Job { row: e.row(), change: None, cost: None, ack }).await {
        Ok(()) => {
            let _ = done.await;
        }
        Err(mpsc::error::SendError(job)) => write_alone(&state.db, job.row).await,
    }
}

/// Commits `change` and its audit entry in one transaction, shared with the
/// other requests of the batch: the audit costs the request no commit of its
/// own. Returns whether both were committed.
pub async fn commit_with(state: &AppState, e: Event<'_>, change: Change) -> bool {
    commit_work(state, e, Work::Run(change)).await
}

/// As [`commit_with`], the change being statements that read nothing back
/// (built with the store's `*_statement` functions for the database's
/// backend): on SQLite, alone in its batch, they and the audit entry reach
/// the database in one command.
pub async fn commit_statements_with(state: &AppState, e: Event<'_>, statements: Vec<sea_orm::Statement>) -> bool {
    commit_work(state, e, Work::Statements(statements)).await
}

async fn commit_work(state: &AppState, e: Event<'_>, work: Work) -> bool {
    let (ack, done) = oneshot::channel();
    match state.audit.tx.send(Job { row: e.row(), change: Some(work), cost: crate::metrics::current_cost(), ack }).await
    {
        Ok(()) => done.await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Appends one event on a chain of its own (CLI commands, which have no
/// writer task).
pub async fn append(db: &Db, e: Event<'_>) {
    write_alone(db, e.row()).await;
}

async fn write_alone(db: &Db, mut row: EventRow) {
    Chains::new().link(&mut row);
    let kind = row.kind.clone();
    if let Err(err) = table::append_many(db, vec![row]).await {
        tracing::error!(kind, "audit entry not written: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ConnectionTrait;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::store::connect(&url, 2).await.expect("connect");
        crate::store::migrate(&db).await.expect("migrate");
        (dir, db)
    }

    fn job(kind: &'static str, change: Option<Change>) -> (Job, oneshot::Receiver<bool>) {
        work_job(kind, change.map(Work::Run))
    }

    fn work_job(kind: &'static str, change: Option<Work>) -> (Job, oneshot::Receiver<bool>) {
        let (ack, done) = oneshot::channel();
        (Job { row: Event::new("r", kind, "success").row(), change, cost: None, ack }, done)
    }

    fn statements(good: &[&str], bad: bool) -> Option<Work> {
        let backend = sea_orm::DbBackend::Sqlite;
        let mut s: Vec<_> =
            good.iter().map(|id| crate::store::users::touch_login_statement(backend, "r", id)).collect();
        if bad {
            s.push(sea_orm::Statement::from_string(backend, "INSERT INTO no_such_table VALUES (1)"));
        }
        Some(Work::Statements(s))
    }

    async fn last_login(db: &Db, id: &str) -> Option<i64> {
        crate::store::users::get(db, "r", id).await.expect("get").and_then(|u| u.last_login_at)
    }

    fn insert_user(id: &'static str) -> Change {
        Box::new(move |txn| Box::pin(async move { crate::store::users::insert(txn, "r", id, None, None).await }))
    }

    fn failing() -> Change {
        Box::new(|txn| {
            Box::pin(async move { txn.execute_unprepared("INSERT INTO no_such_table VALUES (1)").await.map(|_| ()) })
        })
    }

    async fn kinds(db: &Db) -> Vec<String> {
        let mut k: Vec<String> =
            table::list(db, "r", None, 100).await.expect("list").into_iter().map(|e| e.kind).collect();
        k.sort();
        k
    }

    #[tokio::test]
    async fn a_failing_change_fails_only_its_request_alone_or_in_a_batch() {
        let (_dir, db) = db().await;
        let mut chains = Chains::new();
        // Alone in its batch (no savepoint): refused, nothing written.
        let (j, done) = job("alone.bad", Some(failing()));
        write_batch(&db, &mut chains, vec![j]).await.expect("batch");
        assert!(!done.await.expect("ack"));
        assert!(kinds(&db).await.is_empty());
        // Alone and good: the change and its entry.
        let (j, done) = job("alone.good", Some(insert_user("u1")));
        write_batch(&db, &mut chains, vec![j]).await.expect("batch");
        assert!(done.await.expect("ack"));
        assert!(crate::store::users::get(&db, "r", "u1").await.expect("get").is_some());
        // In a batch: the failing one is refused, the others hold.
        let (a, ack_a) = job("batch.good", Some(insert_user("u2")));
        let (b, ack_b) = job("batch.bad", Some(failing()));
        let (c, ack_c) = job("batch.plain", None);
        write_batch(&db, &mut chains, vec![a, b, c]).await.expect("batch");
        assert!(ack_a.await.expect("ack") && !ack_b.await.expect("ack") && ack_c.await.expect("ack"));
        assert!(crate::store::users::get(&db, "r", "u2").await.expect("get").is_some());
        assert_eq!(kinds(&db).await, ["alone.good", "batch.good", "batch.plain"]);
        // No gap in the chain: the refused change took no place in it.
        assert_eq!(chains.heads.get("r").map(|h| h.0), Some(3));

        // Statements alone in their batch (one command with the entry on
        // SQLite): all or nothing.
        let (j, done) = work_job("statements.bad", statements(&["u1"], true));
        write_batch(&db, &mut chains, vec![j]).await.expect("batch");
        assert!(!done.await.expect("ack"));
        assert_eq!(last_login(&db, "u1").await, None, "the good statement before the bad one is undone");
        assert_eq!(chains.heads.get("r").map(|h| h.0), Some(3));
        let (j, done) = work_job("statements.good", statements(&["u1", "u2"], false));
        write_batch(&db, &mut chains, vec![j]).await.expect("batch");
        assert!(done.await.expect("ack"));
        assert!(last_login(&db, "u1").await.is_some() && last_login(&db, "u2").await.is_some());
        // In a batch with others, statement by statement in a savepoint.
        let (a, ack_a) = work_job("batch2.bad", statements(&[], true));
        let (b, ack_b) = job("batch2.plain", None);
        write_batch(&db, &mut chains, vec![a, b]).await.expect("batch");
        assert!(!ack_a.await.expect("ack") && ack_b.await.expect("ack"));
        assert_eq!(
            kinds(&db).await,
            ["alone.good", "batch.good", "batch.plain", "batch2.plain", "statements.good"],
            "entries of refused changes are not written"
        );
        assert_eq!(chains.heads.get("r").map(|h| h.0), Some(5));
        // The chain verifies: every entry links to the one before.
        let entries = table::list(&db, "r", None, 100).await.expect("list");
        assert!(entries.iter().all(|e| e.chain_id == chains.id), "one chain");
    }
}
