//! What a finished handshake negotiated, in plain strings for the guest:
//! the protocol version, the cipher suite, the name the client asked for,
//! the ALPN protocol, and the client's certificate if it sent one.
use rustls::{ProtocolVersion, ServerConnection};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A TLS session's parameters, read once its handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// rustls's name of the suite, such as `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// The name the client sent (SNI), lowercase; `None` if it sent none.
    pub server_name: Option<String>,
    /// The ALPN protocol both sides agreed on, if any.
    pub alpn_protocol: Option<String>,
    /// The client's certificate, under mutual TLS.
    pub peer_certificate: Option<PeerCertificate>,
}

/// The client's (end-entity) certificate, as a guest can tell clients apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Its subject as RFC 4514 writes it, most specific first: `CN=client,O=Example`.
    /// Empty if the certificate cannot be parsed (the verifier accepted it, so
    /// this does not happen with a client CA).
    pub subject: String,
    /// SHA-256 of its DER, in lowercase hex: what pinning compares.
    pub fingerprint_sha256: String,
}

impl TlsInfo {
    /// What `connection`'s handshake negotiated. Called before the handshake
    /// is done, the fields not yet known are empty.
    pub fn of(connection: &ServerConnection) -> TlsInfo {
        let version = match connection.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher_suite = connection.negotiated_cipher_suite().map(|suite| suite.suite());
        let cipher_suite = cipher_suite.map_or_else(String::new, |suite| match suite.as_str() {
            Some(name) => name.to_string(),
            None => format!("{suite:?}"),
        });
        TlsInfo {
            version,
            cipher_suite,
            server_name: connection.server_name().map(str::to_string),
            alpn_protocol: connection.alpn_protocol().map(|protocol| String::from_utf8_lossy(protocol).into_owned()),
            peer_certificate: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| PeerCertificate::of(der)),
        }
    }
}

impl PeerCertificate {
    /// The subject and fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> PeerCertificate {
        let subject = X509Certificate::from_der(der).map(|(_, cert)| rfc4514(cert.subject())).unwrap_or_default();
        let fingerprint_sha256 = Sha256::digest(der).iter().map(|byte| format!("{byte:02x}")).collect();
        PeerCertificate { subject, fingerprint_sha256 }
    }
}

/// A distinguished name as RFC 4514 writes it: relative names from the last
/// to the first, `,` between them, `+` within one, attribute types by their
/// short names (or dotted OIDs), values escaped, non-string values as `#`
/// and their hex.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let kind = x509_parser::objects::oid2abbrev(oid, registry)
                        .map_or_else(|_| oid.to_id_string(), str::to_string);
                    let value = match attribute.as_str() {
                        Ok(text) => escape(text),
                        Err(_) => {
                            let bytes = attribute.attr_value().data;
                            format!("#{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
                        }
                    };
                    format!("{kind}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// Escapes an attribute value as RFC 4514 asks: the special characters
/// anywhere, a space or `#` in front, a space at the end, NUL as `\00`.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => escaped.extend(['\\', c]),
            '#' | ' ' if index == 0 => escaped.extend(['\\', c]),
            ' ' if index == last => escaped.extend(['\\', c]),
            '\0' => escaped.push_str("\\00"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::net::tls::TlsSettings;
    use crate::net::tls::testing::{Pki, Scratch, handshake};

    /// A handshake with a client certificate: version, suite, name, ALPN,
    /// and the certificate's subject and fingerprint as the client sent it.
    #[test]
    fn describes_a_real_handshake() {
        let (pki, dir) = (Pki::new(), Scratch::new("info"));
        let settings = TlsSettings {
            alpn: vec!["h2".into(), "echo/1".into()],
            client_ca: Some(pki.ca_file(&dir)),
            ..pki.settings(&dir, "server", &["server.test"])
        };
        let config = Arc::new(settings.server_config().unwrap());
        let client = pki.client().alpn(&["echo/1"]).identity(&pki, "client").build();
        let (client, server) = handshake(&config, client, "Server.test").unwrap();
        let info = TlsInfo::of(&server);
        assert_eq!(info.version, "TLSv1.3");
        assert!(info.cipher_suite.starts_with("TLS13_"), "{}", info.cipher_suite);
        assert_eq!(info.cipher_suite, format!("{:?}", client.negotiated_cipher_suite().unwrap().suite()));
        assert_eq!(info.server_name.as_deref(), Some("server.test"));
        assert_eq!(info.alpn_protocol.as_deref(), Some("echo/1"));
        let peer = info.peer_certificate.expect("the client sent a certificate");
        assert_eq!(peer.subject, "CN=client");
        let der = &server.peer_certificates().unwrap()[0];
        let expected: String = Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((peer.fingerprint_sha256.len(), &peer.fingerprint_sha256), (64, &expected));

        let (_, server) =
            handshake(&config, pki.client().tls12().identity(&pki, "client").build(), "server.test").unwrap();
        let info = TlsInfo::of(&server);
        assert_eq!(info.version, "TLSv1.2");
        assert!(info.cipher_suite.starts_with("TLS_ECDHE_"), "{}", info.cipher_suite);
        assert_eq!(info.alpn_protocol, None);
    }

    /// Without a client CA there is no peer certificate; without SNI no name.
    #[test]
    fn absent_things_are_none() {
        let (pki, dir) = (Pki::new(), Scratch::new("info-none"));
        let config = Arc::new(pki.settings(&dir, "server", &["server.test"]).server_config().unwrap());
        let (_, server) = handshake(&config, pki.client().no_sni().build(), "server.test").unwrap();
        let info = TlsInfo::of(&server);
        assert_eq!((info.server_name, info.alpn_protocol, info.peer_certificate), (None, None, None));
    }

    /// Values are escaped as RFC 4514 asks.
    #[test]
    fn escapes_values() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }
}
