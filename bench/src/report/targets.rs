//! The project's targets for the sandbox's cost, each checked against this
//! run: most are a ratio of an evconn figure to a native server's (taken
//! round by round, as in the ratio table), two are evconn's own figure.
use serde::Serialize;

use super::FigureReport;
use crate::figures::{Better, Figure};
use crate::servers::{ServerKind, Suite};
use crate::stats::Summary;

/// What a target holds evconn's figure against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Against {
    /// The native server with the better median for that figure.
    BestNative,
    Libevent,
    Haproxy,
    Redis,
    /// Nothing: the bound is in the figure's own unit.
    Absolute,
}

/// `server`'s `figure` against `against` must reach `bound`: at least it
/// for a rate, at most it for a cost.
#[derive(Debug, Clone, Copy)]
struct Target {
    figure: Figure,
    server: ServerKind,
    against: Against,
    bound: f64,
}

const fn target(figure: Figure, server: ServerKind, against: Against, bound: f64) -> Target {
    Target { figure, server, against, bound }
}

use Against::{Absolute, BestNative, Haproxy, Libevent, Redis};
use ServerKind::{
    EvconnConnection as Connection, EvconnShared as Shared, KvConnection, KvShared, ProxyShared, TlsShared,
};

/// The targets, as the project set them: "a sandboxed echo that is not
/// slower than libevent's native one".
const TARGETS: [Target; 13] = [
    target(Figure::RoundTrips, Shared, Libevent, 1.00),
    target(Figure::RoundTrips, Connection, Libevent, 0.90),
    target(Figure::RoundTrips, Shared, BestNative, 0.95),
    target(Figure::RoundTrips, Connection, BestNative, 0.85),
    target(Figure::LatencyP99, Shared, BestNative, 1.15),
    target(Figure::LatencyP99, Connection, BestNative, 1.3),
    target(Figure::BulkRate, Shared, BestNative, 0.90),
    target(Figure::BulkRate, Connection, BestNative, 0.85),
    target(Figure::ConnectRate, Shared, BestNative, 0.90),
    target(Figure::ConnectRate, Connection, BestNative, 0.60),
    target(Figure::IdleMemory, Shared, BestNative, 1.5),
    target(Figure::IdleMemory, Connection, Absolute, 32.0),
    target(Figure::WarmStart, Shared, Absolute, 50.0),
];

/// The proxy suite's targets, from the issue that added it: the proxy
/// guest on the shared model against HAProxy and the best native proxy.
const PROXY_TARGETS: [Target; 6] = [
    target(Figure::RoundTrips, ProxyShared, Haproxy, 1.00),
    target(Figure::BulkRate, ProxyShared, Haproxy, 1.00),
    target(Figure::CpuPerRoundTrip, ProxyShared, Haproxy, 1.00),
    target(Figure::RoundTrips, ProxyShared, BestNative, 0.90),
    target(Figure::LatencyP99, ProxyShared, BestNative, 1.20),
    target(Figure::ConnectRate, ProxyShared, Haproxy, 0.80),
];

/// The kv suite's targets, from the issue that added the store: the kv
/// guest on the in-memory store against redis-server, for every command
/// with and without pipelining.
const KV_TARGETS: [Target; 18] = [
    target(Figure::Set, KvShared, Redis, 0.90),
    target(Figure::Get, KvShared, Redis, 0.90),
    target(Figure::Incr, KvShared, Redis, 0.90),
    target(Figure::SetPipelined, KvShared, Redis, 0.90),
    target(Figure::GetPipelined, KvShared, Redis, 0.90),
    target(Figure::IncrPipelined, KvShared, Redis, 0.90),
    target(Figure::Set, KvConnection, Redis, 0.80),
    target(Figure::Get, KvConnection, Redis, 0.80),
    target(Figure::Incr, KvConnection, Redis, 0.80),
    target(Figure::SetPipelined, KvConnection, Redis, 0.80),
    target(Figure::GetPipelined, KvConnection, Redis, 0.80),
    target(Figure::IncrPipelined, KvConnection, Redis, 0.80),
    target(Figure::SetCpu, KvShared, Redis, 1.30),
    target(Figure::GetCpu, KvShared, Redis, 1.30),
    target(Figure::IncrCpu, KvShared, Redis, 1.30),
    target(Figure::SetPipelinedCpu, KvShared, Redis, 1.30),
    target(Figure::GetPipelinedCpu, KvShared, Redis, 1.30),
    target(Figure::IncrPipelinedCpu, KvShared, Redis, 1.30),
];

/// The tls suite's targets, from the issue that asked for it: the host
/// terminating TLS in front of the echo guest, against HAProxy terminating
/// TLS in front of a native echo for handshakes, and against the best
/// native server for bulk.
const TLS_TARGETS: [Target; 2] =
    [target(Figure::Handshakes, TlsShared, Haproxy, 0.90), target(Figure::TlsBulkRate, TlsShared, BestNative, 0.90)];

/// One target and what this run measured for it.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub figure: Figure,
    pub server: ServerKind,
    pub against: Against,
    /// The native server the ratio was taken against, if any.
    pub native: Option<ServerKind>,
    /// At least this for a rate, at most this for a cost (`figure.better()`).
    pub bound: f64,
    /// The ratio (or, against nothing, the figure) over rounds; `None` when
    /// a server it needs did not run or gave no figure.
    pub measured: Option<Summary>,
    /// Whether the median reaches the bound.
    pub met: Option<bool>,
}

/// A verdict for every target whose figure this run measured.
pub fn verdicts(figures: &[FigureReport], suite: Suite) -> Vec<Verdict> {
    let targets: &[Target] = match suite {
        Suite::Echo => &TARGETS,
        Suite::Proxy => &PROXY_TARGETS,
        Suite::Kv => &KV_TARGETS,
        Suite::Tls => &TLS_TARGETS,
    };
    targets
        .iter()
        .filter_map(|t| {
            let report = figures.iter().find(|f| f.figure == t.figure)?;
            let native = match t.against {
                BestNative => report.best_native,
                Libevent => Some(ServerKind::Libevent),
                // The suite's HAProxy: relaying, or terminating TLS.
                Haproxy if suite == Suite::Tls => Some(ServerKind::TlsHaproxy),
                Haproxy => Some(ServerKind::Haproxy),
                Redis => Some(ServerKind::RedisServer),
                Absolute => None,
            };
            let measured = match native {
                Some(native) => report.ratio(t.server, native).map(|r| r.summary),
                None => report.value(t.server).map(|v| v.summary),
            };
            let met = measured.map(|m| match t.figure.better() {
                Better::Higher => m.median >= t.bound,
                Better::Lower => m.median <= t.bound,
            });
            Some(Verdict {
                figure: t.figure,
                server: t.server,
                against: t.against,
                native,
                bound: t.bound,
                measured,
                met,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure_report;
    use crate::servers::ServerKind::{Libevent as LibeventServer, Tokio};

    fn rounds(values: &[f64]) -> Vec<Option<f64>> {
        values.iter().copied().map(Some).collect()
    }

    fn find(verdicts: &[Verdict], figure: Figure, server: ServerKind, against: Against) -> &Verdict {
        verdicts
            .iter()
            .find(|v| v.figure == figure && v.server == server && v.against == against)
            .expect("a verdict for that target")
    }

    /// Rates must reach the bound, costs stay at or under it; ratios are
    /// taken against the best native server or libevent, round by round;
    /// absolute bounds read evconn's own median.
    #[test]
    fn each_target_reads_its_ratio_or_figure_and_the_right_side_of_its_bound() {
        let figures = vec![
            figure_report(
                Figure::RoundTrips,
                vec![
                    (Shared, rounds(&[100.0, 100.0, 100.0])),
                    (Connection, rounds(&[80.0, 90.0, 85.0])),
                    (Tokio, rounds(&[100.0, 100.0, 100.0])),
                    (LibeventServer, rounds(&[90.0, 90.0, 90.0])),
                ],
            ),
            figure_report(
                Figure::IdleMemory,
                vec![
                    (Shared, rounds(&[1.6, 1.6, 1.6])),
                    (Connection, rounds(&[30.0, 31.0, 40.0])),
                    (Tokio, rounds(&[1.0, 1.0, 1.0])),
                    (LibeventServer, rounds(&[1.2, 1.2, 1.2])),
                ],
            ),
        ];
        let verdicts = verdicts(&figures, Suite::Echo);
        // Only the targets of the figures measured.
        assert_eq!(verdicts.len(), 6);

        let shared_vs_native = find(&verdicts, Figure::RoundTrips, Shared, BestNative);
        assert_eq!(shared_vs_native.native, Some(Tokio));
        assert_eq!(shared_vs_native.measured.map(|m| m.median), Some(1.0));
        assert_eq!(shared_vs_native.met, Some(true), "1.00 reaches 0.95");
        let connection_vs_native = find(&verdicts, Figure::RoundTrips, Connection, BestNative);
        assert_eq!(connection_vs_native.met, Some(true), "0.85 reaches 0.85");
        let connection_vs_libevent = find(&verdicts, Figure::RoundTrips, Connection, Libevent);
        assert_eq!(connection_vs_libevent.measured.map(|m| (m.min, m.max)), Some((80.0 / 90.0, 1.0)));
        assert_eq!(connection_vs_libevent.met, Some(true), "median 85/90 = 0.94 reaches 0.90");

        let shared_memory = find(&verdicts, Figure::IdleMemory, Shared, BestNative);
        assert_eq!(shared_memory.native, Some(Tokio), "the native server with less memory");
        assert_eq!(shared_memory.met, Some(false), "a cost of 1.6 is over 1.5");
        let connection_memory = find(&verdicts, Figure::IdleMemory, Connection, Absolute);
        assert_eq!(connection_memory.native, None);
        assert_eq!(connection_memory.measured.map(|m| m.median), Some(31.0));
        assert_eq!(connection_memory.met, Some(true), "31 KiB is under 32");
    }

    /// Without libevent, its targets are there but neither met nor missed.
    #[test]
    fn a_target_against_a_missing_server_has_no_verdict() {
        let figures = vec![figure_report(
            Figure::RoundTrips,
            vec![(Shared, rounds(&[100.0])), (Connection, rounds(&[90.0])), (Tokio, rounds(&[100.0]))],
        )];
        let verdicts = verdicts(&figures, Suite::Echo);
        let against_libevent = find(&verdicts, Figure::RoundTrips, Shared, Libevent);
        assert!(against_libevent.measured.is_none());
        assert_eq!(against_libevent.met, None);
        assert_eq!(find(&verdicts, Figure::RoundTrips, Shared, BestNative).met, Some(true));
    }

    /// The proxy targets read the shared proxy against HAProxy or the best
    /// native proxy; CPU per round trip is a cost, so at most HAProxy's.
    #[test]
    fn the_proxy_targets_hold_the_shared_proxy_against_haproxy_and_the_best_native() {
        use crate::servers::ServerKind::{Haproxy as HaproxyServer, Nginx, ProxyConnection, TokioProxy};
        let figures = vec![
            figure_report(
                Figure::RoundTrips,
                vec![
                    (ProxyShared, rounds(&[52.0, 54.0])),
                    (ProxyConnection, rounds(&[40.0, 40.0])),
                    (HaproxyServer, rounds(&[52.0, 52.0])),
                    (Nginx, rounds(&[60.0, 60.0])),
                    (TokioProxy, rounds(&[50.0, 50.0])),
                ],
            ),
            figure_report(
                Figure::CpuPerRoundTrip,
                vec![
                    (ProxyShared, rounds(&[20.0, 20.0])),
                    (HaproxyServer, rounds(&[18.0, 19.0])),
                    (Nginx, rounds(&[15.0, 15.0])),
                ],
            ),
        ];
        let verdicts = verdicts(&figures, Suite::Proxy);
        assert_eq!(verdicts.len(), 3, "the targets of the two figures measured");
        assert!(verdicts.iter().all(|v| v.server == ProxyShared));

        let rate_vs_haproxy = find(&verdicts, Figure::RoundTrips, ProxyShared, Haproxy);
        assert_eq!(rate_vs_haproxy.native, Some(HaproxyServer));
        assert_eq!(rate_vs_haproxy.met, Some(true), "1.0 and 1.04 reach 1.0");
        let rate_vs_best = find(&verdicts, Figure::RoundTrips, ProxyShared, BestNative);
        assert_eq!(rate_vs_best.native, Some(Nginx));
        assert_eq!(rate_vs_best.met, Some(false), "53/60 = 0.88 is under 0.9");
        let cpu = find(&verdicts, Figure::CpuPerRoundTrip, ProxyShared, Haproxy);
        assert_eq!(cpu.met, Some(false), "20 us is dearer than HAProxy's 18-19");
        assert!(cpu.measured.is_some_and(|m| m.min > 1.0));
    }

    /// Handshakes are held against HAProxy terminating TLS even where the
    /// tokio-rustls echo is faster; bulk against whichever native is best.
    #[test]
    fn the_tls_targets_hold_the_host_against_haproxy_for_handshakes_and_the_best_native_for_bulk() {
        use crate::servers::ServerKind::{TlsHaproxy, TlsTokio};
        let figures = vec![
            figure_report(
                Figure::Handshakes,
                vec![
                    (TlsShared, rounds(&[4600.0, 4400.0, 4500.0])),
                    (TlsHaproxy, rounds(&[5000.0, 5000.0, 5000.0])),
                    (TlsTokio, rounds(&[6000.0, 6000.0, 6000.0])),
                ],
            ),
            figure_report(
                Figure::TlsBulkRate,
                vec![
                    (TlsShared, rounds(&[400.0, 420.0, 410.0])),
                    (TlsHaproxy, rounds(&[300.0, 300.0, 300.0])),
                    (TlsTokio, rounds(&[500.0, 500.0, 500.0])),
                ],
            ),
            figure_report(Figure::CpuPerHandshake, vec![(TlsShared, rounds(&[90.0])), (TlsHaproxy, rounds(&[80.0]))]),
        ];
        let verdicts = verdicts(&figures, Suite::Tls);
        assert_eq!(verdicts.len(), 2, "two targets, none on the CPU figures");

        let handshakes = find(&verdicts, Figure::Handshakes, TlsShared, Haproxy);
        assert_eq!(handshakes.native, Some(TlsHaproxy), "the tls suite's HAProxy, not the proxy suite's");
        assert_eq!(handshakes.measured.map(|m| m.median), Some(0.9));
        assert_eq!(handshakes.met, Some(true), "0.90 reaches 0.90");
        let bulk = find(&verdicts, Figure::TlsBulkRate, TlsShared, BestNative);
        assert_eq!(bulk.native, Some(TlsTokio));
        assert_eq!(bulk.met, Some(false), "410/500 = 0.82 is under 0.9");

        // Before the host terminates TLS its rows fail: no figure, no verdict.
        let natives_only = vec![figure_report(
            Figure::Handshakes,
            vec![(TlsHaproxy, rounds(&[5000.0])), (TlsTokio, rounds(&[6000.0]))],
        )];
        let verdicts = super::verdicts(&natives_only, Suite::Tls);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].measured.is_none() && verdicts[0].met.is_none());
    }
}
