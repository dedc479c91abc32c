//! One instance of the guest component: its store, with memory capped and
//! every callback bounded in time, and the calls the host makes into it.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{ConnectionEvent, Handler, HandlerPre};
use crate::connection::{CloseReason, Connection};
use crate::limits::EPOCH_TICK;
use crate::socket_input::{OnData, SocketInput};
use crate::state::HostState;
use crate::stats::Callback;
use crate::worker::Worker;

/// A live instance of the guest.
pub struct Instance {
    pub(crate) store: Store<HostState>,
    exports: Handler,
    /// Counts the instances a worker made, so a connection can tell whether
    /// the instance that accepted it is still the current one.
    pub(crate) generation: u64,
}

/// How a callback ended.
pub enum Outcome {
    /// It returned normally.
    Returned,
    /// The guest returned `err`: the connection concerned is closed.
    GuestError(String),
    /// The guest trapped (or ran out of time): the instance is unusable.
    Trapped,
}

/// Why a callback was interrupted, as the trap's message.
#[derive(Debug, thiserror::Error)]
#[error("the callback ran longer than --guest-timeout ({0:?})")]
struct Timeout(std::time::Duration);

impl Instance {
    /// Instantiates `pre` for `worker` in a fresh store whose limits come
    /// from the host's.
    pub async fn new(pre: &HandlerPre<HostState>, worker: &Arc<Worker>, generation: u64) -> wasmtime::Result<Self> {
        let timeout = worker.services().limits().guest_timeout;
        let mut store = Store::new(pre.engine(), HostState::new(worker));
        store.limiter(|state| &mut state.store_limits);
        // At an epoch tick a long callback yields to the reactor, so other
        // connections and the accept loop run meanwhile; once it has run for
        // the timeout it traps. A callback the tick finds young runs on: on a
        // busy host most ticks land in callbacks microseconds from their end,
        // and under the shared model a yield holds up every connection of
        // the instance for a turn of the reactor.
        store.epoch_deadline_callback(move |mut store| {
            crate::ticker::guest_ran_at_tick();
            let clock = &mut store.data_mut().call_clock;
            let ran = clock.tick(Instant::now());
            if ran >= timeout {
                return Err(Timeout(timeout).into());
            }
            if ran < YIELD_AFTER {
                return Ok(UpdateDeadline::Continue(1));
            }
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(clock.yield_to_reactor())))
        });
        arm_deadline(&mut store);
        let exports = pre.instantiate_async(&mut store).await?;
        Ok(Instance { store, exports, generation })
    }

    /// Before a callback for connection `conn` (0 for none): gives it its
    /// full time and names its connection in guest output; returns when it
    /// starts.
    ///
    /// Each callback below awaits its export's `call_async` itself, between
    /// this and `end`, rather than through a shared async helper: each async
    /// layer around that large future moves it once more per call (a shared
    /// helper, its closure and the generated binding cost four copies of
    /// some 500 bytes per round trip, about 4% of its instructions).
    fn begin(&mut self, conn: u64) -> Instant {
        let started = arm_deadline(&mut self.store);
        self.store.data().current_connection.store(conn, Ordering::Relaxed);
        started
    }

    /// After a callback that began at `started`: times it, and tells how it
    /// ended; a trap is logged and reported as `Trapped`.
    fn end(&mut self, callback: Callback, started: Instant, result: wasmtime::Result<Result<(), String>>) -> Outcome {
        self.store.data().current_connection.store(0, Ordering::Relaxed);
        self.store.data().stats.callback(callback).observe(started.elapsed());
        match result {
            Ok(Ok(())) => Outcome::Returned,
            Ok(Err(message)) => Outcome::GuestError(message),
            Err(trap) => {
                let state = self.store.data();
                state.stats.traps.inc();
                tracing::error!(component = %state.component, generation = self.generation, reason = %trap.root_cause(), "guest trapped");
                tracing::debug!(error = ?trap, "guest trap in full");
                Outcome::Trapped
            }
        }
    }

    /// Calls `on-accept` with a fresh owned handle to `conn`.
    pub async fn accept(&mut self, listener: &Arc<crate::listener::Listener>, conn: &Arc<Connection>) -> Outcome {
        let started = self.begin(conn.id());
        let state = self.store.data_mut();
        let handles = state.borrow_listener(listener).and_then(|listener| Ok((listener, state.adopt_connection(conn)?)));
        let result = match handles {
            Ok((listener, owned)) => {
                let on_accept = self.exports.evconn_listener_callbacks().func_on_accept();
                on_accept.call_async(&mut self.store, (listener, owned, conn.peer().into())).await.map(|(r,)| r)
            }
            Err(e) => Err(e),
        };
        self.end(Callback::Accept, started, result)
    }

    /// Calls `on-data` for `conn`.
    pub async fn data(&mut self, conn: &Connection, data: &[u8]) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        let on_data = self.exports.evconn_listener_callbacks().func_on_data();
        let result = on_data.call_async(&mut self.store, (borrow, data)).await.map(|(r,)| r);
        self.end(Callback::Data, started, result)
    }

    /// Calls `on-data` for `conn` with up to `limit` of the `waiting` bytes
    /// its socket holds, read straight into the guest's memory.
    pub async fn data_from_socket(&mut self, conn: &Connection, waiting: usize, limit: usize) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        // Checked against the export's type at every call: a few hundred
        // instructions, against the copy of up to 256 KiB this saves.
        let on_data: wasmtime::Result<OnData> = self.exports.evconn_listener_callbacks().func_on_data().func().typed(&self.store);
        let result = match on_data {
            Ok(on_data) => {
                let input = SocketInput::new(conn, waiting, limit);
                on_data.call_async(&mut self.store, (borrow, input)).await.map(|(r,)| r)
            }
            Err(e) => Err(e),
        };
        self.end(Callback::Data, started, result)
    }

    /// Calls `on-event` for `conn`.
    pub async fn event(&mut self, conn: &Connection, event: ConnectionEvent) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        let on_event = self.exports.evconn_listener_callbacks().func_on_event();
        let result = on_event.call_async(&mut self.store, (borrow, event)).await.map(|(r,)| r);
        self.end(Callback::Event, started, result)
    }

    /// Calls `on-accept-error` for a failed `accept()` on `listener`.
    pub async fn accept_error(
        &mut self,
        listener: &Arc<crate::listener::Listener>,
        error: &std::io::Error,
    ) -> Outcome {
        let error = crate::host_api::accept_error(error);
        let started = self.begin(0);
        let result = match self.store.data_mut().borrow_listener(listener) {
            Ok(listener) => {
                let on_accept_error = self.exports.evconn_listener_callbacks().func_on_accept_error();
                on_accept_error.call_async(&mut self.store, (listener, &error)).await.map(|()| Ok(()))
            }
            Err(e) => Err(e),
        };
        self.end(Callback::AcceptError, started, result)
    }

    /// Closes every connection this instance serves; returns how many.
    pub fn close_connections(&self) -> usize {
        let mut closed = 0;
        for conn in self.store.data().connections() {
            conn.close(CloseReason::Trap);
            closed += 1;
        }
        closed
    }
}

/// Gives the next callback (or instantiation) its full time; returns when
/// it starts.
fn arm_deadline(store: &mut Store<HostState>) -> Instant {
    let now = Instant::now();
    store.data_mut().call_clock.start(now);
    store.set_epoch_deadline(1);
    now
}

/// A callback yields at a tick only once it has run this long: half a tick,
/// so that one a tick finds young yields at the next.
const YIELD_AFTER: Duration = Duration::from_nanos(EPOCH_TICK.as_nanos() as u64 / 2);

/// How long the running callback (or instantiation) has run, for
/// `--guest-timeout`: its time since it started, less the turns it waited
/// for after yielding to the reactor at epoch ticks. How long those last
/// depends on the other connections, not on the guest; counted, they would
/// let a busy host trap callbacks that are short.
#[derive(Debug)]
pub(crate) struct CallClock {
    /// Run time is counted up to here: the callback's start or its last tick.
    counted_to: Instant,
    /// Run up to `counted_to`.
    ran: Duration,
    /// When the callback last resumed after a yield, in nanoseconds after
    /// `base`: set by the yield's future, which cannot reach the store.
    resumed: Arc<AtomicU64>,
    base: Instant,
}

impl CallClock {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        CallClock { counted_to: now, ran: Duration::ZERO, resumed: Arc::default(), base: now }
    }

    /// A callback starts at `now`.
    fn start(&mut self, now: Instant) {
        self.counted_to = now;
        self.ran = Duration::ZERO;
    }

    /// At an epoch tick at `now`: how long the callback has run, adding the
    /// time since its start, its last tick or its last resumption, whichever
    /// came last.
    fn tick(&mut self, now: Instant) -> Duration {
        let resumed = self.base + Duration::from_nanos(self.resumed.load(Ordering::Relaxed));
        self.ran += now.saturating_duration_since(resumed.max(self.counted_to));
        self.counted_to = now;
        self.ran
    }

    /// The pause at a tick: tokio's `yield_now`, which unlike a plain
    /// self-wake lets the reactor poll for I/O before this task runs again,
    /// so other connections are served between the guest's ticks; then
    /// notes when the callback runs again.
    fn yield_to_reactor(&self) -> impl Future<Output = ()> + Send + 'static {
        let (resumed, base) = (self.resumed.clone(), self.base);
        async move {
            tokio::task::yield_now().await;
            let nanos = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            resumed.store(nanos, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Ticks that do not yield count each stretch of running once; the turn
    /// waited for after a yield does not count.
    #[test]
    fn the_call_clock_counts_running_time_once() {
        let mut clock = CallClock::new();
        let start = clock.base + 100 * MS;
        clock.start(start);
        assert_eq!(clock.tick(start + 3 * MS), 3 * MS);
        assert_eq!(clock.tick(start + 13 * MS), 13 * MS, "the first 3 ms are not counted again");
        // Yielded at 13 ms, resumed at 40 ms: the 27 ms between do not count.
        clock.resumed.store((140 * MS).as_nanos() as u64, Ordering::Relaxed);
        assert_eq!(clock.tick(start + 50 * MS), 23 * MS);
        // The next callback starts from nothing.
        clock.start(start + 60 * MS);
        assert_eq!(clock.tick(start + 61 * MS), MS);
    }
}
