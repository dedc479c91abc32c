//! The store the commands work on, as a trait: the host's `wasi:keyvalue`
//! bucket in the component ([`crate::bucket`]), a map in memory in the
//! native tests ([`MemoryStore`]).
//!
//! The calls are those of `wasi:keyvalue`, each atomic on its own: what
//! the handler must not lose between two calls (a count) it does in one.
use std::fmt;

/// A store call failed (the bucket is not allowed, the operator's budget is
/// spent, Redis is unreachable, ...): the message says what, and becomes the
/// client's `-ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of keys and the cursor of the next (`None` after the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<String>,
    pub next: Option<u64>,
}

/// A bucket of keys and values, shared with every other instance.
pub trait Store {
    /// The value of `key`, if it has one.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `value`.
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`, if it exists.
    fn delete(&mut self, key: &str) -> Result<(), StoreError>;

    /// Adds `delta` to the integer at `key` (0 if it has no value) and
    /// returns the sum, atomically; fails for a value that is not a decimal
    /// `i64` and for a sum past `i64`, changing nothing.
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError>;

    /// The values of `keys`, in their order, in one read.
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Sets each key of `pairs` (no key twice) to its value, in one write.
    fn set_many(&mut self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;

    /// Removes `keys`, in one write.
    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError>;

    /// The page of keys at `cursor` (`None`: the first).
    fn list_keys(&mut self, cursor: Option<u64>) -> Result<Page, StoreError>;
}

/// A store in a map, for the native tests: pages in key order, a few keys
/// each, the cursor being how many keys came before (one past the keys is
/// unknown); and a switch that makes every call fail.
#[cfg(test)]
#[derive(Debug)]
pub struct MemoryStore {
    pub entries: std::collections::BTreeMap<String, Vec<u8>>,
    /// How many keys a page holds.
    pub page: usize,
    /// When set, every call fails with this message.
    pub broken: Option<String>,
    /// How many calls were made.
    pub calls: usize,
}

#[cfg(test)]
impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { entries: Default::default(), page: 4, broken: None, calls: 0 }
    }
}

#[cfg(test)]
impl MemoryStore {
    fn call(&mut self) -> Result<(), StoreError> {
        self.calls += 1;
        match &self.broken {
            Some(message) => Err(StoreError(message.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
impl Store for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.call()?;
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.call()?;
        self.entries.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.call()?;
        self.entries.remove(key);
        Ok(())
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.call()?;
        let current = match self.entries.get(key) {
            None => 0,
            Some(value) => std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<i64>().ok().filter(|n| n.to_string() == text))
                .ok_or_else(|| StoreError("value is not an integer".into()))?,
        };
        let sum = current.checked_add(delta).ok_or_else(|| StoreError("increment would overflow".into()))?;
        self.entries.insert(key.to_string(), sum.to_string().into_bytes());
        Ok(sum)
    }

    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.call()?;
        Ok(keys.iter().map(|key| self.entries.get(key).cloned()).collect())
    }

    fn set_many(&mut self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.call()?;
        for (key, value) in pairs {
            self.entries.insert(key.clone(), value.clone());
        }
        Ok(())
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        self.call()?;
        for key in keys {
            self.entries.remove(key);
        }
        Ok(())
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<Page, StoreError> {
        self.call()?;
        let from = cursor.unwrap_or(0) as usize;
        if from > self.entries.len() {
            return Err(StoreError("unknown list-keys cursor".into()));
        }
        let keys: Vec<String> = self.entries.keys().skip(from).take(self.page).cloned().collect();
        let end = from + keys.len();
        Ok(Page { keys, next: (end < self.entries.len()).then_some(end as u64) })
    }
}
