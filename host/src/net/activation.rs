//! Listening sockets inherited from systemd (socket activation, as
//! `sd_listen_fds` reads them): served like `--listen` ones, as libevent's
//! `evconnlistener_new` serves a socket someone else bound.
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Domain, Socket, Type};

use super::ListeningSocket;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// A listening socket the host was started with.
#[derive(Debug)]
pub struct Inherited {
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`,
    /// by default the socket unit's name), or `fd3`, `fd4`...
    pub name: String,
    /// The socket, non-blocking and closed on exec.
    pub socket: ListeningSocket,
}

/// Why inherited descriptors cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a count.
    #[error("LISTEN_FDS={0:?} is not a number of descriptors")]
    BadCount(String),
    /// A descriptor is not a listening TCP or Unix stream socket.
    #[error("inherited descriptor {fd} ({name}) is not a listening TCP or Unix stream socket: {reason}")]
    NotTcpListener {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
        /// What it is instead.
        reason: String,
    },
}

/// Takes the sockets systemd passed to this process, if any, and removes
/// the `LISTEN_*` variables so nothing started later takes them for its own.
/// Variables meant for another process (`LISTEN_PID` not ours) are ignored.
///
/// # Safety
///
/// It changes the environment ([`std::env::remove_var`]): no other thread
/// may read or write it meanwhile. Call it before starting threads.
pub(crate) unsafe fn take_inherited() -> Result<Vec<Inherited>, ActivationError> {
    let for_us = std::env::var("LISTEN_PID").ok().and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller keeps other threads off the environment.
        unsafe { std::env::remove_var(variable) };
    }
    let (true, Some(count)) = (for_us, count) else { return Ok(Vec::new()) };
    let count: RawFd = count.trim().parse().map_err(|_| ActivationError::BadCount(count.clone()))?;
    let mut names = names.split(':');
    (FIRST_FD..FIRST_FD + count)
        .map(|fd| {
            let name = names.next().filter(|n| !n.is_empty()).map_or_else(|| format!("fd{fd}"), str::to_string);
            adopt(fd, name)
        })
        .collect()
}

/// Checks that `fd` is a listening TCP socket and takes ownership of it.
fn adopt(fd: RawFd, name: String) -> Result<Inherited, ActivationError> {
    let refuse = |reason: String| ActivationError::NotTcpListener { fd, name: name.clone(), reason };
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF
    // on a descriptor that is not open, which is refused before adopting.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(refuse(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: the descriptor is open, and systemd's protocol hands it to
    // this process alone; `take_inherited` adopts each one once.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let checked = (|| {
        let domain = socket.domain()?;
        let kind = socket.r#type()?;
        let listening = socket.is_listener()?;
        Ok::<_, std::io::Error>((domain, kind, listening))
    })();
    match checked {
        Ok((Domain::IPV4 | Domain::IPV6 | Domain::UNIX, Type::STREAM, true)) => {}
        Ok((domain, kind, listening)) => {
            // Not ours to close: leave it open, as it came.
            std::mem::forget(socket);
            return Err(refuse(format!("{domain:?} {kind:?}, listening: {listening}")));
        }
        Err(e) => {
            std::mem::forget(socket);
            return Err(refuse(e.to_string()));
        }
    }
    let prepared = socket.set_nonblocking(true).and_then(|()| socket.set_cloexec(true));
    prepared.map_err(|e| refuse(e.to_string()))?;
    let socket = match socket.domain() {
        Ok(Domain::UNIX) => ListeningSocket::Unix(socket.into()),
        _ => ListeningSocket::Tcp(socket.into()),
    };
    Ok(Inherited { name, socket })
}
