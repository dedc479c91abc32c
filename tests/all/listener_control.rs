//! Listener and connection control through the `probe` guest: disable and
//! enable, the real descriptor behind `fd()`, switching the accept callback
//! off and on, owned connection handles used from other connections, pausing
//! and resuming reads, write shutdown, `loop-exit`, and addresses (and the
//! absence of TLS) as the log and the guest see them.
use crate::support;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{HostProcess, Probe, TestHost};

/// How long a client waits before concluding that no answer is coming.
const SILENCE: Duration = Duration::from_millis(300);

/// The answer to `whoami`.
#[derive(Debug)]
struct WhoAmI {
    conn: u64,
    peer: SocketAddr,
    local: SocketAddr,
    listener: u64,
    fd: i32,
}

fn whoami(probe: &mut Probe) -> WhoAmI {
    let answer = probe.ask("whoami");
    let words: Vec<&str> = answer.split_whitespace().collect();
    match words.as_slice() {
        ["conn", conn, "peer", peer, "local", local, "listener", listener, "fd", fd] => WhoAmI {
            conn: conn.parse().unwrap(),
            peer: peer.parse().unwrap(),
            local: local.parse().unwrap(),
            listener: listener.parse().unwrap(),
            fd: fd.parse().unwrap(),
        },
        _ => panic!("unexpected answer to whoami: {answer:?}"),
    }
}

/// The operator's listeners as `operators` reports them: (id, fd, address).
fn operators(probe: &mut Probe) -> Vec<(u64, i32, SocketAddr)> {
    let answer = probe.ask("operators");
    let rest =
        answer.strip_prefix("operators ").unwrap_or_else(|| panic!("unexpected answer to operators: {answer:?}"));
    rest.split_whitespace()
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let id = parts.next().unwrap().parse().unwrap();
            let fd = parts.next().unwrap().parse().unwrap();
            let address = parts.next().unwrap().parse().unwrap_or_else(|e| panic!("bad address in {entry:?}: {e}"));
            (id, fd, address)
        })
        .collect()
}

/// Checks that nothing (no byte, no end of stream) arrives on `probe` for
/// `SILENCE`. Only meaningful when every earlier answer has been read.
fn assert_silent(probe: &mut Probe, what: &str) {
    probe.stream.set_read_timeout(Some(SILENCE)).unwrap();
    let mut byte = [0u8; 1];
    let result = probe.stream.peek(&mut byte);
    probe.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match result {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("{what}: the connection was closed"),
        Ok(_) => panic!("{what}: an answer arrived within {SILENCE:?}"),
        Err(e) => panic!("{what}: reading failed: {e}"),
    }
}

/// Whether the host ends `stream` (end of stream or reset) within `timeout`
/// without sending anything; `false` on data or on timeout.
fn closed_without_data(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(n) => {
            eprintln!("got {:?} instead of end of stream", String::from_utf8_lossy(&buffer[..n]));
            false
        }
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
    }
}

/// A connection made while the listener is disabled waits in the backlog
/// unserved, and is served as soon as `enable` is called.
#[test]
fn disabled_listener_leaves_connections_in_the_backlog_until_enabled() {
    let host = TestHost::start(&support::guest("probe"));
    let mut control = Probe::connect(host.addr);
    let listeners = operators(&mut control);
    assert_eq!(listeners.len(), 1, "{listeners:?}");
    let (id, _, address) = listeners[0];
    assert_eq!(address, host.addr);

    assert_eq!(control.ask(&format!("disable {id}")), "ok");
    let mut waiting = Probe::connect(host.addr); // the kernel completes the handshake
    waiting.send("ping");
    assert_silent(&mut waiting, "a connection made while disabled");
    assert_eq!(control.ask("count"), "1", "only the control connection was accepted");

    assert_eq!(control.ask(&format!("enable {id}")), "ok");
    assert_eq!(waiting.read_line().as_deref(), Some("pong"), "served after enable");
    assert_eq!(control.ask("count"), "2");
}

/// `fd()` is the listening socket's real descriptor in the host process:
/// /proc/PID/fd/FD is the socket that /proc/net/tcp lists as listening on
/// the operator's port.
#[test]
fn fd_is_the_real_listening_descriptor() {
    let (host, addr) = support::spawn_listening(&support::guest("probe"), &[]);
    let mut probe = Probe::connect(addr);
    let listeners = operators(&mut probe);
    assert_eq!(listeners.len(), 1, "{listeners:?}");
    let (id, fd, address) = listeners[0];
    assert_eq!(address, addr);
    let me = whoami(&mut probe);
    assert_eq!((me.listener, me.fd), (id, fd), "whoami and operators name the same listener");

    let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", host.pid()))
        .unwrap_or_else(|e| panic!("fd {fd} is not open in the host: {e}"));
    let link = link.to_string_lossy();
    let inode: u64 = link
        .strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("fd {fd} is not a socket: {link}"))
        .parse()
        .unwrap();

    // /proc/net/tcp: sl local_address rem_address st ... uid timeout inode
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{:04X}", addr.port());
    let listening: Vec<u64> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields[1] == local && fields[3] == "0A")
        .map(|fields| fields[9].parse().unwrap())
        .collect();
    assert_eq!(listening, [inode], "the socket listening on {addr} is fd {fd} (inode {inode})");
}

/// With the accept callback off, connections are accepted and closed at once
/// without reaching the guest; turning it back on restores service.
#[test]
fn accept_callback_off_closes_new_connections_at_once() {
    let host = TestHost::start(&support::guest("probe"));
    let mut control = Probe::connect(host.addr);
    let (id, _, _) = operators(&mut control)[0];

    assert_eq!(control.ask(&format!("callback {id} off")), "ok");
    let mut refused = TcpStream::connect(host.addr).unwrap();
    assert!(
        closed_without_data(&mut refused, Duration::from_secs(5)),
        "a connection made with the callback off is closed at once"
    );
    assert_eq!(control.ask("count"), "1", "on-accept did not run for it");

    assert_eq!(control.ask(&format!("callback {id} on")), "ok");
    let mut served = Probe::connect(host.addr);
    assert_eq!(served.ask("ping"), "pong");
    assert_eq!(control.ask("count"), "2");
}

/// The owned handle a guest keeps from `on-accept` writes to its connection
/// from another connection's callback.
#[test]
fn owned_handles_work_across_connections() {
    let host = TestHost::start(&support::guest("probe"));
    let mut a = Probe::connect(host.addr);
    let mut b = Probe::connect(host.addr);
    let a_id = whoami(&mut a).conn;
    let b_id = whoami(&mut b).conn;
    assert_ne!(a_id, b_id);

    assert_eq!(b.ask(&format!("send {a_id} hello")), "ok");
    assert_eq!(a.read_line().as_deref(), Some("hello"));
    assert_eq!(a.ask(&format!("send {b_id} hello back")), "ok");
    assert_eq!(b.read_line().as_deref(), Some("hello back"));
}

/// On a plain TCP listener the guest's `on-accept` gets the client's IP
/// address and port, and `connection.tls` is none.
#[test]
fn an_ip_peer_has_its_address_and_no_tls() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    let client = probe.stream.local_addr().unwrap();
    assert_eq!(probe.ask("peer"), format!("peer {client}"));
    assert_eq!(probe.ask("tls"), "none");
}

/// Data sent while reading is paused is not delivered until another
/// connection resumes reading; then it is.
#[test]
fn paused_connection_is_served_after_resume_from_another() {
    let host = TestHost::start(&support::guest("probe"));
    let mut a = Probe::connect(host.addr);
    let mut b = Probe::connect(host.addr);
    let a_id = whoami(&mut a).conn;

    assert_eq!(a.ask("pause"), "ok");
    a.send("ping");
    assert_silent(&mut a, "a paused connection");
    assert_eq!(b.ask(&format!("resume {a_id}")), "ok");
    assert_eq!(a.read_line().as_deref(), Some("pong"), "served after resume");
}

/// No `on-data` follows `pause-reading`, even for input that was waiting
/// while another callback paused the connection: under the shared model,
/// b's line arrives while a's callback computes, and that callback then
/// pauses b; b is answered only once resumed.
#[test]
fn input_waiting_when_another_callback_pauses_it_is_not_delivered() {
    let host = TestHost::start(&support::guest("probe"));
    let mut a = Probe::connect(host.addr);
    let mut b = Probe::connect(host.addr);
    let b_id = whoami(&mut b).conn;
    a.send(&format!("busy 300\npause {b_id}"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    b.send("ping");
    assert_eq!(a.read_line().as_deref(), Some("done"));
    assert_eq!(a.read_line().as_deref(), Some("ok"));
    assert_silent(&mut b, "a connection paused while its input waited");
    assert_eq!(a.ask(&format!("resume {b_id}")), "ok");
    assert_eq!(b.read_line().as_deref(), Some("pong"), "served after resume");
}

/// A write that fails reaches the guest as an error event, as a failed read
/// does, so a guest can forget what it keeps for that connection: here a
/// peer pauses reading and resets, another connection writes to it (the
/// write fails), and the probe then forgets the reset connection.
#[test]
fn failed_write_reaches_the_guest_as_an_error_event() {
    let host = TestHost::start(&support::guest("probe"));
    let mut writer = Probe::connect(host.addr);
    let mut vanishing = Probe::connect(host.addr);
    let vanishing_id = whoami(&mut vanishing).conn;
    // Paused, the host does not read the reset below; only the write sees it.
    assert_eq!(vanishing.ask("pause"), "ok");
    socket2::SockRef::from(&vanishing.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(vanishing); // RST

    let started = Instant::now();
    let mut answers = Vec::new();
    loop {
        let answer = writer.ask(&format!("send {vanishing_id} anyone there?"));
        if answer == "error no-such-connection" {
            break; // the probe got the event and forgot the connection
        }
        if answers.last() != Some(&answer) {
            answers.push(answer);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no error event within 10 s; the writes answered (in turn) {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After `shutdown-write` the client reads `ok` then end of stream, yet what
/// it sends afterwards still reaches the guest.
#[test]
fn shutdown_write_ends_output_but_not_input() {
    let host = TestHost::start(&support::guest("probe"));
    let mut witness = Probe::connect(host.addr);
    let witness_id = whoami(&mut witness).conn;
    let mut half = Probe::connect(host.addr);

    assert_eq!(half.ask("shutdown-write"), "ok");
    assert_eq!(half.read_line(), None, "end of stream after ok");
    // The guest reads this and writes to the witness; its own answer cannot
    // be sent any more (the probe then fails the callback, which is fine).
    half.send(&format!("send {witness_id} still reading"));
    assert_eq!(witness.read_line().as_deref(), Some("still reading"));
}

/// `exit` (loop-exit) makes the in-process host stop by itself.
#[test]
fn exit_stops_the_in_process_host() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("ping"), "pong");
    assert!(!host.has_exited(), "the host runs before exit");
    assert_eq!(probe.ask("exit"), "ok");
    assert_eq!(probe.read_line(), None, "the host closes the connection as it stops");
    assert!(host.wait_exit(Duration::from_secs(10)), "the host stops within 10 s of exit");
}

/// `exit` (loop-exit) makes the `host` binary exit with status 0.
#[test]
fn exit_makes_the_binary_exit_with_status_0() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &[]);
    let mut probe = Probe::connect(addr);
    assert_eq!(probe.ask("exit"), "ok");
    let started = Instant::now();
    assert_eq!(probe.read_line(), None, "the host closes the connection as it stops");
    drop(probe);
    let status = host.wait_exit(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("still running 10 s after exit:\n{}", host.output()));
    assert!(status.success(), "exit status {status}:\n{}", host.output());
    eprintln!("exited {:?} after exit", started.elapsed());
}

/// The host's log and the guest's `whoami` agree on the connection's id,
/// peer address and local address, and both match the client's view.
#[test]
fn log_and_whoami_agree_on_addresses() {
    let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
    let guest = support::guest("probe");
    // `env` sets RUST_LOG after HostProcess does, so that the per-connection
    // debug lines are logged.
    let host = HostProcess::spawn_with(Command::new("env").args([
        "RUST_LOG=debug,cranelift=warn,wasmtime=warn",
        support::host_binary(),
        "--component",
        guest.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ]));
    let listening = host
        .wait_for_line("listening", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the host did not start listening:\n{}", host.output()));
    assert_eq!(field(&listening, "address"), addr.to_string(), "{listening}");

    let mut probe = Probe::connect(addr);
    let me = whoami(&mut probe);
    assert_eq!(me.peer, probe.stream.local_addr().unwrap(), "whoami's peer is the client");
    assert_eq!(me.local, probe.stream.peer_addr().unwrap(), "whoami's local is what the client reached");
    assert_eq!(me.local, addr);

    let accepted = host
        .wait_for_line(&format!("accepted conn={} ", me.conn), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line for conn {}:\n{}", me.conn, host.output()));
    assert_eq!(field(&accepted, "peer"), me.peer.to_string(), "{accepted}");
    assert_eq!(field(&accepted, "listener"), me.listener.to_string(), "{accepted}");
    assert_eq!(field(&listening, "listener"), me.listener.to_string(), "{listening}");

    // What the guest prints is tagged with the component and with the
    // connection whose callback printed it.
    let mut other = Probe::connect(addr);
    let them = whoami(&mut other);
    assert_eq!(other.ask("say from the other one"), "said");
    assert_eq!(probe.ask("say from the first one"), "said");
    for (who, text) in [(&them, "from the other one"), (&me, "from the first one")] {
        let line = host
            .wait_for_line(text, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no guest output {text:?}:\n{}", host.output()));
        assert_eq!(field(&line, "conn"), who.conn.to_string(), "{line}");
        assert_eq!(field(&line, "component"), "probe", "{line}");
        assert_eq!(field(&line, "stream"), "stdout", "{line}");
    }

    // Each connection's end is one debug line with its reason.
    drop(other);
    let closed = host
        .wait_for_line(&format!("closed conn={} ", them.conn), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no closed line for conn {}:\n{}", them.conn, host.output()));
    assert_eq!(field(&closed, "reason"), "peer_closed", "{closed}");
    assert_eq!(field(&accepted, "component"), "probe", "{accepted}");
}

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .to_string()
}
