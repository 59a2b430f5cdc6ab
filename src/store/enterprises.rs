//! Claimed enterprises and their agents' delegations.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::entities::{delegation, enterprise, registry_enterprise};

pub use delegation::Model as DelegationRecord;
pub use enterprise::Model as EnterpriseRecord;
pub use registry_enterprise::Model as RegistryEnterprise;

pub async fn registry_row<C: ConnectionTrait>(db: &C, uscc_index: &str) -> Result<Option<RegistryEnterprise>, DbErr> {
    registry_enterprise::Entity::find_by_id(uscc_index.to_string()).one(db).await
}

pub async fn get<C: ConnectionTrait>(db: &C, realm: &str, uscc_index: &str) -> Result<Option<EnterpriseRecord>, DbErr> {
    enterprise::Entity::find_by_id((realm.to_string(), uscc_index.to_string())).one(db).await
}

/// Claims (or, after a change of representative, re-claims) an enterprise.
pub async fn upsert<C: ConnectionTrait>(db: &C, e: EnterpriseRecord) -> Result<(), DbErr> {
    enterprise::Entity::delete_many()
        .filter(enterprise::Column::Realm.eq(e.realm.clone()))
        .filter(enterprise::Column::UsccIndex.eq(e.uscc_index.clone()))
        .exec(db)
        .await?;
    enterprise::ActiveModel {
        realm: Set(e.realm),
        uscc_index: Set(e.uscc_index),
        uscc_sealed: Set(e.uscc_sealed),
        name_sealed: Set(e.name_sealed),
        rep_user_id: Set(e.rep_user_id),
        claimed_at: Set(e.claimed_at),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn represented_by<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
) -> Result<Vec<EnterpriseRecord>, DbErr> {
    enterprise::Entity::find()
        .filter(enterprise::Column::Realm.eq(realm))
        .filter(enterprise::Column::RepUserId.eq(user_id))
        .all(db)
        .await
}

pub async fn insert_delegation<C: ConnectionTrait>(db: &C, d: DelegationRecord) -> Result<(), DbErr> {
    delegation::ActiveModel {
        id: Set(d.id),
        realm: Set(d.realm),
        uscc_index: Set(d.uscc_index),
        user_id: Set(d.user_id),
        role: Set(d.role),
        expires_at: Set(d.expires_at),
        created_by: Set(d.created_by),
        created_at: Set(d.created_at),
        revoked_at: Set(d.revoked_at),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Live delegations of an agent.
pub async fn delegations_of<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    at: i64,
) -> Result<Vec<DelegationRecord>, DbErr> {
    delegation::Entity::find()
        .filter(delegation::Column::Realm.eq(realm))
        .filter(delegation::Column::UserId.eq(user_id))
        .filter(delegation::Column::RevokedAt.is_null())
        .filter(delegation::Column::ExpiresAt.gt(at))
        .all(db)
        .await
}

/// Live delegations of an enterprise.
pub async fn delegations_for<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    uscc_index: &str,
    at: i64,
) -> Result<Vec<DelegationRecord>, DbErr> {
    delegation::Entity::find()
        .filter(delegation::Column::Realm.eq(realm))
        .filter(delegation::Column::UsccIndex.eq(uscc_index))
        .filter(delegation::Column::RevokedAt.is_null())
        .filter(delegation::Column::ExpiresAt.gt(at))
        .all(db)
        .await
}

/// Revokes delegations of an enterprise: one (`id`) or all.
pub async fn revoke<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    uscc_index: &str,
    id: Option<&str>,
    at: i64,
) -> Result<u64, DbErr> {
    let mut q = delegation::Entity::update_many()
        .col_expr(delegation::Column::RevokedAt, Expr::value(at))
        .filter(delegation::Column::Realm.eq(realm))
        .filter(delegation::Column::UsccIndex.eq(uscc_index))
        .filter(delegation::Column::RevokedAt.is_null());
    if let Some(id) = id {
        q = q.filter(delegation::Column::Id.eq(id));
    }
    Ok(q.exec(db).await?.rows_affected)
}

/// Every realm's claim of an enterprise.
pub async fn by_index<C: ConnectionTrait>(db: &C, uscc_index: &str) -> Result<Vec<EnterpriseRecord>, DbErr> {
    enterprise::Entity::find().filter(enterprise::Column::UsccIndex.eq(uscc_index)).all(db).await
}

pub async fn delete<C: ConnectionTrait>(db: &C, realm: &str, uscc_index: &str) -> Result<(), DbErr> {
    enterprise::Entity::delete_many()
        .filter(enterprise::Column::Realm.eq(realm))
        .filter(enterprise::Column::UsccIndex.eq(uscc_index))
        .exec(db)
        .await
        .map(|_| ())
}

/// Ends one claim — the one `rep_user_id` made at `claimed_at`, not a later
/// re-claim — and revokes the enterprise's delegations. Returns whether the
/// claim was still there (a concurrent or earlier application did not end
/// it first) and how many delegations were revoked.
pub async fn end_claim<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    uscc_index: &str,
    rep_user_id: &str,
    claimed_at: i64,
    at: i64,
) -> Result<Option<u64>, DbErr> {
    let gone = enterprise::Entity::delete_many()
        .filter(enterprise::Column::Realm.eq(realm))
        .filter(enterprise::Column::UsccIndex.eq(uscc_index))
        .filter(enterprise::Column::RepUserId.eq(rep_user_id))
        .filter(enterprise::Column::ClaimedAt.eq(claimed_at))
        .exec(db)
        .await?;
    if gone.rows_affected == 0 {
        return Ok(None);
    }
    Ok(Some(revoke(db, realm, uscc_index, None, at).await?))
}

/// The enterprises claimed in a realm, oldest claim first, a page at a time.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<EnterpriseRecord>, DbErr> {
    use sea_orm::{QueryOrder, QuerySelect};
    enterprise::Entity::find()
        .filter(enterprise::Column::Realm.eq(realm))
        .order_by_asc(enterprise::Column::ClaimedAt)
        .order_by_asc(enterprise::Column::UsccIndex)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count<C: ConnectionTrait>(db: &C, realm: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    enterprise::Entity::find().filter(enterprise::Column::Realm.eq(realm)).count(db).await
}

/// Every delegation of an enterprise ever made in the realm — live,
/// revoked and expired — newest first (the operators' history).
pub async fn delegation_history<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    uscc_index: &str,
) -> Result<Vec<DelegationRecord>, DbErr> {
    use sea_orm::QueryOrder;
    delegation::Entity::find()
        .filter(delegation::Column::Realm.eq(realm))
        .filter(delegation::Column::UsccIndex.eq(uscc_index))
        .order_by_desc(delegation::Column::CreatedAt)
        .order_by_desc(delegation::Column::Id)
        .all(db)
        .await
}
