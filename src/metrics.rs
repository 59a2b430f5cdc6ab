//! Prometheus metrics: request latency per endpoint, sign-ins, tokens, pool
//! use. One recorder per process (tests run several servers in one).
use std::sync::OnceLock;
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
        "civid_logout_deliveries_total",
        "Back-channel logout token deliveries by outcome (delivered, retry, given_up)"
    );
}

/// Middleware: one latency observation per request, labelled by the route
/// pattern (never the raw path, which would explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let endpoint =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("civid_http_request_duration_seconds", "endpoint" => endpoint, "method" => method, "status" => status)
        .record(start.elapsed().as_secs_f64());
    resp
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
