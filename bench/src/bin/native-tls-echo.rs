//! The tls suite's native baseline: an echo server that terminates TLS with
//! rustls (ring) on tokio current_thread, the reactor and TLS library of the
//! host, and no WebAssembly.
//!
//! rustls's server defaults otherwise, as a user of tokio-rustls gets them
//! (TLS 1.2 and 1.3, its session cache and TLS 1.3 tickets): the clients
//! pick the version and cipher. Sockets get TCP_NODELAY, as in the plain
//! native echo. SIGTERM ends it (default action).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Terminates TLS and echoes every byte back on each accepted connection.
#[derive(Debug, Parser)]
#[command(name = "native-tls-echo")]
struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9877")]
    listen: SocketAddr,
    /// The certificate chain, PEM.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The private key, PEM (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// The most plaintext one read takes: several TLS records (16 KiB each at
/// most), so a stream is decrypted and echoed in large writes.
const READ_CHUNK: usize = 64 * 1024;

fn main() -> Result<(), String> {
    let args = Args::parse();
    let config = server_config(&args.cert, &args.key)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(serve(args.listen, TlsAcceptor::from(config))).map_err(|e| format!("{}: {e}", args.listen))
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| format!("TLS configuration: {e}"))?;
    Ok(Arc::new(config))
}

async fn serve(address: SocketAddr, acceptor: TlsAcceptor) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake, a reset or a client that leaves
                    // without close_notify ends the connection; an echo
                    // server has nobody to tell.
                    let _ = echo(stream, acceptor).await;
                });
            }
            // Running out of descriptors must not spin the loop.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn echo(stream: TcpStream, acceptor: TlsAcceptor) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut stream = acceptor.accept(stream).await?;
    // Only once the handshake is done: a connection that fails it costs no
    // buffer.
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            // The client's close_notify: answer it with ours.
            return stream.shutdown().await;
        }
        stream.write_all(&buffer[..read]).await?;
        // Sends what rustls still holds: an echo is due now, not with the
        // next write.
        stream.flush().await?;
    }
}
