//! The counters labelled by component alone, declared once: a line here is
//! the metric's field, name, unit and help, its family in the registry, its
//! handle in each component's [`super::Stats`], and its count in the log
//! line at stop.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::labels::ComponentLabels;

/// A family of one metric, a series per component.
pub(super) type PerComponent<M> = Family<ComponentLabels, M>;

/// A new metric (a family), registered in `registry`.
pub(super) fn registered<M: Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> M {
    let metric = M::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

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
        pub(super) struct CountFamilies {
            $($field: PerComponent<Counter>,)*
        }

        impl CountFamilies {
            pub(super) fn register(registry: &mut Registry) -> Self {
                CountFamilies { $($field: registered(registry, $name, $help, component_counters!(@unit $($unit)?)),)* }
            }

            pub(super) fn of(&self, labels: &ComponentLabels) -> Counts {
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
    instances: "evconn_instances_created",
        "Guest instances made: the first, replacements after traps, or one per connection";
    reloads: "evconn_reloads", "New versions loaded by hot reload";
    reloads_refused: "evconn_reloads_refused", "Reloads refused: the file did not load or the guest did not start";
    writes_refused: "evconn_writes_refused",
        "Writes refused (would-block) because the connection's output cap or the host's output memory was reached";
    outbound_connected: "evconn_outbound_connected", "Outbound connections the guest opened that connected";
    outbound_failed: "evconn_outbound_failed",
        "Outbound connections that did not connect: refused, unreachable, unresolvable, timed out, or resolved only to addresses --allow-connect does not allow";
    outbound_denied: "evconn_outbound_denied",
        "Outbound connections refused at once: outside --allow-connect, or past --max-outbound or --max-outbound-per-instance";
}
