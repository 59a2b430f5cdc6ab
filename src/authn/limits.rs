//! Brute-force limits on sign-in, shared by every node through the
//! ephemeral store: per account (keyed by what was typed, so an unknown
//! account behaves exactly like a known one) and per client IP. Failures
//! lock progressively longer; the person is told when to try again.
use crate::crypto::random;
use crate::error::Result;
use crate::state::AppState;

/// Failures are counted over this window.
const WINDOW_SECS: u64 = 900;
/// Every this many failures of one account, a lock.
const ACCOUNT_STEP: i64 = 5;
/// Lock lengths for the 1st, 2nd, 3rd and later account locks.
const ACCOUNT_LOCKS: [u64; 3] = [60, 300, 900];
/// Failures from one IP (many people may share one behind carrier NAT).
const IP_LIMIT: i64 = 50;
const IP_LOCK_SECS: u64 = 900;

/// What the limits are keyed on for an attempt.
pub struct Attempt {
    realm: String,
    account: String,
    ip: Option<String>,
}

impl Attempt {
    /// `account_key` is the identifier's blind index when it parses, or a
    /// digest of what was typed otherwise.
    pub fn new(realm: &str, typed: &str, account_key: Option<String>, ip: Option<&str>) -> Attempt {
        let account = account_key.unwrap_or_else(|| random::sha256_b64(typed.trim().to_lowercase().as_bytes()));
        Attempt { realm: realm.to_string(), account, ip: ip.map(str::to_string) }
    }

    fn account_count(&self) -> String {
        format!("rl:signin:acct:{}:{}", self.realm, self.account)
    }

    fn account_lock(&self) -> String {
        format!("lock:signin:acct:{}:{}", self.realm, self.account)
    }

    fn ip_count(&self) -> Option<String> {
        self.ip.as_ref().map(|ip| format!("rl:signin:ip:{}:{ip}", self.realm))
    }

    fn ip_lock(&self) -> Option<String> {
        self.ip.as_ref().map(|ip| format!("lock:signin:ip:{}:{ip}", self.realm))
    }
}

/// Seconds until the attempt may be made, if it is locked out now.
pub async fn locked(state: &AppState, a: &Attempt) -> Result<Option<u64>> {
    let mut wait = state.eph.ttl(&a.account_lock()).await?;
    if let Some(k) = a.ip_lock()
        && let Some(t) = state.eph.ttl(&k).await?
    {
        wait = Some(wait.map_or(t, |w| w.max(t)));
    }
    Ok(wait)
}

/// Counts a failure; returns the lock it caused, if any.
pub async fn failed(state: &AppState, a: &Attempt) -> Result<Option<u64>> {
    let n = state.eph.incr(&a.account_count(), WINDOW_SECS).await?;
    let mut lock = None;
    if n % ACCOUNT_STEP == 0 {
        let idx = ((n / ACCOUNT_STEP - 1) as usize).min(ACCOUNT_LOCKS.len() - 1);
        let secs = ACCOUNT_LOCKS.get(idx).copied().unwrap_or(900);
        state.eph.put(&a.account_lock(), "1", secs).await?;
        lock = Some(secs);
    }
    if let (Some(count), Some(lock_key)) = (a.ip_count(), a.ip_lock()) {
        let n = state.eph.incr(&count, WINDOW_SECS).await?;
        if n >= IP_LIMIT {
            state.eph.put(&lock_key, "1", IP_LOCK_SECS).await?;
            lock = Some(lock.map_or(IP_LOCK_SECS, |l| l.max(IP_LOCK_SECS)));
        }
    }
    Ok(lock)
}

/// A success clears the account's count (not the IP's).
pub async fn succeeded(state: &AppState, a: &Attempt) -> Result<()> {
    state.eph.delete(&a.account_count()).await?;
    Ok(())
}
