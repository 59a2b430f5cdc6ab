//! The account centre: a citizen manages their own account — sessions,
//! portals, password, phone, their data, signing out and cancelling — with
//! nothing needing an operator.
use std::sync::Arc;

use civid::account::identifiers::Identifier;
use civid::account::users::{NewUser, Profile, create};
use civid::store::audit as audit_store;
use openidconnect::core::{CoreAuthenticationFlow, CoreUserInfoClaims};
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, Scope};
use reqwest::cookie::{CookieStore, Jar};

use crate::harness::{Oidc, TestServer, browser, hidden, http, location, query_param, relying_party};
use crate::steps::sign_in;

const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                              Chrome/120.0.0.0 Mobile Safari/537.36";
const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                          (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

/// A browser with a user agent and a cookie jar the test can read.
struct Device {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

fn device(ua: &str) -> Device {
    let _ = browser(); // installs the crypto provider
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    Device { client, jar }
}

impl Device {
    fn cookie(&self, server: &TestServer, name: &str) -> Option<String> {
        let url = url::Url::parse(&server.url).expect("url");
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn account_url(server: &TestServer) -> String {
    format!("{}/realms/test/account", server.url)
}

/// Signs in to the account centre; returns the account page.
async fn open_account(server: &TestServer, b: &reqwest::Client, who: &str, pw: &str) -> String {
    let back = sign_in(b, &account_url(server), who, pw).await;
    assert_eq!(back, "/realms/test/account", "after sign-in the account centre again");
    page(server, b).await
}

async fn page(server: &TestServer, b: &reqwest::Client) -> String {
    let resp = b.get(account_url(server)).send().await.expect("account page");
    assert_eq!(resp.status(), 200, "account page");
    assert_eq!(resp.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    markup(resp).await
}

/// The page a redirect leads to.
async fn follow(server: &TestServer, b: &reqwest::Client, resp: &reqwest::Response) -> String {
    let next = b.get(format!("{}{}", server.url, location(resp))).send().await.expect("follow");
    assert_eq!(next.status(), 200);
    markup(next).await
}

/// A page's markup with the escaped slashes of attribute values restored.
async fn markup(resp: reqwest::Response) -> String {
    resp.text().await.expect("html").replace("&#x2f;", "/")
}

/// The CSRF token of the form posting to `/realms/test/account{path}`.
fn csrf_of(html: &str, path: &str) -> String {
    let needle = format!("action=\"/realms/test/account{path}\"");
    let form = html.split(&needle).nth(1).unwrap_or_else(|| panic!("no form for {path}: {html}"));
    hidden(form, "csrf")
}

async fn post(
    server: &TestServer,
    b: &reqwest::Client,
    html: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(String, String)> = vec![("csrf".into(), csrf_of(html, path))];
    form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    b.post(format!("{}{path}", account_url(server))).form(&form).send().await.expect("post")
}

/// Signs in to portal-a (not first party) in `b`; returns its tokens.
async fn portal_tokens(
    server: &TestServer,
    rp: &Oidc,
    b: &reqwest::Client,
    who: &str,
    pw: &str,
) -> openidconnect::core::CoreTokenResponse {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(b, url.as_str(), who, pw).await;
    assert!(callback.starts_with("https://a.example.test/cb?"), "{callback}");
    let _ = server;
    rp.exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange")
}

/// Redeems the refresh token once (it rotates): the new tokens, if it worked.
async fn refresh(
    rp: &Oidc,
    tokens: &openidconnect::core::CoreTokenResponse,
) -> Option<openidconnect::core::CoreTokenResponse> {
    let rt = tokens.refresh_token().expect("refresh token");
    rp.exchange_refresh_token(rt).expect("refresh").request_async(&http()).await.ok()
}

async fn refresh_works(rp: &Oidc, tokens: &openidconnect::core::CoreTokenResponse) -> bool {
    refresh(rp, tokens).await.is_some()
}

async fn audited(server: &TestServer, kind: &str, actor: &str) -> Vec<serde_json::Value> {
    audit_store::list(&server.state.db, "test", Some(kind), 100)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.actor.as_deref() == Some(actor))
        .map(|e| serde_json::from_str(&e.detail).unwrap_or_default())
        .collect()
}

/// Whether the browser's session cookie still opens the account centre.
async fn signed_in(server: &TestServer, b: &reqwest::Client) -> bool {
    let resp = b.get(account_url(server)).send().await.expect("account");
    match resp.status().as_u16() {
        200 => true,
        303 => {
            assert!(location(&resp).starts_with("/realms/test/login?tx="), "{}", location(&resp));
            false
        }
        s => panic!("account page answered {s}"),
    }
}

#[tokio::test]
async fn account_anonymous_sign_in_back_csrf_and_sign_out() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct1", "correct horse battery").await;
    let b = browser();
    let resp = b.get(account_url(&server)).send().await.expect("account");
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/realms/test/login?tx="), "{}", location(&resp));
    let html = open_account(&server, &b, "acct1", "correct horse battery").await;
    assert!(html.contains("账户中心"), "{html}");
    assert!(html.contains("acct1@example.cn") && html.contains("测试 acct1"), "own data shown");
    assert!(html.contains("<form id=\"signout\" method=\"post\" action=\"/realms/test/account/logout\">"));
    assert!(html.contains("<section id=\"factors\" aria-labelledby=\"factors-h\">"), "ways to sign in");
    assert!(html.contains("id=\"passkey-add\""), "a passkey can be added");

    // English on request, and kept in the forms.
    let en = b.get(format!("{}?ui_locales=en", account_url(&server))).send().await.expect("en");
    let en = markup(en).await;
    assert!(en.contains("Your account") && en.contains("action=\"/realms/test/account/logout?ui_locales=en\""));

    // The display name is the person's own to change.
    let resp = post(&server, &b, &html, "/profile", &[("name", "李小明")]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/realms/test/account?done=profile");
    let html = follow(&server, &b, &resp).await;
    assert!(html.contains("李小明") && html.contains("个人信息已保存"), "{html}");
    assert_eq!(audited(&server, "account.profile_changed", &uid).await.len(), 1);

    // Forms without their CSRF token are refused.
    for path in ["/logout", "/password", "/profile", "/sessions/end-others", "/export"] {
        let resp = b
            .post(format!("{}{path}", account_url(&server)))
            .form(&[("name", "x"), ("csrf", "forged")])
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 403, "{path}");
        let resp = b.post(format!("{}{path}", account_url(&server))).form(&[("name", "x")]).send().await.expect("post");
        assert_eq!(resp.status(), 403, "{path} without a token");
    }
    assert!(signed_in(&server, &b).await, "still signed in");

    let resp = post(&server, &b, &html, "/logout", &[]).await;
    assert_eq!(resp.status(), 200);
    let set_cookie: Vec<String> =
        resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    assert!(set_cookie.iter().any(|c| c.starts_with("civid-test=;") && c.contains("Max-Age=0")), "{set_cookie:?}");
    let out = markup(resp).await;
    assert!(out.contains("您已退出登录") && out.contains("href=\"/realms/test/account\""), "{out}");
    assert!(!signed_in(&server, &b).await, "signed out");
    let ended = audited(&server, "session.ended", &uid).await;
    assert!(ended.iter().any(|d| d["reason"] == "logout"), "{ended:?}");
    server.stop().await;
}

#[tokio::test]
async fn account_lists_sessions_and_ends_another_device() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct2", "correct horse battery").await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;
    // The phone signs in to a portal, the laptop... is a Chrome on Android.
    let phone = device(SAFARI_IOS);
    let tokens = portal_tokens(&server, &rp, &phone.client, "acct2", "correct horse battery").await;
    let other = device(CHROME_ANDROID);
    let html = open_account(&server, &other.client, "acct2", "correct horse battery").await;
    assert!(html.contains("Chrome · Android"), "{html}");
    assert!(html.contains("Safari · iOS"), "{html}");
    assert!(html.contains("IP 127.0.0.1"), "{html}");
    let this_device = html.split("Chrome · Android").nth(1).expect("this device").split("</p>").next().unwrap_or("");
    assert!(this_device.contains("本设备"), "this device marked: {this_device}");
    let sid = hidden(&html, "sid");
    assert!(!sid.is_empty(), "the other session can be ended");
    let dead_cookie = phone.cookie(&server, "civid-test").expect("phone's session cookie");

    let tokens = refresh(&rp, &tokens).await.expect("refresh works before");
    let resp = post(&server, &other.client, &html, "/sessions/end", &[("sid", &sid)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/realms/test/account?done=session");
    assert!(!signed_in(&server, &phone.client).await, "the phone's cookie is dead");
    let replay = browser();
    let resp = replay
        .get(account_url(&server))
        .header("cookie", format!("civid-test={dead_cookie}"))
        .send()
        .await
        .expect("replay");
    assert_eq!(resp.status(), 303, "the ended session's cookie opens nothing");
    let rt = tokens.refresh_token().expect("refresh token").secret().clone();
    let hash = civid::crypto::random::sha256_b64(rt.as_bytes());
    let row = civid::store::grants::refresh_by_hash(&server.state.db, "test", &hash).await.expect("db").expect("row");
    assert!(row.revoked_at.is_some(), "the ended session's refresh token is revoked");
    assert!(!refresh_works(&rp, &tokens).await, "its refresh token fails");
    assert!(signed_in(&server, &other.client).await, "this device stays signed in");
    let html = page(&server, &other.client).await;
    assert!(!html.contains("Safari · iOS"), "the ended session is gone from the list");
    let ended = audited(&server, "session.ended", &uid).await;
    assert!(ended.iter().any(|d| d["sid"] == sid.as_str()), "{ended:?}");

    // End all others.
    let third = device(SAFARI_IOS);
    open_account(&server, &third.client, "acct2", "correct horse battery").await;
    let html = page(&server, &other.client).await;
    let resp = post(&server, &other.client, &html, "/sessions/end-others", &[]).await;
    assert_eq!(location(&resp), "/realms/test/account?done=sessions");
    assert!(!signed_in(&server, &third.client).await);
    assert!(signed_in(&server, &other.client).await);
    server.stop().await;
}

#[tokio::test]
async fn account_withdrawing_a_portal_revokes_its_tokens_and_asks_consent_again() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct3", "correct horse battery").await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;
    let b = browser();
    let tokens = portal_tokens(&server, &rp, &b, "acct3", "correct horse battery").await;
    let with_portal = page(&server, &b).await;
    let html = with_portal.clone();
    assert!(html.contains("门户甲"), "the portal is listed: {html}");
    let grant = hidden(&html, "grant");
    let resp = post(&server, &b, &html, "/portals/withdraw", &[("grant", &grant)]).await;
    assert_eq!(location(&resp), "/realms/test/account?done=withdrawn");
    let html = page(&server, &b).await;
    assert!(!html.contains("门户甲"), "no longer listed");
    assert!(!refresh_works(&rp, &tokens).await, "the refresh token is revoked");
    let info: Result<CoreUserInfoClaims, _> =
        rp.user_info(tokens.access_token().clone(), None).expect("userinfo").request_async(&http()).await;
    assert!(info.is_err(), "the access token no longer passes userinfo");
    // Back at the portal, the person is asked again.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let resp = b.get(url.as_str()).send().await.expect("authorize");
    assert!(location(&resp).starts_with("/realms/test/consent?tx="), "{}", location(&resp));
    let withdrawn = audit_store::list(&server.state.db, "test", Some("consent.withdrawn"), 10).await.expect("audit");
    assert!(
        withdrawn
            .iter()
            .any(|e| e.actor.as_deref() == Some(uid.as_str()) && e.client_id.as_deref() == Some("portal-a"))
    );
    // Someone else's grant cannot be withdrawn from this account.
    let other = server.user("test", "acct3b", "correct horse battery").await;
    let b2 = browser();
    portal_tokens(&server, &rp, &b2, "acct3b", "correct horse battery").await;
    let their_grant = hidden(&page(&server, &b2).await, "grant");
    let resp = post(&server, &b, &with_portal, "/portals/withdraw", &[("grant", &their_grant)]).await;
    assert_eq!(resp.status(), 303);
    assert!(page(&server, &b2).await.contains("门户甲"), "the other person's grant stands");
    assert!(audited(&server, "consent.withdrawn", &other).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn account_password_change_needs_the_current_one_and_ends_other_sessions() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct4", "correct horse battery").await;
    let b = device(CHROME_ANDROID);
    let other = device(SAFARI_IOS);
    let html = open_account(&server, &b.client, "acct4", "correct horse battery").await;
    open_account(&server, &other.client, "acct4", "correct horse battery").await;
    let resp = post(
        &server,
        &b.client,
        &html,
        "/password",
        &[("current", "wrong password!"), ("password", "new secret words"), ("password2", "new secret words")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let page_html = resp.text().await.expect("html");
    assert!(page_html.contains("aria-describedby=\"current-error\"") && page_html.contains("当前密码不正确"));
    let resp = post(
        &server,
        &b.client,
        &html,
        "/password",
        &[("current", "correct horse battery"), ("password", "short"), ("password2", "short")],
    )
    .await;
    assert_eq!(resp.status(), 400, "a too short password is refused");
    assert!(resp.text().await.expect("html").contains("id=\"password-error\""));
    assert!(signed_in(&server, &other.client).await, "nothing changed yet");

    // Signed in too long ago: a fresh sign-in first.
    let cookie = b.cookie(&server, "civid-test").expect("cookie");
    let hash = civid::crypto::random::sha256_b64(cookie.as_bytes());
    backdate_sign_in(&server, &hash).await;
    let resp = post(
        &server,
        &b.client,
        &html,
        "/password",
        &[("current", "correct horse battery"), ("password", "new secret words"), ("password2", "new secret words")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/realms/test/login?tx="), "fresh sign-in: {}", location(&resp));
    let login = b.client.get(format!("{}{}", server.url, location(&resp))).send().await.expect("login");
    let login = login.text().await.expect("html");
    let resp = b
        .client
        .post(format!("{}/realms/test/login", server.url))
        .form(&[
            ("csrf", hidden(&login, "csrf")),
            ("tx", hidden(&login, "tx")),
            ("identifier", "acct4".into()),
            ("password", "correct horse battery".into()),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(location(&resp), "/realms/test/account");
    let html = page(&server, &b.client).await;
    let resp = post(
        &server,
        &b.client,
        &html,
        "/password",
        &[("current", "correct horse battery"), ("password", "new secret words"), ("password2", "new secret words")],
    )
    .await;
    assert_eq!(location(&resp), "/realms/test/account?done=password");
    assert!(!signed_in(&server, &other.client).await, "other sessions ended");
    assert!(signed_in(&server, &b.client).await, "this one stays");
    let fresh = browser();
    open_account(&server, &fresh, "acct4", "new secret words").await;
    let changed = audited(&server, "account.password_changed", &uid).await;
    assert!(changed.iter().any(|d| d["sessions_ended"].as_u64() >= Some(1)), "{changed:?}");
    server.stop().await;
}

async fn backdate_sign_in(server: &TestServer, token_hash: &str) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "UPDATE sso_sessions SET auth_time = auth_time - 3600 WHERE token_hash = $1"
        }
        _ => "UPDATE sso_sessions SET auth_time = auth_time - 3600 WHERE token_hash = ?",
    };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, [token_hash.into()])).await.expect("backdate");
    server.state.eph.delete(&format!("sess:test:{token_hash}")).await.expect("drop cache");
}

fn code_in(body: &str) -> Option<String> {
    let bytes = body.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|i| {
        let run = &body.get(i..i + 6)?;
        let before = i.checked_sub(1).and_then(|j| bytes.get(j)).is_some_and(u8::is_ascii_digit);
        let after = bytes.get(i + 6).is_some_and(u8::is_ascii_digit);
        (run.bytes().all(|b| b.is_ascii_digit()) && !before && !after).then(|| run.to_string())
    })
}

fn last_sms_to(server: &TestServer, to: &str) -> Option<String> {
    server.state.sms.outbox_messages().into_iter().rev().find(|m| m.to == to).map(|m| m.body)
}

#[tokio::test]
async fn account_phone_change_is_proven_by_a_code_to_the_new_number() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct5", "correct horse battery").await;
    let holder = create(
        &server.state.db,
        &server.state.secrets,
        "test",
        NewUser {
            identifiers: vec![Identifier::phone("13900139005").expect("phone")],
            password: Some("another long password".into()),
            profile: Profile::default(),
        },
    )
    .await
    .expect("holder");
    let b = browser();
    let html = open_account(&server, &b, "acct5", "correct horse battery").await;

    let resp = post(&server, &b, &html, "/phone", &[("phone", "12345")]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("html").contains("id=\"phone-error\""));

    // A number another account holds: the same answer, and its holder is told.
    let resp = post(&server, &b, &html, "/phone", &[("phone", "139 0013 9005")]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/realms/test/account/verify?kind=phone");
    let notice = last_sms_to(&server, "+8613900139005").expect("the holder is told");
    assert!(code_in(&notice).is_none(), "no code to a taken number: {notice}");
    let verify = b.get(format!("{}/verify?kind=phone", account_url(&server))).send().await.expect("verify");
    let verify = verify.text().await.expect("html");
    assert!(verify.contains("+86139****9005"), "{verify}");
    for guess in ["000000", "123456"] {
        let resp = b
            .post(format!("{}/verify", account_url(&server)))
            .form(&[("csrf", hidden(&verify, "csrf")), ("kind", "phone".into()), ("code", guess.into())])
            .send()
            .await
            .expect("verify");
        assert_eq!(resp.status(), 400);
    }
    assert!(!page(&server, &b).await.contains("+8613900139005"), "not taken over");

    // A free number: the code goes there.
    let resp = post(&server, &b, &html, "/phone", &[("phone", "13800138005")]).await;
    assert_eq!(location(&resp), "/realms/test/account/verify?kind=phone");
    let code = code_in(&last_sms_to(&server, "+8613800138005").expect("code sent")).expect("a code");
    let verify = b.get(format!("{}/verify?kind=phone", account_url(&server))).send().await.expect("verify");
    let verify = verify.text().await.expect("html");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let resp = b
        .post(format!("{}/verify", account_url(&server)))
        .form(&[("csrf", hidden(&verify, "csrf")), ("kind", "phone".into()), ("code", wrong.into())])
        .send()
        .await
        .expect("verify");
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("html").contains("aria-describedby=\"code-error\""));
    let resp = b
        .post(format!("{}/verify", account_url(&server)))
        .form(&[("csrf", hidden(&verify, "csrf")), ("kind", "phone".into()), ("code", code)])
        .send()
        .await
        .expect("verify");
    assert_eq!(location(&resp), "/realms/test/account?done=phone");
    let html = follow(&server, &b, &resp).await;
    assert!(html.contains("+8613800138005") && html.contains("手机号码已更换"), "{html}");
    // The new number signs in.
    open_account(&server, &browser(), "13800138005", "correct horse battery").await;

    // Its own number is no change.
    let resp = post(&server, &b, &html, "/phone", &[("phone", "13800138005")]).await;
    assert_eq!(resp.status(), 400);
    assert!(markup(resp).await.contains("这已是您账户的手机号码"));

    // Changing again tells the old number.
    let resp = post(&server, &b, &html, "/phone", &[("phone", "13700137005")]).await;
    assert_eq!(location(&resp), "/realms/test/account/verify?kind=phone");
    let code = code_in(&last_sms_to(&server, "+8613700137005").expect("code")).expect("a code");
    let verify = b.get(format!("{}/verify?kind=phone", account_url(&server))).send().await.expect("verify");
    let verify = verify.text().await.expect("html");
    let resp = b
        .post(format!("{}/verify", account_url(&server)))
        .form(&[("csrf", hidden(&verify, "csrf")), ("kind", "phone".into()), ("code", code)])
        .send()
        .await
        .expect("verify");
    assert_eq!(location(&resp), "/realms/test/account?done=phone");
    let told = last_sms_to(&server, "+8613800138005").expect("old number told");
    assert!(told.contains("+86137****7005") && code_in(&told).is_none(), "{told}");
    let changes = audited(&server, "account.phone_changed", &uid).await;
    assert_eq!(changes.iter().filter(|d| d["to"].is_string()).count(), 2, "{changes:?}");
    assert!(!changes.iter().any(|d| d.to_string().contains("13800138005")), "audit holds masked numbers");
    assert!(audited(&server, "account.phone_changed", &holder).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn account_data_download_has_this_person_only() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct6", "correct horse battery").await;
    let other = server.user("test", "acct6other", "correct horse battery").await;
    open_account(&server, &browser(), "acct6other", "correct horse battery").await;
    let b = browser();
    let html = open_account(&server, &b, "acct6", "correct horse battery").await;
    let resp = post(&server, &b, &html, "/export", &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("attachment"))
    );
    let text = resp.text().await.expect("json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(doc["account"]["id"], uid.as_str());
    assert_eq!(doc["profile"]["name"], "测试 acct6");
    let idents = doc["identifiers"].as_array().expect("identifiers");
    assert!(idents.iter().any(|i| i["value"] == "acct6@example.cn"));
    assert!(!doc["sessions"].as_array().expect("sessions").is_empty());
    assert!(doc["credentials"].is_array());
    let events = doc["audit_events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["kind"] == "signin.password"), "{events:?}");
    assert!(!text.contains("acct6other") && !text.contains(&other), "nobody else's data");
    assert_eq!(audited(&server, "account.data_exported", &uid).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn account_cancellation_then_purge_frees_the_number() {
    let server = TestServer::start().await;
    let s = &server.state;
    let phone = Identifier::phone("13600136006").expect("phone");
    let uid = create(
        &s.db,
        &s.secrets,
        "test",
        NewUser {
            identifiers: vec![phone.clone(), Identifier::username("acct7").expect("username")],
            password: Some("correct horse battery".into()),
            profile: Profile { name: Some("注销者".into()) },
        },
    )
    .await
    .expect("user");
    server.user("test", "acct7known", "correct horse battery").await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;
    let b = browser();
    let tokens = portal_tokens(&server, &rp, &b, "acct7", "correct horse battery").await;
    let html = page(&server, &b).await;
    assert!(html.contains("href=\"/realms/test/account/cancel\""));
    let confirm = b.get(format!("{}/cancel", account_url(&server))).send().await.expect("cancel page");
    assert_eq!(confirm.status(), 200);
    let confirm = confirm.text().await.expect("html");
    assert!(confirm.contains("30") && confirm.contains("id=\"confirm\""), "{confirm}");
    let cancel = |fields: Vec<(&'static str, &'static str)>| {
        let mut form: Vec<(String, String)> = vec![("csrf".into(), hidden(&confirm, "csrf"))];
        form.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        b.post(format!("{}/cancel", account_url(&server))).form(&form).send()
    };
    let resp = cancel(vec![("password", "correct horse battery")]).await.expect("cancel");
    assert_eq!(resp.status(), 400, "the checkbox is needed");
    assert!(resp.text().await.expect("html").contains("aria-describedby=\"confirm-error\""));
    let resp = cancel(vec![("password", "wrong one"), ("confirm", "yes")]).await.expect("cancel");
    assert_eq!(resp.status(), 400, "the password is needed");
    assert!(signed_in(&server, &b).await);
    let resp = cancel(vec![("password", "correct horse battery"), ("confirm", "yes")]).await.expect("cancel");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("html").contains("账户已注销"));
    assert!(!signed_in(&server, &b).await, "signed out");
    assert!(!refresh_works(&rp, &tokens).await, "grants and refresh tokens revoked");
    let row = civid::store::users::get(&s.db, "test", &uid).await.expect("db").expect("row");
    assert_eq!(row.status, "cancelled");
    let days = 30 * 86_400;
    assert!(row.purge_after.is_some_and(|p| (p - civid::store::now() - days).abs() < 60));

    // Signing in fails exactly as a wrong password does.
    let alert =
        |html: &str| html.split("role=\"alert\"").nth(1).and_then(|s| s.split("</div>").next()).map(str::to_string);
    let attempt = |who: &'static str, pw: &'static str| {
        let server = &server;
        async move {
            let b = browser();
            let resp = b.get(account_url(server)).send().await.expect("account");
            let login = b.get(format!("{}{}", server.url, location(&resp))).send().await.expect("login");
            let login = login.text().await.expect("html");
            let resp = b
                .post(format!("{}/realms/test/login", server.url))
                .form(&[
                    ("csrf", hidden(&login, "csrf")),
                    ("tx", hidden(&login, "tx")),
                    ("identifier", who.into()),
                    ("password", pw.into()),
                ])
                .send()
                .await
                .expect("login");
            (resp.status().as_u16(), resp.text().await.expect("html"))
        }
    };
    let (st_cancelled, cancelled) = attempt("13600136006", "correct horse battery").await;
    let (st_wrong, wrong) = attempt("acct7known", "not the password").await;
    assert_eq!(st_cancelled, st_wrong);
    assert!(alert(&cancelled).is_some());
    assert_eq!(alert(&cancelled), alert(&wrong), "same message as a wrong password");

    // The number is still taken: registering it sends a notice, not a code.
    let loc = civid::web::Locale::ZhCn;
    let index = phone.blind_index(&s.secrets.sealer);
    civid::account::registration::start(s, "test", &phone, loc, None).await.expect("register");
    let notice = last_sms_to(&server, "+8613600136006").expect("notice");
    assert!(code_in(&notice).is_none(), "still taken before the purge: {notice}");
    // Recovery treats it as unknown: nothing is sent.
    let before = s.sms.outbox_messages().len();
    civid::account::recovery::start(s, "test", &phone, loc, None).await.expect("recover");
    assert_eq!(s.sms.outbox_messages().len(), before, "no recovery code for a cancelled account");

    // Not yet due: nothing purged. Past the retention: purged.
    assert_eq!(civid::account::selfservice::purge_due(s, civid::store::now()).await.expect("purge"), 0);
    let later = civid::store::now() + days + 3600;
    assert_eq!(civid::account::selfservice::purge_due(s, later).await.expect("purge"), 1);
    let row = civid::store::users::get(&s.db, "test", &uid).await.expect("db").expect("row kept");
    assert_eq!(row.status, "purged");
    assert!(row.profile_sealed.is_none() && row.password_hash.is_none());
    assert!(civid::store::users::identifiers_of(&s.db, "test", &uid).await.expect("db").is_empty());

    // Now the number registers a new account, with a new id.
    s.eph.delete(&format!("otp-resend:test:register:{index}")).await.expect("lift resend wait");
    civid::account::registration::start(s, "test", &phone, loc, None).await.expect("register");
    let code = code_in(&last_sms_to(&server, "+8613600136006").expect("code")).expect("a code now");
    let done = civid::account::registration::complete(
        s,
        "test",
        &civid::realm::model::PasswordPolicy::default(),
        &phone,
        &code,
        Some(("a brand new password", "a brand new password")),
        None,
    )
    .await
    .expect("complete");
    match done {
        civid::account::registration::Completed::Created(id) => assert_ne!(id, uid, "ids are never reused"),
        _ => panic!("the number should register after the purge"),
    }
    assert_eq!(
        audited(&server, "account.cancelled", &uid).await.iter().filter(|d| d["purge_after"].is_i64()).count(),
        1
    );
    assert_eq!(audited(&server, "account.purged", &uid).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn account_current_password_guesses_are_limited() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct8", "correct horse battery").await;
    let b = browser();
    let html = open_account(&server, &b, "acct8", "correct horse battery").await;
    let change = [("password", "new secret words"), ("password2", "new secret words")];
    for i in 1..=5 {
        let mut fields = vec![("current", "a wrong guess")];
        fields.extend(change);
        let resp = post(&server, &b, &html, "/password", &fields).await;
        assert_eq!(resp.status(), 400);
        let text = resp.text().await.expect("html");
        assert_eq!(text.contains("密码错误次数过多"), i == 5, "guess {i}");
    }
    let mut fields = vec![("current", "correct horse battery")];
    fields.extend(change);
    let resp = post(&server, &b, &html, "/password", &fields).await;
    assert_eq!(resp.status(), 400, "even the right password waits out the lock");
    assert!(resp.text().await.expect("html").contains("密码错误次数过多"));
    let failures = audited(&server, "account.password_changed", &uid).await;
    assert_eq!(failures.len(), 6);
    server.stop().await;
}

#[tokio::test]
async fn account_email_change_is_proven_by_a_code_to_the_new_address() {
    let server = TestServer::start().await;
    let uid = server.user("test", "acct9", "correct horse battery").await;
    server.user("test", "acct9taken", "correct horse battery").await;
    let b = browser();
    let html = open_account(&server, &b, "acct9", "correct horse battery").await;
    let last_mail =
        |to: &str| server.state.email.outbox_messages().into_iter().rev().find(|m| m.to == to).map(|m| m.body);
    // Taken by another account: the same answer, its holder is told, no code.
    let resp = post(&server, &b, &html, "/email", &[("email", "ACCT9TAKEN@example.cn")]).await;
    assert_eq!(location(&resp), "/realms/test/account/verify?kind=email");
    let notice = last_mail("acct9taken@example.cn").expect("holder told");
    assert!(code_in(&notice).is_none(), "{notice}");

    let resp = post(&server, &b, &html, "/email", &[("email", "li.ming.new@example.cn")]).await;
    assert_eq!(location(&resp), "/realms/test/account/verify?kind=email");
    let code = code_in(&last_mail("li.ming.new@example.cn").expect("code mailed")).expect("a code");
    let verify = b.get(format!("{}/verify?kind=email", account_url(&server))).send().await.expect("verify");
    let verify = verify.text().await.expect("html");
    let resp = b
        .post(format!("{}/verify", account_url(&server)))
        .form(&[("csrf", hidden(&verify, "csrf")), ("kind", "email".into()), ("code", code)])
        .send()
        .await
        .expect("verify");
    assert_eq!(location(&resp), "/realms/test/account?done=email");
    let html = follow(&server, &b, &resp).await;
    assert!(html.contains("li.ming.new@example.cn") && !html.contains("acct9@example.cn"), "{html}");
    let told = last_mail("acct9@example.cn").expect("old address told");
    assert!(told.contains("l***@example.cn"), "{told}");
    assert_eq!(audited(&server, "account.email_changed", &uid).await.len(), 1);
    server.stop().await;
}
