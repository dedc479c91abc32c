//! Where a worker's instance lives, the shared one or a connection's own,
//! and the pause before making a new one after traps.
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::worker::Worker;
use crate::base::backoff::Backoff;
use crate::base::sync::AsyncLock;
use crate::wasm::Instance;

/// Where one instance lives, and the lock its callbacks take: the worker's
/// shared one, or, under the per-connection model, one per accepted
/// connection, which the outbound connections its instance opens share.
/// An instance reaches its home (as its `Owner`) for what it asks of the
/// worker.
pub(super) struct Home {
    pub(super) worker: Weak<Worker>,
    pub(super) slot: AsyncLock<Slot>,
}

/// Where an instance lives: the worker's shared one, or a connection's own.
#[derive(Default)]
pub(super) struct Slot {
    /// `None` before the first callback and after a trap.
    pub(super) instance: Option<Instance>,
    /// Counts instances made in this slot.
    pub(super) generation: u64,
}

impl Slot {
    /// The current instance, if it is the one of `generation`.
    pub(super) fn current(&mut self, generation: u64) -> Option<&mut Instance> {
        self.instance.as_mut().filter(|i| i.generation() == generation)
    }
}

/// The pause before making an instance after a trap: none after a lone
/// trap, then [`Backoff`]'s pauses while traps come less than a second
/// apart, not counting the pause itself.
#[derive(Debug, Default)]
pub(super) struct TrapBackoff {
    last_trap: Option<Instant>,
    pause: Duration,
    backoff: Backoff,
}

impl TrapBackoff {
    /// Traps further apart than this (besides the pause) start over.
    const QUIET: Duration = Duration::from_secs(1);

    pub(super) fn record_trap(&mut self) {
        let now = Instant::now();
        // The pause the host imposed since the last trap does not count:
        // otherwise, once it reaches QUIET, a guest that traps at once on
        // every new instance would look quiet and the pause would start over.
        let recent = self.last_trap.is_some_and(|last| now - last < Self::QUIET + self.pause);
        self.pause = if recent {
            self.backoff.next()
        } else {
            self.backoff.reset();
            Duration::ZERO
        };
        self.last_trap = Some(now);
    }

    pub(super) fn pause(&self) -> Duration {
        match self.last_trap {
            Some(last) if last.elapsed() < Self::QUIET => self.pause,
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone trap costs no pause; traps in quick succession double it up to 1 s.
    #[test]
    fn trap_backoff_grows_only_while_traps_keep_coming() {
        let mut backoff = TrapBackoff::default();
        assert_eq!(backoff.pause(), Duration::ZERO);
        backoff.record_trap();
        assert_eq!(backoff.pause(), Duration::ZERO);
        let pauses: Vec<u128> = (0..9)
            .map(|_| {
                backoff.record_trap();
                backoff.pause().as_millis()
            })
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
