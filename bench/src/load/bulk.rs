//! Bulk: several connections each streaming large writes while reading the
//! echo back; the figure is echoed megabytes per second. Over TCP, or over
//! TLS for the tls suite.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::{Window, Workers, bounded, connect, connect_tls, timed};
use crate::cli::Plan;

/// The stream's bytes cycle with this period (a prime, so it never lines up
/// with write or read sizes), letting the reader check every byte cheaply.
const PERIOD: usize = 251;
/// The most bytes one read takes.
const READ: usize = 64 << 10;

fn pattern(len: usize) -> Arc<[u8]> {
    (0..len + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

pub async fn run(address: SocketAddr, pid: u32, plan: &Plan) -> Result<Window, String> {
    let mut halves = Vec::with_capacity(plan.bulk_connections);
    for _ in 0..plan.bulk_connections {
        halves.push(connect(address).await?.into_split());
    }
    stream(halves, pid, plan).await
}

/// The same over TLS: every connection handshakes before the load starts,
/// so the window sees only the stream.
pub async fn run_tls(address: SocketAddr, pid: u32, plan: &Plan, config: Arc<ClientConfig>) -> Result<Window, String> {
    let connector = TlsConnector::from(config);
    let mut halves = Vec::with_capacity(plan.bulk_connections);
    for _ in 0..plan.bulk_connections {
        halves.push(tokio::io::split(connect_tls(address, &connector).await?));
    }
    stream(halves, pid, plan).await
}

/// Streams through each connection's halves, a writer and a reader task
/// apiece, and counts the bytes echoed through one window.
async fn stream<R, W>(halves: Vec<(R, W)>, pid: u32, plan: &Plan) -> Result<Window, String>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let pattern = pattern(READ.max(plan.bulk_write_bytes));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut workers = Workers::default();
    for (read, write) in halves {
        workers.spawn(write_loop(write, pattern.clone(), plan.bulk_write_bytes, workers.stop_flag()));
        workers.spawn(read_loop(read, pattern.clone(), echoed.clone(), workers.stop_flag()));
    }
    let window = timed(&echoed, pid, plan).await;
    // Readers wait for data that no longer comes: abort at once.
    workers.finish(Duration::ZERO).await?;
    window
}

async fn write_loop(
    mut write: impl AsyncWrite + Unpin,
    pattern: Arc<[u8]>,
    chunk: usize,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut sent = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let at = sent % PERIOD;
        bounded("write", write.write_all(&pattern[at..at + chunk])).await?;
        // Over TLS, what the library still holds leaves now rather than
        // with the next write (a no-op on TCP).
        bounded("write", write.flush()).await?;
        sent += chunk;
    }
    Ok(())
}

async fn read_loop(
    mut read: impl AsyncRead + Unpin,
    pattern: Arc<[u8]>,
    echoed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut buffer = vec![0u8; READ];
    let mut received = 0usize;
    loop {
        let n = bounded("read the echo", read.read(&mut buffer)).await?;
        if n == 0 {
            return if stop.load(Ordering::Relaxed) { Ok(()) } else { Err("the server closed the connection".into()) };
        }
        let at = received % PERIOD;
        if buffer[..n] != pattern[at..at + n] {
            return Err(format!("the echo differs from what was sent, after {received} bytes"));
        }
        received += n;
        echoed.fetch_add(n as u64, Ordering::Relaxed);
    }
}
