//! The host's metrics: one family per metric, labelled by component, in a
//! prometheus-client registry that `/metrics` encodes. Each component's
//! handles are resolved once, into its [`Stats`], so counting never looks up
//! a label set.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::counts::{CountFamilies, PerComponent, registered};
use super::labels::{
    AcceptErrorLabels, Callback, CallbackLabels, CloseReason, ClosedLabels, ComponentLabels, HandshakeLabels,
    KeyvalueLabels, KeyvalueOpLabels,
};
use super::latency::Latency;
use super::stats::{HandshakeSeries, KeyvalueSeries, Stats};
use crate::base::sync::lock;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family of a host, the registry that encodes them, and each
/// component's handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counts: CountFamilies,
    active: PerComponent<Gauge>,
    timers: PerComponent<Gauge>,
    guest_memory: PerComponent<Gauge>,
    closed: Family<ClosedLabels, Counter>,
    accept_errors: Family<AcceptErrorLabels, Counter>,
    callbacks: Family<CallbackLabels, Latency>,
    keyvalue_calls: Family<KeyvalueLabels, Counter>,
    keyvalue_durations: Family<KeyvalueOpLabels, Latency>,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_durations: PerComponent<Latency>,
    /// Each component's handles, by name: versions of a component that hot
    /// reload swaps in add to the same counts.
    components: Mutex<BTreeMap<Arc<str>, Arc<Stats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        Metrics {
            counts: CountFamilies::register(r),
            active: registered(r, "evconn_connections_active", "Connections accepted and not yet ended", None),
            timers: registered(r, "evconn_timers_active", "Timers started by guests and not yet ended", None),
            guest_memory: registered(
                r,
                "evconn_guest_memory",
                "Linear memory held by the component's live instances",
                Some(Unit::Bytes),
            ),
            closed: registered(r, "evconn_connections_closed", "Connections ended, by what ended them", None),
            accept_errors: registered(
                r,
                "evconn_accept_errors",
                "Failed accept() calls reported to the guest, by errno",
                None,
            ),
            callbacks: registered(r, "evconn_callback_duration", "How long guest callbacks ran", Some(Unit::Seconds)),
            keyvalue_calls: registered(
                r,
                "evconn_keyvalue_operations",
                "wasi:keyvalue calls, by function and outcome",
                None,
            ),
            keyvalue_durations: registered(
                r,
                "evconn_keyvalue_duration",
                "How long wasi:keyvalue calls took, waiting on the store included",
                Some(Unit::Seconds),
            ),
            handshakes: registered(r, "evconn_tls_handshakes", "TLS handshakes, by how they ended", None),
            handshake_durations: registered(
                r,
                "evconn_tls_handshake_duration",
                "How long TLS handshakes that finished took",
                Some(Unit::Seconds),
            ),
            components: Mutex::default(),
            registry,
        }
    }
}

impl Metrics {
    /// The handles of the component called `name`; every series it has
    /// appears, at zero, from its first call on.
    pub fn component(&self, name: &Arc<str>) -> Arc<Stats> {
        lock(&self.components).entry(name.clone()).or_insert_with(|| Arc::new(self.resolve(name))).clone()
    }

    /// Every component's handles, by name.
    pub fn components(&self) -> Vec<(Arc<str>, Arc<Stats>)> {
        lock(&self.components).iter().map(|(name, stats)| (name.clone(), stats.clone())).collect()
    }

    fn resolve(&self, component: &str) -> Stats {
        let labels = ComponentLabels { component: component.to_string() };
        let closed = |reason: CloseReason| ClosedLabels { component: component.to_string(), reason: reason.name() };
        let callback =
            |callback: Callback| CallbackLabels { component: component.to_string(), callback: callback.name() };
        Stats {
            counts: self.counts.of(&labels),
            active: self.active.get_or_create_owned(&labels),
            timers: self.timers.get_or_create_owned(&labels),
            guest_memory: self.guest_memory.get_or_create_owned(&labels),
            closed: CloseReason::ALL.map(|reason| self.closed.get_or_create_owned(&closed(reason))),
            callbacks: Callback::ALL.map(|c| self.callbacks.get_or_create_owned(&callback(c))),
            keyvalue: KeyvalueSeries::new(self.keyvalue_calls.clone(), self.keyvalue_durations.clone()),
            handshakes: HandshakeSeries::new(self.handshakes.clone(), self.handshake_durations.clone()),
            accept_errors: self.accept_errors.clone(),
            component: component.to_string(),
        }
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encoding into a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two components count apart; the text names each series with its
    /// labels and units, and ends as OpenMetrics requires.
    #[test]
    fn components_count_apart() {
        let metrics = Metrics::default();
        let echo = metrics.component(&"echo".into());
        let probe = metrics.component(&"probe".into());
        echo.counts.accepted.inc();
        echo.traffic().received.inc_by(5);
        echo.closed(CloseReason::PeerClosed).inc();
        probe.accept_error(&std::io::Error::from_raw_os_error(libc::EMFILE));
        let text = metrics.encode();
        for line in [
            "evconn_connections_accepted_total{component=\"echo\"} 1",
            "evconn_connections_accepted_total{component=\"probe\"} 0",
            "evconn_received_bytes_total{component=\"echo\"} 5",
            "evconn_connections_closed_total{component=\"echo\",reason=\"peer_closed\"} 1",
            "evconn_connections_closed_total{component=\"echo\",reason=\"trap\"} 0",
            "evconn_accept_errors_total{component=\"probe\",errno=\"EMFILE\"} 1",
            "evconn_callback_duration_seconds_count{component=\"probe\",callback=\"on-accept-error\"} 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(Arc::ptr_eq(&echo, &metrics.component(&"echo".into())), "one set of handles per name");
    }

    /// Every metric the registry holds has a row in the README's table, so
    /// a metric added here is documented in the same change.
    #[test]
    fn the_readme_documents_every_metric() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let metrics = Metrics::default();
        // A family shows only once it has a series: give each one.
        let stats = metrics.component(&"x".into());
        stats.accept_error(&std::io::Error::from_raw_os_error(libc::EMFILE));
        stats.keyvalue(super::super::KeyvalueOp::Get, super::super::KeyvalueOutcome::Ok, std::time::Duration::ZERO);
        stats.tls_handshake(super::super::HandshakeOutcome::Ok, std::time::Duration::ZERO);
        let text = metrics.encode();
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split(' ').next())
            .collect();
        assert!(families.len() >= 12, "a family is missing: {families:?}");
        for family in families {
            let row = readme.lines().any(|line| line.starts_with(&format!("| `{family}")));
            assert!(row, "README.md's metrics table has no row for {family}");
        }
    }
}
