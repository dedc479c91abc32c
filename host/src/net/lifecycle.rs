//! How a host starts and stops serving: the stop signal, the tokens that
//! tell when every connection task has ended, the `--max-connections` and
//! `--max-outbound` permits, the open connections (so that all can be closed at once), ids,
//! and the listeners kept open until exit. Shared by every worker, accept
//! loop and instance of one host.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::connection::Connection;
use super::listener::Listener;
use crate::base::ids::IdMap;
use crate::base::sync::lock;
use crate::telemetry::CloseReason;

/// The life of one running host.
#[derive(Debug)]
pub struct Lifecycle {
    /// One permit per connection served (`--max-connections`).
    connection_permits: Arc<Semaphore>,
    /// One permit per outbound connection open (`--max-outbound`).
    outbound_permits: Arc<Semaphore>,
    /// Guest listeners freed without `close-on-free`: their sockets stay open
    /// until the host exits, as libevent leaves them to their owner.
    kept_open: Mutex<Vec<Arc<Listener>>>,
    /// `true` once the host is stopping: accept loops end; open connections
    /// go on until they end or are closed (`OpenConnections::close_all`).
    stopping: watch::Sender<bool>,
    /// Every connection served, until it ends.
    open: Arc<OpenConnections>,
    /// Each connection task holds a clone; `None` once stopping, so the
    /// host can wait for every task to end (`wait_for_connections`).
    task_tokens: Mutex<Option<mpsc::Sender<()>>>,
    tasks_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    next_connection_id: AtomicU64,
    next_listener_id: AtomicU64,
}

/// What a connection's task holds while it runs: its `--max-connections`
/// (or `--max-outbound`) permit, and the token a stopping host waits for.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    _token: mpsc::Sender<()>,
}

/// Why an outbound connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefused {
    /// The host is stopping.
    #[error("the host is stopping")]
    Stopping,
    /// `--max-outbound` connections are open.
    #[error("the host has as many outbound connections as it may")]
    LimitReached,
}

impl Lifecycle {
    /// A host that serves at most `max_connections` accepted connections
    /// and `max_outbound` outbound ones at once.
    pub fn new(max_connections: usize, max_outbound: usize) -> Arc<Self> {
        let (tokens, done) = mpsc::channel(1);
        Arc::new(Lifecycle {
            connection_permits: Arc::new(Semaphore::new(max_connections)),
            outbound_permits: Arc::new(Semaphore::new(max_outbound)),
            kept_open: Mutex::default(),
            stopping: watch::Sender::new(false),
            open: Arc::default(),
            task_tokens: Mutex::new(Some(tokens)),
            tasks_done: tokio::sync::Mutex::new(done),
            next_connection_id: AtomicU64::new(1),
            next_listener_id: AtomicU64::new(1),
        })
    }

    /// Waits for a free connection slot, then admits a connection task;
    /// `None` if the host is stopping and takes no new work.
    pub async fn admit(&self) -> Option<Admission> {
        // Taken before waiting for a slot, so that a connection accepted
        // just as the host starts stopping is served in the drain rather
        // than dropped (and reset).
        let token = lock(&self.task_tokens).clone()?;
        // The semaphore is never closed.
        let permit = self.connection_permits.clone().acquire_owned().await.expect("the semaphore stays open");
        Some(Admission { _permit: permit, _token: token })
    }

    /// Admits an outbound connection's task at once, or says why not: it
    /// never waits, since the guest asking cannot.
    pub fn admit_outbound(&self) -> Result<Admission, OutboundRefused> {
        let token = lock(&self.task_tokens).clone().ok_or(OutboundRefused::Stopping)?;
        let permit = self.outbound_permits.clone().try_acquire_owned().map_err(|_| OutboundRefused::LimitReached)?;
        Ok(Admission { _permit: permit, _token: token })
    }

    /// The connections served, for the idle sweep and the shutdown timeout.
    pub fn open(&self) -> &Arc<OpenConnections> {
        &self.open
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh listener id.
    pub fn next_listener_id(&self) -> u64 {
        self.next_listener_id.fetch_add(1, Ordering::Relaxed)
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

    /// Whether the host is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Completes once the host is stopping.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives as long as `self`: no error.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Waits until every connection task has ended. Call after `stop`.
    pub async fn wait_for_connections(&self) {
        let mut done = self.tasks_done.lock().await;
        while done.recv().await.is_some() {}
    }
}

/// Every connection a host serves, by id, so that a stopping host can close
/// them all and the idle sweep can look at each: an entry here costs an idle
/// connection less than a future of its own in its task would.
#[derive(Debug, Default)]
pub struct OpenConnections {
    /// Set once open connections must close (after sending what was written
    /// to them): the shutdown timeout has passed.
    closing: AtomicBool,
    connections: Mutex<IdMap<Weak<Connection>>>,
}

impl OpenConnections {
    /// Counts `conn` open until `untrack`, so that `close_all` closes it;
    /// closes it at once if `close_all` was called already.
    pub fn track(&self, conn: &Arc<Connection>) {
        lock(&self.connections).insert(conn.id(), Arc::downgrade(conn));
        if self.closing.load(Ordering::SeqCst) {
            conn.close(CloseReason::Shutdown);
        }
    }

    /// Forgets a connection that has ended.
    pub fn untrack(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    /// Calls `f` on every open connection, holding the map's lock: `f` must
    /// not call `track` or `untrack`.
    pub fn for_each(&self, mut f: impl FnMut(&Connection)) {
        for conn in lock(&self.connections).values().filter_map(Weak::upgrade) {
            f(&conn);
        }
    }

    /// Tells every open connection, and every one opened from now on, to
    /// close once its output is sent.
    pub fn close_all(&self) {
        // Set before the map is read: a connection added meanwhile sees the
        // flag (`track`) if it is not in what is read here.
        self.closing.store(true, Ordering::SeqCst);
        self.for_each(|conn| conn.close(CloseReason::Shutdown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over loopback, as the host wraps an accepted one.
    async fn connection(id: u64) -> (Arc<Connection>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let limits = Arc::new(crate::net::OutputLimits {
            pause_reading_at: 1 << 20,
            cap: 1 << 22,
            budget: Arc::new(crate::net::OutputBudget::new(1 << 30)),
        });
        let conn = Connection::new(id, stream.into(), peer.into(), None, limits, Default::default()).unwrap();
        (Arc::new(conn), client)
    }

    /// `close_all` closes what is open, leaves alone what has ended, and
    /// closes at once what opens after it.
    #[tokio::test]
    async fn close_all_reaches_open_connections_and_later_ones() {
        let open_connections = OpenConnections::default();
        let (open, _a) = connection(1).await;
        let (ended, _b) = connection(2).await;
        open_connections.track(&open);
        open_connections.track(&ended);
        open_connections.untrack(ended.id());
        assert!(!open.is_closing(), "nothing closes before the shutdown timeout");

        open_connections.close_all();
        assert_eq!(open.close_reason(), CloseReason::Shutdown);
        assert!(open.is_closing());
        assert!(!ended.is_closing(), "a connection that ended is no longer tracked");

        let (late, _c) = connection(3).await;
        open_connections.track(&late);
        assert!(late.is_closing(), "a connection opened after close_all closes at once");
        assert_eq!(late.close_reason(), CloseReason::Shutdown);
    }

    /// Once stopping, no task is admitted, and the host waits only for the
    /// tasks admitted before.
    #[tokio::test]
    async fn a_stopping_host_admits_nothing_and_waits_for_what_it_admitted() {
        let lifecycle = Lifecycle::new(2, 1);
        let outbound = lifecycle.admit_outbound().expect("one outbound connection may open");
        assert_eq!(lifecycle.admit_outbound().unwrap_err(), OutboundRefused::LimitReached);
        drop(outbound);
        let admitted = lifecycle.admit().await.expect("admitted before stopping");
        lifecycle.stop();
        assert!(lifecycle.is_stopping());
        assert!(lifecycle.admit().await.is_none(), "nothing admitted once stopping");
        assert_eq!(lifecycle.admit_outbound().unwrap_err(), OutboundRefused::Stopping);
        let waiting = tokio::spawn({
            let lifecycle = lifecycle.clone();
            async move { lifecycle.wait_for_connections().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one task still runs");
        drop(admitted);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
