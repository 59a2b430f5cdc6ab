//! Administrators' roles: a person of the `admin` realm holds roles per
//! realm (or `*` for all).
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, Set};

use super::entities::admin_role;
use super::now;

pub async fn roles_of<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<Vec<(String, String)>, DbErr> {
    Ok(admin_role::Entity::find()
        .filter(admin_role::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.role, r.realm))
        .collect())
}

pub async fn grant<C: ConnectionTrait>(db: &C, user_id: &str, role: &str, realm: &str) -> Result<(), DbErr> {
    admin_role::ActiveModel {
        user_id: Set(user_id.to_string()),
        role: Set(role.to_string()),
        realm: Set(realm.to_string()),
        created_at: Set(now()),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn revoke<C: ConnectionTrait>(db: &C, user_id: &str, role: &str, realm: &str) -> Result<(), DbErr> {
    admin_role::Entity::delete_many()
        .filter(admin_role::Column::UserId.eq(user_id))
        .filter(admin_role::Column::Role.eq(role))
        .filter(admin_role::Column::Realm.eq(realm))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn any<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    Ok(admin_role::Entity::find().count(db).await? > 0)
}
