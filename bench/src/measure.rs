//! One measurement: one test on one freshly started server, turned into
//! figures.
use std::collections::BTreeMap;

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::cli::Plan;
use crate::figures::{Figure, Test};
use crate::load;
use crate::procfs::Usage;
use crate::servers::{Programs, Server};

/// The figures of one measurement, and what else the machine was doing.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub values: BTreeMap<Figure, f64>,
    pub usage: Option<Usage>,
    /// Operations in the window (round trips, bytes, connections,
    /// latency samples or idle connections).
    pub count: u64,
    pub note: Option<String>,
    /// The runs behind each value when a round's value is the median of
    /// several (the start times, in ms).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runs: BTreeMap<Figure, Vec<f64>>,
}

/// Runs `test` against `server`; the latency client runs on `latency_cpu`.
pub fn run(
    test: Test,
    server: &Server,
    programs: &Programs,
    plan: &Plan,
    runtime: &Runtime,
    latency_cpu: Option<usize>,
) -> Result<Outcome, String> {
    let (address, pid) = (server.address, server.pid);
    let per_op =
        |w: &load::Window, scale: f64| w.cpu_per_op().map(|s| s * scale).ok_or("no operation completed in the window");
    Ok(match test {
        Test::Start => {
            return Err("the start figures come from starting servers (startup.rs), not from a running one".into());
        }
        Test::Floor => return Err("the floor figures come from wasmtime alone (floor.rs), not from a server".into()),
        Test::PingPong => {
            let (w, _) = runtime.block_on(load::pingpong::run(address, pid, plan, false))?;
            let cpu = per_op(&w, 1e6)?;
            outcome([(Figure::RoundTrips, w.rate()), (Figure::CpuPerRoundTrip, cpu)], w)
        }
        // Ping-pong at the plan's number of connections (the runner sets it
        // for each point), where a server that stalls has a figure: the
        // round trips it made, perhaps none, and then no CPU per round trip.
        Test::Curve => {
            let (w, stalled) = runtime.block_on(load::pingpong::run(address, pid, plan, true))?;
            let mut o = match w.cpu_per_op() {
                Some(cpu) => outcome([(Figure::RoundTrips, w.rate()), (Figure::CpuPerRoundTrip, cpu * 1e6)], w),
                None => outcome([(Figure::RoundTrips, 0.0)], w),
            };
            o.note = match (stalled, w.ops) {
                (_, 0) => Some(format!(
                    "no round trip in the {:.1} s window at {} connections, with {:.2} cores of server CPU",
                    w.usage.wall_seconds,
                    plan.pingpong_connections,
                    w.usage.server_seconds / w.usage.wall_seconds
                )),
                (Some(stalled), _) => Some(format!("at {} connections, {stalled}", plan.pingpong_connections)),
                (None, _) => None,
            };
            o
        }
        Test::Latency => {
            let l = load::latency::run(address, pid, plan, latency_cpu)?;
            Outcome {
                values: BTreeMap::from([(Figure::LatencyP50, l.p50_us), (Figure::LatencyP99, l.p99_us)]),
                usage: Some(l.usage),
                count: l.samples as u64,
                note: None,
                runs: BTreeMap::new(),
            }
        }
        Test::Bulk => {
            let w = runtime.block_on(load::bulk::run(address, pid, plan))?;
            // Bytes echoed; CPU per 10^6 of them, in milliseconds.
            let cpu = per_op(&w, 1e6 * 1e3)?;
            outcome([(Figure::BulkRate, w.rate() / 1e6), (Figure::CpuPerMegabyte, cpu)], w)
        }
        Test::Connect => {
            let w = runtime.block_on(load::connect::run(address, pid, plan))?;
            let cpu = per_op(&w, 1e6)?;
            outcome([(Figure::ConnectRate, w.rate()), (Figure::CpuPerConnection, cpu)], w)
        }
        Test::Handshake => {
            let client = programs.tls().client.clone();
            let w = runtime.block_on(load::handshake::run(address, pid, plan, client))?;
            let cpu = per_op(&w, 1e6)?;
            outcome([(Figure::Handshakes, w.rate()), (Figure::CpuPerHandshake, cpu)], w)
        }
        Test::TlsBulk => {
            let client = programs.tls().client.clone();
            let w = runtime.block_on(load::bulk::run_tls(address, pid, plan, client))?;
            // Plaintext bytes echoed; CPU per 10^6 of them, in milliseconds.
            let cpu = per_op(&w, 1e6 * 1e3)?;
            outcome([(Figure::TlsBulkRate, w.rate() / 1e6), (Figure::TlsCpuPerMegabyte, cpu)], w)
        }
        Test::Redis => {
            let (values, usage) = load::redis::run(&programs.redis_benchmark, address, pid, plan)?;
            Outcome { values, usage: Some(usage), count: 0, note: None, runs: BTreeMap::new() }
        }
        Test::Idle => {
            let i = runtime.block_on(load::idle::run(address, pid, plan))?;
            Outcome {
                values: BTreeMap::from([
                    (Figure::IdleMemory, i.per_connection / 1024.0),
                    (Figure::StartMemory, i.start_rss as f64 / (1024.0 * 1024.0)),
                ]),
                usage: None,
                count: i.served as u64,
                note: i.note,
                runs: BTreeMap::new(),
            }
        }
    })
}

fn outcome<const N: usize>(values: [(Figure, f64); N], w: load::Window) -> Outcome {
    Outcome { values: BTreeMap::from(values), usage: Some(w.usage), count: w.ops, note: None, runs: BTreeMap::new() }
}
