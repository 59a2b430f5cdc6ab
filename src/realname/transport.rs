//! How civid reaches the external services of real-name verification (the
//! `http` verifier and the face service): one HTTPS client per service,
//! built once at start, authenticated by an HMAC-SHA256 signature on each
//! request, by a client certificate (mutual TLS), or both; and the per-node
//! circuit breaker of the verifier.
//!
//! A service configured with neither way of proving civid's requests, or
//! with a certificate, key or CA file that cannot be read or used, stops
//! the node at start with a message naming the setting and the file.
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Settings;
use crate::store::now;

/// One external service: where, how its requests are proven, the client.
pub struct Service {
    /// The URL (the verifier's check URL, the face service's base URL).
    pub url: String,
    /// HMAC-SHA256 key of the `x-civid-signature` header; empty: unsigned
    /// (mutual TLS proves the requests instead).
    secret: String,
    /// Whether a client certificate is presented.
    pub mutual_tls: bool,
    client: reqwest::Client,
}

/// The services of this node, and the verifier's circuit breaker.
#[derive(Default)]
pub struct Services {
    pub verifier: Option<Service>,
    pub face: Option<Service>,
    breaker: Breaker,
}

/// Consecutive failed calls of the verifier and until when the breaker
/// stays open: per node (per `AppState`).
#[derive(Default)]
struct Breaker {
    failures: AtomicU32,
    open_until: AtomicI64,
}

const BREAKER_AFTER: u32 = 5;
const BREAKER_SECS: i64 = 30;

impl Services {
    /// Whether the verifier's circuit is open (calls are not made).
    pub fn verifier_circuit_open(&self) -> bool {
        now() < self.breaker.open_until.load(Ordering::Relaxed)
    }

    pub fn verifier_answered(&self) {
        self.breaker.failures.store(0, Ordering::Relaxed);
    }

    /// A verification failed after its retries: after five in a row the
    /// circuit opens for 30 s.
    pub fn verifier_failed(&self) {
        if self.breaker.failures.fetch_add(1, Ordering::Relaxed) + 1 >= BREAKER_AFTER {
            self.breaker.open_until.store(now() + BREAKER_SECS, Ordering::Relaxed);
            self.breaker.failures.store(0, Ordering::Relaxed);
            tracing::warn!("verification service failing: circuit open for {BREAKER_SECS} s");
        }
    }
}

impl Service {
    /// One JSON POST, signed when the service has an HMAC key:
    /// `x-civid-timestamp` and `x-civid-signature` = hex HMAC-SHA256 of
    /// `{timestamp}.{body}`. The answer's JSON, or `None` when the call
    /// failed (connection, TLS handshake, timeout) or was refused.
    pub async fn post(&self, url: &str, body: &str, timeout_ms: u64) -> Option<serde_json::Value> {
        let mut req = self
            .client
            .post(url)
            .timeout(Duration::from_millis(timeout_ms))
            .header("content-type", "application/json")
            .body(body.to_string());
        if !self.secret.is_empty() {
            let ts = now().to_string();
            let sig = crate::crypto::seal::hmac_sha256(self.secret.as_bytes(), format!("{ts}.{body}").as_bytes());
            let sig: String = sig.iter().map(|b| format!("{b:02x}")).collect();
            req = req.header("x-civid-timestamp", ts).header("x-civid-signature", sig);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
            Ok(r) => {
                tracing::warn!(status = %r.status(), "external service refused the request");
                None
            }
            Err(e) => {
                // The error names the URL and the cause (refused, TLS
                // handshake, timeout); never a body, so no personal data.
                tracing::warn!(error = %e.without_url(), url = %redact_url(url), "external service unreachable");
                None
            }
        }
    }
}

/// A URL without query and credentials, for logs.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// The settings of one service, by their names in the configuration.
struct ServiceSettings<'a> {
    /// Prefix of the setting names: `verifier` or `face`.
    name: &'a str,
    url: &'a str,
    secret: &'a str,
    cert: &'a str,
    key: &'a str,
    ca: &'a str,
}

/// Builds the services configured in `s`; an error names the setting (and
/// the file) at fault.
pub fn build(s: &Settings) -> Result<Services, String> {
    let verifier = service(&ServiceSettings {
        name: "verifier",
        url: &s.verifier_url,
        secret: &s.verifier_secret,
        cert: &s.verifier_tls_cert,
        key: &s.verifier_tls_key,
        ca: &s.verifier_tls_ca,
    })?;
    let face = service(&ServiceSettings {
        name: "face",
        url: &s.face_url,
        secret: &s.face_secret,
        cert: &s.face_tls_cert,
        key: &s.face_tls_key,
        ca: &s.face_tls_ca,
    })?;
    Ok(Services { verifier, face, breaker: Breaker::default() })
}

fn service(c: &ServiceSettings) -> Result<Option<Service>, String> {
    let n = c.name;
    let tls_set = !c.cert.is_empty() || !c.key.is_empty() || !c.ca.is_empty();
    if c.url.is_empty() {
        if tls_set || !c.secret.is_empty() {
            return Err(format!(
                "{n}_url is empty, but {n}_secret or {n}_tls_* is set: set {n}_url too, or remove them"
            ));
        }
        return Ok(None);
    }
    let url = url::Url::parse(c.url).map_err(|e| format!("{n}_url {:?} is not a URL: {e}", c.url))?;
    if c.cert.is_empty() != c.key.is_empty() {
        return Err(format!("{n}_tls_cert and {n}_tls_key go together: set both (PEM certificate chain and its key)"));
    }
    let mutual_tls = !c.cert.is_empty();
    if !mutual_tls && c.secret.is_empty() {
        return Err(format!(
            "{n}_url is set, but neither {n}_secret (HMAC-SHA256 signing) nor {n}_tls_cert and {n}_tls_key \
             (mutual TLS) is: the service could not tell civid's requests from anyone's. Set one, or both"
        ));
    }
    if tls_set && url.scheme() != "https" {
        return Err(format!("{n}_tls_* is set, but {n}_url is not an https:// URL"));
    }
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none());
    if !c.ca.is_empty() {
        let roots = certificates(&format!("{n}_tls_ca"), c.ca)?;
        let mut certs = Vec::new();
        for der in roots {
            certs.push(
                reqwest::Certificate::from_der(&der)
                    .map_err(|e| format!("{n}_tls_ca {}: not a usable certificate: {e}", c.ca))?,
            );
        }
        builder = builder.tls_certs_merge(certs);
    }
    if mutual_tls {
        builder = builder.identity(identity(n, c.cert, c.key)?);
    }
    let client = builder.build().map_err(|e| format!("{n}: TLS client: {e}"))?;
    Ok(Some(Service { url: c.url.to_string(), secret: c.secret.to_string(), mutual_tls, client }))
}

fn read(setting: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(Path::new(path)).map_err(|e| format!("{setting} {path}: cannot read the file: {e}"))
}

/// Every certificate of a PEM file (at least one).
fn certificates(setting: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(setting, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{setting} {path}: not valid PEM: {e:?}"))?;
    if certs.is_empty() {
        return Err(format!("{setting} {path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file"));
    }
    Ok(certs)
}

/// The client certificate chain and its key, checked to belong together,
/// as the PEM reqwest takes.
fn identity(n: &str, cert_path: &str, key_path: &str) -> Result<reqwest::Identity, String> {
    let certs = certificates(&format!("{n}_tls_cert"), cert_path)?;
    let key_setting = format!("{n}_tls_key");
    let key_pem = read(&key_setting, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!("{key_setting} {key_path}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1) in the file: {e:?}")
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(|e| {
        format!("{key_setting} {key_path}: cannot be used with the certificate in {n}_tls_cert {cert_path}: {e}")
    })?;
    // Re-encoded from what was parsed, so that extra sections of the files
    // (EC parameters, comments) do not trouble reqwest's reader.
    let mut pem = String::new();
    for c in &certs {
        pem.push_str(&pem_block("CERTIFICATE", c.as_ref()));
    }
    let (label, der): (&str, &[u8]) = match &key {
        PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
        _ => return Err(format!("{key_setting} {key_path}: unsupported private key type")),
    };
    pem.push_str(&pem_block(label, der));
    reqwest::Identity::from_pem(pem.as_bytes())
        .map_err(|e| format!("{n}_tls_cert {cert_path} / {key_setting} {key_path}: {e}"))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(f: impl FnOnce(&mut Settings)) -> Settings {
        crate::server::install_crypto_provider();
        let mut s = Settings::default();
        f(&mut s);
        s
    }

    fn err(s: Settings) -> String {
        match build(&s) {
            Ok(_) => String::from("built"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_service_needs_a_way_to_prove_its_requests() {
        assert!(build(&settings(|_| {})).expect("nothing configured").verifier.is_none());
        let e = err(settings(|s| s.verifier_url = "https://v.example.test/check".into()));
        assert!(e.contains("verifier_secret") && e.contains("verifier_tls_cert"), "{e}");
        let e = err(settings(|s| s.face_url = "https://f.example.test".into()));
        assert!(e.contains("face_secret") && e.contains("face_tls_cert"), "{e}");
        let ok = build(&settings(|s| {
            s.verifier_url = "http://127.0.0.1:9/check".into();
            s.verifier_secret = "k".into();
        }))
        .expect("HMAC only");
        assert!(ok.verifier.is_some_and(|v| !v.mutual_tls));
        let e = err(settings(|s| {
            s.verifier_url = "https://v.example.test/check".into();
            s.verifier_tls_cert = "/x/cert.pem".into();
        }));
        assert!(e.contains("go together"), "{e}");
        let e = err(settings(|s| {
            s.verifier_url = "http://v.example.test/check".into();
            s.verifier_tls_cert = "/x/cert.pem".into();
            s.verifier_tls_key = "/x/key.pem".into();
        }));
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn unreadable_or_invalid_pem_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem").display().to_string();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let junk = junk.display().to_string();
        let e = err(settings(|s| {
            s.verifier_url = "https://v.example.test/check".into();
            s.verifier_tls_cert = missing.clone();
            s.verifier_tls_key = missing.clone();
        }));
        assert!(e.contains(&missing) && e.contains("verifier_tls_cert"), "{e}");
        let e = err(settings(|s| {
            s.face_url = "https://f.example.test".into();
            s.face_secret = "k".into();
            s.face_tls_ca = junk.clone();
        }));
        assert!(e.contains(&junk) && e.contains("face_tls_ca"), "{e}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example.test".into()]).expect("cert");
        let other = rcgen::generate_simple_self_signed(vec!["other.example.test".into()]).expect("cert");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ca.cert.pem()).expect("write");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").expect("write");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let with = |k: &str| {
            let k = k.to_string();
            let c = cert.clone();
            settings(move |s| {
                s.verifier_url = "https://v.example.test/check".into();
                s.verifier_tls_cert = c;
                s.verifier_tls_key = k;
            })
        };
        let e = err(with(&key));
        assert!(e.contains(&key) && e.contains("verifier_tls_key"), "{e}");
        let wrong = dir.path().join("wrong.pem");
        std::fs::write(&wrong, other.signing_key.serialize_pem()).expect("write");
        let e = err(with(&wrong.display().to_string()));
        assert!(e.contains("cannot be used with the certificate"), "{e}");
        let right = dir.path().join("right.pem");
        std::fs::write(&right, ca.signing_key.serialize_pem()).expect("write");
        let built = build(&with(&right.display().to_string())).expect("a matching certificate and key");
        assert!(built.verifier.is_some_and(|v| v.mutual_tls && v.secret.is_empty()));
    }
}
