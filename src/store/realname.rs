//! What accounts proved about their holders (`identity_proofs`), and the
//! population registry lookup a verification makes. Values are sealed; the
//! store sees blind indexes only.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::entities::{guardian, identity_proof, registry_person};

pub use guardian::Model as GuardianRecord;
pub use identity_proof::Model as ProofRecord;
pub use registry_person::Model as PersonRecord;

pub async fn proof_of<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<Option<ProofRecord>, DbErr> {
    identity_proof::Entity::find_by_id((realm.to_string(), user_id.to_string())).one(db).await
}

/// The account (if any) that proved this ID number in the realm.
pub async fn holder_of<C: ConnectionTrait>(db: &C, realm: &str, id_index: &str) -> Result<Option<ProofRecord>, DbErr> {
    identity_proof::Entity::find()
        .filter(identity_proof::Column::Realm.eq(realm))
        .filter(identity_proof::Column::IdIndex.eq(id_index))
        .one(db)
        .await
}

pub async fn insert_proof<C: ConnectionTrait>(db: &C, p: ProofRecord) -> Result<(), DbErr> {
    identity_proof::ActiveModel {
        realm: Set(p.realm),
        user_id: Set(p.user_id),
        id_index: Set(p.id_index),
        id_sealed: Set(p.id_sealed),
        name_sealed: Set(p.name_sealed),
        level: Set(p.level),
        method: Set(p.method),
        evidence: Set(p.evidence),
        verified_at: Set(p.verified_at),
        consent_at: Set(p.consent_at),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Lowers (or raises) a proof's level, e.g. when the registry reports the
/// person deceased.
pub async fn set_level<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str, level: &str) -> Result<(), DbErr> {
    identity_proof::Entity::update_many()
        .col_expr(identity_proof::Column::Level, Expr::value(level))
        .filter(identity_proof::Column::Realm.eq(realm))
        .filter(identity_proof::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Lowers a proof of `id_index` from `from` to `to`, only if it is still at
/// `from` (a concurrent or earlier application did not get there first).
/// Returns whether it did.
pub async fn demote_if<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    id_index: &str,
    from: &str,
    to: &str,
) -> Result<bool, DbErr> {
    let r = identity_proof::Entity::update_many()
        .col_expr(identity_proof::Column::Level, Expr::value(to))
        .filter(identity_proof::Column::Realm.eq(realm))
        .filter(identity_proof::Column::UserId.eq(user_id))
        .filter(identity_proof::Column::IdIndex.eq(id_index))
        .filter(identity_proof::Column::Level.eq(from))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

pub async fn delete_proof<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<(), DbErr> {
    identity_proof::Entity::delete_many()
        .filter(identity_proof::Column::Realm.eq(realm))
        .filter(identity_proof::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// A registry row by the blind index of the ID number.
pub async fn registry_person<C: ConnectionTrait>(db: &C, id_index: &str) -> Result<Option<PersonRecord>, DbErr> {
    registry_person::Entity::find_by_id(id_index.to_string()).one(db).await
}

/// Every account, in any realm, that proved this ID number.
pub async fn proofs_by_index<C: ConnectionTrait>(db: &C, id_index: &str) -> Result<Vec<ProofRecord>, DbErr> {
    identity_proof::Entity::find().filter(identity_proof::Column::IdIndex.eq(id_index)).all(db).await
}

pub async fn insert_guardian<C: ConnectionTrait>(db: &C, g: GuardianRecord) -> Result<(), DbErr> {
    guardian::ActiveModel {
        id: Set(g.id),
        realm: Set(g.realm),
        minor_user_id: Set(g.minor_user_id),
        guardian_user_id: Set(g.guardian_user_id),
        relationship: Set(g.relationship),
        consent_at: Set(g.consent_at),
        confirmed_at: Set(g.confirmed_at),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// The guardians who confirmed a minor's verification in a realm.
pub async fn guardians_of<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    minor_user_id: &str,
) -> Result<Vec<GuardianRecord>, DbErr> {
    guardian::Entity::find()
        .filter(guardian::Column::Realm.eq(realm))
        .filter(guardian::Column::MinorUserId.eq(minor_user_id))
        .all(db)
        .await
}
