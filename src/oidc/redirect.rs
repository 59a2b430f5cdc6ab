//! Redirect URI matching (RFC 9700 2.1, RFC 8252 7.3): the exact string
//! registered, except that the port of a loopback IP redirect may vary for
//! native apps. Never a prefix or pattern match.
use url::Url;

use crate::realm::model::ClientSettings;

pub fn is_registered(client: &ClientSettings, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !matches!(req.host_str(), Some("127.0.0.1") | Some("[::1]")) {
        return false;
    }
    client.redirect_uris.iter().filter_map(|r| Url::parse(r).ok()).any(|mut reg| {
        if reg.scheme() != "http" || reg.host_str() != req.host_str() {
            return false;
        }
        if reg.set_port(req.port()).is_err() {
            return false;
        }
        reg.as_str() == req.as_str()
    })
}

/// Appends response parameters to a redirect URI, keeping its own query.
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> ClientSettings {
        ClientSettings { redirect_uris: uris.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn exact_match_only_but_loopback_port_may_vary() {
        let c = client(&["https://portal.example.cn/cb", "http://127.0.0.1/native/cb", "com.example.app:/cb"]);
        assert!(is_registered(&c, "https://portal.example.cn/cb"));
        assert!(!is_registered(&c, "https://portal.example.cn/cb/"));
        assert!(!is_registered(&c, "https://portal.example.cn/cb?x=1"));
        assert!(!is_registered(&c, "https://portal.example.cn.evil.com/cb"));
        assert!(!is_registered(&c, "https://PORTAL.example.cn/cb"));
        assert!(is_registered(&c, "http://127.0.0.1:53211/native/cb"));
        assert!(!is_registered(&c, "http://127.0.0.1:53211/native/other"));
        assert!(!is_registered(&c, "http://localhost:53211/native/cb"));
        assert!(is_registered(&c, "com.example.app:/cb"));
        assert!(!is_registered(&c, "com.example.app:/cb2"));
    }
}
