//! The load generator: one module per kind of load, sharing how workers are
//! started and stopped and how a timed window is read.
pub mod bulk;
pub mod connect;
pub mod handshake;
pub mod idle;
pub mod latency;
pub mod pingpong;
pub mod redis;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::cli::Plan;
use crate::procfs::{Snapshot, Usage};

/// What workers did in the timed window, and the CPU it took.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub ops: u64,
    pub usage: Usage,
}

impl Window {
    /// Operations per second of wall time.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.usage.wall_seconds
    }

    /// Server CPU seconds per operation; None when nothing was done.
    pub fn cpu_per_op(&self) -> Option<f64> {
        (self.ops > 0).then(|| self.usage.server_seconds / self.ops as f64)
    }
}

/// Lets the load warm up, then counts `ops` through one window, reading the
/// server's CPU (process `pid`) at both ends.
pub async fn timed(ops: &AtomicU64, pid: u32, plan: &Plan) -> Result<Window, String> {
    tokio::time::sleep(plan.warmup).await;
    let start = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let first = ops.load(Ordering::Relaxed);
    tokio::time::sleep(plan.window).await;
    let last = ops.load(Ordering::Relaxed);
    let end = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    Ok(Window { ops: last - first, usage: start.until(&end) })
}

/// Tasks generating load, stopped together.
#[derive(Default)]
pub struct Workers {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

impl Workers {
    /// The flag workers check between operations.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn spawn(&mut self, task: impl Future<Output = Result<(), String>> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Raises the stop flag, gives workers `grace` to finish what they are
    /// doing, aborts the rest, and returns the first error any worker had.
    pub async fn finish(self, grace: Duration) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + grace;
        let mut first_error = None;
        for mut task in self.tasks {
            let result = match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    task.abort();
                    task.await
                }
            };
            if let Ok(Err(e)) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// How long any one connect or read may take before the server is judged
/// stuck: bounds every run even against a server that stops answering.
pub const STUCK: Duration = Duration::from_secs(5);

/// A connection to the server with TCP_NODELAY, as request/response
/// clients have.
pub async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(STUCK, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connect to {address} took over {STUCK:?}"))?
        .map_err(|e| format!("connect to {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// A connection as `connect` makes it, then a TLS handshake over it with
/// `connector`'s settings (the tls suite's).
pub async fn connect_tls(address: SocketAddr, connector: &TlsConnector) -> Result<TlsStream<TcpStream>, String> {
    let stream = connect(address).await?;
    bounded("TLS handshake", connector.connect(crate::tls_client::server_name(), stream)).await
}

/// What `bounded` says when a step made no progress in STUCK.
const NO_PROGRESS: &str = "no progress in";

/// Bounds one I/O step by STUCK.
pub async fn bounded<T>(what: &str, step: impl Future<Output = std::io::Result<T>>) -> Result<T, String> {
    tokio::time::timeout(STUCK, step)
        .await
        .map_err(|_| format!("{what}: {NO_PROGRESS} {STUCK:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// Whether a worker's error is a step that made no progress in STUCK (the
/// server stopped answering), rather than a failure.
pub fn is_stall(error: &str) -> bool {
    error.contains(NO_PROGRESS)
}

/// The message each ping-pong and connect exchange sends.
pub fn message(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| b'a' + (i % 26) as u8).collect()
}
