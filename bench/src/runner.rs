//! The rounds: every test on every server, each on a fresh server, with the
//! order of servers rotated between rounds.
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::cli::Plan;
use crate::figures::Test;
use crate::floor::{self, FloorRun};
use crate::measure::{self, Outcome};
use crate::servers::{self, Code, Programs, ServerKind, Suite};
use crate::startup::{self, Precompiled};
use crate::stats::short;

/// Which CPU the server, the load and the latency client run on.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pins {
    pub server: Option<usize>,
    pub load: Option<usize>,
    pub latency: Option<usize>,
}

/// One measurement that produced figures.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: u32,
    pub server: ServerKind,
    pub test: Test,
    /// The number of ping-pong connections, for a point of the curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How the server ended when stopped.
    pub stopped: String,
}

/// One measurement that did not.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub round: u32,
    /// None for the floor, which runs no server.
    pub server: Option<ServerKind>,
    pub test: Test,
    pub error: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub samples: Vec<Sample>,
    pub failures: Vec<Failure>,
    /// The file the precompiled starts served, when there were any.
    pub precompiled: Option<Precompiled>,
    /// The wasmtime floor, once a round.
    pub floor: Vec<FloorRun>,
}

/// The servers in round `round`'s order: each round starts one later, so
/// every server goes first once in as many rounds as there are servers
/// (the connect test leaves TIME_WAIT sockets behind for whoever follows).
pub fn order(servers: &[ServerKind], round: u32) -> Vec<ServerKind> {
    let mut order = servers.to_vec();
    if !order.is_empty() {
        let n = order.len();
        order.rotate_left(round as usize % n);
    }
    order
}

/// Runs the plan; `scratch` holds what the start figures need for the
/// length of the run (cache folders, the precompiled file).
pub fn run(programs: &Programs, plan: &Plan, pins: Pins, logs: &Path, scratch: &Path, runtime: &Runtime) -> Results {
    let servers: Vec<ServerKind> =
        plan.suite.servers().iter().copied().filter(|k| programs.missing(*k).is_none()).collect();
    let mut results = Results::default();
    // The proxies all relay to one native echo backend, started once for
    // the run on the load's CPU: it is part of the load, not of the server
    // measured. So does HAProxy in the tls suite, which cannot echo itself.
    let relays = match plan.suite {
        Suite::Echo | Suite::Kv => false,
        Suite::Proxy => true,
        Suite::Tls => servers.contains(&ServerKind::TlsHaproxy),
    };
    let backend = if relays {
        match servers::start(programs, ServerKind::Tokio, &Code::Component, pins.load, &logs.join("backend.log")) {
            Ok(backend) => Some(backend),
            Err(error) => {
                eprintln!("bench: the echo backend did not start: {error}");
                for &test in &plan.tests {
                    results.failures.push(Failure { round: 0, server: None, test, error: error.clone() });
                }
                return results;
            }
        }
    } else {
        None
    };
    let programs = &Programs { backend: backend.as_ref().map(|b| b.address), ..programs.clone() };
    let precompiled: Result<PathBuf, String> = if plan.tests.contains(&Test::Start) {
        let made = startup::precompile(programs, scratch, pins.server, &logs.join("host-compile.log"));
        match &made {
            Ok(p) => eprintln!("bench: host compile made {} in {:.2} s", p.file.display(), p.seconds),
            Err(e) => eprintln!("bench: host compile FAILED: {e}"),
        }
        made.map(|p| results.precompiled.insert(p).file.clone())
    } else {
        Err("not made: the start test is not run".into())
    };
    for round in 0..plan.rounds {
        let order = order(&servers, round);
        for &test in &plan.tests {
            if test == Test::Floor {
                let label = format!("round {}/{} {:<9} {:<17}", round + 1, plan.rounds, test.key(), "wasmtime alone");
                match floor::run(&programs.wasmtime_floor, &programs.echo_wasm, plan, pins.server, round) {
                    Ok(run) => {
                        eprintln!(
                            "{label} {:.3} us per call (async), {:.3} us (sync), {:.1} KiB per instance",
                            run.call_async_us, run.call_sync_us, run.instance_kib
                        );
                        results.floor.push(run);
                    }
                    Err(error) => {
                        eprintln!("{label} FAILED: {error}");
                        results.failures.push(Failure { round, server: None, test, error });
                    }
                }
                continue;
            }
            if test == Test::Curve {
                curve(programs, plan, pins, logs, runtime, round, &order, &mut results);
                continue;
            }
            for &kind in &order {
                let log = logs.join(format!("{}.log", kind.key()));
                let label = format!("round {}/{} {:<9} {:<17}", round + 1, plan.rounds, test.key(), kind.key());
                let measured = if test == Test::Start {
                    let file = precompiled.as_deref().map_err(String::as_str);
                    startup::run(programs, kind, plan, pins.server, &log, scratch, file)
                } else {
                    servers::start(programs, kind, &Code::Component, pins.server, &log).and_then(|server| {
                        let outcome = measure::run(test, &server, programs, plan, runtime, pins.latency);
                        let stopped = server.stop();
                        outcome.map(|o| (o, stopped))
                    })
                };
                match measured {
                    Ok((outcome, stopped)) => {
                        eprintln!("{label} {}", describe(&outcome));
                        results.samples.push(Sample { round, server: kind, test, connections: None, outcome, stopped });
                    }
                    Err(error) => {
                        eprintln!("{label} FAILED: {error}");
                        results.failures.push(Failure { round, server: Some(kind), test, error });
                    }
                }
            }
        }
    }
    if let Some(backend) = backend {
        let stopped = backend.stop();
        eprintln!("bench: echo backend stopped: {stopped}");
    }
    if let Err(e) = startup::remove(scratch) {
        eprintln!("bench: {e}");
    }
    results
}

/// One round of the curve: ping-pong at each of the plan's numbers of
/// connections, on each of its servers in this round's order, each on a
/// freshly started server.
#[allow(clippy::too_many_arguments)] // the runner's state, passed down as is
fn curve(
    programs: &Programs,
    plan: &Plan,
    pins: Pins,
    logs: &Path,
    runtime: &Runtime,
    round: u32,
    order: &[ServerKind],
    results: &mut Results,
) {
    let test = Test::Curve;
    for &connections in &plan.curve_connections {
        let at = Plan { pingpong_connections: connections, ..plan.clone() };
        for &kind in order.iter().filter(|k| ServerKind::CURVE.contains(k)) {
            let log = logs.join(format!("{}.log", kind.key()));
            let label =
                format!("round {}/{} {:<9} {:<17}", round + 1, plan.rounds, format!("{connections} conns"), kind.key());
            let measured = servers::start(programs, kind, &Code::Component, pins.server, &log).and_then(|server| {
                let outcome = measure::run(test, &server, programs, &at, runtime, pins.latency);
                let stopped = server.stop();
                outcome.map(|o| (o, stopped))
            });
            match measured {
                Ok((outcome, stopped)) => {
                    eprintln!("{label} {}", describe(&outcome));
                    let connections = Some(connections);
                    results.samples.push(Sample { round, server: kind, test, connections, outcome, stopped });
                }
                Err(error) => {
                    eprintln!("{label} FAILED: {error}");
                    let error = format!("{connections} connections: {error}");
                    results.failures.push(Failure { round, server: Some(kind), test, error });
                }
            }
        }
    }
}

/// One line of progress.
fn describe(o: &Outcome) -> String {
    let mut parts: Vec<String> = o.values.iter().map(|(f, v)| format!("{} {}", short(*v), f.key())).collect();
    if let Some(u) = o.usage {
        parts.push(format!("load {:.2} cores, other {:.2}", u.load_cores, u.other_cores));
    }
    if let Some(note) = &o.note {
        parts.push(note.clone());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_goes_first_once() {
        let all = ServerKind::ALL.to_vec();
        let firsts: Vec<_> = (0..all.len() as u32).map(|r| order(&all, r)[0]).collect();
        assert_eq!(firsts, all);
    }
}
