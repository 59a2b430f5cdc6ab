//! Scale-out: three `civid serve` processes on one PostgreSQL and one Redis
//! behind one public URL, the test playing the load balancer: every request
//! of a flow goes to the next node in turn. Sign-in, SSO to a second
//! portal, refresh, logout with back-channel delivery and key rotation work
//! whichever node serves each step; a node SIGKILLed mid-flow loses nothing
//! committed; a Redis restarted empty and a PostgreSQL briefly unreachable
//! (a TCP forwarder in between) are survived: 503 with a retry hint
//! meanwhile, never a wrong answer, then recovery within seconds.
//! Runs when the suite runs on PostgreSQL + Redis.
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use civid::crypto::jws;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{
    Node, browser, civid, free_port, fresh_database, hidden, location, node_env, query_param, redis_url, unique,
};
use crate::logout::{Inbox, Portal, set_backchannel_uri};
use crate::redis_modes::{cli, on_path, wait_for};
use crate::steps::{try_consent_across, try_sign_in_across};

const PASSWORD: &str = "correct horse battery";
const A_CB: &str = "https://a.example.test/cb";
const B_CB: &str = "https://b.example.test/cb";

fn on_pg_and_redis(test: &str) -> bool {
    let ok = std::env::var("CIVID_TEST_DATABASE_URL").is_ok() && redis_url().is_some();
    if !ok {
        eprintln!("{test}: runs on PostgreSQL + Redis only");
    }
    ok
}

/// The nodes' settings. Migrations and realm files are the template's,
/// applied once as a deployment's job does, so a node starting never
/// rewrites what a test set before it.
fn env_for(db: &str, prefix: &str) -> Vec<(String, String)> {
    let mut env = node_env(db, Some(prefix));
    env.push(("CIVID_MIGRATE_ON_START".into(), "false".into()));
    env.push(("CIVID_APPLY_REALMS_ON_START".into(), "false".into()));
    env
}

fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.into(), value.into()));
    env
}

/// A person, created with the CLI as an operator would.
fn add_user(env: &[(String, String)], username: &str) {
    let (ok, _, err) = civid(
        &["user", "add", "--realm", "test", "--username", username, "--password-stdin"],
        env,
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(ok, "civid user add: {err}");
}

/// Three nodes behind one public URL (the first node's, as behind a load
/// balancer); `next` hands out the live ones in turn.
struct Cluster {
    nodes: Vec<Node>,
    alive: Vec<AtomicBool>,
    turn: AtomicUsize,
    env: Vec<(String, String)>,
    /// The discovery document (the same on every node).
    discovery: Value,
}

impl Cluster {
    async fn start(env: &[(String, String)]) -> Cluster {
        let first = Node::start(env, None).await;
        let public = first.url.clone();
        let mut nodes = vec![first];
        for _ in 1..3 {
            nodes.push(Node::start(env, Some(&public)).await);
        }
        let mut docs = Vec::new();
        for n in &nodes {
            docs.push(get_json(&format!("{}/realms/test/.well-known/openid-configuration", n.url)).await);
        }
        assert_eq!(docs[0]["issuer"], format!("{public}/realms/test").as_str(), "the public issuer");
        assert!(docs.iter().all(|d| *d == docs[0]), "one discovery document on every node");
        Cluster {
            alive: nodes.iter().map(|_| AtomicBool::new(true)).collect(),
            nodes,
            turn: AtomicUsize::new(0),
            env: env.to_vec(),
            discovery: docs.swap_remove(0),
        }
    }

    /// Another node, as an orchestrator replacing a lost one would start.
    async fn add_node(&mut self) -> usize {
        self.nodes.push(Node::start(&self.env, Some(&self.nodes[0].url)).await);
        self.alive.push(AtomicBool::new(true));
        self.nodes.len() - 1
    }

    fn issuer(&self) -> String {
        format!("{}/realms/test", self.nodes[0].url)
    }

    fn url(&self, i: usize) -> String {
        self.nodes[i].url.clone()
    }

    fn live(&self) -> Vec<String> {
        (0..self.nodes.len()).filter(|i| self.alive[*i].load(Ordering::SeqCst)).map(|i| self.url(i)).collect()
    }

    /// The next live node's base URL.
    fn next(&self) -> String {
        for _ in 0..self.nodes.len() {
            let i = self.turn.fetch_add(1, Ordering::SeqCst) % self.nodes.len();
            if self.alive[i].load(Ordering::SeqCst) {
                return self.url(i);
            }
        }
        panic!("no live node");
    }

    /// A URL at the public address sent to the next node: its scheme, host
    /// and port rewritten, as the load balancer would.
    fn on_next(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("url");
        let node = url::Url::parse(&self.next()).expect("node url");
        u.set_scheme(node.scheme()).expect("scheme");
        u.set_host(node.host_str()).expect("host");
        u.set_port(node.port()).expect("port");
        u.to_string()
    }

    /// An endpoint the discovery document names (`token_endpoint`, …), at
    /// the next node.
    fn at(&self, endpoint: &str) -> String {
        self.on_next(self.discovery[endpoint].as_str().unwrap_or_else(|| panic!("discovery names no {endpoint}")))
    }

    /// SIGKILL: gone at once, as with a lost machine.
    fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
        self.alive[i].store(false, Ordering::SeqCst);
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.expect("json")
}

/// A portal of realm `test`.
struct Rp {
    client: &'static str,
    secret: &'static str,
    cb: &'static str,
    /// client_secret_basic, else client_secret_post.
    basic: bool,
}

const PORTAL_A: Rp = Rp { client: "portal-a", secret: "secret-a", cb: A_CB, basic: true };
const PORTAL_B: Rp = Rp { client: "portal-b", secret: "secret-b", cb: B_CB, basic: false };

/// An authorization request and what the portal keeps for its callback.
struct Auth {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn authorize_at(base: &str, rp: &Rp, extra: &str) -> Auth {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    let challenge = civid::crypto::random::sha256_b64(verifier.as_bytes());
    let (state, nonce) = (unique("st"), unique("n"));
    let url = format!(
        "{base}/realms/test/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile\
         &state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256{extra}",
        rp.client,
        url::form_urlencoded::byte_serialize(rp.cb.as_bytes()).collect::<String>(),
    );
    Auth { url, state, nonce, verifier }
}

/// A token request of `rp` at `url` (a connection error is the caller's to
/// judge: the node may be gone).
async fn try_token(url: &str, rp: &Rp, form: &[(&str, &str)]) -> reqwest::Result<reqwest::Response> {
    let mut form = form.to_vec();
    let mut req = reqwest::Client::new().post(url);
    if rp.basic {
        req = req.basic_auth(rp.client, Some(rp.secret));
    } else {
        form.extend([("client_id", rp.client), ("client_secret", rp.secret)]);
    }
    req.form(&form).send().await
}

async fn token(url: &str, rp: &Rp, form: &[(&str, &str)]) -> reqwest::Response {
    try_token(url, rp, form).await.unwrap_or_else(|e| panic!("token request at {url}: {e}"))
}

fn code_form<'a>(rp: &'a Rp, code: &'a str, auth: &'a Auth) -> [(&'a str, &'a str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.cb),
        ("code_verifier", auth.verifier.as_str()),
    ]
}

/// What a portal holds after a code or refresh exchange, the ID token
/// verified.
struct Tokens {
    access: String,
    refresh: Option<String>,
    id_token: String,
    /// The ID token's claims.
    claims: Value,
}

/// Checks a successful token response: the ID token verifies against the
/// JWKS fetched from the next node, for this issuer, portal and nonce
/// (None: a refresh, whose ID token carries none).
async fn tokens(resp: reqwest::Response, c: &Cluster, rp: &Rp, nonce: Option<&str>) -> Tokens {
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "token response: {body}");
    let id_token = body["id_token"].as_str().expect("id token").to_string();
    let claims = verify_id_token(&c.at("jwks_uri"), &c.issuer(), rp, &id_token, nonce).await;
    Tokens {
        access: body["access_token"].as_str().expect("access token").to_string(),
        refresh: body["refresh_token"].as_str().map(str::to_string),
        id_token,
        claims,
    }
}

/// A browser signs in at portal A across the nodes (each step to the next
/// one) and portal A redeems the code; returns the callback, the request
/// and the verified tokens.
async fn signed_in_at_a(c: &Cluster, b: &reqwest::Client, user: &str) -> (String, Auth, Tokens) {
    let auth = authorize_at(&c.next(), &PORTAL_A, "");
    let cb = try_sign_in_across(b, &auth.url, user, PASSWORD, || c.next()).await.expect("sign-in");
    let code = query_param(&cb, "code").expect("code");
    let a = tokens(
        token(&c.at("token_endpoint"), &PORTAL_A, &code_form(&PORTAL_A, &code, &auth)).await,
        c,
        &PORTAL_A,
        Some(&auth.nonce),
    )
    .await;
    (cb, auth, a)
}

/// As a relying party verifies an ID token (signature by a key of the
/// JWKS at `jwks_url`, issuer, audience, expiry, nonce); returns its claims.
async fn verify_id_token(jwks_url: &str, issuer: &str, rp: &Rp, id_token: &str, nonce: Option<&str>) -> Value {
    let jwks: CoreJsonWebKeySet = serde_json::from_value(get_json(jwks_url).await).expect("JWKS");
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(rp.client.into()),
        ClientSecret::new(rp.secret.into()),
        IssuerUrl::new(issuer.into()).expect("issuer"),
        jwks,
    )
    .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let parsed: CoreIdToken = serde_json::from_value(Value::String(id_token.into())).expect("an ID token");
    let verified = match nonce {
        Some(n) => parsed.claims(&verifier, &Nonce::new(n.into())).map(|_| ()),
        None => parsed.claims(&verifier, |_: Option<&Nonce>| Ok(())).map(|_| ()),
    };
    verified.unwrap_or_else(|e| panic!("the ID token of {} verifies with the JWKS of {jwks_url}: {e}", rp.client));
    jws::decode_unverified(id_token).expect("jwt").claims
}

/// Where the browser lands after an authorization request answered
/// without a page (SSO, or prompt=none).
async fn silent(b: &reqwest::Client, auth: &Auth, rp: &Rp) -> String {
    let resp = b.get(&auth.url).send().await.expect("authorize");
    assert_eq!(resp.status(), 303, "{}", auth.url);
    let to = location(&resp);
    assert!(to.starts_with(&format!("{}?", rp.cb)), "{to}");
    to
}

fn kid(token: &str) -> String {
    jws::decode_unverified(token).expect("jwt").header["kid"].as_str().unwrap_or_default().to_string()
}

async fn jwks_at(base: &str) -> Vec<Value> {
    get_json(&format!("{base}/realms/test/jwks")).await["keys"].as_array().expect("keys").clone()
}

fn kids(keys: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().filter_map(|k| k["kid"].as_str().map(str::to_string)).collect();
    k.sort();
    k
}

async fn client_credentials(base: &str) -> String {
    let r = token(&format!("{base}/realms/test/token"), &PORTAL_A, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200, "client_credentials at {base}");
    r.json::<Value>().await.expect("json")["access_token"].as_str().expect("access token").to_string()
}

async fn userinfo(url: &str, access: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).bearer_auth(access).send().await.expect("userinfo")
}

async fn introspect(url: &str, access: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("token", access)])
        .send()
        .await
        .expect("introspect")
}

async fn readyz(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn three_nodes_round_robin() {
    if !on_pg_and_redis("three_nodes_round_robin") {
        return;
    }
    let (db, _guard) = fresh_database().await;
    let env = env_for(&db, &unique("civid-scaleout-rr-"));
    add_user(&env, "scale1");
    // Both portals take back-channel logout tokens, at addresses written
    // before the nodes start (they read the clients then).
    let (listen_a, listen_b) = (bind().await, bind().await);
    let conn = civid::store::connect(&db, 1).await.expect("database");
    for (client, l) in [("portal-a", &listen_a), ("portal-b", &listen_b)] {
        let uri = format!("http://{}/bc", l.local_addr().expect("addr"));
        set_backchannel_uri(&conn, client, Some(&uri)).await;
    }
    conn.close().await.ok();
    let c = Cluster::start(&env).await;
    let pa = Portal::serve(Inbox::new(c.issuer(), "portal-a"), listen_a);
    let pb = Portal::serve(Inbox::new(c.issuer(), "portal-b"), listen_b);

    // Portal A: the authorization request, the sign-in page, the password
    // and the consent each go to the next node; the code to yet another.
    let b = browser();
    let (cb, auth, a) = signed_in_at_a(&c, &b, "scale1").await;
    assert!(cb.starts_with(&format!("{A_CB}?")), "{cb}");
    assert_eq!(query_param(&cb, "state"), Some(auth.state.clone()));
    assert_eq!(query_param(&cb, "iss"), Some(c.issuer()), "RFC 9207 iss: the one issuer");
    let sid = a.claims["sid"].as_str().expect("sid").to_string();

    // Portal B by SSO on another node: no page, the same session.
    let auth_b = authorize_at(&c.next(), &PORTAL_B, "");
    let code_b = query_param(&silent(&b, &auth_b, &PORTAL_B).await, "code").expect("code for B");
    let bb = tokens(
        token(&c.at("token_endpoint"), &PORTAL_B, &code_form(&PORTAL_B, &code_b, &auth_b)).await,
        &c,
        &PORTAL_B,
        Some(&auth_b.nonce),
    )
    .await;
    assert_eq!(bb.claims["sid"], sid.as_str(), "one SSO session across the nodes");
    assert_ne!(bb.claims["sub"], a.claims["sub"], "pairwise subjects");

    // Refresh on another node; userinfo and introspection on others.
    let rt = a.refresh.clone().expect("refresh token");
    let refreshed = tokens(
        token(&c.at("token_endpoint"), &PORTAL_A, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await,
        &c,
        &PORTAL_A,
        None,
    )
    .await;
    assert_eq!(refreshed.claims["sub"], a.claims["sub"]);
    let rt2 = refreshed.refresh.clone().expect("rotated refresh token");
    assert_ne!(rt2, rt, "refresh tokens rotate");
    let info = userinfo(&c.at("userinfo_endpoint"), &refreshed.access).await;
    assert_eq!(info.status(), 200);
    assert_eq!(info.json::<Value>().await.expect("json")["sub"], a.claims["sub"]);
    let intro: Value = introspect(&c.at("introspection_endpoint"), &refreshed.access).await.json().await.expect("json");
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["sub"], a.claims["sub"]);

    // Portal A asks for the logout (RP-initiated) on yet another node:
    // both portals get a logout token by the back channel.
    let logout = format!(
        "{}?id_token_hint={}&post_logout_redirect_uri=https%3A%2F%2Fa.example.test%2Fbye&state=rr",
        c.at("end_session_endpoint"),
        refreshed.id_token
    );
    let resp = b.get(&logout).send().await.expect("logout");
    assert_eq!(resp.status(), 200, "the signed-out page (portal B has a front-channel page)");
    let html = resp.text().await.expect("html").replace("&#x2f;", "/");
    assert!(html.contains("href=\"https://a.example.test/bye?state=rr\""), "{html}");
    let (got_a, got_b) = (pa.wait_for(1, 10).await, pb.wait_for(1, 10).await);
    assert_eq!((got_a.len(), got_b.len()), (1, 1), "refused: {:?} {:?}", pa.refused(), pb.refused());
    for (got, who) in [(&got_a[0], &a), (&got_b[0], &bb)] {
        assert_eq!(got["sid"], sid.as_str());
        assert_eq!(got["sub"], who.claims["sub"], "the subject the portal knows");
    }
    // Signed out on every node, and the session's refresh token is gone.
    for node in c.live() {
        for rp in [&PORTAL_A, &PORTAL_B] {
            let to = silent(&b, &authorize_at(&node, rp, "&prompt=none"), rp).await;
            assert_eq!(query_param(&to, "error").as_deref(), Some("login_required"), "{} at {node}", rp.client);
        }
    }
    let r =
        token(&c.at("token_endpoint"), &PORTAL_A, &[("grant_type", "refresh_token"), ("refresh_token", &rt2)]).await;
    assert_eq!(r.status(), 400, "the session's refresh token ended with it");
    assert!(pa.refused().is_empty() && pb.refused().is_empty());

    // Key rotation by the CLI while the nodes serve.
    let before = kids(&jwks_at(&c.url(0)).await);
    for node in c.live() {
        assert_eq!(kids(&jwks_at(&node).await), before, "one JWKS on every node");
    }
    let mut signed = vec![client_credentials(&c.next()).await, refreshed.access.clone(), a.id_token.clone()];
    let (ok, out, err) = civid(&["keys", "rotate", "--realm", "test", "--alg", "ES256"], &c.env, None);
    assert!(ok, "civid keys rotate: {out}{err}");
    // Every node publishes the new key (announced; at worst at the next
    // cache refresh, 1 s here)…
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_kid = loop {
        let mut sets = Vec::new();
        for node in c.live() {
            sets.push(kids(&jwks_at(&node).await));
        }
        let added: Vec<String> = sets[0].iter().filter(|k| !before.contains(k)).cloned().collect();
        if added.len() == 1 && sets.iter().all(|s| *s == sets[0]) {
            break added[0].clone();
        }
        assert!(Instant::now() < deadline, "every node should publish the new key within 10 s: {sets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // …signs with it at once (the realm's lead time is 0), and whatever
    // any node signed, before or after, verifies with every node's JWKS.
    for node in c.live() {
        let t = client_credentials(&node).await;
        assert_eq!(kid(&t), new_kid, "{node} signs with the new key");
        signed.push(t);
    }
    for node in c.live() {
        let keys = jwks_at(&node).await;
        for t in &signed {
            jws::verify(t, &keys, &["RS256", "ES256"])
                .unwrap_or_else(|e| panic!("a token signed with {} verifies at {node}: {e}", kid(t)));
        }
    }
}

#[tokio::test]
async fn node_killed_mid_flow() {
    if !on_pg_and_redis("node_killed_mid_flow") {
        return;
    }
    let (db, _guard) = fresh_database().await;
    let env = env_for(&db, &unique("civid-scaleout-kill-"));
    add_user(&env, "scale2");
    let mut c = Cluster::start(&env).await;
    let (n1, n2, n3) = (c.url(0), c.url(1), c.url(2));

    // The sign-in page comes from node 1…
    let b = browser();
    let auth = authorize_at(&n1, &PORTAL_A, "");
    let page = b.get(&auth.url).send().await.expect("authorize");
    assert_eq!(page.status(), 200, "answered with the sign-in page");
    let html = page.text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "scale2".to_string()),
        ("password", PASSWORD.to_string()),
    ];
    // …which is lost before the citizen submits it.
    c.kill(0);
    let post = |base: &str| b.post(format!("{base}/realms/test/login")).form(&form).send();
    assert!(post(&n1).await.is_err(), "node 1 is gone");
    // The retry reaches node 2: the transaction, the browser binding and
    // its CSRF token hold there (shared state, one data key).
    let resp = post(&n2).await.expect("login at node 2");
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap_or_default());
    let consent = location(&resp);
    assert!(consent.contains("/consent?"), "{consent}");
    // Consent page from node 3, the answer at node 2, which issues the code.
    let mut order = [n3.clone(), n2.clone()].into_iter();
    let cb = try_consent_across(&b, &consent, true, || order.next().expect("node")).await.expect("consent");
    let code = query_param(&cb, "code").expect("code");

    // Node 2 (which started the SSO session and issued the code) is lost
    // too; the portal's retry redeems the code at node 3.
    c.kill(1);
    assert!(
        try_token(&format!("{n2}/realms/test/token"), &PORTAL_A, &code_form(&PORTAL_A, &code, &auth)).await.is_err()
    );
    let a = tokens(
        token(&format!("{n3}/realms/test/token"), &PORTAL_A, &code_form(&PORTAL_A, &code, &auth)).await,
        &c,
        &PORTAL_A,
        Some(&auth.nonce),
    )
    .await;
    let sid = a.claims["sid"].as_str().expect("sid").to_string();

    // The SSO session made on the lost node is honoured by the survivor, and
    // by a replacement node started afterwards.
    let fresh = c.add_node().await;
    for node in [n3.clone(), c.url(fresh)] {
        let auth_b = authorize_at(&node, &PORTAL_B, "");
        let code_b = query_param(&silent(&b, &auth_b, &PORTAL_B).await, "code").expect("code for B");
        let url = format!("{node}/realms/test/token");
        let bb = tokens(
            token(&url, &PORTAL_B, &code_form(&PORTAL_B, &code_b, &auth_b)).await,
            &c,
            &PORTAL_B,
            Some(&auth_b.nonce),
        )
        .await;
        assert_eq!(bb.claims["sid"], sid.as_str(), "the session started on node 2, at {node}");
    }
    // The refresh token node 3 committed works at the replacement.
    let rt = a.refresh.clone().expect("refresh token");
    let url = format!("{}/realms/test/token", c.url(fresh));
    let r = token(&url, &PORTAL_A, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // And the audit chains of the killed nodes are intact up to their end.
    let (ok, out, err) = civid(&["audit", "verify", "--realm", "test"], &c.env, None);
    assert!(ok && out.contains("verifies"), "civid audit verify: {out}{err}");
}

/// A throwaway `redis-server` without persistence, restartable on its port.
struct Redis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let mut r = Redis { port, child: None, dir: tempfile::tempdir().expect("tempdir") };
        r.restart().await;
        r
    }

    async fn restart(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        wait_for("redis-server", || cli(self.port, &["ping"]).trim() == "PONG").await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn redis_restart() {
    if !on_pg_and_redis("redis_restart") {
        return;
    }
    if !on_path("redis-server") || !on_path("redis-cli") {
        eprintln!("redis_restart: needs redis-server and redis-cli on PATH");
        return;
    }
    let mut redis = Redis::start(free_port()).await;
    let (db, _guard) = fresh_database().await;
    let env = with(
        &env_for(&db, &unique("civid-scaleout-redis-")),
        "CIVID_REDIS_URL",
        &format!("redis://127.0.0.1:{}/", redis.port),
    );
    add_user(&env, "scale3");
    let c = Cluster::start(&env).await;
    let b = browser();
    let (_, _, a) = signed_in_at_a(&c, &b, "scale3").await;
    let sid = a.claims["sid"].as_str().expect("sid").to_string();

    // Redis goes away: the nodes say they are not ready, and a sign-in
    // (whose transaction lives there) is asked to come back later…
    redis.kill();
    for node in c.live() {
        let (status, body) = readyz(&node).await;
        assert_eq!(status, 503, "{node}: {body}");
        assert!(body.contains("ephemeral store unreachable"), "{body}");
        let r = browser().get(authorize_at(&node, &PORTAL_A, "").url).send().await.expect("authorize");
        unavailable(r, "a sign-in while Redis is away", false).await;
    }
    // …and it comes back empty on the same port. Every node signs in again
    // by itself within seconds (a 503 meanwhile, nothing worse).
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in c.live() {
        loop {
            let fresh = browser();
            let auth = authorize_at(&node, &PORTAL_A, "");
            match try_sign_in_across(&fresh, &auth.url, "scale3", PASSWORD, || node.clone()).await {
                Ok(cb) => {
                    let code = query_param(&cb, "code").unwrap_or_else(|| panic!("a code at {node}: {cb}"));
                    let url = format!("{node}/realms/test/token");
                    tokens(
                        token(&url, &PORTAL_A, &code_form(&PORTAL_A, &code, &auth)).await,
                        &c,
                        &PORTAL_A,
                        Some(&auth.nonce),
                    )
                    .await;
                    break;
                }
                Err(e) => {
                    assert!(e.contains("503 Service Unavailable"), "only 503 while reconnecting, at {node}: {e}");
                    assert!(Instant::now() < deadline, "{node} should sign in again within 10 s of Redis' return: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    // The SSO session is durable (the database's): silent SSO on every node.
    for node in c.live() {
        let auth_b = authorize_at(&node, &PORTAL_B, "&prompt=none");
        let to = silent(&b, &auth_b, &PORTAL_B).await;
        let code_b = query_param(&to, "code").unwrap_or_else(|| panic!("silent SSO at {node}: {to}"));
        let url = format!("{node}/realms/test/token");
        let bb = tokens(
            token(&url, &PORTAL_B, &code_form(&PORTAL_B, &code_b, &auth_b)).await,
            &c,
            &PORTAL_B,
            Some(&auth_b.nonce),
        )
        .await;
        assert_eq!(bb.claims["sid"], sid.as_str());
    }
    // Access tokens issued before keep validating, refresh tokens refreshing.
    for node in c.live() {
        let info = userinfo(&format!("{node}/realms/test/userinfo"), &a.access).await;
        assert_eq!(info.status(), 200, "userinfo at {node}");
        let intro: Value =
            introspect(&format!("{node}/realms/test/introspect"), &a.access).await.json().await.expect("json");
        assert_eq!(intro["active"], true, "introspection at {node}: {intro}");
    }
    let rt = a.refresh.clone().expect("refresh token");
    let r = token(&c.at("token_endpoint"), &PORTAL_A, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// A TCP forwarder between the nodes and PostgreSQL, on a thread of its own
/// (the test blocks its runtime while a CLI command runs). `cut` closes
/// every live connection and drops new ones as soon as they are accepted
/// (the database unreachable); `resume` forwards again.
struct Forwarder {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped by `cut`: every forwarded connection ends.
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(upstream: String) -> Forwarder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (is_cut, ends) = (cut.clone(), epoch.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                let forward = async {
                    loop {
                        let Ok((mut inbound, _)) = listener.accept().await else { continue };
                        // Subscribed before looking at the flag, so a cut
                        // right after the look still ends this connection.
                        let mut end = ends.subscribe();
                        if is_cut.load(Ordering::SeqCst) {
                            drop(inbound);
                            continue;
                        }
                        let upstream = upstream.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(&upstream).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = end.changed() => {}
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = forward => {}
                    _ = stopped => {}
                }
            })
        });
        Forwarder { port, cut, epoch, stop: Some(stop), thread: Some(thread) }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    fn resume(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// 503 with a retry hint: what a client must see while the database is
/// away (and, from the JSON endpoints, `temporarily_unavailable`).
async fn unavailable(resp: reqwest::Response, what: &str, json: bool) {
    let status = resp.status();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    assert!(
        retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s > 0),
        "{what}: Retry-After {retry:?}"
    );
    if json {
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: JSON {body}"));
        assert_eq!(v["error"], "temporarily_unavailable", "{what}: {body}");
    }
}

/// Sends until the answer is not a 503 (pooled connections the cut closed
/// fail once each after the database is back), within `deadline`.
async fn once_available(
    what: &str,
    deadline: Instant,
    mut send: impl AsyncFnMut() -> reqwest::Response,
) -> reqwest::Response {
    loop {
        let r = send().await;
        if r.status() != 503 {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: still 503 after the database came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_unreachable() {
    if !on_pg_and_redis("postgres_unreachable") {
        return;
    }
    let (db, _guard) = fresh_database().await;
    let mut via = url::Url::parse(&db).expect("database URL");
    let upstream = format!("{}:{}", via.host_str().unwrap_or("127.0.0.1"), via.port().unwrap_or(5432));
    let fwd = Forwarder::start(upstream);
    via.set_host(Some("127.0.0.1")).expect("host");
    via.set_port(Some(fwd.port)).expect("port");
    let env = with(&env_for(&db, &unique("civid-scaleout-pg-")), "CIVID_DATABASE_URL", via.as_str());
    add_user(&env, "scale4");
    let c = Cluster::start(&env).await;

    // Before: signed in to portal A with tokens; a code for portal B (by
    // SSO) not yet redeemed; a second browser on the sign-in page.
    let b = browser();
    let (_, _, a) = signed_in_at_a(&c, &b, "scale4").await;
    let rt = a.refresh.clone().expect("refresh token");
    let auth_b = authorize_at(&c.next(), &PORTAL_B, "");
    let code_b = query_param(&silent(&b, &auth_b, &PORTAL_B).await, "code").expect("code for B");
    let b2 = browser();
    let auth2 = authorize_at(&c.next(), &PORTAL_A, "");
    let page = b2.get(&auth2.url).send().await.expect("authorize");
    assert_eq!(page.status(), 200, "answered with the sign-in page");
    let html = page.text().await.expect("html");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("tx", hidden(&html, "tx")),
        ("identifier", "scale4".to_string()),
        ("password", PASSWORD.to_string()),
    ];

    // The database is unreachable: every node says so, and every request
    // that needs it gets a 503 with Retry-After — never a wrong answer, and
    // never a refusal of the valid code or refresh token.
    fwd.cut();
    for node in c.live() {
        let (status, body) = readyz(&node).await;
        assert_eq!(status, 503, "{node}: {body}");
        assert!(body.contains("database unreachable"), "{body}");
        let url = format!("{node}/realms/test/token");
        unavailable(token(&url, &PORTAL_B, &code_form(&PORTAL_B, &code_b, &auth_b)).await, "code", true).await;
        let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
        unavailable(token(&url, &PORTAL_A, &refresh).await, "refresh", true).await;
        unavailable(userinfo(&format!("{node}/realms/test/userinfo"), &a.access).await, "userinfo", true).await;
        unavailable(introspect(&format!("{node}/realms/test/introspect"), &a.access).await, "introspection", true)
            .await;
        let r = b2.post(format!("{node}/realms/test/login")).form(&form).send().await.expect("login");
        unavailable(r, "sign-in", false).await;
        // The signed-in browser: SSO from what the node can still reach
        // (the session cache), or a 503; never "not signed in".
        let silent = authorize_at(&node, &PORTAL_A, "&prompt=none");
        let r = b.get(&silent.url).send().await.expect("authorize");
        if r.status() == 303 {
            let to = location(&r);
            assert!(to.starts_with(&format!("{A_CB}?")) && to.contains("code="), "SSO at {node} meanwhile: {to}");
        } else {
            unavailable(r, "silent SSO", false).await;
        }
    }

    // Back: within seconds every node is ready and the same requests succeed.
    fwd.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in c.live() {
        loop {
            let (status, body) = readyz(&node).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{node} should be ready within 10 s of the database's return: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = once_available("code", deadline, async || {
        token(&c.at("token_endpoint"), &PORTAL_B, &code_form(&PORTAL_B, &code_b, &auth_b)).await
    })
    .await;
    let bb = tokens(r, &c, &PORTAL_B, Some(&auth_b.nonce)).await;
    assert_eq!(bb.claims["sid"], a.claims["sid"]);
    let r = once_available("refresh", deadline, async || {
        token(&c.at("token_endpoint"), &PORTAL_A, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await
    })
    .await;
    let refreshed = tokens(r, &c, &PORTAL_A, None).await;
    for node in c.live() {
        let url = format!("{node}/realms/test/userinfo");
        let r = once_available("userinfo", deadline, async || userinfo(&url, &refreshed.access).await).await;
        assert_eq!(r.status(), 200, "userinfo at {node}");
        assert_eq!(r.json::<Value>().await.expect("json")["sub"], a.claims["sub"]);
        let url = format!("{node}/realms/test/introspect");
        let r = once_available("introspection", deadline, async || introspect(&url, &a.access).await).await;
        assert_eq!(r.json::<Value>().await.expect("json")["active"], true, "introspection at {node}");
    }
    // The citizen who saw the error page submits the same form again.
    let r = once_available("sign-in", deadline, async || {
        b2.post(format!("{}/realms/test/login", c.next())).form(&form).send().await.expect("login")
    })
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let to = location(&r);
    let cb = if to.contains("/consent?") {
        try_consent_across(&b2, &to, true, || c.next()).await.expect("consent")
    } else {
        to
    };
    let code2 = query_param(&cb, "code").unwrap_or_else(|| panic!("{cb}"));
    tokens(
        token(&c.at("token_endpoint"), &PORTAL_A, &code_form(&PORTAL_A, &code2, &auth2)).await,
        &c,
        &PORTAL_A,
        Some(&auth2.nonce),
    )
    .await;
}

/// A Deployment's replicas start at the same moment on a database nobody
/// has prepared: they migrate, create the data key, apply the realm files
/// and make each realm's first signing keys one at a time, so there is one
/// schema, one data key and one key per algorithm, served alike by all.
#[tokio::test]
async fn three_nodes_start_together_on_an_empty_database() {
    if !on_pg_and_redis("three_nodes_start_together_on_an_empty_database") {
        return;
    }
    civid::server::install_crypto_provider();
    let db = crate::harness::empty_postgres_database().await.expect("PostgreSQL");
    let env = node_env(&db, Some(&unique("civid-start-")));
    // One public URL, as behind a load balancer.
    let public = Some("https://idp.example.test");
    let (a, b, c) = tokio::join!(Node::start(&env, public), Node::start(&env, public), Node::start(&env, public));
    let jwks = jwks_at(&a.url).await;
    let mut algs: Vec<String> = jwks.iter().filter_map(|k| k["alg"].as_str().map(str::to_string)).collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"], "one signing key per algorithm: {jwks:?}");
    assert_eq!(kids(&jwks_at(&b.url).await), kids(&jwks), "node B serves the same keys");
    assert_eq!(kids(&jwks_at(&c.url).await), kids(&jwks), "node C serves the same keys");
    // A token one node signs verifies with what another publishes.
    let at = client_credentials(&b.url).await;
    assert!(kids(&jwks).contains(&kid(&at)), "signed with a published key");
    let r = introspect(&format!("{}/realms/test/introspect", c.url), &at).await;
    assert_eq!(r.json::<Value>().await.expect("json")["active"], true, "node C accepts node B's token");
}
