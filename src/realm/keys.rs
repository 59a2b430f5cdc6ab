//! A realm's signing keys: generated per algorithm, stored wrapped by the
//! KEK, published in the JWKS before they sign (rotation lead time) and kept
//! there until every token they signed has expired.
use std::sync::Arc;

use serde_json::{Value, json};

use crate::crypto::keys::{Alg, SigningKey, generate_pkcs8};
use crate::crypto::seal::Kek;
use crate::realm::model::RealmSettings;
use crate::store::{Db, now, realms};

pub const ALGS: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

/// Associated data of a wrapped signing key.
pub fn aad(realm: &str, kid: &str) -> Vec<u8> {
    format!("civid signing key\0{realm}\0{kid}").into_bytes()
}

pub struct LoadedKey {
    pub key: Arc<SigningKey>,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
    pub expire_at: Option<i64>,
}

/// The keys of one realm as a node holds them in memory.
pub struct RealmKeys {
    keys: Vec<LoadedKey>,
}

impl RealmKeys {
    pub fn load(kek: &Kek, records: Vec<realms::KeyRecord>) -> Result<RealmKeys, String> {
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let alg: Alg = r.alg.parse().map_err(|_| format!("key {} has unknown alg {}", r.kid, r.alg))?;
            let der = kek.unwrap(&r.wrapped, &aad(&r.realm, &r.kid)).map_err(|_| {
                format!(
                    "the key-encryption key cannot unwrap signing key {} of realm {}: this node has a different KEK \
                     than the one that stored it",
                    r.kid, r.realm
                )
            })?;
            let key = SigningKey::from_pkcs8(alg, &der).map_err(|e| format!("signing key {}: {e}", r.kid))?;
            keys.push(LoadedKey {
                key: Arc::new(key),
                activate_at: r.activate_at,
                retire_at: r.retire_at,
                expire_at: r.expire_at,
            });
        }
        Ok(RealmKeys { keys })
    }

    /// The key that signs with `alg` now: the newest active one.
    pub fn signer(&self, alg: Alg, at: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(|k| k.key.alg() == alg && k.activate_at <= at && k.expire_at.is_none_or(|e| e > at))
            .max_by_key(|k| k.activate_at)
            .map(|k| &k.key)
    }

    pub fn published(&self, at: i64) -> impl Iterator<Item = &LoadedKey> {
        self.keys.iter().filter(move |k| k.expire_at.is_none_or(|e| e > at))
    }

    pub fn jwks(&self, at: i64) -> Value {
        let keys: Vec<&Value> = self.published(at).map(|k| k.key.public_jwk()).collect();
        json!({ "keys": keys })
    }

    /// The next moment at which the signer or the JWKS changes by itself.
    pub fn next_change(&self, at: i64) -> Option<i64> {
        self.keys
            .iter()
            .flat_map(|k| [Some(k.activate_at), k.retire_at, k.expire_at])
            .flatten()
            .filter(|t| *t > at)
            .min()
    }
}

async fn new_key(realm: &str, alg: Alg, kek: &Kek, activate_at: i64) -> Result<realms::KeyRecord, String> {
    // RSA generation takes a while; keep it off the async workers.
    let der = tokio::task::spawn_blocking(move || generate_pkcs8(alg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let key = SigningKey::from_pkcs8(alg, &der).map_err(|e| e.to_string())?;
    let kid = key.kid().to_string();
    let wrapped = kek.wrap(&der, &aad(realm, &kid)).map_err(|e| e.to_string())?;
    Ok(realms::KeyRecord {
        kid,
        realm: realm.to_string(),
        alg: alg.as_str().to_string(),
        wrapped,
        public_jwk: key.public_jwk().to_string(),
        created_at: now(),
        activate_at,
        retire_at: None,
        expire_at: None,
    })
}

/// Gives a realm a key for every algorithm that has none in service.
pub async fn ensure(db: &Db, kek: &Kek, realm: &str) -> Result<Vec<String>, String> {
    let existing = realms::keys_of(db, realm).await.map_err(|e| e.to_string())?;
    let t = now();
    let mut created = Vec::new();
    for alg in ALGS {
        let live = existing.iter().any(|k| k.alg == alg.as_str() && k.retire_at.is_none_or(|r| r > t));
        if !live {
            let rec = new_key(realm, alg, kek, t).await?;
            created.push(format!("{} {}", alg, rec.kid));
            realms::key_insert(db, rec).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(created)
}

/// Rotates the realm's keys of `algs`: the new key is published now and
/// signs after `lead` seconds; the old one stops signing then and leaves the
/// JWKS once the longest-lived token it could have signed has expired.
pub async fn rotate(
    db: &Db,
    kek: &Kek,
    realm: &str,
    settings: &RealmSettings,
    algs: &[Alg],
    lead: Option<u64>,
) -> Result<Vec<String>, String> {
    let t = now();
    let lead = lead.unwrap_or(settings.keys.rotation_lead_secs) as i64;
    let activate_at = t + lead;
    let token_life = settings.tokens.id_token_ttl_secs.max(settings.tokens.access_token_ttl_secs) as i64;
    let expire_at = activate_at + token_life + settings.keys.retire_margin_secs as i64;
    let existing = realms::keys_of(db, realm).await.map_err(|e| e.to_string())?;
    let mut report = Vec::new();
    for &alg in algs {
        let rec = new_key(realm, alg, kek, activate_at).await?;
        report.push(format!("{alg}: new key {} signs from {}", rec.kid, fmt_time(activate_at)));
        realms::key_insert(db, rec).await.map_err(|e| e.to_string())?;
        for old in existing.iter().filter(|k| k.alg == alg.as_str() && k.retire_at.is_none()) {
            realms::key_retire(db, realm, &old.kid, activate_at, expire_at).await.map_err(|e| e.to_string())?;
            report.push(format!("{alg}: key {} retires then, leaves the JWKS at {}", old.kid, fmt_time(expire_at)));
        }
    }
    Ok(report)
}

pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_else(|| t.to_string())
}
