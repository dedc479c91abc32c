//! The descriptor limit: raised to the hard limit at start (the soft one is
//! often 1024, far below `--max-connections`), with a warning when even the
//! hard limit cannot hold every connection allowed.

/// Descriptors the host needs besides its connections: listeners, the
/// reactors' epoll and event descriptors, logs, the compiled-code cache.
const RESERVED: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns if
/// `max_connections` connections would not fit under it.
pub fn raise_for(max_connections: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit; raising the soft limit up to
        // the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(from = limit.rlim_cur, to = raised.rlim_cur, "raised the descriptor limit");
            limit = raised;
        }
    }
    let needed = max_connections as u64 + RESERVED;
    if limit.rlim_cur < needed {
        tracing::warn!(
            limit = limit.rlim_cur,
            max_connections,
            "the descriptor limit holds fewer connections than --max-connections: accept will fail with EMFILE \
             first (raise it, e.g. LimitNOFILE= in systemd or ulimit -n, or lower --max-connections)"
        );
    }
}
