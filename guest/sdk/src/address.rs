//! Where a connection's ends are: an IP address and port, or a Unix domain
//! socket's path with the peer's credentials. [`Address`] is the WIT
//! `socket-address` in Rust's terms, with `Display` for logs and replies.
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::bindings::evconn::listener::types::{
    self as wit, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, SocketAddress,
};

/// One end of a connection or a listener: what [`crate::Handler::on_accept`]
/// gets as the peer, and what `Address::from(conn.peer_address())` and
/// `Address::from(conn.local_address())` give.
///
/// Displays as `127.0.0.1:9876`, `[::1]:9876`, `unix:/run/app.sock` or
/// `unix:(unnamed)`, followed for a Unix peer by ` pid=.. uid=.. gid=..`:
/// the host's logs show endpoints the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP endpoint.
    Ip(SocketAddr),
    /// A Unix domain socket's end.
    Unix(UnixAddress),
}

/// A Unix domain socket's end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UnixAddress {
    /// The socket file's path; empty for an unnamed socket, as most
    /// clients' are.
    pub path: String,
    /// Who connected (`SO_PEERCRED`): only for the peer of a connection
    /// accepted on a Unix listener.
    pub credentials: Option<PeerCredentials>,
}

/// The process at the other end of a Unix domain socket, as the kernel
/// recorded it when it connected (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The process id.
    pub pid: u32,
    /// The effective user id.
    pub uid: u32,
    /// The effective group id.
    pub gid: u32,
}

impl Address {
    /// The IP address and port, for a TCP endpoint.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(address) => Some(*address),
            Address::Unix(_) => None,
        }
    }

    /// The Unix socket's end, for a Unix domain socket.
    pub fn unix(&self) -> Option<&UnixAddress> {
        match self {
            Address::Ip(_) => None,
            Address::Unix(unix) => Some(unix),
        }
    }

    /// The peer's credentials, for the peer of a connection accepted on a
    /// Unix listener.
    pub fn credentials(&self) -> Option<PeerCredentials> {
        self.unix().and_then(|unix| unix.credentials)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(address) => address.fmt(f),
            Address::Unix(unix) => unix.fmt(f),
        }
    }
}

impl fmt::Display for UnixAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str("unix:(unnamed)")?;
        } else {
            write!(f, "unix:{}", self.path)?;
        }
        match self.credentials {
            Some(PeerCredentials { pid, uid, gid }) => write!(f, " pid={pid} uid={uid} gid={gid}"),
            None => Ok(()),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(address: SocketAddr) -> Self {
        Address::Ip(address)
    }
}

impl From<SocketAddress> for Address {
    fn from(address: SocketAddress) -> Self {
        match address {
            SocketAddress::Ipv4(v4) => Address::Ip(IpSocketAddress::Ipv4(v4).into()),
            SocketAddress::Ipv6(v6) => Address::Ip(IpSocketAddress::Ipv6(v6).into()),
            SocketAddress::Unix(unix) => Address::Unix(UnixAddress {
                path: unix.path,
                credentials: unix.credentials.map(|c| PeerCredentials { pid: c.pid, uid: c.uid, gid: c.gid }),
            }),
        }
    }
}

/// For `Listener::bind`, which takes a Unix path as readily as an IP
/// address (the credentials are ignored there).
impl From<Address> for SocketAddress {
    fn from(address: Address) -> Self {
        match address {
            Address::Ip(ip) => ip.into(),
            Address::Unix(unix) => SocketAddress::Unix(wit::UnixSocketAddress {
                path: unix.path,
                credentials: unix.credentials.map(|c| wit::PeerCredentials { pid: c.pid, uid: c.uid, gid: c.gid }),
            }),
        }
    }
}

/// So that `Listener::bind(&address.into(), ..)` takes a `SocketAddr`.
impl From<SocketAddr> for SocketAddress {
    fn from(address: SocketAddr) -> Self {
        match IpSocketAddress::from(address) {
            IpSocketAddress::Ipv4(v4) => SocketAddress::Ipv4(v4),
            IpSocketAddress::Ipv6(v6) => SocketAddress::Ipv6(v6),
        }
    }
}

impl From<IpSocketAddress> for SocketAddr {
    fn from(address: IpSocketAddress) -> Self {
        match address {
            IpSocketAddress::Ipv4(v4) => {
                let (a, b, c, d) = v4.address;
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), v4.port))
            }
            IpSocketAddress::Ipv6(v6) => {
                let (a, b, c, d, e, f, g, h) = v6.address;
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::new(a, b, c, d, e, f, g, h),
                    v6.port,
                    v6.flow_info,
                    v6.scope_id,
                ))
            }
        }
    }
}

/// For `outbound::connect`, which goes to IP addresses only.
impl From<SocketAddr> for IpSocketAddress {
    fn from(address: SocketAddr) -> Self {
        match address {
            SocketAddr::V4(v4) => {
                let [a, b, c, d] = v4.ip().octets();
                IpSocketAddress::Ipv4(Ipv4SocketAddress { port: v4.port(), address: (a, b, c, d) })
            }
            SocketAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.ip().segments();
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: v6.port(),
                    flow_info: v6.flowinfo(),
                    address: (a, b, c, d, e, f, g, h),
                    scope_id: v6.scope_id(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses show as the host's logs show them.
    #[test]
    fn displays_ip_and_unix_addresses() {
        assert_eq!(Address::from("127.0.0.1:5555".parse::<SocketAddr>().unwrap()).to_string(), "127.0.0.1:5555");
        assert_eq!(Address::Ip("[::1]:80".parse().unwrap()).to_string(), "[::1]:80");
        let credentials = Some(PeerCredentials { pid: 7, uid: 1000, gid: 100 });
        let peer = Address::Unix(UnixAddress { path: String::new(), credentials });
        assert_eq!(peer.to_string(), "unix:(unnamed) pid=7 uid=1000 gid=100");
        let local = Address::Unix(UnixAddress { path: "/run/app.sock".into(), credentials: None });
        assert_eq!(local.to_string(), "unix:/run/app.sock");
        assert_eq!(peer.credentials(), credentials);
        assert_eq!(peer.ip(), None);
    }

    /// The WIT's address and the SDK's carry the same thing.
    #[test]
    fn converts_to_the_wit_and_back() {
        let credentials = Some(PeerCredentials { pid: 7, uid: 1000, gid: 100 });
        let addresses = [
            Address::Ip("10.1.2.3:4".parse().unwrap()),
            Address::Ip("[fe80::1%3]:443".parse().unwrap()),
            Address::Unix(UnixAddress { path: "/tmp/s".into(), credentials: None }),
            Address::Unix(UnixAddress { path: String::new(), credentials }),
        ];
        for address in addresses {
            assert_eq!(Address::from(SocketAddress::from(address.clone())), address);
        }
    }
}
