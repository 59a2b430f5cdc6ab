//! The embedded page templates and the minijinja environment that renders them.

use minijinja::value::{Kwargs, merge_maps};
use minijinja::{AutoEscape, Environment, Error, State, Value, context};

use super::i18n::{self, Locale};

/// Every template, embedded at compile time: (name, source).
pub(crate) const SOURCES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("consent.html", include_str!("templates/consent.html")),
    ("error.html", include_str!("templates/error.html")),
    ("notice.html", include_str!("templates/notice.html")),
    ("register.html", include_str!("templates/register.html")),
    ("passkey_signin.html", include_str!("templates/passkey_signin.html")),
    ("second.html", include_str!("templates/second.html")),
    ("verify.html", include_str!("templates/verify.html")),
    ("guardian.html", include_str!("templates/guardian.html")),
    ("acting.html", include_str!("templates/acting.html")),
    ("account_enterprises.html", include_str!("templates/account_enterprises.html")),
    ("recover_realname.html", include_str!("templates/recover_realname.html")),
    ("passkey_setup.html", include_str!("templates/passkey_setup.html")),
    ("totp.html", include_str!("templates/totp.html")),
    ("account_factors.html", include_str!("templates/account_factors.html")),
    ("account.html", include_str!("templates/account.html")),
    ("account_verify.html", include_str!("templates/account_verify.html")),
    ("account_cancel.html", include_str!("templates/account_cancel.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("logout_confirm.html", include_str!("templates/logout_confirm.html")),
];

/// The page templates, ready to render. Cheap to share (`Arc` it or clone it
/// into the application state); rendering takes `&self`.
#[derive(Clone, Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Builds the environment: all templates embedded, HTML auto-escaping on
    /// for every template, the `t` function and the `safe_url` test registered.
    pub fn new() -> Result<Templates, Error> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("t", template_t);
        env.add_test("safe_url", is_safe_url);
        for (name, source) in SOURCES {
            env.add_template(name, source)?;
        }
        Ok(Templates { env })
    }

    /// Renders the template `name` (e.g. "login.html") with `ctx` plus `lang`
    /// set to `locale.tag()` (overriding any `lang` in `ctx`).
    pub fn render(&self, name: &str, locale: Locale, ctx: Value) -> Result<String, Error> {
        let template = self.env.get_template(name)?;
        template.render(merge_maps([ctx, context! { lang => locale.tag() }]))
    }
}

/// Template function `t("key")` / `t("key", n=30)` / `t(key, default="raw")`.
///
/// The locale comes from `lang` in the render context. Keyword arguments fill
/// `{name}` placeholders of the catalog string; `default` is returned verbatim
/// when the key is missing from the catalog (otherwise a generic text is).
/// The result is plain text, escaped on output like any other value.
fn template_t(state: &State, key: Option<&str>, kwargs: Kwargs) -> Result<String, Error> {
    let locale = state.lookup("lang").as_ref().and_then(Value::as_str).and_then(Locale::from_tag).unwrap_or_default();
    let default: Option<Value> = kwargs.get("default")?;
    let mut args: Vec<(&str, Value)> = Vec::new();
    for name in kwargs.args() {
        if name != "default" {
            args.push((name, kwargs.get(name)?));
        }
    }
    let text = match key.and_then(|key| i18n::lookup(locale, key)) {
        Some(text) => text,
        None => {
            return Ok(match default {
                Some(default) => default.to_string(),
                None => i18n::fallback(locale).to_string(),
            });
        }
    };
    Ok(i18n::fill(text, |name| {
        args.iter()
            .find(|(arg, _)| *arg == name)
            .map(|(_, value)| value)
            .filter(|value| !value.is_undefined() && !value.is_none())
            .map(Value::to_string)
    }))
}

/// Template test `x is safe_url`: true for http(s) URLs and same-site
/// references ("/path", "?query"); false for anything else, including
/// `javascript:` URLs, protocol-relative "//host" and undefined values.
fn is_safe_url(value: Value) -> bool {
    let Some(url) = value.as_str() else {
        return false;
    };
    if url.chars().any(|c| c.is_control() || c == '\\' || c == ' ') {
        return false;
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//"))
        || url.starts_with('?')
}
