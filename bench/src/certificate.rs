//! The tls suite's certificate: one ECDSA P-256 certificate and key, made
//! afresh for each run and written where every server can read them.
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

/// The names the certificate is for: the name clients send, and the
/// address they connect to.
pub const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The run's certificate: its files, and its DER for the clients.
#[derive(Debug, Clone)]
pub struct RunCertificate {
    /// The certificate in PEM (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key in PKCS#8 PEM (`--tls-key`).
    pub key: PathBuf,
    /// Both in one PEM file, as HAProxy's `crt` takes them.
    pub combined: PathBuf,
    pub der: CertificateDer<'static>,
}

impl RunCertificate {
    /// Makes a self-signed certificate for NAMES and writes its files into
    /// `dir`. Every server presents the same one, so they all sign the same
    /// handshakes with the same kind of key.
    pub fn make(dir: &Path) -> Result<RunCertificate, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot make a P-256 key: {e}"))?;
        let params = rcgen::CertificateParams::new(NAMES.map(String::from).to_vec())
            .map_err(|e| format!("certificate parameters: {e}"))?;
        let cert = params.self_signed(&key).map_err(|e| format!("cannot sign the certificate: {e}"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        };
        Ok(RunCertificate {
            cert: write("cert.pem", &cert_pem)?,
            key: write("key.pem", &key_pem)?,
            combined: write("cert-and-key.pem", &format!("{cert_pem}{key_pem}"))?,
            der: cert.der().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_certificate_its_key_and_both_in_one_file() {
        let dir = std::env::temp_dir().join(format!("evconn-bench-certificate-{}", std::process::id()));
        let made = RunCertificate::make(&dir).unwrap();
        let cert = std::fs::read_to_string(&made.cert).unwrap();
        let key = std::fs::read_to_string(&made.key).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8: {key}");
        assert_eq!(std::fs::read_to_string(&made.combined).unwrap(), format!("{cert}{key}"));
        // Another run gets another key.
        assert_ne!(RunCertificate::make(&dir).unwrap().der, made.der);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
