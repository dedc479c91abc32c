//! Ping-pong: many connections, each sending a small message and waiting for
//! its echo before the next; the figure is round trips per second.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Window, Workers, bounded, connect, is_stall, message, timed};
use crate::cli::Plan;

/// The round trips of `plan.pingpong_connections` connections in one window.
/// With `stall_is_a_figure`, a server that stops answering some connections
/// for longer than STUCK still gives the window's figure (perhaps no round
/// trip at all), and the second value says so: the curve measures how far a
/// server holds up as connections grow. Otherwise that is a failure.
pub async fn run(
    address: SocketAddr,
    pid: u32,
    plan: &Plan,
    stall_is_a_figure: bool,
) -> Result<(Window, Option<String>), String> {
    // Every connection is open before any load starts, so the window sees
    // only round trips.
    let mut streams = Vec::with_capacity(plan.pingpong_connections);
    for _ in 0..plan.pingpong_connections {
        streams.push(connect(address).await?);
    }
    let round_trips = Arc::new(AtomicU64::new(0));
    let mut workers = Workers::default();
    for stream in streams {
        workers.spawn(round_trip_loop(stream, round_trips.clone(), workers.stop_flag(), plan.message_bytes));
    }
    let window = timed(&round_trips, pid, plan).await;
    match workers.finish(Duration::from_secs(2)).await {
        Ok(()) => Ok((window?, None)),
        Err(e) if stall_is_a_figure && is_stall(&e) => Ok((window?, Some(format!("stalled: {e}")))),
        Err(e) => Err(e),
    }
}

async fn round_trip_loop(
    mut stream: TcpStream,
    round_trips: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    bytes: usize,
) -> Result<(), String> {
    let message = message(bytes);
    let mut echo = vec![0u8; bytes];
    while !stop.load(Ordering::Relaxed) {
        bounded("write", stream.write_all(&message)).await?;
        bounded("read the echo", stream.read_exact(&mut echo)).await?;
        if echo != message {
            return Err("the echo differs from what was sent".into());
        }
        round_trips.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
