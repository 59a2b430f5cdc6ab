//! The deployment's secrets. The key-encryption key (KEK) comes from the
//! environment, a file, or — only on a fresh database with nothing
//! configured — is generated into `keys/`. It wraps one data key stored in
//! the database, from which the PII sealer, the pairwise-subject key and the
//! CSRF key derive; signing keys are wrapped by the KEK directly. Every node
//! therefore derives the same keys, and a node with the wrong KEK refuses to
//! start instead of writing data nobody can read.
use std::path::Path;

use crate::config::Settings;
use crate::crypto::random;
use crate::crypto::seal::{Kek, Sealer, hmac_sha256};
use crate::store::{Db, realms};

const DEK: &str = "dek";
const DEK_AAD: &[u8] = b"civid data key v1";

pub struct Secrets {
    pub kek: Kek,
    pub sealer: Sealer,
    pairwise_key: [u8; 32],
    csrf_key: [u8; 32],
}

impl Secrets {
    /// Pairwise `sub` (OIDC Core 8.1): stable for a person and a sector,
    /// unlinkable across sectors.
    pub fn pairwise_subject(&self, realm: &str, sector: &str, user_id: &str) -> String {
        let msg = format!("{realm}\0{sector}\0{user_id}");
        random::b64(&hmac_sha256(&self.pairwise_key, msg.as_bytes()))
    }

    /// CSRF token bound to the browser (its binding cookie) and the purpose.
    pub fn csrf_token(&self, binding: &str, purpose: &str) -> String {
        let msg = format!("{binding}\0{purpose}");
        random::b64(&hmac_sha256(&self.csrf_key, msg.as_bytes()))
    }

    pub fn csrf_ok(&self, binding: &str, purpose: &str, token: &str) -> bool {
        random::ct_eq(self.csrf_token(binding, purpose).as_bytes(), token.as_bytes())
    }
}

/// Where the KEK came from, for the start-up message.
pub enum KekSource {
    Configured,
    File(String),
    Generated(String),
}

pub async fn load(settings: &Settings, db: &Db) -> Result<(Secrets, KekSource), String> {
    let stored = realms::meta_get(db, DEK).await.map_err(|e| format!("reading the data key: {e}"))?;
    let has_keys =
        stored.is_some() || !realms::all_keys(db).await.map_err(|e| format!("reading signing keys: {e}"))?.is_empty();
    let (kek, source) = load_kek(settings, has_keys)?;
    let dek = match stored {
        Some(blob) => kek.unwrap(&blob, DEK_AAD).map_err(|_| wrong_kek())?,
        None => {
            let mut dek = vec![0u8; 32];
            random::fill(&mut dek).map_err(|e| e.to_string())?;
            let blob = kek.wrap(&dek, DEK_AAD).map_err(|e| e.to_string())?;
            if realms::meta_insert(db, DEK, blob).await.is_err() {
                // Another node created it first: use theirs.
                let blob = realms::meta_get(db, DEK)
                    .await
                    .map_err(|e| format!("reading the data key: {e}"))?
                    .ok_or("the data key could not be stored")?;
                dek = kek.unwrap(&blob, DEK_AAD).map_err(|_| wrong_kek())?;
            }
            dek
        }
    };
    let sealer = Sealer::new(&dek).map_err(|e| e.to_string())?;
    let secrets = Secrets {
        kek,
        sealer,
        pairwise_key: hmac_sha256(&dek, b"civid pairwise subjects v1"),
        csrf_key: hmac_sha256(&dek, b"civid csrf v1"),
    };
    Ok((secrets, source))
}

fn wrong_kek() -> String {
    "the key-encryption key cannot unwrap the keys stored in the database: this node was given a different \
     KEK than the one the database was set up with (check CIVID_KEK / CIVID_KEK_FILE / keys/kek, and \
     CIVID_KEK_PREVIOUS / CIVID_KEK_PREVIOUS_FILE during a KEK rotation); refusing to start"
        .to_string()
}

/// The previous KEK (`kek_previous` / `kek_previous_file`), during a rotation.
fn load_previous_kek(settings: &Settings) -> Result<Option<Kek>, String> {
    if !settings.kek_previous.trim().is_empty() {
        return Kek::from_b64(settings.kek_previous.trim()).map(Some).map_err(|e| format!("CIVID_KEK_PREVIOUS: {e}"));
    }
    if !settings.kek_previous_file.is_empty() {
        return read_kek_file(Path::new(&settings.kek_previous_file)).map(Some);
    }
    Ok(None)
}

fn load_kek(settings: &Settings, db_has_keys: bool) -> Result<(Kek, KekSource), String> {
    let (kek, source) = load_current_kek(settings, db_has_keys)?;
    match load_previous_kek(settings)? {
        Some(previous) => Ok((kek.with_previous(previous), source)),
        None => Ok((kek, source)),
    }
}

fn load_current_kek(settings: &Settings, db_has_keys: bool) -> Result<(Kek, KekSource), String> {
    if !settings.kek.trim().is_empty() {
        let kek = Kek::from_b64(settings.kek.trim()).map_err(|e| format!("CIVID_KEK: {e}"))?;
        return Ok((kek, KekSource::Configured));
    }
    if !settings.kek_file.is_empty() {
        return read_kek_file(Path::new(&settings.kek_file)).map(|k| (k, KekSource::File(settings.kek_file.clone())));
    }
    let path = settings.keys_dir.join("kek");
    if path.exists() {
        return read_kek_file(&path).map(|k| (k, KekSource::File(path.display().to_string())));
    }
    if db_has_keys {
        return Err(format!(
            "the database holds wrapped keys but no key-encryption key is configured: set CIVID_KEK or \
             CIVID_KEK_FILE, or restore {}",
            path.display()
        ));
    }
    let kek = Kek::generate().map_err(|e| e.to_string())?;
    write_secret_file(&path, &kek.to_b64())?;
    Ok((kek, KekSource::Generated(path.display().to_string())))
}

fn read_kek_file(path: &Path) -> Result<Kek, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading the KEK from {}: {e}", path.display()))?;
    Kek::from_b64(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_secret_file(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(format!("{content}\n").as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// What `civid keys rotate-kek` did.
#[derive(Debug, Default)]
pub struct RotateReport {
    /// Blobs that opened only with the previous KEK and are now wrapped by the current one.
    pub rewrapped: Vec<String>,
    /// Blobs already wrapped by the current KEK (left as they were).
    pub current: usize,
}

/// Re-wraps every KEK-wrapped blob in the database (the data key, every
/// realm signing key, every audit key) with the current KEK, in one
/// transaction. A blob that opens with neither the current nor the previous
/// KEK stops it before anything is written. Blobs already under the current
/// KEK are left alone, so running it again changes nothing. Sealed values
/// are under the data key, which does not change: they are not touched.
pub async fn rotate_kek(settings: &Settings, db: &Db) -> Result<RotateReport, String> {
    // Never generate a KEK here: rotating needs one configured.
    let (kek, _) = load_kek(settings, true)?;
    let txn = crate::store::begin_write(db).await.map_err(|e| format!("starting a transaction: {e}"))?;
    let mut report = RotateReport::default();
    let mut failed = Vec::new();
    let mut meta_updates = Vec::new();
    let mut key_updates = Vec::new();

    let mut rewrap = |what: String, blob: &[u8], aad: &[u8]| -> Result<Option<Vec<u8>>, String> {
        if kek.unwrap_current(blob, aad).is_ok() {
            report.current += 1;
            return Ok(None);
        }
        match kek.unwrap(blob, aad) {
            Ok(plain) => {
                let wrapped = kek.wrap(&plain, aad).map_err(|e| e.to_string())?;
                report.rewrapped.push(what);
                Ok(Some(wrapped))
            }
            Err(_) => {
                failed.push(what);
                Ok(None)
            }
        }
    };

    if let Some(blob) = realms::meta_get(&txn, DEK).await.map_err(|e| format!("reading the data key: {e}"))?
        && let Some(w) = rewrap("the data key".to_string(), &blob, DEK_AAD)?
    {
        meta_updates.push((DEK.to_string(), w));
    }
    for (name, blob) in realms::meta_with_prefix(&txn, crate::audit::checkpoint::KEY_PREFIX)
        .await
        .map_err(|e| format!("reading the audit keys: {e}"))?
    {
        let realm = name.strip_prefix(crate::audit::checkpoint::KEY_PREFIX).unwrap_or_default().to_string();
        let aad = crate::audit::checkpoint::aad(&realm);
        if let Some(w) = rewrap(format!("the audit key of realm {realm}"), &blob, &aad)? {
            meta_updates.push((name, w));
        }
    }
    for k in realms::all_keys(&txn).await.map_err(|e| format!("reading signing keys: {e}"))? {
        let aad = crate::realm::keys::aad(&k.realm, &k.kid);
        if let Some(w) = rewrap(format!("signing key {} of realm {}", k.kid, k.realm), &k.wrapped, &aad)? {
            key_updates.push((k.realm, k.kid, w));
        }
    }

    if !failed.is_empty() {
        // Dropping the transaction rolls it back; nothing was written anyway.
        return Err(format!(
            "neither the current nor the previous key-encryption key opens {}: nothing was changed (check \
             CIVID_KEK / CIVID_KEK_FILE for the new KEK and CIVID_KEK_PREVIOUS / CIVID_KEK_PREVIOUS_FILE for the \
             old one)",
            failed.join(", ")
        ));
    }
    for (name, w) in meta_updates {
        realms::meta_set(&txn, &name, w).await.map_err(|e| format!("storing {name}: {e}"))?;
    }
    for (realm, kid, w) in key_updates {
        realms::key_set_wrapped(&txn, &realm, &kid, w)
            .await
            .map_err(|e| format!("storing signing key {kid} of realm {realm}: {e}"))?;
    }
    txn.commit().await.map_err(|e| format!("committing: {e}"))?;
    Ok(report)
}
