//! Load benchmark: starts the real `civid` binary (the release build cargo
//! made for this bench) as its own process on a free port — or several, on
//! one database and one Redis — measures how soon it is ready and how much
//! memory it holds, then drives it with N keep-alive connections for a fixed
//! time per scenario and prints Markdown tables for `docs/PERFORMANCE.md`
//! (progress goes to standard error).
//!
//! ```text
//! cargo bench --bench load -- [--secs 10] [--warmup 1] [--concurrency 64]
//!     [--scenario discovery,jwks,client_credentials,sso_round,refresh,userinfo,introspect,password_signin,logout]
//!     [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/]
//!     [--sqlite] [--memory] [--nodes 1] [--accounts 0] [--sessions 0] [--users 64]
//!     [--restarts 5] [--no-wrk] [--scrape SECS] [--server-env KEY=VALUE]... [--keep]
//! ```
//!
//! Default backend: a fresh SQLite file in a temporary directory and the
//! in-process ephemeral store. `--postgres URL` (or `CIVID_BENCH_DATABASE_URL`)
//! drops and recreates the database `civid_bench` on that server, through the
//! database the URL names; the URL's query (`?sslmode=disable`) is kept for
//! civid's own connections. `--redis URL` (or `CIVID_BENCH_REDIS_URL`) uses
//! Redis under a key prefix of its own for this run. `--sqlite` and
//! `--memory` override those variables.
//!
//! `--nodes N` (PostgreSQL and Redis only) runs N `civid serve` processes on
//! the same database and Redis with one public URL (the first node's), as
//! behind a load balancer: every worker sends each request to the next node
//! in turn (round robin). Server CPU is the sum over the nodes; RSS is given
//! per node.
//!
//! `--accounts N` writes N more accounts (a user row, a phone and an email
//! identifier with random blind indexes) straight into the tables before the
//! load, and `--sessions N` N live SSO sessions with cookies the bench knows
//! (`bench-session-00000000`, …; the table holds their SHA-256), for the bulk
//! accounts (or the real ones without `--accounts`).
//!
//! Start-up: "ready" is the time from spawning `civid serve` to the first 200
//! on `/readyz`, once on a fresh database (migrations, realm file, key
//! generation) and `--restarts` times on the existing one (after the seeding);
//! the last restart stays up for the load (node 0). RSS is read from
//! `/proc/<pid>/status`.
//!
//! Scenarios: `discovery`, `jwks` (GET), `client_credentials` (ES256 access
//! token), `sso_round` (authorize with the session cookie → 303 with a code
//! → token: RS256 ID token, ES256 access token, refresh token), `refresh`
//! (rotating refresh tokens), `userinfo` and `introspect` (with a person's
//! access token), `password_signin` (a new browser's whole sign-in:
//! authorize → login page → password → code → token, spread over `--users`
//! accounts made with `civid user add`) and `logout` (a seeded session
//! signed out through the confirmation page, each session once). Each
//! connection of the session scenarios is a browser that signed in once
//! through the login page; with `--sessions`, `sso_round` instead presents
//! the cookie of a randomly chosen seeded session each round. The load
//! generator runs on the same two cores: CPU seconds per operation are
//! reported for the server, the generator, and the PostgreSQL and Redis
//! processes, with how busy the whole machine was. Where `wrk` is installed,
//! discovery, JWKS and client_credentials are also measured with `wrk -t2`
//! at the same connection count (one node only). Before and after each
//! scenario every node's `/metrics` is read: the database statements
//! (reads, writes) and ephemeral-store (Redis) commands the requests made,
//! and the database writes of background work, per operation. `--scrape
//! SECS` scrapes the admin listener's `/metrics` during the load, as
//! Prometheus would; `--server-env` passes extra variables to the server
//! (allocator tunables, pool sizes).
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

const REALM: &str = "bench";
const CLIENT_ID: &str = "bench-portal";
const CLIENT_SECRET: &str = "bench-portal-secret-not-for-production-use";
const REDIRECT_URI: &str = "https://bench.example/cb";
const USERNAME: &str = "benchuser";
const PASSWORD: &str = "bench-password-1234";
const KEK_BYTES: &[u8; 32] = b"bench-kek-bench-kek-bench-kek-32";
const PG_DB: &str = "civid_bench";
const FORM: &str = "application/x-www-form-urlencoded";

/// In this order by default: `logout` ends the seeded sessions, so it is last.
const SCENARIOS: [&str; 9] = [
    "discovery",
    "jwks",
    "client_credentials",
    "sso_round",
    "refresh",
    "userinfo",
    "introspect",
    "password_signin",
    "logout",
];
/// Accounts of `password_signin`: `benchuser000`, `benchuser001`, …
const SIGNIN_PREFIX: &str = "benchuser";
/// The bulk accounts' ids: `bulk-0000000001` … (SQL formats them the same way).
const BULK_PREFIX: &str = "bulk-";

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("load bench: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- options

struct Opts {
    secs: u64,
    warmup: u64,
    concurrency: usize,
    scenarios: Vec<String>,
    postgres: Option<String>,
    redis: Option<String>,
    restarts: usize,
    wrk: bool,
    keep: bool,
    /// Extra environment for the server (experiments: allocator tunables, pool sizes).
    server_env: Vec<(String, String)>,
    /// Scrape `/metrics` every this many seconds during the load (0: never).
    scrape: u64,
    /// Server processes on the same database and Redis.
    nodes: usize,
    /// Accounts written straight into the tables before the load.
    accounts: u64,
    /// Live SSO sessions written straight into the table, with known cookies.
    sessions: u64,
    /// Accounts made with `civid user add` for `password_signin`.
    users: usize,
}

const USAGE: &str = "cargo bench --bench load -- [--secs N] [--warmup N] [--concurrency N] [--scenario a,b,..] \
                     [--postgres URL] [--redis URL] [--sqlite] [--memory] [--nodes N] [--accounts N] [--sessions N] \
                     [--users N] [--restarts N] [--no-wrk] [--scrape SECS] [--server-env K=V]... [--keep]\n\
                     scenarios: discovery jwks client_credentials sso_round refresh userinfo introspect password_signin logout";

fn parse_opts() -> Res<Opts> {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let mut o = Opts {
        secs: 10,
        warmup: 1,
        concurrency: 64,
        scenarios: Vec::new(),
        postgres: env("CIVID_BENCH_DATABASE_URL"),
        redis: env("CIVID_BENCH_REDIS_URL"),
        restarts: 5,
        wrk: true,
        keep: false,
        server_env: Vec::new(),
        scrape: 0,
        nodes: 1,
        accounts: 0,
        sessions: 0,
        users: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|_| format!("{name}: {v:?} is not a number"));
        match a.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--secs" => o.secs = num(value("--secs")?, "--secs")?.max(1),
            "--warmup" => o.warmup = num(value("--warmup")?, "--warmup")?,
            "--concurrency" | "-c" => o.concurrency = num(value("--concurrency")?, "--concurrency")?.max(1) as usize,
            "--scrape" => o.scrape = num(value("--scrape")?, "--scrape")?,
            "--restarts" => o.restarts = num(value("--restarts")?, "--restarts")?.max(1) as usize,
            "--nodes" => o.nodes = num(value("--nodes")?, "--nodes")?.max(1) as usize,
            "--accounts" => o.accounts = num(value("--accounts")?, "--accounts")?,
            "--sessions" => o.sessions = num(value("--sessions")?, "--sessions")?,
            "--users" => o.users = num(value("--users")?, "--users")?.clamp(1, 1000) as usize,
            "--scenario" => {
                for s in value("--scenario")?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !SCENARIOS.contains(&s) {
                        return Err(format!("unknown scenario {s:?}\n{USAGE}"));
                    }
                    o.scenarios.push(s.to_string());
                }
            }
            "--postgres" => o.postgres = Some(value("--postgres")?),
            "--sqlite" => o.postgres = None,
            "--redis" => o.redis = Some(value("--redis")?),
            "--memory" => o.redis = None,
            "--no-wrk" => o.wrk = false,
            "--keep" => o.keep = true,
            "--server-env" => {
                let kv = value("--server-env")?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))?;
                o.server_env.push((k.to_string(), v.to_string()));
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if o.scenarios.is_empty() {
        // logout signs out seeded sessions: only with --sessions.
        o.scenarios = SCENARIOS.iter().filter(|s| **s != "logout" || o.sessions > 0).map(|s| s.to_string()).collect();
    } else if o.sessions == 0 && o.scenarios.iter().any(|s| s == "logout") {
        return Err("scenario logout signs out seeded sessions: give --sessions N".into());
    }
    if o.nodes > 1 && (o.postgres.is_none() || o.redis.is_none()) {
        return Err(format!(
            "--nodes {} needs --postgres and --redis: nodes share only the database and the ephemeral store, \
             and a SQLite file or the in-process store belongs to one process",
            o.nodes
        ));
    }
    Ok(o)
}

// ---------------------------------------------------------------- /proc

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// (utime + stime, cutime + cstime) of a process, in seconds.
fn cpu_secs(pid: &str, tck: f64) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return (0.0, 0.0) };
    let Some((_, rest)) = stat.rsplit_once(')') else { return (0.0, 0.0) };
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // After the command name: field 3 (state) is f[0]; utime = field 14.
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / tck, (f[13] + f[14]) / tck)
}

/// CPU seconds of the PostgreSQL and Redis server processes on this machine.
/// CPU seconds of the PostgreSQL and of the Redis processes: (PostgreSQL, Redis).
fn services_cpu(tck: f64) -> (f64, f64) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return (0.0, 0.0) };
    let (mut pg, mut redis) = (0.0, 0.0);
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        match comm.trim() {
            "postgres" => pg += cpu_secs(pid, tck).0,
            "redis-server" => redis += cpu_secs(pid, tck).0,
            _ => {}
        }
    }
    (pg, redis)
}

/// (busy, total, irq + softirq) jiffies of the whole machine, from `/proc/stat`.
fn machine_jiffies() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0.0)).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let total: f64 = f.iter().take(8).sum();
    (total - at(3) - at(4), total, at(5) + at(6))
}

/// CPU counters taken at the start and the end of a measurement.
struct Sample {
    /// All the nodes together.
    server: f64,
    /// This process (the bench generator), and its waited-for children (wrk).
    own: f64,
    children: f64,
    /// PostgreSQL and Redis together, and Redis alone.
    services: f64,
    redis: f64,
    machine: (f64, f64, f64),
}

impl Sample {
    fn take(servers: &[Server], tck: f64) -> Sample {
        let (own, children) = cpu_secs("self", tck);
        let server = servers.iter().map(|s| s.cpu(tck)).sum();
        let (pg, redis) = services_cpu(tck);
        Sample { server, own, children, services: pg + redis, redis, machine: machine_jiffies() }
    }
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// One figure per node: `18.7` for one, `18.7 / 18.5 / 19.0` for three.
fn mibs(kib: &[u64]) -> String {
    kib.iter().map(|k| mib(*k)).collect::<Vec<_>>().join(" / ")
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores ({model}), {mem} RAM, load average before the run {}", load.join(" "))
}

// ---------------------------------------------------------------- the server

struct Setup {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    backend: String,
    tck: f64,
    pg_admin: Option<(String, String)>,
    /// Redis URL and this run's key prefix.
    redis: Option<(String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

fn realm_file() -> String {
    format!(
        r#"# Written by benches/load.rs.
name = "{REALM}"

[settings]
display_name = "Bench"
display_name_en = "Bench"

[clients.{CLIENT_ID}]
name = "Bench portal"
redirect_uris = ["{REDIRECT_URI}"]
token_endpoint_auth_method = "client_secret_basic"
secret_sha256 = "{}"
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["openid", "profile", "email", "phone", "offline_access"]
first_party = true
"#,
        hex(&sha256(CLIENT_SECRET.as_bytes()))
    )
}

/// `postgres://u@h:p/db?x` → (`postgres://u@h:p`, `db`, `?x`): the query
/// (`sslmode=disable`, say) applies to the bench database too.
fn split_db(url: &str) -> (String, String, String) {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (url, String::new()),
    };
    let (base, db) = path.rsplit_once('/').unwrap_or((path, "postgres"));
    let db = if db.is_empty() { "postgres" } else { db };
    (base.to_string(), db.to_string(), query)
}

/// Deletes this run's keys (they all have TTLs; this only tidies up).
async fn redis_clear(url: &str, prefix: &str) -> Result<usize, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            removed += keys.len();
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

async fn pg_exec(base: &str, admin_db: &str, sql: &str) -> Res<()> {
    use sea_orm::ConnectionTrait;
    let mut opts = sea_orm::ConnectOptions::new(format!("{base}/{admin_db}"));
    opts.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(opts).await.map_err(|e| format!("connect to PostgreSQL at {base}: {e}"))?;
    let r = db.execute_unprepared(sql).await.map(|_| ()).map_err(|e| format!("PostgreSQL: {sql}: {e}"));
    db.close().await.ok();
    r
}

// ---------------------------------------------------------------- seeding

fn signin_user(i: usize) -> String {
    format!("{SIGNIN_PREFIX}{i:03}")
}

/// The cookie of seeded session `i`; the table holds its SHA-256, as the
/// server stores a real one (`session::prepare`).
fn session_token(i: u64) -> String {
    format!("bench-session-{i:08}")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// How long the seeding took, by part.
#[derive(Default)]
struct Seeded {
    accounts: Duration,
    sessions: Duration,
    analyze: Duration,
}

/// Seeded sessions signed in this long before the seeding: the first request
/// of each one records that it was seen (a write), as for a person coming back.
const SESSION_AGE_SECS: i64 = 300;
/// Rows per INSERT of seeded sessions.
const SESSION_BATCH: u64 = 1000;

/// `accounts` more accounts and `sessions` live SSO sessions, written
/// straight into the tables (no server runs meanwhile). Each account: a user
/// row with a password hash and sealed-profile-sized random bytes, a phone
/// and an email identifier with a random 43-character blind index (so that
/// no real identifier matches it and the identifier key is as deep and
/// scattered as a real one) and random sealed bytes. Each session: a row as
/// `session::prepare` makes it for a password sign-in (amr `["pwd"]`, acr
/// `L2`), already used at the bench portal (`clients` lists it, and its
/// owner has the grant to it that first sign-in made, with the pairwise
/// subject the server derives), seen `SESSION_AGE_SECS` ago, with
/// `token_hash` the SHA-256 of `session_token(i)`; owned by bulk account
/// `i % accounts` (or by the real accounts in turn without bulk ones).
/// `ANALYZE` afterwards, as an operator's database would have statistics.
async fn seed(db_url: &str, accounts: u64, sessions: u64) -> Res<Seeded> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let mut took = Seeded::default();
    if accounts == 0 && sessions == 0 {
        return Ok(took);
    }
    let sqlite = db_url.starts_with("sqlite:");
    let db = civid::store::connect(db_url, 1).await.map_err(|e| format!("seeding: connect: {e}"))?;
    let err = |sql: &str, e: sea_orm::DbErr| format!("seeding: {e}: {}", sql.chars().take(200).collect::<String>());
    if accounts > 0 {
        let t = Instant::now();
        let created = unix_now() - 86_400;
        let hash = civid::crypto::password::hash("bulk account password").map_err(|e| e.to_string())?;
        let txn = db.begin().await.map_err(|e| format!("seeding: {e}"))?;
        let mut statements = Vec::new();
        if sqlite {
            statements.push("PRAGMA cache_size = -1048576".to_string());
            statements.push(format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {accounts}) \
                 INSERT INTO users (id, realm, status, password_hash, profile_sealed, created_at, updated_at, last_login_at, purge_after) \
                 SELECT printf('{BULK_PREFIX}%010d', x), '{REALM}', 'active', '{hash}', randomblob(48), {created}, {created}, NULL, NULL FROM c"
            ));
            for kind in ["phone", "email"] {
                statements.push(format!(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {accounts}) \
                     INSERT INTO user_identifiers (realm, kind, blind_index, user_id, sealed, verified, created_at) \
                     SELECT '{REALM}', '{kind}', substr(hex(randomblob(22)), 1, 43), printf('{BULK_PREFIX}%010d', x), \
                     randomblob(40), 1, {created} FROM c"
                ));
            }
        } else {
            // md5 of random() as random bytes: pgcrypto is not assumed.
            statements.push(format!(
                "INSERT INTO users (id, realm, status, password_hash, profile_sealed, created_at, updated_at, last_login_at, purge_after) \
                 SELECT '{BULK_PREFIX}' || lpad(x::text, 10, '0'), '{REALM}', 'active', '{hash}', \
                 decode(md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'), {created}, {created}, NULL, NULL \
                 FROM generate_series(1, {accounts}) AS x"
            ));
            for kind in ["phone", "email"] {
                statements.push(format!(
                    "INSERT INTO user_identifiers (realm, kind, blind_index, user_id, sealed, verified, created_at) \
                     SELECT '{REALM}', '{kind}', substr(upper(md5(random()::text) || md5(random()::text)), 1, 43), \
                     '{BULK_PREFIX}' || lpad(x::text, 10, '0'), \
                     decode(md5(random()::text) || md5(random()::text) || substr(md5(random()::text), 1, 16), 'hex'), \
                     true, {created} FROM generate_series(1, {accounts}) AS x"
                ));
            }
        }
        for (i, sql) in statements.iter().enumerate() {
            txn.execute_unprepared(sql).await.map_err(|e| err(sql, e))?;
            if i > 0 || !sqlite {
                eprintln!("  seeding: {} statement(s) of the accounts after {:.1} s", i + 1, t.elapsed().as_secs_f64());
            }
        }
        txn.commit().await.map_err(|e| format!("seeding: commit: {e}"))?;
        took.accounts = t.elapsed();
        eprintln!("  seeding: {accounts} accounts committed after {:.1} s", took.accounts.as_secs_f64());
    }
    if sessions > 0 {
        let t = Instant::now();
        let owners: Vec<String> = if accounts > 0 {
            Vec::new()
        } else {
            let sql = format!("SELECT id FROM users WHERE realm = '{REALM}' ORDER BY id");
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.clone()))
                .await
                .map_err(|e| err(&sql, e))?;
            rows.iter().filter_map(|r| r.try_get::<String>("", "id").ok()).collect()
        };
        if accounts == 0 && owners.is_empty() {
            return Err("seeding sessions: no accounts to own them".into());
        }
        let owner = |i: u64| match owners.get((i % owners.len().max(1) as u64) as usize) {
            Some(id) if accounts == 0 => id.clone(),
            _ => format!("{BULK_PREFIX}{:010}", i % accounts.max(1) + 1),
        };
        let auth = unix_now() - SESSION_AGE_SECS;
        // The bench realm's session settings are the defaults.
        let expires = auth + civid::realm::model::SessionSettings::default().absolute_secs as i64;
        // The grants: the pairwise subject is keyed by the data key the
        // first start stored, which the KEK unwraps.
        let settings = civid::config::Settings {
            database_url: db_url.to_string(),
            kek: URL_SAFE_NO_PAD.encode(KEK_BYTES),
            ..Default::default()
        };
        let (secrets, _) = civid::secrets::load(&settings, &db).await.map_err(|e| format!("seeding: {e}"))?;
        let sector =
            civid::realm::model::ClientSettings { redirect_uris: vec![REDIRECT_URI.to_string()], ..Default::default() }
                .sector(CLIENT_ID);
        let distinct = sessions.min(if accounts > 0 { accounts } else { owners.len() as u64 });
        let txn = db.begin().await.map_err(|e| format!("seeding: {e}"))?;
        let mut i = 0;
        while i < distinct {
            let end = (i + SESSION_BATCH).min(distinct);
            let mut sql = String::from(
                "INSERT INTO grants (id, realm, user_id, client_id, subject, scopes, created_at, updated_at, revoked_at) \
                 VALUES ",
            );
            for j in i..end {
                let user = owner(j);
                let subject = secrets.pairwise_subject(REALM, &sector, &user);
                let _ = write!(
                    sql,
                    "{}('bench-grant-{j:08}', '{REALM}', '{user}', '{CLIENT_ID}', '{subject}', 'openid', {auth}, {auth}, NULL)",
                    if j == i { "" } else { ", " },
                );
            }
            txn.execute_unprepared(&sql).await.map_err(|e| err(&sql, e))?;
            i = end;
        }
        let mut i = 0;
        while i < sessions {
            let end = (i + SESSION_BATCH).min(sessions);
            let mut sql = String::from(
                "INSERT INTO sso_sessions (id, realm, user_id, token_hash, auth_time, amr, acr, clients, created_at, \
                 last_seen_at, expires_at, ended_at, end_reason, ip, user_agent, acting) VALUES ",
            );
            for j in i..end {
                let hash = civid::crypto::random::sha256_b64(session_token(j).as_bytes());
                let _ = write!(
                    sql,
                    "{}('bench-sid-{j:08}', '{REALM}', '{}', '{hash}', {auth}, '[\"pwd\"]', 'L2', '[\"{CLIENT_ID}\"]', \
                     {auth}, {auth}, {expires}, NULL, NULL, NULL, NULL, NULL)",
                    if j == i { "" } else { ", " },
                    owner(j)
                );
            }
            txn.execute_unprepared(&sql).await.map_err(|e| err(&sql, e))?;
            i = end;
        }
        txn.commit().await.map_err(|e| format!("seeding: commit: {e}"))?;
        took.sessions = t.elapsed();
        eprintln!(
            "  seeding: {sessions} sessions and {distinct} grants committed after {:.1} s",
            took.sessions.as_secs_f64()
        );
    }
    let t = Instant::now();
    db.execute_unprepared("ANALYZE").await.map_err(|e| format!("seeding: ANALYZE: {e}"))?;
    took.analyze = t.elapsed();
    db.close().await.ok();
    Ok(took)
}

impl Setup {
    fn new(o: &Opts, rt: &tokio::runtime::Runtime) -> Res<Setup> {
        let dir = tempfile::Builder::new().prefix("civid-bench-").tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let realms = dir.path().join("realms");
        std::fs::create_dir_all(&realms).map_err(|e| format!("{}: {e}", realms.display()))?;
        std::fs::write(realms.join("bench.toml"), realm_file()).map_err(|e| format!("realm file: {e}"))?;
        let mut env = vec![
            ("CIVID_KEK".to_string(), URL_SAFE_NO_PAD.encode(KEK_BYTES)),
            ("CIVID_REALMS_DIR".to_string(), realms.display().to_string()),
        ];
        if let Ok(log) = std::env::var("CIVID_LOG") {
            env.push(("CIVID_LOG".into(), log));
        }
        env.extend(o.server_env.iter().cloned());
        let mut backend = String::new();
        let mut pg_admin = None;
        let mut redis = None;
        match &o.postgres {
            Some(url) => {
                let (base, db, query) = split_db(url);
                let admin_db = format!("{db}{query}");
                rt.block_on(async {
                    pg_exec(&base, &admin_db, &format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")).await?;
                    pg_exec(&base, &admin_db, &format!("CREATE DATABASE {PG_DB}")).await
                })?;
                env.push(("CIVID_DATABASE_URL".into(), format!("{base}/{PG_DB}{query}")));
                let version = Command::new("psql")
                    .args(["-XAtc", "SHOW server_version", &format!("{base}/{admin_db}")])
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("").to_string())
                    .filter(|v| !v.is_empty());
                backend.push_str(format!("PostgreSQL {}", version.unwrap_or_default()).trim());
                if !query.is_empty() {
                    backend.push_str(&format!(" ({})", query.trim_start_matches('?')));
                }
                pg_admin = Some((base, admin_db));
            }
            None => {
                let db = dir.path().join("data").join("civid.db");
                env.push(("CIVID_DATABASE_URL".into(), format!("sqlite://{}?mode=rwc", db.display())));
                backend.push_str("SQLite");
            }
        }
        match &o.redis {
            Some(url) => {
                env.push(("CIVID_REDIS_URL".into(), url.clone()));
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let prefix = format!("civid-bench-{}-{stamp}:", std::process::id());
                env.push(("CIVID_REDIS_KEY_PREFIX".into(), prefix.clone()));
                redis = Some((url.clone(), prefix));
                let version =
                    Command::new("redis-cli").args(["-u", url, "INFO", "server"]).output().ok().and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()))
                    });
                backend.push_str(format!(" + Redis {}", version.unwrap_or_default()).trim_end());
            }
            None => backend.push_str(" + in-process store"),
        }
        Ok(Setup { dir, env, backend, tck: clock_ticks(), pg_admin, redis })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_civid"));
        cmd.args(args).current_dir(self.dir.path()).env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `civid user add`; returns how long it took (it hashes with Argon2id).
    fn add_user(&self, username: &str) -> Res<Duration> {
        let t = Instant::now();
        let mut child = self
            .command(&["user", "add", "--realm", REALM, "--username", username, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn civid user add: {e}"))?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(format!("{PASSWORD}\n").as_bytes()).map_err(|e| format!("civid user add stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("civid user add: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "civid user add {username} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(t.elapsed())
    }

    /// How many `civid user add` run at once: on SQLite one, since
    /// concurrent writers of a WAL database fail with SQLITE_BUSY_SNAPSHOT.
    fn user_add_parallelism(&self) -> usize {
        if self.pg_admin.is_some() { 4 } else { 1 }
    }

    /// The accounts of `password_signin` (`benchuser000`, …), made with
    /// `civid user add`, a few at a time; returns how long it took.
    fn add_users(&self, k: usize) -> Res<Duration> {
        let t = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Res<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.user_add_parallelism())
                .map(|_| {
                    scope.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= k {
                                return Ok(());
                            }
                            self.add_user(&signin_user(i))?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("civid user add thread panicked".into())))
                .collect()
        });
        results.into_iter().collect::<Res<Vec<()>>>()?;
        Ok(t.elapsed())
    }

    /// The database URL civid runs on.
    fn database_url(&self) -> Res<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == "CIVID_DATABASE_URL")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| "no CIVID_DATABASE_URL".to_string())
    }

    /// `name`: of the log file. `public_url`: the URL of the node the others
    /// share (behind one load balancer they have one issuer); None: its own.
    fn serve(&self, name: &str, public_url: Option<&str>) -> Res<Server> {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("free port: {e}"))
        };
        let port = free_port()?;
        // The admin listener (admin API, /metrics) is on too, as in production,
        // on a port of its own so that runs do not collide.
        let admin_port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = self.command(&["serve"]);
        cmd.env("CIVID_LISTEN", format!("127.0.0.1:{port}")).env("CIVID_PUBLIC_URL", public_url.unwrap_or(&url));
        cmd.env("CIVID_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawn civid serve: {e}"))?;
        let mut server =
            Server { pid: child.id(), child: Some(child), url, port, admin_port, log, ready: Duration::ZERO };
        server.ready = server.wait_ready(started)?;
        Ok(server)
    }
}

struct Server {
    child: Option<Child>,
    pid: u32,
    url: String,
    port: u16,
    admin_port: u16,
    log: PathBuf,
    /// From spawn to the first 200 on /readyz.
    ready: Duration,
}

/// One `GET path` on a new connection; the status code. `whole`: read the
/// body to the end too.
fn get_status(port: u16, path: &str, whole: bool) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let status = std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok();
    if whole {
        while let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
        }
    }
    status
}

fn readyz(port: u16) -> Option<u16> {
    get_status(port, "/readyz", false)
}

/// Scrapes every node's admin listener `/metrics` every `every` until
/// dropped, as Prometheus would.
struct Scraper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Scraper {
    fn start(admin_ports: Vec<u16>, every: Duration) -> Scraper {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for port in &admin_ports {
                    if get_status(*port, "/metrics", true) == Some(200) {
                        n += 1;
                    }
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            n
        });
        Scraper { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Server {
    fn wait_ready(&mut self, started: Instant) -> Res<Duration> {
        while started.elapsed() < Duration::from_secs(60) {
            if readyz(self.port) == Some(200) {
                return Ok(started.elapsed());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("civid serve exited ({status}):\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!("civid serve was not ready within 60 s:\n{}", self.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the server itself printed: `ready in N ms`.
    fn self_reported_ms(&self) -> Option<u64> {
        self.log_text().lines().find_map(|l| l.strip_prefix("ready in ")?.strip_suffix(" ms")?.parse().ok())
    }

    fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:")
    }

    fn hwm_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:")
    }

    fn cpu(&self, tck: f64) -> f64 {
        cpu_secs(&self.pid.to_string(), tck).0
    }

    /// SIGTERM, then wait for it to finish.
    fn stop(&mut self) -> Res<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let status = child.wait().map_err(|e| format!("waiting for civid serve: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("civid serve exited with {status} on SIGTERM")) }
    }

    /// Warnings and errors the server logged.
    fn complaints(&self) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).map(str::to_string).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- store counts

/// What the requests asked of the shared stores, from the nodes' `/metrics`
/// (summed over the nodes): per endpoint (route pattern and method)
/// requests, database reads, database writes and ephemeral-store commands;
/// and the database writes of background work (the audit writer's group
/// commits, jobs). The scrapes themselves (`/metrics`) are left out.
#[derive(Default, Clone)]
struct StoreCounts {
    endpoints: std::collections::BTreeMap<(String, String), [f64; 4]>,
    background_writes: f64,
}

/// A metric's labels, as (name, value).
type Labels = Vec<(String, String)>;

/// `name{a="x",b="y"} 12` → (name, labels, value).
fn metric_line(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (n, r) = line.split_once(' ')?;
            (n, "", r)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let mut out = Vec::new();
    let mut chars = labels.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(x) => val.push(x),
                    None => break,
                },
                '"' => break,
                c => val.push(c),
            }
        }
        out.push((key.trim().to_string(), val));
    }
    Some((name, out, value))
}

impl StoreCounts {
    fn add_exposition(&mut self, text: &str) {
        for line in text.lines() {
            let Some((name, labels, value)) = metric_line(line) else { continue };
            let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_default();
            let column = match name {
                "civid_http_request_duration_seconds_count" => 0,
                "civid_request_db_statements_total" if label("kind") == "read" => 1,
                "civid_request_db_statements_total" if label("kind") == "write" => 2,
                "civid_request_ephemeral_commands_total" => 3,
                "civid_db_statements_total" if label("kind") == "write" && label("origin") == "background" => {
                    self.background_writes += value;
                    continue;
                }
                _ => continue,
            };
            let endpoint = label("endpoint");
            if endpoint == "/metrics" {
                continue;
            }
            let key = (endpoint.to_string(), label("method").to_string());
            if let Some(v) = self.endpoints.entry(key).or_default().get_mut(column) {
                *v += value;
            }
        }
    }

    /// What was counted since `before`.
    fn since(&self, before: &StoreCounts) -> StoreCounts {
        let mut d = self.clone();
        for (k, v) in &before.endpoints {
            if let Some(now) = d.endpoints.get_mut(k) {
                for (a, b) in now.iter_mut().zip(v) {
                    *a -= b;
                }
            }
        }
        d.endpoints.retain(|_, v| v.iter().any(|x| *x > 0.0));
        d.background_writes -= before.background_writes;
        d
    }

    /// Requests, reads, writes, ephemeral commands over every endpoint.
    fn totals(&self) -> [f64; 4] {
        let mut t = [0.0; 4];
        for v in self.endpoints.values() {
            for (a, b) in t.iter_mut().zip(v) {
                *a += b;
            }
        }
        t
    }
}

/// Reads every node's `/metrics` (admin listener) and adds them up.
async fn store_counts(http: &reqwest::Client, admin_ports: &[u16]) -> Res<StoreCounts> {
    let mut c = StoreCounts::default();
    for port in admin_ports {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let resp = http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        let text = expect(resp, 200, "/metrics").await?.text().await.map_err(|e| format!("{url}: {e}"))?;
        c.add_exposition(&text);
    }
    Ok(c)
}

// ---------------------------------------------------------------- HTTP helpers

fn http_client(cookies: bool) -> Res<reqwest::Client> {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

fn random_b64(rng: &SystemRandom, n: usize) -> String {
    let mut buf = [0u8; 64];
    let buf = &mut buf[..n.min(64)];
    let _ = rng.fill(buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn basic_auth() -> HeaderValue {
    let v = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The decoded JOSE header of a compact JWS.
fn jose_header(jwt: &str) -> Res<serde_json::Value> {
    let h = jwt.split('.').next().ok_or("not a JWT")?;
    let raw = URL_SAFE_NO_PAD.decode(h).map_err(|e| format!("JWT header: {e}"))?;
    serde_json::from_slice(&raw).map_err(|e| format!("JWT header: {e}"))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
}

fn check_alg(what: &str, jwt: &str, alg: &str, typ: Option<&str>) -> Res<()> {
    let h = jose_header(jwt)?;
    if h.get("alg").and_then(|v| v.as_str()) != Some(alg) {
        return Err(format!("{what} is not {alg}: header {h}"));
    }
    if let Some(t) = typ
        && h.get("typ").and_then(|v| v.as_str()) != Some(t)
    {
        return Err(format!("{what} has not typ {t}: header {h}"));
    }
    Ok(())
}

async fn expect(resp: reqwest::Response, status: u16, what: &str) -> Res<reqwest::Response> {
    if resp.status().as_u16() == status {
        return Ok(resp);
    }
    let got = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(format!("{what}: expected {status}, got {got}: {}", body.chars().take(300).collect::<String>()))
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    html.split(&needle).nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string()
}

// ---------------------------------------------------------------- a browser

/// The same endpoint on every node: each request goes to the next one in
/// turn, as a round-robin load balancer would send it. With one node, always
/// the same URL.
struct Targets {
    urls: Vec<reqwest::Url>,
    next: usize,
}

impl Targets {
    /// `start`: the node of the first request (workers start on different ones).
    fn new(bases: &[String], path: &str, start: usize) -> Res<Targets> {
        if bases.is_empty() {
            return Err("no nodes".into());
        }
        let urls = bases
            .iter()
            .map(|b| reqwest::Url::parse(&format!("{b}{path}")).map_err(|e| format!("URL {b}{path}: {e}")))
            .collect::<Res<Vec<_>>>()?;
        Ok(Targets { next: start % urls.len(), urls })
    }

    fn next(&mut self) -> reqwest::Url {
        let u = self.urls[self.next % self.urls.len()].clone();
        self.next = (self.next + 1) % self.urls.len();
        u
    }
}

/// A browser that signed in once and keeps its session cookie (or, without
/// a cookie jar, presents the cookies it is given). Its requests go to the
/// nodes in turn; the cookies are the host's, so every node sees them.
struct Browser {
    http: reqwest::Client,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    rng: SystemRandom,
    auth: HeaderValue,
    authorize_prefixes: Vec<String>,
    token_urls: Vec<reqwest::Url>,
    redirect_enc: String,
    /// Tokens of the last round.
    last: Option<TokenResponse>,
}

impl Browser {
    fn new(bases: &[String], start: usize, cookies: bool) -> Res<Browser> {
        if bases.is_empty() {
            return Err("no nodes".into());
        }
        let redirect_enc = enc(REDIRECT_URI);
        Ok(Browser {
            http: http_client(cookies)?,
            bases: bases.to_vec(),
            next: std::sync::atomic::AtomicUsize::new(start),
            rng: SystemRandom::new(),
            auth: basic_auth(),
            authorize_prefixes: bases
                .iter()
                .map(|base| {
                    format!(
                        "{base}/realms/{REALM}/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={redirect_enc}\
                         &scope=openid&code_challenge_method=S256"
                    )
                })
                .collect(),
            token_urls: bases
                .iter()
                .map(|base| {
                    reqwest::Url::parse(&format!("{base}/realms/{REALM}/token")).map_err(|e| format!("token URL: {e}"))
                })
                .collect::<Res<Vec<_>>>()?,
            redirect_enc,
            last: None,
        })
    }

    /// The node of the next request.
    fn node(&self) -> usize {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.bases.len()
    }

    fn base(&self) -> &str {
        &self.bases[self.node()]
    }

    fn token_url(&self) -> reqwest::Url {
        self.token_urls[self.node()].clone()
    }

    /// An authorization request with fresh state, nonce and PKCE verifier.
    fn auth_request(&self) -> (String, String, String) {
        let state = random_b64(&self.rng, 12);
        let nonce = random_b64(&self.rng, 12);
        let verifier = random_b64(&self.rng, 32);
        let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
        let prefix = &self.authorize_prefixes[self.node()];
        let url = format!("{prefix}&state={state}&nonce={nonce}&code_challenge={challenge}");
        (url, state, verifier)
    }

    /// Signs in through the login page, as a person would, and redeems the
    /// first code (checking the tokens' algorithms).
    async fn sign_in(&mut self) -> Res<()> {
        let (url, state, verifier) = self.auth_request();
        // Answered with the sign-in page itself.
        let page = expect(
            self.http.get(&url).send().await.map_err(|e| format!("authorize: {e}"))?,
            200,
            "authorize (the sign-in page)",
        )
        .await?;
        let html = page.text().await.map_err(|e| format!("login page: {e}"))?;
        let form = [
            ("csrf", hidden(&html, "csrf")),
            ("tx", hidden(&html, "tx")),
            ("identifier", USERNAME.to_string()),
            ("password", PASSWORD.to_string()),
        ];
        let resp = self
            .http
            .post(format!("{}/realms/{REALM}/login", self.base()))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("login: {e}"))?;
        let resp = expect(resp, 303, "login").await?;
        let cb = location(&resp);
        if !cb.starts_with(REDIRECT_URI) {
            return Err(format!("after sign-in expected the callback, got {cb} (consent? the client is first_party)"));
        }
        let code = code_from(&cb, &state)?;
        let tr = self.redeem(&code, &verifier).await?;
        check_alg("ID token", tr.id_token.as_deref().ok_or("no id_token")?, "RS256", None)?;
        check_alg("access token", &tr.access_token, "ES256", Some("at+jwt"))?;
        if tr.refresh_token.is_none() {
            return Err("no refresh_token in the token response".into());
        }
        self.last = Some(tr);
        Ok(())
    }

    async fn redeem(&self, code: &str, verifier: &str) -> Res<TokenResponse> {
        let body = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
            self.redirect_enc
        );
        let resp = self
            .http
            .post(self.token_url())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, FORM)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("token: {e}"))?;
        let bytes =
            expect(resp, 200, "token (authorization_code)").await?.bytes().await.map_err(|e| format!("token: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("token response: {e}"))
    }

    /// Authorize with the existing session (the jar's, or `cookie`) → code.
    /// Returns (code, verifier).
    async fn authorize(&self, cookie: Option<HeaderValue>) -> Res<(String, String)> {
        let (url, state, verifier) = self.auth_request();
        let mut req = self.http.get(&url);
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.map_err(|e| format!("authorize: {e}"))?;
        let resp = expect(resp, 303, "authorize").await?;
        let code = code_from(&location(&resp), &state)?;
        Ok((code, verifier))
    }
}

/// A new browser per sign-in: a cookie jar kept by hand and emptied before
/// each one (the keep-alive connections stay), its requests to the nodes in
/// turn. Signs in as the `--users` accounts in turn.
struct Signer {
    b: Browser,
    jar: Vec<(String, String)>,
    users: usize,
    user: usize,
    stride: usize,
}

impl Signer {
    fn cookie_header(&self) -> Option<HeaderValue> {
        if self.jar.is_empty() {
            return None;
        }
        let v = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        HeaderValue::from_str(&v).ok()
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, what: &str) -> Res<reqwest::Response> {
        let req = match self.cookie_header() {
            Some(c) => req.header(COOKIE, c),
            None => req,
        };
        let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        for c in resp.headers().get_all(SET_COOKIE) {
            if let Some((k, v)) = c.to_str().ok().and_then(|c| c.split(';').next()).and_then(|c| c.split_once('=')) {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                self.jar.retain(|(n, _)| *n != k);
                if !v.is_empty() {
                    self.jar.push((k, v));
                }
            }
        }
        Ok(resp)
    }

    /// One whole sign-in; `steps`: authorize (answered with the sign-in
    /// page), reading its form, password, token.
    async fn sign_in(&mut self, steps: &mut [u32; 4]) -> Res<()> {
        self.jar.clear();
        let who = signin_user(self.user);
        self.user = (self.user + self.stride) % self.users;
        let t0 = Instant::now();
        let (url, state, verifier) = self.b.auth_request();
        // Answered with the sign-in page itself (no redirect to it).
        let req = self.b.http.get(&url);
        let page = expect(self.send(req, "authorize").await?, 200, "authorize (the sign-in page)").await?;
        let html = page.text().await.map_err(|e| format!("login page: {e}"))?;
        let t1 = Instant::now();
        let (csrf, tx) = (hidden(&html, "csrf"), hidden(&html, "tx"));
        if csrf.is_empty() || tx.is_empty() {
            return Err("the login page has no form with csrf and tx".into());
        }
        let t2 = Instant::now();
        let body = format!("csrf={}&tx={}&identifier={}&password={}", enc(&csrf), enc(&tx), enc(&who), enc(PASSWORD));
        let req =
            self.b.http.post(format!("{}/realms/{REALM}/login", self.b.base())).header(CONTENT_TYPE, FORM).body(body);
        let resp = expect(self.send(req, "login").await?, 303, "login").await?;
        let code = code_from(&location(&resp), &state)?;
        let t3 = Instant::now();
        let tr = self.b.redeem(&code, &verifier).await?;
        if tr.id_token.is_none() {
            return Err("no id_token".into());
        }
        *steps = [micros(t1 - t0), micros(t2 - t1), micros(t3 - t2), micros(t3.elapsed())];
        Ok(())
    }
}

fn code_from(callback: &str, state: &str) -> Res<String> {
    if !callback.starts_with(REDIRECT_URI) {
        return Err(format!("authorize did not redirect to the callback: {callback}"));
    }
    let u = url::Url::parse(callback).map_err(|e| format!("callback {callback}: {e}"))?;
    let mut code = None;
    let mut st = None;
    for (k, v) in u.query_pairs() {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => st = Some(v.into_owned()),
            "error" => return Err(format!("authorize answered an error: {callback}")),
            _ => {}
        }
    }
    if st.as_deref() != Some(state) {
        return Err(format!("state not echoed: {callback}"));
    }
    code.ok_or_else(|| format!("no code in {callback}"))
}

// ---------------------------------------------------------------- workers

/// What one connection does. `SsoSeeded`: `sso_round` over the seeded
/// sessions (how many): each round presents the cookie of one chosen at
/// random (and a browser-binding cookie of its own, as the browser that
/// signed in would hold).
enum Worker {
    Get { http: reqwest::Client, url: Targets },
    ClientCredentials { http: reqwest::Client, url: Targets, auth: HeaderValue },
    Sso(Box<Browser>),
    SsoSeeded(Box<Browser>, u64),
    Refresh(Box<Browser>, String),
    Userinfo { http: reqwest::Client, url: Targets, bearer: HeaderValue },
    Introspect { http: reqwest::Client, url: Targets, auth: HeaderValue, body: String },
    Signin(Box<Signer>),
    Logout(Box<Signout>),
}

/// Signs out seeded sessions, each once (`next` is shared by the workers).
struct Signout {
    http: reqwest::Client,
    page: Targets,
    confirm: Targets,
    next: Arc<std::sync::atomic::AtomicU64>,
    sessions: u64,
}

#[derive(Default)]
struct Stats {
    /// Latency of each operation, µs.
    lat: Vec<u32>,
    /// For a round of several requests: latency of each step, µs.
    steps: Vec<(&'static str, Vec<u32>)>,
    errors: u64,
    first_error: Option<String>,
    /// Operations of the warm-up (not in `lat`), and the ones that failed.
    warm_ok: u64,
    warm_errors: u64,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The session cookie name over http (the bench speaks http).
fn session_cookie_name() -> String {
    civid::authn::session::cookie_name(REALM, false)
}

impl Worker {
    /// One operation; `steps` receives the latency of each step of a round.
    async fn op(&mut self, steps: &mut [u32; 4]) -> Res<()> {
        match self {
            Worker::Get { http, url } => {
                let resp = http.get(url.next()).send().await.map_err(|e| e.to_string())?;
                let resp = expect(resp, 200, "GET").await?;
                resp.bytes().await.map_err(|e| e.to_string())?;
                Ok(())
            }
            Worker::ClientCredentials { http, url, auth } => {
                let resp = http
                    .post(url.next())
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, FORM)
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let body =
                    expect(resp, 200, "token (client_credentials)").await?.bytes().await.map_err(|e| e.to_string())?;
                if !body.starts_with(b"{\"access_token\":\"") && !body.windows(14).any(|w| w == b"\"access_token\"") {
                    return Err("no access_token in the response".into());
                }
                Ok(())
            }
            Worker::Sso(b) => {
                let t0 = Instant::now();
                let (code, verifier) = b.authorize(None).await?;
                let t1 = Instant::now();
                let tr = b.redeem(&code, &verifier).await?;
                steps[0] = micros(t1 - t0);
                steps[1] = micros(t1.elapsed());
                if tr.id_token.is_none() {
                    return Err("no id_token".into());
                }
                b.last = Some(tr);
                Ok(())
            }
            Worker::SsoSeeded(b, sessions) => {
                let mut r = [0u8; 8];
                b.rng.fill(&mut r).map_err(|_| "random".to_string())?;
                let i = u64::from_le_bytes(r) % (*sessions).max(1);
                let cookie = format!(
                    "{}={}; {}=bench-binding-{i:08}",
                    session_cookie_name(),
                    session_token(i),
                    civid::http::cookies::binding_name(false)
                );
                let cookie = HeaderValue::from_str(&cookie).map_err(|e| e.to_string())?;
                let t0 = Instant::now();
                let (code, verifier) = b.authorize(Some(cookie)).await?;
                let t1 = Instant::now();
                let tr = b.redeem(&code, &verifier).await?;
                steps[0] = micros(t1 - t0);
                steps[1] = micros(t1.elapsed());
                if tr.id_token.is_none() {
                    return Err("no id_token".into());
                }
                Ok(())
            }
            Worker::Refresh(b, token) => {
                let body = format!("grant_type=refresh_token&refresh_token={token}");
                let resp = b
                    .http
                    .post(b.token_url())
                    .header(AUTHORIZATION, b.auth.clone())
                    .header(CONTENT_TYPE, FORM)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let bytes =
                    expect(resp, 200, "token (refresh_token)").await?.bytes().await.map_err(|e| e.to_string())?;
                let tr: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| format!("token response: {e}"))?;
                *token = tr.refresh_token.ok_or("no rotated refresh_token")?;
                Ok(())
            }
            Worker::Userinfo { http, url, bearer } => {
                let resp = http
                    .get(url.next())
                    .header(AUTHORIZATION, bearer.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                expect(resp, 200, "userinfo").await?.bytes().await.map_err(|e| e.to_string())?;
                Ok(())
            }
            Worker::Introspect { http, url, auth, body } => {
                let resp = http
                    .post(url.next())
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, FORM)
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let body = expect(resp, 200, "introspect").await?.bytes().await.map_err(|e| e.to_string())?;
                if !body.windows(13).any(|w| w == b"\"active\":true") {
                    return Err(format!("token not active: {}", String::from_utf8_lossy(&body)));
                }
                Ok(())
            }
            Worker::Signin(s) => s.sign_in(steps).await,
            Worker::Logout(l) => {
                let Signout { http, page, confirm, next, sessions } = &mut **l;
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= *sessions {
                    return Err(format!(
                        "the {sessions} seeded sessions are used up (each is signed out once; seed more with --sessions)"
                    ));
                }
                let name = session_cookie_name();
                let cookie =
                    HeaderValue::from_str(&format!("{name}={}", session_token(i))).map_err(|e| e.to_string())?;
                let t0 = Instant::now();
                let resp =
                    http.get(page.next()).header(COOKIE, cookie.clone()).send().await.map_err(|e| e.to_string())?;
                let html = expect(resp, 200, "logout").await?.text().await.map_err(|e| e.to_string())?;
                let csrf = hidden(&html, "csrf");
                if csrf.is_empty() {
                    return Err(format!(
                        "no confirmation form for seeded session {i}: {}",
                        html.chars().take(300).collect::<String>()
                    ));
                }
                let ui = hidden(&html, "ui_locales");
                let t1 = Instant::now();
                let resp = http
                    .post(confirm.next())
                    .header(COOKIE, cookie)
                    .header(CONTENT_TYPE, FORM)
                    .body(format!("csrf={}&ui_locales={}", enc(&csrf), enc(&ui)))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let cleared =
                    resp.headers().get_all(SET_COOKIE).iter().any(|c| {
                        c.to_str().is_ok_and(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"))
                    });
                expect(resp, 200, "logout/confirm").await?.bytes().await.map_err(|e| e.to_string())?;
                if !cleared {
                    return Err(format!("seeded session {i}: the confirmed logout did not clear the session cookie"));
                }
                steps[0] = micros(t1 - t0);
                steps[1] = micros(t1.elapsed());
                Ok(())
            }
        }
    }

    fn step_names(&self) -> &'static [&'static str] {
        match self {
            Worker::Sso(_) | Worker::SsoSeeded(..) => &["authorize", "token"],
            Worker::Signin(_) => &["authorize (sign-in page)", "read the form", "password", "token"],
            Worker::Logout(_) => &["confirmation page", "confirm"],
            _ => &[],
        }
    }
}

/// Runs one worker until `until`; operations started before `measure_from`
/// are warm-up. Hands the worker back (browsers are reused).
async fn drive(mut w: Worker, measure_from: Instant, until: Instant, capacity: usize) -> (Stats, Worker) {
    let names = w.step_names();
    let mut st = Stats { lat: Vec::with_capacity(capacity), ..Default::default() };
    for n in names {
        st.steps.push((n, Vec::with_capacity(capacity)));
    }
    let mut steps = [0u32; 4];
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            break;
        }
        let r = w.op(&mut steps).await;
        let counted = t0 >= measure_from;
        match r {
            Ok(()) if counted => {
                st.lat.push(micros(t0.elapsed()));
                for (i, (_, v)) in st.steps.iter_mut().enumerate() {
                    v.push(steps.get(i).copied().unwrap_or(0));
                }
            }
            Ok(()) => st.warm_ok += 1,
            Err(e) => {
                if counted {
                    st.errors += 1;
                } else {
                    st.warm_errors += 1;
                }
                if st.first_error.is_none() {
                    st.first_error = Some(e);
                }
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (st, w)
}

// ---------------------------------------------------------------- results

struct Row {
    scenario: String,
    generator: String,
    conns: usize,
    ops: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_us: f64,
    gen_us: f64,
    errors: u64,
    /// PostgreSQL + Redis CPU per operation.
    svc_us: f64,
    /// Of which Redis.
    redis_us: f64,
    /// Interrupt handling per operation (mostly loopback TCP, in softirq),
    /// which no process is charged for.
    irq_us: f64,
    /// CPU of every other process on the machine per operation (other
    /// people's work, kernel threads, hypervisor steal): large means a noisy run.
    other_us: f64,
    /// Share of both cores busy during the measurement.
    busy_pct: f64,
    /// Server RSS when the scenario ended, KiB, per node.
    rss_kib: Vec<u64>,
    steps: Vec<(String, f64, f64)>,
    /// What the scenario's requests asked of the shared stores, over all its
    /// operations (warm-up too): (successful operations, failed ones, counts).
    store: Option<(u64, u64, StoreCounts)>,
}

/// Busy CPU seconds of the machine not spent by the server, the generator
/// (`generator` seconds), PostgreSQL and Redis, or interrupts.
fn other(a: &Sample, b: &Sample, tck: f64, generator: f64) -> f64 {
    let machine = (b.machine.0 - a.machine.0 - (b.machine.2 - a.machine.2)) / tck;
    (machine - (b.server - a.server) - generator - (b.services - a.services)).max(0.0)
}

fn busy(a: &Sample, b: &Sample) -> f64 {
    let total = b.machine.1 - a.machine.1;
    if total <= 0.0 { 0.0 } else { (b.machine.0 - a.machine.0) * 100.0 / total }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn table_header() -> &'static str {
    "| scenario | generator | connections | ops/s | p50 ms | p99 ms | server CPU µs/op | generator CPU µs/op \
     | PostgreSQL CPU µs/op | Redis CPU µs/op | irq CPU µs/op | other CPU µs/op | machine busy | errors | server RSS after, MiB |\n\
     |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
}

impl Row {
    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% | {} | {} |",
            self.scenario,
            self.generator,
            self.conns,
            self.ops,
            self.p50_ms,
            self.p99_ms,
            self.server_us,
            self.gen_us,
            self.svc_us - self.redis_us,
            self.redis_us,
            self.irq_us,
            self.other_us,
            self.busy_pct,
            self.errors,
            mibs(&self.rss_kib)
        )
    }

    /// A line of the table under `store_header`.
    fn store_markdown(&self) -> Option<String> {
        let (ops, failed, c) = self.store.as_ref()?;
        let n = (*ops).max(1) as f64;
        let t = c.totals();
        // Whatever requests the failed ones made are in the counts too.
        let failed = if *failed > 0 { format!(" ({failed} failed)") } else { String::new() };
        Some(format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {ops}{failed} |",
            self.scenario,
            t[0] / n,
            t[1] / n,
            t[2] / n,
            t[3] / n,
            c.background_writes / n
        ))
    }

    /// One line per endpoint the scenario's requests went to.
    fn store_detail(&self) -> Vec<String> {
        let Some((ops, _, c)) = self.store.as_ref() else { return Vec::new() };
        let n = (*ops).max(1) as f64;
        c.endpoints
            .iter()
            .map(|((endpoint, method), v)| {
                format!(
                    "| {} | {method} {endpoint} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    self.scenario,
                    v[0] / n,
                    v[1] / n,
                    v[2] / n,
                    v[3] / n
                )
            })
            .collect()
    }
}

fn store_header() -> &'static str {
    "| scenario | HTTP requests/op | DB reads/op | DB writes/op | ephemeral (Redis) commands/op | background DB writes/op | operations (warm-up included) |\n\
     |---|---:|---:|---:|---:|---:|---:|"
}

fn store_detail_header() -> &'static str {
    "| scenario | endpoint | requests/op | DB reads/op | DB writes/op | ephemeral (Redis) commands/op |\n\
     |---|---|---:|---:|---:|---:|"
}

// ---------------------------------------------------------------- scenarios

struct Bench<'a> {
    o: &'a Opts,
    setup: &'a Setup,
    /// Node 0 first.
    servers: &'a [Server],
    /// The nodes' URLs.
    bases: Vec<String>,
    browsers: Vec<Browser>,
    /// The next seeded session to sign out (each once, over all scenarios).
    logout_next: Arc<std::sync::atomic::AtomicU64>,
    /// For `/metrics`.
    admin_http: reqwest::Client,
}

impl<'a> Bench<'a> {
    fn new(o: &'a Opts, setup: &'a Setup, servers: &'a [Server]) -> Res<Bench<'a>> {
        Ok(Bench {
            o,
            setup,
            servers,
            bases: servers.iter().map(|s| s.url.clone()).collect(),
            browsers: Vec::new(),
            logout_next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            admin_http: http_client(false)?,
        })
    }

    fn rss_kib(&self) -> Vec<u64> {
        self.servers.iter().map(|s| s.rss_kib()).collect()
    }

    fn admin_ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.admin_port).collect()
    }

    /// Signed-in browsers, one per connection (made once, shared by the
    /// scenarios that need a session or a person's tokens).
    async fn browsers(&mut self) -> Res<()> {
        if self.browsers.len() >= self.o.concurrency {
            return Ok(());
        }
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let gate = Arc::new(tokio::sync::Semaphore::new(4));
        for i in self.browsers.len()..self.o.concurrency {
            let mut b = Browser::new(&self.bases, i, true)?;
            let gate = gate.clone();
            tasks.spawn(async move {
                let _permit = gate.acquire().await;
                b.sign_in().await.map(|()| b)
            });
        }
        while let Some(r) = tasks.join_next().await {
            self.browsers.push(r.map_err(|e| format!("sign-in task: {e}"))??);
        }
        eprintln!(
            "  {} browsers signed in ({} ms, Argon2id each); server RSS now {} MiB",
            self.browsers.len(),
            t.elapsed().as_millis(),
            mibs(&self.rss_kib())
        );
        Ok(())
    }

    async fn workers(&mut self, scenario: &str) -> Res<Vec<Worker>> {
        let bases = self.bases.clone();
        let targets = |p: &str, start: usize| Targets::new(&bases, p, start);
        let first = bases.first().cloned().ok_or("no nodes")?;
        let parse = |p: &str| reqwest::Url::parse(&format!("{first}{p}")).map_err(|e| format!("URL {p}: {e}"));
        let n = self.o.concurrency;
        let mut out = Vec::with_capacity(n);
        match scenario {
            "discovery" | "jwks" => {
                let path = if scenario == "jwks" {
                    format!("/realms/{REALM}/jwks")
                } else {
                    format!("/realms/{REALM}/.well-known/openid-configuration")
                };
                for i in 0..n {
                    out.push(Worker::Get { http: http_client(false)?, url: targets(&path, i)? });
                }
            }
            "client_credentials" => {
                for i in 0..n {
                    out.push(Worker::ClientCredentials {
                        http: http_client(false)?,
                        url: targets(&format!("/realms/{REALM}/token"), i)?,
                        auth: basic_auth(),
                    });
                }
                // Check once that the token is what the issue asks for.
                let resp = http_client(false)?
                    .post(parse(&format!("/realms/{REALM}/token"))?)
                    .header(AUTHORIZATION, basic_auth())
                    .header(CONTENT_TYPE, FORM)
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .map_err(|e| format!("client_credentials: {e}"))?;
                let tr: TokenResponse = serde_json::from_slice(
                    &expect(resp, 200, "client_credentials").await?.bytes().await.map_err(|e| e.to_string())?,
                )
                .map_err(|e| format!("client_credentials response: {e}"))?;
                check_alg("client_credentials access token", &tr.access_token, "ES256", Some("at+jwt"))?;
            }
            "sso_round" if self.o.sessions > 0 => {
                // Each round presents the cookie of a seeded session chosen
                // at random: lookups spread over all of them, mostly cold in
                // the session cache.
                for i in 0..n {
                    out.push(Worker::SsoSeeded(Box::new(Browser::new(&bases, i, false)?), self.o.sessions));
                }
            }
            "sso_round" | "refresh" => {
                self.browsers().await?;
                for b in self.browsers.drain(..) {
                    out.push(if scenario == "sso_round" {
                        Worker::Sso(Box::new(b))
                    } else {
                        let rt = b.last.as_ref().and_then(|l| l.refresh_token.clone()).ok_or("no refresh token")?;
                        Worker::Refresh(Box::new(b), rt)
                    });
                }
            }
            "userinfo" | "introspect" => {
                // Each connection presents the access token of one person's session.
                self.browsers().await?;
                for (i, b) in self.browsers.iter().enumerate() {
                    let at = &b.last.as_ref().ok_or("a browser without tokens")?.access_token;
                    out.push(if scenario == "userinfo" {
                        Worker::Userinfo {
                            http: http_client(false)?,
                            url: targets(&format!("/realms/{REALM}/userinfo"), i)?,
                            bearer: HeaderValue::from_str(&format!("Bearer {at}")).map_err(|e| e.to_string())?,
                        }
                    } else {
                        Worker::Introspect {
                            http: http_client(false)?,
                            url: targets(&format!("/realms/{REALM}/introspect"), i)?,
                            auth: basic_auth(),
                            body: format!("token={}", enc(at)),
                        }
                    });
                }
            }
            "password_signin" => {
                let users = self.o.users;
                for i in 0..n {
                    out.push(Worker::Signin(Box::new(Signer {
                        b: Browser::new(&bases, i, false)?,
                        jar: Vec::new(),
                        users,
                        user: i % users,
                        stride: n % users,
                    })));
                }
            }
            "logout" => {
                if self.o.sessions == 0 {
                    return Err("scenario logout signs out seeded sessions: give --sessions N".into());
                }
                for i in 0..n {
                    out.push(Worker::Logout(Box::new(Signout {
                        http: http_client(false)?,
                        page: targets(&format!("/realms/{REALM}/logout"), i)?,
                        confirm: targets(&format!("/realms/{REALM}/logout/confirm"), i + 1)?,
                        next: self.logout_next.clone(),
                        sessions: self.o.sessions,
                    })));
                }
            }
            other => return Err(format!("unknown scenario {other}")),
        }
        Ok(out)
    }

    /// Gives the browsers back after a scenario that used them.
    fn reclaim(&mut self, workers: &mut Vec<Worker>) {
        for w in workers.drain(..) {
            match w {
                Worker::Sso(b) => self.browsers.push(*b),
                Worker::Refresh(mut b, rt) => {
                    if let Some(last) = b.last.as_mut() {
                        last.refresh_token = Some(rt);
                    }
                    self.browsers.push(*b);
                }
                _ => {}
            }
        }
    }

    async fn run(&mut self, scenario: &str) -> Res<Row> {
        let mut workers = self.workers(scenario).await?;
        let tck = self.setup.tck;
        // The stores' counters before the first operation and after the
        // last: the counts cover exactly the operations made, warm-up too.
        let counts_before = store_counts(&self.admin_http, &self.admin_ports()).await?;
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(self.o.warmup);
        let until = measure_from + Duration::from_secs(self.o.secs);
        let mut tasks = tokio::task::JoinSet::new();
        for w in workers.drain(..) {
            tasks.spawn(drive(w, measure_from, until, 4096));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let a = Sample::take(self.servers, tck);
        tokio::time::sleep_until(until.into()).await;
        let b = Sample::take(self.servers, tck);
        let mut all = Stats::default();
        while let Some(r) = tasks.join_next().await {
            let (st, w) = r.map_err(|e| format!("worker: {e}"))?;
            workers.push(w);
            all.lat.extend_from_slice(&st.lat);
            for (name, v) in st.steps {
                match all.steps.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, acc)) => acc.extend_from_slice(&v),
                    None => all.steps.push((name, v)),
                }
            }
            all.errors += st.errors;
            all.warm_ok += st.warm_ok;
            all.warm_errors += st.warm_errors;
            if all.first_error.is_none() {
                all.first_error = st.first_error;
            }
        }
        let counts = store_counts(&self.admin_http, &self.admin_ports()).await?.since(&counts_before);
        let store = (all.lat.len() as u64 + all.warm_ok, all.errors + all.warm_errors, counts);
        self.reclaim(&mut workers);
        if let Some(e) = &all.first_error {
            eprintln!("  {scenario}: {} errors; first: {e}", all.errors);
        }
        let n = all.lat.len().max(1) as f64;
        all.lat.sort_unstable();
        let steps = all
            .steps
            .iter_mut()
            .map(|(name, v)| {
                v.sort_unstable();
                (name.to_string(), pct(v, 50.0), pct(v, 99.0))
            })
            .collect();
        Ok(Row {
            scenario: scenario.to_string(),
            generator: "bench (reqwest)".into(),
            conns: self.o.concurrency,
            ops: all.lat.len() as f64 / self.o.secs as f64,
            p50_ms: pct(&all.lat, 50.0),
            p99_ms: pct(&all.lat, 99.0),
            server_us: (b.server - a.server) * 1e6 / n,
            gen_us: (b.own - a.own) * 1e6 / n,
            svc_us: (b.services - a.services) * 1e6 / n,
            redis_us: (b.redis - a.redis) * 1e6 / n,
            irq_us: (b.machine.2 - a.machine.2) / tck * 1e6 / n,
            other_us: other(&a, &b, tck, b.own - a.own) * 1e6 / n,
            busy_pct: busy(&a, &b),
            errors: all.errors,
            rss_kib: self.rss_kib(),
            steps,
            store: Some(store),
        })
    }

    /// The same load from `wrk -t2` (a C generator using far less CPU).
    fn wrk(&self, scenario: &str) -> Res<Option<Row>> {
        let (path, script) = match scenario {
            "discovery" => (format!("/realms/{REALM}/.well-known/openid-configuration"), None),
            "jwks" => (format!("/realms/{REALM}/jwks"), None),
            "client_credentials" => {
                let lua = format!(
                    "wrk.method = \"POST\"\nwrk.body = \"grant_type=client_credentials\"\n\
                     wrk.headers[\"Content-Type\"] = \"{FORM}\"\nwrk.headers[\"Authorization\"] = \"{}\"\n",
                    basic_auth().to_str().unwrap_or_default()
                );
                let file = self.setup.dir.path().join("client_credentials.lua");
                std::fs::write(&file, lua).map_err(|e| format!("{}: {e}", file.display()))?;
                (format!("/realms/{REALM}/token"), Some(file))
            }
            _ => return Ok(None),
        };
        let tck = self.setup.tck;
        let url = format!("{}{path}", self.bases.first().ok_or("no nodes")?);
        let conns = self.o.concurrency.max(2);
        let mut cmd = Command::new("wrk");
        cmd.args(["-t2", &format!("-c{conns}"), &format!("-d{}s", self.o.secs), "--latency"]);
        if let Some(s) = &script {
            cmd.arg("-s").arg(s);
        }
        cmd.arg(&url);
        let a = Sample::take(self.servers, tck);
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("wrk: {e}")),
        };
        let b = Sample::take(self.servers, tck);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)));
        }
        let total: f64 = text
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let rps: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        let lat = |p: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string()))
                .and_then(|v| wrk_duration_ms(&v))
                .unwrap_or(0.0)
        };
        let errors: u64 = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("Non-2xx or 3xx responses:").map(|v| v.trim().parse::<u64>().unwrap_or(0)).or_else(
                    || {
                        l.strip_prefix("Socket errors:").map(|v| {
                            v.split(',')
                                .filter_map(|p| p.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()))
                                .sum()
                        })
                    },
                )
            })
            .sum();
        let n = total.max(1.0);
        Ok(Some(Row {
            scenario: scenario.to_string(),
            generator: "wrk -t2".into(),
            conns,
            ops: rps,
            p50_ms: lat("50%"),
            p99_ms: lat("99%"),
            server_us: (b.server - a.server) * 1e6 / n,
            gen_us: (b.children - a.children) * 1e6 / n,
            svc_us: (b.services - a.services) * 1e6 / n,
            redis_us: (b.redis - a.redis) * 1e6 / n,
            irq_us: (b.machine.2 - a.machine.2) / tck * 1e6 / n,
            other_us: other(&a, &b, tck, b.children - a.children) * 1e6 / n,
            busy_pct: busy(&a, &b),
            errors,
            rss_kib: self.rss_kib(),
            steps: Vec::new(),
            store: None,
        }))
    }
}

/// `1.23ms`, `456.78us`, `1.02s` → milliseconds.
fn wrk_duration_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    for (suffix, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] {
        if let Some(n) = v.strip_suffix(suffix)
            && let Ok(x) = n.parse::<f64>()
        {
            return Some(x * scale);
        }
    }
    None
}

// ---------------------------------------------------------------- main

fn run() -> Res<()> {
    let o = parse_opts()?;
    civid::server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let setup = Setup::new(&o, &rt)?;
    let before = machine_jiffies();
    std::thread::sleep(Duration::from_secs(2));
    let after = machine_jiffies();
    let idle_busy = if after.1 > before.1 { (after.0 - before.0) * 100.0 / (after.1 - before.1) } else { 0.0 };
    println!("# civid load benchmark");
    println!();
    println!("- machine: {}", machine());
    println!(
        "- machine busy in the 2 s before the run: {idle_busy:.0}% (other work on the machine skews every figure)"
    );
    println!("- build: release (`cargo bench` profile), binary {}", env!("CARGO_BIN_EXE_civid"));
    println!("- backend: {}", setup.backend);
    if !o.server_env.is_empty() {
        let extra: Vec<String> = o.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("- extra server environment: {}", extra.join(" "));
    }
    println!(
        "- load: {} s per scenario after {} s warm-up, {} keep-alive HTTP/1.1 connections, generator on the same machine",
        o.secs, o.warmup, o.concurrency
    );
    if o.nodes > 1 {
        println!(
            "- nodes: {} `civid serve` processes on the one database and Redis (same key prefix), with one public URL \
             (node 0's, as behind a load balancer); every worker sends each request to the next node in turn (round \
             robin; one keep-alive connection per worker and node). Server CPU is the sum over the nodes, RSS is per \
             node (node 0 / node 1 / …); start-up and restarts are measured on node 0. wrk is not run (it drives one \
             address)",
            o.nodes
        );
    }
    let signin = o.scenarios.iter().any(|s| s == "password_signin");
    println!(
        "- data: {} accounts written straight into the tables (SQL) + {} made with `civid user add`; {} live SSO \
         sessions written straight into the table{}",
        o.accounts,
        1 + if signin { o.users } else { 0 },
        o.sessions,
        if o.sessions > 0 {
            " (`sso_round` presents a random one's cookie each round; `logout` signs them out in order, each once)"
        } else {
            ""
        }
    );
    if o.sessions > 0 {
        println!(
            "- seeded sessions: as a password sign-in at the bench portal leaves them (amr pwd, acr L2, the portal \
             in the session's list and the person's grant to it), last seen {SESSION_AGE_SECS} s before the seeding, \
             owned by {}; `sso_round` sends the session cookie with a browser-binding cookie of the session's own",
            if o.accounts > 0 { "the bulk accounts (one each)" } else { "the real accounts in turn" }
        );
    }
    if signin {
        println!(
            "- password_signin: each sign-in starts with an empty cookie jar (a new browser) but over the worker's \
             keep-alive connections; the {} accounts `{SIGNIN_PREFIX}000`… in turn",
            o.users
        );
    }
    println!(
        "- store counts: every node's `/metrics` read before each scenario's first operation and after its last; \
         the differences of `civid_request_db_statements_total`, `civid_request_ephemeral_commands_total` (every \
         endpoint but `/metrics`) and `civid_db_statements_total{{kind=\"write\",origin=\"background\"}}`, summed \
         over the nodes, divided by the operations made (warm-up included)"
    );
    if o.scrape > 0 {
        println!("- `/metrics` scraped every {} s during the load, as Prometheus would", o.scrape);
    } else {
        println!("- `/metrics` not scraped during the load");
    }
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_civid"))
        .and_then(|m| m.modified())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let rev = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("- source: `civid` binary built {built}; work tree at commit {rev} when the bench ran");
    println!();

    // Fresh database: migrations, realm file, key generation.
    eprintln!("starting on a fresh database…");
    let mut first = setup.serve("serve-0", None)?;
    let fresh = first.ready;
    let fresh_self = first.self_reported_ms();
    let fresh_rss = first.rss_kib();
    first.stop()?;
    drop(first);
    let user_add = setup.add_user(USERNAME)?;
    let users_add = if signin {
        eprintln!("adding {} accounts for password_signin…", o.users);
        Some(setup.add_users(o.users)?)
    } else {
        None
    };
    if o.accounts > 0 || o.sessions > 0 {
        eprintln!("seeding {} accounts and {} sessions…", o.accounts, o.sessions);
    }
    let seeded = rt.block_on(seed(setup.database_url()?, o.accounts, o.sessions))?;

    // Restarts on the existing database; the last one stays up for the load.
    let mut readies = Vec::new();
    let mut selfs = Vec::new();
    let mut server = None;
    for i in 0..o.restarts {
        let mut s = setup.serve(&format!("serve-{}", i + 1), None)?;
        readies.push(s.ready);
        selfs.extend(s.self_reported_ms());
        if i + 1 == o.restarts {
            server = Some(s);
        } else {
            s.stop()?;
        }
    }
    let Some(server) = server else { return Err("no server".into()) };
    // The other nodes: the same database and Redis, node 0's public URL.
    let public = server.url.clone();
    let mut servers = vec![server];
    for k in 1..o.nodes {
        servers.push(setup.serve(&format!("node-{k}"), Some(&public))?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_start: Vec<u64> = servers.iter().map(|s| s.rss_kib()).collect();
    let mut sorted = readies.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = sorted[sorted.len() / 2];

    let scraper = (o.scrape > 0)
        .then(|| Scraper::start(servers.iter().map(|s| s.admin_port).collect(), Duration::from_secs(o.scrape)));
    let mut rows = Vec::new();
    let mut bench = Bench::new(&o, &setup, &servers)?;
    for sc in &o.scenarios {
        eprintln!("scenario {sc}…");
        let row = rt.block_on(bench.run(sc))?;
        eprintln!("  {}", row.markdown());
        rows.push(row);
        if o.wrk
            && o.nodes == 1
            && let Some(row) = bench.wrk(sc)?
        {
            eprintln!("  {}", row.markdown());
            rows.push(row);
        }
    }
    drop(bench);
    if let Some(s) = scraper {
        eprintln!("scraped /metrics {} times", s.finish());
    }
    let rss_after: Vec<u64> = servers.iter().map(|s| s.rss_kib()).collect();
    let hwm: Vec<u64> = servers.iter().map(|s| s.hwm_kib()).collect();
    let mut complaints = Vec::new();
    for (k, s) in servers.iter().enumerate() {
        let node = if o.nodes > 1 { format!("node {k}: ") } else { String::new() };
        complaints.extend(s.complaints().into_iter().map(|c| format!("{node}{c}")));
    }
    for s in servers.iter_mut() {
        s.stop()?;
    }

    println!("## Start and memory ({})", setup.backend);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| ready, fresh database (migrate, apply realm, generate keys) | {:.0} ms (server's own figure {} ms) |",
        ms(fresh),
        fresh_self.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
    );
    println!(
        "| ready, restart on the existing database: median of {} | {:.0} ms (min {:.0}, max {:.0}; server's own figure {} ms) |",
        readies.len(),
        ms(median),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        selfs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("/")
    );
    println!("| `civid user add` (Argon2id hash) | {:.0} ms |", ms(user_add));
    if let Some(d) = users_add {
        println!(
            "| `civid user add` × {} for password_signin, {} at a time | {:.1} s |",
            o.users,
            setup.user_add_parallelism(),
            d.as_secs_f64()
        );
    }
    if o.accounts > 0 {
        println!(
            "| seeding {} accounts by SQL (users, phone and email identifiers; one transaction) | {:.1} s |",
            o.accounts,
            seeded.accounts.as_secs_f64()
        );
    }
    if o.sessions > 0 {
        println!(
            "| seeding {} sessions and their owners' grants by SQL ({SESSION_BATCH} rows per INSERT, one transaction) | {:.1} s |",
            o.sessions,
            seeded.sessions.as_secs_f64()
        );
    }
    if o.accounts > 0 || o.sessions > 0 {
        println!("| `ANALYZE` after seeding | {:.1} s |", seeded.analyze.as_secs_f64());
    }
    let per_node = if o.nodes > 1 { " (node 0 / node 1 / …)" } else { "" };
    println!("| RSS right after a fresh start | {} MiB |", mib(fresh_rss));
    println!("| RSS 1 s after ready (restart){per_node} | {} MiB |", mibs(&rss_start));
    println!("| RSS after the load{per_node} | {} MiB |", mibs(&rss_after));
    println!("| peak RSS (VmHWM){per_node} | {} MiB |", mibs(&hwm));
    println!();
    println!("## Throughput ({}, {} s each)", setup.backend, o.secs);
    println!();
    println!("{}", table_header());
    for r in &rows {
        println!("{}", r.markdown());
    }
    let with_steps: Vec<&Row> = rows.iter().filter(|r| !r.steps.is_empty()).collect();
    if !with_steps.is_empty() {
        println!();
        println!("| scenario | step | p50 ms | p99 ms |");
        println!("|---|---|---:|---:|");
        for r in with_steps {
            for (name, p50, p99) in &r.steps {
                println!("| {} | {name} | {p50:.2} | {p99:.2} |", r.scenario);
            }
        }
    }
    let store: Vec<String> = rows.iter().filter_map(Row::store_markdown).collect();
    if !store.is_empty() {
        println!();
        println!("## What each operation asks of the shared stores ({}, {} node(s))", setup.backend, o.nodes);
        println!();
        println!("{}", store_header());
        for line in &store {
            println!("{line}");
        }
        println!();
        println!("{}", store_detail_header());
        for r in &rows {
            for line in r.store_detail() {
                println!("{line}");
            }
        }
    }
    if !complaints.is_empty() {
        println!();
        println!("server logged {} warnings/errors; first ones:", complaints.len());
        for c in complaints.iter().take(5) {
            println!("    {c}");
        }
    }

    if let Some((base, admin)) = &setup.pg_admin
        && !o.keep
    {
        rt.block_on(pg_exec(base, admin, &format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")))?;
    }
    if let Some((url, prefix)) = &setup.redis
        && !o.keep
    {
        match rt.block_on(redis_clear(url, prefix)) {
            Ok(n) => eprintln!("removed {n} Redis keys under {prefix}"),
            Err(e) => eprintln!("could not remove the Redis keys under {prefix} (they expire by themselves): {e}"),
        }
    }
    if o.keep {
        let kept = setup.dir.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}
