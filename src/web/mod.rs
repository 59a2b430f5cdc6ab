//! Web presentation layer of civid: everything a citizen sees in the browser.
//!
//! This module owns:
//! - locale negotiation ([`Locale::negotiate`]: OIDC `ui_locales`, then
//!   `Accept-Language`, default zh-CN),
//! - the zh-CN / en message catalogs ([`t`], [`lookup`]),
//! - the HTML templates (`login.html`, `consent.html`, `error.html`,
//!   `notice.html`, sharing `base.html`), embedded at compile time and
//!   rendered with HTML auto-escaping by [`Templates`],
//! - the stylesheet [`CSS`], to be served at `/static/civid.css`.
//!
//! It does not own routing, HTTP responses, sessions, CSRF token generation or
//! URL building: handlers pass ready-made values (form actions, tokens,
//! `switch_url`, ...) in the template context. Pages contain no inline script
//! or style, so they work under `script-src 'self'; style-src 'self'`.

mod i18n;
mod templates;
mod texts;

#[cfg(test)]
mod tests;

pub use i18n::{Locale, lookup, t};
pub use templates::Templates;

/// The stylesheet used by every page; serve it at `/static/civid.css`
/// (content type `text/css; charset=utf-8`).
pub const CSS: &str = include_str!("static/civid.css");

/// The one script: WebAuthn ceremonies (passkeys) for the pages that offer
/// them; every page works without it otherwise. Served at `/static/webauthn.js`.
pub const WEBAUTHN_JS: &str = include_str!("static/webauthn.js");
/// Continues from the signed-out page once the portals' front-channel
/// logout pages have loaded. Served at `/static/logout.js`.
pub const LOGOUT_JS: &str = include_str!("static/logout.js");

/// A catalog text with `{name}` placeholders filled, for text outside pages
/// (SMS and email bodies).
pub fn text(locale: Locale, key: &str, args: &[(&str, &str)]) -> String {
    i18n::fill(t(locale, key), |name| args.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
}
