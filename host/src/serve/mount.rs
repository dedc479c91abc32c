//! A component and its listening sockets, as the server gets them, and the
//! component mounted on the reactors: on each, its listeners, the worker
//! that serves them, and the route their accept loops follow, which hot
//! reload points at a new worker.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use super::Services;
use super::reactor::Reactor;
use super::route::Route;
use super::worker::Worker;
use crate::net::tls::TlsConfig;
use crate::net::{ListenOptions, Listener, ListeningSocket, accept_loop};
use crate::wasm::{Compiled, Isolation};

/// One component and the operator's listeners that route to it.
pub struct App {
    /// The name logs and counts use.
    pub name: String,
    /// The file the component came from, read again on reload.
    pub path: PathBuf,
    /// The compiled, linked guest.
    pub component: Compiled,
    /// Its listening sockets, bound, with their options.
    pub listeners: Vec<BoundListener>,
    /// The environment its instances get (`--env`, a listener's `env`).
    pub env: Vec<(String, String)>,
}

/// One operator listener: a socket per reactor, or one that all share.
pub struct BoundListener {
    /// Bound and listening. One per worker (bound with `SO_REUSEPORT`, so
    /// the kernel spreads connections), or one that every worker accepts
    /// from (an inherited socket).
    pub sockets: Vec<ListeningSocket>,
    /// The options it was bound with.
    pub options: ListenOptions,
    /// The TLS its connections are served with, shared by every socket
    /// and reloaded in place; `None` for plain TCP.
    pub tls: Option<Arc<TlsConfig>>,
}

/// A component as it runs: its file, its environment, and where it is
/// mounted.
pub(super) struct Mounted {
    pub(super) name: Arc<str>,
    pub(super) path: PathBuf,
    /// What its next instances' environment is; a reload may change it.
    pub(super) env: std::sync::Mutex<Arc<[(String, String)]>>,
    pub(super) mounts: Vec<Mount>,
}

/// One component on one reactor: where its listeners' connections go.
pub(super) struct Mount {
    pub(super) reactor: tokio::runtime::Handle,
    pub(super) listeners: Vec<Arc<Listener>>,
    pub(super) route: watch::Sender<Arc<Worker>>,
}

/// Starts `app` on every reactor: its listeners, a worker, accept loops.
pub(super) async fn mount(
    app: &App,
    reactors: &[Reactor],
    services: &Services,
    isolation: Isolation,
) -> anyhow::Result<Vec<Mount>> {
    let mut mounts = Vec::with_capacity(reactors.len());
    for (index, reactor) in reactors.iter().enumerate() {
        let mut sockets = Vec::with_capacity(app.listeners.len());
        for listener in &app.listeners {
            // A socket of this reactor's own, or a duplicate of the shared one.
            let socket = match listener.sockets.get(index) {
                Some(socket) => socket.try_clone(),
                None => listener.sockets[0].try_clone(),
            }
            .context("cannot duplicate a listening socket")?;
            sockets.push((socket, listener.options, listener.tls.clone()));
        }
        let services = services.clone();
        let compiled = app.component.clone();
        let name: Arc<str> = app.name.as_str().into();
        let env: Arc<[(String, String)]> = app.env.as_slice().into();
        let mount = reactor.handle.spawn(async move {
            let lifecycle = &services.lifecycle;
            let listeners = sockets
                .into_iter()
                .map(|(socket, options, tls)| Listener::with_tls(lifecycle.next_listener_id(), socket, options, tls))
                .collect::<std::io::Result<Vec<_>>>()?;
            let worker = Worker::new(compiled, name, env, services.clone(), isolation, listeners.clone())
                .await
                .map_err(|e| anyhow::anyhow!("the guest failed to start: {e:#}"))?;
            let route = watch::Sender::new(worker);
            for listener in &listeners {
                tokio::spawn(accept_loop(listener.clone(), lifecycle.clone(), Route::following(&route)));
            }
            anyhow::Ok(Mount { reactor: tokio::runtime::Handle::current(), listeners, route })
        });
        mounts.push(mount.await.context("a reactor stopped while starting")??);
    }
    Ok(mounts)
}
