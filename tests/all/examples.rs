//! The example handlers in `examples/` over real TCP on loopback: rot13,
//! chat and kv, each served by an in-process host; source, served by the
//! `host` binary so that its memory can be watched; proxy, both ways; and
//! kv's store and rate-limit, by in-process hosts under both isolation
//! models, by the binary with two workers, and by two hosts sharing a
//! `redis-server`; the rate limiter in C, Python and JavaScript too.
mod chat;
mod kv;
mod kv_store;
mod proxy;
mod rate_limit;
mod rate_limit_langs;
mod rot13;
mod source;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a client waits before concluding that nothing more is coming.
const SILENCE: Duration = Duration::from_millis(300);

/// A client that reads with a timeout, so a missing answer fails the test
/// instead of hanging it.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`; every send goes out at once.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connects");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Connects to `addr` from the address `local` (any of 127.0.0.0/8 on
    /// loopback), so that a server that tells peers apart by address sees
    /// another peer.
    pub fn connect_from(addr: SocketAddr, local: IpAddr) -> Self {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(local, 0).into()).unwrap_or_else(|e| panic!("binding {local}: {e}"));
        socket.connect(&addr.into()).unwrap_or_else(|e| panic!("connecting from {local}: {e}"));
        let stream = TcpStream::from(socket);
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// This end's address, as the server sees it.
    pub fn addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Sends `bytes`.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("sends");
    }

    /// Reads exactly `len` bytes.
    pub fn read_exact(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.reader.read_exact(&mut bytes).unwrap_or_else(|e| panic!("reading {len} bytes failed: {e}"));
        bytes
    }

    /// The next line, with its line ending.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("end of stream instead of a line"),
            Ok(_) => line,
            Err(e) => panic!("reading a line failed after {line:?}: {e}"),
        }
    }

    /// Asserts that nothing arrives within `SILENCE`.
    pub fn assert_silent(&mut self, what: &str) {
        assert!(self.reader.buffer().is_empty(), "{what}: unread {:?}", String::from_utf8_lossy(self.reader.buffer()));
        self.stream.set_read_timeout(Some(SILENCE)).unwrap();
        let mut byte = [0u8; 1];
        let result = self.stream.peek(&mut byte);
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match result {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("{what}: the connection was closed"),
            Ok(_) => panic!("{what}: something arrived within {SILENCE:?}"),
            Err(e) => panic!("{what}: reading failed: {e}"),
        }
    }

    /// Reads until the server ends the connection (end of stream, or a
    /// reset); returns what came before.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match self.reader.read(&mut buffer) {
                Ok(0) => return received,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
                Err(e) => panic!("waiting for the server to close failed after {} bytes: {e}", received.len()),
            }
        }
    }
}
