//! A listener's TLS settings (certificate, key, ALPN, client CA, SNI
//! certificates) and the rustls server configuration built from their
//! files: TLS 1.2 and 1.3 on the ring provider, every file checked.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};

use super::sni::SniResolver;
use super::{TlsError, files};

/// What one listener's TLS is made of: paths to PEM files and the
/// protocols it offers. Plain data: [`TlsSettings::server_config`] reads
/// the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, the server's own first: served to clients
    /// that send no SNI name or one no [`SniCertificate`] serves.
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// ALPN protocols offered, most preferred first (`h2`, `http/1.1`);
    /// empty for none. A client that offers only others is refused.
    pub alpn: Vec<String>,
    /// CAs a client's certificate must chain to; given, every client must
    /// present one (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Further certificates, chosen by the name a client asks for.
    pub sni: Vec<SniCertificate>,
}

/// A certificate served to clients that ask for one of its names (SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// Host names (`a.example.com`) or one-label wildcards (`*.example.com`).
    pub names: Vec<String>,
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsSettings {
    /// A certificate and its key, with no ALPN, no client certificates and
    /// no SNI entries.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSettings { cert: cert.into(), key: key.into(), alpn: Vec::new(), client_ca: None, sni: Vec::new() }
    }

    /// Every file the configuration is read from, for watching.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        files.extend(self.client_ca.clone());
        for entry in &self.sni {
            files.extend([entry.cert.clone(), entry.key.clone()]);
        }
        files
    }

    /// Reads every file and builds the configuration a handshake uses; the
    /// first thing wrong is the error.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        for protocol in &self.alpn {
            check_alpn(protocol)?;
        }
        let mut resolver = SniResolver::new(certified_key(&self.cert, &self.key, &provider)?);
        for entry in &self.sni {
            if entry.names.is_empty() {
                let name = entry.cert.display().to_string();
                return Err(TlsError::SniName { name, reason: "the SNI entry of this certificate names no host" });
            }
            let key = certified_key(&entry.cert, &entry.key, &provider)?;
            for name in &entry.names {
                resolver.add(name, key.clone())?;
            }
        }
        let verifier = match &self.client_ca {
            Some(bundle) => client_verifier(bundle, &provider)?,
            None => WebPkiClientVerifier::no_client_auth(),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Rustls)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect();
        Ok(config)
    }
}

/// Checks an ALPN protocol name: 1 to 255 bytes, as the extension encodes it.
pub fn check_alpn(protocol: &str) -> Result<(), TlsError> {
    match protocol.len() {
        1..=255 => Ok(()),
        _ => Err(TlsError::Alpn { protocol: protocol.to_string() }),
    }
}

/// The chain in `cert` with the key in `key`, checked to belong together:
/// a mismatch would otherwise show only as every handshake failing.
fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = files::certificates(cert)?;
    let private_key = files::private_key(key)?;
    let signing_key = (provider.key_provider.load_private_key(private_key))
        .map_err(|source| TlsError::BadKey { path: key.to_path_buf(), source })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key that cannot tell its public half is taken on trust, as
        // rustls's own `CertifiedKey::from_der` does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert: cert.to_path_buf(), key: key.to_path_buf() })
        }
        Err(source) => Err(TlsError::BadCertificate { path: cert.to_path_buf(), source }),
    }
}

/// Requires a client certificate that chains to a CA of `bundle`.
fn client_verifier(bundle: &Path, provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let refuse = |reason: String| TlsError::ClientCa { path: bundle.to_path_buf(), reason };
    let mut roots = RootCertStore::empty();
    for (index, certificate) in files::certificates(bundle)?.into_iter().enumerate() {
        (roots.add(certificate))
            .map_err(|e| refuse(format!("certificate {} is not a usable CA certificate: {e}", index + 1)))?;
    }
    (WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build())
        .map_err(|e| refuse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::testing::{Pki, Scratch, handshake};

    /// A certificate and its key build a configuration that serves TLS 1.3
    /// and 1.2 with the ALPN protocols given.
    #[test]
    fn builds_and_serves() {
        let (pki, dir) = (Pki::new(), Scratch::new("builds"));
        let mut settings = pki.settings(&dir, "server", &["server.test"]);
        settings.alpn = vec!["h2".into(), "http/1.1".into()];
        let config = Arc::new(settings.server_config().unwrap());
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let (_, server) = handshake(&config, pki.client().alpn(&["http/1.1"]).build(), "server.test").unwrap();
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let (_, server) = handshake(&config, pki.client().tls12().build(), "server.test").unwrap();
        assert_eq!(server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    }

    /// Each thing wrong with a file is its own error, naming the file.
    #[test]
    fn refuses_bad_files() {
        let (pki, dir) = (Pki::new(), Scratch::new("bad-files"));
        let good = pki.settings(&dir, "good", &["good.test"]);
        let other = pki.settings(&dir, "other", &["other.test"]);
        let empty = dir.write("empty.pem", "");
        let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
        let missing = dir.path().join("missing.pem");
        let check = |settings: TlsSettings, expected: fn(&TlsError) -> bool, named: &Path| {
            let error = settings.server_config().unwrap_err();
            assert!(expected(&error), "{error:?}");
            assert!(error.to_string().contains(&named.display().to_string()), "{error}");
        };
        let with = |cert: &Path, key: &Path| TlsSettings::new(cert, key);
        check(with(&good.cert, &other.key), |e| matches!(e, TlsError::KeyMismatch { .. }), &other.key);
        check(with(&missing, &good.key), |e| matches!(e, TlsError::Missing { .. }), &missing);
        check(with(&good.cert, &missing), |e| matches!(e, TlsError::Missing { .. }), &missing);
        check(with(&empty, &good.key), |e| matches!(e, TlsError::NoCertificate { .. }), &empty);
        check(with(&good.cert, &empty), |e| matches!(e, TlsError::NoPrivateKey { .. }), &empty);
        // A certificate file is no key file, and a key file no certificate.
        check(with(&good.cert, &good.cert), |e| matches!(e, TlsError::NoPrivateKey { .. }), &good.cert);
        check(with(&good.key, &good.key), |e| matches!(e, TlsError::NoCertificate { .. }), &good.key);
        check(with(&garbage, &good.key), |e| matches!(e, TlsError::BadPem { .. }), &garbage);
        let unusable_ca = TlsSettings { client_ca: Some(empty.clone()), ..good.clone() };
        check(unusable_ca, |e| matches!(e, TlsError::NoCertificate { .. }), &empty);
        let missing_ca = TlsSettings { client_ca: Some(missing.clone()), ..good.clone() };
        check(missing_ca, |e| matches!(e, TlsError::Missing { .. }), &missing);
        let sni_mismatch = TlsSettings {
            sni: vec![SniCertificate {
                names: vec!["other.test".into()],
                cert: other.cert.clone(),
                key: good.key.clone(),
            }],
            ..good.clone()
        };
        check(sni_mismatch, |e| matches!(e, TlsError::KeyMismatch { .. }), &other.cert);
        let long = "x".repeat(256);
        for bad in ["", long.as_str()] {
            let error = TlsSettings { alpn: vec![bad.into()], ..good.clone() }.server_config().unwrap_err();
            assert!(matches!(error, TlsError::Alpn { .. }), "{error:?}");
        }
    }

    /// SNI picks the entry that names the host, wildcards included; no name
    /// or an unknown one gets the default certificate.
    #[test]
    fn sni_picks_the_certificate() {
        let (pki, dir) = (Pki::new(), Scratch::new("sni"));
        // The default also names unknown.test, so a client asking for it
        // can check what it was served.
        let default = pki.settings(&dir, "default", &["default.test", "unknown.test"]);
        let a = pki.settings(&dir, "a", &["a.test"]);
        let wild = pki.settings(&dir, "wild", &["*.wild.test"]);
        let entry = |names: &[&str], s: &TlsSettings| SniCertificate {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: s.cert.clone(),
            key: s.key.clone(),
        };
        let settings = TlsSettings { sni: vec![entry(&["a.test"], &a), entry(&["*.wild.test"], &wild)], ..default };
        let config = Arc::new(settings.server_config().unwrap());
        let served = |client: Arc<rustls::ClientConfig>, name: &str| {
            let (client, _) = handshake(&config, client, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            client.peer_certificates().unwrap()[0].clone()
        };
        assert_eq!(served(pki.client().build(), "a.test"), pki.served("a"));
        assert_eq!(served(pki.client().build(), "x.wild.test"), pki.served("wild"));
        assert_eq!(served(pki.client().build(), "unknown.test"), pki.served("default"));
        assert_eq!(served(pki.client().no_sni().build(), "default.test"), pki.served("default"));
    }

    /// With a client CA, a client without a certificate is refused and one
    /// with a certificate from that CA is served.
    #[test]
    fn client_certificates_are_required() {
        let (pki, dir) = (Pki::new(), Scratch::new("mtls"));
        let settings = TlsSettings { client_ca: Some(pki.ca_file(&dir)), ..pki.settings(&dir, "s", &["s.test"]) };
        let config = Arc::new(settings.server_config().unwrap());
        let error = handshake(&config, pki.client().build(), "s.test").unwrap_err();
        assert!(matches!(error, rustls::Error::NoCertificatesPresented), "{error:?}");
        let stranger = Pki::new();
        assert!(handshake(&config, pki.client().identity(&stranger, "stranger").build(), "s.test").is_err());
        let (_, server) = handshake(&config, pki.client().identity(&pki, "client").build(), "s.test").unwrap();
        assert!(server.peer_certificates().is_some_and(|chain| !chain.is_empty()));
    }
}
