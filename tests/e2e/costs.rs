//! What each flow asks of the stores every node shares, read from a real
//! `civid serve` process's `/metrics` (its own process, so no other test's
//! requests are counted): database reads and writes and ephemeral-store
//! (Redis) commands made by the flow's requests. The deployment issue's
//! limits: a full password sign-in at most 6 database writes, an SSO round
//! at most 2 writes and 8 ephemeral commands, `client_credentials` and
//! userinfo no write of their own (the audit entry is written by the group
//! commit, shared among concurrent requests, and counted apart).
use crate::harness::{Node, browser, civid, fresh_database, location, node_env, query_param, unique};
use crate::steps::sign_in;

/// Request-made database reads and writes, ephemeral commands, and the
/// background writes (audit group commit, jobs) so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    reads: u64,
    writes: u64,
    commands: u64,
    background_writes: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            reads: self.reads - o.reads,
            writes: self.writes - o.writes,
            commands: self.commands - o.commands,
            background_writes: self.background_writes - o.background_writes,
        }
    }
}

async fn counts(node: &Node) -> Counts {
    let text = reqwest::get(format!("{}/metrics", node.admin)).await.expect("metrics").text().await.expect("text");
    let mut c = Counts::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let v: u64 = value.parse::<f64>().map(|f| f as u64).unwrap_or(0);
        // The test's own scrapes (which count accounts and sessions).
        if name.contains("endpoint=\"/metrics\"") {
            continue;
        }
        if name.starts_with("civid_request_db_statements_total{") {
            if name.contains("kind=\"write\"") {
                c.writes += v;
            } else if name.contains("kind=\"read\"") {
                c.reads += v;
            }
        } else if name.starts_with("civid_request_ephemeral_commands_total{") {
            c.commands += v;
        } else if name.starts_with("civid_db_statements_total{")
            && name.contains("kind=\"write\"")
            && name.contains("origin=\"background\"")
        {
            c.background_writes += v;
        }
    }
    c
}

fn pkce() -> (String, String) {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    (civid::crypto::random::sha256_b64(verifier.as_bytes()), verifier)
}

fn authorize(base: &str, client: &str, host: &str, scope: &str, challenge: &str) -> String {
    format!(
        "{base}/realms/test/authorize?response_type=code&client_id={client}&redirect_uri=https%3A%2F%2F{host}%2Fcb\
         &scope={scope}&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256"
    )
}

/// Redeems a code at the token endpoint as `client` (portal-a's secret is
/// secret-a, portal-b (by POST) and portal-c's secret-b).
async fn redeem(base: &str, client: &str, host: &str, code: &str, verifier: &str) -> serde_json::Value {
    let redirect = format!("https://{host}/cb");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier),
    ];
    let http = reqwest::Client::new();
    let req = match client {
        "portal-a" => http.post(format!("{base}/realms/test/token")).basic_auth("portal-a", Some("secret-a")),
        "portal-b" => {
            form.push(("client_id", "portal-b"));
            form.push(("client_secret", "secret-b"));
            http.post(format!("{base}/realms/test/token"))
        }
        other => http.post(format!("{base}/realms/test/token")).basic_auth(other, Some("secret-b")),
    };
    let resp = req.form(&form).send().await.expect("token");
    assert_eq!(resp.status(), 200, "token exchange");
    resp.json().await.expect("token json")
}

#[tokio::test]
async fn each_flow_stays_within_its_share_of_the_stores() {
    let (db, _guard) = fresh_database().await;
    let env = node_env(&db, Some(&unique("civid-costs-")));
    let (ok, _, err) = civid(
        &["user", "add", "--realm", "test", "--phone", "13800138077", "--username", "costuser", "--password-stdin"],
        &env,
        Some("correct horse battery\n"),
    );
    assert!(ok, "user add: {err}");
    let node = Node::start(&env, None).await;
    let base = node.url.clone();
    let browser = browser();
    let mut report = Vec::new();

    // A full password sign-in at a portal that needs no consent: authorize,
    // the sign-in page, the password, the code exchanged for tokens.
    let before = counts(&node).await;
    let (challenge, verifier) = pkce();
    let callback = sign_in(
        &browser,
        &authorize(&base, "portal-b", "b.example.test", "openid", &challenge),
        "costuser",
        "correct horse battery",
    )
    .await;
    let code = query_param(&callback, "code").expect("code");
    redeem(&base, "portal-b", "b.example.test", &code, &verifier).await;
    let signin = counts(&node).await - before;
    report.push(("password sign-in", signin));

    // An SSO round at a second portal: authorize with the session cookie,
    // the code exchanged for tokens.
    let before = counts(&node).await;
    let (challenge, verifier) = pkce();
    let resp = browser
        .get(authorize(&base, "portal-c", "c.example.test", "openid%20profile", &challenge))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 303);
    let code = query_param(&location(&resp), "code").expect("silent SSO gives a code");
    let tokens = redeem(&base, "portal-c", "c.example.test", &code, &verifier).await;
    let sso = counts(&node).await - before;
    report.push(("SSO round", sso));
    let access = tokens["access_token"].as_str().expect("access token").to_string();

    let before = counts(&node).await;
    let resp = reqwest::Client::new()
        .get(format!("{base}/realms/test/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 200);
    let userinfo = counts(&node).await - before;
    report.push(("userinfo", userinfo));

    let before = counts(&node).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/realms/test/token"))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("client_credentials");
    assert_eq!(resp.status(), 200);
    let cc = counts(&node).await - before;
    report.push(("client_credentials", cc));

    // Refresh (rotation), introspection and a sign-out: reported, no limit.
    let refresh_token = tokens["refresh_token"].as_str().expect("portal-c is issued a refresh token").to_string();
    let before = counts(&node).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/realms/test/token"))
        .basic_auth("portal-c", Some("secret-b"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())])
        .send()
        .await
        .expect("refresh");
    assert_eq!(resp.status(), 200);
    report.push(("refresh", counts(&node).await - before));

    let before = counts(&node).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/realms/test/introspect"))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status(), 200);
    report.push(("introspection", counts(&node).await - before));

    // Signing out (confirmed on the page: no hint) ends the session and
    // tells both portals that took part, portal-b and portal-c.
    let before = counts(&node).await;
    let page = browser.get(format!("{base}/realms/test/logout")).send().await.expect("logout");
    assert_eq!(page.status(), 200, "a confirmation page");
    let html = page.text().await.expect("html");
    let resp = browser
        .post(format!("{base}/realms/test/logout/confirm"))
        .form(&[("csrf", crate::harness::hidden(&html, "csrf"))])
        .send()
        .await
        .expect("confirm");
    assert!(resp.status().is_success() || resp.status().is_redirection(), "{}", resp.status());
    report.push(("logout", counts(&node).await - before));

    eprintln!("flow costs (request-made DB reads/writes, ephemeral commands; background writes):");
    for (flow, c) in &report {
        eprintln!(
            "  {flow:<20} reads {:>2}  writes {:>2}  ephemeral {:>2}  background writes {:>2}",
            c.reads, c.writes, c.commands, c.background_writes
        );
    }
    // The counting itself works: a sign-in cannot be free.
    assert!(signin.reads > 0 && signin.writes > 0 && signin.commands > 0, "{signin:?}");
    assert!(signin.writes <= 6, "a password sign-in makes at most 6 database writes: {signin:?}");
    assert!(sso.writes <= 2, "an SSO round makes at most 2 database writes: {sso:?}");
    assert!(sso.commands <= 8, "an SSO round makes at most 8 ephemeral-store commands: {sso:?}");
    assert_eq!(userinfo.writes, 0, "userinfo writes nothing of its own: {userinfo:?}");
    assert_eq!(cc.writes, 0, "client_credentials writes nothing of its own: {cc:?}");
}

/// A password sign-in reads the account with what decides its next step
/// (second factors held, identity level) in one statement; on the
/// configured backend, those facts are right for each kind of account.
#[tokio::test]
async fn the_sign_in_lookup_brings_factors_and_level_with_the_account() {
    use civid::store::{credentials, realname, users};
    let (url, _guard) = fresh_database().await;
    let db = civid::store::connect(&url, 2).await.expect("connect");
    civid::store::migrate(&db).await.expect("migrate");
    let (realm, t) = ("facts", 1_700_000_000);
    let credential = |user: &str, kind: &str, n: u32| credentials::CredentialRecord {
        id: format!("{user}-{kind}-{n}"),
        realm: realm.into(),
        user_id: user.into(),
        kind: kind.into(),
        name: kind.into(),
        lookup: None,
        sealed: vec![1],
        created_at: t,
        last_used_at: None,
    };
    for (user, kinds, level) in [
        ("plain", &[][..], None),
        ("with-totp", &["totp"][..], Some("L3")),
        ("with-passkeys", &["passkey", "passkey"][..], None),
        ("with-both", &["passkey", "totp"][..], Some("L4")),
    ] {
        users::insert(&db, realm, user, Some("$argon2id$x".into()), None).await.expect("user");
        users::insert_identifier(&db, realm, "username", &format!("idx-{user}"), user, vec![0], true)
            .await
            .expect("identifier");
        for (n, k) in kinds.iter().enumerate() {
            credentials::insert(&db, credential(user, k, n as u32)).await.expect("credential");
        }
        if let Some(l) = level {
            realname::insert_proof(
                &db,
                realname::ProofRecord {
                    realm: realm.into(),
                    user_id: user.into(),
                    id_index: format!("id-{user}"),
                    id_sealed: vec![0],
                    name_sealed: vec![0],
                    level: l.into(),
                    method: "registry".into(),
                    evidence: "[]".into(),
                    verified_at: t,
                    consent_at: t,
                },
            )
            .await
            .expect("proof");
        }
    }
    // Another realm's rows naming the same user id must not count.
    credentials::insert(&db, credentials::CredentialRecord { realm: "other".into(), ..credential("plain", "totp", 9) })
        .await
        .expect("credential");

    let facts = |totp, passkey, level: Option<&str>| users::SignInFacts {
        totp,
        passkey,
        any_credential: totp || passkey,
        proof_level: level.map(str::to_string),
    };
    for (user, want) in [
        ("plain", facts(false, false, None)),
        ("with-totp", facts(true, false, Some("L3"))),
        ("with-passkeys", facts(false, true, None)),
        ("with-both", facts(true, true, Some("L4"))),
    ] {
        let (u, got) = users::find_for_sign_in(&db, realm, "username", &format!("idx-{user}"))
            .await
            .expect("lookup")
            .unwrap_or_else(|| panic!("{user} not found"));
        assert_eq!((u.id.as_str(), got), (user, want));
    }
    assert!(users::find_for_sign_in(&db, realm, "username", "idx-nobody").await.expect("lookup").is_none());
    assert!(users::find_for_sign_in(&db, realm, "phone", "idx-plain").await.expect("lookup").is_none());
}
