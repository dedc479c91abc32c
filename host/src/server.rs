//! A running host: the operator's listeners, one worker with its guest, and
//! an orderly stop. Never binds a socket itself: listeners come bound.
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::bindings::ListenOptions;
use crate::component::Compiled;
use crate::limits::Limits;
use crate::listener::Listener;
use crate::services::{Services, until_set};
use crate::worker::{Isolation, Worker};

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
    /// How long stopping waits for open connections to end by themselves
    /// before closing them.
    pub shutdown_timeout: Duration,
    /// Which connections share an instance.
    pub isolation: Isolation,
    /// What a guest or a peer may use.
    pub limits: Limits,
}

/// After the shutdown timeout, how long closing connections get to send
/// what was written to them (and linger) before the host exits anyway.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

impl Server {
    /// Serves until the guest calls `loop-exit` or `shutdown` completes, then
    /// stops accepting, lets open connections go on until they end (for up
    /// to `shutdown_timeout`), closes the rest after sending what was written
    /// to them, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let services = Services::new(self.component_name.into(), self.limits, self.allow_bind);
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for (socket, options) in self.listeners {
            let listener = Listener::new(services.next_listener_id(), socket, options)?;
            tracing::info!(address = %listener.local(), listener = listener.id(), "listening");
            listeners.push(listener);
        }
        services.set_operator_listeners(listeners.clone());
        let worker = Worker::new(self.component.0, services.clone(), self.isolation)
            .await
            .map_err(|e| anyhow::anyhow!("the guest failed to start: {e:#}"))?;
        for listener in listeners {
            tokio::spawn(listener.accept_loop(worker.clone()));
        }

        let mut stopping = services.stopping();
        tokio::select! {
            // The guest called loop-exit.
            _ = until_set(&mut stopping) => {}
            // The caller's signal: SIGINT, SIGTERM, or a test's shutdown.
            () = shutdown => services.stop(),
        }
        tracing::info!(timeout = ?self.shutdown_timeout, "stopping: no new connections; waiting for open ones to end");
        let all_ended = services.wait_for_connections();
        tokio::pin!(all_ended);
        if tokio::time::timeout(self.shutdown_timeout, &mut all_ended).await.is_err() {
            tracing::info!("shutdown timeout: closing the connections still open");
            services.close_all();
            if tokio::time::timeout(FINAL_FLUSH, &mut all_ended).await.is_err() {
                tracing::warn!("connections still flushing; dropping them");
            }
        }
        tracing::info!(stats = %services.stats.summary(), "stopped");
        Ok(())
    }
}
