//! The tls suite's handshake rate: several clients at once, each in a loop
//! of connect, full TLS handshake, one short exchange and close. The figure
//! is handshakes per second; the server's CPU per handshake comes with it.
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::connect::{self, Close};
use super::{Window, connect_tls};
use crate::cli::Plan;

pub async fn run(address: SocketAddr, pid: u32, plan: &Plan, config: Arc<ClientConfig>) -> Result<Window, String> {
    let connector = TlsConnector::from(config);
    // The connect test's loop, bounds and counts, over TLS; each client
    // ends with close_notify, as a TLS client that is done should.
    connect::run_with(pid, plan, Close::ShutDown, move || {
        let connector = connector.clone();
        async move { connect_tls(address, &connector).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::certificate::RunCertificate;

    /// A rustls echo on `certificate`, in this runtime: what the loads
    /// talk to in these tests.
    async fn echo_server(certificate: &RunCertificate) -> SocketAddr {
        let key = PrivateKeyDer::from_pem_file(&certificate.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der.clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo(stream, acceptor.clone()));
            }
        });
        address
    }

    async fn echo(stream: TcpStream, acceptor: TlsAcceptor) -> std::io::Result<()> {
        let mut stream = acceptor.accept(stream).await?;
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return stream.shutdown().await;
            }
            stream.write_all(&buffer[..n]).await?;
            stream.flush().await?;
        }
    }

    /// Both TLS loads complete full handshakes and echoes against a rustls
    /// server on the run's certificate, every byte checked.
    #[tokio::test]
    async fn the_tls_loads_run_against_a_rustls_echo() {
        let dir = std::env::temp_dir().join(format!("evconn-bench-handshake-{}", std::process::id()));
        let certificate = RunCertificate::make(&dir).unwrap();
        let client = crate::tls_client::config(&certificate.der).unwrap();
        let address = echo_server(&certificate).await;
        let plan = Plan {
            warmup: Duration::from_millis(20),
            window: Duration::from_millis(200),
            bulk_connections: 2,
            ..crate::cli::tests::plan()
        };
        // The server offers TLS 1.2 and 1.3 and every cipher of ring: the
        // client's choice is what is negotiated.
        let stream = connect_tls(address, &TlsConnector::from(client.clone())).await.unwrap();
        let (_, session) = stream.get_ref();
        assert_eq!(session.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let suite = session.negotiated_cipher_suite().map(|s| s.suite());
        assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        assert_eq!(session.negotiated_key_exchange_group().map(|g| g.name()), Some(rustls::NamedGroup::X25519));
        drop(stream);
        let pid = std::process::id();
        let handshakes = run(address, pid, &plan, client.clone()).await.unwrap();
        assert!(handshakes.ops > 0, "no handshake in the window");
        let bulk = super::super::bulk::run_tls(address, pid, &plan, client).await.unwrap();
        assert!(bulk.ops > 0, "no byte echoed in the window");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
