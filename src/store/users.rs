//! People of a realm and the identifiers they sign in with. Identifiers are
//! found by blind index and stored sealed; the store never sees them in clear.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::entities::{user, user_identifier};
use super::now;

pub use user::Model as UserRecord;
pub use user_identifier::Model as IdentifierRecord;

pub async fn insert<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    password_hash: Option<String>,
    profile_sealed: Option<Vec<u8>>,
) -> Result<(), DbErr> {
    let t = now();
    user::ActiveModel {
        id: Set(id.to_string()),
        realm: Set(realm.to_string()),
        status: Set("active".into()),
        password_hash: Set(password_hash),
        profile_sealed: Set(profile_sealed),
        created_at: Set(t),
        updated_at: Set(t),
        last_login_at: Set(None),
        purge_after: Set(None),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn insert_identifier<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kind: &str,
    blind_index: &str,
    user_id: &str,
    sealed: Vec<u8>,
    verified: bool,
) -> Result<(), DbErr> {
    user_identifier::ActiveModel {
        realm: Set(realm.to_string()),
        kind: Set(kind.to_string()),
        blind_index: Set(blind_index.to_string()),
        user_id: Set(user_id.to_string()),
        sealed: Set(sealed),
        verified: Set(verified),
        created_at: Set(now()),
    }
    .insert(db)
    .await
    .map(|_| ())
}

pub async fn identifier_exists<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kind: &str,
    blind_index: &str,
) -> Result<bool, DbErr> {
    Ok(user_identifier::Entity::find_by_id((realm.to_string(), kind.to_string(), blind_index.to_string()))
        .one(db)
        .await?
        .is_some())
}

pub async fn find_by_identifier<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kind: &str,
    blind_index: &str,
) -> Result<Option<UserRecord>, DbErr> {
    by_identifier(realm, kind, blind_index).one(db).await
}

/// The account holding an identifier, as one statement: the identifier's
/// row by its primary key, inside the user lookup.
fn by_identifier(realm: &str, kind: &str, blind_index: &str) -> sea_orm::Select<user::Entity> {
    let ident = sea_orm::sea_query::Query::select()
        .column(user_identifier::Column::UserId)
        .from(user_identifier::Entity)
        .and_where(user_identifier::Column::Realm.eq(realm))
        .and_where(user_identifier::Column::Kind.eq(kind))
        .and_where(user_identifier::Column::BlindIndex.eq(blind_index))
        .to_owned();
    user::Entity::find().filter(user::Column::Realm.eq(realm)).filter(user::Column::Id.in_subquery(ident))
}

/// What a sign-in needs to know of an account besides its row: which
/// second factors it holds and its identity level. Read with the row in
/// the same statement, so a password sign-in makes one read before the
/// hash instead of three.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignInFacts {
    pub totp: bool,
    pub passkey: bool,
    /// Any credential at all (passkey, authenticator app).
    pub any_credential: bool,
    /// The level of the account's identity proof, if it has one.
    pub proof_level: Option<String>,
}

struct UserWithFacts(UserRecord, SignInFacts);

impl sea_orm::FromQueryResult for UserWithFacts {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        let user = UserRecord::from_query_result(res, pre)?;
        let count = |c: &str| res.try_get::<i64>(pre, c);
        Ok(UserWithFacts(
            user,
            SignInFacts {
                totp: count("totp_count")? > 0,
                passkey: count("passkey_count")? > 0,
                any_credential: count("credential_count")? > 0,
                proof_level: res.try_get::<Option<String>>(pre, "proof_level")?,
            },
        ))
    }
}

/// [`find_by_identifier`] with the account's [`SignInFacts`], in one
/// statement (correlated subqueries on the credentials' and the proofs'
/// indexes).
pub async fn find_for_sign_in<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    kind: &str,
    blind_index: &str,
) -> Result<Option<(UserRecord, SignInFacts)>, DbErr> {
    use sea_orm::FromQueryResult;
    static LOOKUP: super::built::Built<3> = super::built::Built::new(sign_in_lookup);
    let stmt = LOOKUP.bind(db.get_database_backend(), [realm, kind, blind_index]);
    let found = UserWithFacts::find_by_statement(stmt).one(db).await?;
    Ok(found.map(|UserWithFacts(u, f)| (u, f)))
}

/// The statement of [`find_for_sign_in`] (rendered once, see `store::built`).
fn sign_in_lookup(backend: sea_orm::DbBackend, [realm, kind, blind_index]: [&str; 3]) -> sea_orm::Statement {
    use sea_orm::sea_query::{ExprTrait, Query, SelectStatement};
    use sea_orm::{QuerySelect, QueryTrait, sea_query};

    use super::entities::{credential, identity_proof};
    fn of_this_user<E: sea_query::Iden + Copy + 'static, C: sea_query::Iden + 'static>(
        q: &mut SelectStatement,
        table: E,
        realm_col: C,
        user_col: C,
    ) {
        q.and_where(Expr::col((table, realm_col)).equals((user::Entity, user::Column::Realm)))
            .and_where(Expr::col((table, user_col)).equals((user::Entity, user::Column::Id)));
    }
    let credentials = |k: Option<&str>| {
        let mut q = Query::select();
        q.expr(Expr::col((credential::Entity, credential::Column::Id)).count()).from(credential::Entity);
        of_this_user(&mut q, credential::Entity, credential::Column::Realm, credential::Column::UserId);
        if let Some(k) = k {
            q.and_where(Expr::col((credential::Entity, credential::Column::Kind)).eq(k));
        }
        Expr::SubQuery(None, Box::new(q.into()))
    };
    let mut level = Query::select();
    level.column((identity_proof::Entity, identity_proof::Column::Level)).from(identity_proof::Entity);
    of_this_user(&mut level, identity_proof::Entity, identity_proof::Column::Realm, identity_proof::Column::UserId);
    by_identifier(realm, kind, blind_index)
        .expr_as(credentials(Some("totp")), "totp_count")
        .expr_as(credentials(Some("passkey")), "passkey_count")
        .expr_as(credentials(None), "credential_count")
        .expr_as(sea_query::Expr::SubQuery(None, Box::new(level.into())), "proof_level")
        .limit(1)
        .build(backend)
}

pub async fn get<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<Option<UserRecord>, DbErr> {
    user::Entity::find_by_id(id.to_string()).filter(user::Column::Realm.eq(realm)).one(db).await
}

pub async fn identifiers_of<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
) -> Result<Vec<IdentifierRecord>, DbErr> {
    user_identifier::Entity::find()
        .filter(user_identifier::Column::Realm.eq(realm))
        .filter(user_identifier::Column::UserId.eq(user_id))
        .all(db)
        .await
}

pub async fn touch_login<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<(), DbErr> {
    db.execute_raw(touch_login_statement(db.get_database_backend(), realm, id)).await.map(|_| ())
}

/// The statement of [`touch_login`], for running with others.
pub fn touch_login_statement(backend: sea_orm::DbBackend, realm: &str, id: &str) -> sea_orm::Statement {
    use sea_orm::QueryTrait;
    user::Entity::update_many()
        .col_expr(user::Column::LastLoginAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .build(backend)
}

pub async fn set_status<C: ConnectionTrait>(db: &C, realm: &str, id: &str, status: &str) -> Result<bool, DbErr> {
    let r = user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(status))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

pub async fn set_password<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    id: &str,
    hash: Option<String>,
) -> Result<(), DbErr> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn count<C: ConnectionTrait>(db: &C, realm: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    user::Entity::find().filter(user::Column::Realm.eq(realm)).count(db).await
}

pub async fn set_profile<C: ConnectionTrait>(db: &C, realm: &str, id: &str, sealed: Vec<u8>) -> Result<(), DbErr> {
    user::Entity::update_many()
        .col_expr(user::Column::ProfileSealed, Expr::value(sealed))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Replaces a person's identifier of one kind (a changed phone or email):
/// the old one is deleted, the new one inserted, verified. Fails (unique
/// key) if another account holds the new one.
pub async fn replace_identifier<C: ConnectionTrait>(
    db: &C,
    realm: &str,
    user_id: &str,
    kind: &str,
    blind_index: &str,
    sealed: Vec<u8>,
) -> Result<(), DbErr> {
    user_identifier::Entity::delete_many()
        .filter(user_identifier::Column::Realm.eq(realm))
        .filter(user_identifier::Column::UserId.eq(user_id))
        .filter(user_identifier::Column::Kind.eq(kind))
        .exec(db)
        .await?;
    insert_identifier(db, realm, kind, blind_index, user_id, sealed, true).await?;
    user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Marks an account cancelled (注销); its personal data goes after `purge_after`.
pub async fn cancel<C: ConnectionTrait>(db: &C, realm: &str, id: &str, purge_after: i64) -> Result<bool, DbErr> {
    let r = user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value("cancelled"))
        .col_expr(user::Column::PurgeAfter, Expr::value(purge_after))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::Status.ne("cancelled"))
        .filter(user::Column::Status.ne("purged"))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Cancelled accounts whose retention ended by `at`.
pub async fn due_for_purge<C: ConnectionTrait>(db: &C, realm: &str, at: i64) -> Result<Vec<UserRecord>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Status.eq("cancelled"))
        .filter(user::Column::PurgeAfter.lte(at))
        .all(db)
        .await
}

/// Deletes a cancelled account's identifiers and sealed profile; the
/// anonymised row stays (status `purged`) so that its id is never reused.
pub async fn purge<C: ConnectionTrait>(db: &C, realm: &str, id: &str) -> Result<(), DbErr> {
    user_identifier::Entity::delete_many()
        .filter(user_identifier::Column::Realm.eq(realm))
        .filter(user_identifier::Column::UserId.eq(id))
        .exec(db)
        .await?;
    user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value("purged"))
        .col_expr(user::Column::ProfileSealed, Expr::value(Option::<Vec<u8>>::None))
        .col_expr(user::Column::PasswordHash, Expr::value(Option::<String>::None))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Realm.eq(realm))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}
