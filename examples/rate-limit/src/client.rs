//! Whose lines a count is for: under mutual TLS the client's certificate,
//! wherever it connects from; else a TCP peer's IP address (any port: one
//! machine's connections share a limit), or, for a peer on a Unix domain
//! socket, where every client's address is empty, the user it runs as.
use std::fmt;
use std::net::IpAddr;

use evconn_guest::{Address, TlsInfo};

/// One rate-limited client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// A TCP peer: IPv4 peers reaching an IPv6 listener count as their
    /// IPv4 address.
    Ip(IpAddr),
    /// A Unix peer, by its user id (`SO_PEERCRED`): one user's processes
    /// share a limit, as one machine's do over TCP.
    User(u32),
    /// A Unix peer the host gave no credentials for: every such peer shares
    /// one limit, rather than none.
    UnknownUser,
    /// A client that presented a certificate under mutual TLS, by the
    /// certificate's SHA-256 fingerprint (64 hex digits).
    Certificate(String),
}

impl Client {
    /// The client of a connection from `peer`, whose handshake, if any,
    /// negotiated `tls`.
    pub fn of(peer: &Address, tls: Option<&TlsInfo>) -> Self {
        match tls.and_then(|tls| tls.peer_certificate.as_ref()) {
            Some(certificate) => Client::Certificate(certificate.fingerprint_sha256.clone()),
            None => Client::from(peer),
        }
    }
}

impl From<&Address> for Client {
    fn from(peer: &Address) -> Self {
        match peer {
            Address::Ip(address) => Client::Ip(address.ip().to_canonical()),
            Address::Unix(unix) => unix.credentials.map_or(Client::UnknownUser, |c| Client::User(c.uid)),
        }
    }
}

/// The client's part of a count's key: `192.0.2.7`, `2001:db8::1`,
/// `uid:1000`, `uid:unknown` or `cert:` and 64 hex digits, none of which
/// holds a `/`.
impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Ip(ip) => ip.fmt(f),
            Client::User(uid) => write!(f, "uid:{uid}"),
            Client::UnknownUser => f.write_str("uid:unknown"),
            Client::Certificate(fingerprint) => write!(f, "cert:{fingerprint}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use evconn_guest::{PeerCertificate, PeerCredentials, UnixAddress};

    use super::*;

    /// TCP peers count by IP, IPv4-mapped ones as IPv4; Unix peers by user.
    #[test]
    fn clients_by_ip_or_user() {
        let v4 = Address::Ip("192.0.2.7:5555".parse().unwrap());
        let mapped = Address::Ip("[::ffff:192.0.2.7]:6666".parse().unwrap());
        assert_eq!(Client::from(&v4), Client::from(&mapped));
        assert_eq!(Client::from(&v4).to_string(), "192.0.2.7");
        let credentials = Some(PeerCredentials { pid: 7, uid: 1000, gid: 100 });
        let unix = Address::Unix(UnixAddress { path: String::new(), credentials });
        assert_eq!(Client::from(&unix).to_string(), "uid:1000");
        let anonymous = Address::Unix(UnixAddress::default());
        assert_eq!(Client::from(&anonymous).to_string(), "uid:unknown");
    }

    /// Under mutual TLS the certificate names the client; a TLS session
    /// without one leaves the address to.
    #[test]
    fn a_client_certificate_outranks_the_address() {
        let peer = Address::Ip("192.0.2.7:5555".parse().unwrap());
        let mut tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            server_name: None,
            alpn_protocol: None,
            peer_certificate: None,
        };
        assert_eq!(Client::of(&peer, Some(&tls)).to_string(), "192.0.2.7");
        let fingerprint = "ab".repeat(32);
        tls.peer_certificate =
            Some(PeerCertificate { subject: "CN=one".into(), fingerprint_sha256: fingerprint.clone() });
        assert_eq!(Client::of(&peer, Some(&tls)).to_string(), format!("cert:{fingerprint}"));
        assert_eq!(Client::of(&peer, None), Client::from(&peer));
    }
}
