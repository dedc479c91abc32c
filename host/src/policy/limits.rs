//! What one guest and one peer may use: callback time, instance memory,
//! timers, connections (accepted and outbound), output the host holds,
//! idle time, the in-memory store, and TLS handshakes.
use std::time::Duration;

/// The limits a host enforces, all checked before the first accept.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The longest one callback may run before it is interrupted (a trap),
    /// not counting the turns it waits for after yielding to the reactor.
    pub guest_timeout: Duration,
    /// The most linear memory one instance may grow to, in bytes.
    pub guest_memory: usize,
    /// The most timers one instance may have at once.
    pub max_timers: usize,
    /// The most connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// The most outbound connections open at once across the host.
    pub max_outbound: usize,
    /// The most outbound connections one instance may have open at once.
    pub max_outbound_per_instance: usize,
    /// How long an outbound connection may take to resolve and connect.
    pub connect_timeout: Duration,
    /// Output queued for one connection at which the host stops reading
    /// from it, until the peer has taken half of it (bufferevent's
    /// high and low watermarks).
    pub write_buffer: usize,
    /// The most output the host holds for one connection: a write past it
    /// is refused (`would-block`).
    pub output_cap: usize,
    /// The most output the host holds for all connections together: a
    /// write past it is refused too.
    pub output_memory: usize,
    /// How long a connection may pass no bytes either way before it is
    /// closed (after an `on-event(timeout)`); `None` for no limit.
    pub idle_timeout: Option<Duration>,
    /// The most keys the in-memory store holds, across buckets.
    pub keyvalue_keys: usize,
    /// The most bytes of keys and values (and a little per key) the
    /// in-memory store holds.
    pub keyvalue_memory: usize,
    /// How long a TLS client may take to finish its handshake; past it the
    /// connection is closed before the guest sees it.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            guest_timeout: Duration::from_secs(1),
            guest_memory: 64 << 20,
            max_timers: 1024,
            max_connections: 10_000,
            max_outbound: 10_000,
            max_outbound_per_instance: 10_000,
            connect_timeout: Duration::from_secs(10),
            write_buffer: 1 << 20,
            output_cap: 4 << 20,
            output_memory: 1 << 30,
            idle_timeout: Some(Duration::from_secs(300)),
            keyvalue_keys: 1_000_000,
            keyvalue_memory: 256 << 20,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}
