//! The output a guest writes and the host holds: a guest sees how much is
//! queued and how much a write would take, is refused with `would-block`
//! past its connection's cap or the host's output memory (and is never
//! short-changed: what is taken is all sent), is told by `on-drain` when
//! to write again, and cannot write more than the cap in one piece.
use crate::support;

use std::io::{ErrorKind, Read};
use std::time::Duration;

use evconn_host::policy::Limits;
use evconn_host::wasm::Isolation;
use support::{Probe, TestHost};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A host of a probe named for `role`, and that name (see
/// [`support::guest_named`]).
fn host(role: &str, isolation: Isolation, change: impl FnOnce(&mut Limits)) -> (TestHost, String) {
    let (path, component) = support::guest_named("probe", role);
    (TestHost::builder(&path).isolation(isolation).limits(change).start(), component)
}

/// Reads from `probe` until a line starting with `needle` has arrived
/// whole; returns every byte read.
fn read_until(probe: &mut Probe, needle: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * KIB];
    let whole = |received: &[u8]| {
        let Some(at) = received.windows(needle.len()).position(|w| w == needle) else { return false };
        received[at..].contains(&b'\n')
    };
    while !whole(&received) {
        match probe.stream.read(&mut buffer) {
            Ok(0) => panic!("closed before {:?} after {} bytes", String::from_utf8_lossy(needle), received.len()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading failed after {} bytes: {e}", received.len()),
        }
    }
    received
}

/// The `flooded N CODE` line the probe logged for its flood on this host,
/// read from the captured log of in-process hosts.
fn flood_result(component: &str, since: usize) -> (usize, String) {
    let log = support::captured_log();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log.lines.lock().unwrap();
        let found = lines[since..]
            .iter()
            .filter(|line| line.contains(&format!("component={component}")))
            .find_map(|line| line.split("flooded ").nth(1).map(str::to_string));
        drop(lines);
        if let Some(found) = found {
            let mut words = found.split_whitespace();
            let written = words.next().unwrap().parse().unwrap();
            return (written, words.next().unwrap().to_string());
        }
        assert!(std::time::Instant::now() < deadline, "the probe logged no flood result");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A guest that writes to a peer that does not read is refused with
/// `would-block` once the host holds its connection's cap (beyond what the
/// sockets took); what it wrote before arrives whole once the peer reads,
/// and the `on-drain` it asked for comes after it. Under both models.
fn refused_at_the_cap_then_drained(isolation: Isolation) {
    let (host, component) = host(&format!("cap-{isolation:?}"), isolation, |l| {
        l.write_buffer = 64 * KIB;
        l.output_cap = 256 * KIB;
    });
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("room"), format!("room {}", 256 * KIB));
    assert_eq!(probe.ask("watermark 1000"), "ok");
    let since = support::captured_log().lines.lock().unwrap().len();
    probe.send("flood 64");
    let (written, code) = flood_result(&component, since);
    assert_eq!(code, "would-block");
    // What the two sockets' buffers took, plus the cap at most.
    assert!(written >= 256 * KIB && written % (64 * KIB) == 0, "{written} bytes written");
    let received = read_until(&mut probe, b"drained ");
    // The flood, then lines: the probe's `flooded` answer, if the host had
    // room for it, and `drained`.
    let floods = received.iter().take_while(|&&b| b == b'f').count();
    let tail = String::from_utf8_lossy(&received[written.min(received.len())..]).to_string();
    let answered_too = tail.starts_with("flooded ");
    assert_eq!(
        floods - usize::from(answered_too),
        written,
        "every byte the host took arrives, and nothing else before it"
    );
    let queued: usize = tail
        .lines()
        .find_map(|line| line.strip_prefix("drained "))
        .unwrap_or_else(|| panic!("no drained line in {tail:?}"))
        .parse()
        .unwrap();
    assert!(queued <= 1000, "drained with {queued} bytes still queued");
    assert_eq!(probe.ask("queued"), "queued 0");
    assert_eq!(probe.ask("room"), format!("room {}", 256 * KIB));
}

#[test]
fn writes_past_the_cap_are_refused_then_drained_under_the_shared_model() {
    refused_at_the_cap_then_drained(Isolation::Shared);
}

#[test]
fn writes_past_the_cap_are_refused_then_drained_with_an_instance_per_connection() {
    refused_at_the_cap_then_drained(Isolation::Connection);
}

/// A write larger than the connection's cap could never fit: it is refused
/// with `invalid-argument`, and nothing is taken.
#[test]
fn a_write_larger_than_the_cap_is_an_invalid_argument() {
    let (host, _) = host("too-large", Isolation::Shared, |l| {
        l.write_buffer = 64 * KIB;
        l.output_cap = 512 * KIB;
    });
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("write-big 513"), "error invalid-argument");
    assert_eq!(probe.ask("queued"), "queued 0");
    let answer = probe.ask("write-big 1");
    assert_eq!(answer, format!("{}wrote", "f".repeat(1024)), "a write that fits is taken");
}

/// The host's output memory caps all connections together: with room for
/// two connections' caps, four flooding connections are refused, and each
/// is told to go on (`on-drain`) once its reader has taken its output.
#[test]
fn the_host_output_memory_caps_all_connections_together() {
    let (host, component) = host("memory", Isolation::Shared, |l| {
        l.write_buffer = 64 * KIB;
        l.output_cap = 512 * KIB;
        l.output_memory = MIB;
    });
    let mut probes: Vec<Probe> = (0..4).map(|_| Probe::connect(host.addr)).collect();
    let since = support::captured_log().lines.lock().unwrap().len();
    // Every watermark is set before any flood: once the host's output
    // memory is full, even a short answer is refused.
    for probe in &mut probes {
        assert_eq!(probe.ask("watermark 0"), "ok");
    }
    for probe in &mut probes {
        probe.send("flood 64");
    }
    let (_, code) = flood_result(&component, since);
    assert_eq!(code, "would-block");
    // Each reads its flood and its drain, so each was told to go on.
    for probe in &mut probes {
        read_until(probe, b"drained ");
    }
}
