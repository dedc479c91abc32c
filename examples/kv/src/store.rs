//! The keys and values, within a memory budget, and when keys expire.
//!
//! Expiry is by the instance's monotonic clock, passed in as `now` so that
//! the rules are tested natively. A key past its time is gone: reads find
//! nothing (`get` removes it on the way), and [`Store::expire`], which the
//! handler calls from a timer, removes the rest even if nobody reads them.
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What the store may hold, in bytes of keys and values plus
/// `ENTRY_OVERHEAD` per key. The instance's memory (`host --guest-memory`,
/// 64 MiB by default) must also hold the hash table and every connection's
/// buffers; past it the instance would trap and every connection close.
pub const BUDGET: usize = 16 << 20;

/// What one key costs beyond its bytes: its share of the hash table (which
/// may be twice as large as its entries), two allocations, and room for an
/// expiry.
pub const ENTRY_OVERHEAD: usize = 128;

/// Storing a value would take the store past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

/// A key's value and when it expires, if it does.
#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

/// Keys and their values, all strings of bytes.
#[derive(Debug)]
pub struct Store {
    entries: HashMap<Vec<u8>, Entry>,
    /// The keys that expire, by when.
    expiring: BTreeSet<(Instant, Vec<u8>)>,
    /// What `entries` costs, as `BUDGET` counts it.
    used: usize,
    budget: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_budget(BUDGET)
    }
}

impl Store {
    /// An empty store that may hold `budget` bytes.
    pub fn with_budget(budget: usize) -> Self {
        Store { entries: HashMap::new(), expiring: BTreeSet::new(), used: 0, budget }
    }

    /// The value of `key`, unless it has expired by `now` (then it is
    /// removed).
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<&[u8]> {
        self.forget_if_expired(key, now);
        self.entries.get(key).map(|entry| entry.value.as_slice())
    }

    /// Whether `key` has a value at `now`.
    pub fn contains(&mut self, key: &[u8], now: Instant) -> bool {
        self.get(key, now).is_some()
    }

    /// Sets `key` to `value`, to expire at `expires` (or never), unless
    /// that takes the store past its budget. A key's old expiry goes with
    /// its old value.
    pub fn set(&mut self, key: &[u8], value: Vec<u8>, expires: Option<Instant>) -> Result<(), OverBudget> {
        let old = self.entries.get(key).map_or(0, |old| cost(key, &old.value));
        let used = self.used - old + cost(key, &value);
        if used > self.budget {
            return Err(OverBudget);
        }
        self.used = used;
        let old = self.entries.insert(key.to_vec(), Entry { value, expires });
        if let Some(when) = old.and_then(|old| old.expires) {
            self.expiring.remove(&(when, key.to_vec()));
        }
        if let Some(when) = expires {
            self.expiring.insert((when, key.to_vec()));
        }
        Ok(())
    }

    /// Replaces `key`'s value and keeps its expiry (what `INCR` does).
    pub fn replace(&mut self, key: &[u8], value: Vec<u8>, now: Instant) -> Result<(), OverBudget> {
        let expires = self.expiry(key, now);
        self.set(key, value, expires)
    }

    /// Removes `key`; whether it had a value.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                self.used -= cost(key, &entry.value);
                if let Some(when) = entry.expires {
                    self.expiring.remove(&(when, key.to_vec()));
                }
                true
            }
            None => false,
        }
    }

    /// When `key` expires: `None` if it never does (or does not exist).
    pub fn expiry(&mut self, key: &[u8], now: Instant) -> Option<Instant> {
        self.forget_if_expired(key, now);
        self.entries.get(key)?.expires
    }

    /// Makes `key` expire at `when` (`None`: never); whether the key
    /// exists.
    pub fn set_expiry(&mut self, key: &[u8], when: Option<Instant>, now: Instant) -> bool {
        self.forget_if_expired(key, now);
        let Some(entry) = self.entries.get_mut(key) else { return false };
        if let Some(old) = std::mem::replace(&mut entry.expires, when) {
            self.expiring.remove(&(old, key.to_vec()));
        }
        if let Some(when) = when {
            self.expiring.insert((when, key.to_vec()));
        }
        true
    }

    /// How many keys are held, counting those past their time that nothing
    /// has removed yet (as Redis's `DBSIZE` does).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the next key expires, if any does.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiring.first().map(|(when, _)| *when)
    }

    /// Removes every key whose time has come by `now`; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((when, key)) = self.expiring.first().cloned() {
            if when > now {
                break;
            }
            self.remove(&key);
            removed += 1;
        }
        removed
    }

    fn forget_if_expired(&mut self, key: &[u8], now: Instant) {
        if self.entries.get(key).and_then(|entry| entry.expires).is_some_and(|when| when <= now) {
            self.remove(key);
        }
    }
}

/// `now` plus a time to live, if that is a time the clock can hold.
pub fn after(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are set, replaced and removed; the budget counts what is held.
    #[test]
    fn set_replace_remove_within_the_budget() {
        let now = Instant::now();
        let mut store = Store::with_budget(2 * ENTRY_OVERHEAD + 10);
        store.set(b"a", b"1234".to_vec(), None).unwrap();
        store.set(b"b", b"1".to_vec(), None).unwrap();
        assert_eq!(store.set(b"c", Vec::new(), None), Err(OverBudget), "a third key does not fit");
        assert_eq!(store.set(b"a", b"12345".to_vec(), None), Ok(()), "a value may grow into what is left");
        assert_eq!(store.set(b"a", b"123456789".to_vec(), None), Err(OverBudget));
        assert_eq!(store.get(b"a", now), Some(&b"12345"[..]), "a refused set changes nothing");
        assert!(store.remove(b"a"));
        assert!(!store.remove(b"a"));
        assert!(!store.contains(b"a", now));
        store.set(b"c", b"123456".to_vec(), None).unwrap();
        assert_eq!(store.get(b"c", now), Some(&b"123456"[..]), "room freed by a removal is reused");
    }

    /// A key past its time reads as gone; `expire` removes such keys
    /// though nobody reads them, and only those.
    #[test]
    fn keys_expire_when_read_and_when_swept() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut store = Store::default();
        store.set(b"soon", b"1".to_vec(), Some(now + ms(10))).unwrap();
        store.set(b"later", b"2".to_vec(), Some(now + ms(50))).unwrap();
        store.set(b"never", b"3".to_vec(), None).unwrap();
        assert_eq!(store.next_expiry(), Some(now + ms(10)));
        assert_eq!(store.get(b"soon", now + ms(9)), Some(&b"1"[..]));
        assert_eq!(store.get(b"soon", now + ms(10)), None, "gone at its time");
        assert_eq!(store.len(), 2, "and removed by the read");
        assert_eq!(store.expire(now + ms(49)), 0);
        assert_eq!(store.expire(now + ms(60)), 1, "swept though nobody read it");
        assert_eq!(store.len(), 1);
        assert_eq!(store.next_expiry(), None);
        assert!(store.set_expiry(b"never", Some(now + ms(5)), now));
        assert!(store.set_expiry(b"never", None, now), "and back");
        assert_eq!(store.expire(now + ms(100)), 0);
        assert!(!store.set_expiry(b"missing", None, now));
    }

    /// Setting a key drops its old expiry; replacing it keeps it; removing
    /// it forgets it, and its budget.
    #[test]
    fn set_drops_an_expiry_and_replace_keeps_it() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut store = Store::default();
        store.set(b"k", b"1".to_vec(), Some(later)).unwrap();
        store.replace(b"k", b"2".to_vec(), now).unwrap();
        assert_eq!(store.expiry(b"k", now), Some(later));
        store.set(b"k", b"3".to_vec(), None).unwrap();
        assert_eq!(store.expiry(b"k", now), None);
        assert_eq!(store.next_expiry(), None, "the old expiry left the schedule");
        store.set(b"k", b"4".to_vec(), Some(later)).unwrap();
        assert!(store.remove(b"k"));
        assert_eq!(store.next_expiry(), None);
        assert_eq!(store.used, 0);
    }
}
