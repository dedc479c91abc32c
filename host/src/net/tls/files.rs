//! Reads certificates and private keys from PEM files into the types rustls
//! takes, with errors that name the file and what is wrong with it.
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// The file's bytes; a missing file is told apart from one that cannot be
/// read, since the fix differs.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing { path: path.to_path_buf() },
        _ => TlsError::Unreadable { path: path.to_path_buf(), source },
    })
}

/// Every certificate in the file, in order (a chain: the server's first,
/// then the intermediates; or a bundle of CAs). At least one.
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem { path: path.to_path_buf(), source })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certificates)
}

/// The first private key in the file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.to_path_buf() },
        source => TlsError::BadPem { path: path.to_path_buf(), source },
    })
}
