//! SSO sessions: a durable row per browser sign-in, cached in the ephemeral
//! store. The browser holds a random cookie; the database holds its SHA-256,
//! so a leaked table cannot be replayed as cookies.
use serde::{Deserialize, Serialize};

use crate::crypto::random;
use crate::error::Result;
use crate::realm::cache::Realm;
use crate::state::AppState;
use crate::store::{now, sessions};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SsoSession {
    /// Also the `sid` claim: it names the session, it does not open it.
    pub id: String,
    pub realm: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    /// Portals that took part (for logout).
    pub clients: Vec<String>,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub ended: bool,
    /// Whom the person acts as, chosen at sign-in: `self`, or the blind index
    /// of an enterprise's credit code. SSO to another portal reuses it.
    #[serde(default)]
    pub acting: Option<String>,
}

/// Cached sessions are re-read from the database at least this often.
const CACHE_SECS: u64 = 60;
/// `last_seen_at` is written at most this often per session (and at most
/// every eighth of the realm's idle limit): the idle limit is kept to within
/// that, and a citizen visiting portals one after another costs the
/// database one write every few minutes, not one per visit.
const TOUCH_SECS: i64 = 300;

fn touch_every(realm: &Realm) -> i64 {
    TOUCH_SECS.min((realm.settings.session.idle_secs as i64 / 8).max(1))
}

fn cache_key(realm: &str, token_hash: &str) -> String {
    format!("sess:{realm}:{token_hash}")
}

/// The cookie name: per realm, `__Host-` over https.
pub fn cookie_name(realm: &str, https: bool) -> String {
    if https { format!("__Host-civid-{realm}") } else { format!("civid-{realm}") }
}

fn from_record(r: sessions::SessionRecord) -> SsoSession {
    SsoSession {
        amr: serde_json::from_str(&r.amr).unwrap_or_default(),
        clients: serde_json::from_str(&r.clients).unwrap_or_default(),
        id: r.id,
        realm: r.realm,
        user_id: r.user_id,
        auth_time: r.auth_time,
        acr: r.acr,
        last_seen_at: r.last_seen_at,
        expires_at: r.expires_at,
        ended: r.ended_at.is_some(),
        acting: r.acting,
    }
}

/// A new session id (the `sid` claim), chosen before the session is stored
/// so that what describes it (the audit entry) can be written alongside.
pub fn new_id() -> Result<String> {
    Ok(random::token(16)?)
}

/// A new session, not yet stored: the cookie value and the row. The caller
/// commits the row (with its audit entry, `audit::commit_with`) and then
/// calls `started`.
pub fn prepare(
    realm: &Realm,
    id: String,
    user_id: &str,
    amr: Vec<String>,
    acr: &str,
) -> Result<(String, sessions::SessionRecord)> {
    let token = random::token(32)?;
    let t = now();
    let rec = sessions::SessionRecord {
        id,
        realm: realm.name.clone(),
        user_id: user_id.to_string(),
        token_hash: random::sha256_b64(token.as_bytes()),
        auth_time: t,
        amr: serde_json::to_string(&amr).unwrap_or_else(|_| "[]".into()),
        acr: acr.to_string(),
        clients: "[]".into(),
        created_at: t,
        last_seen_at: t,
        expires_at: t + realm.settings.session.absolute_secs as i64,
        ended_at: None,
        end_reason: None,
        ip: None,
        user_agent: None,
        acting: None,
    };
    Ok((token, rec))
}

/// After the row of `prepare` is committed: caches it and returns the session.
pub async fn started(state: &AppState, rec: sessions::SessionRecord) -> SsoSession {
    let token_hash = rec.token_hash.clone();
    let realm = rec.realm.clone();
    let s = from_record(rec);
    cache(state, &realm, &token_hash, &s).await;
    s
}

/// Starts a session and stores it at once (sign-ins without an audit
/// entry of their own to share the commit with).
pub async fn create(
    state: &AppState,
    realm: &Realm,
    id: String,
    user_id: &str,
    amr: Vec<String>,
    acr: &str,
) -> Result<(String, SsoSession)> {
    let (token, rec) = prepare(realm, id, user_id, amr, acr)?;
    sessions::insert(&state.db, rec.clone()).await?;
    Ok((token, started(state, rec).await))
}

async fn cache(state: &AppState, realm: &str, token_hash: &str, s: &SsoSession) {
    if let Ok(json) = serde_json::to_string(s)
        && let Err(e) = state.eph.put(&cache_key(realm, token_hash), &json, CACHE_SECS).await
    {
        tracing::warn!("session cache write failed: {e}");
    }
}

/// The live session the browser's cookie names, if any.
pub async fn current(state: &AppState, realm: &Realm, cookie: &str) -> Result<Option<(String, SsoSession)>> {
    if cookie.is_empty() || cookie.len() > 100 {
        return Ok(None);
    }
    let token_hash = random::sha256_b64(cookie.as_bytes());
    let key = cache_key(&realm.name, &token_hash);
    // The cache is an optimisation: when it is unreachable, the database answers.
    let cached = match state.eph.get(&key).await {
        Ok(v) => v.and_then(|j| serde_json::from_str::<SsoSession>(&j).ok()),
        Err(_) => None,
    };
    let mut s = match cached {
        Some(s) => s,
        None => match sessions::by_token_hash(&state.db, &realm.name, &token_hash).await? {
            Some(r) => {
                let s = from_record(r);
                cache(state, &realm.name, &token_hash, &s).await;
                s
            }
            None => return Ok(None),
        },
    };
    let t = now();
    if s.ended || s.expires_at <= t || s.last_seen_at + realm.settings.session.idle_secs as i64 <= t {
        return Ok(None);
    }
    if t - s.last_seen_at >= touch_every(realm) {
        s.last_seen_at = t;
        sessions::touch(&state.db, &realm.name, &s.id, t).await?;
        cache(state, &realm.name, &token_hash, &s).await;
    }
    Ok(Some((token_hash, s)))
}

/// Records that a portal took part in the session.
pub async fn add_client(
    state: &AppState,
    realm: &Realm,
    token_hash: &str,
    s: &mut SsoSession,
    client_id: &str,
) -> Result<()> {
    if s.clients.iter().any(|c| c == client_id) {
        return Ok(());
    }
    // Compare-and-set on the stored list: two portals signed in to at the
    // same moment (two tabs, two nodes) both end up in it, so both are
    // told at logout. The cached list may be stale; on a miss the row is
    // read again.
    let mut base = s.clients.clone();
    for _ in 0..8 {
        if !base.iter().any(|c| c == client_id) {
            let mut next = base.clone();
            next.push(client_id.to_string());
            let (expected, new) = (json_list(&base), json_list(&next));
            if sessions::set_clients_if(&state.db, &realm.name, &s.id, expected, new, now()).await? {
                s.clients = next;
                cache(state, &realm.name, token_hash, s).await;
                return Ok(());
            }
        } else {
            s.clients = base;
            cache(state, &realm.name, token_hash, s).await;
            return Ok(());
        }
        base = match sessions::get(&state.db, &realm.name, &s.id).await? {
            Some(r) => serde_json::from_str(&r.clients).unwrap_or_default(),
            None => return Ok(()),
        };
    }
    Err(crate::error::Error::internal("the session's portals kept changing"))
}

/// Whether the portal's part in a session is recorded by the refresh token
/// it is issued at the code exchange (which names the session), so that
/// authorizing it needs no write to the session row.
pub fn recorded_by_refresh_token(client: &crate::realm::cache::Client) -> bool {
    client.settings.allows_grant("refresh_token")
}

/// The portals that took part in a session: those recorded on the session
/// row (`stored`), then those issued a refresh token in it.
pub async fn participants<C: sea_orm::ConnectionTrait>(
    db: &C,
    realm: &str,
    session_id: &str,
    stored: &[String],
) -> Result<Vec<String>> {
    let mut all = stored.to_vec();
    for c in crate::store::grants::session_clients(db, realm, session_id).await? {
        if !all.contains(&c) {
            all.push(c);
        }
    }
    Ok(all)
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Records a step-up: the session now also has `added` (e.g. `otp`, `mfa`)
/// and was authenticated now.
pub async fn step_up(
    state: &AppState,
    realm: &Realm,
    token_hash: &str,
    s: &mut SsoSession,
    added: &[String],
) -> Result<()> {
    for a in added {
        if !s.amr.contains(a) {
            s.amr.push(a.clone());
        }
    }
    s.auth_time = now();
    let amr = serde_json::to_string(&s.amr).unwrap_or_else(|_| "[]".into());
    sessions::set_authn(&state.db, &realm.name, &s.id, amr, s.auth_time).await?;
    cache(state, &realm.name, token_hash, s).await;
    Ok(())
}

/// Records whom the session acts as (or forgets it: None), on every node.
pub async fn set_acting(
    state: &AppState,
    realm: &Realm,
    token_hash: &str,
    s: &mut SsoSession,
    acting: Option<&str>,
) -> Result<()> {
    s.acting = acting.map(str::to_string);
    sessions::set_acting(&state.db, &realm.name, &s.id, acting).await?;
    cache(state, &realm.name, token_hash, s).await;
    Ok(())
}

/// Sets the `acr` of every live session of a person (a verification
/// raised their level, or the registry lowered it), on every node.
pub async fn set_level_of_user(state: &AppState, realm: &Realm, user_id: &str, acr: &str) -> Result<()> {
    for s in sessions::live_of_user(&state.db, &realm.name, user_id).await? {
        sessions::set_acr(&state.db, &realm.name, &s.id, acr).await?;
        state.eph.delete(&cache_key(&realm.name, &s.token_hash)).await?;
    }
    Ok(())
}

/// Whether a session (by id) is still live: tokens are only issued for one.
pub async fn is_live(state: &AppState, realm: &Realm, session_id: &str) -> Result<bool> {
    Ok(live(realm, sessions::get(&state.db, &realm.name, session_id).await?))
}

/// Like [`is_live`], but waits for a sign-out of this session that is being
/// committed (a shared row lock on PostgreSQL; SQLite has one writer, so a
/// write made before this read already waited for it).
pub async fn is_live_now(state: &AppState, realm: &Realm, session_id: &str) -> Result<bool> {
    Ok(live(realm, sessions::get_locked(&state.db, &realm.name, session_id).await?))
}

fn live(realm: &Realm, row: Option<sessions::SessionRecord>) -> bool {
    let t = now();
    row.is_some_and(|r| {
        r.ended_at.is_none() && r.expires_at > t && r.last_seen_at + realm.settings.session.idle_secs as i64 > t
    })
}

/// Ends one session: its row, the refresh tokens bound to it (unless issued
/// for offline access) and its cache entry, so it ends on every node at
/// once; and, in the transaction that ends the row, enqueues a back-channel
/// logout token for every portal that took part and registered a
/// `backchannel_logout_uri` (delivered by the outbox worker, so this does
/// not wait for any portal). Audited as `logout.session`. Every path that
/// ends sessions comes here. Returns whether it was live.
pub async fn end_one(state: &AppState, realm: &str, s: &sessions::SessionRecord, reason: &str) -> Result<bool> {
    let ended = crate::logout::end_and_enqueue(state, realm, &s.id, reason).await?.is_some();
    crate::store::grants::revoke_session_tokens(&state.db, realm, &s.id).await?;
    state.eph.delete(&cache_key(realm, &s.token_hash)).await?;
    Ok(ended)
}

/// Ends the session named by its id (`sid`), as `end_one` does: for callers
/// that hold an `SsoSession` rather than its row (RP-initiated logout, the
/// session list). `reason` is recorded on the row and in the audit entry
/// (e.g. `rp_initiated`, `ended_by_user`). Returns whether it was live.
pub async fn end_by_id(state: &AppState, realm: &str, session_id: &str, reason: &str) -> Result<bool> {
    match sessions::get(&state.db, realm, session_id).await? {
        Some(s) => end_one(state, realm, &s, reason).await,
        None => Ok(false),
    }
}

/// Ends every live session of a person (an operator's "end all sessions",
/// disabling the account, a password reset): on every node at once, since
/// the cache entries go too; each through `end_one`, so every portal is
/// told. Every refresh token of the person is revoked — offline ones too —
/// and their access tokens issued until now stop passing userinfo and
/// introspection (`logout::person`). Returns how many sessions ended.
pub async fn end_all(state: &AppState, realm: &str, user_id: &str, reason: &str) -> Result<usize> {
    let n = end_all_but(state, realm, user_id, None, reason).await?;
    crate::logout::person::revoke_tokens(state, realm, user_id).await?;
    Ok(n)
}

/// Like `end_all`, but keeps the session `keep` (the person's own device),
/// and keeps the person's offline refresh tokens and access tokens (only
/// what was bound to the ended sessions is revoked).
pub async fn end_all_but(
    state: &AppState,
    realm: &str,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
) -> Result<usize> {
    let live = sessions::live_of_user(&state.db, realm, user_id).await?;
    let mut n = 0;
    for s in live.iter().filter(|s| Some(s.id.as_str()) != keep) {
        if end_one(state, realm, s, reason).await? {
            n += 1;
        }
    }
    Ok(n)
}
