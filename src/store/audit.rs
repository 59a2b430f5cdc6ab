//! The audit log table. What goes in it is decided by `crate::audit`.
use sea_orm::{ActiveModelTrait, DbErr, Set};

use super::Db;
use super::entities::audit_event;

pub struct NewEvent<'a> {
    pub realm: &'a str,
    pub kind: &'a str,
    pub outcome: &'a str,
    pub actor: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: String,
}

pub async fn append(db: &Db, e: NewEvent<'_>) -> Result<(), DbErr> {
    audit_event::ActiveModel {
        realm: Set(e.realm.to_string()),
        at: Set(super::now()),
        kind: Set(e.kind.to_string()),
        outcome: Set(e.outcome.to_string()),
        actor: Set(e.actor.map(str::to_string)),
        client_id: Set(e.client_id.map(str::to_string)),
        ip: Set(e.ip.map(str::to_string)),
        detail: Set(e.detail),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn list(db: &Db, realm: &str, kind: Option<&str>, limit: u64) -> Result<Vec<audit_event::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut q = audit_event::Entity::find().filter(audit_event::Column::Realm.eq(realm));
    if let Some(k) = kind {
        q = q.filter(audit_event::Column::Kind.eq(k));
    }
    q.order_by_desc(audit_event::Column::Id).limit(limit).all(db).await
}
