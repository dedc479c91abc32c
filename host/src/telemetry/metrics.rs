//! The host's metrics: one family per metric, labelled by component, in a
//! prometheus-client registry that `/metrics` encodes. Each component's
//! handles are resolved once, into its [`Stats`], so counting never looks up
//! a label set.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::labels::{Callback, CloseReason};
use super::latency::Latency;
use super::stats::Stats;
use crate::base::sync::lock;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentLabels {
    component: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    component: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AcceptErrorLabels {
    pub(crate) component: String,
    pub(crate) errno: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    component: String,
    callback: &'static str,
}

type PerComponent<M> = Family<ComponentLabels, M>;

/// Declares the counters labelled by component alone: a line each gives the
/// field, the metric's name (the registry adds the unit and `_total`), its
/// unit if any, and its help. Adding such a counter is adding a line here
/// (and a row to the README's table, which a test holds to it).
macro_rules! component_counters {
    ($($field:ident: $name:literal $(in $unit:ident)?, $help:literal;)*) => {
        /// One component's counters labelled by component alone.
        #[derive(Debug)]
        pub struct Counts {
            $(#[doc = $help] pub $field: Counter,)*
        }

        /// Every component's [`Counts`], a family each.
        #[derive(Debug)]
        struct CountFamilies {
            $($field: PerComponent<Counter>,)*
        }

        impl CountFamilies {
            fn register(registry: &mut Registry) -> Self {
                CountFamilies { $($field: registered(registry, $name, $help, component_counters!(@unit $($unit)?)),)* }
            }

            fn of(&self, labels: &ComponentLabels) -> Counts {
                Counts { $($field: self.$field.get_or_create_owned(labels),)* }
            }
        }

        impl Counts {
            /// Each count as `field=value`, for the log line at stop.
            pub(crate) fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.get()),)*]
            }
        }
    };
    (@unit) => { None };
    (@unit $unit:ident) => { Some(Unit::$unit) };
}

component_counters! {
    accepted: "evconn_connections_accepted", "Connections accepted and handed to the guest";
    received: "evconn_received" in Bytes, "Bytes read from peers and handed to the guest";
    sent: "evconn_sent" in Bytes, "Bytes the guest wrote that peers' sockets took";
    traps: "evconn_traps", "Callbacks that trapped, including those that ran out of time";
    guest_errors: "evconn_guest_errors", "Callbacks that returned an error";
    instances: "evconn_instances_created", "Guest instances made: the first, replacements after traps, or one per connection";
    reloads: "evconn_reloads", "New versions loaded by hot reload";
    reloads_refused: "evconn_reloads_refused", "Reloads refused: the file did not load or the guest did not start";
}

/// Every metric family of a host, the registry that encodes them, and each
/// component's handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counts: CountFamilies,
    active: PerComponent<Gauge>,
    closed: Family<ClosedLabels, Counter>,
    accept_errors: Family<AcceptErrorLabels, Counter>,
    callbacks: Family<CallbackLabels, Latency>,
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
            closed: registered(r, "evconn_connections_closed", "Connections ended, by what ended them", None),
            accept_errors: registered(
                r,
                "evconn_accept_errors",
                "Failed accept() calls reported to the guest, by errno",
                None,
            ),
            callbacks: registered(r, "evconn_callback_duration", "How long guest callbacks ran", Some(Unit::Seconds)),
            components: Mutex::default(),
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
            closed: CloseReason::ALL.map(|reason| self.closed.get_or_create_owned(&closed(reason))),
            callbacks: Callback::ALL.map(|c| self.callbacks.get_or_create_owned(&callback(c))),
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
        metrics.component(&"x".into()).accept_error(&std::io::Error::from_raw_os_error(libc::EMFILE));
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
