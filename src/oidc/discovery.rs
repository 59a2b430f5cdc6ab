//! OpenID Provider metadata (Discovery 1.0, RFC 8414). Everything advertised
//! works: no endpoint, method or value is listed that civid does not serve.
use serde_json::{Value, json};

use crate::realm::model::{AuthMethod, RealmSettings};

pub const ID_TOKEN_ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
/// Algorithms accepted on client assertions (`private_key_jwt`).
pub const ASSERTION_ALGS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `face`: this node has a face-verification service, so L4 can be reached.
pub fn document(issuer: &str, realm: &RealmSettings, face: bool) -> Value {
    let acr: &[&str] = if face { &["L2", "L3", "L4"] } else { &["L2", "L3"] };
    let mut claims: Vec<&str> =
        vec!["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "at_hash"];
    for s in realm.scopes.values() {
        for c in &s.claims {
            if !claims.contains(&c.as_str()) {
                claims.push(c);
            }
        }
    }
    let scopes: Vec<&String> = realm.scopes.keys().collect();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ID_TOKEN_ALGS,
        "token_endpoint_auth_methods_supported": AuthMethod::ALL,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": &AuthMethod::ALL[..3],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": AuthMethod::ALL,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["zh-CN", "en"],
        "authorization_response_iss_parameter_supported": true,
        // Front-Channel Logout 1.0 (`iss` and `sid` for portals that ask).
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        // Back-Channel Logout 1.0: logout tokens always carry `sid`.
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "acr_values_supported": acr,
        // OpenID Connect for Identity Assurance 1.0.
        "verified_claims_supported": true,
        "trust_frameworks_supported": [realm.realname.trust_framework],
        "evidence_supported": ["electronic_record"],
        "electronic_records_supported": ["population_register"],
        "claims_in_verified_claims_supported": super::claims::VERIFIED_CLAIMS,
    })
}
