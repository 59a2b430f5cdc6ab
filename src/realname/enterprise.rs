//! Enterprises (legal persons): the legal representative, signed in at L3,
//! claims the enterprise — credit code and name checked against the
//! legal-person registry, and the representative's proven ID number must be
//! the registry's — then appoints agents (经办人: L3 citizens) with a role
//! and an expiry, and can revoke them. Signing in to a portal allowed scope
//! `enterprise`, the person chooses themselves or an enterprise they act
//! for (`oidc::flow::acting_step`); tokens then carry `org_uscc`,
//! `org_name`, `org_role` next to `sub`, checked again at every issuance.
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Event};
use crate::crypto::random;
use crate::error::Result;
use crate::identity::Uscc;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{enterprises as store, now, realname as proofs};

use super::verifier::registry_aad;

/// The role of the legal representative in tokens.
pub const REPRESENTATIVE: &str = "legal_representative";

fn uscc_index(state: &AppState, uscc: &str) -> String {
    state.secrets.sealer.blind_index(crate::registry::USCC_INDEX, uscc)
}

fn aad(realm: &str, index: &str, what: &str) -> Vec<u8> {
    format!("enterprises\0{realm}\0{index}\0{what}").into_bytes()
}

/// An enterprise a person may act for, as tokens name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub uscc_index: String,
    pub uscc: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    Claimed,
    /// The person is not real-name verified (L3).
    NotVerified,
    /// Credit code and name are not in the registry together, or it is closed.
    NoMatch,
    /// The registry names someone else as legal representative.
    NotRepresentative,
}

pub async fn claim(
    state: &AppState,
    realm: &Realm,
    user_id: &str,
    uscc: &Uscc,
    name: &str,
    ip: Option<&str>,
) -> Result<Claimed> {
    let r = realm.name.as_str();
    let index = uscc_index(state, uscc.as_str());
    let ev = |outcome: &'static str, reason: &str| {
        Event::new(r, "enterprise.claim", outcome).actor(user_id).ip(ip).detail(json!({
            "uscc": crate::identity::mask_id(uscc.as_str()), "result": reason,
        }))
    };
    let Some(proof) = proofs::proof_of(&state.db, r, user_id).await?.filter(|p| super::rank(&p.level) >= 3) else {
        audit::record(state, ev("failure", "not verified")).await;
        return Ok(Claimed::NotVerified);
    };
    let Some(row) = store::registry_row(&state.db, &index).await? else {
        audit::record(state, ev("failure", "not in the registry")).await;
        return Ok(Claimed::NoMatch);
    };
    let known =
        state.secrets.sealer.open(&row.name_sealed, &registry_aad("registry_enterprises", "name_sealed", &index))?;
    let same = |a: &str| a.split_whitespace().collect::<String>().replace(['（', '）'], "()");
    if row.status != "active" || !random::ct_eq(same(&known).as_bytes(), same(name).as_bytes()) {
        audit::record(state, ev("failure", "name or status does not match")).await;
        return Ok(Claimed::NoMatch);
    }
    if !random::ct_eq(row.rep_index.as_bytes(), proof.id_index.as_bytes()) {
        audit::record(state, ev("failure", "not the legal representative")).await;
        return Ok(Claimed::NotRepresentative);
    }
    let previous = store::get(&state.db, r, &index).await?;
    store::upsert(
        &state.db,
        store::EnterpriseRecord {
            realm: r.to_string(),
            uscc_index: index.clone(),
            uscc_sealed: state.secrets.sealer.seal(uscc.as_str(), &aad(r, &index, "uscc"))?,
            name_sealed: state.secrets.sealer.seal(&known, &aad(r, &index, "name"))?,
            rep_user_id: user_id.to_string(),
            claimed_at: now(),
        },
    )
    .await?;
    // A new representative: the former one's appointments end.
    if previous.is_some_and(|p| p.rep_user_id != user_id) {
        store::revoke(&state.db, r, &index, None, now()).await?;
    }
    audit::record(state, ev("success", "claimed")).await;
    Ok(Claimed::Claimed)
}

/// The credit code and name of a claimed enterprise, unsealed.
pub fn opened(state: &AppState, e: &store::EnterpriseRecord) -> Result<(String, String)> {
    Ok((
        state.secrets.sealer.open(&e.uscc_sealed, &aad(&e.realm, &e.uscc_index, "uscc"))?,
        state.secrets.sealer.open(&e.name_sealed, &aad(&e.realm, &e.uscc_index, "name"))?,
    ))
}

/// The blind index of a credit code (how enterprises are keyed).
pub fn index_of(state: &AppState, uscc: &Uscc) -> String {
    uscc_index(state, uscc.as_str())
}

/// The enterprises a person represents or acts for now.
pub async fn orgs_of(state: &AppState, realm: &str, user_id: &str) -> Result<Vec<Org>> {
    let mut out = Vec::new();
    let open = |e: &store::EnterpriseRecord| opened(state, e);
    for e in store::represented_by(&state.db, realm, user_id).await? {
        let (uscc, name) = open(&e)?;
        out.push(Org { uscc_index: e.uscc_index, uscc, name, role: REPRESENTATIVE.into() });
    }
    for d in store::delegations_of(&state.db, realm, user_id, now()).await? {
        if let Some(e) = store::get(&state.db, realm, &d.uscc_index).await? {
            let (uscc, name) = open(&e)?;
            out.push(Org { uscc_index: e.uscc_index, uscc, name, role: d.role });
        }
    }
    Ok(out)
}

/// The enterprise a person acted for, if they still may act for it now
/// (checked again at every issuance: a revoked or expired delegation or an
/// ended claim gives no `org_*` claims). As it stands now (name, role).
pub async fn still_acting(state: &AppState, realm: &str, user_id: &str, org: &Org) -> Result<Option<Org>> {
    Ok(orgs_of(state, realm, user_id).await?.into_iter().find(|o| o.uscc_index == org.uscc_index))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Appointed {
    Appointed(String),
    /// The appointing person does not represent that enterprise.
    NotRepresentative,
    /// No L3 account with that identifier.
    NoSuchAgent,
}

/// The representative appoints an agent (found by their sign-in
/// identifier) with a role, for `days`.
#[allow(clippy::too_many_arguments)]
pub async fn appoint(
    state: &AppState,
    realm: &str,
    rep_user_id: &str,
    uscc_index: &str,
    agent: &crate::account::identifiers::Identifier,
    role: &str,
    days: u32,
    ip: Option<&str>,
) -> Result<Appointed> {
    if store::get(&state.db, realm, uscc_index).await?.is_none_or(|e| e.rep_user_id != rep_user_id) {
        return Ok(Appointed::NotRepresentative);
    }
    let index = agent.blind_index(&state.secrets.sealer);
    let Some(user) = crate::store::users::find_by_identifier(&state.db, realm, agent.kind(), &index).await? else {
        return Ok(Appointed::NoSuchAgent);
    };
    if super::rank(&super::level_of(state, realm, &user.id).await?) < 3 {
        return Ok(Appointed::NoSuchAgent);
    }
    let id = random::token(12)?;
    let t = now();
    store::insert_delegation(
        &state.db,
        store::DelegationRecord {
            id: id.clone(),
            realm: realm.to_string(),
            uscc_index: uscc_index.to_string(),
            user_id: user.id.clone(),
            role: role.chars().take(40).collect(),
            expires_at: t + i64::from(days.clamp(1, 3 * 365)) * 86_400,
            created_by: rep_user_id.to_string(),
            created_at: t,
            revoked_at: None,
        },
    )
    .await?;
    audit::record(
        state,
        Event::new(realm, "enterprise.delegation.created", "success")
            .actor(rep_user_id)
            .ip(ip)
            .detail(json!({ "delegation": id, "agent": user.id, "role": role, "days": days })),
    )
    .await;
    Ok(Appointed::Appointed(id))
}

/// The representative revokes one of the enterprise's delegations.
pub async fn revoke(
    state: &AppState,
    realm: &str,
    rep_user_id: &str,
    uscc_index: &str,
    delegation_id: &str,
    ip: Option<&str>,
) -> Result<bool> {
    if store::get(&state.db, realm, uscc_index).await?.is_none_or(|e| e.rep_user_id != rep_user_id) {
        return Ok(false);
    }
    let n = store::revoke(&state.db, realm, uscc_index, Some(delegation_id), now()).await?;
    if n > 0 {
        audit::record(
            state,
            Event::new(realm, "enterprise.delegation.revoked", "success")
                .actor(rep_user_id)
                .ip(ip)
                .detail(json!({ "delegation": delegation_id })),
        )
        .await;
    }
    Ok(n > 0)
}

/// The legal-person registry changed: an enterprise has a new legal
/// representative, or was revoked or cancelled. Its claim ends (the new
/// representative claims it anew), its delegations are revoked, and the
/// sessions of the former representative and the agents end, on every
/// node; audited. Returns how many claims ended. (Imports record their
/// changes and apply them through [`crate::registry::changes`], which calls
/// [`registry_changed_one`].)
pub async fn registry_changed(state: &AppState, indexes: &[String]) -> Result<usize> {
    let mut n = 0;
    let t = now();
    for index in indexes {
        n += registry_changed_one(state, index, t, None).await?.claims_ended as usize;
    }
    Ok(n)
}

/// One enterprise (blind index) changed in the registry at `since`: the
/// claims made until then end (a claim made later was checked against the
/// changed registry and stays). Idempotent like
/// [`super::registry_deceased_one`]: the sessions of the representative and
/// the agents end first (again is harmless), then the claim's end, the
/// revoked delegations and the audit entry commit together, only if that
/// claim is still there. With `change`, the change is marked applied in the
/// transaction of the last claim ended.
pub async fn registry_changed_one(
    state: &AppState,
    index: &str,
    since: i64,
    change: Option<&crate::store::registry::ChangeRecord>,
) -> Result<crate::registry::changes::Effects> {
    use crate::authn::session::end_all;
    let mut fx = crate::registry::changes::Effects::default();
    let claims: Vec<_> =
        store::by_index(&state.db, index).await?.into_iter().filter(|e| e.claimed_at <= since).collect();
    let last = claims.len().saturating_sub(1);
    for (i, e) in claims.iter().enumerate() {
        let agents = store::delegations_for(&state.db, &e.realm, index, now()).await?;
        let mut ended = end_all(state, &e.realm, &e.rep_user_id, "registry_changed").await?;
        for a in &agents {
            ended += end_all(state, &e.realm, &a.user_id, "registry_changed").await?;
        }
        let mark = change.filter(|_| i == last).map(|c| c.id);
        let (realm, idx, rep, claimed_at) = (e.realm.clone(), index.to_string(), e.rep_user_id.clone(), e.claimed_at);
        let end: audit::Change = Box::new(move |txn| {
            Box::pin(async move {
                if store::end_claim(txn, &realm, &idx, &rep, claimed_at, now()).await?.is_none() {
                    return Err(sea_orm::DbErr::RecordNotUpdated);
                }
                if let Some(id) = mark {
                    crate::store::registry::changes_mark_applied(txn, &[id], now()).await?;
                }
                Ok(())
            })
        });
        let mut detail = json!({
            "reason": "registry: representative changed or enterprise closed",
            "delegations_revoked": agents.len(), "sessions_ended": ended,
        });
        if let Some(c) = change {
            detail["registry_change"] = json!(c.id);
            detail["import"] = json!(c.import_id);
            detail["change"] = json!(c.kind);
        }
        let event = Event::new(&e.realm, "enterprise.claim_ended", "success").actor(&e.rep_user_id).detail(detail);
        if audit::commit_with(state, event, end).await {
            fx.claims_ended += 1;
            fx.delegations_revoked += agents.len() as u64;
            fx.marked |= mark.is_some();
        } else if store::get(&state.db, &e.realm, index)
            .await?
            .is_some_and(|cur| cur.rep_user_id == e.rep_user_id && cur.claimed_at == e.claimed_at)
        {
            // Not ended elsewhere meanwhile: the database refused it.
            return Err(crate::error::Error::Db(sea_orm::DbErr::Custom(
                "ending the claim and its audit entry could not be committed".into(),
            )));
        }
        fx.sessions_ended += ended as u64;
    }
    Ok(fx)
}
