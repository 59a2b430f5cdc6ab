//! Key rotation: a new key is published before it signs, tokens signed
//! before the rotation keep verifying, and the retired key leaves the JWKS
//! once every token it signed has expired.
use std::time::Duration;

use civid::crypto::jws;
use civid::crypto::keys::Alg;

use crate::flow::jwks;
use crate::harness::TestServer;

async fn client_credentials(server: &TestServer, realm: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", server.issuer(realm)))
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
