//! Real-name verification: a portal asks for `acr_values=L3`; the citizen
//! consents, gives name and ID number, the registry matches, and the portal
//! gets `acr` L3 and the verified claims; mismatches are limited, an ID
//! number serves one account, and a portal learns when the level was not
//! reached.
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{AuthenticationContextClass, AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, Scope};
use openidconnect::{OAuth2TokenResponse, TokenResponse};

use crate::harness::{Oidc, TestServer, browser, hidden, http, location, query_param, relying_party};

pub(crate) const PW: &str = "correct horse battery";
pub(crate) const ID: &str = "11010519491231002X";

/// A row of the population registry, as an import writes it.
pub(crate) async fn registry_row(server: &TestServer, id: &str, name: &str, status: &str) {
    use sea_orm::{ActiveModelTrait, Set};
    let s = &server.state;
    let index = civid::realname::id_index(s, id);
    let aad = civid::realname::verifier::registry_name_aad(&index);
    civid::store::entities::registry_person::ActiveModel {
        id_index: Set(index.clone()),
        id_sealed: Set(s
            .secrets
            .sealer
            .seal(id, &civid::realname::verifier::registry_aad("registry_persons", "id_sealed", &index))
            .expect("seal")),
        name_sealed: Set(s.secrets.sealer.seal(name, &aad).expect("seal")),
        status: Set(status.into()),
        updated_at: Set(0),
        import_id: Set("test".into()),
    }
    .insert(&s.db)
    .await
    .expect("registry row");
}

/// Signs in at the portal asking for L3; returns the verification page path.
async fn to_verification(
    server: &TestServer,
    b: &reqwest::Client,
    rp: &Oidc,
    user: &str,
) -> (String, Nonce, openidconnect::PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("realname".into()))
        .add_auth_context_value(AuthenticationContextClass::new("L3".into()))
        .set_pkce_challenge(challenge)
        .url();
    // Answered with the sign-in page.
    let html = b.get(url.as_str()).send().await.expect("authorize").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", user.to_string()),
        ("password", PW.to_string()),
    ];
    let resp = b.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    assert_eq!(resp.status(), 303);
    let next = location(&resp);
    assert!(next.starts_with("/realms/test/verify?tx="), "an L2 session is sent to verification: {next}");
    (next, nonce, verifier)
}

async fn submit(
    server: &TestServer,
    b: &reqwest::Client,
    path: &str,
    name: &str,
    id: &str,
    consent: bool,
) -> reqwest::Response {
    let html = b.get(format!("{}{path}", server.url)).send().await.expect("page").text().await.expect("html");
    let mut form = vec![
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("name", name.to_string()),
        ("id_number", id.to_string()),
    ];
    if consent {
        form.push(("consent", "yes".into()));
    }
    b.post(format!("{}/realms/test/verify", server.url)).form(&form).send().await.expect("verify")
}

#[tokio::test]
async fn a_portal_asking_for_l3_gets_a_verified_person() {
    let server = TestServer::start().await;
    server.user("test", "wangfang", PW).await;
    server.user("test", "impostor", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    registry_row(&server, "110105194912310089", "李四", "deceased").await;
    let rp = relying_party(&server, "test", "portal-rn", Some("secret-b"), "https://f.example.test/cb").await;
    let b = browser();
    let (path, nonce, verifier) = to_verification(&server, &b, &rp, "wangfang").await;

    let r = submit(&server, &b, &path, "王芳", ID, false).await;
    assert_eq!(r.status(), 400, "no consent, no processing");
    let r = submit(&server, &b, &path, "王芳", "11010519491231002Y", true).await;
    assert_eq!(r.status(), 400, "a malformed number is explained");
    let r = submit(&server, &b, &path, "王方", ID, true).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("还可以尝试 4 次"), "a mismatch says how many tries are left");
    let r = submit(&server, &b, &path, "李四", "110105194912310089", true).await;
    assert_eq!(r.status(), 400, "the registry's deceased are not verified");

    let r = submit(&server, &b, &path, "王 芳", &ID.to_lowercase(), true).await;
    assert_eq!(r.status(), 303, "name and number match");
    let cb = location(&r);
    assert!(cb.starts_with("https://f.example.test/cb?"), "back to the portal: {cb}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&cb, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("exchange");
    let claims = tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("L3"));
    // Read raw: a typed client drops claims it does not know (id_number).
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/userinfo", server.issuer("test")))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["name"], "王芳");
    assert_eq!(info["birthdate"], "1949-12-31");
    assert_eq!(info["gender"], "female");
    assert_eq!(info["id_number"], "1101**********002X", "masked for a portal not allowed the number");

    // Asked for with the claims parameter: verified_claims (Identity
    // Assurance) in the ID token and at userinfo, only what was asked.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let asked = serde_json::json!({
        "id_token": { "verified_claims": { "verification": { "trust_framework": null }, "claims": { "name": null, "birthdate": null } } },
        "userinfo": { "verified_claims": { "verification": { "trust_framework": null }, "claims": { "id_number": null, "nickname": null } } },
    });
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_extra_param("claims", asked.to_string())
        .add_auth_context_value(AuthenticationContextClass::new("L3".into()))
        .set_pkce_challenge(challenge)
        .url();
    let r = b.get(url.as_str()).send().await.expect("authorize");
    let cb = location(&r);
    assert!(cb.starts_with("https://f.example.test/cb?"), "an L3 session needs no new check: {cb}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&cb, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("exchange");
    let id_token = tokens.id_token().expect("id token");
    id_token.claims(&rp.id_token_verifier(), &nonce).expect("still a valid ID token");
    let payload = id_token.to_string().split('.').nth(1).map(str::to_string).expect("payload");
    let payload: serde_json::Value =
        serde_json::from_slice(&civid::crypto::random::b64_decode(&payload).expect("b64")).expect("json");
    let vc = &payload["verified_claims"];
    assert_eq!(vc["verification"]["trust_framework"], "cn_real_name");
    assert_eq!(vc["verification"]["assurance_level"], "L3");
    assert_eq!(vc["verification"]["evidence"][0]["type"], "electronic_record");
    assert_eq!(vc["claims"], serde_json::json!({ "name": "王芳", "birthdate": "1949-12-31" }));
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/userinfo", server.issuer("test")))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["verified_claims"]["claims"], serde_json::json!({ "id_number": "1101**********002X" }));
    let meta: serde_json::Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.issuer("test")))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["verified_claims_supported"], true);
    assert_eq!(meta["claims_parameter_supported"], true);
    assert_eq!(meta["acr_values_supported"], serde_json::json!(["L2", "L3"]));

    // The same number cannot make a second account real-name verified.
    let b2 = browser();
    let (path, _, _) = to_verification(&server, &b2, &rp, "impostor").await;
    let r = submit(&server, &b2, &path, "王芳", ID, true).await;
    assert_eq!(r.status(), 409);
    // Giving up sends the citizen to the portal's page for other ways
    // (its registered acr_fallback_uri).
    let html = b2.get(format!("{}{path}", server.url)).send().await.expect("page").text().await.expect("html");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx"))];
    let r = b2.post(format!("{}/realms/test/verify/cancel", server.url)).form(&form).send().await.expect("cancel");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "https://f.example.test/other-ways");

    let kinds: Vec<(String, String)> = civid::store::audit::list(&server.state.db, "test", None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| (e.kind, e.outcome))
        .collect();
    for (k, o) in [("realname.verify", "success"), ("realname.verify", "failure"), ("realname.consent", "success")] {
        assert!(kinds.iter().any(|(a, b)| a == k && b == o), "{k} {o} audited");
    }
    let all = civid::store::audit::list(&server.state.db, "test", Some("realname.verify"), 100).await.expect("audit");
    assert!(all.iter().all(|e| !e.detail.contains(ID) && !e.detail.contains("王芳")), "no PII in the audit log");
    server.stop().await;
}

#[tokio::test]
async fn failed_matches_are_limited_and_unreachable_levels_refused() {
    let server = TestServer::start().await;
    server.user("test", "zhangwei", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    let rp = relying_party(&server, "test", "portal-rn", Some("secret-b"), "https://f.example.test/cb").await;
    let b = browser();
    let (path, _, _) = to_verification(&server, &b, &rp, "zhangwei").await;
    for _ in 0..5 {
        assert_eq!(submit(&server, &b, &path, "张伟", ID, true).await.status(), 400);
    }
    let r = submit(&server, &b, &path, "王芳", ID, true).await;
    assert_eq!(r.status(), 429, "after five failed matches even the right answer waits a day");

    // A portal without a fallback page is told the level was not reached.
    let pb = relying_party(&server, "test", "portal-b", Some("secret-b"), "https://b.example.test/cb")
        .await
        .set_auth_type(openidconnect::AuthType::RequestBody);
    let b3 = browser();
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = pb
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_auth_context_value(AuthenticationContextClass::new("L3".into()))
        .set_pkce_challenge(challenge)
        .url();
    // Answered with the sign-in page.
    let html = b3.get(url.as_str()).send().await.expect("authorize").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "zhangwei".to_string()),
        ("password", PW.to_string()),
    ];
    let r = b3.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    let verify = location(&r);
    assert!(verify.starts_with("/realms/test/verify?tx="), "{verify}");
    let html = b3.get(format!("{}{verify}", server.url)).send().await.expect("page").text().await.expect("html");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx"))];
    let r = b3.post(format!("{}/realms/test/verify/cancel", server.url)).form(&form).send().await.expect("cancel");
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("unmet_authentication_requirements"));

    // L4 cannot be reached online: the portal is told at once.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_auth_context_value(AuthenticationContextClass::new("L4".into()))
        .set_pkce_challenge(challenge)
        .url();
    let r = b.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("unmet_authentication_requirements"));
    // prompt=none cannot verify.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_auth_context_value(AuthenticationContextClass::new("L3".into()))
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let r = b.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("interaction_required"));
    server.stop().await;
}

/// The external verification service of a realm with `verifier = "http"`:
/// checks the signature, counts calls, answers for one known person.
async fn verification_service(
    secret: &'static str,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (u16, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/check",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ts = headers.get("x-civid-timestamp").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let sig = headers.get("x-civid-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let want = civid::crypto::seal::hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes());
                let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
                if want != sig {
                    return (StatusCode::UNAUTHORIZED, "bad signature".to_string());
                }
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let ok = v["id_number"] == ID && v["name"] == "王芳";
                (StatusCode::OK, serde_json::json!({ "match": ok }).to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (
        port,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    )
}

/// Signs in through the account centre of `realm`; returns the verify page.
pub(crate) async fn account_sign_in(server: &TestServer, b: &reqwest::Client, realm: &str, user: &str) {
    let r = b.get(format!("{}/realms/{realm}/account", server.url)).send().await.expect("account");
    let login = location(&r);
    let html = b.get(format!("{}{login}", server.url)).send().await.expect("login").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", user.to_string()),
        ("password", PW.to_string()),
    ];
    let r = b.post(format!("{}/realms/{realm}/login", server.url)).form(&form).send().await.expect("login");
    assert_eq!(location(&r), format!("/realms/{realm}/account"));
}

pub(crate) async fn verify_in(
    server: &TestServer,
    b: &reqwest::Client,
    realm: &str,
    name: &str,
    id: &str,
) -> reqwest::Response {
    let html =
        b.get(format!("{}/realms/{realm}/verify", server.url)).send().await.expect("page").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("name", name.to_string()),
        ("id_number", id.to_string()),
        ("consent", "yes".to_string()),
    ];
    b.post(format!("{}/realms/{realm}/verify", server.url)).form(&form).send().await.expect("verify")
}

#[tokio::test]
async fn an_external_verification_service_signed_retried_and_broken_circuit() {
    const SECRET: &str = "verifier shared secret";
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (port, service) = verification_service(SECRET, calls.clone()).await;
    let server = TestServer::start_configured(|s| {
        s.verifier_url = format!("http://127.0.0.1:{port}/check");
        s.verifier_secret = SECRET.into();
        s.verifier_timeout_ms = 500;
        s.verifier_retries = 1;
    })
    .await;
    server.user("other", "chenjing", PW).await;
    server.user("other", "liuyang", PW).await;

    let b = browser();
    account_sign_in(&server, &b, "other", "chenjing").await;
    let r = verify_in(&server, &b, "other", "张三", ID).await;
    assert_eq!(r.status(), 400, "the service says no match");
    let r = verify_in(&server, &b, "other", "王芳", ID).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/realms/other/account?done=verified");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "signed requests were accepted");
    let level =
        civid::realname::level_of(&server.state, "other", &server_user_id(&server, "other", "liuyang").await).await;
    assert_eq!(level.expect("level"), "L2");

    // The service goes down: a clear page, a retry hint, nothing counted;
    // after five failures the circuit opens and nobody waits for it.
    service.abort();
    let _ = service.await;
    let b2 = browser();
    account_sign_in(&server, &b2, "other", "liuyang").await;
    for _ in 0..5 {
        let r = verify_in(&server, &b2, "other", "刘洋", "110105194912310089").await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("retry-after").is_some());
        assert!(r.text().await.expect("html").contains("暂时不可用"));
    }
    let (port2, _service2) = verification_service(SECRET, calls.clone()).await;
    assert_ne!(port2, 0);
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let r = verify_in(&server, &b2, "other", "刘洋", "110105194912310089").await;
    assert_eq!(r.status(), 503, "the circuit is open");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
    server.stop().await;
}

pub(crate) async fn server_user_id(server: &TestServer, realm: &str, username: &str) -> String {
    use civid::account::identifiers::Identifier;
    let s = &server.state;
    let index = Identifier::username(username).expect("username").blind_index(&s.secrets.sealer);
    civid::store::users::find_by_identifier(&s.db, realm, "username", &index).await.expect("db").expect("user").id
}

#[tokio::test]
async fn an_operator_records_an_in_person_check_as_l5() {
    let server = TestServer::start().await;
    let uid = server.user("test", "zhaomin", PW).await;
    let other = server.user("test", "qianli", PW).await;
    let s = &server.state;
    let actor = civid::admin::actions::Actor { id: "operator-7", ip: Some("10.1.2.3") };
    let bad = civid::admin::actions::user_in_person(s, &actor, "test", &uid, "11010519491231002Y", "赵敏").await;
    assert!(bad.is_err(), "a malformed number is refused");
    let v = civid::admin::actions::user_in_person(s, &actor, "test", &uid, ID, "赵敏").await.expect("in person");
    assert_eq!(v["level"], "L5");
    assert_eq!(civid::realname::level_of(s, "test", &uid).await.expect("level"), "L5");
    let taken = civid::admin::actions::user_in_person(s, &actor, "test", &other, ID, "赵敏").await;
    assert!(taken.is_err(), "one ID number, one account");
    let view = civid::admin::actions::user_view(s, &actor, "test", &uid, false).await.expect("view");
    assert_eq!(view["level"], "L5");
    assert_eq!(view["identity"]["id_number"], "1101**********002X", "masked without pii-reader");
    let e = civid::store::audit::list(&s.db, "test", Some("admin.user.verified_in_person"), 5).await.expect("audit");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].actor.as_deref(), Some("operator-7"), "who did it");
    let p = civid::realname::proven(s, "test", &uid).await.expect("db").expect("proof");
    assert_eq!(p.evidence[0]["verifier"]["txn"], "operator-7");

    // The registry reports the person deceased: the account falls back.
    let n = civid::realname::registry_deceased(s, &[civid::realname::id_index(s, ID)]).await.expect("demote");
    assert_eq!(n, 1);
    assert_eq!(civid::realname::level_of(s, "test", &uid).await.expect("level"), "L2");
    let e = civid::store::audit::list(&s.db, "test", Some("realname.demoted"), 5).await.expect("audit");
    assert_eq!(e.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_person_who_lost_phone_and_passkey_recovers_the_same_account_by_real_name() {
    let server = TestServer::start().await;
    let s = &server.state;
    let uid = server.user("test", "wangfang", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    let realm = s.realms.get("test").expect("realm");
    let birth = chrono::NaiveDate::from_ymd_opt(1949, 12, 31).expect("date");
    let done = civid::realname::verify(s, &realm, &uid, ID, birth, "王芳", 0, None).await.expect("verify");
    assert_eq!(done, civid::realname::Outcome::Verified("L3".into()));
    server.enrol_totp("test", &uid).await;

    let b = browser();
    let challenge = civid::crypto::random::sha256_b64("c".repeat(43).as_bytes());
    let url = format!(
        "{}/authorize?response_type=code&client_id=portal-b&redirect_uri=https%3A%2F%2Fb.example.test%2Fcb&scope=openid\
         &state=rn&code_challenge={challenge}&code_challenge_method=S256",
        server.issuer("test")
    );
    let r = b.get(&url).send().await.expect("authorize");
    let tx = query_param(&format!("{}{}", server.url, crate::steps::login_path(r).await), "tx").expect("tx");
    let recover = b.get(format!("{}/realms/test/recover?tx={tx}", server.url)).send().await.expect("recover");
    let recover = recover.text().await.expect("html").replace("&#x2f;", "/").replace("&amp;", "&");
    assert!(recover.contains("/realms/test/recover/realname?tx="), "the way to recover by real name is offered");
    let page = format!("{}/realms/test/recover/realname?tx={tx}", server.url);
    let post = |name: &'static str| {
        let b = b.clone();
        let page = page.clone();
        async move {
            let html = b.get(&page).send().await.expect("page").text().await.expect("html");
            let form = [
                ("csrf", hidden(&html, "csrf")),
                ("tx", hidden(&html, "tx")),
                ("name", name.to_string()),
                ("id_number", ID.to_string()),
                ("phone", "139 0000 9999".to_string()),
                ("consent", "yes".to_string()),
            ];
            b.post(format!("{}/realms/test/recover/realname", server_url(&page)))
                .form(&form)
                .send()
                .await
                .expect("post")
        }
    };
    assert_eq!(post("王方").await.status(), 400, "a wrong name recovers nothing");
    let r = post("王芳").await;
    assert_eq!(r.status(), 303);
    let verify = location(&r);
    let sms = s.sms.outbox_messages().last().cloned().expect("a code to the new number");
    assert_eq!(sms.to, "+8613900009999");
    let code: String = sms.body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
    let html = b.get(format!("{}{verify}", server.url)).send().await.expect("verify").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("code", code),
        ("password", "a fresh start 2026".to_string()),
        ("password2", "a fresh start 2026".to_string()),
    ];
    let r =
        b.post(format!("{}/realms/test/recover/realname/verify", server.url)).form(&form).send().await.expect("post");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("https://b.example.test/cb?"), "signed in and on to the portal");

    // The same account: the new number and password sign it in; the lost
    // authenticator app is gone.
    let outcome = civid::authn::password::authenticate(s, "test", "13900009999", "a fresh start 2026".into()).await;
    match outcome.expect("auth") {
        civid::authn::password::Outcome::Success { user_id, .. } => assert_eq!(user_id, uid),
        _ => panic!("the recovered account signs in with its new number"),
    }
    assert!(civid::store::credentials::of_user(&s.db, "test", &uid, None).await.expect("db").is_empty());
    let e = civid::store::audit::list(&s.db, "test", Some("recovery.realname"), 10).await.expect("audit");
    assert!(e.iter().any(|x| x.outcome == "success" && x.detail.contains("new phone")));
    server.stop().await;
}

fn server_url(page: &str) -> String {
    let u = url::Url::parse(page).expect("url");
    format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or_default(), u.port().unwrap_or(80))
}

pub(crate) const USCC: &str = "91350100M000100Y43";
pub(crate) const AGENT_ID: &str = "110105198001011238";

pub(crate) async fn registry_enterprise(server: &TestServer, uscc: &str, name: &str, rep_id: &str) {
    use civid::realname::verifier::registry_aad;
    use sea_orm::{ActiveModelTrait, Set};
    let s = &server.state;
    let index = s.secrets.sealer.blind_index(civid::registry::USCC_INDEX, uscc);
    civid::store::entities::registry_enterprise::ActiveModel {
        uscc_index: Set(index.clone()),
        uscc_sealed: Set(s
            .secrets
            .sealer
            .seal(uscc, &registry_aad("registry_enterprises", "uscc_sealed", &index))
            .expect("seal")),
        name_sealed: Set(s
            .secrets
            .sealer
            .seal(name, &registry_aad("registry_enterprises", "name_sealed", &index))
            .expect("seal")),
        rep_index: Set(civid::realname::id_index(s, rep_id)),
        rep_name_sealed: Set(s
            .secrets
            .sealer
            .seal("王芳", &registry_aad("registry_enterprises", "rep_name_sealed", &index))
            .expect("seal")),
        status: Set("active".into()),
        updated_at: Set(0),
        import_id: Set("test".into()),
    }
    .insert(&s.db)
    .await
    .expect("registry enterprise");
}

async fn account_post(server: &TestServer, b: &reqwest::Client, path: &str, fields: &[(&str, &str)]) -> String {
    let html =
        b.get(format!("{}/realms/test/account", server.url)).send().await.expect("account").text().await.expect("html");
    let csrf = html
        .split("action=\"")
        .find(|s| s.replace("&#x2f;", "/").starts_with("/realms/test/account/enterprises"))
        .and_then(|s| s.split("name=\"csrf\" value=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .expect("an enterprise form")
        .to_string();
    let mut form: Vec<(&str, String)> = vec![("csrf", csrf)];
    form.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let r = b.post(format!("{}{path}", server.url)).form(&form).send().await.expect("post");
    location(&r)
}

#[tokio::test]
async fn a_legal_representative_claims_the_enterprise_and_an_agent_acts_for_it() {
    let server = TestServer::start().await;
    let s = &server.state;
    let realm = s.realms.get("test").expect("realm");
    let rep = server.user("test", "wangfang", PW).await;
    let agent = server.user("test", "lisi", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    registry_row(&server, AGENT_ID, "李四", "alive").await;
    registry_enterprise(&server, USCC, "示例科技有限公司", ID).await;
    let d = |y, m, day| chrono::NaiveDate::from_ymd_opt(y, m, day).expect("date");
    let v = civid::realname::verify(s, &realm, &rep, ID, d(1949, 12, 31), "王芳", 0, None).await.expect("verify");
    assert_eq!(v, civid::realname::Outcome::Verified("L3".into()));
    let v = civid::realname::verify(s, &realm, &agent, AGENT_ID, d(1980, 1, 1), "李四", 0, None).await.expect("verify");
    assert_eq!(v, civid::realname::Outcome::Verified("L3".into()));

    // The representative claims the enterprise and appoints the agent.
    let b = browser();
    account_sign_in(&server, &b, "test", "wangfang").await;
    let claim = "/realms/test/account/enterprises/claim";
    let to = account_post(&server, &b, claim, &[("uscc", USCC), ("org_name", "别的公司")]).await;
    assert!(to.ends_with("done=enterprise_no_match"), "{to}");
    let to = account_post(&server, &b, claim, &[("uscc", USCC), ("org_name", "示例科技有限公司")]).await;
    assert!(to.ends_with("done=enterprise_claimed"), "{to}");
    let index = s.secrets.sealer.blind_index(civid::registry::USCC_INDEX, USCC);
    let appoint = format!("/realms/test/account/enterprises/{index}/agents");
    let to = account_post(&server, &b, &appoint, &[("agent", "lisi"), ("role", "经办人"), ("days", "30")]).await;
    assert!(to.ends_with("done=agent_appointed"), "{to}");

    // The agent signs in to a portal asking for scope enterprise, and acts
    // for the enterprise: the tokens name both.
    let rp = relying_party(&server, "test", "portal-rn", Some("secret-b"), "https://f.example.test/cb").await;
    let a = browser();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("enterprise".into()))
        .set_pkce_challenge(challenge)
        .url();
    // Answered with the sign-in page.
    let html = a.get(url.as_str()).send().await.expect("authorize").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "lisi".to_string()),
        ("password", PW.to_string()),
    ];
    let r = a.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    let acting = location(&r);
    assert!(acting.starts_with("/realms/test/acting?tx="), "{acting}");
    let html = a.get(format!("{}{acting}", server.url)).send().await.expect("acting").text().await.expect("html");
    assert!(html.contains("示例科技有限公司") && html.contains("value=\"self\""));
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("acting", index.clone())];
    let r = a.post(format!("{}/realms/test/acting", server.url)).form(&form).send().await.expect("choose");
    let cb = location(&r);
    assert!(cb.starts_with("https://f.example.test/cb?"), "{cb}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&cb, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("exchange");
    let id_token = tokens.id_token().expect("id token");
    let claims = id_token.claims(&rp.id_token_verifier(), &nonce).expect("valid").clone();
    let payload = id_token.to_string().split('.').nth(1).map(str::to_string).expect("payload");
    let payload: serde_json::Value =
        serde_json::from_slice(&civid::crypto::random::b64_decode(&payload).expect("b64")).expect("json");
    assert_eq!(payload["org_uscc"], USCC);
    assert_eq!(payload["org_name"], "示例科技有限公司");
    assert_eq!(payload["org_role"], "经办人");
    assert_eq!(payload["sub"], claims.subject().as_str(), "the person who acts is still the subject");

    // Operators see who acts for which enterprise.
    let view = civid::admin::actions::user_enterprises(s, "test", &rep).await.expect("view");
    assert_eq!(view["items"][0]["role"], "legal_representative");
    assert_eq!(view["items"][0]["agents"][0]["agent"], agent.as_str());

    // Revoked: the agent no longer acts for it.
    let html =
        b.get(format!("{}/realms/test/account", server.url)).send().await.expect("account").text().await.expect("html");
    let revoke = html
        .replace("&#x2f;", "/")
        .split("action=\"")
        .find(|s| s.contains("/revoke"))
        .and_then(|s| s.split('"').next())
        .expect("a revoke form")
        .to_string();
    let to = account_post(&server, &b, &revoke, &[]).await;
    assert!(to.ends_with("done=agent_revoked"), "{to}");
    let orgs = civid::realname::enterprise::orgs_of(s, "test", &agent).await.expect("orgs");
    assert!(orgs.is_empty());
    let kinds: Vec<String> = civid::store::audit::list(&s.db, "test", None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in ["enterprise.claim", "enterprise.delegation.created", "enterprise.delegation.revoked"] {
        assert!(kinds.iter().any(|x| x == k), "{k} audited");
    }
    server.stop().await;
}

/// The face-verification service: opens sessions, "scans" by sending the
/// browser straight back, and says the face matched.
async fn face_service(secret: &'static str) -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let returns = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let signed = move |headers: &HeaderMap, body: &str| {
        let ts = headers.get("x-civid-timestamp").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let sig = headers.get("x-civid-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let want = civid::crypto::seal::hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes());
        want.iter().map(|b| format!("{b:02x}")).collect::<String>() == sig
    };
    let r1 = returns.clone();
    let r2 = returns.clone();
    let app = axum::Router::new()
        .route(
            "/sessions",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let r1 = r1.clone();
                async move {
                    if !signed(&headers, &body) {
                        return (StatusCode::UNAUTHORIZED, String::new()).into_response();
                    }
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    assert_eq!(v["id_number"], ID, "the proven number is sent");
                    *r1.lock().expect("lock") = v["return_url"].as_str().unwrap_or_default().to_string();
                    let url = format!("http://127.0.0.1:{port}/scan?session=s1");
                    axum::Json(serde_json::json!({ "session": "s1", "url": url })).into_response()
                }
            }),
        )
        .route(
            "/scan",
            axum::routing::get(move || {
                let r2 = r2.clone();
                async move {
                    let back = format!("{}&session=s1", r2.lock().expect("lock"));
                    axum::response::Redirect::to(&back).into_response()
                }
            }),
        )
        .route(
            "/sessions/s1/result",
            axum::routing::post(move |headers: HeaderMap, body: String| async move {
                if !signed(&headers, &body) {
                    return (StatusCode::UNAUTHORIZED, String::new()).into_response();
                }
                axum::Json(serde_json::json!({ "match": true })).into_response()
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

#[tokio::test]
async fn a_portal_asking_for_l4_gets_a_face_match_after_l3() {
    const SECRET: &str = "face shared secret";
    let port = face_service(SECRET).await;
    let server = TestServer::start_configured(|s| {
        s.face_url = format!("http://127.0.0.1:{port}");
        s.face_secret = SECRET.into();
    })
    .await;
    let s = &server.state;
    let uid = server.user("test", "wangfang", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    let realm = s.realms.get("test").expect("realm");
    let birth = chrono::NaiveDate::from_ymd_opt(1949, 12, 31).expect("date");
    civid::realname::verify(s, &realm, &uid, ID, birth, "王芳", 0, None).await.expect("verify");

    let rp = relying_party(&server, "test", "portal-rn", Some("secret-b"), "https://f.example.test/cb").await;
    let b = browser();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_auth_context_value(AuthenticationContextClass::new("L4".into()))
        .set_pkce_challenge(challenge)
        .url();
    // Answered with the sign-in page.
    let html = b.get(url.as_str()).send().await.expect("authorize").text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "wangfang".to_string()),
        ("password", PW.to_string()),
    ];
    let r = b.post(format!("{}/realms/test/login", server.url)).form(&form).send().await.expect("login");
    let verify = location(&r);
    assert!(verify.starts_with("/realms/test/verify?tx="), "an L3 session asked for L4: {verify}");
    let html = b.get(format!("{}{verify}", server.url)).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("id=\"face\""), "the face step is offered");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx"))];
    let r = b.post(format!("{}/realms/test/verify/face", server.url)).form(&form).send().await.expect("start");
    assert_eq!(r.status(), 303);
    let scan = location(&r);
    assert!(scan.starts_with(&format!("http://127.0.0.1:{port}/scan")), "to the face service only: {scan}");
    let r = b.get(&scan).send().await.expect("scan");
    let back = location(&r);
    let r = b.get(&back).send().await.expect("return");
    let cb = location(&r);
    assert!(cb.starts_with("https://f.example.test/cb?"), "{cb}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&cb, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("exchange");
    let claims = tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), &nonce).expect("valid").clone();
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("L4"));
    let meta: serde_json::Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.issuer("test")))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["acr_values_supported"], serde_json::json!(["L2", "L3", "L4"]), "L4 where a face service is");
    // The same session cannot be used twice.
    let again = b.get(&back).send().await.expect("again");
    assert_eq!(again.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_account_is_not_recovered_by_real_name() {
    let server = TestServer::start().await;
    let s = &server.state;
    let uid = server.user("test", "wangfang", PW).await;
    registry_row(&server, ID, "王芳", "alive").await;
    let realm = s.realms.get("test").expect("realm");
    let birth = chrono::NaiveDate::from_ymd_opt(1949, 12, 31).expect("date");
    civid::realname::verify(s, &realm, &uid, ID, birth, "王芳", 0, None).await.expect("verify");
    let found = civid::realname::recover_check(s, &realm, ID, birth, "王芳", None).await.expect("check");
    assert!(matches!(found, civid::realname::Recovery::Account(ref u) if *u == uid));
    let actor = civid::admin::actions::Actor { id: "operator", ip: None };
    civid::admin::actions::user_set_enabled(s, &actor, "test", &uid, false).await.expect("disable");
    let found = civid::realname::recover_check(s, &realm, ID, birth, "王芳", None).await.expect("check");
    assert!(matches!(found, civid::realname::Recovery::NoAccount), "an operator's disabling stands");
    server.stop().await;
}
