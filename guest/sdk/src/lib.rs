//! The Rust guest SDK: write an evconn connection handler as one trait
//! implementation and one `export_handler!` line.
//!
//! ```ignore
//! use evconn_guest::{Connection, Handler};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
//!         conn.write(&data).map_err(|e| e.to_string())
//!     }
//! }
//!
//! evconn_guest::export_handler!(Echo);
//! ```
//!
//! The host creates one value of the handler type per component instance
//! (with `Default`) and calls its methods for every connection that instance
//! serves, one call at a time. Under the shared isolation model that is every
//! connection of a reactor worker, so fields of the handler live across
//! connections; under the per-connection model each connection gets its own.
//!
//! # State per connection
//! Because one handler value may serve many connections, keep what belongs
//! to one connection in a map keyed by [`Connection::id`], and remove the
//! entry when the connection ends. A connection's last callback is
//! [`Handler::on_event`] (end of stream, an error, or an idle timeout), unless
//! the handler ends it first: after it calls `close` or returns `Err`, no
//! callback for that connection follows, so remove the entry there too.
//!
//! # Errors
//! Callbacks return `Result<(), String>`; `?` works on the [`ErrorCode`] of a
//! failed `write` (it converts to its name), and on anything else that
//! converts to `String`.
//!
//! # Timers and output
//! [`timers::start`] starts a one-shot or repeating timer; the host calls
//! [`Handler::on_timer`] with its id when it is due. [`Connection::write`]
//! is refused with [`ErrorCode::WouldBlock`] once the host holds as much of
//! a connection's output as the operator allows; [`Connection::write_room`]
//! says how much fits, and [`Handler::on_drain`] says when to write again
//! (set a watermark with [`Connection::set_drain_watermark`]).
//!
//! # Addresses and TLS
//! [`Handler::on_accept`] gets the peer as an [`Address`]: an IP address and
//! port for a TCP listener, or for a Unix domain socket listener a
//! [`UnixAddress`] with the connecting process's [`PeerCredentials`]. The
//! connection's own `peer_address()` and `local_address()` return the WIT's
//! [`SocketAddress`]; `Address::from` turns it into the same type.
//! `conn.tls()` says what the TLS handshake negotiated ([`TlsInfo`]: version,
//! cipher suite, server name, ALPN protocol, the client's certificate) on a
//! listener where the host terminates TLS, and `None` on a plain one.
//!
//! ```ignore
//! fn on_accept(&mut self, _listener: &Listener, conn: Connection, peer: Address) -> Result<(), String> {
//!     let who = match (&peer, conn.tls()) {
//!         (Address::Unix(unix), _) => match unix.credentials {
//!             Some(credentials) => format!("uid {}", credentials.uid),
//!             None => "a local process".to_string(),
//!         },
//!         (Address::Ip(ip), Some(tls)) => format!("{ip} over {}", tls.version),
//!         (Address::Ip(ip), None) => ip.to_string(),
//!     };
//!     conn.write(format!("hello, {who}\n").as_bytes())?;
//!     Ok(())
//! }
//! ```
//!
//! # Outbound connections
//! [`outbound::connect`] and [`outbound::connect_name`] open a connection
//! where the operator allows (`host --allow-connect`); it is connecting when
//! they return, and [`Handler::on_event`] says `Connected` or `Error`. After
//! that it is a connection like an accepted one.
//!
//! # State shared across instances
//! [`keyvalue::open`] opens a bucket of the host's store (`wasi:keyvalue`),
//! which every instance of the host sees, under both isolation models and
//! across workers, and every host pointed at the same Redis: what must
//! outlive an instance, or be counted across many, goes there
//! ([`keyvalue::increment`] counts atomically).
//!
//! # Modules
//! - [`address`]: a connection's ends, IP or Unix, as Rust types.
//! - [`lines`]: whole lines out of bytes as they arrive, with a length limit.
//! - [`timers`]: timers that call [`Handler::on_timer`].
//! - [`outbound`]: connections the handler opens.
//! - [`keyvalue`]: the host's store, shared by every instance.
//! - [`reactor`]: `loop_exit`, to stop the host.
//! - [`bindings`]: everything the WIT package declares, for what the crate
//!   root does not re-export.
#![deny(missing_docs)]

pub mod address;
pub mod keyvalue;
pub mod lines;

/// Bindings generated from the `evconn:listener` WIT package.
///
/// Most handlers need only the re-exports at the crate root.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_callbacks",
        default_bindings_module: "evconn_guest::bindings",
        // The world's imports from other packages (wasi:keyvalue).
        generate_all,
    });
}

pub use address::{Address, PeerCredentials, UnixAddress};
pub use bindings::evconn::listener::connection::Connection;
pub use bindings::evconn::listener::listener::{Listener, operator_listeners};
pub use bindings::evconn::listener::types::{
    AcceptError, ConnectionEvent, ErrorCode, IpSocketAddress, ListenOptions, PeerCertificate, SocketAddress, TlsInfo,
};

/// Timers that call [`Handler::on_timer`]: libevent's `evtimer_*`.
pub mod timers {
    use std::time::Duration;

    use crate::ErrorCode;
    pub use crate::bindings::evconn::listener::timers::TimerId;

    /// Starts a timer due `after` from now and, with `every`, again each
    /// `every` after that, until [`cancel`]led. Fails with `LimitReached`
    /// past the operator's number of timers per instance, and with
    /// `InvalidArgument` for an `every` under a millisecond.
    pub fn start(after: Duration, every: Option<Duration>) -> Result<TimerId, ErrorCode> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        crate::bindings::evconn::listener::timers::start(nanos(after), every.map(nanos))
    }

    /// Stops a timer; whether it was pending.
    pub fn cancel(timer: TimerId) -> bool {
        crate::bindings::evconn::listener::timers::cancel(timer)
    }
}

/// Outbound connections: libevent's `bufferevent_socket_connect` and
/// `bufferevent_socket_connect_hostname`.
pub mod outbound {
    use std::net::SocketAddr;

    use crate::{Connection, ErrorCode};

    /// Starts connecting to `address`; [`crate::Handler::on_event`] says
    /// `Connected` or `Error`. What is written meanwhile is sent once
    /// connected. Fails at once with `AccessDenied` outside the operator's
    /// `--allow-connect`, and with `LimitReached` past the outbound limits.
    pub fn connect(address: SocketAddr) -> Result<Connection, ErrorCode> {
        crate::bindings::evconn::listener::outbound::connect(address.into())
    }

    /// Starts connecting to `port` of `name`, which the host resolves; as
    /// [`connect`] otherwise. An address the name resolves to that is not
    /// allowed is skipped; if none is, the event is `Error(AccessDenied)`.
    pub fn connect_name(name: &str, port: u16) -> Result<Connection, ErrorCode> {
        crate::bindings::evconn::listener::outbound::connect_name(name, port)
    }
}

/// The event loop: libevent's `event_base`.
pub mod reactor {
    /// Ask the host to stop accepting, flush and close every connection, and
    /// exit with status 0 (`event_base_loopexit`). Returns at once.
    pub fn loop_exit() {
        crate::bindings::evconn::listener::reactor::loop_exit();
    }
}

/// A TCP connection handler: the callbacks libevent's example registers.
///
/// Every method but `on_data` has a default. Returning `Err` ends the
/// connection concerned: the host logs the message and closes it after
/// sending what was already written.
pub trait Handler: Default + 'static {
    /// A connection was accepted on `listener` from `peer`: an IP address
    /// and port, or a Unix domain socket's peer with its credentials. On a
    /// TLS listener the handshake is done: `conn.tls()` says what it
    /// negotiated.
    ///
    /// `conn` is an owned handle: keep it (for example in a map keyed by
    /// `conn.id()`) to write to the connection from other connections'
    /// callbacks, or let it drop. Dropping it does not close the connection.
    /// The default drops it.
    fn on_accept(&mut self, listener: &Listener, conn: Connection, peer: Address) -> Result<(), String> {
        let _ = (listener, conn, peer);
        Ok(())
    }

    /// Bytes arrived on `conn`: what one read returned, at most 256 KiB.
    ///
    /// TCP keeps no message boundaries: a client's message may arrive split
    /// across calls, and several may arrive in one. Buffer what is not whole
    /// yet per connection ([`lines::LineBuffer`] does it for lines), and
    /// bound that buffer.
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String>;

    /// The peer closed its side (`EndOfStream`), reading or writing failed
    /// (`Error`), or the connection was idle too long (`Timeout`): at most
    /// one of these arrives per connection, and none after the handler
    /// closed it. An outbound connection first gets `Connected`, or `Error`
    /// if it could not connect. The default closes the connection on every
    /// event but `Connected`, as libevent's example frees its bufferevent.
    fn on_event(&mut self, conn: &Connection, event: ConnectionEvent) -> Result<(), String> {
        if !matches!(event, ConnectionEvent::Connected) {
            conn.close();
        }
        Ok(())
    }

    /// `accept()` failed on `listener`. The default ignores it: the host logs
    /// the error and retries after a pause.
    fn on_accept_error(&mut self, listener: &Listener, error: AcceptError) {
        let _ = (listener, error);
    }

    /// A timer started with [`timers::start`] is due. Returning `Err` stops
    /// it, if it repeats. The default does nothing.
    fn on_timer(&mut self, timer: timers::TimerId) -> Result<(), String> {
        let _ = timer;
        Ok(())
    }

    /// The output the host holds for `conn` fell to the watermark set with
    /// [`Connection::set_drain_watermark`], or a write refused with
    /// `WouldBlock` would find room now: write more. The default does
    /// nothing.
    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        let _ = conn;
        Ok(())
    }
}

/// Lets `?` turn a failed `write` (or any call returning [`ErrorCode`]) into
/// a callback's `Err`: the message is the code's name, such as `closed`.
impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.name().to_string()
    }
}

/// Export `$handler`, a type implementing [`Handler`], as the component's
/// callbacks. Use it once, at the top level of the guest crate.
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        thread_local! {
            static __EVCONN_HANDLER: ::std::cell::RefCell<$handler> =
                ::std::cell::RefCell::new(<$handler as ::std::default::Default>::default());
        }

        struct __EvconnCallbacks;

        impl $crate::bindings::exports::evconn::listener::callbacks::Guest for __EvconnCallbacks {
            fn on_accept(
                listener: &$crate::Listener,
                conn: $crate::Connection,
                peer: $crate::SocketAddress,
            ) -> ::std::result::Result<(), ::std::string::String> {
                __EVCONN_HANDLER
                    .with_borrow_mut(|handler| $crate::Handler::on_accept(handler, listener, conn, peer.into()))
            }

            fn on_data(
                conn: &$crate::Connection,
                data: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                __EVCONN_HANDLER.with_borrow_mut(|handler| $crate::Handler::on_data(handler, conn, data))
            }

            fn on_event(
                conn: &$crate::Connection,
                event: $crate::ConnectionEvent,
            ) -> ::std::result::Result<(), ::std::string::String> {
                __EVCONN_HANDLER.with_borrow_mut(|handler| $crate::Handler::on_event(handler, conn, event))
            }

            fn on_accept_error(listener: &$crate::Listener, error: $crate::AcceptError) {
                __EVCONN_HANDLER.with_borrow_mut(|handler| $crate::Handler::on_accept_error(handler, listener, error))
            }

            fn on_timer(timer: $crate::timers::TimerId) -> ::std::result::Result<(), ::std::string::String> {
                __EVCONN_HANDLER.with_borrow_mut(|handler| $crate::Handler::on_timer(handler, timer))
            }

            fn on_drain(conn: &$crate::Connection) -> ::std::result::Result<(), ::std::string::String> {
                __EVCONN_HANDLER.with_borrow_mut(|handler| $crate::Handler::on_drain(handler, conn))
            }
        }

        $crate::bindings::export_callbacks!(__EvconnCallbacks);
    };
}
