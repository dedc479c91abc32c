//! A listener's accept loop: takes connections while the listener is
//! enabled and the host runs, waits at `--max-connections` (new connections
//! queue in the kernel's backlog), and backs off on errors such as `EMFILE`
//! instead of spinning. What to do with a connection is the [`Acceptor`]'s.
use std::future::Future;
use std::io;
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use super::lifecycle::{Admission, Lifecycle};
use super::listener::{AcceptState, Accepting, Listener};
use super::{Endpoint, Stream};
use crate::base::backoff::Backoff;

/// Where an accept loop sends what it accepts.
pub trait Acceptor: Send + Sync + 'static {
    /// Serves a connection accepted on `listener`, holding `admission` until
    /// it ends.
    fn accepted(&self, listener: &Arc<Listener>, stream: Stream, peer: Endpoint, admission: Admission);

    /// Reports a failed `accept()` on `listener` (libevent's error callback).
    fn accept_failed(&self, listener: &Arc<Listener>, error: &io::Error) -> impl Future<Output = ()> + Send;
}

/// Accepts connections on `listener` and hands them to `acceptor`, until the
/// listener is freed or the host stops.
pub async fn accept_loop(listener: Arc<Listener>, lifecycle: Arc<Lifecycle>, acceptor: impl Acceptor) {
    let Some(socket) = listener.socket() else { return };
    let mut accept_state = listener.watch_accept_state();
    let mut backoff = Backoff::default();
    loop {
        let state = *accept_state.borrow_and_update();
        let (accepted, admission) = match state {
            AcceptState::Freed => break,
            AcceptState::Disabled => tokio::select! {
                // The host is shutting down.
                () = lifecycle.stopped() => break,
                // Enabled or freed: look again.
                _ = accept_state.changed() => continue,
            },
            AcceptState::Enabled => {
                // At --max-connections, wait here: new connections queue in
                // the kernel's backlog meanwhile.
                let admission = tokio::select! {
                    // Stopping wins over a ready slot or connection: once
                    // seen, nothing more is taken from the backlog.
                    biased;
                    // The host is shutting down.
                    () = lifecycle.stopped() => break,
                    // Disabled or freed: look again.
                    _ = accept_state.changed() => continue,
                    // A connection slot is free; `None` once stopping.
                    admission = lifecycle.admit() => match admission {
                        Some(admission) => admission,
                        None => break,
                    },
                };
                tokio::select! {
                    biased;
                    // The host is shutting down.
                    () = lifecycle.stopped() => break,
                    // Disabled or freed: look again.
                    _ = accept_state.changed() => continue,
                    // A connection, or an error from accept(2).
                    accepted = socket.accept() => (accepted, admission),
                }
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                if listener.delivers() {
                    acceptor.accepted(&listener, stream, peer, admission);
                } else {
                    tracing::debug!(listener = listener.id(), %peer, "accepted and closed: no accept callback");
                }
            }
            Err(e) if is_retriable(&e) => {}
            // `free` shut the socket down: not an error to report.
            Err(_) if listener.accept_state() == AcceptState::Freed => break,
            Err(e) => {
                drop(admission);
                let pause = backoff.next();
                // Linux's accept() fails with EMFILE before it looks at the
                // queue, and the listener stays readable after an error, so
                // the retries fail too whether or not anyone is waiting.
                // Only a connection that really waits makes it an error
                // worth reporting; otherwise keep backing off quietly.
                if has_pending_connection(&socket) {
                    tracing::warn!(
                        listener = listener.id(),
                        address = %listener.local(),
                        error = %e,
                        retry_in = ?pause,
                        "accept failed"
                    );
                    acceptor.accept_failed(&listener, &e).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    // The host is shutting down.
                    () = lifecycle.stopped() => break,
                    // Disabled or freed: look again at once.
                    _ = accept_state.changed() => {}
                }
            }
        }
    }
    if lifecycle.is_stopping() {
        // Close the socket now rather than when the host exits: until then
        // the kernel would complete handshakes that nobody accepts, so a
        // load balancer's health check would pass and new clients would
        // wait out the drain only to be reset. Closing (not shutdown) leaves
        // an inherited socket listening in systemd, which queues
        // connections for the next process.
        listener.close_socket();
        drop(socket);
    }
    tracing::debug!(listener = listener.id(), "accept loop ended");
}

/// Whether a connection waits in `socket`'s accept queue.
fn has_pending_connection(socket: &Accepting) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    // A zero timeout: only looks.
    let ready = poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }));
    matches!(ready, Ok(1..)) && fds[0].revents().contains(PollFlags::IN)
}

/// Errors libevent retries silently: they concern one connection attempt,
/// not the listener.
fn is_retriable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::ECONNABORTED))
        || matches!(
            error.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionAborted
        )
}
