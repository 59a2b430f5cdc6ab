//! Realm files (`config/realms/*.toml`): parsing and validation. A file that
//! is not right is refused with its path, line and reason, before anything
//! is applied.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::realm::model::{ClientSettings, RealmSettings, valid_realm_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmFile {
    name: toml::Spanned<String>,
    #[serde(default)]
    settings: RealmSettings,
    #[serde(default)]
    clients: BTreeMap<String, toml::Spanned<ClientSettings>>,
}

/// A realm as a file declares it.
#[derive(Clone, Debug)]
pub struct RealmDecl {
    pub file: PathBuf,
    pub name: String,
    pub settings: RealmSettings,
    pub clients: BTreeMap<String, ClientSettings>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map(|s| s.matches('\n').count() + 1).unwrap_or(1)
}

pub fn parse(path: &Path, text: &str) -> Result<RealmDecl, String> {
    let where_ = |offset: usize| format!("{}:{}", path.display(), line_of(text, offset));
    let file: RealmFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{}:{}: {}", path.display(), line, e.message())
    })?;
    let name = file.name.get_ref().clone();
    if !valid_realm_name(&name) {
        return Err(format!(
            "{}: realm name {name:?} must be 1-40 lowercase letters, digits or '-'",
            where_(file.name.span().start)
        ));
    }
    validate_settings(&file.settings).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut clients = BTreeMap::new();
    for (id, spanned) in file.clients {
        let at = where_(spanned.span().start);
        if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{at}: client id {id:?} must be 1-100 visible ASCII characters"));
        }
        let c = spanned.into_inner();
        c.validate().map_err(|e| format!("{at}: client {id}: {e}"))?;
        if let Some(alg) = c.id_token_signed_response_alg
            && !crate::realm::keys::ALGS.contains(&alg)
        {
            return Err(format!("{at}: client {id}: unsupported id_token_signed_response_alg {alg}"));
        }
        clients.insert(id, c);
    }
    Ok(RealmDecl { file: path.to_path_buf(), name, settings: file.settings, clients })
}

pub fn validate_settings(s: &RealmSettings) -> Result<(), String> {
    let t = &s.tokens;
    if !(1..=600).contains(&t.code_ttl_secs) {
        return Err("settings.tokens.code_ttl_secs must be between 1 and 600 (RFC 6749 recommends at most 600; civid defaults to 60)".into());
    }
    for (name, v) in [
        ("id_token_ttl_secs", t.id_token_ttl_secs),
        ("access_token_ttl_secs", t.access_token_ttl_secs),
        ("refresh_token_ttl_secs", t.refresh_token_ttl_secs),
        ("offline_token_ttl_secs", t.offline_token_ttl_secs),
    ] {
        if v == 0 {
            return Err(format!("settings.tokens.{name} must be positive"));
        }
    }
    if s.session.idle_secs == 0 || s.session.absolute_secs == 0 {
        return Err("settings.session lifetimes must be positive".into());
    }
    for r in &s.resources {
        let u = url::Url::parse(&r.uri).map_err(|e| format!("resource {:?}: {e}", r.uri))?;
        if u.fragment().is_some() {
            return Err(format!("resource {:?} must not have a fragment (RFC 8707)", r.uri));
        }
    }
    let b = &s.backchannel;
    if b.retry_window_secs == 0 || b.retry_initial_secs == 0 || b.retry_max_secs < b.retry_initial_secs {
        return Err("settings.backchannel: retry_window_secs and retry_initial_secs must be positive, and retry_max_secs at least retry_initial_secs".into());
    }
    if b.retry_window_secs > 7 * 24 * 3600 {
        return Err("settings.backchannel.retry_window_secs must be at most 604800 (a week): a logout token for a session ended longer ago tells a portal nothing useful".into());
    }
    if s.audit.retention_days < 183 {
        return Err("settings.audit.retention_days must be at least 183 (six months, Cybersecurity Law Art. 21)".into());
    }
    for id in &s.login_identifiers {
        if !["phone", "email", "username"].contains(&id.as_str()) {
            return Err(format!("settings.login_identifiers: unknown identifier {id:?} (phone, email, username)"));
        }
    }
    let rn = &s.realname;
    if !["registry", "http"].contains(&rn.verifier.as_str()) {
        return Err(format!("settings.realname.verifier {:?}: use registry or http", rn.verifier));
    }
    if !["service_hall", "guardian"].contains(&rn.minors.as_str()) {
        return Err(format!("settings.realname.minors {:?}: use service_hall or guardian", rn.minors));
    }
    if rn.min_age > 18 {
        return Err("settings.realname.min_age must be at most 18 (guardians are adults)".into());
    }
    Ok(())
}

/// Reads every `*.toml` in `dir` (or the one file `dir` names).
pub fn load(dir: &Path) -> Result<Vec<RealmDecl>, String> {
    let mut paths = Vec::new();
    if dir.is_file() {
        paths.push(dir.to_path_buf());
    } else {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if p.extension().is_some_and(|x| x == "toml") {
                paths.push(p);
            }
        }
        paths.sort();
    }
    let mut decls: Vec<RealmDecl> = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let d = parse(&p, &text)?;
        if let Some(other) = decls.iter().find(|o| o.name == d.name) {
            return Err(format!("{}: realm {} is already declared in {}", p.display(), d.name, other.file.display()));
        }
        decls.push(d);
    }
    Ok(decls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let text = "name = \"r\"\n\n[clients.a]\nredirect_uris = [\"http://example.com/cb\"]\n";
        let e = parse(Path::new("r.toml"), text).unwrap_err();
        assert!(e.starts_with("r.toml:3:"), "{e}");
        assert!(e.contains("https"), "{e}");
        let e = parse(Path::new("r.toml"), "name = \"r\"\n[settings]\nbogus = 1\n").unwrap_err();
        assert!(e.starts_with("r.toml:3:"), "{e}");
        let e = parse(Path::new("r.toml"), "name = \"R!\"\n").unwrap_err();
        assert!(e.starts_with("r.toml:1:"), "{e}");
    }

    #[test]
    fn backchannel_logout_uris_are_checked_like_redirect_uris() {
        let client = |uri: &str| {
            format!(
                "name = \"r\"\n\n[clients.a]\nredirect_uris = [\"https://a.example/cb\"]\nbackchannel_logout_uri = \"{uri}\"\n"
            )
        };
        assert!(parse(Path::new("r.toml"), &client("https://a.example/logout?x=1")).is_ok());
        assert!(parse(Path::new("r.toml"), &client("http://127.0.0.1:8000/logout")).is_ok());
        assert!(parse(Path::new("r.toml"), &client("http://localhost/logout")).is_ok());
        let e = parse(Path::new("r.toml"), &client("http://a.example/logout")).unwrap_err();
        assert!(e.starts_with("r.toml:3: client a: backchannel_logout_uri") && e.contains("https"), "{e}");
        let e = parse(Path::new("r.toml"), &client("https://a.example/logout#x")).unwrap_err();
        assert!(e.contains("fragment"), "{e}");
        let e = parse(Path::new("r.toml"), &client("/logout")).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = parse(Path::new("r.toml"), &client("com.example.app:/logout")).unwrap_err();
        assert!(e.contains("https"), "{e}");
        let e =
            parse(Path::new("r.toml"), "name = \"r\"\n[settings.backchannel]\nretry_window_secs = 0\n").unwrap_err();
        assert!(e.contains("settings.backchannel"), "{e}");
    }

    #[test]
    fn shipped_realm_files_parse() {
        let decls = load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/realms"))).unwrap();
        assert!(decls.iter().any(|d| d.name == "citizens" && !d.clients.is_empty()));
    }
}
