//! Operator-side figures of the operators issue: how much an audit append
//! adds to a request (group commit under concurrency), and how fast a user
//! search by phone number answers with millions of accounts.
//!
//! `cargo bench --bench ops -- [--postgres URL] [--redis URL] [--accounts N]
//! [--concurrency N] [--secs N]`. Without `--postgres` it runs on a SQLite
//! file. Seeding generates rows inside the database (generate_series /
//! a recursive CTE), so 10 million accounts take minutes, not hours.
use std::sync::Arc;
use std::time::{Duration, Instant};

use civid::account::identifiers::Identifier;
use civid::account::users::{NewUser, Profile, create};
use civid::config::Settings;
use civid::server::{self, StartOptions};
use sea_orm::ConnectionTrait;

struct Args {
    postgres: Option<String>,
    accounts: u64,
    concurrency: usize,
    secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        postgres: std::env::var("CIVID_BENCH_DATABASE_URL").ok(),
        accounts: 1_000_000,
        concurrency: 32,
        secs: 5,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--postgres" => a.postgres = Some(next),
            "--accounts" => a.accounts = next.parse().unwrap_or(a.accounts),
            "--concurrency" => a.concurrency = next.parse().unwrap_or(a.concurrency),
            "--secs" => a.secs = next.parse().unwrap_or(a.secs),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

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

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bench.toml"), "name = \"bench\"\n").expect("realm file");
    let database_url = match &a.postgres {
        Some(url) => {
            let (base, db) = url.rsplit_once('/').expect("postgres URL with a database");
            let admin = sea_orm::Database::connect(url.as_str()).await.expect("connect");
            let _ = db;
            admin.execute_unprepared("DROP DATABASE IF EXISTS civid_ops_bench").await.expect("drop");
            admin.execute_unprepared("CREATE DATABASE civid_ops_bench").await.expect("create");
            admin.close().await.ok();
            format!("{base}/civid_ops_bench")
        }
        None => format!("sqlite://{}?mode=rwc", dir.path().join("ops.db").display()),
    };
    let settings = Settings {
        database_url: database_url.clone(),
        kek: "YmVuY2gta2VrLWJlbmNoLWtlay1iZW5jaC1rZWstMzI".into(),
        realms_dir: dir.path().to_path_buf(),
        keys_dir: dir.path().join("keys"),
        ..Default::default()
    };
    let state = server::prepare(settings, StartOptions { migrate: true, apply_realms: true, verbose: false })
        .await
        .expect("state");
    let backend = if a.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("# civid ops bench: {backend}, {} accounts, concurrency {}", a.accounts, a.concurrency);

    // Seed: a few real people (their phones are searched), then bulk rows
    // with blind-index-shaped keys generated inside the database.
    let mut phones = Vec::new();
    for i in 0..20u64 {
        let phone = format!("1390000{:04}", i);
        let ident = Identifier::phone(&phone).expect("phone");
        create(
            &state.db,
            &state.secrets,
            "bench",
            NewUser { identifiers: vec![ident], password: None, profile: Profile::default() },
        )
        .await
        .expect("user");
        phones.push(phone);
    }
    let t = Instant::now();
    let n = a.accounts;
    let (users_sql, idents_sql) = if a.postgres.is_some() {
        (
            format!(
                "INSERT INTO users (id, realm, status, created_at, updated_at) SELECT 'seed-' || i, 'bench', 'active', 0, 0 FROM generate_series(1, {n}) AS i"
            ),
            format!(
                "INSERT INTO user_identifiers (realm, kind, blind_index, user_id, sealed, verified, created_at) SELECT 'bench', 'phone', encode(sha256(i::text::bytea), 'base64'), 'seed-' || i, '\\x00'::bytea, true, 0 FROM generate_series(1, {n}) AS i"
            ),
        )
    } else {
        (
            format!(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) INSERT INTO users (id, realm, status, created_at, updated_at) SELECT 'seed-' || i, 'bench', 'active', 0, 0 FROM c"
            ),
            format!(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) INSERT INTO user_identifiers (realm, kind, blind_index, user_id, sealed, verified, created_at) SELECT 'bench', 'phone', hex(randomblob(32)), 'seed-' || i, x'00', 1, 0 FROM c"
            ),
        )
    };
    state.db.execute_unprepared(&users_sql).await.expect("seed users");
    state.db.execute_unprepared(&idents_sql).await.expect("seed identifiers");
    if a.postgres.is_some() {
        state.db.execute_unprepared("ANALYZE").await.expect("analyze");
    }
    println!("seeded {n} accounts in {:.1} s", t.elapsed().as_secs_f64());

    let state = Arc::new(state);
    // One operator searching: the latency a helpdesk sees.
    let mut lat = Vec::new();
    for k in 0..2000usize {
        let phone = if k % 2 == 0 { phones[k % phones.len()].clone() } else { format!("1370000{:04}", k % 10_000) };
        let t = Instant::now();
        civid::admin::actions::user_search(&state, "bench", "phone", &phone).await.expect("search");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "| user search by phone, one at a time ({n} accounts, {backend}) | p50 {} ms | p99 {} ms |",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    // User search by phone through the blind index, found and not found, many at once.
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let s = state.clone();
        let phones = phones.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut k = w;
            while Instant::now() < deadline {
                let phone =
                    if k % 2 == 0 { phones[k % phones.len()].clone() } else { format!("1370000{:04}", k % 10_000) };
                let t = Instant::now();
                let found = civid::admin::actions::user_search(&s, "bench", "phone", &phone).await.expect("search");
                lat.push(t.elapsed());
                assert_eq!(found.as_array().map(|a| a.len()), Some(if k % 2 == 0 { 1 } else { 0 }));
                k += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    lat.sort();
    println!(
        "| user search by phone ({n} accounts, {backend}) | {} searches/s | p50 {} ms | p99 {} ms |",
        lat.len() as u64 / a.secs.max(1),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );

    // Audit append: what `audit::record` adds to a request. First at a
    // sign-in-like rate (Argon2id keeps password sign-ins near 100/s per
    // core, so 400/s is generous), then flat out.
    for (label, rate) in [("at 400 sign-ins/s", Some(400u64)), ("flat out", None)] {
        let deadline = Instant::now() + Duration::from_secs(a.secs);
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let s = state.clone();
            let pause = rate.map(|r| Duration::from_secs_f64(a.concurrency as f64 / r as f64));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    civid::audit::record(
                        &s,
                        civid::audit::Event::new("bench", "signin.password", "success")
                            .actor("seed-1")
                            .client("bench-portal")
                            .detail(serde_json::json!({ "sid": "bench" })),
                    )
                    .await;
                    lat.push(t.elapsed());
                    if let Some(p) = pause {
                        tokio::time::sleep(p.saturating_sub(t.elapsed())).await;
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        lat.sort();
        println!(
            "| audit append {label} ({} writers, {backend}) | {} entries/s | p50 {} ms | p99 {} ms |",
            a.concurrency,
            lat.len() as u64 / a.secs.max(1),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99))
        );
    }
    // What the audit entry adds to a successful sign-in: the sign-in's own
    // writes (session row and last-sign-in time in one transaction) alone,
    // and committed with the audit entry through the writer's shared
    // transaction as `http/login.rs` does; at 400 sign-ins/s.
    let realm = state.realms.get("bench").expect("bench realm");
    for with_audit in [false, true] {
        let deadline = Instant::now() + Duration::from_secs(a.secs);
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let s = state.clone();
            let realm = realm.clone();
            let pause = Duration::from_secs_f64(a.concurrency as f64 / 400.0);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let sid = civid::authn::session::new_id().expect("sid");
                    let (_, rec) =
                        civid::authn::session::prepare(&realm, sid.clone(), "seed-1", vec!["pwd".into()], "L2")
                            .expect("session");
                    if with_audit {
                        // As `http/login.rs` (`open_session`) hands them over.
                        let backend = s.db.get_database_backend();
                        let change = vec![
                            civid::store::sessions::insert_statement(backend, rec),
                            civid::store::users::touch_login_statement(backend, "bench", "seed-1"),
                        ];
                        let event = civid::audit::Event::new("bench", "signin.password", "success")
                            .actor("seed-1")
                            .detail(serde_json::json!({ "sid": sid }));
                        assert!(civid::audit::commit_statements_with(&s, event, change).await);
                    } else {
                        let change: civid::audit::Change = Box::new(move |txn| {
                            Box::pin(async move {
                                civid::store::sessions::insert(txn, rec).await?;
                                civid::store::users::touch_login(txn, "bench", "seed-1").await
                            })
                        });
                        use sea_orm::TransactionTrait;
                        let txn = s.db.begin().await.expect("begin");
                        change(&txn).await.expect("writes");
                        txn.commit().await.expect("commit");
                    }
                    lat.push(t.elapsed());
                    tokio::time::sleep(pause.saturating_sub(t.elapsed())).await;
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        lat.sort();
        println!(
            "| sign-in writes {} the audit entry ({backend}) | {} sign-ins/s | p50 {} ms | p99 {} ms |",
            if with_audit { "with" } else { "without" },
            lat.len() as u64 / a.secs.max(1),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99))
        );
    }
    let report = civid::audit::verify::verify(&state.db, &state.secrets.kek, "bench").await.expect("verify");
    println!("audit log verifies: {} entries in {} chains", report.entries, report.chains);
}
