//! Key rotation: a new key is published before it signs, tokens signed
//! before the rotation keep verifying, and the retired key leaves the JWKS
//! once every token it signed has expired. The KEK rotates under running
//! nodes: every wrapped key is re-wrapped, nothing else changes.
use std::time::Duration;

use civid::crypto::jws;
use civid::crypto::keys::Alg;

use crate::flow::jwks;
use crate::harness::{Node, TEST_KEK, TestServer, civid, node_env};

async fn client_credentials(server: &TestServer, realm: &str) -> String {
    token_at(&server.issuer(realm)).await
}

async fn token_at(issuer: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    body["access_token"].as_str().expect("access token").to_string()
}

fn kid(token: &str) -> String {
    jws::decode_unverified(token).expect("jwt").header["kid"].as_str().unwrap_or_default().to_string()
}

fn kids(keys: &[serde_json::Value]) -> Vec<String> {
    keys.iter().filter_map(|k| k["kid"].as_str().map(str::to_string)).collect()
}

async fn rotate(server: &TestServer, realm: &str, lead: u64) {
    let s = &server.state;
    let settings = s.realms.get(realm).expect("realm").settings.clone();
    civid::realm::keys::rotate(&s.db, &s.secrets.kek, realm, &settings, &[Alg::ES256], Some(lead))
        .await
        .expect("rotate");
    s.announce_change(realm).await;
}

#[tokio::test]
async fn rotation_publishes_first_keeps_old_tokens_valid_then_retires() {
    let server = TestServer::start().await;
    let before = client_credentials(&server, "short").await;
    let old_kid = kid(&before);
    let initial = kids(&jwks(&server, "short").await);

    // With a lead time the new key is published but does not sign yet.
    rotate(&server, "short", 3).await;
    let published = kids(&jwks(&server, "short").await);
    assert_eq!(published.len(), initial.len() + 1, "the new key is published at once: {published:?}");
    let new_kid = published.iter().find(|k| !initial.contains(k)).cloned().expect("new kid");
    assert_eq!(kid(&client_credentials(&server, "short").await), old_kid, "the old key signs during the lead time");

    tokio::time::sleep(Duration::from_millis(3200)).await;
    server.state.refresh_realms().await;
    let after = client_credentials(&server, "short").await;
    assert_eq!(kid(&after), new_kid, "the new key signs after the lead time");
    let keys = jwks(&server, "short").await;
    jws::verify(&before, &keys, &["ES256"]).expect("a token signed before the rotation still verifies");
    jws::verify(&after, &keys, &["ES256"]).expect("new token verifies");

    // Tokens of realm "short" live 2 s; the retired key leaves the JWKS then.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.state.refresh_realms().await;
    let keys = jwks(&server, "short").await;
    assert!(!kids(&keys).contains(&old_kid), "retired key still published: {:?}", kids(&keys));
    assert!(kids(&keys).contains(&kid(&after)));
    server.stop().await;
}

fn with_kek(env: &[(String, String)], kek: &str, previous: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| !k.starts_with("CIVID_KEK")).cloned().collect();
    env.push(("CIVID_KEK".into(), kek.into()));
    if let Some(p) = previous {
        env.push(("CIVID_KEK_PREVIOUS".into(), p.into()));
    }
    env
}

async fn wrapped_blobs(db: &civid::store::Db) -> Vec<Vec<u8>> {
    let mut keys = civid::store::realms::all_keys(db).await.expect("keys");
    keys.sort_by(|a, b| (&a.realm, &a.kid).cmp(&(&b.realm, &b.kid)));
    let mut blobs: Vec<Vec<u8>> = keys.into_iter().map(|k| k.wrapped).collect();
    blobs.push(civid::store::realms::meta_get(db, "dek").await.expect("meta").expect("dek"));
    let mut audit = civid::store::realms::meta_with_prefix(db, "audit-key:").await.expect("meta");
    audit.sort();
    blobs.extend(audit.into_iter().map(|(_, b)| b));
    blobs
}

#[tokio::test]
async fn kek_rotation_rewraps_every_key_while_nodes_keep_serving() {
    let server = TestServer::start().await;
    let db = server.state.db.clone();
    let base = node_env(&server.settings.database_url, Some(&server.settings.redis_key_prefix));
    let old_env = with_kek(&base, TEST_KEK, None);

    // A person with sealed identifiers, and an audit key for realm "test".
    let (ok, out, err) =
        civid(&["user", "add", "--realm", "test", "--phone", "13900139000", "--name", "轮换"], &old_env, None);
    assert!(ok, "{err}");
    let user = out.trim().split(' ').nth(2).expect("user id").to_string();
    let (ok, _, err) = civid(&["audit", "checkpoint", "--realm", "test"], &old_env, None);
    assert!(ok, "{err}");
    let audit_keys = civid::store::realms::meta_with_prefix(&db, "audit-key:").await.expect("meta");
    assert!(!audit_keys.is_empty(), "an audit key exists to re-wrap");
    let kids_before = kids(&jwks(&server, "test").await);
    let before = wrapped_blobs(&db).await;

    let new_kek = civid::crypto::seal::Kek::generate().expect("kek").to_b64();
    let wrong = civid::crypto::seal::Kek::generate().expect("kek").to_b64();

    // A wrong old KEK: refused, naming what failed, nothing changed.
    let (ok, _, err) = civid(&["keys", "rotate-kek"], &with_kek(&base, &new_kek, Some(&wrong)), None);
    assert!(!ok);
    assert!(err.contains("the data key") && err.contains("nothing was changed"), "{err}");
    assert_eq!(wrapped_blobs(&db).await, before, "a refused rotation writes nothing");

    // The rolling procedure: new KEK as current, the old one as previous
    // (here from a file, as in production).
    let dir = tempfile::tempdir().expect("dir");
    let old_file = dir.path().join("kek.old");
    std::fs::write(&old_file, format!("{TEST_KEK}\n")).expect("write");
    let mut both = with_kek(&base, &new_kek, None);
    both.push(("CIVID_KEK_PREVIOUS_FILE".into(), old_file.display().to_string()));
    let (ok, out, err) = civid(&["keys", "rotate-kek"], &both, None);
    assert!(ok, "{err}");
    assert!(out.contains("re-wrapped the data key"), "{out}");
    assert!(out.contains("re-wrapped the audit key of realm test"), "{out}");
    assert!(out.contains("sealed values were not touched"), "{out}");
    assert!(!out.contains(&new_kek) && !err.contains(&new_kek) && !out.contains(TEST_KEK), "no KEK printed");
    let after = wrapped_blobs(&db).await;
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(a, b)| a != b), "every wrapped blob changed");

    // Running it again changes nothing.
    let (ok, out, err) = civid(&["keys", "rotate-kek"], &both, None);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to do") && out.contains("0 key(s) re-wrapped"), "{out}");
    assert_eq!(wrapped_blobs(&db).await, after, "a second run writes nothing");

    // The running node (old KEK, keys in memory) keeps serving.
    let token = client_credentials(&server, "test").await;
    jws::verify(&token, &jwks(&server, "test").await, &["ES256"]).expect("the running node still signs");

    // A node with only the new KEK starts, signs with the same keys, opens
    // sealed values and the audit key.
    let new_env = with_kek(&base, &new_kek, None);
    let node = Node::start(&new_env, None).await;
    let node_token = token_at(&format!("{}/realms/test", node.url)).await;
    let server_keys = jwks(&server, "test").await;
    jws::verify(&node_token, &server_keys, &["ES256"]).expect("the new node's token verifies with the same JWKS");
    assert!(kids_before.contains(&kid(&node_token)), "same signing keys");
    let node_jwks: serde_json::Value =
        reqwest::get(format!("{}/realms/test/jwks", node.url)).await.expect("jwks").json().await.expect("json");
    let mut node_kids = kids(node_jwks["keys"].as_array().expect("keys"));
    let mut expected = kids_before.clone();
    node_kids.sort();
    expected.sort();
    assert_eq!(node_kids, expected, "same kids");
    let (ok, out, err) = civid(&["user", "search", "--realm", "test", "--phone", "13900139000"], &new_env, None);
    assert!(ok, "{err}");
    assert!(out.contains(&user), "search by phone with the new KEK: {out}");
    let (ok, out, err) = civid(&["audit", "verify", "--realm", "test"], &new_env, None);
    assert!(ok, "{err}");
    assert!(out.contains("verifies"), "{out}");

    // Only the old KEK: refuses to start. New + previous: starts.
    let (ok, _, err) = civid(&["serve"], &old_env, None);
    assert!(!ok);
    assert!(err.contains("cannot unwrap") && err.contains("refusing to start"), "{err}");
    let both_node = Node::start(&with_kek(&base, &new_kek, Some(TEST_KEK)), None).await;
    let t = token_at(&format!("{}/realms/test", both_node.url)).await;
    jws::verify(&t, &server_keys, &["ES256"]).expect("a node with both KEKs signs");

    let events =
        civid::store::audit::list(&db, civid::admin::ADMIN_REALM, Some("keys.kek_rotated"), 10).await.expect("audit");
    assert_eq!(events.iter().filter(|e| e.outcome == "success").count(), 2, "both runs audited");
    assert_eq!(events.iter().filter(|e| e.outcome == "failure").count(), 1, "the refusal audited");
    drop(node);
    drop(both_node);
    server.stop().await;
}
