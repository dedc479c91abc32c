//! A running host: reactor threads, each serving every component on its own
//! copies of the operator's listeners; hot reload; metrics; an orderly stop.
//! Never binds a socket itself: listeners come bound.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Services;
use super::certificates::Certificates;
use super::mount::{App, Mounted, mount};
use super::reactor::Reactor;
use super::reload;
use crate::net::{Lifecycle, OutputBudget, UnixSocketFile, idle};
use crate::policy::Policy;
use crate::store::Store;
use crate::telemetry::{Metrics, endpoint};
use crate::wasm::{Isolation, Loader};

/// Everything a host needs to serve, checked and bound beforehand.
pub struct Server {
    /// The components and the listeners that route to each.
    pub apps: Vec<App>,
    /// The files of the Unix sockets bound for it: removed once it stops.
    pub unix_files: Vec<UnixSocketFile>,
    /// Reactor threads: each serves every listener, on a socket of its own
    /// (`SO_REUSEPORT`) or a shared one, with instances of its own.
    pub workers: usize,
    /// How long stopping waits for open connections to end by themselves
    /// before closing them.
    pub shutdown_timeout: Duration,
    /// Which connections share an instance.
    pub isolation: Isolation,
    /// What a guest or a peer may use, and what a guest may bind.
    pub policy: Policy,
    /// The key-value store behind `wasi:keyvalue`, shared by every instance.
    pub store: Arc<Store>,
    /// Told when the guest has accepted a connection and when the host has
    /// finished with one (the test kit's); `None` when serving.
    pub watch: Option<Arc<super::ConnectionWatch>>,
    /// How reloads load the components again: the engine the apps were
    /// compiled for, the code cache, whether machine code may run.
    pub loader: Loader,
    /// When to load the components again from their files: SIGHUP, `--watch`.
    pub reload: reload::Triggers,
    /// Where to answer `GET /metrics` (`--metrics`), bound and listening;
    /// served on the runtime that runs [`Server::run`], not on a reactor.
    pub metrics: Option<std::net::TcpListener>,
    /// What the host counts, which `/metrics` serves and the log line at
    /// stop reads; the caller may keep a handle to read it while serving.
    pub counts: Arc<Metrics>,
}

/// After the shutdown timeout, how long closing connections get to send
/// what was written to them (and linger) before the host exits anyway.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

impl Server {
    /// Serves until the guest calls `loop-exit` or `shutdown` completes, then
    /// stops accepting, lets open connections go on until they end (for up
    /// to `shutdown_timeout`), closes the rest after sending what was written
    /// to them, and returns. Must run inside a tokio runtime: the control
    /// one, apart from the reactors.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        anyhow::ensure!(self.workers >= 1, "at least one worker is needed");
        let metrics_listener = self.metrics.map(metrics_listener).transpose()?;
        let services = Services {
            lifecycle: Lifecycle::new(self.policy.limits.max_connections, self.policy.limits.max_outbound),
            output: Arc::new(OutputBudget::new(self.policy.limits.output_memory)),
            policy: Arc::new(self.policy),
            metrics: self.counts,
            store: self.store,
            watch: self.watch,
        };
        let lifecycle = services.lifecycle.clone();
        let reactors = (0..self.workers).map(Reactor::start).collect::<anyhow::Result<Vec<_>>>()?;
        let stamps = reload::look_at(self.apps.iter().map(|app| app.path.clone()));
        let tls = self.apps.iter().flat_map(|app| app.listeners.iter().filter_map(|listener| listener.tls.clone()));
        let certificates = Certificates::new(tls);
        let mut apps = Vec::with_capacity(self.apps.len());
        for app in self.apps {
            let mounts = mount(&app, &reactors, &services, self.isolation).await?;
            let App { name, path, component: _, listeners, env } = app;
            // Each reactor serves duplicates: close the originals before
            // saying the host listens, so that its descriptor table holds
            // still from then on (tests count on it to provoke EMFILE).
            drop(listeners);
            for (worker, mount) in mounts.iter().enumerate() {
                for listener in &mount.listeners {
                    let address = listener.local();
                    tracing::info!(%address, listener = listener.id(), component = %name, worker, "listening");
                }
            }
            apps.push(Mounted { name: name.into(), path, env: std::sync::Mutex::new(env.into()), mounts });
        }

        // Answers until the host has stopped, so a scrape can watch it drain.
        let metrics_endpoint =
            metrics_listener.map(|listener| tokio::spawn(endpoint::serve(listener, services.metrics.clone())));
        // Goes on while open connections drain, as their timeouts would.
        let idle_sweep = (services.policy.limits.idle_timeout)
            .map(|timeout| tokio::spawn(idle::sweep(lifecycle.open().clone(), timeout)));
        let reloading =
            reload::serve(&apps, stamps, certificates, self.reload, &self.loader, &services, self.isolation);
        tokio::select! {
            // The guest called loop-exit.
            () = lifecycle.stopped() => {}
            // The caller's signal: SIGINT, SIGTERM, or a test's shutdown.
            () = shutdown => lifecycle.stop(),
            // Never ends by itself.
            () = reloading => {}
        }
        tracing::info!(timeout = ?self.shutdown_timeout, "stopping: no new connections; waiting for open ones to end");
        let all_ended = lifecycle.wait_for_connections();
        tokio::pin!(all_ended);
        if tokio::time::timeout(self.shutdown_timeout, &mut all_ended).await.is_err() {
            tracing::info!("shutdown timeout: closing the connections still open");
            lifecycle.open().close_all();
            if tokio::time::timeout(FINAL_FLUSH, &mut all_ended).await.is_err() {
                tracing::warn!("connections still flushing; dropping them");
            }
        }
        // Workers, their instances and whatever tasks remain go with their
        // reactors.
        drop(apps);
        drop(self.unix_files);
        for reactor in reactors {
            reactor.stop();
        }
        for (component, stats) in services.metrics.components() {
            tracing::info!(stats = %stats.summary(), %component, "stopped");
        }
        for task in [metrics_endpoint, idle_sweep].into_iter().flatten() {
            task.abort();
        }
        Ok(())
    }
}

/// The metrics socket, made ready for the runtime.
fn metrics_listener(listener: std::net::TcpListener) -> anyhow::Result<tokio::net::TcpListener> {
    let address = listener.local_addr().context("the metrics socket has no address")?;
    listener.set_nonblocking(true).context("cannot make the metrics socket non-blocking")?;
    let listener = tokio::net::TcpListener::from_std(listener).context("cannot serve the metrics socket")?;
    tracing::info!(%address, "serving metrics at /metrics");
    Ok(listener)
}
