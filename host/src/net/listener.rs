//! A listening socket and what can be done with it: libevent's
//! `evconnlistener`, with enable/disable, `set_cb` and free. Its accept loop
//! is [`super::accept`].
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use super::connection::unix_endpoint;
use super::tls::TlsConfig;
use super::unix::UnixSocketFile;
use super::{Endpoint, ListenOptions, ListeningSocket, Stream};

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
    local: Endpoint,
    fd: RawFd,
    /// The socket; `None` once freed with `close-on-free`. The accept loop
    /// holds its own reference while it runs.
    socket: Mutex<Option<Arc<Accepting>>>,
    accept_state: watch::Sender<AcceptState>,
    /// `false` after `set-accept-callback(false)`: connections are accepted
    /// and closed at once.
    deliver: AtomicBool,
    /// The certificates of an operator's TLS listener: each connection's
    /// handshake comes before the guest hears of it.
    tls: Option<Arc<TlsConfig>>,
    /// The socket file of a Unix listener a guest bound: removed with the
    /// listener.
    file: Mutex<Option<UnixSocketFile>>,
}

impl Listener {
    /// Wraps a bound, listening, non-blocking socket. Must be called inside a
    /// tokio runtime.
    pub fn new(id: u64, socket: ListeningSocket, options: ListenOptions) -> io::Result<Arc<Self>> {
        Self::with_tls(id, socket, options, None)
    }

    /// As `new`, terminating TLS with `tls` when given.
    pub fn with_tls(
        id: u64,
        socket: ListeningSocket,
        options: ListenOptions,
        tls: Option<Arc<TlsConfig>>,
    ) -> io::Result<Arc<Self>> {
        let local = socket.local()?;
        let fd = socket.as_raw_fd();
        let socket = match socket {
            ListeningSocket::Tcp(socket) => Accepting::Tcp(TcpListener::from_std(socket)?),
            ListeningSocket::Unix(socket) => Accepting::Unix(UnixListener::from_std(socket)?),
        };
        let initial =
            if options.contains(ListenOptions::DISABLED) { AcceptState::Disabled } else { AcceptState::Enabled };
        Ok(Arc::new(Listener {
            id,
            options,
            local,
            fd,
            socket: Mutex::new(Some(Arc::new(socket))),
            accept_state: watch::Sender::new(initial),
            deliver: AtomicBool::new(true),
            tls,
            file: Mutex::new(None),
        }))
    }

    /// Keeps the socket file of a Unix listener until the listener goes.
    pub fn keep_file(&self, file: UnixSocketFile) {
        *crate::base::sync::lock(&self.file) = Some(file);
    }

    /// The certificates of a TLS listener.
    pub fn tls(&self) -> Option<&Arc<TlsConfig>> {
        self.tls.as_ref()
    }

    /// The listener's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The bound address.
    pub fn local(&self) -> &Endpoint {
        &self.local
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

    /// Whether accepted connections reach the guest.
    pub(super) fn delivers(&self) -> bool {
        self.deliver.load(Ordering::Relaxed)
    }

    /// The socket, while the listener is open.
    pub(super) fn socket(&self) -> Option<Arc<Accepting>> {
        self.lock_socket().clone()
    }

    /// Closes the socket, if it is still open.
    pub(super) fn close_socket(&self) {
        drop(self.lock_socket().take());
    }

    /// Watches the accept state.
    pub(super) fn watch_accept_state(&self) -> watch::Receiver<AcceptState> {
        self.accept_state.subscribe()
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

    fn lock_socket(&self) -> std::sync::MutexGuard<'_, Option<Arc<Accepting>>> {
        // Only `Option::take` and `clone` run under this lock; neither panics.
        crate::base::sync::lock(&self.socket)
    }
}

/// A listening socket on the reactor, accepting.
#[derive(Debug)]
pub(super) enum Accepting {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Accepting {
    /// The next connection and its peer: for a Unix one, who connected.
    pub(super) async fn accept(&self) -> io::Result<(Stream, Endpoint)> {
        match self {
            Accepting::Tcp(socket) => {
                socket.accept().await.map(|(stream, peer)| (Stream::Tcp(stream), Endpoint::Ip(peer)))
            }
            Accepting::Unix(socket) => {
                let (stream, peer) = socket.accept().await?;
                // The kernel records the credentials at connect(): they
                // cannot fail to be there for a connected socket.
                let credentials = stream.peer_cred().ok().map(|cred| super::Credentials {
                    pid: cred.pid().map_or(0, |pid| pid as u32),
                    uid: cred.uid(),
                    gid: cred.gid(),
                });
                let peer = Endpoint::Unix(unix_endpoint(&peer.into(), credentials));
                Ok((Stream::Unix(stream), peer))
            }
        }
    }
}

impl AsFd for Accepting {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Accepting::Tcp(socket) => socket.as_fd(),
            Accepting::Unix(socket) => socket.as_fd(),
        }
    }
}
