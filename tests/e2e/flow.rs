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
