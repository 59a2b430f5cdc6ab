//! SSO sessions: durable rows, found by the SHA-256 of the browser's cookie.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::entities::sso_session;

pub use sso_session::Model as SessionRecord;

pub async fn insert<C: ConnectionTrait>(db: &C, s: SessionRecord) -> Result<(), DbErr> {
    active(s).insert(db).await.map(|_| ())
}

/// The statement of [`insert`] (without reading the row back), for running
/// with others.
pub fn insert_statement(backend: sea_orm::DbBackend, s: SessionRecord) -> sea_orm::Statement {
    use sea_orm::QueryTrait;
    sso_session::Entity::insert(active(s)).build(backend)
}

fn active(s: SessionRecord) -> sso_session::ActiveModel {
    sso_session::ActiveModel {
        id: Set(s.id),
        realm: Set(s.realm),
        user_id: Set(s.user_id),
        token_hash: Set(s.token_hash),
        auth_time: Set(s.auth_time),
        amr: Set(s.amr),
        acr: Set(s.acr),
        clients: Set(s.clients),
        created_at: Set(s.created_at),
        last_seen_at: Set(s.last_seen_at),
        expires_at: Set(s.expires_at),
        ended_at: Set(s.ended_at),
        end_reason: Set(s.end_reason),
        ip: Set(s.ip),
        user_agent: Set(s.user_agent),
        acting: Set(s.acting),
    }
}

pub async fn by_token_hash<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    token_hash: &str,
) -> Result<Option<SessionRecord>, DbErr> {
    sso_session::Entity::find()
        .filter(sso_session::Column::TokenHash.eq(token_hash))
        .filter(sso_session::Column::Realm.eq(realm))
        .one(db)
        .await
}

pub async fn get<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<Option<SessionRecord>, DbErr> {
    sso_session::Entity::find_by_id(id.to_string()).filter(sso_session::Column::Realm.eq(realm)).one(db).await
}

/// [`get`] with a shared lock on the row (`FOR SHARE`; SQLite, which has
/// no row locks, omits it): waits for a transaction ending the session.
pub async fn get_locked<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<Option<SessionRecord>, DbErr> {
    use sea_orm::QuerySelect;
    sso_session::Entity::find_by_id(id.to_string())
        .filter(sso_session::Column::Realm.eq(realm))
        .lock_shared()
        .one(db)
        .await
}

pub async fn set_clients<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    clients: String,
    seen: i64,
) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Clients, Expr::value(clients))
        .col_expr(sso_session::Column::LastSeenAt, Expr::value(seen))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Sets the portals of a session only if they are still `expected`:
/// concurrent sign-ins to two portals each add theirs, and neither is lost.
pub async fn set_clients_if<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    expected: String,
    clients: String,
    seen: i64,
) -> Result<bool, DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Clients, Expr::value(clients))
        .col_expr(sso_session::Column::LastSeenAt, Expr::value(seen))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .filter(sso_session::Column::Clients.eq(expected))
        .exec(db)
        .await
        .map(|r| r.rows_affected == 1)
}

pub async fn touch<C: ConnectionTrait>(db: &C, realm: &str, id: &str, seen: i64) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::LastSeenAt, Expr::value(seen))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Ends a live session; returns whether it was live.
pub async fn end<C: ConnectionTrait>(db: &C, realm: &str, id: &str, reason: &str, at: i64) -> Result<bool, DbErr> {
    let r = sso_session::Entity::update_many()
        .col_expr(sso_session::Column::EndedAt, Expr::value(at))
        .col_expr(sso_session::Column::EndReason, Expr::value(reason))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .filter(sso_session::Column::EndedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

pub async fn live_of_user<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<Vec<SessionRecord>, DbErr> {
    sso_session::Entity::find()
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::UserId.eq(user_id))
        .filter(sso_session::Column::EndedAt.is_null())
        .all(db)
        .await
}

pub async fn count_live<C: ConnectionTrait>(db: &C, realm: &str, at: i64) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    sso_session::Entity::find()
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::EndedAt.is_null())
        .filter(sso_session::Column::ExpiresAt.gt(at))
        .count(db)
        .await
}

/// A stepped-up session: how the person authenticated, and when.
pub async fn set_authn<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    amr: String,
    auth_time: i64,
) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Amr, Expr::value(amr))
        .col_expr(sso_session::Column::AuthTime, Expr::value(auth_time))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Every session of a person, newest first (their data export).
pub async fn all_of_user<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<Vec<SessionRecord>, DbErr> {
    use sea_orm::QueryOrder;
    sso_session::Entity::find()
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::UserId.eq(user_id))
        .order_by_desc(sso_session::Column::CreatedAt)
        .all(db)
        .await
}

/// Forgets where and on what a person's sessions ran (account purge).
pub async fn forget_devices<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Ip, Expr::value(Option::<String>::None))
        .col_expr(sso_session::Column::UserAgent, Expr::value(Option::<String>::None))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// A session's identity level (`acr`), after a verification or a demotion.
pub async fn set_acr<C: ConnectionTrait>(db: &C, realm: &str, id: &str, acr: &str) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Acr, Expr::value(acr))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Live sessions past their absolute lifetime (`expires_at <= at`) or idle
/// since `idle_before` (the expiry job).
pub async fn past_lifetime<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    at: i64,
    idle_before: i64,
    limit: u64,
) -> Result<Vec<SessionRecord>, DbErr> {
    use sea_orm::{Condition, QuerySelect};
    sso_session::Entity::find()
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::EndedAt.is_null())
        .filter(
            Condition::any()
                .add(sso_session::Column::ExpiresAt.lte(at))
                .add(sso_session::Column::LastSeenAt.lte(idle_before)),
        )
        .limit(limit)
        .all(db)
        .await
}

/// Whom the session acts as (`self`, an enterprise's blind index, or None:
/// not chosen, or the choice no longer holds).
pub async fn set_acting<C: ConnectionTrait>(db: &C, realm: &str, id: &str, acting: Option<&str>) -> Result<(), DbErr> {
    sso_session::Entity::update_many()
        .col_expr(sso_session::Column::Acting, Expr::value(acting.map(str::to_string)))
        .filter(sso_session::Column::Realm.eq(realm))
        .filter(sso_session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}
