//! A listening socket and its accept loop: libevent's `evconnlistener`, with
//! enable/disable, `set_cb`, free, and an error path that backs off instead
//! of spinning on `EMFILE`.
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bindings::ListenOptions;
use crate::services::until_set;
use crate::worker::Route;

/// Whether the accept loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptState {
    /// Accepting connections.
    Enabled,
    /// Not accepting: connections wait in the kernel's backlog.
    Disabled,
    /// Freed: the accept loop has ended for good.
    Freed,
}

/// A listening socket, shared by its accept loop and every handle to it.
#[derive(Debug)]
pub struct Listener {
    id: u64,
    options: ListenOptions,
    local: SocketAddr,
    fd: RawFd,
    /// The socket; `None` once freed with `close-on-free`. The accept loop
    /// holds its own reference while it runs.
    socket: Mutex<Option<Arc<TcpListener>>>,
    accept_state: watch::Sender<AcceptState>,
    /// `false` after `set-accept-callback(false)`: connections are accepted
    /// and closed at once.
    deliver: AtomicBool,
}

impl Listener {
    /// Wraps a bound, listening, non-blocking socket. Must be called inside a
    /// tokio runtime.
    pub fn new(
        id: u64,
        socket: std::net::TcpListener,
        options: ListenOptions,
    ) -> io::Result<Arc<Self>> {
        let local = socket.local_addr()?;
        let fd = socket.as_raw_fd();
        let socket = TcpListener::from_std(socket)?;
        let initial = if options.contains(ListenOptions::DISABLED) {
            AcceptState::Disabled
        } else {
            AcceptState::Enabled
        };
        Ok(Arc::new(Listener {
            id,
            options,
            local,
            fd,
            socket: Mutex::new(Some(Arc::new(socket))),
            accept_state: watch::Sender::new(initial),
            deliver: AtomicBool::new(true),
        }))
    }

    /// The listener's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The bound address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The descriptor, or -1 once the socket is closed.
    pub fn fd(&self) -> RawFd {
        if self.is_closed() { -1 } else { self.fd }
    }

    /// Whether the socket has been closed by `free`.
    pub fn is_closed(&self) -> bool {
        self.lock_socket().is_none()
    }

    /// The current accept state.
    pub fn accept_state(&self) -> AcceptState {
        *self.accept_state.borrow()
    }

    /// Resumes accepting; `false` if the listener was freed.
    pub fn enable(&self) -> bool {
        self.set_accept_state(AcceptState::Enabled)
    }

    /// Stops accepting; `false` if the listener was freed.
    pub fn disable(&self) -> bool {
        self.set_accept_state(AcceptState::Disabled)
    }

    fn set_accept_state(&self, next: AcceptState) -> bool {
        self.accept_state.send_if_modified(|state| {
            if *state == AcceptState::Freed || *state == next {
                return false;
            }
            *state = next;
            true
        });
        self.accept_state() != AcceptState::Freed
    }

    /// Chooses whether accepted connections reach the guest.
    pub fn set_deliver(&self, deliver: bool) {
        self.deliver.store(deliver, Ordering::Relaxed);
    }

    /// `evconnlistener_free`: stops the accept loop for good and, with
    /// `close-on-free`, closes the socket. Without it the socket stays open
    /// (and connections queue in its backlog) until the host exits.
    pub fn free(&self) {
        self.accept_state.send_replace(AcceptState::Freed);
        if self.options.contains(ListenOptions::CLOSE_ON_FREE)
            && let Some(socket) = self.lock_socket().take()
        {
            // The accept loop holds the socket until it next runs, so the
            // descriptor may outlive this call; stop listening now (Linux
            // takes a listening socket out of LISTEN on SHUT_RD) so the
            // port refuses connections at once, as libevent's close does.
            let _ = socket2::SockRef::from(&*socket).shutdown(std::net::Shutdown::Read);
        }
    }

    fn lock_socket(&self) -> std::sync::MutexGuard<'_, Option<Arc<TcpListener>>> {
        // Only `Option::take` and `clone` run under this lock; neither panics.
        crate::sync::lock(&self.socket)
    }

    /// Accepts connections and hands them to the worker `route` names at
    /// the time, until the listener is freed or the host stops.
    pub async fn accept_loop(self: Arc<Self>, route: Route) {
        let Some(socket) = self.lock_socket().clone() else { return };
        let mut accept_state = self.accept_state.subscribe();
        let services = route.borrow().services().clone();
        let mut stopping = services.stopping();
        let mut backoff = Backoff::default();
        loop {
            let state = *accept_state.borrow_and_update();
            let (accepted, permit, token) = match state {
                AcceptState::Freed => break,
                AcceptState::Disabled => tokio::select! {
                    // The host is shutting down.
                    _ = until_set(&mut stopping) => break,
                    // Enabled or freed: look again.
                    _ = accept_state.changed() => continue,
                },
                AcceptState::Enabled => {
                    // Taken before accepting, so that a connection accepted
                    // just as the host starts stopping is served in the
                    // drain rather than dropped (and reset). `None` once
                    // the host is stopping.
                    let Some(token) = services.task_token() else { break };
                    // At --max-connections, wait here: new connections
                    // queue in the kernel's backlog meanwhile.
                    let permit = tokio::select! {
                        // Stopping wins over a ready slot or connection: once
                        // seen, nothing more is taken from the backlog.
                        biased;
                        // The host is shutting down.
                        _ = until_set(&mut stopping) => break,
                        // Disabled or freed: look again.
                        _ = accept_state.changed() => continue,
                        // A connection slot is free.
                        permit = services.connection_permit() => permit,
                    };
                    tokio::select! {
                        biased;
                        // The host is shutting down.
                        _ = until_set(&mut stopping) => break,
                        // Disabled or freed: look again.
                        _ = accept_state.changed() => continue,
                        // A connection, or an error from accept(2).
                        accepted = socket.accept() => (accepted, permit, token),
                    }
                }
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    if self.deliver.load(Ordering::Relaxed) {
                        let worker = route.borrow().clone();
                        worker.spawn_connection(self.clone(), stream, peer, permit, token);
                    } else {
                        tracing::debug!(listener = self.id, %peer, "accepted and closed: no accept callback");
                    }
                }
                Err(e) if is_retriable(&e) => {}
                // `free` shut the socket down: not an error to report.
                Err(_) if self.accept_state() == AcceptState::Freed => break,
                Err(e) => {
                    let pause = backoff.next();
                    // Linux's accept() fails with EMFILE before it looks at the
                    // queue, and the listener stays readable after an error, so
                    // the retries fail too whether or not anyone is waiting.
                    // Only a connection that really waits makes it an error
                    // worth reporting; otherwise keep backing off quietly.
                    if has_pending_connection(&socket) {
                        tracing::warn!(listener = self.id, address = %self.local, error = %e, retry_in = ?pause, "accept failed");
                        let worker = route.borrow().clone();
                        worker.accept_error(&self, &e).await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        // The host is shutting down.
                        _ = until_set(&mut stopping) => break,
                        // Disabled or freed: look again at once.
                        _ = accept_state.changed() => {}
                    }
                }
            }
        }
        if *stopping.borrow() {
            // Close the socket now rather than when the host exits: until
            // then the kernel would complete handshakes that nobody accepts,
            // so a load balancer's health check would pass and new clients
            // would wait out the drain only to be reset. Closing (not
            // shutdown) leaves an inherited socket listening in systemd,
            // which queues connections for the next process.
            drop(self.lock_socket().take());
            drop(socket);
        }
        tracing::debug!(listener = self.id, "accept loop ended");
    }
}

/// Whether a connection waits in `socket`'s accept queue.
fn has_pending_connection(socket: &TcpListener) -> bool {
    let mut poll = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a zero timeout: poll(2) only writes `revents`.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

/// Errors libevent retries silently: they concern one connection attempt,
/// not the listener.
fn is_retriable(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::ECONNABORTED)
    ) || matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionAborted
    )
}

/// The pause after a failed `accept()`: 10 ms, doubling to 1 s while errors
/// persist, back to 10 ms after a success.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause doubles from 10 ms, stops at 1 s, and starts over after a success.
    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..9).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(10));
    }
}
