//! {{name}}: an evconn connection handler. It welcomes each connection
//! with its number, counted in the store that every instance of the host
//! shares (wasi:keyvalue), then echoes what it reads; end of stream or an
//! error closes the connection.
//!
//! The bindings come from `wit/`, the package `host wit` writes. Also at
//! hand: `evconn::listener::timers` (start, cancel; `on_timer` fires),
//! `evconn::listener::outbound` (connect, connect-name), and the rest of
//! `wasi:keyvalue` (see the guest guide).
wit_bindgen::generate!({ world: "handler", path: "wit", generate_all });

use evconn::listener::connection::Connection;
use evconn::listener::listener::Listener;
use evconn::listener::types::{AcceptError, ConnectionEvent, SocketAddress};
use exports::evconn::listener::callbacks::{Guest, TimerId};
use wasi::keyvalue::{atomics, store};

/// The store's bucket this handler may open: the host allows the one named
/// after the component unless told otherwise (`--allow-bucket`).
const BUCKET: &str = "{{name}}";

struct Handler;

impl Guest for Handler {
    /// `peer` is `SocketAddress::Ipv4`/`Ipv6` on a TCP listener, and
    /// `SocketAddress::Unix` (with the peer process's `credentials`) on a
    /// Unix domain socket one; `conn.tls()` is `Some` on a TLS listener.
    fn on_accept(_listener: &Listener, conn: Connection, _peer: SocketAddress) -> Result<(), String> {
        let visitor = store::open(BUCKET).and_then(|bucket| atomics::increment(&bucket, "visitors", 1));
        let welcome = match visitor {
            Ok(n) => format!("welcome, visitor {n}\n"),
            // The store is the operator's to give: greet without a number.
            Err(_) => "welcome\n".to_string(),
        };
        conn.write(welcome.as_bytes()).map_err(|e| e.to_string())
        // Dropping `conn`, the owned handle, does not close the connection:
        // its callbacks lend it.
    }

    fn on_data(conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        conn.write(&data).map_err(|e| e.to_string())
    }

    fn on_event(conn: &Connection, _event: ConnectionEvent) -> Result<(), String> {
        conn.close();
        Ok(())
    }

    fn on_accept_error(_listener: &Listener, error: AcceptError) {
        eprintln!("accept failed: {} ({})", error.description, error.errno);
    }

    fn on_timer(_timer: TimerId) -> Result<(), String> {
        Ok(())
    }

    fn on_drain(_conn: &Connection) -> Result<(), String> {
        Ok(())
    }
}

export!(Handler);
