//! The back-channel logout outbox: a row per ended session and portal, the
//! attempts made to deliver it, and the lease by which one worker (of any
//! node) claims a due row so no two send the same attempt at once.
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

pub mod delivery {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "logout_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub client_id: String,
        pub session_id: String,
        pub user_id: String,
        pub subject: String,
        pub uri: String,
        pub reason: String,
        pub state: String,
        pub attempts: i32,
        pub created_at: i64,
        pub next_attempt_at: i64,
        pub deadline: i64,
        pub lease: Option<String>,
        pub lease_until: Option<i64>,
        pub last_status: Option<i32>,
        pub last_error: Option<String>,
        pub finished_at: Option<i64>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attempt {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "logout_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub delivery_id: String,
        pub n: i32,
        pub at: i64,
        pub duration_ms: i32,
        pub status: Option<i32>,
        pub error: Option<String>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub use attempt::Model as AttemptRecord;
pub use delivery::Model as DeliveryRecord;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Inserts the rows of one ended session in one statement.
pub async fn insert_many<C: ConnectionTrait>(db: &C, rows: Vec<DeliveryRecord>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let models = rows.into_iter().map(|r| delivery::ActiveModel {
        id: Set(r.id),
        realm: Set(r.realm),
        client_id: Set(r.client_id),
        session_id: Set(r.session_id),
        user_id: Set(r.user_id),
        subject: Set(r.subject),
        uri: Set(r.uri),
        reason: Set(r.reason),
        state: Set(r.state),
        attempts: Set(r.attempts),
        created_at: Set(r.created_at),
        next_attempt_at: Set(r.next_attempt_at),
        deadline: Set(r.deadline),
        lease: Set(None),
        lease_until: Set(None),
        last_status: Set(None),
        last_error: Set(None),
        finished_at: Set(None),
    });
    delivery::Entity::insert_many(models).exec_without_returning(db).await.map(|_| ())
}

/// Claims up to `limit` due rows for `lease` until `until`: an atomic
/// conditional UPDATE (on PostgreSQL its row choice skips rows another
/// node is claiming), then the rows this lease holds.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    lease: &str,
    at: i64,
    until: i64,
    limit: u64,
) -> Result<Vec<DeliveryRecord>, DbErr> {
    use delivery::Column as Col;
    let free = || Condition::any().add(Col::LeaseUntil.is_null()).add(Col::LeaseUntil.lt(at));
    let mut due = Query::select();
    due.column(Col::Id)
        .from(delivery::Entity)
        .cond_where(Condition::all().add(Col::State.eq(PENDING)).add(Col::NextAttemptAt.lte(at)).add(free()))
        .order_by(Col::NextAttemptAt, sea_orm::sea_query::Order::Asc)
        .limit(limit);
    if db.get_database_backend() == DbBackend::Postgres {
        due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let r = delivery::Entity::update_many()
        .col_expr(Col::Lease, Expr::value(lease))
        .col_expr(Col::LeaseUntil, Expr::value(until))
        .filter(Col::Id.in_subquery(due))
        .filter(Col::State.eq(PENDING))
        .filter(free())
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        return Ok(Vec::new());
    }
    delivery::Entity::find().filter(Col::Lease.eq(lease)).filter(Col::State.eq(PENDING)).all(db).await
}

/// Records attempts (one INSERT for a batch).
pub async fn record_attempts<C: ConnectionTrait>(db: &C, rows: Vec<AttemptRecord>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let models = rows.into_iter().map(|a| attempt::ActiveModel {
        id: sea_orm::NotSet,
        delivery_id: Set(a.delivery_id),
        n: Set(a.n),
        at: Set(a.at),
        duration_ms: Set(a.duration_ms),
        status: Set(a.status),
        error: Set(a.error),
    });
    attempt::Entity::insert_many(models).exec_without_returning(db).await.map(|_| ())
}

/// Marks rows delivered (those this node still holds the lease of).
pub async fn mark_delivered<C: ConnectionTrait>(
    db: &C,
    ids: Vec<String>,
    lease: &str,
    status: i32,
    at: i64,
) -> Result<u64, DbErr> {
    use delivery::Column as Col;
    if ids.is_empty() {
        return Ok(0);
    }
    let r = delivery::Entity::update_many()
        .col_expr(Col::State, Expr::value(DELIVERED))
        .col_expr(Col::Attempts, Expr::col(Col::Attempts).add(1))
        .col_expr(Col::LastStatus, Expr::value(status))
        .col_expr(Col::LastError, Expr::value(Option::<String>::None))
        .col_expr(Col::Lease, Expr::value(Option::<String>::None))
        .col_expr(Col::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(Col::FinishedAt, Expr::value(at))
        .filter(Col::Id.is_in(ids))
        .filter(Col::Lease.eq(lease))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// A failed attempt: try again at `next`, or give up (`next` is None).
pub async fn mark_failed<C: ConnectionTrait>(
    db: &C,
    id: &str,
    lease: &str,
    status: Option<i32>,
    error: &str,
    next: Option<i64>,
    at: i64,
) -> Result<u64, DbErr> {
    use delivery::Column as Col;
    let mut q = delivery::Entity::update_many()
        .col_expr(Col::Attempts, Expr::col(Col::Attempts).add(1))
        .col_expr(Col::LastStatus, Expr::value(status))
        .col_expr(Col::LastError, Expr::value(error))
        .col_expr(Col::Lease, Expr::value(Option::<String>::None))
        .col_expr(Col::LeaseUntil, Expr::value(Option::<i64>::None));
    q = match next {
        Some(n) => q.col_expr(Col::NextAttemptAt, Expr::value(n)),
        None => q.col_expr(Col::State, Expr::value(FAILED)).col_expr(Col::FinishedAt, Expr::value(at)),
    };
    let r = q.filter(Col::Id.eq(id)).filter(Col::Lease.eq(lease)).exec(db).await?;
    Ok(r.rows_affected)
}

/// What an operator filters the deliveries by.
#[derive(Default)]
pub struct Filter<'a> {
    pub realm: &'a str,
    pub client_id: Option<&'a str>,
    pub state: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub limit: u64,
}

/// Deliveries, newest first.
pub async fn search<C: ConnectionTrait>(db: &C, f: &Filter<'_>) -> Result<Vec<DeliveryRecord>, DbErr> {
    use delivery::Column as Col;
    let mut q = delivery::Entity::find().filter(Col::Realm.eq(f.realm));
    if let Some(c) = f.client_id {
        q = q.filter(Col::ClientId.eq(c));
    }
    if let Some(s) = f.state {
        q = q.filter(Col::State.eq(s));
    }
    if let Some(u) = f.user_id {
        q = q.filter(Col::UserId.eq(u));
    }
    if let Some(s) = f.session_id {
        q = q.filter(Col::SessionId.eq(s));
    }
    q.order_by_desc(Col::CreatedAt).order_by_asc(Col::ClientId).limit(f.limit).all(db).await
}

/// The attempts of some deliveries, in order.
pub async fn attempts_of<C: ConnectionTrait>(db: &C, ids: Vec<String>) -> Result<Vec<AttemptRecord>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    attempt::Entity::find()
        .filter(attempt::Column::DeliveryId.is_in(ids))
        .order_by_asc(attempt::Column::Id)
        .all(db)
        .await
}

/// How many rows of a realm are in a state (metrics, tests).
pub async fn count<C: ConnectionTrait>(db: &C, realm: &str, state: &str) -> Result<u64, DbErr> {
    delivery::Entity::find()
        .filter(delivery::Column::Realm.eq(realm))
        .filter(delivery::Column::State.eq(state))
        .count(db)
        .await
}
