//! Idle timeouts (`--idle-timeout`) by sweeping: one task looks over every
//! open connection a few times per timeout, instead of a timer in each
//! connection's task and a clock read on every read and write.
//!
//! A timer per connection cost every round trip a timer-wheel scan when its
//! reactor parked, and every read and write a clock read: about 530 of the
//! 10,300 instructions of a 64-byte echo's round trip (callgrind).
use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::OpenConnections;

/// The longest gap between sweeps: how late a long timeout may fire.
const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Sweeps per timeout, at least: a short timeout fires up to a quarter of
/// itself late, never early.
const SWEEPS_PER_TIMEOUT: u32 = 4;

/// The shortest gap between sweeps, for timeouts of a few milliseconds.
const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(1);

/// How often to sweep for `timeout`, and after how many quiet sweeps in a
/// row a connection has passed no bytes for at least `timeout`.
///
/// Bytes that move at time t are seen by the first sweep after t; the
/// `limit`th sweep after that one comes at least `limit` periods later,
/// which is at least `timeout`, and less than one period more than that
/// after t. So a timeout fires between `timeout` and `timeout` plus a
/// period (a quarter of it, at most a second) after the last byte.
fn schedule(timeout: Duration) -> (Duration, u32) {
    let period = (timeout / SWEEPS_PER_TIMEOUT).clamp(MIN_SWEEP_PERIOD, MAX_SWEEP_PERIOD);
    let limit = timeout.as_nanos().div_ceil(period.as_nanos()).max(1);
    (period, u32::try_from(limit).unwrap_or(u32::MAX))
}

/// Tells each open connection that has passed no bytes for `timeout` so
/// (`Connection::expire_idle`); its task then tells the guest and closes it.
/// Runs until dropped.
pub async fn sweep(open: Arc<OpenConnections>, timeout: Duration) {
    let (period, limit) = schedule(timeout);
    loop {
        // A sleep per sweep, not an interval: an interval that fell behind
        // would sweep in a burst and count quiet periods that were short.
        tokio::time::sleep(period).await;
        open.for_each(|conn| {
            if conn.activity().sweep(limit) {
                conn.expire_idle();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeout is always covered by `limit` periods, and overshot by
    /// less than one; short timeouts get four sweeps, long ones a sweep a
    /// second.
    #[test]
    fn sweeps_cover_the_timeout_and_overshoot_it_by_less_than_a_period() {
        for ms in [1u64, 2, 3, 7, 100, 250, 300, 999, 1_000, 4_001, 60_000, 300_000, 86_400_000] {
            let timeout = Duration::from_millis(ms);
            let (period, limit) = schedule(timeout);
            assert!(period * limit >= timeout, "{timeout:?}: {limit} x {period:?} falls short");
            assert!(period * (limit - 1) < timeout, "{timeout:?}: {limit} x {period:?} overshoots by a period");
            assert!(period <= MAX_SWEEP_PERIOD && period >= MIN_SWEEP_PERIOD, "{timeout:?}: period {period:?}");
            assert!(period <= timeout / 4 || period == MIN_SWEEP_PERIOD, "{timeout:?}: period {period:?}");
        }
        assert_eq!(schedule(Duration::from_millis(300)), (Duration::from_millis(75), 4));
        assert_eq!(schedule(Duration::from_secs(300)), (Duration::from_secs(1), 300));
    }
}
