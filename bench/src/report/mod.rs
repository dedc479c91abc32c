//! Turns the measurements into the report: per figure and server a summary
//! over rounds, evconn's ratios to the native servers, the targets met or
//! missed, and the notes a reader needs; written as results.json, report.md
//! and chart.svg.
mod chart;
mod curve;
mod floor;
mod start;
mod table;
mod targets;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cli::Plan;
use crate::figures::{Better, Figure, Test};
use crate::runner::{Failure, Pins, Results, Sample};
use crate::servers::{Programs, ServerKind, Suite};
use crate::startup::Precompiled;
use crate::stats::Summary;

pub use curve::CurveReport;
pub use floor::FloorReport;
pub use start::StartReport;
pub use targets::Verdict;

#[derive(Debug, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub plan: Plan,
    pub pins: Pins,
    pub servers: Vec<ServerInfo>,
    pub figures: Vec<FigureReport>,
    /// The start figures against the target and each other; None when the
    /// start test did not run.
    pub start: Option<StartReport>,
    /// What wasmtime alone costs, against the servers; None when the floor
    /// did not run.
    pub floor: Option<FloorReport>,
    /// Ping-pong by number of connections; None when the curve did not run.
    pub curve: Option<CurveReport>,
    /// Each of the project's targets whose figure this run measured.
    pub targets: Vec<Verdict>,
    /// The file the precompiled starts served.
    pub precompiled: Option<Precompiled>,
    pub noise: Vec<Noise>,
    pub notes: Vec<String>,
    /// Every server that could run gave every figure in every round.
    pub complete: bool,
    pub failures: Vec<Failure>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub date: String,
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    /// Whether this load generator was built with optimisations.
    pub bench_build: &'static str,
    pub host: String,
    pub libevent_version: Option<String>,
    /// What the wasmtime CLI of the guest-socket server says it is.
    pub wasmtime_cli_version: Option<String>,
    /// What redis-server and redis-benchmark say they are (the kv suite).
    pub redis_version: Option<String>,
    pub seconds_taken: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerInfo {
    pub server: ServerKind,
    pub label: &'static str,
    pub command: String,
    pub missing: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FigureReport {
    pub figure: Figure,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// What evconn is meant to stay under, if anything.
    pub target: Option<f64>,
    pub values: Vec<ServerValue>,
    /// The native server with the better median.
    pub best_native: Option<ServerKind>,
    pub ratios: Vec<Ratio>,
}

impl FigureReport {
    pub fn value(&self, server: ServerKind) -> Option<&ServerValue> {
        self.values.iter().find(|v| v.server == server)
    }

    pub fn ratio(&self, server: ServerKind, against: ServerKind) -> Option<&Ratio> {
        self.ratios.iter().find(|r| r.server == server && r.against == against)
    }
}

#[derive(Debug, Serialize)]
pub struct ServerValue {
    pub server: ServerKind,
    pub summary: Summary,
    /// By round; null where that round's measurement failed.
    pub by_round: Vec<Option<f64>>,
    /// Whether the median is under the figure's target (evconn only).
    pub within_target: Option<bool>,
}

/// An evconn figure divided by a native server's, round by round (both
/// measured minutes apart), then summarised: steadier than a ratio of
/// medians when the whole machine speeds up or slows down between rounds.
#[derive(Debug, Serialize)]
pub struct Ratio {
    pub server: ServerKind,
    pub against: ServerKind,
    pub summary: Summary,
}

/// What else used the CPU during one test's windows, over all servers and
/// rounds, in cores.
#[derive(Debug, Serialize)]
pub struct Noise {
    pub test: Test,
    pub load_cores_median: f64,
    pub other_cores_median: f64,
    pub other_cores_max: f64,
    pub steal_cores_max: f64,
}

pub struct Context<'a> {
    pub plan: &'a Plan,
    pub pins: Pins,
    pub programs: &'a Programs,
    /// CPUs the benchmark was allowed, before it pinned itself to one.
    pub cpus: usize,
    pub seconds_taken: f64,
}

pub fn build(results: Results, context: &Context) -> Report {
    let plan = context.plan;
    let suite = plan.suite.servers().iter().copied();
    let available: Vec<ServerKind> = suite.clone().filter(|k| context.programs.missing(*k).is_none()).collect();
    let rounds = plan.rounds as usize;
    let value = |figure: Figure, server: ServerKind, round: usize| {
        results
            .samples
            .iter()
            .filter(|s| s.test == figure.test() && s.server == server && s.round as usize == round)
            .find_map(|s| s.outcome.values.get(&figure).copied())
    };

    let mut complete = results.failures.is_empty();
    let mut figures = Vec::new();
    for figure in Figure::ALL.into_iter().filter(|f| plan.tests.contains(&f.test())) {
        let by_round =
            available.iter().map(|&server| (server, (0..rounds).map(|r| value(figure, server, r)).collect()));
        let by_round: Vec<(ServerKind, Vec<Option<f64>>)> = by_round.collect();
        complete &= by_round.iter().all(|(_, rounds)| rounds.iter().all(Option::is_some));
        figures.push(figure_report(figure, by_round));
    }

    Report {
        meta: meta(context),
        plan: plan.clone(),
        pins: context.pins,
        servers: suite
            .map(|server| ServerInfo {
                server,
                label: server.label(),
                command: context.programs.describe(server),
                missing: context.programs.missing(server).map(str::to_string),
            })
            .collect(),
        start: start::report(&figures),
        floor: floor::report(&results.floor, rounds, &figures),
        curve: curve::report(&results.samples, plan, &available),
        targets: targets::verdicts(&figures, plan.suite),
        figures,
        precompiled: results.precompiled,
        noise: noise(&results.samples),
        notes: notes(&results.samples, context),
        complete,
        failures: results.failures,
        samples: results.samples,
    }
}

/// One figure's summaries, best native server and ratios, from each
/// server's value by round.
fn figure_report(figure: Figure, by_round: Vec<(ServerKind, Vec<Option<f64>>)>) -> FigureReport {
    let mut values = Vec::new();
    for (server, by_round) in by_round {
        let present: Vec<f64> = by_round.iter().flatten().copied().collect();
        if let Some(summary) = Summary::of(&present) {
            let within_target = figure.target().filter(|_| server.is_evconn()).map(|t| figure.beats(summary.median, t));
            values.push(ServerValue { server, summary, by_round, within_target });
        }
    }
    let best_native = values
        .iter()
        .filter(|v| v.server.is_native())
        .reduce(|a, b| if figure.beats(b.summary.median, a.summary.median) { b } else { a })
        .map(|v| v.server);
    // evconn against every native server, and against the guest that owns
    // its socket: the alternative a user of sandboxed handlers weighs.
    let mut ratios = Vec::new();
    for evconn in values.iter().filter(|v| v.server.is_evconn()) {
        for native in values.iter().filter(|v| v.server.is_native() || v.server == ServerKind::GuestSocket) {
            if let Some(summary) = ratio_by_round(&evconn.by_round, &native.by_round) {
                ratios.push(Ratio { server: evconn.server, against: native.server, summary });
            }
        }
    }
    FigureReport {
        figure,
        title: figure.title(),
        unit: figure.unit(),
        better: figure.better(),
        target: figure.target(),
        values,
        best_native,
        ratios,
    }
}

/// `a / b` round by round, where both were measured, summarised.
pub fn ratio_by_round(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Summary> {
    combine_by_round(a, b, |a, b| (b != 0.0).then(|| a / b))
}

/// `f(a, b)` round by round, where both were measured and `f` gives a
/// value, summarised.
pub fn combine_by_round(a: &[Option<f64>], b: &[Option<f64>], f: impl Fn(f64, f64) -> Option<f64>) -> Option<Summary> {
    let per_round: Vec<f64> = a.iter().zip(b).filter_map(|(a, b)| f((*a)?, (*b)?)).collect();
    Summary::of(&per_round)
}

fn noise(samples: &[Sample]) -> Vec<Noise> {
    Test::ALL
        .into_iter()
        .filter_map(|test| {
            let usages: Vec<_> = samples.iter().filter(|s| s.test == test).filter_map(|s| s.outcome.usage).collect();
            let of = |f: fn(&crate::procfs::Usage) -> f64| Summary::of(&usages.iter().map(f).collect::<Vec<_>>());
            Some(Noise {
                test,
                load_cores_median: of(|u| u.load_cores)?.median,
                other_cores_median: of(|u| u.other_cores)?.median,
                other_cores_max: of(|u| u.other_cores)?.max,
                steal_cores_max: of(|u| u.steal_cores)?.max,
            })
        })
        .collect()
}

/// Other work on the machine, in cores, above which a window is noisy.
const NOISY_CORES: f64 = 0.25;

fn notes(samples: &[Sample], context: &Context) -> Vec<String> {
    let mut notes = Vec::new();
    if context.plan.smoke {
        notes.push(
            "Smoke run: tiny windows and counts, one round. It checks that every server starts and every \
             figure comes out; its numbers say nothing about speed."
                .into(),
        );
    }
    if cfg!(debug_assertions) || context.programs.host.components().any(|c| c.as_os_str() == "debug") {
        notes.push(
            "Built without optimisations (the load generator or the host): figures say nothing about speed.".into(),
        );
    }
    for &kind in context.plan.suite.servers() {
        if let Some(reason) = context.programs.missing(kind) {
            notes.push(format!("{} is missing: {reason}", kind.label()));
        }
    }
    if context.plan.suite == Suite::Kv {
        notes.push(format!(
            "Kv suite: redis-benchmark ({} clients, keys `key:__rand_int__`, 3-byte values) runs once per command \
             and pipeline depth on the load generator's CPU{}; its requests/s is its own count, the server CPU per \
             request the server's time over the requests of that run. evconn serves examples/kv with its data in \
             the host's in-memory store (`--keyvalue memory`, the default).",
            crate::load::redis::CLIENTS,
            context.pins.load.map(|c| format!(" (CPU {c})")).unwrap_or_default(),
        ));
    }
    if context.plan.suite == Suite::Proxy {
        notes.push(format!(
            "Proxy suite: every proxy relays to one native tokio echo backend (`native-echo`), started once for \
             the run and pinned to the load generator's CPU{}, so the load's CPU is shared and rates sit close \
             together: server CPU per operation, the proxy's alone, tells proxies apart. The backend's CPU counts \
             as \"rest of the machine\" in \"What else used the CPU\". Idle: {} connections, fewer than the echo \
             suite's because each costs the proxy two descriptors and the backend one.",
            context.pins.load.map(|c| format!(" (CPU {c})")).unwrap_or_default(),
            context.plan.idle_connections
        ));
    }
    if context.plan.suite == Suite::Tls {
        notes.push(format!(
            "Tls suite: the clients offer TLS 1.3 only, TLS_AES_128_GCM_SHA256 and X25519 only, and no session \
             resumption, so every server negotiates the same full handshake, signed with the run's ECDSA P-256 \
             certificate. Handshakes: {} clients at once, each connecting, handshaking, exchanging {} bytes and \
             closing with close_notify. The load generator's one CPU does as much of each handshake as the \
             server, so it may set the rates: server CPU per handshake tells servers apart. HAProxy relays to a \
             native tokio echo (`native-echo`) pinned to the load generator's CPU{}; its CPU figures are \
             HAProxy's alone, without the echo's.",
            context.plan.connect_concurrency,
            context.plan.message_bytes,
            context.pins.load.map(|c| format!(" (CPU {c})")).unwrap_or_default(),
        ));
    }
    let windows: Vec<_> = samples.iter().filter_map(|s| s.outcome.usage).collect();
    let noisy = windows.iter().filter(|u| u.other_cores > NOISY_CORES).count();
    // In the proxy suite the backend is always "other work".
    if noisy > 0 && context.plan.suite == Suite::Echo {
        notes.push(format!(
            "{noisy} of {} timed windows had more than {NOISY_CORES} cores of other work on the machine \
             (see \"What else used the CPU\"): rates and latencies from them are suspect; server CPU per \
             operation holds up better.",
            windows.len()
        ));
    }
    let mut seen = BTreeMap::new();
    for s in samples.iter().filter(|s| s.outcome.note.is_some()) {
        seen.entry(s.server.label()).or_insert_with(Vec::new).push(s.outcome.note.clone().unwrap_or_default());
    }
    for (label, list) in seen {
        notes.push(format!("{label}: {}", list[0]));
    }
    notes
}

fn meta(context: &Context) -> Meta {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let libevent_version = std::process::Command::new("pkg-config")
        .args(["--modversion", "libevent"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    // The proxy suite runs neither libevent nor the wasmtime CLI.
    let echo = context.plan.suite == Suite::Echo;
    Meta {
        date: crate::clock::utc_now(),
        cpu,
        cpus: context.cpus,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        bench_build: if cfg!(debug_assertions) { "debug" } else { "release" },
        host: context.programs.host.display().to_string(),
        libevent_version: libevent_version.filter(|_| echo && context.programs.missing(ServerKind::Libevent).is_none()),
        wasmtime_cli_version: context.programs.wasmtime_cli.as_ref().ok().filter(|_| echo).and_then(|cli| {
            let output = std::process::Command::new(cli).arg("--version").output().ok()?;
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        }),
        redis_version: context
            .programs
            .redis_server
            .as_ref()
            .ok()
            .filter(|_| context.plan.suite == Suite::Kv)
            .and_then(|server| {
                let version = |program: &std::path::Path| {
                    let output = std::process::Command::new(program).arg("--version").output().ok()?;
                    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
                };
                Some(format!("{}; {}", version(server)?, version(&context.programs.redis_benchmark)?))
            }),
        seconds_taken: context.seconds_taken,
    }
}

/// Writes results.json, report.md and chart.svg into `dir`; returns the
/// markdown.
pub fn write(report: &Report, dir: &Path) -> Result<String, String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json + "\n").map_err(|e| format!("results.json: {e}"))?;
    let markdown = table::markdown(report);
    std::fs::write(dir.join("report.md"), &markdown).map_err(|e| format!("report.md: {e}"))?;
    chart::svg(report, &dir.join("chart.svg"))?;
    Ok(markdown)
}
