//! A running host: the operator's listeners, one worker with its guest, and
//! an orderly stop. Never binds a socket itself: listeners come bound.
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::bindings::ListenOptions;
use crate::component::Compiled;
use crate::listener::{Listener, Owner};
use crate::services::{Services, until_stopping};
use crate::worker::Worker;

/// Everything a host needs to serve, checked and bound beforehand.
pub struct Server {
    /// The compiled, linked guest.
    pub component: Compiled,
    /// The name guest output is tagged with.
    pub component_name: String,
    /// The operator's listening sockets, bound, with their options.
    pub listeners: Vec<(std::net::TcpListener, ListenOptions)>,
    /// Addresses a guest may bind (port 0: any port of that IP).
    pub allow_bind: Vec<SocketAddr>,
    /// How long stopping waits for connections to send what was written.
    pub shutdown_timeout: Duration,
}

impl Server {
    /// Serves until the guest calls `loop-exit` or `shutdown` completes, then
    /// stops accepting, lets each connection send what was written to it
    /// (for up to `shutdown_timeout`) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let services = Services::new(self.component_name.into(), self.allow_bind);
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for (socket, options) in self.listeners {
            let listener = Listener::new(services.next_listener_id(), Owner::Operator, socket, options)?;
            tracing::info!(address = %listener.local(), listener = listener.id(), "listening");
            listeners.push(listener);
        }
        services.set_operator_listeners(listeners.clone());
        let worker = Worker::new(self.component.0, services.clone())
            .await
            .map_err(|e| anyhow::anyhow!("the guest failed to start: {e:#}"))?;
        for listener in listeners {
            tokio::spawn(listener.accept_loop(worker.clone()));
        }

        let mut stopping = services.stopping();
        tokio::select! {
            // The guest called loop-exit.
            _ = until_stopping(&mut stopping) => {}
            // The caller's signal: SIGINT, SIGTERM, or a test's shutdown.
            () = shutdown => services.stop(),
        }
        tracing::info!("stopping: no new connections; flushing open ones");
        if tokio::time::timeout(self.shutdown_timeout, services.wait_for_connections())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?self.shutdown_timeout, "connections still open at the shutdown timeout; dropping them");
        }
        Ok(())
    }
}
