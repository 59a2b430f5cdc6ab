//! The whole flow with a certified-style client library: discovery, code +
//! PKCE + nonce, ID token verified against the JWKS, userinfo, refresh, a
//! second portal signed in silently by SSO, client credentials and
//! private_key_jwt.
use openidconnect::core::{CoreAuthenticationFlow, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, Scope,
    TokenResponse,
};

use crate::harness::{TestServer, browser, http, query_param, relying_party};
use crate::steps::sign_in;

#[tokio::test]
async fn code_flow_with_pkce_nonce_userinfo_refresh_and_sso() {
    let server = TestServer::start().await;
    server.user("test", "liming", "correct horse battery").await;
    let http = http();
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = browser();
    let callback = sign_in(&browser, url.as_str(), "liming", "correct horse battery").await;
    assert!(callback.starts_with("https://a.example.test/cb?"), "{callback}");
    assert_eq!(query_param(&callback, "state").as_deref(), Some(csrf.secret().as_str()));
    assert_eq!(query_param(&callback, "iss"), Some(server.issuer("test")), "RFC 9207 iss");
    let code = query_param(&callback, "code").expect("code");

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id token");
    let claims = id_token.claims(&rp.id_token_verifier(), &nonce).expect("valid id token");
    assert_eq!(claims.issuer().as_str(), server.issuer("test"));
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("L2"));
    assert_eq!(
        claims.auth_method_refs().map(|m| m.iter().map(|x| x.as_str().to_string()).collect::<Vec<_>>()),
        Some(vec!["pwd".to_string()])
    );
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&rp.id_token_verifier()).expect("key"),
    )
    .expect("hash");
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert_eq!(
        *id_token.signing_alg().expect("alg"),
        openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );
    let sub = claims.subject().clone();

    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), Some(sub.clone()))
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some("liming@example.cn"));
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("liming"));
    assert!(info.name().is_some());
    assert!(info.phone_number().is_none(), "phone scope was not asked for");

    // Refresh rotates the refresh token and keeps the subject.
    let refresh = tokens.refresh_token().expect("refresh token").clone();
    let refreshed = rp.exchange_refresh_token(&refresh).expect("refresh").request_async(&http).await.expect("refresh");
    assert_ne!(refreshed.refresh_token().expect("rotated").secret(), refresh.secret());
    let again = refreshed.id_token().expect("id token on refresh");
    let again_claims = again.claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(())).expect("valid");
    assert_eq!(again_claims.subject(), &sub);

    // A second portal in the same browser gets its code without a password.
    let rp_b = relying_party(&server, "test", "portal-b", Some("secret-b"), "https://b.example.test/cb").await;
    let rp_b = rp_b.set_auth_type(AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp_b
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let resp = browser.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(resp.status(), 303);
    let callback = crate::harness::location(&resp);
    assert!(callback.starts_with("https://b.example.test/cb?"), "silent SSO: {callback}");
    let tokens_b = rp_b
        .exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange at portal b");
    let id_b = tokens_b.id_token().expect("id token");
    let claims_b = id_b.claims(&rp_b.id_token_verifier(), &nonce).expect("valid ES256 id token");
    assert_eq!(*id_b.signing_alg().expect("alg"), openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256);
    assert_ne!(claims_b.subject(), &sub, "pairwise subjects differ between sectors");
    assert_eq!(claims_b.auth_time(), claims.auth_time(), "same SSO session");
    server.stop().await;
}

/// Fetches the realm's JWKS as a relying party would.
pub async fn jwks(server: &TestServer, realm: &str) -> Vec<serde_json::Value> {
    let resp = reqwest::get(format!("{}/jwks", server.issuer(realm))).await.expect("jwks");
    assert!(resp.headers().get("cache-control").is_some(), "JWKS responses carry Cache-Control");
    let body: serde_json::Value = resp.json().await.expect("json");
    body["keys"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn client_credentials_gives_an_rfc9068_access_token() {
    let server = TestServer::start().await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;
    let tokens = rp
        .exchange_client_credentials()
        .expect("token endpoint")
        .add_scope(Scope::new("profile".into()))
        .request_async(&http())
        .await
        .expect("client credentials");
    assert!(tokens.refresh_token().is_none());
    let at = tokens.access_token().secret();
    let jwt = civid::crypto::jws::verify(at, &jwks(&server, "test").await, &["ES256"]).expect("ES256 by default");
    assert_eq!(jwt.header["typ"], "at+jwt");
    assert_eq!(jwt.claims["client_id"], "portal-a");
    assert_eq!(jwt.claims["sub"], "portal-a");
    assert_eq!(jwt.claims["aud"], server.issuer("test"));
    assert_eq!(jwt.claims["iss"], server.issuer("test"));
    assert_eq!(jwt.claims["scope"], "profile");
    assert!(jwt.claims["jti"].is_string() && jwt.claims["exp"].is_i64() && jwt.claims["iat"].is_i64());

    // A resource server (RFC 8707) that asked for RS256 gets RS256 tokens for its audience.
    let resp = reqwest::Client::new()
        .post(format!("{}/token", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("grant_type", "client_credentials"), ("resource", "https://api.test.example")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.expect("json");
    let jwt = civid::crypto::jws::verify(
        body["access_token"].as_str().unwrap_or_default(),
        &jwks(&server, "test").await,
        &["RS256"],
    )
    .expect("RS256 for that resource");
    assert_eq!(jwt.claims["aud"], "https://api.test.example");

    // Introspection by the client sees it active.
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/introspect", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(resp["active"], true);
    assert_eq!(resp["client_id"], "portal-a");
    server.stop().await;
}

/// A client assertion (RFC 7523) signed with the test client's key.
pub fn client_assertion(client_id: &str, aud: &str, exp_in: i64) -> String {
    use base64::Engine;
    let b64 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fixtures/client_es256.pk8.b64"))
        .expect("fixture");
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64");
    let key = civid::crypto::keys::SigningKey::from_pkcs8(civid::crypto::keys::Alg::ES256, &der).expect("key");
    let now = civid::store::now();
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "exp": now + exp_in, "iat": now, "jti": civid::crypto::random::token(16).expect("jti"),
    });
    civid::crypto::jws::sign_jwt(&key, None, &claims).expect("sign")
}

#[tokio::test]
async fn private_key_jwt_code_flow() {
    let server = TestServer::start().await;
    server.user("test", "zhangwei", "correct horse battery").await;
    let rp = relying_party(&server, "test", "jwt-client", None, "https://jwt.example.test/cb").await;
    let rp = rp.set_auth_type(AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(&browser(), url.as_str(), "zhangwei@example.cn", "correct horse battery").await;
    let code = query_param(&callback, "code").expect("code");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .add_extra_param("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        .add_extra_param("client_assertion", client_assertion("jwt-client", &server.issuer("test"), 60))
        .request_async(&http())
        .await
        .expect("code exchange with private_key_jwt");
    tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    server.stop().await;
}

#[tokio::test]
async fn native_app_with_loopback_redirect_on_any_port() {
    let server = TestServer::start().await;
    server.user("test", "wangfang", "correct horse battery").await;
    let rp = relying_party(&server, "test", "native", None, "http://127.0.0.1:49152/callback").await;
    let rp = rp.set_auth_type(AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(&browser(), url.as_str(), "wangfang", "correct horse battery").await;
    assert!(callback.starts_with("http://127.0.0.1:49152/callback?"), "{callback}");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("public client exchange");
    let claims = tokens.id_token().expect("id token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    assert!(!claims.subject().as_str().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn revoking_a_refresh_token_also_stops_its_access_tokens() {
    let server = TestServer::start().await;
    server.user("test", "revoker", "correct horse battery").await;
    let rp = relying_party(&server, "test", "portal-a", Some("secret-a"), "https://a.example.test/cb").await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(&browser(), url.as_str(), "revoker", "correct horse battery").await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query_param(&callback, "code").expect("code")))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("exchange");
    let at = tokens.access_token().secret().clone();
    let rt = tokens.refresh_token().expect("refresh token").secret().clone();
    let userinfo = |token: String| {
        let url = format!("{}/userinfo", server.issuer("test"));
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("userinfo").status() }
    };
    assert_eq!(userinfo(at.clone()).await, 200);
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.issuer("test")))
        .basic_auth("portal-a", Some("secret-a"))
        .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    assert_eq!(userinfo(at).await, 401, "the access token issued with the refresh token is revoked too (RFC 7009 2.1)");
    server.stop().await;
}
