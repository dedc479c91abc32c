//! What happened to one component in a host: the handles of its metrics,
//! resolved for its labels once, which the log line at stop reads too.
use std::io;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::connection::CloseReason;
use crate::latency::Latency;
use crate::metrics::AcceptErrorLabels;

/// Everything a host counts for one component (see [`crate::metrics`]).
#[derive(Debug)]
pub struct Stats {
    /// Connections accepted and handed to a guest.
    pub accepted: Counter,
    /// Connections accepted and not yet ended.
    pub active: Gauge,
    /// Connections ended, by `CloseReason::ALL` order.
    pub(crate) closed: [Counter; CloseReason::ALL.len()],
    /// Bytes to and from peers; each connection holds a copy.
    pub traffic: Traffic,
    /// How long callbacks ran, by `Callback::ALL` order.
    pub(crate) callbacks: [Latency; Callback::ALL.len()],
    /// Failed accepts reported to the guest, by errno: resolved when one
    /// happens, which is rare.
    pub(crate) accept_errors: Family<AcceptErrorLabels, Counter>,
    pub(crate) component: String,
    /// Callbacks that trapped, including those that ran out of time.
    pub traps: Counter,
    /// Callbacks that returned an error.
    pub guest_errors: Counter,
    /// Instances made: the first, replacements after traps (shared model),
    /// or one per connection.
    pub instances: Counter,
    /// New versions loaded by hot reload.
    pub reloads: Counter,
    /// Reloads refused: the file did not load or the guest did not start.
    pub reloads_refused: Counter,
}

/// Bytes a connection moved, counted where its socket reads and writes.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Read from the peer and handed to the guest.
    pub received: Counter,
    /// Written by the guest and taken by the socket.
    pub sent: Counter,
}

/// The guest's exports, as the `callback` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Accept,
    Data,
    Event,
    AcceptError,
}

impl Callback {
    /// Every callback, in the order `Stats` keeps them.
    pub const ALL: [Callback; 4] = [Callback::Accept, Callback::Data, Callback::Event, Callback::AcceptError];

    /// The export's name in the WIT world.
    pub fn name(self) -> &'static str {
        match self {
            Callback::Accept => "on-accept",
            Callback::Data => "on-data",
            Callback::Event => "on-event",
            Callback::AcceptError => "on-accept-error",
        }
    }
}

impl Stats {
    /// The counter of connections that ended for `reason`.
    pub fn closed(&self, reason: CloseReason) -> &Counter {
        &self.closed[reason as usize]
    }

    /// The durations of `callback`.
    pub fn callback(&self, callback: Callback) -> &Latency {
        &self.callbacks[callback as usize]
    }

    /// Counts a failed `accept()` reported to the guest.
    pub fn accept_error(&self, error: &io::Error) {
        let labels = AcceptErrorLabels { component: self.component.clone(), errno: errno_name(error) };
        self.accept_errors.get_or_create(&labels).inc();
    }

    /// One line with the main counts, for the log.
    pub fn summary(&self) -> String {
        format!(
            "accepted={} traps={} guest_errors={} instances={} idle_timeouts={} reloads={} reloads_refused={}",
            self.accepted.get(),
            self.traps.get(),
            self.guest_errors.get(),
            self.instances.get(),
            self.closed(CloseReason::IdleTimeout).get(),
            self.reloads.get(),
            self.reloads_refused.get()
        )
    }
}

/// The symbolic name of an error `accept()` reports (the retried ones,
/// EINTR, EAGAIN and ECONNABORTED, never get here), or its number.
fn errno_name(error: &io::Error) -> String {
    let Some(errno) = error.raw_os_error() else { return "unknown".to_string() };
    let name = match errno {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EPERM => "EPERM",
        libc::EPROTO => "EPROTO",
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::EFAULT => "EFAULT",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        // Linux passes network errors of the new connection on to accept().
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENONET => "ENONET",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::ETIMEDOUT => "ETIMEDOUT",
        other => return other.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known errors get their symbolic name; others their number.
    #[test]
    fn names_errnos() {
        assert_eq!(errno_name(&io::Error::from_raw_os_error(libc::EMFILE)), "EMFILE");
        assert_eq!(errno_name(&io::Error::from_raw_os_error(libc::ENFILE)), "ENFILE");
        assert_eq!(errno_name(&io::Error::from_raw_os_error(4095)), "4095");
        assert_eq!(errno_name(&io::Error::other("no errno")), "unknown");
    }
}
