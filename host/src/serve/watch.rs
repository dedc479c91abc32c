//! What a host tells a watcher about its connections, by peer address: that
//! the guest has run `on-accept` for one, and that the host has finished
//! with one. The test kit waits on it so that a script's `open` returns
//! once the handler knows the connection, and its `close` once the host
//! has let go of it; a serving host has no watcher.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::base::sync::lock;

/// Connections the guest has accepted and the host has finished with.
#[derive(Debug, Default)]
pub struct ConnectionWatch {
    state: Mutex<Seen>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Seen {
    /// Peers whose connection's `on-accept` has returned (or which could
    /// not be served) and that are still open.
    accepted: HashSet<SocketAddr>,
    /// Peers whose connection the host has finished with. A port the
    /// client reuses leaves this set when accepted again.
    closed: HashSet<SocketAddr>,
}

/// How a wait for a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The guest has accepted it.
    Accepted,
    /// The host has finished with it (perhaps without accepting it).
    Closed,
    /// Neither, within the time given.
    Pending,
}

impl ConnectionWatch {
    /// The guest has run `on-accept` for `peer`'s connection (or the host
    /// could not hand it to the guest).
    pub(crate) fn accepted(&self, peer: SocketAddr) {
        let mut seen = lock(&self.state);
        seen.closed.remove(&peer);
        seen.accepted.insert(peer);
        self.changed.notify_all();
    }

    /// The host has finished with `peer`'s connection: its socket is closed
    /// and no callback for it will run.
    pub(crate) fn closed(&self, peer: SocketAddr) {
        let mut seen = lock(&self.state);
        seen.accepted.remove(&peer);
        seen.closed.insert(peer);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for `peer`'s connection to be accepted or
    /// finished with.
    pub fn wait_served(&self, peer: SocketAddr, timeout: Duration) -> Served {
        self.wait(timeout, |seen| {
            if seen.accepted.contains(&peer) {
                Some(Served::Accepted)
            } else if seen.closed.contains(&peer) {
                Some(Served::Closed)
            } else {
                None
            }
        })
    }

    /// Waits up to `timeout` for the host to finish with `peer`'s
    /// connection; whether it has.
    pub fn wait_closed(&self, peer: SocketAddr, timeout: Duration) -> bool {
        self.wait(timeout, |seen| seen.closed.contains(&peer).then_some(Served::Closed)) == Served::Closed
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&Seen) -> Option<Served>) -> Served {
        let deadline = Instant::now() + timeout;
        let mut seen = lock(&self.state);
        loop {
            if let Some(outcome) = done(&seen) {
                return outcome;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Served::Pending;
            }
            seen = match self.changed.wait_timeout(seen, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}
