//! Registration by mobile number: the SMS code from the outbox, a password,
//! and straight on to the portal; a registered number learns nothing new.
use crate::harness::{TestServer, browser, hidden, location, query_param};

fn authorize_url(server: &TestServer) -> String {
    let challenge = civid::crypto::random::sha256_b64("c".repeat(43).as_bytes());
    format!(
        "{}/authorize?response_type=code&client_id=portal-b&redirect_uri=https%3A%2F%2Fb.example.test%2Fcb&scope=openid\
         &state=reg&code_challenge={challenge}&code_challenge_method=S256",
        server.issuer("test")
    )
}

/// Opens the registration page from the sign-in page; returns its HTML.
async fn registration_page(server: &TestServer, b: &reqwest::Client) -> String {
    let resp = b.get(authorize_url(server)).send().await.expect("authorize");
    let login =
        b.get(format!("{}{}", server.url, location(&resp))).send().await.expect("login").text().await.expect("html");
    // Templates escape '/' and '&' in attribute values, as browsers undo.
    let login = login.replace("&#x2f;", "/").replace("&amp;", "&");
    let link = login.split("href=\"").find(|s| s.starts_with("/realms/test/register?")).expect("register link");
    let link = link.split('"').next().unwrap_or_default().replace("&amp;", "&");
    b.get(format!("{}{link}", server.url)).send().await.expect("register").text().await.expect("html")
}

fn last_sms(server: &TestServer) -> civid::account::senders::Message {
    server.state.sms.outbox_messages().last().cloned().expect("an SMS was sent")
}

#[tokio::test]
async fn register_by_phone_then_continue_to_the_portal() {
    let server = TestServer::start().await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    let url = format!("{}/realms/test/register", server.url);
    let bad = b
        .post(&url)
        .form(&[("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "12345".into())])
        .send()
        .await
        .expect("post");
    assert!(bad.text().await.expect("html").contains("11 位"), "a wrong number is explained");

    let resp = b
        .post(&url)
        .form(&[("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "139 1234 5678".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 303);
    let sms = last_sms(&server);
    assert_eq!(sms.to, "+8613912345678");
    let code: String = sms.body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
    assert_eq!(code.len(), 6, "{}", sms.body);

    let verify =
        b.get(format!("{}{}", server.url, location(&resp))).send().await.expect("verify").text().await.expect("html");
    assert!(verify.contains("+86139****5678"), "the number is shown masked");
    let post = |code: &str, pw: &str, pw2: &str| {
        let form = [
            ("csrf", hidden(&verify, "csrf")),
            ("tx", hidden(&verify, "tx")),
            ("code", code.to_string()),
            ("password", pw.to_string()),
            ("password2", pw2.to_string()),
        ];
        b.post(format!("{url}/verify")).form(&form).send()
    };
    let weak = post(&code, "13912345678x", "13912345678x").await.expect("post").text().await.expect("html");
    assert!(weak.contains("不能与手机号码相同"), "the phone number is not a password");
    let done = post(&code, "a good long password", "a good long password").await.expect("post");
    assert_eq!(done.status(), 303);
    let back = location(&done);
    assert!(back.starts_with("https://b.example.test/cb?") && query_param(&back, "code").is_some(), "{back}");
    let outcome =
        civid::authn::password::authenticate(&server.state, "test", "13912345678", "a good long password".into())
            .await
            .expect("auth");
    assert!(matches!(outcome, civid::authn::password::Outcome::Success { .. }));
    let events = civid::store::audit::list(&server.state.db, "test", Some("registration"), 5).await.expect("audit");
    assert!(events.iter().any(|e| e.outcome == "success"));
    server.stop().await;
}

#[tokio::test]
async fn a_registered_number_gets_a_notice_and_the_pages_reveal_nothing() {
    let server = TestServer::start().await;
    let b = browser();
    // Register once.
    let html = registration_page(&server, &b).await;
    let url = format!("{}/realms/test/register", server.url);
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "13700001111".into())];
    let first = b.post(&url).form(&form).send().await.expect("post");
    assert_eq!(first.status(), 303);
    let code: String = last_sms(&server).body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
    let verify =
        b.get(format!("{}{}", server.url, location(&first))).send().await.expect("verify").text().await.expect("html");
    let form = [
        ("csrf", hidden(&verify, "csrf")),
        ("tx", hidden(&verify, "tx")),
        ("code", code),
        ("password", "first owner password".into()),
        ("password2", "first owner password".into()),
    ];
    assert_eq!(b.post(format!("{url}/verify")).form(&form).send().await.expect("post").status(), 303);

    // A minute later someone else tries the same number (the resend wait is
    // lifted rather than waited for): the same answer, and the owner gets a notice.
    let index = civid::account::identifiers::Identifier::phone("13700001111")
        .expect("phone")
        .blind_index(&server.state.secrets.sealer);
    server.state.eph.delete(&format!("otp-resend:test:register:{index}")).await.expect("lift");
    let other = browser();
    let html = registration_page(&server, &other).await;
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "13700001111".into())];
    let again = other.post(&url).form(&form).send().await.expect("post");
    assert_eq!(again.status(), 303, "the same answer as for a new number");
    assert!(location(&again).contains("/register/verify?tx="));
    let notice = last_sms(&server);
    assert!(notice.body.contains("已有账号") && !notice.body.chars().any(|c| c.is_ascii_digit()), "{}", notice.body);

    // Asking again at once: told when a new code can come.
    let html = other
        .get(format!("{}/realms/test/register?tx={}", server.url, hidden(&html, "tx")))
        .send()
        .await
        .expect("page");
    let html = html.text().await.expect("html");
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "13700001111".into())];
    let soon = other.post(&url).form(&form).send().await.expect("post");
    assert_eq!(soon.status(), 429);
    assert!(soon.text().await.expect("html").contains("秒后再试"));
    server.stop().await;
}

/// Runs the recovery pages for `phone`; returns (response to the phone form, verify page HTML).
async fn recovery_start(server: &TestServer, b: &reqwest::Client, phone: &str) -> (u16, String) {
    let html = registration_page(server, b).await;
    let tx = hidden(&html, "tx");
    let page = b
        .get(format!("{}/realms/test/recover?tx={tx}", server.url))
        .send()
        .await
        .expect("recover")
        .text()
        .await
        .expect("html");
    let form = [("csrf", hidden(&page, "csrf")), ("tx", tx), ("phone", phone.to_string())];
    let resp = b.post(format!("{}/realms/test/recover", server.url)).form(&form).send().await.expect("post");
    let status = resp.status().as_u16();
    let verify =
        b.get(format!("{}{}", server.url, location(&resp))).send().await.expect("verify").text().await.expect("html");
    (status, verify)
}

async fn recovery_finish(
    server: &TestServer,
    b: &reqwest::Client,
    verify: &str,
    code: &str,
    pw: &str,
) -> reqwest::Response {
    let form = [
        ("csrf", hidden(verify, "csrf")),
        ("tx", hidden(verify, "tx")),
        ("code", code.to_string()),
        ("password", pw.to_string()),
        ("password2", pw.to_string()),
    ];
    b.post(format!("{}/realms/test/recover/verify", server.url)).form(&form).send().await.expect("post")
}

#[tokio::test]
async fn a_forgotten_password_is_recovered_by_sms_for_the_same_account() {
    let server = TestServer::start().await;
    let id = {
        use civid::account::identifiers::Identifier;
        use civid::account::users::{NewUser, create};
        let ident = Identifier::phone("13655556666").expect("phone");
        let new = NewUser {
            identifiers: vec![ident],
            password: Some("the old password".into()),
            profile: Default::default(),
        };
        create(&server.state.db, &server.state.secrets, "test", new).await.expect("user")
    };
    civid::store::users::touch_login(&server.state.db, "test", &id).await.expect("recently used");
    let b = browser();
    let (status, verify) = recovery_start(&server, &b, "13655556666").await;
    assert_eq!(status, 303);
    let code: String = last_sms(&server).body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
    let done = recovery_finish(&server, &b, &verify, &code, "the brand new password").await;
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap_or_default());
    assert!(location(&done).starts_with("https://b.example.test/cb?code="));
    let auth = |pw: &'static str| civid::authn::password::authenticate(&server.state, "test", "13655556666", pw.into());
    assert!(
        matches!(auth("the brand new password").await.expect("auth"), civid::authn::password::Outcome::Success { user_id } if user_id == id)
    );
    assert!(matches!(auth("the old password").await.expect("auth"), civid::authn::password::Outcome::Failure { .. }));

    // An unregistered number: the same answers, and no SMS leaves.
    let sent = server.state.sms.outbox_messages().len();
    let (status, verify) = recovery_start(&server, &browser(), "13600000000").await;
    assert_eq!(status, 303);
    assert!(verify.contains("+86136****0000"));
    assert_eq!(server.state.sms.outbox_messages().len(), sent, "nothing is sent to an unknown number");
    server.stop().await;
}

#[tokio::test]
async fn a_dormant_account_needs_more_than_an_sms_code() {
    let server = TestServer::start().await;
    use civid::account::identifiers::Identifier;
    use civid::account::users::{NewUser, create};
    let new = NewUser {
        identifiers: vec![Identifier::phone("13577778888").expect("phone")],
        password: Some("an old password".into()),
        profile: Default::default(),
    };
    let id = create(&server.state.db, &server.state.secrets, "test", new).await.expect("user");
    let long_ago = civid::store::now() - 200 * 86_400;
    use sea_orm::ConnectionTrait;
    server
        .state
        .db
        .execute_unprepared(&format!(
            "UPDATE users SET created_at = {long_ago}, last_login_at = {long_ago} WHERE id = '{id}'"
        ))
        .await
        .expect("age the account");
    let b = browser();
    let (_, verify) = recovery_start(&server, &b, "13577778888").await;
    let code: String = last_sms(&server).body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
    let resp = recovery_finish(&server, &b, &verify, &code, "a takeover password").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text().await.expect("html").contains("进一步验证身份"),
        "a recycled number cannot take the account over"
    );
    let outcome = civid::authn::password::authenticate(&server.state, "test", "13577778888", "an old password".into())
        .await
        .expect("auth");
    assert!(matches!(outcome, civid::authn::password::Outcome::Success { .. }), "the password is unchanged");
    server.stop().await;
}

#[tokio::test]
async fn one_client_cannot_text_many_numbers() {
    let server = TestServer::start().await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    let url = format!("{}/realms/test/register", server.url);
    for i in 0..20 {
        let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", format!("1350000{i:04}"))];
        let r = b.post(&url).form(&form).send().await.expect("post");
        assert_eq!(r.status(), 303, "number {i}");
    }
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "13500009999".to_string())];
    let r = b.post(&url).form(&form).send().await.expect("post");
    assert_eq!(r.status(), 429, "the 21st number in an hour from one client");
    assert_eq!(server.state.sms.outbox_messages().len(), 20);
    // The number in the transaction is sealed, not in clear, in the ephemeral store.
    let key = format!("tx:test:{}", hidden(&html, "tx"));
    let stored = server.state.eph.get(&key).await.expect("get").expect("tx");
    assert!(!stored.contains("+86135"), "{stored}");
    server.stop().await;
}

#[tokio::test]
async fn sign_in_with_an_sms_code_but_not_to_a_dormant_account() {
    let server = TestServer::start().await;
    use civid::account::identifiers::Identifier;
    use civid::account::users::{NewUser, create};
    let mut ids = Vec::new();
    for phone in ["13411112222", "13433334444"] {
        let new = NewUser {
            identifiers: vec![Identifier::phone(phone).expect("phone")],
            password: None,
            profile: Default::default(),
        };
        ids.push(create(&server.state.db, &server.state.secrets, "test", new).await.expect("user"));
    }
    civid::store::users::touch_login(&server.state.db, "test", &ids[0]).await.expect("recently used");
    let long_ago = civid::store::now() - 200 * 86_400;
    use sea_orm::ConnectionTrait;
    server
        .state
        .db
        .execute_unprepared(&format!("UPDATE users SET created_at = {long_ago} WHERE id = '{}'", ids[1]))
        .await
        .expect("age");

    for (phone, dormant) in [("13411112222", false), ("13433334444", true)] {
        let b = browser();
        let html = registration_page(&server, &b).await;
        let tx = hidden(&html, "tx");
        let page = b
            .get(format!("{}/realms/test/smslogin?tx={tx}", server.url))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        assert!(!page.contains("name=\"password\""), "no password on the SMS sign-in");
        let form = [("csrf", hidden(&page, "csrf")), ("tx", tx), ("phone", phone.to_string())];
        let resp = b.post(format!("{}/realms/test/smslogin", server.url)).form(&form).send().await.expect("post");
        assert_eq!(resp.status(), 303);
        let verify = b
            .get(format!("{}{}", server.url, location(&resp)))
            .send()
            .await
            .expect("verify")
            .text()
            .await
            .expect("html");
        let code: String = last_sms(&server).body.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
        let form = [("csrf", hidden(&verify, "csrf")), ("tx", hidden(&verify, "tx")), ("code", code)];
        let done =
            b.post(format!("{}/realms/test/smslogin/verify", server.url)).form(&form).send().await.expect("post");
        if dormant {
            assert_eq!(done.status(), 200);
            assert!(done.text().await.expect("html").contains("长期未使用"), "a recycled number cannot sign in");
        } else {
            assert_eq!(done.status(), 303);
            assert!(location(&done).starts_with("https://b.example.test/cb?code="), "{}", location(&done));
            let events =
                civid::store::audit::list(&server.state.db, "test", Some("signin.sms"), 5).await.expect("audit");
            assert!(events.iter().any(|e| e.outcome == "success" && e.actor.as_deref() == Some(ids[0].as_str())));
        }
    }
    server.stop().await;
}
