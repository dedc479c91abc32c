//! Counters of what happened to one component in a host, for logs and metrics.
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one and returns the new total.
    pub fn increment(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The current total.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything a host counts.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and handed to a guest.
    pub accepted: Counter,
    /// Callbacks that trapped, including those that ran out of time.
    pub traps: Counter,
    /// Callbacks that returned an error.
    pub guest_errors: Counter,
    /// Instances made after the first (shared model) or per connection.
    pub instances: Counter,
    /// Connections closed for passing no bytes for `--idle-timeout`.
    pub idle_timeouts: Counter,
    /// New versions loaded by hot reload.
    pub reloads: Counter,
    /// Reloads refused: the file did not load or the guest did not start.
    pub reloads_refused: Counter,
}

impl Stats {
    /// One line with every count, for the log.
    pub fn summary(&self) -> String {
        format!(
            "accepted={} traps={} guest_errors={} instances={} idle_timeouts={} reloads={} reloads_refused={}",
            self.accepted.get(),
            self.traps.get(),
            self.guest_errors.get(),
            self.instances.get(),
            self.idle_timeouts.get(),
            self.reloads.get(),
            self.reloads_refused.get()
        )
    }
}
