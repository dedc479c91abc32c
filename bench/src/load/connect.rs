//! Connect rate: open a connection, make one exchange, close; several at
//! once. The figure is connections per second.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Window, Workers, bounded, connect, message, timed};
use crate::cli::Plan;

pub async fn run(address: SocketAddr, pid: u32, plan: &Plan) -> Result<Window, String> {
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Workers::default();
    for _ in 0..plan.connect_concurrency {
        workers.spawn(connect_loop(address, done.clone(), workers.stop_flag(), plan.message_bytes, plan.connect_cap));
    }
    let window = timed(&done, pid, plan).await;
    workers.finish(Duration::from_secs(2)).await?;
    window
}

async fn connect_loop(
    address: SocketAddr,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    bytes: usize,
    cap: u64,
) -> Result<(), String> {
    let message = message(bytes);
    let mut echo = vec![0u8; bytes];
    // The cap bounds the sockets left in TIME_WAIT whatever the duration.
    while !stop.load(Ordering::Relaxed) && done.load(Ordering::Relaxed) < cap {
        let mut stream = connect(address).await?;
        bounded("write", stream.write_all(&message)).await?;
        bounded("read the echo", stream.read_exact(&mut echo)).await?;
        if echo != message {
            return Err("the echo differs from what was sent".into());
        }
        // Dropping closes: the client closes first, as clients do.
        drop(stream);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
