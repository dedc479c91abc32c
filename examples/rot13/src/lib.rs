//! The rot13 server from the libevent book, as an evconn handler: every whole
//! line a client sends comes back rot13-encoded, with its own line ending.
//!
//! One instance serves many connections (`--isolation shared`, the default),
//! so each connection's unfinished line lives in a map keyed by its id.
use std::collections::HashMap;

use evconn_guest::lines::LineBuffer;
use evconn_guest::{Connection, ConnectionEvent, Handler};

/// The longest line a client may send; a longer one closes its connection,
/// so a client that never sends a newline cannot grow the instance's memory.
const MAX_LINE: usize = 16 * 1024;

#[derive(Default)]
struct Rot13 {
    /// Each open connection's bytes not yet answered, by connection id; an
    /// entry lives from the connection's first data to its end.
    pending: HashMap<u64, LineBuffer>,
}

impl Handler for Rot13 {
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let answered = self.answer(conn, &data);
        if answered.is_err() {
            // The error ends the connection and no callback follows: forget it now.
            self.pending.remove(&conn.id());
        }
        answered
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.pending.remove(&conn.id());
        conn.close();
        Ok(())
    }
}

impl Rot13 {
    /// Takes in `data` and writes back every line it completes, rot13-encoded.
    fn answer(&mut self, conn: &Connection, data: &[u8]) -> Result<(), String> {
        let lines = self.pending.entry(conn.id()).or_insert_with(|| LineBuffer::new(MAX_LINE));
        lines.push(data)?;
        let mut answer = Vec::with_capacity(data.len());
        while let Some(line) = lines.next_line() {
            answer.extend(line.iter().map(|&b| rot13(b)));
        }
        if !answer.is_empty() {
            conn.write(&answer)?;
        }
        Ok(())
    }
}

/// Rotates ASCII letters by 13 places; every other byte stays as it is.
fn rot13(byte: u8) -> u8 {
    match byte {
        b'a'..=b'm' | b'A'..=b'M' => byte + 13,
        b'n'..=b'z' | b'N'..=b'Z' => byte - 13,
        _ => byte,
    }
}

evconn_guest::export_handler!(Rot13);
