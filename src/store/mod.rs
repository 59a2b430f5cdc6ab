//! Durable state through sea-orm (SQLite by default, PostgreSQL in
//! production) and the ephemeral store. The only place that knows SQL or
//! Redis: the rest of civid calls the functions of one file per aggregate.
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

pub mod admins;
pub mod audit;
pub mod built;
pub mod credentials;
pub mod enterprises;
pub mod entities;
pub mod ephemeral;
pub mod grants;
pub mod housekeeping;
pub mod logout;
pub mod realms;
pub mod realname;
pub mod registry;
pub mod sessions;
pub mod users;

pub use sea_orm::DatabaseConnection as Db;

/// Connects to the database named by `url`, creating the directory of a
/// SQLite file when needed.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        if !path.is_empty()
            && !path.starts_with(':')
            && let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // A ping before every query is a round trip per query; a connection
        // idle for a while is still checked, one that just worked is not.
        .test_before_acquire_if_idle_for(Duration::from_secs(10))
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers run beside the one writer; the busy timeout
            // lets CLI commands write while the server runs.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let mut db = Database::connect(opts).await?;
    // Every statement is counted (by kind, and to the request that made
    // it): what a flow asks of the shared database is what limits scale-out.
    db.set_metric_callback(|info| crate::metrics::db_statement(&info.statement.sql));
    Ok(db)
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`, waiting out the busy timeout like any
/// writer): a deferred transaction that reads and then writes fails with
/// "database is locked" when another connection or process wrote in
/// between, which no timeout helps. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::TransactionTrait;
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// On SQLite: runs `statement` (one or more statements, joined) as a
/// write transaction sent to the connection's thread in one command:
/// `BEGIN IMMEDIATE`, the statements, `COMMIT`. A sea-orm transaction would
/// take three hand-offs to that thread (begin, the command, commit), each
/// a wake-up of two threads (docs/PERFORMANCE.md, "Password sign-in").
/// If any part fails, nothing of it is kept: the transaction is rolled back
/// on the same connection, and a connection that could not confirm it has
/// no transaction open is closed rather than returned to the pool. Counted
/// as one statement, of the kind of `statement`'s first.
pub async fn sqlite_write_in_one_command(db: &DatabaseConnection, statement: sea_orm::Statement) -> Result<(), DbErr> {
    use sea_orm::sqlx;
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Err(DbErr::Custom("a one-command write transaction is for SQLite only".into()));
    }
    let sqlx_err = |e: sqlx::Error| DbErr::Custom(format!("SQLite: {e}"));
    let mut conn = db.get_sqlite_connection_pool().acquire().await.map_err(sqlx_err)?;
    crate::metrics::db_statement(&statement.sql);
    let sql = format!("BEGIN IMMEDIATE;\n{};\nCOMMIT", statement.sql);
    let values = sea_query_sqlx::SqlxValues(statement.values.unwrap_or(sea_orm::Values(Vec::new())));
    let ran = sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), values).execute(&mut *conn).await;
    match ran {
        Ok(_) => Ok(()),
        Err(e) => {
            // Where the failure left the transaction open, this ends it;
            // where SQLite already rolled back or BEGIN itself failed, it
            // answers "no transaction is active", and the connection is
            // closed all the same: it is the rare path, and being sure no
            // connection goes back to the pool inside a transaction is
            // worth a reconnect.
            if sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK")).execute(&mut *conn).await.is_err() {
                conn.close_on_drop();
            }
            Err(sqlx_err(e))
        }
    }
}

/// Held while a process prepares a database it shares with others:
/// migrations, the data key, realm files and first signing keys. Nodes of
/// one deployment start together (a Deployment's replicas, a migration Job
/// beside them); without it two could each migrate or each create a realm's
/// first keys. On PostgreSQL a session-level advisory lock on a connection
/// of its own (released on `release`, or by PostgreSQL when the process
/// dies); SQLite serializes its writers itself and serves one host.
pub struct StartLock(Option<DatabaseConnection>);

/// The advisory lock's key: "civid" and 1, as a 64-bit integer.
const START_LOCK_KEY: i64 = 0x6369_7669_6400_0001;

/// Waits (up to two minutes) until no other process is preparing the
/// database.
pub async fn start_lock(url: &str) -> Result<StartLock, DbErr> {
    if !url.starts_with("postgres") {
        return Ok(StartLock(None));
    }
    let conn = connect(url, 1).await?;
    conn.execute_unprepared("SET lock_timeout = '120s'").await?;
    conn.execute_unprepared(&format!("SELECT pg_advisory_lock({START_LOCK_KEY})"))
        .await
        .map_err(|e| DbErr::Custom(format!("another civid has been preparing the database for two minutes: {e}")))?;
    Ok(StartLock(Some(conn)))
}

impl StartLock {
    pub async fn release(self) {
        if let Some(conn) = self.0 {
            let _ = conn.execute_unprepared(&format!("SELECT pg_advisory_unlock({START_LOCK_KEY})")).await;
            let _ = conn.close().await;
        }
    }
}

/// Applies this binary's pending migrations. A database already migrated by
/// a newer civid (during a rolling upgrade, or after rolling a binary back)
/// holds migrations this binary does not know: migrations are additive, so
/// when every migration this binary knows is applied it runs as it is and
/// says so. If it also lacks some of its own, the schema has diverged and it
/// refuses.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use migrations::{Migrator, MigratorTrait};
    let applied: std::collections::HashSet<String> =
        Migrator::get_migration_models(db).await?.into_iter().map(|m| m.version).collect();
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_string()).collect();
    let mut newer: Vec<&String> = applied.iter().filter(|v| !known.contains(v)).collect();
    if newer.is_empty() {
        return Migrator::up(db, None).await;
    }
    newer.sort();
    let missing: Vec<&String> = known.iter().filter(|k| !applied.contains(*k)).collect();
    if missing.is_empty() {
        tracing::warn!(
            newer = ?newer,
            "the database has migrations newer than this civid (a rolling upgrade?); running on the newer schema"
        );
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "the database has migrations this civid does not know ({newer:?}) but lacks some it does ({missing:?}): \
             run the civid that applied them"
        )))
    }
}

pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// Seconds since the Unix epoch: every stored time uses it.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement, Value};

    /// One connection, so a transaction left open by a failed command would
    /// be met by the next one.
    async fn one_connection() -> (tempfile::TempDir, super::Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = super::connect(&url, 1).await.expect("connect");
        db.execute_unprepared("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").await.expect("create");
        (dir, db)
    }

    fn inserts(rows: &[(&str, i64)]) -> Statement {
        let sql = vec!["INSERT INTO t (k, v) VALUES (?, ?)"; rows.len()].join(";\n");
        let values: Vec<Value> = rows.iter().flat_map(|(k, v)| [Value::from(*k), Value::from(*v)]).collect();
        Statement::from_sql_and_values(sea_orm::DbBackend::Sqlite, sql, values)
    }

    async fn keys(db: &super::Db) -> Vec<String> {
        let rows = db
            .query_all_raw(Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT k FROM t ORDER BY k"))
            .await
            .expect("select");
        rows.iter().map(|r| r.try_get::<String>("", "k").expect("k")).collect()
    }

    #[tokio::test]
    async fn a_one_command_write_is_all_or_nothing_and_leaves_no_transaction_open() {
        let (_dir, db) = one_connection().await;
        super::sqlite_write_in_one_command(&db, inserts(&[("a", 1), ("b", 2)])).await.expect("good write");
        assert_eq!(keys(&db).await, ["a", "b"]);
        // The second statement fails (the key exists): the first is undone.
        let bad = super::sqlite_write_in_one_command(&db, inserts(&[("c", 3), ("a", 4)])).await;
        assert!(bad.is_err());
        assert_eq!(keys(&db).await, ["a", "b"], "nothing of the failed command is kept");
        // The one connection is usable for writes at once (a transaction
        // left open would make this BEGIN fail).
        super::sqlite_write_in_one_command(&db, inserts(&[("c", 3)])).await.expect("write after a failure");
        db.execute_unprepared("INSERT INTO t (k, v) VALUES ('d', 4)").await.expect("plain write");
        assert_eq!(keys(&db).await, ["a", "b", "c", "d"]);
        // SQL that cannot be prepared (after BEGIN ran): nothing left open.
        let broken = Statement::from_string(sea_orm::DbBackend::Sqlite, "INSERT INTO nowhere VALUES (1)");
        assert!(super::sqlite_write_in_one_command(&db, broken).await.is_err());
        super::sqlite_write_in_one_command(&db, inserts(&[("e", 5)])).await.expect("write after bad SQL");
        assert_eq!(keys(&db).await, ["a", "b", "c", "d", "e"]);
    }
}
