//! The store in Redis: a bucket is the key prefix `NAME:`, reached through
//! a few multiplexed connections, each made when first needed and made
//! again after it breaks, so a Redis that restarts is used again without
//! restarting the host.
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, RedisError};

use super::{KeyPage, StoreError};
use crate::base::backoff::Backoff;

/// Keys `list-keys` asks SCAN for at once (SCAN's `COUNT`, a hint).
const SCAN_COUNT: usize = 1000;

/// The host's Redis: the client and its pool of connections.
#[derive(Debug)]
pub struct RedisStore {
    client: redis::Client,
    /// One connection per slot; each thread uses one slot, so each reactor
    /// worker pipelines on a connection of its own.
    slots: Box<[Slot]>,
    /// The longest a call may take, connecting included.
    timeout: Duration,
}

#[derive(Debug, Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    connection: Option<MultiplexedConnection>,
    /// After a failed connect, calls fail at once until then.
    retry_at: Option<Instant>,
    last_error: String,
    backoff: Backoff,
}

/// Which slot this thread uses; threads take slots in turn.
fn slot_of_thread(slots: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    let taken = SLOT.with(|slot| match slot.get() {
        Some(taken) => taken,
        None => {
            let taken = NEXT.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(taken));
            taken
        }
    });
    taken % slots
}

impl RedisStore {
    /// A store at `url` through `connections` connections (at least one),
    /// each call bounded by `timeout`. Connects nothing yet.
    pub fn new(url: &str, connections: usize, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let slots = (0..connections.max(1)).map(|_| Slot::default()).collect();
        Ok(RedisStore { client, slots, timeout })
    }

    /// Where the Redis is, for the log.
    pub fn address(&self) -> String {
        let info = self.client.get_connection_info();
        format!("{} (database {})", info.addr(), info.redis_settings().db())
    }

    /// Runs `command` on this thread's connection, connecting first if it
    /// has none; a connection that fails is dropped, to be made again.
    async fn run<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StoreError> {
        let slot = &self.slots[slot_of_thread(self.slots.len())];
        let call = async {
            let mut connection = self.connection(slot).await?;
            match command.query_async::<T>(&mut connection).await {
                Ok(reply) => Ok(reply),
                Err(error) => Err(self.failed(slot, error).await),
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                slot.state.lock().await.connection = None;
                Err(StoreError::Unavailable(format!("no reply from Redis within {:?}", self.timeout)))
            }
        }
    }

    /// The slot's connection, made now if it has none and the last attempt
    /// was not too recent.
    async fn connection(&self, slot: &Slot) -> Result<MultiplexedConnection, StoreError> {
        let mut state = slot.state.lock().await;
        if let Some(connection) = &state.connection {
            return Ok(connection.clone());
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(StoreError::Unavailable(state.last_error.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match self.client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(connection) => {
                tracing::info!(redis = %self.address(), "connected to the store");
                state.connection = Some(connection.clone());
                state.retry_at = None;
                state.backoff.reset();
                Ok(connection)
            }
            Err(error) => {
                state.last_error = format!("cannot connect to Redis at {}: {error}", self.address());
                if state.retry_at.is_none() {
                    tracing::warn!("{}", state.last_error);
                }
                state.retry_at = Some(Instant::now() + state.backoff.next());
                Err(StoreError::Unavailable(state.last_error.clone()))
            }
        }
    }

    /// What a failed call means: Redis's own refusals keep the connection;
    /// anything else drops it.
    async fn failed(&self, slot: &Slot, error: RedisError) -> StoreError {
        if matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
            let text = error.to_string();
            return if text.contains("not an integer") {
                StoreError::NotAnInteger
            } else if text.contains("overflow") {
                StoreError::Overflow
            } else {
                StoreError::Unavailable(format!("Redis refused: {text}"))
            };
        }
        tracing::warn!(redis = %self.address(), %error, "lost the store's connection");
        slot.state.lock().await.connection = None;
        StoreError::Unavailable(format!("Redis at {}: {error}", self.address()))
    }
}

/// A bucket in Redis: its keys are `NAME:KEY`.
#[derive(Debug, Clone)]
pub struct RedisBucket {
    store: Arc<RedisStore>,
    prefix: String,
}

impl RedisBucket {
    pub(super) fn new(store: Arc<RedisStore>, name: &str) -> Self {
        RedisBucket { store, prefix: format!("{name}:") }
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    fn keys(&self, keys: &[String]) -> Vec<String> {
        keys.iter().map(|key| self.key(key)).collect()
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.run(redis::cmd("GET").arg(self.key(key))).await
    }

    pub(super) async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.store.run(redis::cmd("SET").arg(self.key(key)).arg(value)).await
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.run::<i64>(redis::cmd("DEL").arg(self.key(key))).await.map(drop)
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.store.run::<i64>(redis::cmd("EXISTS").arg(self.key(key))).await.map(|n| n > 0)
    }

    /// A SCAN page of the bucket's keys; keys that are not UTF-8 (written
    /// by something else) cannot be named by a guest and are left out.
    pub(super) async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, StoreError> {
        let command = redis::cmd("SCAN")
            .arg(cursor.unwrap_or(0))
            .arg("MATCH")
            .arg(format!("{}*", self.prefix))
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .to_owned();
        let (next, keys): (u64, Vec<Vec<u8>>) = self.store.run(&command).await?;
        let keys = keys
            .into_iter()
            .filter_map(|key| String::from_utf8(key.strip_prefix(self.prefix.as_bytes())?.to_vec()).ok())
            .collect();
        Ok(KeyPage { keys, cursor: (next != 0).then_some(next) })
    }

    pub(super) async fn increment(&self, key: &str, delta: u64) -> Result<u64, StoreError> {
        let new: i64 = self.store.run(redis::cmd("INCRBY").arg(self.key(key)).arg(delta as i64)).await?;
        Ok(new as u64)
    }

    /// MGET of each key once (so Redis's reply is at most what it holds),
    /// copied out to every place a key was named, within `max_bytes`.
    pub(super) async fn get_many(&self, keys: &[String], max_bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut distinct: Vec<&String> = keys.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let full: Vec<String> = distinct.iter().map(|key| self.key(key)).collect();
        let values: Vec<Option<Vec<u8>>> = self.store.run(redis::cmd("MGET").arg(full)).await?;
        let mut total = 0usize;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let at = distinct.binary_search(&key).map_err(|_| StoreError::Unavailable("MGET lost a key".into()))?;
            let value = values.get(at).cloned().flatten();
            total = total.saturating_add(value.as_ref().map_or(0, Vec::len));
            if total > max_bytes {
                return Err(StoreError::TooLarge);
            }
            found.push(value);
        }
        Ok(found)
    }

    pub(super) async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("MSET");
        for (key, value) in pairs {
            command.arg(self.key(&key)).arg(value);
        }
        self.store.run(&command).await
    }

    pub(super) async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.store.run::<i64>(redis::cmd("DEL").arg(self.keys(keys))).await.map(drop)
    }
}
