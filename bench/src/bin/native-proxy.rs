//! The native proxy baseline: every accepted connection is relayed to one
//! backend, both ways, on tokio's current_thread reactor with
//! `copy_bidirectional` (TCP_NODELAY on both sides, tokio's 8 KiB copy
//! buffers, half-close passed through), and no WebAssembly. SIGTERM ends it
//! (default action).
use std::net::SocketAddr;

use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

/// Relays each accepted TCP connection to --backend.
#[derive(Debug, Parser)]
#[command(name = "native-proxy")]
struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7000")]
    listen: SocketAddr,

    /// Where every connection is relayed.
    #[arg(long, value_name = "ADDR")]
    backend: SocketAddr,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args.listen, args.backend))
}

async fn serve(address: SocketAddr, backend: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(async move {
                    // A refused backend or a reset ends the pair; a proxy
                    // has nobody to tell.
                    let _ = relay(client, backend).await;
                });
            }
            // Running out of descriptors must not spin the loop.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn relay(mut client: TcpStream, backend: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut server = TcpStream::connect(backend).await?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
