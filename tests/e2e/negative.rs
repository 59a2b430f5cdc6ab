//! Negative protocol tests: what the provider refuses, and that it refuses
//! it the way the specifications say (a page, never a redirect, until the
//! client and redirect URI are trusted; OAuth error JSON with the right
//! status at the back channel), and that a refusal of a replayed code or
//! refresh token revokes what was issued before. Nothing here may answer 5xx.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use civid::crypto::keys::{Alg, SigningKey, generate_pkcs8};
use civid::crypto::{jws, random};
use openidconnect::core::{CoreAuthenticationFlow, CoreIdToken};
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, Scope, TokenResponse};
use serde_json::{Value, json};

use crate::harness::{TestServer, browser, http, location, query_param, relying_party};
use crate::steps::sign_in;

const PASSWORD: &str = "correct horse battery";
const A_CB: &str = "https://a.example.test/cb";
const B_CB: &str = "https://b.example.test/cb";
const LEGACY_CB: &str = "https://legacy.example.test/cb";
const PORTAL_A: (&str, &str) = ("portal-a", "secret-a");
const LEGACY: (&str, &str) = ("legacy", "secret-legacy");
const STATE: &str = "st-4c1d";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------- helpers

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = random::token(32).expect("rng");
    let challenge = random::sha256_b64(verifier.as_bytes());
    Pkce { verifier, challenge }
}

fn authorize_url(server: &TestServer, realm: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", server.issuer(realm))).expect("url");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// A well-formed code request with PKCE, for tests to break one piece of.
fn code_request<'a>(client_id: &'a str, redirect_uri: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile"),
        ("state", STATE),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// `params` with `name` set to `value` (or removed when `None`).
fn set<'a>(mut params: Vec<(&'a str, &'a str)>, name: &'a str, value: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    params.retain(|(k, _)| *k != name);
    if let Some(v) = value {
        params.push((name, v));
    }
    params
}

/// Signs `user` in through an authorization request and returns the code.
async fn code_for(
    server: &TestServer,
    browser: &reqwest::Client,
    realm: &str,
    client_id: &str,
    redirect_uri: &str,
    pkce: Option<&Pkce>,
    user: &str,
) -> String {
    let challenge = pkce.map(|p| p.challenge.as_str());
    let mut params = code_request(client_id, redirect_uri, challenge.unwrap_or_default());
    if challenge.is_none() {
        params = set(set(params, "code_challenge", None), "code_challenge_method", None);
    }
    let url = authorize_url(server, realm, &params);
    let callback = sign_in(browser, &url, user, PASSWORD).await;
    assert!(callback.starts_with(&format!("{redirect_uri}?")), "back to the client: {callback}");
    assert_eq!(query_param(&callback, "error"), None, "{callback}");
    query_param(&callback, "code").expect("code")
}

/// A back-channel answer.
struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

impl Reply {
    fn error(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or_default()
    }

    fn str(&self, k: &str) -> &str {
        self.body.get(k).and_then(Value::as_str).unwrap_or_default()
    }

    fn active(&self) -> Option<bool> {
        self.body.get("active").and_then(Value::as_bool)
    }

    #[track_caller]
    fn assert_error(&self, status: u16, error: &str) {
        assert_eq!((self.status, self.error()), (status, error), "{}", self.body);
        assert!(self.body.get("access_token").is_none(), "no token with an error: {}", self.body);
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let www_authenticate = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert!(status < 500, "server error {status}: {body}");
    Reply { status, www_authenticate, body }
}

/// POSTs a form to a realm's back-channel endpoint, with Basic credentials if given.
async fn post(
    server: &TestServer,
    realm: &str,
    endpoint: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Reply {
    let mut req = browser().post(format!("{}/{endpoint}", server.issuer(realm))).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    reply(req.send().await.expect("request")).await
}

async fn redeem(
    server: &TestServer,
    realm: &str,
    basic: (&str, &str),
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Reply {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    post(server, realm, "token", Some(basic), &form).await
}

async fn refresh(server: &TestServer, realm: &str, basic: (&str, &str), token: &str) -> Reply {
    post(server, realm, "token", Some(basic), &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

async fn userinfo(server: &TestServer, realm: &str, token: &str) -> Reply {
    let resp = browser().get(format!("{}/userinfo", server.issuer(realm))).bearer_auth(token).send().await;
    reply(resp.expect("userinfo")).await
}

async fn introspect(server: &TestServer, realm: &str, basic: (&str, &str), token: &str) -> Reply {
    post(server, realm, "introspect", Some(basic), &[("token", token)]).await
}

/// Signs in a new person for portal-a and redeems the code: (access, refresh).
async fn tokens_for_portal_a(server: &TestServer, user: &str) -> (String, String) {
    server.user("test", user, PASSWORD).await;
    let p = pkce();
    let code = code_for(server, &browser(), "test", "portal-a", A_CB, Some(&p), user).await;
    let tokens = redeem(server, "test", PORTAL_A, &code, A_CB, Some(p.verifier.as_str())).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.str("access_token").to_string();
    let refresh = tokens.str("refresh_token").to_string();
    assert!(!access.is_empty() && !refresh.is_empty(), "{}", tokens.body);
    (access, refresh)
}

/// An error the authorization endpoint shows as a page: no redirect at all.
async fn expect_page(browser: &reqwest::Client, url: &str, status: u16) {
    let resp = browser.get(url).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), status, "{url}");
    assert!(resp.headers().get("location").is_none(), "never a redirect: {url} -> {}", location(&resp));
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/html"), "an HTML page, got {ct}");
}

/// An error the authorization endpoint sends back to the client's redirect URI.
async fn expect_client_error(
    server: &TestServer,
    browser: &reqwest::Client,
    url: &str,
    redirect_uri: &str,
    error: &str,
    state: Option<&str>,
) {
    let resp = browser.get(url).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), 303, "{url}");
    let to = location(&resp);
    assert!(to.starts_with(&format!("{redirect_uri}?")), "to the client: {to}");
    assert_eq!(query_param(&to, "error").as_deref(), Some(error), "{to}");
    assert!(query_param(&to, "error_description").is_some_and(|d| !d.is_empty()), "{to}");
    assert_eq!(query_param(&to, "state").as_deref(), state, "{to}");
    assert_eq!(query_param(&to, "iss"), Some(server.issuer("test")), "{to}");
    assert_eq!(query_param(&to, "code"), None, "{to}");
}

fn client_key() -> SigningKey {
    let b64 = include_str!("fixtures/client_es256.pk8.b64").trim();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("fixture base64");
    SigningKey::from_pkcs8(Alg::ES256, &der).expect("fixture key")
}

fn assertion(key: &SigningKey, iss: &str, sub: &str, aud: &str, exp: i64) -> String {
    let claims = json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "exp": exp,
        "iat": now(),
        "jti": random::token(16).expect("rng"),
    });
    jws::sign_jwt(key, None, &claims).expect("sign")
}

async fn client_credentials_with(server: &TestServer, assertion: &str) -> Reply {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    post(server, "test", "token", None, &form).await
}

// ------------------------------------------------- authorization endpoint

#[tokio::test]
async fn authorize_in_an_unknown_realm_is_a_404_page() {
    let server = TestServer::start().await;
    let p = pkce();
    let url = authorize_url(&server, "nowhere", &code_request("portal-a", A_CB, &p.challenge));
    expect_page(&browser(), &url, 404).await;
    server.stop().await;
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let base = code_request("portal-a", A_CB, &p.challenge);

    let unknown = set(base.clone(), "client_id", Some("no-such-client"));
    expect_page(&b, &authorize_url(&server, "test", &unknown), 400).await;
    let unknown =
        set(set(base.clone(), "client_id", Some("no-such-client")), "redirect_uri", Some("https://evil.test/cb"));
    expect_page(&b, &authorize_url(&server, "test", &unknown), 400).await;
    expect_page(&b, &authorize_url(&server, "test", &set(base.clone(), "client_id", None)), 400).await;
    expect_page(&b, &authorize_url(&server, "test", &set(base.clone(), "redirect_uri", None)), 400).await;
    for near_miss in [
        "https://a.example.test/cb/",
        "https://a.example.test/cb?x=1",
        "https://a.example.test/cb#frag",
        "https://a.example.test/cb2",
        "https://a.example.test.evil.test/cb",
        "https://evil.test/cb",
        "http://a.example.test/cb",
        "https://A.example.test/cb",
        "https://b.example.test/cb",
        "https://a.example.test/cb/../cb",
        "https://a.example.test@evil.test/cb",
        "https://a.example.test:443/cb",
        "",
    ] {
        let params = set(base.clone(), "redirect_uri", Some(near_miss));
        expect_page(&b, &authorize_url(&server, "test", &params), 400).await;
    }
    // A repeated redirect_uri is not trusted either, even when both match.
    let mut twice = base.clone();
    twice.push(("redirect_uri", A_CB));
    expect_page(&b, &authorize_url(&server, "test", &twice), 400).await;
    // The same rules for a POSTed request.
    let resp = b.post(format!("{}/authorize", server.issuer("test"))).form(&unknown).send().await.expect("authorize");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    let bad_scope = set(base.clone(), "scope", Some("openid bogus"));
    let resp = b.post(format!("{}/authorize", server.issuer("test"))).form(&bad_scope).send().await.expect("authorize");
    assert_eq!(resp.status(), 303);
    assert_eq!(query_param(&location(&resp), "error").as_deref(), Some("invalid_scope"));
    // A client of another realm is unknown here.
    let other = set(base.clone(), "client_id", Some("jwt-client"));
    expect_page(&b, &authorize_url(&server, "other", &other), 400).await;

    // The same request with the registered URI is accepted (to the sign-in page).
    let resp = b.get(authorize_url(&server, "test", &base)).send().await.expect("authorize");
    assert!(crate::steps::login_path(resp).await.starts_with("/realms/test/login?"));
    server.stop().await;
}

#[tokio::test]
async fn native_app_loopback_port_may_vary_but_not_the_host() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    for accepted in ["http://127.0.0.1:51234/callback", "http://127.0.0.1:8080/callback", "cn.gov.example.app:/cb"] {
        let resp = b.get(authorize_url(&server, "test", &code_request("native", accepted, &p.challenge))).send().await;
        let resp = resp.expect("authorize");
        assert_eq!(resp.status(), 200, "{accepted}: the sign-in page");
        assert!(crate::steps::login_path(resp).await.starts_with("/realms/test/login?"), "{accepted}");
    }
    for refused in [
        "http://localhost:1234/callback",
        "http://127.0.0.1:1234/callback/extra",
        "http://127.0.0.1:1234/other",
        "https://127.0.0.1:1234/callback",
        "http://127.0.0.2:1234/callback",
        "cn.gov.example.app:/cb2",
        "http://127.0.0.1:51234/callback?x=1",
        "http://[::1]:1234/callback",
    ] {
        expect_page(&b, &authorize_url(&server, "test", &code_request("native", refused, &p.challenge)), 400).await;
    }
    // A public client is never exempt from PKCE.
    let no_pkce = set(
        set(code_request("native", "http://127.0.0.1:51234/callback", ""), "code_challenge", None),
        "code_challenge_method",
        None,
    );
    let url = authorize_url(&server, "test", &no_pkce);
    expect_client_error(&server, &b, &url, "http://127.0.0.1:51234/callback", "invalid_request", Some(STATE)).await;
    server.stop().await;
}

#[tokio::test]
async fn errors_after_the_redirect_uri_is_trusted_go_back_to_the_client() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let base = code_request("portal-a", A_CB, &p.challenge);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("invalid_request", set(set(base.clone(), "code_challenge", None), "code_challenge_method", None)),
        ("invalid_request", set(base.clone(), "code_challenge_method", None)),
        ("invalid_request", set(base.clone(), "code_challenge_method", Some("plain"))),
        ("invalid_request", set(base.clone(), "code_challenge", Some("too-short"))),
        ("invalid_request", set(base.clone(), "response_type", None)),
        ("unsupported_response_type", set(base.clone(), "response_type", Some("token"))),
        ("unsupported_response_type", set(base.clone(), "response_type", Some("code id_token"))),
        ("invalid_scope", set(base.clone(), "scope", Some("openid bogus"))),
        ("invalid_scope", set(base.clone(), "scope", None)),
        ("invalid_request", [base.clone(), vec![("nonce", "n1"), ("nonce", "n2")]].concat()),
        ("invalid_request", [base.clone(), vec![("scope", "openid")]].concat()),
        ("request_not_supported", set(base.clone(), "request", Some("eyJhbGciOiJub25lIn0.e30."))),
        ("request_uri_not_supported", set(base.clone(), "request_uri", Some("https://a.example.test/req"))),
        ("invalid_request", set(base.clone(), "response_mode", Some("fragment"))),
        ("invalid_request", set(base.clone(), "prompt", Some("none login"))),
        ("invalid_request", set(base.clone(), "max_age", Some("-1"))),
        ("invalid_target", set(base.clone(), "resource", Some("https://unknown.example"))),
    ];
    for (error, params) in &cases {
        expect_client_error(&server, &b, &authorize_url(&server, "test", params), A_CB, error, Some(STATE)).await;
    }
    // Without a state, none comes back.
    let url = authorize_url(&server, "test", &set(base.clone(), "response_type", Some("token")));
    let url = url.replace(&format!("&state={STATE}"), "");
    assert!(!url.contains("state="));
    expect_client_error(&server, &b, &url, A_CB, "unsupported_response_type", None).await;
    // A state that looks like parameters comes back as one opaque value.
    let sneaky = "x&iss=https://evil.test&code=stolen#frag";
    let params = set(set(base.clone(), "response_type", Some("token")), "state", Some(sneaky));
    expect_client_error(
        &server,
        &b,
        &authorize_url(&server, "test", &params),
        A_CB,
        "unsupported_response_type",
        Some(sneaky),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn legacy_client_may_omit_pkce_but_may_not_send_a_verifier_for_it() {
    let server = TestServer::start().await;
    server.user("test", "laowang", PASSWORD).await;
    let b = browser();

    // A code without a challenge, redeemed with a verifier: refused.
    let code = code_for(&server, &b, "test", "legacy", LEGACY_CB, None, "laowang").await;
    let p = pkce();
    redeem(&server, "test", LEGACY, &code, LEGACY_CB, Some(p.verifier.as_str()))
        .await
        .assert_error(400, "invalid_grant");

    // Redeemed as issued: accepted.
    let code = code_for(&server, &b, "test", "legacy", LEGACY_CB, None, "laowang").await;
    let ok = redeem(&server, "test", LEGACY, &code, LEGACY_CB, None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(!ok.str("access_token").is_empty());

    // The exemption is the legacy client's alone.
    let no_pkce = set(set(code_request("portal-a", A_CB, ""), "code_challenge", None), "code_challenge_method", None);
    expect_client_error(&server, &b, &authorize_url(&server, "test", &no_pkce), A_CB, "invalid_request", Some(STATE))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn prompt_none_without_session_or_consent_is_refused_to_the_client() {
    let server = TestServer::start().await;
    server.user("test", "xiaohong", PASSWORD).await;
    let b = browser();
    let p = pkce();
    let silent_a =
        authorize_url(&server, "test", &set(code_request("portal-a", A_CB, &p.challenge), "prompt", Some("none")));
    expect_client_error(&server, &b, &silent_a, A_CB, "login_required", Some(STATE)).await;

    // Signed in through portal-b (first party, no consent asked)…
    let code = code_for(&server, &b, "test", "portal-b", B_CB, Some(&p), "xiaohong").await;
    assert!(!code.is_empty());
    // …the session now answers portal-b silently…
    let silent_b =
        authorize_url(&server, "test", &set(code_request("portal-b", B_CB, &p.challenge), "prompt", Some("none")));
    let resp = b.get(&silent_b).send().await.expect("authorize");
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert!(to.starts_with(&format!("{B_CB}?")) && query_param(&to, "code").is_some(), "{to}");
    // …but portal-a still needs a consent it cannot ask for silently.
    expect_client_error(&server, &b, &silent_a, A_CB, "consent_required", Some(STATE)).await;
    server.stop().await;
}

// ---------------------------------------------------------- token endpoint

#[tokio::test]
async fn token_endpoint_takes_only_forms() {
    let server = TestServer::start().await;
    let url = format!("{}/token", server.issuer("test"));
    let json_body = browser()
        .post(&url)
        .basic_auth("portal-a", Some("secret-a"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .expect("token");
    reply(json_body).await.assert_error(400, "invalid_request");
    let no_type = browser()
        .post(&url)
        .basic_auth("portal-a", Some("secret-a"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token");
    reply(no_type).await.assert_error(400, "invalid_request");
    // The same request as a form works, so the refusals were about the body.
    let ok = post(&server, "test", "token", Some(PORTAL_A), &[("grant_type", "client_credentials")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn wrong_client_credentials_are_invalid_client() {
    let server = TestServer::start().await;
    let cc = [("grant_type", "client_credentials")];
    let basic = post(&server, "test", "token", Some(("portal-a", "secret-b")), &cc).await;
    basic.assert_error(401, "invalid_client");
    assert!(basic.www_authenticate.as_deref().is_some_and(|w| w.starts_with("Basic")), "{:?}", basic.www_authenticate);
    let unknown = post(&server, "test", "token", Some(("nobody", "secret-a")), &cc).await;
    unknown.assert_error(401, "invalid_client");
    assert!(unknown.www_authenticate.as_deref().is_some_and(|w| w.starts_with("Basic")));

    // A client must use the method it registered: portal-a is Basic only.
    let as_post = [("grant_type", "client_credentials"), ("client_id", "portal-a"), ("client_secret", "secret-a")];
    post(&server, "test", "token", None, &as_post).await.assert_error(401, "invalid_client");
    // portal-b posts its secret; a wrong one is refused.
    let form =
        [("grant_type", "authorization_code"), ("code", "x"), ("client_id", "portal-b"), ("client_secret", "nope")];
    post(&server, "test", "token", None, &form).await.assert_error(401, "invalid_client");
    // No authentication at all.
    post(&server, "test", "token", None, &cc).await.assert_error(401, "invalid_client");

    let ok = post(&server, "test", "token", Some(PORTAL_A), &cc).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn pkce_verifier_must_be_sent_and_match() {
    let server = TestServer::start().await;
    server.user("test", "zhangsan", PASSWORD).await;
    let b = browser();
    let p = pkce();

    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhangsan").await;
    let other = pkce();
    redeem(&server, "test", PORTAL_A, &code, A_CB, Some(other.verifier.as_str()))
        .await
        .assert_error(400, "invalid_grant");

    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhangsan").await;
    redeem(&server, "test", PORTAL_A, &code, A_CB, None).await.assert_error(400, "invalid_grant");

    // The challenge itself is not the verifier.
    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhangsan").await;
    redeem(&server, "test", PORTAL_A, &code, A_CB, Some(p.challenge.as_str())).await.assert_error(400, "invalid_grant");

    // RFC 7636 4.1: a verifier outside 43..128 unreserved characters is
    // refused even when its hash is the challenge.
    let verifier = random::token(32).expect("rng");
    for bad in [verifier[..42].to_string(), format!("{}+/=", &verifier[..40]), "~".repeat(129)] {
        let odd = Pkce { challenge: random::sha256_b64(bad.as_bytes()), verifier: bad };
        let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&odd), "zhangsan").await;
        redeem(&server, "test", PORTAL_A, &code, A_CB, Some(odd.verifier.as_str()))
            .await
            .assert_error(400, "invalid_grant");
    }

    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhangsan").await;
    let ok = redeem(&server, "test", PORTAL_A, &code, A_CB, Some(p.verifier.as_str())).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn a_code_redeemed_twice_revokes_what_it_gave() {
    let server = TestServer::start().await;
    server.user("test", "lisi", PASSWORD).await;
    let p = pkce();
    let code = code_for(&server, &browser(), "test", "portal-a", A_CB, Some(&p), "lisi").await;
    let first = redeem(&server, "test", PORTAL_A, &code, A_CB, Some(p.verifier.as_str())).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let access = first.str("access_token");
    let refresh_token = first.str("refresh_token");
    assert_eq!(userinfo(&server, "test", access).await.status, 200);
    assert_eq!(introspect(&server, "test", PORTAL_A, access).await.active(), Some(true));

    redeem(&server, "test", PORTAL_A, &code, A_CB, Some(p.verifier.as_str())).await.assert_error(400, "invalid_grant");

    let info = userinfo(&server, "test", access).await;
    info.assert_error(401, "invalid_token");
    let intro = introspect(&server, "test", PORTAL_A, access).await;
    assert_eq!(intro.status, 200);
    assert_eq!(intro.body, json!({ "active": false }));
    refresh(&server, "test", PORTAL_A, refresh_token).await.assert_error(400, "invalid_grant");
    server.stop().await;
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let server = TestServer::start().await;
    server.user("short", "wangwu", PASSWORD).await;
    let b = browser();
    let p = pkce();
    let stale = code_for(&server, &b, "short", "portal-a", A_CB, Some(&p), "wangwu").await;
    // A fresh code of the same realm, redeemed at once, works (the session answers silently).
    let fresh = code_for(&server, &b, "short", "portal-a", A_CB, Some(&p), "wangwu").await;
    let ok = redeem(&server, "short", PORTAL_A, &fresh, A_CB, Some(p.verifier.as_str())).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let access = ok.str("access_token");
    assert_eq!(userinfo(&server, "short", access).await.status, 200);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    redeem(&server, "short", PORTAL_A, &stale, A_CB, Some(p.verifier.as_str()))
        .await
        .assert_error(400, "invalid_grant");
    // The access token (2 s) has expired meanwhile too.
    userinfo(&server, "short", access).await.assert_error(401, "invalid_token");
    assert_eq!(introspect(&server, "short", PORTAL_A, access).await.active(), Some(false));
    server.stop().await;
}

#[tokio::test]
async fn redirect_uri_must_match_at_the_token_endpoint() {
    let server = TestServer::start().await;
    server.user("test", "zhaoliu", PASSWORD).await;
    let b = browser();
    let p = pkce();
    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhaoliu").await;
    redeem(&server, "test", PORTAL_A, &code, "https://a.example.test/cb/", Some(p.verifier.as_str()))
        .await
        .assert_error(400, "invalid_grant");

    let code = code_for(&server, &b, "test", "portal-a", A_CB, Some(&p), "zhaoliu").await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", p.verifier.as_str())];
    post(&server, "test", "token", Some(PORTAL_A), &form).await.assert_error(400, "invalid_grant");
    server.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_grant() {
    let server = TestServer::start().await;
    let (access1, refresh1) = tokens_for_portal_a(&server, "sunqi").await;

    let rotated = refresh(&server, "test", PORTAL_A, &refresh1).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let access2 = rotated.str("access_token");
    let refresh2 = rotated.str("refresh_token");
    assert!(!refresh2.is_empty() && refresh2 != refresh1, "rotated: {}", rotated.body);
    assert_eq!(userinfo(&server, "test", access2).await.status, 200);

    refresh(&server, "test", PORTAL_A, &refresh1).await.assert_error(400, "invalid_grant");

    refresh(&server, "test", PORTAL_A, refresh2).await.assert_error(400, "invalid_grant");
    userinfo(&server, "test", &access1).await.assert_error(401, "invalid_token");
    userinfo(&server, "test", access2).await.assert_error(401, "invalid_token");
    assert_eq!(introspect(&server, "test", PORTAL_A, access2).await.active(), Some(false));
    server.stop().await;
}

#[tokio::test]
async fn a_code_belongs_to_the_client_it_was_issued_to() {
    let server = TestServer::start().await;
    server.user("test", "zhouba", PASSWORD).await;
    let p = pkce();
    let code = code_for(&server, &browser(), "test", "portal-a", A_CB, Some(&p), "zhouba").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", A_CB),
        ("code_verifier", p.verifier.as_str()),
        ("client_id", "portal-b"),
        ("client_secret", "secret-b"),
    ];
    post(&server, "test", "token", None, &form).await.assert_error(400, "invalid_grant");
    // Nor is a refresh token another client's to use.
    let (_, refresh_a) = tokens_for_portal_a(&server, "wujiu").await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_a.as_str()),
        ("client_id", "portal-b"),
        ("client_secret", "secret-b"),
    ];
    post(&server, "test", "token", None, &form).await.assert_error(400, "invalid_grant");
    server.stop().await;
}

#[tokio::test]
async fn unsupported_grants_are_refused() {
    let server = TestServer::start().await;
    for grant in ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", "Authorization_Code"] {
        let form = [("grant_type", grant), ("username", "x"), ("password", "y")];
        post(&server, "test", "token", Some(PORTAL_A), &form).await.assert_error(400, "unsupported_grant_type");
    }
    post(&server, "test", "token", Some(PORTAL_A), &[("code", "x")]).await.assert_error(400, "invalid_request");

    // A public client has no credentials to use for client_credentials.
    let form = [("grant_type", "client_credentials"), ("client_id", "native")];
    let public = post(&server, "test", "token", None, &form).await;
    assert!(
        matches!((public.status, public.error()), (400, "unauthorized_client") | (401, "invalid_client")),
        "{} {}",
        public.status,
        public.body
    );
    assert!(public.body.get("access_token").is_none());
    // A confidential client without that grant registered may not use it either.
    post(&server, "test", "token", Some(LEGACY), &[("grant_type", "client_credentials")])
        .await
        .assert_error(400, "unauthorized_client");
    server.stop().await;
}

// --------------------------------------------------------- private_key_jwt

#[tokio::test]
async fn private_key_jwt_assertions_are_checked_and_single_use() {
    let server = TestServer::start().await;
    let key = client_key();
    let issuer = server.issuer("test");
    let token_endpoint = format!("{issuer}/token");

    let good = assertion(&key, "jwt-client", "jwt-client", &issuer, now() + 60);
    let ok = client_credentials_with(&server, &good).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(!ok.str("access_token").is_empty());

    let replay = client_credentials_with(&server, &good).await;
    replay.assert_error(401, "invalid_client");

    let to_endpoint = assertion(&key, "jwt-client", "jwt-client", &token_endpoint, now() + 60);
    client_credentials_with(&server, &to_endpoint).await.assert_error(401, "invalid_client");
    let legacy_aud = assertion(&key, "jwt-legacy-aud", "jwt-legacy-aud", &token_endpoint, now() + 60);
    let accepted = client_credentials_with(&server, &legacy_aud).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);

    let other_aud = assertion(&key, "jwt-client", "jwt-client", &server.issuer("other"), now() + 60);
    client_credentials_with(&server, &other_aud).await.assert_error(401, "invalid_client");
    let expired = assertion(&key, "jwt-client", "jwt-client", &issuer, now() - 300);
    client_credentials_with(&server, &expired).await.assert_error(401, "invalid_client");
    let too_long = assertion(&key, "jwt-client", "jwt-client", &issuer, now() + 86_400);
    client_credentials_with(&server, &too_long).await.assert_error(401, "invalid_client");
    let other_iss = assertion(&key, "portal-a", "jwt-client", &issuer, now() + 60);
    client_credentials_with(&server, &other_iss).await.assert_error(401, "invalid_client");

    let stranger = SigningKey::from_pkcs8(Alg::ES256, &generate_pkcs8(Alg::ES256).expect("key")).expect("key");
    let forged = assertion(&stranger, "jwt-client", "jwt-client", &issuer, now() + 60);
    client_credentials_with(&server, &forged).await.assert_error(401, "invalid_client");

    // An unsigned assertion.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims =
        json!({ "iss": "jwt-client", "sub": "jwt-client", "aud": issuer, "exp": now() + 60, "jti": "unsigned-1" });
    let unsigned = format!("{}.{}.", b64.encode(br#"{"alg":"none"}"#), b64.encode(claims.to_string()));
    client_credentials_with(&server, &unsigned).await.assert_error(401, "invalid_client");

    // An assertion for a client registered with a secret is not accepted in its stead.
    let for_portal = assertion(&key, "portal-a", "portal-a", &issuer, now() + 60);
    client_credentials_with(&server, &for_portal).await.assert_error(401, "invalid_client");
    // Nor may a client_id in the form contradict the assertion.
    let fresh = assertion(&key, "jwt-client", "jwt-client", &issuer, now() + 60);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "portal-a"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", fresh.as_str()),
    ];
    post(&server, "test", "token", None, &form).await.assert_error(401, "invalid_client");
    server.stop().await;
}

// ------------------------------------------------------------ cross-realm

#[tokio::test]
async fn tokens_and_secrets_do_not_cross_realms() {
    let server = TestServer::start().await;
    let (access, refresh_token) = tokens_for_portal_a(&server, "chenshi").await;
    let other_a = ("portal-a", "secret-other");

    assert_eq!(userinfo(&server, "test", &access).await.status, 200);
    let info = userinfo(&server, "other", &access).await;
    info.assert_error(401, "invalid_token");
    assert!(info.www_authenticate.as_deref().is_some_and(|w| w.starts_with("Bearer")), "{:?}", info.www_authenticate);

    let intro = introspect(&server, "other", other_a, &access).await;
    assert_eq!((intro.status, &intro.body), (200, &json!({ "active": false })));
    let intro = introspect(&server, "other", other_a, &refresh_token).await;
    assert_eq!((intro.status, &intro.body), (200, &json!({ "active": false })));
    refresh(&server, "other", other_a, &refresh_token).await.assert_error(400, "invalid_grant");

    introspect(&server, "other", PORTAL_A, &access).await.assert_error(401, "invalid_client");
    post(&server, "test", "introspect", Some(other_a), &[("token", access.as_str())])
        .await
        .assert_error(401, "invalid_client");

    // A code of one realm is unknown in another.
    server.user("test", "chenshi2", PASSWORD).await;
    let p = pkce();
    let code = code_for(&server, &browser(), "test", "portal-a", A_CB, Some(&p), "chenshi2").await;
    redeem(&server, "other", other_a, &code, A_CB, Some(p.verifier.as_str())).await.assert_error(400, "invalid_grant");
    // The test realm still honours its tokens.
    assert_eq!(introspect(&server, "test", PORTAL_A, &access).await.active(), Some(true));
    server.stop().await;
}

// ------------------------------------------------ userinfo and ID tokens

#[tokio::test]
async fn userinfo_needs_a_valid_bearer_token() {
    let server = TestServer::start().await;
    let url = format!("{}/userinfo", server.issuer("test"));
    let none = reply(browser().get(&url).send().await.expect("userinfo")).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.www_authenticate.as_deref().is_some_and(|w| w.starts_with("Bearer")), "{:?}", none.www_authenticate);

    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", &"x".repeat(20_000)] {
        let r = userinfo(&server, "test", garbage).await;
        r.assert_error(401, "invalid_token");
        assert!(r.www_authenticate.as_deref().is_some_and(|w| w.contains("invalid_token")), "{:?}", r.www_authenticate);
    }

    // A token minted for client_credentials carries no person: not for userinfo.
    let cc = post(&server, "test", "token", Some(PORTAL_A), &[("grant_type", "client_credentials")]).await;
    assert_eq!(cc.status, 200, "{}", cc.body);
    let r = userinfo(&server, "test", cc.str("access_token")).await;
    assert!(matches!(r.status, 401 | 403), "{} {}", r.status, r.body);

    // A person's access token, with one character of its payload changed.
    let (access, _) = tokens_for_portal_a(&server, "qianjin").await;
    assert_eq!(userinfo(&server, "test", &access).await.status, 200);
    userinfo(&server, "test", &flip_payload_char(&access, "sub")).await.assert_error(401, "invalid_token");
    server.stop().await;
}

/// Changes one character of `claim`'s value inside the (decoded) payload,
/// keeping the JWS well-formed and the signature as it was.
fn flip_payload_char(jwt: &str, claim: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let payload = String::from_utf8(b64.decode(parts[1]).expect("payload")).expect("utf-8");
    let marker = format!("\"{claim}\":\"");
    let at = payload.find(&marker).expect("claim in payload") + marker.len();
    let mut bytes = payload.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    format!("{}.{}.{}", parts[0], b64.encode(&bytes), parts[2])
}

#[tokio::test]
async fn a_tampered_id_token_fails_verification_at_the_relying_party() {
    let server = TestServer::start().await;
    server.user("test", "hanmeimei", PASSWORD).await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), A_CB).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(&browser(), url.as_str(), "hanmeimei", PASSWORD).await;
    let code = query_param(&callback, "code").expect("code");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id token");
    let verifier = rp.id_token_verifier();
    id_token.claims(&verifier, &nonce).expect("the token as issued verifies");

    let raw = id_token.to_string();
    let forged: CoreIdToken = flip_payload_char(&raw, "sub").parse().expect("still a well-formed JWT");
    assert!(forged.claims(&verifier, &nonce).is_err(), "a changed payload must not verify");

    // A changed signature does not verify either.
    let (head, sig) = raw.rsplit_once('.').expect("jws");
    let mut sig = sig.as_bytes().to_vec();
    sig[4] = if sig[4] == b'A' { b'B' } else { b'A' };
    let forged: CoreIdToken =
        format!("{head}.{}", String::from_utf8(sig).expect("ascii")).parse().expect("well-formed");
    assert!(forged.claims(&verifier, &nonce).is_err(), "a changed signature must not verify");

    // An ID token is not an access token.
    userinfo(&server, "test", &raw).await.assert_error(401, "invalid_token");
    // Nor does the genuine token with another nonce.
    assert!(id_token.claims(&verifier, &Nonce::new("another".into())).is_err());
    server.stop().await;
}

// ------------------------------------------- introspection and revocation

#[tokio::test]
async fn introspection_and_revocation() {
    let server = TestServer::start().await;
    let (access, refresh_token) = tokens_for_portal_a(&server, "lilei").await;

    let intro = introspect(&server, "test", PORTAL_A, &access).await;
    assert_eq!(intro.status, 200, "{}", intro.body);
    assert_eq!(intro.active(), Some(true), "{}", intro.body);
    assert!(!intro.str("sub").is_empty(), "{}", intro.body);
    assert_eq!(intro.str("client_id"), "portal-a");
    assert!(intro.str("scope").split(' ').any(|s| s == "openid"), "{}", intro.body);

    // Client authentication is required, and another client sees nothing.
    let anonymous = browser()
        .post(format!("{}/introspect", server.issuer("test")))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect");
    reply(anonymous).await.assert_error(401, "invalid_client");
    let by_b = [("token", access.as_str()), ("client_id", "portal-b"), ("client_secret", "secret-b")];
    let seen_by_b = post(&server, "test", "introspect", None, &by_b).await;
    assert_eq!((seen_by_b.status, seen_by_b.active()), (200, Some(false)), "{}", seen_by_b.body);
    // Nor can another client revoke it.
    let revoked_by_b = post(&server, "test", "revoke", None, &by_b).await;
    assert_eq!(revoked_by_b.status, 200);
    assert_eq!(introspect(&server, "test", PORTAL_A, &access).await.active(), Some(true));

    let revoked = post(&server, "test", "revoke", Some(PORTAL_A), &[("token", access.as_str())]).await;
    assert_eq!(revoked.status, 200);
    let intro = introspect(&server, "test", PORTAL_A, &access).await;
    assert_eq!((intro.status, &intro.body), (200, &json!({ "active": false })));
    userinfo(&server, "test", &access).await.assert_error(401, "invalid_token");

    assert_eq!(introspect(&server, "test", PORTAL_A, &refresh_token).await.active(), Some(true));
    let revoked = post(&server, "test", "revoke", Some(PORTAL_A), &[("token", refresh_token.as_str())]).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(introspect(&server, "test", PORTAL_A, &refresh_token).await.active(), Some(false));
    refresh(&server, "test", PORTAL_A, &refresh_token).await.assert_error(400, "invalid_grant");

    for unknown in ["no-such-token", "a.b.c", ""] {
        let r = post(&server, "test", "revoke", Some(PORTAL_A), &[("token", unknown)]).await;
        assert_eq!(r.status, 200, "revoking {unknown:?}: {}", r.body);
    }
    post(&server, "test", "revoke", Some(("portal-a", "wrong")), &[("token", "x")])
        .await
        .assert_error(401, "invalid_client");
    server.stop().await;
}

// ------------------------------------------------ malformed and huge input

/// A GET written by hand, for a request line no `http::Uri` can hold:
/// the status and the Location header.
async fn raw_get(port: u16, path_and_query: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    (status, location)
}

#[tokio::test]
async fn huge_and_malformed_input_is_refused_without_server_errors() {
    let server = TestServer::start().await;
    let b = browser();
    let issuer = server.issuer("test");
    let token_url = format!("{issuer}/token");
    let p = pkce();

    // A 1 MiB form at the token endpoint and at the authorization endpoint.
    let huge = format!("grant_type=client_credentials&pad={}", "a".repeat(1 << 20));
    for url in [token_url.clone(), format!("{issuer}/authorize")] {
        let resp = b
            .post(&url)
            .basic_auth("portal-a", Some("secret-a"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(huge.clone())
            .send()
            .await
            .expect("an answer to a huge body");
        assert!(matches!(resp.status().as_u16(), 413 | 400), "{url}: {}", resp.status());
    }

    // A 100 KB state: longer than an `http::Uri` may be, so sent by hand.
    let long_state = "s".repeat(100 * 1024);
    let params = set(code_request("portal-a", A_CB, &p.challenge), "state", Some(long_state.as_str()));
    let url = authorize_url(&server, "test", &params);
    let (status, to) = raw_get(server.port, &url[server.url.len()..]).await;
    if status == 303 {
        let to = to.expect("location");
        assert!(to.starts_with(&format!("{A_CB}?")), "{}", &to[..200.min(to.len())]);
        assert_eq!(query_param(&to, "error").as_deref(), Some("invalid_request"), "{}", &to[..200.min(to.len())]);
        assert_eq!(query_param(&to, "code"), None);
    } else {
        assert!((400..500).contains(&status), "100 KB state: {status}");
        assert_eq!(to, None, "an error page, not a redirect");
    }

    // Invalid UTF-8 and percent garbage in parameters.
    let garbage_queries = [
        format!("client_id=%ff%fe&redirect_uri={A_CB}&response_type=code"),
        "client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb%ff&response_type=code".to_string(),
        "client_id=%zz%&redirect_uri=%&%=%".to_string(),
        "%ff%fe=%c0%af&client_id=portal-a".to_string(),
        "client_id=portal%00-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb".to_string(),
    ];
    for q in &garbage_queries {
        let resp = b.get(format!("{issuer}/authorize?{q}")).send().await.expect("authorize");
        assert_eq!(resp.status(), 400, "{q}");
        assert!(resp.headers().get("location").is_none(), "{q}");
    }
    let q = format!(
        "response_type=code&client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb&state={STATE}\
         &code_challenge={}&code_challenge_method=S256&scope=openid%ff%fe",
        p.challenge
    );
    expect_client_error(&server, &b, &format!("{issuer}/authorize?{q}"), A_CB, "invalid_scope", Some(STATE)).await;
    for path in
        ["/realms/%ff%fe/authorize", "/realms/%ff/token", "/realms/test%00/userinfo", "/realms/../../etc/passwd"]
    {
        let resp = b.get(format!("{}{path}", server.url)).send().await.expect("request");
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
    }

    // Raw bytes that are not a form at all, under a form content type.
    let resp = b
        .post(&token_url)
        .basic_auth("portal-a", Some("secret-a"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00, b'&', b'%', b'g', 0xc3])
        .send()
        .await
        .expect("token");
    let r = reply(resp).await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    let form = [("grant_type", "client_credentials\u{fffd}"), ("scope", "\u{0}")];
    post(&server, "test", "token", Some(PORTAL_A), &form).await.assert_error(400, "unsupported_grant_type");

    // Authorization headers that are not Basic credentials.
    let basic_like = [
        b"Basic !!!not-base64!!!".to_vec(),
        b"Basic ".to_vec(),
        [b"Basic ".as_slice(), base64::engine::general_purpose::STANDARD.encode("no-colon").as_bytes()].concat(),
        [b"Basic ".as_slice(), base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe]).as_bytes()]
            .concat(),
        b"Basic \xff\xfe".to_vec(),
        b"Bearer abc".to_vec(),
    ];
    for h in basic_like {
        let value = reqwest::header::HeaderValue::from_bytes(&h).expect("header");
        let resp = b
            .post(&token_url)
            .header("authorization", value)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token");
        reply(resp).await.assert_error(401, "invalid_client");
    }

    // Over-long values where the server reads them.
    let long = "c".repeat(20_000);
    let form = [("grant_type", "authorization_code"), ("code", long.as_str()), ("redirect_uri", A_CB)];
    post(&server, "test", "token", Some(PORTAL_A), &form).await.assert_error(400, "invalid_grant");
    let r = introspect(&server, "test", PORTAL_A, &long).await;
    assert_eq!((r.status, r.active()), (200, Some(false)));
    let r = refresh(&server, "test", PORTAL_A, &long).await;
    r.assert_error(400, "invalid_grant");
    let resp = b
        .get(format!("{issuer}/userinfo"))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("header"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

// ----------------------------------------------------------- concurrency

#[tokio::test]
async fn concurrent_redemptions_succeed_once() {
    let server = TestServer::start().await;
    server.user("test", "gaoshan", PASSWORD).await;
    let p = pkce();
    let code = code_for(&server, &browser(), "test", "portal-a", A_CB, Some(&p), "gaoshan").await;
    let tries = (0..6).map(|_| redeem(&server, "test", PORTAL_A, &code, A_CB, Some(p.verifier.as_str())));
    let replies = futures_util::future::join_all(tries).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1, "one code, one redemption");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(400, "invalid_grant");
    }

    let (_, refresh_token) = tokens_for_portal_a(&server, "gaoshan2").await;
    let tries = (0..6).map(|_| refresh(&server, "test", PORTAL_A, &refresh_token));
    let replies = futures_util::future::join_all(tries).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1, "one refresh token, one rotation");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(400, "invalid_grant");
    }
    server.stop().await;
}

// ------------------------------------------------------------ the person

#[tokio::test]
async fn a_declined_consent_is_access_denied_and_forms_need_their_csrf_token() {
    let server = TestServer::start().await;
    server.user("test", "liuyi", PASSWORD).await;
    let b = browser();
    let base = server.url.clone();
    let p = pkce();
    let url = authorize_url(&server, "test", &code_request("portal-a", A_CB, &p.challenge));

    // Answered with the sign-in page.
    let html = b.get(&url).send().await.expect("authorize").text().await.expect("html");
    let tx = crate::harness::hidden(&html, "tx");
    let csrf = crate::harness::hidden(&html, "csrf");
    assert!(!tx.is_empty() && !csrf.is_empty());

    // A forged CSRF token, or the right one from another browser, is refused.
    let form = |csrf: &str| {
        [("csrf", csrf.to_string()), ("tx", tx.clone()), ("identifier", "liuyi".into()), ("password", PASSWORD.into())]
    };
    let login_url = format!("{base}/realms/test/login");
    let resp = b.post(&login_url).form(&form("forged")).send().await.expect("login");
    assert_eq!(resp.status(), 403);
    let resp = browser().post(&login_url).form(&form(&csrf)).send().await.expect("login");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert!(resp.headers().get("location").is_none());
    // A wrong password shows the form again, without a session.
    let mut wrong = form(&csrf);
    wrong[3].1 = "wrong password".into();
    let resp = b.post(&login_url).form(&wrong).send().await.expect("login");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());

    let resp = b.post(&login_url).form(&form(&csrf)).send().await.expect("login");
    assert_eq!(resp.status(), 303);
    let consent_path = location(&resp);
    assert!(consent_path.starts_with("/realms/test/consent?"), "{consent_path}");
    let html = b.get(format!("{base}{consent_path}")).send().await.expect("consent").text().await.expect("html");
    let ctx = crate::harness::hidden(&html, "tx");
    let ccsrf = crate::harness::hidden(&html, "csrf");
    let consent_url = format!("{base}/realms/test/consent");
    let resp = b
        .post(&consent_url)
        .form(&[("csrf", "forged"), ("tx", ctx.as_str()), ("decision", "allow")])
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("location").is_none());

    let to = crate::steps::consent(&b, &base, &consent_path, false).await;
    assert!(to.starts_with(&format!("{A_CB}?")), "{to}");
    assert_eq!(query_param(&to, "error").as_deref(), Some("access_denied"), "{to}");
    assert_eq!(query_param(&to, "state").as_deref(), Some(STATE));
    assert_eq!(query_param(&to, "iss"), Some(server.issuer("test")));
    assert_eq!(query_param(&to, "code"), None);

    // The transaction is over: allowing it afterwards does nothing.
    let resp = b
        .post(&consent_url)
        .form(&[("csrf", ccsrf.as_str()), ("tx", ctx.as_str()), ("decision", "allow")])
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    // And without consent, a silent request is still refused.
    let silent = set(code_request("portal-a", A_CB, &p.challenge), "prompt", Some("none"));
    expect_client_error(&server, &b, &authorize_url(&server, "test", &silent), A_CB, "consent_required", Some(STATE))
        .await;
    server.stop().await;
}
