//! Where a guest may connect (`--allow-connect`): entries of an address, a
//! CIDR block or a host name, each with a port, a range of ports or any.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;

/// One `--allow-connect` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    /// What it names.
    pub target: ConnectTarget,
    /// The ports it allows.
    pub ports: RangeInclusive<u16>,
}

/// The hosts one entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// Every address of a block: `10.0.0.0/8`, `::1/128`; one address is a
    /// block of its full length.
    Block { network: IpAddr, prefix: u8 },
    /// A host name, matched without regard to case or a final dot. It
    /// allows asking for the name; the addresses it resolves to need an
    /// address entry of their own.
    Name(String),
}

impl ConnectRule {
    /// Whether this entry allows connecting to `address`.
    pub fn allows_address(&self, address: SocketAddr) -> bool {
        self.ports.contains(&address.port())
            && matches!(&self.target, ConnectTarget::Block { network, prefix } if in_block(address.ip(), *network, *prefix))
    }

    /// Whether this entry allows asking for `name` on `port`.
    pub fn allows_name(&self, name: &str, port: u16) -> bool {
        self.ports.contains(&port)
            && matches!(&self.target, ConnectTarget::Name(allowed) if *allowed == normal_name(name))
    }
}

/// A name as entries keep it: lower case, no final dot.
pub fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether `ip` lies in `network/prefix`. An IPv4-mapped IPv6 address is
/// taken as the IPv4 address it maps, so `::ffff:127.0.0.1` cannot pass
/// for something other than loopback.
fn in_block(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let ip = ip.to_canonical();
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

impl FromStr for ConnectRule {
    type Err = String;

    /// `HOST:PORTS`, where HOST is an IP address, a CIDR block or a name
    /// (IPv6 in brackets: `[::1]:80`, `[fd00::/8]:*`) and PORTS is a port,
    /// a range `N-M`, or `*` for any.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?}: {why}; expected HOST:PORTS such as 127.0.0.1:6379, 10.0.0.0/8:8000-8099, [::1]:*, db.internal:5432"
            )
        };
        let (host, ports) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let ports = parse_ports(ports).map_err(|why| bad(&why))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let target = match host.split_once('/') {
            Some((network, prefix)) => {
                let network: IpAddr = network.parse().map_err(|_| bad("a block's address is not an IP address"))?;
                let longest = if network.is_ipv4() { 32 } else { 128 };
                let prefix = prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= longest)
                    .ok_or_else(|| bad(&format!("the prefix length must be 0..={longest}")))?;
                ConnectTarget::Block { network, prefix }
            }
            None => match host.parse::<IpAddr>() {
                Ok(ip) => ConnectTarget::Block { network: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } },
                Err(_) if valid_name(host) => ConnectTarget::Name(normal_name(host)),
                Err(_) => return Err(bad("the host is neither an IP address, a CIDR block nor a host name")),
            },
        };
        Ok(ConnectRule { target, ports })
    }
}

/// `*`, `N` or `N-M`, ports in 1..=65535.
fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    if text == "*" {
        return Ok(1..=u16::MAX);
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(format!("{p:?} is not a port in 1..65535"));
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("the range {low}-{high} is empty"));
            }
            Ok(low..=high)
        }
        None => port(text).map(|p| p..=p),
    }
}

/// Whether `name` is a host name: dot-separated labels of letters, digits
/// and hyphens, at most 253 bytes.
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl fmt::Display for ConnectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            ConnectTarget::Block { network: IpAddr::V6(ip), prefix: 128 } => write!(f, "[{ip}]")?,
            ConnectTarget::Block { network: IpAddr::V4(ip), prefix: 32 } => write!(f, "{ip}")?,
            ConnectTarget::Block { network: IpAddr::V6(ip), prefix } => write!(f, "[{ip}/{prefix}]")?,
            ConnectTarget::Block { network, prefix } => write!(f, "{network}/{prefix}")?,
            ConnectTarget::Name(name) => write!(f, "{name}")?,
        }
        match (*self.ports.start(), *self.ports.end()) {
            (1, u16::MAX) => write!(f, ":*"),
            (low, high) if low == high => write!(f, ":{low}"),
            (low, high) => write!(f, ":{low}-{high}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> ConnectRule {
        text.parse().unwrap()
    }

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Every form of entry parses and prints back as written.
    #[test]
    fn entries_parse_and_print_back() {
        for text in ["127.0.0.1:6379", "10.0.0.0/8:8000-8099", "[::1]:*", "[fd00::/8]:443", "db.internal:5432"] {
            assert_eq!(rule(text).to_string(), text);
        }
        assert_eq!(rule("DB.Internal.:1").target, ConnectTarget::Name("db.internal".into()));
    }

    /// Bad entries are refused with what was expected.
    #[test]
    fn bad_entries_are_refused() {
        for text in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:9-8", "10.0.0.0/33:1", "[::1/129]:1", "bad_name:1", ":80"] {
            let error = text.parse::<ConnectRule>().unwrap_err();
            assert!(error.contains("expected HOST:PORTS"), "{text}: {error}");
        }
    }

    /// Blocks match their addresses and ports only; a mapped IPv6 address
    /// is matched as the IPv4 address it carries.
    #[test]
    fn blocks_match_addresses_and_ports() {
        let block = rule("10.1.0.0/16:8000-8099");
        assert!(block.allows_address(address("10.1.200.3:8000")));
        assert!(block.allows_address(address("10.1.0.1:8099")));
        assert!(!block.allows_address(address("10.2.0.1:8000")));
        assert!(!block.allows_address(address("10.1.0.1:8100")));
        assert!(!block.allows_address(address("[::1]:8000")));
        assert!(rule("127.0.0.1:80").allows_address(address("[::ffff:127.0.0.1]:80")));
        assert!(!rule("[::ffff:0:0/96]:*").allows_address(address("127.0.0.1:80")), "mapped is IPv4");
        assert!(rule("0.0.0.0/0:*").allows_address(address("192.0.2.1:1")));
        assert!(rule("[::/0]:*").allows_address(address("[2001:db8::1]:1")));
        assert!(!rule("db.internal:*").allows_address(address("127.0.0.1:1")), "a name allows no address");
    }

    /// Names match by name and port, whatever the case.
    #[test]
    fn names_match_names_and_ports() {
        let name = rule("db.internal:5432");
        assert!(name.allows_name("DB.internal.", 5432));
        assert!(!name.allows_name("db.internal", 5433));
        assert!(!name.allows_name("other.internal", 5432));
        assert!(!rule("127.0.0.1:5432").allows_name("127.0.0.1", 5432), "an address entry allows no name");
    }
}
