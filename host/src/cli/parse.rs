//! Parsers for flag and config values: addresses, durations, sizes,
//! listener options.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::bindings::ListenOptions;
use crate::socket::{OPTION_NAMES, option_by_name};

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
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address (IPv6 goes in brackets: [::1]:9876)"))?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// Parses a duration: a number with `ms`, `s` or `m`, or seconds alone.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    if !(0.0..=1e9).contains(&value) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a size in bytes: a number with `K`, `M` or `G` (powers of 1024),
/// or bytes alone.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: usize = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 65536, 64K or 16M"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a listener option by its WIT name, such as `reuseable`.
pub fn parse_listen_option(name: &str) -> Result<ListenOptions, String> {
    option_by_name(name).ok_or_else(|| {
        let names: Vec<_> = OPTION_NAMES.iter().map(|(n, _)| *n).collect();
        format!("unknown listener option {name:?}; known: {}", names.join(", "))
    })
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

    /// Durations and sizes read as documented; nonsense is refused.
    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }
}
