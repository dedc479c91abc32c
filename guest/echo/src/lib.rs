//! The echo server from libevent's listener chapter, as an evconn handler:
//! every byte read is written back; end of stream or an error closes the
//! connection; an accept error shuts the host down.
use evconn_guest::{AcceptError, Connection, ConnectionEvent, Handler, Listener, reactor};

#[derive(Default)]
struct Echo;

impl Handler for Echo {
    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        conn.write(&data).map_err(|e| e.to_string())
    }

    fn on_event(&mut self, conn: &Connection, event: ConnectionEvent) -> Result<(), String> {
        if let ConnectionEvent::Error(code) = event {
            eprintln!("Error from bufferevent: {code}");
        }
        conn.close();
        Ok(())
    }

    fn on_accept_error(&mut self, _listener: &Listener, error: AcceptError) {
        eprintln!("Got an error {} ({}) on the listener. Shutting down.", error.errno, error.description);
        reactor::loop_exit();
    }
}

evconn_guest::export_handler!(Echo);
