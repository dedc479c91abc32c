//! Ping-pong by number of connections: each curve server's round trips and
//! CPU per round trip at every count, evconn's ratios to the guest that
//! owns its socket, and how much dearer a round trip gets from the fewest
//! connections to the most.
use std::fmt::Write;

use serde::Serialize;

use super::combine_by_round;
use crate::cli::Plan;
use crate::figures::{Figure, Test};
use crate::runner::Sample;
use crate::servers::ServerKind;
use crate::stats::{Summary, short, short_ratio};

#[derive(Debug, Serialize)]
pub struct CurveReport {
    /// The numbers of connections, fewest first.
    pub connections: Vec<usize>,
    pub servers: Vec<ServerCurve>,
    /// evconn's figure over the guest socket's, at each count.
    pub against_guest_socket: Vec<GuestRatio>,
}

/// One server's points, in the order of `CurveReport::connections`.
#[derive(Debug, Serialize)]
pub struct ServerCurve {
    pub server: ServerKind,
    pub points: Vec<Point>,
    /// CPU per round trip at each count over at the fewest connections,
    /// round by round: 1 throughout for a server whose cost does not grow.
    pub cpu_growth: Vec<Option<Summary>>,
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub connections: usize,
    pub round_trips_per_s: Option<Summary>,
    pub cpu_us_per_round_trip: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct GuestRatio {
    pub server: ServerKind,
    pub connections: usize,
    pub round_trips_per_s: Option<Summary>,
    pub cpu_us_per_round_trip: Option<Summary>,
}

/// None when the curve did not run.
pub fn report(samples: &[Sample], plan: &Plan, available: &[ServerKind]) -> Option<CurveReport> {
    if !plan.tests.contains(&Test::Curve) {
        return None;
    }
    let mut connections = plan.curve_connections.clone();
    connections.sort_unstable();
    if connections.is_empty() {
        return None;
    }
    let by_round = |server: ServerKind, count: usize, figure: Figure| -> Vec<Option<f64>> {
        (0..plan.rounds)
            .map(|round| {
                samples
                    .iter()
                    .filter(|s| s.test == Test::Curve && s.server == server && s.round == round)
                    .find(|s| s.connections == Some(count))
                    .and_then(|s| s.outcome.values.get(&figure).copied())
            })
            .collect()
    };
    let summary = |values: &[Option<f64>]| Summary::of(&values.iter().flatten().copied().collect::<Vec<_>>());
    let ratio = |a: &[Option<f64>], b: &[Option<f64>]| combine_by_round(a, b, |a, b| (b != 0.0).then(|| a / b));

    let curve_servers: Vec<ServerKind> =
        ServerKind::CURVE.into_iter().filter(|server| available.contains(server)).collect();
    let servers = curve_servers
        .iter()
        .map(|&server| {
            let points = connections
                .iter()
                .map(|&count| Point {
                    connections: count,
                    round_trips_per_s: summary(&by_round(server, count, Figure::RoundTrips)),
                    cpu_us_per_round_trip: summary(&by_round(server, count, Figure::CpuPerRoundTrip)),
                })
                .collect();
            let fewest = by_round(server, connections[0], Figure::CpuPerRoundTrip);
            let cpu_growth = connections
                .iter()
                .map(|&count| ratio(&by_round(server, count, Figure::CpuPerRoundTrip), &fewest))
                .collect();
            ServerCurve { server, points, cpu_growth }
        })
        .collect();
    let mut against_guest_socket = Vec::new();
    if curve_servers.contains(&ServerKind::GuestSocket) {
        for server in ServerKind::EVCONN.into_iter().filter(|s| curve_servers.contains(s)) {
            for &count in &connections {
                let of = |s: ServerKind, figure: Figure| by_round(s, count, figure);
                against_guest_socket.push(GuestRatio {
                    server,
                    connections: count,
                    round_trips_per_s: ratio(
                        &of(server, Figure::RoundTrips),
                        &of(ServerKind::GuestSocket, Figure::RoundTrips),
                    ),
                    cpu_us_per_round_trip: ratio(
                        &of(server, Figure::CpuPerRoundTrip),
                        &of(ServerKind::GuestSocket, Figure::CpuPerRoundTrip),
                    ),
                });
            }
        }
    }
    Some(CurveReport { connections, servers, against_guest_socket })
}

/// The report's section on the curve.
pub fn markdown(md: &mut String, curve: &CurveReport) {
    let _ = writeln!(md, "\n## Ping-pong by number of connections\n");
    let _ = writeln!(
        md,
        "Ping-pong of 64-byte messages as above, at each number of connections on a freshly started server; \
         median (spread) over rounds. A server whose CPU per round trip grows with the connections spends \
         work on every connection for each message. The ratios are evconn's figure over the guest socket's, \
         round by round. A server that made no round trip in a window has no CPU per round trip and no ratio \
         there (-); the notes above say so.\n"
    );
    // A server that made no round trip at some count has no CPU per round
    // trip there, and no ratio: "-".
    let cell = |x: Option<Summary>| x.map_or("-".into(), |x| format!("{} ({:.0}%)", short(x.median), x.spread_pct));
    let ratio_cell = |x: Option<Summary>| {
        x.map_or("-".into(), |x| format!("{} ({}-{})", short_ratio(x.median), short_ratio(x.min), short_ratio(x.max)))
    };
    let tables = [
        (Figure::RoundTrips, "round trips/s", "higher is better"),
        (Figure::CpuPerRoundTrip, "server CPU per round trip, us", "lower is better"),
    ];
    for (figure, what, better) in tables {
        let pick = |p: &Point| match figure {
            Figure::RoundTrips => p.round_trips_per_s,
            _ => p.cpu_us_per_round_trip,
        };
        let pick_ratio = |r: &GuestRatio| match figure {
            Figure::RoundTrips => r.round_trips_per_s,
            _ => r.cpu_us_per_round_trip,
        };
        let _ = writeln!(md, "{what} ({better}):\n");
        let _ = write!(md, "| connections |");
        for s in &curve.servers {
            let _ = write!(md, " {} |", s.server.label());
        }
        let evconn: Vec<ServerKind> = ServerKind::EVCONN
            .into_iter()
            .filter(|e| curve.against_guest_socket.iter().any(|r| r.server == *e))
            .collect();
        for e in &evconn {
            let _ = write!(md, " {} / guest socket |", e.label());
        }
        let _ = write!(md, "\n| ---: |");
        for _ in curve.servers.iter().map(|_| ()).chain(evconn.iter().map(|_| ())) {
            let _ = write!(md, " ---: |");
        }
        md.push('\n');
        for (i, count) in curve.connections.iter().enumerate() {
            let _ = write!(md, "| {count} |");
            for s in &curve.servers {
                let _ = write!(md, " {} |", cell(s.points.get(i).and_then(pick)));
            }
            for e in &evconn {
                let r = curve.against_guest_socket.iter().find(|r| r.server == *e && r.connections == *count);
                let _ = write!(md, " {} |", ratio_cell(r.and_then(pick_ratio)));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "server CPU per round trip over the same server's at {} connection(s), round by round:\n",
        curve.connections[0]
    );
    let _ = write!(md, "| connections |");
    for s in &curve.servers {
        let _ = write!(md, " {} |", s.server.label());
    }
    let _ = write!(md, "\n| ---: |");
    for _ in &curve.servers {
        let _ = write!(md, " ---: |");
    }
    md.push('\n');
    for (i, count) in curve.connections.iter().enumerate() {
        let _ = write!(md, "| {count} |");
        for s in &curve.servers {
            let _ = write!(md, " {} |", ratio_cell(s.cpu_growth.get(i).copied().flatten()));
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::measure::Outcome;

    fn sample(round: u32, server: ServerKind, connections: usize, rate: f64, cpu: f64) -> Sample {
        Sample {
            round,
            server,
            test: Test::Curve,
            connections: Some(connections),
            outcome: Outcome {
                values: BTreeMap::from([(Figure::RoundTrips, rate), (Figure::CpuPerRoundTrip, cpu)]),
                usage: None,
                count: 1,
                note: None,
                runs: BTreeMap::new(),
            },
            stopped: "exit status: 0".into(),
        }
    }

    /// Points are matched by server, round and count; growth is the most
    /// connections' CPU over the fewest's; ratios are evconn over the guest
    /// socket; ping-pong samples at the same count do not leak in.
    #[test]
    fn points_growth_and_ratios_to_the_guest_socket() {
        use ServerKind::*;
        let plan = Plan {
            tests: vec![Test::PingPong, Test::Curve],
            rounds: 2,
            curve_connections: vec![10, 1],
            ..crate::cli::tests::plan()
        };
        let mut samples = vec![
            sample(0, EvconnShared, 1, 100.0, 5.0),
            sample(1, EvconnShared, 1, 120.0, 5.0),
            sample(0, EvconnShared, 10, 400.0, 6.0),
            sample(1, EvconnShared, 10, 400.0, 6.0),
            sample(0, GuestSocket, 1, 50.0, 10.0),
            sample(1, GuestSocket, 1, 60.0, 10.0),
            sample(0, GuestSocket, 10, 40.0, 100.0),
            sample(1, GuestSocket, 10, 40.0, 120.0),
        ];
        let mut pingpong = sample(0, EvconnShared, 10, 1e9, 1e9);
        (pingpong.test, pingpong.connections) = (Test::PingPong, None);
        samples.push(pingpong);
        let curve = report(&samples, &plan, &[EvconnShared, Tokio, GuestSocket]).expect("a curve");
        assert_eq!(curve.connections, vec![1, 10]);
        let servers: Vec<_> = curve.servers.iter().map(|s| s.server).collect();
        assert_eq!(servers, vec![EvconnShared, GuestSocket, Tokio], "the curve's servers that could run");
        let shared = &curve.servers[0];
        assert_eq!(shared.points[0].round_trips_per_s.map(|s| s.median), Some(110.0));
        assert_eq!(shared.points[1].cpu_us_per_round_trip.map(|s| s.median), Some(6.0));
        assert_eq!(shared.cpu_growth[0].map(|s| s.median), Some(1.0));
        assert_eq!(shared.cpu_growth[1].map(|s| s.median), Some(1.2));
        assert_eq!(curve.servers[1].cpu_growth[1].map(|s| (s.min, s.max)), Some((10.0, 12.0)));
        assert!(curve.servers[2].points[0].round_trips_per_s.is_none(), "tokio gave no figure");
        let at_ten = curve.against_guest_socket.iter().find(|r| r.connections == 10).expect("a ratio at 10");
        assert_eq!(at_ten.round_trips_per_s.map(|s| s.median), Some(10.0));
        assert_eq!(at_ten.cpu_us_per_round_trip.map(|s| (s.min, s.max)), Some((0.05, 0.06)));
        let mut md = String::new();
        markdown(&mut md, &curve);
        assert!(md.contains("| 10 | 400 (0%) | 40.0 (0%) | - | 10.0 (10.0-10.0) |"), "{md}");
    }

    #[test]
    fn no_curve_test_no_curve_report() {
        let plan = Plan { tests: vec![Test::PingPong], ..crate::cli::tests::plan() };
        assert!(report(&[], &plan, &ServerKind::ALL).is_none());
    }
}
