//! The report as markdown: settings, the figures, evconn's ratios to the
//! native servers and to a guest that owns its socket, the targets met or
//! missed, the start figures against their target, ping-pong by number of
//! connections, noise and notes.
use std::fmt::Write;

use super::targets::Against;
use super::{FigureReport, Report};
use crate::figures::{Better, Figure, Test};
use crate::servers::{ServerKind, Suite};
use crate::stats::{Summary, short, short_ratio};

pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.meta;
    let p = &r.plan;
    let evconn = p.suite.evconn();
    let suite = match p.suite {
        Suite::Echo => "",
        Suite::Proxy => " (proxy suite)",
        Suite::Kv => " (kv suite)",
        Suite::Tls => " (tls suite)",
    };
    let _ = writeln!(md, "# evconn benchmark{suite}, {}\n", m.date);
    for note in &r.notes {
        let _ = writeln!(md, "> {note}\n");
    }
    let _ = writeln!(
        md,
        "{} ({} CPUs), Linux {}; load generator built for {}; host `{}`{}{}{}.\n",
        m.cpu,
        m.cpus,
        m.kernel,
        m.bench_build,
        m.host,
        m.libevent_version.as_ref().map(|v| format!("; libevent {v}")).unwrap_or_default(),
        m.wasmtime_cli_version.as_ref().map(|v| format!("; the guest socket's CLI: {v}")).unwrap_or_default(),
        m.redis_version.as_ref().map(|v| format!("; {v}")).unwrap_or_default()
    );
    let pins = match (r.pins.server, r.pins.load) {
        (Some(s), Some(l)) => format!(
            "Server pinned to CPU {s}, load generator to CPU {l}; the latency client runs on the server's CPU {}, \
             since across two CPUs it would mostly time the virtual machine waking one.",
            r.pins.latency.unwrap_or(s)
        ),
        _ => "Fewer than two CPUs: nothing pinned.".into(),
    };
    let _ = writeln!(
        md,
        "{} round(s); each measurement on a freshly started server, {:.1} s window after {:.2} s warm-up; \
         the order of servers rotates between rounds. {pins} Idle connections: {}.\n",
        p.rounds,
        p.window.as_secs_f64(),
        p.warmup.as_secs_f64(),
        p.idle_connections,
    );

    let servers: Vec<ServerKind> = r.servers.iter().filter(|s| s.missing.is_none()).map(|s| s.server).collect();
    let _ = writeln!(md, "## Figures\n");
    let _ = writeln!(md, "Median over rounds, and in brackets the spread: (max - min) / median.\n");
    let _ = write!(md, "| figure | unit | better |");
    for s in &servers {
        let _ = write!(md, " {} |", s.label());
    }
    let _ = write!(md, "\n| --- | --- | --- |");
    for _ in &servers {
        let _ = write!(md, " ---: |");
    }
    md.push('\n');
    for f in &r.figures {
        let better = match f.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        let _ = write!(md, "| {} | {} | {better} |", f.title, f.unit);
        for &s in &servers {
            let cell = f
                .value(s)
                .map(|v| format!("{} ({:.0}%)", short(v.summary.median), v.summary.spread_pct))
                .unwrap_or_else(|| "missing".into());
            let bold = f.best_native == Some(s);
            let _ = write!(md, " {} |", if bold { format!("**{cell}**") } else { cell });
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\nBold: the best native server for that figure.\n");

    let _ = writeln!(md, "## evconn against the native servers\n");
    let _ = writeln!(
        md,
        "evconn's figure divided by the native server's, round by round; median and (min-max) over rounds. \
         For rates (higher is better) below 1 means slower; for costs (lower is better) above 1 means dearer.\n"
    );
    // libevent for the echo, HAProxy for the proxy: the server the
    // project's targets name.
    let reference = p.suite.reference();
    let has_reference = servers.contains(&reference);
    // A column per evconn server of the suite, against the best native,
    // then against the reference.
    let _ = write!(md, "| figure |");
    for &e in evconn {
        let _ = write!(md, " {} / best native |", short_label(e));
    }
    if has_reference {
        for &e in evconn {
            let _ = write!(md, " {} / {} |", short_label(e), reference.label());
        }
    }
    let _ = write!(md, "\n| --- |");
    let columns = if has_reference { 2 * evconn.len() } else { evconn.len() };
    for _ in 0..columns {
        let _ = write!(md, " ---: |");
    }
    md.push('\n');
    for f in &r.figures {
        let _ = write!(md, "| {} |", f.title);
        for &e in evconn {
            let cell = f
                .best_native
                .map(|b| format!("{} vs {}", ratio_cell(f, e, b), b.label()))
                .unwrap_or_else(|| "missing".into());
            let _ = write!(md, " {cell} |");
        }
        if has_reference {
            for &e in evconn {
                let _ = write!(md, " {} |", ratio_cell(f, e, reference));
            }
        }
        md.push('\n');
    }

    if servers.contains(&ServerKind::GuestSocket) {
        guest_socket_section(&mut md, r);
    }

    if !r.targets.is_empty() {
        targets_section(&mut md, r);
    }

    if let Some(start) = &r.start {
        start_section(&mut md, r, start);
    }

    if let Some(floor) = &r.floor {
        floor_section(&mut md, r, floor);
    }

    if let Some(curve) = &r.curve {
        super::curve::markdown(&mut md, curve);
    }

    // The start test alone has no timed window.
    if !r.noise.is_empty() {
        let _ = writeln!(md, "\n## What else used the CPU\n");
        let _ = writeln!(
            md,
            "In cores (1.0 = one CPU all the time), over the timed windows of each test. A load generator near 1.0 \
             is the bottleneck: rates are then pulled together and server CPU per operation tells servers apart.\n"
        );
        let _ = writeln!(
            md,
            "| test | load generator, median | rest of the machine, median | rest, max | stolen by the hypervisor, max |"
        );
        let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
        for n in &r.noise {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                n.test.key(),
                n.load_cores_median,
                n.other_cores_median,
                n.other_cores_max,
                n.steal_cores_max
            );
        }
    }

    if !r.failures.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for f in &r.failures {
            let none = if f.test == Test::Floor { "wasmtime alone" } else { "the echo backend" };
            let server = f.server.map_or(none, ServerKind::key);
            let _ = writeln!(md, "- round {}, {}, {server}: {}", f.round + 1, f.test.key(), f.error);
        }
    }

    let _ = writeln!(md, "\n## Servers\n");
    for s in &r.servers {
        let _ = writeln!(md, "- {}: `{}`", s.label, s.command);
    }
    md
}

fn guest_socket_section(md: &mut String, r: &Report) {
    let _ = writeln!(md, "\n## evconn against a guest that owns its socket\n");
    let _ = writeln!(
        md,
        "The alternative to native accept and callbacks: the echo guest binds, listens and accepts through \
         `wasi:sockets` itself and serves each connection in a task of wstd's runtime (bench/socket-echo), run by \
         `wasmtime run -S inherit-network` at the host's wasmtime version. evconn's figure divided by its, round \
         by round; median and (min-max) over rounds. For rates above 1 means evconn is faster; for costs below 1 \
         means evconn is cheaper.\n"
    );
    let _ = writeln!(md, "| figure | shared / guest socket | connection / guest socket |");
    let _ = writeln!(md, "| --- | ---: | ---: |");
    for f in &r.figures {
        let _ = write!(md, "| {} |", f.title);
        for e in ServerKind::EVCONN {
            let cell = match f.ratio(e, ServerKind::GuestSocket) {
                Some(r) => format!(
                    "{} ({}-{})",
                    short_ratio(r.summary.median),
                    short_ratio(r.summary.min),
                    short_ratio(r.summary.max)
                ),
                None => "missing".into(),
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
}

fn targets_section(md: &mut String, r: &Report) {
    let _ = writeln!(md, "\n## Against the targets\n");
    let _ = writeln!(
        md,
        "The project's targets for the sandbox's cost. A ratio target is met when the median of the round-by-round \
         ratios reaches it; a single run on a noisy machine can land either side of a close one.\n"
    );
    let _ = writeln!(md, "| figure | evconn | against | target | measured: median (min-max) | |");
    let _ = writeln!(md, "| --- | --- | --- | ---: | ---: | --- |");
    for v in &r.targets {
        let sign = match v.figure.better() {
            Better::Higher => ">=",
            Better::Lower => "<=",
        };
        let against = match (v.against, v.native) {
            (Against::Absolute, _) => "-".to_string(),
            (Against::BestNative, Some(native)) => format!("best native ({})", native.label()),
            (Against::BestNative, None) => "best native".to_string(),
            (Against::Libevent, _) => "libevent".to_string(),
            (Against::Haproxy, native) => native.map_or("HAProxy", ServerKind::label).to_string(),
            (Against::Redis, _) => "redis-server".to_string(),
        };
        // A ratio has two decimals; a figure of its own keeps its unit.
        let absolute = v.against == Against::Absolute;
        let bound = if absolute {
            format!("{sign} {} {}", short(v.bound), v.figure.unit())
        } else {
            format!("{sign} {:.2}", v.bound)
        };
        let measured = match v.measured {
            Some(m) if absolute => format!("{} ({}-{})", short(m.median), short(m.min), short(m.max)),
            Some(m) => format!("{:.2} ({:.2}-{:.2})", m.median, m.min, m.max),
            None => "not measured".into(),
        };
        let verdict = match v.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {against} | {bound} | {measured} | {verdict} |",
            v.figure.title(),
            short_label(v.server)
        );
    }
}

/// "shared" or "connection".
fn short_label(server: ServerKind) -> &'static str {
    match server {
        ServerKind::EvconnShared | ServerKind::ProxyShared | ServerKind::KvShared | ServerKind::TlsShared => "shared",
        ServerKind::EvconnConnection | ServerKind::ProxyConnection | ServerKind::KvConnection => "connection",
        other => other.label(),
    }
}

fn start_section(md: &mut String, r: &Report, start: &super::StartReport) {
    let _ = writeln!(md, "\n## Start to first echo\n");
    let made = match &r.precompiled {
        Some(p) => format!(" ({:.2} s)", p.seconds),
        None => String::new(),
    };
    let _ = writeln!(
        md,
        "From spawning the server to its first echo on a fresh connection, tried every 1 ms: the median of {} \
         start(s) of each kind per server and round, then the median (spread) over rounds. Cold: an empty \
         `--cache-dir`, so the host compiles the component and writes the cache; warm: the same folder again; \
         precompiled: a file made once by `host compile`{made}. A native server has nothing to compile: its three \
         rows are the same command started again, and its start (process start and bind) is the floor. \
         Ratios are taken round by round.\n",
        r.plan.starts
    );
    let target = start.target_ms;
    let _ = writeln!(
        md,
        "| evconn | warm cache, ms | target: under {target} ms | warm / best native start | precompiled / warm | cold / warm |"
    );
    let _ = writeln!(md, "| --- | ---: | --- | ---: | ---: | ---: |");
    let native = start.best_native.map(|b| format!(" vs {}", b.label())).unwrap_or_default();
    for s in &start.servers {
        let cell = |summary: Option<Summary>| match summary {
            Some(x) => format!("{} ({}-{})", short(x.median), short(x.min), short(x.max)),
            None => "missing".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} ({:.0}%) | {} | {}{native} | {} | {} |",
            s.server.label(),
            short(s.warm_ms.median),
            s.warm_ms.spread_pct,
            if s.within_target { "met" } else { "**missed**" },
            cell(s.warm_vs_best_native),
            cell(s.precompiled_vs_warm),
            cell(s.cold_vs_warm),
        );
    }
}

fn floor_section(md: &mut String, r: &Report, floor: &super::FloorReport) {
    let _ = writeln!(md, "\n## The wasmtime floor\n");
    let _ = writeln!(
        md,
        "`wasmtime-floor` runs the echo guest on the host's engine with nothing around it, pinned to the server's \
         CPU: it calls `on-data` with 64 bytes, which the guest writes back through a `write` that does nothing, \
         and holds instances from the per-connection model's pool, each called once. No host of this guest on \
         this wasmtime can cost less. Median (min-max) over rounds.\n"
    );
    let cell = |x: Summary| format!("{} ({}-{})", short(x.median), short(x.min), short(x.max));
    let _ = writeln!(md, "| wasmtime alone | median (min-max) |");
    let _ = writeln!(md, "| --- | ---: |");
    let _ = writeln!(
        md,
        "| CPU per `on-data` call, `call_async` (on a fiber, as the host calls) | {} us |",
        cell(floor.call_async_us)
    );
    let _ = writeln!(
        md,
        "| CPU per `on-data` call, `call` (no fiber: a long callback could not yield) | {} us |",
        cell(floor.call_sync_us)
    );
    let _ =
        writeln!(md, "| resident memory per instance, called with `call_async` | {} KiB |", cell(floor.instance_kib));
    let _ = writeln!(
        md,
        "| resident memory per instance, called with `call` (no fiber stack kept) | {} KiB |",
        cell(floor.instance_sync_kib)
    );
    let Some(native) = floor.native else { return };
    let ceiling = |x: Option<Summary>| x.map_or("missing".into(), cell);
    let _ = writeln!(
        md,
        "\nAgainst {0}, the native server with the most round trips/s: the sandbox's added CPU per round trip \
         (evconn's less {0}'s), the share of it that is the floor's call, and the ping-pong ratio a host adding \
         nothing but that call could reach were the server's CPU the limit ({0}'s CPU per round trip over that \
         plus the floor). The call is timed in a tight loop, with warm caches: in a server it costs more. Where \
         the load generator limits the rate (see \"What else used the CPU\"), measured ratios can pass the \
         ceiling; in server CPU per round trip no host can come nearer {0} than the floor allows.\n",
        native.label()
    );
    let _ = writeln!(
        md,
        "| evconn | added CPU per round trip | floor's share | ceiling, `call_async` | ceiling, `call` | target |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for m in &floor.models {
        let target = r
            .targets
            .iter()
            .find(|t| t.figure == Figure::RoundTrips && t.server == m.server && t.against == Against::BestNative)
            .map_or("none".into(), |t| format!(">= {}", t.bound));
        let _ = writeln!(
            md,
            "| {} | {} us | {} | {} | {} | {target} |",
            m.server.label(),
            m.added_us.map_or("missing".into(), cell),
            m.floor_share.map_or("missing".into(), |s| format!(
                "{:.0}% ({:.0}-{:.0}%)",
                s.median * 100.0,
                s.min * 100.0,
                s.max * 100.0
            )),
            ceiling(floor.ceiling_async),
            ceiling(floor.ceiling_sync),
        );
    }
    let idle = r.figures.iter().find(|f| f.figure == Figure::IdleMemory);
    if let Some(host) = idle.and_then(|f| f.value(ServerKind::EvconnConnection)) {
        let target = r
            .targets
            .iter()
            .find(|t| t.figure == Figure::IdleMemory && t.server == ServerKind::EvconnConnection)
            .map_or(String::new(), |t| format!(" (target: at most {} KiB)", t.bound));
        let _ = writeln!(
            md,
            "\nPer idle connection, the per-connection model holds {} KiB{target}, of which the floor's instance \
             is {} KiB ({} KiB called without a fiber).",
            short(host.summary.median),
            short(floor.instance_kib.median),
            short(floor.instance_sync_kib.median)
        );
    }
}

fn ratio_cell(f: &FigureReport, server: ServerKind, against: ServerKind) -> String {
    match f.ratio(server, against) {
        Some(r) => format!("{:.2} ({:.2}-{:.2})", r.summary.median, r.summary.min, r.summary.max),
        None => "missing".into(),
    }
}
