//! RP-Initiated Logout 1.0 and Front-Channel Logout 1.0, driven by the
//! `openidconnect` crate as the portals' library: its discovery finds the
//! `end_session_endpoint`, its `LogoutRequest` builds the logout URL.
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreTokenResponse};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, CsrfToken, EndSessionUrl, IssuerUrl, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
};

use crate::harness::*;
use crate::steps::sign_in;

const PW: &str = "correct horse battery";
const A_CB: &str = "https://a.example.test/cb";
const A_BYE: &str = "https://a.example.test/bye";
const B_CB: &str = "https://b.example.test/cb";

async fn end_session_url(server: &TestServer, realm: &str) -> EndSessionUrl {
    let meta =
        ProviderMetadataWithLogout::discover_async(IssuerUrl::new(server.issuer(realm)).expect("issuer"), &http())
            .await
            .expect("discovery with logout metadata");
    meta.additional_metadata().end_session_endpoint.clone().expect("end_session_endpoint advertised")
}

/// Signs in (or rides the SSO session) through `rp` and redeems the code.
async fn tokens(rp: &Oidc, b: &reqwest::Client, cb: &str, who: &str) -> CoreTokenResponse {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(b, url.as_str(), who, PW).await;
    assert!(callback.starts_with(&format!("{cb}?")), "{callback}");
    rp.exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange")
}

/// A `prompt=none` request of `rp`: the error it gets back, if any.
async fn silent_error(rp: &Oidc, b: &reqwest::Client) -> Option<String> {
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .add_prompt(CoreAuthPrompt::None)
        .url();
    let resp = b.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(resp.status(), 303);
    query_param(&location(&resp), "error")
}

async fn audited(server: &TestServer, realm: &str, kind: &str) -> Vec<serde_json::Value> {
    civid::store::audit::list(&server.state.db, realm, Some(kind), 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| serde_json::json!({ "outcome": e.outcome, "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or_default(), "client": e.client_id }))
        .collect()
}

async fn portals(server: &TestServer) -> (Oidc, Oidc) {
    let a = relying_party(server, "test", "portal-a", Some("secret-a"), A_CB).await;
    let b =
        relying_party(server, "test", "portal-b", Some("secret-b"), B_CB).await.set_auth_type(AuthType::RequestBody);
    (a, b)
}

#[tokio::test]
async fn discovery_advertises_logout() {
    let server = TestServer::start().await;
    let doc: serde_json::Value = browser()
        .get(format!("{}/.well-known/openid-configuration", server.issuer("test")))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["end_session_endpoint"], format!("{}/logout", server.issuer("test")));
    assert_eq!(doc["frontchannel_logout_supported"], true);
    assert_eq!(doc["frontchannel_logout_session_supported"], true);
    server.stop().await;
}

#[tokio::test]
async fn logout_with_own_hint_ends_sso_for_every_portal_and_returns_to_the_portal() {
    let server = TestServer::start().await;
    server.user("test", "lo1", PW).await;
    let (rp_a, rp_b) = portals(&server).await;
    let b = browser();
    let ta = tokens(&rp_a, &b, A_CB, "lo1").await;
    let tb = tokens(&rp_b, &b, B_CB, "lo1").await;
    let id_a = ta.extra_fields().id_token().expect("id token").clone();
    assert_eq!(silent_error(&rp_a, &b).await, None, "signed in before");

    let url = LogoutRequest::from(end_session_url(&server, "test").await)
        .set_id_token_hint(&id_a)
        .set_client_id(ClientId::new("portal-a".into()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(A_BYE.into()).expect("uri"))
        .set_state(CsrfToken::new("st-1".into()))
        .http_get_url();
    let resp = b.get(url.as_str()).send().await.expect("logout");
    // No confirmation with the session's own hint; portal B asked for
    // front-channel logout, so the signed-out page loads it first and then
    // continues to portal A's registered page.
    assert_eq!(resp.status(), 200);
    let cookies: Vec<String> =
        resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    assert!(cookies.iter().any(|c| c.starts_with("civid-test=;") && c.contains("Max-Age=0")), "{cookies:?}");
    let html = resp.text().await.expect("html").replace("&#x2f;", "/");
    assert!(html.contains(&format!("id=\"continue\" class=\"btn btn-primary\" href=\"{A_BYE}?state=st-1\"")), "{html}");
    assert!(html.contains("src=\"https://b.example.test/fc?"), "{html}");

    assert_eq!(silent_error(&rp_a, &b).await.as_deref(), Some("login_required"));
    assert_eq!(silent_error(&rp_b, &b).await.as_deref(), Some("login_required"));
    // The session's refresh tokens died with it.
    let rt = ta.refresh_token().expect("refresh token");
    assert!(rp_a.exchange_refresh_token(rt).expect("refresh").request_async(&http()).await.is_err());
    let rt = tb.refresh_token().expect("refresh token");
    assert!(rp_b.exchange_refresh_token(rt).expect("refresh").request_async(&http()).await.is_err());

    let logouts = audited(&server, "test", "logout").await;
    let ok = logouts.iter().find(|e| e["outcome"] == "success").expect("audited");
    assert_eq!(ok["client"], "portal-a");
    assert_eq!(ok["detail"]["how"], "id_token_hint");
    let portals = ok["detail"]["portals"].as_array().expect("portals");
    assert!(portals.contains(&"portal-a".into()) && portals.contains(&"portal-b".into()), "{ok}");

    // Replayed: nothing left to end, the same registered page, no error.
    let resp = b.get(url.as_str()).send().await.expect("replay");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("{A_BYE}?state=st-1"));
    server.stop().await;
}

#[tokio::test]
async fn logout_without_hint_asks_first_and_needs_the_form_token() {
    let server = TestServer::start().await;
    server.user("test", "lo2", PW).await;
    let (rp_a, _) = portals(&server).await;
    let b = browser();
    tokens(&rp_a, &b, A_CB, "lo2").await;
    let base = server.issuer("test");
    let url = format!("{base}/logout?client_id=portal-a&post_logout_redirect_uri={}&state=s2", urlencode(A_BYE));
    let resp = b.get(&url).send().await.expect("logout");
    assert_eq!(resp.status(), 200, "a confirmation page");
    let html = resp.text().await.expect("html");
    assert!(html.contains("退出登录") && html.contains("门户甲请求让您退出登录"), "{html}");
    assert_eq!(hidden(&html, "post_logout_redirect_uri").replace("&#x2f;", "/"), A_BYE);
    assert_eq!(silent_error(&rp_a, &b).await, None, "asking signs nobody out");

    // A forged or missing form token ends nothing.
    let confirm = format!("{base}/logout/confirm");
    for csrf in ["forged", ""] {
        let resp = b
            .post(&confirm)
            .form(&[("csrf", csrf), ("client_id", "portal-a"), ("post_logout_redirect_uri", A_BYE)])
            .send()
            .await
            .expect("confirm");
        assert_eq!(resp.status(), 403);
    }
    assert_eq!(silent_error(&rp_a, &b).await, None, "still signed in");

    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("client_id", "portal-a".to_string()),
        ("post_logout_redirect_uri", A_BYE.to_string()),
        ("state", "s2".to_string()),
    ];
    let resp = b.post(&confirm).form(&form).send().await.expect("confirm");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("{A_BYE}?state=s2"));
    assert_eq!(silent_error(&rp_a, &b).await.as_deref(), Some("login_required"));
    // The confirmation replayed: nothing left to end.
    let resp = b.post(&confirm).form(&form).send().await.expect("replay");
    assert_eq!(resp.status(), 303);

    // Without any portal named: the signed-out page, in English on request.
    let resp = b.get(format!("{base}/logout?ui_locales=en")).send().await.expect("logout");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    assert!(html.contains("You have signed out"), "{html}");
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_logout_requests_change_nothing_and_never_redirect() {
    let server = TestServer::start().await;
    server.user("test", "lo3", PW).await;
    server.user("short", "lo3", PW).await;
    let (rp_a, rp_b) = portals(&server).await;
    let b = browser();
    let ta = tokens(&rp_a, &b, A_CB, "lo3").await;
    tokens(&rp_b, &b, B_CB, "lo3").await;
    let id_a = ta.extra_fields().id_token().expect("id token").to_string();
    let base = server.issuer("test");
    let bye = urlencode(A_BYE);

    // A foreign realm's ID token (valid there, signed by its keys).
    let rp_short = relying_party(&server, "short", "portal-a", Some("secret-a"), A_CB).await;
    let other = browser();
    let t_short = tokens(&rp_short, &other, A_CB, "lo3").await;
    let foreign = t_short.extra_fields().id_token().expect("id token").to_string();

    // The hint with its signature altered.
    let mut parts: Vec<String> = id_a.split('.').map(str::to_string).collect();
    let sig = parts[2].clone();
    parts[2] = format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    let forged = parts.join(".");

    let cases = [
        (format!("id_token_hint={forged}&post_logout_redirect_uri={bye}"), "forged hint"),
        (format!("id_token_hint={foreign}&post_logout_redirect_uri={bye}"), "foreign realm's hint"),
        (format!("id_token_hint={id_a}&client_id=portal-b&post_logout_redirect_uri={bye}"), "hint not for client_id"),
        ("id_token_hint=not.a.jwt".to_string(), "garbage hint"),
        (
            format!("client_id=portal-a&post_logout_redirect_uri={}", urlencode("https://a.example.test/bye/")),
            "near miss",
        ),
        (format!("client_id=portal-a&post_logout_redirect_uri={}", urlencode("https://evil.example/")), "foreign URI"),
        (format!("post_logout_redirect_uri={bye}"), "no portal named"),
        (format!("client_id=nobody&post_logout_redirect_uri={bye}"), "unknown portal"),
        (format!("client_id=portal-b&post_logout_redirect_uri={bye}"), "another portal's URI"),
        ("client_id=portal-a&client_id=portal-b".to_string(), "repeated parameter"),
    ];
    for (q, what) in &cases {
        let resp = b.get(format!("{base}/logout?{q}")).send().await.expect("logout");
        assert_eq!(resp.status(), 400, "{what}");
        assert!(resp.headers().get("location").is_none(), "{what}: no redirect");
        let html = resp.text().await.expect("html");
        assert!(html.contains("退出") && !html.contains("evil.example"), "{what}: {html}");
        assert_eq!(silent_error(&rp_a, &b).await, None, "{what}: still signed in");
    }
    let refused = audited(&server, "test", "logout").await;
    assert_eq!(refused.iter().filter(|e| e["outcome"] == "failure").count(), cases.len(), "{refused:?}");
    assert!(refused.iter().any(|e| e["detail"]["reason"] == "invalid_id_token_hint"));
    assert!(refused.iter().any(|e| e["detail"]["reason"] == "unregistered_post_logout_redirect_uri"));

    // A valid hint of an earlier session of the same person: asked first.
    let resp = b.get(format!("{base}/logout?id_token_hint={id_a}")).send().await.expect("logout");
    assert_eq!(resp.status(), 200, "own hint: signed out (the page loads portal B's front-channel page)");
    assert_eq!(silent_error(&rp_a, &b).await.as_deref(), Some("login_required"));
    tokens(&rp_a, &b, A_CB, "lo3").await;
    let resp = b.get(format!("{base}/logout?id_token_hint={id_a}")).send().await.expect("logout");
    assert_eq!(resp.status(), 200, "an old session's hint does not sign out the new one without asking");
    assert_eq!(silent_error(&rp_a, &b).await, None);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_hint_is_still_accepted() {
    let server = TestServer::start().await;
    server.user("short", "lo4", PW).await;
    let rp = relying_party(&server, "short", "portal-a", Some("secret-a"), A_CB).await;
    let b = browser();
    let t = tokens(&rp, &b, A_CB, "lo4").await;
    let id = t.extra_fields().id_token().expect("id token").clone();
    // The short realm's ID tokens live 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let url = LogoutRequest::from(end_session_url(&server, "short").await)
        .set_id_token_hint(&id)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(A_BYE.into()).expect("uri"))
        .http_get_url();
    let resp = b.get(url.as_str()).send().await.expect("logout");
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap_or_default());
    assert_eq!(location(&resp), A_BYE);
    assert_eq!(silent_error(&rp, &b).await.as_deref(), Some("login_required"));
    server.stop().await;
}

#[tokio::test]
async fn front_channel_pages_are_loaded_with_iss_and_sid() {
    let server = TestServer::start().await;
    server.user("test", "lo5", PW).await;
    let (rp_a, rp_b) = portals(&server).await;
    let b = browser();
    tokens(&rp_a, &b, A_CB, "lo5").await;
    let tb = tokens(&rp_b, &b, B_CB, "lo5").await;
    let claims = decode_claims(&tb.extra_fields().id_token().expect("id token").to_string());
    let sid = claims["sid"].as_str().expect("sid in the ID token").to_string();
    let id_a = tokens(&rp_a, &b, A_CB, "lo5").await.extra_fields().id_token().expect("id token").to_string();

    let base = server.issuer("test");
    let resp = b
        .get(format!("{base}/logout?id_token_hint={id_a}&post_logout_redirect_uri={}&state=s5", urlencode(A_BYE)))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200, "the front-channel page first");
    let csp =
        resp.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(csp.contains("frame-src https://b.example.test;") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = resp.text().await.expect("html").replace("&#x2f;", "/").replace("&amp;", "&");
    let iss = urlencode(&base);
    assert!(html.contains(&format!("src=\"https://b.example.test/fc?iss={iss}&sid={sid}\"")), "{html}");
    assert!(html.contains(&format!("href=\"{A_BYE}?state=s5\"")), "continue link: {html}");
    assert!(html.contains("<script src=\"/static/logout.js\" defer></script>"));
    assert!(html.contains("http-equiv=\"refresh\""), "continues without script too");
    assert_eq!(silent_error(&rp_b, &b).await.as_deref(), Some("login_required"));
    let js = b.get(format!("{}/static/logout.js", server.url)).send().await.expect("script");
    assert_eq!(js.status(), 200);
    server.stop().await;
}

fn decode_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

/// Two portals signed in to at the same moment from one session (two
/// tabs, two nodes: each request holds its own copy of the session) are
/// both recorded, so both are told at logout.
#[tokio::test]
async fn portals_added_from_stale_copies_of_a_session_are_both_recorded() {
    let server = TestServer::start().await;
    let uid = server.user("test", "lo6", PW).await;
    let realm = server.state.realms.get("test").expect("realm");
    let sid = civid::authn::session::new_id().expect("sid");
    let (cookie, s) = civid::authn::session::create(&server.state, &realm, sid, &uid, vec!["pwd".into()], "L2")
        .await
        .expect("session");
    let th = civid::crypto::random::sha256_b64(cookie.as_bytes());
    let (mut one, mut two) = (s.clone(), s.clone());
    civid::authn::session::add_client(&server.state, &realm, &th, &mut one, "portal-a").await.expect("add a");
    civid::authn::session::add_client(&server.state, &realm, &th, &mut two, "portal-b").await.expect("add b");
    let row = civid::store::sessions::get(&server.state.db, "test", &s.id).await.expect("db").expect("row");
    let clients: Vec<String> = serde_json::from_str(&row.clients).expect("json");
    assert_eq!(clients, vec!["portal-a".to_string(), "portal-b".to_string()]);
    assert_eq!(two.clients, clients, "the second copy learned of the first portal");
    // Concurrently as well.
    let (mut three, mut four) = (s.clone(), s.clone());
    let (x, y) = tokio::join!(
        civid::authn::session::add_client(&server.state, &realm, &th, &mut three, "portal-c"),
        civid::authn::session::add_client(&server.state, &realm, &th, &mut four, "portal-mfa"),
    );
    x.expect("add c");
    y.expect("add mfa");
    let row = civid::store::sessions::get(&server.state.db, "test", &s.id).await.expect("db").expect("row");
    let clients: Vec<String> = serde_json::from_str(&row.clients).expect("json");
    assert_eq!(clients.len(), 4, "{clients:?}");
    server.stop().await;
}
