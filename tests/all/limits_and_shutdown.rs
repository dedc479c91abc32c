//! The host's limits and its orderly stop: `--max-connections` leaves extra
//! clients in the kernel backlog, `--write-buffer` holds back a peer that
//! never reads, `--idle-timeout` closes silent connections only, and SIGTERM,
//! a second signal, the shutdown timeout and the guest's `loop-exit` stop the
//! host as documented.
use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;
use rand::{RngCore, SeedableRng};
use support::{HostProcess, Probe, TestHost};

/// How long a client waits before concluding that no answer is coming.
const SILENCE: Duration = Duration::from_millis(300);

/// What one bounded read saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Some bytes.
    Data(Vec<u8>),
    /// End of stream.
    Eof,
    /// Nothing within the time allowed.
    Nothing,
    /// The connection was reset (or failed otherwise).
    Failed(ErrorKind),
}

/// Looks at what arrives on `stream` within `timeout`, without consuming it
/// (so a `Probe`'s reader still sees it).
fn peek_within(stream: &TcpStream, timeout: Duration) -> Seen {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buffer = [0u8; 256];
    let seen = match stream.peek(&mut buffer) {
        Ok(0) => Seen::Eof,
        Ok(n) => Seen::Data(buffer[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Seen::Nothing,
        Err(e) => Seen::Failed(e.kind()),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    seen
}

/// Waits (at most `timeout`) for `stream` to end, discarding nothing; returns
/// when it ended, or panics with what came instead.
fn wait_for_eof(stream: &TcpStream, timeout: Duration, what: &str) -> Instant {
    match peek_within(stream, timeout) {
        Seen::Eof => Instant::now(),
        other => panic!("{what}: expected end of stream within {timeout:?}, saw {other:?}"),
    }
}

/// Sends SIGTERM to the `host` process.
fn sigterm(host: &HostProcess) {
    host.signal(rustix::process::Signal::TERM);
}

/// The resident set of process `pid`, in bytes.
fn vm_rss(pid: u32) -> u64 {
    support::procfs::status_kb(pid, "VmRSS") << 10
}

/// Whether a connection made to `addr` now goes unserved: refused, reset, or
/// accepted by the kernel but never answered (the probe's `ping` and the
/// echo guest's echo alike get no byte back within `SILENCE`).
fn new_connection_unserved(addr: SocketAddr) -> bool {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("new connection refused: {e}");
            return true;
        }
    };
    if stream.write_all(b"ping\n").is_err() {
        return true;
    }
    match peek_within(&stream, SILENCE) {
        Seen::Data(bytes) => {
            eprintln!("new connection was served: {:?}", String::from_utf8_lossy(&bytes));
            false
        }
        seen => {
            eprintln!("new connection unserved: {seen:?}");
            true
        }
    }
}

/// The pattern a client streams: random bytes repeating with a prime period,
/// so that lost, repeated or reordered chunks of a read never line up with it.
struct Pattern(Vec<u8>);

impl Pattern {
    const PERIOD: usize = 1_048_573;

    fn new(seed: u64) -> Self {
        let mut bytes = vec![0u8; Self::PERIOD];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Pattern(bytes)
    }

    /// Fills `buffer` with the stream's bytes from `offset` on.
    fn fill(&self, offset: u64, buffer: &mut [u8]) {
        let mut at = (offset % Self::PERIOD as u64) as usize;
        let mut filled = 0;
        while filled < buffer.len() {
            let n = (Self::PERIOD - at).min(buffer.len() - filled);
            buffer[filled..filled + n].copy_from_slice(&self.0[at..at + n]);
            filled += n;
            at = 0;
        }
    }

    /// Whether `bytes` are the stream's bytes from `offset` on.
    fn matches(&self, offset: u64, bytes: &[u8]) -> bool {
        let mut expected = vec![0u8; bytes.len()];
        self.fill(offset, &mut expected);
        expected == bytes
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// With `max-connections` 2, a third client completes its TCP handshake (the
/// kernel queues it) but is not served while two are open; as soon as one of
/// them closes, the third is accepted and its waiting `ping` answered.
#[test]
fn connections_beyond_the_maximum_wait_in_the_backlog() {
    let host = TestHost::builder(&support::guest("probe")).limits(|l| l.max_connections = 2).start();
    let mut first = Probe::connect(host.addr);
    let mut second = Probe::connect(host.addr);
    assert_eq!(first.ask("ping"), "pong");
    assert_eq!(second.ask("ping"), "pong");
    assert_eq!(second.ask("count"), "2", "two connections accepted");

    let mut third = TcpStream::connect(host.addr).expect("the kernel completes the handshake while the host is full");
    third.write_all(b"ping\n").unwrap();
    assert_eq!(peek_within(&third, SILENCE), Seen::Nothing, "the third client was served beyond max-connections");
    // The two served clients are still served meanwhile.
    assert_eq!(first.ask("ping"), "pong");
    assert_eq!(second.ask("ping"), "pong");
    assert_eq!(peek_within(&third, SILENCE), Seen::Nothing, "the third client was served beyond max-connections");

    let closed = Instant::now();
    drop(first);
    let seen = peek_within(&third, Duration::from_secs(5));
    assert_eq!(seen, Seen::Data(b"pong\n".to_vec()), "the third client after one of the first two closed");
    eprintln!("third client served {:?} after the first closed", closed.elapsed());
    let mut answer = [0u8; 5];
    third.read_exact(&mut answer).unwrap();
    third.write_all(b"count\n").unwrap();
    assert_eq!(peek_within(&third, Duration::from_secs(5)), Seen::Data(b"3\n".to_vec()));
}

/// However much the socket holds, one `on-data` call gets at most 256 KiB:
/// a 4 MiB line, sent while the guest is busy so that it piles up in the
/// socket, reaches the probe whole (it answers the line) in calls of at
/// most that. Under both models, since they read through the same path.
#[test]
fn one_on_data_call_gets_at_most_256_kib() {
    for isolation in [Isolation::Shared, Isolation::Connection] {
        let host = TestHost::builder(&support::guest("probe")).isolation(isolation).start();
        let mut client = Probe::connect(host.addr);
        client.send("busy 200");
        let mut line = vec![b' '; 4 << 20];
        line.push(b'\n');
        client.stream.write_all(&line).unwrap();
        assert_eq!(client.read_line().as_deref(), Some("done"), "{isolation:?}");
        assert_eq!(
            client.read_line().as_deref(),
            Some("error unknown-command \"\""),
            "{isolation:?}: the line arrived whole"
        );
        let largest: usize = client.ask("largest-read").strip_prefix("largest ").unwrap().parse().unwrap();
        eprintln!("{isolation:?}: largest on-data call {largest} bytes");
        assert!(largest > 0 && largest <= 256 << 10, "{isolation:?}: an on-data call got {largest} bytes");
    }
}

/// A client that sends as fast as it can and never reads cannot make the host
/// buffer without bound: with `--write-buffer 1M` the host stops reading from
/// it, TCP flow control blocks the client after far less than 100 MiB, the
/// host's resident memory stays within 32 MiB of where it started, and once
/// the client reads, every byte it sent comes back in order.
#[test]
fn a_peer_that_never_reads_is_held_back_by_flow_control() {
    const GOAL: u64 = 100 * MIB;
    const CHUNK: usize = 64 * KIB as usize;
    const RSS_ALLOWANCE: u64 = 32 * MIB;
    const SENT_BOUND: u64 = 64 * MIB;

    let (host, addr) = support::spawn_listening(&support::guest("echo"), &["--write-buffer", "1M"]);
    // One echo first, so that the baseline includes a served connection's
    // read buffer and the guest's first allocations.
    {
        let mut warm = TcpStream::connect(addr).unwrap();
        warm.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let payload = vec![7u8; CHUNK];
        warm.write_all(&payload).unwrap();
        let mut back = vec![0u8; CHUNK];
        warm.read_exact(&mut back).unwrap();
        assert_eq!(back, payload);
    }
    std::thread::sleep(Duration::from_millis(200));
    let baseline = vm_rss(host.pid());

    let pattern = Pattern::new(0x51_0e);
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let writing_done = AtomicBool::new(false);
    let (sent, blocked, largest_rss) = std::thread::scope(|scope| {
        let writing = scope.spawn(|| {
            let started = Instant::now();
            let mut chunk = vec![0u8; CHUNK];
            let mut sent = 0u64;
            let mut blocked = false;
            while sent < GOAL && started.elapsed() < Duration::from_secs(10) {
                let n = (GOAL - sent).min(CHUNK as u64) as usize;
                pattern.fill(sent, &mut chunk[..n]);
                match writer.write(&chunk[..n]) {
                    Ok(written) => sent += written as u64,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        blocked = true;
                        break;
                    }
                    Err(e) => panic!("writing failed after {sent} bytes: {e}"),
                }
            }
            writing_done.store(true, Ordering::Relaxed);
            (sent, blocked)
        });
        // Sample the host's memory while the client pushes, and a little
        // after it stopped; at most 20 s of samples.
        let mut largest = baseline;
        let mut after_done = 0;
        for _ in 0..200 {
            largest = largest.max(vm_rss(host.pid()));
            if writing_done.load(Ordering::Relaxed) {
                after_done += 1;
                if after_done > 5 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (sent, blocked) = writing.join().unwrap();
        (sent, blocked, largest)
    });
    eprintln!(
        "slow reader: sent {sent} bytes ({:.1} MiB) before {}; host VmRSS baseline {:.1} MiB, largest {:.1} MiB (+{:.1} MiB)",
        sent as f64 / MIB as f64,
        if blocked { "blocking for 2 s" } else { "the time limit" },
        baseline as f64 / MIB as f64,
        largest_rss as f64 / MIB as f64,
        largest_rss.saturating_sub(baseline) as f64 / MIB as f64,
    );
    assert!(blocked, "the client was never held back: it sent {sent} bytes without blocking");
    assert!(sent < SENT_BOUND, "the client got {sent} bytes through without reading (bound {SENT_BOUND})");
    assert!(
        largest_rss <= baseline + RSS_ALLOWANCE,
        "the host's VmRSS grew from {baseline} to {largest_rss} bytes (allowed: +{RSS_ALLOWANCE})"
    );

    // Now read: everything sent comes back, byte for byte.
    let mut reader = stream;
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0u64;
    let mut buffer = vec![0u8; CHUNK];
    while received < sent {
        assert!(Instant::now() < deadline, "only {received} of {sent} bytes came back within 60 s");
        let want = ((sent - received) as usize).min(CHUNK);
        let n = match reader.read(&mut buffer[..want]) {
            Ok(0) => panic!("end of stream after {received} of {sent} bytes"),
            Ok(n) => n,
            Err(e) => panic!("reading back failed after {received} of {sent} bytes: {e}"),
        };
        assert!(
            pattern.matches(received, &buffer[..n]),
            "the echo differs within bytes {received}..{}",
            received + n as u64
        );
        received += n as u64;
    }
    reader.shutdown(Shutdown::Write).unwrap();
    wait_for_eof(&reader, Duration::from_secs(5), "after the slow client half-closed");
    drop(host);
}

/// `--idle-timeout 300ms` closes a connection that passed no bytes for that
/// long (end of stream between 250 ms and 2 s after its last byte, counted
/// as an idle timeout in the host's stats), but not one that pings every
/// 100 ms for a second.
#[test]
fn idle_connections_are_closed_and_active_ones_are_not() {
    let (host, addr) = support::spawn_listening(&support::guest("probe"), &["--idle-timeout", "300ms"]);
    let mut idle = Probe::connect(addr);
    let mut active = Probe::connect(addr);
    assert_eq!(idle.ask("ping"), "pong");
    let last_byte = Instant::now();

    std::thread::scope(|scope| {
        // Watch the idle client while the active one pings.
        let watching = scope.spawn(|| wait_for_eof(&idle.stream, Duration::from_secs(3), "the idle client"));
        let started = Instant::now();
        for i in 0..10 {
            assert_eq!(active.ask("ping"), "pong", "ping {i} of the active client");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(active.ask("ping"), "pong", "the active client after a second of pings");
        // Done with it: closing it now keeps it out of the idle count.
        active.stream.shutdown(Shutdown::Both).unwrap();

        let ended = watching.join().unwrap();
        let after = ended - last_byte;
        eprintln!("idle client closed {after:?} after its last byte");
        assert!(after >= Duration::from_millis(250), "closed {after:?} after its last byte: too early");
        assert!(after <= Duration::from_secs(2), "closed {after:?} after its last byte: too late");
    });
    assert_eq!(idle.read_line(), None);

    drop(active);
    drop(idle);
    sigterm(&host);
    let mut host = host;
    let status = host.wait_exit(Duration::from_secs(10)).expect("the host exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let stopped = host.wait_for_line("stopped stats=", Duration::from_secs(1)).expect("a stopped line");
    assert!(stopped.contains("idle_timeouts=1"), "exactly one idle timeout expected: {stopped}");
}

/// Bytes the host sends count as activity too: a connection that only
/// receives (lines another connection sends it every 100 ms) is not closed
/// by `--idle-timeout 300ms`; once they stop, it is.
#[test]
fn a_connection_that_only_receives_is_not_idle() {
    let host = TestHost::builder(&support::guest("probe"))
        .limits(|l| l.idle_timeout = Some(Duration::from_millis(300)))
        .start();
    let mut receiver = Probe::connect(host.addr);
    let mut sender = Probe::connect(host.addr);
    let answer = receiver.ask("whoami");
    let id =
        answer.split_whitespace().nth(1).unwrap_or_else(|| panic!("unexpected whoami answer {answer:?}")).to_string();
    let started = Instant::now();
    let mut last_byte = started;
    for i in 0..10 {
        assert_eq!(sender.ask(&format!("send {id} tick{i}")), "ok", "send {i}");
        assert_eq!(
            receiver.read_line().as_deref(),
            Some(format!("tick{i}").as_str()),
            "tick {i} after {:?}",
            started.elapsed()
        );
        last_byte = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
    }
    let ended = wait_for_eof(&receiver.stream, Duration::from_secs(3), "the receiver once the ticks stopped");
    let after = ended - last_byte;
    eprintln!("receiver closed {after:?} after the last tick");
    assert!(after >= Duration::from_millis(250), "closed {after:?} after its last byte: too early");
    assert!(after <= Duration::from_secs(2), "closed {after:?} after its last byte: too late");
}

/// With `--idle-timeout 0` a silent connection stays open: nothing arrives
/// for a second, and it still answers afterwards.
#[test]
fn idle_timeout_zero_never_closes() {
    let host = TestHost::builder(&support::guest("probe")).limits(|l| l.idle_timeout = None).start();
    let mut idle = Probe::connect(host.addr);
    assert_eq!(idle.ask("ping"), "pong");
    assert_eq!(peek_within(&idle.stream, Duration::from_secs(1)), Seen::Nothing, "the idle client after 1 s");
    assert_eq!(idle.ask("ping"), "pong");
}

/// SIGTERM in the middle of an 8 MiB echo stops accepting (a new connection
/// is refused or never served) but lets the transfer finish: every byte comes
/// back, then the host exits 0 soon after the client is done, long before
/// the 30 s shutdown timeout.
#[test]
fn sigterm_lets_a_transfer_in_flight_finish() {
    const TOTAL: u64 = 8 * MIB;
    const CHUNK: usize = 64 * KIB as usize;
    let (mut host, addr) = support::spawn_listening(&support::guest("echo"), &["--shutdown-timeout", "30s"]);
    let pattern = Pattern::new(0x7e_57);
    let mut writer = TcpStream::connect(addr).unwrap();
    let mut reader = writer.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let received = AtomicU64::new(0);
    let (go, wait_for_go) = mpsc::channel::<()>();

    let finished = std::thread::scope(|scope| {
        let reading = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut buffer = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                assert!(Instant::now() < deadline, "only {total} bytes came back within 60 s");
                let n = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => panic!("reading failed after {total} bytes: {e}"),
                };
                assert!(total + n as u64 <= TOTAL, "more came back than was sent");
                assert!(
                    pattern.matches(total, &buffer[..n]),
                    "the echo differs within bytes {total}..{}",
                    total + n as u64
                );
                total += n as u64;
                received.store(total, Ordering::Relaxed);
            }
            total
        });
        let pattern = &pattern;
        let writing = scope.spawn(move || {
            let mut chunk = vec![0u8; CHUNK];
            let mut sent = 0u64;
            while sent < TOTAL {
                if sent == MIB {
                    wait_for_go.recv_timeout(Duration::from_secs(30)).expect("the go-ahead after SIGTERM");
                }
                pattern.fill(sent, &mut chunk);
                writer.write_all(&chunk).unwrap_or_else(|e| panic!("writing failed after {sent} bytes: {e}"));
                sent += CHUNK as u64;
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });

        // SIGTERM once the first mebibyte has come back.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < MIB {
            assert!(Instant::now() < deadline, "the first MiB did not come back within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("SIGTERM after {} bytes came back", received.load(Ordering::Relaxed));
        sigterm(&host);
        assert!(
            host.wait_for_line("stopping:", Duration::from_secs(5)).is_some(),
            "the host did not log that it stops"
        );
        assert!(new_connection_unserved(addr), "a connection made after SIGTERM was served");
        go.send(()).unwrap();

        writing.join().unwrap();
        let total = reading.join().unwrap();
        assert_eq!(total, TOTAL, "bytes that came back before end of stream");
        Instant::now()
    });
    drop(reader);

    let status = host.wait_exit(Duration::from_secs(10)).expect("the host exits once the client is done");
    let took = finished.elapsed();
    eprintln!("host exited {took:?} after the client finished");
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "the host took {took:?} to exit after the last connection ended");
    assert!(
        host.wait_for_line("stopped stats=", Duration::from_secs(1)).is_some(),
        "no stopped line:\n{}",
        host.output()
    );
    assert_eq!(host.count_lines("shutdown timeout"), 0, "the shutdown timeout should not have been reached");
}

/// With `--shutdown-timeout 1s`, SIGTERM closes an idle client (end of
/// stream) about a second later, and the host exits 0 within 5 s.
#[test]
fn the_shutdown_timeout_closes_what_is_still_open() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &["--shutdown-timeout", "1s"]);
    let mut idle = Probe::connect(addr);
    assert_eq!(idle.ask("ping"), "pong");

    let signalled = Instant::now();
    sigterm(&host);
    let ended = wait_for_eof(&idle.stream, Duration::from_secs(5), "the idle client after SIGTERM");
    let after = ended - signalled;
    eprintln!("idle client closed {after:?} after SIGTERM");
    assert!(after >= Duration::from_millis(800), "closed {after:?} after SIGTERM: before the shutdown timeout");
    assert!(after <= Duration::from_secs(3), "closed {after:?} after SIGTERM: long after the shutdown timeout");
    drop(idle);

    let left = Duration::from_secs(5).saturating_sub(signalled.elapsed());
    let status = host.wait_exit(left).expect("the host exits within 5 s of SIGTERM");
    eprintln!("host exited {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(host.count_lines("shutdown timeout") >= 1, "the shutdown timeout was not logged:\n{}", host.output());
    assert!(host.wait_for_line("stopped stats=", Duration::from_secs(1)).is_some(), "no stopped line");
}

/// A peer that never stops sending is closed by the shutdown timeout too,
/// though its task always finds input to read: `OpenConnections::close_all` closes
/// the connection itself rather than waiting for the task to look. The
/// client writes and drains the echo for at most 20 s; it sees
/// end of stream, or a reset if it was still sending when the host's
/// linger (2 s) passed.
#[test]
fn the_shutdown_timeout_closes_a_peer_that_never_stops_sending() {
    const CHUNK: usize = 16 * KIB as usize;
    let (mut host, addr) = support::spawn_listening(&support::guest("echo"), &["--shutdown-timeout", "1s"]);
    let mut writer = TcpStream::connect(addr).unwrap();
    let mut reader = writer.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let received = AtomicU64::new(0);
    let stop_writing = AtomicBool::new(false);

    let (closed_after, total) = std::thread::scope(|scope| {
        let writing = scope.spawn(|| {
            let chunk = vec![b'x'; CHUNK];
            let deadline = Instant::now() + Duration::from_secs(20);
            // Ends when the host closes (the write fails) or the test is done.
            while !stop_writing.load(Ordering::Relaxed) && Instant::now() < deadline {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let reading = scope.spawn(|| {
            let mut buffer = vec![0u8; 64 * KIB as usize];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => return Instant::now(),
                    Ok(n) => received.fetch_add(n as u64, Ordering::Relaxed),
                    // The host sent end of stream, then lingered for the
                    // peer to close while it kept sending; once the linger
                    // passes, closing with input unread sends a reset.
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => return Instant::now(),
                    Err(e) => panic!("reading failed after {} bytes: {e}", received.load(Ordering::Relaxed)),
                };
            }
        });

        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < MIB {
            assert!(Instant::now() < deadline, "the first MiB did not come back within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let signalled = Instant::now();
        sigterm(&host);
        let closed = reading.join().unwrap();
        stop_writing.store(true, Ordering::Relaxed);
        writing.join().unwrap();
        (closed - signalled, received.load(Ordering::Relaxed))
    });
    eprintln!("the sending client's connection ended {closed_after:?} after SIGTERM, {total} bytes echoed");
    assert!(
        closed_after >= Duration::from_millis(800),
        "ended {closed_after:?} after SIGTERM: before the shutdown timeout"
    );
    // At the latest the shutdown timeout (1 s) and the linger (2 s).
    assert!(
        closed_after <= Duration::from_millis(3500),
        "ended {closed_after:?} after SIGTERM: long after the shutdown timeout and the linger"
    );
    drop(reader);

    let status = host.wait_exit(Duration::from_secs(5)).expect("the host exits soon after the shutdown timeout");
    assert!(status.success(), "exit status {status}");
    assert!(host.count_lines("shutdown timeout") >= 1, "the shutdown timeout was not logged:\n{}", host.output());
}

/// A second SIGTERM while the host waits for open connections exits at once,
/// with status 128 + 15, without the orderly stop.
#[test]
fn a_second_sigterm_exits_at_once() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &["--shutdown-timeout", "30s"]);
    let mut open = Probe::connect(addr);
    assert_eq!(open.ask("ping"), "pong");
    sigterm(&host);
    assert!(host.wait_for_line("stopping:", Duration::from_secs(5)).is_some(), "the host did not log that it stops");
    // Still waiting for the open connection.
    assert_eq!(open.ask("ping"), "pong");
    assert!(host.child.try_wait().unwrap().is_none(), "the host exited with a connection open");

    let second = Instant::now();
    sigterm(&host);
    let status = host.wait_exit(Duration::from_secs(3)).expect("the host exits after a second SIGTERM");
    eprintln!("host exited {:?} after the second SIGTERM: {status}", second.elapsed());
    assert_eq!(status.code(), Some(143), "exit status {status}");
    assert!(second.elapsed() < Duration::from_secs(2), "took {:?}", second.elapsed());
    assert_eq!(host.count_lines("stopped stats="), 0, "an orderly stop was logged");
    // The process is gone, and the connection with it.
    assert!(
        matches!(peek_within(&open.stream, Duration::from_secs(2)), Seen::Eof | Seen::Failed(_)),
        "the open connection outlived the host"
    );
}

/// `loop-exit` from the guest stops the host the way SIGTERM does: no new
/// connections are served, but open ones (the one that asked, and another)
/// still get answers; when they close themselves, the host exits 0 at once.
#[test]
fn loop_exit_waits_for_open_connections_to_end() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &["--shutdown-timeout", "30s"]);
    let mut asker = Probe::connect(addr);
    let mut other = Probe::connect(addr);
    assert_eq!(other.ask("ping"), "pong");
    assert_eq!(asker.ask("exit"), "ok");
    assert!(host.wait_for_line("stopping:", Duration::from_secs(5)).is_some(), "the host did not log that it stops");

    assert!(new_connection_unserved(addr), "a connection made after loop-exit was served");
    for i in 0..3 {
        assert_eq!(other.ask("ping"), "pong", "the other client, ping {i} after loop-exit");
        assert_eq!(asker.ask("ping"), "pong", "the asking client, ping {i} after loop-exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(host.child.try_wait().unwrap().is_none(), "the host exited with connections open");
    drop(other);
    assert_eq!(asker.ask("ping"), "pong", "the asking client after the other closed");
    assert!(host.child.try_wait().unwrap().is_none(), "the host exited with a connection open");

    let closed = Instant::now();
    drop(asker);
    let status = host.wait_exit(Duration::from_secs(5)).expect("the host exits once its connections closed");
    eprintln!("host exited {:?} after the last client closed", closed.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(closed.elapsed() < Duration::from_secs(3), "took {:?}", closed.elapsed());
    assert_eq!(host.count_lines("shutdown timeout"), 0, "the shutdown timeout should not have been reached");
    assert!(host.wait_for_line("stopped stats=", Duration::from_secs(1)).is_some(), "no stopped line");
}

/// After `loop-exit`, a client that stays open is still served until the
/// shutdown timeout (1 s) passes; then it is closed and the in-process host
/// returns without error.
#[test]
fn loop_exit_closes_what_is_still_open_after_the_shutdown_timeout() {
    let host = TestHost::builder(&support::guest("probe")).shutdown_timeout(Duration::from_secs(1)).start();
    let mut stays = Probe::connect(host.addr);
    assert_eq!(stays.ask("ping"), "pong");
    let mut asker = Probe::connect(host.addr);
    assert_eq!(asker.ask("exit"), "ok");
    let exited = Instant::now();
    drop(asker);

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stays.ask("ping"), "pong", "the open client 300 ms after loop-exit");
    assert!(!host.has_exited(), "the host stopped with a connection open");

    let ended = wait_for_eof(&stays.stream, Duration::from_secs(5), "the open client after loop-exit");
    let after = ended - exited;
    eprintln!("open client closed {after:?} after loop-exit");
    assert!(after >= Duration::from_millis(800), "closed {after:?} after loop-exit: before the shutdown timeout");
    assert!(after <= Duration::from_secs(3), "closed {after:?} after loop-exit: long after the shutdown timeout");
    drop(stays);
    assert!(host.wait_exit(Duration::from_secs(5)), "the host still runs 5 s after closing the last connection");
    host.stop().expect("the host's run ends without error");
}

/// A soft descriptor limit below the hard one (1024 in most shells and
/// units) is raised to the hard one at start; when even that cannot hold
/// --max-connections, the log says so.
#[test]
fn the_descriptor_limit_is_raised_and_a_shortfall_named() {
    let echo = support::guest("echo");
    for (max_connections, warned) in [("1000", false), ("10000", true)] {
        let listen = format!("127.0.0.1:{}", support::free_port());
        let host = HostProcess::spawn_with(std::process::Command::new("prlimit").args([
            "--nofile=256:4096",
            support::host_binary(),
            "--component",
            echo.to_str().unwrap(),
            "--listen",
            &listen,
            "--max-connections",
            max_connections,
        ]));
        assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", host.pid())).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[3..5], ["4096", "4096"], "soft limit not raised: {line}");
        assert_eq!(
            host.count_lines("descriptor limit holds fewer connections"),
            usize::from(warned),
            "{}",
            host.output()
        );
    }
}
