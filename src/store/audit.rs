//! The audit log tables: hash-chained entries and signed checkpoints. What
//! goes in them, and how chains are verified, is `crate::audit`'s business.
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::Db;
use super::entities::{audit_checkpoint, audit_event};

pub use audit_checkpoint::Model as CheckpointRecord;
pub use audit_event::Model as EntryRecord;

#[derive(Clone, Debug)]
pub struct EventRow {
    pub realm: String,
    pub chain_id: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub at: i64,
    pub kind: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

/// Appends entries in one statement (the group commit of `crate::audit`).
pub async fn append_many<C: ConnectionTrait>(db: &C, rows: Vec<EventRow>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(models(rows)).exec_without_returning(db).await.map(|_| ())
}

/// The statement [`append_many`] executes, for running with others.
pub fn append_statement(backend: sea_orm::DbBackend, rows: Vec<EventRow>) -> sea_orm::Statement {
    use sea_orm::QueryTrait;
    audit_event::Entity::insert_many(models(rows)).build(backend)
}

fn models(rows: Vec<EventRow>) -> impl Iterator<Item = audit_event::ActiveModel> {
    rows.into_iter().map(|e| audit_event::ActiveModel {
        realm: Set(e.realm),
        chain_id: Set(e.chain_id),
        seq: Set(e.seq),
        prev_hash: Set(e.prev_hash),
        hash: Set(e.hash),
        at: Set(e.at),
        kind: Set(e.kind),
        outcome: Set(e.outcome),
        actor: Set(e.actor),
        client_id: Set(e.client_id),
        ip: Set(e.ip),
        detail: Set(e.detail),
        ..Default::default()
    })
}

pub struct Query<'a> {
    pub realm: &'a str,
    pub kind: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Entries with a smaller id (pagination, newest first).
    pub before_id: Option<i64>,
    pub limit: u64,
}

impl<'a> Query<'a> {
    pub fn realm(realm: &'a str) -> Query<'a> {
        Query { realm, kind: None, actor: None, client_id: None, since: None, until: None, before_id: None, limit: 100 }
    }
}

pub async fn search(db: &Db, q: &Query<'_>) -> Result<Vec<EntryRecord>, DbErr> {
    let mut s = audit_event::Entity::find().filter(audit_event::Column::Realm.eq(q.realm));
    if let Some(k) = q.kind {
        s = s.filter(audit_event::Column::Kind.eq(k));
    }
    if let Some(a) = q.actor {
        s = s.filter(audit_event::Column::Actor.eq(a));
    }
    if let Some(c) = q.client_id {
        s = s.filter(audit_event::Column::ClientId.eq(c));
    }
    if let Some(t) = q.since {
        s = s.filter(audit_event::Column::At.gte(t));
    }
    if let Some(t) = q.until {
        s = s.filter(audit_event::Column::At.lt(t));
    }
    if let Some(id) = q.before_id {
        s = s.filter(audit_event::Column::Id.lt(id));
    }
    s.order_by_desc(audit_event::Column::Id).limit(q.limit).all(db).await
}

pub async fn list(db: &Db, realm: &str, kind: Option<&str>, limit: u64) -> Result<Vec<EntryRecord>, DbErr> {
    search(db, &Query { kind, limit, ..Query::realm(realm) }).await
}

/// The chains of a realm, each with its last sequence number.
pub async fn chain_heads(db: &Db, realm: &str) -> Result<Vec<(String, i64)>, DbErr> {
    audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::ChainId)
        .column_as(audit_event::Column::Seq.max(), "seq")
        .filter(audit_event::Column::Realm.eq(realm))
        .group_by(audit_event::Column::ChainId)
        .into_tuple()
        .all(db)
        .await
}

pub async fn entry(db: &Db, realm: &str, chain_id: &str, seq: i64) -> Result<Option<EntryRecord>, DbErr> {
    audit_event::Entity::find()
        .filter(audit_event::Column::Realm.eq(realm))
        .filter(audit_event::Column::ChainId.eq(chain_id))
        .filter(audit_event::Column::Seq.eq(seq))
        .one(db)
        .await
}

/// A page of one chain in order, from `after_seq`.
pub async fn chain_page(
    db: &Db,
    realm: &str,
    chain_id: &str,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<EntryRecord>, DbErr> {
    audit_event::Entity::find()
        .filter(audit_event::Column::Realm.eq(realm))
        .filter(audit_event::Column::ChainId.eq(chain_id))
        .filter(audit_event::Column::Seq.gt(after_seq))
        .order_by_asc(audit_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

pub async fn insert_checkpoint(db: &Db, realm: &str, at: i64, heads: String, signature: String) -> Result<(), DbErr> {
    audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
        realm: Set(realm.to_string()),
        at: Set(at),
        heads: Set(heads),
        signature: Set(signature),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

pub async fn checkpoints(db: &Db, realm: &str) -> Result<Vec<CheckpointRecord>, DbErr> {
    audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Realm.eq(realm))
        .order_by_asc(audit_checkpoint::Column::Id)
        .all(db)
        .await
}

pub async fn last_checkpoint(db: &Db, realm: &str) -> Result<Option<CheckpointRecord>, DbErr> {
    audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Realm.eq(realm))
        .order_by_desc(audit_checkpoint::Column::Id)
        .one(db)
        .await
}

/// Retention: removes a chain's entries up to `seq` and checkpoints older
/// than `before_at`.
pub async fn prune_chain(db: &Db, realm: &str, chain_id: &str, seq: i64) -> Result<u64, DbErr> {
    let r = audit_event::Entity::delete_many()
        .filter(audit_event::Column::Realm.eq(realm))
        .filter(audit_event::Column::ChainId.eq(chain_id))
        .filter(audit_event::Column::Seq.lte(seq))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

pub async fn prune_checkpoints(db: &Db, realm: &str, before_id: i64) -> Result<u64, DbErr> {
    let r = audit_checkpoint::Entity::delete_many()
        .filter(audit_checkpoint::Column::Realm.eq(realm))
        .filter(audit_checkpoint::Column::Id.lt(before_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}
