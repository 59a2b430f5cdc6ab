//! The audit log is durable and tamper-evident: two nodes append to their
//! own chains at once, signed checkpoints pin the heads, and verification
//! names the first edited, deleted, inserted or cut-off entry.
use sea_orm::ConnectionTrait;

use crate::harness::TestServer;

/// Two nodes on one database and ephemeral store, both issuing tokens (and
/// so writing audit entries) concurrently; then a signed checkpoint.
async fn two_nodes_writing() -> (TestServer, TestServer) {
    let a = TestServer::start().await;
    let b = TestServer::start_with(a.settings.clone(), None).await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let issuer = if i % 2 == 0 { a.issuer("test") } else { b.issuer("test") };
        calls.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{issuer}/token"))
                .basic_auth("portal-a", Some("secret-a"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token");
            assert_eq!(resp.status(), 200);
        }));
    }
    for c in calls {
        c.await.expect("call");
    }
    assert!(civid::audit::checkpoint::write(&a.state.db, &a.state.secrets.kek, "test").await.expect("checkpoint"));
    (a, b)
}

async fn verify(s: &TestServer) -> Result<civid::audit::verify::Report, String> {
    civid::audit::verify::verify(&s.state.db, &s.state.secrets.kek, "test").await
}

async fn entries(s: &TestServer) -> Vec<civid::store::audit::EntryRecord> {
    let mut all = civid::store::audit::list(&s.state.db, "test", Some("token.issued"), 1000).await.expect("list");
    all.sort_by_key(|e| (e.chain_id.clone(), e.seq));
    all
}

async fn sql(s: &TestServer, q: String) {
    s.state.db.execute_unprepared(&q).await.expect("sql");
}

#[tokio::test]
async fn an_intact_log_verifies_with_a_chain_per_node() {
    let (a, b) = two_nodes_writing().await;
    let r = verify(&a).await.expect("intact log verifies");
    assert!(r.chains >= 2, "each node writes its own chain: {r:?}");
    assert!(r.entries >= 40 && r.checkpoints == 1, "{r:?}");
    let e = entries(&a).await;
    assert!(e.iter().all(|e| !e.detail.contains("secret-a")), "no secrets in the log");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn an_edited_entry_is_named() {
    let (a, b) = two_nodes_writing().await;
    let victim = entries(&a).await[5].id;
    sql(&a, format!("UPDATE audit_events SET detail = '{{\"scope\":\"admin\"}}' WHERE id = {victim}")).await;
    let err = verify(&a).await.expect_err("edit detected");
    assert!(err.contains(&format!("entry {victim}:")) && err.contains("changed"), "{err}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_deleted_entry_is_detected() {
    let (a, b) = two_nodes_writing().await;
    let all = entries(&a).await;
    let victim = &all[3];
    let next = all.iter().find(|e| e.chain_id == victim.chain_id && e.seq == victim.seq + 1).expect("successor");
    sql(&a, format!("DELETE FROM audit_events WHERE id = {}", victim.id)).await;
    let err = verify(&a).await.expect_err("deletion detected");
    assert!(err.contains(&format!("entry {}:", next.id)) && err.contains("missing"), "{err}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn an_inserted_entry_is_detected() {
    let (a, b) = two_nodes_writing().await;
    let all = entries(&a).await;
    let at = &all[4];
    let chain = at.chain_id.clone();
    // The forger renumbers the rest of the chain and slips in a well-formed
    // entry that links to its predecessor.
    sql(&a, format!("UPDATE audit_events SET seq = -seq WHERE chain_id = '{chain}' AND seq > {}", at.seq)).await;
    sql(&a, format!("UPDATE audit_events SET seq = 1 - seq WHERE chain_id = '{chain}' AND seq < 0")).await;
    let mut row = civid::store::audit::EventRow {
        realm: "test".into(),
        chain_id: chain.clone(),
        seq: at.seq + 1,
        prev_hash: at.hash.clone(),
        hash: String::new(),
        at: at.at,
        kind: "consent.given".into(),
        outcome: "success".into(),
        actor: Some("someone".into()),
        client_id: Some("portal-a".into()),
        ip: None,
        detail: "{}".into(),
    };
    row.hash = civid::audit::entry_hash(&row);
    civid::store::audit::append_many(&a.state.db, vec![row]).await.expect("insert");
    let err = verify(&a).await.expect_err("insertion detected");
    assert!(err.contains("does not follow") || err.contains("differs"), "{err}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_truncated_tail_is_detected() {
    let (a, b) = two_nodes_writing().await;
    let all = entries(&a).await;
    let chain = all[0].chain_id.clone();
    let last = all.iter().filter(|e| e.chain_id == chain).map(|e| e.seq).max().expect("seq");
    sql(&a, format!("DELETE FROM audit_events WHERE chain_id = '{chain}' AND seq > {}", last - 3)).await;
    let err = verify(&a).await.expect_err("truncation detected");
    assert!(err.contains("cut off"), "{err}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn retention_prunes_up_to_a_checkpoint_and_the_log_still_verifies() {
    let (a, b) = two_nodes_writing().await;
    let before = entries(&a).await.len();
    // More entries after the checkpoint, which must survive.
    let resp = reqwest::Client::new()
        .post(format!("{}/token", a.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let removed = civid::audit::verify::prune(&a.state.db, &a.state.secrets.kek, "test", civid::store::now() + 1)
        .await
        .expect("prune");
    assert!(removed as usize >= before, "removed {removed} of {before}");
    assert_eq!(entries(&a).await.len(), 1, "the entry after the checkpoint stays");
    verify(&a).await.expect("a pruned log still verifies");
    b.stop().await;
    a.stop().await;
}
