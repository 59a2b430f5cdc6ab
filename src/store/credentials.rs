//! A person's passkeys and TOTP secrets (table `credentials`).
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::entities::credential;

/// A person's credentials (the account centre lists names and dates only).
pub async fn of_user<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<Vec<credential::Model>, DbErr> {
    credential::Entity::find()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id))
        .all(db)
        .await
}

/// Deletes every credential of a person (a cancelled account).
pub async fn delete_all_of_user<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<u64, DbErr> {
    let r = credential::Entity::delete_many()
        .filter(credential::Column::Realm.eq(realm))
        .filter(credential::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}
