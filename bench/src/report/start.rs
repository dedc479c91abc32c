//! The start figures side by side: evconn's warm start against the target
//! and against the native start, and what an empty cache or a precompiled
//! file changes.
use serde::Serialize;

use super::{FigureReport, ratio_by_round};
use crate::figures::Figure;
use crate::servers::ServerKind;
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct StartReport {
    /// The warm start's target, in ms.
    pub target_ms: f64,
    /// The native server with the quickest warm-row start: the floor.
    pub best_native: Option<ServerKind>,
    pub servers: Vec<EvconnStart>,
}

/// One evconn server's start; ratios are taken round by round.
#[derive(Debug, Serialize)]
pub struct EvconnStart {
    pub server: ServerKind,
    pub warm_ms: Summary,
    pub within_target: bool,
    pub warm_vs_best_native: Option<Summary>,
    pub precompiled_vs_warm: Option<Summary>,
    pub cold_vs_warm: Option<Summary>,
}

/// None when the start test did not run (or gave no warm figure).
pub fn report(figures: &[FigureReport]) -> Option<StartReport> {
    let find = |figure: Figure| figures.iter().find(|f| f.figure == figure);
    let warm = find(Figure::WarmStart)?;
    let target_ms = warm.target?;
    let against_warm = |figure: Figure, server: ServerKind| {
        let other = find(figure)?.value(server)?;
        ratio_by_round(&other.by_round, &warm.value(server)?.by_round)
    };
    let servers = warm
        .values
        .iter()
        .filter(|v| v.server.is_evconn())
        .map(|v| EvconnStart {
            server: v.server,
            warm_ms: v.summary,
            within_target: Figure::WarmStart.beats(v.summary.median, target_ms),
            warm_vs_best_native: warm.best_native.and_then(|b| warm.ratio(v.server, b)).map(|r| r.summary),
            precompiled_vs_warm: against_warm(Figure::PrecompiledStart, v.server),
            cold_vs_warm: against_warm(Figure::ColdStart, v.server),
        })
        .collect();
    Some(StartReport { target_ms, best_native: warm.best_native, servers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure_report;

    fn rounds(values: &[f64]) -> Vec<Option<f64>> {
        values.iter().copied().map(Some).collect()
    }

    #[test]
    fn warm_start_against_target_floor_and_other_starts() {
        use ServerKind::*;
        let figures = vec![
            figure_report(
                Figure::ColdStart,
                vec![
                    (EvconnShared, rounds(&[100.0, 120.0])),
                    (EvconnConnection, rounds(&[150.0, 150.0])),
                    (Tokio, rounds(&[2.0, 2.0])),
                ],
            ),
            figure_report(
                Figure::WarmStart,
                vec![
                    (EvconnShared, rounds(&[10.0, 10.0])),
                    (EvconnConnection, rounds(&[60.0, 40.0])),
                    (Tokio, rounds(&[2.0, 4.0])),
                    (Libevent, rounds(&[1.0, 5.0])),
                ],
            ),
            // A round missing: the ratio comes from the other.
            figure_report(
                Figure::PrecompiledStart,
                vec![(EvconnShared, vec![None, Some(5.0)]), (Tokio, rounds(&[2.0, 2.0]))],
            ),
        ];
        let start = report(&figures).expect("a warm figure");
        assert_eq!(start.target_ms, 50.0);
        // Medians 3.0 (tokio) and 3.0 (libevent): the first keeps the place.
        assert_eq!(start.best_native, Some(Tokio));
        let shared = &start.servers[0];
        assert_eq!((shared.server, shared.warm_ms.median, shared.within_target), (EvconnShared, 10.0, true));
        assert_eq!(shared.warm_vs_best_native.map(|r| (r.min, r.max)), Some((2.5, 5.0)));
        assert_eq!(shared.precompiled_vs_warm.map(|r| (r.median, r.rounds)), Some((0.5, 1)));
        assert_eq!(shared.cold_vs_warm.map(|r| r.median), Some(11.0));
        let connection = &start.servers[1];
        assert_eq!((connection.warm_ms.median, connection.within_target), (50.0, false));
        assert!(connection.precompiled_vs_warm.is_none());
        assert_eq!(start.servers.len(), 2, "native servers are the floor, not rows");
    }

    #[test]
    fn no_start_test_no_start_report() {
        let figures = vec![figure_report(Figure::RoundTrips, vec![(ServerKind::Tokio, rounds(&[1.0]))])];
        assert!(report(&figures).is_none());
    }
}
