//! Mutual TLS to the external verification service: a stand-in service that
//! requires a client certificate from a CA made at test time (rcgen, ring);
//! civid with the certificate verifies, civid without it gets the clear
//! "unavailable" page and nothing changes; bad settings stop the node.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::harness::{TestServer, base_settings, browser, civid, fresh_database, location, node_env};
use crate::realname::{ID, account_sign_in, server_user_id, verify_in};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in a temporary directory (test-only keys, never committed).
struct Pki {
    dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    server: (Vec<u8>, Vec<u8>),
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "civid test CA (test only)");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        sp.distinguished_name.push(DnType::CommonName, "verification service (test only)");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &issuer).expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut cp = CertificateParams::new(Vec::<String>::new()).expect("params");
        cp.distinguished_name.push(DnType::CommonName, "civid node (test only)");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = cp.signed_by(&client_key, &issuer).expect("client certificate");

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write PEM");
        write("ca.pem", ca_cert.pem());
        write("client.pem", client_cert.pem());
        write("client.key", client_key.serialize_pem());
        Pki { ca_der: ca_cert.der().to_vec(), server: (server_cert.der().to_vec(), server_key.serialize_der()), dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A TLS listener that requires a client certificate from the test CA;
/// handshakes that fail are counted and dropped.
struct MtlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    refused: Arc<AtomicUsize>,
}

impl axum::serve::Listener for MtlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            match tokio::time::timeout(std::time::Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                _ => {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The stand-in verification service over mutual TLS: counts the calls it
/// answered and the handshakes it refused; answers for one known person.
async fn mtls_service(pki: &Pki) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    civid::server::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der.clone())).expect("CA root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(pki.server.0.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.clone())),
        )
        .expect("server config");
    let calls = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/check",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                // Mutual TLS alone proves the caller: no HMAC was configured.
                assert!(headers.get("x-civid-signature").is_none());
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let ok = v["id_number"] == ID && v["name"] == "王芳";
                serde_json::json!({ "match": ok }).to_string()
            }
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener =
        MtlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), refused: refused.clone() };
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, calls, refused, task)
}

#[tokio::test]
async fn the_external_verifier_over_mutual_tls_and_without_the_certificate() {
    let pki = Pki::new();
    let (port, calls, refused, _service) = mtls_service(&pki).await;
    let url = format!("https://127.0.0.1:{port}/check");

    // With the client certificate (and no HMAC key): verified.
    let server = TestServer::start_configured(|s| {
        s.verifier_url = url.clone();
        s.verifier_secret = String::new();
        s.verifier_tls_cert = pki.path("client.pem");
        s.verifier_tls_key = pki.path("client.key");
        s.verifier_tls_ca = pki.path("ca.pem");
        s.verifier_retries = 0;
    })
    .await;
    server.user("other", "chenjing", crate::realname::PW).await;
    let b = browser();
    account_sign_in(&server, &b, "other", "chenjing").await;
    let r = verify_in(&server, &b, "other", "王芳", ID).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/realms/other/account?done=verified");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    let uid = server_user_id(&server, "other", "chenjing").await;
    assert_eq!(civid::realname::level_of(&server.state, "other", &uid).await.expect("level"), "L3");
    server.stop().await;

    // The same service, civid without a client certificate (HMAC only,
    // trusting the service's CA): the handshake is refused, the citizen
    // gets the clear page, and nothing changes.
    let server = TestServer::start_configured(|s| {
        s.verifier_url = url.clone();
        s.verifier_secret = "a key the service does not even look at".into();
        s.verifier_tls_ca = pki.path("ca.pem");
        s.verifier_retries = 0;
    })
    .await;
    server.user("other", "liuyang", crate::realname::PW).await;
    let b = browser();
    account_sign_in(&server, &b, "other", "liuyang").await;
    let r = verify_in(&server, &b, "other", "王芳", ID).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.text().await.expect("html").contains("暂时不可用"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no request got through");
    assert!(refused.load(Ordering::SeqCst) >= 1, "the service refused the handshake");
    let s = &server.state;
    let uid = server_user_id(&server, "other", "liuyang").await;
    assert_eq!(civid::realname::level_of(s, "other", &uid).await.expect("level"), "L2");
    assert!(civid::store::realname::proof_of(&s.db, "other", &uid).await.expect("db").is_none());
    let day = civid::store::now() / 86_400;
    let counted = s.eph.get(&format!("rn-fail:other:user:{uid}:{day}")).await.expect("eph");
    assert_eq!(counted, None, "an unavailable service counts no failed match");
    let e = civid::store::audit::list(&s.db, "other", Some("realname.verify"), 10).await.expect("audit");
    assert!(e.iter().any(|e| e.outcome == "failure" && e.detail.contains("verifier unavailable")), "{e:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_node_without_a_way_to_reach_its_verifier_does_not_start() {
    // Realm "other" uses the http verifier: a node without one refuses.
    let (db, _dir) = fresh_database().await;
    let mut s = base_settings();
    s.database_url = db.clone();
    s.verifier_url = String::new();
    s.verifier_secret = String::new();
    let opts = civid::server::StartOptions { migrate: false, apply_realms: false, verbose: false };
    let e = civid::server::prepare(s.clone(), opts).await.err().expect("refused");
    assert!(e.contains("other") && e.contains("verifier_url"), "{e}");
    // A URL with neither an HMAC key nor a client certificate.
    s.verifier_url = "https://127.0.0.1:9/check".into();
    let opts = civid::server::StartOptions { migrate: false, apply_realms: false, verbose: false };
    let e = civid::server::prepare(s, opts).await.err().expect("refused");
    assert!(e.contains("verifier_secret") && e.contains("verifier_tls_cert"), "{e}");

    // `civid serve` with a certificate file it cannot read stops and says which.
    let pki = Pki::new();
    let missing = pki.path("no-such-cert.pem");
    let mut env = node_env(&db, None);
    env.retain(|(k, _)| k != "CIVID_VERIFIER_URL");
    env.extend([
        ("CIVID_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("CIVID_ADMIN_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("CIVID_VERIFIER_URL".to_string(), "https://127.0.0.1:9/check".to_string()),
        ("CIVID_VERIFIER_TLS_CERT".to_string(), missing.clone()),
        ("CIVID_VERIFIER_TLS_KEY".to_string(), pki.path("client.key")),
    ]);
    let (ok, _, err) = civid(&["serve"], &env, None);
    assert!(!ok, "civid serve must not start");
    assert!(err.contains(&missing) && err.contains("verifier_tls_cert"), "{err}");
    // A key that is not PEM: named too.
    let junk = pki.path("junk.key");
    std::fs::write(&junk, "not a key").expect("write");
    for (k, v) in env.iter_mut() {
        if k == "CIVID_VERIFIER_TLS_CERT" {
            *v = pki.path("client.pem");
        }
        if k == "CIVID_VERIFIER_TLS_KEY" {
            *v = junk.clone();
        }
    }
    let (ok, _, err) = civid(&["serve"], &env, None);
    assert!(!ok && err.contains(&junk) && err.contains("verifier_tls_key"), "{err}");
}
