//! Sending SMS and email. The outbox sender (development and tests) writes
//! each message as a JSON line to a file and keeps it in memory for tests to
//! read; the webhook sender posts SMS to an HTTPS gateway, signed with
//! HMAC-SHA256, with a short timeout and retries; the SMTP sender hands
//! email to a relay (lettre: plain, STARTTLS or implicit TLS, pooled
//! connections) and retries once. Logs show destinations masked, never the
//! message text (it carries codes) nor the relay's credentials.
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::crypto::random;
use crate::crypto::seal::hmac_sha256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub channel: Channel,
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
#[error("sending failed: {0}")]
pub struct SendError(String);

pub enum Sender {
    Outbox { file: PathBuf, sent: Mutex<Vec<Message>> },
    Webhook { url: String, secret: Vec<u8>, http: reqwest::Client },
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: Mailbox },
}

/// How long one SMTP attempt may take (connect, greeting, delivery).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// SMTP attempts per message: a first one, and a quick retry.
const SMTP_ATTEMPTS: u32 = 2;

impl Sender {
    pub fn outbox(dir: PathBuf) -> Sender {
        Sender::Outbox { file: dir.join("outbox.jsonl"), sent: Mutex::new(Vec::new()) }
    }

    pub fn webhook(url: String, secret: &str, http: reqwest::Client) -> Sender {
        Sender::Webhook { url, secret: secret.as_bytes().to_vec(), http }
    }

    /// An SMTP sender. `url`: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS), `smtps://host:port` (implicit TLS); credentials in the URL
    /// (percent-encoded) or as `username`/`password` (these win). Errors never
    /// repeat the URL, which may hold a password. Call (and drop the sender)
    /// inside the tokio runtime: lettre's connection pool spawns tasks.
    pub fn smtp(url: &str, username: &str, password: &str, from: &str) -> Result<Sender, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("smtp_from {from:?} is not an address: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| {
                "smtp_url: use smtp://host:port, smtp://host:port?tls=required or smtps://host:port".to_string()
            })?
            .timeout(Some(SMTP_TIMEOUT));
        if !username.is_empty() {
            builder = builder.credentials(Credentials::new(username.to_string(), password.to_string()));
        }
        Ok(Sender::Smtp { transport: builder.build(), from })
    }

    pub async fn send(&self, m: Message) -> Result<(), SendError> {
        let masked = crate::admin::mask(if m.channel == Channel::Sms { "phone" } else { "email" }, &m.to);
        match self {
            Sender::Outbox { file, sent } => {
                let line = serde_json::to_string(&m).map_err(|e| SendError(e.to_string()))?;
                append_line(file, &line).map_err(|e| SendError(format!("{}: {e}", file.display())))?;
                tracing::info!(to = masked, channel = ?m.channel, "message written to the outbox");
                match sent.lock() {
                    Ok(mut v) => v.push(m),
                    Err(p) => p.into_inner().push(m),
                }
                Ok(())
            }
            Sender::Webhook { url, secret, http } => {
                let body = serde_json::json!({ "to": m.to, "text": m.body });
                let payload = body.to_string();
                let sig = random::b64(&hmac_sha256(secret, payload.as_bytes()));
                let mut last = String::new();
                for attempt in 0..3u32 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                    }
                    let r = http
                        .post(url)
                        .header("content-type", "application/json")
                        .header("x-civid-signature", format!("hmac-sha256={sig}"))
                        .timeout(Duration::from_secs(3))
                        .body(payload.clone())
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            tracing::info!(to = masked, "SMS handed to the gateway");
                            return Ok(());
                        }
                        Ok(resp) => last = format!("gateway answered {}", resp.status()),
                        Err(e) => last = e.to_string(),
                    }
                }
                tracing::warn!(to = masked, "SMS gateway failed: {last}");
                Err(SendError(last))
            }
            Sender::Smtp { transport, from } => {
                let to: Mailbox = m.to.parse().map_err(|_| SendError("not an email address".into()))?;
                let email = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(m.subject.as_str())
                    .header(ContentType::TEXT_PLAIN)
                    .body(m.body.clone())
                    .map_err(|e| SendError(e.to_string()))?;
                let mut last = String::new();
                for attempt in 0..SMTP_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    // Bounded even if a relay accepts the connection and stalls.
                    match tokio::time::timeout(SMTP_TIMEOUT * 2, transport.send(email.clone())).await {
                        Ok(Ok(_)) => {
                            tracing::info!(to = masked, "email handed to the SMTP relay");
                            return Ok(());
                        }
                        Ok(Err(e)) => last = smtp_error(&e),
                        Err(_) => last = "the SMTP relay timed out".into(),
                    }
                }
                tracing::warn!(to = masked, "SMTP relay failed: {last}");
                Err(SendError(last))
            }
        }
    }

    /// Messages the outbox received (tests read what was "sent").
    pub fn outbox_messages(&self) -> Vec<Message> {
        match self {
            Sender::Outbox { sent, .. } => match sent.lock() {
                Ok(v) => v.clone(),
                Err(p) => p.into_inner().clone(),
            },
            Sender::Webhook { .. } | Sender::Smtp { .. } => Vec::new(),
        }
    }
}

/// What went wrong, without anything the relay echoed back (it may quote
/// the message or the login).
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let kind = if e.is_permanent() {
        "permanent error"
    } else if e.is_transient() {
        "transient error"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_tls() {
        "TLS error"
    } else {
        "connection error"
    };
    match e.status() {
        Some(code) => format!("SMTP {kind} (code {code})"),
        None => format!("SMTP {kind}"),
    }
}

fn append_line(file: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    writeln!(f, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outbox_keeps_what_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sender::outbox(dir.path().to_path_buf());
        let m = Message {
            channel: Channel::Sms,
            to: "+8613800138000".into(),
            subject: String::new(),
            body: "123456".into(),
        };
        s.send(m.clone()).await.unwrap();
        assert_eq!(s.outbox_messages(), vec![m]);
        let text = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
        assert!(text.contains("+8613800138000"));
    }

    // lettre's connection pool spawns tasks when built and dropped: a tokio
    // runtime must be running (it is, in `server::prepare`).
    #[tokio::test]
    async fn smtp_settings_are_checked_and_errors_keep_the_password_out() {
        let ok =
            Sender::smtp("smtps://civid:s3cret%40pw@smtp.example.cn", "", "", "城市统一身份认证 <noreply@example.cn>");
        assert!(matches!(ok, Ok(Sender::Smtp { .. })));
        assert!(Sender::smtp("smtp://relay.example.cn:25?tls=required", "u", "p", "noreply@example.cn").is_ok());
        let Err(bad) = Sender::smtp("imap://civid:s3cret@smtp.example.cn", "", "", "noreply@example.cn") else {
            panic!("an IMAP URL is not a relay");
        };
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!(Sender::smtp("smtp://relay.example.cn", "", "", "not an address").is_err());
    }
}
