//! Removing what no longer serves anyone, in bounded batches, so the tables
//! that grow with every sign-in stay the size of what is live: rotated or
//! revoked refresh tokens once expired (and any refresh token once no
//! session it could belong to can still be live), ended sessions, finished
//! back-channel deliveries with their attempts, and applied registry
//! changes, after the node's `record_retention_days`. The audit log keeps
//! the history of each (its own retention is the realm's).
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::entities::{refresh_token, registry_change, sso_session};
use super::logout::{attempt, delivery};

/// Rows one statement removes: short statements, no long lock.
const BATCH: u64 = 2000;

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub registry_changes: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.refresh_tokens + self.sessions + self.deliveries + self.attempts + self.registry_changes
    }
}

/// A realm's refresh tokens that can never be used or matter again: rotated
/// or revoked ones past their expiry (a rotated token is kept until then to
/// detect its reuse), and any token that expired longer ago than a session
/// can live (`session_absolute_secs`) plus a day, so that no live session
/// loses the record of a portal that took part in it.
pub async fn refresh_tokens(db: &super::Db, realm: &str, now: i64, session_absolute_secs: u64) -> Result<u64, DbErr> {
    use refresh_token::Column as C;
    let long_ago = now - session_absolute_secs as i64 - 86_400;
    let dead = Condition::all().add(C::Realm.eq(realm)).add(
        Condition::any()
            .add(
                Condition::all()
                    .add(C::ExpiresAt.lt(now))
                    .add(Condition::any().add(C::RotatedAt.is_not_null()).add(C::RevokedAt.is_not_null())),
            )
            .add(C::ExpiresAt.lt(long_ago)),
    );
    delete_batches::<refresh_token::Entity, _>(db, C::Id, dead).await
}

/// A realm's sessions ended before `before`.
pub async fn sessions(db: &super::Db, realm: &str, before: i64) -> Result<u64, DbErr> {
    use sso_session::Column as C;
    let old = Condition::all().add(C::Realm.eq(realm)).add(C::EndedAt.is_not_null()).add(C::EndedAt.lt(before));
    delete_batches::<sso_session::Entity, _>(db, C::Id, old).await
}

/// Back-channel deliveries finished (delivered or given up) before
/// `before`, with their attempts: (deliveries, attempts).
pub async fn deliveries(db: &super::Db, before: i64) -> Result<(u64, u64), DbErr> {
    use delivery::Column as C;
    let (mut gone, mut attempts_gone) = (0, 0);
    loop {
        let ids: Vec<String> = delivery::Entity::find()
            .select_only()
            .column(C::Id)
            .filter(C::FinishedAt.is_not_null())
            .filter(C::FinishedAt.lt(before))
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok((gone, attempts_gone));
        }
        let txn = super::begin_write(db).await?;
        let a =
            attempt::Entity::delete_many().filter(attempt::Column::DeliveryId.is_in(ids.clone())).exec(&txn).await?;
        let d = delivery::Entity::delete_many().filter(C::Id.is_in(ids.clone())).exec(&txn).await?;
        txn.commit().await?;
        gone += d.rows_affected;
        attempts_gone += a.rows_affected;
        if (ids.len() as u64) < BATCH {
            return Ok((gone, attempts_gone));
        }
    }
}

/// Registry changes applied before `before`.
pub async fn registry_changes(db: &super::Db, before: i64) -> Result<u64, DbErr> {
    use registry_change::Column as C;
    let applied = Condition::all().add(C::AppliedAt.is_not_null()).add(C::AppliedAt.lt(before));
    delete_batches::<registry_change::Entity, _>(db, C::Id, applied).await
}

/// Deletes the rows of `E` matching `cond`, `BATCH` at a time (by their
/// `id` column), until a batch comes back short.
async fn delete_batches<E, C>(db: &super::Db, id: C, cond: Condition) -> Result<u64, DbErr>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    let mut removed = 0;
    loop {
        let mut ids = Query::select();
        ids.column(id).from(E::default()).cond_where(cond.clone()).limit(BATCH);
        let r = E::delete_many().filter(id.in_subquery(ids)).exec(db).await?;
        removed += r.rows_affected;
        if r.rows_affected < BATCH {
            return Ok(removed);
        }
    }
}
