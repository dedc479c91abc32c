//! Readings from /proc: a process's CPU time and resident memory, and the
//! whole machine's busy time, so a run can say what else was using the CPU.
use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / ticks_per_second())
}

/// User plus system time of every thread of `pid`, from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its closing
    // parenthesis are plain. utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| bad("stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| bad("stat"));
    Ok(ticks(field(14)? + field(15)?))
}

/// Resident memory of `pid` in bytes, from VmRSS in /proc/PID/status.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| bad("status"))?;
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| bad("status"))?;
    Ok(kib * 1024)
}

/// Busy and stolen time of all CPUs together, from the `cpu` line of
/// /proc/stat.
fn machine() -> io::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().filter(|l| l.starts_with("cpu ")).ok_or_else(|| bad("/proc/stat"))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    Ok((ticks(busy), ticks(get(7))))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected format of {what}"))
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    server: Duration,
    own: Duration,
    busy: Duration,
    steal: Duration,
}

impl Snapshot {
    /// Reads the counters of the server `pid`, of this process and of the
    /// machine.
    pub fn take(pid: u32) -> io::Result<Self> {
        let (busy, steal) = machine()?;
        Ok(Snapshot {
            at: Instant::now(),
            server: process_cpu(pid)?,
            own: process_cpu(std::process::id())?,
            busy,
            steal,
        })
    }

    /// What was used between `self` and the later `end`.
    pub fn until(&self, end: &Snapshot) -> Usage {
        let wall = end.at - self.at;
        let server = end.server.saturating_sub(self.server);
        let own = end.own.saturating_sub(self.own);
        let busy = end.busy.saturating_sub(self.busy);
        let per_wall = |d: Duration| d.as_secs_f64() / wall.as_secs_f64().max(1e-9);
        Usage {
            wall_seconds: wall.as_secs_f64(),
            server_seconds: server.as_secs_f64(),
            load_cores: per_wall(own),
            other_cores: per_wall(busy.saturating_sub(server + own)),
            steal_cores: per_wall(end.steal.saturating_sub(self.steal)),
        }
    }
}

/// CPU use over a measurement window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub wall_seconds: f64,
    /// The server's CPU time.
    pub server_seconds: f64,
    /// The load generator's CPU, in cores (1.0 = one CPU busy throughout).
    pub load_cores: f64,
    /// Everything else on the machine, in cores: the noise in this window.
    pub other_cores: f64,
    /// Time the hypervisor gave to other machines, in cores.
    pub steal_cores: f64,
}
