//! What a node holds in memory per realm: settings, clients, keys, and the
//! discovery and JWKS documents, prebuilt. Rebuilt only when the realm's
//! generation changes in the database (polled every few seconds, and at once
//! when another node announces a change through Redis) or when a key's
//! scheduled activation or expiry passes.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::config::Settings;
use crate::crypto::seal::Kek;
use crate::realm::keys::RealmKeys;
use crate::realm::model::{ClientSettings, RealmSettings};
use crate::store::{Db, now, realms};

pub struct Client {
    pub client_id: String,
    pub settings: ClientSettings,
    /// SHA-256 of the secret, when the client has one.
    pub secret_sha256: Option<[u8; 32]>,
    pub enabled: bool,
}

pub struct Realm {
    pub name: String,
    pub issuer: String,
    pub settings: RealmSettings,
    pub clients: HashMap<String, Arc<Client>>,
    pub keys: RealmKeys,
    pub generation: i64,
    pub discovery: Bytes,
    pub jwks: Bytes,
    /// The published public keys, for verifying our own tokens.
    pub public_jwks: Vec<serde_json::Value>,
    /// When the keys change by themselves (activation, expiry).
    pub next_change: Option<i64>,
}

impl Realm {
    pub fn client(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id).filter(|c| c.enabled)
    }

    /// The access-token audience when a request names no resource.
    pub fn default_audience(&self) -> &str {
        if self.settings.default_audience.is_empty() { &self.issuer } else { &self.settings.default_audience }
    }
}

#[derive(Default)]
pub struct RealmCache {
    realms: RwLock<HashMap<String, Arc<Realm>>>,
}

impl RealmCache {
    pub fn get(&self, name: &str) -> Option<Arc<Realm>> {
        match self.realms.read() {
            Ok(m) => m.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        match self.realms.read() {
            Ok(m) => m.keys().cloned().collect(),
            Err(p) => p.into_inner().keys().cloned().collect(),
        }
    }

    fn put(&self, realm: Realm) {
        let mut m = match self.realms.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.insert(realm.name.clone(), Arc::new(realm));
    }

    fn remove(&self, name: &str) {
        let mut m = match self.realms.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.remove(name);
    }

    /// Reloads every realm whose generation changed or whose keys reached a
    /// scheduled change. Returns the names reloaded.
    pub async fn refresh(&self, settings: &Settings, db: &Db, kek: &Kek) -> Result<Vec<String>, String> {
        let gens = realms::realm_generations(db).await.map_err(|e| e.to_string())?;
        let t = now();
        let mut reloaded = Vec::new();
        for (name, generation) in &gens {
            let stale = match self.get(name) {
                None => true,
                Some(r) => r.generation != *generation || r.next_change.is_some_and(|c| c <= t),
            };
            if stale {
                let realm = load(settings, db, kek, name).await?;
                if let Some(realm) = realm {
                    self.put(realm);
                    reloaded.push(name.clone());
                }
            }
        }
        for name in self.names() {
            if !gens.iter().any(|(n, _)| *n == name) {
                self.remove(&name);
            }
        }
        Ok(reloaded)
    }
}

async fn load(settings: &Settings, db: &Db, kek: &Kek, name: &str) -> Result<Option<Realm>, String> {
    let Some(rec) = realms::realm_get(db, name).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let realm_settings: RealmSettings =
        serde_json::from_str(&rec.settings).map_err(|e| format!("realm {name}: stored settings: {e}"))?;
    let mut clients = HashMap::new();
    for c in realms::clients_of(db, name).await.map_err(|e| e.to_string())? {
        let cs: ClientSettings = match serde_json::from_str(&c.settings) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::error!(realm = name, client = c.client_id, "stored client settings unreadable: {e}");
                continue;
            }
        };
        let secret_sha256 = c.secret_hash.as_deref().and_then(parse_secret_hash);
        clients.insert(
            c.client_id.clone(),
            Arc::new(Client { client_id: c.client_id, settings: cs, secret_sha256, enabled: c.enabled }),
        );
    }
    let keys = RealmKeys::load(kek, realms::keys_of(db, name).await.map_err(|e| e.to_string())?)?;
    let issuer = settings.issuer(name);
    let t = now();
    let discovery = crate::oidc::discovery::document(&issuer, &realm_settings, !settings.face_url.is_empty());
    let jwks = keys.jwks(t);
    Ok(Some(Realm {
        name: name.to_string(),
        next_change: keys.next_change(t),
        issuer,
        settings: realm_settings,
        clients,
        generation: rec.generation,
        discovery: Bytes::from(discovery.to_string()),
        public_jwks: jwks.get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default(),
        jwks: Bytes::from(jwks.to_string()),
        keys,
    }))
}

/// Stored secret hashes are `sha256:<hex>`.
pub fn parse_secret_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn format_secret_hash(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
