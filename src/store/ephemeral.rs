//! The ephemeral store: short-lived state with a TTL on every entry
//! (authorization codes, login transactions, assertion `jti`s, counters,
//! caches). In-process for one node; Redis when several nodes share it.
//! Single-use items are taken atomically (GETDEL), so a code cannot be
//! redeemed twice even when two nodes race for it.
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, FromRedisValue};

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

/// Increments a counter and gives it a lifetime on its first increment, in
/// one step (one key: valid in every mode, Cluster included).
const INCR_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
    if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
    return n";

const TIMEOUT: Duration = Duration::from_secs(2);

/// Retries of a lost connection's re-establishment (single mode).
const RECONNECT_RETRIES: usize = 1;

/// Retries of a command in Cluster mode (50–500 ms apart).
const CLUSTER_RETRIES: u32 = 3;

/// How civid reaches Redis (`redis_mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a proxy in front of several): `redis_url`.
    Single(String),
    /// Sentinels watching the master `master`: `redis_urls` + `redis_sentinel_master`.
    Sentinel { sentinels: Vec<String>, master: String },
    /// Seed nodes of a Redis Cluster: `redis_urls`.
    Cluster(Vec<String>),
}

pub enum Ephemeral {
    Memory(MemoryStore),
    /// Every key is under `prefix`, so one Redis can serve several deployments.
    Redis {
        backend: Backend,
        prefix: String,
    },
}

/// The Redis connection of each mode. Every operation is one command on
/// one key, so each works unchanged on a Cluster.
pub enum Backend {
    Single { client: redis::Client, conn: ConnectionManager },
    Cluster { seeds: Vec<redis::Client>, conn: ClusterConnection },
    Sentinel(Arc<SentinelConn>),
}

/// A connection to the master the sentinels name, asked again after an
/// error (the master may have failed over).
pub struct SentinelConn {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl SentinelConn {
    async fn master(&self) -> redis::RedisResult<redis::Client> {
        self.sentinel.lock().await.async_get_client().await
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut held = self.conn.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let c = self.master().await?.get_multiplexed_async_connection_with_config(&config).await?;
        *held = Some(c.clone());
        Ok(c)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        let mut c = self.connection().await?;
        let r = cmd.query_async(&mut c).await;
        if let Err(e) = &r
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            // The master went away or was demoted: ask the sentinels again.
            *self.conn.lock().await = None;
        }
        r
    }
}

/// Where a node subscribes to invalidations; `connect` again after a drop.
pub struct Subscriber {
    source: SubscribeSource,
    pub channel: String,
    turn: usize,
}

enum SubscribeSource {
    Clients(Vec<redis::Client>),
    Sentinel(Arc<SentinelConn>),
}

impl Subscriber {
    /// A pub/sub connection: the server (single), the current master
    /// (Sentinel; replicas receive what it publishes too), or the seed
    /// nodes in turn (Cluster: classic PUBLISH reaches every node).
    pub async fn connect(&mut self) -> redis::RedisResult<redis::aio::PubSub> {
        let client = match &self.source {
            SubscribeSource::Clients(cs) => {
                self.turn = self.turn.wrapping_add(1);
                cs[self.turn % cs.len()].clone()
            }
            SubscribeSource::Sentinel(s) => s.master().await?,
        };
        client.get_async_pubsub().await
    }
}

/// Suffixes of keys that belong to another key (the used-marker of an
/// authorization code): on a Cluster they share its slot.
const COMPANIONS: &[&str] = &[":used"];

/// The key Redis stores for `key`. On a Cluster the logical key is the hash
/// tag, `prefix{kind:realm:id}`, and a companion key keeps its owner's tag,
/// `prefix{code:realm:hash}:used`, so what belongs together shares a slot.
/// Every operation is one command on one key, so no command ever spans
/// slots. Single and Sentinel keep the plain `prefix` + key.
pub fn redis_key(prefix: &str, key: &str, cluster: bool) -> String {
    if !cluster {
        return format!("{prefix}{key}");
    }
    for suffix in COMPANIONS {
        if let Some(owner) = key.strip_suffix(suffix)
            && !owner.is_empty()
        {
            return format!("{prefix}{{{owner}}}{suffix}");
        }
    }
    format!("{prefix}{{{key}}}")
}

impl Ephemeral {
    pub fn memory() -> Ephemeral {
        Ephemeral::Memory(MemoryStore::new())
    }

    pub async fn redis(target: &RedisTarget, prefix: &str) -> Result<Ephemeral, StoreError> {
        let backend = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                // A lost connection is re-established on the next command,
                // which waits for that attempt: one retry, not the default
                // six with backoff (~10 s), so while Redis is away requests
                // get their 503 at once, and the first after its return
                // reconnects without waiting out a backoff.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(RECONNECT_RETRIES);
                let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
                Backend::Single { client, conn }
            }
            RedisTarget::Cluster(urls) => {
                let seeds = urls.iter().map(|u| redis::Client::open(u.as_str())).collect::<Result<Vec<_>, _>>()?;
                // A few quick retries (a MOVED slot, a master being
                // replaced), not the client's default 16 waiting at least
                // 1.28 s each: while a master is away requests get their
                // 503 and Retry-After within about two seconds instead of
                // piling up for half a minute.
                let client = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Backend::Cluster { seeds, conn }
            }
            RedisTarget::Sentinel { sentinels, master } => {
                let client = SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master.clone(),
                    None,
                    SentinelServerType::Master,
                )?;
                let s = SentinelConn { sentinel: tokio::sync::Mutex::new(client), conn: Default::default() };
                // Fail at start when no sentinel knows the master.
                s.connection().await?;
                Backend::Sentinel(Arc::new(s))
            }
        };
        Ok(Ephemeral::Redis { backend, prefix: prefix.to_string() })
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Ephemeral::Redis { .. })
    }

    /// The Redis key of `key` and the backend, or the in-process store.
    fn target(&self, key: &str) -> Result<(&Backend, String), &MemoryStore> {
        // Every keyed operation is one command, in Redis and in process.
        crate::metrics::ephemeral_command();
        match self {
            Ephemeral::Memory(m) => Err(m),
            Ephemeral::Redis { backend, prefix } => {
                Ok((backend, redis_key(prefix, key, matches!(backend, Backend::Cluster { .. }))))
            }
        }
    }

    pub async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        match self.target(key) {
            Err(m) => {
                m.put(key, value, ttl_secs);
                Ok(())
            }
            Ok((b, k)) => {
                let _: () = b.query(redis::cmd("SET").arg(k).arg(value).arg("EX").arg(ttl_secs.max(1))).await?;
                Ok(())
            }
        }
    }

    /// Stores `value` only when `key` is absent; true when it was stored.
    pub async fn put_new(&self, key: &str, value: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        match self.target(key) {
            Err(m) => Ok(m.put_new(key, value, ttl_secs)),
            Ok((b, k)) => {
                let set: Option<String> =
                    b.query(redis::cmd("SET").arg(k).arg(value).arg("NX").arg("EX").arg(ttl_secs.max(1))).await?;
                Ok(set.is_some())
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.target(key) {
            Err(m) => Ok(m.get(key)),
            Ok((b, k)) => Ok(b.query(redis::cmd("GET").arg(k)).await?),
        }
    }

    /// Returns and removes the value in one step: at most one caller gets it.
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.target(key) {
            Err(m) => Ok(m.take(key)),
            Ok((b, k)) => Ok(b.query(redis::cmd("GETDEL").arg(k)).await?),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.target(key) {
            Err(m) => {
                m.take(key);
                Ok(())
            }
            Ok((b, k)) => {
                let _: i64 = b.query(redis::cmd("DEL").arg(k)).await?;
                Ok(())
            }
        }
    }

    /// Increments a counter that lives `ttl_secs` from its first increment.
    pub async fn incr(&self, key: &str, ttl_secs: u64) -> Result<i64, StoreError> {
        match self.target(key) {
            Err(m) => Ok(m.incr(key, ttl_secs)),
            Ok((b, k)) => Ok(b.query(redis::cmd("EVAL").arg(INCR_SCRIPT).arg(1).arg(k).arg(ttl_secs.max(1))).await?),
        }
    }

    /// Seconds until `key` expires; None when it does not exist.
    pub async fn ttl(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.target(key) {
            Err(m) => Ok(m.ttl(key)),
            Ok((b, k)) => {
                let t: i64 = b.query(redis::cmd("TTL").arg(k)).await?;
                Ok((t > 0).then_some(t as u64))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(_) => Ok(()),
            Ephemeral::Redis { backend, .. } => {
                let _: String = backend.query(&redis::cmd("PING")).await?;
                Ok(())
            }
        }
    }

    /// Tells the other nodes that something they cache changed.
    pub async fn publish_invalidation(&self, what: &str) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(_) => Ok(()),
            Ephemeral::Redis { backend, prefix } => {
                let _: i64 =
                    backend.query(redis::cmd("PUBLISH").arg(format!("{prefix}{INVALIDATE}")).arg(what)).await?;
                Ok(())
            }
        }
    }

    /// Where to subscribe to the invalidation channel.
    pub fn invalidations(&self) -> Option<Subscriber> {
        match self {
            Ephemeral::Memory(_) => None,
            Ephemeral::Redis { backend, prefix } => Some(Subscriber {
                source: match backend {
                    Backend::Single { client, .. } => SubscribeSource::Clients(vec![client.clone()]),
                    Backend::Cluster { seeds, .. } => SubscribeSource::Clients(seeds.clone()),
                    Backend::Sentinel(s) => SubscribeSource::Sentinel(s.clone()),
                },
                channel: format!("{prefix}{INVALIDATE}"),
                turn: 0,
            }),
        }
    }

    /// Drops expired in-process entries; Redis expires its own.
    pub fn sweep(&self) {
        if let Ephemeral::Memory(m) = self {
            m.sweep();
        }
    }
}

impl Backend {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Backend::Single { conn, .. } => cmd.query_async(&mut conn.clone()).await,
            Backend::Cluster { conn, .. } => cmd.query_async(&mut conn.clone()).await,
            Backend::Sentinel(s) => s.query(cmd).await,
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

    /// The slot Redis Cluster computes: CRC16 (XMODEM) of the hash tag, or
    /// of the whole key without one, modulo 16384.
    fn slot(key: &str) -> u16 {
        let k = key.as_bytes();
        let hashed = match key.find('{') {
            Some(i) => match key[i + 1..].find('}') {
                Some(j) if j > 0 => &k[i + 1..i + 1 + j],
                _ => k,
            },
            None => k,
        };
        let mut crc: u16 = 0;
        for b in hashed {
            crc ^= (*b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            }
        }
        crc % 16384
    }

    #[test]
    fn cluster_keys_are_hash_tagged_and_companions_share_the_slot() {
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(redis_key("civid:", "code:r:abc", false), "civid:code:r:abc");
        assert_eq!(redis_key("civid:", "code:r:abc:used", false), "civid:code:r:abc:used");
        let code = redis_key("civid:", "code:r:abc", true);
        let used = redis_key("civid:", "code:r:abc:used", true);
        assert_eq!(code, "civid:{code:r:abc}");
        assert_eq!(used, "civid:{code:r:abc}:used");
        assert_eq!(slot(&code), slot(&used));
        // Unrelated keys still spread over the slots.
        let slots: std::collections::BTreeSet<u16> =
            (0..50).map(|i| slot(&redis_key("civid:", &format!("code:r:{i}"), true))).collect();
        assert!(slots.len() > 40);
    }

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
