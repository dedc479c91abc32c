//! The `bench` command line and the plan it turns into.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::figures::Test;
use crate::servers::Suite;

/// Where scripts/bench puts what it builds, relative to the workspace root.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs evconn's host (echo guest, both isolation models), a native tokio
/// echo server, libevent's echo example and an echo guest that owns its
/// socket (run by the wasmtime CLI) side by side on loopback, and writes a
/// markdown table, an SVG chart and JSON to --out.
///
/// Every measurement starts its server afresh on a free port, pinned to one
/// CPU with the load on another (when there are two), and stops it after.
/// The start test times the starts themselves: spawn to first echo, for the
/// host with an empty code cache, a warm one and a precompiled file. The
/// floor test runs the echo guest on wasmtime alone (`wasmtime-floor`), to
/// show what any wasmtime host must pay. The curve test runs ping-pong at
/// 1, 10, 50, 100 and 200 connections on evconn, the guest-socket server
/// and the native tokio echo.
/// With --suite proxy, the servers are proxies instead, all in front of one
/// native echo backend pinned to the load's CPU: evconn's host with the
/// proxy guest (both isolation models), HAProxy (`mode tcp`, one thread),
/// nginx's stream module (one worker) and a native tokio proxy; no start,
/// curve or floor.
/// With --suite kv, the servers are key-value servers under Debian's
/// redis-benchmark (50 clients; SET, GET and INCR, one request at a time
/// and 16 pipelined): evconn's host with the kv guest, its data in the
/// host's in-memory store (both isolation models), and redis-server.
/// With --suite tls, the servers terminate TLS (TLS 1.3, AES-128-GCM,
/// X25519, a P-256 certificate made for the run): evconn's host with the
/// echo guest on the shared model, HAProxy (one thread) relaying to the
/// native echo, and a native tokio-rustls echo; full handshakes per second
/// and bulk over TLS.
/// Rounds rotate the order of the servers. Exits non-zero when a server
/// fails to start or a figure is missing, except libevent when
/// --libevent-missing says why it could not be built, and the guest-socket
/// server when --guest-socket-missing says why it is not there.
#[derive(Debug, Parser)]
#[command(name = "bench")]
pub struct Args {
    /// The servers to compare: echo servers, or proxies relaying to an echo.
    #[arg(long, value_enum, default_value_t = Suite::Echo)]
    pub suite: Suite,

    /// Rounds of every measurement on every server.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,

    /// Length of each timed measurement window, in seconds (after a warm-up
    /// of a sixth of it, at most 1 s).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,

    /// A quick check that everything works: 1 round, 0.3 s windows, 200 idle
    /// connections, one start of each kind. Every server and every figure,
    /// in well under a minute; its figures say nothing about speed.
    #[arg(long)]
    pub smoke: bool,

    /// Run only this test; repeat for several. Default: all of them.
    #[arg(long, value_enum, value_name = "TEST")]
    pub only: Vec<Test>,

    /// Starts of each kind per server and round for the start figures; a
    /// round's figure is their median.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub starts: u32,

    /// The numbers of connections the curve test runs ping-pong at.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = [1, 10, 50, 100, 200],
        value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub curve_connections: Vec<u32>,

    /// Idle connections held open for the memory figure: default 10000, or
    /// 4000 in the proxy suite, where each costs the proxy two descriptors
    /// and the backend one. Clamped to what RLIMIT_NOFILE allows once
    /// raised to its hard limit.
    #[arg(long)]
    pub idle_connections: Option<usize>,

    /// Where to write report.md, chart.svg and results.json.
    /// Default: target/bench-results/<UTC time>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// evconn's host binary.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/host"))]
    pub host: PathBuf,

    /// The echo guest component.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/guest/echo.wasm"))]
    pub echo_wasm: PathBuf,

    /// The native tokio echo server (this crate's `native-echo`).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/native-echo"))]
    pub native_echo: PathBuf,

    /// The echo guest on wasmtime alone (this crate's `wasmtime-floor`).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/wasmtime-floor"))]
    pub wasmtime_floor: PathBuf,

    /// libevent's echo example, built from bench/libevent/echo.c.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench/libevent-echo"))]
    pub libevent_echo: PathBuf,

    /// Why libevent's echo server could not be built: it is then reported
    /// as missing, with this reason, instead of failing the run.
    #[arg(long, value_name = "REASON")]
    pub libevent_missing: Option<String>,

    /// The wasmtime CLI, at the host's wasmtime version, that runs the echo
    /// guest owning its socket (`scripts/setup bench` installs it here).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench/wasmtime-cli/bin/wasmtime"))]
    pub wasmtime: PathBuf,

    /// The echo guest that owns its socket (bench/socket-echo).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/guest/socket-echo.wasm"))]
    pub socket_echo_wasm: PathBuf,

    /// Why the guest-socket server cannot run (the wasmtime CLI is not
    /// installed, say): it is then reported as missing, with this reason,
    /// instead of failing the run.
    #[arg(long, value_name = "REASON")]
    pub guest_socket_missing: Option<String>,

    /// The proxy guest component (examples/proxy).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/guest/proxy.wasm"))]
    pub proxy_wasm: PathBuf,

    /// The native tokio proxy (this crate's `native-proxy`).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/native-proxy"))]
    pub native_proxy: PathBuf,

    /// HAProxy (Debian's `haproxy`).
    #[arg(long, value_name = "FILE", default_value = "/usr/sbin/haproxy")]
    pub haproxy: PathBuf,

    /// Why HAProxy cannot run: it is then reported as missing.
    #[arg(long, value_name = "REASON")]
    pub haproxy_missing: Option<String>,

    /// nginx (Debian's `nginx-light`).
    #[arg(long, value_name = "FILE", default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,

    /// Why nginx cannot run: it is then reported as missing.
    #[arg(long, value_name = "REASON")]
    pub nginx_missing: Option<String>,

    /// The kv guest component (examples/kv).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/guest/kv.wasm"))]
    pub kv_wasm: PathBuf,

    /// redis-server (Debian's `redis-server`).
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/redis-server")]
    pub redis_server: PathBuf,

    /// Why redis-server cannot run: it is then reported as missing.
    #[arg(long, value_name = "REASON")]
    pub redis_server_missing: Option<String>,

    /// The kv suite's load generator (Debian's `redis-benchmark`).
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/redis-benchmark")]
    pub redis_benchmark: PathBuf,

    /// The native tokio-rustls echo (this crate's `native-tls-echo`).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/native-tls-echo"))]
    pub native_tls_echo: PathBuf,

    /// nginx's stream module (Debian's `libnginx-mod-stream`).
    #[arg(long, value_name = "FILE", default_value = crate::proxies::NGINX_STREAM_MODULE)]
    pub nginx_stream_module: PathBuf,
}

/// How long and how much each measurement runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub suite: Suite,
    pub rounds: u32,
    /// The tests to run, in the order of `Test::ALL`.
    pub tests: Vec<Test>,
    /// Starts of each kind per server and round (the start figures).
    pub starts: u32,
    /// Load runs this long before the window opens, so that connections,
    /// caches and the server's buffers are warm.
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// The timed window each rate and CPU figure comes from.
    #[serde(serialize_with = "seconds")]
    pub window: Duration,
    pub pingpong_connections: usize,
    /// The numbers of ping-pong connections the curve test runs at.
    pub curve_connections: Vec<usize>,
    pub message_bytes: usize,
    pub bulk_connections: usize,
    pub bulk_write_bytes: usize,
    /// Connections opening and closing at once in the connect-rate test:
    /// enough to keep the server busy while a connect waits.
    pub connect_concurrency: usize,
    /// Bound on connections per connect-rate run, whatever the time.
    pub connect_cap: u64,
    /// Bound on latency samples kept per run.
    pub latency_cap: usize,
    pub idle_connections: usize,
    pub smoke: bool,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Args {
    /// The plan the flags ask for.
    pub fn plan(&self) -> Result<Plan, String> {
        if !(self.seconds > 0.0 && self.seconds <= 600.0) {
            return Err(format!("--seconds {} is outside (0, 600]", self.seconds));
        }
        let idle = self.idle_connections.unwrap_or(match self.suite {
            Suite::Echo => 10_000,
            Suite::Proxy => 4_000,
            Suite::Kv | Suite::Tls => 0,
        });
        let (rounds, window, idle, starts) = if self.smoke {
            (1, Duration::from_millis(300), idle.min(200), 1)
        } else {
            (self.rounds, Duration::from_secs_f64(self.seconds), idle, self.starts)
        };
        let asked = |t: &Test| self.only.is_empty() || self.only.contains(t);
        Ok(Plan {
            suite: self.suite,
            rounds,
            tests: Test::ALL.into_iter().filter(|t| self.suite.runs(*t) && asked(t)).collect(),
            starts,
            warmup: (window / 6).min(Duration::from_secs(1)),
            window,
            pingpong_connections: 50,
            curve_connections: self.curve_connections.iter().map(|&n| n as usize).collect(),
            message_bytes: 64,
            bulk_connections: 10,
            bulk_write_bytes: 16 << 10,
            connect_concurrency: 8,
            connect_cap: 500_000,
            latency_cap: 2_000_000,
            idle_connections: idle,
            smoke: self.smoke,
        })
    }

    /// The results folder: --out, or a fresh one named after the time.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let root = std::fs::canonicalize(ROOT).unwrap_or_else(|_| PathBuf::from(ROOT));
            let stamp = crate::clock::utc_stamp();
            let name = match self.suite {
                Suite::Echo => stamp,
                suite => format!("{stamp}-{}", suite.name()),
            };
            root.join("target/bench-results").join(name)
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The plan of a full run with no flags, for other modules' tests.
    pub fn plan() -> Plan {
        Args::parse_from(["bench"]).plan().expect("the default flags make a plan")
    }

    #[test]
    fn the_curve_runs_at_one_to_two_hundred_connections() {
        assert_eq!(plan().curve_connections, vec![1, 10, 50, 100, 200]);
        let args = Args::parse_from(["bench", "--curve-connections", "120,127"]);
        assert_eq!(args.plan().unwrap().curve_connections, vec![120, 127]);
    }

    #[test]
    fn the_proxy_suite_holds_fewer_idle_connections_and_has_no_start_curve_or_floor() {
        let proxy = Args::parse_from(["bench", "--suite", "proxy"]).plan().unwrap();
        assert_eq!(proxy.idle_connections, 4_000);
        assert_eq!(proxy.tests, [Test::PingPong, Test::Latency, Test::Bulk, Test::Connect, Test::Idle]);
        assert_eq!(plan().idle_connections, 10_000);
        assert_eq!(plan().tests, Test::ALL[..8]);
        let asked = Args::parse_from(["bench", "--suite", "proxy", "--idle-connections", "50"]);
        assert_eq!(asked.plan().unwrap().idle_connections, 50);
    }

    #[test]
    fn the_tls_suite_runs_handshakes_and_bulk_over_tls_alone() {
        let tls = Args::parse_from(["bench", "--suite", "tls"]);
        assert_eq!(tls.plan().unwrap().tests, [Test::Handshake, Test::TlsBulk]);
        assert!(tls.out_dir().to_string_lossy().ends_with("-tls"));
        for suite in ["echo", "proxy", "kv"] {
            let tests = Args::parse_from(["bench", "--suite", suite]).plan().unwrap().tests;
            assert!(!tests.contains(&Test::Handshake) && !tests.contains(&Test::TlsBulk), "{suite}: {tests:?}");
        }
    }

    #[test]
    fn the_kv_suite_runs_redis_benchmark_alone() {
        let kv = Args::parse_from(["bench", "--suite", "kv"]).plan().unwrap();
        assert_eq!(kv.tests, [Test::Redis]);
        assert!(Args::parse_from(["bench", "--suite", "kv"]).out_dir().to_string_lossy().ends_with("-kv"));
    }
}
