//! Outbound connections (`evconn:listener/outbound`) with the probe guest:
//! it reaches only what `--allow-connect` allows, by address and by name
//! (and a name's addresses are checked too); connecting, refusals and
//! timeouts reach it as events; its limits hold; an outbound connection
//! belongs to the instance that opened it; and the guest sees only the
//! environment the operator gives it.
use crate::support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;
use support::{Probe, TestHost, TestHostBuilder};

/// A backend on loopback that the test drives by hand.
struct Backend {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Backend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        Backend { listener, addr }
    }

    /// The next connection the host made to it.
    fn accept(&self) -> TcpStream {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }
}

fn probe_host(isolation: Isolation) -> TestHostBuilder {
    TestHost::builder(&support::guest("probe")).isolation(isolation)
}

/// A probe client that keeps the news of outbound connections apart from
/// the answers to its commands: news may arrive before an answer.
struct Client {
    probe: Probe,
    pending: VecDeque<String>,
}

impl Client {
    fn connect(host: &TestHost) -> Self {
        Client { probe: Probe::connect(host.addr), pending: VecDeque::new() }
    }

    /// Sends `command`; its answer.
    fn ask(&mut self, command: &str) -> String {
        self.probe.send(command);
        loop {
            let line = self.probe.read_line().unwrap_or_else(|| panic!("no answer to {command}"));
            if line.starts_with("outbound ") {
                self.pending.push_back(line);
            } else {
                return line;
            }
        }
    }

    fn send(&mut self, command: &str) {
        self.probe.send(command);
    }

    /// Dials with `command`; the outbound connection's id.
    fn dial(&mut self, command: &str) -> u64 {
        let answer = self.ask(command);
        answer.strip_prefix("dialing ").unwrap_or_else(|| panic!("{command}: {answer}")).parse().unwrap()
    }

    /// The next news of outbound connection `id`: what follows `outbound ID `.
    fn news(&mut self, id: u64) -> String {
        let line = match self.pending.pop_front() {
            Some(line) => line,
            None => self.probe.read_line().expect("news of the outbound connection"),
        };
        let prefix = format!("outbound {id} ");
        line.strip_prefix(&prefix).unwrap_or_else(|| panic!("not news of {id}: {line}")).to_string()
    }
}

/// A connection to an allowed backend connects, carries bytes both ways
/// (what was written while connecting included), and reports the
/// backend's end.
fn connects_and_carries_bytes(isolation: Isolation) {
    let backend = Backend::start();
    let host = probe_host(isolation).allow_connect(&backend.addr.to_string()).start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {}", backend.addr));
    assert_eq!(client.ask(&format!("send {id} early")), "ok", "a write while connecting is kept");
    let mut server = backend.accept();
    assert_eq!(client.news(id), format!("connected {}", backend.addr));
    let mut reader = BufReader::new(server.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "early\n");
    assert_eq!(client.ask(&format!("send {id} hello")), "ok");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    server.write_all(b"from the backend\n").unwrap();
    assert_eq!(client.news(id), "data from the backend");
    drop((reader, server));
    assert_eq!(client.news(id), "end");
    assert_eq!(client.ask("ping"), "pong");
}

#[test]
fn connects_and_carries_bytes_shared() {
    connects_and_carries_bytes(Isolation::Shared);
}

#[test]
fn connects_and_carries_bytes_per_connection() {
    connects_and_carries_bytes(Isolation::Connection);
}

/// Nothing is reachable by default; an entry allows its address and port
/// only; a name needs an entry of its own, and the addresses it resolves
/// to are checked as well: `localhost` on a port whose address entry is
/// missing is refused after resolving, so DNS leads nowhere an address
/// could not.
#[test]
fn only_what_is_allowed_is_reachable() {
    let backend = Backend::start();
    let other = Backend::start();
    let nothing = probe_host(Isolation::Shared).start();
    let mut client = Client::connect(&nothing);
    assert_eq!(client.ask(&format!("dial {}", backend.addr)), "error access-denied");
    assert_eq!(client.ask(&format!("dial-name localhost {}", backend.addr.port())), "error access-denied");

    let port = backend.addr.port();
    let host =
        probe_host(Isolation::Shared).allow_connect(&format!("127.0.0.1:{port}")).allow_connect("localhost:*").start();
    let mut client = Client::connect(&host);
    assert_eq!(client.ask(&format!("dial {}", other.addr)), "error access-denied", "another port");
    assert_eq!(client.ask(&format!("dial [::1]:{port}")), "error access-denied", "another address");
    assert_eq!(client.ask("dial 0.0.0.0:80"), "error invalid-argument");
    assert_eq!(client.ask(&format!("dial-name example.org {port}")), "error access-denied", "another name");
    assert_eq!(client.ask("dial-name bad_name 80"), "error invalid-argument");

    // The name is allowed on every port, its address on one only.
    let id = client.dial(&format!("dial-name localhost {}", other.addr.port()));
    assert_eq!(client.news(id), "error access-denied");
    let id = client.dial(&format!("dial-name localhost {port}"));
    let _server = backend.accept();
    assert_eq!(client.news(id), format!("connected 127.0.0.1:{port}"));
    // A name written as an address is that address, under its rules.
    assert_eq!(client.ask(&format!("dial-name 127.0.0.1 {}", other.addr.port())), "error access-denied");
}

/// A port nothing listens on is refused; a backend that never completes
/// the handshake (its backlog is full) times out after --connect-timeout;
/// a name that does not resolve says so; other clients are served
/// meanwhile.
#[test]
fn refusals_timeouts_and_unknown_names_are_events() {
    let closed = Backend::start().addr; // dropped: nothing listens there now
    let stuck = stuck_backend();
    let host = probe_host(Isolation::Shared)
        .allow_connect(&closed.to_string())
        .allow_connect(&stuck.addr.to_string())
        .allow_connect("no-such-host.invalid:*")
        .limits(|limits| limits.connect_timeout = Duration::from_millis(500))
        .start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {closed}"));
    assert_eq!(client.news(id), "error connection-refused");

    let started = Instant::now();
    let id = client.dial(&format!("dial {}", stuck.addr));
    let mut other = Client::connect(&host);
    assert_eq!(other.ask("ping"), "pong", "served while a connect hangs");
    assert_eq!(client.news(id), "error timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(3), "{waited:?}");

    let id = client.dial("dial-name no-such-host.invalid 80");
    assert_eq!(client.news(id), "error name-unresolvable");
    assert_eq!(client.ask("dials"), "dials 0");
    drop(stuck);
}

/// A listener whose backlog is full, so that a new connect is never
/// answered: the kernel drops its SYNs.
struct StuckBackend {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

fn stuck_backend() -> StuckBackend {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue; the connects past it hang, so make them
    // from threads that give up after a while.
    let mut queued = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "the backlog is full: a connect hangs"
    );
    StuckBackend { addr, _listener: listener, _queued: queued }
}

/// Past --max-outbound-per-instance, or the host's --max-outbound,
/// connecting fails at once with limit-reached; a closed connection frees
/// its place.
#[test]
fn outbound_limits_hold() {
    let backend = Backend::start();
    let host = probe_host(Isolation::Shared)
        .allow_connect(&backend.addr.to_string())
        .limits(|limits| limits.max_outbound_per_instance = 2)
        .start();
    let mut client = Client::connect(&host);
    let first = client.dial(&format!("dial {}", backend.addr));
    let first_server = backend.accept();
    assert!(client.news(first).starts_with("connected"));
    let second = client.dial(&format!("dial {}", backend.addr));
    let _second_server = backend.accept();
    assert!(client.news(second).starts_with("connected"));
    assert_eq!(client.ask(&format!("dial {}", backend.addr)), "error limit-reached");
    drop(first_server);
    assert_eq!(client.news(first), "end");
    // The host frees the place once the connection's task has ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = client.ask(&format!("dial {}", backend.addr));
        if answer.starts_with("dialing") {
            break;
        }
        assert_eq!(answer, "error limit-reached");
        assert!(Instant::now() < deadline, "the closed connection's place comes back");
        std::thread::sleep(Duration::from_millis(20));
    }

    let host = probe_host(Isolation::Connection)
        .allow_connect(&backend.addr.to_string())
        .limits(|limits| limits.max_outbound = 1)
        .start();
    let mut a = Client::connect(&host);
    let mut b = Client::connect(&host);
    let id = a.dial(&format!("dial {}", backend.addr));
    let _server = backend.accept();
    assert!(a.news(id).starts_with("connected"));
    assert_eq!(b.ask(&format!("dial {}", backend.addr)), "error limit-reached", "the host's limit spans instances");
}

/// Reads from `server` until the host closes it; fails if it stays open.
fn assert_closed_by_host(server: &mut TcpStream, what: &str) {
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    match server.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => panic!("{what}: the outbound connection stayed open ({e})"),
    }
}

/// Under the per-connection model an outbound connection ends with the
/// accepted connection whose instance opened it, after what was written
/// to it is sent; under the shared model it outlives that connection.
#[test]
fn an_outbound_connection_belongs_to_its_instance() {
    let backend = Backend::start();
    let host = probe_host(Isolation::Connection).allow_connect(&backend.addr.to_string()).start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {}", backend.addr));
    let mut server = backend.accept();
    assert!(client.news(id).starts_with("connected"));
    assert_eq!(client.ask(&format!("send {id} last words")), "ok");
    client.send("close");
    let mut received = String::new();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    server.read_to_string(&mut received).expect("closed by the host, after its output");
    assert_eq!(received, "last words\n");

    let host = probe_host(Isolation::Shared).allow_connect(&backend.addr.to_string()).start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {}", backend.addr));
    let mut server = backend.accept();
    assert!(client.news(id).starts_with("connected"));
    client.send("close");
    server.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let still_open = matches!(server.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(still_open, "the shared instance keeps its outbound connection");
    let mut other = Client::connect(&host);
    assert_eq!(other.ask("dials"), "dials 1");
}

/// A trap closes the instance's outbound connections with its accepted
/// ones; a stopping host flushes and closes them like accepted ones.
#[test]
fn traps_and_shutdown_close_outbound_connections() {
    let backend = Backend::start();
    let host = probe_host(Isolation::Shared).allow_connect(&backend.addr.to_string()).start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {}", backend.addr));
    let mut server = backend.accept();
    assert!(client.news(id).starts_with("connected"));
    client.send("trap");
    assert_closed_by_host(&mut server, "after a trap");

    let host = probe_host(Isolation::Shared)
        .allow_connect(&backend.addr.to_string())
        .shutdown_timeout(Duration::from_millis(200))
        .start();
    let mut client = Client::connect(&host);
    let id = client.dial(&format!("dial {}", backend.addr));
    let mut server = backend.accept();
    assert!(client.news(id).starts_with("connected"));
    assert_eq!(client.ask(&format!("send {id} before stopping")), "ok");
    let stopping = std::thread::spawn(move || host.stop());
    let mut received = String::new();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    server.read_to_string(&mut received).expect("closed by the stopping host");
    assert_eq!(received, "before stopping\n");
    stopping.join().unwrap().expect("the host stops");
}

/// The guest sees the operator's environment variables and nothing of the
/// host's own.
#[test]
fn the_guest_sees_only_the_operators_environment() {
    let host = probe_host(Isolation::Shared).env("GREETING", "hello=world").start();
    let mut client = Client::connect(&host);
    assert_eq!(client.ask("getenv GREETING"), "env GREETING=hello=world");
    assert_eq!(client.ask("getenv PATH"), "env PATH unset");
    assert_eq!(client.ask("env"), "env 1");
    let host = probe_host(Isolation::Connection).env("GREETING", "hi").start();
    let mut client = Client::connect(&host);
    assert_eq!(client.ask("getenv GREETING"), "env GREETING=hi");
}
