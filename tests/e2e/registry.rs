//! `civid registry synth` and `civid registry import`: the real binary on a
//! fresh database. Rows land sealed and blind-indexed, bad rows are named by
//! file and line, an aborted import resumes after its last committed batch,
//! and a re-import updates rows in place and says what changed for accounts.
use civid::config::Settings;
use civid::identity::ResidentId;
use civid::registry::aad;
use civid::store::entities::{registry_enterprise, registry_import, registry_person};
use sea_orm::EntityTrait;

use crate::harness::{TEST_KEK, civid, fresh_database, node_env};

async fn open(db: &str) -> (sea_orm::DatabaseConnection, civid::secrets::Secrets) {
    let conn = civid::store::connect(db, 1).await.expect("connect");
    let settings = Settings { kek: TEST_KEK.into(), database_url: db.into(), ..Default::default() };
    let (secrets, _) = civid::secrets::load(&settings, &conn).await.expect("secrets");
    (conn, secrets)
}

fn data_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().skip(1).map(str::to_string).collect()
}

fn write_lines(path: &std::path::Path, header: &str, lines: &[String]) {
    std::fs::write(path, format!("{header}\n{}\n", lines.join("\n"))).expect("write");
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn persons_import_sealed_report_bad_lines_resume_and_update_in_place() {
    let (db, _guard) = fresh_database().await;
    let env = node_env(&db, None);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("persons.csv");

    let (ok, _, err) = civid(
        &["registry", "synth", "--kind", "person", "--count", "1000", "--seed", "42", "--out", s(&file)],
        &env,
        None,
    );
    assert!(ok, "{err}");
    let lines = data_lines(&file);
    assert_eq!(lines.len(), 1000);

    let (ok, out, err) = civid(&["registry", "import", "--kind", "person", s(&file)], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("1000 rows written, 0 bad rows"), "{out}");
    assert!(!err.contains("persons.csv:"), "no bad rows: {err}");

    // Every row is there, keyed by blind index, sealed with its key as associated data.
    let (conn, secrets) = open(&db).await;
    let rows = registry_person::Entity::find().all(&conn).await.expect("rows");
    assert_eq!(rows.len(), 1000);
    let by_index: std::collections::HashMap<_, _> = rows.iter().map(|r| (r.id_index.clone(), r)).collect();
    for line in &lines {
        let f: Vec<&str> = line.split(',').collect();
        let index = secrets.sealer.blind_index("resident_id", f[0]);
        let row = by_index.get(&index).expect("row for each number");
        assert_eq!(row.status, f[2]);
        let name =
            secrets.sealer.open(&row.name_sealed, &aad("registry_persons", "name_sealed", &index)).expect("open");
        assert_eq!(name, f[1]);
        let id = secrets.sealer.open(&row.id_sealed, &aad("registry_persons", "id_sealed", &index)).expect("open");
        assert_eq!(id, f[0]);
        // Not in clear in the row...
        for blob in [&row.name_sealed, &row.id_sealed] {
            assert!(!contains(blob, f[1].as_bytes()) && !contains(blob, f[0].as_bytes()), "sealed");
        }
        // ...and bound to it: another row's key does not open it.
        assert!(secrets.sealer.open(&row.name_sealed, &aad("registry_persons", "name_sealed", "other")).is_err());
    }
    // Nor anywhere in the database file.
    if let Some(path) = db.strip_prefix("sqlite://").and_then(|p| p.split('?').next()) {
        let mut bytes = std::fs::read(path).unwrap_or_default();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        for line in lines.iter().take(50) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(!contains(&bytes, f[0].as_bytes()), "an ID number in clear in the database file");
        }
    }
    conn.close().await.ok();

    // Bad rows: named by line, skipped, never printed in clear.
    let bad = dir.path().join("bad.csv");
    let good = lines[0].clone();
    let wrong_check = {
        let f: Vec<&str> = lines[1].split(',').collect();
        let mut id = f[0].to_string();
        let last = if id.ends_with('0') { "1" } else { "0" };
        id.replace_range(17.., last);
        format!("{id},{},alive", f[1])
    };
    let no_status = lines[2].rsplit_once(',').map(|(a, _)| a.to_string()).expect("comma");
    let bad_status = lines[3].replace(",alive", ",gone").replace(",deceased", ",gone");
    let extra = format!("{},extra column", lines[4]);
    write_lines(&bad, "id_number,name,status", &[good, wrong_check.clone(), no_status, bad_status, extra]);
    let (ok, out, err) = civid(&["registry", "import", "--kind", "person", s(&bad)], &env, None);
    assert!(ok, "{err}");
    assert!(err.contains("bad.csv:3: id_number:") && err.contains("check"), "{err}");
    assert!(err.contains("bad.csv:4: missing field status"), "{err}");
    assert!(err.contains("bad.csv:5: status \"gone\""), "{err}");
    assert!(!err.contains("bad.csv:2:") && !err.contains("bad.csv:6:"), "{err}");
    assert!(!err.contains(&wrong_check[..18]), "the number is not echoed: {err}");
    assert!(out.contains("2 rows written, 3 bad rows"), "{out}");

    // Abort at a bad line; the batches before it stay; resume completes.
    let big = dir.path().join("big.csv");
    let (ok, _, err) = civid(
        &["registry", "synth", "--kind", "person", "--count", "2500", "--seed", "7", "--out", s(&big)],
        &env,
        None,
    );
    assert!(ok, "{err}");
    let mut big_lines = data_lines(&big);
    big_lines[1798] = "123456789012345678,某人,alive".into(); // file line 1800
    write_lines(&big, "id_number,name,status", &big_lines);
    let args = ["registry", "import", "--kind", "person", s(&big), "--batch-size", "500"];
    // Persons the registry did not yet hold as deceased: what each run reports.
    let known_dead: std::collections::HashSet<&str> =
        lines.iter().filter(|l| l.ends_with(",deceased")).filter_map(|l| l.split(',').next()).collect();
    let newly_dead = |ls: &[String]| {
        ls.iter()
            .filter(|l| l.ends_with(",deceased") && l.split(',').next().is_some_and(|id| !known_dead.contains(id)))
            .count()
    };
    let (dead_first, dead_resumed) = (newly_dead(&big_lines[..1798]), newly_dead(&big_lines[1799..]));
    assert!(dead_first > 0 && dead_resumed > 0, "the synthetic file has deceased persons on both sides");
    let (ok, out, err) = civid(&[&args[..], &["--on-error", "abort"]].concat(), &env, None);
    assert!(!ok, "abort fails the command");
    assert!(out.contains(&format!("{dead_first} persons newly deceased\n")), "{out}");
    assert!(err.contains("big.csv:1800: id_number:") && err.contains("--resume"), "{err}");
    let (conn, _) = open(&db).await;
    let count = registry_person::Entity::find().all(&conn).await.expect("rows").len();
    assert_eq!(count, 1000 + 1798, "every good row before the bad line is committed");
    let runs = registry_import::Entity::find().all(&conn).await.expect("runs");
    let run = runs.iter().find(|r| r.status == "aborted").expect("aborted run");
    assert_eq!(run.lines_done, 1798);
    assert_eq!((run.rows_written, run.deceased), (1798, dead_first as i64), "counts kept with the checkpoint");
    assert_eq!(run.file_sha256.len(), 64, "the digest is recorded for the resume");

    // A different file does not resume it.
    let other = dir.path().join("other.csv");
    write_lines(&other, "id_number,name,status", &big_lines[..2000]);
    let (ok, _, err) = civid(&["registry", "import", "--kind", "person", s(&other), "--resume"], &env, None);
    assert!(!ok && err.contains("SHA-256 differs"), "{err}");

    let (ok, out, err) = civid(&[&args[..], &["--resume"]].concat(), &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("resumed after line 1799"), "{out}");
    // The report covers the whole import, not only this run's batches.
    assert!(out.contains("2499 rows written, 1 bad rows in the whole import; this run: 701 rows written"), "{out}");
    let total = dead_first + dead_resumed;
    assert!(out.contains(&format!("{total} persons newly deceased ({dead_resumed} in this run)")), "{out}");
    assert!(err.contains("big.csv:1800:") && !err.contains("big.csv:1799:"), "{err}");
    let count = registry_person::Entity::find().all(&conn).await.expect("rows").len();
    assert_eq!(count, 1000 + 2499);
    let runs = registry_import::Entity::find().all(&conn).await.expect("runs");
    assert!(runs.iter().all(|r| r.status == "done"), "{runs:?}");
    let run = runs.iter().find(|r| r.lines_done == 2500).expect("the resumed import");
    assert_eq!((run.rows_written, run.rows_bad, run.deceased), (2499, 1, total as i64), "kept with the checkpoint");
    let (ok, _, err) = civid(&["registry", "import", "--kind", "person", s(&big), "--resume"], &env, None);
    assert!(!ok && err.contains("no unfinished person import"), "{err}");

    // A re-import with three persons now deceased updates them in place and
    // reports exactly them.
    let mut changed = Vec::new();
    let mut edited = lines.clone();
    for l in edited.iter_mut().filter(|l| l.ends_with(",alive")).take(3) {
        *l = l.replace(",alive", ",deceased");
        changed.push(l.split(',').next().expect("id").to_string());
    }
    // An account proved one of them: the re-import demotes it.
    {
        use sea_orm::{ActiveModelTrait, Set};
        civid::store::entities::identity_proof::ActiveModel {
            realm: Set("test".into()),
            user_id: Set("someone-verified".into()),
            id_index: Set(secrets.sealer.blind_index("resident_id", &changed[0])),
            id_sealed: Set(vec![0]),
            name_sealed: Set(vec![0]),
            level: Set("L3".into()),
            method: Set("registry".into()),
            evidence: Set("[]".into()),
            verified_at: Set(0),
            consent_at: Set(0),
        }
        .insert(&conn)
        .await
        .expect("proof");
    }
    let again = dir.path().join("again.csv");
    write_lines(&again, "id_number,name,status", &edited);
    let changes = dir.path().join("changes.jsonl");
    let (ok, out, err) =
        civid(&["registry", "import", "--kind", "person", s(&again), "--changes", s(&changes)], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("1000 rows written") && out.contains("3 persons newly deceased"), "{out}");
    assert!(out.contains("1 accounts demoted to L2"), "{out}");
    let proof = civid::store::realname::proof_of(&conn, "test", "someone-verified").await.expect("db").expect("proof");
    assert_eq!(proof.level, "L2", "a deceased person's account is no longer real-name verified");
    let (_, secrets) = open(&db).await;
    let reported: Vec<serde_json::Value> = std::fs::read_to_string(&changes)
        .expect("changes")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut expected: Vec<String> = changed.iter().map(|id| secrets.sealer.blind_index("resident_id", id)).collect();
    let mut got: Vec<String> = reported.iter().map(|v| v["index"].as_str().unwrap_or_default().to_string()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(reported.iter().all(|v| v["change"] == "deceased"));
    let count = registry_person::Entity::find().all(&conn).await.expect("rows").len();
    assert_eq!(count, 1000 + 2499, "updated in place, not added");
    let row = registry_person::Entity::find_by_id(expected[0].clone()).one(&conn).await.expect("db").expect("row");
    assert_eq!(row.status, "deceased");
}

#[tokio::test]
async fn enterprises_import_and_report_a_new_legal_representative() {
    let (db, _guard) = fresh_database().await;
    let env = node_env(&db, None);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("ent.csv");
    let (ok, _, err) = civid(
        &["registry", "synth", "--kind", "enterprise", "--count", "300", "--seed", "3", "--out", s(&file)],
        &env,
        None,
    );
    assert!(ok, "{err}");
    let lines = data_lines(&file);
    let (ok, out, err) = civid(&["registry", "import", "--kind", "enterprise", s(&file)], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("300 rows written, 0 bad rows"), "{out}");
    assert!(out.contains("0 enterprises with a new legal representative"), "{out}");

    let (conn, secrets) = open(&db).await;
    let rows = registry_enterprise::Entity::find().all(&conn).await.expect("rows");
    assert_eq!(rows.len(), 300);
    let f: Vec<&str> = lines[0].split(',').collect();
    let index = secrets.sealer.blind_index("uscc", f[0]);
    let row = rows.iter().find(|r| r.uscc_index == index).expect("row");
    assert_eq!(row.rep_index, secrets.sealer.blind_index("resident_id", f[2]));
    let aad_of = |col: &str| aad("registry_enterprises", col, &index);
    assert_eq!(secrets.sealer.open(&row.name_sealed, &aad_of("name_sealed")).expect("open"), f[1]);
    assert_eq!(secrets.sealer.open(&row.rep_name_sealed, &aad_of("rep_name_sealed")).expect("open"), f[3]);
    assert_eq!(secrets.sealer.open(&row.uscc_sealed, &aad_of("uscc_sealed")).expect("open"), f[0]);
    assert!(!contains(&row.name_sealed, f[1].as_bytes()));

    // A new legal representative for the first, the first active one revoked,
    // and a bad credit code on line 4.
    let mut edited = lines.clone();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
    let new_rep = ResidentId::generate("330106", today - chrono::Days::new(40 * 365), 555).expect("id");
    let mut cols: Vec<String> = edited[0].split(',').map(str::to_string).collect();
    cols[2] = new_rep.as_str().to_string();
    cols[3] = "钱多多".into();
    edited[0] = cols.join(",");
    let revoked_at = (1..edited.len()).find(|i| edited[*i].ends_with(",active")).expect("an active one");
    edited[revoked_at] = edited[revoked_at].replace(",active", ",revoked");
    let revoked_uscc = edited[revoked_at].split(',').next().expect("uscc").to_string();
    let revoked_line = revoked_at + 2;
    let bad_at = if revoked_at == 2 { 3 } else { 2 }; // file line bad_at + 2
    edited[bad_at] = edited[bad_at].replacen(&edited[bad_at][..1], "I", 1);
    let again = dir.path().join("again.csv");
    write_lines(&again, "uscc,name,legal_rep_id_number,legal_rep_name,status", &edited);
    let changes = dir.path().join("changes.jsonl");
    let (ok, out, err) =
        civid(&["registry", "import", "--kind", "enterprise", s(&again), "--changes", s(&changes)], &env, None);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("again.csv:{}: uscc:", bad_at + 2)), "{err}");
    assert!(out.contains("299 rows written, 1 bad rows"), "{out}");
    assert!(out.contains("1 enterprises with a new legal representative, 1 newly revoked or cancelled"), "{out}");
    let mut reported: Vec<(String, String)> = std::fs::read_to_string(&changes)
        .expect("changes")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|v| (v["change"].as_str().unwrap_or_default().into(), v["index"].as_str().unwrap_or_default().into()))
        .collect();
    reported.sort();
    let closed = secrets.sealer.blind_index("uscc", &revoked_uscc);
    assert_eq!(reported, vec![("closed".into(), closed), ("rep_changed".into(), index.clone())], "line {revoked_line}");
    let row = registry_enterprise::Entity::find_by_id(index.clone()).one(&conn).await.expect("db").expect("row");
    assert_eq!(row.rep_index, secrets.sealer.blind_index("resident_id", new_rep.as_str()));
    assert_eq!(registry_enterprise::Entity::find().all(&conn).await.expect("rows").len(), 300);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
