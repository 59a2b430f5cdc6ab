//! A small W3C WebDriver client over reqwest + serde_json, for headless
//! Chromium through chromedriver, with Chromium's WebAuthn extension
//! (virtual authenticators). fantoccini and thirtyfour have no WebAuthn
//! commands, and the tests need little more than navigate, find, click, type,
//! read and screenshot.
//!
//! `CIVID_CHROMEDRIVER` and `CIVID_CHROMIUM` override the Debian paths.
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long the wait helpers poll before they give up.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// W3C's key for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The viewport, in CSS pixels: a phone.
pub const PHONE_VIEWPORT: (u32, u32) = (412, 915);
const INSTALL_HINT: &str = "install them with: apt-get install chromium chromium-driver";

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CIVID_CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CIVID_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// `target/e2e` (under `CARGO_TARGET_DIR` when set), where screenshots go.
pub fn artifacts_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest.join(dir),
        None => manifest.join("target"),
    };
    target.join("e2e")
}

/// A WebDriver error: the W3C error code and chromedriver's message.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// An element found in the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// What `add_virtual_authenticator` creates: a platform authenticator with
/// resident keys and user verification that always says yes.
pub fn platform_authenticator() -> Value {
    json!({
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": true,
        "hasUserVerification": true,
        "isUserVerified": true,
        "automaticPresenceSimulation": true,
    })
}

/// chromedriver (killed on drop) and one headless Chromium session in it.
pub struct Browser {
    http: reqwest::Client,
    driver: Child,
    port: u16,
    session: Option<String>,
    dir: PathBuf,
    shots: usize,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium the size
    /// of a phone, in Chinese. Clears earlier screenshots.
    pub async fn start() -> Browser {
        let driver_bin = chromedriver_path();
        let chromium = chromium_path();
        for (what, path) in [("chromedriver", &driver_bin), ("Chromium", &chromium)] {
            assert!(path.exists(), "{what} is not at {}: {INSTALL_HINT}", path.display());
        }
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let log_path = dir.join("chromedriver.log");
        let log = std::fs::File::create(&log_path).expect("chromedriver log");
        let port = crate::harness::free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}; {INSTALL_HINT}", driver_bin.display()));
        civid::server::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let mut browser = Browser { http, driver, port, session: None, dir, shots: 0 };

        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("chromedriver exited at once ({status}): {log}\n{INSTALL_HINT}");
            }
            let ready = browser.request(reqwest::Method::GET, "/status", None).await;
            if ready.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            tokio::time::sleep(POLL).await;
        }

        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "timeouts": { "pageLoad": 30_000, "script": 30_000, "implicit": 0 },
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--window-size=412,915",
                        "--lang=zh-CN",
                    ],
                    // Desktop Chromium keeps windows at least 500 px wide;
                    // the phone's viewport comes from mobile emulation.
                    "mobileEmulation": {
                        "deviceMetrics": { "width": PHONE_VIEWPORT.0, "height": PHONE_VIEWPORT.1, "pixelRatio": 1.0, "mobile": true, "touch": true },
                    },
                    "prefs": { "intl.accept_languages": "zh-CN,zh" },
                },
            }}
        });
        let created = browser
            .request(reqwest::Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium ({}): {e}", chromium.display()));
        let id = created["sessionId"].as_str().expect("sessionId").to_string();
        browser.session = Some(id);
        let width = browser.execute("return screen.width", vec![]).await;
        assert_eq!(width, PHONE_VIEWPORT.0, "the screen is a phone's");
        browser
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp =
            req.send().await.map_err(|e| WdError { error: "transport".into(), message: format!("{url}: {e}") })?;
        let ok = resp.status().is_success();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| WdError { error: "transport".into(), message: format!("{url}: not JSON: {e}") })?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown error").to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            })
        }
    }

    /// A command of this session; `path` starts with `/`.
    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let id = self.session.as_deref().expect("session is open");
        self.request(method, &format!("/session/{id}{path}"), body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Navigates and waits until the page (after any redirects) has loaded.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_string()
    }

    /// The layout viewport's width in CSS pixels: the phone's width on a
    /// page that declares `<meta name="viewport" content="width=device-width">`.
    pub async fn viewport_width(&self) -> i64 {
        self.execute("return window.innerWidth", vec![]).await.as_i64().unwrap_or_default()
    }

    pub async fn title(&self) -> String {
        self.get("/title").await.as_str().unwrap_or_default().to_string()
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or_default().to_string()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let q = json!({ "using": "css selector", "value": css });
        // A page that is navigating away has no elements.
        let found = self.cmd(reqwest::Method::POST, "/elements", Some(q)).await.unwrap_or(Value::Null);
        found
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT_KEY].as_str()).map(|s| Element(s.to_string())).collect())
            .unwrap_or_default()
    }

    /// The first element matching `css`, or a panic naming the page.
    pub async fn find(&self, css: &str) -> Element {
        match self.find_all(css).await.into_iter().next() {
            Some(e) => e,
            None => panic!("no element {css:?} on {}", self.current_url().await),
        }
    }

    pub async fn click(&self, el: &Element) {
        self.post(&format!("/element/{}/click", el.0), json!({})).await;
    }

    /// Clicks unless the element is gone (the page moved on meanwhile).
    pub async fn try_click(&self, el: &Element) -> bool {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/click", el.0), Some(json!({}))).await.is_ok()
    }

    /// Types into an input (appends to what it holds).
    pub async fn send_keys(&self, el: &Element, text: &str) {
        self.post(&format!("/element/{}/value", el.0), json!({ "text": text })).await;
    }

    pub async fn text(&self, el: &Element) -> String {
        self.get(&format!("/element/{}/text", el.0)).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", el.0)).await.as_str().map(str::to_string)
    }

    /// The value of a DOM property (`value`, `checked`, …).
    pub async fn property(&self, el: &Element, name: &str) -> Value {
        self.get(&format!("/element/{}/property/{name}", el.0)).await
    }

    /// Runs a script in the page; `arguments[i]` are `args`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Saves a PNG of the viewport as `NN-name.png`; returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        self.shots += 1;
        let path = self.dir.join(format!("{:02}-{name}.png", self.shots));
        self.save_screenshot(&path).await;
        path
    }

    async fn save_screenshot(&self, path: &Path) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default()).expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Polls `probe` until it gives `Some`, or panics after `TIMEOUT` saying
    /// what it waited for, where the browser is, the page and its console.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {TIMEOUT:?} waiting for {what}\n{}", self.diagnostics().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_until(&format!("element {css:?}"), || async move { self.find_all(css).await.into_iter().next() })
            .await
    }

    /// Waits until the current URL satisfies `accept`; returns it.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let accept = &accept;
        self.wait_until(&format!("URL {what}"), || async move {
            let url = self.current_url().await;
            accept(&url).then_some(url)
        })
        .await
    }

    /// Where the browser is, a failure screenshot, the page text and the
    /// console: what a failed wait reports. Never panics itself.
    pub async fn diagnostics(&self) -> String {
        let get = |path: &'static str| async move {
            match self.cmd(reqwest::Method::GET, path, None).await {
                Ok(v) => v.as_str().unwrap_or_default().to_string(),
                Err(e) => format!("({path}: {e})"),
            }
        };
        let url = get("/url").await;
        let shot = self.dir.join("failure.png");
        let png = base64::engine::general_purpose::STANDARD.decode(get("/screenshot").await);
        let saved = match png.map(|png| std::fs::write(&shot, png)) {
            Ok(Ok(())) => format!("screenshot {}", shot.display()),
            _ => "no screenshot".to_string(),
        };
        let text = match self.execute_script("return document.body ? document.body.innerText : ''").await {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) => format!("({e})"),
        };
        let console = self.console_log().await;
        format!("at {url} ({saved})\npage text:\n{text}\nconsole:\n{console}")
    }

    async fn execute_script(&self, script: &str) -> Result<Value, WdError> {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// The browser console since the last call (chromedriver's log API).
    pub async fn console_log(&self) -> String {
        match self.cmd(reqwest::Method::POST, "/se/log", Some(json!({ "type": "browser" }))).await {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| {
                    format!("{} {}", e["level"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(other) => other.to_string(),
            Err(e) => format!("(no console log: {e})"),
        }
    }

    /// WebAuthn extension: adds a virtual authenticator; returns its id.
    pub async fn add_virtual_authenticator(&self, options: Value) -> String {
        let id = self.post("/webauthn/authenticator", options).await;
        id.as_str().expect("authenticatorId").to_string()
    }

    /// WebAuthn extension: the credentials a virtual authenticator holds
    /// (`credentialId`, `isResidentCredential`, `rpId`, `userHandle`, …).
    pub async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let creds = self.get(&format!("/webauthn/authenticator/{authenticator}/credentials")).await;
        creds.as_array().cloned().unwrap_or_default()
    }

    pub async fn remove_virtual_authenticator(&self, authenticator: &str) {
        self.cmd(reqwest::Method::DELETE, &format!("/webauthn/authenticator/{authenticator}"), None)
            .await
            .unwrap_or_else(|e| panic!("remove authenticator: {e}"));
    }

    /// Ends the session (Chromium quits) and then chromedriver.
    pub async fn quit(mut self) {
        if let Some(id) = self.session.take() {
            let ended = self.request(reqwest::Method::DELETE, &format!("/session/{id}"), None).await;
            ended.unwrap_or_else(|e| panic!("delete session: {e}"));
        }
    }
}

impl Drop for Browser {
    /// After a failure: ends the session with a plain blocking request (no
    /// runtime in drop) so Chromium quits, then kills chromedriver.
    fn drop(&mut self) {
        if let Some(id) = self.session.take()
            && let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // chromedriver keeps the connection open: read the answer up
                // to its Content-Length, which comes once Chromium has quit.
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                    if http_response_complete(&got) {
                        break;
                    }
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether `got` holds a whole HTTP response with a Content-Length body.
fn http_response_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}
