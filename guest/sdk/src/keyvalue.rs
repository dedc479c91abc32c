//! The host's store (`wasi:keyvalue` 0.2.0-draft): buckets of keys and values
//! shared by every instance of the host and by every host pointed at the
//! same Redis.
//!
//! ```ignore
//! use evconn_guest::keyvalue;
//!
//! let bucket = keyvalue::open("visits")?;
//! let count = keyvalue::increment(&bucket, "total", 1)?;
//! bucket.set("last", count.to_string().as_bytes())?;
//! ```
//!
//! # What the host promises
//! - One store for the whole host: every instance under both isolation
//!   models and every worker sees the same keys, in the host's memory by
//!   default or in Redis (`host --keyvalue redis://HOST:PORT`), where every
//!   host given that Redis shares them. Nothing in it belongs to an
//!   instance: it outlives traps and connections.
//! - A bucket opens only if the operator allows it (`host --allow-bucket
//!   NAME`; by default one bucket, named after the component: `kv` for
//!   `kv.wasm`); any other fails with [`Error::AccessDenied`]. Read the
//!   name from the environment, with the component's name as the default,
//!   so that an operator who renames the file can say which bucket it uses.
//! - Each call is atomic on its own, batches ([`get_many`], [`set_many`],
//!   [`delete_many`]) included; two calls are not: another instance may
//!   write between them.
//! - Errors are values, never traps: past the operator's budget (keys,
//!   bytes) a write fails with [`Error::Other`], as does a store that cannot
//!   be reached.
//! - [`Bucket::list_keys`] returns a page of keys and a cursor for the next
//!   (`None` after the last page): in key order from the memory store, in
//!   `SCAN` order from Redis, where a key may come twice.
//!
//! Keys are strings; values are bytes. Nothing expires on its own: a guest
//! that wants keys to go keeps their time itself (the kv example keeps a
//! deadline with each value and sweeps).
use crate::bindings::wasi::keyvalue::{atomics, batch};

pub use crate::bindings::wasi::keyvalue::store::{Bucket, Error, KeyResponse, open};

/// Adds `delta` to the integer at `key` and returns the result, atomically
/// across every instance and host sharing the store: Redis's `INCRBY`.
///
/// A missing key counts as 0. The value must be a signed 64-bit integer
/// written in decimal ASCII (`-12`, as `i64::to_string` writes it); any
/// other value, or a result past `i64`, fails with [`Error::Other`] and
/// leaves the value as it was.
pub fn increment(bucket: &Bucket, key: &str, delta: i64) -> Result<i64, Error> {
    // The WIT carries the integer's two's complement in a u64.
    atomics::increment(bucket, key, delta as u64).map(|value| value as i64)
}

/// The values of `keys`, in their order: `None` for a key that has none.
/// One atomic read.
pub fn get_many(bucket: &Bucket, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
    let found = batch::get_many(bucket, keys)?;
    Ok(found.into_iter().map(|pair| pair.map(|(_, value)| value)).collect())
}

/// Sets every key of `pairs` to its value, in one atomic write.
pub fn set_many(bucket: &Bucket, pairs: &[(String, Vec<u8>)]) -> Result<(), Error> {
    batch::set_many(bucket, pairs)
}

/// Removes `keys` (those that exist), in one atomic write.
pub fn delete_many(bucket: &Bucket, keys: &[String]) -> Result<(), Error> {
    batch::delete_many(bucket, keys)
}

/// Lets `?` turn a failed store call into a callback's `Err`: `no such
/// store`, `access denied`, or the host's message for `other`.
impl From<Error> for String {
    fn from(error: Error) -> Self {
        match error {
            Error::NoSuchStore => "no such store".into(),
            Error::AccessDenied => "access denied".into(),
            Error::Other(message) => message,
        }
    }
}
