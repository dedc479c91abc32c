//! What an instance is given by the worker that makes it: its component's
//! name and counts, the host's life and policy, and a way back to the
//! worker for the few calls that need it. Each field is something a guest's
//! imports may touch; nothing else of the host is in reach.
use std::sync::{Arc, Weak};

use crate::net::{Lifecycle, Listener};
use crate::policy::Policy;
use crate::telemetry::Stats;

/// What a guest may ask of the worker that runs its instance.
pub trait Owner: Send + Sync {
    /// The operator's listeners that route to this instance's component on
    /// its reactor: what `operator-listeners` returns.
    fn operator_listeners(&self) -> Vec<Arc<Listener>>;

    /// Starts accepting on a listener the guest bound; its connections come
    /// to the instance's worker.
    fn serve_bound_listener(self: Arc<Self>, listener: Arc<Listener>);
}

/// Everything an instance may touch.
#[derive(Clone)]
pub struct InstanceContext {
    /// The component's name, for logs.
    pub component: Arc<str>,
    /// The component's counts.
    pub stats: Arc<Stats>,
    /// The host's life: `loop-exit` stops it; guest listeners get their ids
    /// from it and may be kept open by it.
    pub lifecycle: Arc<Lifecycle>,
    /// The limits on the instance, and what it may bind.
    pub policy: Arc<Policy>,
    /// The worker that runs the instance. Weak: the worker owns the
    /// instance.
    pub owner: Weak<dyn Owner>,
}
