//! The descriptor limit: raised to the hard limit at start (the soft one is
//! often 1024, far below `--max-connections`), with a warning when even the
//! hard limit cannot hold every connection allowed.
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the host needs besides its connections: listeners, the
/// reactors' epoll and event descriptors, logs, the compiled-code cache.
const RESERVED: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns if
/// `max_connections` connections would not fit under it.
pub fn raise_for(max_connections: usize) {
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is no limit.
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        // Raising the soft limit up to the hard one needs no privilege.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            tracing::debug!(from = ?limit.current, to = ?raised.current, "raised the descriptor limit");
            limit = raised;
        }
    }
    let needed = max_connections as u64 + RESERVED;
    if let Some(current) = limit.current
        && current < needed
    {
        tracing::warn!(
            limit = current,
            max_connections,
            "the descriptor limit holds fewer connections than --max-connections: accept will fail with EMFILE \
             first (raise it, e.g. LimitNOFILE= in systemd or ulimit -n, or lower --max-connections)"
        );
    }
}
