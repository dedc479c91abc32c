//! Locks: taking a standard mutex held only around code that cannot panic,
//! and an async mutex without hand-over, for the shared guest instance.
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Locks `mutex`, poisoned or not: it is held only around code that cannot
/// panic, so a poisoned lock would mean a host bug, and the data is still
/// consistent; taking it anyway spares every caller an error to handle.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An async mutex that is free again the moment it is released, for
/// whichever task asks next, as a standard mutex is.
///
/// `tokio::sync::Mutex` is fair: releasing it while a task waits hands it to
/// that task, and it stays taken until the reactor gets round to running
/// the task. A task that asks again meanwhile has to wait too, and so on:
/// once one task has waited (behind a guest that yielded at an epoch tick,
/// say), every connection of a busy shared instance waits its turn through
/// the reactor's run queue for every callback, for as long as the load
/// lasts. Here a release frees the lock, and a waiter is woken to try again.
///
/// The value sits in a parking_lot mutex that is only ever tried, never
/// waited on (its guard may be held across awaits: `send_guard`), so taking
/// and releasing it is an atomic operation each; tokio's semaphore takes a
/// lock of its own on every release.
#[derive(Debug, Default)]
pub(crate) struct AsyncLock<T> {
    value: parking_lot::Mutex<T>,
    released: Notify,
}

/// Holds an `AsyncLock`; dropping it releases the lock and wakes a waiter.
pub(crate) struct AsyncLockGuard<'a, T> {
    /// `None` only while being dropped.
    guard: Option<parking_lot::MutexGuard<'a, T>>,
    released: &'a Notify,
}

impl<T> AsyncLock<T> {
    /// Waits until the lock is free, then takes it.
    pub(crate) async fn lock(&self) -> AsyncLockGuard<'_, T> {
        // Free nearly every time: no wait to set up.
        if let Some(guard) = self.value.try_lock() {
            return self.guard(guard);
        }
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before trying, so that a release in between wakes
            // this task instead of being missed.
            released.as_mut().enable();
            if let Some(guard) = self.value.try_lock() {
                return self.guard(guard);
            }
            released.await;
        }
    }

    fn guard<'a>(&'a self, guard: parking_lot::MutexGuard<'a, T>) -> AsyncLockGuard<'a, T> {
        AsyncLockGuard { guard: Some(guard), released: &self.released }
    }
}

impl<T> Deref for AsyncLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<T> DerefMut for AsyncLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for AsyncLockGuard<'_, T> {
    fn drop(&mut self) {
        // Released before the waiter is woken: woken first, it could find
        // the lock still taken and wait again, with nobody left to wake it.
        drop(self.guard.take());
        self.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    /// The property tokio's fair mutex lacks: a release frees the lock at
    /// once, even while a task waits for it.
    #[tokio::test]
    async fn a_released_lock_is_free_at_once_though_a_task_waits() {
        let shared = Arc::new(AsyncLock::<u32>::default());
        let held = shared.lock().await;
        let waiter = tokio::spawn({
            let shared = shared.clone();
            async move { *shared.lock().await += 1 }
        });
        // The waiter runs, finds the lock taken and waits.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let again = shared.lock().now_or_never().expect("free at once after its release");
        drop(again);
        // The waiter was woken by the release and takes it in turn.
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("the waiter was woken").unwrap();
        assert_eq!(*shared.lock().await, 1);
    }

    /// No waiter is forgotten: many tasks, each holding the lock across
    /// yields, all finish.
    #[tokio::test]
    async fn every_waiter_gets_the_lock_in_the_end() {
        let shared = Arc::new(AsyncLock::<u32>::default());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let mut count = shared.lock().await;
                        tokio::task::yield_now().await;
                        *count += 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("every task finishes").unwrap();
        }
        assert_eq!(*shared.lock().await, 20 * 50);
    }
}
