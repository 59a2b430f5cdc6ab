//! Real-name verification pages: from the account centre, or in the middle
//! of a portal's sign-in that asked for `acr_values=L3`. A separate consent
//! to processing the ID number (PIPL Art. 29), then name and number.
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use minijinja::context;

use super::factors::{Me, me};
use super::login::{PageResult, client_name, current_session, form_get, no_store, realm_logo, realm_name, respond};
use super::{ClientIp, PageError, form_pairs, query_pairs};
use crate::audit;
use crate::error::Error;
use crate::identity::ResidentId;
use crate::oidc::flow::{self, LoginTx};
use crate::realname::{self, Outcome};
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/realms/{realm}/verify", get(page).post(submit))
        .route("/realms/{realm}/verify/cancel", post(cancel))
}

/// The portal's transaction this verification belongs to, if any: only
/// this browser's, and only for the signed-in person.
async fn tx_of(state: &SharedState, m: &Me, headers: &HeaderMap, tx: Option<&str>) -> Option<(String, LoginTx)> {
    let tx = tx.filter(|t| !t.is_empty())?;
    let binding = super::cookies::get(headers, super::cookies::binding_name(state.settings.https()))?;
    let loaded = flow::load_tx(state, &m.realm, tx, &binding).await.ok()??;
    Some((tx.to_string(), loaded))
}

struct View<'a> {
    error: Option<String>,
    name: &'a str,
    status: StatusCode,
}

fn render(state: &SharedState, m: &Me, tx: Option<&(String, LoginTx)>, v: View) -> Response {
    let path = format!("/realms/{}/verify", m.realm.name);
    let ctx = context! {
        realm_name => realm_name(&m.realm, m.loc),
        realm_logo => realm_logo(&m.realm),
        client_name => tx.map(|(_, t)| client_name(&m.realm, &t.request.client_id, m.loc)),
        action => path.clone(),
        cancel_action => tx.map(|_| format!("{path}/cancel")),
        account_url => format!("/realms/{}/account", m.realm.name),
        csrf => m.csrf(state, "verify"),
        tx => tx.map(|(id, _)| id.clone()).unwrap_or_default(),
        error => v.error,
        name => v.name,
        level => m.session.acr.clone(),
    };
    let mut r = no_store(Html(super::render("verify.html", m.loc, ctx)).into_response());
    *r.status_mut() = v.status;
    r
}

async fn signed_in(state: &SharedState, name: &str, headers: &HeaderMap) -> Result<Result<Me, Response>, PageError> {
    Ok(match me(state, name, headers).await? {
        Some(m) => Ok(m),
        None => Err(no_store(Redirect::to(&format!("/realms/{name}/account")).into_response())),
    })
}

async fn page(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let params = query_pairs(q.as_deref());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let m = match signed_in(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let tx = tx_of(&state, &m, &headers, get("tx")).await;
    Ok(render(&state, &m, tx.as_ref(), View { error: None, name: "", status: StatusCode::OK }))
}

async fn submit(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match signed_in(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    if !m.csrf_ok(&state, "verify", &form) {
        return Err(PageError(Error::page(403, "error.csrf"), m.loc));
    }
    let tx = tx_of(&state, &m, &headers, form_get(&form, "tx")).await;
    let typed_name = form_get(&form, "name").unwrap_or_default().trim();
    let err = |key: &str, args: &[(&str, &str)]| Some(crate::web::text(m.loc, key, args));
    let show =
        |error: Option<String>, status| render(&state, &m, tx.as_ref(), View { error, name: typed_name, status });
    if form_get(&form, "consent") != Some("yes") {
        return Ok(show(err("realname.error.consent", &[]), StatusCode::BAD_REQUEST));
    }
    let name_chars = typed_name.chars().count();
    if !(2..=50).contains(&name_chars) {
        return Ok(show(err("realname.error.name", &[]), StatusCode::BAD_REQUEST));
    }
    let today = chrono::Utc::now().date_naive();
    let id = match ResidentId::parse(form_get(&form, "id_number").unwrap_or_default(), today) {
        Ok(id) => id,
        Err(e) => return Ok(show(err(e.key(), &[]), StatusCode::BAD_REQUEST)),
    };
    let consent_at = crate::store::now();
    audit::record(
        &state,
        audit::Event::new(&m.realm.name, "realname.consent", "success")
            .actor(&m.session.user_id)
            .ip(ip.as_deref())
            .detail(serde_json::json!({ "purpose": "real-name verification", "pipl": "Art. 29" })),
    )
    .await;
    let outcome = realname::verify(
        &state,
        &m.realm,
        &m.session.user_id,
        id.as_str(),
        id.birth_date(),
        typed_name,
        consent_at,
        ip.as_deref(),
    )
    .await
    .map_err(|e| PageError(e, m.loc))?;
    match outcome {
        Outcome::Verified(_) => {}
        Outcome::Mismatch(left) => {
            return Ok(show(err("realname.error.mismatch", &[("n", &left.to_string())]), StatusCode::BAD_REQUEST));
        }
        Outcome::Limited => return Ok(show(err("realname.error.limited", &[]), StatusCode::TOO_MANY_REQUESTS)),
        Outcome::Taken => return Ok(show(err("realname.error.taken", &[]), StatusCode::CONFLICT)),
        Outcome::Minor => return Ok(show(err("realname.error.minor", &[]), StatusCode::BAD_REQUEST)),
        Outcome::Unavailable => {
            let mut r = show(err("realname.error.unavailable", &[]), StatusCode::SERVICE_UNAVAILABLE);
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
            return Ok(r);
        }
    }
    // Verified: back to the portal that asked, with the session now at L3.
    let Some((tx_id, tx)) = tx else {
        return Ok(no_store(Redirect::to(&format!("/realms/{}/account?done=verified", m.realm.name)).into_response()));
    };
    let session = current_session(&state, &m.realm, &headers).await.map_err(|e| PageError(e, m.loc))?;
    let next = flow::proceed(&state, &m.realm, tx, Some(&tx_id), session).await.map_err(|e| PageError(e, m.loc))?;
    Ok(respond(&m.realm, next))
}

/// The citizen gives up: the portal learns the level was not reached.
async fn cancel(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = form_pairs(&body);
    let m = match signed_in(&state, &name, &headers).await? {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    if !m.csrf_ok(&state, "verify", &form) {
        return Err(PageError(Error::page(403, "error.csrf"), m.loc));
    }
    let Some((tx_id, tx)) = tx_of(&state, &m, &headers, form_get(&form, "tx")).await else {
        return Err(PageError(Error::page(400, "error.expired"), m.loc));
    };
    flow::end_tx(&state, &m.realm, &tx_id).await.map_err(|e| PageError(e, m.loc))?;
    let desc = "real-name verification was not completed";
    Ok(respond(&m.realm, flow::to_client_error(&m.realm, &tx.request, "unmet_authentication_requirements", desc)))
}
