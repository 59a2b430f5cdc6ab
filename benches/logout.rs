//! Back-channel logout throughput: how many logout tokens per second one
//! node's outbox worker delivers to a local receiver.
//!
//! `cargo bench --bench logout -- [--postgres URL] [--sessions N] [--portals P] [--alg RS256|ES256|EdDSA] [--concurrency N] [--fanout N]`
//!
//! With `--fanout N` it measures instead what a citizen waits for: N
//! sign-outs, one after another, each of a session in which all P portals
//! took part, through the real HTTP path (`POST /realms/bench/logout/confirm`
//! with the session cookie and its form token, as the confirmation page
//! sends it), timed from request to response, while the node's worker
//! delivers the logout tokens in the background as in production.
//!
//! N sessions, each with P portals that registered a back-channel logout
//! URI, are ended through the real path (`logout::end_and_enqueue`: the
//! session row ended and its P outbox rows inserted in one transaction,
//! audited) while no worker runs; then the worker starts and the clock runs
//! until the receiver (a small axum server on loopback answering 200) has
//! N×P tokens and every outbox row is marked delivered. Each token is
//! freshly signed with the portals' ID-token algorithm, POSTed, its attempt
//! recorded and its delivery audited, as in production.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use civid::config::Settings;
use civid::server::{self, StartOptions};
use futures_util::StreamExt;
use sea_orm::ConnectionTrait;

struct Args {
    postgres: Option<String>,
    sessions: usize,
    portals: usize,
    alg: String,
    concurrency: usize,
    fanout: usize,
}

fn args() -> Args {
    let mut a = Args { postgres: None, sessions: 5_000, portals: 1, alg: "RS256".into(), concurrency: 64, fanout: 0 };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--postgres" => a.postgres = Some(next),
            "--sessions" => a.sessions = next.parse().unwrap_or(a.sessions),
            "--portals" => a.portals = next.parse().unwrap_or(a.portals),
            "--alg" => a.alg = next,
            "--concurrency" => a.concurrency = next.parse().unwrap_or(a.concurrency),
            "--fanout" => a.fanout = next.parse().unwrap_or(a.fanout),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    server::install_crypto_provider();
    // The receiver: counts logout tokens, answers 200.
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/bc/{portal}",
        axum::routing::post(move |body: String| {
            let counter = counter.clone();
            async move {
                if body.starts_with("logout_token=") {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::BAD_REQUEST
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut realm = String::from("name = \"bench\"\n");
    for p in 0..a.portals {
        realm.push_str(&format!(
            "\n[clients.portal{p}]\nredirect_uris = [\"https://p{p}.example.test/cb\"]\nsecret_sha256 = \"8766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6aeae1\"\nid_token_signed_response_alg = \"{}\"\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/bc/{p}\"\n",
            a.alg
        ));
    }
    std::fs::write(dir.path().join("bench.toml"), realm).expect("realm file");
    let database_url = match &a.postgres {
        Some(url) => {
            let (base, _) = url.rsplit_once('/').expect("postgres URL with a database");
            let admin = sea_orm::Database::connect(url.as_str()).await.expect("connect");
            admin.execute_unprepared("DROP DATABASE IF EXISTS civid_logout_bench").await.expect("drop");
            admin.execute_unprepared("CREATE DATABASE civid_logout_bench").await.expect("create");
            admin.close().await.ok();
            format!("{base}/civid_logout_bench")
        }
        None => format!("sqlite://{}?mode=rwc", dir.path().join("logout.db").display()),
    };
    let settings = Settings {
        database_url,
        kek: "YmVuY2gta2VrLWJlbmNoLWtlay1iZW5jaC1rZWstMzI".into(),
        realms_dir: dir.path().to_path_buf(),
        keys_dir: dir.path().join("keys"),
        logout_concurrency: a.concurrency,
        ..Default::default()
    };
    let state = server::prepare(settings, StartOptions { migrate: true, apply_realms: true, verbose: false })
        .await
        .expect("state");
    let backend = if a.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    if a.fanout > 0 {
        fanout(&state, &a, backend, received).await;
        return;
    }
    let total = (a.sessions * a.portals) as u64;
    println!(
        "# civid logout bench: {backend}, {} sessions x {} portals = {total} logout tokens, {}, worker concurrency {}",
        a.sessions, a.portals, a.alg, a.concurrency
    );

    // Live sessions in which every portal took part.
    let clients: Vec<String> = (0..a.portals).map(|p| format!("portal{p}")).collect();
    let clients = serde_json::to_string(&clients).expect("json");
    let t = civid::store::now();
    let mut ids = Vec::with_capacity(a.sessions);
    for chunk in (0..a.sessions).collect::<Vec<_>>().chunks(500) {
        let rows = chunk.iter().map(|i| civid::store::entities::sso_session::ActiveModel {
            id: sea_orm::Set(format!("sid{i}")),
            realm: sea_orm::Set("bench".into()),
            user_id: sea_orm::Set(format!("user{i}")),
            token_hash: sea_orm::Set(format!("hash{i}")),
            auth_time: sea_orm::Set(t),
            amr: sea_orm::Set("[\"pwd\"]".into()),
            acr: sea_orm::Set("L2".into()),
            clients: sea_orm::Set(clients.clone()),
            created_at: sea_orm::Set(t),
            last_seen_at: sea_orm::Set(t),
            expires_at: sea_orm::Set(t + 3600),
            ended_at: sea_orm::Set(None),
            end_reason: sea_orm::Set(None),
            ip: sea_orm::Set(None),
            user_agent: sea_orm::Set(None),
            acting: sea_orm::Set(None),
        });
        use sea_orm::EntityTrait;
        civid::store::entities::sso_session::Entity::insert_many(rows)
            .exec_without_returning(&state.db)
            .await
            .expect("sessions");
        ids.extend(chunk.iter().map(|i| format!("sid{i}")));
    }

    // End them all (no worker yet): the enqueue path.
    let start = Instant::now();
    let s = &state;
    futures_util::stream::iter(ids)
        .map(|id| async move {
            civid::logout::end_and_enqueue(s, "bench", &id, "bench").await.expect("end").expect("was live");
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let enqueue = start.elapsed();
    println!(
        "enqueue: {} sessions ended and {total} deliveries queued in {:.2} s ({:.0} sessions/s)",
        a.sessions,
        enqueue.as_secs_f64(),
        a.sessions as f64 / enqueue.as_secs_f64()
    );

    // Deliver.
    let start = Instant::now();
    let tasks = civid::logout::worker::spawn(state.clone());
    let mut first_all = None;
    loop {
        let got = received.load(Ordering::Relaxed);
        if got >= total && first_all.is_none() {
            first_all = Some(start.elapsed());
        }
        if got >= total {
            let delivered =
                civid::store::logout::count(&state.db, "bench", civid::store::logout::DELIVERED).await.expect("count");
            if delivered >= total {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            println!("gave up waiting: {got} of {total} received");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = start.elapsed();
    let received_all = first_all.unwrap_or(done);
    let failed = civid::store::logout::count(&state.db, "bench", civid::store::logout::FAILED).await.expect("count");
    println!(
        "delivery: {total} logout tokens received in {:.2} s ({:.0} tokens/s); all rows recorded delivered after {:.2} s ({:.0} tokens/s); failed {failed}",
        received_all.as_secs_f64(),
        total as f64 / received_all.as_secs_f64(),
        done.as_secs_f64(),
        total as f64 / done.as_secs_f64(),
    );
    for t in tasks {
        t.abort();
    }
}

/// Sign-outs of sessions with `a.portals` portals each, timed as the
/// citizen sees them.
async fn fanout(state: &civid::state::SharedState, a: &Args, backend: &str, received: Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind civid");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = civid::app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let tasks = civid::logout::worker::spawn(state.clone());
    let realm = state.realms.get("bench").expect("bench realm");
    let clients: Vec<String> = (0..a.portals).map(|p| format!("portal{p}")).collect();
    let clients = serde_json::to_string(&clients).expect("json");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    println!(
        "# civid logout fan-out bench: {backend}, {} sign-outs, one at a time, each of a session with {} portals ({}), worker concurrency {}",
        a.fanout, a.portals, a.alg, a.concurrency
    );
    let mut times = Vec::with_capacity(a.fanout);
    let warmup = 10.min(a.fanout);
    for i in 0..a.fanout + warmup {
        let sid = civid::authn::session::new_id().expect("sid");
        let (cookie, sess) =
            civid::authn::session::create(state, &realm, sid, &format!("user{i}"), vec!["pwd".into()], "L2")
                .await
                .expect("session");
        civid::store::sessions::set_clients(&state.db, "bench", &sess.id, clients.clone(), civid::store::now())
            .await
            .expect("clients");
        let token_hash = civid::crypto::random::sha256_b64(cookie.as_bytes());
        let csrf = state.secrets.csrf_token(&token_hash, "logout:confirm");
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/realms/bench/logout/confirm"))
            .header("cookie", format!("civid-bench={cookie}"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("sign-out");
        let status = resp.status();
        let _ = resp.bytes().await;
        let took = t.elapsed();
        assert_eq!(status, 200, "sign-out answered");
        if i >= warmup {
            times.push(took);
        }
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
    println!(
        "sign-out with {} portals: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms ({} sign-outs)",
        a.portals,
        pick(0.50),
        pick(0.99),
        pick(1.0),
        mean,
        times.len()
    );
    let total = ((a.fanout + warmup) * a.portals) as u64;
    let start = Instant::now();
    while received.load(Ordering::Relaxed) < total && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "background delivery: {} of {total} logout tokens received {:.2} s after the last sign-out",
        received.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    for t in tasks {
        t.abort();
    }
}
