//! The component's [`Store`]: a bucket of the host's `wasi:keyvalue` store,
//! which every instance of the host shares (and every host given the same
//! Redis), opened on first use.
use evconn_guest::keyvalue::{self, Bucket, Error};

use crate::store::{Page, Store, StoreError};

/// The bucket used when the environment names none: the component's name,
/// which is the one bucket the host allows by default.
pub const DEFAULT_BUCKET: &str = "kv";

/// A bucket, opened when first used; a failed open is tried again at the
/// next call, so a bucket the operator allows later, or a Redis that comes
/// back, is picked up.
pub struct WasiBucket {
    /// The bucket's name, for `open` and for error messages.
    name: String,
    /// The open bucket; `None` until an open succeeds.
    bucket: Option<Bucket>,
}

impl WasiBucket {
    /// The bucket named by the environment variable `KV_BUCKET`
    /// (`host --env KV_BUCKET=NAME`), else [`DEFAULT_BUCKET`].
    pub fn from_env() -> Self {
        let name = std::env::var("KV_BUCKET").ok().filter(|name| !name.is_empty());
        WasiBucket { name: name.unwrap_or_else(|| DEFAULT_BUCKET.into()), bucket: None }
    }
}

impl Default for WasiBucket {
    fn default() -> Self {
        WasiBucket::from_env()
    }
}

/// The open bucket of `slot`, opening `name` if it is not open yet.
fn opened<'a>(slot: &'a mut Option<Bucket>, name: &str) -> Result<&'a Bucket, StoreError> {
    if slot.is_none() {
        *slot = Some(keyvalue::open(name).map_err(|e| error(name, e))?);
    }
    Ok(slot.as_ref().expect("opened just above"))
}

/// A store error as the client reads it, after `-ERR `.
fn error(bucket: &str, error: Error) -> StoreError {
    StoreError(match error {
        Error::AccessDenied => {
            format!(
                "store: bucket '{bucket}' is not allowed (the operator allows it with host --allow-bucket {bucket})"
            )
        }
        Error::NoSuchStore => format!("store: no bucket '{bucket}'"),
        Error::Other(message) => format!("store: {message}"),
    })
}

impl Store for WasiBucket {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        opened(&mut self.bucket, &self.name)?.get(key).map_err(|e| error(&self.name, e))
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        opened(&mut self.bucket, &self.name)?.set(key, value).map_err(|e| error(&self.name, e))
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        opened(&mut self.bucket, &self.name)?.delete(key).map_err(|e| error(&self.name, e))
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let bucket = opened(&mut self.bucket, &self.name)?;
        keyvalue::increment(bucket, key, delta).map_err(|e| error(&self.name, e))
    }

    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let bucket = opened(&mut self.bucket, &self.name)?;
        keyvalue::get_many(bucket, keys).map_err(|e| error(&self.name, e))
    }

    fn set_many(&mut self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let bucket = opened(&mut self.bucket, &self.name)?;
        keyvalue::set_many(bucket, pairs).map_err(|e| error(&self.name, e))
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let bucket = opened(&mut self.bucket, &self.name)?;
        keyvalue::delete_many(bucket, keys).map_err(|e| error(&self.name, e))
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<Page, StoreError> {
        let page = opened(&mut self.bucket, &self.name)?.list_keys(cursor).map_err(|e| error(&self.name, e))?;
        Ok(Page { keys: page.keys, next: page.cursor })
    }
}
