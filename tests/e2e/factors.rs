//! Authenticator apps (TOTP) as a second step, step-up demanded by a
//! portal's policy, and the account centre's list of sign-in methods.
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, TokenResponse};

use crate::harness::{Oidc, TestServer, browser, hidden, http, location, query_param, relying_party};
use crate::steps::sign_in;

const PW: &str = "correct horse battery";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn totp_code(secret: &str, at: u64) -> String {
    civid::authn::totp::code_at(secret, at).expect("code")
}

/// Starts a sign-in at a portal; returns where the IdP sent the browser.
async fn start(browser: &reqwest::Client, rp: &Oidc) -> (String, String, Nonce, openidconnect::PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let resp = browser.get(url.as_str()).send().await.expect("authorize");
    // Without a session the sign-in page itself (also at its /login path);
    // with one, a redirect (to a step-up, or to the portal).
    let next = match resp.status().as_u16() {
        303 => location(&resp),
        _ => crate::steps::login_path(resp).await,
    };
    (url.to_string(), next, nonce, verifier)
}

async fn amr_of(rp: &Oidc, callback: &str, nonce: &Nonce, verifier: openidconnect::PkceCodeVerifier) -> Vec<String> {
    let code = query_param(callback, "code").unwrap_or_else(|| panic!("a code in {callback}"));
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    let claims = tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), nonce).expect("valid").clone();
    claims.auth_method_refs().map(|m| m.iter().map(|x| x.as_str().to_string()).collect()).unwrap_or_default()
}

/// Posts the second step's code; returns the response.
async fn second_step(browser: &reqwest::Client, base: &str, path: &str, code: &str) -> reqwest::Response {
    let page = browser.get(format!("{base}{path}")).send().await.expect("second page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("autocomplete=\"one-time-code\""), "{html}");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("code", code.to_string())];
    browser.post(format!("{base}/realms/test/login/second")).form(&form).send().await.expect("second submit")
}

#[tokio::test]
async fn authenticator_app_is_a_second_step_and_satisfies_step_up() {
    let server = TestServer::start().await;
    server.user("test", "zhaolei", PW).await;
    let base = server.url.clone();
    let portal_b = relying_party(&server, "test", "portal-b", Some("secret-b"), "https://b.example.test/cb")
        .await
        .set_auth_type(openidconnect::AuthType::RequestBody);
    let portal_d = relying_party(&server, "test", "portal-mfa", Some("secret-b"), "https://d.example.test/cb").await;

    // Signed in with a password only.
    let b = browser();
    let (url, _, _, _) = start(&browser(), &portal_b).await;
    let cb = sign_in(&b, &url, "zhaolei", PW).await;
    assert!(cb.starts_with("https://b.example.test/cb?"), "{cb}");

    // A portal demanding a second factor: the person has none yet, so the
    // step-up page says how to add one (and is not a dead end).
    let (_, next, nonce, verifier) = start(&b, &portal_d).await;
    let resp = b.get(format!("{base}{next}")).send().await.expect("login page");
    assert_eq!(resp.status(), 303, "a weak session goes to the second step");
    let second = location(&resp);
    assert!(second.starts_with("/realms/test/login/second?tx="), "{second}");
    let html = b.get(format!("{base}{second}")).send().await.expect("page").text().await.expect("html");
    let html = html.replace("&#x2f;", "/").replace("&amp;", "&");
    let setup =
        html.split("href=\"").find(|s| s.starts_with("/realms/test/account?continue=")).expect("a way to set one up");
    let setup = setup.split('"').next().unwrap_or_default().to_string();
    let account = b.get(format!("{base}{setup}")).send().await.expect("account").text().await.expect("html");
    assert!(account.contains("id=\"continue\""), "the way back to the portal is offered: {account}");

    // Add an authenticator app in the account centre.
    let page = b.get(format!("{base}/realms/test/account/totp")).send().await.expect("totp page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("<svg"), "a QR code");
    let secret =
        html.split("id=\"totp-secret\">").nth(1).and_then(|s| s.split('<').next()).expect("secret").to_string();
    let form = |code: &str| {
        [
            ("csrf", hidden(&html, "csrf")),
            ("id", hidden(&html, "id")),
            ("name", "手机验证器".to_string()),
            ("code", code.to_string()),
        ]
    };
    // The codes of the steps before, at and after `t` are used below, and
    // the server accepts one step of skew either way: start in the first
    // half of a 30-second step, so the clock cannot move on two steps
    // before the test is done (it failed when it crossed a boundary).
    let into = now() % 30;
    if into >= 15 {
        tokio::time::sleep(std::time::Duration::from_secs(30 - into)).await;
    }
    let t = now();
    let wrong = if totp_code(&secret, t) == "000000" { "111111" } else { "000000" };
    let resp = b.post(format!("{base}/realms/test/account/totp")).form(&form(wrong)).send().await.expect("post");
    assert_eq!(resp.status(), 200, "a wrong first code is refused");
    let resp = b.post(format!("{base}/realms/test/account/totp")).form(&form(&totp_code(&secret, t))).send().await;
    let resp = resp.expect("post");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/realms/test/account?done=totp");
    // A forged form changes nothing.
    let forged = [("csrf", "x".to_string()), ("id", hidden(&html, "id")), ("code", totp_code(&secret, t))];
    let resp = b.post(format!("{base}/realms/test/account/totp")).form(&forged).send().await.expect("post");
    assert_eq!(resp.status(), 403);

    // Back to the waiting portal from the account centre: the app's code,
    // then on to it.
    let account = b.get(format!("{base}/realms/test/account?done=totp")).send().await.expect("account");
    let account = account.text().await.expect("html").replace("&#x2f;", "/").replace("&amp;", "&");
    let back = account.split("id=\"continue\" href=\"").nth(1).and_then(|s| s.split('"').next()).expect("continue");
    let resp = b.get(format!("{base}{back}")).send().await.expect("login page");
    assert_eq!(resp.status(), 303, "the stronger session goes to the second step");
    let second = location(&resp);
    // The enrolment code's step is spent; the next step's code is accepted.
    let resp = second_step(&b, &base, &second, &totp_code(&secret, t + 30)).await;
    assert_eq!(resp.status(), 303);
    let cb = location(&resp);
    assert!(cb.starts_with("https://d.example.test/cb?"), "{cb}");
    let amr = amr_of(&portal_d, &cb, &nonce, verifier).await;
    for m in ["pwd", "otp", "mfa"] {
        assert!(amr.iter().any(|a| a == m), "{m} in {amr:?}");
    }

    // A portal that accepts only a passkey: the app's code does not step up
    // to it (no code form), and the way to add a passkey is offered.
    let portal_e =
        relying_party(&server, "test", "portal-passkey", Some("secret-b"), "https://e.example.test/cb").await;
    let (_, next, _, _) = start(&b, &portal_e).await;
    let resp = b.get(format!("{base}{next}")).send().await.expect("login page");
    assert_eq!(resp.status(), 303);
    let html = b.get(format!("{base}{}", location(&resp))).send().await.expect("second").text().await.expect("html");
    assert!(!html.contains("one-time-code") && html.contains("account?continue="), "{html}");

    // A new browser: the password is now followed by the app's code.
    let b2 = browser();
    let (_, next, nonce, verifier) = start(&b2, &portal_b).await;
    let html = b2.get(format!("{base}{next}")).send().await.expect("login").text().await.expect("html");
    assert!(html.contains("autocomplete=\"username webauthn\""), "passkey autofill offered");
    assert!(html.contains("class=\"realm-logo\" src=\"data:image"), "the realm's logo on the page");
    assert!(html.contains("id=\"passkey-signin\""), "and a passkey button");
    let login = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "zhaolei".to_string()),
        ("password", PW.to_string()),
    ];
    let resp = b2.post(format!("{base}/realms/test/login")).form(&login).send().await.expect("login");
    assert_eq!(resp.status(), 303);
    let second = location(&resp);
    assert!(second.starts_with("/realms/test/login/second?tx="), "{second}");
    // A replayed code (already used for the step-up) is refused.
    let resp = second_step(&b2, &base, &second, &totp_code(&secret, t + 30)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("html").contains("role=\"alert\""));
    let resp = second_step(&b2, &base, &second, &totp_code(&secret, t - 30)).await;
    assert_eq!(resp.status(), 303);
    let cb = location(&resp);
    let amr = amr_of(&portal_b, &cb, &nonce, verifier).await;
    assert_eq!(amr, vec!["pwd".to_string(), "otp".into(), "mfa".into()]);

    // Five wrong codes lock the second step.
    let b3 = browser();
    let (_, next, _, _) = start(&b3, &portal_b).await;
    let html = b3.get(format!("{base}{next}")).send().await.expect("login").text().await.expect("html");
    let login = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "zhaolei".to_string()),
        ("password", PW.to_string()),
    ];
    let resp = b3.post(format!("{base}/realms/test/login")).form(&login).send().await.expect("login");
    let second = location(&resp);
    let mut last = 0;
    for _ in 0..5 {
        last = second_step(&b3, &base, &second, "000001").await.status().as_u16();
    }
    assert_eq!(last, 429, "locked after five wrong codes");
    let resp = second_step(&b3, &base, &second, &totp_code(&secret, now())).await;
    assert_eq!(resp.status(), 429, "even the right code waits out the lock");

    let kinds = audit_kinds(&server).await;
    for k in ["credential.added", "signin.stepup", "signin.totp"] {
        assert!(kinds.iter().any(|x| x == k), "{k} audited: {kinds:?}");
    }
    server.stop().await;
}

async fn audit_kinds(server: &TestServer) -> Vec<String> {
    let all = civid::store::audit::list(&server.state.db, "test", None, 1000).await.expect("audit");
    all.into_iter().map(|e| e.kind).collect()
}
