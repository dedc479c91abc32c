//! A line server that checks its clients are alive, with timers: every
//! 300 ms it sends `PING`; a client must answer `PONG` within 200 ms or it
//! gets `TIMEOUT` and is closed. Every other line comes back as it was sent.
//!
//! Each connection has two timers: a repeating one for the pings, and a
//! one-shot deadline started with each ping and cancelled by the answer.
//! `on-timer` gets only a timer's id, so a map says which connection and
//! which job each timer is for. The same handler is in C, Python and
//! JavaScript (`examples/heartbeat-*`), and the scripts in `tests/` run
//! against all four.
use std::collections::HashMap;
use std::time::Duration;

use evconn_guest::lines::LineBuffer;
use evconn_guest::timers::{self, TimerId};
use evconn_guest::{Address, Connection, ConnectionEvent, Handler, Listener};

/// How often a client is pinged.
const INTERVAL: Duration = Duration::from_millis(300);
/// How long a client has to answer a ping.
const DEADLINE: Duration = Duration::from_millis(200);
/// The longest line a client may send.
const MAX_LINE: usize = 1024;

#[derive(Default)]
struct Heartbeat {
    /// Each open connection, by id.
    clients: HashMap<u64, Client>,
    /// What each pending timer is for.
    timers: HashMap<TimerId, Job>,
}

/// One connection: its handle (timers write to it outside its callbacks),
/// its unfinished line and its timers.
struct Client {
    conn: Connection,
    lines: LineBuffer,
    ping: TimerId,
    /// The deadline of the unanswered ping, if one is.
    deadline: Option<TimerId>,
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// Time to ping this connection.
    Ping(u64),
    /// This connection's ping went unanswered.
    Deadline(u64),
}

impl Handler for Heartbeat {
    fn on_accept(&mut self, _listener: &Listener, conn: Connection, _peer: Address) -> Result<(), String> {
        let id = conn.id();
        let ping = timers::start(INTERVAL, Some(INTERVAL))?;
        self.timers.insert(ping, Job::Ping(id));
        self.clients.insert(id, Client { conn, lines: LineBuffer::new(MAX_LINE), ping, deadline: None });
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let Some(client) = self.clients.get_mut(&conn.id()) else { return Ok(()) };
        let pushed = client.lines.push(&data);
        if let Err(too_long) = pushed {
            // The error ends the connection and no callback follows.
            self.forget(conn.id());
            return Err(too_long.into());
        }
        let Some(client) = self.clients.get_mut(&conn.id()) else { return Ok(()) };
        let mut echo = Vec::new();
        while let Some(line) = client.lines.next_line() {
            if line.trim_ascii_end() == b"PONG" {
                if let Some(deadline) = client.deadline.take() {
                    timers::cancel(deadline);
                    self.timers.remove(&deadline);
                }
            } else {
                echo.extend_from_slice(line);
            }
        }
        if !echo.is_empty() {
            conn.write(&echo)?;
        }
        Ok(())
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.forget(conn.id());
        conn.close();
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerId) -> Result<(), String> {
        match self.timers.get(&timer).copied() {
            Some(Job::Ping(id)) => {
                let Some(client) = self.clients.get_mut(&id) else { return Ok(()) };
                // Still waiting for the last answer: its deadline will do.
                if client.deadline.is_none() {
                    client.conn.write(b"PING\n")?;
                    let deadline = timers::start(DEADLINE, None)?;
                    client.deadline = Some(deadline);
                    self.timers.insert(deadline, Job::Deadline(id));
                }
            }
            Some(Job::Deadline(id)) => {
                self.timers.remove(&timer);
                if let Some(client) = self.clients.get(&id) {
                    let _ = client.conn.write(b"TIMEOUT\n");
                    client.conn.close();
                }
                self.forget(id);
            }
            None => {}
        }
        Ok(())
    }
}

impl Heartbeat {
    /// Forgets a connection and cancels its timers.
    fn forget(&mut self, id: u64) {
        if let Some(client) = self.clients.remove(&id) {
            for timer in [Some(client.ping), client.deadline].into_iter().flatten() {
                timers::cancel(timer);
                self.timers.remove(&timer);
            }
        }
    }
}

evconn_guest::export_handler!(Heartbeat);
