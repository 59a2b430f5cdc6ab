//! Signed checkpoints of every chain head of a realm. A checkpoint pins the
//! chains: an entry edited, deleted or cut off before it is detected, and
//! retention may delete entries up to a checkpoint without breaking
//! verification (the checkpoint becomes the chains' anchor).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::jws;
use crate::crypto::keys::{Alg, SigningKey, generate_pkcs8};
use crate::crypto::seal::Kek;
use crate::store::{Db, audit as table, now, realms};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub realm: String,
    pub at: i64,
    pub heads: BTreeMap<String, Head>,
}

/// Prefix of the `meta` rows holding the realms' wrapped audit keys.
pub const KEY_PREFIX: &str = "audit-key:";

fn key_name(realm: &str) -> String {
    format!("{KEY_PREFIX}{realm}")
}

/// Associated data of a realm's wrapped audit key.
pub fn aad(realm: &str) -> Vec<u8> {
    format!("civid audit key\0{realm}").into_bytes()
}

/// The realm's audit key (ES256), created on first use.
pub async fn audit_key(db: &Db, kek: &Kek, realm: &str, create: bool) -> Result<Option<SigningKey>, String> {
    let blob = match realms::meta_get(db, &key_name(realm)).await.map_err(|e| e.to_string())? {
        Some(b) => b,
        None if create => {
            let der = generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
            let wrapped = kek.wrap(&der, &aad(realm)).map_err(|e| e.to_string())?;
            // Another node may have created it first: theirs wins.
            let _ = realms::meta_insert(db, &key_name(realm), wrapped).await;
            realms::meta_get(db, &key_name(realm)).await.map_err(|e| e.to_string())?.ok_or("audit key not stored")?
        }
        None => return Ok(None),
    };
    let der =
        kek.unwrap(&blob, &aad(realm)).map_err(|_| format!("the KEK cannot unwrap the audit key of realm {realm}"))?;
    SigningKey::from_pkcs8(Alg::ES256, &der).map(Some).map_err(|e| e.to_string())
}

/// The current heads of every chain of the realm.
pub async fn heads(db: &Db, realm: &str) -> Result<BTreeMap<String, Head>, String> {
    let mut out = BTreeMap::new();
    for (chain, seq) in table::chain_heads(db, realm).await.map_err(|e| e.to_string())? {
        if let Some(e) = table::entry(db, realm, &chain, seq).await.map_err(|e| e.to_string())? {
            out.insert(chain, Head { seq, hash: e.hash });
        }
    }
    Ok(out)
}

/// Signs and stores a checkpoint of the realm's chain heads, unless nothing
/// changed since the last one. Returns whether one was written.
pub async fn write(db: &Db, kek: &Kek, realm: &str) -> Result<bool, String> {
    let heads = heads(db, realm).await?;
    if heads.is_empty() {
        return Ok(false);
    }
    if let Some(last) = table::last_checkpoint(db, realm).await.map_err(|e| e.to_string())?
        && serde_json::from_str::<BTreeMap<String, Head>>(&last.heads).is_ok_and(|h| h == heads)
    {
        return Ok(false);
    }
    let key = audit_key(db, kek, realm, true).await?.ok_or("no audit key")?;
    let payload = Payload { realm: realm.to_string(), at: now(), heads };
    let claims = serde_json::to_value(&payload).map_err(|e| e.to_string())?;
    let signature = jws::sign_jwt(&key, Some("audit-checkpoint+jwt"), &claims).map_err(|e| e.to_string())?;
    let heads_json = serde_json::to_string(&payload.heads).map_err(|e| e.to_string())?;
    table::insert_checkpoint(db, realm, payload.at, heads_json, signature).await.map_err(|e| e.to_string())?;
    Ok(true)
}
