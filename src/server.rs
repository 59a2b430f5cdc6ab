//! Starting a node: connect, migrate, load secrets, apply realm files,
//! make sure every realm has keys, fill the caches, then serve until told
//! to stop, letting in-flight requests finish.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::IntoFuture;

use futures_util::StreamExt;
use tokio::net::TcpListener;

use crate::account::senders::Sender;
use crate::config::Settings;
use crate::realm;
use crate::secrets;
use crate::state::{AppState, SharedState};
use crate::store::{self, ephemeral::Ephemeral};

pub struct StartOptions {
    pub migrate: bool,
    pub apply_realms: bool,
    /// Print what start-up did (the CLI does; tests do not).
    pub verbose: bool,
}

/// Installs ring as rustls' provider (reqwest is built without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn connect_ephemeral(settings: &Settings) -> Result<Ephemeral, String> {
    match settings.redis_target().map_err(|e| format!("configuration: {e}"))? {
        None => Ok(Ephemeral::memory()),
        Some(target) => {
            let at = match &target {
                store::ephemeral::RedisTarget::Single(url) => redact(url),
                store::ephemeral::RedisTarget::Cluster(urls) => {
                    format!("cluster {}", urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", "))
                }
                store::ephemeral::RedisTarget::Sentinel { sentinels, master } => format!(
                    "master {master:?} of sentinels {}",
                    sentinels.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
                ),
            };
            Ephemeral::redis(&target, &settings.redis_key_prefix)
                .await
                .map_err(|e| format!("Redis ({} mode) at {at}: {e}", settings.redis_mode))
        }
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Migrations, the data key, realm files, first signing keys: what a node
/// does to the database before it serves (under [`store::start_lock`]).
async fn prepare_database(
    settings: &Settings,
    opts: &StartOptions,
    db: &store::Db,
) -> Result<(secrets::Secrets, secrets::KekSource), String> {
    if opts.migrate {
        store::migrate(db).await.map_err(|e| format!("migrations: {e}"))?;
    }
    let (secrets, source) = secrets::load(settings, db).await?;
    if opts.apply_realms && settings.realms_dir.exists() {
        let decls = realm::file::load(&settings.realms_dir)?;
        let changes = realm::apply::apply(db, &decls, false).await?;
        if opts.verbose {
            for c in &changes {
                println!("{c}");
            }
        }
    }
    for r in store::realms::realm_list(db).await.map_err(|e| e.to_string())? {
        let created = realm::keys::ensure(db, &secrets.kek, &r.id).await?;
        if opts.verbose {
            for k in created {
                println!("realm {}: generated signing key {k}", r.id);
            }
        }
    }
    Ok((secrets, source))
}

pub async fn prepare(settings: Settings, opts: StartOptions) -> Result<SharedState, String> {
    install_crypto_provider();
    crate::metrics::handle();
    // Certificates and keys first: a bad file stops the node before
    // anything else is touched.
    let services = crate::realname::transport::build(&settings)?;
    let db = store::connect(&settings.database_url, settings.database_max_connections)
        .await
        .map_err(|e| format!("database {}: {e}", redact(&settings.database_url)))?;
    // Nodes starting together prepare the database one at a time.
    let lock = store::start_lock(&settings.database_url)
        .await
        .map_err(|e| format!("database {}: {e}", redact(&settings.database_url)))?;
    let prepared = prepare_database(&settings, &opts, &db).await;
    lock.release().await;
    let (secrets, source) = prepared?;
    // A connection of its own for SQLite files; an in-memory database
    // exists only within its pool, so there the pool serves.
    let in_memory = ["memory:", "mode=memory"].iter().any(|m| settings.database_url.contains(m));
    let hot = match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite if !in_memory => store::connect(&settings.database_url, 1)
            .await
            .map_err(|e| format!("database {}: {e}", redact(&settings.database_url)))?,
        _ => db.clone(),
    };
    let eph = connect_ephemeral(&settings).await?;
    if opts.verbose
        && let secrets::KekSource::Generated(p) = &source
    {
        println!("generated a key-encryption key in {p} (keep it safe; without it the stored keys cannot be read)");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let sms = match settings.sms_sender.as_str() {
        "outbox" => Sender::outbox(settings.outbox_dir.clone()),
        "webhook" if settings.sms_webhook_url.starts_with("https://") => {
            Sender::webhook(settings.sms_webhook_url.clone(), &settings.sms_webhook_secret, http.clone())
        }
        "webhook" => return Err("sms_webhook_url must be an https:// URL".into()),
        other => return Err(format!("sms_sender {other:?}: use outbox or webhook")),
    };
    let email = match settings.email_sender.as_str() {
        "outbox" => Sender::outbox(settings.outbox_dir.clone()),
        "smtp" if settings.smtp_from.is_empty() => return Err("email_sender smtp needs smtp_from".into()),
        "smtp" => {
            Sender::smtp(&settings.smtp_url, &settings.smtp_username, &settings.smtp_password, &settings.smtp_from)?
        }
        other => return Err(format!("email_sender {other:?}: use outbox or smtp")),
    };
    let state = Arc::new(AppState {
        sms,
        email,
        settings,
        audit: crate::audit::AuditWriter::spawn(hot.clone()),
        hot,
        db,
        eph,
        secrets,
        realms: Default::default(),
        http,
        services,
        client_jwks: Mutex::new(Default::default()),
        refresh_now: tokio::sync::Notify::new(),
        logout_wake: tokio::sync::Notify::new(),
    });
    state.realms.refresh(&state.settings, &state.db, &state.secrets.kek).await?;
    if state.services.verifier.is_none() {
        let mut http: Vec<String> = state
            .realms
            .names()
            .into_iter()
            .filter(|n| state.realms.get(n).is_some_and(|r| r.settings.realname.verifier == "http"))
            .collect();
        if !http.is_empty() {
            http.sort();
            return Err(format!(
                "realm {} uses realname.verifier = \"http\", but verifier_url is not set (and verifier_secret \
                 or verifier_tls_cert/verifier_tls_key with it)",
                http.join(", ")
            ));
        }
    }
    Ok(state)
}

/// Serves the public listener (and the admin listener, when given) until
/// `shutdown` resolves; in-flight requests then get `shutdown_grace_secs`
/// to finish before the remaining connections close.
pub async fn run(
    state: SharedState,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
    let tasks = spawn_background(state.clone());
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let public = axum::serve(listener, crate::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(wait_stop(stopped.clone()))
        .into_future();
    let admin = admin.map(|l| {
        axum::serve(l, crate::http::admin::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(wait_stop(stopped.clone()))
            .into_future()
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let both = async move {
        match admin {
            Some(a) => {
                let (p, a) = tokio::join!(public, a);
                p.and(a)
            }
            None => public.await,
        }
    };
    let mut stopped_rx = stopped;
    let deadline = async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    let r = tokio::select! {
        r = both => r,
        _ = deadline => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
            Ok(())
        }
    };
    for t in tasks {
        t.abort();
    }
    r
}

fn spawn_background(state: SharedState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(s.settings.cache_refresh_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = s.refresh_now.notified() => {}
            }
            s.refresh_realms().await;
        }
    }));
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(s.settings.audit_checkpoint_secs.max(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            for realm in s.realms.names() {
                if let Err(e) = crate::audit::checkpoint::write(&s.db, &s.secrets.kek, &realm).await {
                    tracing::warn!(realm, "audit checkpoint failed: {e}");
                }
            }
        }
    }));
    tasks.push(tokio::spawn(async move {
        // Histograms grow until drained; a node nobody scrapes must not.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Some(h) = crate::metrics::handle() {
                h.run_upkeep();
            }
        }
    }));
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        // Cancelled accounts past their retention lose their personal data.
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match crate::account::selfservice::purge_due(&s, crate::store::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(accounts = n, "cancelled accounts purged"),
                Err(e) => tracing::warn!("purging cancelled accounts failed: {e}"),
            }
        }
    }));
    if state.settings.housekeeping_secs > 0 {
        let s = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(s.settings.housekeeping_secs));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                crate::housekeeping::run(&s, crate::store::now()).await;
            }
        }));
    }
    // Back-channel logout: deliver the outbox, and end sessions past their
    // lifetimes (which enqueues their logout tokens).
    tasks.extend(crate::logout::worker::spawn(state.clone()));
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(s.settings.session_sweep_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            crate::logout::expiry::sweep_all(&s).await;
        }
    }));
    if state.settings.registry_apply_secs > 0 {
        let s = state.clone();
        tasks.push(tokio::spawn(async move {
            // What registry imports recorded for accounts (also what a
            // killed import left pending) is applied without waiting for
            // an operator; every node may run it at once (exactly once).
            let mut tick = tokio::time::interval(Duration::from_secs(s.settings.registry_apply_secs));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match crate::registry::changes::apply_pending(&s).await {
                    Ok(fx) if fx.changes == 0 => {}
                    Ok(fx) => tracing::info!(
                        changes = fx.changes,
                        accounts_demoted = fx.accounts_demoted,
                        claims_ended = fx.claims_ended,
                        sessions_ended = fx.sessions_ended,
                        "registry changes applied"
                    ),
                    Err(e) => tracing::warn!("applying registry changes failed: {e}"),
                }
            }
        }));
    }
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            s.eph.sweep();
        }
    }));
    if let Some(mut sub) = state.eph.invalidations() {
        let s = state.clone();
        tasks.push(tokio::spawn(async move {
            // Reconnects by itself: a Redis restart only delays invalidations
            // to the polling interval meanwhile.
            loop {
                match sub.connect().await {
                    Ok(mut ps) => {
                        if ps.subscribe(&sub.channel).await.is_ok() {
                            let mut msgs = ps.on_message();
                            while msgs.next().await.is_some() {
                                s.refresh_now.notify_one();
                            }
                        }
                    }
                    Err(e) => tracing::debug!("invalidation subscription: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    tasks
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
