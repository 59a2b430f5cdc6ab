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

/// Makes the database refuse to insert one row (`column` = `value`) into
/// `table`: a fault injected from outside, as a lost connection or a full
/// disk would stop an import between two batches. Undone by `heal`.
async fn poison(conn: &sea_orm::DatabaseConnection, table: &str, column: &str, value: &str) {
    use sea_orm::ConnectionTrait;
    let sql = if conn.get_database_backend() == sea_orm::DbBackend::Sqlite {
        vec![format!(
            "CREATE TRIGGER poison_{table} BEFORE INSERT ON {table} FOR EACH ROW WHEN NEW.{column} = '{value}' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )]
    } else {
        vec![
            format!(
                "CREATE FUNCTION poison_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.{column} = '{value}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER poison_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison_{table}()"
            ),
        ]
    };
    for q in sql {
        conn.execute_unprepared(&q).await.expect("poison");
    }
}

async fn heal(conn: &sea_orm::DatabaseConnection, table: &str) {
    use sea_orm::ConnectionTrait;
    let sql = if conn.get_database_backend() == sea_orm::DbBackend::Sqlite {
        vec![format!("DROP TRIGGER poison_{table}")]
    } else {
        vec![format!("DROP TRIGGER poison_{table} ON {table}"), format!("DROP FUNCTION poison_{table}()")]
    };
    for q in sql {
        conn.execute_unprepared(&q).await.expect("heal");
    }
}

/// Synthetic data lines, all alive or active (no changes of their own).
fn filler(kind: &str, count: &str, seed: &str, env: &[(String, String)], dir: &std::path::Path) -> Vec<String> {
    let file = dir.join(format!("filler-{kind}-{seed}.csv"));
    let (ok, _, err) =
        civid(&["registry", "synth", "--kind", kind, "--count", count, "--seed", seed, "--out", s(&file)], env, None);
    assert!(ok, "{err}");
    data_lines(&file)
        .into_iter()
        .map(|l| match l.rsplit_once(',') {
            Some((head, "deceased")) => format!("{head},alive"),
            Some((head, "revoked" | "cancelled")) => format!("{head},active"),
            _ => l,
        })
        .collect()
}

const PERSON_HEADER: &str = "id_number,name,status";
const ENTERPRISE_HEADER: &str = "uscc,name,legal_rep_id_number,legal_rep_name,status";

/// A person verified at L3 whom the registry will report deceased; returns
/// the account and the ID number.
async fn verified_person(server: &crate::harness::TestServer) -> (String, String) {
    let s = &server.state;
    let realm = s.realms.get("test").expect("realm");
    let birth = chrono::NaiveDate::from_ymd_opt(1950, 3, 3).expect("date");
    let id = ResidentId::generate("110105", birth, 77).expect("id").as_str().to_string();
    let user = server.user("test", "zhaomin", crate::realname::PW).await;
    crate::realname::registry_row(server, &id, "赵敏", "alive").await;
    let v = civid::realname::verify(s, &realm, &user, &id, birth, "赵敏", 0, None).await.expect("verify");
    assert_eq!(v, civid::realname::Outcome::Verified("L3".into()));
    (user, id)
}

/// Signs the person in (a live SSO session at L3).
async fn signed_in(server: &crate::harness::TestServer, user: &str) {
    let s = &server.state;
    let realm = s.realms.get("test").expect("realm");
    let sid = civid::authn::session::new_id().expect("sid");
    civid::authn::session::create(s, &realm, sid, user, vec!["pwd".into()], "L3").await.expect("session");
}

/// (live, ended by `reason`) sessions of a person.
async fn sessions_of(server: &crate::harness::TestServer, user: &str, reason: &str) -> (usize, usize) {
    let all = civid::store::sessions::all_of_user(&server.state.db, "test", user).await.expect("sessions");
    let live = all.iter().filter(|r| r.ended_at.is_none()).count();
    let ended = all.iter().filter(|r| r.ended_at.is_some() && r.end_reason.as_deref() == Some(reason)).count();
    (live, ended)
}

async fn audited(server: &crate::harness::TestServer, kind: &str) -> Vec<civid::store::audit::EntryRecord> {
    civid::store::audit::list(&server.state.db, "test", Some(kind), 100).await.expect("audit")
}

async fn pending_changes(conn: &sea_orm::DatabaseConnection) -> Vec<civid::store::registry::ChangeRecord> {
    use civid::store::entities::registry_change;
    use sea_orm::{ColumnTrait, QueryFilter};
    registry_change::Entity::find().filter(registry_change::Column::AppliedAt.is_null()).all(conn).await.expect("db")
}

#[tokio::test]
async fn changes_committed_before_a_crash_are_applied_exactly_once_later() {
    // No background pass: the commands alone apply what is pending.
    let server = crate::harness::TestServer::start_configured(|s| s.registry_apply_secs = 0).await;
    let st = &server.state;
    let db = server.settings.database_url.clone();
    let env = node_env(&db, Some(&server.settings.redis_key_prefix));
    let dir = tempfile::tempdir().expect("dir");
    // A representative and an agent of an enterprise, and a third person; all
    // L3 and signed in.
    let ent = crate::enterprise::setup(&server).await;
    let (zhao, dead_id) = verified_person(&server).await;
    for u in [&ent.rep, &ent.agent, &zhao] {
        signed_in(&server, u).await;
    }

    // The population registry reports the third person deceased in the
    // first batch; the third batch fails (the database refuses a row).
    let mut lines = vec![format!("{dead_id},赵敏,deceased")];
    lines.extend(filler("person", "20", "11", &env, dir.path()));
    let persons = dir.path().join("persons.csv");
    write_lines(&persons, PERSON_HEADER, &lines);
    let poisoned = st.secrets.sealer.blind_index("resident_id", lines[10].split(',').next().expect("id"));
    poison(&st.db, "registry_persons", "id_index", &poisoned).await;
    let args = ["registry", "import", "--kind", "person", s(&persons), "--batch-size", "4"];
    let (ok, out, err) = civid(&args, &env, None);
    assert!(!ok, "the database error fails the import: {out}");
    assert!(
        err.contains("persons.csv: database error writing the batch after line 9") && err.contains("--resume"),
        "{err}"
    );
    assert!(err.contains("1 registry changes are recorded and pending"), "{err}");
    assert!(!err.contains(&dead_id) && !out.contains(&dead_id), "no ID number in the output");
    // Committed with the batch, not yet applied: the account is still L3.
    let pending = pending_changes(&st.db).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].kind, "deceased");
    assert_eq!(pending[0].blind_index, civid::realname::id_index(st, &dead_id));
    assert_eq!(civid::realname::level_of(st, "test", &zhao).await.expect("level"), "L3");
    assert_eq!(sessions_of(&server, &zhao, "registry_deceased").await, (1, 0));

    // An operator applies it (or the next import, or a server); again does nothing.
    let (ok, out, err) = civid(&["registry", "apply-changes"], &env, None);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "1 changes applied (1 accounts demoted to L2, 0 enterprise claims ended, 0 delegations revoked, \
             1 sessions ended)"
        ),
        "{out}"
    );
    assert_eq!(civid::realname::level_of(st, "test", &zhao).await.expect("level"), "L2");
    assert_eq!(sessions_of(&server, &zhao, "registry_deceased").await, (0, 1));
    let demoted = audited(&server, "realname.demoted").await;
    assert_eq!(demoted.len(), 1);
    assert_eq!(demoted[0].actor.as_deref(), Some(zhao.as_str()));
    assert!(demoted[0].detail.contains("registry_change") && !demoted[0].detail.contains(&dead_id), "{demoted:?}");
    assert!(pending_changes(&st.db).await.is_empty());
    let (ok, out, err) = civid(&["registry", "apply-changes"], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("0 changes applied (0 accounts demoted"), "{out}");
    assert_eq!(audited(&server, "realname.demoted").await.len(), 1, "audited once");

    // The legal-person registry names a new representative of the
    // enterprise in the first batch; the third batch fails.
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
    let new_rep = ResidentId::generate("330106", today - chrono::Days::new(40 * 365), 555).expect("id");
    let mut lines = vec![format!("{},示例科技有限公司,{},钱多多,active", crate::realname::USCC, new_rep.as_str())];
    lines.extend(filler("enterprise", "20", "5", &env, dir.path()));
    let ents = dir.path().join("enterprises.csv");
    write_lines(&ents, ENTERPRISE_HEADER, &lines);
    let poisoned = st.secrets.sealer.blind_index("uscc", lines[10].split(',').next().expect("uscc"));
    poison(&st.db, "registry_enterprises", "uscc_index", &poisoned).await;
    let eargs = ["registry", "import", "--kind", "enterprise", s(&ents), "--batch-size", "4"];
    let (ok, out, err) = civid(&eargs, &env, None);
    assert!(!ok, "{out}");
    assert!(err.contains("enterprises.csv: database error writing the batch after line 9"), "{err}");
    let pending = pending_changes(&st.db).await;
    assert_eq!(pending.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(), vec!["rep_changed"]);
    assert!(civid::store::enterprises::get(&st.db, "test", &ent.index).await.expect("db").is_some(), "not yet ended");
    assert_eq!(sessions_of(&server, &ent.agent, "registry_changed").await, (1, 0));

    // The resume applies what the failed run left pending before it goes on.
    heal(&st.db, "registry_persons").await;
    heal(&st.db, "registry_enterprises").await;
    let (ok, out, err) = civid(&[&eargs[..], &["--resume"]].concat(), &env, None);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "left pending by earlier runs: 1 changes applied (0 accounts demoted to L2, 1 enterprise claims \
             ended, 1 delegations revoked, 2 sessions ended)"
        ),
        "{out}"
    );
    assert!(out.contains("resumed after line 9"), "{out}");
    assert!(out.contains("after this run: 0 changes applied"), "{out}");
    assert!(out.contains("1 changes for accounts recorded (every run), 1 applied, 0 pending"), "{out}");
    assert!(civid::store::enterprises::get(&st.db, "test", &ent.index).await.expect("db").is_none(), "claim ended");
    let live =
        civid::store::enterprises::delegations_for(&st.db, "test", &ent.index, civid::store::now()).await.expect("db");
    assert!(live.is_empty(), "the agent's delegation is revoked");
    assert!(civid::realname::enterprise::orgs_of(st, "test", &ent.agent).await.expect("orgs").is_empty());
    assert_eq!(sessions_of(&server, &ent.rep, "registry_changed").await, (0, 1));
    assert_eq!(sessions_of(&server, &ent.agent, "registry_changed").await, (0, 1));
    assert_eq!(audited(&server, "enterprise.claim_ended").await.len(), 1);

    // The person import resumes too; nothing is applied twice.
    let (ok, out, err) = civid(&[&args[..], &["--resume"]].concat(), &env, None);
    assert!(ok, "{err}");
    assert!(!out.contains("left pending by earlier runs"), "{out}");
    assert!(out.contains("after this run: 0 changes applied"), "{out}");
    assert!(out.contains("1 changes for accounts recorded (every run), 1 applied, 0 pending"), "{out}");
    let (ok, out, err) = civid(&["registry", "apply-changes"], &env, None);
    assert!(ok && out.contains("0 changes applied"), "{out}{err}");
    assert_eq!(audited(&server, "realname.demoted").await.len(), 1, "audited once");
    assert_eq!(audited(&server, "enterprise.claim_ended").await.len(), 1, "audited once");
    assert_eq!(civid::realname::level_of(st, "test", &zhao).await.expect("level"), "L2");
    server.stop().await;
}

#[tokio::test]
async fn a_server_applies_what_a_crashed_import_left_pending() {
    let server = crate::harness::TestServer::start_configured(|s| s.registry_apply_secs = 1).await;
    let st = &server.state;
    let env = node_env(&server.settings.database_url, Some(&server.settings.redis_key_prefix));
    let dir = tempfile::tempdir().expect("dir");
    let (zhao, dead_id) = verified_person(&server).await;
    signed_in(&server, &zhao).await;
    let mut lines = vec![format!("{dead_id},赵敏,deceased")];
    lines.extend(filler("person", "8", "12", &env, dir.path()));
    let persons = dir.path().join("persons.csv");
    write_lines(&persons, PERSON_HEADER, &lines);
    let poisoned = st.secrets.sealer.blind_index("resident_id", lines[5].split(',').next().expect("id"));
    poison(&st.db, "registry_persons", "id_index", &poisoned).await;
    let (ok, _, err) = civid(&["registry", "import", "--kind", "person", s(&persons), "--batch-size", "2"], &env, None);
    assert!(!ok && err.contains("after line 5"), "{err}");
    // Nobody runs a command: the node's background pass applies it.
    let mut level = String::new();
    for _ in 0..100 {
        level = civid::realname::level_of(st, "test", &zhao).await.expect("level");
        if level == "L2" && pending_changes(&st.db).await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(level, "L2");
    assert!(pending_changes(&st.db).await.is_empty());
    assert_eq!(sessions_of(&server, &zhao, "registry_deceased").await, (0, 1));
    // Later passes (and the operator's) do nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (ok, out, err) = civid(&["registry", "apply-changes"], &env, None);
    assert!(ok && out.contains("0 changes applied"), "{out}{err}");
    assert_eq!(audited(&server, "realname.demoted").await.len(), 1, "audited once");
    server.stop().await;
}
