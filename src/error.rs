//! One error type for civid. Domain code returns it; the edge (`http/`)
//! decides how it looks: OAuth error JSON on back-channel endpoints, a
//! localized HTML page in the browser. Nothing else decides that.
//!
//! Use `Error::oauth` (and its short constructors) for protocol errors the
//! client must see, `Error::page` for a browser-facing error that must not
//! redirect, and `?` on storage or crypto failures: those become
//! `temporarily_unavailable` / 503 or `server_error` / 500 without details.
use std::borrow::Cow;

use crate::crypto::CryptoError;
use crate::store::ephemeral::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{code}: {description}")]
    OAuth { status: u16, code: &'static str, description: Cow<'static, str>, www_authenticate: Option<String> },
    /// A browser-facing error: `key` names the catalog entries
    /// `{key}.title` and `{key}.message` (such as `error.expired`).
    #[error("{key}")]
    Page { status: u16, key: &'static str, detail: Option<String> },
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn oauth(status: u16, code: &'static str, description: impl Into<Cow<'static, str>>) -> Error {
        Error::OAuth { status, code, description: description.into(), www_authenticate: None }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Error {
        Error::oauth(400, "invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Error {
        Error::oauth(400, "invalid_grant", d)
    }

    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Error {
        Error::oauth(400, "invalid_scope", d)
    }

    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Error {
        Error::oauth(400, "unauthorized_client", d)
    }

    /// RFC 6749 5.2: 401 with a `WWW-Authenticate` naming the scheme the
    /// client tried (Basic) so HTTP libraries retry correctly.
    pub fn invalid_client(d: impl Into<Cow<'static, str>>, basic: bool) -> Error {
        Error::OAuth {
            status: 401,
            code: "invalid_client",
            description: d.into(),
            www_authenticate: basic.then(|| "Basic realm=\"civid\"".to_string()),
        }
    }

    /// RFC 6750 3.1 errors of protected resources.
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Error {
        let d = d.into();
        Error::OAuth {
            status: 401,
            code: "invalid_token",
            www_authenticate: Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                d.replace('"', "'")
            )),
            description: d,
        }
    }

    pub fn page(status: u16, key: &'static str) -> Error {
        Error::Page { status, key, detail: None }
    }

    pub fn page_detail(status: u16, key: &'static str, detail: impl Into<String>) -> Error {
        Error::Page { status, key, detail: Some(detail.into()) }
    }

    pub fn internal(what: impl Into<String>) -> Error {
        Error::Internal(what.into())
    }

    /// Storage unreachable: the caller should retry, nothing was decided.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Db(_) | Error::Store(_))
    }
}
