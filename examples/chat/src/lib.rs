//! A chat room: every line a client sends goes to every other connected
//! client, prefixed with the sender's address; joins and departures are
//! announced.
//!
//! The room is the set of connections one instance serves, so this handler
//! needs `--isolation shared` (the default): under `--isolation connection`
//! each connection has an instance of its own, alone in its room, and sees
//! nobody else.
use std::collections::HashMap;

use evconn_guest::lines::LineBuffer;
use evconn_guest::{Address, Connection, ConnectionEvent, Handler, Listener};

/// The longest line a client may send; a longer one closes its connection.
const MAX_LINE: usize = 16 * 1024;

#[derive(Default)]
struct Chat {
    /// Everyone in the room, by connection id: from `on_accept` until the
    /// connection ends or a write to it fails.
    members: HashMap<u64, Member>,
}

struct Member {
    /// The owned handle from `on_accept`: what lets other connections'
    /// callbacks write to this one.
    conn: Connection,
    /// How the others see this member: its address (`127.0.0.1:5555`), or
    /// on a Unix socket its process (`unix:(unnamed) pid=.. uid=.. gid=..`).
    name: String,
    /// What it sent that is not a whole line yet.
    pending: LineBuffer,
}

impl Handler for Chat {
    fn on_accept(&mut self, _listener: &Listener, conn: Connection, peer: Address) -> Result<(), String> {
        let name = peer.to_string();
        let others = match self.members.len() {
            1 => "1 other".to_string(),
            n => format!("{n} others"),
        };
        conn.write(format!("* welcome {name}, {others} here\n").as_bytes())?;
        self.broadcast(None, format!("* {name} joined\n").as_bytes());
        self.members.insert(conn.id(), Member { conn, name, pending: LineBuffer::new(MAX_LINE) });
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let Some(member) = self.members.get_mut(&conn.id()) else { return Ok(()) };
        if let Err(too_long) = member.pending.push(&data) {
            // The error closes the connection and no callback follows.
            self.leave(conn.id());
            return Err(too_long.into());
        }
        let prefix = format!("[{}] ", member.name);
        let mut said = Vec::new();
        while let Some(line) = member.pending.next_line() {
            said.extend_from_slice(prefix.as_bytes());
            said.extend_from_slice(line);
        }
        if !said.is_empty() {
            self.broadcast(Some(conn.id()), &said);
        }
        Ok(())
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.leave(conn.id());
        conn.close();
        Ok(())
    }
}

impl Chat {
    /// Sends `message` to every member but `sender`. A member whose write
    /// fails is gone (the host closed it, or it failed) and leaves the room.
    fn broadcast(&mut self, sender: Option<u64>, message: &[u8]) {
        let gone: Vec<u64> = self
            .members
            .iter()
            .filter(|(id, member)| Some(**id) != sender && member.conn.write(message).is_err())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.members.remove(&id);
        }
    }

    /// Takes `id` out of the room and tells the others.
    fn leave(&mut self, id: u64) {
        if let Some(member) = self.members.remove(&id) {
            self.broadcast(None, format!("* {} left\n", member.name).as_bytes());
        }
    }
}

evconn_guest::export_handler!(Chat);
