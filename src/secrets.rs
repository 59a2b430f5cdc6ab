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
     KEK than the one the database was set up with (check CIVID_KEK / CIVID_KEK_FILE / keys/kek); refusing to start"
        .to_string()
}

fn load_kek(settings: &Settings, db_has_keys: bool) -> Result<(Kek, KekSource), String> {
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
