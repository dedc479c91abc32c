//! A line echo that allows each peer IP address (or, over a Unix domain
//! socket, each peer user; under mutual TLS, each client certificate) at
//! most `RATE_LIMIT` lines per `RATE_WINDOW`, counted in the host's store,
//! so the limit holds across every instance (under both isolation models),
//! every worker and every host sharing a Redis; a line past it is answered
//! `-ERR rate limited`.
//!
//! Windows are fixed, numbered by the wall clock; each client's lines in a
//! window are counted in one key with the store's atomic `increment`, one
//! call for all the lines of a read.
//!
//! # Layout
//! - [`client`]: whose lines a count is for: an IP address, a Unix
//!   peer's user, or a client certificate.
//! - [`settings`]: the limit, the window and the bucket, from the
//!   environment.
//! - [`window`]: window numbers, count keys, and which keys are old.
//! - this file: the evconn handler, and the sweep that removes old keys.
pub mod client;
pub mod settings;
pub mod window;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use evconn_guest::keyvalue::{self, Bucket};
use evconn_guest::lines::LineBuffer;
use evconn_guest::timers::{self, TimerId};
use evconn_guest::{Address, Connection, ConnectionEvent, Handler, Listener};

use client::Client;
use settings::Settings;

/// The longest line a client may send; a longer one closes its connection.
const MAX_LINE: usize = 16 * 1024;

/// The answer to a line past the limit.
const LIMITED: &[u8] = b"-ERR rate limited\r\n";

/// How often an instance removes a page of old windows' keys.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct RateLimit {
    /// The settings and the open bucket, from the first connection that
    /// found both good to the instance's end.
    ready: Option<(Settings, Bucket)>,
    /// Each open connection's client and unfinished line, from `on-accept`
    /// to its end.
    peers: HashMap<u64, Peer>,
    /// The repeating timer of the sweep, from the first connection on.
    sweep_timer: Option<TimerId>,
    /// Where the sweep goes on (`list-keys`' cursor); `None` at the start
    /// of a pass.
    cursor: Option<u64>,
}

/// One connection's peer.
struct Peer {
    /// Whose lines they are.
    client: Client,
    /// The bytes of a line not ended yet.
    lines: LineBuffer,
}

impl Handler for RateLimit {
    fn on_accept(&mut self, _listener: &Listener, conn: Connection, peer: Address) -> Result<(), String> {
        if self.ready.is_none() {
            // A setting or a bucket that is wrong closes every connection,
            // and the host logs why.
            let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
            let bucket = keyvalue::open(&settings.bucket)
                .map_err(|e| format!("bucket {:?}: {}", settings.bucket, String::from(e)))?;
            self.ready = Some((settings, bucket));
        }
        self.peers.insert(
            conn.id(),
            Peer { client: Client::of(&peer, conn.tls().as_ref()), lines: LineBuffer::new(MAX_LINE) },
        );
        if self.sweep_timer.is_none() {
            // Each instance sweeps as it starts too: one that serves one
            // short connection may never see its timer fire.
            self.sweep_timer = timers::start(SWEEP_EVERY, Some(SWEEP_EVERY)).ok();
            self.sweep();
        }
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let answered = self.answer(conn, &data);
        if answered.is_err() {
            // The error ends the connection and no callback follows.
            self.peers.remove(&conn.id());
        }
        answered
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.peers.remove(&conn.id());
        conn.close();
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerId) -> Result<(), String> {
        if self.sweep_timer == Some(timer) {
            self.sweep();
        }
        Ok(())
    }
}

impl RateLimit {
    /// Takes in `data` and answers every line it completes: the line itself
    /// while the peer is within its limit, `-ERR rate limited` past it.
    fn answer(&mut self, conn: &Connection, data: &[u8]) -> Result<(), String> {
        let (Some((settings, bucket)), Some(peer)) = (&self.ready, self.peers.get_mut(&conn.id())) else {
            return Err("a connection the handler did not accept".into());
        };
        peer.lines.push(data)?;
        let mut lines = Vec::new();
        while let Some(line) = peer.lines.next_line() {
            lines.push(line.to_vec());
        }
        if lines.is_empty() {
            return Ok(());
        }
        let index = window::index(wall_clock_ms(), settings.window_ms);
        let key = window::key(index, &peer.client);
        // One call counts every line of this read, atomically across
        // every instance and host.
        let mut answer = Vec::new();
        match keyvalue::increment(bucket, &key, lines.len() as i64) {
            Ok(total) => {
                let first = window::first_number(total as u64, lines.len() as u64);
                if first == 1 && index > 0 {
                    // The peer's first lines in this window: its count of
                    // the last one is done with.
                    let _ = bucket.delete(&window::key(index - 1, &peer.client));
                }
                for (number, line) in (first..).zip(&lines) {
                    answer.extend_from_slice(if number <= settings.limit { line } else { LIMITED });
                }
            }
            Err(error) => {
                // Without a count, no line passes.
                let message = format!("-ERR store: {}\r\n", String::from(error));
                answer = message.repeat(lines.len()).into_bytes();
            }
        }
        conn.write(&answer)?;
        Ok(())
    }

    /// Removes the keys of windows before the current one that a page of
    /// keys holds (their peers did not come back to remove them), and moves
    /// on to the next page. Failures are left to the next tick.
    fn sweep(&mut self) {
        let Some((settings, bucket)) = &self.ready else { return };
        let Ok(page) = bucket.list_keys(self.cursor) else { return };
        let current = window::index(wall_clock_ms(), settings.window_ms);
        let old: Vec<String> = page.keys.into_iter().filter(|key| window::is_old(key, current)).collect();
        if !old.is_empty() && keyvalue::delete_many(bucket, &old).is_err() {
            return;
        }
        self.cursor = page.cursor;
    }
}

/// Now, in milliseconds since the Unix epoch.
fn wall_clock_ms() -> u64 {
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

evconn_guest::export_handler!(RateLimit);
