//! The imported registries and their import runs. Rows are keyed by blind
//! index and hold only sealed values; a batch of rows, the run's progress
//! and what the batch changed that matters to accounts (`registry_changes`)
//! are written in one transaction, so a resumed run continues exactly after
//! the last committed batch and no change is lost however a run ends.
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::{registry_change, registry_enterprise, registry_import, registry_person};
use super::now;

pub use registry_change::Model as ChangeRecord;
pub use registry_enterprise::Model as EnterpriseRecord;
pub use registry_import::Model as ImportRecord;
pub use registry_person::Model as PersonRecord;

/// A person row ready to write (already sealed).
pub struct PersonRow {
    pub id_index: String,
    pub id_sealed: Vec<u8>,
    pub name_sealed: Vec<u8>,
    pub status: &'static str,
}

/// An enterprise row ready to write (already sealed).
pub struct EnterpriseRow {
    pub uscc_index: String,
    pub uscc_sealed: Vec<u8>,
    pub name_sealed: Vec<u8>,
    pub rep_index: String,
    pub rep_name_sealed: Vec<u8>,
    pub status: &'static str,
}

/// Progress of an import (over all its runs), written with each batch: the
/// checkpoint a resume continues from, and what the final report counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub lines_done: i64,
    pub rows_written: i64,
    pub rows_bad: i64,
    /// Persons newly deceased.
    pub deceased: i64,
    /// Known enterprises with a new legal representative.
    pub rep_changed: i64,
    /// Enterprises newly revoked or cancelled.
    pub closed: i64,
}

impl Progress {
    /// As recorded in an import's row (a resume starts from it).
    pub fn of(rec: &ImportRecord) -> Progress {
        Progress {
            lines_done: rec.lines_done,
            rows_written: rec.rows_written,
            rows_bad: rec.rows_bad,
            deceased: rec.deceased,
            rep_changed: rec.rep_changed,
            closed: rec.closed,
        }
    }
}

pub async fn import_create<C: ConnectionTrait>(
    db: &C,
    id: &str,
    kind: &str,
    file_name: &str,
    file_sha256: &str,
) -> Result<(), DbErr> {
    registry_import::ActiveModel {
        id: Set(id.to_string()),
        kind: Set(kind.to_string()),
        file_sha256: Set(file_sha256.to_string()),
        file_name: Set(file_name.to_string()),
        status: Set("running".into()),
        lines_done: Set(0),
        rows_written: Set(0),
        rows_bad: Set(0),
        started_at: Set(now()),
        finished_at: Set(None),
        deceased: Set(0),
        rep_changed: Set(0),
        closed: Set(0),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// The newest run of `kind` that did not finish (`running` or `aborted`).
pub async fn import_unfinished<C: ConnectionTrait>(db: &C, kind: &str) -> Result<Option<ImportRecord>, DbErr> {
    registry_import::Entity::find()
        .filter(registry_import::Column::Kind.eq(kind))
        .filter(registry_import::Column::Status.ne("done"))
        .order_by_desc(registry_import::Column::StartedAt)
        .one(db)
        .await
}

pub async fn import_get<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<ImportRecord>, DbErr> {
    registry_import::Entity::find_by_id(id.to_string()).one(db).await
}

/// Marks a run `running` again (a resume) or finished (`done`, `aborted`),
/// recording the file's digest when it is known.
pub async fn import_set_status<C: ConnectionTrait>(
    db: &C,
    id: &str,
    status: &str,
    file_sha256: Option<&str>,
) -> Result<(), DbErr> {
    let mut am =
        registry_import::ActiveModel { id: sea_orm::ActiveValue::Unchanged(id.to_string()), ..Default::default() };
    am.status = Set(status.to_string());
    am.finished_at = Set(if status == "running" { None } else { Some(now()) });
    if let Some(h) = file_sha256 {
        am.file_sha256 = Set(h.to_string());
    }
    am.update(db).await.map(|_| ())
}

async fn set_progress<C: ConnectionTrait>(db: &C, id: &str, p: Progress) -> Result<(), DbErr> {
    let am = registry_import::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id.to_string()),
        lines_done: Set(p.lines_done),
        rows_written: Set(p.rows_written),
        rows_bad: Set(p.rows_bad),
        deceased: Set(p.deceased),
        rep_changed: Set(p.rep_changed),
        closed: Set(p.closed),
        ..Default::default()
    };
    am.update(db).await.map(|_| ())
}

/// The status each of `indexes` has now (absent rows are left out).
async fn person_statuses<C: ConnectionTrait>(db: &C, indexes: &[&str]) -> Result<Vec<(String, String)>, DbErr> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    registry_person::Entity::find()
        .select_only()
        .column(registry_person::Column::IdIndex)
        .column(registry_person::Column::Status)
        .filter(registry_person::Column::IdIndex.is_in(indexes.iter().copied()))
        .into_tuple()
        .all(db)
        .await
}

/// Writes a batch of persons (inserting new numbers, updating known ones in
/// place), the import's progress and the batch's pending changes
/// (`deceased`) in one transaction. `progress` is what
/// the batch brings the import to, except for the changes, which are added
/// here. Returns the indexes of persons whose status became `deceased` with
/// this batch (including persons the registry did not hold before), and the
/// progress recorded.
pub async fn write_persons(
    db: &DatabaseConnection,
    import_id: &str,
    rows: Vec<PersonRow>,
    mut progress: Progress,
) -> Result<(Vec<String>, Progress), DbErr> {
    let txn = super::begin_write(db).await?;
    let dying: Vec<&str> = rows.iter().filter(|r| r.status == "deceased").map(|r| r.id_index.as_str()).collect();
    let already: std::collections::HashSet<String> = person_statuses(&txn, &dying)
        .await?
        .into_iter()
        .filter(|(_, status)| status == "deceased")
        .map(|(index, _)| index)
        .collect();
    let newly: Vec<String> = dying.iter().filter(|i| !already.contains(**i)).map(|i| i.to_string()).collect();
    if !rows.is_empty() {
        let t = now();
        let models = rows.into_iter().map(|r| registry_person::ActiveModel {
            id_index: Set(r.id_index),
            id_sealed: Set(r.id_sealed),
            name_sealed: Set(r.name_sealed),
            status: Set(r.status.to_string()),
            updated_at: Set(t),
            import_id: Set(import_id.to_string()),
        });
        use registry_person::Column as C;
        registry_person::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(C::IdIndex)
                    .update_columns([C::IdSealed, C::NameSealed, C::Status, C::UpdatedAt, C::ImportId])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    progress.deceased += newly.len() as i64;
    record_changes(&txn, import_id, DECEASED, &newly).await?;
    set_progress(&txn, import_id, progress).await?;
    txn.commit().await?;
    Ok((newly, progress))
}

/// What an enterprise batch changed that matters to accounts.
#[derive(Debug, Default)]
pub struct EnterpriseChanges {
    /// Known enterprises whose legal representative is someone else now.
    pub rep_changed: Vec<String>,
    /// Enterprises that became `revoked` or `cancelled` with this batch.
    pub closed: Vec<String>,
}

/// Writes a batch of enterprises, the import's progress (with the batch's
/// changes added, as for persons) and its pending changes (`rep_changed`,
/// `closed`) in one transaction.
pub async fn write_enterprises(
    db: &DatabaseConnection,
    import_id: &str,
    rows: Vec<EnterpriseRow>,
    mut progress: Progress,
) -> Result<(EnterpriseChanges, Progress), DbErr> {
    let txn = super::begin_write(db).await?;
    let mut changes = EnterpriseChanges::default();
    if !rows.is_empty() {
        let keys: Vec<&str> = rows.iter().map(|r| r.uscc_index.as_str()).collect();
        use registry_enterprise::Column as C;
        let before: std::collections::HashMap<String, (String, String)> = registry_enterprise::Entity::find()
            .select_only()
            .column(C::UsccIndex)
            .column(C::RepIndex)
            .column(C::Status)
            .filter(C::UsccIndex.is_in(keys))
            .into_tuple::<(String, String, String)>()
            .all(&txn)
            .await?
            .into_iter()
            .map(|(k, rep, status)| (k, (rep, status)))
            .collect();
        for r in &rows {
            let old = before.get(&r.uscc_index);
            if old.is_some_and(|(rep, _)| *rep != r.rep_index) {
                changes.rep_changed.push(r.uscc_index.clone());
            }
            if r.status != "active" && old.is_none_or(|(_, status)| status == "active") {
                changes.closed.push(r.uscc_index.clone());
            }
        }
        let t = now();
        let models = rows.into_iter().map(|r| registry_enterprise::ActiveModel {
            uscc_index: Set(r.uscc_index),
            uscc_sealed: Set(r.uscc_sealed),
            name_sealed: Set(r.name_sealed),
            rep_index: Set(r.rep_index),
            rep_name_sealed: Set(r.rep_name_sealed),
            status: Set(r.status.to_string()),
            updated_at: Set(t),
            import_id: Set(import_id.to_string()),
        });
        registry_enterprise::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(C::UsccIndex)
                    .update_columns([
                        C::UsccSealed,
                        C::NameSealed,
                        C::RepIndex,
                        C::RepNameSealed,
                        C::Status,
                        C::UpdatedAt,
                        C::ImportId,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    progress.rep_changed += changes.rep_changed.len() as i64;
    progress.closed += changes.closed.len() as i64;
    record_changes(&txn, import_id, REP_CHANGED, &changes.rep_changed).await?;
    record_changes(&txn, import_id, CLOSED, &changes.closed).await?;
    set_progress(&txn, import_id, progress).await?;
    txn.commit().await?;
    Ok((changes, progress))
}

pub async fn person_get<C: ConnectionTrait>(db: &C, id_index: &str) -> Result<Option<PersonRecord>, DbErr> {
    registry_person::Entity::find_by_id(id_index.to_string()).one(db).await
}

pub async fn enterprise_get<C: ConnectionTrait>(db: &C, uscc_index: &str) -> Result<Option<EnterpriseRecord>, DbErr> {
    registry_enterprise::Entity::find_by_id(uscc_index.to_string()).one(db).await
}

/// Kinds of `registry_changes`: a person newly deceased…
pub const DECEASED: &str = "deceased";
/// …a known enterprise with another legal representative…
pub const REP_CHANGED: &str = "rep_changed";
/// …an enterprise newly revoked or cancelled.
pub const CLOSED: &str = "closed";

/// Rows per INSERT of changes (well under every database's bind limit).
const CHANGES_PER_INSERT: usize = 1000;

/// Records pending changes (blind indexes of one kind) of an import, in the
/// caller's transaction: the batch that made them.
async fn record_changes<C: ConnectionTrait>(
    db: &C,
    import_id: &str,
    kind: &str,
    indexes: &[String],
) -> Result<(), DbErr> {
    let t = now();
    for chunk in indexes.chunks(CHANGES_PER_INSERT) {
        let models = chunk.iter().map(|index| registry_change::ActiveModel {
            import_id: Set(import_id.to_string()),
            kind: Set(kind.to_string()),
            blind_index: Set(index.clone()),
            created_at: Set(t),
            applied_at: Set(None),
            ..Default::default()
        });
        registry_change::Entity::insert_many(models).exec_without_returning(db).await?;
    }
    Ok(())
}

/// The newest pending change's id (pending changes up to it are one pass's work).
pub async fn changes_pending_last<C: ConnectionTrait>(db: &C) -> Result<Option<i64>, DbErr> {
    registry_change::Entity::find()
        .select_only()
        .column(registry_change::Column::Id)
        .filter(registry_change::Column::AppliedAt.is_null())
        .order_by_desc(registry_change::Column::Id)
        .into_tuple::<i64>()
        .one(db)
        .await
}

/// A page of pending changes with `after < id <= upto`, oldest first.
pub async fn changes_pending_page<C: ConnectionTrait>(
    db: &C,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<ChangeRecord>, DbErr> {
    use registry_change::Column as C;
    registry_change::Entity::find()
        .filter(C::AppliedAt.is_null())
        .filter(C::Id.gt(after))
        .filter(C::Id.lte(upto))
        .order_by_asc(C::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Marks changes applied unless they already are; returns how many this call marked.
pub async fn changes_mark_applied<C: ConnectionTrait>(db: &C, ids: &[i64], at: i64) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    use registry_change::Column as C;
    let r = registry_change::Entity::update_many()
        .col_expr(C::AppliedAt, sea_orm::sea_query::Expr::value(at))
        .filter(C::Id.is_in(ids.iter().copied()))
        .filter(C::AppliedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// A page of an import's changes (applied or not), oldest first.
pub async fn changes_of_import<C: ConnectionTrait>(
    db: &C,
    import_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<ChangeRecord>, DbErr> {
    use registry_change::Column as C;
    registry_change::Entity::find()
        .filter(C::ImportId.eq(import_id))
        .filter(C::Id.gt(after))
        .order_by_asc(C::Id)
        .limit(limit)
        .all(db)
        .await
}

/// How many changes an import recorded, and how many of them are pending.
pub async fn changes_count<C: ConnectionTrait>(db: &C, import_id: &str) -> Result<(u64, u64), DbErr> {
    use registry_change::Column as C;
    use sea_orm::PaginatorTrait;
    let all = registry_change::Entity::find().filter(C::ImportId.eq(import_id)).count(db).await?;
    let pending = registry_change::Entity::find()
        .filter(C::ImportId.eq(import_id))
        .filter(C::AppliedAt.is_null())
        .count(db)
        .await?;
    Ok((all, pending))
}

/// How many changes of any import are pending.
pub async fn changes_pending_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    registry_change::Entity::find().filter(registry_change::Column::AppliedAt.is_null()).count(db).await
}
