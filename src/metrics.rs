//! Prometheus metrics: request latency per endpoint, sign-ins, tokens, pool
//! use. One recorder per process (tests run several servers in one).
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the recorder on first use; None if another one is installed.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_histogram!("civid_http_request_duration_seconds", "HTTP request latency by endpoint and status");
    metrics::describe_counter!("civid_signins_total", "Sign-in attempts by method and outcome");
    metrics::describe_counter!("civid_tokens_issued_total", "Tokens issued by grant type");
    metrics::describe_gauge!("civid_db_pool_connections", "Database pool connections by state");
    metrics::describe_gauge!("civid_accounts", "Registered accounts per realm");
    metrics::describe_gauge!("civid_sso_sessions_active", "Live SSO sessions per realm");
    metrics::describe_gauge!("civid_ephemeral_store_up", "1 when the ephemeral store answers");
    metrics::describe_counter!(
        "civid_request_db_statements_total",
        "Database statements made by requests, by endpoint and kind (read, write)"
    );
    metrics::describe_counter!(
        "civid_request_ephemeral_commands_total",
        "Ephemeral-store (Redis) commands made by requests, by endpoint"
    );
    metrics::describe_counter!(
        "civid_db_statements_total",
        "Database statements by kind and origin (request, background: audit group commit, jobs)"
    );
    metrics::describe_counter!("civid_ephemeral_commands_total", "Ephemeral-store commands by origin");
    metrics::describe_counter!(
        "civid_logout_deliveries_total",
        "Back-channel logout token deliveries by outcome (delivered, retry, given_up)"
    );
}

/// Middleware: one latency observation per request, labelled by the route
/// pattern (never the raw path, which would explode the label set), and what
/// the request asked of the stores every node shares: database statements
/// (reads, writes) and ephemeral-store commands.
pub async fn track(req: Request, next: Next) -> Response {
    let endpoint =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let cost = Arc::new(Cost::default());
    let resp = COST.scope(cost.clone(), next.run(req)).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("civid_http_request_duration_seconds", "endpoint" => endpoint.clone(), "method" => method.clone(), "status" => status)
        .record(start.elapsed().as_secs_f64());
    let (reads, writes, commands) = cost.totals();
    for (kind, n) in [("read", reads), ("write", writes)] {
        metrics::counter!("civid_request_db_statements_total", "endpoint" => endpoint.clone(), "method" => method.clone(), "kind" => kind)
            .increment(n);
    }
    metrics::counter!("civid_request_ephemeral_commands_total", "endpoint" => endpoint, "method" => method)
        .increment(commands);
    resp
}

/// What one request asked of the shared stores. Work a request hands to
/// another task on its behalf (a change committed by the audit writer) is
/// run in the request's scope with [`on_behalf`], so it counts too.
#[derive(Default)]
pub struct Cost {
    reads: AtomicU64,
    writes: AtomicU64,
    commands: AtomicU64,
}

impl Cost {
    fn totals(&self) -> (u64, u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed), self.commands.load(Ordering::Relaxed))
    }
}

tokio::task_local! {
    static COST: Arc<Cost>;
}

/// The cost record of the request this task serves, if any.
pub fn current_cost() -> Option<Arc<Cost>> {
    COST.try_with(Arc::clone).ok()
}

/// Runs `f` counted to `cost` (the request that asked for it), or to the
/// node's background work when there is none.
pub async fn on_behalf<F: Future>(cost: Option<Arc<Cost>>, f: F) -> F::Output {
    match cost {
        Some(c) => COST.scope(c, f).await,
        None => f.await,
    }
}

/// Kind of an SQL statement, by its first keyword: `write` for statements
/// that change rows, `read` for queries, `other` for the rest (transaction
/// control, pragmas, schema).
pub fn statement_kind(sql: &str) -> &'static str {
    let word = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
    if ["INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE"].iter().any(|w| word.eq_ignore_ascii_case(w)) {
        "write"
    } else if word.eq_ignore_ascii_case("SELECT") || word.eq_ignore_ascii_case("VALUES") {
        "read"
    } else if word.eq_ignore_ascii_case("WITH") {
        let upper = sql.to_ascii_uppercase();
        if ["INSERT ", "UPDATE ", "DELETE "].iter().any(|w| upper.contains(w)) { "write" } else { "read" }
    } else {
        "other"
    }
}

/// Called by the database connection after every statement.
pub fn db_statement(sql: &str) {
    let kind = statement_kind(sql);
    let origin = match COST.try_with(|c| match kind {
        "write" => c.writes.fetch_add(1, Ordering::Relaxed),
        "read" => c.reads.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    }) {
        Ok(_) => "request",
        Err(_) => "background",
    };
    // `CIVID_LOG=civid::sql=trace` lists every statement (without values).
    tracing::trace!(target: "civid::sql", kind, origin, "{sql}");
    metrics::counter!("civid_db_statements_total", "kind" => kind, "origin" => origin).increment(1);
}

/// Called by the ephemeral store for every command it runs.
pub fn ephemeral_command() {
    let origin = match COST.try_with(|c| c.commands.fetch_add(1, Ordering::Relaxed)) {
        Ok(_) => "request",
        Err(_) => "background",
    };
    metrics::counter!("civid_ephemeral_commands_total", "origin" => origin).increment(1);
}

/// A sign-in attempt, by method, outcome and portal (portals number in the
/// hundreds, a bounded label set).
pub fn signin(method: &'static str, outcome: &'static str, client: &str) {
    metrics::counter!("civid_signins_total", "method" => method, "outcome" => outcome, "client" => client.to_string())
        .increment(1);
}

pub fn token_issued(grant: &'static str) {
    metrics::counter!("civid_tokens_issued_total", "grant" => grant).increment(1);
}

/// Renders the exposition, refreshing gauges that are read, not counted.
pub fn render(db: &sea_orm::DatabaseConnection) -> String {
    let (size, idle) = pool_use(db);
    metrics::gauge!("civid_db_pool_connections", "state" => "open").set(size as f64);
    metrics::gauge!("civid_db_pool_connections", "state" => "idle").set(idle as f64);
    handle().map(|h| h.render()).unwrap_or_default()
}

fn pool_use(db: &sea_orm::DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (p.size(), p.num_idle())
        }
        sea_orm::DatabaseBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            (p.size(), p.num_idle())
        }
        _ => (0, 0),
    }
}

static LAST_STATS: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
/// Counting rows is not free on large tables: at most this often.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Updates the statistics gauges (accounts, live sessions) and the
/// ephemeral store's health, at most every 30 seconds.
pub async fn refresh_statistics(state: &crate::state::AppState) {
    let up = state.eph.ping().await.is_ok();
    metrics::gauge!("civid_ephemeral_store_up").set(if up { 1.0 } else { 0.0 });
    {
        let mut last = match LAST_STATS.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if last.is_some_and(|t| t.elapsed() < STATS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    let now = crate::store::now();
    for realm in state.realms.names() {
        if let Ok(n) = crate::store::users::count(&state.db, &realm).await {
            metrics::gauge!("civid_accounts", "realm" => realm.clone()).set(n as f64);
        }
        if let Ok(n) = crate::store::sessions::count_live(&state.db, &realm, now).await {
            metrics::gauge!("civid_sso_sessions_active", "realm" => realm.clone()).set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::statement_kind;

    #[test]
    fn statements_are_classified_by_their_first_keyword() {
        assert_eq!(statement_kind("SELECT \"users\".\"id\" FROM users"), "read");
        assert_eq!(statement_kind("  insert into audit_log values ($1)"), "write");
        assert_eq!(statement_kind("UPDATE sso_sessions SET clients = $1"), "write");
        assert_eq!(statement_kind("DELETE FROM grants WHERE id = $1"), "write");
        assert_eq!(statement_kind("WITH x AS (SELECT 1) SELECT * FROM x"), "read");
        assert_eq!(statement_kind("WITH x AS (DELETE FROM t RETURNING id) SELECT id FROM x"), "write");
        assert_eq!(statement_kind("SAVEPOINT sp1"), "other");
        assert_eq!(statement_kind("PRAGMA foreign_keys = ON"), "other");
    }

    #[tokio::test]
    async fn statements_count_to_the_request_that_made_them() {
        let cost = std::sync::Arc::new(super::Cost::default());
        super::on_behalf(Some(cost.clone()), async {
            super::db_statement("SELECT 1");
            super::db_statement("INSERT INTO t VALUES (1)");
            super::ephemeral_command();
        })
        .await;
        // Outside any request: background, not this request's.
        super::db_statement("UPDATE t SET a = 1");
        assert_eq!(cost.totals(), (1, 1, 1));
    }
}
