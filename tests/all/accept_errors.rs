//! `accept()` failing with `EMFILE`: the `host` binary runs under a
//! descriptor limit lowered with `prlimit` so that its next accept fails.
//! The echo guest, in every language, shuts the host down as libevent's
//! example does; the probe guest only logs, and the host backs off instead
//! of spinning, then serves the waiting client once descriptors are free
//! again.
use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::procfs::{clock_ticks_per_second, cpu_ticks, limit_descriptors};
use support::{HostProcess, Probe};

/// Lowers the descriptor limit of `pid` so that its next new descriptor
/// fails with `EMFILE`, and returns the limit.
fn leave_no_descriptor(pid: u32) -> u32 {
    limit_descriptors(pid, 0)
}

/// The same test, in a module per language (see `support::echo`).
macro_rules! echo_tests {
    ($($lang:ident)*) => {$(
        mod $lang {
            /// The echo guest, told that `accept()` failed with `EMFILE`, logs
            /// the line of libevent's example and calls `loop-exit`: the host
            /// exits by itself with status 0.
            #[test]
            fn echo_guest_shuts_the_host_down_on_emfile() {
                super::echo_shuts_the_host_down_on_emfile(&super::support::echo(stringify!($lang)));
            }
        }
    )*};
}

echo_tests!(rust c python js);

fn echo_shuts_the_host_down_on_emfile(echo: &Path) {
    // The host process finds the compiled code in the tests' code cache.
    support::precompile(echo);
    let cache = support::code_cache();
    let cache = cache.dir().to_str().unwrap();
    // loop-exit lets open connections go on for the shutdown timeout; keep
    // it well inside this test's 10 s read timeout. The guest timeout is the
    // echo tests' 10 s (tests/echo.rs explains): the JavaScript guest's first
    // callback once passed 1 s in a debug host on two cores busy with the
    // other languages' tests.
    let args = ["--shutdown-timeout", "1s", "--guest-timeout", "10s", "--cache-dir", cache];
    let (mut host, addr) = support::spawn_listening(echo, &args);
    // One client served first, so every descriptor the running host needs is open.
    let mut first = TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    first.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    first.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");

    leave_no_descriptor(host.pid());
    let _second = TcpStream::connect(addr).unwrap(); // waits in the backlog; accept fails
    let line = "Got an error 24 (Too many open files) on the listener. Shutting down.";
    assert!(host.wait_for_line(line, Duration::from_secs(10)).is_some(), "no {line:?} in the log:\n{}", host.output());
    // The host closes the open connection when the shutdown timeout passes.
    let mut rest = Vec::new();
    let read = first.read_to_end(&mut rest);
    assert!(matches!(read, Ok(0)), "end of stream on the served connection, got {read:?}");
    drop(first); // so the host need not wait for this side to close

    let status = host
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the host still runs 10 s after the accept error:\n{}", host.output()));
    assert!(status.success(), "exit status {status}:\n{}", host.output());
    assert_eq!(host.count_lines(line), 1, "one error, one shutdown:\n{}", host.output());
}

/// While `accept()` keeps failing with `EMFILE` the host backs off (little
/// CPU, few retries) instead of spinning as libevent does, and serves the
/// waiting client once a descriptor is free again; with the table full and
/// nobody waiting, it reports nothing.
#[test]
fn emfile_backs_off_then_recovers() {
    let (host, addr): (HostProcess, _) = support::spawn_listening(&support::guest("probe"), &[]);
    let pid = host.pid();
    let mut first = Probe::connect(addr);
    assert_eq!(first.ask("ping"), "pong");

    leave_no_descriptor(pid);
    let mut waiting = Probe::connect(addr); // the kernel completes the handshake
    waiting.send("ping");
    let error_line = "accept error 24 ";
    let line = host
        .wait_for_line(error_line, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no accept error logged:\n{}", host.output()));
    assert!(line.contains("accept error 24 (Too many open files)"), "{line}");

    // The error persists: watch the host for 1.5 s.
    let ticks_before = cpu_ticks(pid);
    let errors_before = host.count_lines(error_line);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let ticks = cpu_ticks(pid) - ticks_before;
    let errors = host.count_lines(error_line) - errors_before;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = ticks as f64 / clock_ticks_per_second() as f64 / elapsed;
    eprintln!("under EMFILE: {ticks} ticks in {elapsed:.2} s ({:.1}% of a core), {errors} accept errors", cpu * 100.0);
    assert!(cpu < 0.30, "the host used {:.0}% of a core while accept failed", cpu * 100.0);
    assert!(errors < 15, "{errors} accept errors in {elapsed:.2} s: the host does not back off");
    assert!(errors >= 1, "the host stopped retrying accept");

    // Still not served, then a descriptor is freed.
    waiting.stream.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let peeked = waiting.stream.peek(&mut [0u8; 1]);
    assert!(
        matches!(&peeked, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the waiting client got {peeked:?} before a descriptor was free"
    );
    waiting.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    drop(first);
    let freed = Instant::now();
    assert_eq!(waiting.read_line().as_deref(), Some("pong"), "served within 5 s of a descriptor being freed");
    eprintln!("served {:?} after the first client closed", freed.elapsed());

    // The served client took the freed descriptor, so the table is full
    // again, but nobody waits: accept() would still fail with EMFILE, yet
    // there is nothing to report.
    let errors_before = host.count_lines(error_line);
    std::thread::sleep(Duration::from_millis(2500));
    let errors = host.count_lines(error_line) - errors_before;
    assert_eq!(errors, 0, "accept errors reported while no connection was waiting");
    assert_eq!(waiting.ask("ping"), "pong");
}
