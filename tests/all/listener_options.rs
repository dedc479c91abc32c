//! Listener options and backlog rules, checked on the real sockets: first
//! `socket::bind_listener` directly (getsockopt, fcntl, `ss`), then through a
//! running host and the `probe` guest's `bind`, `enable` and `free`.
use crate::support;

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::process::Command;
use std::time::{Duration, Instant};

use evconn_host::net::ListenOptions;
use evconn_host::net::{BindError, DEFAULT_BACKLOG, bind_listener, listen_backlog};
use socket2::SockRef;
use support::{Probe, TestHost};

const LOOPBACK_V4: &str = "127.0.0.1:0";
const LOOPBACK_V6: &str = "[::1]:0";

/// How long a client waits before concluding it is not being served.
const SILENCE: Duration = Duration::from_millis(300);

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// Binds with `options` and the default backlog, or panics saying why.
fn bind(address: &str, options: ListenOptions) -> TcpListener {
    bind_listener(addr(address), options, -1)
        .unwrap_or_else(|e| panic!("bind_listener({address}, {options:?}) failed: {e}"))
}

/// `FD_CLOEXEC` of a descriptor, from `fcntl(F_GETFD)`.
fn cloexec(fd: impl AsFd) -> bool {
    let flags = rustix::io::fcntl_getfd(fd).expect("fcntl(F_GETFD)");
    flags.contains(rustix::io::FdFlags::CLOEXEC)
}

/// `O_NONBLOCK` of a descriptor, from `fcntl(F_GETFL)`.
fn nonblocking(fd: impl AsFd) -> bool {
    let flags = rustix::fs::fcntl_getfl(fd).expect("fcntl(F_GETFL)");
    flags.contains(rustix::fs::OFlags::NONBLOCK)
}

/// `TCP_DEFER_ACCEPT` of a socket, from getsockopt.
fn defer_accept(fd: RawFd) -> libc::c_int {
    let mut value: libc::c_int = -1;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes and sized as getsockopt(2)
    // expects for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_DEFER_ACCEPT): {}", io::Error::last_os_error());
    value
}

/// Accepts one connection on a non-blocking listener, polling for up to 5 s.
fn accept_within(listener: &TcpListener, limit: Duration) -> Option<TcpStream> {
    let deadline = Instant::now() + limit;
    for _ in 0..1000 {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept failed: {e}"),
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Connects with a bounded wait.
fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&address, Duration::from_secs(5))
}

/// Panics unless `stream` stays open and silent for `wait`: nothing read,
/// no end of stream, no reset.
fn assert_silent(stream: &TcpStream, wait: Duration, what: &str) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 64];
    let result = (&*stream).read(&mut byte);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match result {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Ok(0) => panic!("{what}: the connection was closed instead of waiting"),
        Ok(n) => panic!("{what}: got {:?} but expected no answer", String::from_utf8_lossy(&byte[..n])),
        Err(e) => panic!("{what}: the connection failed instead of waiting: {e}"),
    }
}

/// The backlog (`Send-Q`) that `ss` reports for the socket listening on
/// 127.0.0.1:`port`.
fn ss_backlog(port: u16) -> u32 {
    let output = Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output().expect("ss (iproute2) runs");
    assert!(output.status.success(), "ss failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let local = format!("127.0.0.1:{port}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|columns| columns.len() >= 4 && columns[0] == "LISTEN" && columns[3] == local)
        .collect();
    assert_eq!(rows.len(), 1, "expected one listening socket on {local} in ss's output:\n{text}");
    rows[0][2].parse().unwrap_or_else(|_| panic!("Send-Q is not a number in {:?}", rows[0]))
}

// ---------------------------------------------------------------------------
// bind_listener: each option on the real socket
// ---------------------------------------------------------------------------

/// `reuseable` turns `SO_REUSEADDR` on; without it the option stays off.
#[test]
fn reuseable_sets_so_reuseaddr() {
    let with = bind(LOOPBACK_V4, ListenOptions::REUSEABLE);
    assert!(SockRef::from(&with).reuse_address().unwrap(), "SO_REUSEADDR with reuseable");
    let without = bind(LOOPBACK_V4, ListenOptions::empty());
    assert!(!SockRef::from(&without).reuse_address().unwrap(), "SO_REUSEADDR without reuseable");
    // Other options do not turn it on by the way.
    let others = bind(LOOPBACK_V4, ListenOptions::CLOSE_ON_EXEC | ListenOptions::REUSEABLE_PORT);
    assert!(!SockRef::from(&others).reuse_address().unwrap(), "SO_REUSEADDR with close-on-exec,reuseable-port");
}

/// `reuseable-port` turns `SO_REUSEPORT` on (off without it), and two
/// listeners with it share one port, both accepting; without it the second
/// bind of the port fails with "address in use".
#[test]
fn reuseable_port_sets_so_reuseport_and_shares_the_port() {
    let without = bind(LOOPBACK_V4, ListenOptions::CLOSE_ON_EXEC);
    assert!(!SockRef::from(&without).reuse_port().unwrap(), "SO_REUSEPORT without reuseable-port");

    let options = ListenOptions::REUSEABLE_PORT | ListenOptions::CLOSE_ON_EXEC;
    let first = bind(LOOPBACK_V4, options);
    assert!(SockRef::from(&first).reuse_port().unwrap(), "SO_REUSEPORT with reuseable-port");
    let shared = first.local_addr().unwrap();
    let second = bind_listener(shared, options, -1)
        .unwrap_or_else(|e| panic!("a second reuseable-port listener on {shared}: {e}"));
    assert_eq!(second.local_addr().unwrap(), shared);
    assert!(SockRef::from(&second).reuse_port().unwrap());

    // The kernel spreads connections over both: within a bounded number of
    // connections each listener gets at least one.
    let (mut to_first, mut to_second) = (0, 0);
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(connect(shared).expect("connects to the shared port"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(_accepted) = first.accept() {
                to_first += 1;
                break;
            }
            if let Ok(_accepted) = second.accept() {
                to_second += 1;
                break;
            }
            assert!(Instant::now() < deadline, "neither listener accepted a connection to {shared}");
            std::thread::sleep(Duration::from_millis(2));
        }
        if to_first > 0 && to_second > 0 {
            break;
        }
    }
    assert!(
        to_first > 0 && to_second > 0,
        "connections to {shared} all went to one listener: {to_first} and {to_second}"
    );

    // Without the option, the port cannot be bound twice.
    let taken = without.local_addr().unwrap();
    let error = bind_listener(taken, ListenOptions::CLOSE_ON_EXEC, -1)
        .expect_err("a second listener without reuseable-port must not bind the same port");
    assert_eq!(
        error.io_error().and_then(io::Error::raw_os_error),
        Some(libc::EADDRINUSE),
        "binding {taken} twice: {error}"
    );
    // Nor can one with the option join a port held by a socket without it.
    let error = bind_listener(taken, options, -1)
        .expect_err("reuseable-port cannot join a port whose holder did not ask for it");
    assert_eq!(error.io_error().and_then(io::Error::raw_os_error), Some(libc::EADDRINUSE), "{error}");
}

/// `close-on-exec` sets `FD_CLOEXEC` on the listening socket; without it
/// the flag is cleared (socket2 would set it by default).
#[test]
fn close_on_exec_sets_and_clears_fd_cloexec() {
    let with = bind(LOOPBACK_V4, ListenOptions::CLOSE_ON_EXEC);
    assert!(cloexec(&with), "FD_CLOEXEC with close-on-exec");
    let without = bind(LOOPBACK_V4, ListenOptions::REUSEABLE);
    assert!(!cloexec(&without), "FD_CLOEXEC without close-on-exec");
}

/// `deferred-accept` sets `TCP_DEFER_ACCEPT` to a nonzero timeout; without
/// it the option is 0.
#[test]
fn deferred_accept_sets_tcp_defer_accept() {
    let with = bind(LOOPBACK_V4, ListenOptions::DEFERRED_ACCEPT | ListenOptions::CLOSE_ON_EXEC);
    assert!(defer_accept(with.as_raw_fd()) > 0, "TCP_DEFER_ACCEPT with deferred-accept");
    let without = bind(LOOPBACK_V4, ListenOptions::CLOSE_ON_EXEC);
    assert_eq!(defer_accept(without.as_raw_fd()), 0, "TCP_DEFER_ACCEPT without deferred-accept");
}

/// `bind-ipv6-only` sets `IPV6_V6ONLY` to 1 on an IPv6 listener; without it
/// the host sets 0. (Linux itself sets the option when a socket binds a
/// specific IPv6 address such as ::1, so "absent gives 0" is checked on the
/// wildcard, the only address where the option changes anything.)
#[test]
fn bind_ipv6_only_sets_ipv6_v6only() {
    let options = ListenOptions::BIND_IPV6_ONLY | ListenOptions::CLOSE_ON_EXEC;
    let with = bind_listener(addr(LOOPBACK_V6), options, -1)
        .unwrap_or_else(|e| panic!("cannot bind [::1]:0 on this machine (is IPv6 loopback available?): {e}"));
    assert!(SockRef::from(&with).only_v6().unwrap(), "IPV6_V6ONLY on [::1] with bind-ipv6-only");

    let wildcard = addr("[::]:0");
    let cannot = |e: BindError| panic!("cannot bind [::]:0 on this machine, so IPV6_V6ONLY cannot be checked: {e}");
    let with = bind_listener(wildcard, options, -1).unwrap_or_else(cannot);
    assert!(SockRef::from(&with).only_v6().unwrap(), "IPV6_V6ONLY on [::] with bind-ipv6-only");
    let without = bind_listener(wildcard, ListenOptions::CLOSE_ON_EXEC, -1).unwrap_or_else(cannot);
    assert!(!SockRef::from(&without).only_v6().unwrap(), "IPV6_V6ONLY on [::] without bind-ipv6-only");
    // For IPv4 the flag is ignored: the bind still succeeds.
    bind(LOOPBACK_V4, options);
}

/// On `[::]`, `bind-ipv6-only` makes IPv4 connections to the port refused;
/// without it the same listener accepts an IPv4 connection (as an
/// IPv4-mapped peer).
#[test]
fn bind_ipv6_only_refuses_ipv4_on_the_wildcard() {
    let wildcard = addr("[::]:0");
    let v4 = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);

    // Without the flag: the IPv6 wildcard listener takes the IPv4 client.
    let dual = bind_listener(wildcard, ListenOptions::CLOSE_ON_EXEC, -1)
        .unwrap_or_else(|e| panic!("cannot bind [::]:0 on this machine, so IPV6_V6ONLY cannot be tested: {e}"));
    let port = dual.local_addr().unwrap().port();
    let client = connect(v4(port)).expect("without bind-ipv6-only an IPv4 client connects to [::]");
    let accepted = accept_within(&dual, Duration::from_secs(5))
        .expect("the [::] listener without bind-ipv6-only accepts the IPv4 client");
    let peer = accepted.peer_addr().unwrap();
    assert!(
        matches!(peer, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST)),
        "the IPv4 client appears as ::ffff:127.0.0.1, not {peer}"
    );
    assert_eq!(client.peer_addr().unwrap(), v4(port));
    drop((client, accepted, dual));

    // With the flag: refused. Some other test's IPv4 socket could hold
    // 127.0.0.1 on the port the kernel picked for [::]; then the connection
    // goes there, never to the v6-only listener, and another port is tried.
    let options = ListenOptions::BIND_IPV6_ONLY | ListenOptions::CLOSE_ON_EXEC;
    for attempt in 1..=5 {
        let only = bind_listener(wildcard, options, -1)
            .unwrap_or_else(|e| panic!("cannot bind [::]:0 with IPV6_V6ONLY on this machine: {e}"));
        assert!(SockRef::from(&only).only_v6().unwrap());
        let port = only.local_addr().unwrap().port();
        match connect(v4(port)) {
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "IPv4 connect to port {port}: {e}");
                // The listener is there for IPv6 all the same.
                let _v6 = connect(addr(&format!("[::1]:{port}"))).expect("an IPv6 client connects");
                assert!(accept_within(&only, Duration::from_secs(5)).is_some(), "the v6-only listener accepts IPv6");
                return;
            }
            Ok(_stray) => {
                assert!(
                    accept_within(&only, Duration::from_millis(200)).is_none(),
                    "the bind-ipv6-only listener on port {port} accepted an IPv4 connection"
                );
                eprintln!("attempt {attempt}: port {port} is held on 127.0.0.1 by another socket; retrying");
            }
        }
    }
    panic!("five [::] ports in a row were also held on 127.0.0.1 by other sockets");
}

/// Every listener has `SO_KEEPALIVE` on, whatever its options, and the
/// connections it accepts inherit it.
#[test]
fn keep_alive_is_always_on() {
    let all = all_options() & !ListenOptions::BIND_IPV6_ONLY;
    for options in [ListenOptions::empty(), ListenOptions::CLOSE_ON_EXEC, all] {
        let listener = bind(LOOPBACK_V4, options);
        assert!(SockRef::from(&listener).keepalive().unwrap(), "SO_KEEPALIVE with {options:?}");
        if options.contains(ListenOptions::DEFERRED_ACCEPT) {
            continue; // accepting would wait for client data; covered by the others
        }
        let _client = connect(listener.local_addr().unwrap()).expect("connects");
        let accepted = accept_within(&listener, Duration::from_secs(5)).expect("accepts");
        assert!(SockRef::from(&accepted).keepalive().unwrap(), "an accepted socket inherits SO_KEEPALIVE");
    }
}

/// Every listener is non-blocking (`O_NONBLOCK`), with or without
/// `leave-sockets-blocking` (which concerns accepted sockets only).
#[test]
fn listener_is_non_blocking() {
    for options in [
        ListenOptions::empty(),
        ListenOptions::LEAVE_SOCKETS_BLOCKING | ListenOptions::CLOSE_ON_EXEC,
        all_options() & !ListenOptions::BIND_IPV6_ONLY,
    ] {
        let listener = bind(LOOPBACK_V4, options);
        assert!(nonblocking(&listener), "O_NONBLOCK with {options:?}");
        // And behaves so: accept with nothing pending returns at once.
        let error = listener.accept().expect_err("nothing is pending");
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "accept on an idle listener: {error}");
    }
}

fn all_options() -> ListenOptions {
    evconn_host::net::ListenOptions::NAMES.iter().fold(ListenOptions::empty(), |all, (_, o)| all | *o)
}

// ---------------------------------------------------------------------------
// Backlog rules
// ---------------------------------------------------------------------------

/// `listen_backlog` follows libevent: negative gives 128, positive is kept,
/// zero gives none (the socket should already listen).
#[test]
fn listen_backlog_follows_libevent() {
    assert_eq!(DEFAULT_BACKLOG, 128);
    for negative in [-1, -2, -128, -129, i32::MIN] {
        assert_eq!(listen_backlog(negative), Some(128), "backlog {negative}");
    }
    for positive in [1, 7, 128, 129, 4096, i32::MAX] {
        assert_eq!(listen_backlog(positive), Some(positive), "backlog {positive}");
    }
    assert_eq!(listen_backlog(0), None);
}

/// `bind_listener` with backlog 0 fails with `ZeroBacklog` naming the
/// address, and leaves the address free.
#[test]
fn zero_backlog_is_an_error() {
    let holder = bind(LOOPBACK_V4, ListenOptions::CLOSE_ON_EXEC);
    let address = holder.local_addr().unwrap();
    drop(holder);
    match bind_listener(address, ListenOptions::REUSEABLE | ListenOptions::CLOSE_ON_EXEC, 0) {
        Err(BindError::ZeroBacklog(named)) => assert_eq!(named, address.into()),
        Err(other) => panic!("backlog 0 gave {other} instead of ZeroBacklog"),
        Ok(listener) => panic!("backlog 0 bound {:?}", listener.local_addr()),
    }
    // Nothing was left bound: the same port binds again at once.
    bind_listener(address, ListenOptions::REUSEABLE | ListenOptions::CLOSE_ON_EXEC, -1)
        .unwrap_or_else(|e| panic!("{address} after the failed backlog-0 bind: {e}"));
}

/// The backlog reaches `listen()`: `ss` shows 128 for -1 and 7 for 7.
#[test]
fn backlog_reaches_listen() {
    for (given, expected) in [(-1, 128), (7, 7), (1, 1), (200, 200)] {
        let listener = bind_listener(addr(LOOPBACK_V4), ListenOptions::CLOSE_ON_EXEC, given)
            .unwrap_or_else(|e| panic!("backlog {given}: {e}"));
        let port = listener.local_addr().unwrap().port();
        assert_eq!(ss_backlog(port), expected, "listen() backlog for bind_listener(..., {given})");
    }
}

// ---------------------------------------------------------------------------
// Through the host and the probe guest
// ---------------------------------------------------------------------------

/// A listener the probe guest bound: `bound ID FD ADDR`.
#[derive(Debug)]
struct Bound {
    id: u64,
    fd: RawFd,
    addr: SocketAddr,
}

/// Asks the probe to bind and parses its answer, or panics with it.
fn guest_bind(control: &mut Probe, address: &str, backlog: i32, options: &str) -> Bound {
    let command = format!("bind {address} {backlog} {options}");
    let answer = control.ask(&command);
    let words: Vec<&str> = answer.split_whitespace().collect();
    match words.as_slice() {
        ["bound", id, fd, bound] => Bound {
            id: id.parse().unwrap_or_else(|_| panic!("id in {answer:?}")),
            fd: fd.parse().unwrap_or_else(|_| panic!("fd in {answer:?}")),
            addr: bound.parse().unwrap_or_else(|_| panic!("address in {answer:?}")),
        },
        _ => panic!("{command:?} was answered {answer:?}"),
    }
}

/// A host running the probe guest that may bind any port of 127.0.0.1.
fn probe_host() -> TestHost {
    TestHost::builder(&support::guest("probe")).allow_bind(LOOPBACK_V4).start()
}

/// The descriptor of a listener in this process (the host runs in it).
///
/// # Safety
/// `fd` must stay open while the result is used.
unsafe fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the caller keeps fd open.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Connects a probe client to `bound` and checks it is served there.
fn assert_served(bound: &Bound) -> Probe {
    let mut client = Probe::connect(bound.addr);
    assert_eq!(client.ask("ping"), "pong", "ping through listener {}", bound.id);
    let whoami = client.ask("whoami");
    assert!(
        whoami.contains(&format!(" listener {} fd {}", bound.id, bound.fd)),
        "the connection did not arrive on listener {} (fd {}): {whoami:?}",
        bound.id,
        bound.fd
    );
    client
}

/// A guest bind of an allowed address works: the answer names a real
/// listening socket in the host with the options asked for, and the new
/// listener serves connections.
#[test]
fn guest_bind_of_an_allowed_address_serves() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    let bound = guest_bind(&mut control, LOOPBACK_V4, -1, "reuseable,close-on-free,close-on-exec");
    assert_eq!(bound.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(bound.addr.port(), 0, "the kernel's port is reported, not 0");
    assert_ne!(bound.addr, host.addr);

    // The descriptor the guest reports is the real socket, with the options.
    // SAFETY: the guest holds the listener, so the host keeps fd open.
    let fd = unsafe { borrow_fd(bound.fd) };
    let socket = SockRef::from(&fd);
    assert_eq!(socket.local_addr().unwrap().as_socket(), Some(bound.addr), "fd {} is the bound socket", bound.fd);
    assert!(socket.is_listener().unwrap(), "fd {} listens", bound.fd);
    assert!(socket.reuse_address().unwrap(), "SO_REUSEADDR from the guest's reuseable");
    assert!(!socket.reuse_port().unwrap(), "no SO_REUSEPORT: not asked for");
    assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE");
    assert!(cloexec(fd), "FD_CLOEXEC from the guest's close-on-exec");
    assert!(nonblocking(fd), "O_NONBLOCK");
    assert_eq!(ss_backlog(bound.addr.port()), 128, "backlog -1 from the guest gives 128");

    let mut client = assert_served(&bound);
    assert_eq!(client.ask("ping"), "pong");
    // The operator's listener still serves too.
    assert_eq!(control.ask("ping"), "pong");

    // A second guest listener, with a backlog of its own.
    let other = guest_bind(&mut control, LOOPBACK_V4, 5, "close-on-free,close-on-exec");
    assert_ne!(other.id, bound.id);
    assert_ne!(other.addr, bound.addr);
    assert_eq!(ss_backlog(other.addr.port()), 5, "backlog 5 from the guest");
    assert_served(&other);
}

/// A bind outside `--allow-bind` is refused with `access-denied`: with no
/// allowed address at all, and for an address whose IP is not the allowed one.
#[test]
fn guest_bind_outside_allow_bind_is_access_denied() {
    let closed = TestHost::start(&support::guest("probe"));
    let mut control = Probe::connect(closed.addr);
    assert_eq!(control.ask("bind 127.0.0.1:0 -1 reuseable,close-on-free"), "error access-denied");
    assert_eq!(control.ask("ping"), "pong", "the refusal does not end the connection");

    let port = support::free_port();
    let narrow = TestHost::builder(&support::guest("probe")).allow_bind(&format!("127.0.0.1:{port}")).start();
    let mut control = Probe::connect(narrow.addr);
    assert_eq!(control.ask("bind [::1]:0 -1 close-on-free"), "error access-denied", "another IP");
    let other_port = if port == u16::MAX { port - 1 } else { port + 1 };
    assert_eq!(
        control.ask(&format!("bind 127.0.0.1:{other_port} -1 close-on-free")),
        "error access-denied",
        "another port than the one allowed"
    );
    assert_eq!(
        control.ask("bind 127.0.0.1:0 -1 close-on-free"),
        "error access-denied",
        "port 0 is not the one allowed port"
    );
    // The one allowed address binds (unless another process took it meanwhile).
    let answer = control.ask(&format!("bind 127.0.0.1:{port} -1 close-on-free,close-on-exec"));
    assert!(
        (answer.starts_with("bound ") && answer.ends_with(&format!(" 127.0.0.1:{port}")))
            || answer == "error address-in-use",
        "binding the allowed 127.0.0.1:{port}: {answer:?}"
    );
}

/// A guest bind with backlog 0 is refused with `invalid-argument`, and a
/// later bind on the same connection works.
#[test]
fn guest_bind_with_zero_backlog_is_invalid_argument() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    assert_eq!(control.ask("bind 127.0.0.1:0 0 reuseable,close-on-free"), "error invalid-argument");
    assert_eq!(control.ask("bind 127.0.0.1:0 0 -"), "error invalid-argument");
    let bound = guest_bind(&mut control, LOOPBACK_V4, 3, "close-on-free,close-on-exec");
    assert_eq!(ss_backlog(bound.addr.port()), 3);
    assert_served(&bound);
}

/// `disabled` makes a guest listener start disabled: a client that connects
/// is not served until `enable`, then it is.
#[test]
fn disabled_listener_serves_only_after_enable() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    let bound = guest_bind(&mut control, LOOPBACK_V4, -1, "disabled,close-on-free,close-on-exec");

    let mut waiting = Probe::connect(bound.addr);
    waiting.send("ping");
    assert_silent(&waiting.stream, SILENCE, "a client of a listener bound disabled");
    // The kernel queued it: one connection in the backlog.
    assert_silent(&waiting.stream, SILENCE, "still, a moment later");

    assert_eq!(control.ask(&format!("enable {}", bound.id)), "ok");
    assert_eq!(waiting.read_line().as_deref(), Some("pong"), "the waiting client is served after enable");
    let whoami = waiting.ask("whoami");
    assert!(whoami.contains(&format!(" listener {} ", bound.id)), "{whoami:?}");
    // And new clients are served at once.
    assert_served(&bound);
}

/// With `close-on-free`, freeing a guest listener closes its socket: the
/// port refuses new connections; connections it already accepted go on.
#[test]
fn free_with_close_on_free_closes_the_port() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    let bound = guest_bind(&mut control, LOOPBACK_V4, -1, "close-on-free,close-on-exec");
    let mut served = assert_served(&bound);

    assert_eq!(control.ask(&format!("free {}", bound.id)), "ok");
    match connect(bound.addr) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "connect after free: {e}"),
        Ok(_stream) => {
            panic!("{} still accepted a connection after free with close-on-free", bound.addr);
        }
    }
    assert_eq!(served.ask("ping"), "pong", "a connection accepted before free is not affected");
    assert_eq!(control.ask(&format!("enable {}", bound.id)), "error no-such-listener");
}

/// Without `close-on-free`, freeing a guest listener stops accepting but
/// leaves the socket open: a new client connects (it waits in the backlog)
/// and is never served.
#[test]
fn free_without_close_on_free_keeps_the_socket_unserved() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    let bound = guest_bind(&mut control, LOOPBACK_V4, -1, "close-on-exec");
    let mut served = assert_served(&bound);

    assert_eq!(control.ask(&format!("free {}", bound.id)), "ok");
    let mut late = Probe::connect(bound.addr); // panics if refused
    late.send("ping");
    assert_silent(&late.stream, SILENCE, "a client of a freed listener without close-on-free");
    assert_eq!(ss_backlog(bound.addr.port()), 128, "the socket still listens after free");
    // Its descriptor is still the listening socket.
    // SAFETY: the host keeps the socket of a listener freed without
    // close-on-free open until it exits.
    let fd = unsafe { borrow_fd(bound.fd) };
    assert_eq!(SockRef::from(&fd).local_addr().unwrap().as_socket(), Some(bound.addr));
    assert_silent(&late.stream, SILENCE, "still unserved");
    assert_eq!(served.ask("ping"), "pong", "a connection accepted before free is not affected");
    assert_eq!(control.ask("ping"), "pong");
}

/// `leave-sockets-blocking` and `threadsafe` are accepted and harmless: a
/// listener bound with them serves ping/pong, to several clients at once.
#[test]
fn leave_sockets_blocking_and_threadsafe_are_harmless() {
    let host = probe_host();
    let mut control = Probe::connect(host.addr);
    for options in [
        "leave-sockets-blocking,close-on-free,close-on-exec",
        "threadsafe,close-on-free,close-on-exec",
        "leave-sockets-blocking,threadsafe,reuseable,close-on-free,close-on-exec",
    ] {
        let bound = guest_bind(&mut control, LOOPBACK_V4, -1, options);
        // SAFETY: the guest holds the listener, so the host keeps fd open.
        let fd = unsafe { borrow_fd(bound.fd) };
        assert!(nonblocking(fd), "the listener stays non-blocking with {options}");
        let mut clients: Vec<Probe> = (0..3).map(|_| Probe::connect(bound.addr)).collect();
        for client in &mut clients {
            client.send("ping");
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.read_line().as_deref(), Some("pong"), "client {i} with {options}");
        }
        // Clients served in turn, interleaved, keep being served.
        for round in 0..3 {
            for client in &mut clients {
                assert_eq!(client.ask("ping"), "pong", "round {round} with {options}");
            }
        }
        assert_eq!(control.ask(&format!("free {}", bound.id)), "ok");
    }
}
