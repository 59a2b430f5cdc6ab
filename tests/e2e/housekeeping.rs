//! Housekeeping removes what can never be used or matter again, and nothing
//! else: rotated or revoked refresh tokens once expired, any refresh token
//! expired for longer than a session can live, sessions ended before the
//! retention, finished logout deliveries with their attempts.
use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::harness::{TestServer, browser, hidden, query_param};
use crate::steps::{pkce_request, sign_in};

const PASSWORD: &str = "correct horse battery";

/// Signs in at portal-c (allowed refresh tokens) and returns its tokens.
async fn tokens(server: &TestServer, b: &reqwest::Client, user: &str) -> Value {
    let base = server.issuer("test");
    let (url, verifier) = pkce_request(&base, "portal-c", "c.example.test");
    let callback = sign_in(b, &url, user, PASSWORD).await;
    let code = query_param(&callback, "code").expect("code");
    let resp = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth("portal-c", Some("secret-b"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://c.example.test/cb"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn refresh(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", server.issuer("test")))
        .basic_auth("portal-c", Some("secret-b"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("refresh")
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    let db = &server.state.db;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_string()))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("count")
}

async fn exec(server: &TestServer, sql: &str) {
    server.state.db.execute_unprepared(sql).await.expect(sql);
}

#[tokio::test]
async fn housekeeping_removes_only_what_is_dead() {
    let server = TestServer::start().await;
    server.user("test", "hk1", PASSWORD).await;
    server.user("test", "hk2", PASSWORD).await;
    let now = civid::store::now();

    // Person 1: signs in, refreshes once (the first token is now rotated),
    // then signs out (the session ends, its refresh tokens are revoked).
    let b1 = browser();
    let t1 = tokens(&server, &b1, "hk1").await;
    let first = t1["refresh_token"].as_str().expect("refresh token").to_string();
    let resp = refresh(&server, &first).await;
    assert_eq!(resp.status(), 200);
    let base = server.issuer("test");
    let page = b1.get(format!("{base}/logout")).send().await.expect("logout").text().await.expect("html");
    let resp =
        b1.post(format!("{base}/logout/confirm")).form(&[("csrf", hidden(&page, "csrf"))]).send().await.expect("out");
    assert!(resp.status().is_success());

    // Person 2: signed in now, with a live refresh token.
    let b2 = browser();
    let t2 = tokens(&server, &b2, "hk2").await;
    let live = t2["refresh_token"].as_str().expect("refresh token").to_string();

    let hash = civid::crypto::random::sha256_b64(first.as_bytes());
    assert_eq!(count(&server, "SELECT COUNT(*) FROM refresh_tokens").await, 3);
    // Time passes: the rotated first token expires; person 1's session
    // ended 31 days ago; a delivery to a portal finished 31 days ago.
    exec(&server, &format!("UPDATE refresh_tokens SET expires_at = {} WHERE token_hash = '{hash}'", now - 10)).await;
    let ended = count(&server, "SELECT COUNT(*) FROM sso_sessions WHERE ended_at IS NOT NULL").await;
    assert_eq!(ended, 1, "person 1's session ended");
    exec(&server, &format!("UPDATE sso_sessions SET ended_at = {} WHERE ended_at IS NOT NULL", now - 31 * 86_400))
        .await;
    exec(
        &server,
        &format!(
            "INSERT INTO logout_deliveries (id, realm, client_id, session_id, user_id, subject, uri, reason, state, attempts, \
             created_at, next_attempt_at, deadline, lease, lease_until, last_status, last_error, finished_at) VALUES \
             ('old', 'test', 'portal-a', 's', 'u', 'sub', 'https://a.example.test/bcl', 'logout', 'delivered', 1, {0}, {0}, {0}, NULL, NULL, 200, NULL, {0}), \
             ('recent', 'test', 'portal-a', 's', 'u', 'sub', 'https://a.example.test/bcl', 'logout', 'delivered', 1, {1}, {1}, {1}, NULL, NULL, 200, NULL, {1}), \
             ('pending', 'test', 'portal-a', 's', 'u', 'sub', 'https://a.example.test/bcl', 'logout', 'pending', 0, {0}, {0}, {1}, NULL, NULL, NULL, NULL, NULL)",
            now - 31 * 86_400,
            now - 86_400
        ),
    )
    .await;
    exec(&server, &format!("INSERT INTO logout_attempts (delivery_id, n, at, duration_ms, status, error) VALUES ('old', 1, {}, 5, 200, NULL)", now - 31 * 86_400)).await;

    let p = civid::housekeeping::run(&server.state, now).await;
    assert_eq!(p.refresh_tokens, 1, "the rotated, expired token: {p:?}");
    assert_eq!(p.sessions, 1, "the session ended 31 days ago: {p:?}");
    assert_eq!((p.deliveries, p.attempts), (1, 1), "the delivery finished 31 days ago: {p:?}");
    // What is left: person 1's revoked successor (until it expires),
    // person 2's live token and session, the recent and pending deliveries.
    assert_eq!(count(&server, "SELECT COUNT(*) FROM refresh_tokens").await, 2);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM sso_sessions").await, 1);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM logout_deliveries").await, 2);
    assert_eq!(refresh(&server, &live).await.status(), 200, "person 2's refresh token still works");
    // A second run finds nothing more.
    assert_eq!(civid::housekeeping::run(&server.state, now).await.total(), 0);

    // Long after any session could have lived, every expired token goes.
    let later = now + 40 * 86_400;
    exec(&server, &format!("UPDATE refresh_tokens SET expires_at = {}", now - 10)).await;
    let p = civid::housekeeping::run(&server.state, later).await;
    assert_eq!(p.refresh_tokens, 3, "{p:?}");
    server.stop().await;
}
