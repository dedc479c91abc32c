//! Conversions between the host's values and the WIT `types` interface:
//! addresses, listener options, and errors (the network layer's become
//! `error-code`s here).
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::net::{self, ConnectionError, DialError, Endpoint};
use crate::wasm::bindings::evconn::listener::types::Host;
use crate::wasm::bindings::{
    AcceptError, ErrorCode, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, ListenOptions,
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

/// An endpoint as the guest sees it. A Unix one has no IP form: it reads
/// as 0.0.0.0 port 0.
impl From<&Endpoint> for IpSocketAddress {
    fn from(endpoint: &Endpoint) -> Self {
        endpoint.ip().unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)).into()
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

#[cfg(test)]
mod tests {
    use super::*;

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
