//! For the TLS tests: a CA that issues certificates on the fly, scratch
//! folders for their files, client configurations, and a handshake in
//! memory between a rustls client and server.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConfig, ServerConnection};

use super::TlsSettings;

/// A test CA, and the certificates it issued by label.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    issued: Mutex<HashMap<String, CertificateDer<'static>>>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "evconn test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca, issued: Mutex::default() }
    }

    /// A certificate for `names` (and common name `common_name`) and its key.
    fn issue(&self, common_name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (Certificate, KeyPair) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.ca).unwrap(), key)
    }

    /// Writes a server certificate for `names` and its key to `label.crt`
    /// and `label.key` in `dir`: settings that serve them.
    pub(crate) fn settings(&self, dir: &Scratch, label: &str, names: &[&str]) -> TlsSettings {
        let (certificate, key) = self.issue(label, names, ExtendedKeyUsagePurpose::ServerAuth);
        let cert = dir.write(&format!("{label}.crt"), &certificate.pem());
        let settings = TlsSettings::new(cert, dir.write(&format!("{label}.key"), &key.serialize_pem()));
        self.issued.lock().unwrap().insert(label.to_string(), certificate.der().clone());
        settings
    }

    /// The certificate last issued as `label`.
    pub(crate) fn served(&self, label: &str) -> CertificateDer<'static> {
        self.issued.lock().unwrap()[label].clone()
    }

    /// A server certificate for `name`, with its key, as rustls serves it.
    pub(crate) fn key(&self, name: &str) -> Arc<CertifiedKey> {
        let (certificate, key) = self.issue(name, &[name], ExtendedKeyUsagePurpose::ServerAuth);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(CertifiedKey::from_der(vec![certificate.der().clone()], key, &provider).unwrap())
    }

    /// The CA's certificate in `ca.crt` in `dir`.
    pub(crate) fn ca_file(&self, dir: &Scratch) -> PathBuf {
        dir.write("ca.crt", &self.ca.pem())
    }

    /// A client that trusts this CA.
    pub(crate) fn client(&self) -> Client<'_> {
        Client { pki: self, alpn: Vec::new(), tls12: false, sni: true, identity: None }
    }
}

/// A client configuration being made.
pub(crate) struct Client<'a> {
    pki: &'a Pki,
    alpn: Vec<Vec<u8>>,
    tls12: bool,
    sni: bool,
    identity: Option<(Certificate, KeyPair)>,
}

impl Client<'_> {
    /// Offers these ALPN protocols.
    pub(crate) fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Speaks TLS 1.2 only.
    pub(crate) fn tls12(mut self) -> Self {
        self.tls12 = true;
        self
    }

    /// Sends no server name.
    pub(crate) fn no_sni(mut self) -> Self {
        self.sni = false;
        self
    }

    /// Presents a client certificate with common name `common_name` that
    /// `issuer` issued.
    pub(crate) fn identity(mut self, issuer: &Pki, common_name: &str) -> Self {
        self.identity = Some(issuer.issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth));
        self
    }

    pub(crate) fn build(self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.pki.ca.der().clone()).unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] =
            if self.tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some((certificate, key)) => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
                builder.with_client_auth_cert(vec![certificate.der().clone()], key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        config.enable_sni = self.sni;
        Arc::new(config)
    }
}

/// Runs a handshake in memory, the client asking for `name`; the first
/// error either side sees.
pub(crate) fn handshake(
    server: &Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = ClientConnection::new(client, name)?;
    let mut server = ServerConnection::new(server.clone())?;
    // A handshake takes a few flights; more means something is stuck.
    for _ in 0..10 {
        let from_client = pass(&mut *client, &mut *server);
        let from_server = pass(&mut *server, &mut *client);
        // The side that failed first knows why (the other sees an alert).
        from_client.and(from_server)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
    }
    panic!("the handshake did not finish");
}

/// Moves what `from` has to send into `to`, and has `to` process it.
fn pass<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// A folder of its own under the system's temporary folder, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("evconn-tls-{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` in the folder: its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
