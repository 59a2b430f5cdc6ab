//! Citizen pages and password sign-in: the performance targets of the
//! citizen-accounts issue. Prints Markdown tables for `docs/PERFORMANCE.md`
//! (progress goes to standard error).
//!
//! ```text
//! cargo bench --bench pages -- [--secs 8] [--warmup 1] [--concurrency 4,16,64]
//!     [--requests 2000] [--renders 5000] [--only hash,sizes,pages,signin] [--quiet-wait 120]
//!     [--server-env KEY=VALUE]...
//! ```
//!
//! 1. **Hash alone**: Argon2id verifications of a stored hash through the
//!    server's own hashing path (`civid::authn::password::hashing`, the
//!    dedicated hashing threads) with as many verifications in flight as
//!    there are hashing threads, then with 64 queued; and one verification on
//!    the bench's thread (`civid::crypto::password::verify`), for its cost.
//! 2. **Page sizes**: the sign-in page with what it loads (`/static/civid.css`,
//!    `/static/webauthn.js`): body and response-header bytes as served, and
//!    the bodies gzip-compressed at levels 1 (nginx's default
//!    `gzip_comp_level`), 6 and 9 (the `gzip` command).
//! 3. **Page times**: the sign-in, consent, second-step, registration and
//!    account-centre pages, rendered alone with `civid::http::render` (the
//!    handler's context rebuilt here with the same fields), and requested
//!    one after another on one keep-alive loopback connection (`/healthz`
//!    gives the floor of HTTP on loopback with this client).
//! 4. **Sign-in flow**: N browsers, each doing authorize → GET sign-in page →
//!    POST the (correct) password → 303 to the portal's redirect URI with a
//!    code, over and over, each time as a new sign-in (the session cookie is
//!    dropped; the browser keeps its binding cookie and connection). The
//!    client is first party, so there is no consent page.
//!
//! The server is the release binary cargo built for this bench
//! (`target/release/civid serve`), a separate process on free loopback
//! ports, on a fresh SQLite file with the in-process ephemeral store; the
//! accounts are created (and the TOTP app of the second-step account
//! enrolled) through civid's library on that file before it starts.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use civid::web::Locale;
use minijinja::context;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use ring::rand::{SecureRandom, SystemRandom};

const REALM: &str = "bench";
const PORTAL: &str = "bench-portal";
const PORTAL_3P: &str = "bench-partner";
const REDIRECT_URI: &str = "https://bench.example/cb";
const REDIRECT_3P: &str = "https://partner.example/cb";
const PASSWORD: &str = "Bench-password-1234";
const TOTP_USER: &str = "benchtotp";
const KEK_BYTES: &[u8; 32] = b"bench-kek-bench-kek-bench-kek-32";
const FORM: &str = "application/x-www-form-urlencoded";

type Res<T> = Result<T, String>;

struct Opts {
    secs: u64,
    warmup: u64,
    concurrency: Vec<usize>,
    requests: usize,
    renders: usize,
    only: Vec<String>,
    /// Extra environment for the server (experiments).
    server_env: Vec<(String, String)>,
    /// Internal: run the hash-alone measurement with this malloc setting.
    hash_child: Option<String>,
    /// Seconds to wait for the machine to be quiet before each measurement.
    quiet_wait: u64,
    /// Further accounts (bulk rows, two identifiers each) in the database
    /// before the server starts: sign-in speed with millions of accounts.
    accounts: u64,
    /// Sign-in windows per concurrency, each right after its own hash-alone
    /// window (the host's speed drifts by several percent between minutes).
    rounds: usize,
    /// Internal: the hash child measures only the bound (2 in flight).
    bound_only: bool,
}

const USAGE: &str = "cargo bench --bench pages -- [--secs N] [--warmup N] [--concurrency a,b,..] [--requests N] \
                     [--renders N] [--only hash,sizes,pages,signin] [--quiet-wait SECS] [--server-env K=V]... [--accounts N] [--rounds N]";

fn parse_opts() -> Res<Opts> {
    let mut o = Opts {
        secs: 8,
        warmup: 1,
        concurrency: vec![4, 16, 64],
        requests: 2000,
        renders: 5000,
        only: Vec::new(),
        quiet_wait: 120,
        accounts: 0,
        rounds: 5,
        bound_only: false,
        hash_child: None,
        server_env: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|_| format!("{name}: {v:?} is not a number"));
        match a.as_str() {
            "--bench" => {}
            "--secs" => o.secs = num(value("--secs")?, "--secs")?.max(1),
            "--warmup" => o.warmup = num(value("--warmup")?, "--warmup")?,
            "--requests" => o.requests = num(value("--requests")?, "--requests")?.max(10) as usize,
            "--renders" => o.renders = num(value("--renders")?, "--renders")?.max(10) as usize,
            "--concurrency" | "-c" => {
                o.concurrency = value("--concurrency")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|_| format!("--concurrency: {s:?}")))
                    .collect::<Res<Vec<_>>>()?;
            }
            "--server-env" => {
                let kv = value("--server-env")?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))?;
                o.server_env.push((k.to_string(), v.to_string()));
            }
            "--hash-child" => o.hash_child = Some(value("--hash-child")?),
            "--bound-only" => o.bound_only = true,
            "--rounds" => o.rounds = num(value("--rounds")?, "--rounds")?.max(1) as usize,
            "--quiet-wait" => o.quiet_wait = num(value("--quiet-wait")?, "--quiet-wait")?,
            "--accounts" => o.accounts = num(value("--accounts")?, "--accounts")?,
            "--only" => o.only = value("--only")?.split(',').map(|s| s.trim().to_string()).collect(),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

impl Opts {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pages bench: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- measuring

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn mean(v: &[Duration]) -> Duration {
    if v.is_empty() { Duration::ZERO } else { v.iter().sum::<Duration>() / v.len() as u32 }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: &str, tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    if f.len() < 13 { 0.0 } else { (f[11] + f[12]) / tck }
}

/// (user CPU s, system CPU s, minor page faults) of a process.
fn cpu_split(pid: &str, tck: f64) -> (f64, f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return (0.0, 0.0, 0.0) };
    let Some((_, rest)) = stat.rsplit_once(')') else { return (0.0, 0.0, 0.0) };
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // After the command name, f[0] is field 3 (state): minflt is field 10,
    // utime 14, stime 15.
    if f.len() < 13 { (0.0, 0.0, 0.0) } else { (f[11] / tck, f[12] / tck, f[7]) }
}

/// CPU seconds (from `schedstat`, in ns) and involuntary context switches
/// of a process's threads, summed by thread name without its number
/// (`civid-hash-0` and `civid-hash-1` are `civid-hash`).
fn thread_groups(pid: &str) -> BTreeMap<String, (f64, f64)> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return groups };
    for t in tasks.flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-').to_string();
        let ns: f64 = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
            .unwrap_or(0.0);
        let invol: f64 = std::fs::read_to_string(p.join("status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        let e = groups.entry(name).or_insert((0.0, 0.0));
        e.0 += ns / 1e9;
        e.1 += invol;
    }
    groups
}

/// (busy, total) jiffies of the whole machine.
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0.0)).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let total: f64 = f.iter().take(8).sum();
    (total - at(3) - at(4), total)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores ({model}), load average before the run {}", load.join(" "))
}

/// Waits (up to `max`) until the machine has been under 10% busy for 3 s,
/// so that other sessions' builds and tests do not share the cores with the
/// measurement; says on standard error when it gave up.
fn wait_quiet(max: Duration) {
    if max.is_zero() {
        return;
    }
    let t = Instant::now();
    let mut quiet = 0;
    let mut last = machine_jiffies();
    while t.elapsed() < max {
        std::thread::sleep(Duration::from_secs(1));
        let now = machine_jiffies();
        let busy = (now.0 - last.0) / (now.1 - last.1).max(1.0);
        last = now;
        quiet = if busy < 0.10 { quiet + 1 } else { 0 };
        if quiet >= 3 {
            return;
        }
    }
    eprintln!("machine still busy after {} s of waiting; measuring anyway", max.as_secs());
}

/// CPU seconds of the whole machine used by processes other than `pids`
/// (and this one) between two samples, as a share of all cores.
fn others_share(m0: (f64, f64), m1: (f64, f64), own_secs: f64, tck: f64) -> f64 {
    let busy = (m1.0 - m0.0) / tck;
    let total = (m1.1 - m0.1) / tck;
    ((busy - own_secs) / total.max(1e-9) * 100.0).max(0.0)
}

// ---------------------------------------------------------------- 1. hash alone

/// Verifications through the server's hashing threads with `inflight` in
/// flight: (verifications/s, sorted latencies).
struct PoolRun {
    rate: f64,
    lat: Vec<Duration>,
    others: f64,
    /// Per verification: user ms, system ms, minor faults.
    user_ms: f64,
    sys_ms: f64,
    faults: f64,
}

async fn through_pool(o: &Opts, phc: &str, inflight: usize) -> Res<PoolRun> {
    wait_quiet(Duration::from_secs(o.quiet_wait));
    let tck = clock_ticks();
    let phc = Arc::new(phc.to_string());
    let start = Instant::now() + Duration::from_secs(o.warmup);
    let deadline = start + Duration::from_secs(o.secs);
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let phc = phc.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                let phc = phc.clone();
                let ok = civid::authn::password::hashing(move || civid::crypto::password::verify(&phc, PASSWORD))
                    .await
                    .unwrap_or(false);
                assert!(ok, "verification failed");
                // Counted by when it completed: a queue of 64 takes longer
                // than a second to drain.
                let end = Instant::now();
                if end >= start && end <= deadline {
                    lat.push(end - t);
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let (c0, m0) = (cpu_split("self", tck), machine_jiffies());
    tokio::time::sleep_until(deadline.into()).await;
    let (c1, m1) = (cpu_split("self", tck), machine_jiffies());
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| format!("task: {e}"))?);
    }
    lat.sort();
    let n = lat.len().max(1) as f64;
    Ok(PoolRun {
        rate: lat.len() as f64 / o.secs as f64,
        lat,
        others: others_share(m0, m1, (c1.0 - c0.0) + (c1.1 - c0.1), tck),
        user_ms: (c1.0 - c0.0) / n * 1000.0,
        sys_ms: (c1.1 - c0.1) / n * 1000.0,
        faults: (c1.2 - c0.2) / n,
    })
}

/// One verification at a time on this thread: the cost of one.
fn one_at_a_time(phc: &str) -> Res<Vec<Duration>> {
    let mut one = Vec::new();
    for i in 0..45 {
        let t = Instant::now();
        let ok = civid::crypto::password::verify(phc, PASSWORD);
        if i >= 5 {
            one.push(t.elapsed());
        }
        if !ok {
            return Err("the password did not verify".into());
        }
    }
    one.sort();
    Ok(one)
}

/// The allocator of `civid serve` (src/main.rs), so the hash alone runs as
/// it runs in the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MALLOC_MODES: [(&str, &str); 1] = [("server", "mimalloc (as `civid serve`)")];

/// Runs the hash-alone measurement in a fresh process (nothing else has
/// run in it); returns the bound (verifications/s with as many in flight
/// as hashing threads).
fn hash_alone(o: &Opts) -> Res<Bound> {
    println!("\n### Argon2id alone (`$argon2id$v=19$m=19456,t=2,p=1`, as `crypto::password::hash` makes them)\n");
    println!(
        "| malloc | measure | verifications/s | per verification p50 ms | p99 ms | user CPU ms | system CPU ms | \
         minor faults | others' CPU |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut bounds = BTreeMap::new();
    for (mode, _) in MALLOC_MODES {
        let out = Command::new(&exe)
            .args(["--hash-child", mode, "--secs", &o.secs.to_string(), "--warmup", &o.warmup.to_string()])
            .args(["--quiet-wait", &o.quiet_wait.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("hash child: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("hash child {mode} failed: {text}"));
        }
        for line in text.lines() {
            match line.strip_prefix("BOUND ") {
                Some(b) => {
                    let v: Vec<f64> = b.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
                    bounds.insert(
                        mode,
                        Bound { rate: v.first().copied().unwrap_or(0.0), cpu_ms: v.get(1).copied().unwrap_or(0.0) },
                    );
                }
                None => println!("{line}"),
            }
        }
    }
    Ok(bounds.get("server").copied().unwrap_or(Bound { rate: 0.0, cpu_ms: 0.0 }))
}

/// The hash alone again (server's malloc, as many in flight as hashing
/// threads), in a fresh child: the bound for the sign-in window that
/// follows it.
fn bound_now(o: &Opts) -> Res<Bound> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let out = Command::new(&exe)
        .args(["--hash-child", "server", "--bound-only", "--secs", &o.secs.to_string()])
        .args(["--warmup", &o.warmup.to_string(), "--quiet-wait", &o.quiet_wait.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("hash child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("BOUND "))
        .ok_or_else(|| format!("hash child printed no bound: {text}"))?
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    Ok(Bound { rate: v.first().copied().unwrap_or(0.0), cpu_ms: v.get(1).copied().unwrap_or(0.0) })
}

/// What the hashes alone allow: verifications/s with as many in flight as
/// hashing threads, and the CPU one verification costs (user + system).
#[derive(Clone, Copy)]
struct Bound {
    rate: f64,
    cpu_ms: f64,
}

/// The child of [`hash_alone`]: prints its table rows and `BOUND x`.
async fn hash_child(o: &Opts, mode: &str) -> Res<()> {
    let label = MALLOC_MODES.iter().find(|(m, _)| *m == mode).map(|(_, l)| *l).ok_or("unknown malloc mode")?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let phc = civid::authn::password::hashing(|| civid::crypto::password::hash(PASSWORD))
        .await
        .map_err(|e| format!("hashing: {e}"))?
        .map_err(|e| format!("hash: {e}"))?;
    if o.bound_only {
        let r = through_pool(o, &phc, threads).await?;
        println!("BOUND {} {}", r.rate, r.user_ms + r.sys_ms);
        return Ok(());
    }
    wait_quiet(Duration::from_secs(o.quiet_wait));
    let tck = clock_ticks();
    let c0 = cpu_split("self", tck);
    let one = one_at_a_time(&phc)?;
    let c1 = cpu_split("self", tck);
    let n = one.len() as f64 + 5.0;
    println!(
        "| {label} | one at a time, `crypto::password::verify` on one thread | {:.1} | {} | {} | {:.1} | {:.1} | {:.0} | — |",
        1.0 / mean(&one).as_secs_f64(),
        ms(pct(&one, 0.5)),
        ms(pct(&one, 0.99)),
        (c1.0 - c0.0) / n * 1000.0,
        (c1.1 - c0.1) / n * 1000.0,
        (c1.2 - c0.2) / n,
    );
    for inflight in [threads, 64] {
        let r = through_pool(o, &phc, inflight).await?;
        if inflight == threads {
            println!("BOUND {} {}", r.rate, r.user_ms + r.sys_ms);
        }
        println!(
            "| {label} | {inflight} in flight, `authn::password::hashing` ({threads} hashing threads) | {:.1} | {} | {} \
             | {:.1} | {:.1} | {:.0} | {:.0}% |",
            r.rate,
            ms(pct(&r.lat, 0.5)),
            ms(pct(&r.lat, 0.99)),
            r.user_ms,
            r.sys_ms,
            r.faults,
            r.others
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- the server

fn realm_file() -> String {
    let sha = |s: &str| {
        ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    let secret: String = sha("bench-secret");
    format!(
        r#"# Written by benches/pages.rs. Account settings are the defaults:
# password, SMS and passkey sign-in, TOTP, registration by phone or email.
name = "{REALM}"

[settings]
display_name = "城市统一身份认证平台"
display_name_en = "City Unified Identity Service"

[clients.{PORTAL}]
name = "市民服务门户"
name_en = "Citizen portal"
redirect_uris = ["{REDIRECT_URI}"]
token_endpoint_auth_method = "client_secret_basic"
secret_sha256 = "{secret}"
scopes = ["openid", "profile", "email", "phone", "offline_access"]
first_party = true

[clients.{PORTAL_3P}]
name = "合作方门户"
name_en = "Partner portal"
client_uri = "https://partner.example/"
redirect_uris = ["{REDIRECT_3P}"]
token_endpoint_auth_method = "client_secret_basic"
secret_sha256 = "{secret}"
scopes = ["openid", "profile", "email", "phone"]
first_party = false
"#
    )
}

fn username(i: usize) -> String {
    format!("citizen{i:03}")
}

/// Migrates the database, applies the realm and creates the accounts
/// (`users` password accounts, plus one with a TOTP app): returns that
/// app's secret (base32).
async fn seed(dir: &Path, db_url: &str, users: usize, bulk: u64) -> Res<String> {
    let settings = civid::config::Settings {
        database_url: db_url.to_string(),
        kek: URL_SAFE_NO_PAD.encode(KEK_BYTES),
        realms_dir: dir.join("realms"),
        keys_dir: dir.join("keys"),
        ..Default::default()
    };
    let state = civid::server::prepare(
        settings,
        civid::server::StartOptions { migrate: true, apply_realms: true, verbose: false },
    )
    .await?;
    use civid::account::identifiers::Identifier;
    use civid::account::users::{NewUser, Profile, create};
    let mut totp_user = String::new();
    for i in 0..=users {
        let (name, phone) = if i == users {
            (TOTP_USER.to_string(), "13900009999".to_string())
        } else {
            (username(i), format!("1390000{i:04}"))
        };
        let identifiers = vec![
            Identifier::username(&name).ok_or("username")?,
            Identifier::phone(&phone).ok_or("phone")?,
            Identifier::email(&format!("{name}@example.cn")).ok_or("email")?,
        ];
        let profile = Profile { name: Some(format!("市民{i}")) };
        let id =
            create(&state.db, &state.secrets, REALM, NewUser { identifiers, password: Some(PASSWORD.into()), profile })
                .await
                .map_err(|e| format!("user {name}: {e}"))?;
        if i == users {
            totp_user = id;
        }
    }
    let realm = state.realms.get(REALM).ok_or("no bench realm")?;
    let enrol = civid::authn::totp::start(&state, &realm, &totp_user, TOTP_USER).await.map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let code = civid::authn::totp::code_at(&enrol.secret, now).ok_or("totp code")?;
    match civid::authn::totp::confirm(&state, &realm, &totp_user, &enrol.id, &code, "验证器")
        .await
        .map_err(|e| e.to_string())?
    {
        civid::authn::totp::Confirmed::Added { .. } => {}
        _ => return Err("TOTP enrolment refused".into()),
    }
    if bulk > 0 {
        bulk_accounts(&state.db, bulk).await?;
    }
    state.db.clone().close().await.map_err(|e| e.to_string())?;
    Ok(enrol.secret)
}

/// `n` more accounts written straight into the tables, as the bench realm's
/// people: a user row with a password hash and sealed-profile-sized bytes,
/// a phone and an email identifier each with a blind index of the real
/// length (43 characters) and sealed bytes. The keys are random, so the
/// identifier index is as deep and as scattered as a real one of that size;
/// `ANALYZE` afterwards, as an operator's database would have statistics.
async fn bulk_accounts(db: &civid::store::Db, n: u64) -> Res<()> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let t = Instant::now();
    let txn = db.begin().await.map_err(|e| e.to_string())?;
    let run = |sql: String| {
        let txn = &txn;
        async move { txn.execute_unprepared(&sql).await.map(|_| ()).map_err(|e| format!("bulk accounts: {e}")) }
    };
    run("PRAGMA cache_size = -1048576".into()).await?;
    let hash = civid::crypto::password::hash("bulk account password").map_err(|e| e.to_string())?;
    run(format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
         INSERT INTO users (id, realm, status, password_hash, profile_sealed, created_at, updated_at, last_login_at, purge_after) \
         SELECT printf('bulk-%010d', x), '{REALM}', 'active', '{hash}', randomblob(48), 1764115200, 1764115200, NULL, NULL FROM c"
    ))
    .await?;
    eprintln!("  {n} user rows in {:.1} s", t.elapsed().as_secs_f64());
    for kind in ["phone", "email"] {
        run(format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             INSERT INTO user_identifiers (realm, kind, blind_index, user_id, sealed, verified, created_at) \
             SELECT '{REALM}', '{kind}', substr(hex(randomblob(22)), 1, 43), printf('bulk-%010d', x), randomblob(40), 1, 1764115200 FROM c"
        ))
        .await?;
        eprintln!("  {n} {kind} identifiers after {:.1} s", t.elapsed().as_secs_f64());
    }
    txn.commit().await.map_err(|e| e.to_string())?;
    db.execute_unprepared("ANALYZE").await.map_err(|e| e.to_string())?;
    eprintln!("  committed and analysed after {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

struct Server {
    child: Option<Child>,
    pid: u32,
    url: String,
    log: std::path::PathBuf,
}

impl Server {
    fn start(dir: &Path, db_url: &str, extra_env: &[(String, String)]) -> Res<Server> {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("free port: {e}"))
        };
        let (port, admin_port) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.join("serve.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_civid"));
        cmd.arg("serve").current_dir(dir).env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CIVID_KEK", URL_SAFE_NO_PAD.encode(KEK_BYTES))
            .env("CIVID_REALMS_DIR", dir.join("realms"))
            .env("CIVID_DATABASE_URL", db_url)
            .env("CIVID_LISTEN", format!("127.0.0.1:{port}"))
            .env("CIVID_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("CIVID_PUBLIC_URL", &url);
        cmd.envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("spawn civid serve: {e}"))?;
        let mut s = Server { pid: child.id(), child: Some(child), url, log };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = c.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = std::io::Read::read_to_string(&mut c, &mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return Ok(s);
                }
            }
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("civid serve exited ({status}):\n{}", s.log_text()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!("civid serve was not ready within 60 s:\n{}", s.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn complaints(&self) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).map(str::to_string).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- a browser

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    html.split(&needle).nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string()
}

fn location(h: &HeaderMap) -> String {
    h.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// A browser with a cookie jar of its own (kept by hand, so that a sign-in
/// can start again without the session cookie) and one keep-alive
/// connection.
struct Browser {
    http: reqwest::Client,
    base: String,
    jar: BTreeMap<String, String>,
    rng: SystemRandom,
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Browser {
    fn new(base: &str) -> Res<Browser> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Browser { http, base: base.to_string(), jar: BTreeMap::new(), rng: SystemRandom::new() })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, keep_cookies: bool) -> Res<Got> {
        let req = if self.jar.is_empty() { req } else { req.header(COOKIE, self.cookie_header()) };
        let resp = req.send().await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        if keep_cookies {
            for c in headers.get_all(SET_COOKIE) {
                if let Some((k, v)) = c.to_str().ok().and_then(|c| c.split(';').next()).and_then(|c| c.split_once('='))
                {
                    self.jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        Ok(Got { status, headers, body })
    }

    async fn get(&mut self, path: &str) -> Res<Got> {
        let req = self.http.get(self.url(path));
        self.send(req, true).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)], keep_cookies: bool) -> Res<Got> {
        let body = form.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
        let req = self.http.post(self.url(path)).header(CONTENT_TYPE, FORM).body(body);
        self.send(req, keep_cookies).await
    }

    fn authorize_url(&self, client: &str, redirect: &str, scope: &str) -> String {
        let mut b = [0u8; 32];
        let _ = self.rng.fill(&mut b);
        let verifier = URL_SAFE_NO_PAD.encode(b);
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
        let _ = self.rng.fill(&mut b[..12]);
        let state = URL_SAFE_NO_PAD.encode(&b[..12]);
        format!(
            "/realms/{REALM}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state={state}\
             &nonce={state}&code_challenge={challenge}&code_challenge_method=S256",
            enc(redirect),
            enc(scope)
        )
    }

    /// The authorization request of a browser without a session: answered
    /// with the sign-in page itself. Returns the page and its own path
    /// (`/login?tx=…`, where the same page is served again).
    async fn start_sign_in_page(&mut self, client: &str, redirect: &str) -> Res<(String, Got)> {
        let url = self.authorize_url(client, redirect, "openid profile phone");
        let r = self.get(&url).await?;
        let html = String::from_utf8_lossy(&r.body);
        if r.status != 200 || !html.contains("name=\"password\"") {
            return Err(format!("authorize: {} to {:?}", r.status, location(&r.headers)));
        }
        let path = format!("/realms/{REALM}/login?tx={}", hidden(&html, "tx"));
        Ok((path, r))
    }

    /// As [`Browser::start_sign_in_page`]; returns the page's path.
    async fn start_sign_in(&mut self, client: &str, redirect: &str) -> Res<String> {
        Ok(self.start_sign_in_page(client, redirect).await?.0)
    }

    /// POSTs the sign-in form of `page`; returns the redirect.
    async fn submit_password(&mut self, page: &[u8], who: &str, keep_cookies: bool) -> Res<String> {
        let html = String::from_utf8_lossy(page);
        let (csrf, tx) = (hidden(&html, "csrf"), hidden(&html, "tx"));
        let form = [("csrf", csrf.as_str()), ("tx", tx.as_str()), ("identifier", who), ("password", PASSWORD)];
        let r = self.post(&format!("/realms/{REALM}/login"), &form, keep_cookies).await?;
        if r.status != 303 {
            return Err(format!("sign-in: {} {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        Ok(location(&r.headers))
    }
}

async fn expect_page(b: &mut Browser, path: &str, marker: &str) -> Res<Got> {
    let r = b.get(path).await?;
    let html = String::from_utf8_lossy(&r.body);
    if r.status != 200 || !html.contains(marker) {
        return Err(format!("{path}: {} without {marker:?}: {}", r.status, html.chars().take(400).collect::<String>()));
    }
    Ok(r)
}

// ---------------------------------------------------------------- 2. sizes

fn gzip(data: &[u8], level: u32) -> Res<usize> {
    let mut child = Command::new("gzip")
        .arg(format!("-{level}"))
        .arg("-c")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    child.stdin.take().ok_or("gzip stdin")?.write_all(data).map_err(|e| format!("gzip: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("gzip: {e}"))?;
    Ok(out.stdout.len())
}

/// The status line and headers as hyper writes them.
fn header_bytes(status: u16, h: &HeaderMap) -> usize {
    let mut n = format!("HTTP/1.1 {status} XX\r\n").len() + 2;
    for (k, v) in h {
        n += k.as_str().len() + 2 + v.len() + 2;
    }
    n
}

async fn sizes(base: &str) -> Res<()> {
    let mut b = Browser::new(base)?;
    let login = b.start_sign_in(PORTAL, REDIRECT_URI).await?;
    let page = expect_page(&mut b, &login, "name=\"password\"").await?;
    let html = String::from_utf8_lossy(&page.body).to_string();
    let mut rows = vec![("sign-in page (HTML, zh-CN)".to_string(), page)];
    for asset in ["/static/civid.css", "/static/webauthn.js"] {
        if !html.contains(asset) {
            return Err(format!("the sign-in page does not load {asset}"));
        }
        let r = b.get(asset).await?;
        if r.status != 200 {
            return Err(format!("{asset}: {}", r.status));
        }
        rows.push((asset.to_string(), r));
    }
    let others: Vec<&str> = html.split("src=\"").skip(1).chain(html.split("href=\"").skip(1)).collect();
    let loads: Vec<String> = others
        .iter()
        .filter_map(|s| s.split('"').next())
        .filter(|s| s.starts_with("/static/"))
        .map(str::to_string)
        .collect();
    println!("\n### The sign-in page over the wire\n");
    println!("The page loads: {}.\n", loads.join(", "));
    println!("| resource | headers B | body B | body gzip -1 B | gzip -6 B | gzip -9 B |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut tot = [0usize; 5];
    for (name, r) in &rows {
        let v =
            [header_bytes(r.status, &r.headers), r.body.len(), gzip(&r.body, 1)?, gzip(&r.body, 6)?, gzip(&r.body, 9)?];
        for (t, x) in tot.iter_mut().zip(v) {
            *t += x;
        }
        println!("| {name} | {} | {} | {} | {} | {} |", v[0], v[1], v[2], v[3], v[4]);
    }
    println!("| **total** | {} | {} | {} | {} | {} |", tot[0], tot[1], tot[2], tot[3], tot[4]);
    println!(
        "\nOver the wire without compression (headers + bodies): {} B = {:.1} KiB; with gzip -1 / -6 (plus ~25 B of \
         `content-encoding` and `vary` headers each): {:.1} / {:.1} KiB.",
        tot[0] + tot[1],
        (tot[0] + tot[1]) as f64 / 1024.0,
        (tot[0] + tot[2] + 75) as f64 / 1024.0,
        (tot[0] + tot[3] + 75) as f64 / 1024.0
    );
    Ok(())
}

// ---------------------------------------------------------------- 3. page times

/// The contexts the handlers build (`http/login.rs`, `factors.rs`,
/// `register.rs`, `account.rs`), with values of the same shape and length.
fn render_contexts() -> Vec<(&'static str, &'static str, minijinja::Value)> {
    let csrf = "n3Bq0oVwzq8mH2c7l1p0Yc0cZbV2C4dS3q5w4oJm1rA.1764190000";
    let tx = "Xk2m9QvN1pLr8sT4uW7yZa";
    let b = format!("/realms/{REALM}");
    let login = context! {
        realm_name => "城市统一身份认证平台",
        client_name => "市民服务门户",
        action => format!("{b}/login"),
        cancel_action => format!("{b}/login/cancel"),
        csrf => csrf, tx => tx, identifier => "", error => None::<&str>, retry_after => None::<u64>,
        register_url => format!("{b}/register?tx={tx}"),
        recover_url => format!("{b}/recover?tx={tx}"),
        sms_url => format!("{b}/smslogin?tx={tx}"),
        passkey => context! {
            options => format!("{b}/passkey/options"), finish => format!("{b}/passkey/signin"),
            csrf => csrf, conditional => "1",
        },
        switch_url => format!("{b}/login?tx={tx}&ui_locales=en"),
    };
    let consent = context! {
        realm_name => "城市统一身份认证平台",
        client_name => "合作方门户",
        client_uri => "https://partner.example/",
        scopes => vec!["openid", "profile", "phone"],
        action => format!("{b}/consent"), csrf => csrf, tx => tx,
        switch_url => format!("{b}/consent?tx={tx}&ui_locales=en"),
    };
    let second = context! {
        realm_name => "城市统一身份认证平台", client_name => "市民服务门户",
        required => false, stepping_up => false, has_totp => true, has_passkey => false,
        action => format!("{b}/login/second"), csrf => csrf, passkey_csrf => csrf,
        passkey_options => format!("{b}/passkey/options"), passkey_finish => format!("{b}/passkey/signin"),
        tx => tx, error => None::<String>,
        account_url => format!("{b}/account?continue={tx}"),
        switch_url => format!("{b}/login/second?tx={tx}&ui_locales=en"),
    };
    let register = context! {
        realm_name => "城市统一身份认证平台", client_name => "市民服务门户",
        flow => "register", step => "phone", via => "any", action => format!("{b}/register"),
        csrf => csrf, tx => tx, phone => "", phone_masked => "", error => None::<&str>, n => None::<u64>,
        min_length => 8, max_length => 128,
        restart_url => format!("{b}/register?tx={tx}"), login_url => format!("{b}/login?tx={tx}"),
        switch_url => format!("{b}/register?tx={tx}&ui_locales=en"),
    };
    let actions =
        ["profile", "phone", "email", "password", "end_session", "end_others", "withdraw", "export", "logout"];
    let action_urls: BTreeMap<&str, String> = actions.iter().map(|a| (*a, format!("{b}/account/{a}"))).collect();
    let csrfs: BTreeMap<&str, &str> = actions.iter().map(|a| (*a, csrf)).collect();
    let account = context! {
        factors => context! {
            items => vec![context! {
                id => "q3VbN8xZ1mK0pL2w", kind => "totp", name => "验证器", created => "2026-11-26", last_used => "2026-11-26",
                rename_action => format!("{b}/account/credentials/q3VbN8xZ1mK0pL2w/rename"),
                delete_action => format!("{b}/account/credentials/q3VbN8xZ1mK0pL2w/delete"),
            }],
            csrf => csrf, passkeys_allowed => true, totp_allowed => true,
            passkey_options => format!("{b}/account/passkeys/options"), passkey_finish => format!("{b}/account/passkeys"),
            totp_url => format!("{b}/account/totp"),
        },
        // As `http::realname::enterprises_context` builds it for an L2
        // account that represents no enterprise.
        enterprises => context! {
            items => Vec::<minijinja::Value>::new(), csrf => csrf, verified => false,
            claim_action => format!("{b}/account/enterprises/claim"),
        },
        level => "L2",
        verify_url => format!("{b}/verify"),
        guardian_url => None::<String>,
        continue_url => None::<String>,
        continue_client => None::<String>,
        realm_name => "城市统一身份认证平台",
        switch_url => format!("{b}/account?ui_locales=en"),
        name => "市民64", phone => "+86 139****9999", email => "be***@example.cn", username => "benchtotp",
        has_password => true,
        sessions => vec![
            context! { id => "s1", device => "未知设备", ip => "127.0.0.1", started => "2026-11-26 22:00", last_seen => "2026-11-26 22:00", current => true },
        ],
        portals => vec![
            context! { id => "g1", name => "合作方门户", scopes => vec!["openid", "profile", "phone"], since => "2026-11-26 22:00" },
        ],
        done => None::<&str>, errors => BTreeMap::<&str, String>::new(), values => BTreeMap::<&str, String>::new(),
        retry_after => None::<u64>, actions => action_urls, csrf => csrfs,
        cancel_url => format!("{b}/account/cancel"),
    };
    vec![
        ("sign-in", "login.html", login),
        ("consent", "consent.html", consent),
        ("second step", "second.html", second),
        ("registration", "register.html", register),
        ("account centre", "account.html", account),
    ]
}

struct PageTime {
    render: Vec<Duration>,
    render_bytes: usize,
    request: Vec<Duration>,
    served_bytes: usize,
}

async fn time_requests(b: &mut Browser, path: &str, n: usize, marker: &str) -> Res<(Vec<Duration>, usize)> {
    let first = expect_page(b, path, marker).await?;
    let bytes = first.body.len();
    for _ in 0..50 {
        b.get(path).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = b.get(path).await?;
        lat.push(t.elapsed());
        if r.status != 200 {
            return Err(format!("{path}: {}", r.status));
        }
    }
    lat.sort();
    Ok((lat, bytes))
}

async fn page_times(o: &Opts, base: &str, totp_secret: &str) -> Res<()> {
    // Render alone.
    wait_quiet(Duration::from_secs(o.quiet_wait));
    let mut times: BTreeMap<&str, PageTime> = BTreeMap::new();
    let order: Vec<&str> = render_contexts().iter().map(|(k, _, _)| *k).collect();
    for (what, template, ctx) in render_contexts() {
        let html = civid::http::render(template, Locale::ZhCn, ctx.clone());
        if html.len() < 500 {
            return Err(format!("{template} did not render: {html}"));
        }
        let mut lat = Vec::with_capacity(o.renders);
        for i in 0..o.renders + 200 {
            let t = Instant::now();
            let html = civid::http::render(template, Locale::ZhCn, ctx.clone());
            let d = t.elapsed();
            std::hint::black_box(html);
            if i >= 200 {
                lat.push(d);
            }
        }
        lat.sort();
        times.insert(what, PageTime { render: lat, render_bytes: html.len(), request: Vec::new(), served_bytes: 0 });
    }

    // Full requests, one at a time on one connection; each page reached as a
    // citizen would.
    let n = o.requests;
    wait_quiet(Duration::from_secs(o.quiet_wait));
    let mut b = Browser::new(base)?;
    let (floor, _) = time_requests(&mut b, "/healthz", n, "ok").await?;
    // Sign-in and registration pages: a fresh sign-in transaction.
    let login = b.start_sign_in(PORTAL, REDIRECT_URI).await?;
    let tx = login.split("tx=").nth(1).unwrap_or_default().to_string();
    let (lat, bytes) = time_requests(&mut b, &login, n, "name=\"password\"").await?;
    set(&mut times, "sign-in", lat, bytes);
    let reg = format!("/realms/{REALM}/register?tx={tx}");
    let (lat, bytes) = time_requests(&mut b, &reg, n, "name=\"phone\"").await?;
    set(&mut times, "registration", lat, bytes);
    // Second step: the TOTP account after its password.
    let mut t = Browser::new(base)?;
    let login = t.start_sign_in(PORTAL, REDIRECT_URI).await?;
    let page = expect_page(&mut t, &login, "name=\"password\"").await?;
    let second = t.submit_password(&page.body, TOTP_USER, true).await?;
    if !second.contains("/login/second?tx=") {
        return Err(format!("the TOTP account was not asked for its second step: {second}"));
    }
    let (lat, bytes) = time_requests(&mut t, &second, n, "name=\"code\"").await?;
    set(&mut times, "second step", lat, bytes);
    // Complete it, so this browser is signed in (for consent and the account centre).
    let html = String::from_utf8_lossy(&t.get(&second).await?.body).to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let code = civid::authn::totp::code_at(totp_secret, now).ok_or("totp code")?;
    let (csrf, tx2) = (hidden(&html, "csrf"), hidden(&html, "tx"));
    let r = t
        .post(&format!("/realms/{REALM}/login/second"), &[("csrf", &csrf), ("tx", &tx2), ("code", &code)], true)
        .await?;
    if r.status != 303 || !location(&r.headers).starts_with(REDIRECT_URI) {
        return Err(format!("second step: {} to {}", r.status, location(&r.headers)));
    }
    // Consent: a third-party portal for the signed-in person.
    let url = t.authorize_url(PORTAL_3P, REDIRECT_3P, "openid profile phone");
    let r = t.get(&url).await?;
    let consent = location(&r.headers);
    if !consent.starts_with(&format!("/realms/{REALM}/consent?tx=")) {
        return Err(format!("expected the consent page, got {} to {consent}", r.status));
    }
    let (lat, bytes) = time_requests(&mut t, &consent, n, "name=\"decision\"").await?;
    set(&mut times, "consent", lat, bytes);
    // Allow it, so the account centre lists a portal.
    let html = String::from_utf8_lossy(&t.get(&consent).await?.body).to_string();
    let (csrf, tx3) = (hidden(&html, "csrf"), hidden(&html, "tx"));
    let r = t
        .post(&format!("/realms/{REALM}/consent"), &[("csrf", &csrf), ("tx", &tx3), ("decision", "allow")], true)
        .await?;
    if r.status != 303 || !location(&r.headers).starts_with(REDIRECT_3P) {
        return Err(format!("consent: {} to {}", r.status, location(&r.headers)));
    }
    let (lat, bytes) = time_requests(&mut t, &format!("/realms/{REALM}/account"), n, "id=\"sec-sessions\"").await?;
    set(&mut times, "account centre", lat, bytes);

    println!("\n### Page times (zh-CN; render: {} renders; request: {n} sequential requests)\n", o.renders);
    println!(
        "| page | render alone p50 ms | p99 ms | rendered B | full request p50 ms | p99 ms | mean ms | served B |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| `/healthz` (floor: HTTP on loopback with this client) | — | — | — | {} | {} | {} | 2 |",
        ms(pct(&floor, 0.5)),
        ms(pct(&floor, 0.99)),
        ms(mean(&floor))
    );
    for what in order {
        let p = &times[what];
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} |",
            ms(pct(&p.render, 0.5)),
            ms(pct(&p.render, 0.99)),
            p.render_bytes,
            ms(pct(&p.request, 0.5)),
            ms(pct(&p.request, 0.99)),
            ms(mean(&p.request)),
            p.served_bytes
        );
    }
    Ok(())
}

fn set(times: &mut BTreeMap<&str, PageTime>, what: &str, lat: Vec<Duration>, bytes: usize) {
    if let Some(p) = times.get_mut(what) {
        p.request = lat;
        p.served_bytes = bytes;
    }
}

// ---------------------------------------------------------------- 4. sign-in flow

#[derive(Default)]
struct Steps {
    total: Vec<Duration>,
    /// The authorization request, answered with the sign-in page.
    authorize: Vec<Duration>,
    post: Vec<Duration>,
}

/// The load generator's browser: HTTP/1.1 on one keep-alive connection,
/// written and read by hand. It shares the server's two cores, so the less
/// CPU it takes per sign-in the less it takes from what is measured
/// (reqwest took ~0.3 ms per sign-in).
struct LoadBrowser {
    conn: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
    binding: Option<String>,
    urls: Browser,
}

impl LoadBrowser {
    async fn connect(base: &str) -> Res<LoadBrowser> {
        let host = base.trim_start_matches("http://").to_string();
        let tcp = tokio::net::TcpStream::connect(&host).await.map_err(|e| format!("connect {host}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(LoadBrowser { conn: tokio::io::BufReader::new(tcp), host, binding: None, urls: Browser::new(base)? })
    }

    /// One request; returns status, `Location`, and the body. Keeps the
    /// binding cookie (`civid-bind`), never the session cookie.
    async fn request(&mut self, method: &str, path: &str, form: Option<&str>) -> Res<(u16, String, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(b) = &self.binding {
            req.push_str(&format!("Cookie: {b}\r\n"));
        }
        if let Some(f) = form {
            req.push_str(&format!("Content-Type: {FORM}\r\nContent-Length: {}\r\n\r\n{f}", f.len()));
        } else {
            req.push_str("\r\n");
        }
        self.conn.get_mut().write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        self.conn.read_line(&mut line).await.map_err(|e| format!("read: {e}"))?;
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("status {line:?}"))?;
        let (mut length, mut to) = (0usize, String::new());
        loop {
            line.clear();
            self.conn.read_line(&mut line).await.map_err(|e| format!("read: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else { continue };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().map_err(|_| format!("content-length {v:?}"))?;
            } else if k.eq_ignore_ascii_case("location") {
                to = v.to_string();
            } else if k.eq_ignore_ascii_case("set-cookie") && v.starts_with("civid-bind=") {
                self.binding = v.split(';').next().map(str::to_string);
            }
        }
        let mut body = vec![0; length];
        self.conn.read_exact(&mut body).await.map_err(|e| format!("body: {e}"))?;
        Ok((status, to, body))
    }
}

async fn one_browser(base: String, who: String, start: Instant, deadline: Instant) -> Res<Steps> {
    let mut b = LoadBrowser::connect(&base).await?;
    let mut s = Steps::default();
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        // The authorization request answers with the sign-in page.
        let url = b.urls.authorize_url(PORTAL, REDIRECT_URI, "openid profile phone");
        let (status, _, page) = b.request("GET", &url, None).await?;
        let html = String::from_utf8_lossy(&page);
        if status != 200 || !html.contains("name=\"password\"") {
            return Err(format!("authorize: {status}"));
        }
        let t1 = Instant::now();
        // The session cookie is not kept: the next round is a new sign-in.
        let form = format!(
            "csrf={}&tx={}&identifier={}&password={}",
            enc(&hidden(&html, "csrf")),
            enc(&hidden(&html, "tx")),
            enc(&who),
            enc(PASSWORD)
        );
        let (status, to, _) = b.request("POST", &format!("/realms/{REALM}/login"), Some(&form)).await?;
        if status != 303 {
            return Err(format!("sign-in: {status}"));
        }
        let t2 = Instant::now();
        if !to.starts_with(REDIRECT_URI) || !to.contains("code=") {
            return Err(format!("after the password expected the portal, got {to}"));
        }
        // Counted by when it completed (the window holds whole queues).
        if t2 >= start && t2 <= deadline {
            s.total.push(t2 - t0);
            s.authorize.push(t1 - t0);
            s.post.push(t2 - t1);
        }
    }
    Ok(s)
}

async fn signin_flow(o: &Opts, base: &str, server: &Server, with_bound: bool) -> Res<()> {
    let tck = clock_ticks();
    println!(
        "\n### Password sign-in, whole flow (authorize, answered with the sign-in page → POST password → 303 to the portal)\n"
    );
    if with_bound {
        println!(
            "Each round: the hash alone (server's malloc, as many in flight as hashing threads, in a fresh \
             child process) and right after it the sign-in window it bounds.\n"
        );
    }
    println!(
        "| browsers | round | hash alone/s | sign-ins/s | of the hash alone | p50 ms | p99 ms | authorize (the page) p50 \
         | POST p50 / p99 | server CPU ms/sign-in (user + system) | server minor faults/sign-in \
         | generator CPU ms/sign-in | machine busy | others' CPU | hash CPU / sign-in CPU \
         | server threads ms/sign-in: hashing / async workers / SQLite / rest | hashing threads preempted/sign-in |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &o.concurrency {
        let (mut by_rate, mut by_cpu) = (Vec::new(), Vec::new());
        // All rounds together: sign-ins/s over hashes/s, each the mean of
        // its windows (every window is equally long).
        let (mut rate_sum, mut bound_sum) = (0.0, 0.0);
        for round in 1..=o.rounds {
            let bound = if with_bound { Some(bound_now(o)?) } else { None };
            wait_quiet(Duration::from_secs(o.quiet_wait));
            let start = Instant::now() + Duration::from_secs(o.warmup);
            let measured_to = start + Duration::from_secs(o.secs);
            let mut tasks = Vec::new();
            for i in 0..c {
                tasks.push(tokio::spawn(one_browser(base.to_string(), username(i % 64), start, measured_to)));
            }
            // CPU over the measured window only.
            tokio::time::sleep_until(start.into()).await;
            let pid = server.pid.to_string();
            let (s0, g0, m0, t0) =
                (cpu_split(&pid, tck), cpu_secs("self", tck), machine_jiffies(), thread_groups(&pid));
            tokio::time::sleep_until(measured_to.into()).await;
            let (s1, g1, m1, t1) =
                (cpu_split(&pid, tck), cpu_secs("self", tck), machine_jiffies(), thread_groups(&pid));
            let mut all = Steps::default();
            for t in tasks {
                let s = t.await.map_err(|e| format!("task: {e}"))??;
                all.total.extend(s.total);
                all.authorize.extend(s.authorize);
                all.post.extend(s.post);
            }
            for v in [&mut all.total, &mut all.authorize, &mut all.post] {
                v.sort();
            }
            let n = all.total.len().max(1) as f64;
            let rate = all.total.len() as f64 / o.secs as f64;
            let busy = (m1.0 - m0.0) / (m1.1 - m0.1).max(1.0) * 100.0;
            // Server and generator CPU per sign-in: what the cores spend on one.
            let signin_cpu_ms = ((s1.0 - s0.0) + (s1.1 - s0.1) + (g1 - g0)) / n * 1000.0;
            if let Some(b) = bound {
                rate_sum += rate;
                bound_sum += b.rate;
                by_rate.push(rate / b.rate * 100.0);
                by_cpu.push(b.cpu_ms / signin_cpu_ms * 100.0);
            }
            let pct_of = |f: Option<f64>| f.map(|x| format!("{x:.0}%")).unwrap_or_else(|| "—".into());
            // Per thread group over the window: CPU ms and preemptions per sign-in.
            let mut by_group: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for (name, (cpu, invol)) in &t1 {
                let (c0, i0) = t0.get(name).copied().unwrap_or((0.0, 0.0));
                let group = match name.as_str() {
                    "civid-hash" => "hash",
                    "tokio-rt-worker" => "async",
                    n if n.starts_with("sqlx-sqlite") => "sqlite",
                    _ => "rest",
                };
                let e = by_group.entry(group).or_insert((0.0, 0.0));
                e.0 += (cpu - c0) / n * 1000.0;
                e.1 += (invol - i0) / n;
            }
            let g = |k: &str| by_group.get(k).copied().unwrap_or((0.0, 0.0));
            println!(
                "| {c} | {round} | {} | {rate:.1} | {} | {} | {} | {} | {} / {} | {:.1} + {:.1} | {:.0} | {:.1} | {busy:.0}% \
                 | {:.0}% | {} | {:.2} / {:.2} / {:.2} / {:.2} | {:.1} |",
                bound.map(|b| format!("{:.1}", b.rate)).unwrap_or_else(|| "—".into()),
                pct_of(bound.map(|b| rate / b.rate * 100.0)),
                ms(pct(&all.total, 0.5)),
                ms(pct(&all.total, 0.99)),
                ms(pct(&all.authorize, 0.5)),
                ms(pct(&all.post, 0.5)),
                ms(pct(&all.post, 0.99)),
                (s1.0 - s0.0) / n * 1000.0,
                (s1.1 - s0.1) / n * 1000.0,
                (s1.2 - s0.2) / n,
                (g1 - g0) / n * 1000.0,
                others_share(m0, m1, (s1.0 - s0.0) + (s1.1 - s0.1) + (g1 - g0), tck),
                pct_of(bound.map(|b| b.cpu_ms / signin_cpu_ms * 100.0)),
                g("hash").0,
                g("async").0,
                g("sqlite").0,
                g("rest").0,
                g("hash").1,
            );
        }
        if !by_rate.is_empty() {
            by_rate.sort_by(|a, b| a.total_cmp(b));
            by_cpu.sort_by(|a, b| a.total_cmp(b));
            let median = |v: &Vec<f64>| v[v.len() / 2];
            println!(
                "\n{c} browsers, {} rounds: sign-ins/s of the hash alone, median **{:.1}%** (range {:.1}–{:.1}%); \
                 all rounds together {:.1}%; by CPU, median {:.1}%.\n",
                by_rate.len(),
                median(&by_rate),
                by_rate[0],
                by_rate[by_rate.len() - 1],
                rate_sum / bound_sum.max(f64::MIN_POSITIVE) * 100.0,
                median(&by_cpu),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- main

fn run() -> Res<()> {
    let o = parse_opts()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    if let Some(mode) = &o.hash_child {
        return rt.block_on(hash_child(&o, mode));
    }
    println!("# civid pages bench: {}", machine());
    let bounds = if o.runs("hash") { Some(hash_alone(&o)?) } else { None };
    if !(o.runs("sizes") || o.runs("pages") || o.runs("signin")) {
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix("civid-pages-").tempdir().map_err(|e| format!("tempdir: {e}"))?;
    std::fs::create_dir_all(dir.path().join("realms")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.path().join("data")).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("realms").join(format!("{REALM}.toml")), realm_file()).map_err(|e| e.to_string())?;
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("data").join("civid.db").display());
    let t = Instant::now();
    let secret = rt.block_on(seed(dir.path(), &db_url, 64, o.accounts))?;
    eprintln!("seeded {} accounts in {:.1} s", 65 + o.accounts, t.elapsed().as_secs_f64());
    let server = Server::start(dir.path(), &db_url, &o.server_env)?;
    let base = server.url.clone();
    rt.block_on(async {
        if o.runs("sizes") {
            sizes(&base).await?;
        }
        if o.runs("pages") {
            page_times(&o, &base, &secret).await?;
        }
        if o.runs("signin") {
            signin_flow(&o, &base, &server, bounds.is_some()).await?;
        }
        Res::Ok(())
    })?;
    let complaints = server.complaints();
    if !complaints.is_empty() {
        eprintln!("server warnings/errors ({}):", complaints.len());
        for c in complaints.iter().take(10) {
            eprintln!("  {c}");
        }
    }
    Ok(())
}
