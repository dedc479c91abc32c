//! Where a connection or a listener is: an IP address and port, or a Unix
//! domain socket's path, with the peer process's credentials for a
//! connection accepted on one. What libevent passes as `struct sockaddr *`.
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One end of a stream socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP endpoint.
    Ip(SocketAddr),
    /// A Unix domain stream socket's end.
    Unix(UnixEndpoint),
}

/// A Unix domain socket's end: its path, if it has one, and for the peer
/// of an accepted connection, who connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixEndpoint {
    /// The socket file's path; `None` for an unnamed socket, as a client's
    /// usually is.
    pub path: Option<PathBuf>,
    /// The connecting process's credentials (`SO_PEERCRED`), taken when
    /// the connection was accepted.
    pub credentials: Option<Credentials>,
}

/// A Unix peer's process and user, as the kernel recorded them when it
/// connected (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The process id.
    pub pid: u32,
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl Endpoint {
    /// The IP endpoint, if this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Ip(address) => Some(*address),
            Endpoint::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(address: SocketAddr) -> Self {
        Endpoint::Ip(address)
    }
}

/// `127.0.0.1:9876`, `unix:/run/echo.sock`, or `unix:(unnamed)`, followed
/// for a peer by ` pid=.. uid=.. gid=..`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip(address) => address.fmt(f),
            Endpoint::Unix(unix) => {
                match &unix.path {
                    Some(path) => write!(f, "unix:{}", path.display())?,
                    None => f.write_str("unix:(unnamed)")?,
                }
                if let Some(Credentials { pid, uid, gid }) = unix.credentials {
                    write!(f, " pid={pid} uid={uid} gid={gid}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_ip_and_unix_endpoints() {
        assert_eq!(Endpoint::Ip("127.0.0.1:9876".parse().unwrap()).to_string(), "127.0.0.1:9876");
        let peer = UnixEndpoint { path: None, credentials: Some(Credentials { pid: 7, uid: 1000, gid: 100 }) };
        assert_eq!(Endpoint::Unix(peer).to_string(), "unix:(unnamed) pid=7 uid=1000 gid=100");
        let local = UnixEndpoint { path: Some("/run/echo.sock".into()), credentials: None };
        assert_eq!(Endpoint::Unix(local).to_string(), "unix:/run/echo.sock");
    }
}
