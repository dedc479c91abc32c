//! The wasmtime floor against the servers: how much of what the sandbox
//! costs the host is wasmtime's own call, and how close to the native
//! servers a host that added nothing else could come.
use serde::Serialize;

use super::{FigureReport, combine_by_round};
use crate::figures::Figure;
use crate::floor::FloorRun;
use crate::servers::ServerKind;
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct FloorReport {
    /// CPU per `on-data` call with `call_async`, in us.
    pub call_async_us: Summary,
    /// The same with `call` (no fiber), in us.
    pub call_sync_us: Summary,
    /// Resident memory per pooled instance, in KiB, called with
    /// `call_async` and with `call`.
    pub instance_kib: Summary,
    pub instance_sync_kib: Summary,
    /// The native server the ping-pong targets compare with: the one with
    /// the most round trips/s.
    pub native: Option<ServerKind>,
    /// The ping-pong ratio to `native` a host adding nothing but the floor's
    /// call could reach, were the server's CPU what limits the rate: the
    /// native server's CPU per round trip over that plus the floor, round by
    /// round.
    pub ceiling_async: Option<Summary>,
    pub ceiling_sync: Option<Summary>,
    pub models: Vec<ModelFloor>,
}

/// One isolation model's round trip against the floor.
#[derive(Debug, Serialize)]
pub struct ModelFloor {
    pub server: ServerKind,
    /// Its CPU per round trip less `native`'s, in us, round by round.
    pub added_us: Option<Summary>,
    /// The floor's `call_async` over `added_us`, round by round: the part
    /// of what the sandbox adds that is wasmtime's call itself.
    pub floor_share: Option<Summary>,
}

/// None when the floor did not run (or gave no figure).
pub fn report(runs: &[FloorRun], rounds: usize, figures: &[FigureReport]) -> Option<FloorReport> {
    let by_round = |pick: fn(&FloorRun) -> f64| -> Vec<Option<f64>> {
        (0..rounds).map(|r| runs.iter().find(|run| run.round as usize == r).map(pick)).collect()
    };
    let call_async = by_round(|r| r.call_async_us);
    let call_sync = by_round(|r| r.call_sync_us);
    let summary = |values: &[Option<f64>]| Summary::of(&values.iter().flatten().copied().collect::<Vec<_>>());

    let find = |figure: Figure| figures.iter().find(|f| f.figure == figure);
    let native = find(Figure::RoundTrips).and_then(|f| f.best_native);
    let cpu = find(Figure::CpuPerRoundTrip);
    let cpu_of = |server: ServerKind| cpu.and_then(|f| f.value(server)).map(|v| v.by_round.as_slice());
    let native_cpu = native.and_then(cpu_of);
    let ceiling =
        |floor: &[Option<f64>]| combine_by_round(native_cpu?, floor, |native, floor| Some(native / (native + floor)));
    let models = [ServerKind::EvconnShared, ServerKind::EvconnConnection]
        .into_iter()
        .filter_map(|server| {
            let (evconn, native) = (cpu_of(server)?, native_cpu?);
            let added: Vec<Option<f64>> =
                evconn.iter().zip(native).map(|(e, n)| Some(e.as_ref()? - n.as_ref()?)).collect();
            Some(ModelFloor {
                server,
                added_us: summary(&added),
                floor_share: combine_by_round(&call_async, &added, |floor, added| Some(floor / added)),
            })
        })
        .collect();
    Some(FloorReport {
        call_async_us: summary(&call_async)?,
        call_sync_us: summary(&call_sync)?,
        instance_kib: summary(&by_round(|r| r.instance_kib))?,
        instance_sync_kib: summary(&by_round(|r| r.instance_sync_kib))?,
        native,
        ceiling_async: ceiling(&call_async),
        ceiling_sync: ceiling(&call_sync),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure_report;
    use crate::servers::ServerKind::{EvconnConnection, EvconnShared, Libevent, Tokio};

    fn run(round: u32, call_async_us: f64) -> FloorRun {
        FloorRun {
            round,
            call_async_us,
            call_sync_us: call_async_us / 2.0,
            instance_kib: 30.0,
            instance_sync_kib: 26.0,
        }
    }

    /// The ceiling and the floor's share are taken round by round against
    /// the native server with the most round trips, not the one with the
    /// least CPU.
    #[test]
    fn the_ceiling_divides_the_best_native_servers_cpu_by_that_plus_the_floor() {
        let rounds = |v: &[f64]| v.iter().copied().map(Some).collect::<Vec<_>>();
        let figures = vec![
            figure_report(
                Figure::RoundTrips,
                vec![
                    (EvconnShared, rounds(&[90.0, 90.0])),
                    (EvconnConnection, rounds(&[80.0, 80.0])),
                    (Tokio, rounds(&[100.0, 100.0])),
                    (Libevent, rounds(&[95.0, 95.0])),
                ],
            ),
            figure_report(
                Figure::CpuPerRoundTrip,
                vec![
                    (EvconnShared, rounds(&[8.0, 9.0])),
                    (EvconnConnection, rounds(&[10.0, 10.0])),
                    (Tokio, rounds(&[6.0, 7.0])),
                    (Libevent, rounds(&[5.0, 5.0])),
                ],
            ),
        ];
        let report = report(&[run(0, 1.5), run(1, 1.0)], 2, &figures).expect("a floor report");
        assert_eq!(report.native, Some(Tokio));
        let ceiling = report.ceiling_async.expect("a ceiling");
        assert_eq!((ceiling.min, ceiling.max), (6.0 / 7.5, 7.0 / 8.0));
        let sync = report.ceiling_sync.expect("a sync ceiling");
        assert_eq!((sync.min, sync.max), (6.0 / 6.75, 7.0 / 7.5));
        let shared = &report.models[0];
        assert_eq!(shared.server, EvconnShared);
        assert_eq!(shared.added_us.map(|s| (s.min, s.max)), Some((2.0, 2.0)));
        assert_eq!(shared.floor_share.map(|s| (s.min, s.max)), Some((0.5, 0.75)));
        assert_eq!(report.models[1].added_us.map(|s| s.median), Some(3.5));
    }

    /// A round whose floor failed drops out of the ceiling; no floor at all
    /// is no report.
    #[test]
    fn missing_floor_rounds_are_left_out() {
        let figures = vec![figure_report(Figure::CpuPerRoundTrip, vec![(Tokio, vec![Some(6.0), Some(6.0)])])];
        assert!(report(&[], 2, &figures).is_none());
        let report = report(&[run(1, 2.0)], 2, &figures).expect("a floor report");
        assert_eq!(report.call_async_us.rounds, 1);
        assert!(report.ceiling_async.is_none(), "no round-trip figure: no native server to compare with");
    }
}
