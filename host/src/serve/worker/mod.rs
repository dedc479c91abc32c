//! A reactor worker's guests: under the shared model one instance serves
//! every connection, one callback at a time (libevent's model); under the
//! per-connection model each connection gets an instance of its own. Either
//! way a trapped instance is dropped and its connections closed; the shared
//! one is replaced after a pause that grows while traps keep coming.
//!
//! `timers` fires the instances' timers; `outbound` connects and serves the
//! connections instances open.
mod outbound;
mod timers;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use self::timers::{Step, TimerSlot};
use super::slot::{Home, Slot, TrapBackoff};
use super::{ConnectionWatch, Services};
use crate::base::sync::{AsyncLockGuard, lock};
use crate::net::tls::{HandshakeError, handshake};
use crate::net::{Admission, Connection, Endpoint, Lifecycle, Listener, OutputLimits, Ready, Stream};
use crate::telemetry::{Callback, CloseReason, HandshakeOutcome, Stats};
use crate::wasm::{Compiled, Event, Instance, InstanceContext, Isolation, Outcome, Owner, Timers};

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
    /// What its instances may touch: the component's name, environment and
    /// counts (shared with its other workers and versions), the host's life
    /// and policy, and their home (set for each instance).
    context: InstanceContext,
    isolation: Isolation,
    /// The operator's listeners that route to this component on this
    /// reactor: what `operator-listeners` gives the guest.
    listeners: Vec<Arc<Listener>>,
    /// The home of the shared model's instance, locked for one read and
    /// callback at a time (by a lock without hand-over: see `AsyncLock`).
    /// Unused under the per-connection model, where each accepted
    /// connection has a home of its own.
    shared: Arc<Home>,
    /// Buffers lent to one read and the callback that follows it, so that
    /// idle connections hold none.
    read_buffers: Mutex<Vec<Box<[u8]>>>,
    /// Slows down replacing the shared instance while traps keep coming.
    trap_backoff: Mutex<TrapBackoff>,
    /// The shared instance's timers, for the task that fires them.
    shared_timers: TimerSlot,
    /// Who is told about accepted and finished connections (the test kit).
    watch: Option<Arc<ConnectionWatch>>,
}

impl Worker {
    /// A worker for `compiled`, named `component`, under `isolation`. Under
    /// the shared model its instance is made at once, so a guest that traps
    /// while starting is reported before serving; under the per-connection
    /// model one instance is made and dropped to check the same.
    pub(super) async fn new(
        compiled: Compiled,
        component: Arc<str>,
        env: Arc<[(String, String)]>,
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
                env,
                output,
                lifecycle: services.lifecycle.clone(),
                policy: services.policy.clone(),
                store: services.store.clone(),
                owner: Weak::<Home>::new(),
            },
            isolation,
            listeners,
            shared: Arc::new(Home { worker: me.clone(), slot: Default::default() }),
            read_buffers: Mutex::default(),
            trap_backoff: Mutex::default(),
            shared_timers: TimerSlot::default(),
            watch: services.watch.clone(),
        });
        // Under the per-connection model, an instance made and dropped.
        let home = worker.home();
        let mut slot = home.slot.lock().await;
        worker.instantiate(&home, &mut slot).await?;
        drop(slot);
        if isolation == Isolation::Shared {
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

    async fn instantiate(self: &Arc<Self>, home: &Arc<Home>, slot: &mut Slot) -> wasmtime::Result<()> {
        let generation = slot.generation + 1;
        let owner: Arc<dyn Owner> = home.clone();
        let context = InstanceContext { owner: Arc::downgrade(&owner), ..self.context.clone() };
        let instance = Instance::new(&self.compiled, &context, generation).await?;
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
    async fn instance<'s>(self: &Arc<Self>, home: &Arc<Home>, slot: &'s mut Slot) -> Option<&'s mut Instance> {
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
            if let Err(e) = self.instantiate(home, slot).await {
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

    /// The home's slot, for one step of a connection (or accept error).
    async fn slot<'a>(&self, home: &'a Home) -> AsyncLockGuard<'a, Slot> {
        home.slot.lock().await
    }

    /// Where a new accepted connection's instance lives: the shared home,
    /// or a home of its own under the per-connection model.
    fn home(self: &Arc<Self>) -> Arc<Home> {
        match self.isolation {
            Isolation::Shared => self.shared.clone(),
            Isolation::Connection => Arc::new(Home { worker: Arc::downgrade(self), slot: Default::default() }),
        }
    }

    /// Serves a connection accepted on `listener` in a task of its own,
    /// holding `admission` (a `--max-connections` slot, and what a stopping
    /// host waits for) until it ends. On a TLS listener the handshake comes
    /// first, in that task, bounded by `--tls-handshake-timeout`: a client
    /// that does not finish it is closed and never reaches the guest.
    pub(super) fn spawn_connection(
        self: &Arc<Self>,
        listener: Arc<Listener>,
        stream: Stream,
        peer: Endpoint,
        admission: Admission,
    ) {
        let Some(tls) = listener.tls().cloned() else {
            return self.start_connection(listener, stream, peer, None, admission);
        };
        let worker = self.clone();
        let timeout = self.context.policy.limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let started = Instant::now();
            match handshake(&tls, stream, timeout).await {
                Ok((stream, session)) => {
                    worker.stats().tls_handshake(HandshakeOutcome::Ok, started.elapsed());
                    worker.start_connection(listener, stream, peer, Some(session), admission);
                }
                Err(e) => {
                    let outcome = match e {
                        HandshakeError::TimedOut(_) => HandshakeOutcome::Timeout,
                        HandshakeError::Failed(_) => HandshakeOutcome::Failed,
                    };
                    worker.stats().tls_handshake(outcome, started.elapsed());
                    tracing::debug!(%peer, listener = listener.id(), error = %e, "closed before the guest saw it");
                }
            }
        });
    }

    /// Serves a connection, its handshake done if it has one, in a task of
    /// its own.
    fn start_connection(
        self: &Arc<Self>,
        listener: Arc<Listener>,
        stream: Stream,
        peer: Endpoint,
        tls: Option<rustls::ServerConnection>,
        admission: Admission,
    ) {
        let id = self.lifecycle().next_connection_id();
        // Made before the task, so that the task does not carry the stream
        // and address it was made from for the connection's whole life.
        let conn = match Connection::new(id, stream, peer, tls, self.context.output.clone(), self.stats().traffic()) {
            Ok(conn) => Arc::new(conn),
            Err(e) => {
                tracing::debug!(error = %e, "connection lost before it was served");
                return;
            }
        };
        tracing::debug!(conn = id, peer = %conn.peer(), listener = listener.id(), component = %self.component(), "accepted");
        self.lifecycle().open().track(&conn);
        let worker = self.clone();
        tokio::spawn(async move {
            worker.serve(&listener, &conn).await;
            worker.lifecycle().open().untrack(id);
            tracing::debug!(conn = id, reason = %conn.close_reason().name(), "closed");
            if let Some((watch, peer)) = worker.watch.as_ref().zip(conn.peer().ip()) {
                watch.closed(peer);
            }
            drop(admission);
        });
    }

    /// Delivers `conn`'s callbacks until it ends.
    async fn serve(self: &Arc<Self>, listener: &Arc<Listener>, conn: &Arc<Connection>) {
        let home = self.home();
        // This future lives as long as the connection, idle or not, and is
        // as large as the largest call it awaits inline. Every call into the
        // guest, and the connection's end, is boxed instead, so that an idle
        // connection's task holds little more than its handles: an
        // allocation per callback, against 0.4 KiB of every idle
        // connection (docs/performance.md).
        let (generation, own_timers) = Box::pin(self.accept(&home, listener, conn)).await;
        if let Some((watch, peer)) = self.watch.as_ref().zip(conn.peer().ip()) {
            watch.accepted(peer);
        }
        self.run(&home, conn, generation, own_timers).await;
        Box::pin(self.end(&home, conn, generation)).await;
        self.stats().closed(conn.close_reason()).inc();
        self.stats().active.dec();
        if self.isolation == Isolation::Connection {
            // The connection's own instance ends with it, and so do the
            // outbound connections it opened, once their output is sent:
            // as if the guest had closed them.
            let instance = self.slot(&home).await.instance.take();
            if let Some(instance) = instance {
                instance.close_connections(CloseReason::GuestClosed);
            }
        }
    }

    /// Delivers `conn`'s callbacks until it is over; `own_timers`, the
    /// timers of the connection's own instance, fire here too.
    async fn run(&self, home: &Home, conn: &Arc<Connection>, generation: u64, own_timers: Option<Arc<Timers>>) {
        loop {
            // A connection's own instance's timers fire in its task; only
            // one that has some pays for waiting on them.
            let ready = match own_timers.as_ref().filter(|timers| timers.any_pending()) {
                None => conn.ready().await,
                Some(pending) => match Box::pin(timers::ready_or_due(conn, pending.clone())).await {
                    Step::Ready(ready) => ready,
                    Step::Due(timer) => {
                        Box::pin(self.fire_own_timer(home, generation, timer)).await;
                        continue;
                    }
                },
            };
            match ready {
                Ready::Readable => Box::pin(self.read(home, conn, generation)).await,
                // No bytes moved for --idle-timeout (`net::idle::sweep`).
                Ready::IdleTimeout => Box::pin(self.idle(home, conn, generation)).await,
                // Output fell to the guest's watermark, or room came back.
                Ready::Drained => Box::pin(self.drained(home, conn, generation)).await,
                Ready::Finished => break,
            }
        }
    }

    /// Ends `conn`: tells the guest of a write that failed, sends what is
    /// left and lingers (`Connection::finish`), and lets the instance forget
    /// the connection.
    async fn end(&self, home: &Home, conn: &Arc<Connection>, generation: u64) {
        self.report_write_failure(home, conn, generation).await;
        conn.finish().await;
        let mut slot = self.slot(home).await;
        if let Some(instance) = slot.current(generation) {
            instance.release_connection(conn);
        }
    }

    /// Calls `on-accept`; returns the generation of the instance that
    /// accepted (0 if none could, in which case the connection is closing),
    /// and under the per-connection model its timers.
    async fn accept(
        self: &Arc<Self>,
        home: &Arc<Home>,
        listener: &Arc<Listener>,
        conn: &Arc<Connection>,
    ) -> (u64, Option<Arc<Timers>>) {
        self.stats().counts.accepted.inc();
        self.stats().active.inc();
        let mut slot = self.slot(home).await;
        let Some(instance) = self.instance(home, &mut slot).await else {
            conn.close(CloseReason::Trap);
            return (0, None);
        };
        let generation = instance.generation();
        let own_timers = (self.isolation == Isolation::Connection).then(|| instance.timers().clone());
        let outcome = instance.accept(listener, conn).await;
        self.settle(&mut slot, conn, outcome, Callback::Accept);
        (generation, own_timers)
    }

    /// Reads what `conn` has and hands it to the guest.
    async fn read(&self, home: &Home, conn: &Arc<Connection>, generation: u64) {
        let mut slot = self.slot(home).await;
        let Some(instance) = slot.current(generation) else {
            // The instance that accepted this connection trapped and the
            // connection is closing; nothing reaches its replacement.
            conn.close(CloseReason::Trap);
            return;
        };
        // Checked under the lock: another callback may have paused reading
        // (or closed the connection) since the socket was found readable,
        // and no `on-data` may follow `pause-reading`.
        if !conn.wants_input() {
            return;
        }
        // A peer that streams (its last read was large) gets its bytes read
        // straight into the guest's memory, sized by what the socket holds;
        // unless the host keeps a copy of them for `write-input`, which
        // takes a buffer of its own anyway.
        if conn.last_read() >= DIRECT_READ_MIN
            && !instance.keeps_input()
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
    async fn report_write_failure(&self, home: &Home, conn: &Arc<Connection>, generation: u64) {
        let Some(error) = conn.take_unreported_failure() else { return };
        let mut slot = self.slot(home).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.event(conn, Event::Failed(&error)).await;
            self.settle(&mut slot, conn, outcome, Callback::Event);
        }
    }

    /// Tells the guest that `conn`'s output drained (`on-drain`).
    async fn drained(&self, home: &Home, conn: &Arc<Connection>, generation: u64) {
        let mut slot = self.slot(home).await;
        if conn.is_closing() {
            return;
        }
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.drain(conn).await;
            self.settle(&mut slot, conn, outcome, Callback::Drain);
        }
    }

    /// Tells the guest `conn` timed out, then closes it.
    async fn idle(&self, home: &Home, conn: &Arc<Connection>, generation: u64) {
        tracing::debug!(conn = conn.id(), "idle timeout");
        // So that the guest closing it now counts as an idle timeout.
        conn.time_out();
        let mut slot = self.slot(home).await;
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
        let home = self.home();
        let mut slot = self.slot(&home).await;
        let Some(instance) = self.instance(&home, &mut slot).await else { return };
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
        let closed = instance.close_connections(CloseReason::Trap);
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
