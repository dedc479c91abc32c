//! The tls suite's client settings: TLS 1.3 with TLS_AES_128_GCM_SHA256 and
//! X25519 only, so every server negotiates the same handshake and cipher;
//! no session resumption, so every handshake is a full one; and trust in
//! the run's certificate alone.
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The name clients ask for (SNI), one of the certificate's.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(crate::certificate::NAMES[0]).expect("a valid DNS name")
}

/// The client configuration every TLS connection of the run uses.
pub fn config(certificate: &CertificateDer<'static>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![ring::kx_group::X25519],
        ..ring::default_provider()
    });
    let verifier = Arc::new(RunCertificateOnly {
        certificate: certificate.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS client configuration: {e}"))?
        // Not a weaker check than a root store holding the certificate:
        // see RunCertificateOnly.
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Servers still send tickets; the client keeps none and never offers
    // one, so no handshake is abbreviated.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts exactly the run's certificate, and checks the server's
/// handshake signature with its key as any verifier does. It spares the
/// load generator the path building and the certificate's own signature
/// check that a root store would cost on every handshake: the load's one
/// CPU is what bounds the handshake rate, so what it does not need to do
/// leaves more of it for driving the server.
#[derive(Debug)]
struct RunCertificateOnly {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RunCertificateOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(name: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn offers_one_cipher_one_group_and_no_resumption() {
        let config = config(&certificate("localhost")).unwrap();
        let suites: Vec<_> = config.crypto_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites, [rustls::CipherSuite::TLS13_AES_128_GCM_SHA256]);
        let groups: Vec<_> = config.crypto_provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, [rustls::NamedGroup::X25519]);
        assert!(!config.enable_early_data);
        assert!(format!("{:?}", config.resumption).contains("Disabled"), "{:?}", config.resumption);
    }

    #[test]
    fn trusts_the_run_certificate_and_no_other() {
        let ours = certificate("localhost");
        let verifier = RunCertificateOnly {
            certificate: ours.clone(),
            algorithms: ring::default_provider().signature_verification_algorithms,
        };
        let check =
            |cert: &CertificateDer<'_>| verifier.verify_server_cert(cert, &[], &server_name(), &[], UnixTime::now());
        assert!(check(&ours).is_ok());
        assert!(check(&certificate("localhost")).is_err(), "the same name, another key");
    }
}
