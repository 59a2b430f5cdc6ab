//! The authorization flow after a request is accepted: does the person need
//! to sign in, or to consent, or can the portal have its code now? A login
//! transaction carries the request across the sign-in and consent pages; it
//! is bound to the browser that started it.
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::authn::session::{self, SsoSession};
use crate::crypto::random;
use crate::error::{Error, Result};
use crate::oidc::authorize::{AuthRequest, error_redirect};
use crate::oidc::redirect;
use crate::oidc::tokens::AuthContext;
use crate::realm::cache::{Client, Realm};
use crate::realm::model::{RequireAuthn, SubjectType};
use crate::state::AppState;
use crate::store::{grants, now};

/// A sign-in in progress: lives 30 minutes in the ephemeral store.
const TX_SECS: u64 = 1800;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginTx {
    pub request: AuthRequest,
    /// The browser binding cookie of whoever started it.
    pub binding: String,
    /// Set when the person signed in within this transaction, which
    /// satisfies `prompt=login` and `max_age`.
    pub fresh_session: Option<String>,
    /// The mobile number being proven in this transaction (registration or
    /// recovery), sealed: the ephemeral store holds no personal data in clear.
    #[serde(default)]
    pub registering: Option<String>,
    /// The first factor is proven but the realm or the portal wants another
    /// (a TOTP code, a passkey) before a session starts or is stepped up.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// The account being recovered by real name, once its holder proved it.
    #[serde(default)]
    pub recovering: Option<String>,
    /// Whom the person acts as (portals allowed scope `enterprise`): `self`,
    /// or the blind index of an enterprise's credit code.
    #[serde(default)]
    pub acting: Option<String>,
}

/// A person part-way through signing in: who, and what they proved so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub user_id: String,
    pub amr: Vec<String>,
    /// The audit kind of the first factor (`signin.password`, `signin.sms`).
    pub event_kind: String,
    /// Set when an existing session is being stepped up rather than started.
    pub session_id: Option<String>,
}

/// The account centre (`/realms/{realm}/account`) signs people in through
/// the same transaction as a portal does, under this pseudo client id. It is
/// no client: it is never in a realm's client list, so `authorize` refuses
/// it, and after sign-in the flow returns to the account page.
pub const ACCOUNT_CLIENT: &str = "civid-account";

/// A login transaction for the account centre. `fresh` forces a new sign-in
/// (sensitive changes need a recent one).
pub fn account_tx(realm: &Realm, binding: String, ui_locales: Option<String>, fresh: bool) -> LoginTx {
    let request = AuthRequest {
        client_id: ACCOUNT_CLIENT.to_string(),
        redirect_uri: account_url(realm),
        scope: "openid".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: if fresh { vec!["login".into()] } else { Vec::new() },
        max_age: None,
        ui_locales,
        login_hint: None,
        acr_values: None,
        resource: None,
        verified: Default::default(),
    };
    LoginTx { request, binding, fresh_session: None, registering: None, pending: None, recovering: None, acting: None }
}

pub fn account_url(realm: &Realm) -> String {
    format!("/realms/{}/account", realm.name)
}

/// What the portal of a request demands of how the person authenticated.
pub fn required_authn(realm: &Realm, req: &AuthRequest) -> RequireAuthn {
    realm.client(&req.client_id).map(|c| c.settings.require_authn).unwrap_or_default()
}

pub enum Next {
    Login {
        tx: String,
    },
    Consent {
        tx: String,
    },
    /// The portal asked for a higher identity level (`acr_values`): the
    /// real-name verification page, then back.
    Verify {
        tx: String,
    },
    /// The person chooses themselves or an enterprise (`acting_step`).
    Acting {
        tx: String,
    },
    Redirect(String),
}

/// The lowest level among the `acr_values` civid knows, if any: the
/// session must reach at least that one.
pub fn wanted_level(req: &AuthRequest) -> Option<u8> {
    let values = req.acr_values.as_deref()?;
    values.split(' ').filter(|v| crate::realname::LEVELS.contains(v)).map(crate::realname::rank).min()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodeData {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub resource: Option<String>,
    pub ctx: AuthContext,
    /// When the code expires (Unix seconds), so a redemption that storage
    /// failed can put it back for the time it had left; 0 from a node that
    /// did not record it.
    #[serde(default)]
    pub expires_at: i64,
}

fn tx_key(realm: &str, id: &str) -> String {
    format!("tx:{realm}:{id}")
}

pub fn code_key(realm: &str, code: &str) -> String {
    format!("code:{realm}:{}", random::sha256_b64(code.as_bytes()))
}

pub async fn save_tx(state: &AppState, realm: &Realm, tx: &LoginTx, id: Option<&str>) -> Result<String> {
    let id = match id {
        Some(i) => i.to_string(),
        None => random::token(16)?,
    };
    let json = serde_json::to_string(tx).map_err(|e| Error::internal(e.to_string()))?;
    state.eph.put(&tx_key(&realm.name, &id), &json, TX_SECS).await?;
    Ok(id)
}

/// The transaction, if it exists and belongs to this browser.
pub async fn load_tx(state: &AppState, realm: &Realm, id: &str, binding: &str) -> Result<Option<LoginTx>> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let Some(json) = state.eph.get(&tx_key(&realm.name, id)).await? else {
        return Ok(None);
    };
    let tx: LoginTx = serde_json::from_str(&json).map_err(|e| Error::internal(e.to_string()))?;
    Ok(random::ct_eq(tx.binding.as_bytes(), binding.as_bytes()).then_some(tx))
}

pub async fn end_tx(state: &AppState, realm: &Realm, id: &str) -> Result<()> {
    state.eph.delete(&tx_key(&realm.name, id)).await?;
    Ok(())
}

fn client_of<'a>(realm: &'a Realm, req: &AuthRequest) -> Result<&'a std::sync::Arc<Client>> {
    realm.client(&req.client_id).ok_or_else(|| Error::page(400, "error.unknown_client"))
}

pub fn to_client_error(realm: &Realm, req: &AuthRequest, error: &str, description: &str) -> Next {
    Next::Redirect(error_redirect(&realm.issuer, &req.redirect_uri, req.state.as_deref(), error, description))
}

/// The subject identifier the client sees for a person.
pub fn subject_for(state: &AppState, realm: &Realm, client: &Client, user_id: &str) -> String {
    match client.settings.subject_type {
        SubjectType::Public => user_id.to_string(),
        SubjectType::Pairwise => {
            state.secrets.pairwise_subject(&realm.name, &client.settings.sector(&client.client_id), user_id)
        }
    }
}

/// Whether the person must (again) prove who they are for this request:
/// no session, or `prompt=login` / `max_age` not satisfied by a sign-in made
/// within this transaction.
pub fn needs_login(tx: &LoginTx, session: Option<&SsoSession>) -> bool {
    let req = &tx.request;
    match session {
        None => true,
        Some(s) => {
            let fresh = tx.fresh_session.as_deref() == Some(s.id.as_str());
            !fresh
                && (req.prompts("login")
                    || req.max_age.is_some_and(|m| now() - s.auth_time >= m)
                    || s.user_id.is_empty())
        }
    }
}

/// Whether the session is good for the request except that the portal
/// demands a stronger authentication than the session had (step-up).
pub fn needs_step_up(realm: &Realm, tx: &LoginTx, session: &SsoSession) -> bool {
    !needs_login(tx, Some(session)) && !required_authn(realm, &tx.request).met_by(&session.amr)
}

/// The recorded choice of acting as oneself.
pub const SELF: &str = "self";

/// Whether a portal may learn whom a person acts for: it is allowed scope
/// `enterprise` (whether or not this request asked for it). Only such
/// portals ask "myself or which enterprise" and get `org_*` claims.
pub fn enterprise_capable(realm: &Realm, client: &Client) -> bool {
    client.settings.scopes.iter().any(|s| s == "enterprise") && realm.settings.scopes.contains_key("enterprise")
}

/// What to do about whom the person acts as, for an enterprise-capable
/// portal.
#[derive(Debug, PartialEq, Eq)]
pub enum ActingStep {
    /// Show the choice page.
    Ask,
    /// Go on: `choice` is what the transaction carries (`self`, an
    /// enterprise's blind index, or None), `org` the enterprise acted for.
    Use { choice: Option<String>, org: Option<crate::realname::enterprise::Org> },
}

/// The rule: people with no enterprise are never asked. A choice made in
/// this transaction holds while the person may still act for it. Else
/// `prompt=none` takes the session's recorded choice or acts as oneself
/// (never an interaction); a sign-in made in this transaction, or
/// `prompt=select_account`, asks; the session's recorded choice is reused
/// silently (SSO to another portal); without one, a request with scope
/// `enterprise` asks and any other acts as oneself.
pub fn acting_step(tx: &LoginTx, s: &SsoSession, orgs: &[crate::realname::enterprise::Org]) -> ActingStep {
    let req = &tx.request;
    let find = |c: &str| orgs.iter().find(|o| o.uscc_index == c).cloned();
    let use_ = |c: &str| ActingStep::Use { choice: Some(c.to_string()), org: find(c) };
    if orgs.is_empty() {
        return ActingStep::Use { choice: None, org: None };
    }
    if let Some(c) = tx.acting.as_deref() {
        return if c == SELF || find(c).is_some() { use_(c) } else { ActingStep::Ask };
    }
    let recorded = s.acting.as_deref().filter(|c| *c == SELF || find(c).is_some());
    if req.prompts("none") {
        return use_(recorded.unwrap_or(SELF));
    }
    let fresh = tx.fresh_session.as_deref() == Some(s.id.as_str());
    if fresh || req.prompts("select_account") {
        return ActingStep::Ask;
    }
    match recorded {
        Some(c) => use_(c),
        None if super::has_scope(&req.scope, "enterprise") => ActingStep::Ask,
        None => use_(SELF),
    }
}

/// The person chose on the acting page: checked again (they must still act
/// for it), recorded on the session so SSO to another enterprise-capable
/// portal reuses it, audited; then the flow goes on. `Ok(None)`: not a
/// choice open to them (the page is shown again).
#[allow(clippy::too_many_arguments)]
pub async fn acting_chosen(
    state: &AppState,
    realm: &Realm,
    mut tx: LoginTx,
    tx_id: &str,
    token_hash: String,
    mut s: SsoSession,
    choice: &str,
    ip: Option<&str>,
) -> Result<Option<Next>> {
    let client = client_of(realm, &tx.request)?;
    if !enterprise_capable(realm, client) {
        return Err(Error::page(400, "error.expired"));
    }
    let orgs = crate::realname::enterprise::orgs_of(state, &realm.name, &s.user_id).await?;
    let org = orgs.iter().find(|o| o.uscc_index == choice);
    if choice != SELF && org.is_none() {
        return Ok(None);
    }
    session::set_acting(state, realm, &token_hash, &mut s, Some(choice)).await?;
    let detail = match org {
        Some(o) => serde_json::json!({ "session": s.id, "acting": "enterprise", "enterprise": o.uscc_index,
            "uscc": crate::identity::mask_id(&o.uscc), "role": o.role }),
        None => serde_json::json!({ "session": s.id, "acting": SELF }),
    };
    audit::record(
        state,
        audit::Event::new(&realm.name, "enterprise.acting", "success")
            .actor(&s.user_id)
            .client(&client.client_id)
            .ip(ip)
            .detail(detail),
    )
    .await;
    tx.acting = Some(choice.to_string());
    proceed(state, realm, tx, Some(tx_id), Some((token_hash, s))).await.map(Some)
}

/// Decides the next step for an accepted request. `session` is the
/// browser's live session; `tx_id` is set when resuming a transaction.
pub async fn proceed(
    state: &AppState,
    realm: &Realm,
    tx: LoginTx,
    tx_id: Option<&str>,
    session: Option<(String, SsoSession)>,
) -> Result<Next> {
    let req = &tx.request;
    let needs_login = needs_login(&tx, session.as_ref().map(|(_, s)| s));
    // Step-up: signed in, but not as strongly as this portal demands.
    let weak = session.as_ref().is_some_and(|(_, s)| !required_authn(realm, req).met_by(&s.amr));
    if needs_login || weak {
        if req.prompts("none") {
            let error = if needs_login { "login_required" } else { "interaction_required" };
            return Ok(to_client_error(realm, req, error, "the person must sign in (again)"));
        }
        let id = save_tx(state, realm, &tx, tx_id).await?;
        return Ok(Next::Login { tx: id });
    }
    let Some((token_hash, mut s)) = session else {
        return Err(Error::internal("session vanished"));
    };
    // Identity level: a session below the asked level is stepped up (L3:
    // real-name verification by the citizen), never silently accepted.
    if let Some(wanted) = wanted_level(req)
        && crate::realname::rank(&s.acr) < wanted
    {
        if wanted > 4 || (wanted == 4 && !crate::realname::face::available(state)) {
            // L5 (in person), and L4 without a face service, cannot be
            // reached in a browser.
            return Ok(to_client_error(
                realm,
                req,
                "unmet_authentication_requirements",
                "the identity level asked for cannot be reached online",
            ));
        }
        if req.prompts("none") {
            return Ok(to_client_error(realm, req, "interaction_required", "real-name verification is needed"));
        }
        let id = save_tx(state, realm, &tx, tx_id).await?;
        return Ok(Next::Verify { tx: id });
    }
    if req.client_id == ACCOUNT_CLIENT {
        if let Some(id) = tx_id {
            end_tx(state, realm, id).await?;
        }
        return Ok(Next::Redirect(account_url(realm)));
    }
    let client = client_of(realm, req)?;
    // Whom does the person act as? Only for portals allowed scope
    // `enterprise`, only of people who represent or act for an enterprise.
    let mut tx = tx;
    let mut org = None;
    if enterprise_capable(realm, client) {
        let orgs = crate::realname::enterprise::orgs_of(state, &realm.name, &s.user_id).await?;
        let recorded = s.acting.clone();
        match acting_step(&tx, &s, &orgs) {
            ActingStep::Ask => {
                let id = save_tx(state, realm, &LoginTx { acting: None, ..tx }, tx_id).await?;
                return Ok(Next::Acting { tx: id });
            }
            ActingStep::Use { choice, org: o } => {
                org = o;
                // Carried to the consent page, if there is one.
                tx.acting = choice;
            }
        }
        // A recorded enterprise the person no longer acts for (delegation
        // revoked or expired, claim ended) is forgotten: the next
        // interactive sign-in asks again.
        if let Some(r) = recorded.filter(|r| r != SELF && !orgs.iter().any(|o| &o.uscc_index == r)) {
            session::set_acting(state, realm, &token_hash, &mut s, None).await?;
            audit::record(
                state,
                audit::Event::new(&realm.name, "enterprise.acting.ended", "success")
                    .actor(&s.user_id)
                    .client(&client.client_id)
                    .detail(serde_json::json!({ "session": s.id, "enterprise": r,
                        "reason": "the person no longer represents or acts for it" })),
            )
            .await;
        }
    }
    let req = &tx.request;
    let grant = grants::active(&state.hot, &realm.name, &s.user_id, &client.client_id).await?;
    let covered = grant.as_ref().is_some_and(|g| {
        let have = super::scopes(&g.scopes);
        super::scopes(&req.scope).iter().all(|x| have.contains(x))
    });
    let needs_consent = (req.prompts("consent") && tx_id.is_none()) || (!client.settings.first_party && !covered);
    if needs_consent {
        if req.prompts("none") {
            return Ok(to_client_error(realm, req, "consent_required", "the person has not consented"));
        }
        let id = save_tx(state, realm, &tx, tx_id).await?;
        return Ok(Next::Consent { tx: id });
    }
    let url = issue_code(state, realm, client, req, &token_hash, &mut s, grant, org).await?;
    if let Some(id) = tx_id {
        end_tx(state, realm, id).await?;
    }
    Ok(Next::Redirect(url))
}

/// Records consent and issues the code.
pub async fn consent_given(
    state: &AppState,
    realm: &Realm,
    tx: &LoginTx,
    tx_id: &str,
    token_hash: &str,
    s: &mut SsoSession,
    ip: Option<&str>,
) -> Result<Next> {
    let req = &tx.request;
    let client = client_of(realm, req)?;
    let mut grant = grants::active(&state.db, &realm.name, &s.user_id, &client.client_id).await?;
    match &grant {
        Some(g) => {
            let mut have = super::scopes(&g.scopes);
            for x in super::scopes(&req.scope) {
                if !have.contains(&x) {
                    have.push(x);
                }
            }
            let joined = have.join(" ");
            grants::set_scopes(&state.db, &realm.name, &g.id, &joined).await?;
            if let Some(g) = grant.as_mut() {
                g.scopes = joined;
            }
        }
        None => grant = Some(create_grant(state, realm, client, &s.user_id, &req.scope).await?),
    }
    audit::record(
        state,
        audit::Event::new(&realm.name, "consent.given", "success")
            .actor(&s.user_id)
            .client(&client.client_id)
            .ip(ip)
            .detail(serde_json::json!({ "scope": req.scope })),
    )
    .await;
    let org = match tx.acting.as_deref() {
        Some(choice) if choice != SELF && enterprise_capable(realm, client) => {
            crate::realname::enterprise::orgs_of(state, &realm.name, &s.user_id)
                .await?
                .into_iter()
                .find(|o| o.uscc_index == choice)
        }
        _ => None,
    };
    let url = issue_code(state, realm, client, req, token_hash, s, grant, org).await?;
    end_tx(state, realm, tx_id).await?;
    Ok(Next::Redirect(url))
}

async fn create_grant(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    user_id: &str,
    scope: &str,
) -> Result<grants::GrantRecord> {
    let t = now();
    let g = grants::GrantRecord {
        id: random::token(16)?,
        realm: realm.name.clone(),
        user_id: user_id.to_string(),
        client_id: client.client_id.clone(),
        subject: subject_for(state, realm, client, user_id),
        scopes: scope.to_string(),
        created_at: t,
        updated_at: t,
        revoked_at: None,
    };
    grants::insert(&state.db, g.clone()).await?;
    Ok(g)
}

#[allow(clippy::too_many_arguments)]
async fn issue_code(
    state: &AppState,
    realm: &Realm,
    client: &Client,
    req: &AuthRequest,
    token_hash: &str,
    s: &mut SsoSession,
    grant: Option<grants::GrantRecord>,
    org: Option<crate::realname::enterprise::Org>,
) -> Result<String> {
    let grant = match grant {
        Some(g) => g,
        // First-party clients need no consent, but still a grant.
        None => create_grant(state, realm, client, &s.user_id, &req.scope).await?,
    };
    if req.code_challenge.is_none() {
        audit::record(
            state,
            audit::Event::new(&realm.name, "pkce.exempted", "success").actor(&s.user_id).client(&client.client_id),
        )
        .await;
    }
    let code = random::token(32)?;
    let data = CodeData {
        client_id: client.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scope: req.scope.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        resource: req.resource.clone(),
        ctx: AuthContext {
            user_id: s.user_id.clone(),
            subject: grant.subject.clone(),
            grant_id: grant.id.clone(),
            session_id: Some(s.id.clone()),
            auth_time: s.auth_time,
            amr: s.amr.clone(),
            acr: s.acr.clone(),
            verified: req.verified.clone(),
            org,
        },
        expires_at: now() + realm.settings.tokens.code_ttl_secs as i64,
    };
    let json = serde_json::to_string(&data).map_err(|e| Error::internal(e.to_string()))?;
    state.eph.put(&code_key(&realm.name, &code), &json, realm.settings.tokens.code_ttl_secs).await?;
    // A portal that will be issued a refresh token is recorded as taking
    // part by that token's row; only the others need the session row
    // written (an SSO round then costs the session no write).
    if !session::recorded_by_refresh_token(client) {
        session::add_client(state, realm, token_hash, s, &client.client_id).await?;
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(st) = req.state.as_deref() {
        params.push(("state", st));
    }
    params.push(("iss", realm.issuer.as_str()));
    Ok(redirect::with_params(&req.redirect_uri, &params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realname::enterprise::Org;

    fn tx(scope: &str, prompt: &[&str], fresh: bool, acting: Option<&str>) -> LoginTx {
        let request = AuthRequest {
            client_id: "p".into(),
            redirect_uri: "https://p.example/cb".into(),
            scope: scope.into(),
            state: None,
            nonce: None,
            code_challenge: None,
            prompt: prompt.iter().map(|p| p.to_string()).collect(),
            max_age: None,
            ui_locales: None,
            login_hint: None,
            acr_values: None,
            resource: None,
            verified: Default::default(),
        };
        LoginTx {
            request,
            binding: "b".into(),
            fresh_session: fresh.then(|| "s1".to_string()),
            registering: None,
            pending: None,
            recovering: None,
            acting: acting.map(str::to_string),
        }
    }

    fn session(acting: Option<&str>) -> SsoSession {
        SsoSession {
            id: "s1".into(),
            realm: "r".into(),
            user_id: "u".into(),
            auth_time: 0,
            amr: vec!["pwd".into()],
            acr: "L3".into(),
            clients: Vec::new(),
            last_seen_at: 0,
            expires_at: i64::MAX,
            ended: false,
            acting: acting.map(str::to_string),
        }
    }

    fn org() -> Org {
        Org {
            uscc_index: "E1".into(), uscc: "91350100M000100Y43".into(), name: "示例".into(), role: "经办人".into()
        }
    }

    fn uses(step: ActingStep) -> Option<String> {
        match step {
            ActingStep::Use { org, .. } => org.map(|o| o.uscc_index),
            ActingStep::Ask => panic!("asked"),
        }
    }

    #[test]
    fn who_is_asked_whom_they_act_as() {
        let orgs = [org()];
        // Nobody without an enterprise is asked.
        assert_eq!(uses(acting_step(&tx("openid enterprise", &[], true, None), &session(None), &[])), None);
        // A sign-in in this transaction asks, with or without the scope.
        assert_eq!(acting_step(&tx("openid", &[], true, None), &session(None), &orgs), ActingStep::Ask);
        assert_eq!(acting_step(&tx("openid", &[], true, None), &session(Some("E1")), &orgs), ActingStep::Ask);
        // SSO reuses the recorded choice silently.
        assert_eq!(uses(acting_step(&tx("openid", &[], false, None), &session(Some("E1")), &orgs)), Some("E1".into()));
        assert_eq!(uses(acting_step(&tx("openid enterprise", &[], false, None), &session(Some(SELF)), &orgs)), None);
        // Without a recorded choice: the scope asks, otherwise oneself.
        assert_eq!(acting_step(&tx("openid enterprise", &[], false, None), &session(None), &orgs), ActingStep::Ask);
        assert_eq!(uses(acting_step(&tx("openid", &[], false, None), &session(None), &orgs)), None);
        // select_account asks again; prompt=none never asks.
        let again = tx("openid", &["select_account"], false, None);
        assert_eq!(acting_step(&again, &session(Some("E1")), &orgs), ActingStep::Ask);
        assert_eq!(uses(acting_step(&tx("openid", &["none"], true, None), &session(None), &orgs)), None);
        let none = tx("openid enterprise", &["none"], false, None);
        assert_eq!(uses(acting_step(&none, &session(Some("E1")), &orgs)), Some("E1".into()));
        // A recorded enterprise the person no longer acts for is not used.
        assert_eq!(uses(acting_step(&tx("openid", &["none"], false, None), &session(Some("E2")), &orgs)), None);
        assert_eq!(
            acting_step(&tx("openid enterprise", &[], false, None), &session(Some("E2")), &orgs),
            ActingStep::Ask
        );
        // A choice made in this transaction holds while it is open to them.
        assert_eq!(uses(acting_step(&tx("openid", &[], true, Some("E1")), &session(None), &orgs)), Some("E1".into()));
        assert_eq!(acting_step(&tx("openid", &[], true, Some("E2")), &session(None), &orgs), ActingStep::Ask);
    }
}
