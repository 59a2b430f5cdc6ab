//! Reading and setting cookies. Session cookies are HttpOnly and
//! SameSite=Lax, `__Host-` prefixed and Secure over https.
use axum::http::HeaderMap;
use axum::http::header::COOKIE;

pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

pub fn set(name: &str, value: &str, https: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if https {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// The cookie binding login transactions and CSRF tokens to one browser.
pub fn binding_name(https: bool) -> &'static str {
    if https { "__Host-civid-bind" } else { "civid-bind" }
}
