//! The OpenID Connect and OAuth 2 rules, with no HTTP types: authorization
//! requests, codes, tokens, claims, client authentication, discovery, and the
//! protected-resource endpoints (userinfo, introspection, revocation).
pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod discovery;
pub mod flow;
pub mod logout;
pub mod redirect;
pub mod resource;
pub mod token;
pub mod tokens;

/// Clock skew tolerated on times other parties put in JWTs.
pub const SKEW_SECS: i64 = 60;

pub fn scopes(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect();
    v.dedup();
    v
}

pub fn has_scope(scope: &str, name: &str) -> bool {
    scope.split(' ').any(|s| s == name)
}

/// A parameter that may appear at most once (RFC 6749 3.1, 3.2).
pub fn single<'a>(form: &'a [(String, String)], name: &str) -> crate::error::Result<Option<&'a str>> {
    let mut it = form.iter().filter(|(k, _)| k == name);
    let v = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(crate::error::Error::invalid_request(format!("{name} is repeated")));
    }
    Ok(v)
}
