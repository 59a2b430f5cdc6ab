//! What operators do, with every change audited (who, what, before, after)
//! and announced to the other nodes. The admin API and the CLI both call
//! these; the realm files remain the truth for what they name, so
//! `civid realm apply --dry-run` shows the drift an API change made.
use serde_json::{Value, json};

use super::{ADMIN_REALM, Problem, mask};
use crate::account::identifiers::Identifier;
use crate::audit::{self, Event};
use crate::authn::session;
use crate::crypto::keys::Alg;
use crate::crypto::{password, random};
use crate::realm::cache::format_secret_hash;
use crate::realm::model::{AuthMethod, ClientSettings, RealmSettings};
use crate::state::AppState;
use crate::store::{self, admins, realms, users};

/// Who acts: an administrator's id in the admin realm.
pub struct Actor<'a> {
    pub id: &'a str,
    pub ip: Option<&'a str>,
}

async fn audit_change(state: &AppState, actor: &Actor<'_>, realm: &str, kind: &'static str, detail: Value) {
    audit::record(state, Event::new(realm, kind, "success").actor(actor.id).ip(actor.ip).detail(detail)).await;
}

fn etag_of(v: &Value) -> String {
    format!("\"{}\"", &random::sha256_b64(v.to_string().as_bytes())[..16])
}

fn check_etag(if_match: Option<&str>, current: &str) -> Result<(), Problem> {
    match if_match {
        None => Err(Problem::new(428, "precondition required", "send If-Match with the ETag you read")),
        Some(m) if m == current || m == "*" => Ok(()),
        Some(_) => Err(Problem::new(412, "precondition failed", "changed since you read it; read it again")),
    }
}

pub async fn realm_list(state: &AppState) -> Result<Value, Problem> {
    let list = realms::realm_list(&state.db).await?;
    Ok(json!(list.iter().map(|r| json!({ "name": r.id, "generation": r.generation })).collect::<Vec<_>>()))
}

pub async fn realm_view(state: &AppState, realm: &str) -> Result<(Value, String), Problem> {
    let rec = realms::realm_get(&state.db, realm).await?.ok_or_else(|| Problem::not_found(format!("realm {realm}")))?;
    let settings: Value = serde_json::from_str(&rec.settings).unwrap_or(Value::Null);
    let body = json!({ "name": rec.id, "settings": settings });
    let tag = etag_of(&body);
    Ok((body, tag))
}

pub async fn realm_update(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    settings: Value,
    if_match: Option<&str>,
) -> Result<(Value, String), Problem> {
    let (before, tag) = realm_view(state, realm).await?;
    check_etag(if_match, &tag)?;
    let parsed: RealmSettings = serde_json::from_value(settings).map_err(|e| Problem::invalid(e.to_string()))?;
    crate::realm::file::validate_settings(&parsed).map_err(Problem::invalid)?;
    let json = serde_json::to_string(&parsed).map_err(|e| Problem::invalid(e.to_string()))?;
    realms::realm_update(&state.db, realm, json).await?;
    state.announce_change(realm).await;
    let (after, tag) = realm_view(state, realm).await?;
    audit_change(
        state,
        actor,
        realm,
        "admin.realm.updated",
        json!({ "before": before["settings"], "after": after["settings"] }),
    )
    .await;
    Ok((after, tag))
}

fn client_json(c: &realms::ClientRecord) -> Value {
    let settings: Value = serde_json::from_str(&c.settings).unwrap_or(Value::Null);
    json!({ "client_id": c.client_id, "enabled": c.enabled, "has_secret": c.secret_hash.is_some(), "settings": settings })
}

pub async fn client_list(state: &AppState, realm: &str) -> Result<Value, Problem> {
    Ok(json!(realms::clients_of(&state.db, realm).await?.iter().map(client_json).collect::<Vec<_>>()))
}

pub async fn client_view(state: &AppState, realm: &str, client_id: &str) -> Result<(Value, String), Problem> {
    let c = realms::client_get(&state.db, realm, client_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("client {client_id}")))?;
    let body = client_json(&c);
    let tag = etag_of(&body);
    Ok((body, tag))
}

fn new_secret(method: AuthMethod) -> Result<Option<String>, Problem> {
    match method {
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
            random::token(32).map(Some).map_err(|e| Problem::from(crate::error::Error::from(e)))
        }
        _ => Ok(None),
    }
}

/// Creates a client; returns it and, once, its secret.
pub async fn client_create(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    client_id: &str,
    settings: Value,
) -> Result<(Value, Option<String>), Problem> {
    realms::realm_get(&state.db, realm).await?.ok_or_else(|| Problem::not_found(format!("realm {realm}")))?;
    if client_id.is_empty() || client_id.len() > 100 || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::invalid("client_id must be 1-100 visible ASCII characters"));
    }
    let mut cs: ClientSettings = serde_json::from_value(settings).map_err(|e| Problem::invalid(e.to_string()))?;
    cs.validate().map_err(Problem::invalid)?;
    if realms::client_get(&state.db, realm, client_id).await?.is_some() {
        return Err(Problem::new(409, "conflict", format!("client {client_id} exists")));
    }
    let secret = new_secret(cs.token_endpoint_auth_method)?;
    cs.secret_sha256 = None;
    let hash = secret.as_ref().map(|s| format_secret_hash(&random::sha256(s.as_bytes())));
    let json = serde_json::to_string(&cs).map_err(|e| Problem::invalid(e.to_string()))?;
    realms::client_insert(&state.db, realm, client_id, json, hash, cs.enabled).await?;
    state.announce_change(realm).await;
    let (after, _) = client_view(state, realm, client_id).await?;
    audit_change(
        state,
        actor,
        realm,
        "admin.client.created",
        json!({ "client": client_id, "after": after["settings"] }),
    )
    .await;
    Ok((after, secret))
}

pub async fn client_update(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    client_id: &str,
    settings: Value,
    enabled: bool,
    if_match: Option<&str>,
) -> Result<(Value, String), Problem> {
    let (before, tag) = client_view(state, realm, client_id).await?;
    check_etag(if_match, &tag)?;
    let mut cs: ClientSettings = serde_json::from_value(settings).map_err(|e| Problem::invalid(e.to_string()))?;
    cs.validate().map_err(Problem::invalid)?;
    cs.secret_sha256 = None;
    let json = serde_json::to_string(&cs).map_err(|e| Problem::invalid(e.to_string()))?;
    realms::client_update(&state.db, realm, client_id, json, None, enabled).await?;
    state.announce_change(realm).await;
    let (after, tag) = client_view(state, realm, client_id).await?;
    audit_change(
        state,
        actor,
        realm,
        "admin.client.updated",
        json!({ "client": client_id, "before": before, "after": after }),
    )
    .await;
    Ok((after, tag))
}

/// A new secret, shown once; the old one stops working at once.
pub async fn client_rotate_secret(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    client_id: &str,
) -> Result<String, Problem> {
    let c = realms::client_get(&state.db, realm, client_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("client {client_id}")))?;
    let cs: ClientSettings = serde_json::from_str(&c.settings).map_err(|e| Problem::invalid(e.to_string()))?;
    let secret = new_secret(cs.token_endpoint_auth_method)?
        .ok_or_else(|| Problem::invalid("this client authenticates without a secret"))?;
    let hash = format_secret_hash(&random::sha256(secret.as_bytes()));
    realms::client_update(&state.db, realm, client_id, c.settings.clone(), Some(hash), c.enabled).await?;
    state.announce_change(realm).await;
    audit_change(state, actor, realm, "admin.client.secret_rotated", json!({ "client": client_id })).await;
    Ok(secret)
}

pub async fn keys_list(state: &AppState, realm: &str) -> Result<Value, Problem> {
    let t = store::now();
    let keys = realms::keys_of(&state.db, realm).await?;
    Ok(json!(
        keys.iter()
            .map(|k| {
                let status = if k.activate_at > t {
                    "published"
                } else if k.retire_at.is_some_and(|r| r <= t) {
                    if k.expire_at.is_some_and(|e| e <= t) { "expired" } else { "retired" }
                } else {
                    "signing"
                };
                json!({ "kid": k.kid, "alg": k.alg, "status": status, "activate_at": k.activate_at,
                    "retire_at": k.retire_at, "expire_at": k.expire_at })
            })
            .collect::<Vec<_>>()
    ))
}

pub async fn keys_rotate(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    algs: &[Alg],
    lead: Option<u64>,
) -> Result<Value, Problem> {
    let r = state.realms.get(realm).ok_or_else(|| Problem::not_found(format!("realm {realm}")))?;
    let algs = if algs.is_empty() { crate::realm::keys::ALGS.to_vec() } else { algs.to_vec() };
    let report = crate::realm::keys::rotate(&state.db, &state.secrets.kek, realm, &r.settings, &algs, lead)
        .await
        .map_err(|e| Problem::new(500, "rotation failed", e))?;
    state.announce_change(realm).await;
    audit_change(state, actor, realm, "keys.rotated", json!({ "report": report })).await;
    Ok(json!({ "report": report }))
}

/// People found by an identifier, through the blind index.
pub async fn user_search(state: &AppState, realm: &str, kind: &str, value: &str) -> Result<Value, Problem> {
    let ident = match kind {
        "phone" => Identifier::phone(value),
        "email" => Identifier::email(value),
        "username" => Identifier::username(value),
        _ => return Err(Problem::invalid("search by phone, email or username")),
    }
    .ok_or_else(|| Problem::invalid(format!("not a valid {kind}")))?;
    let index = ident.blind_index(&state.secrets.sealer);
    let found = users::find_by_identifier(&state.db, realm, ident.kind(), &index).await?;
    let mut out = Vec::new();
    if let Some(u) = found {
        out.push(user_json(state, realm, &u, false).await?);
    }
    Ok(json!(out))
}

async fn user_json(state: &AppState, realm: &str, u: &users::UserRecord, unmasked: bool) -> Result<Value, Problem> {
    let attrs = crate::account::users::attributes(&state.db, &state.secrets, realm, &u.id).await?;
    let show = |kind: &str, v: &str| if unmasked { v.to_string() } else { mask(kind, v) };
    let (phone, email, username, name) = match &attrs {
        Some(a) => (
            a.phone.as_ref().map(|(p, _)| show("phone", p)),
            a.email.as_ref().map(|(e, _)| show("email", e)),
            a.username.clone(),
            a.profile.name.clone().map(|n| if unmasked { n } else { mask_name(&n) }),
        ),
        None => (None, None, None, None),
    };
    let identity = crate::realname::proven(state, realm, &u.id).await?.map(|p| {
        json!({
            "level": p.level, "method": p.method, "verified_at": p.verified_at,
            "name": if unmasked { p.name.clone() } else { mask_name(&p.name) },
            "id_number": if unmasked { p.id_number.clone() } else { crate::identity::mask_id(&p.id_number) },
        })
    });
    Ok(json!({
        "id": u.id, "status": u.status, "created_at": u.created_at, "last_login_at": u.last_login_at,
        "has_password": u.password_hash.is_some(),
        "phone": phone, "email": email, "username": username, "name": name, "masked": !unmasked,
        "level": identity.as_ref().map(|i| i["level"].clone()).unwrap_or(json!("L2")), "identity": identity,
    }))
}

fn mask_name(n: &str) -> String {
    let first: String = n.chars().take(1).collect();
    format!("{first}{}", "*".repeat(n.chars().count().saturating_sub(1).max(1)))
}

pub async fn user_view(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    id: &str,
    unmasked: bool,
) -> Result<Value, Problem> {
    let u = users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    if unmasked {
        audit_change(state, actor, realm, "pii.read", json!({ "user": id })).await;
    }
    user_json(state, realm, &u, unmasked).await
}

pub async fn user_set_enabled(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    id: &str,
    enabled: bool,
) -> Result<Value, Problem> {
    let status = if enabled { "active" } else { "disabled" };
    if !users::set_status(&state.db, realm, id, status).await? {
        return Err(Problem::not_found(format!("user {id}")));
    }
    let ended = if enabled { 0 } else { session::end_all(state, realm, id, "account_disabled").await? };
    let kind = if enabled { "admin.user.enabled" } else { "admin.user.disabled" };
    audit_change(state, actor, realm, kind, json!({ "user": id, "sessions_ended": ended })).await;
    Ok(json!({ "id": id, "status": status, "sessions_ended": ended }))
}

pub async fn user_end_sessions(state: &AppState, actor: &Actor<'_>, realm: &str, id: &str) -> Result<Value, Problem> {
    users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    let ended = session::end_all(state, realm, id, "ended_by_operator").await?;
    audit_change(state, actor, realm, "admin.user.sessions_ended", json!({ "user": id, "sessions_ended": ended }))
        .await;
    Ok(json!({ "id": id, "sessions_ended": ended }))
}

/// Replaces the password with a one-time one for the helpdesk to hand over
/// in person, and ends the person's sessions.
pub async fn user_reset_password(state: &AppState, actor: &Actor<'_>, realm: &str, id: &str) -> Result<Value, Problem> {
    users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    let temp = random::token(12).map_err(|e| Problem::from(crate::error::Error::from(e)))?;
    let t = temp.clone();
    let hash = crate::authn::password::hashing(move || password::hash(&t))
        .await?
        .map_err(|e| Problem::from(crate::error::Error::from(e)))?;
    users::set_password(&state.db, realm, id, Some(hash)).await?;
    let ended = session::end_all(state, realm, id, "password_reset").await?;
    audit_change(state, actor, realm, "admin.user.password_reset", json!({ "user": id, "sessions_ended": ended }))
        .await;
    Ok(json!({ "id": id, "temporary_password": temp, "sessions_ended": ended }))
}

/// The enterprises a person represents or acts for, and for those they
/// represent, the agents they appointed (live delegations).
pub async fn user_enterprises(state: &AppState, realm: &str, id: &str) -> Result<Value, Problem> {
    users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    let orgs = crate::realname::enterprise::orgs_of(state, realm, id).await?;
    let mut items = Vec::new();
    for o in orgs {
        let agents: Vec<Value> = if o.role == crate::realname::enterprise::REPRESENTATIVE {
            crate::store::enterprises::delegations_for(&state.db, realm, &o.uscc_index, crate::store::now())
                .await?
                .into_iter()
                .map(|d| json!({ "id": d.id, "agent": d.user_id, "role": d.role, "expires_at": d.expires_at, "created_at": d.created_at }))
                .collect()
        } else {
            Vec::new()
        };
        items.push(json!({ "uscc": o.uscc, "name": o.name, "role": o.role, "agents": agents }));
    }
    Ok(json!({ "id": id, "items": items }))
}

/// A person as the enterprise views name them: their id, and their proven
/// name (else their profile name) masked unless `unmasked`.
async fn person_ref(state: &AppState, realm: &str, user_id: &str, unmasked: bool) -> Result<Value, Problem> {
    let proof = crate::realname::proven(state, realm, user_id).await?;
    let name = match &proof {
        Some(p) => Some(p.name.clone()),
        None => crate::account::users::attributes(&state.db, &state.secrets, realm, user_id)
            .await?
            .and_then(|a| a.profile.name),
    };
    let mut v = json!({
        "user_id": user_id,
        "name": name.map(|n| if unmasked { n } else { mask_name(&n) }),
        "level": proof.as_ref().map(|p| p.level.clone()).unwrap_or_else(|| "L2".into()),
    });
    if unmasked && let (Some(p), Some(o)) = (&proof, v.as_object_mut()) {
        o.insert("id_number".into(), json!(p.id_number));
    }
    Ok(v)
}

/// A claimed enterprise in brief: credit code and name (an enterprise's,
/// not personal data), the registry's status now, when and by whom it was
/// claimed.
async fn enterprise_summary(
    state: &AppState,
    e: &crate::store::enterprises::EnterpriseRecord,
    unmasked: bool,
) -> Result<Value, Problem> {
    let (uscc, name) = crate::realname::enterprise::opened(state, e)?;
    let registry = crate::store::enterprises::registry_row(&state.db, &e.uscc_index).await?;
    Ok(json!({
        "id": e.uscc_index,
        "uscc": uscc,
        "name": name,
        "registry_status": registry.map(|r| r.status),
        "claimed_at": e.claimed_at,
        "representative": person_ref(state, &e.realm, &e.rep_user_id, unmasked).await?,
    }))
}

/// Claimed enterprises: the one with credit code `uscc` (found through its
/// blind index), or all of the realm a page at a time.
pub async fn enterprise_search(
    state: &AppState,
    realm: &str,
    uscc: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<Value, Problem> {
    state.realms.get(realm).ok_or_else(|| Problem::not_found(format!("realm {realm}")))?;
    let (found, total) = match uscc {
        Some(u) => {
            let code = crate::identity::Uscc::parse(u.trim())
                .map_err(|e| Problem::new(400, "invalid_uscc", format!("uscc: {e}")))?;
            let index = crate::realname::enterprise::index_of(state, &code);
            let found: Vec<_> = crate::store::enterprises::get(&state.db, realm, &index).await?.into_iter().collect();
            let n = found.len() as u64;
            (found, n)
        }
        None => (
            crate::store::enterprises::list(&state.db, realm, offset, limit).await?,
            crate::store::enterprises::count(&state.db, realm).await?,
        ),
    };
    let mut items = Vec::new();
    for e in &found {
        items.push(enterprise_summary(state, e, false).await?);
    }
    Ok(json!({ "items": items, "total": total, "offset": offset, "limit": limit }))
}

/// An enterprise for operators: the summary, its live agents, and every
/// delegation ever made (live, revoked, expired). People are named by id
/// with their names masked; `unmasked` (pii-reader only) shows names and
/// the representative's ID number, and is audited as `pii.read`.
pub async fn enterprise_view(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    id: &str,
    unmasked: bool,
) -> Result<Value, Problem> {
    let missing = || Problem::not_found(format!("enterprise {id}"));
    if id.is_empty() || id.len() > 100 {
        return Err(missing());
    }
    let e = crate::store::enterprises::get(&state.db, realm, id).await?.ok_or_else(missing)?;
    if unmasked {
        audit_change(state, actor, realm, "pii.read", json!({ "enterprise": id })).await;
    }
    let mut body = enterprise_summary(state, &e, unmasked).await?;
    let t = store::now();
    let mut agents = Vec::new();
    let mut history = Vec::new();
    for d in crate::store::enterprises::delegation_history(&state.db, realm, id).await? {
        let status = match (d.revoked_at, d.expires_at <= t) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        let agent = person_ref(state, realm, &d.user_id, unmasked).await?;
        let item = json!({
            "id": d.id, "agent": agent, "role": d.role, "status": status, "created_at": d.created_at,
            "created_by": d.created_by, "expires_at": d.expires_at, "revoked_at": d.revoked_at,
        });
        if status == "active" {
            agents.push(item.clone());
        }
        history.push(item);
    }
    if let Some(o) = body.as_object_mut() {
        o.insert("agents".into(), json!(agents));
        o.insert("delegations".into(), json!(history));
        o.insert("masked".into(), json!(!unmasked));
    }
    Ok(body)
}

/// Records an in-person identity check at a service hall (L5): the
/// operator saw the ID card and the person. The ID number must be the one
/// the account proved, if it proved one, and no other account's.
pub async fn user_in_person(
    state: &AppState,
    actor: &Actor<'_>,
    realm: &str,
    id: &str,
    id_number: &str,
    name: &str,
) -> Result<Value, Problem> {
    users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    let r = state.realms.get(realm).ok_or_else(|| Problem::not_found(format!("realm {realm}")))?;
    let parsed = crate::identity::ResidentId::parse(id_number, chrono::Utc::now().date_naive())
        .map_err(|e| Problem::new(400, "invalid_id_number", e.to_string()))?;
    let name = crate::realname::normalize_name(name);
    if name.chars().count() < 2 {
        return Err(Problem::new(400, "invalid_name", "the name as on the ID card is required".to_string()));
    }
    match crate::realname::record_in_person(state, &r, id, parsed.as_str(), &name, actor.id).await? {
        crate::realname::InPerson::Recorded => {}
        crate::realname::InPerson::OtherNumber => {
            return Err(Problem::new(409, "conflict", "the account proved another ID number".to_string()));
        }
        crate::realname::InPerson::Taken => {
            return Err(Problem::new(
                409,
                "conflict",
                "another account of the realm proved this ID number".to_string(),
            ));
        }
    }
    let masked = crate::identity::mask_id(parsed.as_str());
    audit_change(
        state,
        actor,
        realm,
        "admin.user.verified_in_person",
        json!({ "user": id, "level": "L5", "id_number": masked }),
    )
    .await;
    Ok(json!({ "id": id, "level": "L5", "id_number": masked }))
}

/// Removes a person's passkeys and authenticator apps (a lost phone, after
/// the helpdesk checked who they are) and ends their sessions; they sign in
/// with their password or an SMS code again and add new ones.
pub async fn user_reset_factors(state: &AppState, actor: &Actor<'_>, realm: &str, id: &str) -> Result<Value, Problem> {
    users::get(&state.db, realm, id).await?.ok_or_else(|| Problem::not_found(format!("user {id}")))?;
    let removed = crate::store::credentials::delete_all_of_user(&state.db, realm, id).await?;
    let ended = session::end_all(state, realm, id, "factors_reset").await?;
    audit_change(
        state,
        actor,
        realm,
        "admin.user.factors_reset",
        json!({ "user": id, "credentials_removed": removed, "sessions_ended": ended }),
    )
    .await;
    Ok(json!({ "id": id, "credentials_removed": removed, "sessions_ended": ended }))
}

/// Creates the first administrator, with every role on every realm.
pub async fn bootstrap(
    state_db: &store::Db,
    secrets: &crate::secrets::Secrets,
    username: &str,
    pw: String,
) -> Result<String, String> {
    if admins::any(state_db).await.map_err(|e| e.to_string())? {
        return Err("an administrator exists already; bootstrap runs once".into());
    }
    realms::realm_get(state_db, ADMIN_REALM)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the admin realm does not exist: apply config/realms (it ships admin.toml) first")?;
    let ident = Identifier::username(username).ok_or("the username must be 3-32 letters, digits, '.', '_' or '-'")?;
    let id = crate::account::users::create(
        state_db,
        secrets,
        ADMIN_REALM,
        crate::account::users::NewUser { identifiers: vec![ident], password: Some(pw), profile: Default::default() },
    )
    .await
    .map_err(|e| e.to_string())?;
    for role in super::roles::Role::ALL {
        admins::grant(state_db, &id, role.as_str(), "*").await.map_err(|e| e.to_string())?;
    }
    audit::append(state_db, Event::new(ADMIN_REALM, "admin.bootstrap", "success").actor(&id)).await;
    Ok(id)
}
