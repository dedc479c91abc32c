//! One accepted TCP connection: its socket, the output the guest queued, and
//! the state machine that flushes and closes it without losing a byte.
//!
//! Guest calls (`write`, `close`, ...) change the state synchronously and
//! wake the connection's task; the task (`Connection::ready`) sends queued
//! output as the peer takes it and reports when there is input to read.
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::bindings::ErrorCode;
use crate::idle::Activity;
use crate::stats::Traffic;

/// How long a closing connection keeps reading (and discarding) what the peer
/// still sends, so that closing with unread input does not send a reset that
/// could destroy output the peer has not read yet.
const LINGER: Duration = Duration::from_secs(2);

/// A connection shared by its task and the guest's handles to it.
#[derive(Debug)]
pub struct Connection {
    /// Names the connection in logs and to the guest; never reused.
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// Changed by guest calls and by the task; never held across an await.
    state: Mutex<State>,
    /// Wakes the task when `state` changes.
    wake: Wake,
    /// Whether bytes moved, for the idle sweep.
    activity: Activity,
    /// Bytes the last read took (`last_read`).
    last_read: AtomicUsize,
    /// Queued output at which reading stops until half of it is sent.
    write_high_watermark: usize,
    /// The component's byte counts.
    traffic: Traffic,
}

/// What ended a connection: the first close decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent end-of-stream, and the guest closed (or the host did).
    PeerClosed,
    /// Reading or writing failed (a reset, say), or the guest closed after
    /// being told so.
    Error,
    /// The guest closed it while the peer was still sending.
    GuestClosed,
    /// A callback returned an error.
    GuestError,
    /// The instance serving it trapped, or no instance could be made for it.
    Trap,
    /// It passed no bytes for `--idle-timeout`.
    IdleTimeout,
    /// The host was stopping and the shutdown timeout passed.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in the order `Stats` counts them.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::PeerClosed,
        CloseReason::Error,
        CloseReason::GuestClosed,
        CloseReason::GuestError,
        CloseReason::Trap,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Error => "error",
            CloseReason::GuestClosed => "guest_closed",
            CloseReason::GuestError => "guest_error",
            CloseReason::Trap => "trap",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bytes the guest wrote that the socket has not taken yet.
    output: BytesMut,
    write_side: WriteSide,
    /// The guest (or the host) asked to close, and why: no callback
    /// follows, and the connection ends once `output` is sent.
    closing: Option<CloseReason>,
    /// The guest was told the connection timed out.
    timed_out: bool,
    reading_paused: bool,
    /// The peer sent end-of-stream.
    read_eof: bool,
    /// Reading or writing failed: the socket is unusable.
    failed: bool,
    /// A write failed and the guest has not been told yet (a failed read is
    /// reported by the caller of `try_read` at once).
    unreported_failure: Option<ErrorCode>,
    /// Reading stopped because `output` reached the high watermark: the
    /// peer is not reading what it is sent.
    backpressure: bool,
    /// The idle sweep found no bytes moved for `--idle-timeout`, and the
    /// task has not acted on it yet.
    idle_expired: bool,
}

impl State {
    fn write_failed(&mut self, error: &io::Error) {
        if !self.failed {
            self.failed = true;
            self.unreported_failure = Some(crate::host_api::error_code(error));
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum WriteSide {
    #[default]
    Open,
    /// `shutdown-write` was called; the FIN goes out once `output` is sent.
    ShutdownRequested,
    Shut,
}

/// The connection task's wake-up for state changes. Only that task waits,
/// so a flag and one waker slot do what a `Notify` would, without its lock
/// and waiter list on every wait.
#[derive(Debug, Default)]
struct Wake {
    /// Set by a change the task has not looked at yet.
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl Wake {
    /// Tells the task the state changed; remembered if it is not waiting.
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the state changed since the last look; if not, `cx` is woken
    /// when it does.
    fn poll_woken(&self, cx: &mut Context<'_>) -> bool {
        // Registered before the flag is read, so a change in between is
        // seen either now or as a wake-up.
        self.waker.register(cx.waker());
        self.woken.swap(false, Ordering::Acquire)
    }
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
    /// The connection is over: everything written has been sent, or the
    /// socket failed.
    Finished,
}

impl Connection {
    /// Wraps an accepted socket whose bytes count in `traffic`.
    /// Reading pauses while more than `write_buffer` bytes of output wait.
    pub fn new(id: u64, stream: TcpStream, peer: SocketAddr, write_buffer: usize, traffic: Traffic) -> io::Result<Self> {
        let local = stream.local_addr()?;
        // Request/response protocols want each write on the wire at once.
        stream.set_nodelay(true)?;
        Ok(Connection {
            id,
            stream,
            peer,
            local,
            state: Mutex::new(State::default()),
            wake: Wake::default(),
            activity: Activity::default(),
            last_read: AtomicUsize::new(0),
            write_high_watermark: write_buffer.max(1),
            traffic,
        })
    }

    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The local end's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a host bug; the state is
        // still consistent enough to close the connection, so carry on.
        crate::sync::lock(&self.state)
    }

    /// Queues `data` for the peer, sending at once what the socket takes.
    pub fn write(&self, data: &[u8]) -> Result<(), ErrorCode> {
        let mut state = self.state();
        if state.closing.is_some() {
            return Err(ErrorCode::Closed);
        }
        if state.failed {
            return Err(ErrorCode::ConnectionReset);
        }
        if state.write_side != WriteSide::Open {
            return Err(ErrorCode::InvalidState);
        }
        let mut rest = data;
        if state.output.is_empty() {
            match self.stream.try_write(data) {
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
                    state.write_failed(&e);
                    self.wake.wake();
                    return Ok(());
                }
            }
        }
        if !rest.is_empty() {
            state.output.extend_from_slice(rest);
            if state.output.len() >= self.write_high_watermark && !state.backpressure {
                tracing::debug!(conn = self.id, queued = state.output.len(), "peer not reading: reading paused");
                state.backpressure = true;
            }
            self.wake.wake();
        }
        Ok(())
    }

    /// Sends end-of-stream once the queued output is sent.
    pub fn shutdown_write(&self) -> Result<(), ErrorCode> {
        let mut state = self.state();
        if state.closing.is_some() {
            return Err(ErrorCode::Closed);
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
        let reason = {
            let state = self.state();
            if state.failed {
                CloseReason::Error
            } else if state.timed_out {
                CloseReason::IdleTimeout
            } else if state.read_eof {
                CloseReason::PeerClosed
            } else {
                CloseReason::GuestClosed
            }
        };
        self.close(reason);
    }

    /// Marks the connection timed out, before the guest is told so.
    pub fn time_out(&self) {
        self.state().timed_out = true;
    }

    /// Whether `close` was called: no more callbacks may be delivered.
    pub fn is_closing(&self) -> bool {
        self.state().closing.is_some()
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
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD stores one int through the pointer, which points
        // at one; the descriptor is the connection's own open socket.
        let r = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::FIONREAD, &mut waiting) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(waiting).unwrap_or(0))
    }

    /// Reads bytes that `waiting` reported into `buffer`, which is no larger
    /// than that; `all_waiting` when it takes every one of them, so that
    /// the socket's readiness ends with the read.
    pub fn read_waiting(&self, buffer: &mut [u8], all_waiting: bool) -> io::Result<usize> {
        self.read_into(buffer, all_waiting)
    }

    fn read_into(&self, buffer: &mut [u8], all_waiting: bool) -> io::Result<usize> {
        let result = self.stream.try_read(buffer);
        match &result {
            Ok(0) => self.state().read_eof = true,
            Ok(n) => {
                if *n < buffer.len() || all_waiting {
                    self.forget_readable();
                }
                self.last_read.store(*n, Ordering::Relaxed);
                self.traffic.received.inc_by(*n as u64);
                self.activity.mark();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.state().failed = true,
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
        let _ = self.stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    }

    /// Sends queued output until the socket is full or the queue empty, then
    /// performs a requested write shutdown.
    fn flush(&self) {
        let mut state = self.state();
        while !state.output.is_empty() && !state.failed {
            match self.stream.try_write(&state.output) {
                Ok(n) => {
                    state.output.advance(n);
                    self.activity.mark();
                    self.traffic.sent.inc_by(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "write failed");
                    state.write_failed(&e);
                }
            }
        }
        if state.backpressure && state.output.len() <= self.write_high_watermark / 2 {
            tracing::debug!(conn = self.id, "output drained: reading resumed");
            state.backpressure = false;
        }
        if state.output.is_empty() && state.write_side == WriteSide::ShutdownRequested {
            state.write_side = WriteSide::Shut;
            let _ = socket2::SockRef::from(&self.stream).shutdown(Shutdown::Write);
        }
    }

    /// Waits until there is input to read, the idle sweep expired the
    /// connection, or it is over, sending queued output meanwhile.
    pub async fn ready(&self) -> Ready {
        loop {
            let (want_read, want_write) = {
                let mut state = self.state();
                let output_pending = !state.output.is_empty();
                if state.failed || (state.closing.is_some() && !output_pending) {
                    return Ready::Finished;
                }
                // A connection closing (the guest's doing, a trap's, or the
                // shutdown timeout's) waits only for its output to be sent.
                if std::mem::take(&mut state.idle_expired) && state.closing.is_none() {
                    return Ready::IdleTimeout;
                }
                let shutdown_pending = state.write_side == WriteSide::ShutdownRequested;
                let want_read =
                    state.closing.is_none() && !state.reading_paused && !state.read_eof && !state.backpressure;
                (want_read, output_pending || shutdown_pending)
            };
            match std::future::poll_fn(|cx| self.poll_wait(cx, want_read, want_write)).await {
                Wait::StateChanged => {}
                Wait::Writable => self.flush(),
                Wait::Readable => return Ready::Readable,
            }
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
        // An error here means the reactor is going away; the write or read
        // that follows meets it too and marks the connection failed.
        if want_write && self.stream.poll_write_ready(cx).is_ready() {
            return Poll::Ready(Wait::Writable);
        }
        if want_read && self.stream.poll_read_ready(cx).is_ready() {
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
        let mut state = self.state();
        if state.closing.is_none() {
            state.idle_expired = true;
            self.wake.wake();
        }
    }

    /// The error of a failed write the guest should hear of as an error
    /// event, once: `None` if no write failed, or if the guest closed the
    /// connection or already had its one event (end of stream).
    pub fn take_unreported_failure(&self) -> Option<ErrorCode> {
        let mut state = self.state();
        let code = state.unreported_failure.take()?;
        (state.closing.is_none() && !state.read_eof).then_some(code)
    }

    /// Marks the socket failed after a read error the caller saw.
    pub fn error_event(&self, error: &io::Error) -> ErrorCode {
        self.state().failed = true;
        crate::host_api::error_code(error)
    }

    /// Ends the connection: sends end-of-stream, then reads and discards what
    /// the peer still sends until it closes too (at most `LINGER`), so that
    /// the peer receives every byte written before the socket is dropped.
    pub async fn finish(&self) {
        let (failed, read_eof) = {
            let state = self.state();
            (state.failed, state.read_eof)
        };
        if failed {
            return;
        }
        let _ = socket2::SockRef::from(&self.stream).shutdown(Shutdown::Write);
        if read_eof {
            return;
        }
        let drain = async {
            // On the heap: an array here would sit in every connection
            // task's future, idle or not, for the whole connection.
            let mut sink = vec![0u8; 4096];
            loop {
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.stream.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
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
        (Connection::new(1, stream, address, 1 << 16, Traffic::default()).unwrap(), peer)
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
