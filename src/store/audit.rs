//! The audit log table. What goes in it is decided by `crate::audit`.
use sea_orm::{DbErr, EntityTrait, Set};

use super::Db;
use super::entities::audit_event;

pub struct EventRow {
    pub realm: String,
    pub at: i64,
    pub kind: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

/// Appends events in one statement (the group commit of `crate::audit`).
pub async fn append_many(db: &Db, rows: Vec<EventRow>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let models = rows.into_iter().map(|e| audit_event::ActiveModel {
        realm: Set(e.realm),
        at: Set(e.at),
        kind: Set(e.kind),
        outcome: Set(e.outcome),
        actor: Set(e.actor),
        client_id: Set(e.client_id),
        ip: Set(e.ip),
        detail: Set(e.detail),
        ..Default::default()
    });
    audit_event::Entity::insert_many(models).exec_without_returning(db).await.map(|_| ())
}

pub async fn list(db: &Db, realm: &str, kind: Option<&str>, limit: u64) -> Result<Vec<audit_event::Model>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut q = audit_event::Entity::find().filter(audit_event::Column::Realm.eq(realm));
    if let Some(k) = kind {
        q = q.filter(audit_event::Column::Kind.eq(k));
    }
    q.order_by_desc(audit_event::Column::Id).limit(limit).all(db).await
}
