//! The admin API: only on the admin listener, only with an admin-realm
//! token for its audience, only with the right role in the right realm;
//! every change audited; the OpenAPI document matches the routes.
use serde_json::{Value, json};

use crate::harness::{TestServer, browser, hidden, location, query_param};
use crate::steps::sign_in;

fn totp_code(secret: &str, ahead: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    civid::authn::totp::code_at(secret, now + ahead).expect("code")
}

/// Adds an authenticator app to an administrator; returns its secret.
pub async fn enrol_totp(server: &TestServer, username: &str) -> String {
    use civid::account::identifiers::Identifier;
    let s = &server.state;
    let index = Identifier::username(username).expect("username").blind_index(&s.secrets.sealer);
    let user =
        civid::store::users::find_by_identifier(&s.db, "admin", "username", &index).await.expect("db").expect("user");
    server.enrol_totp("admin", &user.id).await
}

/// Signs an administrator in through the admin realm's native client and
/// returns an access token for the admin API.
pub async fn admin_token(server: &TestServer, username: &str, password: &str) -> String {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let url = format!(
        "{}/authorize?response_type=code&client_id=admin-cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A53123%2Fcallback\
         &scope=openid&code_challenge={challenge}&code_challenge_method=S256&resource=urn%3Acivid%3Aadmin-api",
        server.issuer("admin")
    );
    // Administrators need a second factor: an authenticator app, enrolled
    // here as a person would in the account centre.
    let secret = enrol_totp(server, username).await;
    let b = browser();
    let second = sign_in(&b, &url, username, password).await;
    assert!(second.starts_with("/realms/admin/login/second?tx="), "a second step for administrators: {second}");
    let page = b.get(format!("{}{second}", server.url)).send().await.expect("second").text().await.expect("html");
    let form = [("csrf", hidden(&page, "csrf")), ("tx", hidden(&page, "tx")), ("code", totp_code(&secret, 30))];
    let resp = b.post(format!("{}/realms/admin/login/second", server.url)).form(&form).send().await.expect("code");
    assert_eq!(resp.status(), 303);
    let callback = location(&resp);
    let code = query_param(&callback, "code").expect("code");
    let body: Value = reqwest::Client::new()
        .post(format!("{}/token", server.issuer("admin")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "admin-cli"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
            ("redirect_uri", "http://127.0.0.1:53123/callback"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    body["access_token"].as_str().expect("access token").to_string()
}

/// An administrator with `roles` (role, realm).
pub(crate) async fn admin_with(server: &TestServer, username: &str, roles: &[(&str, &str)]) -> String {
    let id = server.user("admin", username, "admin password 1").await;
    for (role, realm) in roles {
        civid::store::admins::grant(&server.state.db, &id, role, realm).await.expect("grant");
    }
    admin_token(server, username, "admin password 1").await
}

pub(crate) fn api(server: &TestServer, path: &str) -> String {
    format!("{}/admin/api/v1/realms{path}", server.admin_url)
}

pub(crate) async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<&str>,
) -> reqwest::Response {
    let c = reqwest::Client::new();
    let mut r = match method {
        "get" => c.get(url),
        "put" => c.put(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.expect("admin call")
}

#[tokio::test]
async fn admin_api_is_not_on_the_public_listener() {
    let server = TestServer::start().await;
    for path in ["/admin/api/v1/realms", "/admin/api/openapi.json", "/metrics"] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.expect("get");
        assert_eq!(r.status(), 404, "{path} must not be public");
    }
    let r = reqwest::get(format!("{}/admin/api/openapi.json", server.admin_url)).await.expect("get");
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn openapi_document_validates_and_every_operation_is_routed_and_guarded() {
    let server = TestServer::start().await;
    let user = server.user("test", "walker", "correct horse battery").await;
    let enterprise = crate::enterprise::setup(&server).await;
    let boss = admin_with(&server, "boss", &[("realm-admin", "*"), ("pii-reader", "*")]).await;
    let outsider = admin_with(&server, "outsider", &[("realm-admin", "other")]).await;
    // A token of the right role but the wrong realm: an access token of realm "test".
    let foreign: Value = reqwest::Client::new()
        .post(format!("{}/token", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let foreign = foreign["access_token"].as_str().expect("at").to_string();

    let doc: Value = reqwest::get(format!("{}/admin/api/openapi.json", server.admin_url))
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    let parsed: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).expect("a valid OpenAPI 3.0 document");
    assert!(parsed.paths.paths.len() >= 10);

    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _op) in item.as_object().expect("item") {
            let concrete = path
                .replace("{realm}", "test")
                .replace("{client_id}", "portal-a")
                .replace("{id}", &user)
                .replace("{enterprise}", &enterprise.index);
            let query = if path.ends_with("/users") { "?username=walker" } else { "" };
            let url = format!("{}{concrete}{query}", server.admin_url);
            let body = match (method.as_str(), path.ends_with("/clients")) {
                ("post", true) => {
                    Some(json!({ "client_id": "walked", "settings": { "redirect_uris": ["https://w.example/cb"] } }))
                }
                ("post", _) if path.ends_with("/in-person") => {
                    Some(json!({ "id_number": "110105194912310089", "name": "步行者" }))
                }
                ("put", _) | ("post", _) => Some(json!({})),
                _ => None,
            };
            let anon = call(method, &url, None, body.clone(), None).await;
            assert_eq!(anon.status(), 401, "{method} {path} without a token");
            assert_eq!(anon.headers()["content-type"], "application/problem+json");
            let wrong_realm = call(method, &url, Some(&foreign), body.clone(), None).await;
            assert_eq!(wrong_realm.status(), 401, "{method} {path} with a token of another realm");
            if path != "/admin/api/v1/realms" {
                let other = call(method, &url, Some(&outsider), body.clone(), None).await;
                assert_eq!(other.status(), 403, "{method} {path} with a role in another realm");
            }
            // With the right role the route exists and answers (a PUT without
            // If-Match is refused with 428, which still proves the route).
            let good = call(method, &url, Some(&boss), body, None).await;
            let status = good.status().as_u16();
            assert!(
                [200, 201, 428].contains(&status),
                "{method} {path} as realm-admin: {status} {}",
                good.text().await.unwrap_or_default()
            );
            walked += 1;
        }
    }
    assert_eq!(walked, civid::http::openapi::OPERATIONS.len());
    server.stop().await;
}

#[tokio::test]
async fn roles_decide_per_realm_and_changes_are_audited_with_before_and_after() {
    let server = TestServer::start().await;
    let person = server.user("test", "citizen1", "correct horse battery").await;
    let helpdesk = admin_with(&server, "desk", &[("helpdesk", "test")]).await;
    let auditor = admin_with(&server, "audi", &[("auditor", "*")]).await;
    let admin = admin_with(&server, "root", &[("realm-admin", "test")]).await;

    // Helpdesk finds people by identifier, masked; cannot see them unmasked.
    let r = call("get", &api(&server, "/test/users?email=citizen1%40example.cn"), Some(&helpdesk), None, None).await;
    assert_eq!(r.status(), 200);
    let found: Value = r.json().await.expect("json");
    assert_eq!(found["items"][0]["id"], person.as_str());
    assert_eq!(found["items"][0]["email"], "c***@example.cn");
    let r =
        call("get", &api(&server, &format!("/test/users/{person}?unmasked=true")), Some(&helpdesk), None, None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(call("get", &api(&server, "/other/users?username=x"), Some(&helpdesk), None, None).await.status(), 403);
    // Auditor reads, never writes.
    assert_eq!(call("get", &api(&server, "/test/audit"), Some(&auditor), None, None).await.status(), 200);
    assert_eq!(
        call("post", &api(&server, "/test/clients/portal-a/secret"), Some(&auditor), None, None).await.status(),
        403
    );

    // A client change needs the ETag it read; a stale one is refused.
    let r = call("get", &api(&server, "/test/clients/portal-b"), Some(&admin), None, None).await;
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    let mut client: Value = r.json().await.expect("json");
    client["settings"]["redirect_uris"] = json!(["https://b.example.test/cb", "https://b.example.test/cb2"]);
    let body = json!({ "settings": client["settings"], "enabled": true });
    let r = call("put", &api(&server, "/test/clients/portal-b"), Some(&admin), Some(body.clone()), Some(&etag)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = call("put", &api(&server, "/test/clients/portal-b"), Some(&admin), Some(body), Some(&etag)).await;
    assert_eq!(r.status(), 412, "the ETag is stale now");
    let audit: Value = call("get", &api(&server, "/test/audit?kind=admin.client.updated"), Some(&auditor), None, None)
        .await
        .json()
        .await
        .expect("json");
    let entry = &audit["items"][0];
    assert!(entry["actor"].is_string());
    assert_eq!(entry["detail"]["before"]["settings"]["redirect_uris"], json!(["https://b.example.test/cb"]));
    assert_eq!(entry["detail"]["after"]["settings"]["redirect_uris"].as_array().map(|a| a.len()), Some(2));

    // The realm file is still the truth: a dry run shows the drift.
    let env = crate::harness::node_env(&server.settings.database_url, Some(&server.settings.redis_key_prefix));
    let (ok, out, err) = crate::harness::civid(
        &["realm", "apply", crate::harness::realms_dir().to_str().unwrap_or_default(), "--dry-run"],
        &env,
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("~ client test/portal-b: redirect_uris"), "{out}");

    // Disabling a person ends their sessions and refuses their sign-in.
    let r = call("post", &api(&server, &format!("/test/users/{person}/disable")), Some(&helpdesk), None, None).await;
    assert_eq!(r.status(), 200);
    let outcome =
        civid::authn::password::authenticate(&server.state, "test", "citizen1", "correct horse battery".into())
            .await
            .expect("authenticate");
    assert!(matches!(outcome, civid::authn::password::Outcome::Failure { .. }));
    server.stop().await;
}

#[tokio::test]
async fn statistics_and_metrics_count_what_happened() {
    let server = TestServer::start().await;
    server.user("test", "stat1", "correct horse battery").await;
    server.user("test", "stat2", "correct horse battery").await;
    let verifier = "b".repeat(43);
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let url = format!(
        "{}/authorize?response_type=code&client_id=portal-b&redirect_uri=https%3A%2F%2Fb.example.test%2Fcb&scope=openid\
         &code_challenge={challenge}&code_challenge_method=S256",
        server.issuer("test")
    );
    sign_in(&browser(), &url, "stat1", "correct horse battery").await;
    let auditor = admin_with(&server, "counter", &[("auditor", "test")]).await;
    let s: Value = call("get", &api(&server, "/test/statistics?days=7"), Some(&auditor), None, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s["accounts"]["registered"], 2);
    assert_eq!(s["sso_sessions_active"], 1);
    let signins = s["signins_per_day"].as_array().expect("array");
    assert_eq!(signins.len(), 1, "{signins:?}");
    assert_eq!(signins[0]["client"], "portal-b");
    assert_eq!(signins[0]["count"], 1);

    let m = reqwest::get(format!("{}/metrics", server.admin_url)).await.expect("metrics").text().await.expect("text");
    assert!(m.contains("civid_http_request_duration_seconds_bucket"), "{m}");
    assert!(m.contains("civid_signins_total{method=\"pwd\",outcome=\"success\",client=\"portal-b\"}"), "{m}");
    assert!(m.contains("civid_db_pool_connections"), "{m}");
    assert!(m.contains("civid_accounts{realm=\"test\"}"), "{m}");
    assert!(m.contains("civid_ephemeral_store_up 1"), "{m}");

    let r = reqwest::get(format!("{}/healthz", server.url)).await.expect("healthz");
    assert!(r.headers().get("x-request-id").is_some_and(|v| !v.is_empty()), "a request id comes back");
    server.stop().await;
}

#[tokio::test]
async fn bootstrap_runs_once() {
    let server = TestServer::start().await;
    let s = &server.state;
    civid::admin::actions::bootstrap(&s.db, &s.secrets, "first", "first admin password".into())
        .await
        .expect("bootstrap");
    let again = civid::admin::actions::bootstrap(&s.db, &s.secrets, "second", "second admin password".into()).await;
    assert!(again.is_err());
    let token = admin_token(&server, "first", "first admin password").await;
    let r = call("get", &api(&server, ""), Some(&token), None, None).await;
    let v: Value = r.json().await.expect("json");
    assert!(v["items"].as_array().is_some_and(|a| a.len() >= 4), "{v}");
    server.stop().await;
}
