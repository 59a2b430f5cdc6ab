//! A person's passkeys and TOTP secrets. The credential itself is sealed;
//! a passkey's credential id (`lookup`) is what a browser presents at a
//! usernameless sign-in, so it is stored in the clear (it is no secret).
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::credential;

pub use credential::Model as CredentialRecord;

pub async fn insert<C: ConnectionTrait>(db: &C, c: CredentialRecord) -> Result<(), DbErr> {
    credential::ActiveModel {
        id: Set(c.id),
        realm: Set(c.realm),
        user_id: Set(c.user_id),
        kind: Set(c.kind),
        name: Set(c.name),
        lookup: Set(c.lookup),
        sealed: Set(c.sealed),
        created_at: Set(c.created_at),
        last_used_at: Set(c.last_used_at),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// A person's credentials, oldest first; `kind` narrows to one kind.
pub async fn of_user<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    kind: Option<&str>,
) -> Result<Vec<CredentialRecord>, DbErr> {
    let mut q = credential::Entity::find()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id));
    if let Some(k) = kind {
        q = q.filter(credential::Column::Kind.eq(k));
    }
    q.order_by_asc(credential::Column::CreatedAt).all(db).await
}

pub async fn by_lookup<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    lookup: &str,
) -> Result<Option<CredentialRecord>, DbErr> {
    credential::Entity::find()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::Lookup.eq(lookup))
        .one(db)
        .await
}

/// Records a use; a passkey's sealed state changes when its counter does.
pub async fn used<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    at: i64,
    sealed: Option<Vec<u8>>,
) -> Result<(), DbErr> {
    let mut q = credential::Entity::update_many().col_expr(credential::Column::LastUsedAt, Expr::value(at));
    if let Some(s) = sealed {
        q = q.col_expr(credential::Column::Sealed, Expr::value(s));
    }
    q.filter(credential::Column::Realm.eq(realm)).filter(credential::Column::Id.eq(id)).exec(db).await.map(|_| ())
}

/// Renames one of a person's credentials; false if it is not theirs.
pub async fn rename<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    id: &str,
    name: &str,
) -> Result<bool, DbErr> {
    let r = credential::Entity::update_many()
        .col_expr(credential::Column::Name, Expr::value(name))
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id))
        .filter(credential::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Removes one of a person's credentials; false if it is not theirs.
pub async fn delete<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str, id: &str) -> Result<bool, DbErr> {
    let r = credential::Entity::delete_many()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id))
        .filter(credential::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

pub async fn delete_all_of_user<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<u64, DbErr> {
    let r = credential::Entity::delete_many()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}
