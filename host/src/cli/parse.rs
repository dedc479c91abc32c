//! Parsers for flag and config values: listen addresses, listener options,
//! environment variables, bucket names and ALPN protocols (durations and sizes are
//! [`crate::base::units`]'s).
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

/// Parses a Unix socket file's mode (`--unix-mode`): octal permission
/// bits, such as 660 or 0660.
pub fn parse_unix_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} is not a file mode: octal permission bits, such as 660")),
    }
}

/// Parses a Unix socket file's owner (`--unix-owner`): `USER`, `USER:GROUP`
/// or `:GROUP`, each a name from /etc/passwd and /etc/group or a number.
pub fn parse_unix_owner(text: &str) -> Result<(Option<u32>, Option<u32>), String> {
    let (user, group) = text.split_once(':').unwrap_or((text, ""));
    let id = |name: &str, file: &str| -> Result<Option<u32>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        if let Ok(id) = name.parse() {
            return Ok(Some(id));
        }
        let table = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        // name:password:id:...
        let found = table.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(name)).then(|| fields.nth(1).and_then(|id| id.parse().ok())).flatten()
        });
        found.map(Some).ok_or_else(|| format!("{name:?} is not in {file}"))
    };
    let owner = (id(user, "/etc/passwd")?, id(group, "/etc/group")?);
    if owner == (None, None) {
        return Err(format!("expected USER, USER:GROUP or :GROUP, not {text:?}"));
    }
    Ok(owner)
}

/// Parses a store bucket's name (`--allow-bucket`).
pub fn parse_bucket(name: &str) -> Result<String, String> {
    if !crate::store::valid_bucket_name(name) {
        return Err(format!("{name:?} is not a bucket name: 1 to 64 letters, digits, '.', '_' or '-'"));
    }
    Ok(name.to_string())
}

/// Parses `KEY=VALUE` (the value may hold `=`); the key must be a name a
/// guest can look up: not empty, no `=`, no NUL.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, not {text:?}"))?;
    check_env_key(key)?;
    if value.contains('\0') {
        return Err(format!("the value of {key} holds a NUL byte"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Checks an environment variable's name: not empty, no `=`, no NUL.
pub fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(format!("{key:?} is not an environment variable name"));
    }
    Ok(())
}

/// The most reactor threads (`--workers`) a host runs.
pub const MAX_WORKERS: u16 = 256;

/// Checks a number of workers: 1 to [`MAX_WORKERS`].
pub fn check_workers(workers: u16) -> Result<u16, String> {
    match workers {
        1..=MAX_WORKERS => Ok(workers),
        n => Err(format!("{n} workers: give 1 to {MAX_WORKERS}")),
    }
}

/// Parses a number of workers ([`check_workers`]).
pub fn parse_workers(text: &str) -> Result<u16, String> {
    check_workers(text.parse().map_err(|_| format!("{text:?} is not a number of workers"))?)
}

/// Checks a connection count: at least 1.
pub fn check_connections(connections: u32) -> Result<u32, String> {
    match connections {
        0 => Err("0 connections: give at least 1".to_string()),
        n => Ok(n),
    }
}

/// Parses a connection count ([`check_connections`]).
pub fn parse_connections(text: &str) -> Result<u32, String> {
    check_connections(text.parse().map_err(|_| format!("{text:?} is not a number of connections"))?)
}

/// Parses an ALPN protocol name (`--tls-alpn`): 1 to 255 bytes.
pub fn parse_alpn(protocol: &str) -> Result<String, String> {
    crate::net::tls::check_alpn(protocol).map_err(|e| e.to_string())?;
    Ok(protocol.to_string())
}

/// Parses a listener option by its WIT name, such as `reuseable`.
pub fn parse_listen_option(name: &str) -> Result<ListenOptions, String> {
    ListenOptions::by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worker and connection counts out of range are refused, with the range.
    #[test]
    fn counts_are_checked() {
        assert_eq!(parse_workers("4"), Ok(4));
        assert!(parse_workers("0").unwrap_err().contains("give 1 to 256"));
        assert!(parse_workers("257").unwrap_err().contains("give 1 to 256"));
        assert!(parse_workers("many").is_err());
        assert_eq!(parse_connections("10"), Ok(10));
        assert!(parse_connections("0").unwrap_err().contains("at least 1"));
    }

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
