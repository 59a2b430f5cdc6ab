//! Creating people and reading what portals may see of them.
use serde::{Deserialize, Serialize};

use crate::account::identifiers::Identifier;
use crate::crypto::password;
use crate::error::{Error, Result};
use crate::secrets::Secrets;
use crate::store::{Db, users};

/// Profile attributes, sealed at rest as one JSON document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn profile_aad(realm: &str, user_id: &str) -> Vec<u8> {
    format!("profile\0{realm}\0{user_id}").into_bytes()
}

/// A profile sealed for storage in the person's row.
pub fn seal_profile(secrets: &Secrets, realm: &str, user_id: &str, profile: &Profile) -> Result<Vec<u8>> {
    let json = serde_json::to_string(profile).map_err(|e| Error::internal(e.to_string()))?;
    Ok(secrets.sealer.seal(&json, &profile_aad(realm, user_id))?)
}

pub struct NewUser {
    pub identifiers: Vec<Identifier>,
    pub password: Option<String>,
    pub profile: Profile,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("an account with this {0} already exists in the realm")]
    Taken(&'static str),
    #[error("a person needs at least one identifier")]
    NoIdentifier,
    #[error(transparent)]
    Other(#[from] Error),
}

/// Creates a person with their identifiers in one transaction.
pub async fn create(db: &Db, secrets: &Secrets, realm: &str, new: NewUser) -> Result<String, CreateError> {
    if new.identifiers.is_empty() {
        return Err(CreateError::NoIdentifier);
    }
    let hash = match new.password {
        Some(pw) => Some(crate::authn::password::hashing(move || password::hash(&pw)).await?.map_err(Error::from)?),
        None => None,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let profile_json = serde_json::to_string(&new.profile).map_err(|e| Error::internal(e.to_string()))?;
    let sealed_profile = secrets.sealer.seal(&profile_json, &profile_aad(realm, &id)).map_err(Error::from)?;
    let txn = crate::store::begin_write(db).await.map_err(Error::from)?;
    for ident in &new.identifiers {
        let index = ident.blind_index(&secrets.sealer);
        if users::identifier_exists(&txn, realm, ident.kind(), &index).await.map_err(Error::from)? {
            return Err(CreateError::Taken(ident.kind()));
        }
    }
    users::insert(&txn, realm, &id, hash, Some(sealed_profile)).await.map_err(Error::from)?;
    for ident in &new.identifiers {
        let sealed = secrets.sealer.seal(ident.value(), &Identifier::aad(realm, ident.kind())).map_err(Error::from)?;
        users::insert_identifier(&txn, realm, ident.kind(), &ident.blind_index(&secrets.sealer), &id, sealed, true)
            .await
            .map_err(|_| CreateError::Taken(ident.kind()))?;
    }
    txn.commit().await.map_err(Error::from)?;
    Ok(id)
}

/// A person's attributes, unsealed, for claims.
pub struct Attributes {
    pub profile: Profile,
    pub phone: Option<(String, bool)>,
    pub email: Option<(String, bool)>,
    pub username: Option<String>,
    pub updated_at: i64,
}

pub async fn attributes(db: &Db, secrets: &Secrets, realm: &str, user_id: &str) -> Result<Option<Attributes>> {
    let Some(user) = users::get(db, realm, user_id).await? else {
        return Ok(None);
    };
    let profile = user
        .profile_sealed
        .as_deref()
        .and_then(|b| secrets.sealer.open(b, &profile_aad(realm, user_id)).ok())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let mut a = Attributes { profile, phone: None, email: None, username: None, updated_at: user.updated_at };
    for ident in users::identifiers_of(db, realm, user_id).await? {
        let Ok(value) = secrets.sealer.open(&ident.sealed, &Identifier::aad(realm, &ident.kind)) else {
            tracing::error!(realm, "a sealed identifier could not be opened");
            continue;
        };
        match ident.kind.as_str() {
            "phone" => a.phone = Some((value, ident.verified)),
            "email" => a.email = Some((value, ident.verified)),
            "username" => a.username = Some(value),
            _ => {}
        }
    }
    Ok(Some(a))
}
