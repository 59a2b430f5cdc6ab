//! Real-name verification figures: how fast a registry check answers with
//! millions of rows in the population registry.
//!
//! `cargo bench --bench realname -- [--postgres URL] [--rows N] [--concurrency N] [--secs N]`.
//! Without `--postgres` it runs on a SQLite file. Bulk rows (blind-index
//! shaped keys, dummy sealed values) are generated inside the database; a
//! few thousand real rows (valid numbers, names sealed as the import seals
//! them) are what the checks look up, through the same code the
//! verification page uses (`realname::verifier::check`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use civid::config::Settings;
use civid::identity::ResidentId;
use civid::realname::verifier::{self, Check, registry_aad};
use civid::server::{self, StartOptions};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

struct Args {
    postgres: Option<String>,
    rows: u64,
    concurrency: usize,
    secs: u64,
}

fn args() -> Args {
    let mut a = Args { postgres: None, rows: 10_000_000, concurrency: 32, secs: 5 };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--postgres" => a.postgres = Some(next),
            "--rows" => a.rows = next.parse().unwrap_or(a.rows),
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
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

const REAL: usize = 5_000;

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bench.toml"), "name = \"bench\"\n").expect("realm file");
    let database_url = match &a.postgres {
        Some(url) => {
            let (base, _) = url.rsplit_once('/').expect("postgres URL with a database");
            let admin = sea_orm::Database::connect(url.as_str()).await.expect("connect");
            admin.execute_unprepared("DROP DATABASE IF EXISTS civid_realname_bench").await.expect("drop");
            admin.execute_unprepared("CREATE DATABASE civid_realname_bench").await.expect("create");
            admin.close().await.ok();
            format!("{base}/civid_realname_bench")
        }
        None => format!("sqlite://{}?mode=rwc", dir.path().join("realname.db").display()),
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
    println!("# civid real-name bench: {backend}, {} registry rows, concurrency {}", a.rows, a.concurrency);

    let t = Instant::now();
    let n = a.rows;
    let bulk = if a.postgres.is_some() {
        format!(
            "INSERT INTO registry_persons (id_index, id_sealed, name_sealed, status, updated_at, import_id) SELECT encode(sha256(('p' || i)::text::bytea), 'base64'), '\\x00'::bytea, '\\x00'::bytea, 'alive', 0, 'bench' FROM generate_series(1, {n}) AS i"
        )
    } else {
        format!(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) INSERT INTO registry_persons (id_index, id_sealed, name_sealed, status, updated_at, import_id) SELECT hex(randomblob(32)), x'00', x'00', 'alive', 0, 'bench' FROM c"
        )
    };
    state.db.execute_unprepared(&bulk).await.expect("seed registry");
    // Real rows, sealed as the import seals them.
    let mut people = Vec::new();
    let birth = chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date");
    let mut rows = Vec::new();
    for i in 0..REAL {
        let id = ResidentId::generate("110105", birth + chrono::Duration::days(i as i64 / 900), (i % 900) as u16)
            .expect("id");
        let name = format!("测试{i}");
        let index = civid::realname::id_index(&state, id.as_str());
        rows.push(civid::store::entities::registry_person::ActiveModel {
            id_index: Set(index.clone()),
            id_sealed: Set(state
                .secrets
                .sealer
                .seal(id.as_str(), &registry_aad("registry_persons", "id_sealed", &index))
                .expect("seal")),
            name_sealed: Set(state
                .secrets
                .sealer
                .seal(&name, &registry_aad("registry_persons", "name_sealed", &index))
                .expect("seal")),
            status: Set("alive".into()),
            updated_at: Set(0),
            import_id: Set("bench".into()),
        });
        people.push((id.as_str().to_string(), index, name));
    }
    for chunk in rows.chunks(500) {
        civid::store::entities::registry_person::Entity::insert_many(chunk.to_vec())
            .exec(&state.db)
            .await
            .expect("real rows");
    }
    if a.postgres.is_some() {
        state.db.execute_unprepared("ANALYZE registry_persons").await.expect("analyze");
    }
    println!("seeded {n} + {REAL} registry rows in {:.1} s", t.elapsed().as_secs_f64());

    let realm = state.realms.get("bench").expect("realm");
    let state = Arc::new(state);
    let people = Arc::new(people);
    // One citizen at a time: what the verification page waits for.
    let mut lat = Vec::new();
    for k in 0..3000usize {
        let (id, index, name) = &people[(k * 7919) % REAL];
        let t = Instant::now();
        let c = verifier::check(&state, &realm, id, index, name).await.expect("check");
        lat.push(t.elapsed());
        assert_eq!(c, Check::Match);
    }
    lat.sort();
    println!(
        "| sequential | {} checks | p50 {} ms | p99 {} ms | max {} ms |",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0))
    );
    // Many at once.
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (state, realm, people) = (state.clone(), realm.clone(), people.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut k = w * 104_729;
            while Instant::now() < deadline {
                let (id, index, name) = &people[k % REAL];
                k += 7919;
                let t = Instant::now();
                let c = verifier::check(&state, &realm, id, index, name).await.expect("check");
                lat.push(t.elapsed());
                assert_eq!(c, Check::Match);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    println!(
        "| {} concurrent | {} checks, {:.0}/s | p50 {} ms | p99 {} ms | max {} ms |",
        a.concurrency,
        all.len(),
        all.len() as f64 / a.secs as f64,
        ms(pct(&all, 0.5)),
        ms(pct(&all, 0.99)),
        ms(pct(&all, 1.0))
    );
    if let Some(url) = &a.postgres {
        drop(state);
        let admin = sea_orm::Database::connect(url.as_str()).await.expect("connect");
        let _ = admin.execute_unprepared("DROP DATABASE IF EXISTS civid_realname_bench WITH (FORCE)").await;
    }
}
