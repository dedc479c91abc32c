//! A connection's TLS session, after the handshake: plaintext in and out
//! through rustls, records to and from the socket without blocking. The
//! connection keeps the guest's unsent plaintext in its own output queue,
//! where the output caps count it; the session holds at most rustls's
//! buffer limit of records (64 KiB by default) on top.
use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;

use crate::net::Stream;

/// The most bytes one TLS record takes on the wire: a 5-byte header and at
/// most 16 KiB of plaintext with 2 KiB of expansion (TLS 1.2's bound, RFC
/// 5246 6.2.3; TLS 1.3's is smaller). Its plaintext is never larger.
const RECORD_MAX: usize = 5 + (1 << 14) + 2048;

/// The most plaintext one read decrypts: four full records, however large
/// the caller's buffer. A plain read of 256 KiB is one copy; here it would
/// be sixteen records decrypted in one connection's turn while the
/// reactor's other connections wait, and a guest's echo of it a burst
/// larger than the peer's receive window, left in the socket to go out as
/// the peer acknowledges. On loopback that sending happens in the peer's
/// time: in the tls suite's bulk test, reads of a quarter the size cut the
/// load generator's CPU per MB by about 15%, for 5-10% more of the host's
/// (docs/performance.md, "TLS termination").
pub(super) const PLAINTEXT_PER_READ: usize = 64 << 10;

thread_local! {
    /// Each reactor thread's buffer for records read from sockets before
    /// rustls takes them: filled and emptied within one read, so one per
    /// thread serves all its connections. A read asks the socket for less
    /// than its plaintext bound (it keeps room for one record rustls may
    /// hold), so this size never limits it.
    static CIPHERTEXT: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; PLAINTEXT_PER_READ].into_boxed_slice());
}

/// One TLS session over a connection's socket.
#[derive(Debug)]
pub(super) struct TlsSession {
    conn: ServerConnection,
    /// The last read left something for the next one that no socket
    /// readiness will announce: plaintext rustls holds, the end of the
    /// stream, an error.
    plaintext_left: bool,
    /// `close_notify` has been queued: nothing more may be written.
    closed: bool,
    /// An error met after a read had taken plaintext: the next read's.
    deferred_error: Option<io::Error>,
}

impl TlsSession {
    pub(super) fn new(conn: ServerConnection) -> Self {
        // The handshake's last read may have brought the client's first
        // records with it (a TLS 1.3 client sends right after its
        // Finished): rustls holds them, and the socket will not become
        // readable for them, so the first read looks without waiting.
        TlsSession { conn, plaintext_left: true, closed: false, deferred_error: None }
    }

    /// The session rustls negotiated, for what the guest may ask of it.
    pub(super) fn rustls(&self) -> &ServerConnection {
        &self.conn
    }

    /// Reads plaintext into `buffer` (at most `PLAINTEXT_PER_READ` of it),
    /// taking records from `stream` until that is full or the socket has
    /// no complete record left: one record holds at most 16 KiB, and a read
    /// per record would cost the guest a callback per record where a plain
    /// connection's reads fill the buffer. `Ok(0)` is the end of the stream: the peer's
    /// `close_notify`, or the socket's end without one (which most servers
    /// accept, as plain TCP connections end). `WouldBlock` when the socket
    /// has no complete record. A protocol error queues an alert for the
    /// peer and sends what it can of it. After plaintext, the end of the
    /// stream or an error waits for the next read.
    pub(super) fn read(&mut self, stream: &Stream, buffer: &mut [u8]) -> io::Result<usize> {
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        let limit = buffer.len().min(PLAINTEXT_PER_READ);
        let buffer = &mut buffer[..limit];
        let mut filled = 0;
        // Whether something is left for the next read without the socket
        // becoming readable: plaintext, the end of the stream, an error.
        self.plaintext_left = true;
        let error = match CIPHERTEXT.with_borrow_mut(|scratch| self.fill(stream, scratch, buffer, &mut filled)) {
            Ok(()) => return Ok(filled),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plaintext_left = false;
                return if filled > 0 { Ok(filled) } else { Err(e) };
            }
            Err(e) => e,
        };
        if filled == 0 {
            return Err(error);
        }
        self.deferred_error = Some(error);
        Ok(filled)
    }

    /// `read`'s work: plaintext into `buffer[filled..]` until it is full
    /// (`Ok`), the stream ends (`Ok`), the socket has nothing more
    /// (`WouldBlock`) or the session fails. Records come from the socket in
    /// reads as large as `scratch` and the room left allow, not in the
    /// pieces of at most one record that rustls reads itself: a system
    /// call per 16 KiB record took a fifth of the host's time in bulk TLS
    /// input.
    fn fill(&mut self, stream: &Stream, scratch: &mut [u8], buffer: &mut [u8], filled: &mut usize) -> io::Result<()> {
        // Records read from the socket that rustls has not taken yet.
        let mut unfed = 0..0;
        loop {
            if *filled == buffer.len() {
                // Every record read fits the buffer, so none is left over.
                debug_assert!(unfed.is_empty());
                return Ok(());
            }
            match self.conn.reader().read(&mut buffer[*filled..]) {
                // The peer's close_notify.
                Ok(0) => return Ok(()),
                Ok(n) => {
                    *filled += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket's end, without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let room = buffer.len() - *filled;
            if !unfed.is_empty() {
                let mut records = &scratch[unfed.clone()];
                let taken = self.conn.read_tls(&mut records)?;
                // Nothing taken: rustls has had close_notify and ignores
                // what follows it.
                unfed = if taken == 0 { 0..0 } else { unfed.start + taken..unfed.end };
            } else if room > RECORD_MAX {
                // rustls holds less than one record now, and no plaintext:
                // the plaintext of what it holds and of `room - RECORD_MAX`
                // bytes more fits `room`, so nothing read is left over.
                let take = (room - RECORD_MAX).min(scratch.len());
                let n = stream.try_read(&mut scratch[..take])?;
                if n == 0 {
                    // The socket's end, which the reader reports next.
                    self.conn.read_tls(&mut io::empty())?;
                }
                unfed = 0..n;
                continue;
            } else {
                self.conn.read_tls(&mut SocketIo(stream))?;
            }
            if let Err(error) = self.conn.process_new_packets() {
                let _ = self.send(stream);
                // The records before the bad one were good: their
                // plaintext goes first.
                while *filled < buffer.len()
                    && let Ok(n @ 1..) = self.conn.reader().read(&mut buffer[*filled..])
                {
                    *filled += n;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Whether the next read may find something without the socket
    /// becoming readable.
    pub(super) fn has_plaintext(&self) -> bool {
        self.plaintext_left
    }

    /// Encrypts as much of `data` as rustls's buffer takes; returns how
    /// many bytes it took.
    pub(super) fn write(&mut self, data: &[u8]) -> usize {
        if self.closed {
            return 0;
        }
        // rustls's writer takes less (or nothing) once its buffer of
        // unsent records is at its limit; it does not fail otherwise.
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// As `write`, for several slices in order; `WouldBlock` when rustls
    /// takes none, so that it reads as a full socket does.
    pub(super) fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let taken = if self.closed { 0 } else { self.conn.writer().write_vectored(slices).unwrap_or(0) };
        if taken == 0 { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(taken) }
    }

    /// Whether records wait to be sent.
    pub(super) fn has_records(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends waiting records until none is left (`Ok`) or the socket is
    /// full (`WouldBlock`).
    pub(super) fn send(&mut self, stream: &Stream) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut SocketIo(stream))?;
        }
        Ok(())
    }

    /// Queues `close_notify`, once: the peer learns that the stream ended
    /// here and was not cut.
    pub(super) fn close_notify(&mut self) {
        if !self.closed {
            self.closed = true;
            self.conn.send_close_notify();
        }
    }
}

/// The socket as rustls reads and writes records: without blocking.
struct SocketIo<'a>(&'a Stream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buffer)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.try_write(data)
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
