//! A small key-value server speaking RESP2, enough for `redis-cli` and
//! `redis-benchmark` to work against it unchanged.
//!
//! # Layout
//! - [`request`]: bytes to requests (arrays of bulk strings, inline commands).
//! - [`commands`]: what each command does, with Redis's replies and errors.
//! - [`reply`]: replies to bytes.
//! - [`store`]: the keys and values, within a memory budget.
//! - this file: the evconn handler, which buffers each connection's input
//!   and writes its replies.
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

use evconn_guest::{Connection, ConnectionEvent, Handler};

use commands::{Context, Then};
use reply::Reply;
use store::Store;

/// Replies are gathered and written in pieces of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// The most reply bytes one read's requests may produce. Pipelined `GET`s of
/// a large value could otherwise turn 64 KiB of input into gigabytes queued
/// in the host; like Redis's client output limits, passing it disconnects.
const MAX_REPLY_PER_READ: usize = 32 << 20;

#[derive(Default)]
struct Kv {
    /// The keys and values, shared by every connection this instance serves.
    store: Store,
    /// The start of a request not yet whole, by connection id; an entry
    /// exists only while a connection has one (at most `MAX_REQUEST` bytes).
    unparsed: HashMap<u64, Vec<u8>>,
}

impl Handler for Kv {
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        let id = conn.id();
        let mut input = self.unparsed.remove(&id).unwrap_or_default();
        let input = if input.is_empty() {
            data
        } else {
            input.extend_from_slice(&data);
            input
        };
        let mut context = Context { store: &mut self.store, client: id };
        let mut replies = Replies { conn, pending: Vec::new(), written: 0 };
        let mut at = 0;
        loop {
            match request::parse(&input[at..]) {
                Ok(Some((args, used))) => {
                    at += used;
                    if args.is_empty() {
                        continue;
                    }
                    let (reply, then) = commands::execute(&mut context, &args);
                    replies.add(&reply)?;
                    if then == Then::Close {
                        replies.flush()?;
                        conn.close();
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // As Redis does: say what was wrong, then hang up.
                    replies.add(&Reply::err(error))?;
                    replies.flush()?;
                    conn.close();
                    return Ok(());
                }
            }
        }
        replies.flush()?;
        if at < input.len() {
            self.unparsed.insert(id, input[at..].to_vec());
        }
        Ok(())
    }

    fn on_event(&mut self, conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        self.unparsed.remove(&conn.id());
        conn.close();
        Ok(())
    }
}

/// The replies to one read's requests, written as they pile up.
struct Replies<'a> {
    conn: &'a Connection,
    /// Encoded, not written yet.
    pending: Vec<u8>,
    /// Written so far for this read.
    written: usize,
}

impl Replies<'_> {
    fn add(&mut self, reply: &Reply) -> Result<(), String> {
        reply.encode(&mut self.pending);
        if self.pending.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.written += self.pending.len();
        if self.written > MAX_REPLY_PER_READ {
            return Err(format!("replies to one read passed {MAX_REPLY_PER_READ} bytes: disconnecting"));
        }
        self.conn.write(&self.pending)?;
        self.pending.clear();
        Ok(())
    }
}

evconn_guest::export_handler!(Kv);
