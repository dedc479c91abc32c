//! What an instance is given by the worker that makes it: its component's
//! name, environment and counts, the host's life and policy, the output
//! limits of its connections, and a way back to the worker for the few
//! calls that need it. Each field is something a guest's
//! imports may touch; nothing else of the host is in reach.
use std::sync::{Arc, Weak};

use tokio::sync::OwnedSemaphorePermit;

use crate::net::{Admission, Connection, DialTarget, Lifecycle, Listener, OutputLimits};
use crate::policy::Policy;
use crate::store::Store;
use crate::telemetry::Stats;

/// What a guest may ask of the worker that runs its instance.
pub trait Owner: Send + Sync {
    /// The operator's listeners that route to this instance's component on
    /// its reactor: what `operator-listeners` returns.
    fn operator_listeners(&self) -> Vec<Arc<Listener>>;

    /// Starts accepting on a listener the guest bound; its connections come
    /// to the instance's worker.
    fn serve_bound_listener(self: Arc<Self>, listener: Arc<Listener>);

    /// Connects `conn`, an outbound connection of this instance, as `dial`
    /// says, and serves it once connected; its callbacks come to this
    /// instance.
    fn serve_outbound(self: Arc<Self>, conn: Arc<Connection>, dial: Dial);
}

/// An outbound connection to make, admitted under the host's and the
/// instance's limits.
pub struct Dial {
    /// Where it goes.
    pub target: DialTarget,
    /// The instance that asked, among its worker's.
    pub generation: u64,
    /// The host's `--max-outbound` permit and shutdown token.
    pub admission: Admission,
    /// The instance's `--max-outbound-per-instance` permit.
    pub instance_permit: OwnedSemaphorePermit,
}

/// Everything an instance may touch.
#[derive(Clone)]
pub struct InstanceContext {
    /// The component's name, for logs.
    pub component: Arc<str>,
    /// The component's counts.
    pub stats: Arc<Stats>,
    /// The environment variables the guest sees (`--env`), and only those.
    pub env: Arc<[(String, String)]>,
    /// How much output each of its connections may hold.
    pub output: Arc<OutputLimits>,
    /// The host's life: `loop-exit` stops it; guest listeners get their ids
    /// from it and may be kept open by it.
    pub lifecycle: Arc<Lifecycle>,
    /// The limits on the instance, and what it may bind, connect to and open.
    pub policy: Arc<Policy>,
    /// The host's key-value store, shared by every instance.
    pub store: Arc<Store>,
    /// Where the instance runs: its worker, and the lock its callbacks
    /// take. Weak: that owns the instance.
    pub owner: Weak<dyn Owner>,
}
