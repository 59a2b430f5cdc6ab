//! Two server processes on one PostgreSQL and one Redis: a code issued by
//! one is redeemed at the other, once; an SSO session started on one is
//! honoured by the other. Runs when the suite runs on PostgreSQL + Redis.
use crate::harness::{Node, TestServer, browser, fresh_database, location, node_env, query_param, redis_url, unique};
use crate::steps::sign_in;

fn pkce() -> (String, String) {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    (civid::crypto::random::sha256_b64(verifier.as_bytes()), verifier)
}

async fn redeem(node: &str, code: &str, verifier: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{node}/realms/test/token"))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://a.example.test/cb"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token")
}

#[tokio::test]
async fn two_nodes_share_codes_and_sessions() {
    if std::env::var("CIVID_TEST_DATABASE_URL").is_err() || redis_url().is_none() {
        eprintln!("two_nodes_share_codes_and_sessions: runs on PostgreSQL + Redis only");
        return;
    }
    let (db, _guard) = fresh_database().await;
    let prefix = unique("civid-nodes-");
    let env = node_env(&db, Some(&prefix));
    let a = Node::start(&env, None).await;
    // Behind one load balancer both nodes have one public URL.
    let b = Node::start(&env, Some(&a.url)).await;

    // A person, created with the library on the same database.
    let helper = TestServer::start_with(
        civid::config::Settings {
            database_url: db.clone(),
            kek: crate::harness::TEST_KEK.into(),
            redis_url: redis_url().unwrap_or_default(),
            redis_key_prefix: prefix.clone(),
            // Realm "other" verifies over http: a node needs a verifier.
            verifier_url: crate::harness::UNUSED_VERIFIER.into(),
            verifier_secret: "unused".into(),
            ..Default::default()
        },
        None,
    )
    .await;
    helper.user("test", "nodeuser", "correct horse battery").await;

    let browser = browser();
    let (challenge, verifier) = pkce();
    let authorize = |base: &str, challenge: &str| {
        format!(
            "{base}/realms/test/authorize?response_type=code&client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb\
             &scope=openid%20profile&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256"
        )
    };
    let callback = sign_in(&browser, &authorize(&a.url, &challenge), "nodeuser", "correct horse battery").await;
    let code = query_param(&callback, "code").expect("code");

    let first = redeem(&b.url, &code, &verifier).await;
    assert_eq!(first.status(), 200, "a code issued by node A is redeemed at node B");
    let body: serde_json::Value = first.json().await.expect("json");
    let again_a = redeem(&a.url, &code, &verifier).await;
    assert_eq!(again_a.status(), 400, "a second redemption fails at A");
    let again_b = redeem(&b.url, &code, &verifier).await;
    assert_eq!(again_b.status(), 400, "and at B");
    // The replay revoked what the first redemption issued, on every node.
    let userinfo = reqwest::Client::new()
        .get(format!("{}/realms/test/userinfo", a.url))
        .bearer_auth(body["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), 401);

    // The SSO session started on A is honoured by B: no sign-in page.
    let (challenge, _) = pkce();
    let resp = browser.get(authorize(&b.url, &challenge)).send().await.expect("authorize at B");
    assert_eq!(resp.status(), 303);
    let next = location(&resp);
    assert!(next.starts_with("https://a.example.test/cb?") && next.contains("code="), "{next}");
    helper.stop().await;
}
