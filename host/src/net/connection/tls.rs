//! A connection's TLS session, after the handshake: plaintext in and out
//! through rustls, records to and from the socket without blocking. The
//! connection keeps the guest's unsent plaintext in its own output queue,
//! where the output caps count it; the session holds at most rustls's
//! buffer limit of records (64 KiB by default) on top.
use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;

use crate::net::Stream;

/// One TLS session over a connection's socket.
#[derive(Debug)]
pub(super) struct TlsSession {
    conn: ServerConnection,
    /// The last read filled its buffer: rustls may hold more plaintext,
    /// which no socket readiness will announce.
    plaintext_left: bool,
    /// `close_notify` has been queued: nothing more may be written.
    closed: bool,
}

impl TlsSession {
    pub(super) fn new(conn: ServerConnection) -> Self {
        // The handshake's last read may have brought the client's first
        // records with it (a TLS 1.3 client sends right after its
        // Finished): rustls holds them, and the socket will not become
        // readable for them, so the first read looks without waiting.
        TlsSession { conn, plaintext_left: true, closed: false }
    }

    /// The session rustls negotiated, for what the guest may ask of it.
    pub(super) fn rustls(&self) -> &ServerConnection {
        &self.conn
    }

    /// Reads plaintext into `buffer`, taking records from `stream` as
    /// needed. `Ok(0)` is the end of the stream: the peer's `close_notify`,
    /// or the socket's end without one (which most servers accept, as
    /// plain TCP connections end). `WouldBlock` when the socket has no
    /// complete record. A protocol error queues an alert for the peer and
    /// sends what it can of it.
    pub(super) fn read(&mut self, stream: &Stream, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buffer) {
                Ok(n) => {
                    self.plaintext_left = n == buffer.len();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.plaintext_left = false;
            // Ok(0): the socket's end, which the reader reports next time
            // round.
            self.conn.read_tls(&mut SocketIo(stream))?;
            if let Err(error) = self.conn.process_new_packets() {
                let _ = self.send(stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Whether rustls may hold plaintext the guest has not read.
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
