//! A reactor worker's guests: under the shared model one instance serves
//! every connection, one callback at a time (libevent's model); under the
//! per-connection model each connection gets an instance of its own. Either
//! way a trapped instance is dropped and its connections closed; the shared
//! one is replaced after a pause that grows while traps keep coming.
//!
//! `timers` fires the instances' timers.
mod timers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::TcpStream;

use self::timers::{Step, TimerSlot};
use super::Services;
use super::slot::{OwnSlot, Slot, SlotGuard, TrapBackoff};
use crate::base::sync::{AsyncLock, lock};
use crate::net::{Admission, Connection, Lifecycle, Listener, OutputLimits, Ready};
use crate::telemetry::{Callback, CloseReason, Stats};
use crate::wasm::{Compiled, Event, Instance, InstanceContext, Isolation, Outcome};

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

/// Runs one component's callbacks for the connections of one reactor.
pub struct Worker {
    compiled: Compiled,
    /// What its instances may touch: the component's name and counts
    /// (shared with its other workers and versions), the host's life and
    /// policy, and this worker.
    context: InstanceContext,
    isolation: Isolation,
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
    /// How much output each connection may hold, and the host's output
    /// memory it counts in: one for every connection of the worker.
    output: Arc<OutputLimits>,
    /// The shared instance's timers, for the task that fires them.
    shared_timers: TimerSlot,
}

impl Worker {
    /// A worker for `compiled`, named `component`, under `isolation`. Under
    /// the shared model its instance is made at once, so a guest that traps
    /// while starting is reported before serving; under the per-connection
    /// model one instance is made and dropped to check the same.
    pub(super) async fn new(
        compiled: Compiled,
        component: Arc<str>,
        services: Services,
        isolation: Isolation,
        listeners: Vec<Arc<Listener>>,
    ) -> wasmtime::Result<Arc<Self>> {
        let output = Arc::new(OutputLimits {
            pause_reading_at: services.policy.limits.write_buffer.max(1),
            cap: services.policy.limits.output_cap,
            budget: services.output.clone(),
        });
        let worker = Arc::new_cyclic(|me: &Weak<Worker>| Worker {
            compiled,
            context: InstanceContext {
                stats: services.metrics.component(&component),
                component,
                lifecycle: services.lifecycle.clone(),
                policy: services.policy.clone(),
                owner: me.clone(),
            },
            isolation,
            listeners,
            shared: AsyncLock::default(),
            read_buffers: Mutex::default(),
            trap_backoff: Mutex::default(),
            output,
            shared_timers: TimerSlot::default(),
        });
        let mut first = Slot::default();
        worker.instantiate(&mut first).await?;
        if isolation == Isolation::Shared {
            *worker.shared.lock().await = first;
            tokio::spawn(timers::fire_shared(Arc::downgrade(&worker), worker.shared_timers.changed()));
        }
        Ok(worker)
    }

    /// The host's life.
    pub(super) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.context.lifecycle
    }

    /// The operator's listeners that route here.
    pub(super) fn listeners(&self) -> &[Arc<Listener>] {
        &self.listeners
    }

    fn stats(&self) -> &Stats {
        &self.context.stats
    }

    fn component(&self) -> &str {
        &self.context.component
    }

    async fn instantiate(self: &Arc<Self>, slot: &mut Slot) -> wasmtime::Result<()> {
        let generation = slot.generation + 1;
        let instance = Instance::new(&self.compiled, &self.context, generation).await?;
        self.stats().counts.instances.inc();
        if self.isolation == Isolation::Shared {
            // Every instance of the shared model lives in the shared slot.
            self.shared_timers.set(Some((generation, instance.timers().clone())));
        }
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
                let error = format!("{e:#}");
                tracing::error!(component = %self.component(), %error, "cannot instantiate the guest");
                return None;
            }
            if self.isolation == Isolation::Shared {
                tracing::info!(component = %self.component(), generation = slot.generation, "guest instance replaced");
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
    /// holding `admission` (a `--max-connections` slot, and what a stopping
    /// host waits for) until it ends.
    pub(super) fn spawn_connection(
        self: &Arc<Self>,
        listener: Arc<Listener>,
        stream: TcpStream,
        peer: SocketAddr,
        admission: Admission,
    ) {
        let id = self.lifecycle().next_connection_id();
        // Made before the task, so that the task does not carry the stream
        // and address it was made from for the connection's whole life.
        let conn = match Connection::new(id, stream, peer, self.output.clone(), self.stats().traffic()) {
            Ok(conn) => Arc::new(conn),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection lost before it was served");
                return;
            }
        };
        tracing::debug!(conn = id, %peer, listener = listener.id(), component = %self.component(), "accepted");
        self.lifecycle().open().track(&conn);
        let worker = self.clone();
        tokio::spawn(async move {
            worker.serve(&listener, &conn).await;
            worker.lifecycle().open().untrack(id);
            tracing::debug!(conn = id, reason = %conn.close_reason().name(), "closed");
            drop(admission);
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
            // A connection's own instance's timers fire in its task; only
            // one that has some pays for waiting on them.
            let ready = match timers::pending(&own) {
                None => conn.ready().await,
                Some(pending) => match Box::pin(timers::ready_or_due(conn, pending)).await {
                    Step::Ready(ready) => ready,
                    Step::Due(timer) => {
                        Box::pin(self.fire_own_timer(&mut own, generation, timer)).await;
                        continue;
                    }
                },
            };
            match ready {
                Ready::Readable => Box::pin(self.read(&mut own, conn, generation)).await,
                // No bytes moved for --idle-timeout (`net::idle::sweep`).
                Ready::IdleTimeout => Box::pin(self.idle(&mut own, conn, generation)).await,
                // Output fell to the guest's watermark, or room came back.
                Ready::Drained => Box::pin(self.drained(&mut own, conn, generation)).await,
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
        self.stats().closed(conn.close_reason()).inc();
        self.stats().active.dec();
        let mut slot = self.slot(&mut own).await;
        if let Some(instance) = slot.current(generation) {
            instance.release_connection(conn);
        }
    }

    /// Calls `on-accept`; returns the generation of the instance that
    /// accepted (0 if none could, in which case the connection is closing).
    async fn accept(self: &Arc<Self>, own: &mut OwnSlot, listener: &Arc<Listener>, conn: &Arc<Connection>) -> u64 {
        self.stats().counts.accepted.inc();
        self.stats().active.inc();
        let mut slot = self.slot(own).await;
        let Some(instance) = self.instance(&mut slot).await else {
            conn.close(CloseReason::Trap);
            return 0;
        };
        let generation = instance.generation();
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
            Ok(0) => (instance.event(conn, Event::EndOfStream).await, Callback::Event),
            Ok(n) => (instance.data(conn, &buffer[..n]).await, Callback::Data),
            Err(e) => {
                tracing::debug!(conn = conn.id(), error = %e, "read failed");
                (instance.event(conn, Event::Failed(&e)).await, Callback::Event)
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
        let Some(error) = conn.take_unreported_failure() else { return };
        let mut slot = self.slot(own).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.event(conn, Event::Failed(&error)).await;
            self.settle(&mut slot, conn, outcome, Callback::Event);
        }
    }

    /// Tells the guest that `conn`'s output drained (`on-drain`).
    async fn drained(&self, own: &mut OwnSlot, conn: &Arc<Connection>, generation: u64) {
        let mut slot = self.slot(own).await;
        if conn.is_closing() {
            return;
        }
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.drain(conn).await;
            self.settle(&mut slot, conn, outcome, Callback::Drain);
        }
    }

    /// Tells the guest `conn` timed out, then closes it.
    async fn idle(&self, own: &mut OwnSlot, conn: &Arc<Connection>, generation: u64) {
        tracing::debug!(conn = conn.id(), "idle timeout");
        // So that the guest closing it now counts as an idle timeout.
        conn.time_out();
        let mut slot = self.slot(own).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.event(conn, Event::Timeout).await;
            self.settle(&mut slot, conn, outcome, Callback::Event);
        }
        conn.close(CloseReason::IdleTimeout);
    }

    /// Calls `on-accept-error` for a failed `accept()` on `listener`: on
    /// the shared instance, or on an instance made for the call.
    pub(super) async fn accept_error(self: &Arc<Self>, listener: &Arc<Listener>, error: &std::io::Error) {
        self.stats().accept_error(error);
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
                let errors = self.stats().counts.guest_errors.inc() + 1;
                tracing::warn!(
                    component = %self.component(),
                    conn = conn.id(),
                    callback = callback.name(),
                    %message,
                    errors,
                    "guest returned an error; closing the connection"
                );
                conn.close(CloseReason::GuestError);
            }
            Outcome::Trapped => self.discard(slot),
        }
    }

    /// Drops a trapped instance and closes every connection it served.
    fn discard(&self, slot: &mut Slot) {
        let Some(instance) = slot.instance.take() else { return };
        if self.isolation == Isolation::Shared {
            self.shared_timers.set(None);
        }
        lock(&self.trap_backoff).record_trap();
        let closed = instance.close_connections();
        let traps = self.stats().counts.traps.get();
        tracing::warn!(
            component = %self.component(),
            generation = instance.generation(),
            closed,
            traps,
            "discarded the trapped instance and closed its connections"
        );
    }
}
