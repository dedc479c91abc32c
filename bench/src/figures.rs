//! The figures the report gives, the test each comes from, and which way is
//! better.
use serde::Serialize;

/// One kind of load; each run of it on a fresh server yields its figures.
/// `Start` times the starts themselves; `Curve` is ping-pong again at
/// several numbers of connections; `Floor` runs no server, but the echo
/// guest on wasmtime alone (`floor`). `Redis` is the kv suite's: Debian's
/// `redis-benchmark` against a RESP server (`load/redis.rs`). `Handshake`
/// and `TlsBulk` are the tls suite's: full TLS handshakes, and bulk over
/// TLS (`load/handshake.rs`, `load/bulk.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    Start,
    PingPong,
    Latency,
    Bulk,
    Connect,
    Idle,
    Curve,
    Floor,
    Redis,
    Handshake,
    TlsBulk,
}

impl Test {
    pub const ALL: [Test; 11] = [
        Test::Start,
        Test::PingPong,
        Test::Latency,
        Test::Bulk,
        Test::Connect,
        Test::Idle,
        Test::Curve,
        Test::Floor,
        Test::Redis,
        Test::Handshake,
        Test::TlsBulk,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Test::Start => "start",
            Test::PingPong => "ping-pong",
            Test::Latency => "latency",
            Test::Bulk => "bulk",
            Test::Connect => "connect",
            Test::Idle => "idle",
            Test::Curve => "curve",
            Test::Floor => "floor",
            Test::Redis => "redis-benchmark",
            Test::Handshake => "handshake",
            Test::TlsBulk => "tls-bulk",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Figure {
    RoundTrips,
    CpuPerRoundTrip,
    LatencyP50,
    LatencyP99,
    BulkRate,
    CpuPerMegabyte,
    ConnectRate,
    CpuPerConnection,
    IdleMemory,
    StartMemory,
    ColdStart,
    WarmStart,
    PrecompiledStart,
    /// The kv suite: redis-benchmark's requests/s and the server's CPU per
    /// request, for SET, GET and INCR, one request at a time per client
    /// and 16 in a pipeline.
    Set,
    SetCpu,
    Get,
    GetCpu,
    Incr,
    IncrCpu,
    SetPipelined,
    SetPipelinedCpu,
    GetPipelined,
    GetPipelinedCpu,
    IncrPipelined,
    IncrPipelinedCpu,
    /// The tls suite: full TLS 1.3 handshakes (each with one exchange) per
    /// second and the server's CPU per handshake; bulk over TLS and the
    /// server's CPU per megabyte.
    Handshakes,
    CpuPerHandshake,
    TlsBulkRate,
    TlsCpuPerMegabyte,
}

/// By key, which carries the unit: `round-trips-per-s`.
impl Serialize for Figure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl Figure {
    pub const ALL: [Figure; 29] = [
        Figure::RoundTrips,
        Figure::CpuPerRoundTrip,
        Figure::LatencyP50,
        Figure::LatencyP99,
        Figure::BulkRate,
        Figure::CpuPerMegabyte,
        Figure::ConnectRate,
        Figure::CpuPerConnection,
        Figure::IdleMemory,
        Figure::StartMemory,
        Figure::ColdStart,
        Figure::WarmStart,
        Figure::PrecompiledStart,
        Figure::Set,
        Figure::SetCpu,
        Figure::Get,
        Figure::GetCpu,
        Figure::Incr,
        Figure::IncrCpu,
        Figure::SetPipelined,
        Figure::SetPipelinedCpu,
        Figure::GetPipelined,
        Figure::GetPipelinedCpu,
        Figure::IncrPipelined,
        Figure::IncrPipelinedCpu,
        Figure::Handshakes,
        Figure::CpuPerHandshake,
        Figure::TlsBulkRate,
        Figure::TlsCpuPerMegabyte,
    ];

    /// The kv suite's figures: for each redis-benchmark run (command and
    /// pipeline depth), its rate and its CPU figure.
    pub const REDIS: [(&'static str, usize, Figure, Figure); 6] = [
        ("set", 1, Figure::Set, Figure::SetCpu),
        ("get", 1, Figure::Get, Figure::GetCpu),
        ("incr", 1, Figure::Incr, Figure::IncrCpu),
        ("set", 16, Figure::SetPipelined, Figure::SetPipelinedCpu),
        ("get", 16, Figure::GetPipelined, Figure::GetPipelinedCpu),
        ("incr", 16, Figure::IncrPipelined, Figure::IncrPipelinedCpu),
    ];

    pub fn key(self) -> &'static str {
        match self {
            Figure::RoundTrips => "round-trips-per-s",
            Figure::CpuPerRoundTrip => "server-cpu-us-per-round-trip",
            Figure::LatencyP50 => "latency-p50-us",
            Figure::LatencyP99 => "latency-p99-us",
            Figure::BulkRate => "bulk-mb-per-s",
            Figure::CpuPerMegabyte => "server-cpu-ms-per-mb",
            Figure::ConnectRate => "connections-per-s",
            Figure::CpuPerConnection => "server-cpu-us-per-connection",
            Figure::IdleMemory => "rss-kib-per-idle-connection",
            Figure::StartMemory => "rss-mib-at-start",
            Figure::ColdStart => "start-cold-cache-ms",
            Figure::WarmStart => "start-warm-cache-ms",
            Figure::PrecompiledStart => "start-precompiled-ms",
            Figure::Set => "set-requests-per-s",
            Figure::SetCpu => "set-server-cpu-us-per-request",
            Figure::Get => "get-requests-per-s",
            Figure::GetCpu => "get-server-cpu-us-per-request",
            Figure::Incr => "incr-requests-per-s",
            Figure::IncrCpu => "incr-server-cpu-us-per-request",
            Figure::SetPipelined => "set-p16-requests-per-s",
            Figure::SetPipelinedCpu => "set-p16-server-cpu-us-per-request",
            Figure::GetPipelined => "get-p16-requests-per-s",
            Figure::GetPipelinedCpu => "get-p16-server-cpu-us-per-request",
            Figure::IncrPipelined => "incr-p16-requests-per-s",
            Figure::IncrPipelinedCpu => "incr-p16-server-cpu-us-per-request",
            Figure::Handshakes => "tls-handshakes-per-s",
            Figure::CpuPerHandshake => "server-cpu-us-per-tls-handshake",
            Figure::TlsBulkRate => "tls-bulk-mb-per-s",
            Figure::TlsCpuPerMegabyte => "tls-server-cpu-ms-per-mb",
        }
    }

    /// What the row says, without the unit.
    pub fn title(self) -> &'static str {
        match self {
            Figure::RoundTrips => "ping-pong, 50 conns x 64 B: round trips/s",
            Figure::CpuPerRoundTrip => "ping-pong: server CPU per round trip",
            Figure::LatencyP50 => "latency, 1 conn x 64 B: p50",
            Figure::LatencyP99 => "latency, 1 conn x 64 B: p99",
            Figure::BulkRate => "bulk, 10 conns x 16 KiB writes: MB/s",
            Figure::CpuPerMegabyte => "bulk: server CPU per MB",
            Figure::ConnectRate => "connect, exchange, close: connections/s",
            Figure::CpuPerConnection => "connect: server CPU per connection",
            Figure::IdleMemory => "idle connections: server RSS per connection",
            Figure::StartMemory => "server RSS at start",
            Figure::ColdStart => "start to first echo, empty cache (compiles)",
            Figure::WarmStart => "start to first echo, warm cache",
            Figure::PrecompiledStart => "start to first echo, precompiled .cwasm",
            Figure::Set => "SET, 50 clients: requests/s",
            Figure::SetCpu => "SET: server CPU per request",
            Figure::Get => "GET, 50 clients: requests/s",
            Figure::GetCpu => "GET: server CPU per request",
            Figure::Incr => "INCR, 50 clients: requests/s",
            Figure::IncrCpu => "INCR: server CPU per request",
            Figure::SetPipelined => "SET, 50 clients x 16 pipelined: requests/s",
            Figure::SetPipelinedCpu => "SET x 16: server CPU per request",
            Figure::GetPipelined => "GET, 50 clients x 16 pipelined: requests/s",
            Figure::GetPipelinedCpu => "GET x 16: server CPU per request",
            Figure::IncrPipelined => "INCR, 50 clients x 16 pipelined: requests/s",
            Figure::IncrPipelinedCpu => "INCR x 16: server CPU per request",
            Figure::Handshakes => "TLS 1.3 full handshake, exchange, close: handshakes/s",
            Figure::CpuPerHandshake => "TLS handshake: server CPU per handshake",
            Figure::TlsBulkRate => "bulk over TLS, 10 conns x 16 KiB writes: MB/s",
            Figure::TlsCpuPerMegabyte => "bulk over TLS: server CPU per MB",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Figure::RoundTrips => "1/s",
            Figure::CpuPerRoundTrip | Figure::LatencyP50 | Figure::LatencyP99 | Figure::CpuPerConnection => "us",
            Figure::BulkRate => "MB/s",
            Figure::CpuPerMegabyte => "ms",
            Figure::ConnectRate => "1/s",
            Figure::IdleMemory => "KiB",
            Figure::StartMemory => "MiB",
            Figure::ColdStart | Figure::WarmStart | Figure::PrecompiledStart => "ms",
            Figure::Set | Figure::Get | Figure::Incr => "1/s",
            Figure::SetPipelined | Figure::GetPipelined | Figure::IncrPipelined => "1/s",
            Figure::SetCpu | Figure::GetCpu | Figure::IncrCpu => "us",
            Figure::SetPipelinedCpu | Figure::GetPipelinedCpu | Figure::IncrPipelinedCpu => "us",
            Figure::Handshakes => "1/s",
            Figure::CpuPerHandshake => "us",
            Figure::TlsBulkRate => "MB/s",
            Figure::TlsCpuPerMegabyte => "ms",
        }
    }

    /// The test that yields this figure.
    pub fn test(self) -> Test {
        match self {
            Figure::RoundTrips | Figure::CpuPerRoundTrip => Test::PingPong,
            Figure::LatencyP50 | Figure::LatencyP99 => Test::Latency,
            Figure::BulkRate | Figure::CpuPerMegabyte => Test::Bulk,
            Figure::ConnectRate | Figure::CpuPerConnection => Test::Connect,
            Figure::IdleMemory | Figure::StartMemory => Test::Idle,
            Figure::ColdStart | Figure::WarmStart | Figure::PrecompiledStart => Test::Start,
            Figure::Handshakes | Figure::CpuPerHandshake => Test::Handshake,
            Figure::TlsBulkRate | Figure::TlsCpuPerMegabyte => Test::TlsBulk,
            _ => Test::Redis,
        }
    }

    /// The value evconn is meant to stay under, in the figure's unit. The
    /// project's target for the start: "start with warm cache, echo guest:
    /// under 50 ms".
    pub fn target(self) -> Option<f64> {
        match self {
            Figure::WarmStart => Some(50.0),
            _ => None,
        }
    }

    pub fn better(self) -> Better {
        match self {
            Figure::RoundTrips | Figure::BulkRate | Figure::ConnectRate => Better::Higher,
            Figure::Set | Figure::Get | Figure::Incr => Better::Higher,
            Figure::SetPipelined | Figure::GetPipelined | Figure::IncrPipelined => Better::Higher,
            Figure::Handshakes | Figure::TlsBulkRate => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// Whether `a` is better than `b` for this figure.
    pub fn beats(self, a: f64, b: f64) -> bool {
        match self.better() {
            Better::Higher => a > b,
            Better::Lower => a < b,
        }
    }
}
