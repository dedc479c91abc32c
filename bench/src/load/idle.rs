//! Memory: many idle connections held open; the figure is the growth of the
//! server's resident memory per connection.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{bounded, connect};
use crate::cli::Plan;
use crate::procfs::rss_bytes;

/// What holding the connections cost.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Resident memory before the connections, after the start-up echo.
    pub start_rss: u64,
    pub per_connection: f64,
    /// Connections the server answered on; fewer than asked when it stopped
    /// accepting at its own limit.
    pub served: usize,
    pub note: Option<String>,
}

/// How long a connection may wait for its first echo before the server is
/// taken to have stopped accepting (its --max-connections, say).
const ACCEPT_WAIT: Duration = Duration::from_secs(1);

/// Lets the server settle before its memory is read.
const SETTLE: Duration = Duration::from_millis(300);

pub async fn run(address: SocketAddr, pid: u32, plan: &Plan) -> Result<Idle, String> {
    tokio::time::sleep(SETTLE).await;
    let start_rss = rss_bytes(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let mut held = Vec::with_capacity(plan.idle_connections);
    let mut note = None;
    for n in 0..plan.idle_connections {
        let mut stream = connect(address).await?;
        // One exchange proves the server accepted the connection and set up
        // whatever it keeps for one; then the connection stays idle.
        bounded("write", stream.write_all(b"x")).await?;
        let mut echo = [0u8; 1];
        match tokio::time::timeout(ACCEPT_WAIT, stream.read_exact(&mut echo)).await {
            Ok(Ok(_)) => held.push(stream),
            Ok(Err(e)) => return Err(format!("connection {n}: {e}")),
            Err(_) => {
                note = Some(format!(
                    "served {n} of {} idle connections: no echo within {ACCEPT_WAIT:?} after that (the server's connection limit)",
                    plan.idle_connections
                ));
                break;
            }
        }
    }
    if held.is_empty() {
        return Err("the server answered no idle connection".into());
    }
    tokio::time::sleep(SETTLE).await;
    let end_rss = rss_bytes(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let served = held.len();
    drop(held);
    Ok(Idle { start_rss, per_connection: end_rss.saturating_sub(start_rss) as f64 / served as f64, served, note })
}
