//! One TCP connection, accepted or outbound: its socket, the output the
//! guest queued, and the state machine that flushes and closes it without
//! losing a byte.
//!
//! Guest calls (`write`, `close`, ...) change the state synchronously and
//! wake the connection's task; the task (`Connection::ready`) sends queued
//! output as the peer takes it and reports when there is input to read. An
//! outbound connection has no socket until it is connected (`attach`); what
//! the guest writes meanwhile waits in its output.
mod activity;
mod output;
mod state;
mod wake;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

pub use self::activity::Activity;
use self::state::{Drain, Phase, State, WriteSide};
use self::wake::Wake;
use super::budget::OutputBudget;
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
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Socket {
    fn new(stream: TcpStream, peer: SocketAddr) -> io::Result<Self> {
        let local = stream.local_addr()?;
        // Request/response protocols want each write on the wire at once.
        stream.set_nodelay(true)?;
        Ok(Socket { stream, peer, local })
    }
}

/// What an outbound connection reports before it has a socket: 0.0.0.0
/// port 0.
const NO_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

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
    /// output is bounded by `limits`.
    pub fn new(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        limits: Arc<OutputLimits>,
        traffic: Traffic,
    ) -> io::Result<Self> {
        let conn = Self::connecting(id, limits, traffic);
        // Set before the task first waits: nothing to wake it for.
        let _ = conn.socket.set(Socket::new(stream, peer)?);
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
    pub fn attach(&self, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        let socket = Socket::new(stream, peer)?;
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
    fn stream(&self) -> Option<&TcpStream> {
        self.socket.get().map(|socket| &socket.stream)
    }

    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address (0.0.0.0:0 before an outbound one connects).
    pub fn peer(&self) -> SocketAddr {
        self.socket.get().map_or(NO_ADDRESS, |socket| socket.peer)
    }

    /// The local end's address (0.0.0.0:0 before an outbound one connects).
    pub fn local(&self) -> SocketAddr {
        self.socket.get().map_or(NO_ADDRESS, |socket| socket.local)
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
            match stream.try_write(data) {
                Ok(n) => {
                    rest = &data[n..];
                    self.activity.mark();
                    self.traffic.sent.inc_by(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
    pub fn waiting(&self) -> io::Result<usize> {
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
        let result = stream.try_read(buffer);
        match &result {
            Ok(0) => self.state().advance(Phase::PeerEnded),
            Ok(n) => {
                if *n < buffer.len() || all_waiting {
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
            let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        }
    }

    /// Sends queued output until the socket is full or the queue empty, then
    /// performs a requested write shutdown.
    fn flush(&self) {
        let Some(stream) = self.stream() else { return };
        let mut state = self.state();
        while !state.output.is_empty() && state.phase != Phase::Failed {
            match state.output.send_to(stream) {
                Ok(n) => {
                    self.activity.mark();
                    self.traffic.sent.inc_by(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "write failed");
                    state.write_failed(e);
                }
            }
        }
        if state.backpressure && state.output.len() <= self.limits.pause_reading_at / 2 {
            tracing::debug!(conn = self.id, "output drained: reading resumed");
            state.backpressure = false;
        }
        if state.output.is_empty() && state.write_side == WriteSide::ShutdownRequested {
            state.write_side = WriteSide::Shut;
            let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
        }
    }

    /// Waits until there is input to read, the idle sweep expired the
    /// connection, or it is over, sending queued output meanwhile.
    pub async fn ready(&self) -> Ready {
        loop {
            let (want_read, want_write, want_room) = {
                let mut state = self.state();
                let output_pending = !state.output.is_empty();
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
                (state.wants_input(), output_pending || shutdown_pending, drained)
            };
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
        let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
        if phase == Phase::PeerEnded {
            return;
        }
        linger(stream, LINGER).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn connected() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, address) = listener.accept().await.unwrap();
        (Connection::new(1, stream, address, limits(1 << 16, 1 << 20, 1 << 30), Traffic::default()).unwrap(), peer)
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
}
