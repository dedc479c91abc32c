//! What happened to one component in a host: the handles of its metrics,
//! resolved for its labels once, which the log line at stop reads too.
use std::io;
use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::counts::Counts;
use super::labels::{
    AcceptErrorLabels, Callback, CloseReason, ComponentLabels, HandshakeLabels, HandshakeOutcome, KeyvalueLabels,
    KeyvalueOp, KeyvalueOpLabels, KeyvalueOutcome,
};
use super::latency::Latency;

/// Everything a host counts for one component (see [`super::Metrics`]).
#[derive(Debug)]
pub struct Stats {
    /// The counters labelled by component alone.
    pub counts: Counts,
    /// Connections accepted and not yet ended.
    pub active: Gauge,
    /// Timers the component's instances have started and that have not
    /// ended yet.
    pub timers: Gauge,
    /// The linear memory its live instances hold, in bytes: it only grows
    /// while an instance lives (WebAssembly memories never shrink), and
    /// falls when one is dropped.
    pub guest_memory: Gauge,
    /// Connections ended, by `CloseReason::ALL` order.
    pub(super) closed: [Counter; CloseReason::ALL.len()],
    /// How long callbacks ran, by `Callback::ALL` order.
    pub(super) callbacks: [Latency; Callback::ALL.len()],
    /// Store calls: made when first counted.
    pub(super) keyvalue: KeyvalueSeries,
    /// TLS handshakes: made when first counted.
    pub(super) handshakes: HandshakeSeries,
    /// Failed accepts reported to the guest, by errno: resolved when one
    /// happens, which is rare.
    pub(super) accept_errors: Family<AcceptErrorLabels, Counter>,
    pub(super) component: String,
}

/// A component's `wasi:keyvalue` series, each made on its first count:
/// most components never call the store, and 50 series of zeros each
/// would bury the rest of `/metrics`.
#[derive(Debug)]
pub(super) struct KeyvalueSeries {
    call_family: Family<KeyvalueLabels, Counter>,
    duration_family: Family<KeyvalueOpLabels, Latency>,
    calls: [[OnceLock<Counter>; KeyvalueOutcome::ALL.len()]; KeyvalueOp::ALL.len()],
    durations: [OnceLock<Latency>; KeyvalueOp::ALL.len()],
}

impl KeyvalueSeries {
    pub(super) fn new(
        call_family: Family<KeyvalueLabels, Counter>,
        duration_family: Family<KeyvalueOpLabels, Latency>,
    ) -> Self {
        KeyvalueSeries { call_family, duration_family, calls: Default::default(), durations: Default::default() }
    }
}

/// A component's TLS handshake series, each made on its first count, as
/// the store's are: most components serve no TLS, and their `/metrics`
/// should not say they had zero handshakes.
#[derive(Debug)]
pub(super) struct HandshakeSeries {
    count_family: Family<HandshakeLabels, Counter>,
    duration_family: Family<ComponentLabels, Latency>,
    counts: [OnceLock<Counter>; HandshakeOutcome::ALL.len()],
    durations: OnceLock<Latency>,
}

impl HandshakeSeries {
    pub(super) fn new(
        count_family: Family<HandshakeLabels, Counter>,
        duration_family: Family<ComponentLabels, Latency>,
    ) -> Self {
        HandshakeSeries { count_family, duration_family, counts: Default::default(), durations: OnceLock::new() }
    }
}

/// What a connection counts where its socket reads and the guest writes.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Bytes read from the peer and handed to the guest.
    pub received: Counter,
    /// Bytes written by the guest and taken by the socket.
    pub sent: Counter,
    /// Writes refused because the output caps were reached.
    pub refused: Counter,
}

impl Stats {
    /// The byte counters, for a connection to keep.
    pub fn traffic(&self) -> Traffic {
        let counts = &self.counts;
        Traffic { received: counts.received.clone(), sent: counts.sent.clone(), refused: counts.writes_refused.clone() }
    }

    /// The counter of connections that ended for `reason`.
    pub fn closed(&self, reason: CloseReason) -> &Counter {
        &self.closed[reason as usize]
    }

    /// The durations of `callback`.
    pub fn callback(&self, callback: Callback) -> &Latency {
        &self.callbacks[callback as usize]
    }

    /// Counts a store call that took `duration` and ended with `outcome`.
    pub fn keyvalue(&self, op: KeyvalueOp, outcome: KeyvalueOutcome, duration: std::time::Duration) {
        let series = &self.keyvalue;
        let calls = series.calls[op as usize][outcome as usize].get_or_init(|| {
            let labels = KeyvalueLabels { component: self.component.clone(), op: op.name(), outcome: outcome.name() };
            series.call_family.get_or_create_owned(&labels)
        });
        calls.inc();
        let durations = series.durations[op as usize].get_or_init(|| {
            let labels = KeyvalueOpLabels { component: self.component.clone(), op: op.name() };
            series.duration_family.get_or_create_owned(&labels)
        });
        durations.observe(duration);
    }

    /// How many store calls `op` ended with `outcome`.
    pub fn keyvalue_count(&self, op: KeyvalueOp, outcome: KeyvalueOutcome) -> u64 {
        self.keyvalue.calls[op as usize][outcome as usize].get().map_or(0, Counter::get)
    }

    /// Counts a TLS handshake that ended with `outcome` after `duration`;
    /// only finished ones count in the durations, so that timeouts and
    /// clients that never finish do not drown them.
    pub fn tls_handshake(&self, outcome: HandshakeOutcome, duration: std::time::Duration) {
        let series = &self.handshakes;
        let count = series.counts[outcome as usize].get_or_init(|| {
            let labels = HandshakeLabels { component: self.component.clone(), outcome: outcome.name() };
            series.count_family.get_or_create_owned(&labels)
        });
        count.inc();
        if outcome == HandshakeOutcome::Ok {
            let durations = series.durations.get_or_init(|| {
                let labels = ComponentLabels { component: self.component.clone() };
                series.duration_family.get_or_create_owned(&labels)
            });
            durations.observe(duration);
        }
    }

    /// How many TLS handshakes ended with `outcome`.
    pub fn tls_handshake_count(&self, outcome: HandshakeOutcome) -> u64 {
        self.handshakes.counts[outcome as usize].get().map_or(0, Counter::get)
    }

    /// Counts a failed `accept()` reported to the guest.
    pub fn accept_error(&self, error: &io::Error) {
        let labels = AcceptErrorLabels { component: self.component.clone(), errno: errno_name(error) };
        self.accept_errors.get_or_create(&labels).inc();
    }

    /// One line with every count, for the log.
    pub fn summary(&self) -> String {
        let mut pairs = self.counts.pairs();
        pairs.push(("idle_timeouts", self.closed(CloseReason::IdleTimeout).get()));
        pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(" ")
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

    /// The TLS series appear once a handshake is counted, and only the
    /// outcomes seen; durations count finished handshakes alone.
    #[test]
    fn tls_handshakes_show_once_counted() {
        let metrics = super::super::Metrics::default();
        let stats = metrics.component(&"echo".into());
        assert!(!metrics.encode().contains("evconn_tls_"), "no handshake yet:\n{}", metrics.encode());
        stats.tls_handshake(HandshakeOutcome::Ok, std::time::Duration::from_millis(3));
        stats.tls_handshake(HandshakeOutcome::Ok, std::time::Duration::from_millis(5));
        stats.tls_handshake(HandshakeOutcome::Timeout, std::time::Duration::from_secs(10));
        let text = metrics.encode();
        for line in [
            "# TYPE evconn_tls_handshakes counter",
            "evconn_tls_handshakes_total{component=\"echo\",outcome=\"ok\"} 2",
            "evconn_tls_handshakes_total{component=\"echo\",outcome=\"timeout\"} 1",
            "# TYPE evconn_tls_handshake_duration_seconds histogram",
            "evconn_tls_handshake_duration_seconds_count{component=\"echo\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("outcome=\"failed\""), "an outcome not seen has no series:\n{text}");
        assert_eq!(stats.tls_handshake_count(HandshakeOutcome::Ok), 2);
        assert_eq!(stats.tls_handshake_count(HandshakeOutcome::Failed), 0);
    }

    /// The log line names every count.
    #[test]
    fn the_summary_names_every_count() {
        let metrics = super::super::Metrics::default();
        let stats = metrics.component(&"echo".into());
        stats.counts.traps.inc();
        stats.closed(CloseReason::IdleTimeout).inc();
        let summary = stats.summary();
        for pair in ["accepted=0", "traps=1", "guest_errors=0", "instances=0", "idle_timeouts=1", "reloads_refused=0"] {
            assert!(summary.split(' ').any(|word| word == pair), "no {pair} in {summary}");
        }
    }
}
