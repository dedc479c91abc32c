//! A bulk sender that writes only as fast as its reader reads: a client
//! sends a number N and a newline; the server sends N bytes of a pattern
//! (`PATTERN` over and over) and closes.
//!
//! It never writes more than the host takes: it writes what `write-room`
//! allows, and when that is nothing it waits for `on-drain`, which the host
//! calls once it holds `RESUME_BELOW` bytes or fewer of this connection's
//! output. So a client that reads slowly holds the host to its output cap,
//! however much it asked for, and the instance holds one chunk of the
//! pattern, however many clients it serves.
use std::collections::HashMap;

use evconn_guest::lines::LineBuffer;
use evconn_guest::{Connection, ConnectionEvent, Handler};

/// What is sent, over and over.
const PATTERN: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";

/// The most written at once.
const CHUNK: usize = 64 * 1024;

/// The host's queued output at which it calls `on-drain` again.
const RESUME_BELOW: u64 = 256 * 1024;

/// The longest request line.
const MAX_LINE: usize = 32;

struct Source {
    /// The pattern, repeated to a chunk and one more period, so that a
    /// chunk starting anywhere in the pattern is one slice of it.
    chunk: Vec<u8>,
    /// Each connection that has not asked yet (its partial line) or is
    /// being sent to (what is left).
    streams: HashMap<u64, Stream>,
}

enum Stream {
    /// Waiting for the number.
    Asking(LineBuffer),
    /// Bytes left to send, and how many were sent.
    Sending { left: u64, sent: u64 },
}

impl Default for Source {
    fn default() -> Self {
        Source { chunk: PATTERN.iter().copied().cycle().take(CHUNK + PATTERN.len()).collect(), streams: HashMap::new() }
    }
}

impl Handler for Source {
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let id = conn.id();
        let stream = self.streams.entry(id).or_insert_with(|| Stream::Asking(LineBuffer::new(MAX_LINE)));
        let Stream::Asking(lines) = stream else {
            // What the client sends once it asked is not read.
            return Ok(());
        };
        let pushed = lines.push(&data);
        let line = pushed.map(|()| lines.next_line().map(<[u8]>::to_vec));
        let asked = match line {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(too_long) => {
                self.streams.remove(&id);
                return Err(too_long.into());
            }
        };
        let Some(left) = std::str::from_utf8(&asked).ok().and_then(|text| text.trim().parse::<u64>().ok()) else {
            self.streams.remove(&id);
            conn.write(b"ERR send a number of bytes and a newline\n")?;
            conn.close();
            return Ok(());
        };
        self.streams.insert(id, Stream::Sending { left, sent: 0 });
        conn.set_drain_watermark(Some(RESUME_BELOW));
        self.pump(conn)
    }

    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        self.pump(conn)
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.streams.remove(&conn.id());
        conn.close();
        Ok(())
    }
}

impl Source {
    /// Sends what the host takes now; closes once everything is sent.
    fn pump(&mut self, conn: &Connection) -> Result<(), String> {
        let Some(Stream::Sending { left, sent }) = self.streams.get_mut(&conn.id()) else { return Ok(()) };
        while *left > 0 {
            let room = conn.write_room().min(*left).min(CHUNK as u64) as usize;
            if room == 0 {
                // The host holds all it may: `on-drain` says when to go on.
                return Ok(());
            }
            let start = (*sent % PATTERN.len() as u64) as usize;
            conn.write(&self.chunk[start..start + room])?;
            *left -= room as u64;
            *sent += room as u64;
        }
        self.streams.remove(&conn.id());
        conn.close();
        Ok(())
    }
}

evconn_guest::export_handler!(Source);
