//! Steps a person takes in the browser, for tests that read like the story.
#![allow(dead_code)]

use crate::harness::{hidden, location};

/// Follows an authorization request through sign-in and consent, as a
/// person would; returns the final redirect to the portal.
pub async fn sign_in(browser: &reqwest::Client, auth_url: &str, identifier: &str, password: &str) -> String {
    let base = base_of(auth_url);
    try_sign_in_across(browser, auth_url, identifier, password, || base.clone()).await.unwrap_or_else(|e| panic!("{e}"))
}

/// As `sign_in`, but each step after the authorization request goes to the
/// server `next` names (nodes behind a load balancer); a step that does not
/// answer as expected (a 503 while storage is away) is an error, not a panic.
pub async fn try_sign_in_across(
    browser: &reqwest::Client,
    auth_url: &str,
    identifier: &str,
    password: &str,
    mut next: impl FnMut() -> String,
) -> Result<String, String> {
    let send = |r: reqwest::RequestBuilder, what: &'static str| async move {
        r.send().await.map_err(|e| format!("{what}: {e}"))
    };
    let resp = send(browser.get(auth_url), "authorize").await?;
    // `/realms/{realm}`, of the authorization request (or of the account
    // centre, which sends a signed-out browser to sign in).
    let realm_path = url::Url::parse(auth_url)
        .ok()
        .map(|u| u.path().split('/').take(3).collect::<Vec<_>>().join("/"))
        .filter(|p| p.starts_with("/realms/"))
        .ok_or_else(|| format!("not a realm's address: {auth_url}"))?;
    let html = match resp.status().as_u16() {
        // Without a session: the sign-in page itself.
        200 => resp.text().await.map_err(|e| format!("sign-in page: {e}"))?,
        // With one that must sign in again (prompt=login, max_age): the
        // sign-in page at its own address.
        303 if location(&resp).starts_with('/') => {
            let page = send(browser.get(format!("{}{}", next(), location(&resp))), "login page").await?;
            if page.status() != 200 {
                return Err(format!("login page: {} {}", page.status(), page.text().await.unwrap_or_default()));
            }
            page.text().await.map_err(|e| format!("login page: {e}"))?
        }
        303 => return Ok(location(&resp)), // already signed in
        _ => {
            let status = resp.status();
            return Err(format!("authorize: {status} {}", resp.text().await.unwrap_or_default()));
        }
    };
    if !html.contains("name=\"password\"") {
        return Err(format!("authorize did not answer with the sign-in page: {html}"));
    }
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", identifier.to_string()),
        ("password", password.to_string()),
    ];
    let resp = send(browser.post(format!("{}{realm_path}/login", next())).form(&form), "login").await?;
    if resp.status() != 303 {
        return Err(format!("login should succeed: {} {}", resp.status(), resp.text().await.unwrap_or_default()));
    }
    let to = location(&resp);
    if to.contains("/consent?") {
        return try_consent_across(browser, &to, true, next).await;
    }
    Ok(to)
}

/// Answers the consent page; returns the redirect to the portal.
pub async fn consent(browser: &reqwest::Client, base: &str, consent_path: &str, allow: bool) -> String {
    try_consent_across(browser, consent_path, allow, || base.to_string()).await.unwrap_or_else(|e| panic!("{e}"))
}

/// As `consent`, the page and the answer each sent to the server `next` names.
pub async fn try_consent_across(
    browser: &reqwest::Client,
    consent_path: &str,
    allow: bool,
    mut next: impl FnMut() -> String,
) -> Result<String, String> {
    let page =
        browser.get(format!("{}{consent_path}", next())).send().await.map_err(|e| format!("consent page: {e}"))?;
    if page.status() != 200 {
        return Err(format!("consent page: {} {}", page.status(), page.text().await.unwrap_or_default()));
    }
    let html = page.text().await.map_err(|e| format!("consent page: {e}"))?;
    let action = consent_path.split('?').next().unwrap_or_default();
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("decision", if allow { "allow" } else { "deny" }.to_string()),
    ];
    let resp =
        browser.post(format!("{}{action}", next())).form(&form).send().await.map_err(|e| format!("consent: {e}"))?;
    if resp.status() != 303 {
        return Err(format!("consent: {} {}", resp.status(), resp.text().await.unwrap_or_default()));
    }
    Ok(location(&resp))
}

/// The authorization request of a browser without a session is answered
/// with the sign-in page itself; the same page is served again at
/// `{realm}/login?tx=…`. Returns that path.
pub async fn login_path(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200, "authorize answers with the sign-in page");
    let realm_path = resp.url().path().rsplit_once("/authorize").map(|(p, _)| p.to_string()).expect("authorize url");
    let html = resp.text().await.expect("sign-in page");
    assert!(html.contains("name=\"password\""), "the sign-in page: {html}");
    format!("{realm_path}/login?tx={}", crate::harness::hidden(&html, "tx"))
}

pub fn base_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("url");
    format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
        + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
}

/// An authorization request of `client` at the realm `issuer` (redirect
/// `https://{host}/cb`, scope openid, S256 PKCE): (URL, code verifier).
pub fn pkce_request(issuer: &str, client: &str, host: &str) -> (String, String) {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let url = format!(
        "{issuer}/authorize?response_type=code&client_id={client}&redirect_uri=https%3A%2F%2F{host}%2Fcb\
         &scope=openid&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256"
    );
    (url, verifier)
}
