//! Conversions between the host's values and the WIT `types` interface:
//! addresses (the network layer's `Endpoint` is the WIT `socket-address`),
//! listener options, and errors (the network layer's become `error-code`s
//! here).
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

use crate::net::{self, ConnectionError, Credentials, DialError, Endpoint, UnixEndpoint};
use crate::wasm::bindings::evconn::listener::types::Host;
use crate::wasm::bindings::{
    AcceptError, ErrorCode, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, ListenOptions, PeerCredentials,
    SocketAddress, UnixSocketAddress,
};
use crate::wasm::state::HostState;

impl Host for HostState {}

impl From<ConnectionError> for ErrorCode {
    fn from(error: ConnectionError) -> Self {
        match error {
            ConnectionError::Closed => ErrorCode::Closed,
            ConnectionError::Failed => ErrorCode::ConnectionReset,
            ConnectionError::WriteShut => ErrorCode::InvalidState,
            ConnectionError::WouldBlock => ErrorCode::WouldBlock,
            ConnectionError::TooLarge => ErrorCode::InvalidArgument,
        }
    }
}

/// Each WIT `listen-options` flag and the host's option it stands for.
const LISTEN_OPTIONS: [(ListenOptions, net::ListenOptions); 9] = [
    (ListenOptions::LEAVE_SOCKETS_BLOCKING, net::ListenOptions::LEAVE_SOCKETS_BLOCKING),
    (ListenOptions::CLOSE_ON_FREE, net::ListenOptions::CLOSE_ON_FREE),
    (ListenOptions::CLOSE_ON_EXEC, net::ListenOptions::CLOSE_ON_EXEC),
    (ListenOptions::REUSEABLE, net::ListenOptions::REUSEABLE),
    (ListenOptions::THREADSAFE, net::ListenOptions::THREADSAFE),
    (ListenOptions::DISABLED, net::ListenOptions::DISABLED),
    (ListenOptions::DEFERRED_ACCEPT, net::ListenOptions::DEFERRED_ACCEPT),
    (ListenOptions::REUSEABLE_PORT, net::ListenOptions::REUSEABLE_PORT),
    (ListenOptions::BIND_IPV6_ONLY, net::ListenOptions::BIND_IPV6_ONLY),
];

impl From<ListenOptions> for net::ListenOptions {
    fn from(options: ListenOptions) -> Self {
        LISTEN_OPTIONS
            .iter()
            .filter(|(flag, _)| options.contains(*flag))
            .fold(net::ListenOptions::empty(), |all, (_, option)| all | *option)
    }
}

/// The WIT error code for an operating-system error.
pub fn error_code(error: &io::Error) -> ErrorCode {
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => ErrorCode::AccessDenied,
        Some(libc::EOPNOTSUPP) => ErrorCode::NotSupported,
        Some(libc::EINVAL) => ErrorCode::InvalidArgument,
        Some(libc::ENOMEM | libc::ENOBUFS) => ErrorCode::OutOfMemory,
        Some(libc::EMFILE) => ErrorCode::TooManyOpenFiles,
        Some(libc::ENFILE) => ErrorCode::SystemFileLimit,
        Some(libc::EADDRINUSE) => ErrorCode::AddressInUse,
        Some(libc::EADDRNOTAVAIL) => ErrorCode::AddressNotBindable,
        Some(libc::ECONNRESET | libc::EPIPE) => ErrorCode::ConnectionReset,
        Some(libc::ECONNABORTED) => ErrorCode::ConnectionAborted,
        Some(libc::ETIMEDOUT) => ErrorCode::Timeout,
        Some(libc::ECONNREFUSED) => ErrorCode::ConnectionRefused,
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => ErrorCode::HostUnreachable,
        _ => match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ErrorCode::ConnectionReset,
            io::ErrorKind::TimedOut => ErrorCode::Timeout,
            _ => ErrorCode::Unknown,
        },
    }
}

/// The WIT error code for an outbound connection that did not connect.
pub fn dial_error_code(error: &DialError) -> ErrorCode {
    match error {
        DialError::Denied { .. } => ErrorCode::AccessDenied,
        DialError::Unresolvable { .. } => ErrorCode::NameUnresolvable,
        DialError::TimedOut(_) => ErrorCode::Timeout,
        DialError::Failed { error, .. } => error_code(error),
    }
}

/// What the guest's `on-accept-error` receives for a failed `accept()`.
pub fn accept_error(error: &io::Error) -> AcceptError {
    let errno = error.raw_os_error().unwrap_or(0);
    AcceptError { code: error_code(error), errno, description: os_error_text(error) }
}

/// The system's text for an error, without the " (os error N)" suffix Rust
/// adds: what `strerror` (and libevent's `evutil_socket_error_to_string`)
/// gives.
fn os_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

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

impl From<Credentials> for PeerCredentials {
    fn from(Credentials { pid, uid, gid }: Credentials) -> Self {
        PeerCredentials { pid, uid, gid }
    }
}

impl From<PeerCredentials> for Credentials {
    fn from(PeerCredentials { pid, uid, gid }: PeerCredentials) -> Self {
        Credentials { pid, uid, gid }
    }
}

/// What the guest sees of an endpoint. A Unix path that is not UTF-8 is
/// given lossily (the WIT has strings only); an unnamed socket's is empty.
impl From<Endpoint> for SocketAddress {
    fn from(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Ip(address) => match IpSocketAddress::from(address) {
                IpSocketAddress::Ipv4(v4) => SocketAddress::Ipv4(v4),
                IpSocketAddress::Ipv6(v6) => SocketAddress::Ipv6(v6),
            },
            Endpoint::Unix(UnixEndpoint { path, credentials }) => SocketAddress::Unix(UnixSocketAddress {
                path: path.map(|path| path.to_string_lossy().into_owned()).unwrap_or_default(),
                credentials: credentials.map(PeerCredentials::from),
            }),
        }
    }
}

/// What a guest asks for, as the network layer names it: an empty Unix
/// path is an unnamed socket, which `bind` refuses.
impl From<SocketAddress> for Endpoint {
    fn from(address: SocketAddress) -> Self {
        match address {
            SocketAddress::Ipv4(v4) => Endpoint::Ip(IpSocketAddress::Ipv4(v4).into()),
            SocketAddress::Ipv6(v6) => Endpoint::Ip(IpSocketAddress::Ipv6(v6).into()),
            SocketAddress::Unix(UnixSocketAddress { path, credentials }) => Endpoint::Unix(UnixEndpoint {
                path: (!path.is_empty()).then(|| PathBuf::from(path)),
                credentials: credentials.map(Credentials::from),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IP and Unix endpoints reach the guest and come back unchanged; an
    /// unnamed Unix socket's path is the empty string.
    #[test]
    fn endpoints_convert_both_ways() {
        let credentials = Some(Credentials { pid: 7, uid: 1000, gid: 100 });
        let endpoints = [
            Endpoint::Ip("127.0.0.1:9876".parse().unwrap()),
            Endpoint::Ip("[fe80::1%2]:443".parse().unwrap()),
            Endpoint::Unix(UnixEndpoint { path: Some("/run/echo.sock".into()), credentials: None }),
            Endpoint::Unix(UnixEndpoint { path: None, credentials }),
        ];
        for endpoint in endpoints {
            assert_eq!(Endpoint::from(SocketAddress::from(endpoint.clone())), endpoint);
        }
        let SocketAddress::Unix(unnamed) =
            SocketAddress::from(Endpoint::Unix(UnixEndpoint { path: None, credentials }))
        else {
            panic!("a Unix endpoint became another kind of address");
        };
        assert_eq!(unnamed.path, "");
        assert_eq!(unnamed.credentials.map(|c| (c.pid, c.uid, c.gid)), Some((7, 1000, 100)));
    }

    /// Every WIT flag maps to the host's option of the same name, and to no
    /// other.
    #[test]
    fn every_listen_option_converts_to_its_namesake() {
        let all = LISTEN_OPTIONS.iter().fold(ListenOptions::empty(), |all, (flag, _)| all | *flag);
        assert!(all == ListenOptions::all(), "a WIT flag has no host option");
        assert_eq!(net::ListenOptions::from(ListenOptions::all()), net::ListenOptions::all());
        for (flag, option) in LISTEN_OPTIONS {
            assert_eq!(net::ListenOptions::from(flag), option);
            let name = net::ListenOptions::NAMES.iter().find(|(_, o)| *o == option).unwrap().0;
            // The flag's Debug form is its name in parentheses.
            let wit_name = format!("{flag:?}");
            let constant = name.to_uppercase().replace('-', "_");
            assert!(wit_name == format!("({name})") || wit_name == format!("({constant})"), "{wit_name} is not {name}");
        }
    }
}
