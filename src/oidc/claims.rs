//! Which claims a portal sees: the realm maps scopes to claims; the values
//! come from the person's (sealed) attributes.
use serde_json::{Map, Value, json};

use crate::account::users::Attributes;
use crate::realm::cache::Realm;

pub fn for_scopes(realm: &Realm, scope: &str, sub: &str, a: &Attributes) -> Value {
    let mut out = Map::new();
    out.insert("sub".into(), json!(sub));
    for s in super::scopes(scope) {
        let Some(mapping) = realm.settings.scopes.get(&s) else { continue };
        for claim in &mapping.claims {
            let v = match claim.as_str() {
                "name" => a.profile.name.as_ref().map(|n| json!(n)),
                "preferred_username" => a.username.as_ref().map(|u| json!(u)),
                "updated_at" => Some(json!(a.updated_at)),
                "email" => a.email.as_ref().map(|(e, _)| json!(e)),
                "email_verified" => a.email.as_ref().map(|(_, v)| json!(v)),
                "phone_number" => a.phone.as_ref().map(|(p, _)| json!(p)),
                "phone_number_verified" => a.phone.as_ref().map(|(_, v)| json!(v)),
                _ => None,
            };
            if let Some(v) = v {
                out.insert(claim.clone(), v);
            }
        }
    }
    Value::Object(out)
}

/// The verified real-name claims the realm maps to scope `realname`:
/// `name` (as the registry has it), `birthdate` and `gender` (from the ID
/// number), `id_number` (masked unless `release`).
pub fn add_realname(realm: &Realm, out: &mut Value, p: &crate::realname::Proven, release: bool) {
    let Some(mapping) = realm.settings.scopes.get("realname") else { return };
    let Some(obj) = out.as_object_mut() else { return };
    let parsed = crate::identity::ResidentId::parse(&p.id_number, chrono::Utc::now().date_naive()).ok();
    for claim in &mapping.claims {
        let v = match claim.as_str() {
            "name" => Some(json!(p.name)),
            "birthdate" => parsed.as_ref().map(|id| json!(id.birth_date().format("%Y-%m-%d").to_string())),
            "gender" => {
                parsed.as_ref().map(|id| json!(if id.sex() == crate::identity::Sex::Male { "male" } else { "female" }))
            }
            "id_number" => {
                Some(json!(if release { p.id_number.clone() } else { crate::identity::mask_id(&p.id_number) }))
            }
            _ => None,
        };
        if let Some(v) = v {
            obj.insert(claim.clone(), v);
        }
    }
}

/// Claims that can be inside `verified_claims`: what the registry check
/// verified.
pub const VERIFIED_CLAIMS: [&str; 4] = ["name", "birthdate", "gender", "id_number"];

/// `verified_claims` (OpenID Connect for Identity Assurance 1.0) with the
/// asked-for claims that were verified; `None` when none of them was.
pub fn verified_claims(
    realm: &Realm,
    client: &crate::realm::cache::Client,
    p: &crate::realname::Proven,
    asked: &[String],
) -> Option<Value> {
    let mut all = json!({});
    let release = client.settings.release_id_number;
    let parsed = crate::identity::ResidentId::parse(&p.id_number, chrono::Utc::now().date_naive()).ok();
    let obj = all.as_object_mut()?;
    for name in asked {
        let v = match name.as_str() {
            "name" => Some(json!(p.name)),
            "birthdate" => parsed.as_ref().map(|id| json!(id.birth_date().format("%Y-%m-%d").to_string())),
            "gender" => {
                parsed.as_ref().map(|id| json!(if id.sex() == crate::identity::Sex::Male { "male" } else { "female" }))
            }
            "id_number" => {
                Some(json!(if release { p.id_number.clone() } else { crate::identity::mask_id(&p.id_number) }))
            }
            _ => None,
        };
        if let Some(v) = v {
            obj.insert(name.clone(), v);
        }
    }
    if obj.is_empty() {
        return None;
    }
    let time = chrono::DateTime::from_timestamp(p.verified_at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Some(json!({
        "verification": {
            "trust_framework": realm.settings.realname.trust_framework,
            "assurance_level": p.level,
            "time": time,
            "evidence": p.evidence,
        },
        "claims": all,
    }))
}
