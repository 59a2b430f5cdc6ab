//! One-time codes sent by SMS or email: 6 digits, 5 minutes, at most 5
//! tries, a resend no sooner than 60 s and at most 10 a day per destination,
//! compared in constant time, single-use across nodes. Codes are stored as
//! digests, keyed by the destination's blind index (never in clear).
use serde::{Deserialize, Serialize};

use crate::crypto::random;
use crate::error::{Error, Result};
use crate::state::AppState;

pub const DIGITS: usize = 6;
pub const TTL_SECS: u64 = 300;
pub const MAX_TRIES: i64 = 5;
pub const RESEND_SECS: u64 = 60;
pub const PER_DAY: i64 = 10;

#[derive(Debug, PartialEq)]
pub enum Issue {
    /// A new code; the caller sends it.
    Code(String),
    /// Too soon after the last one: wait this many seconds.
    TooSoon(u64),
    /// The day's allowance for this destination is used up.
    DailyLimit,
}

#[derive(Debug, PartialEq)]
pub enum Check {
    Valid,
    /// Wrong code; this many tries remain.
    Wrong(i64),
    /// No live code (never sent, expired, used, or tries exhausted).
    NoCode,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    digest: String,
}

/// What a code is for and where it went, as the key of its state.
pub struct Target {
    key: String,
}

impl Target {
    /// `destination_index` is the blind index of the phone or email.
    pub fn new(realm: &str, purpose: &str, destination_index: &str) -> Target {
        Target { key: format!("{realm}:{purpose}:{destination_index}") }
    }
}

fn random_code() -> Result<String> {
    let mut buf = [0u8; 8];
    random::fill(&mut buf)?;
    // 64 random bits modulo 10^6: the bias is below 2^-40.
    let n = u64::from_le_bytes(buf) % 10u64.pow(DIGITS as u32);
    Ok(format!("{n:0width$}", width = DIGITS))
}

fn day() -> String {
    chrono::Utc::now().format("%Y%m%d").to_string()
}

/// Issues a code for `t`, unless the resend or daily limits forbid it.
pub async fn issue(state: &AppState, t: &Target) -> Result<Issue> {
    let resend = format!("otp-resend:{}", t.key);
    if !state.eph.put_new(&resend, "1", RESEND_SECS).await? {
        let wait = state.eph.ttl(&resend).await?.unwrap_or(RESEND_SECS);
        return Ok(Issue::TooSoon(wait));
    }
    let sent_today = state.eph.incr(&format!("otp-day:{}:{}", t.key, day()), 86_400).await?;
    if sent_today > PER_DAY {
        return Ok(Issue::DailyLimit);
    }
    let code = random_code()?;
    let stored = serde_json::to_string(&Stored { digest: random::sha256_b64(code.as_bytes()) })
        .map_err(|e| Error::internal(e.to_string()))?;
    state.eph.put(&format!("otp:{}", t.key), &stored, TTL_SECS).await?;
    state.eph.delete(&format!("otp-tries:{}", t.key)).await?;
    Ok(Issue::Code(code))
}

/// Lifts the resend wait after a code could not be sent, so the person may
/// ask again at once (the daily allowance still counts the attempt).
pub async fn release(state: &AppState, t: &Target) -> Result<()> {
    state.eph.delete(&format!("otp-resend:{}", t.key)).await?;
    Ok(())
}

/// Checks a code. A valid one is consumed: it works once, on one node.
pub async fn check(state: &AppState, t: &Target, code: &str) -> Result<Check> {
    let key = format!("otp:{}", t.key);
    let Some(json) = state.eph.get(&key).await? else {
        return Ok(Check::NoCode);
    };
    let tries = state.eph.incr(&format!("otp-tries:{}", t.key), TTL_SECS).await?;
    if tries > MAX_TRIES {
        state.eph.delete(&key).await?;
        return Ok(Check::NoCode);
    }
    let stored: Stored = serde_json::from_str(&json).map_err(|e| Error::internal(e.to_string()))?;
    let given = code.trim();
    let ok = given.len() == DIGITS
        && random::ct_eq(random::sha256_b64(given.as_bytes()).as_bytes(), stored.digest.as_bytes());
    if !ok {
        let left = MAX_TRIES - tries;
        if left <= 0 {
            state.eph.delete(&key).await?;
        }
        return Ok(Check::Wrong(left.max(0)));
    }
    // Consume atomically: of two concurrent correct submissions one wins.
    Ok(if state.eph.take(&key).await?.is_some() { Check::Valid } else { Check::NoCode })
}

#[cfg(test)]
mod tests {
    use super::random_code;

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..1000 {
            let c = random_code().unwrap();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
