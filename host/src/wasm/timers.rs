//! An instance's timers (`evconn:listener/timers`): which are pending, when
//! each is due, and a wait for the next one. The guest starts and cancels
//! them from its imports; the worker that runs the instance waits here and
//! calls `on-timer` for each that comes due (`serve::worker`).
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::base::ids::IdMap;
use crate::base::sync::lock;

/// Names a timer of one instance; never reused while it lives.
pub type TimerId = u64;

/// The shortest period of a repeating timer.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);

/// The farthest a timer may be set: longer is taken as this (a century).
const FARTHEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a timer was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The instance has as many timers as `--max-timers` allows.
    #[error("as many timers as the operator allows")]
    LimitReached,
    /// A repeating timer's period is under [`MIN_PERIOD`].
    #[error("a repeating timer's period is under a millisecond")]
    PeriodTooShort,
}

/// One instance's timers, shared by the instance's store and the worker
/// that fires them.
#[derive(Debug)]
pub struct Timers {
    schedule: Mutex<Schedule>,
    /// How many timers are pending: read without the lock, so that a
    /// connection whose instance has none pays nothing to know it.
    pending: AtomicUsize,
    /// Wakes the waiter in `next_due` when the schedule changes.
    changed: Notify,
    /// The component's `evconn_timers_active`.
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct Schedule {
    /// Pending timers by when they are due.
    due: BTreeSet<(Instant, TimerId)>,
    timers: IdMap<Timer>,
    last_id: TimerId,
    limit: usize,
    /// The instance is gone: nothing fires any more.
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    due: Instant,
    every: Option<Duration>,
}

impl Timers {
    /// No timers yet, and room for `limit`; each pending one counts in
    /// `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        Timers {
            schedule: Mutex::new(Schedule { limit, ..Schedule::default() }),
            pending: AtomicUsize::new(0),
            changed: Notify::new(),
            gauge,
        }
    }

    /// Starts a timer due `after` from now and, with `every`, each `every`
    /// after that.
    pub fn start(&self, after: Duration, every: Option<Duration>) -> Result<TimerId, TimerError> {
        if every.is_some_and(|every| every < MIN_PERIOD) {
            return Err(TimerError::PeriodTooShort);
        }
        let mut schedule = lock(&self.schedule);
        if schedule.timers.len() >= schedule.limit {
            return Err(TimerError::LimitReached);
        }
        schedule.last_id += 1;
        let id = schedule.last_id;
        let due = Instant::now() + after.min(FARTHEST);
        schedule.timers.insert(id, Timer { due, every: every.map(|every| every.min(FARTHEST)) });
        schedule.due.insert((due, id));
        self.pending.store(schedule.timers.len(), Ordering::Relaxed);
        self.gauge.inc();
        drop(schedule);
        self.changed.notify_one();
        Ok(id)
    }

    /// Stops a timer; whether it was pending.
    pub fn cancel(&self, id: TimerId) -> bool {
        let mut schedule = lock(&self.schedule);
        let Some(timer) = schedule.timers.remove(&id) else { return false };
        schedule.due.remove(&(timer.due, id));
        self.pending.store(schedule.timers.len(), Ordering::Relaxed);
        self.gauge.dec();
        true
    }

    /// Whether any timer is pending.
    pub fn any_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// Waits until a timer is due and returns its id, having forgotten a
    /// one-shot timer and set a repeating one's next time; `None` once the
    /// instance is gone. Cancel-safe: nothing is taken from the schedule
    /// unless the id is returned.
    pub async fn next_due(&self) -> Option<TimerId> {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before looking, so that a timer started in between
            // is seen now or wakes this wait.
            changed.as_mut().enable();
            let next = {
                let mut schedule = lock(&self.schedule);
                if schedule.closed {
                    return None;
                }
                let now = Instant::now();
                match schedule.due.first().copied() {
                    Some((due, id)) if due <= now => return Some(self.fire(&mut schedule, id, due, now)),
                    next => next.map(|(due, _)| due),
                }
            };
            match next {
                Some(due) => tokio::select! {
                    // The earliest timer is due.
                    () = tokio::time::sleep_until(due.into()) => {}
                    // Started, cancelled, or the instance gone: look again.
                    () = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }

    /// Takes timer `id`, due at `due`, off the schedule, or sets its next
    /// time if it repeats: `every` after it was due, or after `now` if it is
    /// more than a period late (so a late callback causes no burst).
    fn fire(&self, schedule: &mut Schedule, id: TimerId, due: Instant, now: Instant) -> TimerId {
        schedule.due.remove(&(due, id));
        let timer = schedule.timers.get_mut(&id).expect("a due timer is pending");
        match timer.every {
            Some(every) => {
                let next = due + every;
                timer.due = if next > now { next } else { now + every };
                schedule.due.insert((timer.due, id));
            }
            None => {
                schedule.timers.remove(&id);
                self.pending.store(schedule.timers.len(), Ordering::Relaxed);
                self.gauge.dec();
            }
        }
        id
    }

    /// The instance is gone: every timer ends, and the waiter is told.
    pub fn close(&self) {
        let mut schedule = lock(&self.schedule);
        if schedule.closed {
            return;
        }
        schedule.closed = true;
        self.gauge.dec_by(schedule.timers.len() as i64);
        schedule.timers = IdMap::default();
        schedule.due.clear();
        self.pending.store(0, Ordering::Relaxed);
        drop(schedule);
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Timers fire in the order they are due, a one-shot once and a
    /// repeating one again each period; cancelled ones do not fire.
    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order_and_repeat() {
        let gauge = Gauge::default();
        let timers = Timers::new(10, gauge.clone());
        let late = timers.start(30 * MS, None).unwrap();
        let every = timers.start(10 * MS, Some(10 * MS)).unwrap();
        let cancelled = timers.start(5 * MS, None).unwrap();
        assert_eq!(gauge.get(), 3);
        assert!(timers.cancel(cancelled));
        assert!(!timers.cancel(cancelled), "cancelled once");
        let started = tokio::time::Instant::now();
        let mut fired = Vec::new();
        for _ in 0..4 {
            let id = timers.next_due().await.unwrap();
            fired.push((id, (tokio::time::Instant::now() - started).as_millis()));
        }
        // Never early; tokio's clock rounds a deadline up to its next
        // millisecond.
        let expected = [(every, 10), (every, 20), (late, 30), (every, 30)];
        for ((id, at), (expected_id, due)) in fired.iter().zip(expected) {
            assert_eq!(*id, expected_id, "{fired:?}");
            assert!((due..=due + 1).contains(at), "timer {id} fired at {at} ms, due at {due}: {fired:?}");
        }
        assert_eq!(gauge.get(), 1, "the one-shot timer is gone once fired");
        assert!(timers.any_pending());
        assert!(timers.cancel(every));
        assert!(!timers.any_pending());
        assert!(timers.next_due().now_or_never().is_none(), "nothing pending: it waits");
    }

    /// Past the limit nothing starts; a period under a millisecond is
    /// refused; closing ends every timer and the wait.
    #[tokio::test]
    async fn limits_and_closing() {
        let gauge = Gauge::default();
        let timers = Timers::new(2, gauge.clone());
        timers.start(Duration::from_secs(60), None).unwrap();
        timers.start(Duration::from_secs(60), Some(Duration::from_secs(1))).unwrap();
        assert_eq!(timers.start(MS, None), Err(TimerError::LimitReached));
        assert_eq!(Timers::new(2, Gauge::default()).start(MS, Some(MS / 2)), Err(TimerError::PeriodTooShort));
        timers.close();
        assert_eq!(gauge.get(), 0);
        assert_eq!(timers.next_due().await, None);
        // The longest a guest can ask for does not overflow the clock.
        let far = Timers::new(1, Gauge::default());
        far.start(Duration::from_nanos(u64::MAX), Some(Duration::from_nanos(u64::MAX))).unwrap();
    }
}
