//! Settings, read once at start: built-in defaults < `config/civid.toml` (or
//! the file given with `--config`) < `CIVID_*` environment variables, nested
//! keys joined by `__`. The defaults need no file: SQLite under `./data/`, the
//! in-process ephemeral store, a key-encryption key under `./keys/`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::proxy::{Cidr, ForwardedHeader};
use crate::store::ephemeral::RedisTarget;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address and port of the public listener.
    pub listen: SocketAddr,
    /// Address and port of the admin listener (admin API, /metrics): keep
    /// it on loopback or a management network. Empty: no admin listener.
    pub admin_listen: String,
    /// The URL citizens and portals reach civid at; issuers are
    /// `{public_url}/realms/{realm}`. Empty: `http://{listen}`.
    pub public_url: String,
    /// Reverse proxies (CIDR blocks or addresses) whose forwarded header is
    /// believed for the client address used by rate limits and the audit
    /// log. Empty (the default): every forwarded header is ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// The header those proxies write: `x-forwarded-for` or `forwarded` (RFC 7239).
    pub forwarded_header: ForwardedHeader,
    /// sea-orm URL: `sqlite://data/civid.db?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Maximum connections in the database pool.
    pub database_max_connections: u32,
    /// `redis://host:port/db`; empty: the in-process ephemeral store (one
    /// node only). Used by `redis_mode = "single"`.
    pub redis_url: String,
    /// `single` (`redis_url`), `sentinel` (`redis_urls` are the sentinels,
    /// `redis_sentinel_master` the service they watch) or `cluster`
    /// (`redis_urls` are seed nodes of a Redis Cluster).
    pub redis_mode: String,
    /// Sentinel addresses (`sentinel`) or seed nodes (`cluster`), `redis://host:port`.
    pub redis_urls: Vec<String>,
    /// The master's service name the sentinels watch (`sentinel`).
    pub redis_sentinel_master: String,
    /// Prefix of every Redis key and channel civid uses.
    pub redis_key_prefix: String,
    /// Key-encryption key, base64 (32 bytes). Prefer `kek_file` in production.
    pub kek: String,
    /// File holding the base64 key-encryption key.
    pub kek_file: String,
    /// The previous key-encryption key, base64, during a KEK rotation: blobs
    /// open with `kek`, else with this; everything new is wrapped with `kek`.
    /// Drop it once `civid keys rotate-kek` has run.
    pub kek_previous: String,
    /// File holding the previous base64 key-encryption key.
    pub kek_previous_file: String,
    /// Where a development KEK is generated when none is configured.
    pub keys_dir: PathBuf,
    /// Realm files applied at start (`civid realm apply` applies them on demand).
    pub realms_dir: PathBuf,
    /// Apply `realms_dir` when the server starts.
    pub apply_realms_on_start: bool,
    /// Run database migrations when the server starts.
    pub migrate_on_start: bool,
    /// How often (seconds) a node checks whether realms, clients or keys changed.
    pub cache_refresh_secs: u64,
    /// How SMS leave: `outbox` (a file, for development and tests) or
    /// `webhook` (an HTTPS SMS gateway).
    pub sms_sender: String,
    pub sms_webhook_url: String,
    /// Key of the HMAC-SHA256 signature on webhook requests.
    pub sms_webhook_secret: String,
    /// The external verification service of realms with
    /// `realname.verifier = "http"`: URL, HMAC-SHA256 key, timeout, retries.
    /// Requests are proven by the HMAC signature (`verifier_secret`), by a
    /// client certificate (mutual TLS, `verifier_tls_cert` + `verifier_tls_key`),
    /// or both; a URL with neither stops the node at start.
    pub verifier_url: String,
    pub verifier_secret: String,
    pub verifier_timeout_ms: u64,
    pub verifier_retries: u32,
    /// PEM file: civid's client certificate (chain, leaf first) for the verifier.
    pub verifier_tls_cert: String,
    /// PEM file: the private key of `verifier_tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub verifier_tls_key: String,
    /// PEM file: extra roots to trust for the verifier's server certificate
    /// (added to the system's).
    pub verifier_tls_ca: String,
    /// The face-verification service (L4): base URL and HMAC-SHA256 key.
    /// Empty: L4 cannot be reached online.
    pub face_url: String,
    pub face_secret: String,
    /// Mutual TLS to the face service, like `verifier_tls_*` (its own
    /// settings: the two services may belong to different operators).
    pub face_tls_cert: String,
    pub face_tls_key: String,
    pub face_tls_ca: String,
    /// Where the outbox sender writes messages.
    pub outbox_dir: PathBuf,
    /// How email leaves: `outbox` (the outbox file, for development and
    /// tests) or `smtp` (a relay, `smtp_url`).
    pub email_sender: String,
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS), `smtps://host:port` (implicit TLS); may carry
    /// percent-encoded `user:password@`. Never logged.
    pub smtp_url: String,
    /// Relay login, if not in `smtp_url` (wins over the URL's).
    pub smtp_username: String,
    /// Relay password; prefer the `CIVID_SMTP_PASSWORD` environment variable.
    pub smtp_password: String,
    /// The sender of civid's mail, `Name <address>` or `address`.
    pub smtp_from: String,
    /// Seconds between signed checkpoints of the audit chains.
    pub audit_checkpoint_secs: u64,
    /// Seconds between a node's passes over pending registry changes
    /// (deaths, new legal representatives, closed enterprises an import
    /// recorded) to apply them to accounts; 0: never (imports and
    /// `civid registry apply-changes` still do).
    pub registry_apply_secs: u64,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// How long a portal gets to answer a back-channel logout token.
    pub logout_timeout_ms: u64,
    /// Logout tokens a node delivers at the same time.
    pub logout_concurrency: usize,
    /// Seconds between runs of the job that ends sessions past their idle
    /// or absolute lifetime (and so sends their logout tokens).
    pub session_sweep_secs: u64,
    /// Seconds between housekeeping runs (0: never): dead refresh tokens,
    /// ended sessions, finished logout deliveries, applied registry changes.
    pub housekeeping_secs: u64,
    /// Days ended sessions, finished logout deliveries and applied registry
    /// changes are kept (for the account centre, operators and support).
    pub record_retention_days: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: "127.0.0.1:8081".into(),
            public_url: String::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            database_url: "sqlite://data/civid.db?mode=rwc".into(),
            database_max_connections: 16,
            redis_url: String::new(),
            redis_mode: "single".into(),
            redis_urls: Vec::new(),
            redis_sentinel_master: String::new(),
            redis_key_prefix: "civid:".into(),
            kek: String::new(),
            kek_file: String::new(),
            kek_previous: String::new(),
            kek_previous_file: String::new(),
            keys_dir: PathBuf::from("keys"),
            realms_dir: PathBuf::from("config/realms"),
            apply_realms_on_start: true,
            migrate_on_start: true,
            cache_refresh_secs: 2,
            sms_sender: "outbox".into(),
            sms_webhook_url: String::new(),
            sms_webhook_secret: String::new(),
            verifier_url: String::new(),
            verifier_secret: String::new(),
            verifier_timeout_ms: 3000,
            verifier_retries: 1,
            verifier_tls_cert: String::new(),
            verifier_tls_key: String::new(),
            verifier_tls_ca: String::new(),
            face_url: String::new(),
            face_secret: String::new(),
            face_tls_cert: String::new(),
            face_tls_key: String::new(),
            face_tls_ca: String::new(),
            outbox_dir: PathBuf::from("data/outbox"),
            email_sender: "outbox".into(),
            smtp_url: String::new(),
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_from: String::new(),
            audit_checkpoint_secs: 60,
            registry_apply_secs: 60,
            log_format: "text".into(),
            shutdown_grace_secs: 20,
            logout_timeout_ms: 3000,
            logout_concurrency: 64,
            session_sweep_secs: 60,
            housekeeping_secs: 3600,
            record_retention_days: 30,
        }
    }
}

impl Settings {
    /// Loads settings. `file` is an explicit `--config`; without it
    /// `config/civid.toml` is read when present.
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(format!("configuration file {} does not exist", path.display()));
                }
                fig = fig.merge(Toml::file(path));
            }
            None => fig = fig.merge(Toml::file("config/civid.toml")),
        }
        // Test-suite variables share the prefix; they are not settings.
        fig = fig.merge(Env::prefixed("CIVID_").split("__").filter(|k| !k.as_str().starts_with("test_")));
        let mut s: Settings = fig.extract().map_err(|e| format!("configuration: {e}"))?;
        s.public_url = s.public_url.trim_end_matches('/').to_string();
        if s.public_url.is_empty() {
            s.public_url = format!("http://{}", s.listen);
        }
        url::Url::parse(&s.public_url)
            .map_err(|e| format!("configuration: public_url {:?} is not a URL: {e}", s.public_url))?;
        Ok(s)
    }

    /// The Redis to use, from `redis_mode` and its settings; None: the
    /// in-process store. Errors name the setting at fault.
    pub fn redis_target(&self) -> Result<Option<RedisTarget>, String> {
        if self.redis_key_prefix.contains(['{', '}']) {
            return Err(format!(
                "redis_key_prefix {:?} must not contain {{ or }} (they would be read as a Cluster hash tag)",
                self.redis_key_prefix
            ));
        }
        let urls = || -> Result<Vec<String>, String> {
            let urls: Vec<String> =
                self.redis_urls.iter().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
            if urls.is_empty() {
                return Err(format!("redis_mode {:?} needs redis_urls (at least one address)", self.redis_mode));
            }
            for u in &urls {
                if !u.starts_with("redis://") && !u.starts_with("rediss://") {
                    return Err(format!("redis_urls: {:?} is not a redis:// URL", crate::server::redact(u)));
                }
            }
            if !self.redis_url.is_empty() {
                return Err(format!("redis_mode {:?} uses redis_urls; leave redis_url empty", self.redis_mode));
            }
            Ok(urls)
        };
        match self.redis_mode.as_str() {
            "single" | "" => {
                if !self.redis_urls.is_empty() {
                    return Err(
                        "redis_urls is for redis_mode \"sentinel\" or \"cluster\"; single uses redis_url".into()
                    );
                }
                Ok((!self.redis_url.is_empty()).then(|| RedisTarget::Single(self.redis_url.clone())))
            }
            "cluster" => Ok(Some(RedisTarget::Cluster(urls()?))),
            "sentinel" => {
                let sentinels = urls()?;
                if self.redis_sentinel_master.trim().is_empty() {
                    return Err(
                        "redis_mode \"sentinel\" needs redis_sentinel_master (the service name the sentinels watch)"
                            .into(),
                    );
                }
                Ok(Some(RedisTarget::Sentinel { sentinels, master: self.redis_sentinel_master.trim().to_string() }))
            }
            other => Err(format!("redis_mode {other:?}: use single, sentinel or cluster")),
        }
    }

    pub fn https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{}", self.public_url, realm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Settings)) -> Result<Option<RedisTarget>, String> {
        let mut s = Settings::default();
        f(&mut s);
        s.redis_target()
    }

    #[test]
    fn redis_modes_are_read_and_checked() {
        assert_eq!(with(|_| {}), Ok(None));
        assert_eq!(
            with(|s| s.redis_url = "redis://r:6379/0".into()),
            Ok(Some(RedisTarget::Single("redis://r:6379/0".into())))
        );
        assert_eq!(
            with(|s| {
                s.redis_mode = "cluster".into();
                s.redis_urls = vec!["redis://a:7000".into(), "redis://b:7001".into()];
            }),
            Ok(Some(RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])))
        );
        assert_eq!(
            with(|s| {
                s.redis_mode = "sentinel".into();
                s.redis_urls = vec!["redis://s1:26379".into()];
                s.redis_sentinel_master = "mymaster".into();
            }),
            Ok(Some(RedisTarget::Sentinel { sentinels: vec!["redis://s1:26379".into()], master: "mymaster".into() }))
        );
        let err = |f: fn(&mut Settings), needle: &str| {
            let e = with(f).unwrap_err();
            assert!(e.contains(needle), "{e:?} should name {needle}");
        };
        err(|s| s.redis_mode = "cluster".into(), "redis_urls");
        err(
            |s| {
                s.redis_mode = "sentinel".into();
                s.redis_urls = vec!["redis://s1:26379".into()];
            },
            "redis_sentinel_master",
        );
        err(
            |s| {
                s.redis_mode = "cluster".into();
                s.redis_urls = vec!["a:7000".into()];
            },
            "redis_urls",
        );
        err(
            |s| {
                s.redis_mode = "cluster".into();
                s.redis_urls = vec!["redis://a:7000".into()];
                s.redis_url = "redis://b:6379".into();
            },
            "redis_url",
        );
        err(|s| s.redis_mode = "sharded".into(), "redis_mode");
        err(|s| s.redis_urls = vec!["redis://a:7000".into()], "redis_urls");
        err(|s| s.redis_key_prefix = "civid{x}:".into(), "redis_key_prefix");
    }
}
