//! Latency: one connection, one message at a time, each round trip timed.
//!
//! Runs on a plain thread with blocking sockets: the cheapest client path,
//! so the figure is the server's and the kernel's. The thread is pinned to
//! the server's CPU: across two idle virtual CPUs a round trip mostly
//! measures the hypervisor waking a CPU (BENCHMARKING.md), which is the same
//! for every server.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{STUCK, message};
use crate::cli::Plan;
use crate::procfs::{Snapshot, Usage};

/// Round-trip times of one run.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub samples: usize,
    pub usage: Usage,
}

pub fn run(address: SocketAddr, pid: u32, plan: &Plan, cpu: Option<usize>) -> Result<Latency, String> {
    let plan = plan.clone();
    std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            crate::system::pin_current_thread(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
        }
        measure(address, pid, &plan)
    })
    .join()
    .map_err(|_| "the latency thread panicked".to_string())?
}

fn measure(address: SocketAddr, pid: u32, plan: &Plan) -> Result<Latency, String> {
    let mut stream = TcpStream::connect_timeout(&address, STUCK).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(STUCK)).map_err(|e| e.to_string())?;
    let message = message(plan.message_bytes);
    let mut echo = vec![0u8; message.len()];
    let mut round_trip = || -> Result<Duration, String> {
        let start = Instant::now();
        stream.write_all(&message).map_err(|e| format!("write: {e}"))?;
        stream.read_exact(&mut echo).map_err(|e| format!("read the echo: {e}"))?;
        let took = start.elapsed();
        if echo != message {
            return Err("the echo differs from what was sent".into());
        }
        Ok(took)
    };

    let warm_until = Instant::now() + plan.warmup;
    while Instant::now() < warm_until {
        round_trip()?;
    }
    let mut samples = Vec::with_capacity(plan.latency_cap.min(1 << 20));
    let start = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let until = Instant::now() + plan.window;
    while Instant::now() < until && samples.len() < plan.latency_cap {
        samples.push(round_trip()?.as_nanos() as u64);
    }
    let end = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    if samples.is_empty() {
        return Err("no round trip completed".into());
    }
    samples.sort_unstable();
    Ok(Latency {
        p50_us: crate::stats::percentile(&samples, 50.0) as f64 / 1e3,
        p99_us: crate::stats::percentile(&samples, 99.0) as f64 / 1e3,
        samples: samples.len(),
        usage: start.until(&end),
    })
}
