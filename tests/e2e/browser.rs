//! The citizen-accounts issue in a real browser: headless Chromium through
//! WebDriver registers by phone, signs in to portal A, is signed in to
//! portal B silently, adds a passkey with Chromium's virtual authenticator,
//! signs out on the account page and signs in with the passkey without typing
//! a phone number. Every page is saved as `target/e2e/NN-name.png`.
//!
//! The portals are real relying parties in the test (a small axum server on
//! a loopback port, redeeming codes with the `openidconnect` crate, PKCE and
//! nonce), registered as clients when the test starts. The IdP runs as
//! `http://localhost:<port>`: Chromium refuses WebAuthn on an IP-address
//! origin. Needs `chromium` and `chromium-driver` (Debian).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, Scope, TokenResponse};
use serde_json::json;

use crate::harness::{Oidc, TestServer, http, relying_party};
use crate::webdriver::{Browser, PHONE_VIEWPORT, platform_authenticator};

const REALM: &str = "test";
const PHONE: &str = "139 1234 5678";
const PHONE_E164: &str = "+8613912345678";
const PASSWORD: &str = "a good long password";

/// One portal: its client, and the PKCE verifier and nonce of each
/// authorization request it started, by `state`.
struct Portal {
    label: &'static str,
    rp: Oidc,
    issuer: String,
    scopes: &'static [&'static str],
    pending: Mutex<HashMap<String, (PkceCodeVerifier, Nonce)>>,
}

struct Portals {
    base: String,
    a: Portal,
    b: Portal,
}

impl Portals {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, name: &str) -> Option<&Portal> {
        match name {
            "a" => Some(&self.a),
            "b" => Some(&self.b),
            _ => None,
        }
    }
}

/// Registers portal A (consent once) and portal B (first-party: no consent,
/// so its sign-in is silent) with redirect URIs on a loopback port, and
/// serves both there.
async fn start_portals(server: &TestServer) -> (Arc<Portals>, tokio::task::JoinHandle<()>) {
    use civid::admin::actions::{Actor, client_create};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind portals");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let actor = Actor { id: "browser-test", ip: None };
    let portal = async |id: &str, label: &'static str, name: &str, first_party: bool, scopes| {
        let redirect = format!("{base}/{id}/cb");
        let settings = json!({
            "name": name,
            "name_en": label,
            "redirect_uris": [redirect],
            "first_party": first_party,
        });
        let client_id = format!("browser-portal-{id}");
        let (_, secret) = client_create(&server.state, &actor, REALM, &client_id, settings)
            .await
            .unwrap_or_else(|p| panic!("create client {client_id}: {p:?}"));
        let secret = secret.expect("a confidential client gets a secret");
        Portal {
            label,
            rp: relying_party(server, REALM, &client_id, Some(&secret), &redirect).await,
            issuer: server.issuer(REALM),
            scopes,
            pending: Mutex::new(HashMap::new()),
        }
    };
    let a = portal("a", "Portal A", "门户甲", false, &["profile", "phone"]).await;
    let b = portal("b", "Portal B", "门户乙", true, &[]).await;
    let portals = Arc::new(Portals { base, a, b });
    let app = Router::new()
        .route("/{portal}/login", get(portal_login))
        .route("/{portal}/cb", get(portal_callback))
        .with_state(portals.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("portal server") });
    (portals, task)
}

/// Starts an authorization request (code, PKCE S256, nonce).
async fn portal_login(State(portals): State<Arc<Portals>>, Path(name): Path<String>) -> Response {
    let Some(portal) = portals.get(&name) else { return StatusCode::NOT_FOUND.into_response() };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = portal
        .rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for scope in portal.scopes {
        request = request.add_scope(Scope::new(scope.to_string()));
    }
    let (url, state, nonce) = request.url();
    portal.pending.lock().expect("pending").insert(state.secret().clone(), (verifier, nonce));
    Redirect::to(url.as_str()).into_response()
}

/// Redeems the code and shows who signed in, or why not.
async fn portal_callback(
    State(portals): State<Arc<Portals>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(portal) = portals.get(&name) else { return StatusCode::NOT_FOUND.into_response() };
    let body = match redeem(portal, &query).await {
        Ok((sub, amr)) => format!(
            "<h1 id=\"signed-in\">{}: signed in as <code id=\"sub\">{}</code></h1><p>amr: <span id=\"amr\">{}</span></p>",
            portal.label,
            escape(&sub),
            escape(&amr.join(" "))
        ),
        Err(e) => format!("<h1>{}: sign-in failed</h1><p id=\"portal-error\">{}</p>", portal.label, escape(&e)),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
         <style>body {{ font-family: sans-serif; margin: 1rem; }} code {{ overflow-wrap: anywhere; }}</style></head>\
         <body>{body}</body></html>",
        portal.label
    ))
    .into_response()
}

async fn redeem(portal: &Portal, query: &HashMap<String, String>) -> Result<(String, Vec<String>), String> {
    if let Some(error) = query.get("error") {
        return Err(format!(
            "the IdP answered {error}: {}",
            query.get("error_description").cloned().unwrap_or_default()
        ));
    }
    let state = query.get("state").ok_or("no state")?;
    let pending = portal.pending.lock().expect("pending").remove(state);
    let (verifier, nonce) = pending.ok_or("a state this portal did not send")?;
    if query.get("iss") != Some(&portal.issuer) {
        return Err(format!("iss {:?} is not {}", query.get("iss"), portal.issuer));
    }
    let code = query.get("code").ok_or("no code")?;
    let tokens = portal
        .rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .map_err(|e| format!("code exchange: {e:?}"))?;
    let id_token = tokens.id_token().ok_or("no ID token")?;
    let claims = id_token.claims(&portal.rp.id_token_verifier(), &nonce).map_err(|e| format!("ID token: {e}"))?;
    let amr = claims.auth_method_refs().map(|m| m.iter().map(|a| a.as_str().to_string()).collect()).unwrap_or_default();
    Ok((claims.subject().as_str().to_string(), amr))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SMS code sent to `to`, once it is in the outbox.
async fn sms_code(b: &Browser, server: &TestServer, to: &str) -> String {
    b.wait_until(&format!("an SMS code to {to}"), || async {
        let sms = server.state.sms.outbox_messages().into_iter().rev().find(|m| m.to == to)?;
        let code: String = sms.body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
        (code.len() == 6).then_some(code)
    })
    .await
}

async fn history_length(b: &Browser) -> i64 {
    b.execute("return history.length", vec![]).await.as_i64().expect("history.length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_register_by_phone_portals_sso_and_passkey() {
    let server = TestServer::start_on_localhost().await;
    let issuer = server.issuer(REALM);
    let (portals, portal_task) = start_portals(&server).await;
    let mut b = Browser::start().await;

    // Portal A sends the browser to the sign-in page, which links to registration.
    b.goto(&portals.url("/a/login")).await;
    let at = b.current_url().await;
    // The authorization request is answered with the sign-in page itself.
    assert!(at.starts_with(&format!("{issuer}/authorize?")), "portal A leads to the sign-in page: {at}");
    b.wait_for("#identifier").await;
    assert_eq!(b.viewport_width().await, i64::from(PHONE_VIEWPORT.0), "the page is laid out for the phone's width");
    b.screenshot("login").await;
    let register = b.find(&format!("a[href^=\"/realms/{REALM}/register?\"]")).await;
    b.click(&register).await;
    b.wait_for_url("of the registration page", |u| u.starts_with(&format!("{issuer}/register?"))).await;
    let phone = b.wait_for("#phone").await;
    b.screenshot("register-phone").await;
    b.send_keys(&phone, PHONE).await;
    b.click(&b.find("form button[type=submit]").await).await;

    // The code from the SMS outbox, and a password.
    b.wait_for_url("of the code page", |u| u.starts_with(&format!("{issuer}/register/verify?"))).await;
    let code_input = b.wait_for("#code").await;
    let code = sms_code(&b, &server, PHONE_E164).await;
    b.screenshot("register-code").await;
    b.send_keys(&code_input, &code).await;
    b.send_keys(&b.find("#password").await, PASSWORD).await;
    b.send_keys(&b.find("#password2").await, PASSWORD).await;
    b.click(&b.find("form button[type=submit]").await).await;

    // Portal A is not first-party: its consent, once.
    b.wait_for_url("of the consent page", |u| u.starts_with(&format!("{issuer}/consent?"))).await;
    b.wait_for("button[name=decision][value=allow]").await;
    b.screenshot("consent").await;
    b.click(&b.find("button[name=decision][value=allow]").await).await;

    b.wait_for_url("of portal A's callback", |u| u.starts_with(&portals.url("/a/cb?"))).await;
    let sub_a = b.text(&b.wait_for("#sub").await).await;
    b.screenshot("portal-a").await;
    assert!(!sub_a.is_empty(), "portal A shows the subject");
    assert_eq!(b.text(&b.find("#signed-in").await).await, format!("Portal A: signed in as {sub_a}"));
    let person = civid::authn::password::authenticate(&server.state, REALM, PHONE, PASSWORD.into()).await;
    assert!(
        matches!(person.expect("auth"), civid::authn::password::Outcome::Success { .. }),
        "the browser registered the number with that password"
    );

    // Portal B: straight from /b/login to its signed-in page, no IdP page in
    // between (HTTP redirects only: one new history entry).
    let before = history_length(&b).await;
    b.goto(&portals.url("/b/login")).await;
    let landed = b.current_url().await;
    assert!(landed.starts_with(&portals.url("/b/cb?")), "portal B signs in silently, no IdP page: {landed}");
    assert_eq!(history_length(&b).await, before + 1, "no page was shown between /b/login and B's callback");
    let sub_b = b.text(&b.wait_for("#sub").await).await;
    b.screenshot("portal-b").await;
    assert_eq!(b.text(&b.find("#signed-in").await).await, format!("Portal B: signed in as {sub_b}"));
    // Both portals redirect to 127.0.0.1: one sector, so one pairwise subject.
    assert_eq!(sub_b, sub_a, "the same person at both portals");

    passkey_steps(&mut b, &server, &portals, &sub_a).await;

    b.quit().await;
    portal_task.abort();
    server.stop().await;
}

/// Adds a passkey on the account page with a virtual platform authenticator,
/// signs out, and signs in to portal A again with the passkey alone: the same
/// subject as the phone registration's.
async fn passkey_steps(b: &mut Browser, server: &TestServer, portals: &Portals, sub_a: &str) {
    let issuer = server.issuer(REALM);
    let authenticator = b.add_virtual_authenticator(platform_authenticator()).await;

    b.goto(&format!("{issuer}/account")).await;
    let name = b.wait_for("#passkey-name").await;
    b.screenshot("account").await;
    assert!(b.find_all("li.passkey").await.is_empty(), "no passkey yet");
    b.send_keys(&name, "我的手机").await;
    b.click(&b.find("#passkey-add").await).await;
    let listed = b.wait_for("li.passkey").await;
    b.screenshot("account-passkey").await;
    assert!(b.text(&listed).await.contains("我的手机"), "the passkey is listed by its name");

    let creds = b.credentials(&authenticator).await;
    assert_eq!(creds.len(), 1, "one credential in the authenticator: {creds:?}");
    assert_eq!(creds[0]["isResidentCredential"], true, "a discoverable (resident) credential: {creds:?}");
    assert_eq!(creds[0]["rpId"], "localhost", "{creds:?}");
    let registered_count = creds[0]["signCount"].as_u64().unwrap_or_default();

    // Sign out on the account page.
    b.click(&b.find("#signout [type=submit]").await).await;
    b.wait_until("the signed-out page", || async { b.find_all("#signout").await.is_empty().then_some(()) }).await;
    b.screenshot("signed-out").await;

    // Portal A again: signed out, so the sign-in page; the passkey button,
    // nothing typed.
    b.goto(&portals.url("/a/login")).await;
    // Signed out, portal A leads to the sign-in page — which, with autofill,
    // may already have signed in with the passkey by the time we look.
    let at = b.current_url().await;
    assert!(
        at.starts_with(&format!("{issuer}/authorize?")) || at.starts_with(&portals.url("/a/cb?")),
        "signed out: portal A leads to the sign-in page: {at}"
    );
    // With autofill (conditional UI) the page asks the authenticator as
    // soon as it loads, and the virtual one answers at once; otherwise the
    // passkey button does. Either way nothing is typed.
    let cb = portals.url("/a/cb?");
    let clicked = b
        .wait_until("portal A, or the passkey button", || async {
            if b.current_url().await.starts_with(&cb) {
                return Some(false);
            }
            let button = b.find_all("#passkey-signin:not([hidden])").await.into_iter().next()?;
            Some(b.try_click(&button).await)
        })
        .await;
    eprintln!("passkey sign-in by {}", if clicked { "the button" } else { "autofill (conditional UI)" });
    b.wait_for_url("of portal A's callback", |u| u.starts_with(&portals.url("/a/cb?"))).await;
    let sub = b.text(&b.wait_for("#sub").await).await;
    b.screenshot("portal-a-passkey").await;
    assert_eq!(sub, sub_a, "the passkey signs in the person who registered");
    let amr = b.text(&b.find("#amr").await).await;
    assert!(amr.split(' ').any(|m| m == "hwk" || m == "swk"), "a passkey sign-in: amr {amr:?}");
    let creds = b.credentials(&authenticator).await;
    let used_count = creds.first().and_then(|c| c["signCount"].as_u64()).unwrap_or_default();
    assert!(used_count > registered_count, "the authenticator signed the sign-in: {creds:?}");
}
