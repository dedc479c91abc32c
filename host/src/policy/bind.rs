//! An address to listen on, as the operator writes it: `HOST:PORT` (IPv6
//! in brackets) or `unix:PATH`, for `--listen`, `--allow-bind` and their
//! config-file keys.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// The longest path a Unix socket address holds (`sun_path` less its
/// terminating NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// An IP address and port, or a Unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A TCP address.
    Ip(SocketAddr),
    /// A Unix domain socket's path.
    Unix(PathBuf),
}

impl BindAddress {
    /// Parses `HOST:PORT` with a port of 1 to 65535 (or of 0 too, with
    /// `any_port`: `--allow-bind`'s "every port"), or `unix:PATH`.
    pub fn parse(text: &str, any_port: bool) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return unix_path(path).map(BindAddress::Unix);
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!(
                "expected HOST:PORT or unix:PATH, such as 0.0.0.0:9876, [::1]:9876 or unix:/run/echo.sock, not {text:?}"
            )
        })?;
        let port: i64 = port.parse().map_err(|_| format!("Invalid port: {port:?} is not a number"))?;
        let lowest = if any_port { 0 } else { 1 };
        if !(lowest..=65535).contains(&port) {
            return Err(format!("Invalid port: {port} (must be {lowest}..65535)"));
        }
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let ip: IpAddr =
            host.parse().map_err(|_| format!("{host:?} is not an IP address (IPv6 goes in brackets: [::1]:9876)"))?;
        Ok(BindAddress::Ip(SocketAddr::new(ip, port as u16)))
    }
}

/// Checks a Unix socket's path: not empty, and short enough for a socket
/// address.
pub fn unix_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("unix: needs a path, such as unix:/run/echo.sock".into());
    }
    if path.len() > UNIX_PATH_MAX {
        return Err(format!("a Unix socket's path holds at most {UNIX_PATH_MAX} bytes; {path:?} has {}", path.len()));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} holds a NUL byte"));
    }
    Ok(PathBuf::from(path))
}

/// `--allow-bind`'s form: port 0 allowed.
impl FromStr for BindAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        BindAddress::parse(text, true)
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Ip(address) => address.fmt(f),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for BindAddress {
    fn from(address: SocketAddr) -> Self {
        BindAddress::Ip(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_and_unix_addresses_and_refuses_bad_ones() {
        assert_eq!(BindAddress::parse("[::1]:1", false).unwrap(), BindAddress::Ip("[::1]:1".parse().unwrap()));
        assert_eq!(BindAddress::parse("unix:/run/a.sock", false).unwrap(), BindAddress::Unix("/run/a.sock".into()));
        assert_eq!(BindAddress::parse("unix:rel.sock", false).unwrap(), BindAddress::Unix("rel.sock".into()));
        assert!(BindAddress::parse("127.0.0.1:0", false).unwrap_err().starts_with("Invalid port"));
        assert_eq!(BindAddress::parse("127.0.0.1:0", true).unwrap(), BindAddress::Ip("127.0.0.1:0".parse().unwrap()));
        assert!(BindAddress::parse("unix:", false).unwrap_err().contains("needs a path"));
        let long = format!("unix:/{}", "a".repeat(UNIX_PATH_MAX));
        assert!(BindAddress::parse(&long, false).unwrap_err().contains("at most 107 bytes"));
        assert!(BindAddress::parse("localhost:80", false).unwrap_err().contains("not an IP address"));
    }
}
