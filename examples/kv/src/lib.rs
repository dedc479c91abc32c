//! A small key-value server speaking RESP2, enough for `redis-cli` and
//! `redis-benchmark` to work against it unchanged.
//!
//! The keys live in the host's store (`wasi:keyvalue`), in a bucket named
//! `kv` (or `KV_BUCKET` from the environment), so every instance serves the
//! same data: under `--isolation shared` and `connection`, across
//! `--workers`, and from every host given the same Redis
//! (`--keyvalue redis://...`).
//!
//! # Layout
//! - [`request`]: bytes to requests (arrays of bulk strings, inline commands).
//! - [`commands`]: what each command does, with Redis's replies and errors.
//! - [`batch`]: pipelined GETs, SETs and INCRs in runs, one store call each.
//! - [`reply`]: replies to bytes.
//! - [`store`]: the store the commands use, as a trait, and a map in memory
//!   that stands for it in the native tests.
//! - [`keys`]: Redis keys (bytes) as store keys (strings).
//! - [`entry`]: a value and its deadline as one stored value.
//! - [`sweep`]: removing keys past their deadline that nobody reads.
//! - [`bucket`]: the store in the component, over `wasi:keyvalue`.
//! - this file: the evconn handler, which buffers each connection's input,
//!   serves it in turns, writes its replies as fast as the client reads
//!   them, and sweeps from a timer.
//!
//! Everything but this file and `bucket` is plain Rust, tested with
//! `cargo test -p kv` on the build machine.
pub mod batch;
pub mod bucket;
pub mod commands;
pub mod entry;
pub mod keys;
pub mod reply;
pub mod request;
pub mod store;
pub mod sweep;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use evconn_guest::timers::{self, TimerId};
use evconn_guest::{Address, Connection, ConnectionEvent, ErrorCode, Handler, Listener};

use batch::Kind;
use bucket::WasiBucket;
use commands::{Context, Then};
use reply::Reply;

/// Replies are gathered and written in pieces of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// A value larger than this makes a client's GETs run one at a time.
const LARGE_VALUE: usize = 16 * 1024;

/// While its replies wait for the client to read, a connection is not read
/// from; it is read again once the host holds this little of its output.
const RESUME_BELOW: u64 = 256 * 1024;

/// How many runs of requests, and how many bytes of replies, one callback
/// serves before it lets the instance's other connections have a turn (and
/// goes on from a timer): a client that pipelines thousands of requests,
/// or reads large values as fast as they come, would otherwise hold the
/// callback past the host's guest timeout, each request being a store call.
const TURN_RUNS: usize = 64;
const TURN_BYTES: usize = 8 << 20;

#[derive(Default)]
struct Kv {
    /// The bucket of the host's store, shared with every other instance;
    /// opened on first use, for as long as the instance lives.
    store: WasiBucket,
    /// What is pending for each connection; an entry exists only while a
    /// connection has unread input or unwritten replies.
    clients: HashMap<u64, Client>,
    /// Each open connection's handle, from `on-accept` to its end, to serve
    /// it from a timer when its turn ends with requests left.
    connections: HashMap<u64, Connection>,
    /// The timers that give connections their next turn: which each is for.
    turns: HashMap<TimerId, u64>,
    /// The repeating timer that sweeps keys past their deadline, from the
    /// instance's first connection to its end.
    sweep_timer: Option<TimerId>,
    /// What the last sweep failed with, so that a failure that lasts (a
    /// bucket not allowed) is logged once, not ten times a second.
    sweep_failure: Option<String>,
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
    /// The last value this client got was large: its GETs are fetched one
    /// at a time, not in runs, so that a run of large values is not held
    /// at once.
    large_values: bool,
    /// A timer is set to serve the requests left when the last turn ended.
    next_turn: bool,
}

impl Handler for Kv {
    fn on_accept(&mut self, _listener: &Listener, conn: Connection, _peer: Address) -> Result<(), String> {
        self.connections.insert(conn.id(), conn);
        if self.sweep_timer.is_none() {
            // An instance that serves one short connection (under
            // `--isolation connection`) may never see its timer fire:
            // each sweeps a page when it starts too.
            let every = Duration::from_millis(sweep::TICK_MS);
            match timers::start(every, Some(every)) {
                Ok(timer) => self.sweep_timer = Some(timer),
                Err(e) => eprintln!("kv: no timer to sweep expired keys with: {}", e.name()),
            }
            self.sweep();
        }
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let client = self.clients.entry(conn.id()).or_default();
        if client.input.is_empty() {
            client.input = data;
        } else {
            client.input.extend_from_slice(&data);
        }
        self.serve_or_forget(conn)
    }

    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        self.serve_or_forget(conn)
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.forget(conn.id());
        conn.close();
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerId) -> Result<(), String> {
        if self.sweep_timer == Some(timer) {
            self.sweep();
        } else if let Some(id) = self.turns.remove(&timer) {
            if let Some(client) = self.clients.get_mut(&id) {
                client.next_turn = false;
            }
            // Out of the map while it is served; back in if it stays open.
            let Some(conn) = self.connections.remove(&id) else { return Ok(()) };
            match self.serve(&conn) {
                Ok(true) => {
                    self.connections.insert(id, conn);
                }
                Ok(false) => self.forget(id),
                Err(error) => {
                    // A timer's error closes nothing: close it here, as an
                    // error from `on-data` would.
                    eprintln!("kv: connection {id}: {error}");
                    self.forget(id);
                    conn.close();
                }
            }
        }
        Ok(())
    }
}

impl Kv {
    /// Serves `conn` ([`Kv::serve`]), and forgets it once it is closed or
    /// its callback fails (then no callback for it follows).
    fn serve_or_forget(&mut self, conn: &Connection) -> Result<(), String> {
        let served = self.serve(conn);
        if !matches!(served, Ok(true)) {
            self.forget(conn.id());
        }
        served.map(drop)
    }

    /// Drops what the handler keeps for connection `id`.
    fn forget(&mut self, id: u64) {
        self.clients.remove(&id);
        self.connections.remove(&id);
    }

    /// Runs `conn`'s requests and writes their replies, until its input has
    /// no whole request left, or the host holds as much of its output as it
    /// may (then reading pauses until `on-drain`), or its turn is over (then
    /// a timer gives it the next). Whether the connection stays open.
    fn serve(&mut self, conn: &Connection) -> Result<bool, String> {
        let id = conn.id();
        let Some(mut client) = self.clients.remove(&id) else { return Ok(true) };
        let mut at = 0;
        let (mut runs, mut produced) = (0, 0);
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
                return Ok(true);
            }
            if client.close_after {
                conn.close();
                return Ok(false);
            }
            if (runs >= TURN_RUNS || produced >= TURN_BYTES) && self.next_turn(id, &mut client) {
                break;
            }
            let mut context = Context { store: &mut self.store, client: id, now: wall_clock_ms() };
            let before = client.output.len();
            while client.output.len() < WRITE_CHUNK && !client.close_after {
                let max_gets = if client.large_values { 1 } else { batch::MAX_RUN };
                let run = match batch::next_run(&client.input[at..], max_gets) {
                    Ok(run) => run,
                    Err(error) => {
                        // As Redis does: say what was wrong, then hang up.
                        Reply::err(error).encode(&mut client.output);
                        client.close_after = true;
                        break;
                    }
                };
                let start = at;
                at += run.skipped;
                let Some(kind) = run.kind else { break };
                runs += 1;
                let first = at;
                for ((reply, then), end) in batch::execute(&mut context, kind, &run.requests).into_iter().zip(run.ends)
                {
                    if kind == Kind::Get {
                        if at > first && client.output.len() >= WRITE_CHUNK {
                            // The replies are large: the rest of the run is
                            // read again once these are written, one at a
                            // time.
                            client.large_values = true;
                            break;
                        }
                        client.large_values = matches!(&reply, Reply::Bulk(value) if value.len() > LARGE_VALUE);
                    }
                    reply.encode(&mut client.output);
                    at = start + end;
                    if then == Then::Close {
                        client.close_after = true;
                        break;
                    }
                }
            }
            produced += client.output.len() - before;
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
        if client.input.is_empty() {
            return Ok(true);
        }
        self.clients.insert(id, client);
        Ok(true)
    }

    /// Ends `client`'s turn, with a timer due at once to give it the next,
    /// after what else the instance has to do; `false` if no timer can be
    /// had (then the turn goes on).
    fn next_turn(&mut self, id: u64, client: &mut Client) -> bool {
        if client.next_turn {
            return true;
        }
        match timers::start(Duration::ZERO, None) {
            Ok(timer) => {
                self.turns.insert(timer, id);
                client.next_turn = true;
                true
            }
            Err(_) => false,
        }
    }

    /// Sweeps a page of keys, if no other instance has this tick (see
    /// `sweep`); a failure is logged, and the next tick tries again.
    fn sweep(&mut self) {
        match sweep::tick(&mut self.store, wall_clock_ms()) {
            Ok(_) => self.sweep_failure = None,
            Err(error) => {
                if self.sweep_failure.as_ref() != Some(&error.0) {
                    eprintln!("kv: sweeping expired keys failed: {error}");
                    self.sweep_failure = Some(error.0);
                }
            }
        }
    }
}

/// Now, in milliseconds since the Unix epoch: deadlines are kept by the
/// wall clock, which every instance and host share.
fn wall_clock_ms() -> u64 {
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
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
