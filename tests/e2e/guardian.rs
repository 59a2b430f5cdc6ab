//! Minors and guardians (PIPL Art. 31): in a realm with `minors =
//! "guardian"` a minor whose name and number match the registry gets a
//! one-time code instead of L3; an adult L3 citizen of the realm confirms
//! with it, and the minor's account and sessions become L3 with the
//! guardian recorded. Wrong codes, wrong names, unverified or under-age
//! guardians change nothing; the default realm still sends minors to a
//! service hall.
use chrono::Datelike;

use crate::harness::{TestServer, browser, hidden, location};
use crate::realname::{PW, account_sign_in, registry_row, server_user_id, verify_in};

/// A valid resident ID number (GB 11643) of someone born on 1 January,
/// `years` years before this year.
fn born_years_ago(years: i32, serial: &str) -> String {
    let year = chrono::Utc::now().date_naive().year() - years;
    let body = format!("110105{year:04}0101{serial}");
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.chars().zip(W).map(|(c, w)| c.to_digit(10).unwrap_or(0) * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// The one-time code shown on the minor's page.
fn shown_code(html: &str) -> String {
    let start = html.find("id=\"guardian-code\">").map(|i| i + "id=\"guardian-code\">".len()).expect("a code");
    html[start..].split('<').next().unwrap_or_default().trim().to_string()
}

async fn confirm(
    server: &TestServer,
    b: &reqwest::Client,
    code: &str,
    name: &str,
    id: &str,
    consent: bool,
) -> reqwest::Response {
    let page = format!("{}/realms/family/account/guardian", server.url);
    let html = b.get(&page).send().await.expect("page").text().await.expect("html");
    let mut form = vec![
        ("csrf", hidden(&html, "csrf")),
        ("code", code.to_string()),
        ("minor_name", name.to_string()),
        ("minor_id", id.to_string()),
        ("relationship", "parent".to_string()),
    ];
    if consent {
        form.push(("consent", "yes".to_string()));
    }
    b.post(&page).form(&form).send().await.expect("confirm")
}

async fn level(server: &TestServer, uid: &str) -> String {
    civid::realname::level_of(&server.state, "family", uid).await.expect("level")
}

#[tokio::test]
async fn a_guardian_confirms_a_minor_online() {
    let server = TestServer::start().await;
    let s = &server.state;
    let realm = s.realms.get("family").expect("realm");
    let minor_id = born_years_ago(10, "101");
    let parent_id = born_years_ago(40, "202");
    let teen_id = born_years_ago(16, "303");
    registry_row(&server, &minor_id, "李小明", "alive").await;
    registry_row(&server, &parent_id, "李大明", "alive").await;
    registry_row(&server, &teen_id, "李青", "alive").await;
    let minor = server.user("family", "xiaoming", PW).await;
    let parent = server.user("family", "daming", PW).await;
    let teen = server.user("family", "liqing", PW).await;
    server.user("family", "stranger", PW).await;
    let today = chrono::Utc::now().date_naive();
    let birth = |id: &str| civid::identity::ResidentId::parse(id, today).expect("valid").birth_date();
    let v = civid::realname::verify(s, &realm, &parent, &parent_id, birth(&parent_id), "李大明", 0, None).await;
    assert_eq!(v.expect("verify"), civid::realname::Outcome::Verified("L3".into()));
    let v = civid::realname::verify(s, &realm, &teen, &teen_id, birth(&teen_id), "李青", 0, None).await;
    assert_eq!(v.expect("verify"), civid::realname::Outcome::Verified("L3".into()), "14 and older verify alone");

    // The minor: name and number match, but no L3 yet; a code, shown once.
    let mb = browser();
    account_sign_in(&server, &mb, "family", "xiaoming").await;
    let r = verify_in(&server, &mb, "family", "李小明", &minor_id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let stale = shown_code(&r.text().await.expect("html"));
    assert_eq!(stale.len(), 11, "{stale}");
    assert_eq!(level(&server, &minor).await, "L2");
    // Verifying again gives a new code; the old one stops working.
    let html = verify_in(&server, &mb, "family", "李小明", &minor_id).await.text().await.expect("html");
    let code = shown_code(&html);
    assert_ne!(code, stale);
    assert!(html.contains("监护人") && !html.contains(&minor_id), "explained, the number not echoed");

    // Guardians who may not confirm: not verified, not an adult.
    let sb = browser();
    account_sign_in(&server, &sb, "family", "stranger").await;
    let page = sb.get(format!("{}/realms/family/account/guardian", server.url)).send().await.expect("page");
    assert!(page.text().await.expect("html").contains("只有已完成实名认证的成年人"));
    let stranger = server_user_id(&server, "family", "stranger").await;
    let done =
        civid::realname::guardian::confirm(s, &realm, &stranger, &code, &minor_id, "李小明", "parent", 1, None).await;
    assert_eq!(done.expect("confirm"), civid::realname::guardian::Confirmed::NotVerified);
    let tb = browser();
    account_sign_in(&server, &tb, "family", "liqing").await;
    let r = confirm(&server, &tb, &code, "李小明", &minor_id, true).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("html").contains("监护人须年满 18 周岁"));
    assert_eq!(level(&server, &minor).await, "L2");

    // The parent: the account centre leads to the page; the form is checked.
    let pb = browser();
    account_sign_in(&server, &pb, "family", "daming").await;
    let account = pb.get(format!("{}/realms/family/account", server.url)).send().await.expect("account");
    let account = account.text().await.expect("html");
    assert!(account.contains("id=\"guardian\""), "the account centre links to the page");
    let r = pb
        .post(format!("{}/realms/family/account/guardian", server.url))
        .form(&[("code", code.as_str()), ("minor_name", "李小明"), ("minor_id", minor_id.as_str())])
        .send()
        .await
        .expect("no csrf");
    assert_eq!(r.status(), 403, "CSRF");
    let r = confirm(&server, &pb, &code, "李小明", &minor_id, false).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("aria-describedby=\"guardian-consent-text consent-error\""));
    // The replaced code, then the right code with another name: refused,
    // counted, nothing changed.
    let r = confirm(&server, &pb, &stale, "李小明", &minor_id, true).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("id=\"code-error\""));
    let r = confirm(&server, &pb, &code, "李晓明", &minor_id, true).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("id=\"minor-error\""));
    assert_eq!(level(&server, &minor).await, "L2");

    // Confirmed: the minor is L3, their live session too, the guardian recorded.
    let r = confirm(&server, &pb, &code.to_lowercase().replace('-', " "), "李小明", &minor_id, true).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/realms/family/account?done=guardian_confirmed");
    assert_eq!(level(&server, &minor).await, "L3");
    let sessions = civid::store::sessions::live_of_user(&s.db, "family", &minor).await.expect("sessions");
    assert!(!sessions.is_empty() && sessions.iter().all(|x| x.acr == "L3"), "the minor's sessions are L3");
    let g = civid::store::realname::guardians_of(&s.db, "family", &minor).await.expect("guardians");
    assert_eq!(g.len(), 1);
    assert_eq!((g[0].guardian_user_id.as_str(), g[0].relationship.as_str()), (parent.as_str(), "parent"));
    assert!(g[0].consent_at > 0 && g[0].confirmed_at >= g[0].consent_at);
    // Only what the registry verified is in the proof behind verified_claims.
    let p = civid::realname::proven(s, "family", &minor).await.expect("db").expect("proof");
    assert_eq!((p.name.as_str(), p.id_number.as_str(), p.level.as_str()), ("李小明", minor_id.as_str(), "L3"));
    let evidence = p.evidence.to_string();
    assert!(evidence.contains("population_register") && !evidence.contains("guardian"), "{evidence}");
    // Both sides audited, without the number in clear.
    let e = civid::store::audit::list(&s.db, "family", Some("realname.guardian"), 20).await.expect("audit");
    assert!(e.iter().any(|e| e.outcome == "success" && e.actor.as_deref() == Some(parent.as_str())));
    assert!(e.iter().filter(|e| e.outcome == "failure").count() >= 4, "{e:?}");
    let v = civid::store::audit::list(&s.db, "family", Some("realname.verify"), 20).await.expect("audit");
    assert!(v.iter().any(|e| e.outcome == "pending" && e.actor.as_deref() == Some(minor.as_str())));
    assert!(
        v.iter().any(|e| e.outcome == "success"
            && e.actor.as_deref() == Some(minor.as_str())
            && e.detail.contains(&parent))
    );
    let c = civid::store::audit::list(&s.db, "family", Some("realname.consent"), 20).await.expect("audit");
    assert!(c.iter().any(|e| e.actor.as_deref() == Some(parent.as_str()) && e.detail.contains("Art. 31")));
    for e in e.iter().chain(v.iter()) {
        assert!(!e.detail.contains(&minor_id) && !e.detail.contains("李小明"), "no PII in the audit log");
    }

    // Used once; then the failures reach the day's limit.
    let r = confirm(&server, &pb, &code, "李小明", &minor_id, true).await;
    assert_eq!(r.status(), 400, "a code works once");
    for _ in 0..2 {
        assert_eq!(confirm(&server, &pb, "ZZZZZ-ZZZZZ", "李小明", &minor_id, true).await.status(), 400);
    }
    assert_eq!(confirm(&server, &pb, "ZZZZZ-ZZZZZ", "李小明", &minor_id, true).await.status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn by_default_minors_are_sent_to_a_service_hall() {
    let server = TestServer::start().await;
    let minor_id = born_years_ago(10, "101");
    registry_row(&server, &minor_id, "李小明", "alive").await;
    server.user("test", "xiaoming", PW).await;
    let b = browser();
    account_sign_in(&server, &b, "test", "xiaoming").await;
    let r = verify_in(&server, &b, "test", "李小明", &minor_id).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.expect("html");
    assert!(html.contains("政务服务大厅") && !html.contains("guardian-code"), "{html}");
    assert!(html.contains("未满 14 周岁"), "the realm's age limit is named: {html}");
    let uid = server_user_id(&server, "test", "xiaoming").await;
    assert_eq!(civid::realname::level_of(&server.state, "test", &uid).await.expect("level"), "L2");
    // The guardian page exists only where the realm chose guardians.
    let r = b.get(format!("{}/realms/test/account/guardian", server.url)).send().await.expect("page");
    assert_eq!(r.status(), 404);
    server.stop().await;
}
