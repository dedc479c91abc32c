//! The in-memory store: buckets of ordered keys, each behind its own lock,
//! within a key count and a byte budget shared by every bucket.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::{KeyPage, StoreError, parse_integer};

/// What a key costs beyond its bytes, as the byte budget counts it: its
/// B-tree slot and two allocations' headers.
pub const ENTRY_OVERHEAD: usize = 64;

/// Keys `list-keys` returns at once.
const PAGE: usize = 1000;

/// Cursors a bucket remembers; an older one is forgotten and using it
/// fails, so a guest that lists and never finishes costs a bounded amount.
const CURSORS: usize = 64;

/// How much the in-memory store may hold (`--keyvalue-keys`,
/// `--keyvalue-memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Keys, across buckets.
    pub keys: usize,
    /// Bytes of keys and values, plus [`ENTRY_OVERHEAD`] per key.
    pub bytes: usize,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} keys and {} MiB", self.keys, self.bytes >> 20)
    }
}

/// What every bucket holds together, against the budget.
#[derive(Debug)]
struct Usage {
    budget: Budget,
    keys: AtomicUsize,
    bytes: AtomicUsize,
}

impl Usage {
    /// Takes `keys` more keys and `bytes` more bytes (either may be
    /// negative, as a change), or nothing if either would pass the budget.
    fn reserve(&self, keys: isize, bytes: isize) -> Result<(), StoreError> {
        if keys > 0 && !take(&self.keys, keys.unsigned_abs(), self.budget.keys) {
            return Err(StoreError::Full("--keyvalue-keys reached"));
        }
        if bytes > 0 && !take(&self.bytes, bytes.unsigned_abs(), self.budget.bytes) {
            if keys > 0 {
                self.keys.fetch_sub(keys.unsigned_abs(), Ordering::Relaxed);
            }
            return Err(StoreError::Full("--keyvalue-memory reached"));
        }
        if keys < 0 {
            self.keys.fetch_sub(keys.unsigned_abs(), Ordering::Relaxed);
        }
        if bytes < 0 {
            self.bytes.fetch_sub(bytes.unsigned_abs(), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Adds `amount` to `counter` unless that passes `limit`.
fn take(counter: &AtomicUsize, amount: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(amount).filter(|&n| n <= limit))
        .is_ok()
}

/// What an entry costs.
fn cost(key: &str, value: &[u8]) -> isize {
    (key.len() + value.len() + ENTRY_OVERHEAD) as isize
}

/// The host's in-memory store.
#[derive(Debug)]
pub struct MemoryStore {
    buckets: Mutex<HashMap<String, Arc<MemoryBucket>>>,
    usage: Arc<Usage>,
}

impl MemoryStore {
    /// An empty store within `budget`.
    pub fn new(budget: Budget) -> Self {
        let usage = Usage { budget, keys: AtomicUsize::new(0), bytes: AtomicUsize::new(0) };
        MemoryStore { buckets: Mutex::default(), usage: Arc::new(usage) }
    }

    /// The bucket called `name`, made if new.
    pub fn bucket(&self, name: &str) -> Arc<MemoryBucket> {
        let mut buckets = self.buckets.lock();
        if let Some(bucket) = buckets.get(name) {
            return bucket.clone();
        }
        let bucket = Arc::new(MemoryBucket { data: Mutex::default(), usage: self.usage.clone() });
        buckets.insert(name.to_string(), bucket.clone());
        bucket
    }

    /// The store's budget.
    pub fn budget(&self) -> Budget {
        self.usage.budget
    }

    /// Keys and bytes held, as the budget counts them.
    pub fn usage(&self) -> (usize, usize) {
        (self.usage.keys.load(Ordering::Relaxed), self.usage.bytes.load(Ordering::Relaxed))
    }
}

/// One bucket's keys, in order.
#[derive(Debug)]
pub struct MemoryBucket {
    data: Mutex<BucketData>,
    usage: Arc<Usage>,
}

#[derive(Debug, Default)]
struct BucketData {
    entries: BTreeMap<String, Vec<u8>>,
    /// Open `list-keys` cursors: each the last key its page returned.
    cursors: VecDeque<(u64, String)>,
    /// The next cursor's number (0 is never one: the first page has none).
    next_cursor: u64,
}

impl BucketData {
    /// Sets `key` to `value` within the budget, or changes nothing.
    fn set(&mut self, usage: &Usage, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match self.entries.get_mut(key) {
            Some(old) => {
                usage.reserve(0, value.len() as isize - old.len() as isize)?;
                *old = value;
            }
            None => {
                usage.reserve(1, cost(key, &value))?;
                self.entries.insert(key.to_string(), value);
            }
        }
        Ok(())
    }

    fn delete(&mut self, usage: &Usage, key: &str) {
        if let Some(value) = self.entries.remove(key) {
            // Giving back never fails.
            let _ = usage.reserve(-1, -cost(key, &value));
        }
    }
}

impl MemoryBucket {
    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.data.lock().entries.get(key).cloned()
    }

    pub(super) fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.data.lock().set(&self.usage, key, value)
    }

    pub(super) fn delete(&self, key: &str) {
        self.data.lock().delete(&self.usage, key);
    }

    pub(super) fn exists(&self, key: &str) -> bool {
        self.data.lock().entries.contains_key(key)
    }

    /// Keys in order from where `cursor` left off: every key present for
    /// the whole listing is returned once, whatever changes meanwhile.
    pub(super) fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, StoreError> {
        let mut data = self.data.lock();
        let after = match cursor {
            None => None,
            Some(cursor) => {
                let at = data.cursors.iter().position(|(id, _)| *id == cursor).ok_or(StoreError::UnknownCursor)?;
                data.cursors.remove(at).map(|(_, last)| last)
            }
        };
        let start = match &after {
            Some(last) => Bound::Excluded(last.as_str()),
            None => Bound::Unbounded,
        };
        let mut range = data.entries.range::<str, _>((start, Bound::Unbounded));
        let keys: Vec<String> = range.by_ref().take(PAGE).map(|(key, _)| key.clone()).collect();
        let more = range.next().is_some();
        let cursor = match (more, keys.last()) {
            (true, Some(last)) => {
                data.next_cursor += 1;
                let id = data.next_cursor;
                if data.cursors.len() == CURSORS {
                    data.cursors.pop_front();
                }
                data.cursors.push_back((id, last.clone()));
                Some(id)
            }
            _ => None,
        };
        Ok(KeyPage { keys, cursor })
    }

    pub(super) fn increment(&self, key: &str, delta: u64) -> Result<u64, StoreError> {
        let mut data = self.data.lock();
        let current = match data.entries.get(key) {
            Some(value) => parse_integer(value).ok_or(StoreError::NotAnInteger)?,
            None => 0,
        };
        let new = current.checked_add(delta as i64).ok_or(StoreError::Overflow)?;
        data.set(&self.usage, key, new.to_string().into_bytes())?;
        Ok(new as u64)
    }

    pub(super) fn get_many(&self, keys: &[String], max_bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let data = self.data.lock();
        let found: Vec<Option<&Vec<u8>>> = keys.iter().map(|key| data.entries.get(key)).collect();
        let total = found.iter().flatten().fold(0usize, |sum, value| sum.saturating_add(value.len()));
        if total > max_bytes {
            return Err(StoreError::TooLarge);
        }
        Ok(found.into_iter().map(|value| value.cloned()).collect())
    }

    /// Sets every pair, or none: a pair past the budget undoes the ones
    /// before it.
    pub(super) fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let mut data = self.data.lock();
        let mut undo: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (key, value) in pairs {
            let old = data.entries.get(&key).cloned();
            if let Err(full) = data.set(&self.usage, &key, value) {
                for (key, old) in undo.into_iter().rev() {
                    match old {
                        // The old value was there before: restoring it fits.
                        Some(old) => data.set(&self.usage, &key, old).expect("restoring fits the budget"),
                        None => data.delete(&self.usage, &key),
                    }
                }
                return Err(full);
            }
            undo.push((key, old));
        }
        Ok(())
    }

    pub(super) fn delete_many(&self, keys: &[String]) {
        let mut data = self.data.lock();
        for key in keys {
            data.delete(&self.usage, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keys: usize, bytes: usize) -> MemoryStore {
        MemoryStore::new(Budget { keys, bytes })
    }

    /// Buckets of one store share their data by name, and not across names.
    #[test]
    fn buckets_are_shared_by_name() {
        let store = store(10, 10_000);
        store.bucket("a").set("k", b"v".to_vec()).unwrap();
        assert_eq!(store.bucket("a").get("k"), Some(b"v".to_vec()));
        assert_eq!(store.bucket("b").get("k"), None);
        assert!(store.bucket("a").exists("k"));
        store.bucket("a").delete("k");
        assert!(!store.bucket("a").exists("k"));
        assert_eq!(store.usage(), (0, 0));
    }

    /// Past either budget a write changes nothing; deleting gives room back.
    #[test]
    fn writes_stay_within_the_budget() {
        let store = store(2, 2 * ENTRY_OVERHEAD + 10);
        let bucket = store.bucket("b");
        bucket.set("a", b"1234".to_vec()).unwrap();
        assert_eq!(bucket.set("b", b"123456".to_vec()), Err(StoreError::Full("--keyvalue-memory reached")));
        assert_eq!(bucket.get("b"), None);
        bucket.set("b", b"12".to_vec()).unwrap();
        assert_eq!(bucket.set("c", Vec::new()), Err(StoreError::Full("--keyvalue-keys reached")));
        // Growing an existing value counts only the growth.
        assert_eq!(bucket.set("a", b"123456".to_vec()), Ok(()));
        assert_eq!(bucket.set("a", b"1234567".to_vec()), Err(StoreError::Full("--keyvalue-memory reached")));
        assert_eq!(bucket.get("a"), Some(b"123456".to_vec()));
        bucket.delete_many(&["a".into(), "b".into(), "nothing".into()]);
        assert_eq!(store.usage(), (0, 0));
    }

    /// A batch past the budget leaves every key as it was.
    #[test]
    fn set_many_is_all_or_nothing() {
        let store = store(2, 10_000);
        let bucket = store.bucket("b");
        bucket.set("a", b"old".to_vec()).unwrap();
        let batch = vec![("a".into(), b"new".to_vec()), ("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())];
        assert_eq!(bucket.set_many(batch), Err(StoreError::Full("--keyvalue-keys reached")));
        let all = ["a".into(), "b".into(), "c".into()];
        assert_eq!(bucket.get_many(&all, 100), Ok(vec![Some(b"old".to_vec()), None, None]));
        assert_eq!(store.usage(), (1, 1 + 3 + ENTRY_OVERHEAD));
    }

    /// A batch read that would copy more than asked for is refused.
    #[test]
    fn get_many_is_bounded() {
        let bucket = store(10, 10_000).bucket("b");
        bucket.set("v", vec![7; 100]).unwrap();
        let keys = vec!["v".to_string(); 10];
        assert_eq!(bucket.get_many(&keys, 1000).map(|values| values.len()), Ok(10));
        assert_eq!(bucket.get_many(&keys, 999), Err(StoreError::TooLarge));
    }

    /// Increment is Redis's INCRBY: a missing key is 0, a huge delta counts
    /// down, and neither a non-integer nor an overflow changes the value.
    #[test]
    fn increment_works_as_incrby() {
        let bucket = store(10, 10_000).bucket("b");
        assert_eq!(bucket.increment("n", 5), Ok(5));
        assert_eq!(bucket.increment("n", u64::MAX), Ok(4));
        assert_eq!(bucket.increment("n", (-10i64) as u64).map(|n| n as i64), Ok(-6));
        assert_eq!(bucket.get("n"), Some(b"-6".to_vec()));
        bucket.set("text", b"x".to_vec()).unwrap();
        assert_eq!(bucket.increment("text", 1), Err(StoreError::NotAnInteger));
        bucket.set("big", i64::MAX.to_string().into_bytes()).unwrap();
        assert_eq!(bucket.increment("big", 1), Err(StoreError::Overflow));
        assert_eq!(bucket.get("big"), Some(i64::MAX.to_string().into_bytes()));
    }

    /// Listing pages through every key once, in order, even when keys change
    /// between pages; a forgotten cursor fails.
    #[test]
    fn list_keys_pages_in_order() {
        let bucket = store(10_000, 1 << 24).bucket("b");
        for n in 0..2500 {
            bucket.set(&format!("{n:05}"), Vec::new()).unwrap();
        }
        let first = bucket.list_keys(None).unwrap();
        assert_eq!(first.keys.len(), PAGE);
        assert_eq!(first.keys[0], "00000");
        // Removing a listed key and adding one ahead changes nothing listed.
        bucket.delete("00000");
        bucket.set("99999", Vec::new()).unwrap();
        let mut all = first.keys.clone();
        let mut cursor = first.cursor;
        while let Some(at) = cursor {
            let page = bucket.list_keys(Some(at)).unwrap();
            all.extend(page.keys);
            cursor = page.cursor;
        }
        assert_eq!(all.len(), 2501);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(all.last().map(String::as_str), Some("99999"));
        assert_eq!(bucket.list_keys(Some(12345)), Err(StoreError::UnknownCursor));
    }
}
