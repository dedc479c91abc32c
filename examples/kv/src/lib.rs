//! A small key-value server speaking RESP2, enough for `redis-cli` and
//! `redis-benchmark` to work against it unchanged.
//!
//! # Layout
//! - [`request`]: bytes to requests (arrays of bulk strings, inline commands).
//! - [`commands`]: what each command does, with Redis's replies and errors.
//! - [`reply`]: replies to bytes.
//! - [`store`]: the keys and values, within a memory budget, and expiry.
//! - this file: the evconn handler, which buffers each connection's input,
//!   writes its replies as fast as the client reads them, and removes keys
//!   when they expire.
//!
//! Everything but this file is plain Rust, tested with `cargo test -p kv` on
//! the build machine. The store lives in the instance, so under
//! `--isolation shared` (the default) every client sees the same keys; under
//! `--isolation connection` each connection has a store of its own.
pub mod commands;
pub mod reply;
pub mod request;
pub mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use evconn_guest::timers::{self, TimerId};
use evconn_guest::{Connection, ConnectionEvent, ErrorCode, Handler};

use commands::{Context, Then};
use reply::Reply;
use store::Store;

/// Replies are gathered and written in pieces of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// While its replies wait for the client to read, a connection is not read
/// from; it is read again once the host holds this little of its output.
const RESUME_BELOW: u64 = 256 * 1024;

#[derive(Default)]
struct Kv {
    /// The keys and values, shared by every connection this instance serves.
    store: Store,
    /// What is pending for each connection; an entry exists only while a
    /// connection has unread input or unwritten replies.
    clients: HashMap<u64, Client>,
    /// The timer that removes the next key to expire, and when it fires.
    expiry_timer: Option<(TimerId, Instant)>,
}

/// One connection's work in progress.
#[derive(Default)]
struct Client {
    /// Input not served yet: the start of a request not yet whole, or
    /// requests waiting while replies cannot be written (at most what one
    /// read brings beyond `request::MAX_REQUEST`: reading pauses meanwhile).
    input: Vec<u8>,
    /// Replies encoded and not yet taken by the host.
    output: Vec<u8>,
    /// Close once `output` is written (after `QUIT` or a protocol error).
    close_after: bool,
    /// Reading is paused until the host holds less of its output.
    waiting: bool,
}

impl Handler for Kv {
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let client = self.clients.entry(conn.id()).or_default();
        if client.input.is_empty() {
            client.input = data;
        } else {
            client.input.extend_from_slice(&data);
        }
        self.serve(conn)
    }

    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        self.serve(conn)
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.clients.remove(&conn.id());
        conn.close();
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerId) -> Result<(), String> {
        if self.expiry_timer.is_some_and(|(armed, _)| armed == timer) {
            self.expiry_timer = None;
            self.store.expire(Instant::now());
            self.arm_expiry()?;
        }
        Ok(())
    }
}

impl Kv {
    /// Runs `conn`'s requests and writes their replies, until its input has
    /// no whole request left or the host holds as much of its output as it
    /// may (then reading pauses until `on-drain`).
    fn serve(&mut self, conn: &Connection) -> Result<(), String> {
        let id = conn.id();
        let Some(mut client) = self.clients.remove(&id) else { return Ok(()) };
        let mut at = 0;
        loop {
            if !write_out(conn, &mut client.output)? {
                // The host holds all it may: wait for the client to read.
                if !client.waiting {
                    client.waiting = true;
                    conn.pause_reading();
                    conn.set_drain_watermark(Some(RESUME_BELOW));
                }
                client.input.drain(..at);
                self.clients.insert(id, client);
                return self.arm_expiry();
            }
            if client.close_after {
                conn.close();
                return self.arm_expiry();
            }
            let mut context = Context { store: &mut self.store, client: id, now: Instant::now() };
            while client.output.len() < WRITE_CHUNK {
                match request::parse(&client.input[at..]) {
                    Ok(Some((args, used))) => {
                        at += used;
                        if args.is_empty() {
                            continue;
                        }
                        let (reply, then) = commands::execute(&mut context, &args);
                        reply.encode(&mut client.output);
                        if then == Then::Close {
                            client.close_after = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        // As Redis does: say what was wrong, then hang up.
                        Reply::err(error).encode(&mut client.output);
                        client.close_after = true;
                        break;
                    }
                }
            }
            if client.output.is_empty() && !client.close_after {
                break;
            }
        }
        client.input.drain(..at);
        if client.waiting {
            client.waiting = false;
            conn.set_drain_watermark(None);
            conn.resume_reading();
        }
        if !client.input.is_empty() {
            self.clients.insert(id, client);
        }
        self.arm_expiry()
    }

    /// Keeps one timer set for the next key to expire, so that keys go when
    /// their time comes though nobody reads them.
    fn arm_expiry(&mut self) -> Result<(), String> {
        let next = self.store.next_expiry();
        match (next, self.expiry_timer) {
            (Some(when), Some((_, armed))) if armed <= when => return Ok(()),
            (None, None) => return Ok(()),
            _ => {}
        }
        if let Some((timer, _)) = self.expiry_timer.take() {
            timers::cancel(timer);
        }
        if let Some(when) = next {
            let after = when.saturating_duration_since(Instant::now());
            // A millisecond late rather than early: the store's clock reads
            // the key as expired only once its time has come.
            let timer = timers::start(after + Duration::from_millis(1), None)?;
            self.expiry_timer = Some((timer, when));
        }
        Ok(())
    }
}

/// Writes `output` as far as the host takes it, in pieces no larger than
/// it has room for; `false` if some is left (the host holds all it may).
fn write_out(conn: &Connection, output: &mut Vec<u8>) -> Result<bool, ErrorCode> {
    let mut written = 0;
    while written < output.len() {
        let room = usize::try_from(conn.write_room()).unwrap_or(usize::MAX);
        if room == 0 {
            break;
        }
        let end = output.len().min(written + room);
        match conn.write(&output[written..end]) {
            Ok(()) => written = end,
            Err(ErrorCode::WouldBlock) => break,
            Err(e) => return Err(e),
        }
    }
    output.drain(..written);
    Ok(output.is_empty())
}

evconn_guest::export_handler!(Kv);
