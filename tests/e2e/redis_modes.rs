//! Redis Cluster and Sentinel: a throwaway 3-master cluster (or a server
//! watched by one sentinel) on free ports, a node in that `redis_mode`, and
//! a full sign-in, a single-use code redemption and SSO to a second portal.
//! Skipped when `redis-server` / `redis-cli` are not on PATH.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use civid::store::ephemeral::{Ephemeral, RedisTarget};

use crate::harness::{TestServer, browser, location, query_param};
use crate::steps::sign_in;

pub(crate) fn on_path(bin: &str) -> bool {
    Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A free port whose cluster-bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Redis processes killed when the test ends, however it ends.
struct Procs {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Procs {
    fn new() -> Procs {
        Procs { children: Vec::new(), dir: tempfile::tempdir().expect("tempdir") }
    }

    fn spawn(&mut self, args: &[&str]) {
        let c = Command::new("redis-server")
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.children.push(c);
    }
}

pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not come up");
}

fn pkce() -> (String, String) {
    let verifier = civid::crypto::random::token(32).expect("verifier");
    (civid::crypto::random::sha256_b64(verifier.as_bytes()), verifier)
}

fn authorize(base: &str, client: &str, portal: &str, challenge: &str) -> String {
    format!(
        "{base}/realms/test/authorize?response_type=code&client_id={client}&redirect_uri=https%3A%2F%2F{portal}.example.test%2Fcb\
         &scope=openid%20profile&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256"
    )
}

async fn redeem(base: &str, code: &str, verifier: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/realms/test/token"))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://a.example.test/cb"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token")
}

/// Sign-in at portal A, its code redeemed once (a replay fails and revokes),
/// then SSO to portal B without a sign-in page, B's code redeemed.
async fn sign_in_redeem_and_sso(server: &TestServer) {
    server.user("test", "redisuser", "correct horse battery").await;
    let browser = browser();
    let (challenge, verifier) = pkce();
    let callback =
        sign_in(&browser, &authorize(&server.url, "portal-a", "a", &challenge), "redisuser", "correct horse battery")
            .await;
    let code = query_param(&callback, "code").expect("code");
    let first = redeem(&server.url, &code, &verifier).await;
    assert_eq!(first.status(), 200, "the code is redeemed");
    let body: serde_json::Value = first.json().await.expect("json");
    assert!(body["id_token"].is_string());
    let again = redeem(&server.url, &code, &verifier).await;
    assert_eq!(again.status(), 400, "a code is single use");
    let userinfo = reqwest::Client::new()
        .get(format!("{}/realms/test/userinfo", server.url))
        .bearer_auth(body["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), 401, "the replay revoked what the code issued");

    let (challenge, verifier) = pkce();
    let resp = browser.get(authorize(&server.url, "portal-b", "b", &challenge)).send().await.expect("authorize B");
    assert_eq!(resp.status(), 303, "SSO: no sign-in page for portal B");
    let next = location(&resp);
    assert!(next.starts_with("https://b.example.test/cb?"), "{next}");
    let code = query_param(&next, "code").expect("code for B");
    let r = reqwest::Client::new()
        .post(format!("{}/realms/test/token", server.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://b.example.test/cb"),
            ("code_verifier", verifier.as_str()),
            ("client_id", "portal-b"),
            ("client_secret", "secret-b"),
        ])
        .send()
        .await
        .expect("token B");
    assert_eq!(r.status(), 200, "portal B redeems its code");
}

/// An invalidation published through one store reaches a subscriber set up
/// the way a node does (Cluster: on a seed node, whichever master publishes).
async fn invalidations_arrive(target: &RedisTarget, prefix: &str) {
    use futures_util::StreamExt;
    let store = Ephemeral::redis(target, prefix).await.expect("store");
    let mut sub = store.invalidations().expect("a subscriber");
    let mut ps = sub.connect().await.expect("pubsub");
    ps.subscribe(&sub.channel).await.expect("subscribe");
    let mut msgs = ps.on_message();
    for _ in 0..20 {
        store.publish_invalidation("test").await.expect("publish");
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(250), msgs.next()).await {
            assert_eq!(m.get_payload::<String>().expect("payload"), "test");
            return;
        }
    }
    panic!("no invalidation arrived");
}

#[tokio::test]
async fn a_node_on_a_redis_cluster_signs_in_and_redeems_codes_once() {
    if !on_path("redis-server") || !on_path("redis-cli") {
        eprintln!(
            "a_node_on_a_redis_cluster_signs_in_and_redeems_codes_once: needs redis-server and redis-cli on PATH"
        );
        return;
    }
    let mut procs = Procs::new();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for p in &ports {
        let conf = format!("nodes-{p}.conf");
        procs.spawn(&[
            "--port",
            &p.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]);
    }
    for p in &ports {
        wait_for("redis-server", || cli(*p, &["ping"]).trim() == "PONG").await;
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut args = vec!["--cluster", "create"];
    args.extend(nodes.iter().map(String::as_str));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    let created = Command::new("redis-cli").args(&args).output().expect("redis-cli --cluster create");
    assert!(created.status.success(), "cluster create: {}", String::from_utf8_lossy(&created.stdout));
    for p in &ports {
        wait_for("the cluster", || cli(*p, &["cluster", "info"]).contains("cluster_state:ok")).await;
    }

    let urls: Vec<String> = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let server = TestServer::start_configured(|s| {
        s.redis_mode = "cluster".into();
        s.redis_url = String::new();
        s.redis_urls = urls.clone();
        s.redis_key_prefix = "civid-cluster-test:".into();
    })
    .await;
    sign_in_redeem_and_sso(&server).await;
    // The keys spread over the masters, each under its hash tag.
    let keys: Vec<String> = ports
        .iter()
        .flat_map(|p| cli(*p, &["keys", "civid-cluster-test:*"]).lines().map(String::from).collect::<Vec<_>>())
        .collect();
    assert!(keys.iter().any(|k| k.starts_with("civid-cluster-test:{code:test:") && k.ends_with("}:used")), "{keys:?}");

    // One master goes away (no replica takes over here). Requests whose
    // keys lived there get a 503 at once, the others still work; none waits
    // out the Redis client's retries (16, at least 1.28 s apart by default).
    let _ = cli(ports[2], &["shutdown", "nosave"]);
    let issuer = server.issuer("test");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (url, _) = crate::steps::pkce_request(&issuer, "portal-a", "a.example.test");
        let t = std::time::Instant::now();
        let resp = browser().get(&url).send().await.expect("authorize");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(5), "a request waited {took:?} for a dead master");
        // 200: the sign-in page (its transaction stored); 503: its key's master is gone.
        assert!([200, 503].contains(&resp.status().as_u16()), "{}", resp.status());
        statuses.push((resp.status().as_u16(), took.as_millis()));
    }
    eprintln!("with one master down, authorize answered (status, ms) {statuses:?}");
    server.stop().await;
    invalidations_arrive(&RedisTarget::Cluster(urls), "civid-cluster-test:").await;
    drop(procs);
}

#[tokio::test]
async fn a_node_behind_redis_sentinel_signs_in_and_redeems_codes_once() {
    if !on_path("redis-server") || !on_path("redis-cli") {
        eprintln!(
            "a_node_behind_redis_sentinel_signs_in_and_redeems_codes_once: needs redis-server and redis-cli on PATH"
        );
        return;
    }
    let mut procs = Procs::new();
    let master = free_port();
    procs.spawn(&[
        "--port",
        &master.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]);
    wait_for("redis-server", || cli(master, &["ping"]).trim() == "PONG").await;
    let sentinel = free_port();
    let conf = procs.dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!("port {sentinel}\nbind 127.0.0.1\nsentinel monitor civid-master 127.0.0.1 {master} 1\n"),
    )
    .expect("sentinel.conf");
    procs.spawn(&[conf.to_str().expect("path"), "--sentinel"]);
    wait_for("the sentinel", || {
        cli(sentinel, &["sentinel", "get-master-addr-by-name", "civid-master"]).contains(&master.to_string())
    })
    .await;

    let server = TestServer::start_configured(|s| {
        s.redis_mode = "sentinel".into();
        s.redis_url = String::new();
        s.redis_urls = vec![format!("redis://127.0.0.1:{sentinel}")];
        s.redis_sentinel_master = "civid-master".into();
        s.redis_key_prefix = "civid-sentinel-test:".into();
    })
    .await;
    sign_in_redeem_and_sso(&server).await;
    assert!(cli(master, &["keys", "civid-sentinel-test:*"]).contains("civid-sentinel-test:code:test:"));
    server.stop().await;
    let target = RedisTarget::Sentinel {
        sentinels: vec![format!("redis://127.0.0.1:{sentinel}")],
        master: "civid-master".into(),
    };
    invalidations_arrive(&target, "civid-sentinel-test:").await;
    drop(procs);
}
