//! Connect rate: open a connection, make one exchange, close; several at
//! once. The figure is connections per second. The tls suite's handshake
//! rate is the same loop with a TLS connection (`handshake.rs`).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Window, Workers, bounded, connect, message, timed};
use crate::cli::Plan;

pub async fn run(address: SocketAddr, pid: u32, plan: &Plan) -> Result<Window, String> {
    run_with(pid, plan, Close::Drop, move || connect(address)).await
}

/// How a client ends a connection once its exchange is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Dropping closes: the client closes first, as clients do.
    Drop,
    /// Shut the stream down first: over TLS, a close_notify alert, as a
    /// well-behaved TLS client sends, before the socket closes.
    ShutDown,
}

/// `plan.connect_concurrency` clients, each opening connections with
/// `open`, making one exchange and closing them as `close` says, counting
/// connections through one window.
pub async fn run_with<S, F, Opened>(pid: u32, plan: &Plan, close: Close, open: F) -> Result<Window, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Opened + Clone + Send + 'static,
    Opened: Future<Output = Result<S, String>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Workers::default();
    for _ in 0..plan.connect_concurrency {
        let stop = workers.stop_flag();
        workers.spawn(connect_loop(open.clone(), close, done.clone(), stop, plan.message_bytes, plan.connect_cap));
    }
    let window = timed(&done, pid, plan).await;
    workers.finish(Duration::from_secs(2)).await?;
    window
}

async fn connect_loop<S, F, Opened>(
    open: F,
    close: Close,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    bytes: usize,
    cap: u64,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn() -> Opened,
    Opened: Future<Output = Result<S, String>>,
{
    let message = message(bytes);
    let mut echo = vec![0u8; bytes];
    // The cap bounds the sockets left in TIME_WAIT whatever the duration.
    while !stop.load(Ordering::Relaxed) && done.load(Ordering::Relaxed) < cap {
        let mut stream = open().await?;
        bounded("write", stream.write_all(&message)).await?;
        // Over TLS, the request leaves only when flushed (a no-op on TCP).
        bounded("write", stream.flush()).await?;
        bounded("read the echo", stream.read_exact(&mut echo)).await?;
        if echo != message {
            return Err("the echo differs from what was sent".into());
        }
        if close == Close::ShutDown {
            bounded("close", stream.shutdown()).await?;
        }
        drop(stream);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
