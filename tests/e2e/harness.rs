//! Starts the real server on a free port and hands tests a real OIDC client
//! (the `openidconnect` crate) and a cookie-keeping browser-like client.
//!
//! Each test gets its own database cloned from a template that is migrated,
//! has the realms of `tests/e2e/realms` applied and its keys generated once
//! per test process: a SQLite file copy, or `CREATE DATABASE … TEMPLATE` on
//! PostgreSQL when `CIVID_TEST_DATABASE_URL` is set. `CIVID_TEST_REDIS_URL`
//! selects Redis (each test under its own key prefix).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use civid::config::Settings;
use civid::server::{self, StartOptions};
use civid::state::SharedState;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};
use tokio::sync::{OnceCell, oneshot};

/// The test KEK: fixed so the template's wrapped keys open in every clone.
pub const TEST_KEK: &str = "dGVzdC1rZWstdGVzdC1rZWstdGVzdC1rZWstMzJieXQ";

static TEMPLATE: OnceCell<Template> = OnceCell::const_new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

enum Template {
    Sqlite { _dir: tempfile::TempDir, file: PathBuf },
    Postgres { base: String, name: String },
}

pub fn realms_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/realms"))
}

fn pg_url() -> Option<String> {
    std::env::var("CIVID_TEST_DATABASE_URL").ok().filter(|s| !s.is_empty())
}

pub fn redis_url() -> Option<String> {
    std::env::var("CIVID_TEST_REDIS_URL").ok().filter(|s| !s.is_empty())
}

/// `postgres://u@h:p/db` → (`postgres://u@h:p`, `db`)
fn split_db(url: &str) -> (String, String) {
    let (base, rest) = url.rsplit_once('/').unwrap_or((url, "postgres"));
    (base.to_string(), rest.split('?').next().unwrap_or("postgres").to_string())
}

async fn pg_admin(base: &str, db: &str) -> sea_orm::DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new(format!("{base}/{db}"));
    opts.max_connections(1).sqlx_logging(false);
    sea_orm::Database::connect(opts).await.expect("connect to PostgreSQL")
}

pub fn base_settings() -> Settings {
    Settings {
        kek: TEST_KEK.into(),
        realms_dir: realms_dir(),
        database_max_connections: 5,
        cache_refresh_secs: 1,
        outbox_dir: std::env::temp_dir().join(format!("civid-test-outbox-{}", std::process::id())),
        // Realm "other" verifies over http: a node needs a verifier to start.
        // Nothing listens here; tests that verify there start their own.
        verifier_url: UNUSED_VERIFIER.into(),
        verifier_secret: "unused".into(),
        ..Default::default()
    }
}

/// The verifier of nodes whose tests do not verify in realm "other".
pub const UNUSED_VERIFIER: &str = "http://127.0.0.1:9/check";

async fn prepare_template(settings: &Settings) {
    let state = server::prepare(settings.clone(), StartOptions { migrate: true, apply_realms: true, verbose: false })
        .await
        .expect("template database");
    if settings.database_url.starts_with("sqlite") {
        use sea_orm::ConnectionTrait;
        state.db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await.expect("checkpoint");
    }
    let db = state.db.clone();
    drop(state);
    db.close().await.expect("close template");
}

async fn template() -> &'static Template {
    TEMPLATE
        .get_or_init(|| async {
            let mut settings = base_settings();
            match pg_url() {
                Some(url) => {
                    let (base, admin_db) = split_db(&url);
                    let name = format!("civid_tpl_{}", std::process::id());
                    let admin = pg_admin(&base, &admin_db).await;
                    use sea_orm::ConnectionTrait;
                    sweep_old_databases(&admin).await;
                    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop template");
                    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create template");
                    admin.close().await.ok();
                    settings.database_url = format!("{base}/{name}");
                    prepare_template(&settings).await;
                    Template::Postgres { base, name }
                }
                None => {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let file = dir.path().join("template.db");
                    settings.database_url = format!("sqlite://{}?mode=rwc", file.display());
                    prepare_template(&settings).await;
                    Template::Sqlite { _dir: dir, file }
                }
            }
        })
        .await
}

/// Drops the databases earlier test runs left behind. One still in use (by
/// a test process running now) refuses to drop, and is left alone.
async fn sweep_old_databases(admin: &sea_orm::DatabaseConnection) {
    use sea_orm::{ConnectionTrait, Statement};
    let mine = format!("_{}_", std::process::id());
    let Ok(rows) = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'civid_t\\_%' OR datname LIKE 'civid_tpl\\_%'",
        ))
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        if name.contains(&mine) || name.ends_with(&format!("_{}", std::process::id())) {
            continue;
        }
        // Another test process's database: only if that process is gone
        // (several test runs may share one PostgreSQL).
        if owner_pid(&name).is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\"")).await;
    }
}

/// The process id in a test database's name: `civid_t_{pid}_{n}` or
/// `civid_tpl_{pid}`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("civid_t_").or_else(|| name.strip_prefix("civid_tpl_"))?;
    rest.split('_').next()?.parse().ok()
}

/// A fresh database cloned from the template; returns its URL and a guard.
pub async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    match template().await {
        Template::Sqlite { file, .. } => {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = dir.path().join("civid.db");
            std::fs::copy(file, &db).expect("copy template");
            (format!("sqlite://{}?mode=rwc", db.display()), Some(dir))
        }
        Template::Postgres { base, name } => {
            let (_, admin_db) = split_db(&pg_url().unwrap_or_default());
            let db = format!("civid_t_{}_{n}", std::process::id());
            let admin = pg_admin(base, &admin_db).await;
            use sea_orm::ConnectionTrait;
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db}")).await.expect("drop");
            // Concurrent clones of one template can collide; retry briefly.
            let mut tries = 0;
            loop {
                match admin.execute_unprepared(&format!("CREATE DATABASE {db} TEMPLATE {name}")).await {
                    Ok(_) => break,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("create test database: {e}"),
                }
            }
            admin.close().await.ok();
            (format!("{base}/{db}"), None)
        }
    }
}

/// A new, empty PostgreSQL database (no migrations, realms or keys), for
/// tests of what nodes do to a database they find empty; None on SQLite.
pub async fn empty_postgres_database() -> Option<String> {
    let url = pg_url()?;
    let (base, admin_db) = split_db(&url);
    let db = format!("civid_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst) + 100_000);
    let admin = pg_admin(&base, &admin_db).await;
    use sea_orm::ConnectionTrait;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db}")).await.expect("drop");
    admin.execute_unprepared(&format!("CREATE DATABASE {db}")).await.expect("create empty database");
    admin.close().await.ok();
    Some(format!("{base}/{db}"))
}

pub struct TestServer {
    pub url: String,
    /// The admin listener (admin API, /metrics).
    pub admin_url: String,
    pub port: u16,
    pub state: SharedState,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_configured(|_| {}).await
    }

    /// The server as `http://localhost:<port>`: browsers refuse WebAuthn on
    /// an IP-address origin ("This is an invalid domain").
    pub async fn start_on_localhost() -> TestServer {
        TestServer::start_at("localhost", |_| {}).await
    }

    /// A server on a fresh database whose settings `tweak` changes first.
    pub async fn start_configured(tweak: impl FnOnce(&mut Settings)) -> TestServer {
        TestServer::start_at("127.0.0.1", tweak).await
    }

    async fn start_at(host: &str, tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let (db, dir) = fresh_database().await;
        let mut settings = base_settings();
        settings.database_url = db;
        if let Some(r) = redis_url() {
            settings.redis_url = r;
            settings.redis_key_prefix =
                format!("civid-test-{}-{}:", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        }
        tweak(&mut settings);
        TestServer::launch(settings, dir, host).await
    }

    /// Another node on the same database and ephemeral store.
    pub async fn start_with(settings: Settings, dir: Option<tempfile::TempDir>) -> TestServer {
        TestServer::launch(settings, dir, "127.0.0.1").await
    }

    async fn launch(mut settings: Settings, dir: Option<tempfile::TempDir>, host: &str) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        settings.listen = listener.local_addr().expect("addr");
        settings.public_url = format!("http://{host}:{port}");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let admin_url = format!("http://{}", admin.local_addr().expect("addr"));
        settings.admin_listen = admin.local_addr().expect("addr").to_string();
        let state =
            server::prepare(settings.clone(), StartOptions { migrate: false, apply_realms: false, verbose: false })
                .await
                .expect("server start");
        let (tx, rx) = oneshot::channel::<()>();
        let s = state.clone();
        let task = tokio::spawn(async move {
            server::run(s, listener, Some(admin), async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        TestServer {
            url: settings.public_url.clone(),
            admin_url,
            port,
            state,
            settings,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.url)
    }

    /// Creates a person with a password; returns their id.
    pub async fn user(&self, realm: &str, username: &str, password: &str) -> String {
        use civid::account::identifiers::Identifier;
        use civid::account::users::{NewUser, Profile, create};
        let mut identifiers = vec![Identifier::username(username).expect("username")];
        identifiers.push(Identifier::email(&format!("{username}@example.cn")).expect("email"));
        create(
            &self.state.db,
            &self.state.secrets,
            realm,
            NewUser {
                identifiers,
                password: Some(password.into()),
                profile: Profile { name: Some(format!("测试 {username}")) },
            },
        )
        .await
        .expect("create user")
    }

    /// Adds an authenticator app to a person, as the account centre does;
    /// returns its secret (for `civid::authn::totp::code_at`).
    pub async fn enrol_totp(&self, realm: &str, user_id: &str) -> String {
        use civid::authn::totp::{self, Confirmed};
        let s = &self.state;
        let r = s.realms.get(realm).expect("realm");
        let e = totp::start(s, &r, user_id, "enrolled by a test").await.expect("enrol");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let code = totp::code_at(&e.secret, now).expect("code");
        let done = totp::confirm(s, &r, user_id, &e.id, &code, "app").await.expect("confirm");
        assert!(matches!(done, Confirmed::Added { .. }));
        e.secret
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A browser: keeps cookies, does not follow redirects (tests look at each).
pub fn browser() -> reqwest::Client {
    server::install_crypto_provider();
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("browser")
}

/// The HTTP client the `openidconnect` crate uses.
#[derive(Clone)]
pub struct Http(reqwest::Client);

pub fn http() -> Http {
    server::install_crypto_provider();
    Http(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http"))
}

#[derive(Debug)]
pub struct HttpError(String);
impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HttpError {}

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut req = self.0.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in parts.headers.iter() {
                req = req.header(k, v);
            }
            let resp = req.send().await.map_err(|e| HttpError(e.to_string()))?;
            let mut builder = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let bytes = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
            builder.body(bytes.to_vec()).map_err(|e| HttpError(e.to_string()))
        })
    }
}

pub type Oidc = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A relying party configured by discovery, as a portal would be.
pub async fn relying_party(
    server: &TestServer,
    realm: &str,
    client_id: &str,
    secret: Option<&str>,
    redirect: &str,
) -> Oidc {
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(server.issuer(realm)).expect("issuer"), &http())
        .await
        .expect("discovery");
    CoreClient::from_provider_metadata(
        meta,
        ClientId::new(client_id.into()),
        secret.map(|s| ClientSecret::new(s.into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).expect("redirect"))
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Extracts a hidden input's value from a form page.
pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    html.split(&needle).nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", COUNTER.fetch_add(1, Ordering::SeqCst))
}

pub type Shared<T> = Arc<T>;

/// A `civid` process of the real binary.
pub struct Node {
    pub url: String,
    /// The admin listener (admin API, `/metrics`).
    pub admin: String,
    child: Option<std::process::Child>,
    _cwd: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Environment for the binary: database, Redis, KEK, realm files.
pub fn node_env(db: &str, redis_prefix: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("CIVID_DATABASE_URL".to_string(), db.to_string()),
        ("CIVID_KEK".to_string(), TEST_KEK.to_string()),
        ("CIVID_REALMS_DIR".to_string(), realms_dir().display().to_string()),
        ("CIVID_CACHE_REFRESH_SECS".to_string(), "1".to_string()),
        ("CIVID_LOG".to_string(), "warn".to_string()),
        ("CIVID_VERIFIER_URL".to_string(), UNUSED_VERIFIER.to_string()),
        ("CIVID_VERIFIER_SECRET".to_string(), "unused".to_string()),
    ];
    if let (Some(r), Some(p)) = (redis_url(), redis_prefix) {
        env.push(("CIVID_REDIS_URL".into(), r));
        env.push(("CIVID_REDIS_KEY_PREFIX".into(), p.into()));
    }
    env
}

/// Runs a `civid` command to completion: (status, stdout, stderr).
pub fn civid(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let cwd = tempfile::tempdir().expect("cwd");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_civid"));
    cmd.args(args).current_dir(cwd.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn civid");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or_default().as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("civid output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Node {
    /// Starts `civid serve` and waits until it is ready.
    pub async fn start(env: &[(String, String)], public_url: Option<&str>) -> Node {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let cwd = tempfile::tempdir().expect("cwd");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_civid"));
        cmd.arg("serve").current_dir(cwd.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("CIVID_LISTEN", format!("127.0.0.1:{port}"));
        let admin = format!("127.0.0.1:{}", free_port());
        cmd.env("CIVID_ADMIN_LISTEN", &admin);
        cmd.env("CIVID_PUBLIC_URL", public_url.unwrap_or(&url));
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit());
        let child = cmd.spawn().expect("spawn civid serve");
        let node = Node { url: url.clone(), admin: format!("http://{admin}"), child: Some(child), _cwd: cwd };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{url}/readyz")).send().await
                && r.status() == 200
            {
                return node;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("civid serve did not become ready at {url}");
    }

    /// SIGKILL, then wait: the process ends at once, as on a lost machine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait: returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
