//! The output memory of a whole host (`--output-memory`): how many bytes
//! the guests wrote that the peers' sockets have not taken yet, summed over
//! every connection, against the operator's limit. A write that would pass
//! it is refused, so no guest, however many connections it writes to, can
//! make the host hold more.
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The host's queued output and its limit.
#[derive(Debug)]
pub struct OutputBudget {
    limit: usize,
    /// Bytes queued in every connection's output.
    used: AtomicUsize,
    /// Connections waiting for room, to tell `on-drain` to their guests.
    waiting: AtomicUsize,
    /// Wakes them when queued output was sent.
    freed: Notify,
}

impl OutputBudget {
    /// A host that holds at most `limit` bytes of output.
    pub fn new(limit: usize) -> Self {
        OutputBudget { limit, used: AtomicUsize::new(0), waiting: AtomicUsize::new(0), freed: Notify::new() }
    }

    /// The most the host holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// Counts `bytes` more held. The caller checked `room` first: writers
    /// on other reactors may take the same room at once, so the sum can
    /// pass the limit by what they write at that moment, never more.
    pub(super) fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` sent or dropped, and wakes connections waiting for
    /// room.
    pub(super) fn give_back(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        // SeqCst here and in `until_room`: each side writes one counter and
        // then reads the other, and one of them must see the other's write.
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Waits until some output was sent somewhere (or returns at once if
    /// there is room now).
    pub(super) async fn until_room(&self) {
        let freed = self.freed.notified();
        let mut freed = std::pin::pin!(freed);
        // Registered before looking, so that room freed in between wakes
        // this waiter instead of being missed.
        freed.as_mut().enable();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.limit <= self.used.load(Ordering::SeqCst) {
            freed.await;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    /// Room shrinks as output is taken and grows as it is given back; a
    /// waiter for room is woken by the first bytes given back.
    #[tokio::test]
    async fn room_follows_what_is_held_and_waiters_wake_when_it_frees() {
        let budget = Arc::new(OutputBudget::new(100));
        budget.take(60);
        assert_eq!(budget.room(), 40);
        assert!(budget.until_room().now_or_never().is_some(), "room now: no wait");
        budget.take(40);
        assert_eq!(budget.room(), 0);
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.until_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room: it waits");
        budget.give_back(10);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        assert_eq!(budget.room(), 10);
    }
}
