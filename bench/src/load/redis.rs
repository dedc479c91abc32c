//! The kv suite's load: Debian's `redis-benchmark`, 50 clients, one run per
//! command (SET, GET, INCR) and pipeline depth (1 and 16), each with the
//! server's CPU read around it. The tool counts the requests and times
//! them; the rate is its own, the CPU per request is the server's time over
//! the requests the run made.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::Plan;
use crate::figures::Figure;
use crate::procfs::{Snapshot, Usage};

/// Clients, as the issue that added the suite asks (redis-benchmark's
/// default too).
pub const CLIENTS: usize = 50;

/// Requests per run for a 3 s window, by pipeline depth: about two seconds
/// of redis-server's rate on the benchmark machines. Other windows scale;
/// the smoke run, on debug builds, makes a few thousand.
fn requests(plan: &Plan, pipeline: usize) -> u64 {
    if plan.smoke {
        return if pipeline > 1 { 16_000 } else { 2_000 };
    }
    let base = if pipeline > 1 { 2_000_000.0 } else { 300_000.0 };
    ((base * plan.window.as_secs_f64() / 3.0) as u64).max(2_000)
}

/// The rates and CPU figures of every run against the server at `address`
/// (process `pid`), and the CPU use of all runs together.
pub fn run(tool: &Path, address: SocketAddr, pid: u32, plan: &Plan) -> Result<(BTreeMap<Figure, f64>, Usage), String> {
    let mut values = BTreeMap::new();
    let first = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    for (command, pipeline, rate, cpu) in Figure::REDIS {
        let n = requests(plan, pipeline);
        let before = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
        let rps = benchmark(tool, address, command, pipeline, n)?;
        let after = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
        let usage = before.until(&after);
        values.insert(rate, rps);
        values.insert(cpu, usage.server_seconds / n as f64 * 1e6);
    }
    let last = Snapshot::take(pid).map_err(|e| format!("reading /proc: {e}"))?;
    Ok((values, first.until(&last)))
}

/// One redis-benchmark run of `n` requests of `command`; its requests/s.
fn benchmark(tool: &Path, address: SocketAddr, command: &str, pipeline: usize, n: u64) -> Result<f64, String> {
    let output = Command::new(tool)
        .args(["-h", &address.ip().to_string(), "-p", &address.port().to_string()])
        .args(["-c", &CLIENTS.to_string(), "-n", &n.to_string(), "-P", &pipeline.to_string()])
        .args(["-t", command, "--csv"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "redis-benchmark -t {command} -P {pipeline} failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    requests_per_second(&stdout, command)
        .ok_or_else(|| format!("no {command} rate in redis-benchmark's output:\n{stdout}"))
}

/// The `rps` column of `command`'s row in redis-benchmark's CSV.
fn requests_per_second(csv: &str, command: &str) -> Option<f64> {
    let row = csv.lines().find(|line| line.to_ascii_lowercase().starts_with(&format!("\"{command}\",")))?;
    let field = row.split(',').nth(1)?;
    field.trim_matches('"').parse().ok().filter(|rps: &f64| *rps > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate comes from the command's row, skipping the header.
    #[test]
    fn reads_the_rate_from_the_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"168067.22\",\"0.193\"\n";
        assert_eq!(requests_per_second(csv, "set"), Some(168067.22));
        assert_eq!(requests_per_second(csv, "get"), None);
        assert_eq!(requests_per_second("\"GET\",\"0.00\"\n", "get"), None, "a zero rate is no rate");
    }

    /// A 3 s window asks for about two seconds of Redis's rate, a 0.3 s
    /// one for a tenth, the smoke run for a few thousand.
    #[test]
    fn requests_scale_with_the_window() {
        let plan = crate::cli::tests::plan();
        assert_eq!(requests(&plan, 1), 300_000);
        assert_eq!(requests(&plan, 16), 2_000_000);
        let short = Plan { window: std::time::Duration::from_millis(300), ..plan.clone() };
        assert_eq!(requests(&short, 1), 30_000);
        let smoke = Plan { smoke: true, ..plan };
        assert_eq!((requests(&smoke, 1), requests(&smoke, 16)), (2_000, 16_000));
    }
}
