//! RP-Initiated Logout 1.0: what a logout request may ask for. A redirect
//! back to the portal happens only when the portal is identified (by
//! `client_id` or by the `id_token_hint`'s audience) and the URI is one it
//! registered, exactly: never an open redirect. An `id_token_hint` must be
//! one of this realm's ID tokens (signature by a published key, `iss`);
//! an expired one is accepted, as the spec asks.
use std::sync::Arc;

use serde_json::Value;

use crate::crypto::jws;
use crate::realm::cache::{Client, Realm};

use super::discovery::ID_TOKEN_ALGS;

/// The parameters of a logout request, as the portal sent them.
#[derive(Clone, Debug, Default)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Option<String>,
}

/// Longest value accepted for any parameter (an ID token with many claims
/// stays far below it).
const MAX_PARAM: usize = 16 * 1024;

impl LogoutRequest {
    /// From query or form pairs; empty values count as absent, repeated
    /// parameters are refused (RFC 6749 3.1).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<LogoutRequest, Refusal> {
        let mut r = LogoutRequest::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "id_token_hint" => &mut r.id_token_hint,
                "client_id" => &mut r.client_id,
                "post_logout_redirect_uri" => &mut r.post_logout_redirect_uri,
                "state" => &mut r.state,
                "ui_locales" => &mut r.ui_locales,
                _ => continue,
            };
            if v.len() > MAX_PARAM {
                return Err(Refusal::Malformed);
            }
            if v.is_empty() {
                continue;
            }
            if slot.is_some() {
                return Err(Refusal::Malformed);
            }
            *slot = Some(v.clone());
        }
        Ok(r)
    }

    /// The pairs that carry this request through the confirmation page.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        let fields = [
            ("id_token_hint", &self.id_token_hint),
            ("client_id", &self.client_id),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("state", &self.state),
            ("ui_locales", &self.ui_locales),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                out.push((k, v.as_str()));
            }
        }
        out
    }
}

/// Why a logout request is refused: shown to the person, never redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Repeated or oversized parameters.
    Malformed,
    /// The hint is not an ID token of this realm.
    BadHint,
    /// `client_id` is not an audience of the hint.
    ClientMismatch,
    /// A redirect was asked for but no enabled portal of this realm is named.
    UnknownClient,
    /// The redirect URI is not one the portal registered.
    UnregisteredRedirect,
}

impl Refusal {
    /// The catalog entry of the page that explains it.
    pub fn page_key(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::BadHint | Refusal::ClientMismatch => "error.logout_request",
            Refusal::UnknownClient | Refusal::UnregisteredRedirect => "error.logout_redirect",
        }
    }

    /// For the audit entry.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::BadHint => "invalid_id_token_hint",
            Refusal::ClientMismatch => "client_not_in_hint",
            Refusal::UnknownClient => "unknown_client",
            Refusal::UnregisteredRedirect => "unregistered_post_logout_redirect_uri",
        }
    }
}

/// What the hint says, once its signature and issuer are checked.
#[derive(Clone, Debug)]
pub struct Hint {
    pub sub: String,
    pub sid: Option<String>,
    pub aud: Vec<String>,
}

/// A logout request that may be acted on.
pub struct Checked {
    pub client: Option<Arc<Client>>,
    pub hint: Option<Hint>,
    /// Where to send the browser afterwards, `state` included.
    pub redirect: Option<String>,
}

/// Verifies an `id_token_hint`: a JWS by one of the realm's published keys,
/// issued by this realm, with a subject and an audience. Expiry is ignored:
/// the spec accepts an expired hint. Access and logout tokens are refused
/// by their `typ`.
pub fn verify_hint(realm: &Realm, token: &str) -> Option<Hint> {
    let jwt = jws::verify(token, &realm.public_jwks, &ID_TOKEN_ALGS).ok()?;
    if jwt.header.get("typ").and_then(Value::as_str).is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
        return None;
    }
    let c = &jwt.claims;
    if c.get("iss").and_then(Value::as_str) != Some(realm.issuer.as_str()) {
        return None;
    }
    let sub = c.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_string();
    let aud = match c.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    if aud.is_empty() {
        return None;
    }
    let sid = c.get("sid").and_then(Value::as_str).map(str::to_string);
    Some(Hint { sub, sid, aud })
}

/// Checks a logout request against the realm: the hint, the portal, the
/// redirect URI (exact match with one the portal registered).
pub fn check(realm: &Realm, req: &LogoutRequest) -> Result<Checked, Refusal> {
    let hint = match &req.id_token_hint {
        Some(t) => Some(verify_hint(realm, t).ok_or(Refusal::BadHint)?),
        None => None,
    };
    let client_id = match (&req.client_id, &hint) {
        (Some(id), Some(h)) if !h.aud.contains(id) => return Err(Refusal::ClientMismatch),
        (Some(id), _) => Some(id.clone()),
        (None, Some(h)) if h.aud.len() == 1 => h.aud.first().cloned(),
        _ => None,
    };
    let client = client_id.as_deref().and_then(|id| realm.client(id)).cloned();
    let redirect = match &req.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let c = client.as_ref().ok_or(Refusal::UnknownClient)?;
            if !c.settings.post_logout_redirect_uris.iter().any(|r| r == uri) {
                return Err(Refusal::UnregisteredRedirect);
            }
            Some(with_state(uri, req.state.as_deref()))
        }
    };
    Ok(Checked { client, hint, redirect })
}

/// The registered URI with `state` appended to its query.
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else {
        return uri.to_string();
    };
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("state", state);
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// A front-channel logout URI with `iss` and `sid` when the portal asked
/// for them (Front-Channel Logout 1.0, section 2).
pub fn frontchannel_url(uri: &str, issuer: &str, sid: &str, with_session: bool) -> Option<String> {
    let mut u = url::Url::parse(uri).ok()?;
    if with_session {
        u.query_pairs_mut().append_pair("iss", issuer).append_pair("sid", sid);
    }
    Some(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let r = LogoutRequest::from_pairs(&pairs(&[("client_id", "a"), ("client_id", "b")]));
        assert_eq!(r.err(), Some(Refusal::Malformed));
        let r = LogoutRequest::from_pairs(&pairs(&[("client_id", "a"), ("state", ""), ("other", "x")]));
        let r = r.map_err(|e| e.reason()).map(|r| (r.client_id, r.state));
        assert_eq!(r, Ok((Some("a".to_string()), None)));
    }

    #[test]
    fn state_is_appended_to_the_registered_uri() {
        assert_eq!(with_state("https://p.example/bye?x=1", Some("a b")), "https://p.example/bye?x=1&state=a+b");
        assert_eq!(with_state("https://p.example/bye", None), "https://p.example/bye");
    }

    #[test]
    fn frontchannel_parameters_only_when_asked() {
        let with = frontchannel_url("https://p.example/fc?a=1", "https://idp/realms/r", "S1", true);
        assert_eq!(with.as_deref(), Some("https://p.example/fc?a=1&iss=https%3A%2F%2Fidp%2Frealms%2Fr&sid=S1"));
        let without = frontchannel_url("https://p.example/fc", "https://idp/realms/r", "S1", false);
        assert_eq!(without.as_deref(), Some("https://p.example/fc"));
    }
}
