//! Listening sockets built with socket2, honouring libevent's listener
//! options and backlog rules (`evconnlistener_new_bind`).
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::ListenOptions;
use super::connection::unix_endpoint;
use super::endpoint::Endpoint;

/// The backlog libevent passes to `listen()` when the caller gives a
/// negative one.
pub const DEFAULT_BACKLOG: i32 = 128;

/// A backlog of 0 where a socket is to be made: libevent's 0 means "the
/// socket already listens", which cannot hold for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "0 means a socket that already listens, but this one is new: give a positive backlog, \
     or a negative one for the default ({})",
    DEFAULT_BACKLOG
)]
pub struct ZeroBacklog;

/// Why a listening socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A backlog of 0 ([`ZeroBacklog`]).
    #[error("cannot listen on {0} with backlog 0: {ZeroBacklog}")]
    ZeroBacklog(Endpoint),
    /// A system call failed.
    // The field is not the error's source: the message already ends with
    // it, and `{:#}` would print it twice.
    #[error("cannot {step} {address}: {error}")]
    Io {
        /// What was being done: `create a socket for`, `bind`, `listen on`, ...
        step: &'static str,
        /// The address being bound.
        address: Endpoint,
        /// What the system said.
        error: io::Error,
    },
}

impl BindError {
    /// The operating system's error, if a system call failed.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            BindError::ZeroBacklog(_) => None,
            BindError::Io { error, .. } => Some(error),
        }
    }
}

/// The value passed to `listen()` for libevent's `backlog` argument, or
/// `None` for zero (the socket is expected to listen already).
pub fn listen_backlog(backlog: i32) -> Option<i32> {
    match backlog {
        0 => None,
        b if b < 0 => Some(DEFAULT_BACKLOG),
        b => Some(b),
    }
}

/// Creates a non-blocking TCP socket for `address`, applies `options`, binds
/// and listens: what `evconnlistener_new_bind` does.
///
/// `reuseable`, `reuseable-port`, `bind-ipv6-only`, `deferred-accept` and
/// `close-on-exec` set socket options; the others concern the accept loop
/// and are applied by the caller. TCP keep-alive is turned on, as libevent
/// does, so accepted connections inherit it.
pub fn bind_listener(
    address: SocketAddr,
    options: ListenOptions,
    backlog: i32,
) -> Result<std::net::TcpListener, BindError> {
    let Some(backlog) = listen_backlog(backlog) else {
        return Err(BindError::ZeroBacklog(address.into()));
    };
    let io = |step| move |error| BindError::Io { step, address: address.into(), error };

    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))
        .map_err(io("create a socket for"))?;
    // socket2 always creates sockets close-on-exec; libevent sets the flag
    // only when asked, so clear it otherwise.
    socket.set_cloexec(options.contains(ListenOptions::CLOSE_ON_EXEC)).map_err(io("set close-on-exec for"))?;
    socket.set_nonblocking(true).map_err(io("make non-blocking the socket for"))?;
    socket.set_keepalive(true).map_err(io("turn on keep-alive for"))?;
    if options.contains(ListenOptions::REUSEABLE) {
        socket.set_reuse_address(true).map_err(io("set SO_REUSEADDR for"))?;
    }
    if options.contains(ListenOptions::REUSEABLE_PORT) {
        socket.set_reuse_port(true).map_err(io("set SO_REUSEPORT for"))?;
    }
    if address.is_ipv6() {
        socket.set_only_v6(options.contains(ListenOptions::BIND_IPV6_ONLY)).map_err(io("set IPV6_V6ONLY for"))?;
    }
    if options.contains(ListenOptions::DEFERRED_ACCEPT) {
        set_defer_accept(&socket).map_err(io("set TCP_DEFER_ACCEPT for"))?;
    }
    socket.bind(&address.into()).map_err(io("bind"))?;
    socket.listen(backlog).map_err(io("listen on"))?;
    Ok(socket.into())
}

/// Sets `TCP_DEFER_ACCEPT`, which socket2 does not wrap. The value is the
/// longest time, in seconds, the kernel waits for the client's first bytes.
fn set_defer_accept(socket: &Socket) -> io::Result<()> {
    const DEFER_SECONDS: libc::c_int = 30;
    // SAFETY: the descriptor is valid for the call and the option value is a
    // c_int that outlives it, as setsockopt(2) requires.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&DEFER_SECONDS as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A bound, listening, non-blocking socket, before a reactor takes it: TCP
/// or Unix domain.
#[derive(Debug)]
pub enum ListeningSocket {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A Unix domain stream listener.
    Unix(std::os::unix::net::UnixListener),
}

impl ListeningSocket {
    /// The address it is bound to.
    pub fn local(&self) -> io::Result<Endpoint> {
        Ok(match self {
            ListeningSocket::Tcp(socket) => Endpoint::Ip(socket.local_addr()?),
            ListeningSocket::Unix(socket) => Endpoint::Unix(unix_endpoint(&socket.local_addr()?, None)),
        })
    }

    /// Another descriptor for the same socket, for another reactor.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            ListeningSocket::Tcp(socket) => ListeningSocket::Tcp(socket.try_clone()?),
            ListeningSocket::Unix(socket) => ListeningSocket::Unix(socket.try_clone()?),
        })
    }
}

impl AsRawFd for ListeningSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            ListeningSocket::Tcp(socket) => socket.as_raw_fd(),
            ListeningSocket::Unix(socket) => socket.as_raw_fd(),
        }
    }
}

impl From<std::net::TcpListener> for ListeningSocket {
    fn from(socket: std::net::TcpListener) -> Self {
        ListeningSocket::Tcp(socket)
    }
}
