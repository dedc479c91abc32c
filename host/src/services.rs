//! What every worker, instance and accept loop of one host shares: limits,
//! the bind policy, id counters, metrics and counts per component, the open
//! connections, and the shutdown signal.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::connection::{CloseReason, Connection};
use crate::ids::IdMap;
use crate::limits::Limits;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::stats::Stats;
use crate::sync::lock;

/// Shared state of one running host.
#[derive(Debug)]
pub struct Services {
    limits: Limits,
    /// Every metric family; each component's handles are in `stats`.
    metrics: Metrics,
    /// What happened so far, per component name: versions of a component
    /// that hot reload swaps in add to the same counts.
    stats: Mutex<BTreeMap<Arc<str>, Arc<Stats>>>,
    /// One permit per connection served (`Limits::max_connections`).
    connection_permits: Arc<Semaphore>,
    /// Addresses a guest may bind; port 0 allows every port of that IP.
    allow_bind: Vec<SocketAddr>,
    /// Guest listeners freed without `close-on-free`: their sockets stay open
    /// until the host exits, as libevent leaves them to their owner.
    kept_open: Mutex<Vec<Arc<Listener>>>,
    /// `true` once the host is stopping: accept loops end; open connections
    /// go on until they end or `closing` is set.
    stopping: watch::Sender<bool>,
    /// Set once open connections must close (after sending what was written
    /// to them): the shutdown timeout has passed.
    closing: AtomicBool,
    /// Every open connection, by id, so that `close_all` reaches each: a
    /// map entry here costs an idle connection less than a shutdown future
    /// in its task would.
    open_connections: Mutex<IdMap<Weak<Connection>>>,
    /// Each connection task holds a clone; `None` once stopping, so the
    /// host can wait for every task to end (`wait_for_connections`).
    task_tokens: Mutex<Option<mpsc::Sender<()>>>,
    tasks_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    next_connection_id: AtomicU64,
    next_listener_id: AtomicU64,
}

/// Held by a connection task for as long as it runs.
#[derive(Debug)]
pub struct TaskToken(#[allow(dead_code)] mpsc::Sender<()>);

impl Services {
    /// Shared state for a host.
    pub fn new(limits: Limits, allow_bind: Vec<SocketAddr>) -> Arc<Self> {
        let (tokens, done) = mpsc::channel(1);
        Arc::new(Services {
            connection_permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics: Metrics::default(),
            stats: Mutex::default(),
            allow_bind,
            kept_open: Mutex::default(),
            stopping: watch::Sender::new(false),
            closing: AtomicBool::new(false),
            open_connections: Mutex::default(),
            task_tokens: Mutex::new(Some(tokens)),
            tasks_done: tokio::sync::Mutex::new(done),
            next_connection_id: AtomicU64::new(1),
            next_listener_id: AtomicU64::new(1),
        })
    }

    /// The counts of the component called `name`.
    pub fn stats_for(&self, name: &Arc<str>) -> Arc<Stats> {
        lock(&self.stats).entry(name.clone()).or_insert_with(|| Arc::new(self.metrics.stats(name))).clone()
    }

    /// Every metric, for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every component's counts, by name.
    pub fn all_stats(&self) -> Vec<(Arc<str>, Arc<Stats>)> {
        lock(&self.stats).iter().map(|(name, stats)| (name.clone(), stats.clone())).collect()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Waits for a free connection slot (`Limits::max_connections`).
    pub async fn connection_permit(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        self.connection_permits.clone().acquire_owned().await.expect("the semaphore stays open")
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh listener id.
    pub fn next_listener_id(&self) -> u64 {
        self.next_listener_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a guest may bind `address`.
    pub fn may_bind(&self, address: SocketAddr) -> bool {
        self.allow_bind.iter().any(|allowed| {
            allowed.ip() == address.ip() && (allowed.port() == 0 || allowed.port() == address.port())
        })
    }

    /// Keeps a freed listener's socket open until the host exits.
    pub fn keep_open(&self, listener: Arc<Listener>) {
        lock(&self.kept_open).push(listener);
    }

    /// Asks the host to stop: `event_base_loopexit`.
    pub fn stop(&self) {
        lock(&self.task_tokens).take();
        self.stopping.send_replace(true);
    }

    /// A receiver that sees `true` once the host is stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Tells every open connection, and every one opened from now on, to
    /// close once its output is sent.
    pub fn close_all(&self) {
        // Set before the map is read: a connection added meanwhile sees the
        // flag (`track`) if it is not in what is read here.
        self.closing.store(true, Ordering::SeqCst);
        self.for_each_open(|conn| conn.close(CloseReason::Shutdown));
    }

    /// Calls `f` on every open connection, holding the map's lock: `f` must
    /// not call `track` or `untrack`.
    pub fn for_each_open(&self, mut f: impl FnMut(&Connection)) {
        for conn in lock(&self.open_connections).values().filter_map(Weak::upgrade) {
            f(&conn);
        }
    }

    /// Counts `conn` open until `untrack`, so that `close_all` closes it;
    /// closes it at once if `close_all` was called already.
    pub fn track(&self, conn: &Arc<Connection>) {
        lock(&self.open_connections).insert(conn.id(), Arc::downgrade(conn));
        if self.closing.load(Ordering::SeqCst) {
            conn.close(CloseReason::Shutdown);
        }
    }

    /// Forgets a connection that has ended.
    pub fn untrack(&self, id: u64) {
        lock(&self.open_connections).remove(&id);
    }

    /// A token for a new connection task, or `None` if the host is stopping
    /// and takes no new work.
    pub fn task_token(&self) -> Option<TaskToken> {
        lock(&self.task_tokens).clone().map(TaskToken)
    }

    /// Waits until every connection task has ended. Call after `stop`.
    pub async fn wait_for_connections(&self) {
        let mut done = self.tasks_done.lock().await;
        while done.recv().await.is_some() {}
    }
}

/// Completes once `flag` (from [`Services::stopping`]) turns `true`, or its
/// host is gone.
pub async fn until_set(flag: &mut watch::Receiver<bool>) {
    // An error means the sender, and so the host, is gone: stop as well.
    let _ = flag.wait_for(|set| *set).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over loopback, as the host wraps an accepted one.
    async fn connection(id: u64) -> (Arc<Connection>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let conn = Connection::new(id, stream, peer, 1 << 20, Default::default()).unwrap();
        (Arc::new(conn), client)
    }

    /// `close_all` closes what is open, leaves alone what has ended, and
    /// closes at once what opens after it.
    #[tokio::test]
    async fn close_all_reaches_open_connections_and_later_ones() {
        let services = Services::new(Limits::default(), Vec::new());
        let (open, _a) = connection(1).await;
        let (ended, _b) = connection(2).await;
        services.track(&open);
        services.track(&ended);
        services.untrack(ended.id());
        assert!(!open.is_closing(), "nothing closes before the shutdown timeout");

        services.close_all();
        assert_eq!(open.close_reason(), CloseReason::Shutdown);
        assert!(open.is_closing());
        assert!(!ended.is_closing(), "a connection that ended is no longer tracked");

        let (late, _c) = connection(3).await;
        services.track(&late);
        assert!(late.is_closing(), "a connection opened after close_all closes at once");
        assert_eq!(late.close_reason(), CloseReason::Shutdown);
    }
}
