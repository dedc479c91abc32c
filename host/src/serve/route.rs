//! Where a listener's accept loop sends connections: the current worker of
//! its component on its reactor. Hot reload replaces the worker; a
//! connection already accepted stays with the one that accepted it. A
//! listener a guest binds gets a route of its own to the guest's worker,
//! which is how an instance's home serves as its [`Owner`].
use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::sync::watch;

use super::slot::Home;
use super::worker::Worker;
use crate::net::{Acceptor, Admission, Connection, Endpoint, Listener, Stream, accept_loop};
use crate::wasm::{Dial, Owner};

/// The worker an accept loop serves, as hot reload last set it.
#[derive(Clone)]
pub(super) struct Route(watch::Receiver<Arc<Worker>>);

impl Route {
    /// Follows what `sender` sets.
    pub(super) fn following(sender: &watch::Sender<Arc<Worker>>) -> Self {
        Route(sender.subscribe())
    }

    /// A route that never changes, for listeners a guest binds: they belong
    /// to the worker whose guest bound them.
    pub(super) fn fixed(worker: Arc<Worker>) -> Self {
        // A receiver keeps the last value after its sender is gone.
        Route(watch::channel(worker).1)
    }

    fn current(&self) -> Arc<Worker> {
        self.0.borrow().clone()
    }
}

impl Acceptor for Route {
    fn accepted(&self, listener: &Arc<Listener>, stream: Stream, peer: Endpoint, admission: Admission) {
        self.current().spawn_connection(listener.clone(), stream, peer, admission);
    }

    fn accept_failed(&self, listener: &Arc<Listener>, error: &io::Error) -> impl Future<Output = ()> + Send {
        let worker = self.current();
        async move { worker.accept_error(listener, error).await }
    }
}

impl Owner for Home {
    fn operator_listeners(&self) -> Vec<Arc<Listener>> {
        self.worker.upgrade().map(|worker| worker.listeners().to_vec()).unwrap_or_default()
    }

    fn serve_bound_listener(self: Arc<Self>, listener: Arc<Listener>) {
        // Without its worker the listener is dropped: nothing would serve it.
        let Some(worker) = self.worker.upgrade() else { return };
        let lifecycle = worker.lifecycle().clone();
        tokio::spawn(accept_loop(listener, lifecycle, Route::fixed(worker)));
    }

    fn serve_outbound(self: Arc<Self>, conn: Arc<Connection>, dial: Dial) {
        if let Some(worker) = self.worker.upgrade() {
            worker.spawn_outbound(self, conn, dial);
        }
    }
}
