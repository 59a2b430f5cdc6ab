//! Grants (what a portal may see of a person, and the consent behind it) and
//! the refresh tokens issued under them, stored as SHA-256 digests.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::{grant, refresh_token};
use super::now;

pub use grant::Model as GrantRecord;
pub use refresh_token::Model as RefreshRecord;

/// The live grant of a person to a portal, if any.
pub async fn active<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    client_id: &str,
) -> Result<Option<GrantRecord>, DbErr> {
    // Read at every sign-in: rendered once (`store::built`).
    static ACTIVE: super::built::Built<3> = super::built::Built::new(|backend, [realm, user_id, client_id]| {
        use sea_orm::{QuerySelect, QueryTrait};
        live(realm, client_id).filter(grant::Column::UserId.eq(user_id)).limit(1).build(backend)
    });
    let stmt = ACTIVE.bind(db.get_database_backend(), [realm, user_id, client_id]);
    grant::Entity::find().from_raw_sql(stmt).one(db).await
}

pub async fn active_by_subject<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    client_id: &str,
    subject: &str,
) -> Result<Option<GrantRecord>, DbErr> {
    live(realm, client_id).filter(grant::Column::Subject.eq(subject)).one(db).await
}

/// A portal's grants in a realm that are not revoked, the newest first.
fn live(realm: &str, client_id: &str) -> sea_orm::Select<grant::Entity> {
    grant::Entity::find()
        .filter(grant::Column::Realm.eq(realm))
        .filter(grant::Column::ClientId.eq(client_id))
        .filter(grant::Column::RevokedAt.is_null())
        .order_by_desc(grant::Column::CreatedAt)
}

pub async fn get<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<Option<GrantRecord>, DbErr> {
    grant::Entity::find_by_id(id.to_string()).filter(grant::Column::Realm.eq(realm)).one(db).await
}

pub async fn insert<C: ConnectionTrait>(db: &C, g: GrantRecord) -> Result<(), DbErr> {
    grant::ActiveModel {
        id: Set(g.id),
        realm: Set(g.realm),
        user_id: Set(g.user_id),
        client_id: Set(g.client_id),
        subject: Set(g.subject),
        scopes: Set(g.scopes),
        created_at: Set(g.created_at),
        updated_at: Set(g.updated_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn set_scopes<C: ConnectionTrait>(db: &C, realm: &str, id: &str, scopes: &str) -> Result<(), DbErr> {
    grant::Entity::update_many()
        .col_expr(grant::Column::Scopes, Expr::value(scopes))
        .col_expr(grant::Column::UpdatedAt, Expr::value(now()))
        .filter(grant::Column::Realm.eq(realm))
        .filter(grant::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Revokes a grant and every refresh token issued under it.
pub async fn revoke<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<(), DbErr> {
    let t = now();
    grant::Entity::update_many()
        .col_expr(grant::Column::RevokedAt, Expr::value(t))
        .filter(grant::Column::Realm.eq(realm))
        .filter(grant::Column::Id.eq(id))
        .filter(grant::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(t))
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::GrantId.eq(id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn insert_refresh<C: ConnectionTrait>(db: &C, r: RefreshRecord) -> Result<(), DbErr> {
    refresh_token::ActiveModel {
        id: Set(r.id),
        realm: Set(r.realm),
        grant_id: Set(r.grant_id),
        family_id: Set(r.family_id),
        session_id: Set(r.session_id),
        token_hash: Set(r.token_hash),
        scope: Set(r.scope),
        context: Set(r.context),
        offline: Set(r.offline),
        created_at: Set(r.created_at),
        expires_at: Set(r.expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
        access_jti: Set(r.access_jti),
        access_exp: Set(r.access_exp),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn refresh_by_hash<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    hash: &str,
) -> Result<Option<RefreshRecord>, DbErr> {
    refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .filter(refresh_token::Column::Realm.eq(realm))
        .one(db)
        .await
}

/// Marks a refresh token used. False when it already was (or was revoked):
/// of two concurrent redemptions exactly one wins.
pub async fn rotate_refresh<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<bool, DbErr> {
    let r = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RotatedAt, Expr::value(now()))
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::Id.eq(id))
        .filter(refresh_token::Column::RotatedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

pub async fn revoke_family<C: ConnectionTrait>(db: &C, realm: &str, family_id: &str) -> Result<u64, DbErr> {
    let r = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Revokes the refresh tokens bound to a session, except offline ones.
pub async fn revoke_session_tokens<C: ConnectionTrait>(db: &C, realm: &str, session_id: &str) -> Result<u64, DbErr> {
    let r = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::SessionId.eq(session_id))
        .filter(refresh_token::Column::Offline.eq(false))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// The access tokens issued with a family's refresh tokens that are still live.
pub async fn family_access_tokens<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    family_id: &str,
) -> Result<Vec<(String, i64)>, DbErr> {
    Ok(refresh_token::Entity::find()
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::AccessExp.gt(now()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.access_jti?, r.access_exp?)))
        .collect())
}

/// A person's grants: only the standing ones, or all (their data export).
pub async fn of_user<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    include_revoked: bool,
) -> Result<Vec<GrantRecord>, DbErr> {
    let mut q = grant::Entity::find().filter(grant::Column::Realm.eq(realm)).filter(grant::Column::UserId.eq(user_id));
    if !include_revoked {
        q = q.filter(grant::Column::RevokedAt.is_null());
    }
    q.order_by_desc(grant::Column::CreatedAt).all(db).await
}

/// Revokes every refresh token of a person, offline ones included (their
/// account was disabled, their password reset, their sessions ended by an
/// operator).
pub async fn revoke_user_refresh_tokens<C: ConnectionTrait>(db: &C, realm: &str, user_id: &str) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Query;
    let mut of_user = Query::select();
    of_user
        .column(grant::Column::Id)
        .from(grant::Entity)
        .and_where(grant::Column::Realm.eq(realm))
        .and_where(grant::Column::UserId.eq(user_id));
    let r = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::Realm.eq(realm))
        .filter(refresh_token::Column::GrantId.in_subquery(of_user))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// The portals issued a refresh token in session `session_id` (whether or
/// not it was revoked or rotated since): they took part in the session.
pub async fn session_clients<C: ConnectionTrait>(db: &C, realm: &str, session_id: &str) -> Result<Vec<String>, DbErr> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::Query;
    let mut of_session = Query::select();
    of_session
        .column(refresh_token::Column::GrantId)
        .from(refresh_token::Entity)
        .and_where(refresh_token::Column::Realm.eq(realm))
        .and_where(refresh_token::Column::SessionId.eq(session_id));
    grant::Entity::find()
        .select_only()
        .column(grant::Column::ClientId)
        .distinct()
        .filter(grant::Column::Realm.eq(realm))
        .filter(grant::Column::Id.in_subquery(of_session))
        .order_by_asc(grant::Column::ClientId)
        .into_tuple::<String>()
        .all(db)
        .await
}
