//! The epoch ticker: a thread per engine that advances its epoch, which is
//! how a running callback is timed (`--guest-timeout`) and made to yield to
//! the reactor. It ticks every `EPOCH_TICK` while some guest runs across
//! ticks, and only at an idle pace (at most `IDLE_TICK`) while none does:
//! each tick wakes a thread on a CPU the reactors use, and a round trip it
//! lands in takes that much longer. At 100 ticks a second that showed in the
//! tail of the latency of short callbacks.
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::base::sync::lock;

/// How often the engine's epoch advances while a guest runs across ticks;
/// `--guest-timeout` is checked at this granularity, and such a guest
/// yields to the reactor this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The longest pause between ticks while no guest runs across them. A
/// callback that starts just after such a tick runs up to the pause before
/// its first tick (its first yield, and the first look at its timeout);
/// from then on it gets one every `EPOCH_TICK`.
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// The pause between ticks while no guest runs across them, for callbacks
/// limited to `guest_timeout`: a quarter of it, so that a short timeout is
/// still looked at soon enough, between `EPOCH_TICK` and `IDLE_TICK`.
pub fn idle_pace(guest_timeout: Duration) -> Duration {
    (guest_timeout / 4).clamp(EPOCH_TICK, IDLE_TICK)
}

/// How many times a tick found a guest running, so far.
static GUEST_TICKS: AtomicU64 = AtomicU64::new(0);

/// Tickers in a long pause, which a guest found running must cut short.
static IDLE_TICKERS: AtomicUsize = AtomicUsize::new(0);

/// The ticker threads running, to be woken from a long pause.
static TICKERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// Called from the epoch deadline callback: a guest was running when the
/// epoch advanced, so the tickers take the short pace, from the last tick.
pub fn guest_ran_at_tick() {
    GUEST_TICKS.fetch_add(1, Ordering::SeqCst);
    // Read after the count: a ticker counts itself idle before it reads the
    // count, so either it sees this tick's count or this sees it idle.
    if IDLE_TICKERS.load(Ordering::SeqCst) > 0 {
        for thread in lock(&TICKERS).iter() {
            thread.unpark();
        }
    }
}

/// Starts a thread that calls `tick` every `EPOCH_TICK` while guests run
/// across ticks and every `idle` otherwise, until `tick` returns false (its
/// engine is gone).
pub fn spawn(idle: Duration, tick: impl FnMut() -> bool + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        lock(&TICKERS).push(std::thread::current());
        run(idle, tick);
        let me = std::thread::current().id();
        lock(&TICKERS).retain(|thread| thread.id() != me);
    })?;
    Ok(())
}

fn run(idle: Duration, mut tick: impl FnMut() -> bool) {
    let mut seen = GUEST_TICKS.load(Ordering::SeqCst);
    loop {
        // A tick finds a guest running after it is made: these are the
        // guests the last tick found.
        let count = GUEST_TICKS.load(Ordering::SeqCst);
        let busy = count != seen;
        seen = count;
        if !tick() {
            return;
        }
        if busy {
            std::thread::sleep(EPOCH_TICK);
            continue;
        }
        let ticked = Instant::now();
        let mut pause = idle;
        IDLE_TICKERS.fetch_add(1, Ordering::SeqCst);
        loop {
            if GUEST_TICKS.load(Ordering::SeqCst) != seen {
                pause = EPOCH_TICK;
            }
            let elapsed = ticked.elapsed();
            if elapsed >= pause {
                break;
            }
            std::thread::park_timeout(pause - elapsed);
        }
        IDLE_TICKERS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    use super::*;

    /// Idle, the ticker ticks at the long pace; while guests keep being
    /// interrupted, at the short one. (Bounds are loose: the machine may be
    /// busy, and a late wake-up only lowers the count.)
    #[test]
    fn ticks_slowly_when_idle_and_quickly_while_guests_run_across_ticks() {
        let ticks = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (ticks.clone(), stop.clone());
        spawn(IDLE_TICK, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            !stopped.load(Ordering::SeqCst)
        })
        .unwrap();

        std::thread::sleep(Duration::from_millis(550));
        let idle = ticks.swap(0, Ordering::SeqCst);
        // Each tick of a running guest notes it, as the deadline callback does.
        let busy_until = Instant::now() + Duration::from_millis(550);
        while Instant::now() < busy_until {
            guest_ran_at_tick();
            std::thread::sleep(Duration::from_millis(2));
        }
        let busy = ticks.swap(0, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);

        assert!((1..=8).contains(&idle), "{idle} ticks in 550 ms idle, at one per {IDLE_TICK:?}");
        assert!(busy >= 20, "{busy} ticks in 550 ms with a guest running, at one per {EPOCH_TICK:?}");
    }

    #[test]
    fn the_idle_pace_is_a_quarter_of_the_timeout_within_bounds() {
        assert_eq!(idle_pace(Duration::from_secs(1)), IDLE_TICK);
        assert_eq!(idle_pace(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(idle_pace(Duration::from_millis(20)), EPOCH_TICK);
    }
}
