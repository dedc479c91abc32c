//! Whether a connection's bytes moved, as the idle sweep ([`crate::net::idle`])
//! sees it: a flag set on every read and write, and a count of quiet sweeps.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One connection's activity, as the sweeps see it.
#[derive(Debug)]
pub struct Activity {
    /// Set whenever bytes move either way (and when the connection is
    /// made); cleared by each sweep.
    moved: AtomicBool,
    /// Sweeps in a row that found no bytes moved. Only the sweeping task
    /// writes it.
    quiet_sweeps: AtomicU32,
    /// A sweep found the connection idle for the timeout, and its task has
    /// not acted on it yet.
    expired: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { moved: AtomicBool::new(true), quiet_sweeps: AtomicU32::new(0), expired: AtomicBool::new(false) }
    }
}

impl Activity {
    /// Records that bytes moved: one store, no clock.
    pub fn mark(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Notes that the connection passed no bytes for the timeout, for its
    /// task to act on (`take_expired`).
    pub fn expire(&self) {
        self.expired.store(true, Ordering::Relaxed);
    }

    /// Whether the connection expired since the last call.
    pub fn take_expired(&self) -> bool {
        self.expired.swap(false, Ordering::Relaxed)
    }

    /// One sweep's look. True once, at the `limit`th sweep in a row that
    /// found no bytes moved since the one before.
    pub(in crate::net) fn sweep(&self, limit: u32) -> bool {
        if self.moved.swap(false, Ordering::Relaxed) {
            self.quiet_sweeps.store(0, Ordering::Relaxed);
            return false;
        }
        let quiet = self.quiet_sweeps.load(Ordering::Relaxed).saturating_add(1);
        self.quiet_sweeps.store(quiet, Ordering::Relaxed);
        quiet == limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection is reported once, at the `limit`th quiet sweep in a
    /// row; bytes moving start the count again.
    #[test]
    fn a_connection_is_reported_once_after_limit_quiet_sweeps() {
        let activity = Activity::default();
        // Made just now: that counts as activity.
        assert!(!activity.sweep(3));
        assert!(!activity.sweep(3));
        assert!(!activity.sweep(3));
        activity.mark();
        assert!(!activity.sweep(3), "bytes moved: the count starts again");
        assert!(!activity.sweep(3));
        assert!(!activity.sweep(3));
        assert!(activity.sweep(3), "three quiet sweeps in a row");
        assert!(!activity.sweep(3), "reported once");
        assert!(!activity.sweep(3));
    }
}
