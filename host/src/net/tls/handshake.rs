//! The server's side of a TLS handshake on an accepted socket, bounded in
//! time: it runs before the guest hears of the connection, and a client
//! that never finishes it is closed without reaching the guest.
use std::io;
use std::time::Duration;

use rustls::ServerConnection;
use tokio_rustls::TlsAcceptor;

use super::TlsConfig;
use crate::net::Stream;

/// Why a handshake did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not within the handshake timeout.
    #[error("no TLS handshake within {0:?}")]
    TimedOut(Duration),
    /// The client or the host gave up: no common protocol, a certificate
    /// refused, a malformed message, the connection closed.
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// Completes the handshake on `stream` with `config`'s current
/// certificates within `timeout`; returns the socket and the session,
/// which may already hold the client's first plaintext.
pub async fn handshake(
    config: &TlsConfig,
    stream: Stream,
    timeout: Duration,
) -> Result<(Stream, ServerConnection), HandshakeError> {
    let acceptor = TlsAcceptor::from(config.current());
    let accept = async {
        match stream {
            Stream::Tcp(stream) => {
                let (stream, session) = acceptor.accept(stream).await?.into_inner();
                Ok((Stream::Tcp(stream), session))
            }
            Stream::Unix(stream) => {
                let (stream, session) = acceptor.accept(stream).await?.into_inner();
                Ok((Stream::Unix(stream), session))
            }
        }
    };
    match tokio::time::timeout(timeout, accept).await {
        Ok(result) => result.map_err(HandshakeError::Failed),
        Err(_) => Err(HandshakeError::TimedOut(timeout)),
    }
}
