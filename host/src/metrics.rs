//! The host's metrics: one family per metric, labelled by component, in a
//! prometheus-client registry that `/metrics` encodes. Each component's
//! handles are resolved once, into its [`Stats`], so counting never looks up
//! a label set.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::connection::CloseReason;
use crate::latency::Latency;
use crate::stats::{Callback, Stats, Traffic};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    component: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    component: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcceptErrorLabels {
    pub(crate) component: String,
    pub(crate) errno: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    component: String,
    callback: &'static str,
}

type PerComponent<M> = Family<ComponentLabels, M>;

/// Every metric family of a host, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: PerComponent<Counter>,
    active: PerComponent<Gauge>,
    closed: Family<ClosedLabels, Counter>,
    accept_errors: Family<AcceptErrorLabels, Counter>,
    received: PerComponent<Counter>,
    sent: PerComponent<Counter>,
    callbacks: Family<CallbackLabels, Latency>,
    traps: PerComponent<Counter>,
    guest_errors: PerComponent<Counter>,
    instances: PerComponent<Counter>,
    reloads: PerComponent<Counter>,
    reloads_refused: PerComponent<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        Metrics {
            accepted: registered(r, "evconn_connections_accepted", "Connections accepted and handed to the guest", None),
            active: registered(r, "evconn_connections_active", "Connections accepted and not yet ended", None),
            closed: registered(r, "evconn_connections_closed", "Connections ended, by what ended them", None),
            accept_errors: registered(r, "evconn_accept_errors", "Failed accept() calls reported to the guest, by errno", None),
            received: registered(r, "evconn_received", "Bytes read from peers and handed to the guest", Some(Unit::Bytes)),
            sent: registered(r, "evconn_sent", "Bytes the guest wrote that peers' sockets took", Some(Unit::Bytes)),
            callbacks: registered(r, "evconn_callback_duration", "How long guest callbacks ran", Some(Unit::Seconds)),
            traps: registered(r, "evconn_traps", "Callbacks that trapped, including those that ran out of time", None),
            guest_errors: registered(r, "evconn_guest_errors", "Callbacks that returned an error", None),
            instances: registered(
                r,
                "evconn_instances_created",
                "Guest instances made: the first, replacements after traps, or one per connection",
                None,
            ),
            reloads: registered(r, "evconn_reloads", "New versions loaded by hot reload", None),
            reloads_refused: registered(
                r,
                "evconn_reloads_refused",
                "Reloads refused: the file did not load or the guest did not start",
                None,
            ),
            registry,
        }
    }
}

/// A new metric (a family), registered in `registry`.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> M {
    let metric = M::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

impl Metrics {
    /// The handles of `component`'s metrics; every series it has appears,
    /// at zero, from now on.
    pub fn stats(&self, component: &str) -> Stats {
        let labels = ComponentLabels { component: component.to_string() };
        let of = |family: &PerComponent<Counter>| family.get_or_create_owned(&labels);
        Stats {
            accepted: of(&self.accepted),
            active: self.active.get_or_create_owned(&labels),
            closed: CloseReason::ALL.map(|reason| {
                self.closed.get_or_create_owned(&ClosedLabels { component: component.to_string(), reason: reason.name() })
            }),
            traffic: Traffic { received: of(&self.received), sent: of(&self.sent) },
            callbacks: Callback::ALL.map(|callback| {
                self.callbacks
                    .get_or_create_owned(&CallbackLabels { component: component.to_string(), callback: callback.name() })
            }),
            accept_errors: self.accept_errors.clone(),
            component: component.to_string(),
            traps: of(&self.traps),
            guest_errors: of(&self.guest_errors),
            instances: of(&self.instances),
            reloads: of(&self.reloads),
            reloads_refused: of(&self.reloads_refused),
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
        let echo = metrics.stats("echo");
        let probe = metrics.stats("probe");
        echo.accepted.inc();
        echo.traffic.received.inc_by(5);
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
    }
}
