//! Realms, their clients and signing keys, and the deployment's wrapped
//! secrets (`meta`). Every change to what a realm publishes bumps the realm's
//! `generation`, which is how every node learns its cache is stale.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entities::{client, meta, realm, signing_key};
use super::now;

pub use client::Model as ClientRecord;
pub use realm::Model as RealmRecord;
pub use signing_key::Model as KeyRecord;

pub async fn meta_get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<Vec<u8>>, DbErr> {
    Ok(meta::Entity::find_by_id(key.to_string()).one(db).await?.map(|m| m.value))
}

/// Inserts a meta value; fails when the key exists, so two nodes starting at
/// once cannot both create the deployment's data key.
pub async fn meta_insert<C: ConnectionTrait>(db: &C, key: &str, value: Vec<u8>) -> Result<(), DbErr> {
    meta::ActiveModel { key: Set(key.to_string()), value: Set(value), updated_at: Set(now()) }
        .insert(db)
        .await
        .map(|_| ())
}

/// Meta rows whose key starts with `prefix`, as (key, value).
pub async fn meta_with_prefix<C: ConnectionTrait>(db: &C, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, DbErr> {
    Ok(meta::Entity::find()
        .filter(meta::Column::Key.starts_with(prefix))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.key, m.value))
        .collect())
}

/// Replaces an existing meta value (a re-wrapped key).
pub async fn meta_set<C: ConnectionTrait>(db: &C, key: &str, value: Vec<u8>) -> Result<(), DbErr> {
    meta::Entity::update_many()
        .col_expr(meta::Column::Value, Expr::value(value))
        .col_expr(meta::Column::UpdatedAt, Expr::value(now()))
        .filter(meta::Column::Key.eq(key))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn realm_get<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<RealmRecord>, DbErr> {
    realm::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn realm_list<C: ConnectionTrait>(db: &C) -> Result<Vec<RealmRecord>, DbErr> {
    realm::Entity::find().order_by_asc(realm::Column::Id).all(db).await
}

/// (realm, generation) of every realm: the cheap query nodes poll.
pub async fn realm_generations<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, i64)>, DbErr> {
    realm::Entity::find()
        .select_only()
        .column(realm::Column::Id)
        .column(realm::Column::Generation)
        .into_tuple()
        .all(db)
        .await
}

pub async fn realm_insert<C: ConnectionTrait>(db: &C, id: &str, settings: String) -> Result<(), DbErr> {
    let t = now();
    realm::ActiveModel {
        id: Set(id.to_string()),
        settings: Set(settings),
        generation: Set(1),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn realm_update<C: ConnectionTrait>(db: &C, id: &str, settings: String) -> Result<(), DbErr> {
    realm::Entity::update_many()
        .col_expr(realm::Column::Settings, Expr::value(settings))
        .col_expr(realm::Column::UpdatedAt, Expr::value(now()))
        .filter(realm::Column::Id.eq(id))
        .exec(db)
        .await?;
    bump_generation(db, id).await
}

pub async fn bump_generation<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    realm::Entity::update_many()
        .col_expr(realm::Column::Generation, Expr::col(realm::Column::Generation).add(1))
        .filter(realm::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn clients_of<C: ConnectionTrait>(db: &C, realm: &str) -> Result<Vec<ClientRecord>, DbErr> {
    client::Entity::find().filter(client::Column::Realm.eq(realm)).order_by_asc(client::Column::ClientId).all(db).await
}

pub async fn client_get<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    client_id: &str,
) -> Result<Option<ClientRecord>, DbErr> {
    client::Entity::find()
        .filter(client::Column::Realm.eq(realm))
        .filter(client::Column::ClientId.eq(client_id))
        .one(db)
        .await
}

pub async fn client_insert<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    client_id: &str,
    settings: String,
    secret_hash: Option<String>,
    enabled: bool,
) -> Result<(), DbErr> {
    let t = now();
    client::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        realm: Set(realm.to_string()),
        client_id: Set(client_id.to_string()),
        settings: Set(settings),
        secret_hash: Set(secret_hash),
        enabled: Set(enabled),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await?;
    bump_generation(db, realm).await
}

/// Updates a client's settings; `secret_hash` None leaves the secret as it is.
pub async fn client_update<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    client_id: &str,
    settings: String,
    secret_hash: Option<String>,
    enabled: bool,
) -> Result<(), DbErr> {
    let mut q = client::Entity::update_many()
        .col_expr(client::Column::Settings, Expr::value(settings))
        .col_expr(client::Column::Enabled, Expr::value(enabled))
        .col_expr(client::Column::UpdatedAt, Expr::value(now()));
    if let Some(h) = secret_hash {
        q = q.col_expr(client::Column::SecretHash, Expr::value(h));
    }
    q.filter(client::Column::Realm.eq(realm)).filter(client::Column::ClientId.eq(client_id)).exec(db).await?;
    bump_generation(db, realm).await
}

pub async fn keys_of<C: ConnectionTrait>(db: &C, realm: &str) -> Result<Vec<KeyRecord>, DbErr> {
    signing_key::Entity::find()
        .filter(signing_key::Column::Realm.eq(realm))
        .order_by_asc(signing_key::Column::ActivateAt)
        .all(db)
        .await
}

pub async fn all_keys<C: ConnectionTrait>(db: &C) -> Result<Vec<KeyRecord>, DbErr> {
    signing_key::Entity::find().all(db).await
}

pub async fn key_insert<C: ConnectionTrait>(db: &C, k: KeyRecord) -> Result<(), DbErr> {
    let realm = k.realm.clone();
    signing_key::ActiveModel {
        kid: Set(k.kid),
        realm: Set(k.realm),
        alg: Set(k.alg),
        wrapped: Set(k.wrapped),
        public_jwk: Set(k.public_jwk),
        created_at: Set(k.created_at),
        activate_at: Set(k.activate_at),
        retire_at: Set(k.retire_at),
        expire_at: Set(k.expire_at),
    }
    .insert(db)
    .await?;
    bump_generation(db, &realm).await
}

/// Replaces a signing key's wrapped private key (a KEK rotation). The key
/// itself does not change, so what the realm publishes does not either.
pub async fn key_set_wrapped<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kid: &str,
    wrapped: Vec<u8>,
) -> Result<(), DbErr> {
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::Wrapped, Expr::value(wrapped))
        .filter(signing_key::Column::Realm.eq(realm))
        .filter(signing_key::Column::Kid.eq(kid))
        .exec(db)
        .await
        .map(|_| ())
}

/// Schedules a key's retirement: it stops signing at `retire_at` and leaves
/// the JWKS at `expire_at`.
pub async fn key_retire<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kid: &str,
    retire_at: i64,
    expire_at: i64,
) -> Result<(), DbErr> {
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::RetireAt, Expr::value(retire_at))
        .col_expr(signing_key::Column::ExpireAt, Expr::value(expire_at))
        .filter(signing_key::Column::Realm.eq(realm))
        .filter(signing_key::Column::Kid.eq(kid))
        .exec(db)
        .await?;
    bump_generation(db, realm).await
}
