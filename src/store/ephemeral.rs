//! The ephemeral store: short-lived state with a TTL on every entry
//! (authorization codes, login transactions, assertion `jti`s, counters,
//! caches). In-process for one node; Redis when several nodes share it.
//! Single-use items are taken atomically (GETDEL), so a code cannot be
//! redeemed twice even when two nodes race for it.
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

#[derive(Debug, thiserror::Error)]
#[error("ephemeral store unavailable: {0}")]
pub struct StoreError(String);

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError(e.to_string())
    }
}

/// Suffix of the channel (under the key prefix) on which nodes announce
/// that realms, clients or keys changed.
const INVALIDATE: &str = "invalidate";

pub enum Ephemeral {
    Memory(MemoryStore),
    /// Every key is under `prefix`, so one Redis can serve several deployments.
    Redis {
        client: redis::Client,
        conn: ConnectionManager,
        prefix: String,
    },
}

impl Ephemeral {
    pub fn memory() -> Ephemeral {
        Ephemeral::Memory(MemoryStore::new())
    }

    pub async fn redis(url: &str, prefix: &str) -> Result<Ephemeral, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Ephemeral::Redis { client, conn, prefix: prefix.to_string() })
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Ephemeral::Redis { .. })
    }

    pub async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(m) => {
                m.put(key, value, ttl_secs);
                Ok(())
            }
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let _: () = c.set_ex(format!("{prefix}{key}"), value, ttl_secs.max(1)).await?;
                Ok(())
            }
        }
    }

    /// Stores `value` only when `key` is absent; true when it was stored.
    pub async fn put_new(&self, key: &str, value: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        match self {
            Ephemeral::Memory(m) => Ok(m.put_new(key, value, ttl_secs)),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let set: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(value)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_secs.max(1))
                    .query_async(&mut c)
                    .await?;
                Ok(set.is_some())
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Ephemeral::Memory(m) => Ok(m.get(key)),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                Ok(c.get(format!("{prefix}{key}")).await?)
            }
        }
    }

    /// Returns and removes the value in one step: at most one caller gets it.
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Ephemeral::Memory(m) => Ok(m.take(key)),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                Ok(redis::cmd("GETDEL").arg(format!("{prefix}{key}")).query_async(&mut c).await?)
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(m) => {
                m.take(key);
                Ok(())
            }
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let _: () = c.del(format!("{prefix}{key}")).await?;
                Ok(())
            }
        }
    }

    /// Increments a counter that lives `ttl_secs` from its first increment.
    pub async fn incr(&self, key: &str, ttl_secs: u64) -> Result<i64, StoreError> {
        match self {
            Ephemeral::Memory(m) => Ok(m.incr(key, ttl_secs)),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let k = format!("{prefix}{key}");
                let (n, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .incr(&k, 1)
                    .cmd("EXPIRE")
                    .arg(&k)
                    .arg(ttl_secs.max(1))
                    .arg("NX")
                    .query_async(&mut c)
                    .await?;
                Ok(n)
            }
        }
    }

    /// Seconds until `key` expires; None when it does not exist.
    pub async fn ttl(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Ephemeral::Memory(m) => Ok(m.ttl(key)),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let t: i64 = redis::cmd("TTL").arg(format!("{prefix}{key}")).query_async(&mut c).await?;
                Ok((t > 0).then_some(t as u64))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(_) => Ok(()),
            Ephemeral::Redis { conn, .. } => {
                let mut c = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut c).await?;
                Ok(())
            }
        }
    }

    /// Tells the other nodes that something they cache changed.
    pub async fn publish_invalidation(&self, what: &str) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(_) => Ok(()),
            Ephemeral::Redis { conn, prefix, .. } => {
                let mut c = conn.clone();
                let _: i64 = c.publish(format!("{prefix}{INVALIDATE}"), what).await?;
                Ok(())
            }
        }
    }

    /// The Redis client and invalidation channel, for a subscription.
    pub fn invalidations(&self) -> Option<(redis::Client, String)> {
        match self {
            Ephemeral::Memory(_) => None,
            Ephemeral::Redis { client, prefix, .. } => Some((client.clone(), format!("{prefix}{INVALIDATE}"))),
        }
    }

    /// Drops expired in-process entries; Redis expires its own.
    pub fn sweep(&self) {
        if let Ephemeral::Memory(m) = self {
            m.sweep();
        }
    }
}

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<String, (String, Instant)>>;

/// A sharded map with expiry; shards keep lock contention low under load.
pub struct MemoryStore {
    shards: Vec<Shard>,
    hasher: RandomState,
}

impl MemoryStore {
    fn new() -> MemoryStore {
        MemoryStore { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-update of a
        // cache entry; the map itself is still consistent.
        match self.shards.get(i).unwrap_or(&self.shards[0]).lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn put(&self, key: &str, value: &str, ttl: u64) {
        let exp = Instant::now() + Duration::from_secs(ttl.max(1));
        self.shard(key).insert(key.to_string(), (value.to_string(), exp));
    }

    fn put_new(&self, key: &str, value: &str, ttl: u64) -> bool {
        let now = Instant::now();
        let mut s = self.shard(key);
        if let Some((_, exp)) = s.get(key)
            && *exp > now
        {
            return false;
        }
        s.insert(key.to_string(), (value.to_string(), now + Duration::from_secs(ttl.max(1))));
        true
    }

    fn get(&self, key: &str) -> Option<String> {
        let s = self.shard(key);
        s.get(key).filter(|(_, exp)| *exp > Instant::now()).map(|(v, _)| v.clone())
    }

    fn ttl(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        self.shard(key).get(key).filter(|(_, exp)| *exp > now).map(|(_, exp)| exp.duration_since(now).as_secs().max(1))
    }

    fn take(&self, key: &str) -> Option<String> {
        self.shard(key).remove(key).filter(|(_, exp)| *exp > Instant::now()).map(|(v, _)| v)
    }

    fn incr(&self, key: &str, ttl: u64) -> i64 {
        let now = Instant::now();
        let mut s = self.shard(key);
        let entry = s.entry(key.to_string()).or_insert_with(|| ("0".into(), now + Duration::from_secs(ttl.max(1))));
        if entry.1 <= now {
            *entry = ("0".into(), now + Duration::from_secs(ttl.max(1)));
        }
        let n = entry.0.parse::<i64>().unwrap_or(0) + 1;
        entry.0 = n.to_string();
        n
    }

    fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut s = match shard.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            s.retain(|_, (_, exp)| *exp > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_is_single_use_and_put_new_refuses_existing() {
        let s = Ephemeral::memory();
        s.put("a", "1", 60).await.unwrap();
        assert_eq!(s.take("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(s.take("a").await.unwrap(), None);
        assert!(s.put_new("j", "x", 60).await.unwrap());
        assert!(!s.put_new("j", "y", 60).await.unwrap());
        assert_eq!(s.incr("c", 60).await.unwrap(), 1);
        assert_eq!(s.incr("c", 60).await.unwrap(), 2);
    }
}
