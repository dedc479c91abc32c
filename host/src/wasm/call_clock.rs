//! How long the running callback has run, for `--guest-timeout`: its time
//! since it started, less the turns it waited for after yielding to the
//! reactor at epoch ticks and the time it waited on a remote store.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ticker::EPOCH_TICK;

/// A callback yields at a tick only once it has run this long: half a tick,
/// so that one a tick finds young yields at the next.
pub(crate) const YIELD_AFTER: Duration = Duration::from_nanos(EPOCH_TICK.as_nanos() as u64 / 2);

/// How long the running callback (or instantiation) has run, for
/// `--guest-timeout`: its time since it started, less the turns it waited
/// for after yielding to the reactor at epoch ticks. How long those last
/// depends on the other connections, not on the guest; counted, they would
/// let a busy host trap callbacks that are short.
#[derive(Debug)]
pub(crate) struct CallClock {
    /// Run time is counted up to here: the callback's start or its last tick.
    counted_to: Instant,
    /// Run up to `counted_to`.
    ran: Duration,
    /// Time since `counted_to` the callback spent waiting on the store,
    /// which is not running.
    excluded: Duration,
    /// When the callback last resumed after a yield, in nanoseconds after
    /// `base`: set by the yield's future, which cannot reach the store.
    resumed: Arc<AtomicU64>,
    base: Instant,
}

impl CallClock {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        CallClock { counted_to: now, ran: Duration::ZERO, excluded: Duration::ZERO, resumed: Arc::default(), base: now }
    }

    /// A callback starts at `now`.
    pub(crate) fn start(&mut self, now: Instant) {
        self.counted_to = now;
        self.ran = Duration::ZERO;
        self.excluded = Duration::ZERO;
    }

    /// The callback waited `wait` on the store (a call to Redis), which the
    /// next tick does not count.
    pub(crate) fn exclude(&mut self, wait: Duration) {
        self.excluded += wait;
    }

    /// At an epoch tick at `now`: how long the callback has run, adding the
    /// time since its start, its last tick or its last resumption, whichever
    /// came last.
    pub(crate) fn tick(&mut self, now: Instant) -> Duration {
        let resumed = self.base + Duration::from_nanos(self.resumed.load(Ordering::Relaxed));
        let span = now.saturating_duration_since(resumed.max(self.counted_to));
        self.ran += span.saturating_sub(std::mem::take(&mut self.excluded));
        self.counted_to = now;
        self.ran
    }

    /// The pause at a tick: tokio's `yield_now`, which unlike a plain
    /// self-wake lets the reactor poll for I/O before this task runs again,
    /// so other connections are served between the guest's ticks; then
    /// notes when the callback runs again.
    pub(crate) fn yield_to_reactor(&self) -> impl Future<Output = ()> + Send + 'static {
        let (resumed, base) = (self.resumed.clone(), self.base);
        async move {
            tokio::task::yield_now().await;
            let nanos = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            resumed.store(nanos, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Ticks that do not yield count each stretch of running once; the turn
    /// waited for after a yield does not count.
    #[test]
    fn the_call_clock_counts_running_time_once() {
        let mut clock = CallClock::new();
        let start = clock.base + 100 * MS;
        clock.start(start);
        assert_eq!(clock.tick(start + 3 * MS), 3 * MS);
        assert_eq!(clock.tick(start + 13 * MS), 13 * MS, "the first 3 ms are not counted again");
        // Yielded at 13 ms, resumed at 40 ms: the 27 ms between do not count.
        clock.resumed.store((140 * MS).as_nanos() as u64, Ordering::Relaxed);
        assert_eq!(clock.tick(start + 50 * MS), 23 * MS);
        // Waiting on the store does not count either.
        clock.exclude(5 * MS);
        assert_eq!(clock.tick(start + 60 * MS), 23 * MS + 5 * MS);
        // The next callback starts from nothing.
        clock.exclude(MS);
        clock.start(start + 60 * MS);
        assert_eq!(clock.tick(start + 61 * MS), MS);
    }
}
