//! The authorization request (OIDC Core 3.1.2.1, RFC 6749 4.1.1, RFC 7636,
//! RFC 8707): parsed and checked before anything else happens. Until the
//! client and its redirect URI are known good, errors are shown as a page and
//! never redirected (no open redirector); after that, they go back to the
//! client with `state` and `iss`.
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::oidc::redirect;
use crate::realm::cache::Realm;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub ui_locales: Option<String>,
    pub login_hint: Option<String>,
    pub acr_values: Option<String>,
    pub resource: Option<String>,
    /// `verified_claims` asked for with the `claims` parameter (OpenID
    /// Connect for Identity Assurance).
    #[serde(default)]
    pub verified: VerifiedRequest,
}

/// The claims a portal asked for inside `verified_claims`, for the ID token
/// and for userinfo.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifiedRequest {
    pub id_token: Vec<String>,
    pub userinfo: Vec<String>,
}

impl VerifiedRequest {
    /// Reads the `claims` parameter (OIDC Core 5.5); only `verified_claims`
    /// requests matter to civid, other members are ignored as the spec
    /// allows for claims it does not supply.
    pub fn parse(claims: &str) -> Result<VerifiedRequest, &'static str> {
        let v: serde_json::Value = serde_json::from_str(claims).map_err(|_| "claims is not a JSON object")?;
        if !v.is_object() {
            return Err("claims is not a JSON object");
        }
        let names = |target: &str| -> Vec<String> {
            let vc = &v[target]["verified_claims"];
            let list: Vec<&serde_json::Value> = match vc {
                serde_json::Value::Array(a) => a.iter().collect(),
                serde_json::Value::Object(_) => vec![vc],
                _ => Vec::new(),
            };
            let mut out: Vec<String> = Vec::new();
            for one in list {
                if let Some(c) = one["claims"].as_object() {
                    for k in c.keys() {
                        if !out.contains(k) {
                            out.push(k.clone());
                        }
                    }
                }
            }
            out
        };
        Ok(VerifiedRequest { id_token: names("id_token"), userinfo: names("userinfo") })
    }
}

impl AuthRequest {
    pub fn prompts(&self, p: &str) -> bool {
        self.prompt.iter().any(|x| x == p)
    }
}

#[derive(Debug)]
pub enum Rejection {
    /// The client or redirect URI cannot be trusted: show a page.
    Page(Error),
    /// Tell the client at its (verified) redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: &'static str, description: String },
}

impl Rejection {
    fn to_client(req: &Partial, error: &'static str, description: impl Into<String>) -> Rejection {
        Rejection::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error,
            description: description.into(),
        }
    }
}

struct Partial {
    redirect_uri: String,
    state: Option<String>,
}

const MAX_PARAM: usize = 2048;

/// The URL of an error response at the client's redirect URI (RFC 9207 `iss`).
pub fn error_redirect(issuer: &str, redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> String {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    redirect::with_params(redirect_uri, &params)
}

pub fn parse(realm: &Realm, params: &[(String, String)]) -> Result<AuthRequest, Rejection> {
    // Until the redirect URI is verified, every error is a page.
    let single = |name: &str| -> Result<Option<&str>, ()> {
        let mut it = params.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() { Err(()) } else { Ok(first) }
    };
    let page = |key: &'static str, detail: &str| Rejection::Page(Error::page_detail(400, key, detail.to_string()));

    let client_id = match single("client_id") {
        Ok(Some(c)) if !c.is_empty() && c.len() <= 200 => c,
        _ => return Err(page("error.invalid_request", "client_id")),
    };
    let Some(client) = realm.client(client_id) else {
        return Err(page("error.unknown_client", "unknown client_id"));
    };
    let redirect_uri = match single("redirect_uri") {
        Ok(Some(r)) if r.len() <= MAX_PARAM => r,
        _ => return Err(page("error.bad_redirect_uri", "redirect_uri missing")),
    };
    if !redirect::is_registered(&client.settings, redirect_uri) {
        return Err(page("error.bad_redirect_uri", "redirect_uri is not registered for this client"));
    }
    let mut partial = Partial { redirect_uri: redirect_uri.to_string(), state: None };
    // From here on, errors go back to the client. `state` first, so they carry it.
    match single("state") {
        Ok(s) if s.is_none_or(|s| s.len() <= MAX_PARAM) => partial.state = s.map(str::to_string),
        _ => return Err(Rejection::to_client(&partial, "invalid_request", "state is repeated or too long")),
    }
    let bad = |p: &Partial, d: &str| Rejection::to_client(p, "invalid_request", d);

    for (k, _) in params {
        if k != "resource" && params.iter().filter(|(x, _)| x == k).count() > 1 {
            return Err(bad(&partial, &format!("parameter {k} is repeated")));
        }
        if k.len() > 100 {
            return Err(bad(&partial, "parameter name too long"));
        }
    }
    for (k, v) in params {
        if v.len() > MAX_PARAM && k != "login_hint" {
            return Err(bad(&partial, &format!("parameter {k} is too long")));
        }
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    if get("request").is_some() {
        return Err(Rejection::to_client(&partial, "request_not_supported", "request objects are not supported"));
    }
    if get("request_uri").is_some() {
        return Err(Rejection::to_client(&partial, "request_uri_not_supported", "request_uri is not supported"));
    }
    match get("response_type") {
        Some("code") => {}
        None => return Err(bad(&partial, "response_type is required")),
        Some(_) => {
            return Err(Rejection::to_client(
                &partial,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if let Some(m) = get("response_mode")
        && m != "query"
    {
        return Err(bad(&partial, "only response_mode=query is supported"));
    }
    if !client.settings.allows_grant("authorization_code") {
        return Err(Rejection::to_client(
            &partial,
            "unauthorized_client",
            "the client may not use the authorization code grant",
        ));
    }

    let scopes = super::scopes(get("scope").unwrap_or(""));
    if scopes.is_empty() {
        return Err(Rejection::to_client(&partial, "invalid_scope", "scope is required"));
    }
    for s in &scopes {
        if !client.settings.scopes.contains(s) || !realm.settings.scopes.contains_key(s) {
            return Err(Rejection::to_client(
                &partial,
                "invalid_scope",
                format!("scope {s} is not allowed for this client"),
            ));
        }
    }

    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) => {
            if !(43..=128).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Err(bad(&partial, "code_challenge is malformed"));
            }
            Some(c.to_string())
        }
        (Some(_), Some(_)) => return Err(bad(&partial, "only code_challenge_method=S256 is supported")),
        (Some(_), None) => return Err(bad(&partial, "code_challenge_method=S256 is required (plain is not accepted)")),
        (None, Some(_)) => return Err(bad(&partial, "code_challenge_method without code_challenge")),
        (None, None) if client.settings.pkce_exempt && !client.settings.is_public() => None,
        (None, None) => {
            return Err(bad(&partial, "PKCE is required: send code_challenge with code_challenge_method=S256"));
        }
    };

    let prompt = super::scopes(get("prompt").unwrap_or(""));
    for p in &prompt {
        if !["none", "login", "consent", "select_account"].contains(&p.as_str()) {
            return Err(bad(&partial, &format!("unknown prompt value {p}")));
        }
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(bad(&partial, "prompt=none cannot be combined with other values"));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return Err(bad(&partial, "max_age must be a non-negative integer")),
        },
    };
    let resources: Vec<&str> = params.iter().filter(|(k, _)| k == "resource").map(|(_, v)| v.as_str()).collect();
    let resource = match resources.as_slice() {
        [] => None,
        [r] if realm.settings.resources.iter().any(|x| x.uri == *r) => Some(r.to_string()),
        [_] => return Err(Rejection::to_client(&partial, "invalid_target", "unknown resource")),
        _ => return Err(Rejection::to_client(&partial, "invalid_target", "one resource per request")),
    };
    let nonce = get("nonce").map(str::to_string);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(bad(&partial, "nonce is too long"));
    }
    let login_hint = get("login_hint").map(|h| h.chars().take(320).collect());
    let verified = match get("claims") {
        Some(c) if c.len() > 4096 => return Err(bad(&partial, "claims is too long")),
        Some(c) => VerifiedRequest::parse(c).map_err(|d| bad(&partial, d))?,
        None => VerifiedRequest::default(),
    };
    Ok(AuthRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope: scopes.join(" "),
        state: partial.state.take(),
        nonce,
        code_challenge,
        prompt,
        max_age,
        ui_locales: get("ui_locales").map(str::to_string),
        login_hint,
        acr_values: get("acr_values").map(str::to_string),
        resource,
        verified,
    })
}
