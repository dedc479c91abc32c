//! One test connection to a host: sends bytes, and checks what comes back
//! against expectations, each within a deadline.
//!
//! A thread reads everything the peer sends as it arrives, so a test that
//! sends a lot before expecting anything never stalls a peer that answers
//! as it reads (an echo would otherwise block on its full socket).
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::expect::{Check, Expect, Failure, FailureKind};
use crate::serve::{ConnectionWatch, Served};

/// The deadline of a send or an expectation unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to a host under test.
pub struct Client {
    stream: TcpStream,
    inbox: Arc<Inbox>,
    /// Reads into `inbox` until end of stream, an error, or our shutdown.
    reader: Option<JoinHandle<()>>,
    timeout: Duration,
    /// What the host says of this connection, when it is a kit host's.
    watch: Option<Arc<ConnectionWatch>>,
}

/// What the reader thread received and the expectations did not consume yet.
#[derive(Default)]
struct Inbox {
    received: Mutex<Received>,
    arrived: Condvar,
}

#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    /// How reading ended, once it has: `Ok` for end of stream.
    end: Option<Result<(), String>>,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let inbox = Arc::new(Inbox::default());
        let reader = {
            let mut stream = stream.try_clone()?;
            let inbox = inbox.clone();
            std::thread::Builder::new().name("kit-reader".into()).spawn(move || read_all(&mut stream, &inbox))?
        };
        Ok(Client { stream, inbox, reader: Some(reader), timeout: DEFAULT_TIMEOUT, watch: None })
    }

    /// Connects to a kit host at `addr` and returns once its guest has run
    /// `on-accept` for the connection (or the host closed it unaccepted,
    /// which the next expectation sees); fails if neither happens within
    /// `timeout`.
    pub(super) fn connect_watched(
        addr: SocketAddr,
        watch: Arc<ConnectionWatch>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let mut client = Client::connect(addr)?;
        let local = client.stream.local_addr()?;
        if watch.wait_served(local, timeout) == Served::Pending {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connected, but the handler did not run on-accept within {timeout:?}"),
            ));
        }
        client.watch = Some(watch);
        Ok(client)
    }

    /// The deadline of later sends and expectations ([`DEFAULT_TIMEOUT`] at first).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `data`; fails if the peer has not taken it all within the
    /// timeout, or the connection fails.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_within(data, self.timeout)
    }

    /// Sends `data`; fails if the peer has not taken it all within `within`.
    pub fn send_within(&mut self, data: &[u8], within: Duration) -> io::Result<()> {
        let deadline = Instant::now() + within;
        let mut sent = 0;
        while sent < data.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout means "none" to the socket: keep one tick.
            self.stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.stream.write(&data[sent..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the connection takes no more bytes")),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the peer took {sent} of {} bytes within {within:?}", data.len()),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the bytes not yet expected meet `expect`, within the
    /// timeout; returns the bytes that met it, which later expectations do
    /// not see again. [`Expect::Nothing`] waits the whole timeout.
    pub fn expect(&mut self, expect: &Expect) -> Result<Vec<u8>, Failure> {
        self.expect_within(expect, self.timeout)
    }

    /// As [`Client::expect`], within `within`.
    pub fn expect_within(&mut self, expect: &Expect, within: Duration) -> Result<Vec<u8>, Failure> {
        let deadline = Instant::now() + within;
        let mut received = self.inbox.received.lock().expect("the reader does not panic");
        loop {
            let kind = match expect.check(&received.bytes, received.end == Some(Ok(()))) {
                Check::Met(n) => return Ok(received.bytes.drain(..n).collect()),
                Check::Differs { at } => FailureKind::Differs { at },
                Check::Pending => match &received.end {
                    Some(Ok(())) => FailureKind::EndOfStream,
                    Some(Err(error)) => FailureKind::Broken(error.clone()),
                    None => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => {
                            received =
                                self.inbox.arrived.wait_timeout(received, left).expect("the reader does not panic").0;
                            continue;
                        }
                        // Silence until the deadline is what `Nothing` waits for.
                        _ if matches!(expect, Expect::Nothing) => return Ok(Vec::new()),
                        _ => FailureKind::TimedOut(within),
                    },
                },
            };
            return Err(Failure { expected: expect.clone(), received: received.bytes.clone(), kind });
        }
    }

    /// Half-closes: sends end of stream to the peer. Receiving goes on.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Closes the connection and, on a kit host, waits (up to the client's
    /// timeout) until the host has finished with it: its `on-event` has run
    /// and its socket is closed. Fails if the host still holds it then (a
    /// guest that keeps writing after the peer left, say).
    pub fn close(mut self) -> io::Result<()> {
        let watch = self.watch.take();
        let local = self.stream.local_addr();
        let timeout = self.timeout;
        drop(self);
        match (watch, local) {
            (Some(watch), Ok(local)) if !watch.wait_closed(local, timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("closed, but the host still held the connection after {timeout:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// The local end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Ends the reader's blocking read (it sees end of stream), then
        // the socket closes when both handles are gone.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: everything `stream` receives goes to `inbox`.
fn read_all(stream: &mut TcpStream, inbox: &Inbox) {
    let mut buffer = vec![0; 64 << 10];
    loop {
        let read = stream.read(&mut buffer);
        let mut received = inbox.received.lock().expect("expectations do not panic");
        match read {
            Ok(0) => received.end = Some(Ok(())),
            Ok(n) => received.bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => received.end = Some(Err(e.to_string())),
        }
        let ended = received.end.is_some();
        drop(received);
        inbox.arrived.notify_all();
        if ended {
            return;
        }
    }
}
