//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): portals
//! signed in by SSO — the `openidconnect` crate as their client library,
//! a small axum server as their back-channel endpoint — receive logout
//! tokens that verify against the realm's JWKS when the session ends (the
//! citizen signs out, an operator ends it, it expires), on retry when they
//! were down, and operators see the ones given up on. Ending all of a
//! person's sessions also cuts off their tokens.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{
    AuthType, AuthorizationCode, CsrfToken, JsonWebKey, Nonce, OAuth2TokenResponse, PkceCodeChallenge, TokenResponse,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::admin::{admin_with, api, call};
use crate::harness::{Oidc, TestServer, browser, free_port, hidden, http, location, query_param, relying_party};
use crate::steps::sign_in;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const PASSWORD: &str = "correct horse battery";
const A_CB: &str = "https://a.example.test/cb";
const B_CB: &str = "https://b.example.test/cb";

/// What a test portal's back-channel endpoint saw.
#[derive(Clone)]
pub(crate) struct Inbox {
    issuer: String,
    client_id: String,
    /// Claims of the logout tokens that verified.
    accepted: Arc<Mutex<Vec<Value>>>,
    /// Why others were refused.
    refused: Arc<Mutex<Vec<String>>>,
    /// How long it takes to answer (a slow portal).
    delay: Duration,
}

impl Inbox {
    /// The inbox of portal `client_id` of the realm whose issuer is `issuer`
    /// (its JWKS is fetched from there); it answers at once.
    pub(crate) fn new(issuer: String, client_id: &str) -> Inbox {
        Inbox {
            issuer,
            client_id: client_id.to_string(),
            accepted: Default::default(),
            refused: Default::default(),
            delay: Duration::ZERO,
        }
    }
}

/// A portal's back-channel logout endpoint: verifies each logout token as
/// a relying party must (Back-Channel Logout 1.0, 2.6) against the JWKS,
/// with the `openidconnect` crate's key types, and records it.
pub(crate) struct Portal {
    uri: String,
    inbox: Inbox,
    stop: Option<oneshot::Sender<()>>,
}

impl Portal {
    async fn start(server: &TestServer, client_id: &str) -> Portal {
        Portal::start_on(server, client_id, 0).await
    }

    async fn start_on(server: &TestServer, client_id: &str, port: u16) -> Portal {
        Portal::listen(Inbox::new(server.issuer("test"), client_id), port).await
    }

    /// Listens on `port` (0: any free port).
    pub(crate) async fn listen(inbox: Inbox, port: u16) -> Portal {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind portal");
        Portal::serve(inbox, listener)
    }

    /// Serves on a listener bound earlier (its address registered first).
    pub(crate) fn serve(inbox: Inbox, listener: tokio::net::TcpListener) -> Portal {
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new().route("/bc", axum::routing::post(receive)).with_state(inbox.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Portal { uri: format!("http://127.0.0.1:{port}/bc"), inbox, stop: Some(tx) }
    }

    pub(crate) fn accepted(&self) -> Vec<Value> {
        self.inbox.accepted.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub(crate) fn refused(&self) -> Vec<String> {
        self.inbox.refused.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits until `n` logout tokens arrived (or `secs` passed).
    pub(crate) async fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        for _ in 0..secs * 10 {
            if self.accepted().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.accepted()
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: String) -> StatusCode {
    tokio::time::sleep(inbox.delay).await;
    let form_ok = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let verified = if form_ok { verify(&inbox, &token).await } else { Err("not a form".to_string()) };
    match verified {
        Ok(claims) => {
            if let Ok(mut v) = inbox.accepted.lock() {
                v.push(claims);
            }
            StatusCode::OK
        }
        Err(e) => {
            if let Ok(mut v) = inbox.refused.lock() {
                v.push(e);
            }
            StatusCode::BAD_REQUEST
        }
    }
}

fn b64(part: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())
}

/// Back-Channel Logout 1.0, 2.6: signature by a key of the issuer's JWKS,
/// `typ`, `iss`, `aud`, `iat`, `exp`, `jti`, the event, `sid`, no `nonce`.
async fn verify(inbox: &Inbox, token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else { return Err("not a JWS".into()) };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    if header["typ"] != "logout+jwt" {
        return Err(format!("typ {}", header["typ"]));
    }
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone()).map_err(|e| e.to_string())?;
    let jwks: CoreJsonWebKeySet = reqwest::get(format!("{}/jwks", inbox.issuer))
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let key =
        jwks.keys().iter().find(|k| k.key_id().map(|id| id.as_str()) == header["kid"].as_str()).ok_or("unknown kid")?;
    key.verify_signature(&alg, format!("{h}.{p}").as_bytes(), &b64(s)?).map_err(|e| format!("signature: {e}"))?;
    let claims: Value = serde_json::from_slice(&b64(p)?).map_err(|e| e.to_string())?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(format!("{what}: {claims}")) };
    check(claims["iss"] == inbox.issuer.as_str(), "iss")?;
    check(claims["aud"] == inbox.client_id.as_str(), "aud")?;
    check(claims["iat"].as_i64().is_some_and(|t| (t - now).abs() < 30), "iat")?;
    check(claims["exp"].as_i64().is_some_and(|t| t > now && t <= now + 300), "exp")?;
    check(claims["jti"].as_str().is_some_and(|j| !j.is_empty()), "jti")?;
    check(claims["events"][EVENT].is_object(), "events")?;
    check(claims["sid"].as_str().is_some_and(|j| !j.is_empty()), "sid")?;
    check(claims["sub"].as_str().is_some_and(|j| !j.is_empty()), "sub")?;
    check(claims.get("nonce").is_none(), "nonce")?;
    Ok(claims)
}

/// Registers (or removes) a portal's back-channel logout URI, as an
/// operator editing the client would.
async fn set_backchannel(server: &TestServer, client_id: &str, uri: Option<&str>) {
    set_backchannel_uri(&server.state.db, client_id, uri).await;
    server.state.announce_change("test").await;
}

/// Writes a portal's back-channel logout URI in the database (nodes see it
/// at their next cache refresh, or at start).
pub(crate) async fn set_backchannel_uri(db: &civid::store::Db, client_id: &str, uri: Option<&str>) {
    let row = civid::store::realms::client_get(db, "test", client_id).await.expect("db").expect("client");
    let mut settings: Value = serde_json::from_str(&row.settings).expect("settings");
    settings["backchannel_logout_uri"] = json!(uri);
    civid::store::realms::client_update(db, "test", client_id, settings.to_string(), None, row.enabled)
        .await
        .expect("update client");
}

/// Short retries for the tests: every `initial` seconds, for `window` seconds.
async fn set_retries(server: &TestServer, window: u64, initial: u64) {
    let db = &server.state.db;
    let row = civid::store::realms::realm_get(db, "test").await.expect("db").expect("realm");
    let mut settings: Value = serde_json::from_str(&row.settings).expect("settings");
    settings["backchannel"] =
        json!({ "retry_window_secs": window, "retry_initial_secs": initial, "retry_max_secs": initial });
    civid::store::realms::realm_update(db, "test", settings.to_string()).await.expect("update realm");
    server.state.announce_change("test").await;
}

/// A portal's view of a sign-in: its tokens and the ID token's claims.
struct SignedIn {
    tokens: openidconnect::core::CoreTokenResponse,
    sid: String,
    sub: String,
}

fn id_token_claims(tokens: &openidconnect::core::CoreTokenResponse) -> Value {
    let raw = serde_json::to_value(tokens.id_token().expect("id token")).expect("id token");
    let payload = raw.as_str().expect("compact JWS").split('.').nth(1).expect("payload").to_string();
    serde_json::from_slice(&b64(&payload).expect("b64")).expect("claims")
}

/// Signs in to portal-a with a password (or silently, when the browser has
/// a session), then to portal-b silently by SSO.
async fn sign_in_both(server: &TestServer, b: &reqwest::Client, who: &str) -> (SignedIn, SignedIn) {
    let rp_a = relying_party(server, "test", "portal-a", Some("secret-a"), A_CB).await;
    let rp_b =
        relying_party(server, "test", "portal-b", Some("secret-b"), B_CB).await.set_auth_type(AuthType::RequestBody);
    let a = portal_sign_in(&rp_a, b, who, A_CB, true).await;
    let b = portal_sign_in(&rp_b, b, who, B_CB, false).await;
    assert_eq!(a.sid, b.sid, "one SSO session");
    assert_ne!(a.sub, b.sub, "pairwise subjects");
    (a, b)
}

async fn portal_sign_in(rp: &Oidc, b: &reqwest::Client, who: &str, cb: &str, password: bool) -> SignedIn {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    if password {
        req = req.add_scope(openidconnect::Scope::new("offline_access".into()));
    }
    let (url, _, nonce) = req.url();
    let callback = if password {
        sign_in(b, url.as_str(), who, PASSWORD).await
    } else {
        let resp = b.get(url.as_str()).send().await.expect("authorize");
        assert_eq!(resp.status(), 303);
        location(&resp)
    };
    assert!(callback.starts_with(&format!("{cb}?")), "{callback}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    let verified =
        tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), &nonce).expect("valid id token");
    let sub = verified.subject().as_str().to_string();
    let sid = id_token_claims(&tokens)["sid"].as_str().expect("sid in the ID token").to_string();
    SignedIn { tokens, sid, sub }
}

/// `prompt=none` for a portal in this browser: the error it gets back, if any.
async fn silent_error(
    server: &TestServer,
    b: &reqwest::Client,
    client_id: &str,
    secret: &str,
    cb: &str,
) -> Option<String> {
    let rp = relying_party(server, "test", client_id, Some(secret), cb).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .add_prompt(CoreAuthPrompt::None)
        .url();
    let resp = b.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert!(to.starts_with(&format!("{cb}?")), "{to}");
    query_param(&to, "error")
}

async fn sign_out_on_account_page(server: &TestServer, b: &reqwest::Client) {
    let account = format!("{}/realms/test/account", server.url);
    let resp = b.get(&account).send().await.expect("account");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html").replace("&#x2f;", "/");
    let form = html.split("action=\"/realms/test/account/logout\"").nth(1).expect("sign-out form");
    let resp = b.post(format!("{account}/logout")).form(&[("csrf", hidden(form, "csrf"))]).send().await.expect("out");
    assert_eq!(resp.status(), 200);
}

fn check_token(claims: &Value, who: &SignedIn) {
    assert_eq!(claims["sid"], who.sid.as_str(), "sid matches the ID token's");
    assert_eq!(claims["sub"], who.sub.as_str(), "sub is the one the portal knows");
}

async fn introspect(server: &TestServer, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/introspect", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn signing_out_sends_verified_logout_tokens_to_both_portals_and_ends_sso() {
    let server = TestServer::start().await;
    let uid = server.user("test", "bcl1", PASSWORD).await;
    let disc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.issuer("test")))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(disc["backchannel_logout_supported"], true);
    assert_eq!(disc["backchannel_logout_session_supported"], true);
    assert!(disc["claims_supported"].as_array().is_some_and(|c| c.contains(&json!("sid"))));

    let pa = Portal::start(&server, "portal-a").await;
    let pb = Portal::start(&server, "portal-b").await;
    set_backchannel(&server, "portal-a", Some(&pa.uri)).await;
    set_backchannel(&server, "portal-b", Some(&pb.uri)).await;
    let b = browser();
    let (a, bb) = sign_in_both(&server, &b, "bcl1").await;
    assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await, None, "signed in");

    sign_out_on_account_page(&server, &b).await;
    let got_a = pa.wait_for(1, 10).await;
    let got_b = pb.wait_for(1, 10).await;
    assert_eq!(got_a.len(), 1, "portal A: one logout token (refused: {:?})", pa.refused());
    assert_eq!(got_b.len(), 1, "portal B: one logout token (refused: {:?})", pb.refused());
    check_token(&got_a[0], &a);
    check_token(&got_b[0], &bb);
    assert_eq!(got_a[0]["aud"], "portal-a");
    assert_eq!(got_b[0]["aud"], "portal-b");
    assert!(pa.refused().is_empty() && pb.refused().is_empty());

    // Both portals now find the person signed out.
    assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await.as_deref(), Some("login_required"));
    assert_eq!(silent_error(&server, &b, "portal-b", "secret-b", B_CB).await.as_deref(), Some("login_required"));

    // The session's refresh token is revoked; the offline one survives a
    // sign-out (only ending all of a person's sessions takes it).
    let refresh = a.tokens.refresh_token().expect("refresh token").secret().clone();
    let row = civid::store::grants::refresh_by_hash(
        &server.state.db,
        "test",
        &civid::crypto::random::sha256_b64(refresh.as_bytes()),
    )
    .await
    .expect("db")
    .expect("row");
    assert!(row.offline && row.revoked_at.is_none(), "offline access outlives the session");

    // Delivered, recorded (just after the portals answered) and audited.
    let mut view = Value::Null;
    for _ in 0..100 {
        view = civid::admin::logouts::deliveries(
            &server.state,
            "test",
            &civid::admin::logouts::Query {
                client_id: None,
                state: Some("delivered"),
                user_id: Some(&uid),
                session_id: None,
                limit: None,
            },
        )
        .await
        .expect("view");
        if view["items"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let items = view["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{view}");
    for item in items {
        assert_eq!(item["state"], "delivered", "{item}");
        assert_eq!(item["reason"], "logout");
        assert_eq!(item["attempt_log"][0]["status"], 200);
    }
    let audit = civid::store::audit::list(&server.state.db, "test", Some("logout.session"), 10).await.expect("audit");
    let detail: Value = serde_json::from_str(&audit[0].detail).expect("detail");
    assert_eq!(detail["sid"], a.sid.as_str());
    assert_eq!(detail["backchannel"].as_array().map(Vec::len), Some(2), "{detail}");
    for _ in 0..50 {
        if civid::store::audit::list(&server.state.db, "test", Some("logout.backchannel.delivered"), 10)
            .await
            .expect("audit")
            .len()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = civid::store::audit::list(&server.state.db, "test", Some("logout.backchannel.delivered"), 10)
        .await
        .expect("audit");
    assert_eq!(delivered.len(), 2);
    server.stop().await;
}

/// RP-Initiated Logout at portal A (its ID token as the hint): both portals
/// get their logout tokens, SSO is over for both, and A gets its page back.
#[tokio::test]
async fn a_logout_requested_by_one_portal_reaches_both_by_the_back_channel() {
    let server = TestServer::start().await;
    server.user("test", "bcl-rp", PASSWORD).await;
    let pa = Portal::start(&server, "portal-a").await;
    let pb = Portal::start(&server, "portal-b").await;
    set_backchannel(&server, "portal-a", Some(&pa.uri)).await;
    set_backchannel(&server, "portal-b", Some(&pb.uri)).await;
    let b = browser();
    let (a, bb) = sign_in_both(&server, &b, "bcl-rp").await;
    let hint = a.tokens.id_token().expect("id token").to_string();
    let url = format!(
        "{}/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fa.example.test%2Fbye&state=rp1",
        server.issuer("test")
    );
    let resp = b.get(&url).send().await.expect("logout");
    // Portal B also registered a front-channel page: the signed-out page
    // loads it, then continues to portal A.
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html").replace("&#x2f;", "/");
    assert!(html.contains("href=\"https://a.example.test/bye?state=rp1\""), "{html}");
    let got_a = pa.wait_for(1, 10).await;
    let got_b = pb.wait_for(1, 10).await;
    assert_eq!((got_a.len(), got_b.len()), (1, 1), "refused: {:?} {:?}", pa.refused(), pb.refused());
    check_token(&got_a[0], &a);
    check_token(&got_b[0], &bb);
    assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await.as_deref(), Some("login_required"));
    assert_eq!(silent_error(&server, &b, "portal-b", "secret-b", B_CB).await.as_deref(), Some("login_required"));
    // Replayed: nothing more is sent.
    let resp = b.get(&url).send().await.expect("replay");
    assert_eq!(resp.status(), 303);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((pa.wait_for(1, 1).await.len(), pb.wait_for(1, 1).await.len()), (1, 1), "no second token");
    server.stop().await;
}

#[tokio::test]
async fn a_portal_down_gets_its_token_when_back_and_one_never_back_is_given_up_visibly() {
    let server = TestServer::start().await;
    let uid = server.user("test", "bcl2", PASSWORD).await;
    set_retries(&server, 6, 1).await;
    let (port_a, port_b) = (free_port(), free_port());
    set_backchannel(&server, "portal-a", Some(&format!("http://127.0.0.1:{port_a}/bc"))).await;
    set_backchannel(&server, "portal-b", Some(&format!("http://127.0.0.1:{port_b}/bc"))).await;
    let b = browser();
    let (a, _) = sign_in_both(&server, &b, "bcl2").await;

    // An operator ends the person's sessions while both portals are down.
    let desk = admin_with(&server, "desk", &[("helpdesk", "test")]).await;
    let started = std::time::Instant::now();
    let r = call("post", &api(&server, &format!("/test/users/{uid}/sessions/end")), Some(&desk), Some(json!({})), None)
        .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2), "the operator does not wait for the portals");
    assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await.as_deref(), Some("login_required"));

    // Portal A comes back within the retry window and gets its token.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pa = Portal::start_on(&server, "portal-a", port_a).await;
    let got = pa.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "delivered after coming back (refused: {:?})", pa.refused());
    check_token(&got[0], &a);

    // Portal B never does: given up after the window, and operators see it.
    let path = "/test/logout-deliveries?client_id=portal-b&state=failed";
    let mut failed = Value::Null;
    for _ in 0..150 {
        let r = call("get", &api(&server, path), Some(&desk), None, None).await;
        assert_eq!(r.status(), 200);
        failed = r.json().await.expect("json");
        if failed["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let item = &failed["items"][0];
    assert_eq!(item["state"], "failed", "{failed}");
    assert_eq!(item["user_id"], uid.as_str());
    assert_eq!(item["session_id"], a.sid.as_str());
    assert_eq!(item["reason"], "ended_by_operator");
    let attempts = item["attempt_log"].as_array().expect("attempts");
    assert!(attempts.len() >= 2, "retried: {item}");
    assert_eq!(item["attempts"].as_u64(), Some(attempts.len() as u64));
    assert!(attempts.iter().all(|t| t["error"] == "connection failed"), "{item}");
    assert!(item["finished_at"].as_i64().is_some_and(|f| f >= item["deadline"].as_i64().unwrap_or(0) - 3));

    let r = call("get", &api(&server, "/test/logout-deliveries?client_id=portal-a"), Some(&desk), None, None).await;
    let view: Value = r.json().await.expect("json");
    assert_eq!(view["items"][0]["state"], "delivered", "{view}");
    assert!(view["items"][0]["attempts"].as_u64().is_some_and(|n| n >= 2), "{view}");
    let given_up = civid::store::audit::list(&server.state.db, "test", Some("logout.backchannel.given_up"), 10)
        .await
        .expect("audit");
    assert_eq!(given_up.len(), 1);
    assert_eq!(given_up[0].client_id.as_deref(), Some("portal-b"));
    assert_eq!(
        call("get", &api(&server, "/test/logout-deliveries?state=bogus"), Some(&desk), None, None).await.status(),
        400
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_portal_delays_neither_the_sign_out_nor_the_other_portal() {
    let server = TestServer::start_configured(|s| s.logout_timeout_ms = 5000).await;
    server.user("test", "bcl6", PASSWORD).await;
    let pa = Portal::start(&server, "portal-a").await;
    let slow = Inbox { delay: Duration::from_secs(30), ..Inbox::new(server.issuer("test"), "portal-b") };
    let pb = Portal::listen(slow, 0).await;
    set_backchannel(&server, "portal-a", Some(&pa.uri)).await;
    set_backchannel(&server, "portal-b", Some(&pb.uri)).await;
    let b = browser();
    sign_in_both(&server, &b, "bcl6").await;
    let started = std::time::Instant::now();
    sign_out_on_account_page(&server, &b).await;
    assert!(started.elapsed() < Duration::from_secs(3), "sign-out took {:?}", started.elapsed());
    assert_eq!(pa.wait_for(1, 4).await.len(), 1, "portal A is told at once");
    assert!(started.elapsed() < Duration::from_millis(4500), "before B's attempt timed out: {:?}", started.elapsed());
    // B's attempt times out and is recorded for a retry.
    let mut item = Value::Null;
    for _ in 0..100 {
        let view = civid::admin::logouts::deliveries(
            &server.state,
            "test",
            &civid::admin::logouts::Query {
                client_id: Some("portal-b"),
                state: None,
                user_id: None,
                session_id: None,
                limit: None,
            },
        )
        .await
        .expect("view");
        item = view["items"][0].clone();
        if item["attempts"].as_u64().is_some_and(|n| n >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(item["state"], "pending", "{item}");
    assert_eq!(item["last_error"], "no answer within 5000 ms", "{item}");
    server.stop().await;
}

#[tokio::test]
async fn sessions_past_their_lifetime_are_ended_by_the_job_and_portals_told() {
    let server = TestServer::start_configured(|s| s.session_sweep_secs = 1).await;
    server.user("test", "bcl3", PASSWORD).await;
    let pa = Portal::start(&server, "portal-a").await;
    set_backchannel(&server, "portal-a", Some(&pa.uri)).await;
    let b = browser();
    let rp_a = relying_party(&server, "test", "portal-a", Some("secret-a"), A_CB).await;
    let a = portal_sign_in(&rp_a, &b, "bcl3", A_CB, true).await;

    // Unused for longer than the realm's idle lifetime.
    use sea_orm::ConnectionTrait;
    server
        .state
        .db
        .execute_unprepared(&format!("UPDATE sso_sessions SET last_seen_at = 1 WHERE id = '{}'", a.sid))
        .await
        .expect("age the session");
    let got = pa.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "refused: {:?}", pa.refused());
    check_token(&got[0], &a);
    let row = civid::store::sessions::get(&server.state.db, "test", &a.sid).await.expect("db").expect("row");
    assert_eq!(row.end_reason.as_deref(), Some("idle"));
    assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await.as_deref(), Some("login_required"));
    server.stop().await;
}

#[tokio::test]
async fn ending_all_sessions_cuts_off_access_and_refresh_tokens() {
    let server = TestServer::start().await;
    let uid = server.user("test", "bcl4", PASSWORD).await;
    let actor = civid::admin::actions::Actor { id: "operator", ip: None };
    let rp_a = relying_party(&server, "test", "portal-a", Some("secret-a"), A_CB).await;
    for action in ["end_sessions", "disable", "reset_password"] {
        let b = browser();
        let a = portal_sign_in(&rp_a, &b, "bcl4", A_CB, true).await;
        let at = a.tokens.access_token().secret().clone();
        assert_eq!(introspect(&server, &at).await["active"], true, "{action}: active before");
        match action {
            "end_sessions" => {
                civid::admin::actions::user_end_sessions(&server.state, &actor, "test", &uid).await.expect("end");
            }
            "disable" => {
                civid::admin::actions::user_set_enabled(&server.state, &actor, "test", &uid, false).await.expect("off");
            }
            _ => {
                // The helpdesk's reset hands out a temporary password (the
                // known one is put back below).
                civid::admin::actions::user_reset_password(&server.state, &actor, "test", &uid).await.expect("reset");
            }
        }
        assert_eq!(introspect(&server, &at).await["active"], false, "{action}: the access token is cut off");
        let userinfo = reqwest::Client::new()
            .get(format!("{}/userinfo", server.issuer("test")))
            .bearer_auth(&at)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(userinfo.status(), 401, "{action}: userinfo refuses it");
        let rt = a.tokens.refresh_token().expect("offline refresh token");
        assert!(rp_a.exchange_refresh_token(rt).expect("refresh").request_async(&http()).await.is_err(), "{action}");
        assert_eq!(silent_error(&server, &b, "portal-a", "secret-a", A_CB).await.as_deref(), Some("login_required"));
        if action == "disable" {
            civid::admin::actions::user_set_enabled(&server.state, &actor, "test", &uid, true).await.expect("on");
        }
    }
    // A sign-in right after the cut-off (same second or not) works at once.
    let b = browser();
    civid::admin::actions::user_end_sessions(&server.state, &actor, "test", &uid).await.expect("end");
    let hash = civid::crypto::password::hash(PASSWORD).expect("hash");
    civid::store::users::set_password(&server.state.db, "test", &uid, Some(hash)).await.expect("password");
    let a = portal_sign_in(&rp_a, &b, "bcl4", A_CB, true).await;
    assert_eq!(introspect(&server, a.tokens.access_token().secret()).await["active"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_session_ended_on_one_node_is_refused_by_the_other() {
    use crate::harness::{Node, fresh_database, node_env, redis_url, unique};
    if std::env::var("CIVID_TEST_DATABASE_URL").is_err() || redis_url().is_none() {
        eprintln!("a_session_ended_on_one_node_is_refused_by_the_other: runs on PostgreSQL + Redis only");
        return;
    }
    let (db, _guard) = fresh_database().await;
    let prefix = unique("civid-bcl-nodes-");
    let env = node_env(&db, Some(&prefix));
    let node_a = Node::start(&env, None).await;
    let node_b = Node::start(&env, Some(&node_a.url)).await;
    // A person and a portal endpoint, set up with the library on the same database.
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
    helper.user("test", "bcl5", PASSWORD).await;
    let pa = Portal::listen(Inbox::new(format!("{}/realms/test", node_a.url), "portal-a"), 0).await;
    set_backchannel(&helper, "portal-a", Some(&pa.uri)).await;
    // Let the nodes see the new client settings.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let b = browser();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let authorize = |base: &str, prompt: &str| {
        format!(
            "{base}/realms/test/authorize?response_type=code&client_id=portal-a&redirect_uri=https%3A%2F%2Fa.example.test%2Fcb\
             &scope=openid&state=s1&nonce=n1&code_challenge={}&code_challenge_method=S256{prompt}",
            challenge.as_str()
        )
    };
    let callback = sign_in(&b, &authorize(&node_a.url, ""), "bcl5", PASSWORD).await;
    // The portal redeems its code at node B: it now takes part in the
    // session (a portal given a code it never redeemed has nothing to end).
    let code = query_param(&callback, "code").expect("code");
    let resp = reqwest::Client::new()
        .post(format!("{}/realms/test/token", node_b.url))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://a.example.test/cb"),
            ("code_verifier", verifier.secret().as_str()),
        ])
        .send()
        .await
        .expect("token at B");
    assert_eq!(resp.status(), 200, "the code is redeemed at B");
    let resp = b.get(authorize(&node_b.url, "&prompt=none")).send().await.expect("authorize at B");
    assert!(location(&resp).contains("code="), "B honours the session: {}", location(&resp));

    // Signed out at node A…
    let account = format!("{}/realms/test/account", node_a.url);
    let html = b.get(&account).send().await.expect("account").text().await.expect("html").replace("&#x2f;", "/");
    let form = html.split("action=\"/realms/test/account/logout\"").nth(1).expect("sign-out form");
    let resp = b.post(format!("{account}/logout")).form(&[("csrf", hidden(form, "csrf"))]).send().await.expect("out");
    assert_eq!(resp.status(), 200);
    // …the session is refused at node B at once, and the portal is told.
    let resp = b.get(authorize(&node_b.url, "&prompt=none")).send().await.expect("authorize at B");
    assert_eq!(query_param(&location(&resp), "error").as_deref(), Some("login_required"), "{}", location(&resp));
    let got = pa.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "refused: {:?}", pa.refused());
    assert!(got[0]["sid"].is_string());
    helper.stop().await;
    drop(node_b);
    drop(node_a);
}

/// A portal allowed refresh tokens is recorded as taking part by the token
/// its code exchange writes; a code issued before a sign-out and redeemed
/// after it is refused, and nothing issued for it works.
#[tokio::test]
async fn a_code_redeemed_after_the_sign_out_is_refused() {
    let server = TestServer::start().await;
    server.user("test", "late1", PASSWORD).await;
    let base = server.issuer("test");
    let b = browser();
    let (authorize, verifier) = crate::steps::pkce_request(&base, "portal-c", "c.example.test");
    let callback = sign_in(&b, &authorize, "late1", PASSWORD).await;
    let code = query_param(&callback, "code").expect("code");

    let page = b.get(format!("{base}/logout")).send().await.expect("logout");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let resp = b
        .post(format!("{base}/logout/confirm"))
        .form(&[("csrf", hidden(&html, "csrf"))])
        .send()
        .await
        .expect("confirm");
    assert!(resp.status().is_success(), "signed out: {}", resp.status());

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
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(body["error_description"].as_str().unwrap_or_default().contains("session has ended"), "{body}");
    server.stop().await;
}
