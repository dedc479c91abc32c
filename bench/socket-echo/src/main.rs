//! An echo server whose guest owns its socket: it binds, listens and accepts
//! through `wasi:sockets` and serves each connection in a task of wstd's
//! async runtime, as a user of `wasmtime run -S inherit-network` writes it.
//! The benchmark runs it beside evconn, whose host owns the sockets and
//! calls the guest back.
//!
//! `wasmtime run -S inherit-network socket-echo.wasm [ADDR]`; without
//! ADDR, the environment's `SOCKET_ECHO_LISTEN`, else 127.0.0.1:9876.
use std::time::Duration;

use wstd::io::{AsyncRead, AsyncWrite};
use wstd::iter::AsyncIterator;
use wstd::net::{TcpListener, TcpStream};

/// Read size per connection, as the native tokio echo and evconn's host
/// read small messages.
const BUFFER: usize = 16 << 10;
/// How long the accept loop waits after a failed accept (a full descriptor
/// table, say) before it tries again, so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

#[wstd::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SOCKET_ECHO_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:9876".into());
    let listener = TcpListener::bind(&address).await.map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
    eprintln!("socket-echo: listening on {}", listener.local_addr()?);
    let mut incoming = listener.incoming();
    while let Some(accepted) = incoming.next().await {
        match accepted {
            // The task ends with its connection; nothing waits for it.
            Ok(stream) => wstd::runtime::spawn(serve(stream)).detach(),
            Err(e) => {
                eprintln!("socket-echo: accept failed: {e}");
                wstd::task::sleep(ACCEPT_BACKOFF.into()).await;
            }
        }
    }
    Ok(())
}

/// Writes back whatever the peer sends until it closes; an error ends this
/// connection only.
async fn serve(mut stream: TcpStream) {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) => return,
            Ok(read) => read,
            Err(e) => return eprintln!("socket-echo: read failed: {e}"),
        };
        if let Err(e) = stream.write_all(&buffer[..read]).await {
            return eprintln!("socket-echo: write failed: {e}");
        }
    }
}
