//! Config as code: the difference between realm files and the database, and
//! applying it. What a file names is the truth for what it names; clients
//! created elsewhere (`civid client add`, the admin API) are left alone.
//! Applying twice changes nothing the second time.
use std::fmt;

use serde_json::Value;

use crate::realm::cache::format_secret_hash;
use crate::realm::file::RealmDecl;
use crate::realm::model::ClientSettings;
use crate::store::{Db, realms};

#[derive(Debug, PartialEq)]
pub enum Change {
    CreateRealm { realm: String },
    UpdateRealm { realm: String, fields: Vec<String> },
    CreateClient { realm: String, client: String },
    UpdateClient { realm: String, client: String, fields: Vec<String> },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateRealm { realm } => write!(f, "+ realm {realm}"),
            Change::UpdateRealm { realm, fields } => write!(f, "~ realm {realm}: {}", fields.join(", ")),
            Change::CreateClient { realm, client } => write!(f, "+ client {realm}/{client}"),
            Change::UpdateClient { realm, client, fields } => {
                write!(f, "~ client {realm}/{client}: {}", fields.join(", "))
            }
        }
    }
}

/// Top-level fields whose values differ between two serialised settings.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return vec!["(all)".into()];
    };
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| o.get(*k) != n.get(*k)).cloned().collect()
}

/// The stored form of a client: the secret lives in its own column.
fn stored_client(c: &ClientSettings) -> (String, Option<String>) {
    let mut c = c.clone();
    let secret = c.secret_sha256.take().and_then(|hex| {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(format_secret_hash(&d))
    });
    (serde_json::to_string(&c).unwrap_or_default(), secret)
}

/// Computes the changes; applies them in one transaction unless `dry_run`.
pub async fn apply(db: &Db, decls: &[RealmDecl], dry_run: bool) -> Result<Vec<Change>, String> {
    let txn = crate::store::begin_write(db).await.map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    for d in decls {
        let settings_json = serde_json::to_value(&d.settings).map_err(|e| e.to_string())?;
        match realms::realm_get(&txn, &d.name).await.map_err(|e| e.to_string())? {
            None => {
                changes.push(Change::CreateRealm { realm: d.name.clone() });
                if !dry_run {
                    realms::realm_insert(&txn, &d.name, settings_json.to_string()).await.map_err(|e| e.to_string())?;
                }
            }
            Some(rec) => {
                let old: Value = serde_json::from_str(&rec.settings).unwrap_or(Value::Null);
                let fields = changed_fields(&old, &settings_json);
                if !fields.is_empty() {
                    changes.push(Change::UpdateRealm { realm: d.name.clone(), fields });
                    if !dry_run {
                        realms::realm_update(&txn, &d.name, settings_json.to_string())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        for (id, c) in &d.clients {
            let (settings, secret) = stored_client(c);
            let new_json: Value = serde_json::from_str(&settings).unwrap_or(Value::Null);
            match realms::client_get(&txn, &d.name, id).await.map_err(|e| e.to_string())? {
                None => {
                    changes.push(Change::CreateClient { realm: d.name.clone(), client: id.clone() });
                    if !dry_run {
                        realms::client_insert(&txn, &d.name, id, settings, secret, c.enabled)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Some(rec) => {
                    let old: Value = serde_json::from_str(&rec.settings).unwrap_or(Value::Null);
                    let mut fields = changed_fields(&old, &new_json);
                    if secret.is_some() && secret != rec.secret_hash {
                        fields.push("secret".into());
                    }
                    if rec.enabled != c.enabled && !fields.iter().any(|f| f == "enabled") {
                        fields.push("enabled".into());
                    }
                    if !fields.is_empty() {
                        changes.push(Change::UpdateClient { realm: d.name.clone(), client: id.clone(), fields });
                        if !dry_run {
                            realms::client_update(&txn, &d.name, id, settings, secret, c.enabled)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
        }
    }
    if dry_run {
        txn.rollback().await.map_err(|e| e.to_string())?;
    } else {
        txn.commit().await.map_err(|e| e.to_string())?;
    }
    Ok(changes)
}
