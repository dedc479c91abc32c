//! Removing keys past their deadline that nobody reads, a page at a time:
//! Redis's active expiry, done by every live instance together.
//!
//! Reads treat a key past its deadline as gone but leave it in the store;
//! the sweep removes it. Every live instance calls [`tick`] every
//! [`TICK_MS`] (and once when it starts). In each [`TICK_MS`] of wall-clock
//! time one call does the work, whichever instance, worker or host makes
//! it: the first to count 1 on that tick's lease key with the store's
//! atomic `increment`. It takes one page of keys (`list-keys`) from where
//! the last sweep stopped, a cursor kept in the store, reads their values
//! in small batches to see their deadlines, and removes those past theirs
//! in one call. So the store is swept at one page per tick however many
//! instances share it, and a pass goes on from instance to instance
//! (under `--isolation connection` each instance lives only as long as its
//! connection).
//!
//! `wasi:keyvalue` has no conditional delete: a key set again by another
//! instance between the sweep's read and its delete (microseconds) is
//! removed with the expired value.
use crate::entry;
use crate::keys;
use crate::store::{Store, StoreError};

/// How often an instance sweeps, in milliseconds: Redis's default `hz` of
/// 10.
pub const TICK_MS: u64 = 100;

/// How many values one read takes: values may be as large as a request
/// (1 MiB), and the instance's memory is capped.
const BATCH: usize = 8;

/// Where the next sweep starts: the cursor of `list-keys`, in decimal;
/// absent at the start of a pass.
const CURSOR: &str = "sweep:cursor";

/// The lease keys: `sweep:tick:` and the tick's number (wall-clock
/// milliseconds over [`TICK_MS`]).
const LEASE: &str = "sweep:tick:";

/// What one call of [`tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// Another call swept in this tick.
    Skipped,
    /// This call swept a page: how many keys past their deadline it
    /// removed, and whether the page was a pass's last.
    Page { removed: usize, last: bool },
}

fn lease(tick: u64) -> String {
    format!("{LEASE}{tick}")
}

/// Sweeps one page of the store at `now` (milliseconds since the Unix
/// epoch), unless another call has this tick already.
pub fn tick(store: &mut dyn Store, now: u64) -> Result<Swept, StoreError> {
    let tick = now / TICK_MS;
    // A store that refuses writes may be full of keys past their deadline:
    // sweep without the lease then, rather than never.
    if store.increment(&lease(tick), 1).is_ok_and(|count| count != 1) {
        return Ok(Swept::Skipped);
    }
    let cursor = store.get(CURSOR)?.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok());
    let page = match store.list_keys(cursor) {
        Ok(page) => page,
        // The store may forget a cursor (the host's memory store keeps the
        // latest few): start a new pass.
        Err(_) if cursor.is_some() => store.list_keys(None)?,
        Err(error) => return Err(error),
    };

    // The last tick's lease, which nobody counts on any more; older ones
    // that their ticks' sweeps could not remove come up in pages.
    let mut doomed = vec![lease(tick.saturating_sub(1))];
    let old_lease =
        |key: &str| key.strip_prefix(LEASE).and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n + 1 < tick);
    doomed.extend(page.keys.iter().filter(|key| old_lease(key)).cloned());

    let users: Vec<String> = page.keys.into_iter().filter(|key| keys::is_user_key(key)).collect();
    let mut removed = 0;
    for batch in users.chunks(BATCH) {
        let values = store.get_many(batch)?;
        for (key, value) in batch.iter().zip(values) {
            if value.and_then(|stored| entry::deadline(&stored)).is_some_and(|deadline| deadline <= now) {
                doomed.push(key.clone());
                removed += 1;
            }
        }
    }
    if page.next.is_none() {
        doomed.push(CURSOR.into());
    }
    store.delete_many(&doomed)?;
    if let Some(next) = page.next {
        store.set(CURSOR, next.to_string().as_bytes())?;
    }
    Ok(Swept::Page { removed, last: page.next.is_none() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const NOW: u64 = 1_750_000_000_000;

    fn set(store: &mut MemoryStore, key: &str, deadline: Option<u64>) {
        store.set(&keys::store_key(key.as_bytes()), &entry::encode(b"v", deadline)).unwrap();
    }

    fn user_keys(store: &MemoryStore) -> Vec<String> {
        store.entries.keys().filter(|key| keys::is_user_key(key)).cloned().collect()
    }

    /// One call per tick sweeps, whichever instance makes it; the next tick
    /// sweeps again, and removes the last tick's lease.
    #[test]
    fn one_sweep_per_tick() {
        let mut store = MemoryStore::default();
        set(&mut store, "gone", Some(NOW - 1));
        assert_eq!(tick(&mut store, NOW), Ok(Swept::Page { removed: 1, last: true }));
        assert_eq!(tick(&mut store, NOW + TICK_MS - 1), Ok(Swept::Skipped), "the same tick");
        assert!(store.entries.contains_key(&lease(NOW / TICK_MS)));
        assert!(matches!(tick(&mut store, NOW + TICK_MS), Ok(Swept::Page { .. })));
        assert!(!store.entries.contains_key(&lease(NOW / TICK_MS)), "the last tick's lease is removed");
        assert!(user_keys(&store).is_empty());
    }

    /// Keys past their deadline go; keys before it, and keys without one,
    /// stay. A pass goes page by page from wherever the last sweep stopped;
    /// with a cursor that counts keys (as this store's does), removing keys
    /// makes a pass skip some, which the next pass takes.
    #[test]
    fn passes_remove_every_key_past_its_deadline() {
        let mut store = MemoryStore::default();
        for n in 0..10 {
            set(&mut store, &format!("expired:{n}"), Some(NOW - n));
            set(&mut store, &format!("later:{n}"), Some(NOW + 10_000));
            set(&mut store, &format!("never:{n}"), None);
        }
        set(&mut store, "at-now", Some(NOW));
        let mut now = NOW;
        let mut passes = Vec::new();
        while passes.last() != Some(&0) {
            assert!(passes.len() < 5, "passes removed {passes:?}");
            let mut removed = 0;
            loop {
                now += TICK_MS;
                match tick(&mut store, now).unwrap() {
                    Swept::Page { removed: n, last } => {
                        removed += n;
                        if last {
                            break;
                        }
                    }
                    Swept::Skipped => panic!("a new tick is never skipped"),
                }
            }
            passes.push(removed);
        }
        assert_eq!(passes.iter().sum::<usize>(), 11, "{passes:?}");
        let left = user_keys(&store);
        assert_eq!(left.len(), 20, "{left:?}");
        assert!(left.iter().all(|key| key.starts_with("k:later:") || key.starts_with("k:never:")), "{left:?}");
        assert!(!store.entries.contains_key(CURSOR), "a finished pass leaves no cursor");
    }

    /// Leases of ticks whose sweep could not remove them are removed when
    /// a page holds them; the current tick's stays.
    #[test]
    fn old_leases_are_removed() {
        let mut store = MemoryStore { page: 100, ..Default::default() };
        let now_tick = NOW / TICK_MS;
        for old in [now_tick - 50, now_tick - 2] {
            store.set(&lease(old), b"1").unwrap();
        }
        tick(&mut store, NOW).unwrap();
        let leases: Vec<&String> = store.entries.keys().filter(|key| key.starts_with(LEASE)).collect();
        assert_eq!(leases, [&lease(now_tick)]);
    }

    /// A store that refuses writes (its budget spent) is swept all the
    /// same, without the lease, so that it can empty.
    #[test]
    fn a_store_that_refuses_the_lease_is_swept() {
        let mut store = MemoryStore::default();
        set(&mut store, "gone", Some(NOW - 1));
        store.set(&lease(NOW / TICK_MS), b"not a count").unwrap();
        assert_eq!(tick(&mut store, NOW), Ok(Swept::Page { removed: 1, last: true }));
    }

    /// A cursor the store has forgotten starts a new pass.
    #[test]
    fn a_forgotten_cursor_starts_a_new_pass() {
        let mut store = MemoryStore::default();
        set(&mut store, "gone", Some(NOW - 1));
        store.set(CURSOR, b"999").unwrap();
        assert_eq!(tick(&mut store, NOW), Ok(Swept::Page { removed: 1, last: true }));
    }

    /// A failed store call is reported, not hidden.
    #[test]
    fn store_errors_are_reported() {
        let mut store = MemoryStore { broken: Some("store: gone".into()), ..Default::default() };
        assert_eq!(tick(&mut store, NOW), Err(StoreError("store: gone".into())));
    }
}
