//! The `civid` binary: realm files applied as code, operator commands on a
//! running server's database, start-up checks and graceful shutdown.
use std::time::Duration;

use crate::harness::{Node, TestServer, civid, fresh_database, node_env, unique};

const REALM_OK: &str = r#"name = "cli"

[clients.p1]
redirect_uris = ["https://p1.example.test/cb"]
"#;

#[tokio::test]
async fn realm_apply_shows_a_diff_applies_once_and_refuses_bad_files_whole() {
    let (db, _guard) = fresh_database().await;
    let env = node_env(&db, None);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("path").to_string();
    std::fs::write(dir.path().join("cli.toml"), REALM_OK).expect("write");

    let (ok, out, err) = civid(&["realm", "apply", &path, "--dry-run"], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("+ realm cli") && out.contains("+ client cli/p1"), "{out}");
    let (_, again, _) = civid(&["realm", "apply", &path, "--dry-run"], &env, None);
    assert!(again.contains("+ realm cli"), "a dry run applies nothing: {again}");

    let (ok, out, err) = civid(&["realm", "apply", &path], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("+ realm cli"), "{out}");
    let (ok, out, _) = civid(&["realm", "apply", &path], &env, None);
    assert!(ok);
    assert!(out.contains("no changes"), "second apply changes nothing: {out}");

    // A change shows as a field diff.
    std::fs::write(dir.path().join("cli.toml"), REALM_OK.replace("p1.example.test/cb", "p1.example.test/callback"))
        .expect("write");
    let (_, out, _) = civid(&["realm", "apply", &path, "--dry-run"], &env, None);
    assert!(out.contains("~ client cli/p1: redirect_uris"), "{out}");

    // A bad file next to a good change: refused with file and line, nothing applied.
    std::fs::write(
        dir.path().join("zz-bad.toml"),
        "name = \"bad\"\n\n[clients.x]\nredirect_uris = [\"http://evil.example/cb\"]\n",
    )
    .expect("write");
    let (ok, _, err) = civid(&["realm", "apply", &path], &env, None);
    assert!(!ok);
    assert!(err.contains("zz-bad.toml:3:") && err.contains("https"), "{err}");
    std::fs::remove_file(dir.path().join("zz-bad.toml")).expect("rm");
    let (_, out, _) = civid(&["realm", "apply", &path, "--dry-run"], &env, None);
    assert!(out.contains("~ client cli/p1"), "the good change was not applied either: {out}");
}

#[tokio::test]
async fn operator_commands_reach_a_running_server() {
    let server = TestServer::start().await;
    let prefix = server.settings.redis_key_prefix.clone();
    let env = node_env(&server.settings.database_url, Some(&prefix));
    let client_id = unique("cli-portal-");

    let (ok, out, err) = civid(
        &[
            "client",
            "add",
            "--realm",
            "test",
            "--client-id",
            &client_id,
            "--redirect-uri",
            "https://cli.example.test/cb",
            "--client-credentials",
        ],
        &env,
        None,
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret (shown once, store it now): "))
        .expect("secret printed once")
        .to_string();
    let stored = server.state.db.clone();
    let rec = civid::store::realms::client_get(&stored, "test", &client_id).await.expect("db").expect("client");
    assert!(!rec.secret_hash.unwrap_or_default().contains(&secret), "only a digest is stored");

    // The running server sees the new client within a few seconds.
    let mut status = 0;
    for _ in 0..50 {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", server.issuer("test")))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token");
        status = resp.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "client added by the CLI is usable");

    let (ok, out, err) = civid(
        &["user", "add", "--realm", "test", "--phone", "13800138000", "--username", "cliuser", "--password-stdin"],
        &env,
        Some("a long enough password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("created user"), "{out}");
    let outcome =
        civid::authn::password::authenticate(&server.state, "test", "138 0013 8000", "a long enough password".into())
            .await
            .expect("authenticate");
    assert!(matches!(outcome, civid::authn::password::Outcome::Success { .. }), "sign in with the phone number");
    let (ok, _, err) = civid(
        &["user", "add", "--realm", "test", "--phone", "+8613800138000", "--password-stdin"],
        &env,
        Some("another password\n"),
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = civid(&["user", "add", "--realm", "test", "--phone", "12345"], &env, None);
    assert!(!ok && err.contains("mainland mobile"), "{err}");

    // Key rotation from the CLI reaches the running server's JWKS.
    let before = crate::flow::jwks(&server, "test").await.len();
    let (ok, out, err) = civid(&["keys", "rotate", "--realm", "test", "--alg", "ES256", "--lead", "0"], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("ES256: new key"), "{out}");
    let mut after = before;
    for _ in 0..50 {
        after = crate::flow::jwks(&server, "test").await.len();
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, before + 1);
    server.stop().await;
}

#[tokio::test]
async fn a_node_with_the_wrong_kek_refuses_to_start() {
    let (db, _guard) = fresh_database().await;
    let mut env = node_env(&db, None);
    for (k, v) in env.iter_mut() {
        if k == "CIVID_KEK" {
            *v = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI".into();
        }
    }
    let (ok, _, err) = civid(&["serve"], &env, None);
    assert!(!ok);
    assert!(err.contains("cannot unwrap") && err.contains("refusing to start"), "{err}");

    // No KEK configured at all, on a database that holds wrapped keys.
    env.retain(|(k, _)| k != "CIVID_KEK");
    let (ok, _, err) = civid(&["serve"], &env, None);
    assert!(!ok);
    assert!(err.contains("no key-encryption key is configured"), "{err}");
}

#[tokio::test]
async fn serve_is_ready_and_stops_gracefully_on_sigterm() {
    let (db, _guard) = fresh_database().await;
    let mut node = Node::start(&node_env(&db, Some(&unique("civid-node-"))), None).await;
    let health = reqwest::get(format!("{}/healthz", node.url)).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let disco =
        reqwest::get(format!("{}/realms/test/.well-known/openid-configuration", node.url)).await.expect("disco");
    let doc: serde_json::Value = disco.json().await.expect("json");
    assert_eq!(doc["issuer"], format!("{}/realms/test", node.url));
    assert!(node.terminate(), "exits cleanly on SIGTERM");
}

#[tokio::test]
async fn cli_mirrors_the_everyday_admin_actions() {
    let server = TestServer::start().await;
    let id = server.user("test", "clihelp", "correct horse battery").await;
    let env = node_env(&server.settings.database_url, Some(&server.settings.redis_key_prefix));

    let (ok, out, err) = civid(&["user", "search", "--realm", "test", "--email", "clihelp@example.cn"], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("c***@example.cn"), "{out}");
    let (ok, out, err) = civid(&["user", "reset-password", "--realm", "test", &id], &env, None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let temp = v["temporary_password"].as_str().expect("temporary password").to_string();
    let outcome = civid::authn::password::authenticate(&server.state, "test", "clihelp", temp).await.expect("auth");
    assert!(matches!(outcome, civid::authn::password::Outcome::Success { .. }), "the one-time password works");
    // A lost phone: the helpdesk removes the person's authenticator app.
    server.enrol_totp("test", &id).await;
    let (ok, out, err) = civid(&["user", "reset-factors", "--realm", "test", &id], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("\"credentials_removed\": 1"), "{out}");
    let left = civid::store::credentials::of_user(&server.state.db, "test", &id, None).await.expect("db");
    assert!(left.is_empty(), "no second factor left");
    let audited = civid::store::audit::list(&server.state.db, "test", Some("admin.user.factors_reset"), 5).await;
    assert_eq!(audited.expect("audit").len(), 1);
    let (ok, _, err) = civid(&["user", "disable", "--realm", "test", &id], &env, None);
    assert!(ok, "{err}");
    let outcome = civid::authn::password::authenticate(
        &server.state,
        "test",
        "clihelp",
        v["temporary_password"].as_str().unwrap_or_default().into(),
    )
    .await
    .expect("auth");
    assert!(matches!(outcome, civid::authn::password::Outcome::Failure { .. }), "a disabled account cannot sign in");

    let (ok, out, _) = civid(&["client", "list", "--realm", "test"], &env, None);
    assert!(ok && out.contains("portal-a"), "{out}");
    let (ok, out, err) = civid(&["client", "rotate-secret", "--realm", "test", "--client-id", "portal-c"], &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("new client secret"), "{out}");
    let (ok, _, err) = civid(&["client", "disable", "--realm", "test", "--client-id", "portal-c"], &env, None);
    assert!(ok, "{err}");
    let events = civid::store::audit::list(&server.state.db, "test", None, 50).await.expect("audit");
    for kind in
        ["admin.user.password_reset", "admin.user.disabled", "admin.client.secret_rotated", "admin.client.updated"]
    {
        assert!(events.iter().any(|e| e.kind == kind && e.actor.as_deref() == Some("cli")), "{kind} audited");
    }
    server.stop().await;
}

/// Operators' commands and a server write one database at once: on SQLite a
/// transaction that reads before it writes (is this number taken? then the
/// account) must not fail because another process committed in between.
#[tokio::test]
async fn concurrent_user_adds_all_succeed() {
    let (db, _guard) = fresh_database().await;
    let env = node_env(&db, None);
    let adds: Vec<_> = (0..8)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                civid(
                    &["user", "add", "--realm", "test", "--username", &format!("together{i}"), "--password-stdin"],
                    &env,
                    Some("a long enough password\n"),
                )
            })
        })
        .collect();
    for (i, a) in adds.into_iter().enumerate() {
        let (ok, out, err) = a.join().expect("thread");
        assert!(ok, "user add {i} failed: {out}{err}");
    }
}
