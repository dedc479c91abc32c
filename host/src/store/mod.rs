//! The key-value store behind `wasi:keyvalue`: one per host, shared by
//! every instance of every worker, in the host's memory (the default) or in
//! a Redis that several hosts share. Knows nothing of wasm: the `wasm`
//! layer checks which buckets a guest may open and counts each call.
mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

pub use self::memory::{Budget, MemoryBucket, MemoryStore};
pub use self::redis::{RedisBucket, RedisStore};

/// Where the store lives, as the operator names it (`--keyvalue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In the host's memory: `memory`.
    Memory,
    /// In Redis: `redis://HOST:PORT[/DB]`.
    Redis(String),
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "memory" {
            return Ok(Backend::Memory);
        }
        if !text.starts_with("redis://") {
            return Err(format!("{text:?}: give `memory` or redis://HOST:PORT[/DB]"));
        }
        // The crate's own parser says what is wrong with the rest.
        ::redis::Client::open(text).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Backend::Redis(text.to_string()))
    }
}

/// Why a store call did nothing. Every case reaches the guest as
/// `wasi:keyvalue`'s `other` with this text; none traps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A write would take the store past the operator's budget.
    #[error("the store is full: {0}")]
    Full(&'static str),
    /// `increment` on a value that is not a signed 64-bit decimal integer.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// `increment` would leave the signed 64-bit range.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// `get-many` would return more bytes than the caller may take.
    #[error("the values asked for at once come to more than the guest's memory")]
    TooLarge,
    /// `list-keys` with a cursor the store does not know (any more).
    #[error("unknown list-keys cursor: start again without one")]
    UnknownCursor,
    /// The backend cannot be reached, or failed the call.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the guest asked for something the store refuses, rather than
    /// the store failing: for the metrics' `outcome`.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, StoreError::Unavailable(_))
    }
}

/// One page of `list-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, without the bucket's prefix.
    pub keys: Vec<String>,
    /// Where the next page starts; none after the last.
    pub cursor: Option<u64>,
}

/// The host's store.
#[derive(Debug)]
pub enum Store {
    /// In memory, shared by the host's instances.
    Memory(MemoryStore),
    /// In Redis, shared by every host that names it.
    Redis(Arc<RedisStore>),
}

/// How long a Redis call may take, connecting included, before it fails
/// with [`StoreError::Unavailable`]: well under the default guest timeout,
/// although waiting on the store does not count against it.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl Store {
    /// The store `backend` names: in memory within `budget`, or a Redis
    /// reached through `connections` pooled connections (made when first
    /// used, so a Redis that is down at start delays nothing).
    pub fn new(backend: &Backend, budget: Budget, connections: usize) -> anyhow::Result<Store> {
        Ok(match backend {
            Backend::Memory => Store::Memory(MemoryStore::new(budget)),
            Backend::Redis(url) => Store::Redis(Arc::new(RedisStore::new(url, connections, REDIS_TIMEOUT)?)),
        })
    }

    /// The bucket called `name`, made empty if new; the caller has checked
    /// that it may be opened ([`valid_bucket_name`] and the operator's list).
    pub fn open(&self, name: &str) -> Bucket {
        match self {
            Store::Memory(store) => Bucket::Memory(store.bucket(name)),
            Store::Redis(store) => Bucket::Redis(RedisBucket::new(store.clone(), name)),
        }
    }

    /// What the store is, for the log.
    pub fn describe(&self) -> String {
        match self {
            Store::Memory(store) => format!("in memory ({})", store.budget()),
            Store::Redis(store) => format!("in Redis at {}", store.address()),
        }
    }
}

/// Whether `name` may name a bucket: 1 to 64 ASCII letters, digits, `.`,
/// `_` and `-`. In Redis a bucket is the key prefix `NAME:`, so a name
/// with `:` could reach into another bucket's keys, and one with glob
/// characters would widen `list-keys`' pattern.
pub fn valid_bucket_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An open bucket. Each call is atomic on its own, batches included.
///
/// The in-memory store answers without waiting; Redis's calls are boxed, so
/// that the future of every call, which a guest's call to the store
/// awaits, stays the size of the memory store's and is not copied about
/// at the size of a Redis round trip's.
#[derive(Debug, Clone)]
pub enum Bucket {
    /// A bucket of the in-memory store.
    Memory(Arc<MemoryBucket>),
    /// A key prefix in Redis.
    Redis(RedisBucket),
}

impl Bucket {
    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Bucket::Memory(bucket) => Ok(bucket.get(key)),
            Bucket::Redis(bucket) => Box::pin(bucket.get(key)).await,
        }
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Bucket::Memory(bucket) => bucket.set(key, value),
            Bucket::Redis(bucket) => Box::pin(bucket.set(key, value)).await,
        }
    }

    /// Removes `key`, if present.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Bucket::Memory(bucket) => {
                bucket.delete(key);
                Ok(())
            }
            Bucket::Redis(bucket) => Box::pin(bucket.delete(key)).await,
        }
    }

    /// Whether `key` is present.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Bucket::Memory(bucket) => Ok(bucket.exists(key)),
            Bucket::Redis(bucket) => Box::pin(bucket.exists(key)).await,
        }
    }

    /// A page of keys from `cursor` (none: the first).
    pub async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, StoreError> {
        match self {
            Bucket::Memory(bucket) => bucket.list_keys(cursor),
            Bucket::Redis(bucket) => Box::pin(bucket.list_keys(cursor)).await,
        }
    }

    /// Adds `delta` (two's complement) to the integer at `key`, a missing
    /// key counting as 0: the new value, as Redis's `INCRBY` gives it.
    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, StoreError> {
        match self {
            Bucket::Memory(bucket) => bucket.increment(key, delta),
            Bucket::Redis(bucket) => Box::pin(bucket.increment(key, delta)).await,
        }
    }

    /// The values of `keys`, in their order, if they come to at most
    /// `max_bytes`: a key named many times is a copy each time, and the
    /// copies must not make the host hold more than the guest can take.
    pub async fn get_many(&self, keys: &[String], max_bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Bucket::Memory(bucket) => bucket.get_many(keys, max_bytes),
            Bucket::Redis(bucket) => Box::pin(bucket.get_many(keys, max_bytes)).await,
        }
    }

    /// Sets every key to its value, all or none.
    pub async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        match self {
            Bucket::Memory(bucket) => bucket.set_many(pairs),
            Bucket::Redis(bucket) => Box::pin(bucket.set_many(pairs)).await,
        }
    }

    /// Removes every key present.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        match self {
            Bucket::Memory(bucket) => {
                bucket.delete_many(keys);
                Ok(())
            }
            Bucket::Redis(bucket) => Box::pin(bucket.delete_many(keys)).await,
        }
    }
}

/// The integer a value holds, as Redis reads one: ASCII decimal, an
/// optional `-`, no `+`, spaces or leading zeros.
pub(crate) fn parse_integer(value: &[u8]) -> Option<i64> {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    let canonical =
        !digits.is_empty() && (digits == b"0" || digits[0] != b'0') && digits.iter().all(u8::is_ascii_digit);
    if !canonical || value == b"-0" {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `memory` and Redis URLs parse; anything else says what to give.
    #[test]
    fn backends_parse() {
        assert_eq!("memory".parse::<Backend>(), Ok(Backend::Memory));
        assert_eq!(
            "redis://127.0.0.1:6379/2".parse::<Backend>(),
            Ok(Backend::Redis("redis://127.0.0.1:6379/2".into()))
        );
        assert!("redis.example:6379".parse::<Backend>().unwrap_err().contains("redis://HOST:PORT"));
        assert!("postgres://x".parse::<Backend>().is_err());
    }

    /// Bucket names are short and cannot reach another bucket's keys.
    #[test]
    fn bucket_names_are_checked() {
        for good in ["kv", "rate-limit", "a.b_c-9", &"x".repeat(64)] {
            assert!(valid_bucket_name(good), "{good}");
        }
        for bad in ["", "a:b", "a*", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    /// Integers read as Redis reads them.
    #[test]
    fn integers_parse_as_redis_reads_them() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-12"), Some(-12));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"+1", b" 1", b"01", b"-0", b"1.5", b"9223372036854775808", b"abc"] {
            assert_eq!(parse_integer(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
