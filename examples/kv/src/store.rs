//! The keys and values, within a memory budget.
use std::collections::HashMap;

/// What the store may hold, in bytes of keys and values plus
/// `ENTRY_OVERHEAD` per key. The instance's memory (`host --guest-memory`,
/// 64 MiB by default) must also hold the hash table and every connection's
/// buffers; past it the instance would trap and every connection close.
pub const BUDGET: usize = 16 << 20;

/// What one key costs beyond its bytes: its share of the hash table (which
/// may be twice as large as its entries) and two allocations.
pub const ENTRY_OVERHEAD: usize = 128;

/// Storing a value would take the store past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

/// Keys and their values, all strings of bytes.
#[derive(Debug)]
pub struct Store {
    entries: HashMap<Vec<u8>, Vec<u8>>,
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
        Store { entries: HashMap::new(), used: 0, budget }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets `key` to `value`, unless that takes the store past its budget.
    pub fn set(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), OverBudget> {
        let old = self.entries.get(key).map_or(0, |old| cost(key, old));
        let used = self.used - old + cost(key, &value);
        if used > self.budget {
            return Err(OverBudget);
        }
        self.used = used;
        self.entries.insert(key.to_vec(), value);
        Ok(())
    }

    /// Removes `key`; whether it had a value.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.entries.remove(key) {
            Some(value) => {
                self.used -= cost(key, &value);
                true
            }
            None => false,
        }
    }
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
        let mut store = Store::with_budget(2 * ENTRY_OVERHEAD + 10);
        store.set(b"a", b"1234".to_vec()).unwrap();
        store.set(b"b", b"1".to_vec()).unwrap();
        assert_eq!(store.set(b"c", Vec::new()), Err(OverBudget), "a third key does not fit");
        assert_eq!(store.set(b"a", b"12345".to_vec()), Ok(()), "a value may grow into what is left");
        assert_eq!(store.set(b"a", b"123456789".to_vec()), Err(OverBudget));
        assert_eq!(store.get(b"a"), Some(&b"12345"[..]), "a refused set changes nothing");
        assert!(store.remove(b"a"));
        assert!(!store.remove(b"a"));
        assert!(!store.contains(b"a"));
        store.set(b"c", b"123456".to_vec()).unwrap();
        assert_eq!(store.get(b"c"), Some(&b"123456"[..]), "room freed by a removal is reused");
    }
}
