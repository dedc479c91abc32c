//! One connection, accepted or outbound, over TCP or a Unix domain socket,
//! in plaintext or TLS: its socket, the output the guest queued, and the
//! state machine that flushes and closes it without losing a byte.
//!
//! Guest calls (`write`, `close`, ...) change the state synchronously and
//! wake the connection's task; the task (`Connection::ready`) sends queued
//! output as the peer takes it and reports when there is input to read. An
//! outbound connection has no socket until it is connected (`attach`); what
//! the guest writes meanwhile waits in its output.
mod activity;
mod output;
mod state;
mod tls;
mod wake;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::net::SocketAddr as UnixSocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConnection;

pub use self::activity::Activity;
use self::state::{Drain, Phase, State, WriteSide};
use self::tls::TlsSession;
use self::wake::Wake;
use super::budget::OutputBudget;
use super::endpoint::{Credentials, Endpoint, UnixEndpoint};
use super::stream::Stream;
use crate::base::linger::linger;
use crate::telemetry::{CloseReason, Traffic};

/// How long a closing connection keeps reading (and discarding) what the peer
/// still sends, so that closing with unread input does not send a reset that
/// could destroy output the peer has not read yet.
const LINGER: Duration = Duration::from_secs(2);

/// A connection shared by its task and the guest's handles to it.
#[derive(Debug)]
pub struct Connection {
    /// Names the connection in logs and to the guest; never reused.
    id: u64,
    /// Set from the start for an accepted connection, once connected for an
    /// outbound one.
    socket: OnceLock<Socket>,
    /// Changed by guest calls and by the task; never held across an await.
    state: Mutex<State>,
    /// Wakes the task when `state` changes.
    wake: Wake,
    /// Whether bytes moved, for the idle sweep.
    activity: Activity,
    /// Bytes the last read took (`last_read`).
    last_read: AtomicUsize,
    /// How much output it may queue, shared with the other connections of
    /// its worker.
    limits: Arc<OutputLimits>,
    /// The component's byte counts.
    traffic: Traffic,
}

/// A connected socket and its two ends.
#[derive(Debug)]
struct Socket {
    stream: Stream,
    peer: Endpoint,
    local: Endpoint,
    /// Whether the connection's bytes go through a TLS session (in the
    /// state): known without taking the lock.
    tls: bool,
}

impl Socket {
    fn new(stream: Stream, peer: Endpoint, tls: bool) -> io::Result<Self> {
        let local = match &stream {
            Stream::Tcp(stream) => {
                // Request/response protocols want each write on the wire at once.
                stream.set_nodelay(true)?;
                Endpoint::Ip(stream.local_addr()?)
            }
            Stream::Unix(stream) => Endpoint::Unix(unix_endpoint(&stream.local_addr()?.into(), None)),
        };
        Ok(Socket { stream, peer, local, tls })
    }
}

/// A Unix socket's end as a [`UnixEndpoint`].
pub fn unix_endpoint(address: &UnixSocketAddr, credentials: Option<Credentials>) -> UnixEndpoint {
    UnixEndpoint { path: address.as_pathname().map(Into::into), credentials }
}

/// What an outbound connection reports before it has a socket: 0.0.0.0
/// port 0.
static NO_ADDRESS: Endpoint = Endpoint::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));

/// How much output a connection may hold, and where it counts.
#[derive(Debug, Clone)]
pub struct OutputLimits {
    /// Queued output at which reading stops until half of it is sent
    /// (`--write-buffer`).
    pub pause_reading_at: usize,
    /// The most output one connection may queue (`--output-cap`).
    pub cap: usize,
    /// The host's output memory (`--output-memory`).
    pub budget: Arc<OutputBudget>,
}

/// Why a connection refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// It is closing: closed by the guest, a trap, or the host.
    #[error("the connection is closed")]
    Closed,
    /// Reading or writing failed (a reset, say): the socket is unusable.
    #[error("the connection failed")]
    Failed,
    /// Writing was shut down (`shutdown_write`).
    #[error("the connection's writing side is shut down")]
    WriteShut,
    /// The write does not fit under the connection's output cap or the
    /// host's output memory now; nothing was taken.
    #[error("the output the host may hold is full")]
    WouldBlock,
    /// The write is larger than the output cap: it could never fit.
    #[error("the write is larger than the connection's output cap")]
    TooLarge,
}

/// What ended one wait of the connection's task.
enum Wait {
    StateChanged,
    Writable,
    Readable,
}

/// What the connection's task should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Input is waiting: read it and hand it to the guest.
    Readable,
    /// No bytes moved for `--idle-timeout`: tell the guest, then close.
    IdleTimeout,
    /// Queued output fell to the guest's watermark, or a refused write
    /// would find room now: tell the guest (`on-drain`).
    Drained,
    /// The connection is over: everything written has been sent, or the
    /// socket failed.
    Finished,
}

impl Connection {
    /// Wraps an accepted socket whose bytes count in `traffic`, and whose
    /// output is bounded by `limits`; with `tls`, a TLS session whose
    /// handshake is done, through which every byte goes.
    pub fn new(
        id: u64,
        stream: Stream,
        peer: Endpoint,
        tls: Option<ServerConnection>,
        limits: Arc<OutputLimits>,
        traffic: Traffic,
    ) -> io::Result<Self> {
        let conn = Self::connecting(id, limits, traffic);
        // Set before the task first waits: nothing to wake it for.
        let _ = conn.socket.set(Socket::new(stream, peer, tls.is_some())?);
        conn.state().tls = tls.map(|session| Box::new(TlsSession::new(session)));
        Ok(conn)
    }

    /// An outbound connection that has no socket yet: what the guest writes
    /// waits until `attach`.
    pub fn connecting(id: u64, limits: Arc<OutputLimits>, traffic: Traffic) -> Self {
        Connection {
            id,
            socket: OnceLock::new(),
            state: Mutex::new(State::new()),
            wake: Wake::default(),
            activity: Activity::default(),
            last_read: AtomicUsize::new(0),
            limits,
            traffic,
        }
    }

    /// Gives the connection its socket, connected to `peer`: reading starts
    /// and queued output goes out. Only once.
    pub fn attach(&self, stream: Stream, peer: Endpoint) -> io::Result<()> {
        let socket = Socket::new(stream, peer, false)?;
        if self.socket.set(socket).is_err() {
            return Err(io::Error::other("the connection has a socket already"));
        }
        self.wake.wake();
        Ok(())
    }

    /// An outbound connection that could not connect: it is over.
    pub fn fail_to_connect(&self) {
        self.state().fail();
        self.wake.wake();
    }

    /// The socket, once there is one.
    fn stream(&self) -> Option<&Stream> {
        self.socket.get().map(|socket| &socket.stream)
    }

    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address (0.0.0.0:0 before an outbound one connects).
    pub fn peer(&self) -> &Endpoint {
        self.socket.get().map_or(&NO_ADDRESS, |socket| &socket.peer)
    }

    /// The local end's address (0.0.0.0:0 before an outbound one connects).
    pub fn local(&self) -> &Endpoint {
        self.socket.get().map_or(&NO_ADDRESS, |socket| &socket.local)
    }

    /// Whether the connection's bytes go through TLS.
    fn is_tls(&self) -> bool {
        self.socket.get().is_some_and(|socket| socket.tls)
    }

    /// What `f` reads of the TLS session rustls negotiated; `None` for a
    /// plaintext connection.
    pub fn with_tls<R>(&self, f: impl FnOnce(&ServerConnection) -> R) -> Option<R> {
        if !self.is_tls() {
            return None;
        }
        self.state().tls.as_ref().map(|tls| f(tls.rustls()))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a host bug; the state is
        // still consistent enough to close the connection, so carry on.
        crate::base::sync::lock(&self.state)
    }

    /// Queues `data` for the peer, sending at once what the socket takes.
    pub fn write(&self, data: &[u8]) -> Result<(), ConnectionError> {
        let mut state = self.state();
        if state.closing.is_some() {
            return Err(ConnectionError::Closed);
        }
        if state.phase == Phase::Failed {
            return Err(ConnectionError::Failed);
        }
        if state.write_side != WriteSide::Open {
            return Err(ConnectionError::WriteShut);
        }
        if data.len() > self.room(&state) {
            return Err(self.refuse(&mut state, data.len()));
        }
        let mut rest = data;
        if state.output.is_empty()
            && let Some(stream) = self.stream()
        {
            let (taken, sent) = match state.tls.as_deref_mut() {
                // rustls takes what its buffer holds, encrypted, whether
                // or not the socket takes the records now; while the socket
                // takes them, it takes more, so that a large write is not
                // copied into the queue only to be encrypted from there.
                Some(tls) => {
                    let mut taken = 0;
                    loop {
                        let took = tls.write(&data[taken..]);
                        taken += took;
                        let sent = tls.send(stream);
                        if took == 0 || taken == data.len() || sent.is_err() {
                            break (taken, sent);
                        }
                    }
                }
                None => match stream.try_write(data) {
                    Ok(n) => (n, Ok(())),
                    Err(e) => (0, Err(e)),
                },
            };
            rest = &data[taken..];
            if taken > 0 {
                self.activity.mark();
                self.traffic.sent.inc_by(taken as u64);
            }
            match sent {
                Ok(()) => {}
                // TLS records the socket did not take: the task sends
                // them once it is writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wake.wake(),
                Err(e) => {
                    // Reported to the guest as an error event by the task,
                    // as a bufferevent reports a failed write.
                    tracing::debug!(conn = self.id, error = %e, "write failed");
                    state.write_failed(e);
                    self.wake.wake();
                    return Ok(());
                }
            }
        }
        if !rest.is_empty() {
            state.output.push(rest, &self.limits.budget);
            if state.output.len() > state.drain_low() && state.drain_watermark.is_some() {
                state.drain = Drain::Owed;
            }
            if state.output.len() >= self.limits.pause_reading_at && !state.backpressure {
                tracing::debug!(conn = self.id, queued = state.output.len(), "peer not reading: reading paused");
                state.backpressure = true;
            }
            self.wake.wake();
        }
        Ok(())
    }

    /// Refuses a write of `len` bytes that does not fit: nothing is taken,
    /// and the guest will hear when to try again.
    #[cold]
    fn refuse(&self, state: &mut State, len: usize) -> ConnectionError {
        if len > self.limits.cap.min(self.limits.budget.limit()) {
            return ConnectionError::TooLarge;
        }
        state.drain = Drain::Owed;
        self.traffic.refused.inc();
        ConnectionError::WouldBlock
    }

    /// How many bytes `write` would take now: the room under the
    /// connection's cap and under the host's output memory.
    fn room(&self, state: &State) -> usize {
        self.limits.cap.saturating_sub(state.output.len()).min(self.limits.budget.room())
    }

    /// How many bytes `write` would take now (0 once it cannot write).
    pub fn write_room(&self) -> usize {
        let state = self.state();
        let writable = state.closing.is_none() && state.phase != Phase::Failed && state.write_side == WriteSide::Open;
        if writable { self.room(&state) } else { 0 }
    }

    /// Bytes written that the socket has not taken yet.
    pub fn queued(&self) -> usize {
        self.state().output.len()
    }

    /// Asks for `Ready::Drained` each time queued output falls to `low` or
    /// less after being above it (`None`: never, unless a write is refused).
    /// If the output is above `low` now, or no write would find room, the
    /// first comes once it drains.
    pub fn set_drain_watermark(&self, low: Option<usize>) {
        let mut state = self.state();
        // Above what any connection may hold, a watermark means any amount.
        state.drain_watermark = low.map(|low| u32::try_from(low).unwrap_or(u32::MAX));
        if low.is_some_and(|low| state.output.len() > low || self.room(&state) == 0) {
            state.drain = Drain::Owed;
        }
        self.wake.wake();
    }

    /// Sends end-of-stream once the queued output is sent.
    pub fn shutdown_write(&self) -> Result<(), ConnectionError> {
        let mut state = self.state();
        if state.closing.is_some() {
            return Err(ConnectionError::Closed);
        }
        if state.write_side == WriteSide::Open {
            state.write_side = WriteSide::ShutdownRequested;
            self.wake.wake();
        }
        Ok(())
    }

    /// Closes the connection once the queued output is sent, for `reason`
    /// unless it was closed already. Idempotent.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.state();
        if state.closing.is_none() {
            state.closing = Some(reason);
            self.wake.wake();
        }
    }

    /// The guest's `close`, for the reason it was last told of: a failure,
    /// a timeout, the peer's end-of-stream, or none (its own decision).
    pub fn close_by_guest(&self) {
        let reason = self.state().phase.close_reason();
        self.close(reason);
    }

    /// Marks the connection timed out, before the guest is told so.
    pub fn time_out(&self) {
        self.state().advance(Phase::TimedOut);
    }

    /// Whether `close` was called: no more callbacks may be delivered.
    pub fn is_closing(&self) -> bool {
        self.state().closing.is_some()
    }

    /// Whether input may be read and handed to the guest now: not closing,
    /// not ended, and reading neither paused by the guest nor held back.
    pub fn wants_input(&self) -> bool {
        self.state().wants_input()
    }

    /// What ended the connection, once `ready` has returned `Finished`.
    pub fn close_reason(&self) -> CloseReason {
        // Not closed, yet finished: the socket failed.
        self.state().closing.unwrap_or(CloseReason::Error)
    }

    /// Stops or resumes reading from the socket.
    pub fn set_reading_paused(&self, paused: bool) {
        let mut state = self.state();
        if state.reading_paused != paused {
            state.reading_paused = paused;
            self.wake.wake();
        }
    }

    /// Reads what is available into `buffer`. `Ok(0)` is end of stream.
    /// A failure marks the connection failed.
    pub fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        self.read_into(buffer, false)
    }

    /// How many bytes the socket holds for reading (`FIONREAD`). A read of
    /// no more than that many returns that many: TCP hands out queued bytes
    /// before it reports an error or the end of the stream. That lets the
    /// host size memory before reading into it: the guest's, for one copy.
    /// Always 0 over TLS, whose bytes are decrypted before anyone reads
    /// them, so `try_read` is the way.
    pub fn waiting(&self) -> io::Result<usize> {
        if self.is_tls() {
            return Ok(0);
        }
        let waiting = rustix::io::ioctl_fionread(self.stream().ok_or(io::ErrorKind::NotConnected)?)?;
        Ok(usize::try_from(waiting).unwrap_or(usize::MAX))
    }

    /// Reads bytes that `waiting` reported into `buffer`, which is no larger
    /// than that; `all_waiting` when it takes every one of them, so that
    /// the socket's readiness ends with the read.
    pub fn read_waiting(&self, buffer: &mut [u8], all_waiting: bool) -> io::Result<usize> {
        self.read_into(buffer, all_waiting)
    }

    fn read_into(&self, buffer: &mut [u8], all_waiting: bool) -> io::Result<usize> {
        let Some(stream) = self.stream() else { return Err(io::ErrorKind::WouldBlock.into()) };
        let tls = self.is_tls();
        let result = match tls {
            true => self.state().tls.as_deref_mut().map_or(Ok(0), |tls| tls.read(stream, buffer)),
            false => stream.try_read(buffer),
        };
        match &result {
            Ok(0) => self.state().advance(Phase::PeerEnded),
            Ok(n) => {
                // Not after a TLS read: it stops at a socket read that
                // would block, which forgets the readiness itself, or with
                // its buffer full, when the socket may hold more.
                if !tls && (*n < buffer.len() || all_waiting) {
                    self.forget_readable();
                }
                self.last_read.store(*n, Ordering::Relaxed);
                self.traffic.received.inc_by(*n as u64);
                self.activity.mark();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The reader reports the error to the guest.
            Err(_) => self.state().fail(),
        }
        result
    }

    /// How many bytes the last read that got any took: a large one says the
    /// peer streams, and the next read is worth a `waiting` call.
    pub fn last_read(&self) -> usize {
        self.last_read.load(Ordering::Relaxed)
    }

    /// After a read that left room in its buffer, the kernel had no more
    /// input: forgets that the socket was readable, as a read that would
    /// block does, so that the task waits for the next input rather than
    /// asking the kernel once more only to hear it has none (a system call
    /// per message saved; libevent's level-triggered loop makes none
    /// either). Input that arrives after the read is a new readiness event,
    /// which the reactor records after this: its I/O driver runs on this
    /// thread, between tasks, so it cannot record one in between.
    fn forget_readable(&self) {
        if let Some(stream) = self.stream() {
            stream.forget_readable();
        }
    }

    /// Sends queued output until the socket is full or the queue empty, then
    /// performs a requested write shutdown.
    fn flush(&self) {
        let Some(stream) = self.stream() else { return };
        let mut state = self.state();
        let sent = if state.tls.is_some() { self.send_tls(&mut state, stream) } else { self.send(&mut state, stream) };
        if let Err(e) = sent {
            tracing::debug!(conn = self.id, error = %e, "write failed");
            state.write_failed(e);
        }
        if state.backpressure && state.output.len() <= self.limits.pause_reading_at / 2 {
            tracing::debug!(conn = self.id, "output drained: reading resumed");
            state.backpressure = false;
        }
        if state.output.is_empty() && state.write_side == WriteSide::ShutdownRequested && state.phase != Phase::Failed {
            // Over TLS, end-of-stream is `close_notify` first, sent before
            // the socket's end; flushing again once writable if the socket
            // is full.
            if let Some(tls) = state.tls.as_deref_mut() {
                tls.close_notify();
                match tls.send(stream) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => return state.write_failed(e),
                }
            }
            state.write_side = WriteSide::Shut;
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// Sends queued output until the socket is full (`Ok`) or the queue
    /// empty; `Err` if the socket failed.
    fn send(&self, state: &mut State, stream: &Stream) -> io::Result<()> {
        while !state.output.is_empty() && state.phase != Phase::Failed {
            match state.output.send_with(|slices| stream.try_write_vectored(slices)) {
                Ok(n) => {
                    self.activity.mark();
                    self.traffic.sent.inc_by(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `send` over TLS: records first, then queued plaintext encrypted as
    /// rustls's buffer takes it, until the socket is full or nothing is
    /// left. Plaintext stays in the queue, where the output caps count it,
    /// until rustls takes it.
    fn send_tls(&self, state: &mut State, stream: &Stream) -> io::Result<()> {
        let State { output, tls, .. } = state;
        let Some(tls) = tls.as_deref_mut() else { return Ok(()) };
        loop {
            match tls.send(stream) {
                Ok(()) => self.activity.mark(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
            if output.is_empty() {
                return Ok(());
            }
            match output.send_with(|slices| tls.write_vectored(slices)) {
                Ok(n) => {
                    self.traffic.sent.inc_by(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until there is input to read, the idle sweep expired the
    /// connection, or it is over, sending queued output meanwhile.
    pub async fn ready(&self) -> Ready {
        loop {
            let (want_read, want_write, want_room, plaintext_held) = {
                let mut state = self.state();
                let output_pending = state.output_pending();
                if state.phase == Phase::Failed || (state.closing.is_some() && !output_pending) {
                    return Ready::Finished;
                }
                // A connection closing (the guest's doing, a trap's, or the
                // shutdown timeout's) waits only for its output to be sent.
                if self.activity.take_expired() && state.closing.is_none() {
                    return Ready::IdleTimeout;
                }
                // Drained to the guest's watermark: it may write again once
                // the host has output memory to spare.
                let drained =
                    state.drain == Drain::Owed && state.closing.is_none() && state.output.len() <= state.drain_low();
                if drained && self.limits.budget.room() > 0 {
                    state.drain = Drain::Idle;
                    return Ready::Drained;
                }
                let shutdown_pending = state.write_side == WriteSide::ShutdownRequested;
                let wants_input = state.wants_input();
                // Plaintext rustls holds already: no readiness will tell.
                let plaintext_held = wants_input && state.tls.as_ref().is_some_and(|tls| tls.has_plaintext());
                (wants_input, output_pending || shutdown_pending, drained, plaintext_held)
            };
            if plaintext_held {
                // A wait on the socket's readiness spends tokio's budget for
                // this task; this path must too, or a connection whose
                // client keeps every read full never yields the thread, and
                // the reactor's other connections starve.
                tokio::task::consume_budget().await;
                return Ready::Readable;
            }
            let wait = if want_room {
                // Only while the host's output memory is full, which no
                // connection reaches in ordinary work: boxed, so that the
                // wait every round trip makes stays small.
                Box::pin(self.wait_or_room(want_read, want_write)).await
            } else {
                std::future::poll_fn(|cx| self.poll_wait(cx, want_read, want_write)).await
            };
            match wait {
                Wait::StateChanged => {}
                Wait::Writable => self.flush(),
                Wait::Readable => return Ready::Readable,
            }
        }
    }

    /// Waits as `ready` does, or until the host's output memory has room.
    async fn wait_or_room(&self, want_read: bool, want_write: bool) -> Wait {
        tokio::select! {
            wait = std::future::poll_fn(|cx| self.poll_wait(cx, want_read, want_write)) => wait,
            () = self.limits.budget.until_room() => Wait::StateChanged,
        }
    }

    /// One look at what the task waits for, in order: a state change from a
    /// guest call, room to send queued output, input. The socket's own
    /// readiness slots serve, not `readable()` futures: only this task polls
    /// them, so they need no waiter list.
    fn poll_wait(&self, cx: &mut Context<'_>, want_read: bool, want_write: bool) -> Poll<Wait> {
        if self.wake.poll_woken(cx) {
            return Poll::Ready(Wait::StateChanged);
        }
        // Not connected yet: `attach` wakes the task.
        let Some(stream) = self.stream() else { return Poll::Pending };
        // An error here means the reactor is going away; the write or read
        // that follows meets it too and marks the connection failed.
        if want_write && stream.poll_write_ready(cx).is_ready() {
            return Poll::Ready(Wait::Writable);
        }
        if want_read && stream.poll_read_ready(cx).is_ready() {
            return Poll::Ready(Wait::Readable);
        }
        Poll::Pending
    }

    /// Whether bytes moved, for the idle sweep.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The idle sweep found no bytes moved for `--idle-timeout`: `ready`
    /// says so once, unless the connection is closing by then.
    pub fn expire_idle(&self) {
        if !self.is_closing() {
            self.activity.expire();
            self.wake.wake();
        }
    }

    /// The error of a failed write the guest should hear of as an error
    /// event, once: `None` if no write failed, or if the guest closed the
    /// connection or already had its one end (end of stream, a timeout).
    pub fn take_unreported_failure(&self) -> Option<io::Error> {
        let mut state = self.state();
        let error = state.unreported_failure.take()?;
        state.closing.is_none().then_some(error)
    }

    /// Ends the connection: sends end-of-stream, then reads and discards what
    /// the peer still sends until it closes too (at most `LINGER`), so that
    /// the peer receives every byte written before the socket is dropped.
    pub async fn finish(&self) {
        let phase = self.state().phase;
        let Some(stream) = self.stream().filter(|_| phase != Phase::Failed) else { return };
        if self.is_tls() {
            Box::pin(self.close_notify(stream)).await;
        }
        let _ = stream.shutdown(Shutdown::Write);
        if phase == Phase::PeerEnded {
            return;
        }
        linger(stream, LINGER).await;
    }

    /// Sends `close_notify`, and whatever records wait before it, within
    /// `LINGER`: a TLS peer then knows that the stream ended here.
    async fn close_notify(&self, stream: &Stream) {
        let send = async {
            loop {
                {
                    let mut state = self.state();
                    let Some(tls) = state.tls.as_deref_mut() else { return };
                    tls.close_notify();
                    match tls.send(stream) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        _ => return,
                    }
                }
                if stream.writable().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, send).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn connected() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, address) = listener.accept().await.unwrap();
        let limits = limits(1 << 16, 1 << 20, 1 << 30);
        (Connection::new(1, stream.into(), address.into(), None, limits, Traffic::default()).unwrap(), peer)
    }

    fn limits(pause_reading_at: usize, cap: usize, budget: usize) -> Arc<OutputLimits> {
        Arc::new(OutputLimits { pause_reading_at, cap, budget: Arc::new(OutputBudget::new(budget)) })
    }

    async fn readable(conn: &Connection) -> Ready {
        tokio::time::timeout(Duration::from_secs(5), conn.ready()).await.expect("input is reported")
    }

    /// The idle sweep's expiry is reported once, and not to a connection
    /// that closed meanwhile: that one only finishes.
    #[tokio::test]
    async fn an_idle_expiry_is_reported_once_and_not_once_closing() {
        let (conn, _peer) = connected().await;
        // A new socket counts as readable until a read finds it empty.
        let empty = conn.try_read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        assert!(conn.ready().now_or_never().is_none(), "nothing to do yet");
        conn.expire_idle();
        assert_eq!(conn.ready().now_or_never(), Some(Ready::IdleTimeout));
        assert!(conn.ready().now_or_never().is_none(), "reported once");

        conn.expire_idle();
        conn.close(CloseReason::GuestClosed);
        assert_eq!(conn.ready().now_or_never(), Some(Ready::Finished));
        assert_eq!(conn.close_reason(), CloseReason::GuestClosed);
    }

    /// `waiting` counts the bytes the socket holds. Reading part of them
    /// keeps the socket readable; reading all of them ends that, with no
    /// read that finds it empty.
    #[tokio::test]
    async fn waiting_counts_queued_bytes_and_reading_them_all_ends_readiness() {
        let (conn, mut peer) = connected().await;
        peer.write_all(&[7; 300]).await.unwrap();
        assert_eq!(readable(&conn).await, Ready::Readable);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while conn.waiting().unwrap() < 300 {
            assert!(std::time::Instant::now() < deadline, "300 bytes arrive");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(conn.waiting().unwrap(), 300);

        let mut part = [0u8; 100];
        assert_eq!(conn.read_waiting(&mut part, false).unwrap(), 100);
        assert_eq!(conn.ready().now_or_never(), Some(Ready::Readable), "200 bytes are left");
        assert_eq!(conn.waiting().unwrap(), 200);
        let mut rest = [0u8; 200];
        assert_eq!(conn.read_waiting(&mut rest, true).unwrap(), 200);
        assert_eq!(conn.last_read(), 200);
        assert!(conn.ready().now_or_never().is_none(), "all read: nothing to report");
        assert_eq!(conn.waiting().unwrap(), 0);
    }

    /// A read that leaves room in its buffer ends the socket's readiness,
    /// so no read is tried only to block; input that comes after is still
    /// reported. A read that fills its buffer keeps it, for what is left.
    #[tokio::test]
    async fn a_short_read_waits_for_new_input_and_a_full_one_reads_on() {
        let (conn, mut peer) = connected().await;
        let mut buffer = [0u8; 64];

        peer.write_all(b"ping").await.unwrap();
        assert_eq!(readable(&conn).await, Ready::Readable);
        assert_eq!(conn.try_read(&mut buffer).unwrap(), 4);
        assert!(conn.ready().now_or_never().is_none(), "the socket is empty: nothing to read");

        peer.write_all(&[7; 100]).await.unwrap();
        assert_eq!(readable(&conn).await, Ready::Readable);
        // Wait for all 100 bytes, so that the first read fills the buffer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(conn.try_read(&mut buffer).unwrap(), 64);
        assert_eq!(conn.ready().now_or_never(), Some(Ready::Readable), "36 bytes are left");
        assert_eq!(conn.try_read(&mut buffer).unwrap(), 36);
        assert!(conn.ready().now_or_never().is_none());
    }

    /// A TLS connection over loopback: the host's end as the host wraps an
    /// accepted one after its handshake, and a rustls client's.
    async fn tls_connected(cap: usize) -> (Arc<Connection>, tokio_rustls::client::TlsStream<TcpStream>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key.into())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = TcpStream::connect(listener.local_addr().unwrap());
        let (dialed, (stream, address)) = tokio::join!(dial, async { listener.accept().await.unwrap() });
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let (client, server) = tokio::join!(connector.connect(name, dialed.unwrap()), acceptor.accept(stream));
        let (stream, session) = server.unwrap().into_inner();
        let limits = limits(cap / 2, cap, 1 << 30);
        let conn =
            Connection::new(1, stream.into(), address.into(), Some(session), limits, Traffic::default()).unwrap();
        (Arc::new(conn), client.unwrap())
    }

    /// `len` bytes counting up modulo `period`: a stream in which a lost,
    /// doubled or misplaced piece shows.
    fn pattern(len: u32, period: u32) -> Vec<u8> {
        (0..len).map(|n| (n % period) as u8).collect()
    }

    /// Runs `conn`'s task as the host does, reading into buffers of
    /// `buffer_len` and appending to `input`, until it is over; then
    /// finishes it.
    async fn serve(conn: Arc<Connection>, input: Arc<Mutex<Vec<u8>>>, buffer_len: usize) {
        let mut buffer = vec![0u8; buffer_len];
        loop {
            match conn.ready().await {
                Ready::Readable => match conn.try_read(&mut buffer) {
                    Ok(0) => conn.close(CloseReason::PeerClosed),
                    Ok(n) => input.lock().unwrap().extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read failed: {e}"),
                },
                Ready::Finished => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        conn.finish().await;
    }

    /// Plaintext goes both ways through TLS, in order, past the output cap
    /// (writes refused at the cap are retried, as a guest does after
    /// `on-drain`), and the close sends `close_notify` after the last byte:
    /// the client reads everything and a clean end, not a cut.
    ///
    /// Small reads leave rustls holding plaintext between them; large ones
    /// take many records from one socket read, records cut in two by it
    /// among them.
    #[tokio::test]
    async fn tls_carries_every_byte_both_ways_and_ends_with_close_notify() {
        for buffer_len in [1000, 64 * 1024, 256 * 1024] {
            tls_carries_every_byte(buffer_len).await;
        }
    }

    async fn tls_carries_every_byte(buffer_len: usize) {
        let (conn, mut client) = tls_connected(64 * 1024).await;
        let input = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(conn.clone(), input.clone(), buffer_len));
        let sent = pattern(300_000, 251);
        let reply = pattern(1_000_000, 241);
        let reader = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            let mut received = Vec::new();
            // A cut stream (no close_notify) is an error here.
            client.read_to_end(&mut received).await.expect("a clean end");
            (received, sent)
        });
        let mut rest = &reply[..];
        while !rest.is_empty() {
            let room = conn.write_room().min(rest.len()).min(10_000);
            if room == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            conn.write(&rest[..room]).unwrap();
            rest = &rest[room..];
        }
        assert!(conn.queued() <= 64 * 1024, "the cap holds for the plaintext queued");
        // Closing discards input not read yet: wait for all of it first.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while input.lock().unwrap().len() < 300_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        conn.close(CloseReason::GuestClosed);
        let (received, sent) = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
        assert!(received == reply, "{} bytes of {} arrive, in order", received.len(), reply.len());
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        let input = input.lock().unwrap();
        assert!(*input == sent, "{} bytes of {} read, in order", input.len(), sent.len());
    }

    /// One read takes as many records as the socket holds and the buffer
    /// fits, up to `PLAINTEXT_PER_READ` of plaintext, rather than one
    /// record of at most 16 KiB a read; then the end of the stream.
    #[tokio::test]
    async fn a_tls_read_takes_every_record_that_fits() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let sent = pattern(100_000, 251);
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        // Until every record has reached the socket (loopback is quick).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut received = Vec::new();
        let mut reads = Vec::new();
        loop {
            assert_eq!(conn.ready().await, Ready::Readable);
            match conn.try_read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    reads.push(n);
                    received.extend_from_slice(&buffer[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        assert!(received == sent, "{} bytes of {} read, in order", received.len(), sent.len());
        let first = super::tls::PLAINTEXT_PER_READ;
        assert_eq!(reads, [first, sent.len() - first], "four whole records, then the other three");
    }

    /// A write larger than rustls's buffer of records goes on being
    /// encrypted and sent while the socket takes records, rather than
    /// leaving the rest to the queue (a copy, and a later pass).
    #[tokio::test]
    async fn a_large_tls_write_is_sent_while_the_socket_takes_it() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let sent = pattern(150_000, 251);
        conn.write(&sent).unwrap();
        assert_eq!(conn.queued(), 0, "rustls holds at most 64 KiB, the socket took the rest");
        let mut received = vec![0u8; sent.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut received)).await.unwrap().unwrap();
        assert!(received == sent);
    }

    /// A stream cut without `close_notify` (the socket's end right after
    /// the records) ends as a plain connection's does: every byte, then
    /// the end of the stream.
    #[tokio::test]
    async fn a_tls_stream_cut_without_close_notify_ends_after_every_byte() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let sent = pattern(50_000, 251);
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        client.get_mut().0.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let input = Arc::new(Mutex::new(Vec::new()));
        tokio::time::timeout(Duration::from_secs(5), serve(conn.clone(), input.clone(), 256 * 1024)).await.unwrap();
        assert_eq!(conn.close_reason(), CloseReason::PeerClosed);
        assert!(*input.lock().unwrap() == sent, "{} bytes of {} read", input.lock().unwrap().len(), sent.len());
    }

    /// Bytes that are no TLS record, after good ones read in the same
    /// socket read: the read hands over the good records' plaintext, and
    /// the next read fails.
    #[tokio::test]
    async fn a_tls_error_after_plaintext_waits_for_the_next_read() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let sent = pattern(50_000, 251);
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        // A record header announcing an alert of impossible length.
        client.get_mut().0.write_all(&[21, 3, 3, 0xff, 0xff, 0, 0, 0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buffer = vec![0u8; 256 * 1024];
        assert_eq!(conn.ready().await, Ready::Readable);
        let n = conn.try_read(&mut buffer).expect("the good records' plaintext first");
        assert!(buffer[..n] == sent[..], "{n} bytes of {} read", sent.len());
        assert_eq!(conn.ready().await, Ready::Readable, "the error is the next read's");
        let error = conn.try_read(&mut buffer).expect_err("then the error");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    /// A connection whose every read fills its buffer, so that rustls
    /// always holds more plaintext, still lets the reactor's other tasks
    /// run: its waits spend tokio's budget as socket waits do. Without that
    /// it would read all of its input before anything else ran.
    #[tokio::test]
    async fn a_tls_connection_that_always_has_plaintext_yields_to_others() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let sent = vec![7u8; 200_000];
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
            client
        });
        let client = writer.await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let other_ran = Arc::new(AtomicBool::new(false));
        let flag = other_ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
        // Single bytes: each read fills its buffer.
        let mut read_before_other = None;
        let mut total = 0;
        while total < 200_000 {
            assert_eq!(conn.ready().await, Ready::Readable);
            total += conn.try_read(&mut [0u8; 1]).unwrap();
            if read_before_other.is_none() && other_ran.load(Ordering::Relaxed) {
                read_before_other = Some(total);
            }
        }
        let read_before_other = read_before_other.expect("the other task ran before the input was all read");
        assert!(read_before_other < 10_000, "the other task waited for {read_before_other} reads");
        drop(client);
    }

    /// `shutdown_write` over TLS sends `close_notify`: the client sees the
    /// end of the stream, and can still send.
    #[tokio::test]
    async fn tls_shutdown_write_sends_close_notify_and_reading_goes_on() {
        let (conn, mut client) = tls_connected(1 << 20).await;
        let input = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(conn.clone(), input.clone(), 1000));
        conn.write(b"bye").unwrap();
        conn.shutdown_write().unwrap();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut received)).await.unwrap().unwrap();
        assert_eq!(received, b"bye");
        client.write_all(b"still here").await.unwrap();
        client.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert_eq!(*input.lock().unwrap(), b"still here");
    }
}
