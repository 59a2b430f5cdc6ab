//! How errors look on the wire. Back-channel endpoints get the spec's
//! OAuth error JSON with its status (and `WWW-Authenticate` where required);
//! browsers get a localized page. Storage failures become 503 with a retry
//! hint, never a wrong answer; details stay in the log.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::error::Error;
use crate::web::Locale;

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

fn log(e: &Error) {
    match e {
        Error::Db(_) | Error::Store(_) => tracing::warn!("storage unavailable: {e}"),
        Error::Crypto(_) | Error::Internal(_) => tracing::error!("internal error: {e}"),
        _ => tracing::debug!("request refused: {e}"),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        log(&self);
        let (st, code, description, www) = match self {
            Error::OAuth { status: s, code, description, www_authenticate } => {
                (status(s), code, description.into_owned(), www_authenticate)
            }
            Error::Page { status: s, key, .. } => (status(s), "invalid_request", key.to_string(), None),
            Error::Db(_) | Error::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again shortly".into(), None)
            }
            Error::Crypto(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error".into(), None)
            }
        };
        let mut resp = (st, axum::Json(json!({ "error": code, "error_description": description }))).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if st == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if let Some(w) = www.and_then(|w| HeaderValue::from_str(&w).ok()) {
            h.insert(header::WWW_AUTHENTICATE, w);
        }
        resp
    }
}

/// An error shown to a person in their language.
pub struct PageError(pub Error, pub Locale);

impl From<(Error, Locale)> for PageError {
    fn from((e, l): (Error, Locale)) -> Self {
        PageError(e, l)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let PageError(e, locale) = self;
        log(&e);
        let (st, key, detail) = match e {
            Error::Page { status: s, key, detail } => (status(s), key, detail),
            Error::OAuth { status: s, code, .. } => (status(s), "error.invalid_request", Some(code.to_string())),
            Error::Db(_) | Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "error.unavailable", None),
            Error::Crypto(_) | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "error.server", None),
        };
        let ctx = minijinja::context! {
            title => format!("{key}.title"),
            message => format!("{key}.message"),
            detail => detail,
        };
        let mut resp = (st, Html(super::render("error.html", locale, ctx))).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if st == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        resp
    }
}
