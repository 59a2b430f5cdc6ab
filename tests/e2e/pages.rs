//! What a person sees: sign-in and consent pages in both languages, CSRF
//! protection, no account enumeration, `prompt` and `max_age`, consent
//! remembered per portal.
use crate::harness::{TestServer, browser, hidden, location, query_param};
use crate::steps::{base_of, sign_in};

fn authorize_url(server: &TestServer, client: &str, redirect: &str, extra: &str) -> String {
    let verifier = "a".repeat(43);
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    format!(
        "{}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20profile&state=st&nonce=no\
         &code_challenge={challenge}&code_challenge_method=S256{extra}",
        server.issuer("test"),
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    )
}

/// Portal A's authorization request from a browser without a session,
/// answered with the sign-in page itself.
async fn sign_in_page(b: &reqwest::Client, server: &TestServer) -> String {
    let resp =
        b.get(authorize_url(server, "portal-a", "https://a.example.test/cb", "")).send().await.expect("authorize");
    assert_eq!(resp.status(), 200, "the sign-in page");
    resp.text().await.expect("html")
}

#[tokio::test]
async fn sign_in_page_in_chinese_by_default_and_english_on_request() {
    let server = TestServer::start().await;
    let b = browser();
    // The authorization request answers with the sign-in page itself.
    let page =
        b.get(authorize_url(&server, "portal-a", "https://a.example.test/cb", "")).send().await.expect("authorize");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let csp = page.headers()["content-security-policy"].to_str().unwrap_or_default().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains("lang=\"zh-CN\"") && html.contains("登录") && html.contains("门户甲"), "{html}");

    let resp = b
        .get(authorize_url(&server, "portal-a", "https://a.example.test/cb", "&ui_locales=en"))
        .send()
        .await
        .expect("authorize");
    let html = resp.text().await.expect("html");
    assert!(html.contains("lang=\"en\"") && html.contains("Portal A"), "{html}");
    // The same transaction's page at its own address keeps the language.
    let again = format!("{}/realms/test/login?tx={}", server.url, hidden(&html, "tx"));
    let html = b.get(&again).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("lang=\"en\"") && html.contains("Portal A"), "{html}");

    // Accept-Language alone also chooses English.
    let html = b
        .get(authorize_url(&server, "portal-a", "https://a.example.test/cb", ""))
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("lang=\"en\""));

    let page = reqwest::get(format!("{}/realms/nope/authorize?client_id=x", server.url)).await.expect("unknown realm");
    assert_eq!(page.status(), 404);
    assert!(page.text().await.expect("html").contains("<html"), "a page, not JSON");
    server.stop().await;
}

#[tokio::test]
async fn login_form_needs_its_csrf_token_and_does_not_reveal_accounts() {
    let server = TestServer::start().await;
    server.user("test", "chenjing", "correct horse battery").await;
    let b = browser();
    let html = sign_in_page(&b, &server).await;
    let tx = hidden(&html, "tx");
    let post = |csrf: String, id: &str, pw: &str| {
        let form = [("csrf", csrf), ("tx", tx.clone()), ("identifier", id.to_string()), ("password", pw.to_string())];
        b.post(format!("{}/realms/test/login", server.url)).form(&form).send()
    };
    let forged = post("forged".into(), "chenjing", "correct horse battery").await.expect("post");
    assert_eq!(forged.status(), 403, "a form without its CSRF token is refused");
    // Another browser cannot use this browser's transaction.
    let other = browser();
    let resp = other
        .post(format!("{}/realms/test/login", server.url))
        .form(&[
            ("csrf", hidden(&html, "csrf")),
            ("tx", tx.clone()),
            ("identifier", "chenjing".into()),
            ("password", "correct horse battery".into()),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);

    let wrong_pw = post(hidden(&html, "csrf"), "chenjing", "wrong password").await.expect("post");
    assert_eq!(wrong_pw.status(), 200);
    let a = wrong_pw.text().await.expect("html");
    let unknown = post(hidden(&html, "csrf"), "nobody-here", "wrong password").await.expect("post");
    let b_html = unknown.text().await.expect("html");
    let alert = |h: &str| {
        h.split("role=\"alert\"").nth(1).and_then(|s| s.split("</div>").next()).unwrap_or_default().to_string()
    };
    assert!(!alert(&a).is_empty());
    assert_eq!(alert(&a), alert(&b_html), "the same words whether or not the account exists");

    let ok = post(hidden(&html, "csrf"), "chenjing@example.cn", "correct horse battery").await.expect("post");
    assert_eq!(ok.status(), 303);
    let cookie = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("civid-test="));
    let cookie = cookie.expect("session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");

    let events = civid::store::audit::list(&server.state.db, "test", Some("signin.password"), 10).await.expect("audit");
    assert_eq!(events.iter().filter(|e| e.outcome == "failure").count(), 2);
    assert_eq!(events.iter().filter(|e| e.outcome == "success").count(), 1);
    assert!(events.iter().all(|e| !e.detail.contains("wrong password")), "no secrets in the audit log");
    server.stop().await;
}

#[tokio::test]
async fn consent_is_remembered_and_prompts_force_what_they_name() {
    let server = TestServer::start().await;
    server.user("test", "liuyang", "correct horse battery").await;
    let b = browser();
    let first = sign_in(
        &b,
        &authorize_url(&server, "portal-a", "https://a.example.test/cb", ""),
        "liuyang",
        "correct horse battery",
    )
    .await;
    assert!(query_param(&first, "code").is_some());

    // Consent was given: the next request goes straight back with a code.
    let resp =
        b.get(authorize_url(&server, "portal-a", "https://a.example.test/cb", "")).send().await.expect("authorize");
    assert!(location(&resp).starts_with("https://a.example.test/cb?code="), "{}", location(&resp));

    // prompt=consent asks again; prompt=login asks for the password again.
    let resp = b
        .get(authorize_url(&server, "portal-a", "https://a.example.test/cb", "&prompt=consent"))
        .send()
        .await
        .expect("authorize");
    assert!(location(&resp).contains("/consent?tx="), "{}", location(&resp));
    let resp = b
        .get(authorize_url(&server, "portal-a", "https://a.example.test/cb", "&prompt=login"))
        .send()
        .await
        .expect("authorize");
    assert!(location(&resp).contains("/login?tx="), "{}", location(&resp));
    // max_age=0 also demands a fresh sign-in, and the new auth_time satisfies it.
    let url = authorize_url(&server, "portal-a", "https://a.example.test/cb", "&max_age=0");
    let resp = b.get(&url).send().await.expect("authorize");
    assert!(location(&resp).contains("/login?tx="));
    let back = sign_in(&b, &url, "liuyang", "correct horse battery").await;
    assert!(back.starts_with("https://a.example.test/cb?code="), "{back}");

    // Denying consent sends access_denied back to the portal with state and iss.
    let b2 = browser();
    server.user("test", "zhaolei", "correct horse battery").await;
    let html = sign_in_page(&b2, &server).await;
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "zhaolei".into()),
        ("password", "correct horse battery".into()),
    ];
    let resp = b2.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    let consent_path = location(&resp);
    let denied = crate::steps::consent(&b2, &base_of(&server.url), &consent_path, false).await;
    assert_eq!(query_param(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&denied, "state").as_deref(), Some("st"));
    assert_eq!(query_param(&denied, "iss"), Some(server.issuer("test")));
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    assert_eq!(reqwest::get(format!("{}/healthz", server.url)).await.expect("healthz").status(), 200);
    assert_eq!(reqwest::get(format!("{}/readyz", server.url)).await.expect("readyz").status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_say_when_to_retry() {
    let server = TestServer::start().await;
    server.user("test", "lockme", "correct horse battery").await;
    for who in ["lockme", "no-such-person"] {
        let b = browser();
        let html = sign_in_page(&b, &server).await;
        let form = |pw: &str| {
            [
                ("csrf", hidden(&html, "csrf")),
                ("tx", hidden(&html, "tx")),
                ("identifier", who.to_string()),
                ("password", pw.to_string()),
            ]
        };
        let url = format!("{}/realms/test/login", server.url);
        for i in 1..=4 {
            let r = b.post(&url).form(&form("wrong password")).send().await.expect("post");
            assert_eq!(r.status(), 200, "failure {i} of {who} is not yet a lock");
        }
        let r = b.post(&url).form(&form("wrong password")).send().await.expect("post");
        assert_eq!(r.status(), 429, "the fifth failure locks {who}");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap_or_default().parse().expect("seconds");
        assert!((1..=60).contains(&retry));
        let text = r.text().await.expect("html");
        assert!(text.contains("秒后再试"), "the citizen is told when to try again");
        // Locked means locked, even with the right password.
        let r = b.post(&url).form(&form("correct horse battery")).send().await.expect("post");
        assert_eq!(r.status(), 429, "{who} stays locked");
    }
    server.stop().await;
}
