//! Serving: a running host's reactor threads, each with a worker per
//! component that runs its guest's callbacks for the connections its
//! listeners accept; hot reload of components and certificates; the orderly
//! stop. Ties the layers below together: [`crate::net`] accepts and moves
//! bytes, [`crate::wasm`] runs the guest, [`crate::policy`] says what is
//! allowed, [`crate::telemetry`] counts.
mod certificates;
mod mount;
mod reactor;
pub mod reload;
mod route;
mod server;
mod slot;
mod watch;
mod worker;

use std::sync::Arc;

use crate::net::{Lifecycle, OutputBudget};
use crate::policy::Policy;
use crate::telemetry::Metrics;

pub use mount::{App, BoundListener};
pub use server::Server;
pub use watch::{ConnectionWatch, Served};

/// What every worker of one host shares, a part for each concern.
#[derive(Clone)]
struct Services {
    /// Stopping, admitting and closing connections.
    lifecycle: Arc<Lifecycle>,
    /// What guests and peers may use.
    policy: Arc<Policy>,
    /// What the host counts.
    metrics: Arc<Metrics>,
    /// The output all connections hold, against `--output-memory`.
    output: Arc<OutputBudget>,
    /// The key-value store every instance shares.
    store: Arc<crate::store::Store>,
    /// Who is told when a connection is accepted and when it ends: the
    /// test kit, or nobody.
    watch: Option<Arc<ConnectionWatch>>,
}
