//! TLS for listeners, with rustls: the settings an operator gives, the
//! server configuration built and checked from their files, reloaded
//! without a restart, and what a finished handshake negotiated.
mod config;
mod current;
mod error;
mod files;
mod handshake;
mod info;
mod sni;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{SniCertificate, TlsSettings, check_alpn};
pub use current::TlsConfig;
pub use error::TlsError;
pub use handshake::{HandshakeError, handshake};
pub use info::{PeerCertificate, TlsInfo};
pub use sni::check_sni_name;
