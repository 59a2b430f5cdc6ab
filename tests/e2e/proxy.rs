//! Behind a reverse proxy: the client address that rate limits and the audit
//! log use comes from `X-Forwarded-For` only when the peer is a trusted
//! proxy; the issuer never comes from request headers.
use crate::harness::{TestServer, browser, hidden, location};

/// Issues a client_credentials token with the given extra headers; returns
/// the address the audit log recorded for it.
async fn audited_ip(server: &TestServer, headers: &[(&str, &str)]) -> Option<String> {
    let mut req = reqwest::Client::new()
        .post(format!("{}/token", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials")]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("token");
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    let entries = civid::store::audit::list(&server.state.db, "test", Some("token.issued"), 1000).await.expect("list");
    let newest = entries.iter().max_by_key(|e| e.id).expect("an entry");
    newest.ip.clone()
}

/// One failed password sign-in with the given extra headers.
async fn failed_sign_in(server: &TestServer, headers: &[(&str, &str)]) {
    let verifier = "a".repeat(43);
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let auth = format!(
        "{}/authorize?response_type=code&client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb\
         &scope=openid&state=st&nonce=no&code_challenge={challenge}&code_challenge_method=S256",
        server.issuer("test")
    );
    let b = browser();
    // Answered with the sign-in page.
    let html = b.get(&auth).send().await.expect("authorize").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "nobody-here".to_string()),
        ("password", "wrong password".to_string()),
    ];
    let mut req = b.post(format!("{}/realms/test/login", server.url)).form(&form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("post");
    assert_eq!(r.status(), 200, "a failed sign-in shows the page again");
}

/// Whether sign-in failures are being counted against `ip`.
async fn counted(server: &TestServer, ip: &str) -> bool {
    server.state.eph.ttl(&format!("rl:signin:ip:test:{ip}")).await.expect("ttl").is_some()
}

const SPOOF: &[(&str, &str)] =
    &[("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=198.51.100.9"), ("x-real-ip", "192.0.2.5")];

#[tokio::test]
async fn forwarded_headers_are_ignored_without_trusted_proxies() {
    let server = TestServer::start().await;
    assert_eq!(audited_ip(&server, SPOOF).await.as_deref(), Some("127.0.0.1"));
    failed_sign_in(&server, SPOOF).await;
    assert!(counted(&server, "127.0.0.1").await, "the failure counts against the peer");
    assert!(!counted(&server, "203.0.113.7").await, "not against the address it claimed");
    server.stop().await;
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let server = TestServer::start_configured(|s| {
        s.trusted_proxies = vec!["10.0.0.0/8".parse().expect("cidr"), "::1".parse().expect("cidr")];
    })
    .await;
    assert_eq!(audited_ip(&server, SPOOF).await.as_deref(), Some("127.0.0.1"));
    failed_sign_in(&server, SPOOF).await;
    assert!(counted(&server, "127.0.0.1").await);
    assert!(!counted(&server, "203.0.113.7").await);
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let server = TestServer::start_configured(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    // The client sent its own X-Forwarded-For; the proxy appended the
    // address it saw: the rightmost untrusted entry is the client.
    let chain = [("x-forwarded-for", "1.1.1.1, 203.0.113.7")];
    assert_eq!(audited_ip(&server, &chain).await.as_deref(), Some("203.0.113.7"));
    failed_sign_in(&server, &chain).await;
    assert!(counted(&server, "203.0.113.7").await, "the failure counts against the client");
    assert!(!counted(&server, "127.0.0.1").await && !counted(&server, "1.1.1.1").await);
    // Only the configured header is read (x-forwarded-for by default).
    assert_eq!(audited_ip(&server, &[("forwarded", "for=198.51.100.9")]).await.as_deref(), Some("127.0.0.1"));
    // Malformed: the peer.
    assert_eq!(
        audited_ip(&server, &[("x-forwarded-for", "203.0.113.7, not-an-ip")]).await.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(audited_ip(&server, &[]).await.as_deref(), Some("127.0.0.1"));
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_may_speak_rfc_7239() {
    let server = TestServer::start_configured(|s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        s.forwarded_header = civid::proxy::ForwardedHeader::Forwarded;
    })
    .await;
    let fwd = [("forwarded", r#"for=192.0.2.1, for="[2001:db8::7]:4711";proto=https"#), ("x-forwarded-for", "1.1.1.1")];
    assert_eq!(audited_ip(&server, &fwd).await.as_deref(), Some("2001:db8::7"));
    server.stop().await;
}

#[tokio::test]
async fn the_issuer_never_comes_from_request_headers() {
    let server = TestServer::start_configured(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let doc: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/.well-known/openid-configuration", server.issuer("test")))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "host=evil.example;proto=https")
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["issuer"], server.issuer("test"));
    let text = doc.to_string();
    assert!(!text.contains("evil.example"), "{text}");
    // Redirects to civid's own pages are relative or on public_url.
    let verifier = "a".repeat(43);
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let resp = browser()
        .get(format!(
            "{}/authorize?response_type=code&client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb\
             &scope=openid&state=st&nonce=no&code_challenge={challenge}&code_challenge_method=S256",
            server.issuer("test")
        ))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .expect("authorize");
    assert!(!location(&resp).contains("evil.example"));
    server.stop().await;
}
