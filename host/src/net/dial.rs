//! Outbound connections: resolving a name, keeping to the addresses the
//! caller allows, and connecting within a time limit, as libevent's
//! `bufferevent_socket_connect_hostname` does with its DNS base.
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// Where an outbound connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// An address, connected to as it is.
    Address(SocketAddr),
    /// A name the host resolves, and a port.
    Name(String, u16),
}

/// Why an outbound connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every address the name resolved to is outside what is allowed.
    #[error("{name} resolves only to addresses that are not allowed")]
    Denied { name: String },
    /// The name resolves to no address.
    #[error("{name} does not resolve: {error}")]
    Unresolvable { name: String, error: io::Error },
    /// It took longer than the connect timeout.
    #[error("no connection within {0:?}")]
    TimedOut(Duration),
    /// Connecting failed: refused, unreachable, ...
    #[error("{address}: {error}")]
    Failed { address: SocketAddr, error: io::Error },
}

impl DialTarget {
    /// Connects to the target within `timeout`: to its address, or to the
    /// first address its name resolves to that `allowed` accepts, trying the
    /// next on failure. Returns the stream and the address it reached.
    pub async fn dial(
        &self,
        allowed: impl Fn(SocketAddr) -> bool,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        tokio::time::timeout(timeout, self.dial_unbounded(allowed)).await.map_err(|_| DialError::TimedOut(timeout))?
    }

    async fn dial_unbounded(&self, allowed: impl Fn(SocketAddr) -> bool) -> Result<(TcpStream, SocketAddr), DialError> {
        let addresses = match self {
            DialTarget::Address(address) => vec![*address],
            DialTarget::Name(name, port) => resolve(name, *port).await?,
        };
        let mut last_failure = None;
        for address in addresses.into_iter().filter(|address| allowed(*address)) {
            match connect(address).await {
                Ok(stream) => return Ok((stream, address)),
                Err(error) => last_failure = Some(DialError::Failed { address, error }),
            }
        }
        Err(last_failure.unwrap_or_else(|| match self {
            DialTarget::Name(name, _) => DialError::Denied { name: name.clone() },
            // The caller checked the address before dialing.
            DialTarget::Address(address) => {
                DialError::Failed { address: *address, error: io::ErrorKind::PermissionDenied.into() }
            }
        }))
    }
}

/// The addresses `name` resolves to: by the system's resolver, on a
/// blocking thread, unless it is written as an address (tokio parses that
/// first).
async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    let unresolvable = |error| DialError::Unresolvable { name: name.to_string(), error };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port)).await.map_err(unresolvable)?.collect();
    if addresses.is_empty() {
        return Err(unresolvable(io::Error::new(io::ErrorKind::NotFound, "no address")));
    }
    Ok(addresses)
}

/// A non-blocking connect to `address`, with keep-alive on as for accepted
/// connections.
async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_keepalive(true)?;
    socket.connect(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// An address dials as it is; a name dials the addresses it resolves
    /// to that are allowed, and none allowed is a denial.
    #[tokio::test]
    async fn dials_only_allowed_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (_, reached) = DialTarget::Address(address).dial(|_| true, SECOND).await.unwrap();
        assert_eq!(reached, address);

        let by_name = DialTarget::Name("localhost".into(), address.port());
        let (_, reached) = by_name.dial(|a| a == address, SECOND).await.unwrap();
        assert_eq!(reached, address);
        let denied = by_name.dial(|_| false, SECOND).await.unwrap_err();
        assert!(matches!(denied, DialError::Denied { .. }), "{denied:?}");
    }

    /// A closed port is refused; a name that does not resolve says so.
    #[tokio::test]
    async fn refusal_and_unknown_names_are_reported() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let refused = DialTarget::Address(closed).dial(|_| true, SECOND).await.unwrap_err();
        match refused {
            DialError::Failed { error, .. } => assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("{other:?}"),
        }
        let unknown = DialTarget::Name("no-such-host.invalid".into(), 80).dial(|_| true, 5 * SECOND).await;
        assert!(matches!(unknown, Err(DialError::Unresolvable { .. })), "{unknown:?}");
    }
}
