//! The pause after a failure that keeps happening: 10 ms, doubling to 1 s,
//! back to 10 ms after a success. The accept loops (the listeners' and the
//! `/metrics` endpoint's) pause so on a failed `accept()`, and a worker so
//! between instances that keep trapping.
use std::time::Duration;

/// The pauses after consecutive failures.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The pause after a first failure.
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    /// The longest pause.
    pub(crate) const MAX: Duration = Duration::from_secs(1);

    /// The pause after one more failure.
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// A success: the next failure pauses `FIRST` again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause doubles from 10 ms, stops at 1 s, and starts over after a success.
    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..9).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(10));
    }
}
