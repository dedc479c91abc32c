//! One instance of the guest component: its store, with memory capped and
//! every callback bounded in time, and the calls the host makes into it.
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};

use super::bindings::{ConnectionEvent, Handler, SocketAddress};
use super::call_clock::YIELD_AFTER;
use super::component::Compiled;
use super::context::InstanceContext;
use super::imports::dial_error_code;
use super::imports::{accept_error, error_code};
use super::socket_input::{OnData, SocketInput};
use super::state::HostState;
use super::timers::{TimerId, Timers};
use crate::net::{Connection, DialError, Listener};
use crate::telemetry::{Callback, CloseReason};

/// A live instance of the guest.
pub struct Instance {
    store: Store<HostState>,
    exports: Handler,
    /// Counts the instances a worker made, so a connection can tell whether
    /// the instance that accepted it is still the current one.
    generation: u64,
    /// The guest imports `write-input`: `on-data`'s bytes are kept for it.
    keeps_input: bool,
}

/// What `on-event` tells the guest of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// An outbound connection connected.
    Connected,
    /// An outbound connection could not connect.
    NotConnected(&'a DialError),
    /// The peer sent end-of-stream.
    EndOfStream,
    /// Reading or writing failed.
    Failed(&'a io::Error),
    /// No bytes moved for `--idle-timeout`; the host closes the connection
    /// after the callback.
    Timeout,
}

impl From<Event<'_>> for ConnectionEvent {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Connected => ConnectionEvent::Connected,
            Event::NotConnected(error) => ConnectionEvent::Error(dial_error_code(error)),
            Event::EndOfStream => ConnectionEvent::EndOfStream,
            Event::Failed(error) => ConnectionEvent::Error(error_code(error)),
            Event::Timeout => ConnectionEvent::Timeout,
        }
    }
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
    /// Instantiates `compiled` in a fresh store that may touch what
    /// `context` holds, with the limits of its policy; `generation` numbers
    /// it among its worker's instances.
    pub async fn new(compiled: &Compiled, context: &InstanceContext, generation: u64) -> wasmtime::Result<Self> {
        let timeout = context.policy.limits.guest_timeout;
        let pre = &compiled.pre;
        let mut store = Store::new(pre.engine(), HostState::new(context, generation));
        store.limiter(|state| &mut state.memory);
        // At an epoch tick a long callback yields to the reactor, so other
        // connections and the accept loop run meanwhile; once it has run for
        // the timeout it traps. A callback the tick finds young runs on: on a
        // busy host most ticks land in callbacks microseconds from their end,
        // and under the shared model a yield holds up every connection of
        // the instance for a turn of the reactor.
        store.epoch_deadline_callback(move |mut store| {
            super::ticker::guest_ran_at_tick();
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
        Ok(Instance { store, exports, generation, keeps_input: compiled.keeps_input })
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
        self.store.data_mut().memory.watch();
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
                state.stats.counts.traps.inc();
                let reason = trap.root_cause();
                tracing::error!(component = %state.component, generation = self.generation, %reason, "guest trapped");
                tracing::debug!(error = ?trap, "guest trap in full");
                if state.memory.reached_cap() {
                    // What a trap after a refused growth most likely is:
                    // Python's MemoryError, JavaScript's "cabi_realloc
                    // Unable to realloc", a Rust guest's allocation abort.
                    tracing::error!(
                        component = %state.component,
                        generation = self.generation,
                        memory = state.memory.held(),
                        guest_memory = state.memory.cap(),
                        "the guest had run out of memory: its memory had reached --guest-memory. \
                         Python and JavaScript guests keep every byte they pass to `write` (pass on \
                         received bytes with `write-input`), and a JavaScript instance collects its \
                         garbage late (one that lives long needs about 80 MiB): see \
                         docs/guest-guide.md, Limitations"
                    );
                }
                Outcome::Trapped
            }
        }
    }

    /// Calls `on-accept` with a fresh owned handle to `conn`.
    pub async fn accept(&mut self, listener: &Arc<Listener>, conn: &Arc<Connection>) -> Outcome {
        let started = self.begin(conn.id());
        let state = self.store.data_mut();
        let handles =
            state.borrow_listener(listener).and_then(|listener| Ok((listener, state.adopt_connection(conn)?)));
        let result = match handles {
            Ok((listener, owned)) => {
                let on_accept = self.exports.evconn_listener_callbacks().func_on_accept();
                let peer = SocketAddress::from(conn.peer().clone());
                on_accept.call_async(&mut self.store, (listener, owned, &peer)).await.map(|(r,)| r)
            }
            Err(e) => Err(e),
        };
        self.end(Callback::Accept, started, result)
    }

    /// Calls `on-data` for `conn`; a guest that imports `write-input` may
    /// write `data` on with it while the call runs.
    pub async fn data(&mut self, conn: &Connection, data: &[u8]) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        if self.keeps_input {
            self.store.data_mut().input = Some(data.to_vec());
        }
        let on_data = self.exports.evconn_listener_callbacks().func_on_data();
        let result = on_data.call_async(&mut self.store, (borrow, data)).await.map(|(r,)| r);
        self.store.data_mut().input = None;
        self.end(Callback::Data, started, result)
    }

    /// Whether `on-data`'s bytes are kept for `write-input` during the call
    /// (the guest imports it): then they cannot go straight from the socket
    /// into the guest (`data_from_socket`), and go through `data`.
    pub fn keeps_input(&self) -> bool {
        self.keeps_input
    }

    /// Calls `on-data` for `conn` with up to `limit` of the `waiting` bytes
    /// its socket holds, read straight into the guest's memory. Not for a
    /// guest that [`keeps_input`](Self::keeps_input).
    pub async fn data_from_socket(&mut self, conn: &Connection, waiting: usize, limit: usize) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        // Checked against the export's type at every call: a few hundred
        // instructions, against the copy of up to 256 KiB this saves.
        let on_data: wasmtime::Result<OnData> =
            self.exports.evconn_listener_callbacks().func_on_data().func().typed(&self.store);
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
    pub async fn event(&mut self, conn: &Connection, event: Event<'_>) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        let on_event = self.exports.evconn_listener_callbacks().func_on_event();
        let result = on_event.call_async(&mut self.store, (borrow, event.into())).await.map(|(r,)| r);
        self.end(Callback::Event, started, result)
    }

    /// Calls `on-drain` for `conn`.
    pub async fn drain(&mut self, conn: &Connection) -> Outcome {
        let Some(borrow) = self.store.data().borrow_connection(conn) else { return Outcome::Returned };
        let started = self.begin(conn.id());
        let on_drain = self.exports.evconn_listener_callbacks().func_on_drain();
        let result = on_drain.call_async(&mut self.store, (borrow,)).await.map(|(r,)| r);
        self.end(Callback::Drain, started, result)
    }

    /// Calls `on-timer` for `timer`, which came due.
    pub async fn timer(&mut self, timer: TimerId) -> Outcome {
        let started = self.begin(0);
        let on_timer = self.exports.evconn_listener_callbacks().func_on_timer();
        let result = on_timer.call_async(&mut self.store, (timer,)).await.map(|(r,)| r);
        self.end(Callback::Timer, started, result)
    }

    /// The instance's timers, for whoever fires them.
    pub fn timers(&self) -> &Arc<Timers> {
        &self.store.data().timers
    }

    /// Calls `on-accept-error` for a failed `accept()` on `listener`.
    pub async fn accept_error(&mut self, listener: &Arc<Listener>, error: &io::Error) -> Outcome {
        let error = accept_error(error);
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

    /// Which of its worker's instances this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets a connection that has ended; a handle the guest kept to it
    /// stays valid and reports it closed.
    pub fn release_connection(&mut self, conn: &Connection) {
        self.store.data_mut().release_connection(conn);
    }

    /// Closes every connection this instance serves, for `reason`, each
    /// once its output is sent; returns how many.
    pub fn close_connections(&self, reason: CloseReason) -> usize {
        let mut closed = 0;
        for conn in self.store.data().connections() {
            conn.close(reason);
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
