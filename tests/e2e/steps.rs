//! Steps a person takes in the browser, for tests that read like the story.
#![allow(dead_code)]

use crate::harness::{hidden, location};

/// Follows an authorization request through sign-in and consent, as a
/// person would; returns the final redirect to the portal.
pub async fn sign_in(browser: &reqwest::Client, auth_url: &str, identifier: &str, password: &str) -> String {
    let base = base_of(auth_url);
    let resp = browser.get(auth_url).send().await.expect("authorize");
    assert_eq!(resp.status(), 303, "authorize should redirect: {}", resp.text().await.unwrap_or_default());
    let next = location(&resp);
    if !next.starts_with('/') {
        return next; // already signed in
    }
    let page = browser.get(format!("{base}{next}")).send().await.expect("login page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", identifier.to_string()),
        ("password", password.to_string()),
    ];
    let realm_path = next.split("/login").next().unwrap_or_default().to_string();
    let resp = browser.post(format!("{base}{realm_path}/login")).form(&form).send().await.expect("login");
    assert_eq!(resp.status(), 303, "login should succeed: {}", resp.text().await.unwrap_or_default());
    let next = location(&resp);
    if next.contains("/consent?") {
        return consent(browser, &base, &next, true).await;
    }
    next
}

/// Answers the consent page; returns the redirect to the portal.
pub async fn consent(browser: &reqwest::Client, base: &str, consent_path: &str, allow: bool) -> String {
    let page = browser.get(format!("{base}{consent_path}")).send().await.expect("consent page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let action = consent_path.split('?').next().unwrap_or_default();
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("decision", if allow { "allow" } else { "deny" }.to_string()),
    ];
    let resp = browser.post(format!("{base}{action}")).form(&form).send().await.expect("consent");
    assert_eq!(resp.status(), 303);
    location(&resp)
}

pub fn base_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("url");
    format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
        + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
}
