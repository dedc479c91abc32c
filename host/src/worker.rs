//! A reactor worker's guests: under the shared model one instance serves
//! every connection, one callback at a time (libevent's model); under the
//! per-connection model each connection gets an instance of its own. Either
//! way a trapped instance is dropped and its connections closed; the shared
//! one is replaced after a pause that grows while traps keep coming.
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::bindings::{ConnectionEvent, HandlerPre};
use crate::connection::{CloseReason, Connection, Ready};
use crate::instance::{Instance, Outcome};
use crate::listener::Listener;
use crate::services::{Services, TaskToken};
use crate::state::HostState;
use crate::stats::{Callback, Stats};
use crate::sync::{AsyncLock, AsyncLockGuard, lock};

/// The most bytes handed to one `on-data` call, as libevent's
/// `bufferevent_set_max_single_read` bounds one read. Each call has a fixed
/// cost (the component call, the guest's allocation, for a streaming peer a
/// `FIONREAD`); 256 KiB spreads it over four times what 64 KiB did, and a
/// call still moves its bytes in tens of microseconds, so under the shared
/// model a stream delays the other connections little.
const READ_CHUNK: usize = 256 * 1024;

/// A read at least this large makes the next one go straight into guest
/// memory (`socket_input`): the copy it saves costs more than the system
/// call that sizes it.
const DIRECT_READ_MIN: usize = 16 * 1024;

/// Read buffers kept for reuse; more are freed after use.
const SPARE_READ_BUFFERS: usize = 16;

/// Which connections share a guest instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// One instance serves every connection (libevent's model): callbacks
    /// are serialised and the guest may keep state across connections.
    Shared,
    /// Each connection gets its own instance: nothing is shared, and a trap
    /// ends only that connection.
    Connection,
}

/// Where a listener's accept loop sends connections: the current worker of
/// its component on its reactor. Hot reload replaces the worker; connections
/// already accepted stay with the one that accepted them.
pub type Route = tokio::sync::watch::Receiver<Arc<Worker>>;

/// A route that never changes, for listeners a guest binds: they belong to
/// the worker whose guest bound them.
pub fn fixed_route(worker: Arc<Worker>) -> Route {
    // A receiver keeps the last value after its sender is gone.
    tokio::sync::watch::channel(worker).1
}

/// Runs one component's callbacks for the connections of one reactor.
pub struct Worker {
    pre: HandlerPre<HostState>,
    services: Arc<Services>,
    isolation: Isolation,
    /// The component's name, for logs and counts.
    component: Arc<str>,
    /// The component's counts, shared with its other workers and versions.
    stats: Arc<Stats>,
    /// The operator's listeners that route to this component on this
    /// reactor: what `operator-listeners` gives the guest.
    listeners: Vec<Arc<Listener>>,
    /// The instance of the shared model, locked for one read and callback at
    /// a time (by a lock without hand-over: see `AsyncLock`). Unused under
    /// the per-connection model.
    shared: AsyncLock<Slot>,
    /// Buffers lent to one read and the callback that follows it, so that
    /// idle connections hold none.
    read_buffers: Mutex<Vec<Box<[u8]>>>,
    /// Slows down replacing the shared instance while traps keep coming.
    trap_backoff: Mutex<TrapBackoff>,
}

/// Where an instance lives: the worker's shared one, or a connection's own.
#[derive(Default)]
struct Slot {
    /// `None` before the first callback and after a trap.
    instance: Option<Instance>,
    /// Counts instances made in this slot.
    generation: u64,
}

/// A connection's own slot under the per-connection model, `None` under the
/// shared one. Boxed: it lives in the connection's task for the connection's
/// whole life, and under the shared model would only take room there.
type OwnSlot = Option<Box<Slot>>;

/// A slot borrowed for one step: locked (shared) or owned by the task.
enum SlotGuard<'a> {
    Shared(AsyncLockGuard<'a, Slot>),
    Own(&'a mut Slot),
}

impl Deref for SlotGuard<'_> {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        match self {
            SlotGuard::Shared(guard) => guard,
            SlotGuard::Own(slot) => slot,
        }
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        match self {
            SlotGuard::Shared(guard) => guard,
            SlotGuard::Own(slot) => slot,
        }
    }
}

impl Slot {
    /// The current instance, if it is the one of `generation`.
    fn current(&mut self, generation: u64) -> Option<&mut Instance> {
        self.instance.as_mut().filter(|i| i.generation == generation)
    }
}

/// The pause before making an instance after a trap: none after a lone
/// trap, then 10 ms doubling to 1 s while traps come less than a second
/// apart, not counting the pause itself.
#[derive(Debug, Default)]
struct TrapBackoff {
    last_trap: Option<Instant>,
    pause: Duration,
}

impl TrapBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const QUIET: Duration = Duration::from_secs(1);

    fn record_trap(&mut self) {
        let now = Instant::now();
        // The pause the host imposed since the last trap does not count:
        // otherwise, once it reaches QUIET, a guest that traps at once on
        // every new instance would look quiet and the pause would start over.
        let recent = self.last_trap.is_some_and(|last| now - last < Self::QUIET + self.pause);
        self.pause = if recent { (self.pause * 2).clamp(Self::FIRST, Self::MAX) } else { Duration::ZERO };
        self.last_trap = Some(now);
    }

    fn pause(&self) -> Duration {
        match self.last_trap {
            Some(last) if last.elapsed() < Self::QUIET => self.pause,
            _ => Duration::ZERO,
        }
    }
}

impl Worker {
    /// A worker for `pre`. Under the shared model its instance is made at
    /// once, so a guest that traps while starting is reported before serving;
    /// under the per-connection model one instance is made and dropped to
    /// check the same.
    pub async fn new(
        pre: HandlerPre<HostState>,
        component: Arc<str>,
        services: Arc<Services>,
        isolation: Isolation,
        listeners: Vec<Arc<Listener>>,
    ) -> wasmtime::Result<Arc<Self>> {
        let worker = Arc::new(Worker {
            pre,
            stats: services.stats_for(&component),
            services,
            isolation,
            component,
            listeners,
            shared: AsyncLock::default(),
            read_buffers: Mutex::default(),
            trap_backoff: Mutex::default(),
        });
        let mut first = Slot::default();
        worker.instantiate(&mut first).await?;
        if isolation == Isolation::Shared {
            *worker.shared.lock().await = first;
        }
        Ok(worker)
    }

    /// The host's shared state.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The component's name.
    pub fn component(&self) -> &Arc<str> {
        &self.component
    }

    /// The component's counts.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The operator's listeners that route here.
    pub fn listeners(&self) -> &[Arc<Listener>] {
        &self.listeners
    }

    async fn instantiate(self: &Arc<Self>, slot: &mut Slot) -> wasmtime::Result<()> {
        let generation = slot.generation + 1;
        let instance = Instance::new(&self.pre, self, generation).await?;
        self.stats.instances.inc();
        slot.generation = generation;
        slot.instance = Some(instance);
        Ok(())
    }

    /// The slot's instance, made afresh (after the trap pause) if needed.
    async fn instance<'s>(self: &Arc<Self>, slot: &'s mut Slot) -> Option<&'s mut Instance> {
        if slot.instance.is_none() {
            // Only the shared instance is replaced after a trap; under the
            // per-connection model a trap ends one connection, and the next
            // connection's fresh instance owes nothing to it.
            let pause = match self.isolation {
                Isolation::Shared => lock(&self.trap_backoff).pause(),
                Isolation::Connection => Duration::ZERO,
            };
            if !pause.is_zero() {
                tracing::debug!(?pause, "traps keep coming: waiting before a new instance");
                tokio::time::sleep(pause).await;
            }
            if let Err(e) = self.instantiate(slot).await {
                tracing::error!(component = %self.component, error = %format!("{e:#}"), "cannot instantiate the guest");
                return None;
            }
            if self.isolation == Isolation::Shared {
                tracing::info!(component = %self.component, generation = slot.generation, "guest instance replaced");
            }
        }
        slot.instance.as_mut()
    }

    /// The slot for one step of a connection (or accept error).
    async fn slot<'a>(&'a self, own: &'a mut OwnSlot) -> SlotGuard<'a> {
        match own {
            Some(slot) => SlotGuard::Own(slot),
            None => SlotGuard::Shared(self.shared.lock().await),
        }
    }

    /// A slot of its own under the per-connection model.
    fn own_slot(&self) -> OwnSlot {
        (self.isolation == Isolation::Connection).then(Box::default)
    }

    /// Serves a connection accepted on `listener` in a task of its own,
    /// holding `permit` (a `--max-connections` slot) and `token` (which a
    /// stopping host waits for) until it ends.
    pub fn spawn_connection(
        self: &Arc<Self>,
        listener: Arc<Listener>,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        token: TaskToken,
    ) {
        let id = self.services.next_connection_id();
        let write_buffer = self.services.limits().write_buffer;
        // Made before the task, so that the task does not carry the stream
        // and address it was made from for the connection's whole life.
        let conn = match Connection::new(id, stream, peer, write_buffer, self.stats.traffic.clone()) {
            Ok(conn) => Arc::new(conn),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection lost before it was served");
                return;
            }
        };
        tracing::debug!(conn = id, %peer, listener = listener.id(), component = %self.component, "accepted");
        self.services.track(&conn);
        let worker = self.clone();
        tokio::spawn(async move {
            worker.serve(&listener, &conn).await;
            worker.services.untrack(id);
            tracing::debug!(conn = id, reason = %conn.close_reason().name(), "closed");
            drop((token, permit));
        });
    }

    /// Delivers `conn`'s callbacks until it ends.
    async fn serve(self: &Arc<Self>, listener: &Arc<Listener>, conn: &Arc<Connection>) {
        let mut own = self.own_slot();
        // This future lives as long as the connection, idle or not, and is
        // as large as the largest call it awaits inline. Every call into the
        // guest, and the connection's end, is boxed instead, so that an idle
        // connection's task holds little more than its handles: an
        // allocation per callback, against 0.4 KiB of every idle
        // connection (docs/performance.md).
        let generation = Box::pin(self.accept(&mut own, listener, conn)).await;
        loop {
            match conn.ready().await {
                Ready::Readable => Box::pin(self.read(&mut own, conn, generation)).await,
                // No bytes moved for --idle-timeout (`idle::sweep`).
                Ready::IdleTimeout => Box::pin(self.idle(&mut own, conn, generation)).await,
                Ready::Finished => break,
            }
        }
        Box::pin(self.end(own, conn, generation)).await;
    }

    /// Ends `conn`: tells the guest of a write that failed, sends what is
    /// left and lingers (`Connection::finish`), and lets the instance forget
    /// the connection.
    async fn end(&self, mut own: OwnSlot, conn: &Arc<Connection>, generation: u64) {
        self.report_write_failure(&mut own, conn, generation).await;
        conn.finish().await;
        self.stats.closed(conn.close_reason()).inc();
        self.stats.active.dec();
        let mut slot = self.slot(&mut own).await;
        if let Some(instance) = slot.current(generation) {
            instance.store.data_mut().release_connection(conn);
        }
    }

    /// Calls `on-accept`; returns the generation of the instance that
    /// accepted (0 if none could, in which case the connection is closing).
    async fn accept(self: &Arc<Self>, own: &mut OwnSlot, listener: &Arc<Listener>, conn: &Arc<Connection>) -> u64 {
        self.stats.accepted.inc();
        self.stats.active.inc();
        let mut slot = self.slot(own).await;
        let Some(instance) = self.instance(&mut slot).await else {
            conn.close(CloseReason::Trap);
            return 0;
        };
        let generation = instance.generation;
        let outcome = instance.accept(listener, conn).await;
        self.settle(&mut slot, conn, outcome, Callback::Accept);
        generation
    }

    /// Reads what `conn` has and hands it to the guest.
    async fn read(&self, own: &mut OwnSlot, conn: &Arc<Connection>, generation: u64) {
        let mut slot = self.slot(own).await;
        let Some(instance) = slot.current(generation) else {
            // The instance that accepted this connection trapped and the
            // connection is closing; nothing reaches its replacement.
            conn.close(CloseReason::Trap);
            return;
        };
        if conn.is_closing() {
            return;
        }
        // A peer that streams (its last read was large) gets its bytes read
        // straight into the guest's memory, sized by what the socket holds.
        if conn.last_read() >= DIRECT_READ_MIN
            && let Ok(waiting @ 1..) = conn.waiting()
        {
            let outcome = instance.data_from_socket(conn, waiting, READ_CHUNK).await;
            self.settle(&mut slot, conn, outcome, Callback::Data);
            return;
        }
        // Taken only once the instance is ours: under the shared model every
        // readable connection waits for the lock above, and a buffer taken
        // before it would be one per waiting connection.
        let mut buffer = lock(&self.read_buffers).pop().unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice());
        let (outcome, callback) = match conn.try_read(&mut buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (Outcome::Returned, Callback::Data),
            Ok(0) => (instance.event(conn, ConnectionEvent::EndOfStream).await, Callback::Event),
            Ok(n) => (instance.data(conn, &buffer[..n]).await, Callback::Data),
            Err(e) => {
                tracing::debug!(conn = conn.id(), error = %e, "read failed");
                let code = conn.error_event(&e);
                (instance.event(conn, ConnectionEvent::Error(code)).await, Callback::Event)
            }
        };
        self.settle(&mut slot, conn, outcome, callback);
        drop(slot);
        let mut spare = lock(&self.read_buffers);
        if spare.len() < SPARE_READ_BUFFERS {
            spare.push(buffer);
        }
    }

    /// Tells the guest that a write to `conn` failed, as a bufferevent
    /// reports a failed write, so that it can forget the connection: without
    /// this event a guest keeping per-connection state would keep it forever.
    async fn report_write_failure(&self, own: &mut OwnSlot, conn: &Arc<Connection>, generation: u64) {
        let Some(code) = conn.take_unreported_failure() else { return };
        let mut slot = self.slot(own).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.event(conn, ConnectionEvent::Error(code)).await;
            self.settle(&mut slot, conn, outcome, Callback::Event);
        }
    }

    /// Tells the guest `conn` timed out, then closes it.
    async fn idle(&self, own: &mut OwnSlot, conn: &Arc<Connection>, generation: u64) {
        tracing::debug!(conn = conn.id(), "idle timeout");
        // So that the guest closing it now counts as an idle timeout.
        conn.time_out();
        let mut slot = self.slot(own).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.event(conn, ConnectionEvent::Timeout).await;
            self.settle(&mut slot, conn, outcome, Callback::Event);
        }
        conn.close(CloseReason::IdleTimeout);
    }

    /// Calls `on-accept-error` for a failed `accept()` on `listener`: on
    /// the shared instance, or on an instance made for the call.
    pub async fn accept_error(self: &Arc<Self>, listener: &Arc<Listener>, error: &std::io::Error) {
        self.stats.accept_error(error);
        let mut own = self.own_slot();
        let mut slot = self.slot(&mut own).await;
        let Some(instance) = self.instance(&mut slot).await else { return };
        if let Outcome::Trapped = instance.accept_error(listener, error).await {
            self.discard(&mut slot);
        }
    }

    /// Acts on how a connection's callback ended.
    fn settle(&self, slot: &mut Slot, conn: &Connection, outcome: Outcome, callback: Callback) {
        match outcome {
            Outcome::Returned => {}
            Outcome::GuestError(message) => {
                let errors = self.stats.guest_errors.inc() + 1;
                tracing::warn!(component = %self.component, conn = conn.id(), callback = callback.name(), %message, errors, "guest returned an error; closing the connection");
                conn.close(CloseReason::GuestError);
            }
            Outcome::Trapped => self.discard(slot),
        }
    }

    /// Drops a trapped instance and closes every connection it served.
    fn discard(&self, slot: &mut Slot) {
        let Some(instance) = slot.instance.take() else { return };
        lock(&self.trap_backoff).record_trap();
        let closed = instance.close_connections();
        let traps = self.stats.traps.get();
        tracing::warn!(component = %self.component, generation = instance.generation, closed, traps, "discarded the trapped instance and closed its connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone trap costs no pause; traps in quick succession double it up to 1 s.
    #[test]
    fn trap_backoff_grows_only_while_traps_keep_coming() {
        let mut backoff = TrapBackoff::default();
        assert_eq!(backoff.pause(), Duration::ZERO);
        backoff.record_trap();
        assert_eq!(backoff.pause(), Duration::ZERO);
        let pauses: Vec<u128> = (0..9)
            .map(|_| {
                backoff.record_trap();
                backoff.pause().as_millis()
            })
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
