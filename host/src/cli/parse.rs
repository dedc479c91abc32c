//! Parsers for flag and config values: listen addresses and listener
//! options (durations and sizes are [`crate::base::units`]'s).
use std::net::{IpAddr, SocketAddr};

use crate::net::ListenOptions;

/// Parses `HOST:PORT`, refusing a port outside 1..65535 as libevent's example
/// does ("Invalid port").
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, such as 0.0.0.0:9876 or [::1]:9876, not {text:?}"))?;
    let port: i64 = port.parse().map_err(|_| format!("Invalid port: {port:?} is not a number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("Invalid port: {port} (must be 1..65535)"));
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr =
        host.parse().map_err(|_| format!("{host:?} is not an IP address (IPv6 goes in brackets: [::1]:9876)"))?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// Parses a listener option by its WIT name, such as `reuseable`.
pub fn parse_listen_option(name: &str) -> Result<ListenOptions, String> {
    ListenOptions::by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports outside 1..65535 are refused with libevent's "Invalid port".
    #[test]
    fn refuses_ports_outside_range() {
        for bad in ["0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:-1", "[::1]:70000"] {
            let error = parse_listen_address(bad).unwrap_err();
            assert!(error.starts_with("Invalid port"), "{bad}: {error}");
        }
        assert_eq!(parse_listen_address("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(parse_listen_address("127.0.0.1:65535").unwrap(), "127.0.0.1:65535".parse().unwrap());
    }
}
