//! Acting for an enterprise: a person who represents or acts for one is
//! asked "myself or which enterprise" when they sign in to a portal allowed
//! scope `enterprise` (asked for or not); the choice rides on the SSO
//! session to other such portals; tokens name the enterprise next to the
//! person; the delegation is checked again at every issuance. Operators see
//! enterprises and their delegations, masked, and unmasked only as
//! pii-reader (audited).
use serde_json::Value;

use crate::admin::{admin_with, api, call};
use crate::harness::{TestServer, browser, hidden, location, query_param};
use crate::realname::{AGENT_ID, ID, PW, USCC, registry_enterprise, registry_row};

const ORG: &str = "示例科技有限公司";

pub(crate) struct Setup {
    pub rep: String,
    pub agent: String,
    /// The enterprise's id (blind index of its credit code).
    pub index: String,
    pub delegation: String,
}

/// A representative and an agent, both L3; the representative claimed the
/// enterprise and appointed the agent (经办人, 30 days).
pub(crate) async fn setup(server: &TestServer) -> Setup {
    let s = &server.state;
    let realm = s.realms.get("test").expect("realm");
    let rep = server.user("test", "wangfang", PW).await;
    let agent = server.user("test", "lisi", PW).await;
    registry_row(server, ID, "王芳", "alive").await;
    registry_row(server, AGENT_ID, "李四", "alive").await;
    registry_enterprise(server, USCC, ORG, ID).await;
    let d = |y, m, day| chrono::NaiveDate::from_ymd_opt(y, m, day).expect("date");
    let v = civid::realname::verify(s, &realm, &rep, ID, d(1949, 12, 31), "王芳", 0, None).await.expect("verify");
    assert_eq!(v, civid::realname::Outcome::Verified("L3".into()));
    let v = civid::realname::verify(s, &realm, &agent, AGENT_ID, d(1980, 1, 1), "李四", 0, None).await.expect("verify");
    assert_eq!(v, civid::realname::Outcome::Verified("L3".into()));
    let uscc = civid::identity::Uscc::parse(USCC).expect("uscc");
    let claimed = civid::realname::enterprise::claim(s, &realm, &rep, &uscc, ORG, None).await.expect("claim");
    assert_eq!(claimed, civid::realname::enterprise::Claimed::Claimed);
    let index = s.secrets.sealer.blind_index(civid::registry::USCC_INDEX, USCC);
    let delegation = appoint(server, &rep, &index).await;
    Setup { rep, agent, index, delegation }
}

async fn appoint(server: &TestServer, rep: &str, index: &str) -> String {
    let lisi = civid::account::identifiers::Identifier::username("lisi").expect("username");
    match civid::realname::enterprise::appoint(&server.state, "test", rep, index, &lisi, "经办人", 30, None)
        .await
        .expect("appoint")
    {
        civid::realname::enterprise::Appointed::Appointed(id) => id,
        other => panic!("not appointed: {other:?}"),
    }
}

/// A portal's authorization request; returns the URL and the PKCE verifier.
fn authorize_url(server: &TestServer, client: &str, scope: &str, prompt: Option<&str>) -> (String, String) {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let mut url = format!(
        "{}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state=st&nonce=n\
         &code_challenge={challenge}&code_challenge_method=S256",
        server.issuer("test"),
        urlencode(&redirect_of(client)),
        urlencode(scope),
    );
    if let Some(p) = prompt {
        url.push_str(&format!("&prompt={p}"));
    }
    (url, verifier)
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn redirect_of(client: &str) -> String {
    match client {
        "portal-rn" => "https://f.example.test/cb",
        "portal-ent" => "https://g.example.test/cb",
        _ => "https://b.example.test/cb",
    }
    .to_string()
}

/// From the sign-in page: signs in; returns where the browser is sent next.
async fn login(server: &TestServer, b: &reqwest::Client, login_path: &str, user: &str) -> String {
    assert!(login_path.starts_with("/realms/test/login?"), "{login_path}");
    let html = b.get(format!("{}{login_path}", server.url)).send().await.expect("login").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", user.to_string()),
        ("password", PW.to_string()),
    ];
    let r = b.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    assert_eq!(r.status(), 303);
    location(&r)
}

/// Answers the acting page with `choice` (`self` or an enterprise id);
/// returns the redirect. The page lists the enterprise.
async fn choose(server: &TestServer, b: &reqwest::Client, acting: &str, choice: &str) -> String {
    assert!(acting.starts_with("/realms/test/acting?tx="), "the acting page: {acting}");
    let html = b.get(format!("{}{acting}", server.url)).send().await.expect("acting").text().await.expect("html");
    assert!(html.contains(ORG) && html.contains("value=\"self\""), "{html}");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("acting", choice.to_string())];
    let r = b.post(format!("{}/realms/test/acting", server.url)).form(&form).send().await.expect("choose");
    assert_eq!(r.status(), 303);
    location(&r)
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(&civid::crypto::random::b64_decode(part).expect("b64")).expect("json")
}

struct Tokens {
    id: Value,
    access: Value,
    access_token: String,
    refresh_token: Option<String>,
}

async fn exchange(server: &TestServer, client: &str, callback: &str, verifier: &str) -> Tokens {
    assert!(callback.starts_with(&redirect_of(client)), "back at {client}: {callback}");
    let code = query_param(callback, "code").expect("code");
    let redirect = redirect_of(client);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier),
        ("redirect_uri", redirect.as_str()),
    ];
    let r = token_request(server, client, &form).await;
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    tokens_of(body)
}

/// A token request; every portal here has the secret "secret-b" (portal-b
/// sends it in the form, the others with Basic).
async fn token_request(server: &TestServer, client: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let req = reqwest::Client::new().post(format!("{}/token", server.issuer("test")));
    let req = if client == "portal-b" {
        let mut form = form.to_vec();
        form.extend([("client_id", client), ("client_secret", "secret-b")]);
        req.form(&form)
    } else {
        req.basic_auth(client, Some("secret-b")).form(form)
    };
    req.send().await.expect("token request")
}

fn tokens_of(body: Value) -> Tokens {
    let access_token = body["access_token"].as_str().expect("access token").to_string();
    Tokens {
        id: payload(body["id_token"].as_str().expect("id token")),
        access: payload(&access_token),
        access_token,
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
    }
}

async fn refresh(server: &TestServer, client: &str, token: &str) -> Tokens {
    let r = token_request(server, client, &[("grant_type", "refresh_token"), ("refresh_token", token)]).await;
    assert_eq!(r.status(), 200);
    tokens_of(r.json().await.expect("json"))
}

async fn userinfo(server: &TestServer, access_token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", server.issuer("test")))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// The ID token, the access token and userinfo all name the enterprise.
async fn acts_for_org(server: &TestServer, t: &Tokens) {
    let info = userinfo(server, &t.access_token).await;
    for (what, v) in [("ID token", &t.id), ("access token", &t.access), ("userinfo", &info)] {
        assert_eq!(v["org_uscc"], USCC, "{what}: {v}");
        assert_eq!(v["org_name"], ORG, "{what}");
        assert_eq!(v["org_role"], "经办人", "{what}");
    }
    assert_eq!(t.id["sub"], info["sub"], "the person who acts is the subject");
}

/// No token names an enterprise.
async fn acts_as_self(server: &TestServer, t: &Tokens) {
    let info = userinfo(server, &t.access_token).await;
    for (what, v) in [("ID token", &t.id), ("access token", &t.access), ("userinfo", &info)] {
        for c in ["org_uscc", "org_name", "org_role"] {
            assert!(v.get(c).is_none(), "{what} has {c}: {v}");
        }
    }
}

async fn session_acting(server: &TestServer, user: &str) -> Vec<Option<String>> {
    civid::store::sessions::live_of_user(&server.state.db, "test", user)
        .await
        .expect("sessions")
        .into_iter()
        .map(|s| s.acting)
        .collect()
}

async fn audited(server: &TestServer, kind: &str) -> Vec<civid::store::audit::EntryRecord> {
    civid::store::audit::list(&server.state.db, "test", Some(kind), 100).await.expect("audit")
}

#[tokio::test]
async fn acting_is_asked_at_sign_in_without_the_scope_and_single_sign_on_reuses_it() {
    let server = TestServer::start().await;
    let set = setup(&server).await;

    // The agent signs in to a portal allowed scope enterprise that did not
    // ask for it: a fresh sign-in, so the choice is asked all the same.
    let a = browser();
    let (url, verifier) = authorize_url(&server, "portal-rn", "openid profile", None);
    let r = a.get(&url).send().await.expect("authorize");
    let acting = login(&server, &a, &crate::steps::login_path(r).await, "lisi").await;
    let cb = choose(&server, &a, &acting, &set.index).await;
    let t = exchange(&server, "portal-rn", &cb, &verifier).await;
    acts_for_org(&server, &t).await;
    assert_eq!(session_acting(&server, &set.agent).await, vec![Some(set.index.clone())], "recorded on the session");
    let chosen = audited(&server, "enterprise.acting").await;
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].actor.as_deref(), Some(set.agent.as_str()));
    assert!(chosen[0].detail.contains(&set.index) && !chosen[0].detail.contains(USCC), "{}", chosen[0].detail);

    // SSO to another enterprise-capable portal: no question, same enterprise.
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_for_org(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;
    // The same with scope enterprise asked for, and with prompt=none.
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid enterprise", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_for_org(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", Some("none"));
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_for_org(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;

    // A portal not allowed scope enterprise never asks and never learns it.
    let (url, verifier) = authorize_url(&server, "portal-b", "openid profile", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_as_self(&server, &exchange(&server, "portal-b", &cb, &verifier).await).await;
    let fresh = browser();
    let (url, verifier) = authorize_url(&server, "portal-b", "openid", None);
    let r = fresh.get(&url).send().await.expect("authorize");
    let cb = login(&server, &fresh, &crate::steps::login_path(r).await, "lisi").await;
    assert!(!cb.contains("/acting"), "a fresh sign-in at a portal not allowed the scope is not asked: {cb}");
    acts_as_self(&server, &exchange(&server, "portal-b", &cb, &verifier).await).await;
    // Nor can its transaction be taken to the acting page.
    let (url, _) = authorize_url(&server, "portal-b", "openid", Some("login"));
    let r = fresh.get(&url).send().await.expect("authorize");
    let tx = query_param(&format!("http://x{}", location(&r)), "tx").expect("tx");
    let r = fresh.get(format!("{}/realms/test/acting?tx={tx}", server.url)).send().await.expect("acting");
    assert_eq!(r.status(), 400);

    // prompt=select_account asks again; choosing oneself is recorded and
    // reused.
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", Some("select_account"));
    let acting = location(&a.get(&url).send().await.expect("authorize"));
    let cb = choose(&server, &a, &acting, "self").await;
    acts_as_self(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;
    let (url, verifier) = authorize_url(&server, "portal-rn", "openid enterprise", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_as_self(&server, &exchange(&server, "portal-rn", &cb, &verifier).await).await;
    assert_eq!(audited(&server, "enterprise.acting").await.len(), 2);

    // A choice that is not open to the person is refused on the page.
    let (url, _) = authorize_url(&server, "portal-ent", "openid", Some("select_account"));
    let acting = location(&a.get(&url).send().await.expect("authorize"));
    let html = a.get(format!("{}{acting}", server.url)).send().await.expect("acting").text().await.expect("html");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("acting", "someone-else".to_string())];
    let r = a.post(format!("{}/realms/test/acting", server.url)).form(&form).send().await.expect("choose");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("html").contains("acting-error"));
    let form = [("csrf", "forged".to_string()), ("tx", hidden(&html, "tx")), ("acting", set.index.clone())];
    let r = a.post(format!("{}/realms/test/acting", server.url)).form(&form).send().await.expect("choose");
    assert_eq!(r.status(), 403, "CSRF");

    // The representative is asked too, and acts as legal representative.
    let rb = browser();
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", None);
    let r = rb.get(&url).send().await.expect("authorize");
    let acting = login(&server, &rb, &crate::steps::login_path(r).await, "wangfang").await;
    let cb = choose(&server, &rb, &acting, &set.index).await;
    let t = exchange(&server, "portal-ent", &cb, &verifier).await;
    assert_eq!(t.id["org_role"], "legal_representative");
    assert_eq!(t.id["org_uscc"], USCC);
    let _ = set.rep;
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_agent_loses_the_enterprise_at_the_next_issuance_and_is_asked_again() {
    let server = TestServer::start().await;
    let set = setup(&server).await;

    let a = browser();
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", None);
    let r = a.get(&url).send().await.expect("authorize");
    let acting = login(&server, &a, &crate::steps::login_path(r).await, "lisi").await;
    let cb = choose(&server, &a, &acting, &set.index).await;
    let held = exchange(&server, "portal-ent", &cb, &verifier).await;
    acts_for_org(&server, &held).await;
    let refresh_token = held.refresh_token.clone().expect("a refresh token");

    // The representative revokes the agent.
    let revoked =
        civid::realname::enterprise::revoke(&server.state, "test", &set.rep, &set.index, &set.delegation, None)
            .await
            .expect("revoke");
    assert!(revoked);
    // Userinfo with the access token issued before no longer names it.
    let info = userinfo(&server, &held.access_token).await;
    assert!(info.get("org_uscc").is_none(), "{info}");
    // A refresh issues tokens without it.
    let t = refresh(&server, "portal-ent", &refresh_token).await;
    acts_as_self(&server, &t).await;
    // SSO: nothing to choose now, no claims; the stale choice is forgotten.
    let (url, verifier) = authorize_url(&server, "portal-rn", "openid enterprise", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_as_self(&server, &exchange(&server, "portal-rn", &cb, &verifier).await).await;
    assert_eq!(session_acting(&server, &set.agent).await, vec![None]);
    assert_eq!(audited(&server, "enterprise.acting.ended").await.len(), 1);

    // Appointed again: SSO with scope enterprise asks (no recorded choice),
    // a portal not asking for it goes on as the person.
    appoint(&server, &set.rep, &set.index).await;
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_as_self(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;
    let (url, verifier) = authorize_url(&server, "portal-rn", "openid enterprise", None);
    let acting = location(&a.get(&url).send().await.expect("authorize"));
    let cb = choose(&server, &a, &acting, &set.index).await;
    acts_for_org(&server, &exchange(&server, "portal-rn", &cb, &verifier).await).await;

    // The next interactive sign-in asks again; prompt=none in a new
    // session with no choice yet acts as the person, without interaction.
    let b = browser();
    let (url, _) = authorize_url(&server, "portal-rn", "openid", None);
    let r = b.get(&url).send().await.expect("authorize");
    let acting = login(&server, &b, &crate::steps::login_path(r).await, "lisi").await;
    assert!(acting.starts_with("/realms/test/acting?tx="), "{acting}");
    let (url, verifier) = authorize_url(&server, "portal-ent", "openid", Some("none"));
    let cb = location(&b.get(&url).send().await.expect("authorize"));
    assert!(cb.starts_with("https://g.example.test/cb?code="), "{cb}");
    acts_as_self(&server, &exchange(&server, "portal-ent", &cb, &verifier).await).await;

    // An expired delegation is no delegation either.
    {
        use civid::store::entities::delegation;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        delegation::Entity::update_many()
            .col_expr(delegation::Column::ExpiresAt, Expr::value(civid::store::now() - 1))
            .filter(delegation::Column::UserId.eq(set.agent.as_str()))
            .exec(&server.state.db)
            .await
            .expect("expire");
    }
    let (url, verifier) = authorize_url(&server, "portal-rn", "openid enterprise", None);
    let cb = location(&a.get(&url).send().await.expect("authorize"));
    acts_as_self(&server, &exchange(&server, "portal-rn", &cb, &verifier).await).await;
    server.stop().await;
}

#[tokio::test]
async fn operators_see_enterprises_and_delegations_masked_and_unmasked_only_as_pii_reader() {
    let server = TestServer::start().await;
    let set = setup(&server).await;
    // History: a revoked delegation and an expired one besides the live one.
    let old = appoint(&server, &set.rep, &set.index).await;
    civid::realname::enterprise::revoke(&server.state, "test", &set.rep, &set.index, &old, None).await.expect("revoke");
    civid::store::enterprises::insert_delegation(
        &server.state.db,
        civid::store::enterprises::DelegationRecord {
            id: "expired-one".into(),
            realm: "test".into(),
            uscc_index: set.index.clone(),
            user_id: set.agent.clone(),
            role: "财务".into(),
            expires_at: civid::store::now() - 10,
            created_by: set.rep.clone(),
            created_at: civid::store::now() - 100,
            revoked_at: None,
        },
    )
    .await
    .expect("expired delegation");
    let helpdesk = admin_with(&server, "desk", &[("helpdesk", "test")]).await;
    let auditor = admin_with(&server, "audi", &[("auditor", "test")]).await;
    let reader = admin_with(&server, "reader", &[("pii-reader", "test")]).await;

    // Found by credit code, through the blind index.
    let r = call("get", &api(&server, &format!("/test/enterprises?uscc={USCC}")), Some(&helpdesk), None, None).await;
    assert_eq!(r.status(), 200);
    let found: Value = r.json().await.expect("json");
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1));
    let e = &found["items"][0];
    assert_eq!(e["id"], set.index.as_str());
    assert_eq!(e["uscc"], USCC);
    assert_eq!(e["name"], ORG);
    assert_eq!(e["registry_status"], "active");
    assert_eq!(e["representative"]["user_id"], set.rep.as_str());
    assert_eq!(e["representative"]["name"], "王*");
    assert!(e["representative"].get("id_number").is_none());
    // A malformed code is a problem; an unclaimed one finds nothing.
    let r = call("get", &api(&server, "/test/enterprises?uscc=91350100M000100Y44"), Some(&helpdesk), None, None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let unclaimed = civid::identity::Uscc::generate("91", "110000", "60003734").expect("uscc");
    let r = call(
        "get",
        &api(&server, &format!("/test/enterprises?uscc={}", unclaimed.as_str())),
        Some(&helpdesk),
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["items"], serde_json::json!([]));
    // Without a code: the realm's enterprises, a page at a time.
    let all: Value =
        call("get", &api(&server, "/test/enterprises"), Some(&auditor), None, None).await.json().await.expect("json");
    assert_eq!(all["total"], 1);

    // The enterprise with its agents and every delegation, masked.
    let path = format!("/test/enterprises/{}", set.index);
    let r = call("get", &api(&server, &path), Some(&auditor), None, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["masked"], true);
    assert_eq!(v["agents"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["agents"][0]["id"], set.delegation.as_str());
    assert_eq!(v["agents"][0]["agent"]["user_id"], set.agent.as_str());
    assert_eq!(v["agents"][0]["agent"]["name"], "李*");
    assert_eq!(v["agents"][0]["role"], "经办人");
    let statuses: Vec<(&str, &str)> = v["delegations"]
        .as_array()
        .expect("history")
        .iter()
        .map(|d| (d["id"].as_str().unwrap_or_default(), d["status"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(statuses.contains(&(set.delegation.as_str(), "active")));
    assert!(statuses.contains(&(old.as_str(), "revoked")));
    assert!(statuses.contains(&("expired-one", "expired")));
    assert!(!v.to_string().contains("李四") && !v.to_string().contains(ID), "masked: {v}");
    assert_eq!(call("get", &api(&server, "/test/enterprises/nope"), Some(&auditor), None, None).await.status(), 404);

    // Unmasked: pii-reader only, each read audited.
    let unmasked = format!("{path}?unmasked=true");
    for who in [&auditor, &helpdesk] {
        let r = call("get", &api(&server, &unmasked), Some(who), None, None).await;
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(
        call("get", &api(&server, &path), Some(&reader), None, None).await.status(),
        403,
        "masked is not theirs"
    );
    assert!(audited(&server, "pii.read").await.is_empty());
    let r = call("get", &api(&server, &unmasked), Some(&reader), None, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["masked"], false);
    assert_eq!(v["representative"]["name"], "王芳");
    assert_eq!(v["representative"]["id_number"], ID);
    assert_eq!(v["agents"][0]["agent"]["name"], "李四");
    let reads = audited(&server, "pii.read").await;
    assert_eq!(reads.len(), 1);
    assert!(reads[0].detail.contains(&set.index), "{}", reads[0].detail);
    assert!(!reads[0].detail.contains("王芳"));

    // The person's view of their enterprises is the auditor's too.
    let r =
        call("get", &api(&server, &format!("/test/users/{}/enterprises", set.rep)), Some(&auditor), None, None).await;
    assert_eq!(r.status(), 200);
    server.stop().await;
}
