//! What can be wrong with a listener's TLS files and settings, each error
//! naming the file (or the setting) and what is wrong with it.
use std::path::PathBuf;

/// Why a TLS configuration could not be built; the running one, if any,
/// keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    Missing {
        /// The file named.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file named.
        path: PathBuf,
        /// What reading said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{} is not valid PEM: {source}", path.display())]
    BadPem {
        /// The file named.
        path: PathBuf,
        /// What the PEM parser said.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no `BEGIN CERTIFICATE` section.
    #[error("{} holds no certificate (no PEM `BEGIN CERTIFICATE` section)", path.display())]
    NoCertificate {
        /// The file named.
        path: PathBuf,
    },
    /// The file holds no private key section.
    #[error("{} holds no private key (no PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` section)", path.display())]
    NoPrivateKey {
        /// The file named.
        path: PathBuf,
    },
    /// The key is of a kind or on a curve the host cannot sign with.
    #[error("the private key in {} cannot be used: {source}", path.display())]
    BadKey {
        /// The key's file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The first certificate of the chain cannot be parsed.
    #[error("the certificate in {} cannot be used: {source}", path.display())]
    BadCertificate {
        /// The certificate's file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// The bundle of CAs that client certificates are checked against
    /// cannot be used.
    #[error("cannot use the client CA bundle {}: {reason}", path.display())]
    ClientCa {
        /// The bundle's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An ALPN protocol name that cannot be sent: empty, or over 255 bytes.
    #[error("ALPN protocol {protocol:?} cannot be used: give 1 to 255 bytes, such as h2 or http/1.1")]
    Alpn {
        /// The name given.
        protocol: String,
    },
    /// A name in an SNI entry that a client could not send.
    #[error("SNI name {name:?} cannot be used: {reason}")]
    SniName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// rustls refused the settings as a whole.
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[source] rustls::Error),
}
