//! The admin API (`/admin/api/v1/realms/{realm}/…`) and `/metrics`, served
//! on the admin listener only. Callers present access tokens of the admin
//! realm issued for the admin API's audience; their roles are checked per
//! realm and action. Errors are RFC 9457 problem details; updates need the
//! ETag they read (If-Match).
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ClientIp;
use crate::admin::actions::Actor;
use crate::admin::roles::{Action, allowed};
use crate::admin::{ADMIN_AUDIENCE, ADMIN_REALM, Problem, actions, stats};
use crate::crypto::keys::Alg;
use crate::oidc::resource;
use crate::state::SharedState;
use crate::store::{admins, audit as audit_table};

pub fn app(state: SharedState) -> Router {
    let v1 = "/admin/api/v1/realms";
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/api/openapi.json", get(openapi))
        .route(v1, get(realm_list))
        .route(&format!("{v1}/{{realm}}"), get(realm_get).put(realm_put))
        .route(&format!("{v1}/{{realm}}/clients"), get(client_list).post(client_create))
        .route(&format!("{v1}/{{realm}}/clients/{{client_id}}"), get(client_get).put(client_put))
        .route(&format!("{v1}/{{realm}}/clients/{{client_id}}/secret"), post(client_secret))
        .route(&format!("{v1}/{{realm}}/keys"), get(keys_list))
        .route(&format!("{v1}/{{realm}}/keys/rotate"), post(keys_rotate))
        .route(&format!("{v1}/{{realm}}/users"), get(user_search))
        .route(&format!("{v1}/{{realm}}/users/{{id}}"), get(user_get))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/enterprises"), get(user_enterprises))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/disable"), post(user_disable))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/enable"), post(user_enable))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/sessions/end"), post(user_end_sessions))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/password/reset"), post(user_reset_password))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/factors/reset"), post(user_reset_factors))
        .route(&format!("{v1}/{{realm}}/users/{{id}}/identity/in-person"), post(user_in_person))
        .route(&format!("{v1}/{{realm}}/enterprises"), get(enterprise_search))
        .route(&format!("{v1}/{{realm}}/enterprises/{{enterprise}}"), get(enterprise_get))
        .route(&format!("{v1}/{{realm}}/audit"), get(audit_query))
        .route(&format!("{v1}/{{realm}}/statistics"), get(statistics))
        .route(&format!("{v1}/{{realm}}/logout-deliveries"), get(logout_deliveries))
        .fallback(|| async { problem(Problem::not_found("no such admin endpoint")) })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(256 * 1024))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

fn problem(p: Problem) -> Response {
    let mut resp = (
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({ "type": "about:blank", "title": p.title, "status": p.status, "detail": p.detail })),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if p.status == 401 {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"civid-admin\""));
    }
    resp
}

struct ProblemResponse(Problem);

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        problem(self.0)
    }
}

impl From<Problem> for ProblemResponse {
    fn from(p: Problem) -> Self {
        ProblemResponse(p)
    }
}

type ApiResult = Result<Response, ProblemResponse>;

fn ok(v: Value) -> ApiResult {
    Ok(no_store(axum::Json(v).into_response()))
}

fn with_etag(v: Value, tag: &str) -> ApiResult {
    let mut r = no_store(axum::Json(v).into_response());
    if let Ok(t) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(header::ETAG, t);
    }
    Ok(r)
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An authenticated administrator.
struct Caller {
    user_id: String,
    roles: Vec<(String, String)>,
    ip: Option<String>,
}

impl Caller {
    fn actor(&self) -> Actor<'_> {
        Actor { id: &self.user_id, ip: self.ip.as_deref() }
    }

    fn require(&self, realm: &str, action: Action) -> Result<(), Problem> {
        if allowed(&self.roles, realm, action) {
            Ok(())
        } else {
            Err(Problem::new(403, "forbidden", format!("your roles do not allow this in realm {realm}")))
        }
    }
}

async fn caller(state: &SharedState, headers: &HeaderMap, ip: Option<String>) -> Result<Caller, Problem> {
    let unauthorized = |d: &str| Problem::new(401, "unauthorized", d.to_string());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("a bearer token of the admin realm is required"))?;
    let admin = state.realms.get(ADMIN_REALM).ok_or_else(|| unauthorized("the admin realm is not configured"))?;
    let at = resource::check_access_token(state, &admin, token)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| unauthorized("the token is not valid"))?;
    let aud_ok = match at.claims.get("aud") {
        Some(Value::String(a)) => a == ADMIN_AUDIENCE,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(ADMIN_AUDIENCE)),
        _ => false,
    };
    if !aud_ok || at.claims.get("auth_time").is_none() {
        return Err(unauthorized("the token was not issued to an administrator for the admin API"));
    }
    // The client's step-up policy (admin-cli: a second factor), checked
    // again on the token: RFC 9470's insufficient_user_authentication.
    let amr: Vec<String> = at
        .claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let client = at.claims.get("client_id").and_then(Value::as_str).and_then(|c| admin.client(c));
    if client.is_none_or(|c| !c.settings.require_authn.met_by(&amr)) {
        return Err(Problem::new(
            401,
            "insufficient_user_authentication",
            "sign in with a second factor (an authenticator app or a passkey) to use the admin API".to_string(),
        ));
    }
    let grant = at.grant.ok_or_else(|| unauthorized("the grant was revoked"))?;
    let roles = admins::roles_of(&state.db, &grant.user_id).await?;
    Ok(Caller { user_id: grant.user_id, roles, ip })
}

async fn metrics(State(state): State<SharedState>) -> Response {
    crate::metrics::refresh_statistics(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render(&state.db))
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::document().to_string()).into_response()
}

async fn realm_list(State(s): State<SharedState>, ClientIp(ip): ClientIp, h: HeaderMap) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    let all = actions::realm_list(&s).await?;
    let visible: Vec<Value> = all
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| c.require(r["name"].as_str().unwrap_or_default(), Action::ReadConfig).is_ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    ok(json!({ "items": visible }))
}

async fn realm_get(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadConfig)?;
    let (v, tag) = actions::realm_view(&s, &realm).await?;
    with_etag(v, &tag)
}

fn if_match(h: &HeaderMap) -> Option<&str> {
    h.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

fn json_body(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::new(400, "bad request", format!("the body is not JSON: {e}")))
}

async fn realm_put(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::WriteConfig)?;
    let v = json_body(&body)?;
    let (v, tag) = actions::realm_update(&s, &c.actor(), &realm, v["settings"].clone(), if_match(&h)).await?;
    with_etag(v, &tag)
}

#[derive(Deserialize)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn client_list(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(p): Query<Page>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadConfig)?;
    let all = actions::client_list(&s, &realm).await?;
    let items: Vec<Value> = all.as_array().cloned().unwrap_or_default();
    let (offset, limit) = (p.offset.unwrap_or(0), p.limit.unwrap_or(100).clamp(1, 500));
    let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
    ok(json!({ "items": page, "total": items.len(), "offset": offset, "limit": limit }))
}

async fn client_create(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::WriteConfig)?;
    let v = json_body(&body)?;
    let id = v["client_id"].as_str().unwrap_or_default().to_string();
    let (client, secret) = actions::client_create(&s, &c.actor(), &realm, &id, v["settings"].clone()).await?;
    let mut r = no_store(
        (StatusCode::CREATED, axum::Json(json!({ "client": client, "client_secret": secret }))).into_response(),
    );
    if let Ok(loc) = HeaderValue::from_str(&format!("/admin/api/v1/realms/{realm}/clients/{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

async fn client_get(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadConfig)?;
    let (v, tag) = actions::client_view(&s, &realm, &id).await?;
    with_etag(v, &tag)
}

async fn client_put(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::WriteConfig)?;
    let v = json_body(&body)?;
    let enabled = v["enabled"].as_bool().unwrap_or(true);
    let (v, tag) =
        actions::client_update(&s, &c.actor(), &realm, &id, v["settings"].clone(), enabled, if_match(&h)).await?;
    with_etag(v, &tag)
}

async fn client_secret(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::WriteConfig)?;
    let secret = actions::client_rotate_secret(&s, &c.actor(), &realm, &id).await?;
    ok(json!({ "client_id": id, "client_secret": secret }))
}

async fn keys_list(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadConfig)?;
    ok(json!({ "items": actions::keys_list(&s, &realm).await? }))
}

async fn keys_rotate(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::WriteConfig)?;
    let v = if body.is_empty() { json!({}) } else { json_body(&body)? };
    let mut algs = Vec::new();
    for a in v["algs"].as_array().cloned().unwrap_or_default() {
        let name = a.as_str().unwrap_or_default();
        algs.push(name.parse::<Alg>().map_err(|_| Problem::invalid(format!("unknown algorithm {name}")))?);
    }
    ok(actions::keys_rotate(&s, &c.actor(), &realm, &algs, v["lead_secs"].as_u64()).await?)
}

#[derive(Deserialize)]
struct UserQuery {
    phone: Option<String>,
    email: Option<String>,
    username: Option<String>,
}

async fn user_search(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(q): Query<UserQuery>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadUsers)?;
    let (kind, value) = match (q.phone, q.email, q.username) {
        (Some(p), None, None) => ("phone", p),
        (None, Some(e), None) => ("email", e),
        (None, None, Some(u)) => ("username", u),
        _ => return Err(Problem::invalid("search by exactly one of phone, email, username").into()),
    };
    ok(json!({ "items": actions::user_search(&s, &realm, kind, &value).await? }))
}

#[derive(Deserialize)]
struct Unmasked {
    unmasked: Option<bool>,
}

async fn user_enterprises(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ReadEnterprises)?;
    ok(actions::user_enterprises(&s, &realm, &id).await?)
}

#[derive(Deserialize)]
struct EnterpriseQuery {
    uscc: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

async fn enterprise_search(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(q): Query<EnterpriseQuery>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadEnterprises)?;
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 500));
    ok(actions::enterprise_search(&s, &realm, q.uscc.as_deref(), offset, limit).await?)
}

async fn enterprise_get(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    Query(q): Query<Unmasked>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    let unmasked = q.unmasked.unwrap_or(false);
    c.require(&realm, if unmasked { Action::ReadPii } else { Action::ReadEnterprises })?;
    ok(actions::enterprise_view(&s, &c.actor(), &realm, &id, unmasked).await?)
}

async fn user_get(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    Query(q): Query<Unmasked>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    let unmasked = q.unmasked.unwrap_or(false);
    if unmasked {
        c.require(&realm, Action::ReadPii)?;
    } else {
        c.require(&realm, Action::ReadUsers)?;
    }
    ok(actions::user_view(&s, &c.actor(), &realm, &id, unmasked).await?)
}

async fn user_disable(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    ok(actions::user_set_enabled(&s, &c.actor(), &realm, &id, false).await?)
}

async fn user_enable(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    ok(actions::user_set_enabled(&s, &c.actor(), &realm, &id, true).await?)
}

async fn user_end_sessions(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    ok(actions::user_end_sessions(&s, &c.actor(), &realm, &id).await?)
}

async fn user_reset_password(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    ok(actions::user_reset_password(&s, &c.actor(), &realm, &id).await?)
}

async fn user_in_person(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    let v = json_body(&body)?;
    let id_number = v["id_number"].as_str().unwrap_or_default();
    let name = v["name"].as_str().unwrap_or_default();
    ok(actions::user_in_person(&s, &c.actor(), &realm, &id, id_number, name).await?)
}

async fn user_reset_factors(
    State(s): State<SharedState>,
    Path((realm, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    let c = caller(&s, &h, ip).await?;
    c.require(&realm, Action::ManageUsers)?;
    ok(actions::user_reset_factors(&s, &c.actor(), &realm, &id).await?)
}

#[derive(Deserialize)]
struct AuditQuery {
    kind: Option<String>,
    actor: Option<String>,
    client_id: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    before: Option<i64>,
    limit: Option<u64>,
}

async fn audit_query(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(q): Query<AuditQuery>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadAudit)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let query = audit_table::Query {
        realm: &realm,
        kind: q.kind.as_deref(),
        actor: q.actor.as_deref(),
        client_id: q.client_id.as_deref(),
        since: q.since,
        until: q.until,
        before_id: q.before,
        limit,
    };
    let rows = audit_table::search(&s.db, &query).await.map_err(Problem::from)?;
    let next = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({ "id": e.id, "at": e.at, "kind": e.kind, "outcome": e.outcome, "actor": e.actor,
                    "client_id": e.client_id, "ip": e.ip, "chain": e.chain_id, "seq": e.seq,
                    "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null) })
        })
        .collect();
    ok(json!({ "items": items, "next_before": next }))
}

#[derive(Deserialize)]
struct Days {
    days: Option<i64>,
}

async fn statistics(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(d): Query<Days>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadStats)?;
    ok(stats::realm_statistics(&s, &realm, d.days.unwrap_or(30)).await?)
}

#[derive(Deserialize)]
struct DeliveryQuery {
    client_id: Option<String>,
    state: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
    limit: Option<u64>,
}

async fn logout_deliveries(
    State(s): State<SharedState>,
    Path(realm): Path<String>,
    Query(q): Query<DeliveryQuery>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
) -> ApiResult {
    caller(&s, &h, ip).await?.require(&realm, Action::ReadLogouts)?;
    let q = crate::admin::logouts::Query {
        client_id: q.client_id.as_deref(),
        state: q.state.as_deref(),
        user_id: q.user_id.as_deref(),
        session_id: q.session_id.as_deref(),
        limit: q.limit,
    };
    ok(crate::admin::logouts::deliveries(&s, &realm, &q).await?)
}
