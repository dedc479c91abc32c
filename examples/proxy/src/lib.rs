//! libevent's `sample/le-proxy.c` as a guest: every client connection is
//! relayed to a backend, both ways.
//!
//! - The backends come from the operator: `BACKENDS`, a comma-separated list
//!   of `HOST:PORT` (an address or a name), given with `host --env` or a
//!   listener's `env` table; the host must allow each with `--allow-connect`.
//!   Clients go to them in turn (round robin); a backend that cannot be
//!   reached is skipped for the next, and a client none can serve is closed.
//! - Backpressure: once the side a connection's bytes go to holds `HIGH`
//!   bytes the host has not sent yet, reading from that connection pauses
//!   until `on-drain` says the other side is down to `LOW`. A write the host
//!   refuses (its output memory is full) is kept, and reading paused, until
//!   the drain. So a slow reader on one side holds the other side back by
//!   TCP flow control, and neither the host nor the guest buffers more than
//!   `HIGH` and one read per direction.
//! - Half-close passes through: a side's end-of-stream becomes the other
//!   side's, after what it sent; once both have ended, both close. An error
//!   or an idle timeout on either side closes both, each after what can
//!   still be sent.
use std::collections::HashMap;

use evconn_guest::outbound::{connect, connect_name};
use evconn_guest::{Address, Connection, ConnectionEvent, ErrorCode, Handler, Listener};

/// Output held for one side at which reading from the other pauses.
const HIGH: u64 = 512 * 1024;

/// Output held for one side at which reading from the other resumes.
const LOW: u64 = 128 * 1024;

/// A backend, as the operator names it.
#[derive(Debug, Clone)]
enum Backend {
    Address(std::net::SocketAddr),
    Name(String, u16),
}

impl Backend {
    fn parse(text: &str) -> Option<Backend> {
        if let Ok(address) = text.parse() {
            return Some(Backend::Address(address));
        }
        let (name, port) = text.rsplit_once(':')?;
        Some(Backend::Name(name.to_string(), port.parse().ok()?))
    }

    fn dial(&self) -> Result<Connection, ErrorCode> {
        match self {
            Backend::Address(address) => connect(*address),
            Backend::Name(name, port) => connect_name(name, *port),
        }
    }
}

/// Which end of a pair a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One end of a pair.
struct End {
    conn: Connection,
    /// Bytes for this end the host refused, sent before anything else.
    pending: Vec<u8>,
    /// Its peer sent end-of-stream.
    ended: bool,
    /// The other end's end-of-stream waits for `pending` to go out.
    shutdown_owed: bool,
}

impl End {
    fn new(conn: Connection) -> Self {
        End { conn, pending: Vec::new(), ended: false, shutdown_owed: false }
    }
}

/// A client and its backend, once one is dialed.
struct Pair {
    /// [client, backend].
    ends: [Option<End>; 2],
    /// Whether the backend has connected.
    connected: bool,
    /// Backends tried for this client, counting the current one.
    tried: usize,
}

impl Pair {
    fn end(&mut self, side: Side) -> Option<&mut End> {
        self.ends[side.index()].as_mut()
    }

    /// Closes both ends, each after what it holds has been sent.
    fn close(&mut self) {
        for end in self.ends.iter_mut().flatten() {
            end.conn.close();
        }
    }
}

#[derive(Default)]
struct Proxy {
    /// The operator's backends, read once.
    backends: Option<Vec<Backend>>,
    /// The backend the next client goes to.
    next: usize,
    /// Pairs by client connection id.
    pairs: HashMap<u64, Pair>,
    /// Each connection's pair (its client's id) and side.
    sides: HashMap<u64, (u64, Side)>,
}

impl Proxy {
    fn backends(&mut self) -> &[Backend] {
        self.backends.get_or_insert_with(|| {
            let list = std::env::var("BACKENDS").unwrap_or_default();
            let backends: Vec<Backend> = list
                .split(',')
                .filter(|b| !b.trim().is_empty())
                .filter_map(|b| {
                    let parsed = Backend::parse(b.trim());
                    if parsed.is_none() {
                        eprintln!("proxy: ignoring backend {b:?}: not HOST:PORT");
                    }
                    parsed
                })
                .collect();
            if backends.is_empty() {
                eprintln!("proxy: no backend: set BACKENDS=HOST:PORT[,HOST:PORT...] with host --env");
            }
            backends
        })
    }

    /// Dials backends for `client`, from the next in turn, until one can be
    /// dialed; closes the client if none can.
    fn dial_backend(&mut self, client: u64) {
        let count = self.backends().len();
        loop {
            let Some(pair) = self.pairs.get_mut(&client) else { return };
            if pair.tried >= count {
                eprintln!("proxy: no backend could be reached for connection {client}");
                pair.close();
                self.forget(client);
                return;
            }
            pair.tried += 1;
            let backend = self.backends.as_ref().expect("read above")[self.next % count].clone();
            self.next = self.next.wrapping_add(1);
            match backend.dial() {
                Ok(conn) => {
                    self.sides.insert(conn.id(), (client, Side::Backend));
                    let pair = self.pairs.get_mut(&client).expect("looked up above");
                    pair.ends[Side::Backend.index()] = Some(End::new(conn));
                    pair.connected = false;
                    return;
                }
                Err(code) => eprintln!("proxy: cannot dial {backend:?}: {}", code.name()),
            }
        }
    }

    /// Drops a pair from the maps once closed.
    fn forget(&mut self, client: u64) {
        if let Some(pair) = self.pairs.remove(&client) {
            for end in pair.ends.iter().flatten() {
                self.sides.remove(&end.conn.id());
            }
        }
    }

    /// Sends `data`, read from `from`, to the other end.
    fn relay(&mut self, client: u64, from: Side, data: Vec<u8>) -> Result<(), String> {
        let Some(pair) = self.pairs.get_mut(&client) else { return Ok(()) };
        let to = from.other();
        let Some(target) = pair.end(to) else { return Ok(()) };
        let refused = if !target.pending.is_empty() {
            target.pending.extend_from_slice(&data);
            true
        } else {
            match target.conn.write(&data) {
                Ok(()) => false,
                Err(ErrorCode::WouldBlock) => {
                    target.pending = data;
                    true
                }
                Err(code) => return Err(format!("relaying to the {to:?}: {}", code.name())),
            }
        };
        if refused || target.conn.queued() >= HIGH {
            // Hold the source back until the target drains.
            target.conn.set_drain_watermark(Some(LOW));
            if let Some(source) = pair.end(from) {
                source.conn.pause_reading();
            }
        }
        Ok(())
    }
}

impl Handler for Proxy {
    fn on_accept(&mut self, _listener: &Listener, conn: Connection, _peer: Address) -> Result<(), String> {
        let client = conn.id();
        // Nothing is read from the client until its backend is connected.
        conn.pause_reading();
        self.sides.insert(client, (client, Side::Client));
        self.pairs.insert(client, Pair { ends: [Some(End::new(conn)), None], connected: false, tried: 0 });
        self.dial_backend(client);
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let Some(&(client, from)) = self.sides.get(&conn.id()) else { return Ok(()) };
        if let Err(message) = self.relay(client, from, data) {
            // The pair cannot go on: both ends close, after what they hold.
            eprintln!("proxy: connection {client}: {message}");
            if let Some(pair) = self.pairs.get_mut(&client) {
                pair.close();
            }
            self.forget(client);
        }
        Ok(())
    }

    fn on_event(&mut self, conn: &Connection, event: ConnectionEvent) -> Result<(), String> {
        let Some(&(client, side)) = self.sides.get(&conn.id()) else {
            conn.close();
            return Ok(());
        };
        let Some(pair) = self.pairs.get_mut(&client) else { return Ok(()) };
        match event {
            ConnectionEvent::Connected => {
                pair.connected = true;
                if let Some(client) = pair.end(Side::Client) {
                    client.conn.resume_reading();
                }
            }
            ConnectionEvent::Error(code) if side == Side::Backend && !pair.connected => {
                // This backend cannot be reached: try the next.
                eprintln!("proxy: backend unreachable for connection {client}: {}", code.name());
                self.sides.remove(&conn.id());
                pair.ends[Side::Backend.index()] = None;
                conn.close();
                self.dial_backend(client);
            }
            ConnectionEvent::EndOfStream => {
                // The other end ends too, after what this one sent.
                let other = side.other();
                if let Some(end) = pair.end(side) {
                    end.ended = true;
                }
                if let Some(target) = pair.end(other) {
                    if target.pending.is_empty() {
                        let _ = target.conn.shutdown_write();
                    } else {
                        target.shutdown_owed = true;
                    }
                }
                let both_ended = pair.ends.iter().flatten().all(|end| end.ended);
                if both_ended || pair.end(other).is_none() {
                    pair.close();
                    self.forget(client);
                }
            }
            ConnectionEvent::Error(_) | ConnectionEvent::Timeout => {
                pair.close();
                self.forget(client);
            }
        }
        Ok(())
    }

    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        let Some(&(client, side)) = self.sides.get(&conn.id()) else { return Ok(()) };
        let Some(pair) = self.pairs.get_mut(&client) else { return Ok(()) };
        let Some(target) = pair.end(side) else { return Ok(()) };
        if !target.pending.is_empty() {
            match target.conn.write(&target.pending) {
                Ok(()) => target.pending.clear(),
                // Still no room: the next drain comes when there is.
                Err(ErrorCode::WouldBlock) => return Ok(()),
                Err(code) => {
                    eprintln!("proxy: connection {client}: relaying to the {side:?}: {}", code.name());
                    pair.close();
                    self.forget(client);
                    return Ok(());
                }
            }
        }
        if target.shutdown_owed {
            target.shutdown_owed = false;
            let _ = target.conn.shutdown_write();
        }
        if target.conn.queued() <= LOW {
            target.conn.set_drain_watermark(None);
            if let Some(source) = pair.end(side.other()) {
                source.conn.resume_reading();
            }
        }
        Ok(())
    }
}

evconn_guest::export_handler!(Proxy);
