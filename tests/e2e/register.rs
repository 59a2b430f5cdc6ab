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
    // The authorization request answers with the sign-in page.
    let login = b.get(authorize_url(server)).send().await.expect("authorize").text().await.expect("html");
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
        matches!(auth("the brand new password").await.expect("auth"), civid::authn::password::Outcome::Success { user_id, .. } if user_id == id)
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

// ------------------------------------------------------------------ by email

fn last_mail(server: &TestServer) -> civid::account::senders::Message {
    let mail = server.state.email.outbox_messages().last().cloned().expect("an email was sent");
    assert_eq!(mail.channel, civid::account::senders::Channel::Email);
    mail
}

/// The first run of six digits in `text`.
fn code_in(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(6).find(|w| w.iter().all(|c| c.is_ascii_digit())).map(|w| w.iter().collect())
}

/// Posts `identifier` on the first page of `flow`; returns the response.
async fn send_code(
    server: &TestServer,
    b: &reqwest::Client,
    html: &str,
    flow: &str,
    identifier: &str,
) -> reqwest::Response {
    let form = [("csrf", hidden(html, "csrf")), ("tx", hidden(html, "tx")), ("phone", identifier.to_string())];
    b.post(format!("{}/realms/test/{flow}", server.url)).form(&form).send().await.expect("post")
}

async fn page_at(server: &TestServer, b: &reqwest::Client, path: &str) -> String {
    b.get(format!("{}{path}", server.url)).send().await.expect("get").text().await.expect("html")
}

async fn finish(
    server: &TestServer,
    b: &reqwest::Client,
    flow: &str,
    verify: &str,
    code: &str,
    pw: &str,
    pw2: &str,
) -> reqwest::Response {
    let form = [
        ("csrf", hidden(verify, "csrf")),
        ("tx", hidden(verify, "tx")),
        ("code", code.to_string()),
        ("password", pw.to_string()),
        ("password2", pw2.to_string()),
    ];
    b.post(format!("{}/realms/test/{flow}/verify", server.url)).form(&form).send().await.expect("post")
}

/// Redeems the portal's code (portal-b, the PKCE verifier of `authorize_url`)
/// and returns the ID token's `sub`.
async fn sub_of(server: &TestServer, callback: &str) -> String {
    let code = query_param(callback, "code").expect("code");
    let form = [
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("redirect_uri", "https://b.example.test/cb".into()),
        ("client_id", "portal-b".into()),
        ("client_secret", "secret-b".into()),
        ("code_verifier", "c".repeat(43)),
    ];
    let resp = reqwest::Client::new()
        .post(format!("{}/token", server.issuer("test")))
        .form(&form)
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    let id_token = body["id_token"].as_str().expect("id_token");
    let payload = id_token.split('.').nth(1).expect("payload");
    let claims: serde_json::Value =
        serde_json::from_slice(&civid::crypto::random::b64_decode(payload).expect("b64")).expect("claims");
    claims["sub"].as_str().expect("sub").to_string()
}

/// Registers `email` with `password` through the pages; returns the portal callback.
async fn register_by_email(server: &TestServer, email: &str, password: &str) -> String {
    let b = browser();
    let html = registration_page(server, &b).await;
    let resp = send_code(server, &b, &html, "register", email).await;
    assert_eq!(resp.status(), 303);
    let code = code_in(&last_mail(server).body).expect("a code");
    let verify = page_at(server, &b, &location(&resp)).await;
    let done = finish(server, &b, "register", &verify, &code, password, password).await;
    assert_eq!(done.status(), 303);
    location(&done)
}

#[tokio::test]
async fn register_by_email_with_a_policy_abiding_password_then_continue_to_the_portal() {
    let server = TestServer::start().await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    assert!(html.contains("手机号码或电子邮箱"), "the realm takes both");
    let bad = send_code(&server, &b, &html, "register", "not-an-address@").await;
    assert!(bad.text().await.expect("html").contains("请输入正确的 11 位手机号码或电子邮箱地址"));

    let resp = send_code(&server, &b, &html, "register", " Li.Ming@Example.CN ").await;
    assert_eq!(resp.status(), 303);
    let mail = last_mail(&server);
    assert_eq!(mail.to, "li.ming@example.cn");
    assert!(mail.subject.contains("注册验证码"), "localized subject: {}", mail.subject);
    let code = code_in(&mail.body).expect("a code in the mail");
    assert!(server.state.sms.outbox_messages().is_empty(), "no SMS");
    // The address in the transaction is sealed.
    let stored = server.state.eph.get(&format!("tx:test:{}", hidden(&html, "tx"))).await.expect("get").expect("tx");
    assert!(!stored.contains("li.ming"), "{stored}");

    let verify = page_at(&server, &b, &location(&resp)).await;
    assert!(verify.contains("l***@example.cn"), "the address is shown masked");
    assert!(verify.contains("邮件中的验证码"));
    for (pw, says) in [
        ("short1!", "至少需要 8 个字符"),
        ("password123", "太常见或太容易被猜到"),
        ("12345678", "太常见或太容易被猜到"),
        ("qwertyui", "太常见或太容易被猜到"),
        ("li.ming-is-me", "不能包含您的邮箱名"),
    ] {
        let r = finish(&server, &b, "register", &verify, &code, pw, pw).await;
        assert_eq!(r.status(), 200, "{pw}");
        assert!(r.text().await.expect("html").contains(says), "{pw}: {says}");
    }
    let r = finish(&server, &b, "register", &verify, &code, "a good long password", "another one").await;
    assert!(r.text().await.expect("html").contains("两次输入的密码不一致"));
    let done = finish(&server, &b, "register", &verify, &code, "a good long password", "a good long password").await;
    assert_eq!(done.status(), 303);
    let back = location(&done);
    assert!(back.starts_with("https://b.example.test/cb?"), "{back}");
    assert!(!sub_of(&server, &back).await.is_empty(), "the portal gets its ID token");
    let outcome = civid::authn::password::authenticate(
        &server.state,
        "test",
        "li.ming@example.cn",
        "a good long password".into(),
    )
    .await
    .expect("auth");
    assert!(matches!(outcome, civid::authn::password::Outcome::Success { .. }));
    let events = civid::store::audit::list(&server.state.db, "test", Some("registration"), 20).await.expect("audit");
    assert!(events.iter().any(|e| e.outcome == "success" && detail(&e.detail)["method"] == "email"), "{events:?}");
    assert!(
        events.iter().any(|e| e.outcome == "failure" && detail(&e.detail)["problem"] == "password.error.guessable")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_registered_email_gets_a_notice_and_the_pages_look_the_same() {
    let server = TestServer::start().await;
    register_by_email(&server, "anna@example.cn", "first owner password").await;
    let mails = server.state.email.outbox_messages().len();
    // A minute later (the resend wait is lifted rather than waited for).
    let index = civid::account::identifiers::Identifier::email("anna@example.cn")
        .expect("email")
        .blind_index(&server.state.secrets.sealer);
    server.state.eph.delete(&format!("otp-resend:test:register:{index}")).await.expect("lift");

    let mut pages = Vec::new();
    for email in ["anna@example.cn", "alex@example.cn"] {
        let b = browser();
        let html = registration_page(&server, &b).await;
        let resp = send_code(&server, &b, &html, "register", email).await;
        assert_eq!(resp.status(), 303, "{email}");
        let verify = page_at(&server, &b, &location(&resp)).await;
        // Only the transaction and its CSRF tokens differ.
        let tx = hidden(&verify, "tx");
        pages.push(verify.replace(&hidden(&verify, "csrf"), "CSRF").replace(&tx, "TX"));
    }
    assert_eq!(pages[0], pages[1], "a registered address looks like a new one");
    let sent = server.state.email.outbox_messages();
    assert_eq!(sent.len(), mails + 2);
    let notice = &sent[mails];
    assert_eq!(notice.to, "anna@example.cn");
    assert!(notice.subject.contains("有人尝试") && code_in(&notice.body).is_none(), "{notice:?}");
    assert!(code_in(&sent[mails + 1].body).is_some(), "the new address gets a code");
    server.stop().await;
}

#[tokio::test]
async fn a_forgotten_password_is_recovered_by_email_for_the_same_sub() {
    let server = TestServer::start().await;
    let first = register_by_email(&server, "wang.fang@example.cn", "the old password").await;
    let sub = sub_of(&server, &first).await;

    let b = browser();
    let html = registration_page(&server, &b).await;
    let page = page_at(&server, &b, &format!("/realms/test/recover?tx={}", hidden(&html, "tx"))).await;
    // The mail speaks the language of the page (here English).
    let form = [("csrf", hidden(&page, "csrf")), ("tx", hidden(&page, "tx")), ("phone", "Wang.Fang@example.cn".into())];
    let resp = b
        .post(format!("{}/realms/test/recover", server.url))
        .header("accept-language", "en")
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 303);
    let mail = last_mail(&server);
    assert_eq!(mail.subject, "[City Identity] Your password reset code");
    assert!(mail.body.contains("You are resetting the password"), "{}", mail.body);
    let code = code_in(&mail.body).expect("code");
    let verify = page_at(&server, &b, &location(&resp)).await;
    assert!(verify.contains("验证码已发送至该邮箱"));
    let weak = finish(&server, &b, "recover", &verify, &code, "wang.fang1", "wang.fang1").await;
    assert!(weak.text().await.expect("html").contains("不能包含您的邮箱名"));
    let done = finish(&server, &b, "recover", &verify, &code, "the brand new password", "the brand new password").await;
    assert_eq!(done.status(), 303);
    assert_eq!(sub_of(&server, &location(&done)).await, sub, "the same account");
    let auth = |pw: &'static str| {
        civid::authn::password::authenticate(&server.state, "test", "wang.fang@example.cn", pw.into())
    };
    assert!(matches!(
        auth("the brand new password").await.expect("auth"),
        civid::authn::password::Outcome::Success { .. }
    ));
    assert!(matches!(auth("the old password").await.expect("auth"), civid::authn::password::Outcome::Failure { .. }));
    let events = civid::store::audit::list(&server.state.db, "test", Some("recovery"), 5).await.expect("audit");
    assert!(events.iter().any(|e| e.outcome == "success" && detail(&e.detail)["method"] == "email"));

    // An unknown address: the same answer, and nothing is sent.
    let sent = server.state.email.outbox_messages().len();
    let b = browser();
    let html = registration_page(&server, &b).await;
    let page = page_at(&server, &b, &format!("/realms/test/recover?tx={}", hidden(&html, "tx"))).await;
    let resp = send_code(&server, &b, &page, "recover", "nobody@example.cn").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(server.state.email.outbox_messages().len(), sent);
    server.stop().await;
}

/// A tiny SMTP server: records each message's DATA; `None` once closed.
async fn smtp_receiver(listener: tokio::net::TcpListener) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 test.example ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send(std::mem::take(d));
                            data = None;
                            let _ = w.write_all(b"250 2.0.0 queued\r\n").await;
                        } else {
                            d.push_str(line.strip_prefix('.').unwrap_or(&line));
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test.example\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(answer).await;
                }
            });
        }
    });
    rx
}

/// The text of a one-part message as lettre writes it (base64, quoted-printable or plain).
fn mail_text(raw: &str) -> String {
    use base64::Engine;
    let (headers, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let lower = headers.to_ascii_lowercase();
    if lower.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).expect("base64")).expect("utf-8")
    } else {
        body.replace("=\n", "")
    }
}

#[tokio::test]
async fn email_goes_through_smtp_and_a_relay_outage_lets_the_citizen_resend() {
    // A port nothing listens on yet: the relay is down.
    let port = crate::harness::free_port();
    let server = TestServer::start_configured(|s| {
        s.email_sender = "smtp".into();
        s.smtp_url = format!("smtp://127.0.0.1:{port}");
        s.smtp_from = "城市统一身份认证 <noreply@id.example.test>".into();
    })
    .await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    let down = send_code(&server, &b, &html, "register", "zhao.lei@example.cn").await;
    assert_eq!(down.status(), 200);
    let page = down.text().await.expect("html");
    assert!(page.contains("邮件发送失败"), "the citizen is told");
    assert!(page.contains("value=\"zhao.lei@example.cn\""), "and keeps what they typed");
    let events =
        civid::store::audit::list(&server.state.db, "test", Some("registration.code_sent"), 5).await.expect("audit");
    assert!(events.iter().any(|e| e.outcome == "failure" && detail(&e.detail)["channel"] == "email"));

    // The relay comes back; asking again at once works.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the relay port");
    let mut received = smtp_receiver(listener).await;
    let again = send_code(&server, &b, &page, "register", "zhao.lei@example.cn").await;
    assert_eq!(again.status(), 303, "resend right after a failure");
    let raw = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
        .await
        .expect("in time")
        .expect("a message");
    assert!(raw.contains("zhao.lei@example.cn") && raw.contains("noreply@id.example.test"), "{raw}");
    let text = mail_text(&raw);
    assert!(text.contains("注册城市统一身份认证账号"), "{text}");
    let code = code_in(&text).expect("the code arrives");
    let verify = page_at(&server, &b, &location(&again)).await;
    let done = finish(&server, &b, "register", &verify, &code, "a good long password", "a good long password").await;
    assert_eq!(done.status(), 303);
    assert!(location(&done).starts_with("https://b.example.test/cb?code="));
    server.stop().await;
}

#[tokio::test]
async fn a_realm_without_registration_or_sms_sign_in_offers_neither() {
    let server = TestServer::start().await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    let tx = hidden(&html, "tx");

    // Only email registration, no SMS sign-in.
    let set = |registration: &[&str], methods: &[&str]| {
        let mut settings = server.state.realms.get("test").expect("realm").settings.clone();
        settings.accounts.registration = registration.iter().map(|s| s.to_string()).collect();
        settings.accounts.sign_in_methods = methods.iter().map(|s| s.to_string()).collect();
        let json = serde_json::to_string(&settings).expect("json");
        let state = server.state.clone();
        async move {
            civid::store::realms::realm_update(&state.db, "test", json).await.expect("update");
            state.realms.refresh(&state.settings, &state.db, &state.secrets.kek).await.expect("refresh");
        }
    };
    set(&["email"], &["password"]).await;
    let login = page_at(&server, &b, &format!("/realms/test/login?tx={tx}")).await.replace("&#x2f;", "/");
    assert!(login.contains("/register?") && !login.contains("/smslogin?"), "{login}");
    let sms = b.get(format!("{}/realms/test/smslogin?tx={tx}", server.url)).send().await.expect("get");
    assert_eq!(sms.status(), 404);
    assert!(sms.text().await.expect("html").contains("页面不存在"));
    let reg = page_at(&server, &b, &format!("/realms/test/register?tx={tx}")).await;
    assert!(reg.contains("使用电子邮箱注册") && reg.contains("type=\"email\""));
    let phone = send_code(&server, &b, &reg, "register", "13912345678").await;
    assert!(phone.text().await.expect("html").contains("请输入正确的电子邮箱地址"), "no phone registration");

    // No self-registration at all.
    set(&[], &["password", "sms"]).await;
    let login = page_at(&server, &b, &format!("/realms/test/login?tx={tx}")).await.replace("&#x2f;", "/");
    assert!(!login.contains("/register?") && login.contains("/smslogin?"), "{login}");
    for path in ["/realms/test/register", "/realms/test/register/verify"] {
        let r = b.get(format!("{}{path}?tx={tx}", server.url)).send().await.expect("get");
        assert_eq!(r.status(), 404, "{path}");
    }
    let post = send_code(&server, &b, &reg, "register", "someone@example.cn").await;
    assert_eq!(post.status(), 404);
    server.stop().await;
}

fn detail(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

#[tokio::test]
async fn register_without_a_password_to_add_a_passkey_then_continue() {
    let server = TestServer::start().await;
    let b = browser();
    let html = registration_page(&server, &b).await;
    let url = format!("{}/realms/test/register", server.url);
    let form = [("csrf", hidden(&html, "csrf")), ("tx", hidden(&html, "tx")), ("phone", "137 0000 1234".into())];
    let resp = b.post(&url).form(&form).send().await.expect("post");
    assert_eq!(resp.status(), 303);
    let code = code_in(&last_sms(&server).body).expect("code");
    let verify =
        b.get(format!("{}{}", server.url, location(&resp))).send().await.expect("verify").text().await.expect("html");
    assert!(verify.contains("name=\"skip\" value=\"passkey\""), "the passkey instead of a password is offered");
    let form = [
        ("csrf", hidden(&verify, "csrf")),
        ("tx", hidden(&verify, "tx")),
        ("code", code),
        ("password", String::new()),
        ("password2", String::new()),
        ("skip", "passkey".into()),
    ];
    let done = b.post(format!("{url}/verify")).form(&form).send().await.expect("post");
    assert_eq!(done.status(), 303);
    let setup = location(&done);
    assert!(setup.starts_with("/realms/test/login/passkey?tx="), "{setup}");
    // The passkey page, in the session the registration started.
    let page = b.get(format!("{}{setup}", server.url)).send().await.expect("setup");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html").replace("&#x2f;", "/").replace("&amp;", "&");
    assert!(page.contains("id=\"passkey-add\"") && page.contains("data-next=\""), "{page}");
    let cont = page.split("href=\"").find(|s| s.starts_with("/realms/test/login/continue?")).expect("continue link");
    let cont = cont.split('"').next().unwrap_or_default().to_string();
    // Another browser cannot continue someone else's sign-in.
    let other = browser().get(format!("{}{cont}", server.url)).send().await.expect("other");
    assert_eq!(other.status(), 400);
    // Skipping goes on to the portal, signed in.
    let resp = b.get(format!("{}{cont}", server.url)).send().await.expect("continue");
    assert_eq!(resp.status(), 303);
    let back = location(&resp);
    assert!(back.starts_with("https://b.example.test/cb?") && query_param(&back, "code").is_some(), "{back}");
    // There is no password to guess: a password sign-in fails.
    let outcome = civid::authn::password::authenticate(&server.state, "test", "13700001234", String::new()).await;
    assert!(matches!(outcome.expect("auth"), civid::authn::password::Outcome::Failure { .. }));
    let events = civid::store::audit::list(&server.state.db, "test", Some("registration"), 5).await.expect("audit");
    assert!(events.iter().any(|e| e.outcome == "success" && e.detail.contains("\"password\":false")));
    server.stop().await;
}
