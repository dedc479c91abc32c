//! Locking a standard mutex held only around code that cannot panic: a
//! poisoned lock would mean a host bug, and the data is still consistent,
//! so it is taken anyway rather than turned into an error every caller
//! would have to handle.
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
