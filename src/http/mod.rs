//! The edge: the only place that knows axum. Handlers parse the request,
//! call the domain (`oidc`, `authn`, `account`), and render the answer.
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::realm::cache::Realm;
use crate::state::SharedState;
use crate::web::{Locale, Templates};

mod account;
pub mod admin;
pub mod cookies;
pub mod errors;
mod factors;
mod login;
mod logout;
pub mod openapi;
mod protocol;
mod realname;
mod register;

pub use errors::PageError;

/// Largest request body accepted anywhere (forms, token requests).
const BODY_LIMIT: usize = 64 * 1024;

static TEMPLATES: LazyLock<Result<Templates, String>> = LazyLock::new(|| Templates::new().map_err(|e| e.to_string()));

/// Renders a page; a template fault (caught by tests) degrades to text.
pub fn render(name: &str, locale: Locale, ctx: minijinja::Value) -> String {
    match TEMPLATES.as_ref() {
        Ok(t) => t.render(name, locale, ctx).unwrap_or_else(|e| {
            tracing::error!("template {name}: {e}");
            "civid: internal error".to_string()
        }),
        Err(e) => {
            tracing::error!("templates: {e}");
            "civid: internal error".to_string()
        }
    }
}

pub fn app(state: SharedState) -> Router {
    let https = state.settings.https();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/static/civid.css", get(css))
        .merge(protocol::routes())
        .merge(login::routes())
        .merge(logout::routes())
        .merge(register::routes())
        .merge(factors::routes())
        .merge(realname::routes())
        .merge(account::routes())
        .fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::map_response(move |r: Response| security_headers(r, https)))
        // Every request gets an id (or keeps the caller's `x-request-id`),
        // logged with it and returned in the response, so a citizen's report
        // can be found in the logs.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn readyz(State(state): State<SharedState>) -> Response {
    let db = crate::store::ping(&state.db).await;
    let eph = state.eph.ping().await;
    match (db, eph) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready").into_response(),
        (db, eph) => {
            let why = format!(
                "not ready: database {}, ephemeral store {}",
                if db.is_ok() { "ok" } else { "unreachable" },
                if eph.is_ok() { "ok" } else { "unreachable" }
            );
            (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
        }
    }
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        crate::web::CSS,
    )
        .into_response()
}

/// One of the pages' scripts, cached by browsers for an hour.
fn static_script(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], body)
        .into_response()
}

async fn not_found(headers: HeaderMap) -> Response {
    PageError(Error::page(404, "error.not_found"), locale(&headers, None)).into_response()
}

async fn security_headers(mut r: Response, https: bool) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // No form-action: browsers apply it to the redirect back to the portal.
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    if https {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    }
    r
}

/// The language of a page: `ui_locales` first, then Accept-Language.
pub fn locale(headers: &HeaderMap, ui_locales: Option<&str>) -> Locale {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    Locale::negotiate(ui_locales, accept)
}

/// The realm named in the path, or a 404 in the caller's chosen form.
pub fn realm(state: &SharedState, name: &str) -> Result<Arc<Realm>, Error> {
    state.realms.get(name).ok_or_else(|| Error::page(404, "error.unknown_realm"))
}

/// `application/x-www-form-urlencoded` pairs, in order.
pub fn form_pairs(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()
}

/// The client's address: the peer's, or, when the peer is one of
/// `trusted_proxies`, the first untrusted hop of the forwarded header
/// (`crate::proxy`). Rate limits and the audit log use it.
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<SharedState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
            return Ok(ClientIp(None));
        };
        let s = &state.settings;
        if s.trusted_proxies.is_empty() {
            return Ok(ClientIp(Some(peer.to_canonical().to_string())));
        }
        let header = s.forwarded_header;
        // A line that is not visible ASCII is malformed: the peer, then.
        let lines: Option<Vec<&str>> = parts.headers.get_all(header.name()).iter().map(|v| v.to_str().ok()).collect();
        let ip = match lines {
            Some(lines) => crate::proxy::client_ip(peer, &s.trusted_proxies, header, &lines),
            None => peer.to_canonical(),
        };
        Ok(ClientIp(Some(ip.to_string())))
    }
}
